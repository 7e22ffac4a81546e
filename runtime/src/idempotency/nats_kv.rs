//! [`NatsKvStore`]: claims in a JetStream key-value bucket.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::{
    Claim, ClaimToken, DEFAULT_RETENTION, IdempotencyStore, Key, StoreError, StoreErrorKind,
};
use crate::handler::BoxFuture;

const STORE: &str = "nats-kv";

/// The bucket's name unless told otherwise.
pub const DEFAULT_BUCKET: &str = "jetflow_idempotency";

/// How long one request to the bucket may take before the store counts as
/// unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// An idempotency store in a JetStream key-value bucket: no extra service
/// where NATS runs already. The bucket (`jetflow_idempotency` by default,
/// one value per key, entries kept for the retention, 7 days by default)
/// is created on first use if it is absent.
///
/// - **claim**: `create` of `{group}.{event id}` with a lease deadline in
///   the value (fails if the key exists); an existing claim whose
///   deadline passed is taken over with `update` at the revision read, so
///   of two replicas racing for it one wins.
/// - **complete**: `update` to `done` at the claim's revision (a claim
///   that was taken over in between is reported as
///   [`StoreErrorKind::LeaseLost`]).
/// - **release**: delete at the claim's revision.
///
/// Not atomic with the handler's effect: a worker that dies after the
/// effect and before `complete` leaves a claim whose lease runs out; the
/// redelivery then runs the handler again. Lease deadlines are the
/// claiming host's wall clock: keep replicas' clocks in sync (NTP) well
/// within the lease (the handler's `ack_wait`).
///
/// The store may live on a NATS server other than the app's broker; a
/// server that cannot be reached pauses the idempotent handlers (see
/// [`crate::idempotency`]), and the client reconnects by itself.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use jetflow::idempotency::NatsKvStore;
///
/// let store = NatsKvStore::connect("nats://127.0.0.1:4222").await?;
/// let app = jetflow::App::new("ledger").idempotency_store(store);
/// # drop(app);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NatsKvStore {
    js: jetstream::Context,
    bucket_name: String,
    retention: Duration,
    bucket: std::sync::Arc<OnceCell<kv::Store>>,
}

/// What one key holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Value {
    /// Claimed until `until_ms` (Unix milliseconds).
    Claimed {
        until_ms: u64,
    },
    Done,
}

impl NatsKvStore {
    /// Connects to the NATS server at `url` (retrying in the background
    /// until it answers) and uses the default bucket.
    pub async fn connect(url: &str) -> Result<NatsKvStore, StoreError> {
        let client = async_nats::ConnectOptions::new()
            .name("jetflow idempotency store")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| {
                StoreError::new(
                    STORE,
                    StoreErrorKind::Unavailable,
                    format!("cannot connect to {url}"),
                )
                .with_source(e)
            })?;
        Ok(NatsKvStore::new(client))
    }

    /// Uses the default bucket through `client`.
    pub fn new(client: async_nats::Client) -> NatsKvStore {
        let mut js = jetstream::new(client);
        js.set_timeout(REQUEST_TIMEOUT);
        NatsKvStore {
            js,
            bucket_name: DEFAULT_BUCKET.to_owned(),
            retention: DEFAULT_RETENTION,
            bucket: Default::default(),
        }
    }

    /// Uses bucket `name` (letters, digits, `_`, `-`).
    pub fn bucket(mut self, name: impl Into<String>) -> NatsKvStore {
        self.bucket_name = name.into();
        self
    }

    /// Keeps done markers for `retention` (the bucket's max age, set when
    /// jetflow creates it).
    pub fn retention(mut self, retention: Duration) -> NatsKvStore {
        self.retention = retention;
        self
    }

    /// The bucket, created if absent.
    async fn store(&self) -> Result<&kv::Store, StoreError> {
        self.bucket
            .get_or_try_init(|| async {
                let version = self.js.client().server_info().version;
                if crate::transport::nats::older_than_2_10(&version) {
                    return Err(StoreError::unavailable(
                        STORE,
                        format!(
                            "the NATS KV store needs nats-server 2.10 or newer, and this one is \
                             {version} (its replies to the KV requests of async-nats cannot be \
                             read): upgrade the server, or use the Redis or Postgres store"
                        ),
                    ));
                }
                match self.js.get_key_value(&self.bucket_name).await {
                    Ok(store) => Ok(store),
                    Err(get) => {
                        let config = kv::Config {
                            bucket: self.bucket_name.clone(),
                            description: "jetflow: claims of idempotent handlers".into(),
                            history: 1,
                            max_age: self.retention,
                            storage: jetstream::stream::StorageType::File,
                            ..Default::default()
                        };
                        self.js.create_key_value(config).await.map_err(|e| {
                            unavailable(
                                format!(
                                    "cannot open bucket `{}` ({get}) nor create it ({e})",
                                    self.bucket_name
                                ),
                                e,
                            )
                        })
                    }
                }
            })
            .await
    }

    async fn claim_now(&self, key: &Key, lease: Duration) -> Result<Claim, StoreError> {
        let store = self.store().await?;
        let name = kv_key(key);
        let claimed = encode(&Value::Claimed {
            until_ms: now_ms().saturating_add(millis(lease)),
        });
        let created = store.create(&name, claimed.clone()).await;
        if let Ok(revision) = created {
            return Ok(Claim::Claimed(ClaimToken::new(revision.to_string())));
        }
        // It exists, or the store failed: read what is there.
        let entry = store
            .entry(&name)
            .await
            .map_err(|e| unavailable(format!("cannot read `{name}`"), e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return match created {
                // released or expired meanwhile: claim it at the next try
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    Ok(Claim::HeldElsewhere {
                        retry_after: Duration::from_millis(100),
                    })
                }
                Err(e) => Err(unavailable(format!("cannot create `{name}`"), e)),
                Ok(_) => unreachable!("handled above"),
            };
        };
        match decode(&name, &entry.value)? {
            Value::Done => Ok(Claim::AlreadyDone),
            Value::Claimed { until_ms } if until_ms > now_ms() => Ok(Claim::HeldElsewhere {
                retry_after: Duration::from_millis(until_ms - now_ms()),
            }),
            Value::Claimed { .. } => {
                // its lease ran out: take it over, unless another replica does first
                match store.update(&name, claimed, entry.revision).await {
                    Ok(revision) => Ok(Claim::Claimed(ClaimToken::new(revision.to_string()))),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        Ok(Claim::HeldElsewhere {
                            retry_after: Duration::from_millis(100),
                        })
                    }
                    Err(e) => Err(unavailable(format!("cannot take over `{name}`"), e)),
                }
            }
        }
    }

    async fn complete_now(&self, key: &Key, token: &ClaimToken) -> Result<(), StoreError> {
        let store = self.store().await?;
        let name = kv_key(key);
        match store
            .update(&name, encode(&Value::Done), revision(token)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(StoreError::new(
                STORE,
                StoreErrorKind::LeaseLost,
                format!("`{name}` changed since it was claimed"),
            )),
            Err(e) => Err(unavailable(format!("cannot mark `{name}` done"), e)),
        }
    }

    async fn release_now(&self, key: &Key, token: &ClaimToken) -> Result<(), StoreError> {
        let store = self.store().await?;
        let name = kv_key(key);
        store
            .delete_expect_revision(&name, Some(revision(token)?))
            .await
            .map_err(|e| match e.kind() {
                kv::DeleteErrorKind::WrongLastRevision => StoreError::new(
                    STORE,
                    StoreErrorKind::LeaseLost,
                    format!("`{name}` changed since it was claimed"),
                ),
                _ => unavailable(format!("cannot release `{name}`"), e),
            })
    }
}

