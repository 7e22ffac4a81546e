//! One message: decode, call the handler (catching panics, sending
//! progress signals), then ack / retry / dead-letter + reject, emulating
//! what the broker lacks: a delay it cannot wait is waited here, and a
//! message it cannot redeliver (a notification) is retried here — as is a
//! message of an ordered handler, whose key's later events wait behind it.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::claim::Claimed;
use super::pause::Pause;
use super::{Binding, Process};
use crate::dlq;
use crate::handler::context::{Inner, NoProgress, WithProgress};
use crate::handler::{BoxFuture, Context, Extensions, HandlerError};
use crate::idempotency::{self, ClaimToken, Key};
use crate::publish::Bus;
use crate::retry::Action;
use crate::telemetry::{Outcome, traced};
use crate::transport::{Acker, DeliveryInfo, Headers, Message, Settle};

pub(super) struct Shared {
    pub(super) handler: Arc<dyn Process>,
    pub(super) binding: Arc<Binding>,
    pub(super) bus: Bus,
    pub(super) extensions: Arc<Extensions>,
    /// Cancelled when the app stops: a retry delay waited here ends early.
    pub(super) stopping: CancellationToken,
    /// Cancelled when the shutdown grace period is over: running handlers
    /// are dropped and their messages given back.
    pub(super) abort: CancellationToken,
    /// Why messages whose DLQ copy failed were dead-lettered, by stream
    /// sequence, so the copy tried at their next delivery carries the
    /// handler's error (bounded; a redelivery to another replica says
    /// that the last delivery did not settle instead).
    pub(super) refused: Mutex<HashMap<u64, String>>,
    /// Settlements sent once the app is stopping: unconfirmed if the final
    /// flush fails.
    pub(super) settled_while_stopping: AtomicUsize,
    /// Consumption paused while the idempotency store cannot be reached.
    pub(super) pause: Pause,
}

/// At most this many reasons are kept for DLQ copies to try again.
const REFUSED_REASONS: usize = 4096;

/// How a wait for a retry delay ended.
enum Waited {
    Elapsed,
    /// The app is stopping.
    Stopping,
    Aborted,
}

impl Shared {
    pub(super) async fn process<A: Acker>(&self, m: Message<A>) {
        let event_id = crate::publish::received_id(&m.headers).map(str::to_owned);
        let (span, trace_id) = traced::handler_span(traced::Delivery {
            system: self.bus.transport().system(),
            handler: self.binding.handler,
            group: &self.binding.group,
            subject: &m.subject,
            stream: &m.info.stream,
            consumer: &m.info.consumer,
            seq: m.info.stream_sequence,
            delivered: m.info.delivered,
            event_id: event_id.as_deref().unwrap_or(""),
            headers: &m.headers,
        });
        let _in_flight = self.binding.stats.metrics().in_flight();
        self.handle(m, event_id, trace_id).instrument(span).await;
    }

