//! Dead letters: messages that cannot succeed, copied to the `DLQ` stream
//! (subject `dlq.{group}.{original subject}`) with their payload, headers
//! and the reason, before the original is terminated.
//!
//! The copy's `Nats-Msg-Id` is `dlq:{stream}:{sequence}`, so capturing the
//! same message twice (e.g. after a crash between DLQ publish and term)
//! stores it once.
//!
//! Operations, on every transport: [`list`] every record, [`find`] the
//! ones a [`Filter`] matches, [`replay()`] one to its original subject
//! (once, unless forced; with a dry run), [`purge`] those a filter matches.

mod replay;

pub use replay::{Filter, Replay, ReplayError, Replayed, find, purge, purge_with_progress, replay};

use std::borrow::Cow;

use bytes::Bytes;

use crate::publish::{Bus, PubAck, PublishError};
use crate::transport::{Headers, Stored};

/// Default name of the dead-letter stream.
pub const STREAM: &str = "DLQ";
/// Subjects of the dead-letter stream.
pub const SUBJECTS: &str = "dlq.>";

/// Headers jetflow adds to a dead-lettered copy.
pub mod headers {
    /// Subject the message was published on.
    pub const SUBJECT: &str = "jetflow-dlq-subject";
    /// Stream that stored the original.
    pub const STREAM: &str = "jetflow-dlq-stream";
    /// Sequence of the original in its stream.
    pub const SEQUENCE: &str = "jetflow-dlq-sequence";
    /// Deliveries made before dead-lettering.
    pub const DELIVERED: &str = "jetflow-dlq-delivered";
    /// Why it was dead-lettered: the last error.
    pub const ERROR: &str = "jetflow-dlq-error";
    /// Handler that failed.
    pub const HANDLER: &str = "jetflow-dlq-handler";
    /// Consumer group (durable) it failed in.
    pub const GROUP: &str = "jetflow-dlq-group";
    /// On a replayed event (and on its marker in the DLQ): the DLQ record
    /// it was replayed from.
    pub const REPLAY_OF: &str = "jetflow-replay-of";
}

/// A dead-lettered message read back from the DLQ stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Sequence of this record in the DLQ stream.
    pub dlq_sequence: u64,
    /// Original subject.
    pub subject: String,
    /// Original stream.
    pub stream: String,
    /// Original stream sequence.
    pub sequence: u64,
    /// Deliveries made.
    pub delivered: u64,
    /// The reason (last error).
    pub error: String,
    /// The handler.
    pub handler: String,
    /// The group.
    pub group: String,
    /// Original payload, unchanged.
    pub payload: Bytes,
    /// Original headers plus the `jetflow-dlq-*` ones.
    pub headers: Headers,
    /// Replayed already (see [`replay()`]).
    pub replayed: bool,
}

/// Where and why a message is dead-lettered.
pub(crate) struct Record<'a> {
    pub(crate) group: &'a str,
    pub(crate) handler: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) sequence: u64,
    pub(crate) delivered: u64,
    pub(crate) reason: &'a str,
}

/// Subject of a dead letter.
pub(crate) fn subject(group: &str, original_subject: &str) -> String {
    format!("dlq.{group}.{original_subject}")
}

/// Publishes the copy and awaits its PubAck.
pub(crate) async fn capture(
    bus: &Bus,
    record: Record<'_>,
    original_headers: &Headers,
    payload: Bytes,
) -> Result<PubAck, PublishError> {
    // header values cannot carry line breaks
    let reason: String = record
        .reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let sequence = record.sequence.to_string();
    let delivered = record.delivered.to_string();
    let make_headers = || {
        let mut h = original_headers.clone();
        // the event id stays with the copy (a lean message has it only in
        // the transport's `Nats-Msg-Id`, which belongs to the original)
        let event_id = crate::publish::received_id(&h).map(str::to_owned);
        h.fill_event_id(event_id.as_deref());
        h.remove(crate::transport::nats::MSG_ID);
        h.insert(headers::SUBJECT, record.subject.to_owned());
        h.insert(headers::STREAM, record.stream.to_owned());
        h.insert(headers::SEQUENCE, sequence.as_str());
        h.insert(headers::DELIVERED, delivered.as_str());
        h.insert(headers::ERROR, reason.as_str());
        h.insert(headers::HANDLER, record.handler);
        h.insert(headers::GROUP, record.group.to_owned());
        h
    };
    let id = format!("dlq:{}:{}", record.stream, record.sequence);
    bus.publish_message(
        Cow::Owned(subject(record.group, record.subject)),
        crate::telemetry::export::DLQ_SUBJECT,
        make_headers,
        payload,
        &id,
        None,
    )
    .await
}

/// Reads every dead letter currently in the DLQ stream, oldest first.
///
/// ```no_run
/// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::Error> {
/// for dead in jetflow::dlq::list(&bus).await? {
///     println!("{} #{} failed in {}: {}", dead.subject, dead.sequence, dead.handler, dead.error);
/// }
/// # Ok(()) }
/// ```
pub async fn list(bus: &Bus) -> Result<Vec<DeadLetter>, crate::Error> {
    Ok(records(bus.read_stream(STREAM).await?))
}

/// The dead letters among the DLQ stream's messages `stored` (its replay
/// markers tell which were replayed).
fn records(stored: Vec<Stored>) -> Vec<DeadLetter> {
    let replayed = replay::replayed(&stored);
    stored
        .into_iter()
        .filter(|msg| !replay::is_marker(&msg.subject))
        .map(|msg| {
            let get = |name: &str| msg.headers.get(name).map(str::to_owned).unwrap_or_default();
            DeadLetter {
                dlq_sequence: msg.sequence,
                subject: get(headers::SUBJECT),
                stream: get(headers::STREAM),
                sequence: get(headers::SEQUENCE).parse().unwrap_or_default(),
                delivered: get(headers::DELIVERED).parse().unwrap_or_default(),
                error: get(headers::ERROR),
                handler: get(headers::HANDLER),
                group: get(headers::GROUP),
                replayed: replayed.contains(&msg.sequence),
                payload: msg.payload,
                headers: msg.headers,
            }
        })
        .collect()
}
