//! Per-handler outcome counters: what each handler received and how each
//! delivery ended. Read them with [`AppHandle::stats`](crate::AppHandle::stats);
//! tests wait on them with [`AppHandle::wait_stats`](crate::AppHandle::wait_stats).
//! With the `metrics` feature the same events also feed [`metrics`]
//! (Prometheus names, served on the ops listener's `/metrics`), from the
//! same call: one place records each event. With the `otel` feature,
//! [`trace`] propagates W3C trace context through every publish and consume.
//! With the `logging` feature (default), `init` installs a subscriber
//! that logs (text or JSON) and, with `otel`, exports spans over OTLP.

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
pub(crate) mod noop;

#[cfg(feature = "logging")]
mod logging;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod trace;

#[cfg(feature = "logging")]
#[cfg_attr(docsrs, doc(cfg(feature = "logging")))]
pub use logging::{InitError, Telemetry, init};
#[cfg(not(feature = "otel"))]
pub(crate) mod untraced;

#[cfg(feature = "metrics")]
pub(crate) use metrics as export;
#[cfg(not(feature = "metrics"))]
pub(crate) use noop as export;
#[cfg(feature = "otel")]
pub(crate) use trace as traced;
#[cfg(not(feature = "otel"))]
pub(crate) use untraced as traced;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Counts of one handler since its app started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerStats {
    /// Deliveries received (redeliveries included).
    pub received: u64,
    /// Deliveries acked (the handler returned `Ok`).
    pub acked: u64,
    /// Deliveries nak'd with a delay for a retry.
    pub retried: u64,
    /// Deliveries copied to the DLQ, then terminated.
    pub dead_lettered: u64,
    /// Deliveries terminated without a DLQ copy (dead-lettering off).
    pub terminated: u64,
    /// Handler calls that panicked (each also counted as retried or dead-lettered).
    pub panicked: u64,
    /// Payloads that could not be decoded as the handler's event (each
    /// also counted as dead-lettered or terminated; the handler is not called).
    pub undecodable: u64,
    /// DLQ copies the broker refused: the message stays in its stream, is
    /// delivered again after the retry delay and the copy is tried again
    /// then (the handler is not called again).
    pub dead_letter_failed: u64,
    /// Deliveries of an idempotent handler acked without calling it: the
    /// store said their event id was already handled (a duplicate publish,
    /// a redelivery after a lost ack).
    pub idempotent_skipped: u64,
}

impl HandlerStats {
    /// Deliveries that ended for good: acked (the handler's `Ok`, or an
    /// idempotent skip), dead-lettered or terminated.
    pub fn settled(&self) -> u64 {
        self.acked + self.idempotent_skipped + self.dead_lettered + self.terminated
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Received,
    Acked,
    Retried,
    DeadLettered,
    Terminated,
    Panicked,
    Undecodable,
    DeadLetterFailed,
    IdempotentSkipped,
}

impl Outcome {
    /// Every outcome, in discriminant order.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [Outcome; 9] = [
        Outcome::Received,
        Outcome::Acked,
        Outcome::Retried,
        Outcome::DeadLettered,
        Outcome::Terminated,
        Outcome::Panicked,
        Outcome::Undecodable,
        Outcome::DeadLetterFailed,
        Outcome::IdempotentSkipped,
    ];
}

/// The live counters of one handler, and its exported metrics.
#[derive(Debug)]
pub(crate) struct Counters {
    counts: [AtomicU64; Outcome::ALL.len()],
    /// Bumped on every record, so that waiters wake without polling.
    changed: watch::Sender<()>,
    metrics: export::HandlerMetrics,
}

impl Counters {
    pub(crate) fn new(metrics: export::HandlerMetrics) -> Self {
        Counters {
            counts: Default::default(),
            changed: watch::channel(()).0,
            metrics,
        }
    }

    /// Records `outcome`: in the counts and in the exported metrics.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome) {
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.metrics.outcome(outcome);
        self.changed.send_replace(());
    }

    /// The handler's exported metrics (timings, gauges).
    #[inline]
    pub(crate) fn metrics(&self) -> &export::HandlerMetrics {
        &self.metrics
    }

    pub(crate) fn snapshot(&self) -> HandlerStats {
        let get = |o: Outcome| self.counts[o as usize].load(Ordering::Relaxed);
        HandlerStats {
            received: get(Outcome::Received),
            acked: get(Outcome::Acked),
            retried: get(Outcome::Retried),
            dead_lettered: get(Outcome::DeadLettered),
            terminated: get(Outcome::Terminated),
            panicked: get(Outcome::Panicked),
            undecodable: get(Outcome::Undecodable),
            dead_letter_failed: get(Outcome::DeadLetterFailed),
            idempotent_skipped: get(Outcome::IdempotentSkipped),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}
