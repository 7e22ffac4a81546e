//! Pipelined publishing: many events sent before any acknowledgement is
//! awaited, with the guarantees of [`Bus::publish`]: every acknowledgement
//! is checked, a lost one is retried with the same message id, nothing is
//! dropped silently.

use std::borrow::Cow;

use crate::event::Event;
use crate::telemetry::{export, traced};
use crate::transport::{
    BoxError, Outgoing, PubAck, PublishError, PublishErrorKind, PublishFailure,
};
use tracing::Instrument as _;

use super::Bus;

/// Events to publish together, in order: [`send`](PublishBatch::send)
/// stores them in push order and retries the ones whose acknowledgement
/// was lost, with the same message id. On JetStream they are pipelined:
/// every message is written before any PubAck is read, one round trip for
/// the batch instead of one per event (other transports publish them one
/// after the other). From [`Bus::batch`] or
/// [`Context::batch`](crate::Context::batch).
///
/// Events of different types may share a batch; they are sent in the order
/// they were pushed. (An event whose acknowledgement was lost and that the
/// broker had not stored is stored by the retry, after the later ones.) Use it for fan-out (one handler publishing many
/// events) and bulk loads; a batch of one costs the same as
/// [`Bus::publish`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jetflow::prelude::*;
///
/// #[event(version = "v1", id = order_id)]
/// pub struct OrderCreated { pub order_id: String }
///
/// #[handler(group = "billing")]
/// async fn bill(_order: OrderCreated) {}
///
/// let app = App::new("orders").url("memory://batch-doc").handler(bill).start().await?;
/// let mut batch = app.bus().batch();
/// for i in 0..100 {
///     batch.push(&OrderCreated { order_id: format!("A-{i}") })?;
/// }
/// let acks = batch.send().await?;
/// assert_eq!(acks.len(), 100);
/// assert_eq!(acks[99].sequence, 100);
/// app.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a batch publishes nothing until `send` is awaited"]
pub struct PublishBatch {
    bus: Bus,
    correlation: Option<String>,
    causation: Option<String>,
    messages: Vec<Outgoing>,
}

/// Some events of a [`PublishBatch`] were not stored: the others were.
#[derive(Debug, thiserror::Error)]
#[error("{} of {} events of the batch were not published; the first error: {}", failed(.results), .results.len(), first(.results))]
pub struct BatchError {
    /// One result per event, in the order they were pushed.
    pub results: Vec<Result<PubAck, PublishError>>,
}

fn failed(results: &[Result<PubAck, PublishError>]) -> usize {
    results.iter().filter(|r| r.is_err()).count()
}

fn first(results: &[Result<PubAck, PublishError>]) -> String {
    results
        .iter()
        .find_map(|r| r.as_ref().err())
        .map(ToString::to_string)
        .unwrap_or_default()
}

impl PublishBatch {
    pub(crate) fn new(bus: Bus, correlation: Option<String>, causation: Option<String>) -> Self {
        PublishBatch {
            bus,
            correlation,
            causation,
            messages: Vec::new(),
        }
    }

    /// Adds `event`: encoded now, sent by [`send`](PublishBatch::send).
    /// Fails as [`Bus::publish`] would before sending (an event that cannot
    /// be encoded, a key with control characters, a notification).
    pub fn push<E: Event>(&mut self, event: &E) -> Result<&mut Self, PublishError> {
        if E::NOTIFICATION {
            return Err(PublishError::new(
                E::SUBJECT,
                PublishErrorKind::Notification,
                None,
            ));
        }
        let (payload, id) = super::encode(event)?;
        let headers = super::event_headers::<E>(
            self.bus.wire_profile(),
            self.bus.source(),
            &id,
            self.correlation.as_deref(),
            self.causation.as_deref(),
        );
        self.messages
            .push(Outgoing::new(E::SUBJECT, headers, payload, id));
        Ok(self)
    }

    /// Events pushed so far.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// No event pushed yet.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Publishes every event, pipelined, and returns their PubAcks in push
    /// order; a [`BatchError`] (with every result) if any was not stored.
    pub async fn send(self) -> Result<Vec<PubAck>, BatchError> {
        let results = self.bus.publish_pipelined(self.messages).await;
        if results.iter().all(Result::is_ok) {
            Ok(results.into_iter().filter_map(Result::ok).collect())
        } else {
            Err(BatchError { results })
        }
    }
}

impl Bus {
    /// An empty [`PublishBatch`] on this bus.
    pub fn batch(&self) -> PublishBatch {
        PublishBatch::new(self.clone(), None, None)
    }

    /// Publishes `messages` pipelined, retrying lost acknowledgements with
    /// the same message ids; one result per message, in order.
    pub(crate) async fn publish_pipelined(
        &self,
        mut messages: Vec<Outgoing>,
    ) -> Vec<Result<PubAck, PublishError>> {
        let timer = self.metrics().timer();
        let first = messages.first().map_or("", |m| &m.subject);
        let span = traced::batch_span(self.system(), first, messages.len());
        span.in_scope(|| {
            for m in &mut messages {
                traced::inject(&mut m.headers);
            }
        });
        let results = self
            .publish_pipelined_attempts(&messages)
            .instrument(span)
            .await;
        for (m, result) in messages.iter().zip(&results) {
            // a batch holds typed events, whose subjects are static
            let label = match &m.subject {
                Cow::Borrowed(subject) => subject,
                Cow::Owned(_) => export::RAW_SUBJECT,
            };
            self.metrics()
                .ended(label, super::outcome_of(result), timer);
        }
        results
    }

    async fn publish_pipelined_attempts(
        &self,
        messages: &[Outgoing],
    ) -> Vec<Result<PubAck, PublishError>> {
        let attempts = self.inner.attempts;
        let mut results: Vec<Option<Result<PubAck, PublishError>>> =
            messages.iter().map(|_| None).collect();
        let mut lost: Vec<Option<BoxError>> = messages.iter().map(|_| None).collect();
        // Indices still to publish; the last attempt gives its messages away.
        let mut todo: Vec<usize> = (0..messages.len()).collect();
        for attempt in 1..=attempts {
            if todo.is_empty() {
                break;
            }
            let batch: Vec<Outgoing> = todo.iter().map(|&i| messages[i].clone()).collect();
            let outcomes = self.inner.transport.publish_batch(batch).await;
            let mut again = Vec::new();
            for (&i, outcome) in todo.iter().zip(outcomes) {
                let subject = || Cow::clone(&messages[i].subject);
                match outcome {
                    Ok(ack) => results[i] = Some(Ok(ack)),
                    Err(PublishFailure::Lost(e)) => {
                        tracing::warn!(subject = %messages[i].subject, attempt, error = %e, "no PubAck yet; retrying with the same event id");
                        lost[i] = Some(e);
                        again.push(i);
                    }
                    Err(PublishFailure::Failed(kind, e)) => {
                        results[i] = Some(Err(PublishError::new(subject(), kind, Some(e))));
                    }
                }
            }
            todo = again;
        }
        for i in todo {
            results[i] = Some(Err(PublishError::new(
                Cow::clone(&messages[i].subject),
                PublishErrorKind::Timeout { attempts },
                lost[i].take(),
            )));
        }
        results
            .into_iter()
            .map(|r| r.expect("every message has a result: acked, failed, or out of attempts"))
            .collect()
    }
}
