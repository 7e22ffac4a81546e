//! Whether the server can change the filter subject of an existing durable.
//!
//! Found against real servers (tests/tests/versioning.rs): nats-server
//! 2.15 moves a durable from `order.created.v1` to `order.created.*` and
//! keeps its position. nats-server 2.9.10 accepts the same update and
//! reports the new filter, but the consumer then delivers nothing: its
//! delivered sequence moves past every new message with `num_pending` 0,
//! a silent loss. So before 2.10 jetflow refuses the change.

/// `Some(reason)` when the server at `version` (`2.9.10`) must not get a
/// filter subject change.
pub(crate) fn refuse_filter_change(version: &str) -> Option<String> {
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u64>()
            .unwrap_or(0)
    });
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    ((major, minor) < (2, 10)).then(|| {
        format!(
            "nats-server {version} accepts a filter_subject change on an existing durable but then delivers \
             nothing from it (fixed in 2.10)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(refuse_filter_change("2.9.10").is_some());
        assert!(refuse_filter_change("2.10.0").is_none());
        assert!(refuse_filter_change("2.15.1").is_none());
        assert!(refuse_filter_change("3.0.0-beta").is_none());
    }
}
