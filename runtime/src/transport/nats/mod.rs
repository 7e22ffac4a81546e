//! NATS: JetStream for events (streams, durable pull consumers, PubAcks,
//! dedup on `Nats-Msg-Id`) and core NATS for notifications.
//!
//! [`NatsTransport`] is what `nats://` and `tls://` URLs select. The
//! JetStream pull protocol — pull requests sized to the runtime's credits,
//! idle heartbeats, `408`/`409` statuses, re-issuing requests after a
//! reconnect — lives in this module; the consume loop only sees credits
//! and messages. The async-nats client it runs on is reachable with
//! [`NatsTransport::client`], for code that needs more of NATS than jetflow
//! uses (KV, object store, request/reply).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jetflow::transport::nats::{NatsTransport, async_nats};
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let bus = jetflow::Bus::on(NatsTransport::from_client(client), "orders");
//! let js = async_nats::jetstream::new(NatsTransport::of(&bus).expect("a NATS bus").client().clone());
//! # drop(js); Ok(()) }
//! ```

mod connect;
mod core;
mod filter_change;
mod headers;
mod pull;
mod topology;

pub use async_nats;

pub(crate) use self::connect::connect;
pub(crate) use self::headers::MSG_ID;

use std::borrow::Cow;
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream;
use tokio::sync::watch;

use self::core::CoreSubscription;
use self::pull::PullSubscription;
use crate::topology::{
    ConsumerDecl, ConsumerState, ConsumerView, StreamDecl, TopologyError, TopologyPolicy,
};
use crate::transport::{
    Acker, BoxError, Capabilities, ConsumerStatus, Inbound, Outgoing, PubAck, PublishErrorKind,
    PublishFailure, Settle, SettleError, Stored, Subscription, Transport,
};

/// Timing of JetStream pull requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PullTiming {
    /// How long one pull request waits on the server.
    pub(crate) expires: Duration,
    /// Idle heartbeat the server sends while a request waits.
    pub(crate) heartbeat: Duration,
}

impl Default for PullTiming {
    fn default() -> Self {
        PullTiming {
            expires: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
        }
    }
}

/// A connection to a NATS server: JetStream for events, core NATS for
/// notifications. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NatsTransport {
    client: async_nats::Client,
    js: jetstream::Context,
    pull: PullTiming,
    reconnects: watch::Receiver<u64>,
    /// Keeps the channel open when nobody reports reconnections, so that
    /// `changed()` waits instead of failing at once.
    _unreported: Option<std::sync::Arc<watch::Sender<u64>>>,
}

impl NatsTransport {
    /// What JetStream and core NATS do natively.
    pub const CAPABILITIES: Capabilities = Capabilities {
        notifications: true,
        ..Capabilities::durable()
    };

    /// A transport on an existing connection. Reconnections of a client made
    /// this way are not observed: after a reconnect, pull requests are
    /// re-issued only when the server's heartbeats stop. Apps connect with
    /// [`App::url`](crate::App::url), which observes them.
    pub fn from_client(client: async_nats::Client) -> NatsTransport {
        NatsTransport::new(client, None)
    }

    /// `reconnects` counts reconnections; `None` for a connection whose
    /// reconnections nobody reports.
    pub(crate) fn new(
        client: async_nats::Client,
        reconnects: Option<watch::Receiver<u64>>,
    ) -> NatsTransport {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(5));
        let (reconnects, unreported) = match reconnects {
            Some(rx) => (rx, None),
            None => {
                let (tx, rx) = watch::channel(0);
                (rx, Some(std::sync::Arc::new(tx)))
            }
        };
        NatsTransport {
            client,
            js,
            pull: PullTiming::default(),
            reconnects,
            _unreported: unreported,
        }
    }

    pub(crate) fn with_pull_timing(mut self, pull: PullTiming) -> NatsTransport {
        self.pull = pull;
        self
    }

    /// The async-nats client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The NATS transport of `bus`, or `None` when the bus runs on another one.
    pub fn of(bus: &crate::Bus) -> Option<&NatsTransport> {
        bus.transport().as_any().downcast_ref()
    }

    fn server_version(&self) -> String {
        self.client.server_info().version
    }

    /// Writes one message; the future reads its PubAck.
    async fn send(
        &self,
        message: Outgoing,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        let headers = headers::to_nats(message.headers, Some(message.id));
        let publish = jetstream::message::PublishMessage::build()
            .payload(message.payload)
            .headers(headers);
        self.js
            .send_publish(subject(message.subject), publish)
            .await
    }
}