    async fn handle<A: Acker>(
        &self,
        m: Message<A>,
        event_id: Option<String>,
        trace_id: Option<u128>,
    ) {
        let Message {
            subject,
            mut headers,
            payload,
            mut info,
            acker,
            ..
        } = m;
        let mut subject = Some(subject);
        // An idempotent handler's claim key, and its claim once made.
        let key = self.binding.idempotency.is_some().then(|| {
            Key::new(
                self.binding.group.clone(),
                idempotency::event_id(&headers, &info),
            )
        });
        let mut claim: Option<ClaimToken> = None;
        // More than one attempt only where the broker cannot redeliver.
        loop {
            self.binding.stats.record(Outcome::Received);
            let ctx = self.context(
                subject.take().unwrap_or_default(),
                event_id.clone(),
                trace_id,
                info.clone(),
                headers,
                &acker,
            );
            // `kept` reads the subject and headers back after the call.
            let kept = ctx.clone();
            if let Some(action) = self.binding.retry.exhausted(info.delivered) {
                // An idempotent handler's event already done is acked, not
                // dead-lettered; one held elsewhere is not ours to end.
                if let Some(key) = &key {
                    let token = match claim.take() {
                        Some(token) => token,
                        None => match self.claim(key, &acker, info.delivered).await {
                            Claimed::Run(token) => token,
                            Claimed::Skipped | Claimed::GivenBack => return,
                        },
                    };
                    self.release(key, &token).await;
                }
                // the handler's own error, when this replica kept it
                let action = match self.take_refused(info.stream_sequence) {
                    Some(reason) => Action::DeadLetter { reason },
                    None => action,
                };
                return self.apply(action, &kept, &info, &payload, &acker).await;
            }
            let call = match self.handler.call(kept.subject(), &payload, ctx) {
                Ok(call) => call,
                Err(e) => {
                    self.binding.stats.record(Outcome::Undecodable);
                    let action = Action::DeadLetter {
                        reason: e.to_string(),
                    };
                    return self.apply(action, &kept, &info, &payload, &acker).await;
                }
            };
            if let Some(key) = &key
                && claim.is_none()
            {
                match self.claim(key, &acker, info.delivered).await {
                    Claimed::Run(token) => claim = Some(token),
                    Claimed::Skipped | Claimed::GivenBack => return,
                }
            }
            if let Some(token) = &claim {
                kept.set_claim(token.clone());
            }
            let Some(result) = self.call(call, &acker).await else {
                // Aborted at the end of the shutdown grace period.
                tracing::Span::current().record("outcome", "aborted");
                self.settle(&acker, Settle::Retry(Duration::ZERO)).await;
                return;
            };
            let mut action = self
                .binding
                .retry
                .decide(info.delivered, result.as_ref().map(|_| ()));
            // An idempotent handler's claim: marked done before the ack
            // (a store atomic with the effect may roll both back: then it
            // is a failure), released before anything else, so the next
            // attempt claims afresh.
            if let (Some(key), Some(token)) = (&key, claim.take()) {
                if let Action::Ack = action {
                    if let Err(e) = self.complete(key, &token, &acker).await {
                        tracing::warn!(error = %e, "the claim and the handler's writes were rolled back; retrying");
                        action = self.binding.retry.decide(info.delivered, Err(&e));
                    }
                } else {
                    self.release(key, &token).await;
                }
            }
            if let (Err(error), Action::Nak(delay)) = (&result, &action) {
                tracing::warn!(%error, ?delay, "handler failed; retrying after delay");
            }
            match action {
                Action::Nak(delay) if !self.binding.caps.redelivery || self.binding.ordered => {
                    // Nothing would bring it back, or its key's later events
                    // wait behind it: retry here, after the delay.
                    self.binding.stats.record(Outcome::Retried);
                    match self.wait(delay, &acker).await {
                        Waited::Elapsed => {}
                        Waited::Stopping | Waited::Aborted if self.binding.caps.redelivery => {
                            tracing::Span::current().record("outcome", "given back");
                            self.settle(&acker, Settle::Retry(Duration::ZERO)).await;
                            return;
                        }
                        Waited::Stopping | Waited::Aborted => {
                            tracing::Span::current().record("outcome", "dropped");
                            tracing::warn!(
                                "the app stops before the retry; the notification is dropped (nothing stores it)"
                            );
                            return;
                        }
                    }
                    info.delivered += 1;
                    tracing::Span::current().record("delivered", info.delivered as i64);
                    subject = Some(kept.subject().to_owned());
                    headers = kept.headers().clone();
                }
                action => return self.apply(action, &kept, &info, &payload, &acker).await,
            }
        }
    }

    fn context<A: Acker>(
        &self,
        subject: String,
        event_id: Option<String>,
        trace_id: Option<u128>,
        info: DeliveryInfo,
        headers: Headers,
        acker: &A,
    ) -> Context {
        macro_rules! inner {
            ($progress:expr) => {
                Inner {
                    handler: self.binding.handler,
                    event_id,
                    trace_id,
                    subject,
                    info,
                    headers,
                    bus: self.bus.clone(),
                    extensions: self.extensions.clone(),
                    claim: Default::default(),
                    progress: $progress,
                }
            };
        }
        if self.binding.caps.progress {
            Context::new(inner!(WithProgress(acker.clone())))
        } else {
            Context::new(inner!(NoProgress))
        }
    }

    /// Runs the handler, sending progress every ack_wait/2 while it runs.
    /// `None` when aborted by shutdown.
    async fn call<A: Acker>(
        &self,
        call: BoxFuture<'static, Result<(), HandlerError>>,
        acker: &A,
    ) -> Option<Result<(), HandlerError>> {
        let fut = AssertUnwindSafe(call).catch_unwind();
        tokio::pin!(fut);
        let mut ticker = self.progress_ticker();
        let metrics = self.binding.stats.metrics();
        let timer = metrics.call_timer();
        loop {
            tokio::select! {
                biased;
                out = &mut fut => {
                    metrics.call_ended(timer);
                    return Some(match out {
                        Ok(r) => r,
                        Err(panic) => {
                            let text = panic_text(&*panic);
                            self.binding.stats.record(Outcome::Panicked);
                            tracing::error!(panic = %text, "handler panicked; treating it as a retryable failure");
                            Err(HandlerError::retry(format!("handler panicked: {text}")))
                        }
                    });
                }
                _ = tick(&mut ticker) => {
                    tracing::debug!("handler still running; sending in-progress");
                    self.settle(acker, Settle::Progress).await;
                }
                () = self.abort.cancelled() => return None,
            }
        }
    }

