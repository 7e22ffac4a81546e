//! Stream and consumer-group identifiers, and the default stream of an event.

use std::error::Error;
use std::fmt;

/// What a valid identifier looks like, for error messages.
const VALID: &str = "it may only contain ASCII letters, digits, `_` and `-`";

/// What an identifier names, for error messages.
///
/// ```
/// use jetflow_rules::IdentifierKind;
///
/// assert_eq!(IdentifierKind::Group.to_string(), "group");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentifierKind {
    /// A JetStream stream (`#[event(stream = "...")]`).
    Stream,
    /// A consumer group (`#[handler(group = "...")]`), the prefix of durable names.
    Group,
}

impl IdentifierKind {
    /// The option's name: `stream` or `group`.
    ///
    /// ```
    /// use jetflow_rules::IdentifierKind;
    ///
    /// assert_eq!(IdentifierKind::Stream.as_str(), "stream");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Stream => "stream",
            IdentifierKind::Group => "group",
        }
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a stream or group name: one or more ASCII letters, digits, `_`
/// and `-` (no `.`, wildcards or white space, which NATS gives a meaning to).
///
/// ```
/// use jetflow_rules::{IdentifierKind, validate_identifier};
///
/// assert_eq!(validate_identifier(IdentifierKind::Stream, "ORDERS"), Ok(()));
/// assert!(validate_identifier(IdentifierKind::Group, "inventory team").is_err());
/// assert!(validate_identifier(IdentifierKind::Group, "").is_err());
/// ```
pub fn validate_identifier(kind: IdentifierKind, value: &str) -> Result<(), IdentifierError> {
    if value.is_empty() {
        return Err(IdentifierError::Empty { kind });
    }
    match value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        Some(found) => Err(IdentifierError::ForbiddenCharacter {
            kind,
            value: value.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// The first token of an event name (`order` of `order.created`).
fn first_token(event_name: &str) -> &str {
    event_name.split('.').next().unwrap_or(event_name)
}

/// The default stream of an event: the first token of its name, upper-cased.
///
/// ```
/// use jetflow_rules::default_stream;
///
/// assert_eq!(default_stream("order.created"), "ORDER");
/// assert_eq!(default_stream("order-x.created"), "ORDER-X");
/// ```
pub fn default_stream(event_name: &str) -> String {
    first_token(event_name).to_ascii_uppercase()
}

/// The subjects a stream needs so that it stores an event: `{first token}.>`,
/// every event whose name starts with the same token.
///
/// ```
/// use jetflow_rules::stream_subject;
///
/// assert_eq!(stream_subject("order.created"), "order.>");
/// assert_eq!(stream_subject("billing"), "billing.>");
/// ```
pub fn stream_subject(event_name: &str) -> String {
    format!("{}.>", first_token(event_name))
}

/// An invalid stream or group name, from [`validate_identifier`].
///
/// ```
/// use jetflow_rules::{IdentifierKind, validate_identifier};
///
/// let err = validate_identifier(IdentifierKind::Stream, "ORDERS.EU").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "`stream = \"ORDERS.EU\"` contains '.'; it may only contain ASCII letters, digits, `_` and `-`"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentifierError {
    /// The name is empty.
    Empty {
        /// What the name names.
        kind: IdentifierKind,
    },
    /// The name contains a character other than ASCII letters, digits, `_` and `-`.
    ForbiddenCharacter {
        /// What the name names.
        kind: IdentifierKind,
        /// The name.
        value: String,
        /// The first such character.
        found: char,
    },
}

impl IdentifierError {
    /// What the invalid name names.
    ///
    /// ```
    /// use jetflow_rules::{IdentifierKind, validate_identifier};
    ///
    /// let err = validate_identifier(IdentifierKind::Group, "a b").unwrap_err();
    /// assert_eq!(err.kind(), IdentifierKind::Group);
    /// ```
    pub fn kind(&self) -> IdentifierKind {
        match self {
            IdentifierError::Empty { kind } | IdentifierError::ForbiddenCharacter { kind, .. } => {
                *kind
            }
        }
    }
}

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifierError::Empty { kind } => write!(f, "`{kind}` is empty; {VALID}"),
            IdentifierError::ForbiddenCharacter { kind, value, found } => {
                write!(f, "`{kind} = {value:?}` contains {found:?}; {VALID}")
            }
        }
    }
}

impl Error for IdentifierError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_groups() {
        assert_eq!(default_stream("order.created"), "ORDER");
        assert_eq!(default_stream("order-x.created"), "ORDER-X");
        assert_eq!(default_stream("billing"), "BILLING");
        for kind in [IdentifierKind::Stream, IdentifierKind::Group] {
            for good in ["ORDERS", "inventory", "a_b-C9"] {
                assert_eq!(validate_identifier(kind, good), Ok(()), "{good}");
            }
            for bad in ["", "a.b", "a b", "a*", "a>", "ü"] {
                assert!(validate_identifier(kind, bad).is_err(), "{bad:?}");
            }
        }
    }

    #[test]
    fn stream_subjects() {
        assert_eq!(stream_subject("order.created"), "order.>");
        assert_eq!(stream_subject("order-x.created.eu"), "order-x.>");
        assert_eq!(stream_subject("billing"), "billing.>");
    }

    #[test]
    fn messages() {
        assert_eq!(
            validate_identifier(IdentifierKind::Group, "inventory team")
                .unwrap_err()
                .to_string(),
            "`group = \"inventory team\"` contains ' '; it may only contain ASCII letters, digits, `_` and `-`"
        );
        assert_eq!(
            validate_identifier(IdentifierKind::Stream, "")
                .unwrap_err()
                .to_string(),
            "`stream` is empty; it may only contain ASCII letters, digits, `_` and `-`"
        );
    }
}
