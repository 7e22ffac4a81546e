//! NATS subjects: subject filters with wildcards, concrete publish subjects,
//! single tokens, and matching a subject against a filter.

use std::error::Error;
use std::fmt;

/// What a valid subject looks like, for error messages.
const VALID: &str = "a subject is non-empty tokens separated by `.`, e.g. `order.created.v1`; `*` matches one \
                     token and `>` the rest (`order.*.v1`, `order.>`)";

/// Checks a subject that may contain wildcards (a consumer's filter, a
/// handler's `subject`): non-empty tokens separated by `.`, no white space or
/// control characters, `*` only as a whole token and `>` only as the whole
/// last token.
///
/// ```
/// use jetflow_rules::validate_subject;
///
/// for good in ["order.created.v1", "order.*.v1", "order.>", ">"] {
///     assert_eq!(validate_subject(good), Ok(()), "{good}");
/// }
/// for bad in ["", "order..v1", "order.cr*ated", "order.>.v1", "order created"] {
///     assert!(validate_subject(bad).is_err(), "{bad}");
/// }
/// ```
pub fn validate_subject(subject: &str) -> Result<(), SubjectError> {
    check_common(subject)?;
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token.contains('*') && token != "*" {
            return Err(SubjectError::PartialWildcard {
                subject: subject.to_owned(),
                token: token.to_owned(),
            });
        }
        if token.contains('>') && (token != ">" || tokens.peek().is_some()) {
            return Err(SubjectError::MisplacedTail {
                subject: subject.to_owned(),
            });
        }
    }
    Ok(())
}

/// Checks a subject a message is published on: like [`validate_subject`],
/// but without wildcards, so that every token passes
/// [`validate_subject_token`].
///
/// ```
/// use jetflow_rules::{SubjectError, validate_publish_subject};
///
/// assert_eq!(validate_publish_subject("order.created.v1"), Ok(()));
/// assert!(matches!(validate_publish_subject("order.*.v1"), Err(SubjectError::Wildcard { .. })));
/// assert!(validate_publish_subject("order..v1").is_err());
/// ```
pub fn validate_publish_subject(subject: &str) -> Result<(), SubjectError> {
    check_common(subject)?;
    if subject.contains(['*', '>']) {
        return Err(SubjectError::Wildcard {
            subject: subject.to_owned(),
        });
    }
    Ok(())
}

/// The rules shared by filters and publish subjects: not empty, no white
/// space or control characters, no empty token.
fn check_common(subject: &str) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if let Some(found) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(SubjectError::ForbiddenCharacter {
            subject: subject.to_owned(),
            found,
        });
    }
    if subject.split('.').any(str::is_empty) {
        return Err(SubjectError::EmptyToken {
            subject: subject.to_owned(),
        });
    }
    Ok(())
}

/// Checks that text (typically untrusted: an id, a tenant) can be used as
/// one subject token: not empty, no `.`, `*`, `>`, white space or control
/// characters.
///
/// ```
/// use jetflow_rules::validate_subject_token;
///
/// assert!(validate_subject_token("order-42").is_ok());
/// assert!(validate_subject_token("a.b").is_err());
/// assert!(validate_subject_token("x\r\n").is_err());
/// ```
pub fn validate_subject_token(token: &str) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    match token
        .chars()
        .find(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    {
        Some(found) => Err(TokenError::ForbiddenCharacter {
            token: token.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// Does the concrete `subject` match the (possibly wildcard) `filter`? `*`
/// matches exactly one token, a last `>` one or more. A `const fn`, so that
/// generated code can check a handler's subject at compile time.
///
/// ```
/// use jetflow_rules::subject_matches;
///
/// const OK: bool = subject_matches("order.*.v1", "order.created.v1");
/// assert!(OK);
/// assert!(subject_matches("order.>", "order.created.v1"));
/// assert!(!subject_matches("order.>", "order"));
/// assert!(!subject_matches("order.*", "order.created.v1"));
/// ```
pub const fn subject_matches(filter: &str, subject: &str) -> bool {
    let (f, s) = (filter.as_bytes(), subject.as_bytes());
    let (mut i, mut j) = (0, 0);
    loop {
        // token boundaries: f[i..fe], s[j..se]
        let mut fe = i;
        while fe < f.len() && f[fe] != b'.' {
            fe += 1;
        }
        let mut se = j;
        while se < s.len() && s[se] != b'.' {
            se += 1;
        }
        let f_tok_len = fe - i;
        let s_tok_len = se - j;
        if f_tok_len == 1 && f[i] == b'>' {
            return s_tok_len > 0 || j < s.len();
        }
        if s_tok_len == 0 && j >= s.len() {
            return false;
        }
        if !(f_tok_len == 1 && f[i] == b'*') {
            if f_tok_len != s_tok_len {
                return false;
            }
            let mut k = 0;
            while k < f_tok_len {
                if f[i + k] != s[j + k] {
                    return false;
                }
                k += 1;
            }
        }
        let f_done = fe >= f.len();
        let s_done = se >= s.len();
        if f_done || s_done {
            return f_done && s_done;
        }
        i = fe + 1;
        j = se + 1;
    }
}

/// An invalid subject, from [`validate_subject`] or
/// [`validate_publish_subject`].
///
/// ```
/// use jetflow_rules::validate_subject;
///
/// let err = validate_subject("order.>.v1").unwrap_err();
/// assert!(err.to_string().starts_with("subject `order.>.v1`: `>` must be the whole last token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject is empty.
    Empty,
    /// The subject contains white space or a control character.
    ForbiddenCharacter {
        /// The subject.
        subject: String,
        /// The first such character.
        found: char,
    },
    /// The subject has an empty token (`order..v1`, `.order`, `order.`).
    EmptyToken {
        /// The subject.
        subject: String,
    },
    /// `*` is part of a token instead of a whole token (`order.cr*ated`).
    PartialWildcard {
        /// The subject.
        subject: String,
        /// The token containing the `*`.
        token: String,
    },
    /// `>` is not the whole last token (`order.>.v1`, `order.>x`).
    MisplacedTail {
        /// The subject.
        subject: String,
    },
    /// A publish subject contains a wildcard.
    Wildcard {
        /// The subject.
        subject: String,
    },
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectError::Empty => write!(f, "the subject is empty; {VALID}"),
            SubjectError::ForbiddenCharacter { subject, found } => write!(
                f,
                "subject `{}` contains {found:?}; {VALID}",
                subject.escape_debug()
            ),
            SubjectError::EmptyToken { subject } => {
                write!(f, "subject `{subject}` has an empty token; {VALID}")
            }
            SubjectError::PartialWildcard { subject, token } => write!(
                f,
                "subject `{subject}`: `*` must be a whole token (`{token}`); {VALID}"
            ),
            SubjectError::MisplacedTail { subject } => write!(
                f,
                "subject `{subject}`: `>` must be the whole last token; {VALID}"
            ),
            SubjectError::Wildcard { subject } => write!(
                f,
                "subject `{subject}` contains a wildcard (`*` or `>`), but a message is published on one \
                 concrete subject, e.g. `order.created.v1`; build it from tokens that pass \
                 `validate_subject_token`"
            ),
        }
    }
}

impl Error for SubjectError {}

/// Text that cannot be used as one subject token, from
/// [`validate_subject_token`].
///
/// ```
/// use jetflow_rules::{TokenError, validate_subject_token};
///
/// assert_eq!(validate_subject_token(""), Err(TokenError::Empty));
/// assert!(matches!(
///     validate_subject_token("a b"),
///     Err(TokenError::ForbiddenCharacter { found: ' ', .. })
/// ));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is empty.
    Empty,
    /// The token contains a character NATS gives a meaning to, or white space.
    ForbiddenCharacter {
        /// The offending token.
        token: String,
        /// The first forbidden character.
        found: char,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Empty => write!(f, "subject token is empty; use a non-empty value"),
            TokenError::ForbiddenCharacter { token, found } => write!(
                f,
                "subject token {token:?} contains {found:?}, which NATS treats as a separator, wildcard or \
                 protocol character; escape or hash the value before putting it into a subject"
            ),
        }
    }
}

