//! How a jetflow message sits in a Kafka record: the subject and the id in
//! headers beside jetflow's own, the partition key, and the sequence number
//! that names a record (partition and offset) in one `u64`.

use rdkafka::message::{BorrowedHeaders, Header, Headers as _, OwnedHeaders};

use crate::transport::Headers;

/// The subject a record was published on.
pub(super) const SUBJECT: &str = "jetflow-subject";
/// The message id (the event id).
pub(super) const ID: &str = "jetflow-id";

/// Bits of a sequence number that hold the offset; the partition is above.
const OFFSET_BITS: u32 = 40;

/// The partition key of a message id: the business key of an
/// `#[event(id = ...)]` event (the id is `{subject}:{key}`, and subjects
/// hold no `:`), so every version of one entity's events shares a
/// partition. `None` for a keyless event (its id is a UUID): it goes to
/// partition 0.
pub(super) fn partition_key(id: &str) -> Option<&str> {
    id.split_once(':').map(|(_, key)| key)
}

/// The sequence number of the record at `offset` in `partition`: the
/// offset plus one, with the partition in the bits above the 40 of the
/// offset (on a one-partition topic, it is the offset plus one).
pub(super) fn sequence(partition: i32, offset: i64) -> u64 {
    let partition = u64::try_from(partition).unwrap_or(0);
    let offset = u64::try_from(offset).unwrap_or(0) + 1;
    (partition << OFFSET_BITS) | (offset & ((1 << OFFSET_BITS) - 1))
}

/// The partition and offset a [`sequence`] names.
#[cfg(test)]
pub(super) fn position(sequence: u64) -> (i32, i64) {
    let partition = i32::try_from(sequence >> OFFSET_BITS).unwrap_or(i32::MAX);
    let offset = i64::try_from(sequence & ((1 << OFFSET_BITS) - 1)).unwrap_or(0) - 1;
    (partition, offset)
}

/// The record headers of a message: jetflow's, then its subject and id.
pub(super) fn encode(headers: &Headers, subject: &str, id: &str) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.len() + 2);
    for (name, value) in headers.iter() {
        out = out.insert(Header {
            key: name,
            value: Some(value),
        });
    }
    out.insert(Header {
        key: SUBJECT,
        value: Some(subject),
    })
    .insert(Header {
        key: ID,
        value: Some(id),
    })
}

/// The subject and jetflow's headers of a record (`None` for a record
/// without a subject: not published by jetflow). Headers that a jetflow
/// header cannot carry (a value that is not UTF-8 or holds CR or LF, a name
/// with `:`) are dropped.
pub(super) fn decode(headers: Option<&BorrowedHeaders>) -> Option<(String, Headers)> {
    let headers = headers?;
    let (mut subject, mut id) = (None, None);
    let mut out = Headers::with_capacity(headers.count());
    for h in headers.iter() {
        let Some(Ok(value)) = h.value.map(std::str::from_utf8) else {
            continue;
        };
        match h.key {
            SUBJECT => subject = Some(value.to_owned()),
            ID => id = Some(value),
            // a foreign producer's header that a jetflow header cannot
            // carry is dropped, as a value that is not UTF-8 is
            name => {
                let _ = out.try_push_received(name, value);
            }
        }
    }
    out.fill_event_id(id);
    Some((subject?, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sequences() {
        assert_eq!(partition_key("order.created.v1:42"), Some("42"));
        assert_eq!(partition_key("order.created.v2:42"), Some("42"));
        assert_eq!(partition_key("a:b:c"), Some("b:c"));
        assert_eq!(partition_key("0190-uuid"), None);
        assert_eq!(sequence(0, 0), 1);
        assert_eq!(position(sequence(0, 0)), (0, 0));
        assert_eq!(position(sequence(7, 123_456)), (7, 123_456));
        assert!(sequence(1, 0) > sequence(0, 1 << 30));
    }

    #[test]
    fn headers_round_trip() {
        let mut h = Headers::new();
        h.insert("ce-id", "x");
        h.append("tag", "a");
        h.append("tag", "b");
        let encoded = encode(&h, "order.created.v1", "id-1");
        let borrowed = encoded.as_borrowed();
        let (subject, back) = decode(Some(borrowed)).expect("jetflow record");
        assert_eq!(subject, "order.created.v1");
        assert_eq!(back.get("ce-id"), Some("x"));
        assert_eq!(back.get_all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert!(!back.contains(ID));
        // a lean message: the record's id becomes `ce-id`
        let lean = encode(&Headers::new(), "order.created.v1", "id-1");
        let (_, back) = decode(Some(lean.as_borrowed())).expect("jetflow record");
        assert_eq!(back.iter().collect::<Vec<_>>(), [("ce-id", "id-1")]);
    }

    #[test]
    fn headers_a_jetflow_header_cannot_carry_are_dropped() {
        let foreign = OwnedHeaders::new()
            .insert(Header {
                key: SUBJECT,
                value: Some("order.created.v1"),
            })
            .insert(Header {
                key: "x-multi-line",
                value: Some("a\r\nb"),
            })
            .insert(Header {
                key: "x:colon",
                value: Some("v"),
            })
            .insert(Header {
                key: "x-binary",
                value: Some(&[0xff_u8, 0xfe][..]),
            })
            .insert(Header {
                key: "ce-id",
                value: Some("42"),
            });
        let (subject, back) = decode(Some(foreign.as_borrowed())).expect("has a subject");
        assert_eq!(subject, "order.created.v1");
        assert_eq!(back.iter().collect::<Vec<_>>(), [("ce-id", "42")]);
    }
}
