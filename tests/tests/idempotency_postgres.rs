//! The Postgres idempotency store against a private PostgreSQL
//! (`jetflow::testing::PostgresServer`), the stream on a private
//! nats-server: the claim commits with the handler's own rows, so every
//! event has exactly one effect — duplicates, handler failures and panics
//! (rolled back, retried), a worker dying mid-handler, and Postgres
//! stopped and restarted mid-stream (consumption pauses; nothing
//! dead-lettered).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jetflow::idempotency::{PostgresStore, Tx};
use jetflow::prelude::*;
use jetflow::testing::{NatsServer, PostgresServer};
use jetflow::{AppHandle, LoopState};
use jetflow_tests::{WAIT, server};
use sqlx::PgPool;

/// A deposit; its business key is `key`.
#[event(version = "v1", id = key)]
pub struct Deposit {
    key: String,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Fail,
    Panic,
    /// Hangs after the effect (a worker that dies before the commit).
    Hang,
}

/// One fault per key, taken by the first call for it.
#[derive(Clone, Default)]
struct Faults(Arc<Mutex<HashMap<String, Fault>>>);

impl Faults {
    fn with(faults: &[(&str, Fault)]) -> Faults {
        let map = faults.iter().map(|(k, f)| ((*k).to_owned(), *f)).collect();
        Faults(Arc::new(Mutex::new(map)))
    }
    fn take(&self, key: &str) -> Option<Fault> {
        self.0.lock().expect("faults").remove(key)
    }
}

#[handler(
    group = "bank",
    idempotent,
    concurrency = 8,
    ack_wait = "2s",
    backoff = "200ms",
    max_deliver = 10
)]
async fn deposit(d: Deposit, mut tx: Tx, State(faults): State<Faults>) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO effects (key) VALUES ($1)")
        .bind(&d.key)
        .execute(&mut *tx)
        .await
        .map_err(HandlerError::retry)?;
    match faults.take(&d.key) {
        Some(Fault::Fail) => Err(HandlerError::retry("a failure after the insert")),
        Some(Fault::Panic) => panic!("a panic after the insert"),
        Some(Fault::Hang) => std::future::pending().await,
        None => Ok(()),
    }
}

async fn postgres() -> PostgresServer {
    jetflow_tests::postgres_server().await
}

async fn pool(pg: &PostgresServer) -> PgPool {
    let pool = PgPool::connect(&pg.url()).await.expect("connect");
    sqlx::query("CREATE TABLE IF NOT EXISTS effects (key text NOT NULL)")
        .execute(&pool)
        .await
        .expect("effects table");
    pool
}

/// Effects per key, from the business table.
async fn effects(pool: &PgPool) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT key, count(*) FROM effects GROUP BY key")
        .fetch_all(pool)
        .await
        .expect("effects");
    rows.into_iter().collect()
}

async fn start(nats: &NatsServer, pg: &PostgresServer, faults: Faults) -> AppHandle {
    App::new("t")
        .url(nats.url())
        .state(faults)
        .idempotency_store(PostgresStore::new(&pg.url()).expect("a postgres URL"))
        .handler(deposit)
        .start()
        .await
        .expect("app starts")
}

async fn wait_effects(pool: &PgPool, n: usize) -> BTreeMap<String, i64> {
    jetflow_tests::eventually(WAIT, &format!("{n} keys with an effect"), || async {
        let e = effects(pool).await;
        (e.len() >= n).then_some(e)
    })
    .await
}

fn assert_once(effects: &BTreeMap<String, i64>, n: usize) {
    assert_eq!(effects.len(), n, "{effects:?}");
    let twice: Vec<_> = effects.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "more than one effect: {twice:?}");
}

