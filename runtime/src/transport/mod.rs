//! The broker-neutral transport API: everything the runtime asks of a broker.
//!
//! Handlers, events, the retry / DLQ decisions, flow control and graceful
//! shutdown live above this seam and are written once. A transport
//! implements three traits:
//!
//! - [`Transport`]: publish a message and return its [`PubAck`]; send a
//!   notification; declare streams and durable consumers from jetflow's own
//!   [`topology`](crate::topology) description; open a [`Subscription`];
//!   read a stream back; report a consumer's state; state its
//!   [`Capabilities`].
//! - [`Subscription`]: the runtime grants credits (free handler slots); the
//!   subscription yields at most that many [`Message`]s, or reports that it
//!   was [`Lost`]. Broker protocol details — JetStream pull requests, idle
//!   heartbeats and `409` statuses, re-issuing requests after a reconnect,
//!   Redis `XREADGROUP` and `XAUTOCLAIM` — stay inside it.
//! - [`Acker`]: settles one delivery ([`Settle`]: ack, retry after a delay,
//!   in progress, reject).
//!
//! Dispatch is static: the consume loop is generic over the transport, so
//! no future is boxed per message. [`Bus`](crate::Bus) keeps the transport
//! behind one trait object (one boxed future per publish).
//!
//! What a broker lacks is emulated once, above the seam, or refused when the
//! app starts (see [`Capabilities`]): a transport without delayed retry gets
//! an immediate retry after the runtime has waited out the delay; a
//! subscription without redelivery (notifications) is retried in-process;
//! a handler option the broker cannot honour (a `deliver` start position,
//! notifications) stops the app at start-up with the reason.
//!
//! Transports shipped with jetflow, chosen by URL ([`App::url`](crate::App::url),
//! `JETFLOW_URL` or `NATS_URL`):
//!
//! | URL | transport |
//! |---|---|
//! | `nats://`, `tls://` | [`nats::NatsTransport`]: JetStream for events, core NATS for notifications |
//! | `memory://name` | [`memory::Broker`]: the embedded broker, in-process |
//! | `redis://` | `redis::RedisTransport` (feature `redis`): Redis Streams |
//! | `amqp://` | `rabbitmq::RabbitMqTransport` (feature `rabbitmq`): RabbitMQ quorum queues |
//! | `kafka://` | `kafka::KafkaTransport` (feature `kafka`): Kafka topics and consumer groups |
//!
//! A transport of your own runs an app with
//! [`App::start_on`](crate::App::start_on).

mod capability;
mod erased;
mod error;
mod headers;
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub mod kafka;
pub mod memory;
mod message;
pub mod nats;
#[cfg(feature = "rabbitmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "rabbitmq")))]
pub mod rabbitmq;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub(crate) mod select;

pub use capability::Capabilities;
pub use error::{
    BoxError, ConnectError, ConnectErrorKind, PublishError, PublishErrorKind, PublishFailure,
    SettleError,
};
pub use headers::{HeaderError, Headers};
pub use message::{
    Acker, ConsumerStatus, DeliveryInfo, Inbound, Lost, Message, Outgoing, PubAck, Settle, Stored,
};

pub(crate) use erased::DynTransport;

use crate::topology::{
    ConsumerDecl, ConsumerState, ConsumerView, StreamDecl, TopologyError, TopologyPolicy,
};

/// Why a transport without read-only topology methods cannot plan.
const NO_READ_ONLY: &str = "this transport cannot read its streams and consumers without changing them, so \
    `plan` is not supported on it (it is on NATS JetStream)";

