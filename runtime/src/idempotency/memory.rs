//! [`MemoryStore`]: claims in a map of this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Claim, ClaimToken, IdempotencyStore, Key, StoreError, StoreErrorKind};
use crate::handler::BoxFuture;

/// An in-process idempotency store, for tests and the embedded broker
/// (`memory://`): claims live in a map, on tokio's clock (so a test with
/// paused time expires leases instantly). Clones share the map; replicas
/// in one process can share one store. Nothing survives the process.
///
/// [`set_available`](MemoryStore::set_available) simulates an outage, to
/// test how a handler's consumption pauses and resumes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use jetflow::idempotency::{Claim, IdempotencyStore, Key, MemoryStore};
///
/// let store = MemoryStore::new();
/// let key = Key::new("ledger", "evt-1");
/// let Ok(Claim::Claimed(token)) = store.claim(&key, Duration::from_secs(30)).await else { panic!() };
/// assert!(matches!(store.claim(&key, Duration::from_secs(30)).await, Ok(Claim::HeldElsewhere { .. })));
/// store.complete(&key, &token).await.unwrap();
/// assert_eq!(store.claim(&key, Duration::from_secs(30)).await.unwrap(), Claim::AlreadyDone);
/// assert!(store.is_done(&key));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Mutex<HashMap<Key, Entry>>,
    next_token: AtomicU64,
    unavailable: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Claimed { token: u64, until: Instant },
    Done,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// `false`: every call fails as [`StoreErrorKind::Unavailable`] (an
    /// outage) until it is set `true` again.
    pub fn set_available(&self, available: bool) {
        self.inner.unavailable.store(!available, Ordering::SeqCst);
    }

    /// `key` is marked done.
    pub fn is_done(&self, key: &Key) -> bool {
        matches!(self.entries().get(key), Some(Entry::Done))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_available(&self) -> Result<(), StoreError> {
        if self.inner.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "memory",
                "set unavailable by MemoryStore::set_available(false)",
            ));
        }
        Ok(())
    }

    fn claim_now(&self, key: &Key, lease: Duration) -> Result<Claim, StoreError> {
        self.check_available()?;
        let now = Instant::now();
        let mut entries = self.entries();
        match entries.get(key) {
            Some(Entry::Done) => return Ok(Claim::AlreadyDone),
            Some(Entry::Claimed { until, .. }) if *until > now => {
                return Ok(Claim::HeldElsewhere {
                    retry_after: *until - now,
                });
            }
            _ => {}
        }
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let until = now + lease;
        entries.insert(key.clone(), Entry::Claimed { token, until });
        Ok(Claim::Claimed(ClaimToken::new(token.to_string())))
    }

    /// Applies `f` to the entry of `key` if `token` still holds it.
    fn with_claim(&self, key: &Key, token: &ClaimToken, done: bool) -> Result<(), StoreError> {
        self.check_available()?;
        let mut entries = self.entries();
        match entries.get(key) {
            Some(Entry::Claimed { token: t, .. }) if t.to_string() == token.id() => {
                if done {
                    entries.insert(key.clone(), Entry::Done);
                } else {
                    entries.remove(key);
                }
                Ok(())
            }
            _ => Err(StoreError::new(
                "memory",
                StoreErrorKind::LeaseLost,
                format!("the claim of `{}` is no longer held", key.event_id),
            )),
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move { self.claim_now(key, lease) })
    }

    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.with_claim(key, token, true) })
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.with_claim(key, token, false) })
    }

    fn describe(&self) -> String {
        "memory (in-process)".to_owned()
    }
}
