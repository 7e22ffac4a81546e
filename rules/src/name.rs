//! Event names and the default name derived from a type name.

use std::error::Error;
use std::fmt;

/// What a valid event name looks like, for error messages.
const VALID: &str = "an event name is lowercase tokens of `a-z`, `0-9`, `_` or `-` separated by `.`, \
                     e.g. `order.created`";

/// The default event name of a type: its words, lower-cased and joined by
/// `.`. A word starts at an upper-case letter after a lower-case letter or a
/// digit, at the last upper-case letter of an acronym followed by a
/// lower-case letter, and after an `_`.
///
/// ```
/// use jetflow_rules::default_event_name;
///
/// assert_eq!(default_event_name("OrderCreated"), "order.created");
/// assert_eq!(default_event_name("HTTPRequestFailed"), "http.request.failed");
/// assert_eq!(default_event_name("OrderV2Created"), "order.v2.created");
/// assert_eq!(default_event_name("Payment_Failed"), "payment.failed");
/// ```
pub fn default_event_name(type_name: &str) -> String {
    let chars: Vec<char> = type_name.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c.is_uppercase() && !current.is_empty() {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // `orderC`, `v2C`: a new word; `HTTPRequest`: the `R` starts one.
            if prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower)
            {
                words.push(std::mem::take(&mut current));
            }
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.join(".")
}

/// Checks an event name: non-empty tokens of `a-z`, `0-9`, `_` and `-`,
/// separated by `.`, without wildcards.
///
/// ```
/// use jetflow_rules::{NameError, validate_event_name};
///
/// assert_eq!(validate_event_name("order.created"), Ok(()));
/// assert!(matches!(validate_event_name("order.*"), Err(NameError::Wildcard { .. })));
/// assert!(matches!(validate_event_name("Order.created"), Err(NameError::ForbiddenCharacter { found: 'O', .. })));
/// ```
pub fn validate_event_name(name: &str) -> Result<(), NameError> {
    if name.contains(['*', '>']) {
        return Err(NameError::Wildcard {
            name: name.to_owned(),
        });
    }
    if name.split('.').any(str::is_empty) {
        return Err(NameError::EmptyToken {
            name: name.to_owned(),
        });
    }
    if let Some(found) = name.chars().find(|&c| !is_name_char(c) && c != '.') {
        return Err(NameError::ForbiddenCharacter {
            name: name.to_owned(),
            found,
        });
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

/// An invalid event name, from [`validate_event_name`].
///
/// ```
/// use jetflow_rules::validate_event_name;
///
/// let err = validate_event_name("order..created").unwrap_err();
/// assert!(err.to_string().starts_with("event name `order..created` has an empty token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name contains `*` or `>`: an event name is concrete.
    Wildcard {
        /// The name.
        name: String,
    },
    /// The name is empty, or has an empty token (`order..created`, `.order`).
    EmptyToken {
        /// The name.
        name: String,
    },
    /// The name contains a character other than `a-z`, `0-9`, `_`, `-` and `.`.
    ForbiddenCharacter {
        /// The name.
        name: String,
        /// The first such character.
        found: char,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Wildcard { name } => {
                write!(f, "event name `{name}` contains a wildcard; {VALID}")
            }
            NameError::EmptyToken { name } => {
                write!(f, "event name `{name}` has an empty token; {VALID}")
            }
            NameError::ForbiddenCharacter { name, found } => {
                write!(f, "event name `{name}` contains `{found}`; {VALID}")
            }
        }
    }
}

impl Error for NameError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_dotted_names() {
        for (ty, name) in [
            ("OrderCreated", "order.created"),
            ("HTTPRequestFailed", "http.request.failed"),
            ("RequestHTTP", "request.http"),
            ("Order", "order"),
            ("OrderV2Created", "order.v2.created"),
            ("Order2fa", "order2fa"),
            ("Payment_Failed", "payment.failed"),
            ("IOError", "io.error"),
            ("A", "a"),
        ] {
            assert_eq!(default_event_name(ty), name, "{ty}");
            assert_eq!(validate_event_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names() {
        for good in ["order.created", "a", "order-x.created_at.2"] {
            assert_eq!(validate_event_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Order.created",
            "order..created",
            ".order",
            "order.",
            "order.*",
            "order.>",
            "a b",
            "ü",
        ] {
            assert!(validate_event_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn name_messages() {
        let msg = |name| validate_event_name(name).unwrap_err().to_string();
        assert_eq!(
            msg("order.*"),
            "event name `order.*` contains a wildcard; an event name is lowercase tokens of `a-z`, \
             `0-9`, `_` or `-` separated by `.`, e.g. `order.created`"
        );
        assert!(msg("Order.Created").starts_with("event name `Order.Created` contains `O`; "));
        assert!(msg("").starts_with("event name `` has an empty token; "));
    }
}
