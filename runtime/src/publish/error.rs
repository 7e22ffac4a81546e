use std::error::Error as StdError;

use thiserror::Error;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A publish that did not get a PubAck. Nothing is ever dropped silently:
/// when this is returned, the event may not be stored.
#[derive(Debug, Error)]
#[error("publishing to `{subject}` failed: {kind}")]
pub struct PublishError {
    subject: String,
    kind: PublishErrorKind,
    #[source]
    source: Option<BoxError>,
}

/// What went wrong with a publish.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The event could not be serialized.
    #[error("the event could not be encoded as JSON")]
    Encode,
    /// Payload plus headers exceed the server's `max_payload`; nothing was sent.
    #[error(
        "the message is larger than the server's max_payload; publish smaller events or raise max_payload in the server config"
    )]
    TooLarge,
    /// No stream stores the subject.
    #[error(
        "no stream captures this subject; start an App that declares the event's stream, or create the stream"
    )]
    NoStream,
    /// No PubAck arrived in time, after every retry (all with the same `Nats-Msg-Id`).
    #[error(
        "no PubAck after {attempts} attempts; the server may be down or overloaded (a retry with the same event id is safe)"
    )]
    Timeout {
        /// Attempts made.
        attempts: u32,
    },
    /// The server refused the message (stream full with discard=new, limits, permissions ...).
    #[error("the server rejected the message")]
    Rejected,
    /// The event key cannot be used in an event id.
    #[error("the event key cannot be used as an id (it contains control characters)")]
    InvalidKey,
    /// The subject cannot be published to (empty token, wildcard, white
    /// space or control character).
    #[error(
        "the subject is not a valid publish subject (empty token, `*`, `>`, white space or control character); build it from validated tokens (jetflow::event::validate_subject_token)"
    )]
    InvalidSubject,
    /// A header jetflow owns (`Nats-*`) was given.
    #[error(
        "header `{0}` is reserved: jetflow sets the `Nats-*` headers itself (the event id goes in `ce-id`)"
    )]
    ReservedHeader(String),
    /// The connection failed while publishing or acknowledging.
    #[error("the connection to the server failed")]
    Connection,
}

impl PublishError {
    pub(crate) fn new(
        subject: impl Into<String>,
        kind: PublishErrorKind,
        source: Option<BoxError>,
    ) -> Self {
        PublishError {
            subject: subject.into(),
            kind,
            source,
        }
    }
    /// An ack/progress signal that could not be sent.
    pub(crate) fn ack(e: impl Into<BoxError>) -> Self {
        PublishError::new("$JS.ACK", PublishErrorKind::Connection, Some(e.into()))
    }
    /// What went wrong.
    pub fn kind(&self) -> &PublishErrorKind {
        &self.kind
    }
    /// The subject of the failed publish.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}
