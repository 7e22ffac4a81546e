//! [`Headers`]: message headers in jetflow's own type, the same on every
//! transport.

use std::borrow::Cow;
use std::fmt;

use thiserror::Error;

use crate::event::headers as wire;

/// The headers of one message: name/value pairs, in jetflow's own type so
/// that handlers, the DLQ and publishers see the same thing on JetStream,
/// the embedded broker, Redis Streams or any other transport.
///
/// Names match case-insensitively (`ce-id` finds `CE-Id`); a name may carry
/// several values ([`append`](Headers::append), [`get_all`](Headers::get_all)).
/// Names are visible ASCII without `:`; values cannot contain CR or LF, so
/// a header can never break a wire protocol's framing. [`insert`](Headers::insert)
/// panics on invalid text (use it with literals and validated values);
/// [`try_insert`](Headers::try_insert) returns an error instead, for
/// untrusted text.
///
/// ```
/// use jetflow::Headers;
///
/// let mut h = Headers::new();
/// h.insert("ce-id", "order-42");
/// h.append("x-tag", "a");
/// h.append("x-tag", "b");
/// assert_eq!(h.get("CE-ID"), Some("order-42"));
/// assert_eq!(h.get_all("x-tag").collect::<Vec<_>>(), ["a", "b"]);
/// assert!(h.try_insert("x-bad", "line\r\nbreak").is_err());
/// ```
#[derive(Clone, Default)]
pub struct Headers {
    entries: Vec<(Cow<'static, str>, String)>,
}

/// A header name or value that cannot be carried by a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name is empty, or contains a character other than visible ASCII, or `:`.
    #[error(
        "header name {0:?} is invalid: use visible ASCII characters other than `:` (e.g. `x-tenant`)"
    )]
    Name(String),
    /// The value contains a line break.
    #[error("the value of header `{0}` contains CR or LF; header values are one line")]
    Value(String),
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Room for `n` headers.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in the order they were added.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `true` when `name` has a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, replacing its earlier values.
    ///
    /// # Panics
    ///
    /// When the name or the value is invalid (see [`Headers`]); use
    /// [`try_insert`](Headers::try_insert) for untrusted text.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        if let Err(e) = self.try_insert(name, value) {
            panic!("{e}");
        }
    }

    /// Sets `name` to `value`, replacing its earlier values, or says why it cannot.
    pub fn try_insert(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Result<(), HeaderError> {
        let (name, value) = checked(name.into(), value.into())?;
        self.remove(&name);
        self.entries.push((name, value));
        Ok(())
    }

    /// Adds a value to `name`, keeping the earlier ones.
    ///
    /// # Panics
    ///
    /// When the name or the value is invalid (see [`Headers`]).
    pub fn append(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        if let Err(e) = self.try_append(name, value) {
            panic!("{e}");
        }
    }

    /// Adds a value to `name`, keeping the earlier ones, or says why it cannot.
    pub fn try_append(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Result<(), HeaderError> {
        let entry = checked(name.into(), value.into())?;
        self.entries.push(entry);
        Ok(())
    }

    /// Removes every value of `name`; `true` if there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.entries.len() != before
    }

    /// Every `(name, value)` pair, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }

    /// Number of `(name, value)` pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a pair a transport read from the wire, without checking it
    /// again (the wire format cannot carry an invalid one). Well-known names
    /// are stored without allocating.
    pub(crate) fn push_received(&mut self, name: &str, value: &str) {
        self.entries.push((intern_name(name), value.to_owned()));
    }

    /// Adds a pair a transport read from a wire that can carry what
    /// [`Headers`] cannot (a name with `:`, a value with CR or LF, written
    /// by a foreign producer): such a pair is refused, not stored.
    /// Well-known names are stored without allocating.
    pub(crate) fn try_push_received(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        let entry = checked(intern_name(name), value.to_owned())?;
        self.entries.push(entry);
        Ok(())
    }

    /// Sets `ce-id` to `id`, the event id a transport carries in a field
    /// of its own, when the message has no `ce-id` (one published with
    /// the lean wire profile): every consumer then finds the id where a
    /// CloudEvents message has it.
    pub(crate) fn fill_event_id(&mut self, id: Option<&str>) {
        if let Some(id) = id.filter(|id| !id.is_empty())
            && !self.contains(wire::ID)
        {
            let _ = self.try_push_received(wire::ID, id);
        }
    }

    /// Sets `name` like [`try_insert`](Headers::try_insert), without
    /// allocating a well-known name (`traceparent`, `ce-id`, ...).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn try_insert_known(
        &mut self,
        name: &str,
        value: String,
    ) -> Result<(), HeaderError> {
        self.try_insert(intern_name(name), value)
    }

    /// The pairs, for a transport that writes them to the wire.
    pub fn into_pairs(self) -> impl Iterator<Item = (Cow<'static, str>, String)> {
        self.entries.into_iter()
    }
}

