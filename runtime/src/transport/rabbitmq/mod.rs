//! RabbitMQ (feature `rabbitmq`, `amqp://` URLs): the same handlers on the
//! broker many teams already run for routing and persistent delivery.
//!
//! # How jetflow maps onto RabbitMQ
//!
//! - **Publish** goes to one durable topic exchange, `jetflow`, with the
//!   subject as routing key: persistent (`delivery_mode` 2), `mandatory`,
//!   the event id as `message_id`, on a channel in confirm mode; the
//!   publish returns once the broker confirmed it. A message no queue is
//!   bound for comes back, and the publish fails with
//!   [`PublishErrorKind::Unroutable`]: nothing is dropped silently.
//! - A **group** (durable consumer) is a durable quorum queue,
//!   `jetflow.{STREAM}.{durable}`, bound to the handler's subject; the
//!   replicas of a group compete on it. The quorum queue counts deliveries
//!   (`x-delivery-count`), so a redelivery after a crash or a nack is
//!   counted. Each subscription has its own channel with `basic.qos`
//!   prefetch set to the credits the consume loop grants first (its
//!   concurrency plus its buffer), and manual acks only.
//! - **Settling**: ack is `basic.ack`; an immediate retry is `basic.nack`
//!   with requeue; a **retry after a delay** copies the message (with its
//!   subject and delivery count) into the queue
//!   `jetflow.delay.{ms}.{group queue}`, whose message TTL is the delay and
//!   which dead-letters to the group's queue (no plugin), then acks the
//!   original; reject is `basic.reject` without requeue, after the runtime
//!   stored the dead letter. Progress does nothing: RabbitMQ has no ack
//!   deadline, an unacked message stays with its consumer until its
//!   channel closes.
//! - The **DLQ** (`dlq.>`) is a RabbitMQ stream, `jetflow.stream.DLQ`:
//!   `jetflow dlq list` and replay read it from its first offset.
//!
//! # Differences from JetStream
//!
//! - A jetflow stream stores nothing by itself: a message is kept by the
//!   queue of each group bound to its subject when it is published. A
//!   group therefore starts with what is published after its queue was
//!   declared (`deliver = "all"` and `"new"` are the same; `"last"` is
//!   refused at start-up), and publishing an event no group consumes yet
//!   is an error. Only the DLQ can be read back.
//! - No ack deadline: a hung handler keeps its message until its
//!   connection closes (or RabbitMQ's `consumer_timeout`, 30 minutes by
//!   default, closes the channel); `ack_wait` is not used.
//! - No broker-side dedup: a publish retried after a lost confirm may be
//!   stored twice (the `message_id` lets handlers tell).
//! - Stream sequences are the publishing process's count per broker URL
//!   (header `x-jetflow-sequence`): increasing per publisher, not one
//!   sequence per stream. Consumer counts: `num_pending` is the queue's
//!   ready messages (from the broker); AMQP reports no unacked count, so
//!   `num_ack_pending`, `delivered` and `ack_floor` (here: how many
//!   messages were acked or rejected) are what this process's
//!   subscriptions did. Dead letters cannot be deleted one by one (a RabbitMQ
//!   stream is append-only: it is trimmed by its retention).
//! - A retry waiting in a delay queue is dead-lettered back by RabbitMQ
//!   at most once: should the broker fail at that moment it may be lost
//!   (RabbitMQ's dead-lettering is not confirmed). No notifications, no
//!   TLS (`amqps://`) built in.
//!
//! ```no_run
//! # async fn demo() -> jetflow::Result<()> {
//! use jetflow::prelude::*;
//! # #[event(version = "v1")] pub struct Ping { pub n: u32 }
//! # #[handler(group = "pong")] async fn pong(_p: Ping) {}
//! // `JETFLOW_URL=amqp://guest:guest@127.0.0.1:5672/%2f` with `App::from_env` does the same
//! let app = App::new("pong")
//!     .url("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .handler(pong)
//!     .start()
//!     .await?;
//! app.bus().publish(&Ping { n: 1 }).await?;
//! app.stop().await
//! # }
//! ```

mod subscription;
mod topology;
mod wire;

