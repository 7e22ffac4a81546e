//! [`PostgresStore`]: the claim is a row inserted in the handler's own
//! transaction (feature `postgres`).

pub(crate) mod schema;
mod tx;

pub use schema::MIGRATIONS;
pub use tx::Tx;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Mutex, OnceCell};

use self::tx::TxSlot;
use super::{
    Claim, ClaimToken, DEFAULT_RETENTION, IdempotencyStore, Key, StoreError, StoreErrorKind,
};
use crate::handler::BoxFuture;

const STORE: &str = "postgres";

/// How long getting a connection may take before the store counts as
/// unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often done claims older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// An idempotency store in PostgreSQL whose claim commits **atomically
/// with the handler's own writes**: zero duplicate effects, even across
/// `kill -9` and concurrent replicas.
///
/// For each delivery jetflow opens a transaction with the claim in it:
/// `INSERT INTO jetflow_inbox (consumer_group, event_id) VALUES (...);
/// BEGIN`, one statement round trip. Inserted: the handler runs, and takes
/// the transaction with the [`Tx`] extractor to write its rows; `Ok`
/// commits (claim and rows together), then acks; an error or a panic rolls
/// both back, then the delivery is retried. A unique violation instead:
/// the event was committed before, and the delivery is acked without
/// calling the handler (the server logs that error; it happens once per
/// duplicate delivery). A replica racing on the same event id waits on the
/// unique key until the first transaction ends, then inserts (the first
/// rolled back) or skips (it committed). A worker killed mid-handler
/// leaves nothing: its transaction dies with its connection.
///
/// The remaining window is the ack: a commit whose ack is lost is
/// redelivered and skipped. A commit whose outcome is unknown (the
/// connection broke during `COMMIT`) is retried; the retry skips it if it
/// had committed.
///
/// Schema: [`MIGRATIONS`], applied on first use and recorded in
/// `jetflow_schema` (or apply them yourself); the claim table is
/// `jetflow_inbox`. Rows older than the retention (7 days by default) are
/// deleted every hour; a redelivery older than that would run again.
/// Cost per message: the claim `INSERT`, sent with the `BEGIN` the
/// handler's own writes need anyway (no extra round trip), and its row in
/// the table and its two indexes; plus the connection held for the call
/// (size the pool to the idempotent handlers' total concurrency).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use jetflow::idempotency::PostgresStore;
///
/// let store = PostgresStore::new("postgres://app@127.0.0.1/app")?;
/// let app = jetflow::App::new("ledger").idempotency_store(store);
/// # drop(app);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    retention: Duration,
    migrated: Arc<OnceCell<()>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the URL may hold a password: not shown
        f.debug_struct("PostgresStore")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store at `url` (`postgres://user[:password]@host[:port]/db`);
    /// connects on first use and migrates then. At most 32 connections:
    /// one per handler call under way, so idempotent handlers whose
    /// concurrencies add up to more wait for a connection: give those a
    /// pool of that size with [`with_pool`](PostgresStore::with_pool).
    pub fn new(url: &str) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(url)
            .map_err(|e| {
                StoreError::new(
                    STORE,
                    StoreErrorKind::Unavailable,
                    "not a Postgres URL (`postgres://user[:password]@host[:port]/db`)",
                )
                .with_source(e)
            })?;
        Ok(PostgresStore::with_pool(pool))
    }

    /// A store on `pool` (size it to the idempotent handlers' total
    /// concurrency: each call holds a connection).
    pub fn with_pool(pool: PgPool) -> PostgresStore {
        PostgresStore {
            pool,
            retention: DEFAULT_RETENTION,
            migrated: Default::default(),
        }
    }

    /// Keeps claims for `retention` (default 7 days).
    pub fn retention(mut self, retention: Duration) -> PostgresStore {
        self.retention = retention;
        self
    }

    /// Deletes claims older than the retention; returns how many.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let seconds = self.retention.as_secs_f64();
        let deleted = sqlx::query(
            "DELETE FROM jetflow_inbox WHERE handled_at < now() - make_interval(secs => $1)",
        )
        .bind(seconds)
        .execute(&self.pool)
        .await
        .map_err(|e| unavailable("cannot prune", e))?;
        Ok(deleted.rows_affected())
    }

    /// Migrates once (and starts the hourly prune).
    async fn ready(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| async {
                schema::migrate(&self.pool)
                    .await
                    .map_err(|e| unavailable("cannot apply jetflow's migrations", e))?;
                let store = self.clone();
                tokio::spawn(async move {
                    loop {
                        if let Err(e) = store.prune().await {
                            tracing::warn!(error = %e, "cannot prune old idempotency claims");
                        }
                        tokio::time::sleep(PRUNE_EVERY).await;
                        if store.pool.is_closed() {
                            return;
                        }
                    }
                });
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn finish(&self, token: &ClaimToken, commit: bool) -> Result<(), StoreError> {
        let Some(slot) = token.attachment::<TxSlot>() else {
            return Err(StoreError::new(
                STORE,
                StoreErrorKind::Corrupt,
                "the claim token has no transaction",
            ));
        };
        let Some(tx) = slot.0.lock().await.take() else {
            return Err(StoreError::new(
                STORE,
                StoreErrorKind::RolledBack,
                "the claim's transaction was already closed",
            ));
        };
        if commit {
            tx.commit().await.map_err(|e| {
                StoreError::new(
                    STORE,
                    StoreErrorKind::RolledBack,
                    format!("COMMIT failed: {e}"),
                )
                .with_source(e)
            })
        } else {
            tx.rollback()
                .await
                .map_err(|e| unavailable("cannot roll back (the connection ends it)", e))
        }
    }
}

impl IdempotencyStore for PostgresStore {
    fn claim<'a>(
        &'a self,
        key: &'a Key,
        _lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let (pool, group, event_id) = (self.pool.clone(), key.group.clone(), key.event_id.clone());
        let ready = self.ready();
        Box::pin(async move {
            ready.await?;
            // in a task of its own: a caller dropped while the claim is
            // under way (an app aborted) must not leave its connection in
            // the pool inside a transaction that holds the claim row (sqlx
            // rolls back only a `begin` that has returned); the task runs
            // to the end and drops what it got, which rolls back
            tokio::spawn(claim(pool, group, event_id))
                .await
                .map_err(|e| StoreError::unavailable(STORE, format!("the claim task ended: {e}")))?
        })
    }

    fn complete<'a>(
        &'a self,
        _key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.finish(token, true))
    }

    fn release<'a>(
        &'a self,
        _key: &'a Key,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.finish(token, false))
    }

    fn describe(&self) -> String {
        "postgres table jetflow_inbox".to_owned()
    }
}

