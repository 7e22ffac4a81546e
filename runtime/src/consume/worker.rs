//! One message: decode, call the handler (catching panics, sending
//! progress acks), then ack / nak / dead-letter + term.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Message;
use async_nats::jetstream::AckKind;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Binding;
use crate::dlq;
use crate::handler::context::Inner;
use crate::handler::{Context, Extensions, Handler, HandlerError};
use crate::publish::{Bus, headers};
use crate::retry::Action;

pub(super) struct Shared<H> {
    pub(super) handler: Arc<H>,
    pub(super) binding: Arc<Binding>,
    pub(super) bus: Bus,
    pub(super) extensions: Arc<Extensions>,
    /// Cancelled when the shutdown grace period is over: running handlers
    /// are dropped and their messages nak'd.
    pub(super) abort: CancellationToken,
}

/// Owned metadata of one delivery, parsed from its `$JS.ACK` reply subject.
struct Delivery {
    stream: String,
    consumer: String,
    stream_sequence: u64,
    consumer_sequence: u64,
    delivered: u64,
    published: time::OffsetDateTime,
}

impl<H: Handler> Shared<H> {
    pub(super) async fn process(&self, msg: Message) {
        let Some(reply) = msg.reply.clone() else {
            tracing::warn!(subject = %msg.subject, "message without a reply subject on a pull inbox; ignored");
            return;
        };
        let js_msg = async_nats::jetstream::Message {
            message: msg,
            context: self.bus.jetstream().clone(),
        };
        let d = match js_msg.info() {
            Ok(i) => Delivery {
                stream: i.stream.to_owned(),
                consumer: i.consumer.to_owned(),
                stream_sequence: i.stream_sequence,
                consumer_sequence: i.consumer_sequence,
                delivered: u64::try_from(i.delivered).unwrap_or(1),
                published: i.published,
            },
            Err(e) => {
                tracing::warn!(reply = %reply, error = %e, "cannot parse JetStream metadata; ignoring message");
                return;
            }
        };
        let msg = js_msg.message;
        let event_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::ID))
            .map(|v| v.as_str().to_owned());
        let span = tracing::info_span!(
            "jetflow.handle",
            handler = self.binding.handler,
            subject = %msg.subject,
            stream = %d.stream,
            consumer = %d.consumer,
            seq = d.stream_sequence,
            delivered = d.delivered,
            event_id = event_id.as_deref().unwrap_or(""),
            outcome = tracing::field::Empty,
        );
        self.handle(msg, reply, d, event_id).instrument(span).await;
    }

    async fn handle(
        &self,
        mut msg: Message,
        reply: async_nats::Subject,
        d: Delivery,
        event_id: Option<String>,
    ) {
        let decoded = self.decode(&msg);
        let headers = msg.headers.take().unwrap_or_default();
        let event = match decoded {
            Ok(event) => event,
            Err(reason) => {
                let action = Action::DeadLetter { reason };
                return self.apply(action, &msg, &headers, &reply, &d).await;
            }
        };
        // The headers move into the context; `kept` reads them back for a DLQ copy.
        let ctx = Context::new(Inner {
            handler: self.binding.handler,
            event_id,
            subject: msg.subject.to_string(),
            stream: d.stream.clone(),
            consumer: d.consumer.clone(),
            stream_sequence: d.stream_sequence,
            consumer_sequence: d.consumer_sequence,
            delivered: d.delivered,
            published: d.published,
            headers,
            reply: Some(reply.clone()),
            bus: self.bus.clone(),
            extensions: self.extensions.clone(),
        });
        let kept = ctx.clone();
        let Some(result) = self.call(event, ctx, &reply).await else {
            // Aborted at the end of the shutdown grace period.
            tracing::Span::current().record("outcome", "aborted");
            self.signal(&reply, AckKind::Nak(None)).await;
            return;
        };
        let action = self
            .binding
            .retry
            .decide(d.delivered, result.as_ref().map(|_| ()));
        if let (Err(error), Action::Nak(delay)) = (&result, &action) {
            tracing::warn!(%error, ?delay, "handler failed; retrying after delay");
        }
        self.apply(action, &msg, kept.headers(), &reply, &d).await;
    }

    fn decode(&self, msg: &Message) -> Result<H::Event, String> {
        crate::event::decode_subject::<H::Event>(&msg.subject, &msg.payload)
            .map_err(|e| e.to_string())
    }

    /// Runs the handler, sending `+WPI` every ack_wait/2 while it runs.
    /// `None` when aborted by shutdown.
    async fn call(
        &self,
        event: H::Event,
        ctx: Context,
        reply: &async_nats::Subject,
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
                            tracing::error!(panic = %text, "handler panicked; treating it as a retryable failure");
                            Err(HandlerError::retry(format!("handler panicked: {text}")))
                        }
                    });
                }
                _ = ticker.tick() => {
                    tracing::debug!("handler still running; sending in-progress ack");
                    self.signal(reply, AckKind::Progress).await;
                }
                () = self.abort.cancelled() => return None,
            }
        }
    }

    async fn apply(
        &self,
        action: Action,
        msg: &Message,
        headers: &async_nats::HeaderMap,
        reply: &async_nats::Subject,
        d: &Delivery,
    ) {
        let span = tracing::Span::current();
        match action {
            Action::Ack => {
                span.record("outcome", "ack");
                self.signal(reply, AckKind::Ack).await;
            }
            Action::Nak(delay) => {
                span.record("outcome", "nak");
                self.signal(reply, AckKind::Nak(Some(delay))).await;
            }
            Action::DeadLetter { reason } => {
                if !self.binding.dead_letter {
                    span.record("outcome", "term");
                    tracing::error!(%reason, "terminating message (dead-lettering is off for this handler)");
                    self.signal(reply, AckKind::Term).await;
                    return;
                }
                let record = dlq::Record {
                    group: &self.binding.group,
                    handler: self.binding.handler,
                    subject: &msg.subject,
                    stream: &d.stream,
                    sequence: d.stream_sequence,
                    delivered: d.delivered,
                    reason: &reason,
                };
                match dlq::capture(&self.bus, record, Some(headers), msg.payload.clone()).await {
                    Ok(ack) => {
                        span.record("outcome", "dead-lettered");
                        tracing::error!(%reason, dlq_seq = ack.sequence, "dead-lettered message, then terminated it");
                        self.signal(reply, AckKind::Term).await;
                    }
                    Err(e) => {
                        span.record("outcome", "dlq-failed");
                        let delay = self.binding.retry.delay(d.delivered);
                        tracing::error!(%reason, error = %e, ?delay, "could not copy the message to the DLQ; leaving it for redelivery instead of terminating it");
                        self.signal(reply, AckKind::Nak(Some(delay))).await;
                    }
                }
            }
        }
    }

    async fn signal(&self, reply: &async_nats::Subject, kind: AckKind) {
        if let Err(e) = self.bus.client().publish(reply.clone(), kind.into()).await {
            tracing::warn!(error = %e, ?kind, "could not send ack signal; the server will redeliver after ack_wait");
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
