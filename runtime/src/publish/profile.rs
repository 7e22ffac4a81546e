//! [`WireProfile`]: which headers an event carries, and the one function
//! that writes them.

use time::format_description::well_known::Rfc3339;

use crate::event::{Event, headers};
use crate::transport::Headers;

/// Which headers each published event carries (the README's "Wire
/// contract" has the whole mapping). Set for an app with
/// [`App::wire_profile`](crate::App::wire_profile); it changes what is
/// published, never what can be consumed: a consumer reads both profiles,
/// whichever it publishes with.
///
/// ```
/// use jetflow::WireProfile;
///
/// assert_eq!(WireProfile::default(), WireProfile::CloudEvents);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireProfile {
    /// CloudEvents binary mode, the default: `ce-specversion`, `ce-id`,
    /// `ce-type`, `ce-source`, `ce-time` and `content-type` on every event
    /// (plus `ce-correlationid` and `ce-causationid` when published from a
    /// handler), so that consumers in other languages (FastStream,
    /// nats-py, Go) read the attributes from the headers.
    #[default]
    CloudEvents,
    /// Only what the consumer cannot derive: the event id in the
    /// transport's own id field (`Nats-Msg-Id` on JetStream and the
    /// embedded broker, the record header `jetflow-id` on Kafka, the
    /// AMQP `message-id` on RabbitMQ, the entry field `i` on Redis),
    /// `ce-correlationid` and `ce-causationid` when published from a
    /// handler, and `traceparent` with the `otel` feature. A jetflow
    /// consumer derives the rest: the type is the subject, the time is the
    /// broker's, the payload is JSON. Not sent: `ce-source`. Fewer
    /// headers cost every consumer less to parse (BENCHMARKS.md).
    Lean,
}

impl WireProfile {
    /// The profile's name: `cloudevents` or `lean`.
    pub fn name(self) -> &'static str {
        match self {
            WireProfile::CloudEvents => "cloudevents",
            WireProfile::Lean => "lean",
        }
    }
}

impl std::str::FromStr for WireProfile {
    type Err = String;

    /// `cloudevents` or `lean` (any case).
    fn from_str(s: &str) -> Result<WireProfile, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cloudevents" => Ok(WireProfile::CloudEvents),
            "lean" => Ok(WireProfile::Lean),
            other => Err(format!(
                "`{other}` is no wire profile: write `cloudevents` (the default) or `lean`"
            )),
        }
    }
}

/// The headers of one event published under `profile`.
pub(crate) fn event_headers<E: Event>(
    profile: WireProfile,
    source: &str,
    id: &str,
    correlation: Option<&str>,
    causation: Option<&str>,
) -> Headers {
    let mut h = Headers::with_capacity(8);
    if profile == WireProfile::CloudEvents {
        h.append(headers::SPEC_VERSION, "1.0");
        h.append(headers::ID, id);
        h.append(headers::TYPE, E::SUBJECT);
        h.append(headers::SOURCE, source);
        if let Ok(t) = time::OffsetDateTime::now_utc().format(&Rfc3339) {
            h.append(headers::TIME, t);
        }
        h.append(headers::CONTENT_TYPE, "application/json");
    }
    if let Some(c) = correlation {
        h.append(headers::CORRELATION_ID, c);
    }
    if let Some(c) = causation {
        h.append(headers::CAUSATION_ID, c);
    }
    h
}

/// The event id of a received message's `headers`: `ce-id`, else
/// `Nats-Msg-Id` (a message published with [`WireProfile::Lean`] on
/// JetStream; the other transports put their own id field into `ce-id`
/// when a message has none).
pub(crate) fn received_id(h: &Headers) -> Option<&str> {
    h.get(headers::ID)
        .or_else(|| h.get(headers::NATS_MSG_ID))
        .filter(|id| !id.is_empty())
}
