//! Versions of one event: decoding the version that arrived, upcasting an
//! older one along the `upcast_from` chain, and the compile-time rules of
//! a chain.

use std::any::type_name;
use std::fmt;

use schemars::{Schema, SchemaGenerator};
use thiserror::Error;

use super::{Event, version_of};

/// A payload a handler cannot turn into its event. Both cases are
/// permanent: the message is dead-lettered and terminated, never retried.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The subject carries a version the consumer does not know, typically
    /// one newer than any type in its upcast chain. It is never decoded as
    /// an older version.
    #[error(
        "unsupported version {version} of `{name}`: this consumer knows {} only; deploy a consumer \
         whose event type (or its `upcast_from` chain) has {version}, then replay the message from the DLQ",
        known.join(", ")
    )]
    UnsupportedVersion {
        /// The event name.
        name: &'static str,
        /// The version token of the subject.
        version: String,
        /// The versions the consumer decodes, oldest first.
        known: Vec<&'static str>,
    },
    /// The payload is not valid JSON of the version it claims.
    #[error(
        "payload cannot be decoded as {subject}: {source}; the producer does not follow the schema of \
         {subject} (see `jetflow::schema`)"
    )]
    Payload {
        /// The subject of the version tried.
        subject: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

/// One version of an event, without its type: what topology, the schema
/// gate and the AsyncAPI document need to know about it.
#[derive(Clone, Copy)]
pub struct EventInfo {
    /// [`Event::NAME`].
    pub name: &'static str,
    /// [`Event::VERSION`].
    pub version: &'static str,
    /// [`Event::SUBJECT`].
    pub subject: &'static str,
    /// [`Event::STREAM`].
    pub stream: &'static str,
    /// [`Event::NOTIFICATION`]: published without a stream.
    pub notification: bool,
    /// The Rust type (`std::any::type_name`).
    pub type_name: &'static str,
    schema: fn(&mut SchemaGenerator) -> Option<Schema>,
}

impl EventInfo {
    /// The description of `E`.
    ///
    /// ```
    /// use jetflow::event::EventInfo;
    ///
    /// #[jetflow::event(version = "v1")]
    /// pub struct OrderCreated { pub order_id: String }
    ///
    /// let info = EventInfo::of::<OrderCreated>();
    /// assert_eq!(info.subject, "order.created.v1");
    /// ```
    pub fn of<E: Event>() -> EventInfo {
        EventInfo {
            name: E::NAME,
            version: E::VERSION,
            subject: E::SUBJECT,
            stream: E::STREAM,
            notification: E::NOTIFICATION,
            type_name: type_name::<E>(),
            schema: E::schema,
        }
    }

    /// The payload's JSON Schema, added to `generator` ([`Event::schema`]).
    pub fn schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        (self.schema)(generator)
    }

    /// The short type name (`OrderCreatedV2`, without the module path).
    pub fn short_type_name(&self) -> &'static str {
        let base = self.type_name.split('<').next().unwrap_or(self.type_name);
        base.rsplit("::").next().unwrap_or(base)
    }
}

impl fmt::Debug for EventInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventInfo")
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

/// Decodes a message published on `subject` as `E`: the subject's version
/// token picks the type in `E`'s upcast chain, which is decoded and upcast
/// to `E`. A subject without a version token (a custom subject) is decoded
/// as `E`'s own version; a last token shaped like one but invalid (`v0`,
/// `v01`) is an unsupported version. This is what the consume loop calls for every
/// message.
///
/// ```
/// use jetflow::event::{DecodeError, decode_subject};
///
/// #[jetflow::event(name = "order.created", version = "v1")]
/// pub struct OrderCreatedV1 { pub order_id: String }
///
/// #[jetflow::event(name = "order.created", version = "v2", upcast_from = OrderCreatedV1)]
/// pub struct OrderCreatedV2 { pub order_id: String, pub currency: String }
///
/// impl From<OrderCreatedV1> for OrderCreatedV2 {
///     fn from(v1: OrderCreatedV1) -> Self {
///         OrderCreatedV2 { order_id: v1.order_id, currency: "EUR".into() }
///     }
/// }
///
/// let e: OrderCreatedV2 = decode_subject("order.created.v1", br#"{"order_id": "o-1"}"#)?;
/// assert_eq!(e.currency, "EUR");
/// let newer = decode_subject::<OrderCreatedV2>("order.created.v3", b"{}");
/// assert!(matches!(newer, Err(DecodeError::UnsupportedVersion { .. })));
/// // shaped like a version but not one: never decoded as the own version
/// let zero = decode_subject::<OrderCreatedV2>("order.created.v0", br#"{"order_id": "o-1", "currency": "EUR"}"#);
/// assert!(matches!(zero, Err(DecodeError::UnsupportedVersion { .. })));
/// # Ok::<(), DecodeError>(())
/// ```
pub fn decode_subject<E: Event>(subject: &str, payload: &[u8]) -> Result<E, DecodeError> {
    let version = match version_of(subject) {
        Some(v) => v,
        // `v0`, `v01`: shaped like a version but none; never decoded as ours
        None => match subject.rsplit('.').next() {
            Some(last)
                if last.len() > 1
                    && last.starts_with('v')
                    && last[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                return Err(unsupported::<E>(last));
            }
            _ => E::VERSION,
        },
    };
    if version != E::VERSION && !E::history().iter().any(|v| v.version == version) {
        return Err(unsupported::<E>(version));
    }
    E::decode(version, payload)
}

