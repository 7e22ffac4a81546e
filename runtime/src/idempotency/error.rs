//! [`StoreError`]: what an idempotency store could not do.

use thiserror::Error;

/// What went wrong, so that the consume loop knows what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store cannot be reached (down, timed out, not answering): the
    /// handler's consumption pauses and the call is tried again.
    Unavailable,
    /// The claim was no longer ours when it was completed or released:
    /// its lease ran out and another replica claimed the event (the effect
    /// may have run twice; raise the handler's `ack_wait`, which is the
    /// lease).
    LeaseLost,
    /// The store holds a value jetflow cannot read under that key (written
    /// by something else).
    Corrupt,
    /// Completing failed and the claim was rolled back with the handler's
    /// own writes (a store that is atomic with the effect, such as
    /// Postgres): nothing happened, the delivery is retried.
    RolledBack,
}

/// An idempotency store could not claim, complete or release a key.
///
/// ```
/// use jetflow::idempotency::{StoreError, StoreErrorKind};
///
/// let e = StoreError::unavailable("nats-kv", "request timed out");
/// assert_eq!(e.kind(), StoreErrorKind::Unavailable);
/// assert!(e.to_string().contains("cannot be reached"));
/// ```
#[derive(Debug, Error)]
#[error("idempotency store {store}: {}: {message}", describe(*.kind))]
pub struct StoreError {
    store: &'static str,
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

fn describe(kind: StoreErrorKind) -> &'static str {
    match kind {
        StoreErrorKind::Unavailable => {
            "cannot be reached (the handler's consumption pauses until it is back)"
        }
        StoreErrorKind::LeaseLost => {
            "the claim's lease ran out and another replica claimed the event (raise the handler's \
             `ack_wait`, which is the lease)"
        }
        StoreErrorKind::Corrupt => "holds a value jetflow did not write under this key",
        StoreErrorKind::RolledBack => {
            "the commit failed: the claim and the handler's writes were rolled back (the delivery \
             is retried)"
        }
    }
}

impl StoreError {
    /// An error of `kind` in store `store` (`nats-kv`, `redis`, ...).
    pub fn new(store: &'static str, kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            store,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The store cannot be reached.
    pub fn unavailable(store: &'static str, message: impl Into<String>) -> Self {
        StoreError::new(store, StoreErrorKind::Unavailable, message)
    }

    /// Keeps `source` as the cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}
