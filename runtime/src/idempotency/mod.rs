//! Exactly-once effects for handlers that ask for it: an idempotency store
//! that jetflow claims `(group, event id)` in before a handler runs.
//!
//! JetStream delivers at least once: a lost ack, a crash between a
//! handler's effect and its ack, a replica racing a redelivery or a
//! producer retrying outside the stream's dedup window all run a handler
//! twice. A handler declared `idempotent` is guarded by jetflow:
//!
//! ```
//! use jetflow::prelude::*;
//! use jetflow::idempotency::MemoryStore;
//!
//! #[event(version = "v1")]
//! pub struct PaymentCaptured { pub payment_id: String, pub cents: u64 }
//!
//! #[handler(group = "ledger", idempotent)]
//! async fn book(payment: PaymentCaptured) -> Result<(), HandlerError> {
//!     // runs once per event id, whatever the broker redelivers
//!     Ok(())
//! }
//!
//! let app = App::new("ledger")
//!     .idempotency_store(MemoryStore::new()) // or NatsKvStore, RedisStore
//!     .handler(book);
//! # drop(app);
//! ```
//!
//! # What happens to each delivery
//!
//! Before the handler runs (after the payload decoded), jetflow calls
//! [`IdempotencyStore::claim`] with the handler's group, the event id and
//! a lease of the handler's ack wait:
//!
//! | claim | what jetflow does |
//! |---|---|
//! | [`Claim::Claimed`] | runs the handler; `Ok` -> [`complete`](IdempotencyStore::complete), then ack; an error -> [`release`](IdempotencyStore::release), then retry or dead-letter as usual |
//! | [`Claim::AlreadyDone`] | acks without calling the handler; counted in [`HandlerStats::idempotent_skipped`](crate::HandlerStats::idempotent_skipped) and `jetflow_handler_idempotent_skipped_total` |
//! | [`Claim::HeldElsewhere`] | another replica holds a live claim: gives the delivery back with the claim's remaining lease as delay (it is not run twice) |
//! | the store cannot be reached | the handler's consumption **pauses**: no more credits are granted (nothing is pulled), the deliveries waiting for the store are held with progress signals (no delivery is spent, nothing reaches `max_deliver` or the DLQ), the loop's state is [`LoopState::Paused`](crate::LoopState::Paused) (so `/readyz` is not ready), and the claim is tried again with a capped backoff until the store is back; then consumption resumes by itself |
//!
//! A completion that cannot reach the store is retried the same way
//! (paused) before the ack, so a done event is never acked unmarked. A
//! claim whose lease ran out before completion (the handler ran longer
//! than the lease and another replica claimed the event) is logged as a
//! warning: the effect may have run twice.
//!
//! # Event id
//!
//! The `ce-id` header, which jetflow publishers set (a UUIDv7, or derived
//! from `#[event(id = field)]`, so a producer retry outside the dedup
//! window has the same id). For a foreign producer without it:
//! `Nats-Msg-Id` when present (a producer's own dedup id), else
//! `{stream}:{stream sequence}` — stable across redeliveries of one stored
//! message, but two publishes of the same business event are two ids: give
//! such producers a `ce-id`. See [`event_id`].
//!
//! # Stores
//!
//! | store | claim | atomic with the handler's effect | remaining window |
//! |---|---|---|---|
//! | [`MemoryStore`] | a map in the process | no | everything is lost with the process: for tests and the embedded broker |
//! | [`NatsKvStore`] | JetStream KV `create` / `update` with the expected revision | no | a crash after the effect and before `complete`: the lease runs out and a redelivery runs the handler again |
//! | `RedisStore` (feature `redis`) | `SET key owner NX PX lease` | no | as NATS KV |
//!
//! Done markers are kept for a retention period (7 days by default), after
//! which a redelivery of the same event id would run again.

mod error;
mod memory;
mod nats_kv;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
mod redis;

pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryStore;
pub use nats_kv::{DEFAULT_BUCKET, NatsKvStore};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{MIGRATIONS, PostgresStore, Tx};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::handler::BoxFuture;
use crate::transport::{DeliveryInfo, Headers};

/// How long done markers are kept by default: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What one claim is about: a consumer group and an event id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The handler's consumer group.
    pub group: String,
    /// The event id (see [`event_id`]).
    pub event_id: String,
}

