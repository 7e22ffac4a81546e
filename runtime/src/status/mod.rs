//! What each consume loop is doing now: its [`LoopState`], with a tracing
//! event on every change. Read it with
//! [`AppHandle::status`](crate::AppHandle::status); wait for one with
//! [`AppHandle::wait_status`](crate::AppHandle::wait_status). A health
//! endpoint reads the same thing.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::telemetry::Counters;

/// The state of one handler's consume loop.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopState {
    /// Opening its first subscription.
    Starting,
    /// Subscribed: receiving and handling messages.
    Receiving,
    /// The subscription was lost (`reason`); the loop is checking the
    /// consumer, repairing what the policy allows and subscribing again,
    /// with a capped backoff from the second attempt in a row. Handlers
    /// already running keep running.
    Recovering {
        /// Why the subscription was lost, or why the last attempt failed.
        reason: String,
        /// Attempts since the last message arrived.
        attempt: u32,
    },
    /// Paused on a dependency: an idempotent handler's store cannot be
    /// reached (`reason`). No more messages are pulled; the deliveries
    /// waiting for the store are held (with progress signals, spending no
    /// delivery attempt) and the store is tried again with a capped
    /// backoff; the loop resumes receiving by itself once it answers.
    Paused {
        /// What cannot be reached, and why.
        reason: String,
    },
    /// Stopping: no more messages are received; running handlers finish
    /// within the grace period.
    Stopping,
    /// Stopped gracefully.
    Stopped,
    /// Stopped by an error it cannot recover from (the app's
    /// [`AppHandle::wait_failure`](crate::AppHandle::wait_failure) returns it).
    Failed {
        /// The error, as its message.
        error: String,
    },
}

impl LoopState {
    /// `true` while messages can arrive: [`LoopState::Receiving`].
    pub fn is_receiving(&self) -> bool {
        matches!(self, LoopState::Receiving)
    }

    /// `true` when the loop counts as ready (the ops listener's `/readyz`):
    /// only while [`Receiving`](LoopState::Receiving). Starting, recovering,
    /// paused, stopping, stopped and failed loops are not ready, and so is
    /// any state added later.
    pub fn is_ready(&self) -> bool {
        self.is_receiving()
    }

    /// A short name for logs and metrics labels: `starting`, `receiving`,
    /// `recovering`, `paused`, `stopping`, `stopped`, `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            LoopState::Starting => "starting",
            LoopState::Receiving => "receiving",
            LoopState::Recovering { .. } => "recovering",
            LoopState::Paused { .. } => "paused",
            LoopState::Stopping => "stopping",
            LoopState::Stopped => "stopped",
            LoopState::Failed { .. } => "failed",
        }
    }
}

impl std::fmt::Display for LoopState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoopState::Recovering { reason, attempt } => {
                write!(f, "recovering (attempt {attempt}): {reason}")
            }
            LoopState::Paused { reason } => write!(f, "paused: {reason}"),
            LoopState::Failed { error } => write!(f, "failed: {error}"),
            other => f.write_str(other.name()),
        }
    }
}

/// One handler's loop as [`AppHandle::status`](crate::AppHandle::status) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerStatus {
    /// The handler (its fn name).
    pub handler: &'static str,
    /// What it consumes: `STREAM/durable`, or notifications on a subject.
    pub source: String,
    /// What its loop does now.
    pub state: LoopState,
    /// When it entered that state.
    pub since: SystemTime,
}

/// The live state of one loop: set by the loop, read by the app.
#[derive(Debug)]
pub(crate) struct StateCell {
    handler: &'static str,
    source: String,
    tx: watch::Sender<(LoopState, SystemTime)>,
    /// The handler's counters, whose metrics count the transitions.
    stats: Arc<Counters>,
}

impl StateCell {
    pub(crate) fn new(handler: &'static str, source: String, stats: Arc<Counters>) -> StateCell {
        stats.metrics().transition(None, LoopState::Starting.name());
        StateCell {
            handler,
            source,
            tx: watch::channel((LoopState::Starting, SystemTime::now())).0,
            stats,
        }
    }

    /// Moves to `state`, with a tracing event, unless it is already there
    /// (a recovery's reason and attempt count as a change; the metrics
    /// count a move to another state).
    pub(crate) fn set(&self, state: LoopState) {
        self.set_if(|_| true, state);
    }

    /// Moves to `state` as [`set`](StateCell::set) does, if the current
    /// state passes `from` (checked and changed at once).
    pub(crate) fn set_if(&self, from: impl Fn(&LoopState) -> bool, state: LoopState) {
        let mut left = None;
        let changed = self.tx.send_if_modified(|(now, since)| {
            if *now == state || !from(now) {
                return false;
            }
            left = Some(now.name());
            *now = state.clone();
            *since = SystemTime::now();
            true
        });
        if !changed {
            return;
        }
        if left != Some(state.name()) {
            self.stats.metrics().transition(left, state.name());
        }
        let (handler, source) = (self.handler, &self.source);
        match &state {
            LoopState::Recovering { reason, attempt } => {
                tracing::warn!(handler, %source, state = "recovering", attempt, %reason, "consume loop recovering");
            }
            LoopState::Failed { error } => {
                tracing::error!(handler, %source, state = "failed", %error, "consume loop failed");
            }
            LoopState::Paused { reason } => {
                tracing::warn!(handler, %source, state = "paused", %reason, "consume loop paused: nothing is pulled until the store answers again");
            }
            other => {
                tracing::info!(handler, %source, state = other.name(), "consume loop {}", other.name())
            }
        }
    }

    pub(crate) fn status(&self) -> HandlerStatus {
        let (state, since) = self.tx.borrow().clone();
        HandlerStatus {
            handler: self.handler,
            source: self.source.clone(),
            state,
            since,
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<(LoopState, SystemTime)> {
        self.tx.subscribe()
    }
}
