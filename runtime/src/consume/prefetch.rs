//! The prefetch buffer: messages received ahead of the handler calls, so
//! that a handler (even at concurrency 1) never waits a round trip for its
//! next message — and the guarantee that makes it safe: no message reaches
//! its ack wait while it waits here.
//!
//! - **Sized by what the handler can finish**: at most `prefetch` messages
//!   (the handler option) and `prefetch_bytes` payload bytes (the app's),
//!   and at most what the handler slots finish within half the ack wait at
//!   the handler's observed duration (a moving average). Until the first
//!   call is measured the limit is `prefetch`.
//! - **Kept alive**: once the oldest buffered message has waited a quarter
//!   of the ack wait (since it arrived or since its last progress signal),
//!   every buffered message gets a progress signal. A handler call sends its
//!   own every half ack wait from its start, so a message's deadline is
//!   always at least a quarter of the ack wait away.
//! - **Given back** for immediate redelivery when the subscription ends
//!   (a graceful stop, a lost subscription).
//!
//! Transport-neutral; where a transport has no progress signals the
//! runtime sets `prefetch` to 0 (and refuses an explicit one at start-up).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::transport::{Acker, Message, Settle};

/// One message waiting before its call, and when its ack wait last
/// started (arrival or last progress signal).
pub(super) struct Waiting<A> {
    pub(super) message: Message<A>,
    pub(super) since: Instant,
}

impl<A: Acker> Waiting<A> {
    pub(super) fn new(message: Message<A>) -> Self {
        Waiting {
            message,
            since: Instant::now(),
        }
    }

    /// Sends a progress signal, restarting the message's ack wait.
    pub(super) async fn keep_alive(&mut self, now: Instant) {
        if let Err(e) = self.message.acker.settle(Settle::Progress).await {
            tracing::warn!(error = %e, "could not send progress for a waiting message");
        }
        self.since = now;
    }
}

/// Gives `message` back for immediate redelivery.
pub(super) async fn give_back<A: Acker>(message: Message<A>) {
    if let Err(e) = message.acker.settle(Settle::Retry(Duration::ZERO)).await {
        tracing::warn!(error = %e, "could not give a waiting message back; it returns after its ack wait");
    }
}

pub(super) struct Prefetch<A> {
    waiting: VecDeque<Waiting<A>>,
    bytes: usize,
    /// `prefetch`: the most messages buffered.
    max: usize,
    /// The most payload bytes buffered.
    max_bytes: usize,
    /// `None` when nothing expires (notifications): no progress signals.
    pub(super) ack_wait: Option<Duration>,
    concurrency: usize,
    /// Moving average of a handler call's duration; `None` until one ended.
    typical: Option<Duration>,
}

impl<A: Acker> Prefetch<A> {
    /// `ack_wait`: `None` when buffered messages cannot expire.
    pub(super) fn new(
        max: usize,
        max_bytes: usize,
        ack_wait: Option<Duration>,
        concurrency: usize,
    ) -> Self {
        Prefetch {
            waiting: VecDeque::new(),
            bytes: 0,
            max,
            max_bytes,
            ack_wait,
            concurrency,
            typical: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// The most messages the buffer may ever hold (a transport yielding
    /// more than this beyond the handler slots broke its credit contract).
    pub(super) fn capacity(&self) -> usize {
        self.max
    }

    /// How many messages the buffer should hold now: what the handler
    /// slots finish within half the ack wait, within `prefetch`, and
    /// nothing more while the byte limit is reached.
    pub(super) fn target(&self) -> usize {
        if self.max == 0 || (self.bytes >= self.max_bytes && !self.waiting.is_empty()) {
            return 0;
        }
        let (Some(typical), Some(ack_wait)) = (self.typical, self.ack_wait) else {
            return self.max;
        };
        let budget = (ack_wait / 2).as_nanos();
        let per_slot = budget / typical.as_nanos().max(1);
        let fits = per_slot.saturating_mul(self.concurrency as u128);
        usize::try_from(fits)
            .unwrap_or(usize::MAX)
            .clamp(1, self.max)
    }

    /// A handler call took `took`.
    pub(super) fn observe(&mut self, took: Duration) {
        self.typical = Some(match self.typical {
            None => took,
            Some(t) => (t * 7 + took) / 8,
        });
    }

    pub(super) fn push(&mut self, message: Message<A>) {
        self.bytes += message.payload.len();
        self.waiting.push_back(Waiting::new(message));
    }

    pub(super) fn pop(&mut self) -> Option<Message<A>> {
        let w = self.waiting.pop_front()?;
        self.bytes -= w.message.payload.len();
        Some(w.message)
    }

    /// When the buffer next needs progress signals; `None` if never.
    pub(super) fn refresh_at(&self) -> Option<Instant> {
        let every = self.ack_wait? / 4;
        // Oldest first: `since` never decreases along the queue.
        self.waiting.front().map(|w| w.since + every)
    }

    /// Sends a progress signal for every buffered message (all at once,
    /// which keeps `since` ordered along the queue).
    pub(super) async fn refresh(&mut self) {
        let now = Instant::now();
        tracing::debug!(
            messages = self.waiting.len(),
            "messages waited in the prefetch buffer for a quarter of the ack wait; sending progress"
        );
        for w in &mut self.waiting {
            w.keep_alive(now).await;
        }
    }

    /// Gives every buffered message back for immediate redelivery; returns
    /// how many.
    pub(super) async fn give_back(&mut self) -> usize {
        let mut given = 0;
        while let Some(m) = self.pop() {
            give_back(m).await;
            given += 1;
        }
        given
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acker that needs nothing (the target math never settles).
    #[derive(Clone, Debug)]
    struct Nothing;
    impl Acker for Nothing {
        async fn settle(&self, _: Settle) -> Result<(), crate::transport::SettleError> {
            Ok(())
        }
    }

    fn prefetch(max: usize, ack_wait_secs: u64, concurrency: usize) -> Prefetch<Nothing> {
        Prefetch::new(
            max,
            1 << 20,
            Some(Duration::from_secs(ack_wait_secs)),
            concurrency,
        )
    }

    #[test]
    fn target_is_the_maximum_until_a_call_is_measured() {
        assert_eq!(prefetch(256, 30, 1).target(), 256);
        assert_eq!(prefetch(0, 30, 1).target(), 0);
    }

    #[test]
    fn target_is_what_the_slots_finish_in_half_the_ack_wait() {
        let mut p = prefetch(256, 10, 1);
        p.observe(Duration::from_secs(1));
        assert_eq!(p.target(), 5, "5s of budget at 1s per message");
        let mut p = prefetch(256, 10, 4);
        p.observe(Duration::from_secs(1));
        assert_eq!(p.target(), 20, "four slots");
        let mut p = prefetch(256, 1, 1);
        p.observe(Duration::from_secs(3));
        assert_eq!(p.target(), 1, "never below one");
        let mut p = prefetch(256, 30, 1);
        p.observe(Duration::from_micros(20));
        assert_eq!(p.target(), 256, "capped by prefetch");
    }

    #[test]
    fn average_moves_toward_new_durations() {
        let mut p = prefetch(256, 10, 1);
        p.observe(Duration::from_millis(800));
        p.observe(Duration::from_millis(0));
        assert_eq!(p.typical, Some(Duration::from_millis(700)));
    }

    #[test]
    fn without_an_ack_wait_nothing_is_refreshed() {
        let p: Prefetch<Nothing> = Prefetch::new(8, 1 << 20, None, 1);
        assert_eq!(p.refresh_at(), None);
    }
}