impl Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        for good in [
            "order.created.v1",
            "order.*.v1",
            "order.>",
            ">",
            "*",
            "a.*.*",
        ] {
            assert_eq!(validate_subject(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "order.",
            ".order",
            "order..v1",
            "order created",
            "order.cr*ated",
            "order.>.v1",
            "order.>x",
            "a\tb",
            "a\n",
        ] {
            assert!(validate_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subject_messages() {
        let msg = |s| validate_subject(s).unwrap_err().to_string();
        assert_eq!(
            msg("order.created.>.v1"),
            "subject `order.created.>.v1`: `>` must be the whole last token; a subject is non-empty \
             tokens separated by `.`, e.g. `order.created.v1`; `*` matches one token and `>` the rest \
             (`order.*.v1`, `order.>`)"
        );
        assert!(
            msg("order.cr*ated")
                .starts_with("subject `order.cr*ated`: `*` must be a whole token (`cr*ated`); ")
        );
        assert!(msg("a\tb").starts_with("subject `a\\tb` contains '\\t'; "));
        assert!(msg("").starts_with("the subject is empty; "));
    }

    #[test]
    fn publish_subjects() {
        for good in ["order.created.v1", "a", "tenant-1.order_x.v2"] {
            assert_eq!(validate_publish_subject(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "order.*",
            "order.>",
            "a.*.b",
            "order.cr*ated",
            "a..b",
            "a b",
            "a\r\n",
        ] {
            assert!(validate_publish_subject(bad).is_err(), "{bad:?}");
        }
    }

    /// A publish subject is valid exactly when each of its tokens is.
    #[test]
    fn publish_subject_is_tokens() {
        for s in [
            "", ".", "a", "a.b", "a..b", "a.*", "a.>", "a b.c", "a.b\n", "x>y.z", "ü.ö",
        ] {
            let by_tokens = s.split('.').all(|t| validate_subject_token(t).is_ok());
            assert_eq!(validate_publish_subject(s).is_ok(), by_tokens, "{s:?}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(subject_matches("order.>", "order.created.v1"));
        assert!(subject_matches("order.*.v1", "order.created.v1"));
        assert!(!subject_matches("order.*", "order.created.v1"));
        assert!(!subject_matches("order.created.v1", "order.created.v2"));
        assert!(subject_matches("order.created.v1", "order.created.v1"));
        assert!(!subject_matches("order.>", "order"));
        assert!(subject_matches(">", "order"));
        assert!(subject_matches("*", "order"));
        assert!(!subject_matches("*", "order.created"));
        assert!(!subject_matches("order.created", "order.created.v1"));
        assert!(!subject_matches("order.created.v1", "order.created"));
    }

    #[test]
    fn tokens() {
        for bad in ["", "a.b", "*", ">", "a b", "a\nb", "a\rb", "\t"] {
            assert!(validate_subject_token(bad).is_err(), "{bad:?}");
        }
        assert!(validate_subject_token("ORD-1_x").is_ok());
        assert_eq!(
            validate_subject_token("a.b").unwrap_err().to_string(),
            "subject token \"a.b\" contains '.', which NATS treats as a separator, wildcard or protocol \
             character; escape or hash the value before putting it into a subject"
        );
    }
}