/// Begins a transaction with the claim row of `(group, event_id)` in it,
/// in **one** round trip: the simple query `INSERT ...; BEGIN`. Postgres
/// runs the `INSERT` in an implicit transaction that the `BEGIN` then
/// turns into the open transaction the handler writes through. If the
/// event's row exists (committed by an earlier delivery), the `INSERT`
/// fails with a unique violation, which ends the implicit transaction
/// (the connection is idle again, nothing to roll back): the event is
/// done. A replica racing on the same key waits on the unique index
/// until the other transaction ends, as before: it then fails (the other
/// committed) or inserts (it rolled back). The values go in as escaped
/// string literals (the simple query protocol has no parameters); a
/// value that cannot (a NUL character) takes the two-round-trip path
/// with bound parameters.
async fn claim(pool: PgPool, group: String, event_id: String) -> Result<Claim, StoreError> {
    let (Some(g), Some(id)) = (literal(&group), literal(&event_id)) else {
        return claim_with_parameters(pool, group, event_id).await;
    };
    let sql =
        format!("INSERT INTO jetflow_inbox (consumer_group, event_id) VALUES ({g}, {id}); BEGIN");
    match pool.begin_with(sql).await {
        Ok(tx) => Ok(claimed(event_id, tx)),
        Err(e) if is_unique_violation(&e) => Ok(Claim::AlreadyDone),
        Err(e) => Err(unavailable("cannot insert the claim", e)),
    }
}

/// The claim with bound parameters: `BEGIN`, then `INSERT ... ON CONFLICT
/// DO NOTHING` (two round trips).
async fn claim_with_parameters(
    pool: PgPool,
    group: String,
    event_id: String,
) -> Result<Claim, StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| unavailable("cannot begin", e))?;
    let inserted = sqlx::query(
        "INSERT INTO jetflow_inbox (consumer_group, event_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&group)
    .bind(&event_id)
    .execute(&mut *tx)
    .await
    .map_err(|e| unavailable("cannot insert the claim", e))?;
    if inserted.rows_affected() == 0 {
        // committed before: nothing of this transaction to keep
        let _ = tx.rollback().await;
        return Ok(Claim::AlreadyDone);
    }
    Ok(claimed(event_id, tx))
}

fn claimed(event_id: String, tx: Transaction<'static, Postgres>) -> Claim {
    let slot = TxSlot(Arc::new(Mutex::new(Some(tx))));
    Claim::Claimed(ClaimToken::with_attachment(event_id, slot))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// `value` as an escape string constant (`E'...'`: a backslash and a
/// quote doubled), which means the same whatever
/// `standard_conforming_strings` is; `None` if it holds a NUL, which a
/// query string cannot carry.
fn literal(value: &str) -> Option<String> {
    if value.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Some(out)
}

fn unavailable(what: &str, e: sqlx::Error) -> StoreError {
    StoreError::unavailable(STORE, format!("{what}: {e}")).with_source(e)
}
