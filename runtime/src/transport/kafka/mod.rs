//! Kafka (feature `kafka`, `kafka://host:port` URLs): the same handlers on
//! a Kafka cluster, through librdkafka (built from the sources bundled with
//! the `rdkafka` crate).
//!
//! # How jetflow maps onto Kafka
//!
//! - A jetflow **stream** (`ORDER`) is one topic of the same name, created
//!   at start-up (an admin request) with [`KafkaOptions::partitions`]
//!   partitions (`kafka://host:port?partitions=8`; 1 by default; the DLQ:
//!   one). Every subject of the stream, every version
//!   of an event, goes into it: the subject travels in the header
//!   `jetflow-subject`, so one entity's `v1` and `v2` events keep their
//!   order.
//! - **Publish** goes through an idempotent producer (`enable.idempotence`,
//!   `acks=all`, `linger.ms=2`) and awaits the delivery report: a publish
//!   returns once every in-sync replica has it, or fails with a typed
//!   [`PublishError`](crate::transport::PublishError). The **partition
//!   key** is the event's key (the `{key}` of an `#[event(id = key)]`
//!   event's id `{subject}:{key}`, hashed with murmur2 as Java clients
//!   do), so an entity's events share a partition: give an event whose
//!   order matters per entity the entity's key as its `id` (Kafka does not
//!   deduplicate by id, so repeated ids are fine). An event without a key
//!   (a UUID id) goes to partition 0 — a deliberate choice: it keeps the
//!   stream's order, as on JetStream, at the cost of spreading; an
//!   `ordered_by` handler of a keyless event sees its keys in order.
//! - A **durable consumer** is a consumer group named after the durable
//!   (`{group}--{event}`); each subscription is one member. Records of
//!   other subjects of the topic are skipped (committed) at no credit.
//! - **Offsets** are committed per partition up to the contiguous handled
//!   watermark (never past an unfinished record); a rebalance hands the
//!   unfinished records to the partition's next owner. A settlement stores
//!   the watermark, and librdkafka commits what is stored every second, at
//!   a rebalance and when the member leaves (no request per record). At
//!   least once: what a member finished in its last second, and a record
//!   finished after an unfinished one, may come again after a crash.
//!   A stop commits each member's watermarks and leaves the group; it waits
//!   for that within its grace period only (with the broker gone, the
//!   group coordinator never answers: the consumer closes on a thread of
//!   its own, so the process still exits).
//! - **Retry**: Kafka has no per-message redelivery or delay. The runtime
//!   waits out a retry delay itself (only that message waits; ordered
//!   handlers retry in their lane, so a failing event holds back its own
//!   key only), then the subscription delivers the record again, its
//!   offset still uncommitted, with the delivery count one higher.
//! - **Progress** does nothing: nothing expires on Kafka while a member
//!   lives (a member that stops polling for `max.poll.interval.ms`, 5
//!   minutes, leaves the group: a subscription polls whenever it holds
//!   credits).
//! - **`max_deliver`** and rejects dead-letter into the `DLQ` topic with
//!   the reason, as on every transport; decode failures go there at once.
//!
//! # Differences from JetStream
//!
//! No dedup (a publish retried after a lost delivery report may be stored
//! twice; the idempotent producer only dedups librdkafka's own retries), no
//! delayed retry on the broker (emulated above), no `deliver = "last"`, no
//! notifications, no purge of single messages (Kafka deletes by retention:
//! [`dlq::purge`](crate::dlq::purge) fails). The delivery count lives in
//! the member: a record redelivered after a crash or a rebalance counts
//! from 1 again. A publisher routes a subject to its topic by the streams
//! declared on the cluster: every app records its streams' subjects in the
//! one-partition topic `jetflow-streams`, read on a miss. `ConsumerState` counts
//! over all partitions: `ack_floor` is the number of records committed,
//! `num_pending` the records after the committed offsets.
//!
//! ```no_run
//! # async fn demo() -> jetflow::Result<()> {
//! use jetflow::prelude::*;
//! # #[event(version = "v1")] pub struct Ping { pub n: u32 }
//! # #[handler(group = "pong")] async fn pong(_p: Ping) {}
//! // `JETFLOW_URL=kafka://127.0.0.1:9092` with `App::from_env` does the same
//! let app = App::new("pong").url("kafka://127.0.0.1:9092").handler(pong).start().await?;
//! app.bus().publish(&Ping { n: 1 }).await?;
//! app.stop().await
//! # }
//! ```

