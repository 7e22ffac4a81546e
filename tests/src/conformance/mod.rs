//! One set of delivery scenarios, written once and run against every
//! transport (`tests/tests/conformance.rs` runs each scenario once per
//! transport in [`TRANSPORTS`]). A scenario that behaved differently on two
//! transports would be a bug of one of them; a scenario a transport cannot
//! support by its [`Capabilities`] is skipped, and the reason printed.
//! Faults only a server process has (kill, pause, network) live in the
//! NATS-only tests.
//!
//! The oracle is the ledger of (event key, stream sequence, delivery count)
//! that every handler writes, plus the broker's consumer counts.

mod expiry;
mod groups;
mod lanes;
mod lifecycle;
mod limits;
mod notifications;
mod payload;
mod prefetch;
mod replay;
mod retry;
mod wire;

pub use expiry::*;
pub use groups::*;
pub use lanes::*;
pub use lifecycle::*;
pub use limits::*;
pub use notifications::*;

pub use payload::*;
pub use prefetch::*;
pub use replay::*;
pub use retry::*;
pub use wire::*;

use std::io::Write as _;
use std::time::Duration;

use jetflow::prelude::*;
use jetflow::testing::{KafkaServer, NatsServer, RedisServer};
use jetflow::topology::ConsumerState;
use jetflow::transport::Capabilities;
use jetflow::{AppHandle, HandlerStats};

use crate::{Ledger, WAIT};

/// The transport a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JetStream on a private nats-server.
    Nats,
    /// The embedded broker, `memory://`.
    Memory,
    /// Redis Streams on a private redis-server.
    Redis,
    /// RabbitMQ: a vhost of its own on a private rabbitmq-server node.
    RabbitMq,
    /// Kafka on a private tansu broker.
    Kafka,
}

/// Every transport the suite runs on, with the name the README's
/// capability table gives it and its capabilities.
pub const TRANSPORTS: &[(Kind, &str, Capabilities)] = &[
    (
        Kind::Nats,
        "JetStream (`nats://`)",
        jetflow::transport::nats::NatsTransport::CAPABILITIES,
    ),
    (
        Kind::Memory,
        "embedded (`memory://`)",
        jetflow::memory::Broker::CAPABILITIES,
    ),
    (
        Kind::Redis,
        "Redis Streams (`redis://`)",
        jetflow::transport::redis::RedisTransport::CAPABILITIES,
    ),
    (
        Kind::RabbitMq,
        "RabbitMQ (`amqp://`)",
        jetflow::transport::rabbitmq::RabbitMqTransport::CAPABILITIES,
    ),
    (
        Kind::Kafka,
        "Kafka (`kafka://`)",
        jetflow::transport::kafka::KafkaTransport::CAPABILITIES,
    ),
];

impl Kind {
    /// The capabilities of this transport.
    pub fn capabilities(self) -> Capabilities {
        TRANSPORTS
            .iter()
            .find(|(k, ..)| *k == self)
            .map(|(.., caps)| *caps)
            .expect("every kind is in TRANSPORTS")
    }

    /// Stores JetStream's wire headers (`Nats-Msg-Id`) with each message.
    pub fn jetstream_wire(self) -> bool {
        matches!(self, Kind::Nats | Kind::Memory)
    }
}

/// A private broker for one scenario: a server process, or an embedded
/// broker with a name no other test uses.
pub struct Broker {
    /// Which transport.
    pub kind: Kind,
    /// Its URL.
    pub url: String,
    nats: Option<NatsServer>,
    redis: Option<RedisServer>,
    /// Kept alive for the scenario.
    _kafka: Option<KafkaServer>,
    /// Keeps the embedded broker alive across the scenario's app restarts.
    memory: Option<jetflow::memory::Broker>,
}

