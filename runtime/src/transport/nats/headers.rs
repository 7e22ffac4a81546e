//! jetflow's [`Headers`] to and from async-nats' `HeaderMap`.

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};

use crate::transport::Headers;

/// The header JetStream deduplicates on; jetflow sets it to the message id.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";

/// The wire headers of a message with jetflow's `headers` and, when given,
/// `Nats-Msg-Id = id`.
pub(super) fn to_nats(headers: Headers, id: Option<String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers.into_pairs() {
        // `Headers` only holds names and values valid on the wire.
        let name = match name {
            std::borrow::Cow::Borrowed(n) => HeaderName::from_static(n),
            std::borrow::Cow::Owned(n) => match HeaderName::try_from(n) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        map.append(name, HeaderValue::from(value));
    }
    if let Some(id) = id {
        map.insert(HeaderName::from_static(MSG_ID), HeaderValue::from(id));
    }
    map
}

/// jetflow's headers of a received message.
pub(super) fn from_nats(map: Option<&HeaderMap>) -> Headers {
    let Some(map) = map else {
        return Headers::new();
    };
    let mut headers = Headers::with_capacity(map.len());
    for (name, values) in map.iter() {
        for value in values {
            headers.push_received(name.as_ref(), value.as_str());
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut h = Headers::new();
        h.insert("ce-id", "1");
        h.append("x-multi", "a");
        h.append("x-multi", "b");
        let map = to_nats(h.clone(), Some("1".into()));
        assert_eq!(map.get(MSG_ID).map(|v| v.as_str()), Some("1"));
        let back = from_nats(Some(&map));
        assert_eq!(back.get("ce-id"), Some("1"));
        assert_eq!(back.get_all("x-multi").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(back.get(MSG_ID), Some("1"));
    }
}