/// [`Event::decode`] of an event without `upcast_from`: its own version only.
pub fn decode_own<E: Event>(version: &str, payload: &[u8]) -> Result<E, DecodeError> {
    if version != E::VERSION {
        return Err(unsupported::<E>(version));
    }
    serde_json::from_slice(payload).map_err(|source| DecodeError::Payload {
        subject: E::SUBJECT,
        source,
    })
}

/// [`Event::decode`] of an event `E` with `upcast_from = P`: its own version,
/// or any version of `P`'s chain decoded there and converted with
/// `From<P>`.
pub fn decode_upcast<E, P>(version: &str, payload: &[u8]) -> Result<E, DecodeError>
where
    E: Event + From<P>,
    P: Event,
{
    if version == E::VERSION {
        return decode_own::<E>(version, payload);
    }
    P::decode(version, payload).map(E::from)
}

/// [`Event::history`] of an event `E` with `upcast_from = P`: `P`'s history,
/// then `E`.
pub fn history_upcast<E: Event, P: Event>() -> Vec<EventInfo> {
    let mut history = P::history();
    history.push(EventInfo::of::<E>());
    history
}

fn unsupported<E: Event>(version: &str) -> DecodeError {
    DecodeError::UnsupportedVersion {
        name: E::NAME,
        version: version.to_owned(),
        known: E::history().iter().map(|v| v.version).collect(),
    }
}

/// The consumer filter of a handler of `E` without an explicit `subject`:
/// `E`'s subject, or `{name}.*` when `E` upcasts from older versions, so
/// that every version arrives on one durable (nats-server 2.9 has no
/// multi-filter consumers). A version the chain does not know then arrives
/// too and is dead-lettered as unsupported.
pub fn filter_subject<E: Event>() -> String {
    if E::history().len() > 1 {
        format!("{}.*", E::NAME)
    } else {
        E::SUBJECT.to_owned()
    }
}

/// `v12` -> 12 (0 if it is not a version, which `#[event]` already rejects).
pub(crate) const fn version_number(version: &str) -> u64 {
    match jetflow_rules::version_number(version) {
        Some(n) => n,
        None => 0,
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The rules of one link `P -> E` of an upcast chain, checked at compile
/// time by `#[event(upcast_from = P)]`: the same name, and a version newer
/// than `P`'s. `messages` are the texts of the three failures (different
/// name, same version, older version), written by the macro with the type
/// names in them.
pub(crate) const fn check_upcast(
    from: (&str, &str),
    to: (&str, &str),
    messages: [&'static str; 3],
) {
    let [other_name, duplicate, not_increasing] = messages;
    if !str_eq(from.0, to.0) {
        panic!("{}", other_name);
    }
    let (old, new) = (version_number(from.1), version_number(to.1));
    if old == new {
        panic!("{}", duplicate);
    }
    if old > new {
        panic!("{}", not_increasing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers() {
        assert_eq!(version_number("v1"), 1);
        assert_eq!(version_number("v12"), 12);
        assert!(version_number("v10") > version_number("v9"));
        // Not versions (`#[event]` rejects them): they used to read as 0 and 1.
        assert_eq!(version_number("v0"), 0);
        assert_eq!(version_number("v01"), 0);
        assert_eq!(version_number("x1"), 0);
        assert!(str_eq("order.created", "order.created"));
        assert!(!str_eq("order.created", "order.create"));
        assert!(!str_eq("order.created", "order.placed!"));
    }

    #[test]
    fn chain_rules() {
        const M: [&str; 3] = ["name", "duplicate", "older"];
        check_upcast(("a.b", "v1"), ("a.b", "v2"), M);
        check_upcast(("a.b", "v9"), ("a.b", "v10"), M);
        let panics = |from, to| {
            std::panic::catch_unwind(|| check_upcast(from, to, M))
                .expect_err("must panic")
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(panics(("a.b", "v1"), ("a.c", "v2")), "name");
        assert_eq!(panics(("a.b", "v2"), ("a.b", "v2")), "duplicate");
        assert_eq!(panics(("a.b", "v3"), ("a.b", "v2")), "older");
    }
}
