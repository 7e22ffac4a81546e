//! One handler's metric handles, resolved when its app starts.

use std::time::Instant;

use ::metrics::{Counter, Gauge, Histogram, Label};
use time::OffsetDateTime;

use super::{
    ACK_PENDING, ACKED, DEAD_LETTER_FAILED, DEAD_LETTERED, DECODE_FAILED, HANDLER_DURATION,
    IDEMPOTENT_SKIPPED, IN_FLIGHT, LOOP_STATE, LOOP_TRANSITIONS, PANICKED, PENDING, PUBLISH_TO_ACK,
    RECEIVED, REDELIVERED, RETRIED, TERMINATED,
};
use crate::telemetry::Outcome;
use crate::topology::ConsumerState;

/// The metrics of one handler (nothing when the app's metrics are off).
#[derive(Debug)]
pub(crate) struct HandlerMetrics(Option<Box<Handles>>);

#[derive(Debug)]
struct Handles {
    labels: Vec<Label>,
    /// By [`Outcome`] (its discriminant).
    outcomes: [Counter; Outcome::ALL.len()],
    duration: Histogram,
    publish_to_ack: Histogram,
    in_flight: Gauge,
    pending: Gauge,
    ack_pending: Gauge,
    redelivered: Gauge,
}

fn outcome_metric(o: Outcome) -> &'static str {
    match o {
        Outcome::Received => RECEIVED,
        Outcome::Acked => ACKED,
        Outcome::Retried => RETRIED,
        Outcome::DeadLettered => DEAD_LETTERED,
        Outcome::Terminated => TERMINATED,
        Outcome::Panicked => PANICKED,
        Outcome::Undecodable => DECODE_FAILED,
        Outcome::DeadLetterFailed => DEAD_LETTER_FAILED,
        Outcome::IdempotentSkipped => IDEMPOTENT_SKIPPED,
    }
}

impl HandlerMetrics {
    /// Resolves the handles of handler `handler` of `group` on `subject`
    /// (its declared subject) in the global recorder; `enabled = false`:
    /// none, and nothing is timed.
    pub(crate) fn new(handler: &'static str, group: &str, subject: &str, enabled: bool) -> Self {
        if !enabled {
            return HandlerMetrics(None);
        }
        let labels = vec![
            Label::new("handler", handler),
            Label::new("group", group.to_owned()),
            Label::new("subject", subject.to_owned()),
        ];
        let counter = |name: &'static str| ::metrics::counter!(name, labels.clone());
        let gauge = |name: &'static str| ::metrics::gauge!(name, labels.clone());
        let histogram = |name: &'static str| ::metrics::histogram!(name, labels.clone());
        let handles = Handles {
            outcomes: Outcome::ALL.map(|o| counter(outcome_metric(o))),
            duration: histogram(HANDLER_DURATION),
            publish_to_ack: histogram(PUBLISH_TO_ACK),
            in_flight: gauge(IN_FLIGHT),
            pending: gauge(PENDING),
            ack_pending: gauge(ACK_PENDING),
            redelivered: gauge(REDELIVERED),
            labels,
        };
        HandlerMetrics(Some(Box::new(handles)))
    }

    #[inline]
    pub(crate) fn outcome(&self, outcome: Outcome) {
        if let Some(h) = &self.0 {
            h.outcomes[outcome as usize].increment(1);
        }
    }

    /// Starts timing a handler call.
    #[inline]
    pub(crate) fn call_timer(&self) -> CallTimer {
        CallTimer(self.0.as_ref().map(|_| Instant::now()))
    }

    /// A handler call timed by `timer` ended.
    #[inline]
    pub(crate) fn call_ended(&self, timer: CallTimer) {
        if let (Some(h), Some(started)) = (&self.0, timer.0) {
            h.duration.record(started.elapsed());
        }
    }

    /// A delivery of a message the broker stored at `published` was acked.
    #[inline]
    pub(crate) fn acked(&self, published: OffsetDateTime) {
        if let Some(h) = &self.0 {
            let seconds = (OffsetDateTime::now_utc() - published).as_seconds_f64();
            // a clock behind the broker's reads as 0, not as negative
            h.publish_to_ack.record(seconds.max(0.0));
        }
    }

    /// Counts a delivery in flight until the guard is dropped.
    #[inline]
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        if let Some(h) = &self.0 {
            h.in_flight.increment(1.0);
        }
        InFlight(self)
    }

    /// The durable consumer's counts, read on the lag schedule.
    pub(crate) fn consumer_state(&self, state: &ConsumerState) {
        if let Some(h) = &self.0 {
            h.pending.set(state.num_pending as f64);
            h.ack_pending.set(state.num_ack_pending as f64);
            h.redelivered.set(state.num_redelivered as f64);
        }
    }

    /// The consume loop moved from state `from` (`None`: it starts) to
    /// `to` (names as [`LoopState::name`](crate::LoopState::name)). Not
    /// per message: the handles are looked up here.
    pub(crate) fn transition(&self, from: Option<&'static str>, to: &'static str) {
        let Some(h) = &self.0 else { return };
        let with_state = |state: &'static str| {
            let mut labels = h.labels.clone();
            labels.push(Label::new("state", state));
            labels
        };
        if let Some(from) = from {
            ::metrics::gauge!(LOOP_STATE, with_state(from)).set(0.0);
        }
        ::metrics::gauge!(LOOP_STATE, with_state(to)).set(1.0);
        ::metrics::counter!(LOOP_TRANSITIONS, with_state(to)).increment(1);
    }
}

/// When a handler call started (`None` when metrics are off).
#[derive(Debug)]
pub(crate) struct CallTimer(Option<Instant>);

/// A delivery counted in flight; dropping it stops counting it.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a HandlerMetrics);

impl Drop for InFlight<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(h) = &self.0.0 {
            h.in_flight.decrement(1.0);
        }
    }
}