mod config;
mod leave;
mod subscription;
mod topology;
mod wire;

pub use config::KafkaOptions;
pub use subscription::{KafkaAcker, KafkaSubscription};

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

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

/// How long a request to the cluster (metadata, admin, a delivery report)
/// may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a Kafka cluster, as a jetflow transport. Cheap to clone.
#[derive(Clone)]
pub struct KafkaTransport {
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port[,host:port]`.
    bootstrap: String,
    /// The app's name, librdkafka's `client.id`.
    name: String,
    options: KafkaOptions,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Subject pattern -> stream, from the streams this process declared.
    routes: RwLock<Vec<(String, String)>>,
    /// Closed members on their way out of their groups.
    leaving: Arc<leave::Leaving>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("bootstrap", &self.shared.bootstrap)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl KafkaTransport {
    /// What Kafka does for jetflow (see the [module docs](self)).
    pub const CAPABILITIES: Capabilities = Capabilities {
        delayed_retry: false,
        dedup: false,
        per_key_order: true,
        deliver: &[DeliverPolicy::All, DeliverPolicy::New],
        ..Capabilities::durable()
    };

    /// Connects to `url` (`kafka://host:port[,host:port][?partitions=N&replication=R]`,
    /// see [`KafkaOptions`]); `name` is the client id. Fails when no broker
    /// answers a metadata request.
    pub async fn connect(url: &str, name: &str) -> Result<KafkaTransport, ConnectError> {
        let (bootstrap, options) = config::parse_url(url)?;
        KafkaTransport::connect_with(&bootstrap, name, options).await
    }

    /// Connects to the brokers `bootstrap` (`host:port[,host:port]`),
    /// creating topics by `options`.
    pub async fn connect_with(
        bootstrap: &str,
        name: &str,
        options: KafkaOptions,
    ) -> Result<KafkaTransport, ConnectError> {
        let url = format!("kafka://{bootstrap}");
        let url = url.as_str();
        let bootstrap = config::parse_url(url)?.0;
        let fail = |kind, message: String, e: KafkaError| {
            ConnectError::new(url, kind, message, Some(e.into()))
        };
        let producer: FutureProducer = config::producer(&bootstrap, name)
            .create()
            .map_err(|e| fail(ConnectErrorKind::Unreachable, format!("librdkafka: {e}"), e))?;
        let admin: AdminClient<DefaultClientContext> = config::client(&bootstrap, name)
            .create()
            .map_err(|e| fail(ConnectErrorKind::Unreachable, format!("librdkafka: {e}"), e))?;
        let transport = KafkaTransport {
            shared: Arc::new(Shared {
                bootstrap,
                name: name.to_owned(),
                options,
                producer,
                admin,
                routes: RwLock::new(Vec::new()),
                leaving: Arc::default(),
            }),
        };
        // a metadata request proves a broker answers
        let probe = transport.clone();
        tokio::task::spawn_blocking(move || {
            probe
                .shared
                .producer
                .client()
                .fetch_metadata(None, REQUEST_TIMEOUT)
        })
        .await
        .map_err(|e| ConnectError::new(url, ConnectErrorKind::Unreachable, e.to_string(), None))?
        .map_err(|e| {
            fail(
                ConnectErrorKind::Unreachable,
                format!("no Kafka broker answered: {e}; check JETFLOW_URL and that the cluster is reachable"),
                e,
            )
        })?;
        Ok(transport)
    }

