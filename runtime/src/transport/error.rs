//! Errors at the seam: a publish that got no acknowledgement, a settlement
//! that could not be sent.

use std::error::Error as StdError;

use thiserror::Error;

/// A boxed error: the cause kept as the source of jetflow's errors.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why one publish attempt of a transport got no acknowledgement.
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishFailure {
    /// No answer (timeout, broken connection): the message may or may not
    /// be stored; the publisher retries with the same id.
    Lost(BoxError),
    /// A definite answer: retrying cannot help.
    Failed(PublishErrorKind, BoxError),
}

/// A settlement (ack, retry, progress, reject) that could not be sent: the
/// broker redelivers the message after its ack deadline.
#[derive(Debug, Error)]
#[error("could not settle the message ({what}); it will be delivered again after its ack deadline")]
pub struct SettleError {
    what: &'static str,
    #[source]
    source: BoxError,
}

impl SettleError {
    /// `what` was being sent (`ack`, `nak`, ...) when `source` happened.
    pub fn new(what: &'static str, source: impl Into<BoxError>) -> SettleError {
        SettleError {
            what,
            source: source.into(),
        }
    }
}

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
    /// No queue is bound to the subject: RabbitMQ returned the `mandatory`
    /// message, as no group consumes it yet, so nothing would store it.
    #[error(
        "no queue is bound to this subject, so the broker returned the message unstored; start the app \
         whose handler consumes the event first (it declares its group's queue), or check the subject"
    )]
    Unroutable,
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
    /// Not connected: a notification is never buffered to be sent later.
    #[error(
        "not connected to the server; a notification is not buffered for later (nothing would store it): \
         retry once the connection is back"
    )]
    Disconnected,
    /// A notification was handed to the connection, but the server did not
    /// confirm it (the connection dropped or stalled before the flush
    /// returned): it may still be heard once the connection is back, or
    /// never. Unlike [`Disconnected`](PublishErrorKind::Disconnected),
    /// which is refused before sending, this one cannot be taken back.
    #[error(
        "the notification was sent but the server did not confirm it (the connection dropped); \
         it may or may not be heard: send it again if listeners must hear it, and make them tolerate a repeat"
    )]
    Unconfirmed,
    /// A header name or value cannot be carried by a message.
    #[error("invalid header: {0}")]
    InvalidHeader(super::HeaderError),
    /// The event is a notification (not stored in a stream): it has no PubAck.
    #[error(
        "the event is a notification (`#[event(notification)]`), which no stream stores; publish it with \
         `Bus::notify` / `Context::notify`"
    )]
    Notification,
    /// The transport cannot carry this kind of message.
    #[error("the transport does not support this: {0}")]
    Unsupported(&'static str),
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
    /// What went wrong.
    pub fn kind(&self) -> &PublishErrorKind {
        &self.kind
    }
    /// The subject of the failed publish.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// A transport could not be opened: the URL names none jetflow has, or the
/// broker cannot be reached or refuses the credentials.
#[derive(Debug, Error)]
#[error("cannot connect to {url}: {message}")]
pub struct ConnectError {
    /// The URL, without its secret.
    url: String,
    kind: ConnectErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

/// Why a transport could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The URL's scheme names no transport.
    UnknownScheme,
    /// The transport is behind a cargo feature that is off.
    MissingFeature,
    /// A credentials file could not be read.
    Credentials,
    /// The broker did not answer, or refused the connection.
    Unreachable,
    /// The broker refused the credentials (user/password, token, nkey,
    /// `.creds`).
    Unauthorized,
    /// The TLS handshake failed (unknown CA, no or wrong client certificate).
    Tls,
}

impl ConnectError {
    /// `url` (redacted here) could not be opened, because of `kind`; `message`
    /// says what to do.
    pub fn new(
        url: &str,
        kind: ConnectErrorKind,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> ConnectError {
        ConnectError {
            url: super::select::redact(url),
            kind,
            message: message.into(),
            source,
        }
    }

    /// Why.
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// The URL, without its secret.
    pub fn url(&self) -> &str {
        &self.url
    }
}
