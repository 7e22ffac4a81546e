//! The relay: publishes the outbox's pending rows, marks them published,
//! prunes old ones.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CHANNEL, Outbox};
use crate::Headers;
use crate::publish::Bus;

/// Rows taken per transaction.
const BATCH: i64 = 100;
/// How often published rows older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// The pause after a failed round (the database or the broker away).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Relays until `stop` is cancelled.
pub(crate) async fn relay(outbox: Outbox, bus: Bus, stop: CancellationToken) {
    let mut listener: Option<PgListener> = None;
    let mut pruned = Instant::now() - PRUNE_EVERY;
    loop {
        if stop.is_cancelled() {
            return;
        }
        if listener.is_none() {
            listener = listen(&outbox.pool).await;
        }
        let round = async {
            outbox.ready().await.map_err(|e| e.to_string())?;
            round(&outbox.pool, &bus).await
        };
        let wait = match round.await {
            Ok(n) if n > 0 => continue, // more may be waiting
            Ok(_) => outbox.poll,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: a round failed; trying again");
                RETRY_AFTER
            }
        };
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            if let Err(e) = prune(&outbox.pool, outbox.retention).await {
                tracing::warn!(error = %e, "outbox relay: cannot prune published rows");
            }
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        listener = None; // listen again next round
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(CHANNEL).await.ok()?;
    Some(listener)
}

/// Publishes up to [`BATCH`] pending rows (the oldest of each key, rows
/// no other relay holds) and marks them published; returns how many.
async fn round(pool: &PgPool, bus: &Bus) -> Result<usize, String> {
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let rows = sqlx::query(
        "SELECT id, subject, headers, payload FROM jetflow_outbox o \
         WHERE published_at IS NULL AND (order_key IS NULL OR NOT EXISTS ( \
             SELECT 1 FROM jetflow_outbox p \
             WHERE p.order_key = o.order_key AND p.published_at IS NULL AND p.id < o.id)) \
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    let mut published = Vec::with_capacity(rows.len());
    let mut failure = None;
    for row in &rows {
        let id: i64 = row.get("id");
        let subject: String = row.get("subject");
        let headers: String = row.get("headers");
        let payload: Vec<u8> = row.get("payload");
        let pairs: Vec<(String, String)> = serde_json::from_str(&headers).unwrap_or_default();
        let mut h = Headers::with_capacity(pairs.len());
        for (name, value) in pairs {
            h.append(name, value);
        }
        // the event id (`ce-id`) is the message id: a copy published again
        // after a crash before the mark below is a duplicate for the stream
        match bus.publish_raw(&subject, h, payload.into()).await {
            Ok(_) => published.push(id),
            Err(e) => {
                failure = Some(format!("cannot publish outbox row {id} on {subject}: {e}"));
                break;
            }
        }
    }
    if !published.is_empty() {
        sqlx::query(
            "UPDATE jetflow_outbox SET published_at = now(), publish_count = publish_count + 1 \
             WHERE id = ANY($1)",
        )
        .bind(&published)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    match failure {
        Some(f) => Err(f),
        None => Ok(published.len()),
    }
}

async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM jetflow_outbox \
         WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)",
    )
    .bind(retention.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
