//! Publishing events: [`Bus`] sets the wire contract's headers, awaits the
//! broker's acknowledgement and retries a lost one with the same message id.

mod batch;
mod profile;

pub use crate::event::headers;
pub use crate::transport::{PubAck, PublishError, PublishErrorKind};
pub use batch::{BatchError, PublishBatch};
pub use profile::WireProfile;
pub(crate) use profile::{event_headers, received_id};

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use tracing::Instrument as _;

use crate::event::{Event, Notification};
use crate::telemetry::export::{self, PublishMetrics, PublishOutcome};
use crate::telemetry::traced;
use crate::topology::{ConsumerState, Declared, TopologyError};
use crate::transport::{
    Capabilities, DynTransport, Headers, Outgoing, PublishFailure, Stored, Transport,
};

/// Publishes typed events through an app's transport (JetStream, the
/// embedded broker, Redis Streams, ...).
///
/// Every publish awaits the broker's acknowledgement; a lost one is retried
/// with the same event id, which the broker deduplicates inside the
/// stream's `duplicate_window`. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jetflow::prelude::*;
///
/// #[event(version = "v1", id = order_id)]
/// pub struct OrderCreated { pub order_id: String, pub total_cents: u64 }
///
/// #[handler(group = "billing")]
/// async fn bill(_order: OrderCreated) {}
///
/// // the app declares the `ORDER` stream; its bus publishes into it
/// let app = App::new("orders").url("memory://bus-doc").handler(bill).start().await?;
/// let ack = app.bus().publish(&OrderCreated { order_id: "A-1".into(), total_cents: 999 }).await?;
/// assert_eq!((ack.stream.as_str(), ack.sequence), ("ORDER", 1));
/// app.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Box<dyn DynTransport>,
    source: String,
    profile: WireProfile,
    attempts: u32,
    metrics: PublishMetrics,
    /// The app's streams: one that vanished is recreated when a publish
    /// finds no stream (`None`: a bus of no app).
    declared: Option<Arc<Declared>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("transport", &self.inner.transport.describe())
            .field("source", &self.inner.source)
            .field("profile", &self.inner.profile)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// A bus on `transport`; `source` names the publishing service (`ce-source`).
    pub fn on(transport: impl Transport, source: impl Into<String>) -> Bus {
        Bus::with(
            transport,
            source.into(),
            WireProfile::CloudEvents,
            None,
            PublishMetrics::new(true),
        )
    }

    /// An app's bus: a publish that finds no stream recreates the app's
    /// declared stream for its subject (by the app's policy), then retries.
    pub(crate) fn declaring(
        transport: impl Transport,
        source: String,
        profile: WireProfile,
        declared: Arc<Declared>,
        metrics: PublishMetrics,
    ) -> Bus {
        Bus::with(transport, source, profile, Some(declared), metrics)
    }

    fn with(
        transport: impl Transport,
        source: String,
        profile: WireProfile,
        declared: Option<Arc<Declared>>,
        metrics: PublishMetrics,
    ) -> Bus {
        Bus {
            inner: Arc::new(Inner {
                transport: Box::new(transport),
                source,
                profile,
                attempts: 3,
                declared,
                metrics,
            }),
        }
    }

    /// The bus's publish metrics.
    pub(crate) fn metrics(&self) -> &PublishMetrics {
        &self.inner.metrics
    }

    /// Which transport this bus uses, for logs: `JetStream on nats-server
    /// 2.15.1 at 127.0.0.1` or `the embedded broker memory://name`.
    pub fn transport_name(&self) -> String {
        self.inner.transport.describe()
    }

    /// What the bus's transport does natively.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.transport.capabilities()
    }

    pub(crate) fn transport(&self) -> &dyn DynTransport {
        &*self.inner.transport
    }

    /// The messaging system of the transport, for spans.
    fn system(&self) -> &'static str {
        self.inner.transport.system()
    }

    /// The service name published as `ce-source`.
    pub(crate) fn source(&self) -> &str {
        &self.inner.source
    }

    /// Which headers this bus's events carry.
    pub fn wire_profile(&self) -> WireProfile {
        self.inner.profile
    }

    /// Publishes `event` on [`Event::SUBJECT`] and returns the PubAck.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PubAck, PublishError> {
        self.publish_caused(event, None, None).await
    }

    /// Sends the notification `event` on [`Event::SUBJECT`]: every
    /// listener connected now hears it (or one per queue group); no stream
    /// stores it. Returns once the broker has it; an error when not
    /// connected — it is never buffered to be sent later.
    pub async fn notify<E: Notification>(&self, event: &E) -> Result<(), PublishError> {
        self.notify_caused(event, None, None).await
    }

    pub(crate) async fn publish_caused<E: Event>(
        &self,
        event: &E,
        correlation: Option<&str>,
        causation: Option<&str>,
    ) -> Result<PubAck, PublishError> {
        let subject = E::SUBJECT;
        if E::NOTIFICATION {
            return Err(PublishError::new(
                subject,
                PublishErrorKind::Notification,
                None,
            ));
        }
        let (payload, id) = encode(event)?;
        let make_headers = || {
            event_headers::<E>(
                self.inner.profile,
                &self.inner.source,
                &id,
                correlation,
                causation,
            )
        };
        self.publish_message(
            Cow::Borrowed(subject),
            subject,
            make_headers,
            payload,
            &id,
            None,
        )
        .await
    }

    pub(crate) async fn notify_caused<E: Event>(
        &self,
        event: &E,
        correlation: Option<&str>,
        causation: Option<&str>,
    ) -> Result<(), PublishError> {
        let subject = E::SUBJECT;
        let (payload, id) = encode(event)?;
        let headers = event_headers::<E>(
            self.inner.profile,
            &self.inner.source,
            &id,
            correlation,
            causation,
        );
        self.send_notification(Outgoing::new(subject, headers, payload, id), subject)
            .await
    }

    /// Sends a notification; `label` is its subject's metrics label.
    async fn send_notification(
        &self,
        mut message: Outgoing,
        label: &'static str,
    ) -> Result<(), PublishError> {
        let subject = message.subject.clone();
        let timer = self.inner.metrics.timer();
        let span = traced::publish_span(self.system(), &subject, &message.id);
        traced::continue_from(&span, &message.headers);
        span.in_scope(|| traced::inject(&mut message.headers));
        let result = self.inner.transport.notify(message).instrument(span).await;
        let outcome = match result {
            Ok(()) => PublishOutcome::Sent,
            Err(_) => PublishOutcome::Failed,
        };
        self.inner.metrics.ended(label, outcome, timer);
        result.map_err(|failure| match failure {
            PublishFailure::Lost(e) => {
                PublishError::new(subject, PublishErrorKind::Connection, Some(e))
            }
            PublishFailure::Failed(kind, e) => PublishError::new(subject, kind, Some(e)),
        })
    }

    /// Publishes raw bytes on `subject`, as a foreign producer would: the
    /// headers are kept as given, the event id is their `ce-id` (or a fresh
    /// UUIDv7) and becomes the message id. Awaits the PubAck like
    /// [`Bus::publish`].
    ///
    /// Rejected before sending: a subject that is empty or has an empty
    /// token, a wildcard, white space or control characters, and any
    /// `Nats-*` header (jetflow owns those).
    ///
    /// ```no_run
    /// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::PublishError> {
    /// let mut headers = jetflow::Headers::new();
    /// headers.insert("ce-id", "legacy-42");
    /// bus.publish_raw("order.created.v1", headers, r#"{"order_id":"42"}"#.into()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_raw(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<PubAck, PublishError> {
        let id = raw_checks(subject, &headers)?;
        self.publish_message(
            Cow::Owned(subject.to_owned()),
            export::RAW_SUBJECT,
            || headers.clone(),
            payload,
            &id,
            Some(&headers),
        )
        .await
    }

    /// Sends raw bytes as a notification on `subject`, as a foreign
    /// producer would (see [`Bus::publish_raw`] for what is rejected).
    pub async fn notify_raw(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        let id = raw_checks(subject, &headers)?;
        let message = Outgoing::new(subject.to_owned(), headers, payload, id);
        self.send_notification(message, export::RAW_SUBJECT).await
    }

    /// Counts of the durable consumer `durable` on `stream`, on any
    /// transport: pending, ack pending, redelivered, ack floor.
    ///
    /// ```no_run
    /// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::topology::TopologyError> {
    /// let state = bus.consumer_state("ORDER", "inventory--order_created").await?;
    /// println!("{} waiting for an ack, everything up to #{} done", state.num_ack_pending, state.ack_floor);
    /// # Ok(()) }
    /// ```
    pub async fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerState, TopologyError> {
        self.inner.transport.consumer_state(stream, durable).await
    }

    /// Deletes the messages of `stream` at `sequences`.
    pub(crate) async fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> Result<usize, TopologyError> {
        self.inner
            .transport
            .delete_messages(stream, sequences)
            .await
    }

    /// Every message of `stream`, oldest first.
    pub(crate) async fn read_stream(&self, stream: &str) -> Result<Vec<Stored>, TopologyError> {
        self.inner.transport.read_stream(stream).await
    }

    /// Publishes raw bytes with the headers `make_headers` builds (once per
    /// attempt) and message id `msg_id`, retrying a lost acknowledgement
    /// with the same id. `label` is the subject's metrics label: an event
    /// type's subject, or a fixed word where the subject is not bounded.
    ///
    /// Runs in a producer span (feature `otel`) whose trace context goes
    /// into the headers; outside any span, the span continues the trace
    /// that `trace_from` names (a raw publish's or a replay's headers).
    pub(crate) async fn publish_message(
        &self,
        subject: Cow<'static, str>,
        label: &'static str,
        make_headers: impl Fn() -> Headers,
        payload: Bytes,
        msg_id: &str,
        trace_from: Option<&Headers>,
    ) -> Result<PubAck, PublishError> {
        let timer = self.inner.metrics.timer();
        let span = traced::publish_span(self.system(), &subject, msg_id);
        if let Some(headers) = trace_from {
            traced::continue_from(&span, headers);
        }
        let result = self
            .publish_attempts(subject, make_headers, payload, msg_id)
            .instrument(span)
            .await;
        self.inner.metrics.ended(label, outcome_of(&result), timer);
        result
    }

    async fn publish_attempts(
        &self,
        subject: Cow<'static, str>,
        make_headers: impl Fn() -> Headers,
        payload: Bytes,
        msg_id: &str,
    ) -> Result<PubAck, PublishError> {
        let attempts = self.inner.attempts;
        let mut last = None;
        let mut restored = false;
        for attempt in 1..=attempts {
            let mut headers = make_headers();
            traced::inject(&mut headers);
            let message = Outgoing::new(subject.clone(), headers, payload.clone(), msg_id);
            match self.inner.transport.publish(message).await {
                Ok(ack) => return Ok(ack),
                Err(PublishFailure::Lost(e)) => {
                    tracing::warn!(%subject, attempt, error = %e, "no PubAck yet; retrying with the same event id");
                    last = Some(e);
                }
                Err(PublishFailure::Failed(PublishErrorKind::NoStream, e))
                    if !restored
                        && attempt < attempts
                        && self.restore_stream_of(&subject).await =>
                {
                    restored = true;
                    last = Some(e);
                }
                Err(PublishFailure::Failed(kind, e)) => {
                    return Err(PublishError::new(subject, kind, Some(e)));
                }
            }
        }
        Err(PublishError::new(
            subject,
            PublishErrorKind::Timeout { attempts },
            last,
        ))
    }

    /// Recreates the app's declared stream that stores `subject`, when
    /// there is one and the policy allows; `true` once it exists again.
    async fn restore_stream_of(&self, subject: &str) -> bool {
        let Some(declared) = &self.inner.declared else {
            return false;
        };
        let Some(stream) = declared.stream_of(subject) else {
            return false;
        };
        declared
            .restore(self.transport(), stream)
            .await
            .unwrap_or(false)
    }
}