    /// Every ack_wait/2, where the broker has progress signals.
    fn progress_ticker(&self) -> Option<tokio::time::Interval> {
        self.binding.caps.progress.then(|| {
            let every = (self.binding.ack_wait / 2).max(Duration::from_millis(1));
            tokio::time::interval_at(tokio::time::Instant::now() + every, every)
        })
    }

    /// Waits out a retry delay the broker cannot wait, keeping the message
    /// alive with progress signals meanwhile.
    async fn wait<A: Acker>(&self, delay: Duration, acker: &A) -> Waited {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        let mut ticker = self.progress_ticker();
        loop {
            tokio::select! {
                biased;
                () = self.abort.cancelled() => return Waited::Aborted,
                () = self.stopping.cancelled() => return Waited::Stopping,
                () = &mut sleep => return Waited::Elapsed,
                _ = tick(&mut ticker) => self.settle(acker, Settle::Progress).await,
            }
        }
    }

    async fn apply<A: Acker>(
        &self,
        action: Action,
        ctx: &Context,
        info: &DeliveryInfo,
        payload: &bytes::Bytes,
        acker: &A,
    ) {
        let span = tracing::Span::current();
        let stats = &self.binding.stats;
        match action {
            Action::Ack => {
                span.record("outcome", "ack");
                stats.record(Outcome::Acked);
                self.settle(acker, Settle::Ack).await;
                stats.metrics().acked(info.published);
            }
            Action::Nak(delay) => {
                span.record("outcome", "retry");
                stats.record(Outcome::Retried);
                self.retry(delay, acker).await;
            }
            Action::DeadLetter { reason } => {
                if !self.binding.caps.redelivery {
                    span.record("outcome", "dropped");
                    stats.record(Outcome::Terminated);
                    tracing::error!(%reason, "dropping the notification (nothing stores it, so it cannot be dead-lettered)");
                    return;
                }
                if !self.binding.dead_letter {
                    span.record("outcome", "reject");
                    stats.record(Outcome::Terminated);
                    tracing::error!(%reason, "rejecting the message (dead-lettering is off for this handler)");
                    self.settle(acker, Settle::Reject).await;
                    return;
                }
                let record = dlq::Record {
                    group: &self.binding.group,
                    handler: self.binding.handler,
                    subject: ctx.subject(),
                    stream: &info.stream,
                    sequence: info.stream_sequence,
                    delivered: info.delivered,
                    reason: &reason,
                };
                match dlq::capture(&self.bus, record, ctx.headers(), payload.clone()).await {
                    Ok(ack) => {
                        self.take_refused(info.stream_sequence);
                        span.record("outcome", "dead-lettered");
                        stats.record(Outcome::DeadLettered);
                        tracing::error!(%reason, dlq_seq = ack.sequence, "dead-lettered message, then rejected it");
                        self.settle(acker, Settle::Reject).await;
                    }
                    Err(e) => {
                        // Not rejected, so not lost: the broker delivers it
                        // again (it has no delivery limit of its own) and
                        // that delivery, over the handler's budget, tries
                        // the copy again without calling the handler.
                        span.record("outcome", "dlq-failed");
                        stats.record(Outcome::DeadLetterFailed);
                        self.keep_refused(info.stream_sequence, &reason);
                        let delay = self.binding.retry.delay(info.delivered);
                        tracing::error!(%reason, error = %e, ?delay, "could not copy the message to the DLQ; it stays in its stream and the copy is tried again at its next delivery, after the delay");
                        self.retry(delay, acker).await;
                    }
                }
            }
        }
    }

    fn refused_reasons(&self) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps why the message at `sequence` was dead-lettered, for the copy
    /// tried again at its next delivery (while there is room).
    fn keep_refused(&self, sequence: u64, reason: &str) {
        let mut kept = self.refused_reasons();
        if kept.len() < REFUSED_REASONS {
            kept.insert(sequence, reason.to_owned());
        }
    }

    /// Takes the reason kept for the message at `sequence`.
    fn take_refused(&self, sequence: u64) -> Option<String> {
        self.refused_reasons().remove(&sequence)
    }

    /// Asks for a redelivery after `delay`: on the broker where it can
    /// wait, else after waiting here.
    pub(super) async fn retry<A: Acker>(&self, delay: Duration, acker: &A) {
        if !delay.is_zero() && !self.binding.caps.delayed_retry {
            if let Waited::Aborted = self.wait(delay, acker).await {
                return;
            }
            // elapsed, or stopping: either way another delivery may come now
            self.settle(acker, Settle::Retry(Duration::ZERO)).await;
            return;
        }
        self.settle(acker, Settle::Retry(delay)).await;
    }

    pub(super) async fn settle<A: Acker>(&self, acker: &A, settle: Settle) {
        if self.stopping.is_cancelled() && !matches!(settle, Settle::Progress) {
            self.settled_while_stopping.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = acker.settle(settle).await {
            tracing::warn!(error = %e, ?settle, "could not settle the message");
        }
    }
}

pub(super) async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