impl Broker {
    /// A fresh broker of `kind` for the scenario `test`.
    pub async fn new(kind: Kind, test: &str) -> Broker {
        match kind {
            Kind::Nats => {
                let server = crate::server().await;
                Broker {
                    kind,
                    url: server.url(),
                    nats: Some(server),
                    redis: None,
                    _kafka: None,
                    memory: None,
                }
            }
            Kind::Memory => {
                crate::init_tracing();
                let url = jetflow::testing::memory_url(test);
                let name = url.trim_start_matches(jetflow::memory::SCHEME);
                Broker {
                    kind,
                    memory: Some(jetflow::memory::Broker::named(name)),
                    url,
                    nats: None,
                    redis: None,
                    _kafka: None,
                }
            }
            Kind::RabbitMq => Broker {
                kind,
                url: crate::rabbitmq_vhost(test).await,
                nats: None,
                redis: None,
                _kafka: None,
                memory: None,
            },
            Kind::Redis => {
                let server = crate::redis_server().await;
                Broker {
                    kind,
                    url: server.url(),
                    nats: None,
                    redis: Some(server),
                    _kafka: None,
                    memory: None,
                }
            }
            Kind::Kafka => {
                let server = crate::kafka_server().await;
                Broker {
                    kind,
                    url: server.url(),
                    nats: None,
                    redis: None,
                    _kafka: Some(server),
                    memory: None,
                }
            }
        }
    }

    /// `false` (printing why, as [`supports`](Self::supports) does) when
    /// the scenario needs a fault the test kit cannot cause on this
    /// transport (`cannot` names it).
    pub fn can_fault(&self, scenario: &str, cannot: &[(Kind, &str)]) -> bool {
        match cannot.iter().find(|(k, _)| *k == self.kind) {
            None => true,
            Some((_, why)) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "conformance: skipping {scenario} on {:?}: {why}",
                    self.kind
                );
                false
            }
        }
    }

    /// The NATS server, for faults (`None` on other transports).
    pub fn nats(&mut self) -> Option<&mut NatsServer> {
        self.nats.as_mut()
    }

    /// The Redis server, for faults (`None` on other transports).
    pub fn redis(&mut self) -> Option<&mut RedisServer> {
        self.redis.as_mut()
    }

    /// The embedded broker (a `memory://` kind only), for faults.
    pub fn memory(&self) -> jetflow::memory::Broker {
        self.memory.clone().expect("not an embedded broker")
    }

    /// An app named `name` on this broker.
    pub fn app(&self, name: &str) -> App {
        App::new(name).url(&self.url)
    }

    /// Starts an app named `t` with `ledger` as its state and `handler`.
    pub async fn start<H: Handler>(&self, ledger: &Ledger, handler: H) -> AppHandle {
        self.app("t")
            .state(ledger.clone())
            .handler(handler)
            .start()
            .await
            .expect("app starts")
    }

    /// `true` when the transport has what the scenario `name` needs;
    /// otherwise prints why it is skipped (straight to stderr, so the
    /// line shows even though the test passes) and returns `false`.
    pub fn supports(
        &self,
        scenario: &str,
        need: &str,
        has: impl Fn(&Capabilities) -> bool,
    ) -> bool {
        if has(&self.kind.capabilities()) {
            return true;
        }
        let _ = writeln!(
            std::io::stderr(),
            "conformance: skipping {scenario} on {:?}: the transport has no {need}",
            self.kind
        );
        false
    }
}

/// The counts of `durable` on `stream`.
pub async fn state(app: &AppHandle, stream: &str, durable: &str) -> ConsumerState {
    app.bus()
        .consumer_state(stream, durable)
        .await
        .expect("consumer state readable")
}

