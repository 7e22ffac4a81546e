//! The service: [`App`] collects handlers and state, connects to the
//! transport its URL names, provisions the topology and runs every
//! handler's consume loop until stopped through its [`AppHandle`].

mod builder;
mod config;
mod connect;
mod error;
mod handle;
mod ops;
mod plan;
mod registration;
mod signal;
mod start;

pub use builder::App;
pub use config::ConnectOptions;
pub use error::{ConfigError, ConfigErrorKind, ConsumerError, ConsumerErrorKind, WaitError};
pub use handle::AppHandle;
pub use plan::{Change, Plan, Planned};
