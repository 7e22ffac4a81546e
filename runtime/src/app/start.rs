//! Starting an app on a transport: the checks that need no broker, the
//! checks against the transport's capabilities, provisioning, and one
//! consume loop per handler.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ops::Serving;
use super::registration::Registration;
use super::{App, AppHandle};
use super::{ConfigError, ConfigErrorKind as Kind};
use crate::consume::{self, Binding, Env, Source};
use crate::error::Result;
use crate::publish::Bus;
use crate::retry::RetryPolicy;
use crate::status::StateCell;
use crate::telemetry::Counters;
use crate::telemetry::export::{HandlerMetrics, PublishMetrics};
use crate::topology::DeliverPolicy;
use crate::topology::{self, ConsumerDecl, Declared, StreamDecl};
use crate::transport::{Capabilities, Transport};
use crate::{dlq, event};

impl App {
    /// What can be checked before connecting.
    pub(super) fn validate(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for h in &self.handlers {
            let o = h.options();
            let config = |kind, message: String| ConfigError::new(Some(o.name), kind, message);
            o.validate()
                .map_err(|e| config(Kind::InvalidOption, e.source.to_string()).with_source(e))?;
            if let Some(s) = o.subject
                && !event::subject_matches(s, h.event_subject())
            {
                let message = format!(
                    "subject {s:?} does not match its event's subject {:?}",
                    h.event_subject()
                );
                return Err(config(Kind::SubjectMismatch, message).into());
            }
            if h.notification() && (o.ack_wait.is_some() || o.deliver.is_some()) {
                let message = format!(
                    "`{}` is a notification, which nothing stores or acknowledges; `ack_wait` and \
                     `deliver` do not apply to it: remove them",
                    h.event_name()
                );
                return Err(config(Kind::WrongEventKind, message).into());
            }
            if h.notification() && o.dead_letter == Some(true) {
                let message = format!(
                    "`{}` is a notification, which nothing stores, so it cannot be dead-lettered; \
                     remove `dead_letter = true`",
                    h.event_name()
                );
                return Err(config(Kind::WrongEventKind, message).into());
            }
            if o.broadcast && !h.notification() {
                let message = format!(
                    "`broadcast` is for notifications, and `{}` is stored in a stream (replicas of a \
                     group share its durable); remove `broadcast`, or declare the event with \
                     `#[event(notification)]`",
                    h.event_name()
                );
                return Err(config(Kind::WrongEventKind, message).into());
            }
            if o.idempotent && h.notification() {
                let message = format!(
                    "`{}` is a notification, which nothing stores or redelivers, so there is no \
                     duplicate to skip; remove `idempotent`",
                    h.event_name()
                );
                return Err(config(Kind::WrongEventKind, message).into());
            }
            if o.idempotent && self.idempotency.is_none() {
                let message = "the handler is `idempotent` and the app has no idempotency store; \
                               give it one with `App::idempotency_store(...)` (a MemoryStore for \
                               tests, a NatsKvStore or a RedisStore in production)"
                    .to_owned();
                return Err(config(Kind::MissingIdempotencyStore, message).into());
            }
            h.check(&self.extensions)?;
            let group = o.group.unwrap_or(&self.name);
            if !h.notification() && !seen.insert((group.to_owned(), h.event_name())) {
                let message = format!(
                    "two handlers of group `{group}` consume `{}` (the second is `{}`); they would share \
                     one durable consumer and split the events — give one a different `group`",
                    h.event_name(),
                    o.name
                );
                return Err(ConfigError::new(None, Kind::DuplicateConsumer, message).into());
            }
        }
        Ok(())
    }
}

impl App {
    /// The streams the app's handlers need (and the DLQ stream when one
    /// dead-letters), each storing its handlers' subjects.
    pub(super) fn stream_decls(&self) -> Vec<StreamDecl> {
        let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let durable = || self.handlers.iter().filter(|h| !h.notification());
        for h in durable() {
            streams
                .entry(h.stream().to_owned())
                .or_default()
                .push(h.subject());
        }
        // What the app says it publishes is provisioned too: a service that
        // only produces an event must not wait for a consumer of it to start.
        for e in self.publishes.iter().filter(|e| !e.notification) {
            streams
                .entry(e.stream.to_owned())
                .or_default()
                .push(e.subject.to_owned());
        }
        if durable().any(|h| h.options().dead_letter_or_default()) {
            streams
                .entry(dlq::STREAM.to_owned())
                .or_default()
                .push(dlq::SUBJECTS.replace('>', "x"));
        }
        streams
            .into_iter()
            .map(|(name, subjects)| StreamDecl::new(name, subjects, self.streams.clone()))
            .collect()
    }