impl IdempotencyStore for NatsKvStore {
    fn claim<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(self.claim_now(key, lease))
    }

    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.complete_now(key, token))
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.release_now(key, token))
    }

    fn describe(&self) -> String {
        format!("nats-kv bucket {}", self.bucket_name)
    }
}

/// `{group}.i{id}` when the id is made of key-safe characters, else
/// `{group}.x{hex of the id}` (KV keys allow `[-/_=.a-zA-Z0-9]`; `.` and
/// `/` are kept out so that an id cannot make two keys alike).
fn kv_key(key: &Key) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=');
    if key.event_id.chars().all(safe) {
        format!("{}.i{}", key.group, key.event_id)
    } else {
        let hex: String = key.event_id.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{}.x{hex}", key.group)
    }
}

fn encode(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn decode(name: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StoreError::new(
            STORE,
            StoreErrorKind::Corrupt,
            format!(
                "`{name}` holds a value jetflow did not write; delete it or use another bucket"
            ),
        )
        .with_source(e)
    })
}

fn revision(token: &ClaimToken) -> Result<u64, StoreError> {
    token.id().parse().map_err(|_| {
        StoreError::new(
            STORE,
            StoreErrorKind::Corrupt,
            format!("claim token `{}` is not a KV revision", token.id()),
        )
    })
}

fn unavailable(message: String, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable(STORE, message).with_source(e)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kv_safe_and_distinct() {
        assert_eq!(kv_key(&Key::new("inv", "0190-ab_C=")), "inv.i0190-ab_C=");
        assert_eq!(
            kv_key(&Key::new("inv", "ORDER:42")),
            "inv.x4f524445523a3432"
        );
        assert_ne!(kv_key(&Key::new("g", "a.b")), kv_key(&Key::new("g", "a/b")));
    }

    #[test]
    fn values_round_trip() {
        let v = encode(&Value::Claimed { until_ms: 5 });
        assert_eq!(&v[..], br#"{"state":"claimed","until_ms":5}"#);
        assert!(matches!(
            decode("k", &v),
            Ok(Value::Claimed { until_ms: 5 })
        ));
        assert!(matches!(
            decode("k", br#"{"state":"done"}"#),
            Ok(Value::Done)
        ));
        assert_eq!(
            decode("k", b"x").err().map(|e| e.kind()),
            Some(StoreErrorKind::Corrupt)
        );
    }
}