pub use subscription::{RabbitMqAcker, RabbitMqSubscription};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::app::ConnectOptions;
use crate::event::subject_matches;
use crate::topology::{
    ConsumerDecl, ConsumerState, ConsumerView, DeliverPolicy, StreamDecl, TopologyError,
    TopologyPolicy,
};
use crate::transport::{
    BoxError, Capabilities, ConnectError, ConnectErrorKind, ConsumerStatus, Outgoing, PubAck,
    PublishErrorKind, PublishFailure, Stored, Transport,
};

/// How long one broker operation (a confirm, a declare) may take before it
/// counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to RabbitMQ, as a jetflow transport. Cheap to clone.
#[derive(Clone)]
pub struct RabbitMqTransport {
    shared: Arc<Shared>,
}

struct Shared {
    /// The URL, with its secret: only used to connect.
    url: String,
    /// The URL without its secret, for logs.
    redacted: String,
    /// The app's name, the prefix of connection and consumer names.
    name: String,
    /// The connection and its publish channel; replaced when broken.
    session: RwLock<Option<Arc<Session>>>,
    /// One reconnect at a time.
    reconnect: tokio::sync::Mutex<()>,
    /// Subject pattern -> jetflow stream, from the streams declared here.
    routes: RwLock<Vec<(String, String)>>,
    /// Delay queues known to exist.
    delay_queues: Mutex<HashSet<String>>,
    /// What this process does on the broker at `url`.
    local: Arc<Local>,
}

/// What every transport of this process connected to one broker and
/// vhost shares: the publish sequence, and per group queue what the
/// subscriptions received and settled.
#[derive(Debug, Default)]
struct Local {
    sequence: AtomicU64,
    counts: Mutex<HashMap<String, Arc<Counts>>>,
}

impl Local {
    /// The one of this process for `url`.
    fn of(url: &str) -> Arc<Local> {
        static ALL: Mutex<Option<HashMap<String, Arc<Local>>>> = Mutex::new(None);
        ALL.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .entry(url.to_owned())
            .or_default()
            .clone()
    }
}

/// What the subscriptions of one process received and settled on a group's
/// queue: AMQP reports only a queue's ready messages, so the unacked count
/// and the settled count of [`ConsumerState`] come from here (other
/// processes' consumers are not seen).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    delivered: AtomicU64,
    redelivered: AtomicU64,
    unsettled: AtomicU64,
    done: AtomicU64,
}

impl Counts {
    fn delivered(&self, again: bool) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.unsettled.fetch_add(1, Ordering::AcqRel);
        if again {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A delivery was settled for the last time: `done` when acked or
    /// rejected (not when it goes back for a retry).
    fn settled(&self, done: bool) {
        let _ = self
            .unsettled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if done {
            self.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// One AMQP connection and its channel in confirm mode for publishing.
pub(crate) struct Session {
    conn: Connection,
    publish: Channel,
}

impl std::fmt::Debug for RabbitMqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqTransport")
            .field("url", &self.shared.redacted)
            .finish_non_exhaustive()
    }
}

impl RabbitMqTransport {
    /// What RabbitMQ does for jetflow: redelivery (quorum queues), delayed
    /// retry (TTL queues), persistence, the DLQ read back from a stream;
    /// no dedup, no progress (there is no ack deadline to extend), no
    /// `deliver = "last"`, no notifications.
    pub const CAPABILITIES: Capabilities = Capabilities {
        redelivery: true,
        delayed_retry: true,
        // no ack deadline: a long handler keeps its message without signals
        progress: true,
        dedup: false,
        per_key_order: false,
        persistence: true,
        replay: true,
        notifications: false,
        deliver: &[DeliverPolicy::All, DeliverPolicy::New],
        give_back: true,
    };

    /// Connects to `url` (`amqp://user:password@host:port/vhost`, the vhost
    /// URL-encoded: `%2f` is `/`); `name` names the connection.
    ///
    /// # Errors
    ///
    /// [`ConnectErrorKind::Unreachable`] or
    /// [`ConnectErrorKind::Unauthorized`], with what to check.
    pub async fn connect(url: &str, name: &str) -> Result<RabbitMqTransport, ConnectError> {
        let transport = RabbitMqTransport {
            shared: Arc::new(Shared {
                url: url.to_owned(),
                redacted: crate::transport::select::redact(url),
                name: name.to_owned(),
                session: RwLock::new(None),
                reconnect: tokio::sync::Mutex::new(()),
                routes: RwLock::new(Vec::new()),
                delay_queues: Mutex::new(HashSet::new()),
                local: Local::of(url),
            }),
        };
        transport.session().await.map_err(|e| {
            // 403 ACCESS_REFUSED: user or password; 530 NOT_ALLOWED: the vhost
            let refused = matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
                if matches!(p.get_id(), 403 | 530))
                || e.to_string().contains("ACCESS_REFUSED");
            let (kind, hint) = if refused {
                (
                    ConnectErrorKind::Unauthorized,
                    "the broker refused the user, password or vhost; check the URL's credentials \
                     and that the vhost exists with permissions for the user",
                )
            } else {
                (
                    ConnectErrorKind::Unreachable,
                    "check JETFLOW_URL and that RabbitMQ is reachable",
                )
            };
            ConnectError::new(url, kind, format!("{e}; {hint}"), Some(e.into()))
        })?;
        Ok(transport)
    }

    /// The live session, or a new one (connection, publish channel in
    /// confirm mode, the exchange declared).
    pub(crate) async fn session(&self) -> Result<Arc<Session>, lapin::Error> {
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        let _one = self.shared.reconnect.lock().await;
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("jetflow {}", self.shared.name).into());
        let conn = timeout(Connection::connect(&self.shared.url, properties)).await?;
        let publish = timeout(conn.create_channel()).await?;
        timeout(publish.confirm_select(ConfirmSelectOptions::default())).await?;
        timeout(publish.exchange_declare(
            wire::EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ))
        .await?;
        let session = Arc::new(Session { conn, publish });
        *self
            .shared
            .session
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
        Ok(session)
    }

