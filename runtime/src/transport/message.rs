//! What crosses the seam: messages going out, deliveries coming in, and
//! how a delivery is settled.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;

use super::Headers;
use super::error::SettleError;

/// A message to publish.
///
/// `headers` never holds broker-specific headers (`Nats-*`): the transport
/// maps [`id`](Outgoing::id) to its own deduplication (JetStream's
/// `Nats-Msg-Id`, the embedded broker's window, a Redis key set atomically
/// with the `XADD`), so a retry of a lost publish with the same id is
/// stored once where the transport [deduplicates](super::Capabilities::dedup).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outgoing {
    /// Concrete subject (no wildcards): `order.created.v1`.
    pub subject: Cow<'static, str>,
    /// jetflow's wire headers (`ce-*`, `content-type`) and the producer's own.
    pub headers: Headers,
    /// The encoded event.
    pub payload: Bytes,
    /// Message id for deduplication; the event id (`ce-id`).
    pub id: String,
}

impl Outgoing {
    /// A message on `subject` with `id`.
    pub fn new(
        subject: impl Into<Cow<'static, str>>,
        headers: Headers,
        payload: Bytes,
        id: impl Into<String>,
    ) -> Outgoing {
        Outgoing {
            subject: subject.into(),
            headers,
            payload,
            id: id.into(),
        }
    }
}

/// The broker's acknowledgement that it stored an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubAck {
    /// Stream that stored the event.
    pub stream: String,
    /// Its sequence in that stream.
    pub sequence: u64,
    /// `true` when the broker had already stored a message with the same
    /// id inside its deduplication window (nothing new was stored).
    pub duplicate: bool,
}

impl PubAck {
    /// The acknowledgement of message `sequence` in `stream`.
    pub fn new(stream: impl Into<String>, sequence: u64, duplicate: bool) -> PubAck {
        PubAck {
            stream: stream.into(),
            sequence,
            duplicate,
        }
    }
}

/// Where a delivery comes from and how often it came.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryInfo {
    /// Stream that stores the message (empty for a notification).
    pub stream: Arc<str>,
    /// Durable consumer, or queue group, delivering it (empty when none).
    pub consumer: Arc<str>,
    /// Position of the message in its stream: increases by one per stored
    /// message (0 for a notification).
    pub stream_sequence: u64,
    /// Position of this delivery in the consumer (0 when the broker has none).
    pub consumer_sequence: u64,
    /// Delivery attempt, from 1.
    pub delivered: u64,
    /// When the broker stored the message (a notification: when it was sent,
    /// from its `ce-time`, else when it arrived).
    pub published: OffsetDateTime,
}

impl DeliveryInfo {
    /// The info of delivery `delivered` of message `stream_sequence`.
    pub fn new(
        stream: Arc<str>,
        consumer: Arc<str>,
        stream_sequence: u64,
        delivered: u64,
        published: OffsetDateTime,
    ) -> DeliveryInfo {
        DeliveryInfo {
            stream,
            consumer,
            stream_sequence,
            consumer_sequence: 0,
            delivered,
            published,
        }
    }

    /// Sets the consumer sequence.
    pub fn with_consumer_sequence(mut self, sequence: u64) -> DeliveryInfo {
        self.consumer_sequence = sequence;
        self
    }
}

/// One delivered message and the handle that settles it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Message<A> {
    /// The subject it was published on.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// Its payload.
    pub payload: Bytes,
    /// Stream, sequences, delivery count, publish time.
    pub info: DeliveryInfo,
    /// Settles this delivery; opaque to the runtime.
    pub acker: A,
}

impl<A> Message<A> {
    /// A delivery.
    pub fn new(
        subject: String,
        headers: Headers,
        payload: Bytes,
        info: DeliveryInfo,
        acker: A,
    ) -> Message<A> {
        Message {
            subject,
            headers,
            payload,
            info,
            acker,
        }
    }
}

/// How the runtime settles a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settle {
    /// Done: never deliver it again.
    Ack,
    /// Deliver it again after the delay (`Duration::ZERO`: at once, to any
    /// replica). Only sent to a transport with
    /// [`delayed_retry`](super::Capabilities::delayed_retry) when the delay
    /// is not zero; the runtime waits out the delay itself otherwise.
    Retry(Duration),
    /// Still working: restart the ack deadline. Only sent to a transport
    /// with [`progress`](super::Capabilities::progress).
    Progress,
    /// Failed for good (after its DLQ copy, if any): never deliver it again.
    Reject,
}

/// Settles deliveries of one transport. Cheap to clone: a handler's
/// [`Context`](crate::Context) keeps one to send progress.
pub trait Acker: Clone + Send + Sync + 'static {
    /// Sends `settle` for this delivery.
    fn settle(&self, settle: Settle) -> impl Future<Output = Result<(), SettleError>> + Send;

    /// `false` once the broker has given this delivery to another consumer
    /// while it waited in the runtime's prefetch buffer (a Kafka partition
    /// revoked by a rebalance): settling it would do nothing and its new
    /// owner handles it, so the runtime drops it instead of calling the
    /// handler. By default `true` (a broker whose deliveries stay this
    /// consumer's until settled or expired).
    fn is_current(&self) -> bool {
        true
    }
}

/// What a [`Subscription`](super::Subscription) yields.
#[derive(Debug)]
pub enum Inbound<A> {
    /// A message for the handler (one credit used).
    Message(Message<A>),
    /// The broker showed that it serves the subscription (a heartbeat, an
    /// expired pull request, an empty blocking read); no credit used. Only
    /// a subscription that [confirms its liveness](super::Subscription::confirms_alive)
    /// yields it: the runtime reports its loop as receiving only after
    /// this or a message.
    Alive,
    /// The subscription cannot go on; every credit it held is void. The
    /// runtime checks the consumer, repairs it by policy, backs off and
    /// subscribes again.
    Lost(Lost),
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lost {
    /// The broker reports that the durable consumer was deleted.
    ConsumerDeleted,
    /// The broker went silent (no message or heartbeat in time).
    Stalled(String),
    /// The broker cannot serve the subscription now (connection closed,
    /// consumer or stream unavailable).
    Unavailable(String),
    /// The consumer on the broker cannot be used by jetflow (for instance a
    /// JetStream push consumer with the durable's name); the consume loop
    /// stops with this reason.
    Incompatible(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::ConsumerDeleted => f.write_str("the broker reports the consumer was deleted"),
            Lost::Stalled(why) | Lost::Unavailable(why) | Lost::Incompatible(why) => {
                f.write_str(why)
            }
        }
    }
}

/// A stored message read back from a stream (the DLQ listing, replays).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stored {
    /// Its sequence in the stream.
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// Its payload.
    pub payload: Bytes,
}

impl Stored {
    /// A stored message.
    pub fn new(sequence: u64, subject: String, headers: Headers, payload: Bytes) -> Stored {
        Stored {
            sequence,
            subject,
            headers,
            payload,
        }
    }
}

/// What a broker says about a declared durable consumer, for recovery.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConsumerStatus {
    /// It exists.
    Exists,
    /// The consumer is gone (its stream exists).
    Missing,
    /// Its stream is gone.
    StreamMissing,
    /// The broker cannot tell now (unreachable, timeout ...).
    Unavailable(String),
}
