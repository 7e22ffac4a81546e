//! Publishing events: [`Bus`] sets the wire contract's headers, awaits the
//! PubAck and retries lost acks with the same `Nats-Msg-Id`.

mod error;
pub mod headers;

pub use error::{PublishError, PublishErrorKind};

use std::sync::Arc;

use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use time::format_description::well_known::Rfc3339;

use crate::event::{Event, validate_subject_token};
use crate::memory::Broker;
use crate::transport::nats::NatsTransport;
use crate::transport::{AnyTransport, PublishFailure, Transport as _};

/// The server's acknowledgement that it stored an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubAck {
    /// Stream that stored the event.
    pub stream: String,
    /// Its sequence in that stream.
    pub sequence: u64,
    /// `true` when the server had already stored an event with the same
    /// id inside the stream's duplicate window (nothing new was stored).
    pub duplicate: bool,
}

/// Publishes typed events to JetStream (or to the embedded broker, see
/// [`Bus::on_broker`]).
///
/// Every publish awaits the PubAck; a lost ack is retried with the same
/// event id, which the server deduplicates inside the stream's
/// `duplicate_window`. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jetflow::prelude::*;
///
/// #[event(version = "v1", id = order_id)]
/// pub struct OrderCreated { pub order_id: String, pub total_cents: u64 }
///
/// let client = jetflow::__private::async_nats::connect("nats://127.0.0.1:4222").await?;
/// let bus = Bus::new(client, "orders");
/// let ack = bus.publish(&OrderCreated { order_id: "A-1".into(), total_cents: 999 }).await?;
/// println!("stored as {}#{}", ack.stream, ack.sequence);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: AnyTransport,
    source: String,
    attempts: u32,
}

impl Bus {
    /// A bus on an existing NATS connection; `source` names the publishing
    /// service (`ce-source`).
    pub fn new(client: async_nats::Client, source: impl Into<String>) -> Bus {
        Bus::with_transport(
            AnyTransport::Nats(NatsTransport::new(client, None)),
            source.into(),
        )
    }

    /// A bus on the embedded broker `broker` (see [`crate::memory`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use jetflow::{Bus, memory::Broker};
    /// let bus = Bus::on_broker(&Broker::named("bus-doc"), "orders");
    /// assert!(bus.client().is_none());
    /// assert_eq!(bus.transport_name(), "the embedded broker memory://bus-doc");
    /// # }
    /// ```
    pub fn on_broker(broker: &Broker, source: impl Into<String>) -> Bus {
        Bus::with_transport(AnyTransport::Memory(broker.connect()), source.into())
    }

    pub(crate) fn with_transport(transport: AnyTransport, source: String) -> Bus {
        Bus {
            inner: Arc::new(Inner {
                transport,
                source,
                attempts: 3,
            }),
        }
    }

    /// The NATS connection, or `None` on the embedded broker.
    pub fn client(&self) -> Option<&async_nats::Client> {
        match &self.inner.transport {
            AnyTransport::Nats(t) => Some(t.client()),
            AnyTransport::Memory(_) => None,
        }
    }

    /// Which transport this bus uses, for logs: `JetStream on nats-server
    /// 2.15.1 at 127.0.0.1` or `the embedded broker memory://name`.
    pub fn transport_name(&self) -> String {
        self.inner.transport.describe()
    }

    pub(crate) fn transport(&self) -> &AnyTransport {
        &self.inner.transport
    }

    /// Publishes `event` on [`Event::SUBJECT`] and returns the PubAck.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PubAck, PublishError> {
        self.publish_caused(event, None, None).await
    }

    pub(crate) async fn publish_caused<E: Event>(
        &self,
        event: &E,
        correlation: Option<&str>,
        causation: Option<&str>,
    ) -> Result<PubAck, PublishError> {
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
        let time = time::OffsetDateTime::now_utc().format(&Rfc3339).ok();
        let source = self.inner.source.as_str();
        // Built per attempt (almost always once) rather than cloned for a retry.
        let make_headers = || {
            let mut h = HeaderMap::new();
            h.insert(headers::SPEC_VERSION, "1.0");
            h.insert(headers::ID, id.as_str());
            h.insert(headers::TYPE, subject);
            h.insert(headers::SOURCE, source);
            if let Some(t) = &time {
                h.insert(headers::TIME, t.as_str());
            }
            h.insert(headers::CONTENT_TYPE, "application/json");
            if let Some(c) = correlation {
                h.insert(headers::CORRELATION_ID, c);
            }
            if let Some(c) = causation {
                h.insert(headers::CAUSATION_ID, c);
            }
            h
        };
        self.publish_message(
            async_nats::Subject::from_static(subject),
            make_headers,
            payload.into(),
            &id,
        )
        .await
    }

    /// Publishes raw bytes on `subject`, as a foreign producer would: the
    /// headers are kept as given, the event id is their `ce-id` (or a fresh
    /// UUIDv7) and becomes `Nats-Msg-Id`. Awaits the PubAck like
    /// [`Bus::publish`].
    ///
    /// Rejected before sending: a subject that is empty or has an empty
    /// token, a wildcard, white space or control characters, and any
    /// `Nats-*` header (jetflow owns those).
    ///
    /// ```no_run
    /// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::PublishError> {
    /// use jetflow::__private::async_nats::HeaderMap;
    /// let mut headers = HeaderMap::new();
    /// headers.insert("ce-id", "legacy-42");
    /// bus.publish_raw("order.created.v1", headers, r#"{"order_id":"42"}"#.into()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_raw(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PubAck, PublishError> {
        if subject
            .split('.')
            .any(|t| validate_subject_token(t).is_err())
        {
            return Err(PublishError::new(
                subject,
                PublishErrorKind::InvalidSubject,
                None,
            ));
        }
        if let Some((name, _)) = headers.iter().find(|(name, _)| {
            AsRef::<str>::as_ref(*name)
                .to_ascii_lowercase()
                .starts_with("nats-")
        }) {
            return Err(PublishError::new(
                subject,
                PublishErrorKind::ReservedHeader(name.to_string()),
                None,
            ));
        }
        let id = headers
            .get(headers::ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        self.publish_message(subject.to_owned().into(), || headers.clone(), payload, &id)
            .await
    }

    /// Publishes raw bytes with the headers `make_headers` builds (once per
    /// attempt) plus `Nats-Msg-Id = msg_id`, retrying a lost PubAck with the
    /// same id.
    pub(crate) async fn publish_message(
        &self,
        subject: async_nats::Subject,
        make_headers: impl Fn() -> HeaderMap,
        payload: Bytes,
        msg_id: &str,
    ) -> Result<PubAck, PublishError> {
        let attempts = self.inner.attempts;
        let mut last = None;
        for attempt in 1..=attempts {
            let mut headers = make_headers();
            headers.insert(headers::NATS_MSG_ID, HeaderValue::from(msg_id));
            let sent = self
                .inner
                .transport
                .publish(subject.clone(), headers, payload.clone())
                .await;
            match sent {
                Ok(ack) => return Ok(ack),
                Err(PublishFailure::Lost(e)) => {
                    tracing::warn!(%subject, attempt, error = %e, "no PubAck yet; retrying with the same event id");
                    last = Some(e);
                }
                Err(PublishFailure::Failed(kind, e)) => {
                    return Err(PublishError::new(subject.as_str(), kind, Some(e)));
                }
            }
        }
        Err(PublishError::new(
            subject.as_str(),
            PublishErrorKind::Timeout { attempts },
            last,
        ))
    }
}