    fn live_session(&self) -> Option<Arc<Session>> {
        let guard = self
            .shared
            .session
            .read()
            .unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|s| s.conn.status().connected() && s.publish.status().connected())
            .cloned()
    }

    /// A new channel on the live connection.
    pub(crate) async fn channel(&self) -> Result<Channel, lapin::Error> {
        let session = self.session().await?;
        timeout(session.conn.create_channel()).await
    }

    /// The jetflow stream that stores `subject`, as far as this app knows.
    fn stream_of(&self, subject: &str) -> String {
        let routes = self.shared.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .iter()
            .find(|(pattern, _)| subject_matches(pattern, subject))
            .map(|(_, stream)| stream.clone())
            .unwrap_or_default()
    }

    /// Publishes `payload` with `properties` to `exchange`/`routing_key`,
    /// mandatory, and awaits the broker's confirm.
    pub(crate) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishFailure> {
        let lost = |e: lapin::Error| PublishFailure::Lost(e.into());
        let session = self.session().await.map_err(lost)?;
        let confirm = timeout(session.publish.basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            payload,
            properties,
        ))
        .await
        .map_err(lost)?;
        match timeout(confirm).await.map_err(lost)? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(PublishFailure::Failed(
                PublishErrorKind::Unroutable,
                format!(
                    "RabbitMQ returned the message ({} {}): no queue on {} is bound to `{routing_key}`",
                    returned.reply_code, returned.reply_text, self.shared.redacted
                )
                .into(),
            )),
            Confirmation::Nack(_) => Err(PublishFailure::Failed(
                PublishErrorKind::Rejected,
                format!(
                    "RabbitMQ did not store the message for `{routing_key}` (negative confirm: a \
                     queue is full with `reject-publish`, or the broker failed to write it)"
                )
                .into(),
            )),
            Confirmation::NotRequested => Err(PublishFailure::Lost(
                "the publish channel is not in confirm mode".into(),
            )),
        }
    }

    /// Copies a message into the delay queue of `queue` for `delay`; it
    /// comes back to `queue` once the delay is over.
    pub(crate) async fn delay(
        &self,
        queue: &str,
        delay: Duration,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BoxError> {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(1);
        let name = wire::delay_queue(queue, ms);
        let known = self
            .shared
            .delay_queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&name);
        if !known {
            topology::declare_delay_queue(self, &name, queue, ms).await?;
            self.shared
                .delay_queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone());
        }
        match self.publish_confirmed("", &name, payload, properties).await {
            Ok(()) => Ok(()),
            Err(PublishFailure::Lost(e) | PublishFailure::Failed(_, e)) => {
                // declared again next time, should it have been deleted
                self.shared
                    .delay_queues
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                Err(e)
            }
        }
    }
}

