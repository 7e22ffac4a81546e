//! Durations written as text: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, and comma
//! lists of them (`"1s, 5s, 30s"`).

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// What a valid duration looks like, for error messages.
const EXPECTED: &str = "expected a duration like `500ms`, `30s`, `5m` or `1h`";

/// Parses one duration: an integer immediately followed by `ms`, `s`, `m` or
/// `h`, with optional white space around it.
///
/// ```
/// use std::time::Duration;
/// use jetflow_rules::parse_duration;
///
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert!(parse_duration("1.5s").is_err());
/// assert!(parse_duration("30 seconds").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let malformed = || DurationError::Malformed {
        text: text.to_owned(),
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(malformed()),
    };
    if number.is_empty() {
        return Err(malformed());
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::TooLarge {
            text: text.to_owned(),
        })
}

/// Parses a comma-separated list of durations (see [`parse_duration`]);
/// every item must be valid and the list must not be empty.
///
/// ```
/// use std::time::Duration;
/// use jetflow_rules::parse_duration_list;
///
/// assert_eq!(
///     parse_duration_list("1s, 5s, 30s"),
///     Ok(vec![Duration::from_secs(1), Duration::from_secs(5), Duration::from_secs(30)])
/// );
/// assert!(parse_duration_list("").is_err());
/// assert!(parse_duration_list("1s,,5s").is_err());
/// ```
pub fn parse_duration_list(text: &str) -> Result<Vec<Duration>, DurationError> {
    if text.trim().is_empty() {
        return Err(DurationError::EmptyList);
    }
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            if item.trim().is_empty() {
                Err(DurationError::EmptyItem { position: i + 1 })
            } else {
                parse_duration(item)
            }
        })
        .collect()
}

/// Text that is not a duration or a list of durations, from
/// [`parse_duration`] or [`parse_duration_list`].
///
/// ```
/// use jetflow_rules::parse_duration;
///
/// assert_eq!(
///     parse_duration("soon").unwrap_err().to_string(),
///     "expected a duration like `500ms`, `30s`, `5m` or `1h`, found `soon`"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// Not an integer followed by `ms`, `s`, `m` or `h`.
    Malformed {
        /// The text, without surrounding white space.
        text: String,
    },
    /// The duration does not fit in a `u64` of milliseconds.
    TooLarge {
        /// The text, without surrounding white space.
        text: String,
    },
    /// The list has no item.
    EmptyList,
    /// An item of the list is empty (`1s,,5s`).
    EmptyItem {
        /// The item's position, from 1.
        position: usize,
    },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Malformed { text } => write!(f, "{EXPECTED}, found `{text}`"),
            DurationError::TooLarge { text } => write!(
                f,
                "duration `{text}` is too large; a duration must be at most {}ms",
                u64::MAX
            ),
            DurationError::EmptyList => write!(
                f,
                "expected at least one delay, e.g. `\"1s, 5s, 30s\"`; {EXPECTED}"
            ),
            DurationError::EmptyItem { position } => {
                write!(f, "delay {position} is empty; {EXPECTED}, separated by `,`")
            }
        }
    }
}

impl Error for DurationError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "s", "10", "1.5s", "-1s", "1 s", "1sec", "1S", "ms", "1d", "1s1",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(matches!(err, DurationError::Malformed { .. }), "{bad:?}");
            assert!(
                err.to_string().contains("expected a duration like"),
                "{bad:?}: {err}"
            );
        }
        let err = parse_duration("99999999999999999999h").expect_err("overflow");
        assert!(matches!(err, DurationError::TooLarge { .. }));
        assert!(err.to_string().contains("too large"), "{err}");
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::TooLarge { .. })
        ));
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_duration_list("1s, 5s,30s"),
            Ok(vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30)
            ])
        );
        assert_eq!(
            parse_duration_list("250ms"),
            Ok(vec![Duration::from_millis(250)])
        );
        assert_eq!(parse_duration_list(""), Err(DurationError::EmptyList));
        assert_eq!(parse_duration_list(" "), Err(DurationError::EmptyList));
        let err = parse_duration_list("1s,,2s").expect_err("empty item");
        assert_eq!(err, DurationError::EmptyItem { position: 2 });
        assert!(err.to_string().contains("delay 2 is empty"), "{err}");
        assert!(parse_duration_list("1s, 2x").is_err());
        assert!(parse_duration_list("1s,").is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(
            parse_duration("30 seconds").unwrap_err().to_string(),
            "expected a duration like `500ms`, `30s`, `5m` or `1h`, found `30 seconds`"
        );
        assert_eq!(
            DurationError::EmptyList.to_string(),
            "expected at least one delay, e.g. `\"1s, 5s, 30s\"`; expected a duration like `500ms`, \
             `30s`, `5m` or `1h`"
        );
    }
}