/// A connection to a broker, as the runtime uses it. Cheap to clone.
///
/// Every method is called from tokio tasks; none may block the thread.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Settles this transport's deliveries.
    type Acker: Acker;
    /// A consume loop's source of messages.
    type Subscription: Subscription<Acker = Self::Acker>;

    /// Human-readable, for logs: `JetStream on nats-server 2.15.1 at 127.0.0.1`.
    fn describe(&self) -> String;

    /// What the broker does natively for durable consumers.
    fn capabilities(&self) -> Capabilities;

    /// The messaging system, as OpenTelemetry's `messaging.system`
    /// attribute names it on publish and consume spans: `nats`, `redis`.
    /// By default `jetflow`.
    fn system(&self) -> &'static str {
        "jetflow"
    }

    /// `false` while the connection to the broker is known to be down
    /// (reconnecting): the ops listener's `/readyz` says not ready at once,
    /// before any consume loop notices. By default `true` (a transport
    /// that cannot tell relies on its consume loops' states).
    fn is_connected(&self) -> bool {
        true
    }

    /// One publish attempt into a stream, awaiting the broker's
    /// acknowledgement. The runtime retries a [`PublishFailure::Lost`] with
    /// the same [`Outgoing::id`].
    fn publish(
        &self,
        message: Outgoing,
    ) -> impl Future<Output = Result<PubAck, PublishFailure>> + Send;

    /// Publishes several messages, stored in their order, and returns one
    /// result per message, in order; the runtime retries each
    /// [`PublishFailure::Lost`] as for [`publish`](Transport::publish). By
    /// default one after the other; a transport that can write many
    /// messages before reading their acknowledgements (JetStream) overrides
    /// it to pipeline them.
    fn publish_batch(
        &self,
        messages: Vec<Outgoing>,
    ) -> impl Future<Output = Vec<Result<PubAck, PublishFailure>>> + Send {
        async move {
            let mut results = Vec::with_capacity(messages.len());
            for message in messages {
                results.push(self.publish(message).await);
            }
            results
        }
    }

    /// Sends a notification: no stream stores it; every listener (or one per
    /// queue group) connected now hears it. Returns once the broker has it;
    /// an error when not connected, never a silent buffer. By default: not
    /// supported.
    fn notify(&self, message: Outgoing) -> impl Future<Output = Result<(), PublishFailure>> + Send {
        let _ = message;
        async {
            Err(PublishFailure::Failed(
                PublishErrorKind::Unsupported("notifications"),
                "this transport has no notifications".into(),
            ))
        }
    }

    /// Ensures every stream exists and stores its subjects, by `policy`
    /// (see [`plan_stream`](crate::topology::plan_stream)).
    fn declare_streams(
        &self,
        streams: &[StreamDecl],
        policy: TopologyPolicy,
    ) -> impl Future<Output = Result<(), TopologyError>> + Send;

    /// Ensures the durable consumer exists as declared, by `policy` (see
    /// [`plan_consumer`](crate::topology::plan_consumer)); returns what the
    /// broker has afterwards (its `ack_wait` drives progress signals).
    fn declare_consumer(
        &self,
        consumer: &ConsumerDecl,
        policy: TopologyPolicy,
    ) -> impl Future<Output = Result<ConsumerView, TopologyError>> + Send;

    /// The subject patterns `stream` stores, `None` when it does not
    /// exist; reads only (`plan` shows what provisioning would change). By
    /// default: not supported.
    fn stream_subjects(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>, TopologyError>> + Send {
        let what = format!("stream `{stream}`");
        async move { Err(TopologyError::read(what, "plan", NO_READ_ONLY)) }
    }

    /// The durable consumer as the broker has it, `None` when it (or its
    /// stream) does not exist; reads only, like
    /// [`stream_subjects`](Transport::stream_subjects). By default: not
    /// supported.
    fn consumer_view(
        &self,
        consumer: &ConsumerDecl,
    ) -> impl Future<Output = Result<Option<ConsumerView>, TopologyError>> + Send {
        let what = consumer.describe();
        async move { Err(TopologyError::read(what, "plan", NO_READ_ONLY)) }
    }

    /// Whether the declared consumer and its stream exist, for recovery.
    fn consumer_status(
        &self,
        consumer: &ConsumerDecl,
    ) -> impl Future<Output = ConsumerStatus> + Send;

    /// A subscription on the declared durable consumer, holding no credits.
    fn subscribe(
        &self,
        consumer: &ConsumerDecl,
    ) -> impl Future<Output = Result<Self::Subscription, BoxError>> + Send;

    /// A subscription to the notifications on `subject` (may hold
    /// wildcards): every listener hears each one, or with `queue` one
    /// listener of that queue group. By default: not supported.
    fn listen(
        &self,
        subject: &str,
        queue: Option<&str>,
    ) -> impl Future<Output = Result<Self::Subscription, BoxError>> + Send {
        let _ = (subject, queue);
        async { Err("this transport has no notifications".into()) }
    }

    /// Every message in `stream`, oldest first.
    fn read_stream(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Vec<Stored>, TopologyError>> + Send;

    /// Deletes the messages of `stream` at `sequences` (an operator's
    /// purge, e.g. of dead letters); returns how many there were.
    fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> impl Future<Output = Result<usize, TopologyError>> + Send;

    /// Counts of a durable consumer.
    fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> impl Future<Output = Result<ConsumerState, TopologyError>> + Send;

    /// Waits until everything sent (settlements included) reached the broker.
    fn flush(&self) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Where one consume loop receives its messages.
///
/// Flow control is by credits: after [`grant`](Subscription::grant)ing `n`,
/// the runtime has room for `n` more messages, and the subscription must
/// never yield more messages than it was granted (so no message waits in a
/// local buffer while its ack deadline runs). Credits stay valid until they
/// are used or the subscription reports [`Lost`]; keeping them alive across
/// expired requests, reconnects and the like is the subscription's job.
pub trait Subscription: Send + 'static {
    /// Settles the deliveries it yields.
    type Acker: Acker;

    /// Room for `credits` more messages.
    fn grant(&mut self, credits: usize);

    /// The next message, or why the subscription cannot go on. Must be
    /// cancel-safe: the runtime drops this future whenever something else
    /// happens first, and calls it again.
    fn next(&mut self) -> impl Future<Output = Inbound<Self::Acker>> + Send;

    /// Stops receiving and gives back (for immediate redelivery) whatever is
    /// already on its way; bounded in time. Returns how many were given back.
    fn close(self) -> impl Future<Output = usize> + Send;

    /// `true` when the broker proves the subscription is served (it yields
    /// [`Inbound::Alive`] on heartbeats or empty reads): the runtime
    /// reports the loop as receiving only once it has that proof or a
    /// message. `false` (the default): opening it is the proof.
    fn confirms_alive(&self) -> bool {
        false
    }
}
