//! Event versions: `v` followed by an integer from 1, without leading zeros.

use std::error::Error;
use std::fmt;

/// Why a text is not a version.
#[derive(Clone, Copy)]
enum Problem {
    Malformed,
    TooLarge,
}

const fn parse(version: &str) -> Result<u64, Problem> {
    let bytes = version.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'v' || bytes[1] == b'0' {
        return Err(Problem::Malformed);
    }
    let mut n: u64 = 0;
    let mut i = 1;
    let mut too_large = false;
    while i < bytes.len() {
        let b = bytes[i];
        if !b.is_ascii_digit() {
            return Err(Problem::Malformed);
        }
        match n.checked_mul(10) {
            Some(m) => match m.checked_add((b - b'0') as u64) {
                Some(next) => n = next,
                None => too_large = true,
            },
            None => too_large = true,
        }
        i += 1;
    }
    if too_large {
        Err(Problem::TooLarge)
    } else {
        Ok(n)
    }
}

/// Checks a version (`v1`, `v2`, ...: `v` followed by an integer from 1
/// that fits in a `u64`, without leading zeros) and returns its number.
///
/// ```
/// use jetflow_rules::validate_version;
///
/// assert_eq!(validate_version("v1"), Ok(1));
/// assert_eq!(validate_version("v12"), Ok(12));
/// for bad in ["", "v", "v0", "v01", "1", "V1", "v1.0"] {
///     assert!(validate_version(bad).is_err(), "{bad}");
/// }
/// ```
pub fn validate_version(version: &str) -> Result<u64, VersionError> {
    match parse(version) {
        Ok(n) => Ok(n),
        Err(Problem::Malformed) => Err(VersionError::Malformed {
            version: version.to_owned(),
        }),
        Err(Problem::TooLarge) => Err(VersionError::TooLarge {
            version: version.to_owned(),
        }),
    }
}

/// The number of a version (`v12` -> `Some(12)`), or `None` if the text is
/// not a valid version (see [`validate_version`]). A `const fn`, for
/// compile-time checks of version order.
///
/// ```
/// use jetflow_rules::version_number;
///
/// const V10: Option<u64> = version_number("v10");
/// assert_eq!(V10, Some(10));
/// assert_eq!(version_number("v0"), None);
/// assert_eq!(version_number("v01"), None);
/// ```
pub const fn version_number(version: &str) -> Option<u64> {
    match parse(version) {
        Ok(n) => Some(n),
        Err(_) => None,
    }
}

/// The version token of a subject: its last token, if that is a valid
/// version (`order.created.v2` -> `v2`).
///
/// ```
/// use jetflow_rules::version_of;
///
/// assert_eq!(version_of("order.created.v2"), Some("v2"));
/// assert_eq!(version_of("order.created"), None);
/// assert_eq!(version_of("order.created.v01"), None);
/// ```
pub fn version_of(subject: &str) -> Option<&str> {
    let last = subject.rsplit('.').next()?;
    parse(last).is_ok().then_some(last)
}

/// An invalid version, from [`validate_version`].
///
/// ```
/// use jetflow_rules::{VersionError, validate_version};
///
/// let err = validate_version("v01").unwrap_err();
/// assert!(matches!(err, VersionError::Malformed { .. }));
/// assert!(err.to_string().contains("without leading zeros"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionError {
    /// Not `v` followed by an integer from 1 without leading zeros.
    Malformed {
        /// The text.
        version: String,
    },
    /// The number does not fit in a `u64`.
    TooLarge {
        /// The text.
        version: String,
    },
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::Malformed { version } => write!(
                f,
                "invalid version `{version}`: expected `v` followed by a number from 1, without leading \
                 zeros, e.g. `v1` or `v2`"
            ),
            VersionError::TooLarge { version } => write!(
                f,
                "version `{version}` is too large: its number must be at most {}; count versions \
                 from `v1` up",
                u64::MAX
            ),
        }
    }
}

impl Error for VersionError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for (good, n) in [("v1", 1), ("v2", 2), ("v10", 10), ("v123", 123)] {
            assert_eq!(validate_version(good), Ok(n), "{good}");
            assert_eq!(version_number(good), Some(n), "{good}");
        }
        for bad in [
            "", "v", "v0", "v01", "1", "V1", "v1.0", "v-1", "version1", "v1 ", "vv1",
        ] {
            assert!(
                matches!(validate_version(bad), Err(VersionError::Malformed { .. })),
                "{bad:?}"
            );
            assert_eq!(version_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(validate_version("v18446744073709551615"), Ok(u64::MAX));
        let err = validate_version("v18446744073709551616").unwrap_err();
        assert!(matches!(err, VersionError::TooLarge { .. }));
        assert!(err.to_string().contains("too large"), "{err}");
        assert_eq!(version_number("v99999999999999999999999"), None);
    }

    #[test]
    fn order() {
        const OLD: Option<u64> = version_number("v9");
        const NEW: Option<u64> = version_number("v10");
        assert!(NEW > OLD);
    }

    #[test]
    fn version_tokens() {
        assert_eq!(version_of("order.created.v12"), Some("v12"));
        assert_eq!(version_of("v3"), Some("v3"));
        assert_eq!(version_of("order.created"), None);
        assert_eq!(version_of("order.v"), None);
        assert_eq!(version_of("order.created.v0"), None);
        assert_eq!(version_of("order.created.v01"), None);
        assert_eq!(version_of("order.created."), None);
        assert_eq!(version_of(""), None);
    }

    #[test]
    fn message() {
        assert_eq!(
            validate_version("1").unwrap_err().to_string(),
            "invalid version `1`: expected `v` followed by a number from 1, without leading zeros, \
             e.g. `v1` or `v2`"
        );
    }
}
