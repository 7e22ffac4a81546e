//! How a member leaves its group, and how librdkafka consumers are closed,
//! without making anything that has to end wait on a Kafka broker.
//!
//! librdkafka's consumer close (what dropping a consumer does) waits for the
//! group coordinator, with no bound of its own when the coordinator is gone.
//! Run on a Tokio worker or in `spawn_blocking`, it would hang the runtime's
//! shutdown (a runtime waits for its blocking tasks), and so the process's
//! exit after `App::stop`. So every consumer closes on a thread of its own
//! ([`Detached`]), and a closed member's last commit and leave run there too
//! ([`Leaving`]): [`KafkaTransport::flush`](super::KafkaTransport) waits
//! for them, which a stop bounds by its grace period.

use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::subscription::Member;

/// How long a closed subscription waits for its deliveries to be settled
/// before it leaves the group anyway (the rest comes back to the group).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A librdkafka client that, when dropped, is closed on a thread of its own.
pub(super) struct Detached<C: Send + 'static>(Option<C>);

impl<C: Send + 'static> Detached<C> {
    pub(super) fn new(client: C) -> Detached<C> {
        Detached(Some(client))
    }
}

impl<C: Send + 'static> Deref for Detached<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<C: Send + 'static> Drop for Detached<C> {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        let closing = std::thread::Builder::new()
            .name("jetflow-kafka-close".into())
            .spawn(move || drop(client));
        if let Err(e) = closing {
            // the closure (and the client) is dropped here, on this thread
            tracing::warn!(error = %e, "kafka: no thread to close a consumer on; closing it here");
        }
    }
}

/// The members of this transport that were closed and have not left their
/// group yet.
#[derive(Default)]
pub(super) struct Leaving {
    members: Mutex<Vec<Arc<Member>>>,
    left: Notify,
}

impl Leaving {
    /// `member` was closed: once its deliveries are settled or given back
    /// (at most [`DRAIN_TIMEOUT`]), it commits its watermarks and leaves
    /// the group, on a thread of its own.
    pub(super) fn start(self: &Arc<Self>, member: Arc<Member>) {
        self.lock().push(member.clone());
        let leaving = self.clone();
        let on_thread = member.clone();
        let spawned = std::thread::Builder::new()
            .name("jetflow-kafka-leave".into())
            .spawn(move || {
                let member = on_thread;
                let deadline = Instant::now() + DRAIN_TIMEOUT;
                while !member.drained() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                member.leave();
                leaving.remove(&member);
                // the last reference: its consumer's close goes to a thread
                // of its own (`Detached`)
                drop(member);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "kafka: no thread to leave the group on; the group coordinator removes the member after its session timeout");
            self.remove(&member);
        }
    }

    /// Returns once every closed member whose deliveries are all settled
    /// has committed and left (not bounded: the caller bounds it).
    pub(super) async fn settled_members_left(&self) {
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            if !self.lock().iter().any(|m| m.drained()) {
                return;
            }
            left.await;
        }
    }

    fn remove(&self, member: &Arc<Member>) {
        self.lock().retain(|m| !Arc::ptr_eq(m, member));
        self.left.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Member>>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
