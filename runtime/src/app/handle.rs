//! [`AppHandle`]: a running app.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::WaitError;
use crate::error::{ConsumerError, ConsumerErrorKind, Error, Result};
use crate::publish::Bus;
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
}

impl AppHandle {
    pub(super) fn new(
        bus: Bus,
        stop: CancellationToken,
        tasks: JoinSet<Result<()>>,
        loops: HashMap<Id, (&'static str, String)>,
        stats: BTreeMap<&'static str, Arc<Counters>>,
    ) -> AppHandle {
        AppHandle {
            bus,
            stop,
            tasks,
            loops,
            stats,
        }
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
                    Some(Err(join)) => return Err(self.crashed(&join)),
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
                Err(join) => Err(self.crashed(&join)),
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
