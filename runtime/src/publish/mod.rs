//! Publishing events: [`Bus`] sets the wire contract's headers, awaits the
//! PubAck and retries lost acks with the same `Nats-Msg-Id`.

mod error;
pub mod headers;

pub use error::{PublishError, PublishErrorKind};

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use time::format_description::well_known::Rfc3339;

use crate::event::Event;

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

/// Publishes typed events to JetStream.
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
    client: async_nats::Client,
    js: jetstream::Context,
    source: String,
    attempts: u32,
}

impl Bus {
    /// A bus on an existing connection; `source` names the publishing
    /// service (`ce-source`).
    pub fn new(client: async_nats::Client, source: impl Into<String>) -> Bus {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(5));
        Bus {
            inner: Arc::new(Inner {
                client,
                js,
                source: source.into(),
                attempts: 3,
            }),
        }
    }

    /// The underlying connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
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
            let message = PublishMessage::build()
                .payload(payload.clone())
                .headers(headers);
            let result = match self.inner.js.send_publish(subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            use jetstream::context::PublishErrorKind as K;
            match result {
                Ok(ack) => {
                    return Ok(PubAck {
                        stream: ack.stream,
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e) if e.kind() == K::TimedOut || e.kind() == K::BrokenPipe => {
                    tracing::warn!(%subject, attempt, error = %e, "no PubAck yet; retrying with the same event id");
                    last = Some(e);
                }
                Err(e) => {
                    let kind = match e.kind() {
                        K::StreamNotFound => PublishErrorKind::NoStream,
                        K::MaxPayloadExceeded => PublishErrorKind::TooLarge,
                        _ => PublishErrorKind::Rejected,
                    };
                    return Err(PublishError::new(subject.as_str(), kind, Some(e.into())));
                }
            }
        }
        Err(PublishError::new(
            subject.as_str(),
            PublishErrorKind::Timeout { attempts },
            last.map(|e| e.into()),
        ))
    }
}
