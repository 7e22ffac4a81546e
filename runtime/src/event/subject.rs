use thiserror::Error;

/// Text that cannot be used as (part of) a NATS subject.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The token is empty.
    #[error("subject token is empty; use a non-empty value")]
    Empty,
    /// The token contains a character NATS gives a meaning to, or white space.
    #[error(
        "subject token {token:?} contains {found:?}, which NATS treats as a separator, wildcard or \
         protocol character; escape or hash the value before putting it into a subject"
    )]
    ForbiddenCharacter {
        /// The offending token.
        token: String,
        /// The first forbidden character.
        found: char,
    },
}

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
    if token.is_empty() {
        return Err(SubjectError::Empty);
    }
    match token
        .chars()
        .find(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    {
        Some(found) => Err(SubjectError::ForbiddenCharacter {
            token: token.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// Does the concrete `subject` match the (possibly wildcard) `filter`?
/// A `const fn`, so `#[handler(subject = ...)]` is checked at compile time.
pub(crate) const fn subject_matches(filter: &str, subject: &str) -> bool {
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

/// The version token of a jetflow subject (`order.created.v2` -> `v2`), if
/// the last token looks like one.
pub(crate) fn version_of(subject: &str) -> Option<&str> {
    let last = subject.rsplit('.').next()?;
    let digits = last.strip_prefix('v')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(last)
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

    #[test]
    fn tokens() {
        for bad in ["", "a.b", "*", ">", "a b", "a\nb", "a\rb", "\t"] {
            assert!(validate_subject_token(bad).is_err(), "{bad:?}");
        }
        assert!(validate_subject_token("ORD-1_x").is_ok());
    }
}
