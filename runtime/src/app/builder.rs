//! [`App`]: the builder of a service.

use std::sync::Arc;
use std::time::Duration;

use super::connect::{OnTransport, Target, on_transport};
use super::registration::{Registered, Registration};
use super::{AppHandle, ConnectOptions, signal};
use crate::error::Result;
use crate::event::{Event, EventInfo};
use crate::handler::{Extensions, Handler};
use crate::idempotency::IdempotencyStore;
use crate::publish::WireProfile;
use crate::topology::{StreamSettings, TopologyPolicy};
use crate::transport::Transport;
use crate::transport::nats::PullTiming;
use crate::transport::select::Scheme;

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
    pub(super) name: String,
    pub(super) connect: ConnectOptions,
    pub(super) extensions: Extensions,
    pub(super) handlers: Vec<Box<dyn Registration>>,
    pub(super) policy: TopologyPolicy,
    pub(super) streams: StreamSettings,
    pub(super) grace: Duration,
    pub(super) prefetch_bytes: usize,
    pub(super) give_up_after: Option<Duration>,
    pub(super) pull: PullTiming,
    pub(super) publishes: Vec<EventInfo>,
    /// Which headers the app's events carry.
    pub(super) wire: WireProfile,
    /// Where the ops listener listens (`None`: off).
    pub(super) ops: Option<String>,
    /// Routes of the service's own on the ops listener.
    #[cfg(feature = "ops")]
    pub(super) ops_routes: Option<axum::Router>,
    /// Whether the app records metrics (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) metrics: bool,
    /// How often consumer lag is read for the metrics.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) lag_every: Duration,
    /// Where idempotent handlers claim their events.
    pub(super) idempotency: Option<Arc<dyn IdempotencyStore>>,
    /// The outbox whose relay runs in the app.
    #[cfg(feature = "postgres")]
    pub(super) outbox: Option<crate::outbox::Outbox>,
}

