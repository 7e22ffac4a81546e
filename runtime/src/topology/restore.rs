//! Putting back a declared stream that vanished while the app runs (an
//! operator deleted it, or the server came back with an empty store).
//! Under a policy that creates what is missing, the consume loop that
//! notices and the bus whose publish finds no stream recreate it from the
//! declaration, warning loudly that its state went backwards; under
//! bind-only nothing is created and the caller stops loudly. One attempt
//! per stream at a time, and at most one a second, so a stream deleted
//! over and over is never recreated in a tight loop.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{StreamDecl, TopologyError, TopologyPolicy};
use crate::transport::DynTransport;

/// The least time between two attempts to recreate one stream.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a stream found missing is left alone before it is recreated.
/// A server may still be removing the deleted stream's files for a moment
/// after it answered the delete: nats-server 2.9 removes the files of a
/// stream recreated at once under the same name (its publishes then fail
/// with "error opening msg block file").
const SETTLE: Duration = Duration::from_millis(750);

/// The streams an app declared, and how it may provision them.
#[derive(Debug)]
pub(crate) struct Declared {
    streams: Vec<StreamDecl>,
    policy: TopologyPolicy,
    /// Per stream: when it was last recreated (or tried), and whether that worked.
    attempts: Mutex<HashMap<String, (Instant, bool)>>,
}

impl Declared {
    pub(crate) fn new(streams: Vec<StreamDecl>, policy: TopologyPolicy) -> Declared {
        Declared {
            streams,
            policy,
            attempts: Mutex::default(),
        }
    }

    /// Every declared stream.
    pub(crate) fn streams(&self) -> &[StreamDecl] {
        &self.streams
    }

    /// The declared stream named `name`.
    pub(crate) fn stream(&self, name: &str) -> Option<&StreamDecl> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The declared stream that stores `subject`.
    pub(crate) fn stream_of(&self, subject: &str) -> Option<&StreamDecl> {
        self.streams.iter().find(|s| {
            s.patterns()
                .iter()
                .any(|p| crate::event::subject_matches(p, subject))
        })
    }

    /// Recreates the declared stream `stream`, which the broker says is
    /// missing. `Ok(true)` once it exists again (also when another task
    /// just recreated it), `Ok(false)` when the policy creates nothing
    /// (bind-only) or an attempt failed less than a second ago.
    pub(crate) async fn restore(
        &self,
        transport: &dyn DynTransport,
        stream: &StreamDecl,
    ) -> Result<bool, TopologyError> {
        if self.policy == TopologyPolicy::BindOnly {
            return Ok(false);
        }
        let mut attempts = self.attempts.lock().await;
        if let Some((at, worked)) = attempts.get(&stream.name)
            && at.elapsed() < RETRY_AFTER
        {
            return Ok(*worked);
        }
        tokio::time::sleep(SETTLE).await;
        let result = transport
            .declare_streams(std::slice::from_ref(stream), self.policy)
            .await;
        attempts.insert(stream.name.clone(), (Instant::now(), result.is_ok()));
        match &result {
            Ok(()) => tracing::warn!(
                stream = %stream.name,
                "stream `{}` was missing on the broker (deleted, or the server lost its store) and \
                 was recreated from the declaration: its sequences restart at 1, whatever it held \
                 is gone, and its durable consumers are recreated to read the new stream from its \
                 start",
                stream.name
            ),
            Err(e) => {
                // also what a leader election or an outage looks like:
                // nothing answered for the stream, nor for the check
                tracing::warn!(stream = %stream.name, error = %e, "no stream answered for `{}`, and it could not be checked or recreated (an outage or a leader election looks like this); the caller retries", stream.name)
            }
        }
        result.map(|()| true)
    }
}
