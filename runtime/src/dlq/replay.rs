//! Finding dead letters and replaying them: a replay republishes the
//! original payload and headers to the original subject with a fresh
//! message id and a `jetflow-replay-of` header, then records a marker in
//! the DLQ stream (`dlq.$replayed.{sequence}`), so that a second replay of
//! the same record is refused unless forced — by any process, on any
//! transport.

use std::borrow::Cow;
use std::collections::HashSet;

use bytes::Bytes;
use thiserror::Error;

use super::{DeadLetter, STREAM, headers, list, records};
use crate::publish::{Bus, PubAck, PublishError};
use crate::telemetry::export;
use crate::transport::{Headers, Stored};

/// First tokens of the markers: not a group name (`$` is not allowed in one).
const MARKER_PREFIX: &str = "dlq.$replayed.";

/// Which dead letters [`find`] returns: every condition given must hold.
///
/// ```
/// let filter = jetflow::dlq::Filter::new()
///     .group("inventory")
///     .subject("order.created.*")
///     .error_contains("out of stock");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Filter {
    group: Option<String>,
    handler: Option<String>,
    subject: Option<String>,
    error: Option<String>,
    replayed: Option<bool>,
}

impl Filter {
    /// Every dead letter.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Only those of consumer group `group`.
    pub fn group(mut self, group: impl Into<String>) -> Filter {
        self.group = Some(group.into());
        self
    }

    /// Only those of handler `handler`.
    pub fn handler(mut self, handler: impl Into<String>) -> Filter {
        self.handler = Some(handler.into());
        self
    }

    /// Only those published on a subject `pattern` matches (`*` one
    /// token, `>` the rest).
    pub fn subject(mut self, pattern: impl Into<String>) -> Filter {
        self.subject = Some(pattern.into());
        self
    }

    /// Only those whose error contains `text` (case-insensitive).
    pub fn error_contains(mut self, text: impl Into<String>) -> Filter {
        self.error = Some(text.into().to_lowercase());
        self
    }

    /// Only those replayed already (`true`) or not yet (`false`).
    pub fn replayed(mut self, replayed: bool) -> Filter {
        self.replayed = Some(replayed);
        self
    }

    /// Whether `dead` passes.
    pub fn matches(&self, dead: &DeadLetter) -> bool {
        self.group.as_ref().is_none_or(|g| *g == dead.group)
            && self.handler.as_ref().is_none_or(|h| *h == dead.handler)
            && self
                .subject
                .as_ref()
                .is_none_or(|p| crate::event::subject_matches(p, &dead.subject))
            && self
                .error
                .as_ref()
                .is_none_or(|e| dead.error.to_lowercase().contains(e))
            && self.replayed.is_none_or(|r| r == dead.replayed)
    }
}

/// The dead letters `filter` matches, oldest first.
///
/// ```no_run
/// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::Error> {
/// use jetflow::dlq::{Filter, find};
/// let waiting = find(&bus, &Filter::new().group("inventory").replayed(false)).await?;
/// println!("{} dead letters of inventory not replayed yet", waiting.len());
/// # Ok(()) }
/// ```
pub async fn find(bus: &Bus, filter: &Filter) -> Result<Vec<DeadLetter>, crate::Error> {
    Ok(list(bus)
        .await?
        .into_iter()
        .filter(|d| filter.matches(d))
        .collect())
}

/// How [`replay()`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replay {
    /// Replay a record that was replayed before.
    pub force: bool,
    /// Say what would be published, publish nothing.
    pub dry_run: bool,
}

/// What [`replay()`] published (or would have, on a dry run).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Replayed {
    /// The DLQ record replayed.
    pub dlq_sequence: u64,
    /// The original subject it went to.
    pub subject: String,
    /// Its headers: the original ones plus `jetflow-replay-of`.
    pub headers: Headers,
    /// The broker's acknowledgement; `None` on a dry run.
    pub ack: Option<PubAck>,
}

