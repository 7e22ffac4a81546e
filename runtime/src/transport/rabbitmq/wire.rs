//! How jetflow's messages look on RabbitMQ: names, routing keys, headers.

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

use crate::transport::Headers;

/// The durable topic exchange every event is published to.
pub(super) const EXCHANGE: &str = "jetflow";
/// The subject of a message that came back through a delay queue (its
/// routing key is then the group's queue).
pub(super) const SUBJECT: &str = "x-jetflow-subject";
/// Deliveries made before the message went through a delay queue (the
/// copy's own `x-delivery-count` starts again).
pub(super) const RETRIED: &str = "x-jetflow-delivered";
/// The publisher's sequence, see [`super::RabbitMqTransport`].
pub(super) const SEQUENCE: &str = "x-jetflow-sequence";
/// What a quorum queue counts: earlier deliveries of this copy.
pub(super) const DELIVERY_COUNT: &str = "x-delivery-count";
/// The offset of a message in a RabbitMQ stream.
pub(super) const STREAM_OFFSET: &str = "x-stream-offset";

/// The quorum queue of durable `durable` on jetflow stream `stream`.
pub(super) fn group_queue(stream: &str, durable: &str) -> String {
    format!("jetflow.{stream}.{durable}")
}

/// The RabbitMQ stream that stores jetflow stream `stream` (only the DLQ).
pub(super) fn store_queue(stream: &str) -> String {
    format!("jetflow.stream.{stream}")
}

/// The queue holding retries of `queue` due in `ms` milliseconds.
pub(super) fn delay_queue(queue: &str, ms: u64) -> String {
    format!("jetflow.delay.{ms}.{queue}")
}

/// A NATS-style subject pattern as a topic-exchange binding key: `*` is
/// one word on both; NATS's trailing `>` (one or more words) becomes `#`
/// (zero or more: the bare prefix, which no jetflow subject is, also
/// matches).
pub(super) fn binding_key(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|t| if t == ">" { "#" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

/// Headers RabbitMQ or this transport add, which jetflow's headers never
/// show.
fn is_internal(name: &str) -> bool {
    name.starts_with("x-jetflow-")
        || name == DELIVERY_COUNT
        || name == STREAM_OFFSET
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// jetflow's headers as an AMQP table: a repeated header is an array.
pub(super) fn table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in headers.iter() {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let values: Vec<&str> = headers.get_all(name).collect();
        let value = if let [one] = values[..] {
            AMQPValue::LongString(LongString::from(one))
        } else {
            AMQPValue::FieldArray(FieldArray::from(
                values
                    .into_iter()
                    .map(|v| AMQPValue::LongString(LongString::from(v)))
                    .collect::<Vec<_>>(),
            ))
        };
        table.insert(ShortString::from(name), value);
    }
    table
}

/// The jetflow headers of an AMQP table: strings (and arrays of them),
/// without the internal ones.
pub(super) fn headers(table: Option<&FieldTable>) -> Headers {
    let mut headers = Headers::new();
    let Some(table) = table else {
        return headers;
    };
    for (name, value) in table.inner() {
        let name = name.as_str();
        if is_internal(name) {
            continue;
        }
        match value {
            AMQPValue::FieldArray(values) => {
                for v in values.as_slice() {
                    if let Some(text) = text(v) {
                        let _ = headers.try_push_received(name, &text);
                    }
                }
            }
            other => {
                if let Some(text) = text(other) {
                    let _ = headers.try_push_received(name, &text);
                }
            }
        }
    }
    headers
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        other => int(other).map(|n| n.to_string()),
    }
}

/// An integer header (RabbitMQ's own are `long` or `long long`), also one
/// written as text.
pub(super) fn int(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(*n),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

/// The integer header `name` of `table`.
pub(super) fn int_header(table: Option<&FieldTable>, name: &str) -> Option<u64> {
    table?.inner().get(name).and_then(int)
}

/// The text header `name` of `table`.
pub(super) fn text_header(table: Option<&FieldTable>, name: &str) -> Option<String> {
    table?.inner().get(name).and_then(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_keys() {
        assert_eq!(binding_key("order.>"), "order.#");
        assert_eq!(binding_key("order.*.v1"), "order.*.v1");
        assert_eq!(binding_key("order.created.v1"), "order.created.v1");
    }

    #[test]
    fn headers_round_trip_without_internal_ones() {
        let mut h = Headers::new();
        h.insert("ce-id", "1");
        h.append("tag", "a");
        h.append("tag", "b");
        let mut t = table(&h);
        t.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(2));
        t.insert(SUBJECT.into(), AMQPValue::LongString("x.y".into()));
        assert_eq!(int_header(Some(&t), DELIVERY_COUNT), Some(2));
        let back = headers(Some(&t));
        assert_eq!(back.get("ce-id"), Some("1"));
        assert_eq!(back.get_all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert!(!back.contains(DELIVERY_COUNT) && !back.contains(SUBJECT));
    }

    #[test]
    fn headers_a_jetflow_header_cannot_carry_are_dropped() {
        let mut t = FieldTable::default();
        t.insert(
            "x-multi-line".into(),
            AMQPValue::LongString("a\r\nb".into()),
        );
        t.insert("x:colon".into(), AMQPValue::LongString("v".into()));
        t.insert("ce-id".into(), AMQPValue::LongString("42".into()));
        let back = headers(Some(&t));
        assert_eq!(back.iter().collect::<Vec<_>>(), [("ce-id", "42")]);
    }
}