/// What a publish's result counts as in the metrics.
fn outcome_of(result: &Result<PubAck, PublishError>) -> PublishOutcome {
    match result {
        Ok(ack) if ack.duplicate => PublishOutcome::Duplicate,
        Ok(_) => PublishOutcome::Stored,
        Err(_) => PublishOutcome::Failed,
    }
}

/// What a raw publish must pass: a concrete subject of valid tokens, no
/// `Nats-*` header. Returns the message id: the `ce-id` header, or a fresh
/// UUIDv7.
fn raw_checks(subject: &str, headers: &Headers) -> Result<String, PublishError> {
    if let Err(e) = jetflow_rules::validate_publish_subject(subject) {
        return Err(PublishError::new(
            subject,
            PublishErrorKind::InvalidSubject,
            Some(e.into()),
        ));
    }
    if let Some((name, _)) = headers
        .iter()
        .find(|(name, _)| name.to_ascii_lowercase().starts_with("nats-"))
    {
        return Err(PublishError::new(
            subject,
            PublishErrorKind::ReservedHeader(name.to_owned()),
            None,
        ));
    }
    Ok(headers
        .get(headers::ID)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()))
}

/// JSON payload and event id of `event`.
pub(crate) fn encode<E: Event>(event: &E) -> Result<(Bytes, String), PublishError> {
    let subject = E::SUBJECT;
    let payload = serde_json::to_vec(event)
        .map_err(|e| PublishError::new(subject, PublishErrorKind::Encode, Some(e.into())))?;
    let id = match event.event_key() {
        Some(key) if key.chars().any(char::is_control) => {
            return Err(PublishError::new(
                subject,
                PublishErrorKind::InvalidKey,
                None,
            ));
        }
        Some(key) => format!("{subject}:{key}"),
        None => uuid::Uuid::now_v7().to_string(),
    };
    Ok((payload.into(), id))
}
