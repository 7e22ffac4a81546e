use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use super::{BoxFuture, Extensions};
use crate::event::{Event, Notification};
use crate::publish::{Bus, PubAck, PublishError};
use crate::transport::{Acker, DeliveryInfo, Headers, Settle, SettleError};

/// Metadata of the message being handled, plus the ability to publish
/// (with correlation) and to signal progress.
///
/// Take it as a handler argument: `async fn h(e: MyEvent, ctx: Context)`.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner<dyn Progress>>,
}

/// One delivery's context; `progress` is the transport's acker, unsized in
/// [`Context`] so that the context costs one allocation per message.
pub(crate) struct Inner<P: ?Sized> {
    pub(crate) handler: &'static str,
    pub(crate) event_id: Option<String>,
    /// The trace of the delivery (feature `otel`, with a tracing layer).
    pub(crate) trace_id: Option<u128>,
    pub(crate) subject: String,
    pub(crate) info: DeliveryInfo,
    pub(crate) headers: Headers,
    pub(crate) bus: Bus,
    pub(crate) extensions: Arc<Extensions>,
    /// The idempotency claim the handler runs under, set once claimed.
    pub(crate) claim: std::sync::OnceLock<crate::idempotency::ClaimToken>,
    pub(crate) progress: P,
}

/// Sends an in-progress signal for the delivery.
pub(crate) trait Progress: Send + Sync {
    fn progress(&self) -> BoxFuture<'_, Result<(), SettleError>>;
}

/// The acker of a transport that has progress signals.
pub(crate) struct WithProgress<A>(pub(crate) A);

impl<A: Acker> Progress for WithProgress<A> {
    fn progress(&self) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(self.0.settle(Settle::Progress))
    }
}

/// A delivery whose transport has no progress signal (nothing to send).
pub(crate) struct NoProgress;

impl Progress for NoProgress {
    fn progress(&self) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async { Ok(()) })
    }
}

impl Context {
    pub(crate) fn new<P: Progress + 'static>(inner: Inner<P>) -> Self {
        let inner: Arc<Inner<dyn Progress>> = Arc::new(inner);
        Context { inner }
    }
    /// The handler's name.
    pub fn handler(&self) -> &'static str {
        self.inner.handler
    }
    /// The event id (`ce-id` header), if the producer set one.
    pub fn event_id(&self) -> Option<&str> {
        self.inner.event_id.as_deref()
    }
    /// The OpenTelemetry trace id of this delivery (32 lowercase hex
    /// digits): the producer's trace, continued by the handler span (see
    /// [`telemetry::trace`](crate::telemetry)). `None` without the `otel`
    /// feature or without an OpenTelemetry layer in the subscriber.
    ///
    /// ```
    /// # async fn h(ctx: jetflow::Context) {
    /// if let Some(trace) = ctx.trace_id() {
    ///     assert_eq!(trace.len(), 32);
    /// }
    /// # }
    /// ```
    pub fn trace_id(&self) -> Option<String> {
        self.inner.trace_id.map(|id| format!("{id:032x}"))
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
    /// The stream that stores the message (empty for a notification).
    pub fn stream(&self) -> &str {
        &self.inner.info.stream
    }
    /// The durable consumer (or queue group) delivering it.
    pub fn consumer(&self) -> &str {
        &self.inner.info.consumer
    }
    /// Sequence of the message in its stream (0 for a notification).
    pub fn stream_sequence(&self) -> u64 {
        self.inner.info.stream_sequence
    }
    /// Sequence of this delivery in the consumer (0 where the broker has none).
    pub fn consumer_sequence(&self) -> u64 {
        self.inner.info.consumer_sequence
    }
    /// Delivery attempt, starting at 1.
    pub fn delivered(&self) -> u64 {
        self.inner.info.delivered
    }
    /// When the broker stored the message.
    pub fn published(&self) -> OffsetDateTime {
        self.inner.info.published
    }
    /// The message headers.
    pub fn headers(&self) -> &Headers {
        &self.inner.headers
    }
    pub(crate) fn extensions(&self) -> &Extensions {
        &self.inner.extensions
    }
    /// The idempotency claim the handler runs under (an idempotent
    /// handler's, once claimed), for the extractors that need it (`Tx`).
    pub fn claim(&self) -> Option<&crate::idempotency::ClaimToken> {
        self.inner.claim.get()
    }
    pub(crate) fn set_claim(&self, token: crate::idempotency::ClaimToken) {
        let _ = self.inner.claim.set(token);
    }

    /// Publishes `event`, carrying this message's correlation id (or its
    /// event id) as `ce-correlationid` and its event id as `ce-causationid`.
    /// Awaits the PubAck.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PubAck, PublishError> {
        let correlation = self.correlation();
        self.inner
            .bus
            .publish_caused(event, correlation, self.event_id())
            .await
    }

    /// A [`PublishBatch`](crate::publish::PublishBatch) whose events carry
    /// this message's correlation, like [`Context::publish`]: for a handler
    /// that fans out many events, sent pipelined.
    pub fn batch(&self) -> crate::publish::PublishBatch {
        crate::publish::PublishBatch::new(
            self.inner.bus.clone(),
            self.correlation().map(str::to_owned),
            self.event_id().map(str::to_owned),
        )
    }

    /// Sends the notification `event` with this message's correlation, like
    /// [`Context::publish`] (see [`Bus::notify`]).
    pub async fn notify<E: Notification>(&self, event: &E) -> Result<(), PublishError> {
        let correlation = self.correlation();
        self.inner
            .bus
            .notify_caused(event, correlation, self.event_id())
            .await
    }

    /// Tells the broker the handler is still working, restarting the ack
    /// deadline. jetflow already does this automatically at half the ack
    /// wait; call it yourself only between long steps. Does nothing where
    /// the transport has no such signal (a notification).
    pub async fn progress(&self) -> Result<(), SettleError> {
        self.inner.progress.progress().await
    }

    fn correlation(&self) -> Option<&str> {
        self.inner
            .headers
            .get(crate::publish::headers::CORRELATION_ID)
            .or(self.event_id())
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
