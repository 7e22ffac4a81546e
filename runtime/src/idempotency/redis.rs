//! [`RedisStore`]: claims as Redis keys with a lease (feature `redis`).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{
    Claim, ClaimToken, DEFAULT_RETENTION, IdempotencyStore, Key, StoreError, StoreErrorKind,
};
use crate::handler::BoxFuture;

const STORE: &str = "redis";

/// How long one command may take before the store counts as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Claims `KEYS[1]` for owner `ARGV[1]` for `ARGV[2]` ms with `SET NX PX`;
/// else says what holds it. Returns `{1, 0}` claimed, `{2, 0}` done,
/// `{3, ms left}` held by a live claim.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, 0} end
local v = redis.call('GET', KEYS[1])
if v == 'done' then return {2, 0} end
if not v then return {3, 0} end
return {3, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Marks `KEYS[1]` done (`SET XX PX retention`) if owner `ARGV[1]` still
/// holds it. Returns 1, or 0 when the claim was lost.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'done', 'XX', 'PX', ARGV[2])
return 1
",
    )
});

/// Deletes `KEYS[1]` if owner `ARGV[1]` still holds it. Returns 1 or 0.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// An idempotency store in Redis (feature `redis`): one key per claim,
/// `jetflow:idem:{group}:{event id}`.
///
/// - **claim**: `SET key owner NX PX lease` (a Lua script that also reads
///   what holds the key when the `SET` fails); the lease is the handler's
///   `ack_wait`, so a claim of a worker that died runs out by itself.
/// - **complete**, after the handler's `Ok` and before the ack: `SET key
///   done XX PX retention` if the claim is still this worker's (7 days by
///   default).
/// - **release**, after a failure: `DEL key` if the claim is still this
///   worker's, so the retry can claim it at once.
///
/// **Not atomic with the handler's effect.** The window: a worker that
/// dies (or loses the store) *after the handler's effect and before
/// `complete`* leaves a claim that runs out after the lease; the broker
/// redelivers the message after `ack_wait` and the handler runs again, so
/// the effect happens twice. A worker that dies after `complete` and
/// before the ack is safe: the redelivery is skipped. A Redis that loses
/// keys (a failover to a replica that had not received the write, no
/// persistence and a restart) forgets done markers: those events would
/// run again if redelivered.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use jetflow::idempotency::RedisStore;
///
/// let store = RedisStore::new("redis://127.0.0.1:6379")?;
/// let app = jetflow::App::new("ledger").idempotency_store(store);
/// # drop(app);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    retention: Duration,
    conn: std::sync::Arc<OnceCell<ConnectionManager>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the URL may hold a password: not shown
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url` (`redis://[user:password@]host[:port][/db]`);
    /// connects on first use, and again after the server was lost.
    pub fn new(url: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::new(
                STORE,
                StoreErrorKind::Unavailable,
                "not a Redis URL (`redis://[user:password@]host[:port][/db]`)",
            )
            .with_source(e)
        })?;
        Ok(RedisStore {
            client,
            prefix: "jetflow:idem".to_owned(),
            retention: DEFAULT_RETENTION,
            conn: Default::default(),
        })
    }

    /// Keeps done markers for `retention` (default 7 days).
    pub fn retention(mut self, retention: Duration) -> RedisStore {
        self.retention = retention;
        self
    }

    /// Names keys `{prefix}:{group}:{event id}` (default `jetflow:idem`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisStore {
        self.prefix = prefix.into();
        self
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| unavailable("cannot connect", e))
            })
            .await
            .cloned()
    }

    fn key(&self, key: &Key) -> String {
        format!("{}:{}:{}", self.prefix, key.group, key.event_id)
    }

    async fn claim_now(&self, key: &Key, lease: Duration) -> Result<Claim, StoreError> {
        let owner = format!("c:{}", uuid::Uuid::now_v7());
        let (state, left): (u8, i64) = CLAIM
            .key(self.key(key))
            .arg(&owner)
            .arg(millis(lease).max(1))
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(|e| unavailable("cannot claim", e))?;
        Ok(match state {
            1 => Claim::Claimed(ClaimToken::new(owner)),
            2 => Claim::AlreadyDone,
            _ => Claim::HeldElsewhere {
                retry_after: Duration::from_millis(u64::try_from(left).unwrap_or(0).max(50)),
            },
        })
    }

    async fn owned(
        &self,
        script: &Script,
        key: &Key,
        token: &ClaimToken,
    ) -> Result<(), StoreError> {
        let mut invocation = script.key(self.key(key));
        invocation
            .arg(token.id())
            .arg(millis(self.retention).max(1));
        let held: u8 = invocation
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(|e| unavailable("cannot complete or release", e))?;
        if held == 1 {
            Ok(())
        } else {
            Err(StoreError::new(
                STORE,
                StoreErrorKind::LeaseLost,
                format!("the claim of `{}` ran out or was taken over", key.event_id),
            ))
        }
    }
}

impl IdempotencyStore for RedisStore {
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
        Box::pin(self.owned(&COMPLETE, key, token))
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.owned(&RELEASE, key, token))
    }

    fn describe(&self) -> String {
        format!("redis keys {}:*", self.prefix)
    }
}

fn unavailable(what: &str, e: redis::RedisError) -> StoreError {
    StoreError::unavailable(STORE, format!("{what}: {e}")).with_source(e)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