/// Duplicates outside the dedup window, failures and panics after the
/// insert (rolled back with the claim, then retried): one row per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_effect_per_event_through_duplicates_failures_and_panics() {
    let nats = server().await;
    let pg = postgres().await;
    let pool = pool(&pg).await;
    let faults = Faults::with(&[("k1", Fault::Fail), ("k2", Fault::Panic)]);
    let app = start(&nats, &pg, faults).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("client"));
    for i in 0..10 {
        for copy in 0..3 {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("ce-id", format!("deposit-{i}").as_str());
            headers.insert("Nats-Msg-Id", format!("{i}-attempt-{copy}").as_str());
            let payload = format!(r#"{{"key":"k{i}"}}"#);
            js.publish_with_headers("deposit.v1", headers, payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    }
    let stats = app
        .wait_stats("deposit", WAIT, |s| s.settled() == 30)
        .await
        .expect("all settled");
    app.stop().await.expect("stops");
    let effects = effects(&pool).await;
    assert_once(&effects, 10);
    assert_eq!(
        (stats.acked, stats.idempotent_skipped),
        (10, 20),
        "{stats:?}"
    );
    assert_eq!(stats.panicked, 1, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM jetflow_inbox")
        .fetch_one(&pool)
        .await
        .expect("claims");
    assert_eq!(claims, 10);
    let schema: i32 = sqlx::query_scalar("SELECT max(version) FROM jetflow_schema")
        .fetch_one(&pool)
        .await
        .expect("schema version");
    let latest = jetflow::idempotency::MIGRATIONS.last().map(|m| m.0);
    assert_eq!(Some(schema), latest, "every migration applied");
}

/// A worker that dies after its insert and before the commit leaves
/// nothing (its transaction ends with it): the redelivery, to another
/// replica, has the one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_worker_dying_mid_handler_leaves_one_effect() {
    let nats = server().await;
    let pg = postgres().await;
    let pool = pool(&pg).await;
    let crashing = start(&nats, &pg, Faults::with(&[("w", Fault::Hang)])).await;
    crashing
        .bus()
        .publish(&Deposit { key: "w".into() })
        .await
        .expect("publish");
    jetflow_tests::eventually(WAIT, "the claim in flight", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (n > 0).then_some(())
    })
    .await;
    crashing.abort();

    let b = start(&nats, &pg, Faults::default()).await;
    b.wait_stats("deposit", WAIT, |s| s.acked == 1)
        .await
        .expect("redelivered and handled");
    b.stop().await.expect("stops");
    assert_once(&effects(&pool).await, 1);
}

/// Postgres killed mid-stream and restarted: the handler pauses (nothing
/// dead-lettered), resumes by itself, and every event has one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_pauses_and_every_event_has_one_effect() {
    let nats = server().await;
    let mut pg = postgres().await;
    let pool = pool(&pg).await;
    let app = start(&nats, &pg, Faults::default()).await;
    for i in 0..40 {
        let key = format!("o{i}");
        app.bus().publish(&Deposit { key }).await.expect("publish");
    }
    wait_effects(&pool, 10).await;
    pg.kill().await.expect("postgres killed");
    for i in 40..80 {
        let key = format!("o{i}");
        app.bus().publish(&Deposit { key }).await.expect("publish");
    }
    let status = app
        .wait_status("deposit", WAIT, |s| matches!(s, LoopState::Paused { .. }))
        .await
        .expect("paused while postgres is away");
    eprintln!("{}", status.state);
    pg.restart().await.expect("postgres restarted");
    let effects = wait_effects(&pool, 80).await;
    app.wait_status("deposit", WAIT, LoopState::is_receiving)
        .await
        .expect("receiving again");
    let stats = app.stats("deposit").expect("stats");
    let dead = jetflow::dlq::list(app.bus()).await.unwrap_or_default();
    app.stop().await.expect("stops");
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert_once(&effects, 80);
}

/// Chaos for [`flaky_deposit`]: each call of a key fails, panics or
/// succeeds by a hash of the key and its call number.
#[derive(Clone, Default)]
struct Chaos(Arc<Mutex<HashMap<String, u64>>>);

impl Chaos {
    /// 0: ok, 1: fail, 2: panic.
    fn next(&self, key: &str) -> u8 {
        let call = {
            let mut calls = self.0.lock().expect("chaos");
            let n = calls.entry(key.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&(key, call), &mut h);
        match std::hash::Hasher::finish(&h) % 20 {
            0 | 1 => 1,
            2 => 2,
            _ => 0,
        }
    }
}

#[handler(
    group = "vault",
    idempotent,
    concurrency = 16,
    ack_wait = "2s",
    backoff = "100ms",
    max_deliver = 20
)]
async fn flaky_deposit(
    d: Deposit,
    mut tx: Tx,
    State(chaos): State<Chaos>,
) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO effects (key) VALUES ($1)")
        .bind(&d.key)
        .execute(&mut *tx)
        .await
        .map_err(HandlerError::retry)?;
    match chaos.next(&d.key) {
        1 => Err(HandlerError::retry("chaos: a failure after the insert")),
        2 => panic!("chaos: a panic after the insert"),
        _ => Ok(()),
    }
}

async fn start_flaky(nats: &NatsServer, pg: &PostgresServer, chaos: &Chaos) -> AppHandle {
    App::new("t")
        .url(nats.url())
        .state(chaos.clone())
        .idempotency_store(PostgresStore::new(&pg.url()).expect("a postgres URL"))
        .handler(flaky_deposit)
        .start()
        .await
        .expect("app starts")
}

/// The ledger oracle: 10,000 events, two replicas, failures and panics
/// after the insert on about 15% of calls, one replica killed (aborted)
/// mid-stream: every published event has exactly one effect, none is
/// lost or dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ledger_oracle_under_failures_panics_and_a_dying_replica() {
    const EVENTS: usize = 10_000;
    let nats = server().await;
    let pg = postgres().await;
    let pool = pool(&pg).await;
    let chaos = Chaos::default();
    let a = start_flaky(&nats, &pg, &chaos).await;
    let b = start_flaky(&nats, &pg, &chaos).await;
    for i in 0..EVENTS / 2 {
        let key = format!("e{i}");
        a.bus().publish(&Deposit { key }).await.expect("publish");
    }
    wait_effects(&pool, EVENTS / 10).await;
    a.abort(); // mid-stream, with calls under way
    for i in EVENTS / 2..EVENTS {
        let key = format!("e{i}");
        b.bus().publish(&Deposit { key }).await.expect("publish");
    }
    wait_effects(&pool, EVENTS).await;
    jetflow_tests::eventually(WAIT, "every claim committed", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jetflow_inbox")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n == EVENTS as i64).then_some(())
    })
    .await;
    let stats = b.stats("flaky_deposit").expect("stats");
    let dead = jetflow::dlq::list(b.bus()).await.unwrap_or_default();
    b.stop().await.expect("stops");
    let effects = effects(&pool).await;
    assert!(dead.is_empty(), "dead-lettered: {} records", dead.len());
    assert_once(&effects, EVENTS);
    eprintln!("replica b: {stats:?}");
}

