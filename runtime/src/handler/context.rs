use std::fmt;
use std::sync::Arc;

use async_nats::HeaderMap;
use time::OffsetDateTime;

use super::Extensions;
use crate::event::Event;
use crate::publish::{Bus, PubAck, PublishError};
use crate::transport::{Acker, Info, Signal};

/// Metadata of the message being handled, plus the ability to publish
/// (with correlation) and to signal progress.
///
/// Take it as a handler argument: `async fn h(e: MyEvent, ctx: Context)`.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) handler: &'static str,
    pub(crate) event_id: Option<String>,
    pub(crate) subject: String,
    pub(crate) info: Info,
    pub(crate) headers: HeaderMap,
    pub(crate) acker: Option<Acker>,
    pub(crate) bus: Bus,
    pub(crate) extensions: Arc<Extensions>,
}

impl Context {
    pub(crate) fn new(inner: Inner) -> Self {
        Context {
            inner: Arc::new(inner),
        }
    }
    /// The handler's name.
    pub fn handler(&self) -> &'static str {
        self.inner.handler
    }
    /// The event id (`ce-id` header), if the producer set one.
    pub fn event_id(&self) -> Option<&str> {
        self.inner.event_id.as_deref()
    }
    /// The subject the message was published on.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }
    /// The version the message arrived as (`v1` of `order.created.v1`),
    /// before any upcast to the handler's event type; `None` for a subject
    /// without a version token.
    pub fn version(&self) -> Option<&str> {
        crate::event::version_of(&self.inner.subject)
    }
    /// The stream that stores the message.
    pub fn stream(&self) -> &str {
        &self.inner.info.stream
    }
    /// The durable consumer delivering it.
    pub fn consumer(&self) -> &str {
        &self.inner.info.consumer
    }
    /// Sequence of the message in its stream.
    pub fn stream_sequence(&self) -> u64 {
        self.inner.info.stream_sequence
    }
    /// Sequence of this delivery in the consumer.
    pub fn consumer_sequence(&self) -> u64 {
        self.inner.info.consumer_sequence
    }
    /// Delivery attempt, starting at 1.
    pub fn delivered(&self) -> u64 {
        self.inner.info.delivered
    }
    /// When the server stored the message.
    pub fn published(&self) -> OffsetDateTime {
        self.inner.info.published
    }
    /// The message headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }
    pub(crate) fn extensions(&self) -> &Extensions {
        &self.inner.extensions
    }

    /// Publishes `event`, carrying this message's correlation id (or its
    /// event id) as `ce-correlationid` and its event id as `ce-causationid`.
    /// Awaits the PubAck.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PubAck, PublishError> {
        let correlation = self
            .header(crate::publish::headers::CORRELATION_ID)
            .or(self.event_id());
        self.inner
            .bus
            .publish_caused(event, correlation, self.event_id())
            .await
    }

    /// Tells the server the handler is still working, resetting the ack
    /// wait timer. jetflow already does this automatically at half the ack
    /// wait; call it yourself only between long steps.
    pub async fn progress(&self) -> Result<(), PublishError> {
        match &self.inner.acker {
            Some(acker) => acker
                .signal(Signal::Progress)
                .await
                .map_err(PublishError::ack),
            None => Ok(()),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers.get(name).map(|v| v.as_str())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("handler", &self.inner.handler)
            .field("event_id", &self.inner.event_id)
            .field("subject", &self.inner.subject)
            .field("stream", &self.inner.info.stream)
            .field("consumer", &self.inner.info.consumer)
            .field("stream_sequence", &self.inner.info.stream_sequence)
            .field("delivered", &self.inner.info.delivered)
            .finish_non_exhaustive()
    }
}
