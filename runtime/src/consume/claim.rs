//! The idempotency steps of one delivery of an idempotent handler: claim
//! before the call, complete before the ack, release before a retry —
//! pausing the handler's consumption while the store cannot be reached.

use std::time::Duration;

use super::worker::Shared;
use crate::handler::HandlerError;
use crate::idempotency::{Claim, ClaimToken, Key, StoreError, StoreErrorKind};
use crate::telemetry::Outcome;
use crate::transport::{Acker, Settle};

/// What the claim of a delivery decided.
pub(super) enum Claimed {
    /// Run the handler; complete or release with the token.
    Run(ClaimToken),
    /// Already handled: acked without calling the handler (done here).
    Skipped,
    /// Held by a live replica, or the claim failed: given back to be
    /// tried later (done here).
    GivenBack,
}

/// The first wait after the store failed; doubles up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const MAX_WAIT: Duration = Duration::from_secs(2);
/// The shortest delay before a delivery held elsewhere comes back.
const MIN_HELD_DELAY: Duration = Duration::from_millis(50);

/// How a wait for the store ended.
enum Waited {
    Elapsed,
    Stopping,
    Aborted,
}

impl Shared {
    /// Claims `key` for this delivery (waiting, paused, while the store is
    /// unreachable). Settles the delivery itself unless the handler is to run.
    pub(super) async fn claim<A: Acker>(&self, key: &Key, acker: &A, delivered: u64) -> Claimed {
        let Some(store) = &self.binding.idempotency else {
            unreachable!("claim is only called for an idempotent handler")
        };
        let mut paused = None;
        let mut wait = FIRST_WAIT;
        let mut ticker = None;
        loop {
            let error = match store.claim(key, self.binding.ack_wait).await {
                Ok(Claim::Claimed(token)) => return Claimed::Run(token),
                Ok(Claim::AlreadyDone) => {
                    drop(paused);
                    self.skip(acker).await;
                    return Claimed::Skipped;
                }
                Ok(Claim::HeldElsewhere { retry_after }) => {
                    drop(paused);
                    let delay = retry_after.max(MIN_HELD_DELAY);
                    tracing::Span::current().record("outcome", "held elsewhere");
                    tracing::info!(event_id = %key.event_id, ?delay, "the event is claimed by a live replica; giving this delivery back until its claim ends");
                    self.binding.stats.record(Outcome::Retried);
                    self.retry(delay, acker).await;
                    return Claimed::GivenBack;
                }
                Err(e) => e,
            };
            if error.kind() != StoreErrorKind::Unavailable {
                drop(paused);
                let delay = self.binding.retry.delay(delivered);
                tracing::error!(error = %error, ?delay, "cannot claim the event; retrying after the delay");
                self.binding.stats.record(Outcome::Retried);
                self.retry(delay, acker).await;
                return Claimed::GivenBack;
            }
            if paused.is_none() {
                paused = Some(self.pause.enter(format!("{}: {error}", store.describe())));
                tracing::warn!(error = %error, event_id = %key.event_id, "cannot reach the idempotency store to claim the event; holding the delivery and trying again");
            }
            match self
                .wait_for_store(&mut wait, &mut ticker, acker, true)
                .await
            {
                Waited::Elapsed => {}
                Waited::Stopping | Waited::Aborted => {
                    tracing::Span::current().record("outcome", "given back");
                    self.settle(acker, Settle::Retry(Duration::ZERO)).await;
                    return Claimed::GivenBack;
                }
            }
        }
    }

    /// Marks `key` done after the handler's `Ok`, before the ack (waiting,
    /// paused, while the store is unreachable, until the shutdown grace
    /// period ends). An error: the store rolled the claim back with the
    /// handler's writes ([`StoreErrorKind::RolledBack`]), so the delivery
    /// is a failure to retry.
    pub(super) async fn complete<A: Acker>(
        &self,
        key: &Key,
        token: &ClaimToken,
        acker: &A,
    ) -> Result<(), HandlerError> {
        let Some(store) = &self.binding.idempotency else {
            return Ok(());
        };
        let mut paused = None;
        let mut wait = FIRST_WAIT;
        let mut ticker = None;
        loop {
            let error: StoreError = match store.complete(key, token).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            match error.kind() {
                StoreErrorKind::Unavailable => {}
                StoreErrorKind::RolledBack => return Err(HandlerError::retry(error)),
                StoreErrorKind::LeaseLost => {
                    tracing::warn!(error = %error, event_id = %key.event_id, "the handler ran longer than its claim's lease and another delivery claimed the event: its effect may have run twice (raise `ack_wait`, which is the lease)");
                    return Ok(());
                }
                _ => {
                    tracing::error!(error = %error, event_id = %key.event_id, "cannot mark the event done; acking it anyway (the handler succeeded)");
                    return Ok(());
                }
            }
            if paused.is_none() {
                paused = Some(self.pause.enter(format!("{}: {error}", store.describe())));
                tracing::warn!(error = %error, event_id = %key.event_id, "cannot reach the idempotency store to mark the event done; holding the delivery and trying again");
            }
            if let Waited::Aborted = self
                .wait_for_store(&mut wait, &mut ticker, acker, false)
                .await
            {
                tracing::warn!(event_id = %key.event_id, "the shutdown grace period ended before the store could mark the event done; acking it unmarked (a duplicate published later would run again)");
                return Ok(());
            }
        }
    }

    /// Gives the claim up before a retry or a dead-letter (one attempt: a
    /// claim that cannot be released runs out with its lease).
    pub(super) async fn release(&self, key: &Key, token: &ClaimToken) {
        let Some(store) = &self.binding.idempotency else {
            return;
        };
        if let Err(e) = store.release(key, token).await {
            tracing::warn!(error = %e, event_id = %key.event_id, "cannot release the claim; it runs out with its lease");
        }
    }

    /// Acks a delivery whose event is already done, without the handler.
    async fn skip<A: Acker>(&self, acker: &A) {
        tracing::Span::current().record("outcome", "skipped");
        tracing::debug!("event already handled; acking without calling the handler");
        self.binding.stats.record(Outcome::IdempotentSkipped);
        self.settle(acker, Settle::Ack).await;
    }

    /// Waits `wait` (then doubles it, capped) before the store is tried
    /// again, keeping the delivery alive with progress signals; a stop
    /// ends the wait when `stop_ends_it`, the grace period's end always.
    async fn wait_for_store<A: Acker>(
        &self,
        wait: &mut Duration,
        ticker: &mut Option<tokio::time::Interval>,
        acker: &A,
        stop_ends_it: bool,
    ) -> Waited {
        if ticker.is_none() && self.binding.caps.progress {
            // the delivery may have waited already: reset its deadline now
            self.settle(acker, Settle::Progress).await;
            let every = (self.binding.ack_wait / 2).max(Duration::from_millis(1));
            *ticker = Some(tokio::time::interval_at(
                tokio::time::Instant::now() + every,
                every,
            ));
        }
        let sleep = tokio::time::sleep(*wait);
        *wait = (*wait * 2).min(MAX_WAIT);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                () = self.abort.cancelled() => return Waited::Aborted,
                () = self.stopping.cancelled(), if stop_ends_it => return Waited::Stopping,
                () = &mut sleep => return Waited::Elapsed,
                _ = super::worker::tick(ticker) => self.settle(acker, Settle::Progress).await,
            }
        }
    }
}
