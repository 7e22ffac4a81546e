//! The metrics API of the runtime when the `metrics` feature is off:
//! nothing, so nothing changes per message (every call is an empty inline
//! function the compiler removes).

use time::OffsetDateTime;

use crate::telemetry::Outcome;
use crate::topology::ConsumerState;

pub(crate) const RAW_SUBJECT: &str = "raw";
pub(crate) const DLQ_SUBJECT: &str = "dlq";

#[derive(Debug)]
pub(crate) struct HandlerMetrics;

#[derive(Debug)]
pub(crate) struct CallTimer;

#[derive(Debug)]
pub(crate) struct InFlight;

impl HandlerMetrics {
    pub(crate) fn new(_handler: &'static str, _group: &str, _subject: &str, _on: bool) -> Self {
        HandlerMetrics
    }
    #[inline(always)]
    pub(crate) fn outcome(&self, _outcome: Outcome) {}
    #[inline(always)]
    pub(crate) fn call_timer(&self) -> CallTimer {
        CallTimer
    }
    #[inline(always)]
    pub(crate) fn call_ended(&self, _timer: CallTimer) {}
    #[inline(always)]
    pub(crate) fn acked(&self, _published: OffsetDateTime) {}
    #[inline(always)]
    pub(crate) fn in_flight(&self) -> InFlight {
        InFlight
    }
    #[allow(dead_code)]
    pub(crate) fn consumer_state(&self, _state: &ConsumerState) {}
    pub(crate) fn transition(&self, _from: Option<&'static str>, _to: &'static str) {}
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum PublishOutcome {
    Stored,
    Duplicate,
    Sent,
    Failed,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishMetrics;

#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishTimer;

impl PublishMetrics {
    pub(crate) fn new(_on: bool) -> Self {
        PublishMetrics
    }
    #[inline(always)]
    pub(crate) fn timer(&self) -> PublishTimer {
        PublishTimer
    }
    #[inline(always)]
    pub(crate) fn ended(
        &self,
        _subject: &'static str,
        _outcome: PublishOutcome,
        _timer: PublishTimer,
    ) {
    }
}

pub(crate) fn connected(_transport: &'static str, _again: bool) {}
pub(crate) fn disconnected(_transport: &'static str, _lost: bool) {}