/// `future`, or a timeout error after [`RESPONSE_TIMEOUT`].
async fn timeout<T>(
    future: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("RabbitMQ did not answer within {RESPONSE_TIMEOUT:?}"),
        ))),
    }
}

/// Seconds since the Unix epoch, for the AMQP timestamp.
fn now_secs() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

impl Transport for RabbitMqTransport {
    type Acker = RabbitMqAcker;
    type Subscription = RabbitMqSubscription;

    fn describe(&self) -> String {
        format!("RabbitMQ at {}", self.shared.redacted)
    }

    fn capabilities(&self) -> Capabilities {
        RabbitMqTransport::CAPABILITIES
    }

    fn is_connected(&self) -> bool {
        self.live_session().is_some()
    }

    async fn publish(&self, message: Outgoing) -> Result<PubAck, PublishFailure> {
        let sequence = self.shared.local.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let mut headers = wire::table(&message.headers);
        headers.insert(
            wire::SEQUENCE.into(),
            lapin::types::AMQPValue::LongLongInt(i64::try_from(sequence).unwrap_or(i64::MAX)),
        );
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_timestamp(now_secs())
            .with_headers(headers);
        if let Ok(id) = ShortString::try_new(message.id.as_str()) {
            properties = properties.with_message_id(id);
        }
        self.publish_confirmed(
            wire::EXCHANGE,
            &message.subject,
            &message.payload,
            properties,
        )
        .await?;
        Ok(PubAck::new(
            self.stream_of(&message.subject),
            sequence,
            false,
        ))
    }

    async fn declare_streams(
        &self,
        streams: &[StreamDecl],
        policy: TopologyPolicy,
    ) -> Result<(), TopologyError> {
        topology::declare_streams(self, streams, policy).await?;
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for s in streams {
            for pattern in s.patterns() {
                if !routes.iter().any(|(p, _)| *p == pattern) {
                    routes.push((pattern, s.name.clone()));
                }
            }
        }
        Ok(())
    }

    async fn declare_consumer(
        &self,
        consumer: &ConsumerDecl,
        policy: TopologyPolicy,
    ) -> Result<ConsumerView, TopologyError> {
        let patterns = self.patterns_of(&consumer.stream);
        topology::declare_consumer(self, consumer, &patterns, policy).await
    }

    async fn consumer_status(&self, consumer: &ConsumerDecl) -> ConsumerStatus {
        topology::consumer_status(self, consumer).await
    }

    async fn subscribe(&self, consumer: &ConsumerDecl) -> Result<RabbitMqSubscription, BoxError> {
        RabbitMqSubscription::open(self.clone(), consumer).await
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<Stored>, TopologyError> {
        topology::read_stream(self, stream).await
    }

    async fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerState, TopologyError> {
        let mut state = topology::consumer_state(self, stream, durable).await?;
        let counts = self.counts(&wire::group_queue(stream, durable));
        state.num_ack_pending = counts.unsettled.load(Ordering::Acquire);
        state.ack_floor = counts.done.load(Ordering::Acquire);
        state.delivered = counts.delivered.load(Ordering::Relaxed);
        state.num_redelivered = counts.redelivered.load(Ordering::Relaxed);
        Ok(state)
    }

    async fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> Result<usize, TopologyError> {
        let _ = sequences;
        Err(TopologyError::update(
            format!("messages of stream {stream}"),
            "delete",
            "RabbitMQ streams are append-only: dead letters cannot be deleted one by one; they \
             leave by the stream's retention (x-max-age / x-max-length-bytes), or delete the \
             queue jetflow.stream.DLQ with rabbitmqctl to drop them all",
        ))
    }

    async fn flush(&self) -> Result<(), BoxError> {
        // every publish awaited its confirm; acks are written in order
        Ok(())
    }
}

impl RabbitMqTransport {
    /// This process's counts of the group queue `queue`.
    fn counts(&self, queue: &str) -> Arc<Counts> {
        self.shared
            .local
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    /// The subject patterns of `stream` declared by this app.
    fn patterns_of(&self, stream: &str) -> Vec<String> {
        let routes = self.shared.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .iter()
            .filter(|(_, s)| s == stream)
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// Connects for an app: `options.url` is the AMQP URL.
pub(crate) async fn connect(
    options: &ConnectOptions,
    name: &str,
) -> Result<RabbitMqTransport, ConnectError> {
    RabbitMqTransport::connect(&options.url, name).await
}
