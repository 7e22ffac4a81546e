//! The service: [`App`] collects handlers and state, provisions the
//! topology and runs every handler's consume loop until stopped.

mod config;
mod error;

pub use config::ConnectOptions;
pub use error::WaitError;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::consume::{self, Binding, Env, PullSettings};
use crate::error::{Error, Result};
use crate::event::{Event, EventInfo};
use crate::handler::{Extensions, Handler, HandlerOptions, MissingState};
use crate::publish::Bus;
use crate::retry::RetryPolicy;
use crate::telemetry::{Counters, HandlerStats};
use crate::topology::{self, ConsumerSpec, StreamSettings, StreamSpec, TopologyPolicy};
use crate::transport::Transport as _;
use crate::{dlq, event};

/// A jetflow service: handlers, state and connection settings.
///
/// ```no_run
/// use jetflow::prelude::*;
///
/// #[event(version = "v1")]
/// pub struct OrderCreated { pub order_id: String }
///
/// #[handler(group = "inventory")]
/// async fn reserve_stock(order: OrderCreated) -> Result<(), HandlerError> {
///     println!("reserving {}", order.order_id);
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> jetflow::Result<()> {
///     App::from_env("inventory")   // NATS_URL, NATS_CREDS, NATS_USER/NATS_PASSWORD, NATS_TOKEN
///         .handler(reserve_stock)
///         .run()                   // until SIGINT/SIGTERM, then a graceful drain
///         .await
/// }
/// ```
pub struct App {
    name: String,
    connect: ConnectOptions,
    extensions: Extensions,
    handlers: Vec<Box<dyn Registration>>,
    policy: TopologyPolicy,
    streams: StreamSettings,
    grace: Duration,
    pull: PullSettings,
    publishes: Vec<EventInfo>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("connect", &self.connect)
            .field(
                "handlers",
                &self
                    .handlers
                    .iter()
                    .map(|h| h.options().name)
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app named `name` (the default consumer group and `ce-source`),
    /// connecting to `nats://127.0.0.1:4222`.
    pub fn new(name: impl Into<String>) -> App {
        App {
            name: name.into(),
            connect: ConnectOptions::default(),
            extensions: Extensions::default(),
            handlers: Vec::new(),
            policy: TopologyPolicy::default(),
            streams: StreamSettings::default(),
            grace: Duration::from_secs(30),
            pull: PullSettings::default(),
            publishes: Vec::new(),
        }
    }

    /// Like [`App::new`], with connection settings from the environment
    /// (see [`ConnectOptions::from_env`]).
    pub fn from_env(name: impl Into<String>) -> App {
        App::new(name).connect_options(ConnectOptions::from_env())
    }

    /// Connects to `url` (other connection settings unchanged).
    pub fn url(mut self, url: impl Into<String>) -> App {
        self.connect.url = url.into();
        self
    }

    /// Replaces the connection settings.
    pub fn connect_options(mut self, options: ConnectOptions) -> App {
        self.connect = options;
        self
    }

    /// Registers shared state, extracted in handlers with `State<T>`.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> App {
        self.extensions.insert(value);
        self
    }

    /// Registers a handler (a `#[handler]` function or any [`Handler`]).
    pub fn handler<H: Handler>(mut self, handler: H) -> App {
        self.handlers.push(Box::new(Registered(Arc::new(handler))));
        self
    }

    /// Declares that the app publishes `E`, for its [`App::asyncapi`]
    /// document (`send` operations); publishing works without it.
    pub fn publishes<E: Event>(mut self) -> App {
        self.publishes.push(EventInfo::of::<E>());
        self
    }

    /// The app's AsyncAPI 3.0 document, from its handlers and the events it
    /// [`publishes`](App::publishes); see [`crate::asyncapi`].
    pub fn asyncapi(&self) -> crate::asyncapi::AsyncApi {
        let receivers = self.handlers.iter().map(|h| h.describe(&self.name));
        crate::asyncapi::AsyncApi::new(&self.name, &self.connect.url, receivers, &self.publishes)
    }

    /// What to do when streams or consumers differ from the code.
    pub fn topology_policy(mut self, policy: TopologyPolicy) -> App {
        self.policy = policy;
        self
    }

    /// Settings of the streams jetflow creates (replicas, storage, dedup window).
    pub fn stream_settings(mut self, settings: StreamSettings) -> App {
        self.streams = settings;
        self
    }

    /// How long in-flight handlers may run after a stop is requested (30s by default).
    pub fn shutdown_grace(mut self, grace: Duration) -> App {
        self.grace = grace;
        self
    }

    /// Pull request expiry and idle heartbeat (30s / 5s by default). Shorter
    /// values detect a dead server sooner at the cost of more requests.
    pub fn pull_timing(mut self, expires: Duration, heartbeat: Duration) -> App {
        self.pull = PullSettings { expires, heartbeat };
        self
    }

    /// Runs until SIGINT or SIGTERM (or until a consume loop fails), then
    /// stops gracefully: no new messages, in-flight handlers finish within
    /// the grace period, unstarted messages are nak'd for redelivery.
    pub async fn run(self) -> Result<()> {
        let mut handle = self.start().await?;
        let loop_result = tokio::select! {
            () = shutdown_signal() => {
                tracing::info!("shutdown signal received; draining");
                Ok(())
            }
            r = handle.wait_failure() => r,
        };
        let stop_result = handle.stop().await;
        loop_result.and(stop_result)
    }

    /// Validates, connects, provisions streams and consumers, and starts
    /// every handler. Returns a handle that stops the app.
    pub async fn start(self) -> Result<AppHandle> {
        self.validate()?;
        let transport = self.connect.open(&self.name).await?;
        let bus = Bus::with_transport(transport, self.name.clone());
        tracing::info!(app = %self.name, transport = %bus.transport_name(), "connected");
        let transport = bus.transport();

        let mut streams: BTreeMap<String, StreamSpec> = BTreeMap::new();
        for h in &self.handlers {
            streams
                .entry(h.stream().to_owned())
                .or_default()
                .subjects
                .push(h.subject());
        }
        if self
            .handlers
            .iter()
            .any(|h| h.options().dead_letter_or_default())
        {
            streams
                .entry(dlq::STREAM.to_owned())
                .or_default()
                .subjects
                .push(dlq::SUBJECTS.replace('>', "x"));
        }
        transport
            .ensure_streams(&streams, &self.streams, self.policy)
            .await?;

        let env = Env {
            bus: bus.clone(),
            extensions: Arc::new(self.extensions),
            policy: self.policy,
            grace: self.grace,
            pull: self.pull,
        };
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut stats = BTreeMap::new();
        for h in self.handlers {
            let o = *h.options();
            let group = o.group.unwrap_or(&self.name).to_owned();
            let spec = ConsumerSpec {
                stream: h.stream().to_owned(),
                durable: topology::durable_name(&group, h.event_name()),
                filter_subject: h.subject(),
                ack_wait: o.ack_wait_or_default(),
                max_deliver: i64::from(o.max_deliver_or_default()),
                deliver: o.deliver.unwrap_or_default(),
            };
            let server = transport.ensure_consumer(&spec, self.policy).await?;
            let counters = Arc::new(Counters::default());
            stats.insert(o.name, counters.clone());
            let binding = Arc::new(Binding {
                handler: o.name,
                group,
                ack_wait: server.ack_wait,
                consumer: spec,
                concurrency: o.concurrency_or_default() as usize,
                dead_letter: o.dead_letter_or_default(),
                retry: RetryPolicy::new(&o),
                stats: counters,
            });
            tracing::info!(handler = o.name, consumer = %binding.consumer.durable, stream = %binding.consumer.stream, subject = %binding.consumer.filter_subject, concurrency = binding.concurrency, "handler started");
            tasks.spawn(h.run(binding, env.clone(), stop.clone()));
        }
        Ok(AppHandle {
            bus,
            stop,
            tasks,
            stats,
        })
    }

    fn validate(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for h in &self.handlers {
            let o = h.options();
            o.validate().map_err(|e| Error::Config(e.to_string()))?;
            if let Some(s) = o.subject
                && !event::subject_matches(s, h.event_subject())
            {
                return Err(Error::Config(format!(
                    "handler `{}`: subject {s:?} does not match its event's subject {:?}",
                    o.name,
                    h.event_subject()
                )));
            }
            h.check(&self.extensions)?;
            let group = o.group.unwrap_or(&self.name);
            if !seen.insert((group.to_owned(), h.event_name())) {
                return Err(Error::Config(format!(
                    "two handlers of group `{group}` consume `{}` (the second is `{}`); they would share one \
                     durable consumer and split the events — give one a different `group`",
                    h.event_name(),
                    o.name
                )));
            }
        }
        Ok(())
    }
}

/// A running [`App`]: publish through its [`Bus`], stop it gracefully.
#[derive(Debug)]
pub struct AppHandle {
    bus: Bus,
    stop: CancellationToken,
    tasks: JoinSet<Result<()>>,
    stats: BTreeMap<&'static str, Arc<Counters>>,
}

impl AppHandle {
    /// The app's publisher (same connection, `ce-source` = the app's name).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Outcome counts of the handler named `handler` (the fn name of a
    /// `#[handler]`), or `None` if the app has no such handler.
    pub fn stats(&self, handler: &str) -> Option<HandlerStats> {
        self.stats.get(handler).map(|c| c.snapshot())
    }

    /// Waits until the counts of `handler` satisfy `done`, at most
    /// `timeout`; returns them. Wakes on every outcome, no polling: with a
    /// paused tokio clock the wait costs no real time.
    ///
    /// ```no_run
    /// # async fn demo(app: jetflow::AppHandle) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// // until `reserve_stock` has acked 10 deliveries, at most 5 s
    /// let stats = app.wait_stats("reserve_stock", Duration::from_secs(5), |s| s.acked >= 10).await?;
    /// assert_eq!(stats.dead_lettered, 0);
    /// # Ok(()) }
    /// ```
    pub async fn wait_stats(
        &self,
        handler: &str,
        timeout: Duration,
        mut done: impl FnMut(&HandlerStats) -> bool,
    ) -> Result<HandlerStats, WaitError> {
        let Some(counters) = self.stats.get(handler) else {
            return Err(WaitError::UnknownHandler {
                handler: handler.to_owned(),
                known: self.stats.keys().map(|k| (*k).to_owned()).collect(),
            });
        };
        let mut changed = counters.subscribe();
        let wait = async {
            loop {
                changed.borrow_and_update();
                let now = counters.snapshot();
                if done(&now) {
                    return now;
                }
                if changed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WaitError::Timeout {
                handler: handler.to_owned(),
                timeout,
                stats: counters.snapshot(),
            })
    }

    /// Stops every consume loop at once, as a crash would: nothing more is
    /// acked or nak'd, so messages being handled come back after their
    /// `ack_wait` (to another replica, or to the next run). For fault tests;
    /// use [`AppHandle::stop`] to stop gracefully.
    pub fn abort(mut self) {
        self.tasks.abort_all();
        self.tasks.detach_all();
    }

    /// A token that stops the app when cancelled (e.g. from another task).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Resolves when a consume loop fails (with its error) or the stop token is cancelled.
    pub async fn wait_failure(&mut self) -> Result<()> {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return Ok(()),
                joined = self.tasks.join_next() => match joined {
                    None => return Ok(()),
                    Some(Ok(Ok(()))) => continue,
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(join)) => return Err(Error::Consumer { consumer: "?".into(), reason: format!("consume loop crashed: {join}") }),
                },
            }
        }
    }

    /// Stops gracefully and waits for every loop to drain and flush its acks.
    pub async fn stop(mut self) -> Result<()> {
        self.stop.cancel();
        let mut first_error = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let r = match joined {
                Ok(r) => r,
                Err(join) => Err(Error::Consumer {
                    consumer: "?".into(),
                    reason: format!("consume loop crashed: {join}"),
                }),
            };
            if let (Err(e), true) = (r, first_error.is_ok()) {
                first_error = Err(e);
            }
        }
        if let Err(e) = self.bus.transport().flush().await {
            tracing::warn!(error = %e, "could not flush before stopping");
        }
        first_error
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Type-erased handler registration.
trait Registration: Send + Sync {
    fn options(&self) -> &HandlerOptions;
    fn event_name(&self) -> &'static str;
    fn event_subject(&self) -> &'static str;
    fn subject(&self) -> String;
    fn stream(&self) -> &'static str;
    fn check(&self, extensions: &Extensions) -> Result<(), MissingState>;
    fn describe(&self, app_name: &str) -> crate::asyncapi::Receiver;
    fn run(
        &self,
        binding: Arc<Binding>,
        env: Env,
        stop: CancellationToken,
    ) -> crate::handler::BoxFuture<'static, Result<()>>;
}

struct Registered<H>(Arc<H>);

impl<H: Handler> Registration for Registered<H> {
    fn options(&self) -> &HandlerOptions {
        &H::OPTIONS
    }
    fn event_name(&self) -> &'static str {
        H::Event::NAME
    }
    fn event_subject(&self) -> &'static str {
        H::Event::SUBJECT
    }
    fn subject(&self) -> String {
        H::OPTIONS
            .subject
            .map_or_else(event::filter_subject::<H::Event>, str::to_owned)
    }
    fn stream(&self) -> &'static str {
        H::Event::STREAM
    }
    fn check(&self, extensions: &Extensions) -> Result<(), MissingState> {
        self.0.check(extensions)
    }
    fn describe(&self, app_name: &str) -> crate::asyncapi::Receiver {
        crate::asyncapi::Receiver::of::<H>(app_name, self.subject())
    }
    fn run(
        &self,
        binding: Arc<Binding>,
        env: Env,
        stop: CancellationToken,
    ) -> crate::handler::BoxFuture<'static, Result<()>> {
        Box::pin(consume::run(self.0.clone(), binding, env, stop))
    }
}
