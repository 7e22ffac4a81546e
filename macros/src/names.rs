//! Syntax of event names, versions, streams, groups and subjects, and the
//! default event name derived from a type name.

/// `OrderCreated` -> `order.created`, `HTTPRequestFailed` -> `http.request.failed`,
/// `OrderV2Created` -> `order.v2.created`. An `_` also separates words.
pub(crate) fn default_event_name(type_name: &str) -> String {
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

/// Event names: tokens of `[a-z0-9_-]+` separated by `.`.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    const VALID: &str = "an event name is lowercase tokens of `a-z`, `0-9`, `_` or `-` separated by `.`, \
                         e.g. `order.created`";
    if name.contains(['*', '>']) {
        return Err(format!("event name `{name}` contains a wildcard; {VALID}"));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("event name `{name}` has an empty token; {VALID}"));
    }
    if let Some(c) = name.chars().find(|&c| !is_name_char(c) && c != '.') {
        return Err(format!("event name `{name}` contains `{c}`; {VALID}"));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

/// Versions: `v` followed by an integer >= 1 without leading zeros.
pub(crate) fn validate_version(version: &str) -> Result<(), String> {
    let digits = version.strip_prefix('v').unwrap_or("");
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version `{version}`: expected `v` followed by a number from 1, without leading \
             zeros, e.g. `v1` or `v2`"
        ))
    }
}

/// Streams and consumer groups: `[A-Za-z0-9_-]+`.
pub(crate) fn validate_identifier(what: &str, value: &str) -> Result<(), String> {
    let valid = "it may only contain ASCII letters, digits, `_` and `-`";
    if value.is_empty() {
        return Err(format!("`{what}` is empty; {valid}"));
    }
    match value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        Some(c) => Err(format!("`{what} = {value:?}` contains {c:?}; {valid}")),
        None => Ok(()),
    }
}

/// The default stream of an event: its name's first token, upper-cased.
pub(crate) fn default_stream(name: &str) -> String {
    name.split('.').next().unwrap_or(name).to_ascii_uppercase()
}

/// NATS subjects (possibly with wildcards): non-empty `.`-separated tokens,
/// no white space, `*` only as a whole token, `>` only as the whole last token.
pub(crate) fn validate_subject(subject: &str) -> Result<(), String> {
    const VALID: &str = "a subject is non-empty tokens separated by `.`, e.g. `order.created.v1`; `*` matches one \
                         token and `>` the rest (`order.*.v1`, `order.>`)";
    if subject.is_empty() {
        return Err(format!("the subject is empty; {VALID}"));
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "subject `{}` contains {c:?}; {VALID}",
            subject.escape_debug()
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(format!("subject `{subject}` has an empty token; {VALID}"));
        }
        if token.contains('*') && *token != "*" {
            return Err(format!(
                "subject `{subject}`: `*` must be a whole token (`{token}`); {VALID}"
            ));
        }
        if token.contains('>') && (*token != ">" || i + 1 != tokens.len()) {
            return Err(format!(
                "subject `{subject}`: `>` must be the whole last token; {VALID}"
            ));
        }
    }
    Ok(())
}

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
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names() {
        for good in ["order.created", "a", "order-x.created_at.2"] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
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
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions() {
        for good in ["v1", "v2", "v10", "v123"] {
            assert_eq!(validate_version(good), Ok(()), "{good}");
        }
        for bad in ["", "v", "v0", "v01", "1", "V1", "v1.0", "v-1", "version1"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn streams_and_groups() {
        assert_eq!(default_stream("order.created"), "ORDER");
        assert_eq!(default_stream("order-x.created"), "ORDER-X");
        assert_eq!(default_stream("billing"), "BILLING");
        for good in ["ORDERS", "inventory", "a_b-C9"] {
            assert_eq!(validate_identifier("group", good), Ok(()), "{good}");
        }
        for bad in ["", "a.b", "a b", "a*", "ü"] {
            assert!(validate_identifier("group", bad).is_err(), "{bad:?}");
        }
    }

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
}