impl Key {
    /// The key of `event_id` for `group`.
    pub fn new(group: impl Into<String>, event_id: impl Into<String>) -> Key {
        Key {
            group: group.into(),
            event_id: event_id.into(),
        }
    }
}

/// Proof of a claim: what the store needs to complete or release it (a
/// revision, an owner value, an open transaction). Opaque to jetflow,
/// which hands it to the handler's extractors through its
/// [`Context`](crate::Context) while the handler runs.
///
/// ```
/// use jetflow::idempotency::ClaimToken;
///
/// let token = ClaimToken::new("42");
/// assert_eq!(token.id(), "42");
/// assert!(token.attachment::<String>().is_none());
/// let token = ClaimToken::with_attachment("43", String::from("extra"));
/// assert_eq!(token.attachment::<String>().as_deref().map(String::as_str), Some("extra"));
/// ```
#[derive(Clone)]
pub struct ClaimToken {
    id: String,
    attachment: Option<Arc<dyn Any + Send + Sync>>,
}

impl ClaimToken {
    /// A token that is just `id`.
    pub fn new(id: impl Into<String>) -> ClaimToken {
        ClaimToken {
            id: id.into(),
            attachment: None,
        }
    }

    /// A token carrying `value` too (a store's live claim state).
    pub fn with_attachment<T: Any + Send + Sync>(id: impl Into<String>, value: T) -> ClaimToken {
        ClaimToken {
            id: id.into(),
            attachment: Some(Arc::new(value)),
        }
    }

    /// The claim's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The attached value, if it is a `T`.
    pub fn attachment<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.attachment.clone()?.downcast::<T>().ok()
    }
}

impl std::fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimToken")
            .field("id", &self.id)
            .field("attachment", &self.attachment.is_some())
            .finish()
    }
}

impl PartialEq for ClaimToken {
    fn eq(&self, other: &ClaimToken) -> bool {
        self.id == other.id
    }
}

impl Eq for ClaimToken {}

/// The answer to [`IdempotencyStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the event until it completes or releases it, or the
    /// lease runs out.
    Claimed(ClaimToken),
    /// The event was handled: ack it without calling the handler.
    AlreadyDone,
    /// Another replica holds a live claim on it.
    HeldElsewhere {
        /// When its lease runs out, at the latest.
        retry_after: Duration,
    },
}

/// Where idempotent handlers record which events they handled.
///
/// Implementations must make [`claim`](IdempotencyStore::claim) atomic:
/// of two concurrent claims of one key, at most one gets
/// [`Claim::Claimed`] while the lease lasts. Return
/// [`StoreErrorKind::Unavailable`] when the store cannot be reached: the
/// handler's consumption then pauses and the call is tried again.
pub trait IdempotencyStore: std::fmt::Debug + Send + Sync + 'static {
    /// Claims `key` for `lease`, unless it is done or held by a live claim.
    fn claim<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Marks `key`, claimed with `token`, done (kept for the store's
    /// retention).
    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Gives up the claim of `key` made with `token` (the handler failed),
    /// so that the next delivery can claim it at once.
    fn release<'a>(
        &'a self,
        key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// What the store is, for logs: `nats-kv bucket jetflow_idempotency`.
    fn describe(&self) -> String;
}

/// The event id of a delivery, for claims: `ce-id`, else `Nats-Msg-Id`,
/// else `{stream}:{stream sequence}` (a foreign producer; stable across
/// redeliveries of that stored message).
///
/// ```
/// use jetflow::Headers;
/// use jetflow::idempotency::event_id;
/// use jetflow::transport::DeliveryInfo;
///
/// let info = DeliveryInfo::new("ORDER".into(), "inventory".into(), 42, 1, time::OffsetDateTime::UNIX_EPOCH);
/// let mut headers = Headers::new();
/// assert_eq!(event_id(&headers, &info), "ORDER:42");
/// headers.insert("ce-id", "0190b2d4-...");
/// assert_eq!(event_id(&headers, &info), "0190b2d4-...");
/// ```
pub fn event_id(headers: &Headers, info: &DeliveryInfo) -> String {
    crate::publish::received_id(headers).map_or_else(
        || format!("{}:{}", info.stream, info.stream_sequence),
        str::to_owned,
    )
}
