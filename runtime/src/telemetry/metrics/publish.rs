//! Publish counters and PubAck latency.

use std::time::Instant;

use super::{PUBLISH_DURATION, PUBLISHED};

/// What became of one publish.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PublishOutcome {
    /// Stored by the broker.
    Stored,
    /// The broker had it already (same message id inside its dedup window).
    Duplicate,
    /// A notification the broker took.
    Sent,
    /// Not published.
    Failed,
}

impl PublishOutcome {
    fn label(self) -> &'static str {
        match self {
            PublishOutcome::Stored => "stored",
            PublishOutcome::Duplicate => "duplicate",
            PublishOutcome::Sent => "sent",
            PublishOutcome::Failed => "failed",
        }
    }
}

/// The publish metrics of one bus: on, or off for an app whose metrics
/// are switched off.
///
/// Publishes are labelled by subject, and a bus publishes many: each
/// publish looks its handles up in the recorder (a hash of static
/// strings, no allocation of the label values), next to a network round
/// trip.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishMetrics {
    enabled: bool,
}

/// When a publish was sent (`None` when metrics are off).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishTimer(Option<Instant>);

impl PublishMetrics {
    pub(crate) fn new(enabled: bool) -> Self {
        PublishMetrics { enabled }
    }

    #[inline]
    pub(crate) fn timer(&self) -> PublishTimer {
        PublishTimer(self.enabled.then(Instant::now))
    }

    /// A publish on `subject` (a bounded label: an event type's subject,
    /// [`RAW_SUBJECT`](super::RAW_SUBJECT) or [`DLQ_SUBJECT`](super::DLQ_SUBJECT))
    /// sent at `timer` ended with `outcome`.
    pub(crate) fn ended(
        &self,
        subject: &'static str,
        outcome: PublishOutcome,
        timer: PublishTimer,
    ) {
        if !self.enabled {
            return;
        }
        ::metrics::counter!(PUBLISHED, "subject" => subject, "outcome" => outcome.label())
            .increment(1);
        if let (PublishOutcome::Stored | PublishOutcome::Duplicate, Some(sent)) = (outcome, timer.0)
        {
            ::metrics::histogram!(PUBLISH_DURATION, "subject" => subject).record(sent.elapsed());
        }
    }
}
