//! The embedded broker: an in-process JetStream with the semantics jetflow
//! relies on, selected by a `memory://` URL.
//!
//! It models streams (subject filters, limits retention, `duplicate_window`
//! dedup on `Nats-Msg-Id`) and durable pull consumers (filter subject,
//! explicit ack, `ack_wait` expiry and redelivery, `max_deliver`, nak with
//! delay, in-progress resetting the ack timer, term, `max_ack_pending`,
//! delivery count and stream/consumer sequences, competing pull requests on
//! one durable, resume from the ack floor when an app restarts in the same
//! process). Handlers, topology and [`App`](crate::App) behave as on a
//! server, so retry, DLQ and idempotency logic can be tested in
//! milliseconds without one.
//!
//! It runs on tokio's clock, so a test with a paused clock
//! (`#[tokio::test(start_paused = true)]`) checks a 30-second backoff
//! schedule without waiting for it. It spawns no task: the consume loops
//! drive every timer while they wait for messages.
//!
//! ```
//! use jetflow::prelude::*;
//!
//! #[event(version = "v1")]
//! pub struct Ping { pub n: u32 }
//!
//! #[handler(group = "pong")]
//! async fn pong(ping: Ping) -> Result<(), HandlerError> {
//!     println!("ping {}", ping.n);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> jetflow::Result<()> {
//! // `memory://doc-example` names a broker of this process; an App that
//! // restarts on the same URL finds its streams and consumers again.
//! let app = App::new("pong").url("memory://doc-example").handler(pong).start().await?;
//! app.bus().publish(&Ping { n: 1 }).await?;
//! app.stop().await
//! # }
//! ```
//!
//! # Differences from JetStream
//!
//! Nothing is persisted (the broker lives as long as the process); there are
//! no clusters, replicas, mirrors, sources, push consumers, ordered
//! consumers, consumer `backoff` on ack timeouts, multi-filter consumers,
//! per-subject limits, KV or object store; acks take effect at once (there
//! is no network to lose them); `max_waiting` is not enforced. Two stream
//! subject sets overlap only if one pattern matches the other.
//!
//! A broker is tied to the tokio clock of the runtime that uses it: give
//! each test (each `#[tokio::test]` has its own runtime) its own broker
//! name.

mod consumer;
mod stream;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{self as js_consumer, IntoConsumerConfig};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use self::consumer::Consumer;
use self::stream::{Refused, Stream};
use crate::error::Error;
use crate::event::subject_matches;
use crate::publish::{PubAck, PublishErrorKind};
use crate::topology::{
    self, ConsumerPlan, ConsumerSpec, ConsumerState, StreamPlan, StreamSettings, StreamSpec,
    TopologyPolicy,
};
use crate::transport::{
    self, BoxError, Delivery, Inbound, Info, PublishFailure, Signal, Stored, Transport,
};

/// URL scheme of the embedded broker: `memory://` (the process's default
/// broker) or `memory://{name}`.
pub const SCHEME: &str = "memory://";

/// Largest message the embedded broker accepts, like nats-server's default
/// `max_payload` (1 MiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// An embedded broker. Cheap to clone; clones share the streams.
///
/// ```
/// let broker = jetflow::memory::Broker::named("orders-test");
/// assert_eq!(broker.url(), "memory://orders-test");
/// assert!(broker.stream_names().is_empty());
/// ```
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    state: Mutex<State>,
    /// Bumped on every change a waiting consumer may care about.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    streams: BTreeMap<String, Stream>,
    next_id: u64,
}

