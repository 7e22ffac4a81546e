//! How jetflow configures librdkafka: the `kafka://` URL and its options,
//! and the settings of each kind of client (producer, group reader, group
//! member), each in one place.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::transport::{ConnectError, ConnectErrorKind};

/// How often a member commits the watermarks its settlements stored (it
/// also commits them at a rebalance and when it leaves): what a crashed
/// member handled in its last interval comes again.
pub(super) const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How jetflow creates topics; in a URL as `kafka://host:port?partitions=8&replication=3`.
///
/// ```
/// let options = jetflow::transport::kafka::KafkaOptions::default();
/// assert_eq!((options.partitions, options.replication), (1, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KafkaOptions {
    /// Partitions of a stream's topic when jetflow creates it (an existing
    /// topic is kept as it is); the DLQ always gets one. 1 by default: the
    /// stream keeps one order and sequences are offsets plus one, as on
    /// JetStream. More partitions let more members of a group work at once;
    /// an entity's events keep their order through the partition key.
    pub partitions: i32,
    /// Replication factor of the topics jetflow creates; 1 by default.
    pub replication: i32,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            partitions: 1,
            replication: 1,
        }
    }
}

/// `kafka://a:9092,b:9092?partitions=8` -> (`a:9092,b:9092`, options).
pub(super) fn parse_url(url: &str) -> Result<(String, KafkaOptions), ConnectError> {
    let bad = |why: &str| {
        ConnectError::new(
            url,
            ConnectErrorKind::UnknownScheme,
            format!(
                "not a Kafka URL ({why}): write `kafka://host:port` (several brokers: \
                 `kafka://a:9092,b:9092`; options: `?partitions=8&replication=3`); credentials \
                 and paths are not supported yet"
            ),
            None,
        )
    };
    let (hosts, query) = url.split_once('?').unwrap_or((url, ""));
    let hosts: Vec<&str> = hosts
        .split(',')
        .map(|u| {
            let u = u.trim();
            u.split_once("://").map_or(u, |(_, rest)| rest)
        })
        .map(|h| h.trim_end_matches('/'))
        .collect();
    if hosts
        .iter()
        .any(|h| h.is_empty() || h.contains('@') || h.contains('/'))
    {
        return Err(bad("a host is empty or has credentials or a path"));
    }
    let mut options = KafkaOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value: i32 = value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(&format!("`{name}` needs a positive number")))?;
        match name {
            "partitions" => options.partitions = value,
            "replication" => options.replication = value,
            other => return Err(bad(&format!("unknown option `{other}`"))),
        }
    }
    Ok((hosts.join(","), options))
}

/// Settings every client of the transport shares.
pub(super) fn client(bootstrap: &str, name: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", name)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    config
}

/// The producer: idempotent, every in-sync replica acknowledges, batched
/// with a small linger, murmur2 partitioning as Java clients do.
pub(super) fn producer(bootstrap: &str, name: &str) -> ClientConfig {
    let mut config = client(bootstrap, name);
    config
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000");
    config
}

/// What every consumer of `group` shares: offsets are stored by jetflow
/// (never by librdkafka on delivery), and a member missing for 10 s is
/// dropped from the group.
fn consumer(bootstrap: &str, name: &str, group: &str) -> ClientConfig {
    let mut config = client(bootstrap, name);
    config
        .set("group.id", group)
        .set("enable.auto.offset.store", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    config
}

/// A consumer of `group` that reads (a topic, committed offsets) and
/// commits nothing.
pub(super) fn group(bootstrap: &str, name: &str, group: &str) -> ClientConfig {
    let mut config = consumer(bootstrap, name, group);
    config.set("enable.auto.commit", "false");
    config
}

/// A member of `group` (a subscription): it stores its watermark per
/// settlement, and librdkafka commits what is stored every
/// [`COMMIT_INTERVAL`]; `reset` is where a new group starts
/// (`earliest` or `latest`).
pub(super) fn member(bootstrap: &str, name: &str, group: &str, reset: &str) -> ClientConfig {
    let mut config = consumer(bootstrap, name, group);
    config
        .set("auto.offset.reset", reset)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            COMMIT_INTERVAL.as_millis().to_string(),
        );
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let hosts = |url| parse_url(url).unwrap().0;
        assert_eq!(hosts("kafka://127.0.0.1:9092"), "127.0.0.1:9092");
        assert_eq!(hosts("kafka://a:9092,kafka://b:9093"), "a:9092,b:9093");
        assert_eq!(hosts("kafka://a:9092,b:9093/"), "a:9092,b:9093");
        let (_, options) = parse_url("kafka://a:9092?partitions=8&replication=3").unwrap();
        assert_eq!((options.partitions, options.replication), (8, 3));
        assert_eq!(
            parse_url("kafka://a:9092").unwrap().1,
            KafkaOptions::default()
        );
        for bad in ["kafka://a:9092?partitions=0", "kafka://a:9092?acks=1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let err = parse_url("kafka://u:secret@a:9092")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
