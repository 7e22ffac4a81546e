use std::error::Error as StdError;

use thiserror::Error;

use crate::handler::MissingState;
use crate::publish::PublishError;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with jetflow's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop an [`App`](crate::App) or a jetflow call.
/// Each variant says what failed, keeps the cause, and suggests a fix.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting to NATS failed.
    #[error(
        "cannot connect to NATS at {url}: {source}; check NATS_URL / credentials and that the server is reachable"
    )]
    Connect {
        /// The URL (never contains credentials).
        url: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The app or a handler is configured in a way that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A stream or consumer could not be read, created or updated.
    #[error("{context}: {source}")]
    Topology {
        /// What jetflow was doing.
        context: String,
        /// The server's answer.
        #[source]
        source: BoxError,
    },
    /// A stream or consumer on the server differs from what the code
    /// declares and the [`TopologyPolicy`](crate::topology::TopologyPolicy) forbids changing it.
    #[error("{what} on the server differs from the code:\n{diff}\n{hint}")]
    Drift {
        /// `stream ORDER` or `consumer ORDER/inventory--order_created`.
        what: String,
        /// One line per differing field: `field: server=.. declared=..`.
        diff: String,
        /// What to do next.
        hint: &'static str,
    },
    /// A handler takes state that was not registered.
    #[error(transparent)]
    MissingState(#[from] MissingState),
    /// A publish failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A consume loop gave up (consumer or stream gone, by policy).
    #[error("consumer `{consumer}` stopped: {reason}")]
    Consumer {
        /// Stream/durable name.
        consumer: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    pub(crate) fn topology(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Topology {
            context: context.into(),
            source: source.into(),
        }
    }
}