/// Waits until the consumer reports everything up to `floor` settled and
/// nothing pending or unacknowledged.
pub async fn settled(app: &AppHandle, stream: &str, durable: &str, floor: u64) -> ConsumerState {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = state(app, stream, durable).await;
        if s.ack_floor >= floor && s.num_ack_pending == 0 && s.num_pending == 0 {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {stream}/{durable} to settle up to {floor}; it reports {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `handler`'s counts satisfy `done`, at most [`WAIT`].
pub async fn wait_stats(
    app: &AppHandle,
    handler: &str,
    done: impl FnMut(&HandlerStats) -> bool,
) -> HandlerStats {
    app.wait_stats(handler, WAIT, done)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A job keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Job {
    key: String,
}

/// The job `key`.
pub fn job(key: impl Into<String>) -> Job {
    Job { key: key.into() }
}

impl Broker {
    /// Makes the DLQ refuse new records (`true`) as a full stream does, or
    /// accept them again (`false`); see [`Broker::refuse_writes`]. The app
    /// must have declared the DLQ.
    pub async fn refuse_dead_letters(&self, refuse: bool) {
        self.refuse_writes(jetflow::dlq::STREAM, "dlq.filler.x", refuse)
            .await;
    }

    /// Makes `stream` refuse new messages (`true`), or accept them again.
    /// On NATS and the embedded broker it is limited to one message (a
    /// filler published on `filler`, a subject of the stream no handler
    /// reads) with `discard = new`, as a full stream is; on Redis its key
    /// holds a string, so `XADD` fails with `WRONGTYPE` (and its messages
    /// are dropped).
    pub async fn refuse_writes(&self, stream: &str, filler: &str, refuse: bool) {
        use async_nats::jetstream::stream::DiscardPolicy;
        match self.kind {
            Kind::Nats => {
                let client = async_nats::connect(&self.url).await.expect("connects");
                let js = async_nats::jetstream::new(client);
                let mut handle = js.get_stream(stream).await.expect("the stream is declared");
                let info = handle.info().await.expect("stream info").clone();
                if refuse && info.state.messages == 0 {
                    js.publish(filler.to_owned(), "filler".into())
                        .await
                        .expect("filler sent")
                        .await
                        .expect("filler stored");
                }
                let mut config = info.config;
                config.max_messages = if refuse { 1 } else { -1 };
                config.discard = DiscardPolicy::New;
                js.update_stream(config)
                    .await
                    .expect("stream limits updated");
            }
            Kind::Memory => {
                let broker = self.memory();
                if refuse {
                    broker.limit_stream(stream, 0, false);
                    jetflow::Bus::on(broker.clone(), "filler")
                        .publish_raw(filler, jetflow::Headers::new(), "filler".into())
                        .await
                        .expect("filler stored");
                }
                assert!(broker.limit_stream(stream, u64::from(refuse), refuse));
            }
            Kind::RabbitMq => {
                unreachable!("scenarios that fill a stream skip RabbitMQ (can_fault)")
            }
            Kind::Kafka => unreachable!("scenarios that fill a stream skip Kafka (can_fault)"),
            Kind::Redis => {
                let mut conn = self.redis_connection().await;
                let key = format!("jetflow:{{{stream}}}:messages");
                let _: () = redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .expect("DEL");
                if refuse {
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg("not a stream")
                        .query_async(&mut conn)
                        .await
                        .expect("SET");
                }
            }
        }
    }
}

impl Broker {
    /// A connection to the Redis server, for faults.
    async fn redis_connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connects")
    }

    /// Deletes `stream` with its messages and consumers, as an operator's
    /// `nats stream rm` would (on Redis: its keys and its declaration).
    pub async fn delete_stream(&self, stream: &str) {
        match self.kind {
            Kind::Nats => {
                let client = async_nats::connect(&self.url).await.expect("connects");
                let js = async_nats::jetstream::new(client);
                js.delete_stream(stream).await.expect("stream deleted");
            }
            Kind::Memory => assert!(self.memory().delete_stream(stream), "no stream {stream}"),
            Kind::RabbitMq => {
                unreachable!("scenarios that delete a stream skip RabbitMQ (can_fault)")
            }
            Kind::Kafka => unreachable!("scenarios that delete a stream skip Kafka (can_fault)"),
            Kind::Redis => {
                let mut conn = self.redis_connection().await;
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("jetflow:{{{stream}}}:*"))
                    .query_async(&mut conn)
                    .await
                    .expect("KEYS");
                for key in keys {
                    let _: () = redis::cmd("DEL")
                        .arg(key)
                        .query_async(&mut conn)
                        .await
                        .expect("DEL");
                }
                let _: () = redis::cmd("HDEL")
                    .arg("jetflow:streams")
                    .arg(stream)
                    .query_async(&mut conn)
                    .await
                    .expect("HDEL");
            }
        }
    }
}
