//! Typed events: the [`Event`] trait and the rules for names, versions and subjects.

pub mod headers;
mod subject;
mod version;

pub use subject::{SubjectError, validate_subject_token};
pub(crate) use subject::{subject_matches, version_of};
pub use version::{
    DecodeError, EventInfo, decode_own, decode_subject, decode_upcast, filter_subject,
    history_upcast,
};
pub(crate) use version::{check_upcast, version_number};

use schemars::{Schema, SchemaGenerator};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A typed, versioned event carried on a JetStream subject.
///
/// Implemented by `#[event]`; hand-written implementations are fine too. The
/// wire contract is plain JSON of the type on the subject [`Event::SUBJECT`]
/// (`{name}.{version}`), stored in the stream [`Event::STREAM`].
///
/// # Example
///
/// ```
/// use jetflow::Event;
///
/// #[jetflow::event(version = "v1")]
/// pub struct OrderCreated {
///     pub order_id: String,
///     pub total_cents: u64,
/// }
///
/// assert_eq!(OrderCreated::NAME, "order.created");
/// assert_eq!(OrderCreated::SUBJECT, "order.created.v1");
/// assert_eq!(OrderCreated::STREAM, "ORDER");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a jetflow event",
    label = "not an event",
    note = "put `#[jetflow::event(version = \"v1\")]` on the struct `{Self}`"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Dot-separated event name, e.g. `order.created`.
    const NAME: &'static str;
    /// Version token, `v1`, `v2`, ...
    const VERSION: &'static str;
    /// Subject the event is published on: `{NAME}.{VERSION}`.
    const SUBJECT: &'static str;
    /// Stream that stores the event; by default the first token of the name,
    /// upper-cased (`order.created` -> `ORDER`).
    const STREAM: &'static str;

    /// `true` for a notification (`#[event(notification)]`): published
    /// without persistence (core NATS), heard by the handlers connected at
    /// that moment; no stream stores it. See [`Notification`].
    const NOTIFICATION: bool = false;

    /// Business key used to derive a stable event id (and so the
    /// `Nats-Msg-Id` used for server-side deduplication). `None` means a
    /// fresh UUIDv7 per publish.
    fn event_key(&self) -> Option<String> {
        None
    }

    /// The JSON Schema of the payload, added to `generator` (a `$ref` to
    /// it, or the schema inline, as the generator's settings say).
    /// `#[event]` derives it with schemars; a hand-written implementation
    /// without a schema returns `None`, and the schema gate reports that.
    fn schema(generator: &mut SchemaGenerator) -> Option<Schema> {
        let _ = generator;
        None
    }

    /// Every version this type decodes, oldest first, ending with itself:
    /// the `upcast_from` chain. `#[event(upcast_from = Older)]` generates
    /// [`history_upcast`]`::<Self, Older>()`.
    fn history() -> Vec<EventInfo> {
        vec![EventInfo::of::<Self>()]
    }

    /// Decodes a payload of `version` (a token of [`Event::history`]) and
    /// upcasts it to `Self`. `#[event(upcast_from = Older)]` generates
    /// [`decode_upcast`]`::<Self, Older>`; without a chain it is
    /// [`decode_own`]. The consume loop calls [`decode_subject`].
    fn decode(version: &str, payload: &[u8]) -> Result<Self, DecodeError> {
        decode_own::<Self>(version, payload)
    }
}

/// An event published as a notification: no stream stores it, every
/// replica (or one replica per queue group) connected at the time hears it,
/// and nothing is redelivered. For cache invalidations, configuration
/// changes, presence: anything a late listener does not need.
/// `#[event(version = "v1", notification)]` implements it; publish with
/// [`Bus::notify`](crate::Bus::notify).
pub trait Notification: Event {}

/// The subjects a stream needs so that it stores an event: `{first token}.>`.
pub(crate) fn stream_subject_of(name: &str) -> String {
    jetflow_rules::stream_subject(name)
}
