//! Subject rules. They are `jetflow_rules`'s, the ones `#[handler]` checks
//! at compile time, so the runtime accepts exactly what the macros accept.

pub(crate) use jetflow_rules::{subject_matches, version_of};

/// Text that cannot be used as (part of) a NATS subject: the error of
/// [`validate_subject_token`].
///
/// ```
/// use jetflow::event::{SubjectError, validate_subject_token};
///
/// assert_eq!(validate_subject_token(""), Err(SubjectError::Empty));
/// assert!(matches!(
///     validate_subject_token("a.b"),
///     Err(SubjectError::ForbiddenCharacter { found: '.', .. })
/// ));
/// ```
pub use jetflow_rules::TokenError as SubjectError;

/// Checks that untrusted text can be used as one subject token: not empty,
/// no `.`, `*`, `>`, white space or control characters.
///
/// ```
/// use jetflow::event::validate_subject_token;
/// assert!(validate_subject_token("order-42").is_ok());
/// assert!(validate_subject_token("a.b").is_err());
/// assert!(validate_subject_token("x\r\n").is_err());
/// ```
pub fn validate_subject_token(token: &str) -> Result<(), SubjectError> {
    jetflow_rules::validate_subject_token(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(subject_matches("order.>", "order.created.v1"));
        assert!(subject_matches("order.*.v1", "order.created.v1"));
        assert!(!subject_matches("order.*", "order.created.v1"));
        assert!(!subject_matches("order.created.v1", "order.created.v2"));
        assert!(subject_matches("order.created.v1", "order.created.v1"));
        assert!(!subject_matches("order.>", "order"));
    }

    #[test]
    fn versions() {
        assert_eq!(version_of("order.created.v12"), Some("v12"));
        assert_eq!(version_of("order.created"), None);
        assert_eq!(version_of("order.v"), None);
    }

    /// `#[event]` rejects `v0` and `v01`; a subject ending in them carries no
    /// version (the runtime used to read them as versions).
    #[test]
    fn versions_follow_the_macro_rules() {
        assert_eq!(version_of("order.created.v0"), None);
        assert_eq!(version_of("order.created.v01"), None);
    }

    #[test]
    fn tokens() {
        for bad in ["", "a.b", "*", ">", "a b", "a\nb", "a\rb", "\t"] {
            assert!(validate_subject_token(bad).is_err(), "{bad:?}");
        }
        assert!(validate_subject_token("ORD-1_x").is_ok());
        assert_eq!(
            validate_subject_token("a b").unwrap_err().to_string(),
            "subject token \"a b\" contains ' ', which NATS treats as a separator, wildcard or protocol \
             character; escape or hash the value before putting it into a subject"
        );
    }
}
