//! The transport seam: everything the runtime asks of a broker.
//!
//! The consume loop, the acker, the publisher, topology provisioning and the
//! DLQ reader work against [`Transport`]. Two implementations exist:
//! JetStream through async-nats ([`nats::NatsTransport`]) and the embedded
//! broker ([`crate::memory::Broker`], selected by a `memory://` URL). Handlers,
//! topology declarations and [`App`](crate::App) do not change with the
//! choice.
//!
//! The seam is crate-internal for now (the vocabulary below mirrors
//! JetStream's pull-consumer protocol and may still change); [`AnyTransport`]
//! dispatches to the implementation chosen at connect time without boxing
//! any future on the hot path.

pub(crate) mod nats;

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::error::Error;
use crate::memory;
use crate::publish::{PubAck, PublishErrorKind};
use crate::topology::{ConsumerSpec, ConsumerState, StreamSettings, StreamSpec, TopologyPolicy};

pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Metadata of one delivery (JetStream's `$JS.ACK` reply subject, or the
/// embedded broker's bookkeeping).
#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub(crate) stream: String,
    pub(crate) consumer: String,
    pub(crate) stream_sequence: u64,
    pub(crate) consumer_sequence: u64,
    /// Delivery attempt, from 1.
    pub(crate) delivered: u64,
    pub(crate) published: OffsetDateTime,
}

/// One message handed to a consumer, with the handle that settles it.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) subject: String,
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) payload: Bytes,
    pub(crate) info: Info,
    pub(crate) acker: Acker,
}

/// How a delivery is settled (JetStream's ack kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Done; never redeliver.
    Ack,
    /// Redeliver, after the delay if any.
    Nak(Option<Duration>),
    /// Still working: restart the ack-wait timer.
    Progress,
    /// Never redeliver (failed for good).
    Term,
}

/// Settles one delivery. Cheap to clone (the context keeps one for
/// progress acks).
#[derive(Debug, Clone)]
pub(crate) enum Acker {
    Nats(nats::NatsAcker),
    Memory(memory::Acker),
}

impl Acker {
    pub(crate) async fn signal(&self, signal: Signal) -> Result<(), BoxError> {
        match self {
            Acker::Nats(a) => a.signal(signal).await,
            Acker::Memory(a) => {
                a.signal(signal);
                Ok(())
            }
        }
    }
}

/// What arrives on a pull inbox.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message for the handler.
    Message(Box<Delivery>),
    /// The server is alive; a pull request is still waiting.
    Heartbeat,
    /// A pull request ended; `Some(n)`: `n` of its messages will not come;
    /// `None`: unknown, start afresh.
    RequestEnded(Option<usize>),
    /// The durable consumer was deleted.
    ConsumerDeleted,
    /// The durable is a push consumer: jetflow cannot use it.
    PushConsumer,
    /// Nobody answers pull requests (consumer, stream or JetStream gone).
    NoResponders,
    /// Anything else: start afresh.
    Unexpected(String),
    /// The inbox is closed (connection closed).
    Closed,
}

/// Where one consume loop receives its messages. `next` must be cancel-safe.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one inbox per consume loop, never moved on the hot path"
)]
pub(crate) enum Inbox {
    Nats(nats::NatsInbox),
    Memory(memory::Inbox),
}

impl Inbox {
    /// Asks for up to `batch` more messages; the request waits at most
    /// `expires` and is kept alive by heartbeats every `heartbeat`.
    pub(crate) async fn request(
        &mut self,
        batch: usize,
        expires: Duration,
        heartbeat: Duration,
    ) -> Result<(), BoxError> {
        match self {
            Inbox::Nats(i) => i.request(batch, expires, heartbeat).await,
            Inbox::Memory(i) => {
                i.request(batch, expires, heartbeat);
                Ok(())
            }
        }
    }

    /// The next thing that arrives. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Inbound {
        match self {
            Inbox::Nats(i) => i.next().await,
            Inbox::Memory(i) => i.next().await,
        }
    }

    /// Stops the waiting requests and naks every message already on its
    /// way (bounded in time); returns how many were nak'd.
    pub(crate) async fn close(self) -> usize {
        match self {
            Inbox::Nats(i) => i.close().await,
            Inbox::Memory(i) => i.close(),
        }
    }
}

/// A message stored in a stream, read back (the DLQ listing).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

/// Why one publish attempt got no PubAck.
#[derive(Debug)]
pub(crate) enum PublishFailure {
    /// No answer (timeout, broken connection): retry with the same id.
    Lost(BoxError),
    /// A definite answer: do not retry.
    Failed(PublishErrorKind, BoxError),
}

