//! Stream entries: what a message looks like in Redis, and reading one back.
//!
//! An entry has the fields `s` (subject), `h` (headers: a JSON array of
//! `[name, value]` pairs), `p` (payload, bytes as published), `q`
//! (jetflow's sequence in the stream) and `i` (the message id). Its Redis
//! id's milliseconds are the publish time.

use bytes::Bytes;
use redis::Value;
use time::OffsetDateTime;

use crate::transport::Headers;

/// One entry, read back.
#[derive(Debug)]
pub(super) struct Entry {
    /// The Redis entry id, `1700000000000-0`.
    pub(super) id: String,
    pub(super) subject: String,
    pub(super) headers: Headers,
    pub(super) payload: Bytes,
    pub(super) sequence: u64,
}

impl Entry {
    /// When it was added: the milliseconds of its id.
    pub(super) fn published(&self) -> OffsetDateTime {
        let ms = self
            .id
            .split('-')
            .next()
            .and_then(|ms| ms.parse::<i128>().ok())
            .unwrap_or(0);
        OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// An entry from its id and field list (`[name, value, name, value ...]`);
    /// `None` when it is not one jetflow wrote.
    pub(super) fn parse(id: &Value, fields: &Value) -> Option<Entry> {
        let id = text(id)?;
        let Value::Array(fields) = fields else {
            return None;
        };
        let (mut subject, mut headers, mut payload, mut sequence) = (None, None, None, None);
        let mut message_id = None;
        for pair in fields.chunks(2) {
            let [name, value] = pair else { break };
            match bytes(name)? {
                b"s" => subject = text(value),
                b"h" => headers = Some(decode_headers(bytes(value)?)),
                b"p" => payload = Some(Bytes::copy_from_slice(bytes(value)?)),
                b"q" => sequence = text(value).and_then(|q| q.parse().ok()),
                b"i" => message_id = text(value),
                _ => {}
            }
        }
        let mut headers: Headers = headers.unwrap_or_default();
        headers.fill_event_id(message_id.as_deref());
        Some(Entry {
            id,
            subject: subject?,
            headers,
            payload: payload.unwrap_or_default(),
            sequence: sequence?,
        })
    }
}

/// The headers as stored: a JSON array of `[name, value]` pairs.
pub(super) fn encode_headers(headers: &Headers) -> String {
    let pairs: Vec<[&str; 2]> = headers.iter().map(|(n, v)| [n, v]).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

/// Headers read back; a pair that is not a valid header (a foreign writer)
/// is dropped with a warning.
fn decode_headers(raw: &[u8]) -> Headers {
    let pairs: Vec<(String, String)> = serde_json::from_slice(raw).unwrap_or_default();
    let mut headers = Headers::with_capacity(pairs.len());
    for (name, value) in pairs {
        if let Err(e) = headers.try_append(name, value) {
            tracing::warn!(error = %e, "dropping a header of a Redis stream entry");
        }
    }
    headers
}

pub(super) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        other => bytes(other).and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned)),
    }
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// The items of an array reply (`Nil`: none).
pub(super) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_back_what_it_writes() {
        let mut h = Headers::new();
        h.insert("ce-id", "x-1");
        h.append("x-multi", "a");
        h.append("x-multi", "b");
        let fields = Value::Array(vec![
            bulk("s"),
            bulk("order.created.v1"),
            bulk("h"),
            bulk(&encode_headers(&h)),
            bulk("p"),
            bulk("{}"),
            bulk("q"),
            bulk("7"),
            bulk("i"),
            bulk("x-1"),
        ]);
        let e = Entry::parse(&bulk("1700000000123-0"), &fields).expect("an entry");
        assert_eq!((e.subject.as_str(), e.sequence), ("order.created.v1", 7));
        assert_eq!(e.headers, h);
        assert_eq!(&e.payload[..], b"{}");
        assert_eq!(e.published().unix_timestamp(), 1_700_000_000);
    }

    #[test]
    fn foreign_headers_are_checked() {
        let h = decode_headers(br#"[["ok","1"],["bad name","2"],["x","line\r\nbreak"]]"#);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("ok"), Some("1"));
    }
}