impl State {
    fn consumer_mut(&mut self, stream: &str, durable: &str) -> Option<&mut Consumer> {
        self.streams.get_mut(stream)?.consumers.get_mut(durable)
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

fn registry() -> &'static Mutex<HashMap<String, Broker>> {
    static BROKERS: OnceLock<Mutex<HashMap<String, Broker>>> = OnceLock::new();
    BROKERS.get_or_init(Default::default)
}

impl Broker {
    /// The broker of this process named `name` (created on first use);
    /// `memory://{name}` reaches the same one.
    pub fn named(name: &str) -> Broker {
        let mut brokers = registry().lock().unwrap_or_else(|p| p.into_inner());
        brokers
            .entry(name.to_owned())
            .or_insert_with(|| Broker {
                shared: Arc::new(Shared {
                    name: name.to_owned(),
                    state: Mutex::new(State::default()),
                    changed: watch::channel(0).0,
                }),
            })
            .clone()
    }

    /// The broker a `memory://...` URL names (`memory://` alone: `default`).
    pub(crate) fn for_url(url: &str) -> Option<Broker> {
        let name = url.strip_prefix(SCHEME)?.trim_end_matches('/');
        Some(Broker::named(if name.is_empty() {
            "default"
        } else {
            name
        }))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The URL that selects it: `memory://{name}`.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}", self.shared.name)
    }

    /// Names of its streams.
    pub fn stream_names(&self) -> Vec<String> {
        self.lock().streams.keys().cloned().collect()
    }

    /// Deletes a durable consumer, as `nats consumer rm` would: its waiting
    /// pull requests end with "consumer deleted". `false` if there was none.
    pub fn delete_consumer(&self, stream: &str, durable: &str) -> bool {
        let removed = self
            .lock()
            .streams
            .get_mut(stream)
            .and_then(|s| s.consumers.remove(durable))
            .is_some();
        self.notify();
        removed
    }

    /// Deletes a stream with its messages and consumers. `false` if there was none.
    pub fn delete_stream(&self, stream: &str) -> bool {
        let removed = self.lock().streams.remove(stream).is_some();
        self.notify();
        removed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (no invariant spans a
        // user callback), so a poisoned lock is still usable.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.shared.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A connection for the runtime (its transport).
    pub(crate) fn connect(&self) -> Connection {
        let (tx, rx) = watch::channel(0);
        Connection {
            broker: self.clone(),
            reconnects: rx,
            _never_reconnects: Arc::new(tx),
        }
    }
}

/// The runtime's handle on a broker (what [`Transport`] is implemented for).
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    broker: Broker,
    reconnects: watch::Receiver<u64>,
    /// Keeps `reconnects` open: an in-process broker never reconnects.
    _never_reconnects: Arc<watch::Sender<u64>>,
}

impl Connection {
    pub(crate) fn describe(&self) -> String {
        format!("the embedded broker {}", self.broker.url())
    }

