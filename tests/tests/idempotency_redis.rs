//! The Redis idempotency store (`RedisStore`) against a private
//! redis-server, with the stream on a private nats-server: duplicates
//! handled once, and the documented window — a worker that dies after
//! the handler's effect and before the claim is marked done runs the
//! handler again on redelivery, once the lease (`ack_wait`) ran out; and
//! redis-server killed and restarted mid-stream: consumption pauses, none
//! is dead-lettered, every event is handled once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use jetflow::idempotency::RedisStore;
use jetflow::prelude::*;
use jetflow::testing::{NatsServer, RedisServer};
use jetflow::{AppHandle, LoopState};
use jetflow_tests::{Ledger, WAIT, redis_server, server};

/// A payout; its business key is `key`.
#[event(version = "v1", id = key)]
pub struct Payout {
    key: String,
}

/// Set: the next call records its effect, then hangs (a worker that dies
/// before the claim is marked done).
#[derive(Clone, Default)]
struct HangAfterEffect(Arc<AtomicBool>);

#[handler(
    group = "payouts",
    idempotent,
    concurrency = 4,
    ack_wait = "2s",
    backoff = "200ms"
)]
async fn payout(
    p: Payout,
    ctx: Context,
    State(ledger): State<Ledger>,
    State(hang): State<HangAfterEffect>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    if hang.0.swap(false, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    Ok(())
}

fn effects(ledger: &Ledger) -> BTreeMap<String, usize> {
    let mut by_key = BTreeMap::new();
    for e in ledger.entries() {
        *by_key.entry(e.key).or_insert(0) += 1;
    }
    by_key
}

async fn start(nats: &NatsServer, redis: &RedisServer, ledger: &Ledger, hang: bool) -> AppHandle {
    App::new("t")
        .url(nats.url())
        .state(ledger.clone())
        .state(HangAfterEffect(Arc::new(AtomicBool::new(hang))))
        .idempotency_store(RedisStore::new(&redis.url()).expect("a redis URL"))
        .handler(payout)
        .start()
        .await
        .expect("app starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_duplicates_outside_the_dedup_window_are_handled_once() {
    let nats = server().await;
    let redis = redis_server().await;
    let ledger = Ledger::default();
    let app = start(&nats, &redis, &ledger, false).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("client"));
    for i in 0..10 {
        for copy in 0..3 {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("ce-id", format!("payout-{i}").as_str());
            headers.insert("Nats-Msg-Id", format!("{i}-attempt-{copy}").as_str());
            let payload = format!(r#"{{"key":"p{i}"}}"#);
            js.publish_with_headers("payout.v1", headers, payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    }
    let stats = app
        .wait_stats("payout", WAIT, |s| s.settled() == 30)
        .await
        .expect("all settled");
    app.stop().await.expect("stops");
    let by_key = effects(&ledger);
    assert_eq!(by_key.len(), 10);
    assert!(by_key.values().all(|n| *n == 1), "{by_key:?}");
    assert_eq!(
        (stats.acked, stats.idempotent_skipped),
        (10, 20),
        "{stats:?}"
    );
}

/// The window of a store that is not atomic with the effect: the worker
/// dies after the effect, before `complete`; its claim runs out after the
/// lease and the redelivery runs the handler again — two effects, as
/// documented. Events completed before the crash are not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_worker_dying_between_effect_and_complete_runs_again() {
    let nats = server().await;
    let redis = redis_server().await;
    let ledger = Ledger::default();

    let a = start(&nats, &redis, &ledger, false).await;
    for i in 0..5 {
        let key = format!("done{i}");
        a.bus().publish(&Payout { key }).await.expect("publish");
    }
    a.wait_stats("payout", WAIT, |s| s.acked == 5)
        .await
        .expect("first five handled");
    a.stop().await.expect("stops");

    let crashing = start(&nats, &redis, &ledger, true).await;
    crashing
        .bus()
        .publish(&Payout { key: "w".into() })
        .await
        .expect("publish");
    ledger
        .wait_until(WAIT, "the effect", |_| !ledger.of("w").is_empty())
        .await;
    crashing.abort(); // dies between the effect and `complete`

    let b = start(&nats, &redis, &ledger, false).await;
    b.wait_stats("payout", WAIT, |s| s.acked == 1)
        .await
        .expect("redelivered and handled again");
    b.stop().await.expect("stops");
    let by_key = effects(&ledger);
    assert_eq!(
        by_key.get("w"),
        Some(&2),
        "the documented window: {by_key:?}"
    );
    for i in 0..5 {
        assert_eq!(by_key.get(&format!("done{i}")), Some(&1), "{by_key:?}");
    }
}

/// The store goes away mid-stream (redis-server killed, restarted empty a
/// few seconds later): the handler's loop is `paused` — nothing handled,
/// nothing dead-lettered — and resumes by itself; every event has one
/// effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_pauses_and_every_event_is_handled_once() {
    let nats = server().await;
    let mut redis = redis_server().await;
    let ledger = Ledger::default();
    let app = start(&nats, &redis, &ledger, false).await;
    for i in 0..50 {
        let key = format!("o{i}");
        app.bus().publish(&Payout { key }).await.expect("publish");
    }
    ledger
        .wait_until(WAIT, "a first part handled", |_| {
            effects(&ledger).len() >= 10
        })
        .await;

    redis.kill().await.expect("redis killed");
    for i in 50..100 {
        let key = format!("o{i}");
        app.bus().publish(&Payout { key }).await.expect("publish");
    }
    let status = app
        .wait_status("payout", WAIT, |s| matches!(s, LoopState::Paused { .. }))
        .await
        .expect("paused while the store is away");
    eprintln!("{}", status.state);
    let handled_before = effects(&ledger).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        effects(&ledger).len(),
        handled_before,
        "nothing handled while the store is away"
    );

    redis.restart().await.expect("redis restarted");
    app.wait_status("payout", WAIT, LoopState::is_receiving)
        .await
        .expect("receiving again");
    ledger
        .wait_until(WAIT, "every event handled", |_| {
            effects(&ledger).len() == 100
        })
        .await;
    let stats = app.stats("payout").expect("stats");
    let dead = jetflow::dlq::list(app.bus()).await.unwrap_or_default();
    app.stop().await.expect("stops");
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let twice: Vec<_> = effects(&ledger)
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "more than one effect: {twice:?}");
}
