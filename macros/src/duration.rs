//! Durations written as text in attributes: `"500ms"`, `"30s"`, `"5m"`, `"1h"`,
//! and comma lists of them (`"1s, 5s, 30s"`).

use std::time::Duration;

/// What a valid duration looks like, for error messages.
pub(crate) const EXPECTED: &str = "expected a duration like `500ms`, `30s`, `5m` or `1h`";

/// Parses one duration: an integer immediately followed by `ms`, `s`, `m` or `h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{EXPECTED}, found `{text}`")),
    };
    if number.is_empty() {
        return Err(format!("{EXPECTED}, found `{text}`"));
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

/// Parses a comma-separated list of durations; every item must be valid and
/// the list must not be empty.
pub(crate) fn parse_duration_list(text: &str) -> Result<Vec<Duration>, String> {
    if text.trim().is_empty() {
        return Err(format!(
            "expected at least one delay, e.g. `\"1s, 5s, 30s\"`; {EXPECTED}"
        ));
    }
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            if item.trim().is_empty() {
                Err(format!(
                    "delay {} is empty; {EXPECTED}, separated by `,`",
                    i + 1
                ))
            } else {
                parse_duration(item)
            }
        })
        .collect()
}

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
            assert!(err.contains("expected a duration like"), "{bad:?}: {err}");
        }
        let err = parse_duration("99999999999999999999h").expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
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
        assert!(parse_duration_list("").is_err());
        assert!(
            parse_duration_list("1s,,2s")
                .expect_err("empty item")
                .contains("delay 2 is empty")
        );
        assert!(parse_duration_list("1s, 2x").is_err());
    }
}