    fn stream_gone(stream: &str) -> Error {
        Error::topology(
            format!("cannot open stream `{stream}`"),
            format!("stream not found on the embedded broker {stream:?}"),
        )
    }
}

impl Transport for Connection {
    async fn publish(
        &self,
        subject: Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PubAck, PublishFailure> {
        if stream::message_size(&subject, &headers, &payload) > MAX_PAYLOAD as u64 {
            return Err(PublishFailure::Failed(
                PublishErrorKind::TooLarge,
                format!("the embedded broker's max_payload is {MAX_PAYLOAD} bytes").into(),
            ));
        }
        let now = Instant::now();
        let stored = {
            let mut state = self.broker.lock();
            let Some((name, stream)) = state.streams.iter_mut().find(|(_, s)| {
                s.config
                    .subjects
                    .iter()
                    .any(|f| subject_matches(f, &subject))
            }) else {
                return Err(PublishFailure::Failed(
                    PublishErrorKind::NoStream,
                    format!("no stream of the embedded broker stores {subject:?}").into(),
                ));
            };
            let name = name.clone();
            match stream.store(&subject, headers, payload, now) {
                Ok((sequence, duplicate)) => PubAck {
                    stream: name,
                    sequence,
                    duplicate,
                },
                Err(Refused::TooLarge(why)) => {
                    return Err(PublishFailure::Failed(
                        PublishErrorKind::TooLarge,
                        why.into(),
                    ));
                }
                Err(Refused::Limit(why)) => {
                    return Err(PublishFailure::Failed(
                        PublishErrorKind::Rejected,
                        why.into(),
                    ));
                }
            }
        };
        if !stored.duplicate {
            self.broker.notify();
        }
        Ok(stored)
    }

    async fn ensure_streams(
        &self,
        streams: &BTreeMap<String, StreamSpec>,
        settings: &StreamSettings,
        policy: TopologyPolicy,
    ) -> Result<(), Error> {
        let mut state = self.broker.lock();
        for (name, spec) in streams {
            let existing = state.streams.get(name).map(|s| &s.config);
            match topology::plan_stream(name, spec, settings, policy, existing)? {
                StreamPlan::Keep => {}
                StreamPlan::Create(config) => {
                    check_overlap(&state.streams, &config)?;
                    state.streams.insert(name.clone(), Stream::new(config));
                    tracing::info!(stream = %name, broker = %self.broker.url(), "created stream");
                }
                StreamPlan::Update(config) => {
                    check_overlap(&state.streams, &config)?;
                    if let Some(s) = state.streams.get_mut(name) {
                        s.config = config;
                    }
                }
            }
        }
        Ok(())
    }

    async fn ensure_consumer(
        &self,
        spec: &ConsumerSpec,
        policy: TopologyPolicy,
    ) -> Result<js_consumer::Config, Error> {
        let config = {
            let mut guard = self.broker.lock();
            let state = &mut *guard;
            state.next_id += 1;
            let incarnation = state.next_id;
            let stream = state
                .streams
                .get_mut(&spec.stream)
                .ok_or_else(|| Self::stream_gone(&spec.stream))?;
            let existing = stream.consumers.get(&spec.durable).map(|c| &c.config);
            match topology::plan_consumer(spec, policy, existing)? {
                ConsumerPlan::Keep(config) => config,
                ConsumerPlan::Create(config) => {
                    let consumer =
                        Consumer::new(config.into_consumer_config(), stream, incarnation);
                    let config = consumer.config.clone();
                    stream.consumers.insert(spec.durable.clone(), consumer);
                    tracing::info!(consumer = %spec.durable, stream = %spec.stream, "created durable consumer");
                    config
                }
                ConsumerPlan::Update { config, diff } => {
                    let consumer = stream
                        .consumers
                        .get_mut(&spec.durable)
                        .ok_or_else(|| Self::stream_gone(&spec.stream))?;
                    consumer
                        .update(config.into_consumer_config())
                        .map_err(|why| topology::update_refused(spec, &diff, why))?;
                    consumer.config.clone()
                }
            }
        };
        self.broker.notify();
        Ok(config)
    }

    async fn consumer_exists(&self, stream: &str, durable: &str) -> Result<bool, String> {
        match self.broker.lock().streams.get(stream) {
            Some(s) => Ok(s.consumers.contains_key(durable)),
            None => Err(format!(
                "stream `{stream}` does not exist (was it deleted?)"
            )),
        }
    }

    async fn open_inbox(&self, spec: &ConsumerSpec) -> Result<transport::Inbox, BoxError> {
        let (id, incarnation) = {
            let mut guard = self.broker.lock();
            let state = &mut *guard;
            state.next_id += 1;
            let incarnation = state
                .streams
                .get(&spec.stream)
                .and_then(|s| s.consumers.get(&spec.durable))
                .map(|c| c.incarnation);
            (state.next_id, incarnation)
        };
        Ok(transport::Inbox::Memory(Inbox {
            broker: self.broker.clone(),
            stream: spec.stream.clone(),
            durable: spec.durable.clone(),
            id,
            incarnation,
            changed: self.broker.shared.changed.subscribe(),
            requests: VecDeque::new(),
        }))
    }

    async fn stream_messages(&self, stream: &str) -> Result<Vec<Stored>, Error> {
        let mut state = self.broker.lock();
        let s = state
            .streams
            .get_mut(stream)
            .ok_or_else(|| Self::stream_gone(stream))?;
        s.expire(Instant::now());
        Ok(s.messages
            .iter()
            .map(|(&sequence, m)| Stored {
                sequence,
                headers: m.headers.clone(),
                payload: m.payload.clone(),
            })
            .collect())
    }

    async fn consumer_state(&self, stream: &str, durable: &str) -> Result<ConsumerState, Error> {
        let state = self.broker.lock();
        let s = state
            .streams
            .get(stream)
            .ok_or_else(|| Self::stream_gone(stream))?;
        let c = s.consumers.get(durable).ok_or_else(|| {
            Error::topology(
                format!("cannot read consumer `{durable}` on stream `{stream}`"),
                "consumer not found on the embedded broker",
            )
        })?;
        Ok(c.state(s, Instant::now()))
    }

    async fn flush(&self) -> Result<(), BoxError> {
        // acks take effect synchronously
        Ok(())
    }

    fn reconnects(&self) -> watch::Receiver<u64> {
        self.reconnects.clone()
    }
}

fn check_overlap(
    streams: &BTreeMap<String, Stream>,
    config: &async_nats::jetstream::stream::Config,
) -> Result<(), Error> {
    for (other, s) in streams {
        if *other == config.name {
            continue;
        }
        for a in &s.config.subjects {
            for b in &config.subjects {
                if subject_matches(a, b) || subject_matches(b, a) {
                    return Err(Error::topology(
                        format!("cannot create or update stream `{}`", config.name),
                        format!(
                            "its subject {b:?} overlaps {a:?} of stream `{other}`; give the events a distinct stream or first token"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Settles one delivery on the broker.
#[derive(Debug, Clone)]
pub(crate) struct Acker {
    broker: Broker,
    stream: String,
    durable: String,
    stream_sequence: u64,
    consumer_sequence: u64,
}

impl Acker {
    pub(crate) fn signal(&self, signal: Signal) {
        let now = Instant::now();
        {
            let mut state = self.broker.lock();
            let Some(c) = state.consumer_mut(&self.stream, &self.durable) else {
                return;
            };
            let seq = self.stream_sequence;
            match signal {
                Signal::Ack | Signal::Term => c.settle(seq),
                Signal::Nak(delay) => {
                    c.nak(seq, self.consumer_sequence, delay.unwrap_or_default(), now)
                }
                Signal::Progress => {
                    c.progress(seq, self.consumer_sequence, now);
                    return;
                }
            }
        }
        self.broker.notify();
    }
}

#[derive(Debug)]
struct Request {
    remaining: usize,
    expires_at: Instant,
    heartbeat: Duration,
    next_heartbeat: Instant,
}

/// A consume loop's pull inbox on a durable of the broker.
#[derive(Debug)]
pub(crate) struct Inbox {
    broker: Broker,
    stream: String,
    durable: String,
    id: u64,
    /// The consumer this inbox was opened on (`None`: it did not exist).
    incarnation: Option<u64>,
    changed: watch::Receiver<u64>,
    requests: VecDeque<Request>,
}

impl Inbox {
    pub(crate) fn request(&mut self, batch: usize, expires: Duration, heartbeat: Duration) {
        let now = Instant::now();
        self.requests.push_back(Request {
            remaining: batch,
            expires_at: now + expires,
            heartbeat,
            next_heartbeat: now + heartbeat,
        });
        self.publish_waiting();
    }

    fn publish_waiting(&self) {
        let waiting = self.waiting();
        if let Some(c) = self.broker.lock().consumer_mut(&self.stream, &self.durable) {
            c.waiting.insert(self.id, waiting);
        }
    }

    /// Cancel-safe: all state changes happen between awaits.
    pub(crate) async fn next(&mut self) -> Inbound {
        loop {
            // Mark the current version seen before looking, so that no
            // change between the look and the wait is missed.
            self.changed.borrow_and_update();
            let wake = match self.poll_once(Instant::now()) {
                Ok(inbound) => return inbound,
                Err(wake) => wake,
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = self.changed.changed() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => {
                    let _ = self.changed.changed().await;
                }
            }
        }
    }

    /// What arrives now, or `Err(when to look again)`.
    fn poll_once(&mut self, now: Instant) -> Result<Inbound, Option<Instant>> {
        let broker = self.broker.clone();
        let mut guard = broker.lock();
        let polled = guard.streams.get_mut(&self.stream).and_then(|stream| {
            // disjoint borrows: the consumer changes while the messages are read
            let Stream {
                messages,
                last_sequence,
                consumers,
                ..
            } = stream;
            let consumer = consumers.get_mut(&self.durable)?;
            self.poll_consumer(consumer, messages, *last_sequence, now)
        });
        drop(guard);
        polled.unwrap_or_else(|| self.gone())
    }

    /// `None`: this inbox's consumer is gone (a new one has the name).
    fn poll_consumer(
        &mut self,
        consumer: &mut Consumer,
        messages: &BTreeMap<u64, stream::Message>,
        last_sequence: u64,
        now: Instant,
    ) -> Option<Result<Inbound, Option<Instant>>> {
        if Some(consumer.incarnation) != self.incarnation {
            return None;
        }
        // a request that expired ends with the count it did not get
        if let Some(i) = self.requests.iter().position(|r| r.expires_at <= now) {
            let ended = self.requests.remove(i).map_or(0, |r| r.remaining);
            consumer.waiting.insert(self.id, self.waiting());
            return Some(Ok(Inbound::RequestEnded(Some(ended))));
        }
        if self.requests.is_empty() {
            return Some(Err(None));
        }
        if let Some(d) = consumer.take(messages, last_sequence, now) {
            if let Some(front) = self.requests.front_mut() {
                front.remaining -= 1;
                front.next_heartbeat = now + front.heartbeat;
                if front.remaining == 0 {
                    self.requests.pop_front();
                }
            }
            consumer.waiting.insert(self.id, self.waiting());
            let m = &messages[&d.stream_sequence];
            let delivery = Delivery {
                subject: m.subject.clone(),
                headers: Some(m.headers.clone()),
                payload: m.payload.clone(),
                info: Info {
                    stream: self.stream.clone(),
                    consumer: self.durable.clone(),
                    stream_sequence: d.stream_sequence,
                    consumer_sequence: d.consumer_sequence,
                    delivered: d.delivered,
                    published: m.time,
                },
                acker: transport::Acker::Memory(Acker {
                    broker: self.broker.clone(),
                    stream: self.stream.clone(),
                    durable: self.durable.clone(),
                    stream_sequence: d.stream_sequence,
                    consumer_sequence: d.consumer_sequence,
                }),
            };
            return Some(Ok(Inbound::Message(Box::new(delivery))));
        }
        // idle heartbeats while a request waits
        if let Some(r) = self.requests.iter_mut().find(|r| r.next_heartbeat <= now) {
            r.next_heartbeat = now + r.heartbeat;
            return Some(Ok(Inbound::Heartbeat));
        }
        let own = self
            .requests
            .iter()
            .flat_map(|r| [r.expires_at, r.next_heartbeat])
            .min();
        Some(Err([own, consumer.next_due()].into_iter().flatten().min()))
    }

    fn waiting(&self) -> usize {
        self.requests.iter().map(|r| r.remaining).sum()
    }

    /// The consumer (or its stream) was deleted: end the waiting requests once.
    fn gone(&mut self) -> Result<Inbound, Option<Instant>> {
        if self.requests.is_empty() {
            return Err(None);
        }
        self.requests.clear();
        Ok(Inbound::ConsumerDeleted)
    }

    /// Nothing is ever in transit on the broker: only the waiting requests end.
    pub(crate) fn close(self) -> usize {
        if let Some(c) = self.broker.lock().consumer_mut(&self.stream, &self.durable) {
            c.waiting.remove(&self.id);
        }
        0
    }
}
