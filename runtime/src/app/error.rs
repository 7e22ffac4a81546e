use std::time::Duration;

use thiserror::Error;

use crate::telemetry::HandlerStats;

/// [`AppHandle::wait_stats`](crate::AppHandle::wait_stats) gave up.
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
    /// The app has no handler of that name.
    #[error("the app has no handler named `{handler}`; its handlers are {known:?}")]
    UnknownHandler {
        /// The name asked for.
        handler: String,
        /// The handlers the app has.
        known: Vec<String>,
    },
}