/// [`App::prefetch_bytes`] by default: 8 MiB.
pub(super) const DEFAULT_PREFETCH_BYTES: usize = 8 << 20;

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
            prefetch_bytes: DEFAULT_PREFETCH_BYTES,
            give_up_after: None,
            pull: PullTiming::default(),
            publishes: Vec::new(),
            wire: WireProfile::CloudEvents,
            ops: None,
            #[cfg(feature = "ops")]
            ops_routes: None,
            metrics: true,
            lag_every: super::ops::DEFAULT_LAG_EVERY,
            idempotency: None,
            #[cfg(feature = "postgres")]
            outbox: None,
        }
    }

    /// Like [`App::new`], with connection settings from the environment
    /// (see [`ConnectOptions::from_env`]) and the ops listener's address
    /// from `JETFLOW_OPS_ADDR` (feature `ops`; see [`App::ops`]).
    pub fn from_env(name: impl Into<String>) -> App {
        let mut app = App::new(name).connect_options(ConnectOptions::from_env());
        app.ops = super::ops::addr_from_env();
        app
    }

    /// Connects to `url` (other connection settings unchanged); its scheme
    /// selects the transport: `nats://` / `tls://` (JetStream), `memory://name`
    /// (the embedded broker), `redis://` (Redis Streams, feature `redis`), `amqp://` (RabbitMQ, feature
    /// `rabbitmq`).
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

    /// The store where idempotent handlers (`#[handler(idempotent)]`,
    /// [`HandlerOptions::idempotent`](crate::handler::HandlerOptions::idempotent))
    /// claim each event id before they run: a
    /// [`MemoryStore`](crate::idempotency::MemoryStore) for tests and the
    /// embedded broker, a [`NatsKvStore`](crate::idempotency::NatsKvStore),
    /// or a `RedisStore` (feature `redis`). Starting an app with an
    /// idempotent handler and no store is a [`ConfigError`](crate::app::ConfigError)
    /// of kind [`MissingIdempotencyStore`](crate::app::ConfigErrorKind::MissingIdempotencyStore).
    /// See [`crate::idempotency`].
    ///
    /// ```
    /// use jetflow::idempotency::MemoryStore;
    ///
    /// let app = jetflow::App::new("ledger").idempotency_store(MemoryStore::new());
    /// # drop(app);
    /// ```
    pub fn idempotency_store(mut self, store: impl IdempotencyStore) -> App {
        self.idempotency = Some(Arc::new(store));
        self
    }

    /// Runs the relay of `outbox` in the app (feature `postgres`): it
    /// publishes the events stored with
    /// [`Outbox::publish`](crate::outbox::Outbox::publish) once their
    /// transaction commits, from the app's start until it stops. See
    /// [`crate::outbox`].
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn outbox(mut self, outbox: crate::outbox::Outbox) -> App {
        self.outbox = Some(outbox);
        self
    }

    /// Declares that the app publishes `E`: its stream is provisioned at
    /// start-up like the streams of the app's handlers (so a service that
    /// only produces `E` needs no consumer to have started first), and its
    /// [`App::asyncapi`] document lists the `send` operation. Publishing an
    /// event works without it once its stream exists.
    pub fn publishes<E: Event>(mut self) -> App {
        self.publishes.push(EventInfo::of::<E>());
        self
    }

    /// The app's AsyncAPI 3.0 document, from its handlers and the events it
    /// [`publishes`](App::publishes); see [`crate::asyncapi`].
    pub fn asyncapi(&self) -> crate::asyncapi::AsyncApi {
        let receivers = self.handlers.iter().map(|h| h.describe(&self.name));
        crate::asyncapi::AsyncApi::new(
            &self.name,
            &self.connect.url,
            receivers,
            &self.publishes,
            self.wire,
        )
    }

    /// What to do when streams or consumers differ from the code.
    pub fn topology_policy(mut self, policy: TopologyPolicy) -> App {
        self.policy = policy;
        self
    }

    /// Which headers the events this app publishes carry:
    /// [`WireProfile::CloudEvents`] by default (every CloudEvents attribute
    /// in a header, for consumers in other languages), or
    /// [`WireProfile::Lean`] (the event id in the transport's own id field,
    /// and what a consumer cannot derive). Consuming reads both.
    ///
    /// ```
    /// use jetflow::{App, WireProfile};
    ///
    /// let app = App::new("orders").wire_profile(WireProfile::Lean);
    /// # let _ = app;
    /// ```
    pub fn wire_profile(mut self, profile: WireProfile) -> App {
        self.wire = profile;
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

    /// How long a consume loop may go on recovering (the broker unreachable,
    /// its consumer unavailable) before it fails with
    /// [`ConsumerErrorKind::Unreachable`](crate::error::ConsumerErrorKind::Unreachable):
    /// [`App::run`] then stops and returns the error, so the process exits
    /// non-zero and its orchestrator restarts or reschedules it. By default
    /// a loop never gives up: it keeps retrying with a capped backoff and
    /// reports `recovering` in [`AppHandle::status`](crate::AppHandle::status).
    /// The limit is checked at each recovery attempt, so the loop fails at
    /// the first attempt past it (detecting a dead server and asking for
    /// the consumer take a few seconds each). A notification handler
    /// (core NATS) never gives up: its subscription survives reconnects.
    ///
    /// ```
    /// use std::time::Duration;
    /// let app = jetflow::App::new("orders").give_up_after(Duration::from_secs(300));
    /// ```
    pub fn give_up_after(mut self, limit: Duration) -> App {
        self.give_up_after = Some(limit);
        self
    }

    /// The most payload bytes one handler keeps received ahead of its
    /// handler calls (8 MiB by default); with the handler's `prefetch`
    /// (messages) it bounds the prefetch buffer. A message larger than this
    /// is still received, when the buffer is empty.
    pub fn prefetch_bytes(mut self, bytes: usize) -> App {
        self.prefetch_bytes = bytes;
        self
    }

    /// JetStream pull request expiry and idle heartbeat (30s / 5s by
    /// default). Shorter values detect a dead server sooner at the cost of
    /// more requests. Other transports ignore it.
    pub fn pull_timing(mut self, expires: Duration, heartbeat: Duration) -> App {
        self.pull = PullTiming { expires, heartbeat };
        self
    }

    /// Runs until SIGINT or SIGTERM (or until a consume loop fails), then
    /// stops gracefully: no new messages, in-flight handlers finish within
    /// the grace period, unstarted messages are given back for redelivery.
    pub async fn run(self) -> Result<()> {
        let mut handle = self.start().await?;
        let loop_result = tokio::select! {
            () = signal::shutdown_signal() => {
                tracing::info!("shutdown signal received; draining");
                Ok(())
            }
            r = handle.wait_failure() => r,
        };
        let stop_result = handle.stop().await;
        loop_result.and(stop_result)
    }

    /// Validates, connects to the transport the URL names, provisions
    /// streams and consumers, and starts every handler. Returns a handle
    /// that stops the app.
    pub async fn start(mut self) -> Result<AppHandle> {
        self.validate()?;
        // an unknown scheme fails before the ops listener binds
        Scheme::of(&self.connect.url)?;
        // listening before connecting: `/readyz` says what start-up waits for
        let ops = self.serve_ops().await?;
        let target = Target::of(&self);
        on_transport(target, Start { app: self, ops }).await
    }

    /// Like [`App::start`], on a transport built by hand: one of jetflow's
    /// configured beyond what a URL says, or a [`Transport`] of your own.
    /// The URL is not used.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> jetflow::Result<()> {
    /// use jetflow::prelude::*;
    /// # #[event(version = "v1")] pub struct Ping { pub n: u32 }
    /// # #[handler(group = "pong")] async fn pong(_p: Ping) {}
    /// let broker = jetflow::memory::Broker::named("start-on-doc");
    /// let app = App::new("pong").handler(pong).start_on(broker).await?;
    /// app.stop().await
    /// # }
    /// ```
    pub async fn start_on<T: Transport>(mut self, transport: T) -> Result<AppHandle> {
        self.validate()?;
        let ops = self.serve_ops().await?;
        super::start::start(self, transport, ops).await
    }
}

/// [`App::start`] once connected.
struct Start {
    app: App,
    ops: Option<super::ops::Serving>,
}

impl OnTransport for Start {
    type Output = AppHandle;
    async fn run<T: Transport>(self, transport: T) -> Result<AppHandle> {
        super::start::start(self.app, transport, self.ops).await
    }
}