/// Why [`replay()`] did not replay.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// No DLQ record has that sequence.
    #[error("the DLQ has no record #{0}; list them with jetflow::dlq::list")]
    NotFound(u64),
    /// The record was replayed before.
    #[error(
        "DLQ record #{0} was replayed already; replaying it again would handle the event twice — \
         pass `force` if that is intended"
    )]
    AlreadyReplayed(u64),
    /// The record has no original subject (not written by jetflow).
    #[error(
        "DLQ record #{0} names no original subject (header `jetflow-dlq-subject`); it cannot be replayed"
    )]
    NoSubject(u64),
    /// The DLQ could not be read.
    #[error(transparent)]
    Read(#[from] crate::Error),
    /// The replay or its marker could not be published.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Republishes DLQ record `dlq_sequence` to its original subject: the
/// original payload and headers (without the `jetflow-dlq-*` ones), a
/// fresh message id (so the stream's dedup does not drop it), and
/// `jetflow-replay-of: {dlq_sequence}`. Refused for a record replayed
/// before, unless [`Replay::force`].
///
/// ```no_run
/// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::dlq::ReplayError> {
/// use jetflow::dlq::{Replay, replay};
/// let preview = replay(&bus, 7, Replay { dry_run: true, ..Replay::default() }).await?;
/// println!("would publish to {}", preview.subject);
/// replay(&bus, 7, Replay::default()).await?;
/// # Ok(()) }
/// ```
pub async fn replay(bus: &Bus, dlq_sequence: u64, how: Replay) -> Result<Replayed, ReplayError> {
    let record = list(bus)
        .await?
        .into_iter()
        .find(|d| d.dlq_sequence == dlq_sequence)
        .ok_or(ReplayError::NotFound(dlq_sequence))?;
    if record.replayed && !how.force {
        return Err(ReplayError::AlreadyReplayed(dlq_sequence));
    }
    if record.subject.is_empty() {
        return Err(ReplayError::NoSubject(dlq_sequence));
    }
    let mut out = Headers::new();
    for (name, value) in record.headers.iter() {
        if !name.to_ascii_lowercase().starts_with("jetflow-dlq-") {
            out.append(name.to_owned(), value);
        }
    }
    let of = dlq_sequence.to_string();
    out.insert(headers::REPLAY_OF, of.as_str());
    let mut replayed = Replayed {
        dlq_sequence,
        subject: record.subject,
        headers: out,
        ack: None,
    };
    if how.dry_run {
        return Ok(replayed);
    }
    let fresh = uuid::Uuid::now_v7();
    let ack = bus
        .publish_message(
            Cow::Owned(replayed.subject.clone()),
            export::RAW_SUBJECT,
            || replayed.headers.clone(),
            record.payload,
            &format!("replay:{dlq_sequence}:{fresh}"),
            Some(&replayed.headers),
        )
        .await?;
    let marker = || {
        let mut h = Headers::new();
        h.insert(headers::REPLAY_OF, of.as_str());
        h
    };
    bus.publish_message(
        Cow::Owned(format!("{MARKER_PREFIX}{dlq_sequence}")),
        export::DLQ_SUBJECT,
        marker,
        Bytes::new(),
        &format!("replayed:{dlq_sequence}:{fresh}"),
        None,
    )
    .await?;
    tracing::info!(dlq_sequence, subject = %replayed.subject, seq = ack.sequence, stream = %ack.stream, "replayed a dead letter");
    replayed.ack = Some(ack);
    Ok(replayed)
}

/// Deletes the dead letters `filter` matches, and their replay markers;
/// returns their DLQ sequences. With `dry_run`, deletes nothing and
/// returns what it would delete.
///
/// ```no_run
/// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::Error> {
/// use jetflow::dlq::{Filter, purge};
/// // the replayed dead letters of `inventory`, once their replays were handled
/// let gone = purge(&bus, &Filter::new().group("inventory").replayed(true), false).await?;
/// println!("purged {} dead letters", gone.len());
/// # Ok(()) }
/// ```
pub async fn purge(bus: &Bus, filter: &Filter, dry_run: bool) -> Result<Vec<u64>, crate::Error> {
    purge_with_progress(bus, filter, dry_run, |_, _| {}).await
}

/// Dead letters deleted per broker call by [`purge_with_progress`].
const PURGE_CHUNK: usize = 256;

/// [`purge`], deleting in chunks of 256 dead letters and calling
/// `progress(done, total)` after each (for a progress bar).
///
/// ```no_run
/// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::Error> {
/// use jetflow::dlq::{Filter, purge_with_progress};
/// let gone = purge_with_progress(&bus, &Filter::new(), false, |done, total| {
///     eprintln!("purged {done} of {total}");
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn purge_with_progress(
    bus: &Bus,
    filter: &Filter,
    dry_run: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<u64>, crate::Error> {
    let stored = bus.read_stream(STREAM).await?;
    let markers: Vec<(u64, u64)> = markers(&stored).collect();
    let doomed: Vec<u64> = records(stored)
        .into_iter()
        .filter(|d| filter.matches(d))
        .map(|d| d.dlq_sequence)
        .collect();
    if dry_run || doomed.is_empty() {
        return Ok(doomed);
    }
    let mut markers_of: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    for (seq, of) in markers {
        markers_of.entry(of).or_default().push(seq);
    }
    let mut done = 0;
    for chunk in doomed.chunks(PURGE_CHUNK) {
        let sequences: Vec<u64> = chunk
            .iter()
            .flat_map(|d| std::iter::once(*d).chain(markers_of.remove(d).unwrap_or_default()))
            .collect();
        bus.delete_messages(STREAM, &sequences).await?;
        done += chunk.len();
        progress(done, doomed.len());
    }
    tracing::info!(purged = doomed.len(), "purged dead letters");
    Ok(doomed)
}

/// `true` for the subject of a replay marker.
pub(super) fn is_marker(subject: &str) -> bool {
    subject.starts_with(MARKER_PREFIX)
}

/// The DLQ sequences the markers among `stored` say were replayed.
pub(super) fn replayed(stored: &[Stored]) -> HashSet<u64> {
    markers(stored).map(|(_, of)| of).collect()
}

/// The replay markers among `stored`: (the marker's sequence, the DLQ
/// record it says was replayed).
fn markers(stored: &[Stored]) -> impl Iterator<Item = (u64, u64)> + '_ {
    stored
        .iter()
        .filter(|m| is_marker(&m.subject))
        .filter_map(|m| Some((m.sequence, m.headers.get(headers::REPLAY_OF)?.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(group: &str, subject: &str, error: &str) -> DeadLetter {
        DeadLetter {
            dlq_sequence: 1,
            subject: subject.into(),
            stream: "ORDER".into(),
            sequence: 1,
            delivered: 1,
            error: error.into(),
            handler: "h".into(),
            group: group.into(),
            payload: Bytes::new(),
            headers: Headers::new(),
            replayed: false,
        }
    }

    #[test]
    fn filters_combine() {
        let d = dead("inventory", "order.created.v1", "Out of stock");
        assert!(Filter::new().matches(&d));
        assert!(
            Filter::new()
                .group("inventory")
                .subject("order.*.v1")
                .matches(&d)
        );
        assert!(Filter::new().error_contains("out of STOCK").matches(&d));
        assert!(!Filter::new().group("billing").matches(&d));
        assert!(!Filter::new().subject("order.paid.>").matches(&d));
        assert!(!Filter::new().replayed(true).matches(&d));
        assert!(is_marker("dlq.$replayed.12") && !is_marker("dlq.inventory.order.created.v1"));
    }
}
