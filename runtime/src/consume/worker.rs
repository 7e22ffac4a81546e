//! One message: decode, call the handler (catching panics, sending
//! progress acks), then ack / nak / dead-letter + term.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Binding;
use crate::dlq;
use crate::handler::context::Inner;
use crate::handler::{Context, Extensions, Handler, HandlerError};
use crate::publish::{Bus, headers};
use crate::retry::Action;
use crate::telemetry::Outcome;
use crate::transport::{Acker, Delivery, Signal};

pub(super) struct Shared<H> {
    pub(super) handler: Arc<H>,
    pub(super) binding: Arc<Binding>,
    pub(super) bus: Bus,
    pub(super) extensions: Arc<Extensions>,
    /// Cancelled when the shutdown grace period is over: running handlers
    /// are dropped and their messages nak'd.
    pub(super) abort: CancellationToken,
}

impl<H: Handler> Shared<H> {
    pub(super) async fn process(&self, d: Delivery) {
        let event_id = d
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::ID))
            .map(|v| v.as_str().to_owned());
        let span = tracing::info_span!(
            "jetflow.handle",
            handler = self.binding.handler,
            subject = %d.subject,
            stream = %d.info.stream,
            consumer = %d.info.consumer,
            seq = d.info.stream_sequence,
            delivered = d.info.delivered,
            event_id = event_id.as_deref().unwrap_or(""),
            outcome = tracing::field::Empty,
        );
        self.handle(d, event_id).instrument(span).await;
    }

    async fn handle(&self, mut d: Delivery, event_id: Option<String>) {
        self.binding.stats.record(Outcome::Received);
        let decoded = self.decode(&d.subject, &d.payload);
        let headers = d.headers.take().unwrap_or_default();
        let event = match decoded {
            Ok(event) => event,
            Err(reason) => {
                let action = Action::DeadLetter { reason };
                return self.apply(action, &d, &headers).await;
            }
        };
        // The headers move into the context; `kept` reads them back for a DLQ copy.
        let ctx = Context::new(Inner {
            handler: self.binding.handler,
            event_id,
            subject: d.subject.clone(),
            info: d.info.clone(),
            headers,
            acker: Some(d.acker.clone()),
            bus: self.bus.clone(),
            extensions: self.extensions.clone(),
        });
        let kept = ctx.clone();
        let Some(result) = self.call(event, ctx, &d.acker).await else {
            // Aborted at the end of the shutdown grace period.
            tracing::Span::current().record("outcome", "aborted");
            self.signal(&d.acker, Signal::Nak(None)).await;
            return;
        };
        let action = self
            .binding
            .retry
            .decide(d.info.delivered, result.as_ref().map(|_| ()));
        if let (Err(error), Action::Nak(delay)) = (&result, &action) {
            tracing::warn!(%error, ?delay, "handler failed; retrying after delay");
        }
        self.apply(action, &d, kept.headers()).await;
    }

    fn decode(&self, subject: &str, payload: &[u8]) -> Result<H::Event, String> {
        crate::event::decode_subject::<H::Event>(subject, payload).map_err(|e| e.to_string())
    }

    /// Runs the handler, sending `+WPI` every ack_wait/2 while it runs.
    /// `None` when aborted by shutdown.
    async fn call(
        &self,
        event: H::Event,
        ctx: Context,
        acker: &Acker,
    ) -> Option<Result<(), HandlerError>> {
        let fut = AssertUnwindSafe(self.handler.call(event, ctx)).catch_unwind();
        tokio::pin!(fut);
        let every = (self.binding.ack_wait / 2).max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => {
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
                _ = ticker.tick() => {
                    tracing::debug!("handler still running; sending in-progress ack");
                    self.signal(acker, Signal::Progress).await;
                }
                () = self.abort.cancelled() => return None,
            }
        }
    }

    async fn apply(&self, action: Action, d: &Delivery, headers: &async_nats::HeaderMap) {
        let span = tracing::Span::current();
        let acker = &d.acker;
        match action {
            Action::Ack => {
                span.record("outcome", "ack");
                self.binding.stats.record(Outcome::Acked);
                self.signal(acker, Signal::Ack).await;
            }
            Action::Nak(delay) => {
                span.record("outcome", "nak");
                self.binding.stats.record(Outcome::Retried);
                self.signal(acker, Signal::Nak(Some(delay))).await;
            }
            Action::DeadLetter { reason } => {
                if !self.binding.dead_letter {
                    span.record("outcome", "term");
                    self.binding.stats.record(Outcome::Terminated);
                    tracing::error!(%reason, "terminating message (dead-lettering is off for this handler)");
                    self.signal(acker, Signal::Term).await;
                    return;
                }
                let record = dlq::Record {
                    group: &self.binding.group,
                    handler: self.binding.handler,
                    subject: &d.subject,
                    stream: &d.info.stream,
                    sequence: d.info.stream_sequence,
                    delivered: d.info.delivered,
                    reason: &reason,
                };
                match dlq::capture(&self.bus, record, Some(headers), d.payload.clone()).await {
                    Ok(ack) => {
                        span.record("outcome", "dead-lettered");
                        self.binding.stats.record(Outcome::DeadLettered);
                        tracing::error!(%reason, dlq_seq = ack.sequence, "dead-lettered message, then terminated it");
                        self.signal(acker, Signal::Term).await;
                    }
                    Err(e) => {
                        span.record("outcome", "dlq-failed");
                        self.binding.stats.record(Outcome::Retried);
                        let delay = self.binding.retry.delay(d.info.delivered);
                        tracing::error!(%reason, error = %e, ?delay, "could not copy the message to the DLQ; leaving it for redelivery instead of terminating it");
                        self.signal(acker, Signal::Nak(Some(delay))).await;
                    }
                }
            }
        }
    }

    async fn signal(&self, acker: &Acker, signal: Signal) {
        if let Err(e) = acker.signal(signal).await {
            tracing::warn!(error = %e, ?signal, "could not send ack signal; the server will redeliver after ack_wait");
        }
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
