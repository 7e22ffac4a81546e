use std::time::Duration;

use thiserror::Error;

use crate::telemetry::HandlerStats;

/// [`AppHandle::wait_stats`](crate::AppHandle::wait_stats) or
/// [`AppHandle::wait_status`](crate::AppHandle::wait_status) gave up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The condition did not hold in time.
    #[error(
        "handler `{handler}` did not reach the expected counts within {timeout:?}; it stands at {stats:?} \
         (is the event published on the subject the handler consumes? is the handler failing?)"
    )]
    Timeout {
        /// The handler waited on.
        handler: String,
        /// How long it waited.
        timeout: Duration,
        /// The counts at the end of the wait.
        stats: HandlerStats,
    },
    /// The loop did not reach the expected state in time.
    #[error(
        "handler `{handler}` did not reach the expected state within {timeout:?}; its loop is {} \
         (since {:?})",
        status.state,
        status.since
    )]
    StateTimeout {
        /// The handler waited on.
        handler: String,
        /// How long it waited.
        timeout: Duration,
        /// Its status at the end of the wait.
        status: Box<crate::HandlerStatus>,
    },
    /// The app has no handler of that name.
    #[error("the app has no handler named `{handler}`; its handlers are {known:?}")]
    UnknownHandler {
        /// The name asked for.
        handler: String,
        /// The handlers the app has.
        known: Vec<String>,
    },
}

/// The app or a handler is configured in a way that cannot work; found
/// before anything reaches the broker.
#[derive(Debug, Error)]
#[error("invalid configuration: {}{message}", .handler.map(|h| format!("handler `{h}`: ")).unwrap_or_default())]
pub struct ConfigError {
    handler: Option<&'static str>,
    kind: ConfigErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What is wrong with the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A handler option has a value that cannot work.
    InvalidOption,
    /// A handler's `subject` cannot carry its event's subject.
    SubjectMismatch,
    /// Two handlers of one group consume one event name (they would share a durable).
    DuplicateConsumer,
    /// The transport cannot do what a handler asks (see
    /// [`Capabilities`](crate::transport::Capabilities)).
    Unsupported,
    /// An option does not fit the kind of event (`broadcast` on a stream
    /// event, `dead_letter` on a notification).
    WrongEventKind,
    /// A handler is idempotent and the app has no idempotency store
    /// ([`App::idempotency_store`](crate::App::idempotency_store)).
    MissingIdempotencyStore,
}

impl ConfigError {
    pub(crate) fn new(
        handler: Option<&'static str>,
        kind: ConfigErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            handler,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause.
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ConfigError {
        self.source = Some(Box::new(source));
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The handler it concerns, if one.
    pub fn handler(&self) -> Option<&'static str> {
        self.handler
    }
}

/// A consume loop stopped: its consumer cannot be used, by policy or by
/// what the broker has, or the loop crashed.
#[derive(Debug, Error)]
#[error("handler `{handler}` stopped consuming `{consumer}`: {reason}")]
pub struct ConsumerError {
    handler: &'static str,
    consumer: String,
    kind: ConsumerErrorKind,
    reason: String,
}

/// Why a consume loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerErrorKind {
    /// The consumer was deleted and the app is bind-only.
    Deleted,
    /// The consumer's stream is missing (deleted, or the server lost its
    /// store) and the app is bind-only.
    StreamDeleted,
    /// The broker's consumer of that name cannot be used (a JetStream push consumer).
    Incompatible,
    /// The loop panicked or was cancelled.
    Crashed,
    /// The loop could not reach its consumer for longer than
    /// [`App::give_up_after`](crate::App::give_up_after) allows.
    Unreachable,
    /// The stop could not settle every message within the grace period
    /// (the broker was away or slow): they are delivered again after their
    /// `ack_wait`.
    Unsettled,
}

impl ConsumerError {
    pub(crate) fn new(
        handler: &'static str,
        consumer: impl Into<String>,
        kind: ConsumerErrorKind,
        reason: impl Into<String>,
    ) -> ConsumerError {
        ConsumerError {
            handler,
            consumer: consumer.into(),
            kind,
            reason: reason.into(),
        }
    }

    /// Why it stopped.
    pub fn kind(&self) -> ConsumerErrorKind {
        self.kind
    }

    /// The handler.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// `STREAM/durable`, or the notifications' subject.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}