    /// The stream (topic) that stores `subject`: from the streams this
    /// transport declared, else from the registry topic (declared by
    /// another app meanwhile).
    async fn route(&self, subject: &str) -> Result<Option<String>, TopologyError> {
        let find = |routes: &[(String, String)]| {
            routes
                .iter()
                .find(|(pattern, _)| subject_matches(pattern, subject))
                .map(|(_, stream)| stream.clone())
        };
        if let Some(found) = find(&self.shared.routes.read().unwrap_or_else(|p| p.into_inner())) {
            return Ok(Some(found));
        }
        let registry = self
            .read_topic(topology::REGISTRY)
            .await?
            .unwrap_or_default();
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for record in registry {
            let Ok(patterns) = serde_json::from_slice::<Vec<String>>(&record.payload) else {
                continue;
            };
            for pattern in patterns {
                if !routes.iter().any(|(p, _)| *p == pattern) {
                    routes.push((pattern, record.subject.clone()));
                }
            }
        }
        Ok(find(&routes))
    }

    /// Every record of `topic`; `None` when there is no such topic.
    async fn read_topic(&self, topic: &str) -> Result<Option<Vec<Stored>>, TopologyError> {
        let config = self.group_config(&format!("jetflow-read-{}", uuid::Uuid::now_v7()));
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || topology::read_topic(&config, &topic))
            .await
            .map_err(|e| TopologyError::read("a topic", "read", e))?
    }

    /// Records the subjects of `streams` in the registry topic.
    async fn register(&self, streams: &[StreamDecl]) -> Result<(), TopologyError> {
        for s in streams {
            let patterns = serde_json::to_vec(&s.patterns()).unwrap_or_default();
            let headers = wire::encode(&crate::transport::Headers::new(), &s.name, &s.name);
            let record = FutureRecord::to(topology::REGISTRY)
                .key(&s.name)
                .payload(&patterns)
                .headers(headers);
            self.shared
                .producer
                .send(record, REQUEST_TIMEOUT)
                .await
                .map_err(|(e, _)| {
                    TopologyError::create(
                        format!("the registry entry of stream `{}`", s.name),
                        "check that the cluster accepts writes",
                        e,
                    )
                })?;
        }
        Ok(())
    }

    /// A consumer of group `group` for reading, not subscribed.
    fn group_config(&self, group: &str) -> ClientConfig {
        config::group(&self.shared.bootstrap, &self.shared.name, group)
    }
}

/// A delivery failure, classified for the runtime.
fn publish_failure(e: KafkaError) -> PublishFailure {
    let code = e.rdkafka_error_code();
    let kind = match code {
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
            return PublishFailure::Lost(e.into());
        }
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            PublishErrorKind::NoStream
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            PublishErrorKind::TooLarge
        }
        _ => PublishErrorKind::Rejected,
    };
    PublishFailure::Failed(kind, e.into())
}

impl Transport for KafkaTransport {
    type Acker = KafkaAcker;
    type Subscription = KafkaSubscription;

    fn describe(&self) -> String {
        format!("Kafka at {}", self.shared.bootstrap)
    }

    fn capabilities(&self) -> Capabilities {
        KafkaTransport::CAPABILITIES
    }

