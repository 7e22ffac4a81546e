//! [`AppHandle`]: a running app.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::WaitError;
use super::ops::Serving;
use crate::error::{ConsumerError, ConsumerErrorKind, Error, Result};
use crate::publish::Bus;
use crate::status::{HandlerStatus, LoopState, StateCell};
use crate::telemetry::{Counters, HandlerStats};

/// A running [`App`](super::App): publish through its [`Bus`], stop it gracefully.
#[derive(Debug)]
pub struct AppHandle {
    bus: Bus,
    stop: CancellationToken,
    tasks: JoinSet<Result<()>>,
    /// The handler and source of each consume loop, to name a crashed one.
    loops: HashMap<Id, (&'static str, String)>,
    stats: BTreeMap<&'static str, Arc<Counters>>,
    states: BTreeMap<&'static str, Arc<StateCell>>,
    /// The shutdown grace period: [`AppHandle::stop`] returns within it.
    grace: Duration,
    /// The ops listener, when configured.
    ops: Option<Serving>,
    /// Tasks beside the consume loops (the lag refresher), aborted when
    /// the handle is dropped.
    _background: Vec<AbortOnDropHandle<()>>,
}

/// What [`AppHandle::new`] is made of.
pub(super) struct Parts {
    pub(super) bus: Bus,
    pub(super) stop: CancellationToken,
    pub(super) tasks: JoinSet<Result<()>>,
    pub(super) loops: HashMap<Id, (&'static str, String)>,
    pub(super) stats: BTreeMap<&'static str, Arc<Counters>>,
    pub(super) states: BTreeMap<&'static str, Arc<StateCell>>,
    pub(super) grace: Duration,
    pub(super) ops: Option<Serving>,
    pub(super) background: Vec<AbortOnDropHandle<()>>,
}

/// What a stop may take beyond the grace period: the consume loops are
/// bounded by it; this covers their scheduling.
const STOP_SLACK: Duration = Duration::from_millis(500);

impl AppHandle {
    pub(super) fn new(parts: Parts) -> AppHandle {
        AppHandle {
            bus: parts.bus,
            stop: parts.stop,
            tasks: parts.tasks,
            loops: parts.loops,
            stats: parts.stats,
            states: parts.states,
            grace: parts.grace,
            ops: parts.ops,
            _background: parts.background,
        }
    }

    /// Where the ops listener listens (`None` when it is off): the address
    /// actually bound, so port 0 in [`App::ops`](super::App::ops) can be
    /// read back.
    #[cfg(feature = "ops")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
    pub fn ops_addr(&self) -> Option<std::net::SocketAddr> {
        self.ops.as_ref().map(Serving::addr)
    }

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
        let counters = of_handler(&self.stats, handler)?;
        let check = || {
            let now = counters.snapshot();
            done(&now).then_some(now)
        };
        wait_for(counters.subscribe(), timeout, check)
            .await
            .ok_or_else(|| WaitError::Timeout {
                handler: handler.to_owned(),
                timeout,
                stats: counters.snapshot(),
            })
    }

    /// What every handler's consume loop is doing now, in handler-name
    /// order; a health check reads this.
    ///
    /// ```no_run
    /// # fn demo(app: &jetflow::AppHandle) {
    /// for h in app.status() {
    ///     if !h.state.is_receiving() {
    ///         eprintln!("{} ({}) is {}", h.handler, h.source, h.state);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn status(&self) -> Vec<HandlerStatus> {
        self.states.values().map(|s| s.status()).collect()
    }

    /// Waits until the loop of `handler` is in a state that satisfies
    /// `done`, at most `timeout`; returns its status. Wakes on every
    /// change, no polling.
    ///
    /// ```no_run
    /// # async fn demo(app: jetflow::AppHandle) -> Result<(), jetflow::WaitError> {
    /// use std::time::Duration;
    /// app.wait_status("reserve_stock", Duration::from_secs(10), |s| s.is_receiving()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_status(
        &self,
        handler: &str,
        timeout: Duration,
        mut done: impl FnMut(&LoopState) -> bool,
    ) -> Result<HandlerStatus, WaitError> {
        let cell = of_handler(&self.states, handler)?;
        let check = || {
            let now = cell.status();
            done(&now.state).then_some(now)
        };
        wait_for(cell.subscribe(), timeout, check)
            .await
            .ok_or_else(|| WaitError::StateTimeout {
                handler: handler.to_owned(),
                timeout,
                status: Box::new(cell.status()),
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
                    Some(Err(join)) => return Err(self.crashed(&join)),
                },
            }
        }
    }

    /// Stops gracefully: every loop stops receiving, gives back what it
    /// received but did not start, lets running handlers finish and flushes
    /// its settlements. Returns within the shutdown grace period
    /// ([`App::shutdown_grace`](super::App::shutdown_grace)) whatever the
    /// broker does: handlers still running near its end are cancelled and
    /// their messages given back.
    ///
    /// # Errors
    ///
    /// The first loop's error: one that failed while running, or
    /// [`ConsumerErrorKind::Unsettled`] when the broker could not confirm
    /// every settlement in time (it was away): those messages come back
    /// after their `ack_wait`; nothing is lost, some may be handled twice.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(ops) = &self.ops {
            ops.stopping();
        }
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + self.grace + STOP_SLACK;
        let mut first_error = Ok(());
        loop {
            let joined = match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(joined)) => joined,
                Ok(None) => break,
                Err(_) => {
                    // a loop's drain is bounded by the grace period; this
                    // one did not return (a bug): do not wait for it
                    let late = self.tasks.len();
                    self.tasks.abort_all();
                    tracing::error!(loops = late, grace = ?self.grace, "consume loops did not stop within the grace period; aborted them (their unsettled messages come back after ack_wait)");
                    break;
                }
            };
            let r = match joined {
                Ok(r) => r,
                Err(join) => Err(self.crashed(&join)),
            };
            if let (Err(e), true) = (r, first_error.is_ok()) {
                first_error = Err(e);
            }
        }
        match tokio::time::timeout_at(deadline, self.bus.transport().flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not flush before stopping"),
            Err(_) => {
                tracing::warn!("the broker did not confirm the final flush within the grace period")
            }
        }
        if let Some(ops) = self.ops.take() {
            ops.stop().await;
        }
        first_error
    }
}

/// The entry of `handler` in a per-handler map, or the error naming the
/// handlers there are.
fn of_handler<'a, V>(
    map: &'a BTreeMap<&'static str, V>,
    handler: &str,
) -> Result<&'a V, WaitError> {
    map.get(handler).ok_or_else(|| WaitError::UnknownHandler {
        handler: handler.to_owned(),
        known: map.keys().map(|k| (*k).to_owned()).collect(),
    })
}

/// Waits until `check` returns a value, checking again on every change
/// `changed` announces (no polling), at most `timeout`.
async fn wait_for<W, T>(
    mut changed: watch::Receiver<W>,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let wait = async {
        loop {
            changed.borrow_and_update();
            if let Some(v) = check() {
                return v;
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.ok()
}

impl AppHandle {
    /// The error of a consume loop that panicked or was cancelled, naming
    /// its handler and consumer.
    fn crashed(&self, join: &JoinError) -> Error {
        let (handler, source) = self
            .loops
            .get(&join.id())
            .cloned()
            .unwrap_or(("(unknown)", "(unknown)".into()));
        ConsumerError::new(
            handler,
            source,
            ConsumerErrorKind::Crashed,
            format!("the consume loop crashed: {join}"),
        )
        .into()
    }
}
