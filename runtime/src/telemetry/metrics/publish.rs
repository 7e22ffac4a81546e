//! Publish counters and PubAck latency.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ::metrics::{Counter, Histogram};

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
    const ALL: [PublishOutcome; 4] = [
        PublishOutcome::Stored,
        PublishOutcome::Duplicate,
        PublishOutcome::Sent,
        PublishOutcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            PublishOutcome::Stored => "stored",
            PublishOutcome::Duplicate => "duplicate",
            PublishOutcome::Sent => "sent",
            PublishOutcome::Failed => "failed",
        }
    }
}

/// The publish metrics of one bus (`None`: off, for an app whose metrics
/// are switched off).
///
/// Publishes are labelled by subject (a bounded set: event types' static
/// subjects and two fixed words), so the handles of a subject are resolved
/// at its first publish and kept, keyed by the address of its static
/// string: a publish costs a read lock and the lookup of one word, never a
/// label allocation or a lookup in the recorder.
#[derive(Debug, Clone)]
pub(crate) struct PublishMetrics(Option<Arc<Cache>>);

/// The handles of each subject published so far, by the address and
/// length of its static string.
type Cache = RwLock<HashMap<(usize, usize), Arc<SubjectHandles>>>;

#[derive(Debug)]
struct SubjectHandles {
    /// By [`PublishOutcome`] (its discriminant).
    outcomes: [Counter; PublishOutcome::ALL.len()],
    duration: Histogram,
}

/// When a publish was sent (`None` when metrics are off).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishTimer(Option<Instant>);

impl PublishMetrics {
    pub(crate) fn new(enabled: bool) -> Self {
        PublishMetrics(enabled.then(Default::default))
    }

    #[inline]
    pub(crate) fn timer(&self) -> PublishTimer {
        PublishTimer(self.0.as_ref().map(|_| Instant::now()))
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
        let Some(cache) = &self.0 else { return };
        let handles = self.handles(cache, subject);
        handles.outcomes[outcome as usize].increment(1);
        if let (PublishOutcome::Stored | PublishOutcome::Duplicate, Some(sent)) = (outcome, timer.0)
        {
            handles.duration.record(sent.elapsed());
        }
    }

    fn handles(&self, cache: &Cache, subject: &'static str) -> Arc<SubjectHandles> {
        // a static string's address and length name it (equal strings at
        // two addresses only resolve the same handles twice)
        let key = (subject.as_ptr() as usize, subject.len());
        if let Some(h) = cache.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return h.clone();
        }
        let resolved = Arc::new(SubjectHandles {
            outcomes: PublishOutcome::ALL.map(
                |o| ::metrics::counter!(PUBLISHED, "subject" => subject, "outcome" => o.label()),
            ),
            duration: ::metrics::histogram!(PUBLISH_DURATION, "subject" => subject),
        });
        let mut cache = cache.write().unwrap_or_else(|p| p.into_inner());
        cache.entry(key).or_insert(resolved).clone()
    }
}