/// `2.9.10` -> true, `2.15.1` -> false: servers that keep a closed inbox's
/// waiting pull request until they next deliver to it, and whose KV
/// replies async-nats cannot read.
pub(crate) fn older_than_2_10(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (2, 10)
}

fn pub_ack(ack: jetstream::publish::PublishAck) -> PubAck {
    PubAck::new(ack.stream, ack.sequence, ack.duplicate)
}

/// A timeout or a broken connection may have stored the message: retry
/// with the same id. Anything else is final.
fn failure(e: jetstream::context::PublishError) -> PublishFailure {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::TimedOut | K::BrokenPipe => PublishFailure::Lost(e.into()),
        K::StreamNotFound => PublishFailure::Failed(PublishErrorKind::NoStream, e.into()),
        K::MaxPayloadExceeded => PublishFailure::Failed(PublishErrorKind::TooLarge, e.into()),
        _ => PublishFailure::Failed(PublishErrorKind::Rejected, e.into()),
    }
}

impl Transport for NatsTransport {
    type Acker = NatsAcker;
    type Subscription = NatsSubscription;

    fn describe(&self) -> String {
        let info = self.client.server_info();
        format!("JetStream on nats-server {} at {}", info.version, info.host)
    }

    fn system(&self) -> &'static str {
        "nats"
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            give_back: !older_than_2_10(&self.server_version()),
            ..NatsTransport::CAPABILITIES
        }
    }

    async fn publish(&self, message: Outgoing) -> Result<PubAck, PublishFailure> {
        match self.send(message).await {
            Ok(ack) => ack.await.map(pub_ack).map_err(failure),
            Err(e) => Err(failure(e)),
        }
    }

    /// Writes every message, then reads every PubAck.
    async fn publish_batch(&self, messages: Vec<Outgoing>) -> Vec<Result<PubAck, PublishFailure>> {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            sent.push(self.send(message).await);
        }
        let mut acks = Vec::with_capacity(sent.len());
        for ack in sent {
            acks.push(match ack {
                Ok(ack) => ack.await.map(pub_ack).map_err(failure),
                Err(e) => Err(failure(e)),
            });
        }
        acks
    }

    async fn notify(&self, message: Outgoing) -> Result<(), PublishFailure> {
        core::notify(&self.client, message).await
    }

    async fn declare_streams(
        &self,
        streams: &[StreamDecl],
        policy: TopologyPolicy,
    ) -> Result<(), TopologyError> {
        for stream in streams {
            topology::declare_stream(&self.js, stream, policy).await?;
        }
        Ok(())
    }

    async fn declare_consumer(
        &self,
        consumer: &ConsumerDecl,
        policy: TopologyPolicy,
    ) -> Result<ConsumerView, TopologyError> {
        topology::declare_consumer(&self.js, &self.server_version(), consumer, policy).await
    }

    async fn stream_subjects(&self, stream: &str) -> Result<Option<Vec<String>>, TopologyError> {
        Ok(topology::stream_config(&self.js, stream)
            .await?
            .map(|config| config.subjects))
    }

    async fn consumer_view(
        &self,
        consumer: &ConsumerDecl,
    ) -> Result<Option<ConsumerView>, TopologyError> {
        topology::consumer_view(&self.js, consumer).await
    }

    async fn consumer_status(&self, consumer: &ConsumerDecl) -> ConsumerStatus {
        topology::consumer_status(&self.js, consumer).await
    }

    async fn subscribe(&self, consumer: &ConsumerDecl) -> Result<NatsSubscription, BoxError> {
        // Requests within the consumer's own limits (an operator may have
        // set them on a consumer bound with `BindOnly`); without the info,
        // each limit is learned from the server's first refusal.
        let limits = topology::request_limits(&self.js, consumer).await;
        let pull = PullSubscription::open(
            self.client.clone(),
            consumer,
            self.pull,
            limits,
            self.reconnects.clone(),
        )
        .await?;
        Ok(NatsSubscription(Kind::Pull(pull)))
    }

    async fn listen(
        &self,
        subject: &str,
        queue: Option<&str>,
    ) -> Result<NatsSubscription, BoxError> {
        let core = CoreSubscription::open(&self.client, subject, queue).await?;
        Ok(NatsSubscription(Kind::Core(core)))
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<Stored>, TopologyError> {
        topology::read_stream(&self.js, stream).await
    }

    async fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerState, TopologyError> {
        topology::consumer_state(&self.js, stream, durable).await
    }

    async fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> Result<usize, TopologyError> {
        topology::delete_messages(&self.js, stream, sequences).await
    }

    async fn flush(&self) -> Result<(), BoxError> {
        self.client.flush().await.map_err(Into::into)
    }
}

