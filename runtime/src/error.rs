//! Errors: [`Error`](enum@Error) and one error type per operation, each with a
//! `kind()` to match on and its cause as the source.

use thiserror::Error;

pub use crate::app::{ConfigError, ConfigErrorKind, ConsumerError, ConsumerErrorKind};
pub use crate::topology::{TopologyError, TopologyErrorKind};
pub use crate::transport::{ConnectError, ConnectErrorKind};

use crate::handler::MissingState;
use crate::publish::PublishError;

/// `Result` with jetflow's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop an [`App`](crate::App) or a jetflow call: one
/// variant per operation, each an error with a `kind()` to match on, the
/// cause as its source, and a message that says what to do next.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use jetflow::error::ConnectErrorKind;
/// let err = jetflow::App::new("x").url("mqtt://127.0.0.1:1883").start().await.unwrap_err();
/// match err {
///     jetflow::Error::Connect(e) => assert_eq!(e.kind(), ConnectErrorKind::UnknownScheme),
///     other => panic!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The app or a handler is configured in a way that cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A stream or consumer could not be read, created or updated, or
    /// differs from the code.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A handler takes state that was not registered.
    #[error(transparent)]
    MissingState(#[from] MissingState),
    /// A publish failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A consume loop stopped.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The ops listener could not start (feature `ops`).
    #[cfg(feature = "ops")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
}