    /// The durable consumer of each handler that has one (not a
    /// notification handler's).
    pub(super) fn consumer_decls(&self) -> Vec<ConsumerDecl> {
        self.handlers
            .iter()
            .filter(|h| !h.notification())
            .map(|h| consumer_decl(&**h, h.options().group.unwrap_or(&self.name)))
            .collect()
    }
}

/// The durable consumer of the durable handler `h` in `group`.
fn consumer_decl(h: &dyn Registration, group: &str) -> ConsumerDecl {
    let o = h.options();
    ConsumerDecl {
        stream: h.stream().to_owned(),
        durable: topology::durable_name(group, h.event_name()),
        filter_subject: h.subject(),
        ack_wait: o.ack_wait_or_default(),
        // no broker-side limit: the worker decides the last
        // delivery, so one that does not settle is never stranded
        max_deliver: 0,
        deliver: o.deliver.unwrap_or(DeliverPolicy::All),
    }
}

/// What the transport cannot do for `h`, refused before anything is
/// declared: never silently ignored.
fn check_capabilities(h: &dyn Registration, caps: &Capabilities, transport: &str) -> Result<()> {
    let o = h.options();
    let refuse = |what: String| {
        let message = format!("{what} ({transport})");
        Err(ConfigError::new(Some(o.name), Kind::Unsupported, message).into())
    };
    if h.notification() {
        if !caps.notifications {
            return refuse(format!(
                "`{}` is a notification, and this transport has no notifications; use a NATS or \
                 memory:// URL, or declare the event without `notification`",
                h.event_name()
            ));
        }
        return Ok(());
    }
    let deliver = o.deliver.unwrap_or_default();
    if !caps.supports_deliver(deliver) {
        return refuse(format!(
            "`deliver = {:?}` is not a start position this transport has (it has {:?})",
            deliver, caps.deliver
        ));
    }
    if !caps.progress && o.ordered {
        return refuse(
            "an ordered handler holds events behind the call of their key, which needs progress \
             signals to keep them, and this transport has none"
                .into(),
        );
    }
    if !caps.progress && o.prefetch.is_some_and(|n| n > 0) {
        return refuse(
            "`prefetch` needs progress signals (a buffered message would reach its ack wait), and \
             this transport has none; drop `prefetch` (it defaults to 0 here)"
                .into(),
        );
    }
    let longest = o
        .backoff_or_default()
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    if !caps.delayed_retry && !caps.progress && longest >= o.ack_wait_or_default() {
        return refuse(format!(
            "the transport can neither delay a retry nor extend an ack deadline, so a retry delay of \
             {longest:?} would outlast `ack_wait = {:?}` and the message would come back early; use \
             delays shorter than `ack_wait`",
            o.ack_wait_or_default()
        ));
    }
    Ok(())
}

/// The handler's prefetch on this transport: none where nothing could keep
/// a buffered message's deadline; by default none where a stop could not
/// give the buffer back at once (an explicit `prefetch` is kept, with a
/// warning).
fn prefetch(h: &dyn Registration, caps: &Capabilities) -> usize {
    let o = h.options();
    if h.notification() {
        return o.prefetch_or_default() as usize;
    }
    if !caps.progress {
        return 0;
    }
    if !caps.give_back {
        match o.prefetch {
            None => return 0,
            Some(n) if n > 0 => tracing::warn!(
                handler = o.name,
                prefetch = n,
                "this server keeps a stopped app's waiting pull request until it next delivers to \
                 it (nats-server older than 2.10): one message given back at a stop can wait its \
                 ack_wait there"
            ),
            Some(_) => {}
        }
    }
    o.prefetch_or_default() as usize
}