/// A subject for async-nats, without copying a static one.
fn subject(s: Cow<'static, str>) -> Subject {
    match s {
        Cow::Borrowed(s) => Subject::from_static(s),
        Cow::Owned(s) => Subject::from(s),
    }
}

/// Settles a JetStream delivery on its `$JS.ACK...` reply subject; a
/// notification has none, and settling it does nothing.
#[derive(Debug, Clone)]
pub struct NatsAcker {
    client: async_nats::Client,
    reply: Option<Subject>,
}

impl Acker for NatsAcker {
    async fn settle(&self, settle: Settle) -> Result<(), SettleError> {
        use jetstream::AckKind;
        let Some(reply) = &self.reply else {
            return Ok(());
        };
        let (what, kind) = match settle {
            Settle::Ack => ("ack", AckKind::Ack),
            Settle::Retry(delay) if delay.is_zero() => ("nak", AckKind::Nak(None)),
            Settle::Retry(delay) => ("nak", AckKind::Nak(Some(delay))),
            Settle::Progress => ("in-progress", AckKind::Progress),
            Settle::Reject => ("term", AckKind::Term),
        };
        self.client
            .publish(reply.clone(), kind.into())
            .await
            .map_err(|e| SettleError::new(what, e))
    }
}

/// A consume loop's subscription: a JetStream pull consumer, or a core NATS
/// subscription for notifications.
#[derive(Debug)]
pub struct NatsSubscription(Kind);

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per consume loop, created once and never moved per message"
)]
enum Kind {
    Pull(PullSubscription),
    Core(CoreSubscription),
}

impl Subscription for NatsSubscription {
    type Acker = NatsAcker;

    fn grant(&mut self, credits: usize) {
        match &mut self.0 {
            Kind::Pull(p) => p.grant(credits),
            Kind::Core(c) => c.grant(credits),
        }
    }

    async fn next(&mut self) -> Inbound<NatsAcker> {
        match &mut self.0 {
            Kind::Pull(p) => p.next().await,
            Kind::Core(c) => c.next().await,
        }
    }

    async fn close(self) -> usize {
        match self.0 {
            Kind::Pull(p) => p.close().await,
            Kind::Core(c) => c.close().await,
        }
    }

    /// A pull consumer's heartbeats prove it is served; a core
    /// subscription has none.
    fn confirms_alive(&self) -> bool {
        matches!(self.0, Kind::Pull(_))
    }
}