/// The contract a broker fulfils for jetflow. Implemented by
/// [`nats::NatsTransport`] (JetStream) and [`memory::Connection`] (the
/// embedded broker); [`AnyTransport`] is the one the runtime holds.
pub(crate) trait Transport: Send + Sync {
    /// One publish attempt, awaiting the PubAck. `headers` carries
    /// `Nats-Msg-Id`, which deduplicates inside the stream's window.
    fn publish(
        &self,
        subject: async_nats::Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<PubAck, PublishFailure>> + Send;

    /// Ensures every stream exists and stores its subjects, by `policy`.
    fn ensure_streams(
        &self,
        streams: &BTreeMap<String, StreamSpec>,
        settings: &StreamSettings,
        policy: TopologyPolicy,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Ensures the durable consumer exists as declared; returns the
    /// effective config (its `ack_wait` drives automatic progress acks).
    fn ensure_consumer(
        &self,
        spec: &ConsumerSpec,
        policy: TopologyPolicy,
    ) -> impl Future<Output = Result<consumer::Config, Error>> + Send;

    /// `Ok(true)`: exists; `Ok(false)`: the consumer is gone; `Err`: the
    /// stream is gone or the broker unreachable.
    fn consumer_exists(
        &self,
        stream: &str,
        durable: &str,
    ) -> impl Future<Output = Result<bool, String>> + Send;

    /// A fresh pull inbox on the durable consumer.
    fn open_inbox(
        &self,
        spec: &ConsumerSpec,
    ) -> impl Future<Output = Result<Inbox, BoxError>> + Send;

    /// Every message in `stream`, oldest first.
    fn stream_messages(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Vec<Stored>, Error>> + Send;

    /// Counts of a durable consumer.
    fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> impl Future<Output = Result<ConsumerState, Error>> + Send;

    /// Waits until everything sent (acks included) reached the broker.
    fn flush(&self) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Counts reconnections; every change means pull requests must be re-issued.
    fn reconnects(&self) -> watch::Receiver<u64>;
}

/// The transport chosen at connect time.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "held once per Bus (behind an Arc) and per consume loop"
)]
pub(crate) enum AnyTransport {
    Nats(nats::NatsTransport),
    Memory(memory::Connection),
}

impl AnyTransport {
    /// Human-readable name, for logs: `JetStream at nats://...` or `embedded broker `x``.
    pub(crate) fn describe(&self) -> String {
        match self {
            AnyTransport::Nats(t) => t.describe(),
            AnyTransport::Memory(m) => m.describe(),
        }
    }
}

impl Transport for AnyTransport {
    async fn publish(
        &self,
        subject: async_nats::Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PubAck, PublishFailure> {
        match self {
            AnyTransport::Nats(t) => t.publish(subject, headers, payload).await,
            AnyTransport::Memory(t) => t.publish(subject, headers, payload).await,
        }
    }

    async fn ensure_streams(
        &self,
        streams: &BTreeMap<String, StreamSpec>,
        settings: &StreamSettings,
        policy: TopologyPolicy,
    ) -> Result<(), Error> {
        match self {
            AnyTransport::Nats(t) => t.ensure_streams(streams, settings, policy).await,
            AnyTransport::Memory(t) => t.ensure_streams(streams, settings, policy).await,
        }
    }

    async fn ensure_consumer(
        &self,
        spec: &ConsumerSpec,
        policy: TopologyPolicy,
    ) -> Result<consumer::Config, Error> {
        match self {
            AnyTransport::Nats(t) => t.ensure_consumer(spec, policy).await,
            AnyTransport::Memory(t) => t.ensure_consumer(spec, policy).await,
        }
    }

    async fn consumer_exists(&self, stream: &str, durable: &str) -> Result<bool, String> {
        match self {
            AnyTransport::Nats(t) => t.consumer_exists(stream, durable).await,
            AnyTransport::Memory(t) => t.consumer_exists(stream, durable).await,
        }
    }

    async fn open_inbox(&self, spec: &ConsumerSpec) -> Result<Inbox, BoxError> {
        match self {
            AnyTransport::Nats(t) => t.open_inbox(spec).await,
            AnyTransport::Memory(t) => t.open_inbox(spec).await,
        }
    }

    async fn stream_messages(&self, stream: &str) -> Result<Vec<Stored>, Error> {
        match self {
            AnyTransport::Nats(t) => t.stream_messages(stream).await,
            AnyTransport::Memory(t) => t.stream_messages(stream).await,
        }
    }

    async fn consumer_state(&self, stream: &str, durable: &str) -> Result<ConsumerState, Error> {
        match self {
            AnyTransport::Nats(t) => t.consumer_state(stream, durable).await,
            AnyTransport::Memory(t) => t.consumer_state(stream, durable).await,
        }
    }

    async fn flush(&self) -> Result<(), BoxError> {
        match self {
            AnyTransport::Nats(t) => t.flush().await,
            AnyTransport::Memory(t) => t.flush().await,
        }
    }

    fn reconnects(&self) -> watch::Receiver<u64> {
        match self {
            AnyTransport::Nats(t) => t.reconnects(),
            AnyTransport::Memory(t) => t.reconnects(),
        }
    }
}
