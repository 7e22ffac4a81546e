//! What jetflow's idempotency costs: a handler that inserts one row, as a
//! Postgres-idempotent handler (the claim `INSERT` sent with the `BEGIN`
//! of the handler's transaction) and by hand (its own `BEGIN; INSERT;
//! COMMIT`), at concurrency 1 and 64; and the Redis claim (`SET NX PX` + the done mark)
//! around a handler that does nothing, against the same handler without
//! idempotency. Private nats-server, PostgreSQL and redis-server.
//!
//! ```sh
//! cargo bench -p jetflow-tests --bench idempotency            # N = 20,000 per phase
//! JETFLOW_BENCH_N=5000 cargo bench -p jetflow-tests --bench idempotency
//! ```
//!
//! `cargo test` runs it as a smoke run (N = 200) that only checks every
//! phase completes.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use jetflow::idempotency::{PostgresStore, RedisStore, Tx};
use jetflow::prelude::*;
use jetflow::testing::{NatsServer, PostgresServer, RedisServer};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The benchmark's event.
#[event(version = "v1")]
pub struct Credit {
    n: u64,
}

async fn insert(conn: &mut sqlx::PgConnection, n: u64) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO credits (n) VALUES ($1)")
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .execute(conn)
        .await
        .map_err(HandlerError::retry)?;
    Ok(())
}

#[handler(group = "pg-idem-1", idempotent)]
async fn pg_idem_1(c: Credit, mut tx: Tx) -> Result<(), HandlerError> {
    insert(&mut tx, c.n).await
}

#[handler(group = "pg-idem-64", idempotent, concurrency = 64)]
async fn pg_idem_64(c: Credit, mut tx: Tx) -> Result<(), HandlerError> {
    insert(&mut tx, c.n).await
}

async fn by_hand(pool: &PgPool, n: u64) -> Result<(), HandlerError> {
    let mut tx = pool.begin().await.map_err(HandlerError::retry)?;
    insert(&mut tx, n).await?;
    tx.commit().await.map_err(HandlerError::retry)
}

#[handler(group = "pg-raw-1")]
async fn pg_raw_1(c: Credit, State(pool): State<PgPool>) -> Result<(), HandlerError> {
    by_hand(&pool, c.n).await
}

#[handler(group = "pg-raw-64", concurrency = 64)]
async fn pg_raw_64(c: Credit, State(pool): State<PgPool>) -> Result<(), HandlerError> {
    by_hand(&pool, c.n).await
}

#[handler(group = "redis-idem-64", idempotent, concurrency = 64)]
async fn redis_idem_64(c: Credit) {
    let _ = c.n;
}

#[handler(group = "noop-64", concurrency = 64)]
async fn noop_64(c: Credit) {
    let _ = c.n;
}

/// User + system CPU time of this process.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 2..].split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((tick(11) + tick(12)) * 10)
}

fn bench_size() -> anyhow::Result<u64> {
    if let Ok(n) = std::env::var("JETFLOW_BENCH_N") {
        return n.trim().parse().context("JETFLOW_BENCH_N is not a number");
    }
    let bench = std::env::args().any(|a| a == "--bench");
    Ok(if bench { 20_000 } else { 200 })
}

/// Runs `app` until its handler `name` acked `n`; prints and returns msg/s.
async fn phase(label: &str, name: &str, app: App, n: u64) -> anyhow::Result<f64> {
    let (t0, cpu0) = (Instant::now(), process_cpu());
    let handle = app.start().await?;
    let limit = Duration::from_secs(60).max(Duration::from_millis(5) * u32::try_from(n)?);
    handle
        .wait_stats(name, limit, |s| s.acked + s.idempotent_skipped >= n)
        .await?;
    let (wall, cpu) = (t0.elapsed(), process_cpu() - cpu0);
    handle.stop().await?;
    let rate = n as f64 / wall.as_secs_f64();
    let cpu_us = cpu.as_secs_f64() * 1e6 / n as f64;
    println!("| {label} | {rate:>8.0} | {cpu_us:>6.1} |");
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jetflow_tests::log_to_stderr("warn");
    let n = bench_size()?;
    let nats = NatsServer::start().await?;
    let pg = PostgresServer::start().await?;
    let redis = RedisServer::start().await?;
    let pool = PgPoolOptions::new()
        .max_connections(70)
        .connect(&pg.url())
        .await?;
    sqlx::query("CREATE TABLE credits (n bigint NOT NULL)")
        .execute(&pool)
        .await?;

    // what jetflow creates by default: file storage, 2 min dedup window
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "CREDIT".into(),
        subjects: vec!["credit.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let publisher = App::new("bench").url(nats.url()).start().await?;
    let mut batch = publisher.bus().batch();
    for i in 0..n {
        batch.push(&Credit { n: i })?;
        if (i + 1) % 1000 == 0 || i + 1 == n {
            std::mem::replace(&mut batch, publisher.bus().batch())
                .send()
                .await?;
        }
    }
    publisher.stop().await?;

    println!("jetflow idempotency: N = {n} events per phase (one stream, a durable per phase)");
    println!("| phase | msg/s | CPU µs/msg |");
    println!("|---|---:|---:|");
    let app = |pool: &PgPool| {
        App::new("bench")
            .url(nats.url())
            .metrics(false)
            .state(pool.clone())
    };
    let store = || PostgresStore::with_pool(pool.clone());
    let raw_1 = phase(
        "Postgres insert by hand, concurrency 1",
        "pg_raw_1",
        app(&pool).handler(pg_raw_1),
        n,
    )
    .await?;
    let idem_1 = phase(
        "Postgres-idempotent insert, concurrency 1",
        "pg_idem_1",
        app(&pool).idempotency_store(store()).handler(pg_idem_1),
        n,
    )
    .await?;
    let raw_64 = phase(
        "Postgres insert by hand, concurrency 64",
        "pg_raw_64",
        app(&pool).handler(pg_raw_64),
        n,
    )
    .await?;
    let idem_64 = phase(
        "Postgres-idempotent insert, concurrency 64",
        "pg_idem_64",
        app(&pool).idempotency_store(store()).handler(pg_idem_64),
        n,
    )
    .await?;
    let noop = phase(
        "no-op handler, concurrency 64",
        "noop_64",
        app(&pool).handler(noop_64),
        n,
    )
    .await?;
    let redis_store = RedisStore::new(&redis.url())?;
    let claimed = phase(
        "no-op handler, Redis-idempotent, concurrency 64",
        "redis_idem_64",
        app(&pool)
            .idempotency_store(redis_store)
            .handler(redis_idem_64),
        n,
    )
    .await?;
    println!();
    println!(
        "Postgres-idempotent / by hand: {:.2}x at concurrency 1, {:.2}x at 64",
        idem_1 / raw_1,
        idem_64 / raw_64
    );
    println!(
        "Redis claim: {:.2}x the throughput of the same handler without it",
        claimed / noop
    );
    Ok(())
}
