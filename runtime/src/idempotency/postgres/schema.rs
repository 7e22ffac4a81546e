//! The tables jetflow's Postgres store needs, as numbered migrations
//! recorded in `jetflow_schema`.

use sqlx::{PgPool, Postgres, Transaction};

/// The migrations, in order: `(version, SQL)`. Teams that manage their
/// schema themselves apply these (and insert the version into
/// `jetflow_schema`) instead of letting jetflow do it.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS jetflow_inbox (
            consumer_group text NOT NULL,
            event_id text NOT NULL,
            handled_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer_group, event_id)
        );
        CREATE INDEX IF NOT EXISTS jetflow_inbox_handled_at ON jetflow_inbox (handled_at);",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS jetflow_outbox (
            id bigserial PRIMARY KEY,
            event_id text NOT NULL,
            subject text NOT NULL,
            order_key text,
            headers text NOT NULL,
            payload bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz,
            -- how many times a relay published and marked it (1; more
            -- would mean two relays took one row)
            publish_count integer NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS jetflow_outbox_pending
            ON jetflow_outbox (order_key, id) WHERE published_at IS NULL;
        CREATE INDEX IF NOT EXISTS jetflow_outbox_published
            ON jetflow_outbox (published_at) WHERE published_at IS NOT NULL;",
    ),
];

/// A lock id only jetflow's migrations take (`pg_advisory_xact_lock`), so
/// that replicas starting together migrate one after the other.
const LOCK: i64 = 0x6a65_7466_6c6f_7701;

/// Applies the migrations the database lacks, in one transaction.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx: Transaction<'static, Postgres> = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS jetflow_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM jetflow_schema")
        .fetch_one(&mut *tx)
        .await?;
    for &(version, sql) in MIGRATIONS {
        if applied.is_some_and(|v| v >= version) {
            continue;
        }
        // several statements: the simple query protocol
        sqlx::Executor::execute(&mut *tx, sql).await?;
        sqlx::query("INSERT INTO jetflow_schema (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "applied jetflow's Postgres migration");
    }
    tx.commit().await
}