    async fn publish(&self, message: Outgoing) -> Result<PubAck, PublishFailure> {
        let route = self
            .route(&message.subject)
            .await
            .map_err(|e| PublishFailure::Failed(PublishErrorKind::NoStream, e.into()))?;
        let Some(stream) = route else {
            return Err(PublishFailure::Failed(
                PublishErrorKind::NoStream,
                format!(
                    "no stream declared on this cluster stores {:?}; start an app that declares \
                     it (a handler of the event, or `App::publishes::<E>()`)",
                    message.subject
                )
                .into(),
            ));
        };
        let headers = wire::encode(&message.headers, &message.subject, &message.id);
        let record = FutureRecord::to(&stream)
            .payload(&message.payload[..])
            .headers(headers);
        let record = match wire::partition_key(&message.id) {
            Some(key) => record.key(key),
            None => record.partition(0),
        };
        match self.shared.producer.send(record, REQUEST_TIMEOUT).await {
            Ok(delivery) => Ok(PubAck::new(
                stream,
                wire::sequence(delivery.partition, delivery.offset),
                false,
            )),
            Err((e, _)) => Err(publish_failure(e)),
        }
    }

    async fn declare_streams(
        &self,
        streams: &[StreamDecl],
        policy: TopologyPolicy,
    ) -> Result<(), TopologyError> {
        let _ = policy;
        topology::create_topics(&self.shared.admin, streams, self.shared.options).await?;
        self.register(streams).await?;
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
        // the group comes into being when its first member joins
        let _ = policy;
        Ok(ConsumerView::declared(consumer))
    }

    async fn consumer_status(&self, consumer: &ConsumerDecl) -> ConsumerStatus {
        let me = self.clone();
        let topic = consumer.stream.clone();
        let found = tokio::task::spawn_blocking(move || {
            topology::topic_exists(me.shared.producer.client(), &topic)
        })
        .await;
        match found {
            Ok(Ok(true)) => ConsumerStatus::Exists,
            Ok(Ok(false)) => ConsumerStatus::StreamMissing,
            Ok(Err(e)) => ConsumerStatus::Unavailable(e.to_string()),
            Err(e) => ConsumerStatus::Unavailable(e.to_string()),
        }
    }

    async fn subscribe(&self, consumer: &ConsumerDecl) -> Result<KafkaSubscription, BoxError> {
        let tracker = Arc::new(Mutex::new(subscription::Tracker::default()));
        let reset = match consumer.deliver {
            DeliverPolicy::New => "latest",
            _ => "earliest",
        };
        let kafka: subscription::Consumer = config::member(
            &self.shared.bootstrap,
            &self.shared.name,
            &consumer.durable,
            reset,
        )
        .create_with_context(subscription::Rebalancing {
            tracker: tracker.clone(),
        })?;
        kafka.subscribe(&[&consumer.stream])?;
        Ok(KafkaSubscription::new(
            kafka,
            tracker,
            consumer.stream.clone(),
            consumer.filter_subject.clone(),
            &consumer.durable,
            self.shared.leaving.clone(),
        ))
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<Stored>, TopologyError> {
        self.read_topic(stream).await?.ok_or_else(|| {
            TopologyError::read(
                format!("stream `{stream}`"),
                "read",
                "there is no such topic; start an app that declares the stream (it creates the topic)",
            )
        })
    }

    async fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> Result<usize, TopologyError> {
        let _ = sequences;
        Err(TopologyError::update(
            format!("messages of topic `{stream}`"),
            "delete",
            "Kafka cannot delete single records; they go when the topic's retention \
             (`retention.ms`, `retention.bytes`) drops them",
        ))
    }

    async fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerState, TopologyError> {
        let config = self.group_config(durable);
        let stream = stream.to_owned();
        tokio::task::spawn_blocking(move || topology::group_state(&config, &stream))
            .await
            .map_err(|e| TopologyError::read("a consumer group", "read", e))?
    }

    async fn flush(&self) -> Result<(), BoxError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.shared.producer.flush(REQUEST_TIMEOUT)).await??;
        // the final commits of the members whose deliveries are settled
        self.shared.leaving.settled_members_left().await;
        Ok(())
    }
}

/// Connects for an app: `options.url` is the Kafka URL.
pub(crate) async fn connect(
    options: &ConnectOptions,
    name: &str,
) -> Result<KafkaTransport, ConnectError> {
    KafkaTransport::connect(&options.url, name).await
}