fn checked(
    name: Cow<'static, str>,
    value: String,
) -> Result<(Cow<'static, str>, String), HeaderError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(HeaderError::Name(name.into_owned()));
    }
    if value.contains(['\r', '\n']) {
        return Err(HeaderError::Value(name.into_owned()));
    }
    Ok((name, value))
}

/// The names jetflow itself writes, shared instead of allocated per message.
const KNOWN_NAMES: &[&str] = &[
    wire::SPEC_VERSION,
    wire::ID,
    wire::TYPE,
    wire::SOURCE,
    wire::TIME,
    wire::CONTENT_TYPE,
    wire::CORRELATION_ID,
    wire::CAUSATION_ID,
    "Nats-Msg-Id",
    "traceparent",
    "tracestate",
];

fn intern_name(name: &str) -> Cow<'static, str> {
    match KNOWN_NAMES.iter().find(|k| **k == name) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(name.to_owned()),
    }
}

impl PartialEq for Headers {
    /// The same pairs, in any order.
    fn eq(&self, other: &Headers) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let mut a: Vec<(&str, &str)> = self.iter().collect();
        let mut b: Vec<(&str, &str)> = other.iter().collect();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<N: Into<Cow<'static, str>>, V: Into<String>> FromIterator<(N, V)> for Headers {
    /// # Panics
    ///
    /// When a name or value is invalid, as [`Headers::append`].
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Headers {
        let mut h = Headers::new();
        h.extend(iter);
        h
    }
}

impl<N: Into<Cow<'static, str>>, V: Into<String>> Extend<(N, V)> for Headers {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, iter: I) {
        for (n, v) in iter {
            self.append(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_append_keeps() {
        let mut h = Headers::new();
        h.insert("a", "1");
        h.insert("A", "2");
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), ["2"]);
        h.append("a", "3");
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), ["2", "3"]);
        assert!(h.remove("a"));
        assert!(h.is_empty());
    }

    #[test]
    fn rejects_what_breaks_framing() {
        let mut h = Headers::new();
        for bad in ["", "a b", "a:b", "ü", "a\n"] {
            assert_eq!(
                h.try_insert(bad.to_owned(), "v"),
                Err(HeaderError::Name(bad.into())),
                "{bad:?}"
            );
        }
        assert!(h.try_insert("x", "a\rb").is_err());
        assert!(h.try_insert("x", "a\nb").is_err());
        assert!(h.try_insert("x", "tab\tand ünïcode ok").is_ok());
    }

    #[test]
    fn equality_ignores_order() {
        let a: Headers = [("x", "1"), ("y", "2")].into_iter().collect();
        let b: Headers = [("y", "2"), ("x", "1")].into_iter().collect();
        assert_eq!(a, b);
        let c: Headers = [("y", "2"), ("x", "other")].into_iter().collect();
        assert_ne!(a, c);
    }

    #[test]
    fn received_known_names_are_shared() {
        let mut h = Headers::new();
        h.push_received("ce-id", "1");
        h.push_received("x-own", "2");
        assert!(matches!(h.entries[0].0, Cow::Borrowed(_)));
        assert!(matches!(h.entries[1].0, Cow::Owned(_)));
    }
}
