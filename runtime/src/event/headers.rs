//! Header names of jetflow's wire contract (CloudEvents binary mode).

/// CloudEvents spec version, always `1.0`.
pub const SPEC_VERSION: &str = "ce-specversion";
/// Event id (UUIDv7, or derived from the event's business key).
pub const ID: &str = "ce-id";
/// Event type: the subject, `{name}.{version}`.
pub const TYPE: &str = "ce-type";
/// The publishing service's name.
pub const SOURCE: &str = "ce-source";
/// RFC 3339 publish time.
pub const TIME: &str = "ce-time";
/// Payload encoding, `application/json`.
pub const CONTENT_TYPE: &str = "content-type";
/// Id of the first event of a chain of events.
pub const CORRELATION_ID: &str = "ce-correlationid";
/// Id of the event whose handler published this one.
pub const CAUSATION_ID: &str = "ce-causationid";
/// NATS server-side deduplication id (= `ce-id`); owned by jetflow.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