/// The claim at the store, one round trip (`INSERT ...; BEGIN`): a key
/// done before is `AlreadyDone` and leaves its connection clean for the
/// next claim (a pool of one connection); a claim racing an open one
/// waits on the unique key, then claims (the first released) or skips
/// (it committed); an id of quotes, backslashes and SQL is stored as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_claims_skips_and_races() {
    use jetflow::idempotency::{Claim, IdempotencyStore, Key};
    use std::time::Duration;

    let pg = postgres().await;
    let pool = pool(&pg).await;
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("connect");
    let store = PostgresStore::with_pool(one);
    let lease = Duration::from_secs(30);
    let odd = r"it's a \'; DROP TABLE effects; -- \\ é";
    for id in ["plain", odd] {
        let key = Key::new("bank", id);
        let Claim::Claimed(token) = store.claim(&key, lease).await.expect("claim") else {
            panic!("{id:?}: a new key is claimed");
        };
        store.release(&key, &token).await.expect("release");
        let Claim::Claimed(token) = store.claim(&key, lease).await.expect("claim") else {
            panic!("{id:?}: a released key is claimed again");
        };
        store.complete(&key, &token).await.expect("complete");
        for _ in 0..3 {
            // the one connection comes back clean after each skip
            let again = store.claim(&key, lease).await.expect("claim");
            assert_eq!(again, Claim::AlreadyDone, "{id:?}");
        }
    }
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM jetflow_inbox ORDER BY event_id")
            .fetch_all(&pool)
            .await
            .expect("claims");
    assert_eq!(ids, [odd, "plain"]);

    // a race: the second claim waits on the first's open row
    let store = PostgresStore::with_pool(pool.clone());
    for commit in [false, true] {
        let key = Key::new("bank", format!("race-{commit}"));
        let Claim::Claimed(first) = store.claim(&key, lease).await.expect("claim") else {
            panic!("a new key is claimed");
        };
        let second = tokio::spawn({
            let (store, key) = (store.clone(), key.clone());
            async move { store.claim(&key, lease).await }
        });
        second_claim_waits_on_a_lock(&pool).await;
        if commit {
            store.complete(&key, &first).await.expect("complete");
        } else {
            store.release(&key, &first).await.expect("release");
        }
        let second = second.await.expect("joined").expect("claim");
        match (commit, second) {
            (true, Claim::AlreadyDone) => {}
            (false, Claim::Claimed(token)) => store.complete(&key, &token).await.expect("complete"),
            (_, other) => panic!("commit = {commit}: {other:?}"),
        }
    }
}

/// Waits until exactly one claim `INSERT` waits on a row lock (the
/// second claim of a key whose first claim is open).
async fn second_claim_waits_on_a_lock(pool: &sqlx::PgPool) {
    jetflow_tests::eventually(WAIT, "the second claim waits on a lock", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE 'INSERT INTO jetflow_inbox%'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        (n == 1).then_some(())
    })
    .await;
}

/// A claim dropped while it waits (an app aborted mid-claim) leaves no
/// transaction behind on its connection: the next claim of the key on
/// the same one-connection pool claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claim_dropped_midway_leaves_its_connection_clean() {
    use jetflow::idempotency::{Claim, IdempotencyStore, Key};
    use std::time::Duration;

    let pg = postgres().await;
    let pool = pool(&pg).await;
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("connect");
    let (holder, store) = (
        PostgresStore::with_pool(pool.clone()),
        PostgresStore::with_pool(one),
    );
    let (key, lease) = (Key::new("bank", "dropped"), Duration::from_secs(30));
    let Claim::Claimed(first) = holder.claim(&key, lease).await.expect("claim") else {
        panic!("a new key is claimed");
    };
    let waiting = tokio::spawn({
        let (store, key) = (store.clone(), key.clone());
        async move { store.claim(&key, lease).await }
    });
    second_claim_waits_on_a_lock(&pool).await;
    waiting.abort(); // the claim future is dropped while its INSERT waits
    let _ = waiting.await;
    holder.release(&key, &first).await.expect("release");
    let Claim::Claimed(token) = store.claim(&key, lease).await.expect("claim") else {
        panic!("the key is free again: claimed");
    };
    store.complete(&key, &token).await.expect("complete");
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jetflow_inbox WHERE event_id = 'dropped'")
            .fetch_one(&pool)
            .await
            .expect("claims");
    assert_eq!(n, 1);
}