/// How long `start` waits for a notification handler to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `app` on `transport` (validated; its ops listener, if any, is `ops`).
pub(super) async fn start<T: Transport>(
    app: App,
    transport: T,
    ops: Option<Serving>,
) -> Result<AppHandle> {
    if let Some(ops) = &ops {
        ops.provisioning();
    }
    let describe = transport.describe();
    tracing::info!(app = %app.name, transport = %describe, "connected");
    let caps = transport.capabilities();
    for h in &app.handlers {
        check_capabilities(&**h, &caps, &describe)?;
    }

    let streams = app.stream_decls();
    let declared = Arc::new(Declared::new(streams, app.policy));
    transport
        .declare_streams(declared.streams(), app.policy)
        .await?;
    let metrics_on = app.metrics;
    let bus = Bus::declaring(
        transport.clone(),
        app.name.clone(),
        app.wire,
        declared.clone(),
        PublishMetrics::new(metrics_on),
    );

    let env = Env {
        bus: bus.clone(),
        extensions: Arc::new(app.extensions),
        policy: app.policy,
        declared,
        grace: app.grace,
        give_up_after: app.give_up_after,
        prefetch_bytes: app.prefetch_bytes,
    };
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut loops = HashMap::new();
    let mut stats = BTreeMap::new();
    let mut states = BTreeMap::new();
    let mut listening = Vec::new();
    #[cfg_attr(not(feature = "metrics"), allow(unused_mut, unused_variables))]
    let mut lag = Vec::new();
    for h in app.handlers {
        let o = *h.options();
        let group = o.group.unwrap_or(&app.name).to_owned();
        let (source, caps, ack_wait, dead_letter) = if h.notification() {
            let queue = (!o.broadcast).then(|| group.clone());
            let source = Source::Notifications {
                subject: h.subject(),
                queue,
            };
            (source, Capabilities::NONE, o.ack_wait_or_default(), false)
        } else {
            let decl = consumer_decl(&*h, &group);
            let view = transport.declare_consumer(&decl, app.policy).await?;
            let ack_wait = if view.ack_wait.is_zero() {
                Duration::from_secs(30)
            } else {
                view.ack_wait
            };
            (
                Source::Durable(decl),
                caps,
                ack_wait,
                o.dead_letter_or_default(),
            )
        };
        let metrics = HandlerMetrics::new(o.name, &group, &h.subject(), metrics_on);
        let counters = Arc::new(Counters::new(metrics));
        stats.insert(o.name, counters.clone());
        let state = Arc::new(StateCell::new(o.name, source.name(), counters.clone()));
        states.insert(o.name, state.clone());
        if let Source::Durable(decl) = &source {
            lag.push((decl.clone(), counters.clone()));
        }
        let binding = Arc::new(Binding {
            handler: o.name,
            group,
            source,
            caps,
            ack_wait,
            concurrency: o.concurrency_or_default() as usize,
            prefetch: prefetch(h.as_ref(), &caps),
            ordered: o.ordered,
            dead_letter,
            retry: RetryPolicy::new(&o),
            stats: counters,
            state,
            idempotency: if o.idempotent {
                app.idempotency.clone()
            } else {
                None
            },
        });
        let source = binding.source.name();
        tracing::info!(handler = o.name, source = %source, concurrency = binding.concurrency, prefetch = binding.prefetch, ordered = binding.ordered, idempotent = ?binding.idempotency.as_ref().map(|s| s.describe()), "handler started");
        let (ready, subscribed) = oneshot::channel();
        if h.notification() {
            listening.push((o.name, subscribed));
        }
        let task = tasks.spawn(consume::run(
            transport.clone(),
            h.process(),
            binding,
            env.clone(),
            stop.clone(),
            ready,
        ));
        loops.insert(task.id(), (o.name, source));
    }
    // A notification sent once `start` returns reaches every listener.
    for (handler, subscribed) in listening {
        if tokio::time::timeout(LISTEN_TIMEOUT, subscribed)
            .await
            .is_err()
        {
            tracing::warn!(handler, timeout = ?LISTEN_TIMEOUT, "the handler is not listening yet; notifications sent before it is are not heard by it");
        }
    }
    #[cfg_attr(not(any(feature = "metrics", feature = "postgres")), allow(unused_mut))]
    let mut background = Vec::new();
    #[cfg(feature = "postgres")]
    if let Some(outbox) = app.outbox {
        let relay = crate::outbox::relay(outbox, bus.clone(), stop.clone());
        background.push(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
            relay,
        )));
    }
    #[cfg(feature = "metrics")]
    if metrics_on {
        let refresh = crate::telemetry::metrics::lag::refresh(
            transport.clone(),
            lag,
            app.lag_every,
            stop.clone(),
        );
        background.push(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
            refresh,
        )));
    }
    if let Some(ops) = &ops {
        ops.running(states.values().cloned().collect(), bus.clone());
    }
    Ok(AppHandle::new(super::handle::Parts {
        bus,
        stop,
        tasks,
        loops,
        stats,
        states,
        grace: env.grace,
        ops,
        background,
    }))
}
