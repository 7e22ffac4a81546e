//! Idempotent handlers (`#[handler(idempotent)]`): one effect per event
//! id whatever is delivered — duplicate publishes outside the dedup
//! window, redeliveries of events already handled, two replicas racing —
//! on the embedded broker with the in-process store and on a real
//! nats-server with the NATS KV store; and a store outage pauses the
//! handler (nothing dead-lettered) until the store is back.

use std::collections::BTreeMap;
use std::time::Duration;

use jetflow::app::ConfigErrorKind;
use jetflow::idempotency::{MemoryStore, NatsKvStore};
use jetflow::prelude::*;
use jetflow::testing::NatsServer;
use jetflow::topology::StreamSettings;
use jetflow::{AppHandle, LoopState};
use jetflow_tests::{Ledger, WAIT, server};

/// A charge; its business key is `key`.
#[event(version = "v1", id = key)]
pub struct Charge {
    key: String,
}

/// Records one effect per call.
#[handler(
    group = "billing",
    idempotent,
    concurrency = 8,
    ack_wait = "2s",
    backoff = "200ms"
)]
async fn charge(c: Charge, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&c.key, &ctx);
    Ok(())
}

/// Effects per key.
fn effects(ledger: &Ledger) -> BTreeMap<String, usize> {
    let mut by_key = BTreeMap::new();
    for e in ledger.entries() {
        *by_key.entry(e.key).or_insert(0) += 1;
    }
    by_key
}

fn assert_once(ledger: &Ledger, keys: usize) {
    let by_key = effects(ledger);
    assert_eq!(by_key.len(), keys, "every event handled: {by_key:?}");
    let twice: Vec<_> = by_key.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "events with more than one effect: {twice:?}"
    );
}

/// Publishes `copies` copies of the event `key` under one `ce-id` and
/// distinct `Nats-Msg-Id`s, as a producer retrying outside the dedup
/// window does (a raw client: jetflow's own publishes use the event id as
/// the message id).
async fn publish_copies(js: &async_nats::jetstream::Context, key: &str, copies: usize) {
    for copy in 0..copies {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("ce-id", format!("charge-{key}").as_str());
        headers.insert("Nats-Msg-Id", format!("{key}-attempt-{copy}").as_str());
        let payload = format!(r#"{{"key":"{key}"}}"#);
        js.publish_with_headers("charge.v1", headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
}

/// Why the NATS KV tests skip the nats-server floor pass.
const KV_NEEDS: &str = "the NATS KV store needs nats-server 2.10 or newer";

async fn kv_store(server: &NatsServer) -> NatsKvStore {
    NatsKvStore::connect(&server.url()).await.expect("kv store")
}

async fn start_nats(server: &NatsServer, ledger: &Ledger, store: NatsKvStore) -> AppHandle {
    App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .idempotency_store(store)
        .handler(charge)
        .start()
        .await
        .expect("app starts")
}

fn js(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(client)
}

#[tokio::test]
async fn an_idempotent_handler_without_a_store_does_not_start() {
    let err = App::new("t")
        .url(jetflow::testing::memory_url("idem-missing"))
        .state(Ledger::default())
        .handler(charge)
        .start()
        .await
        .expect_err("no store");
    let jetflow::Error::Config(config) = &err else {
        panic!("expected a config error, got {err}")
    };
    assert_eq!(config.kind(), ConfigErrorKind::MissingIdempotencyStore);
    assert_eq!(config.handler(), Some("charge"));
    assert!(err.to_string().contains("App::idempotency_store"), "{err}");
}

/// The embedded broker with the in-process store: three publishes of one
/// event outside the dedup window, one effect, two skips counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_duplicates_outside_the_dedup_window_are_handled_once() {
    let ledger = Ledger::default();
    let mut settings = StreamSettings::default();
    settings.duplicate_window = Duration::from_millis(1);
    let store = MemoryStore::new();
    let app = App::new("t")
        .url(jetflow::testing::memory_url("idem-dup"))
        .stream_settings(settings)
        .state(ledger.clone())
        .idempotency_store(store.clone())
        .handler(charge)
        .start()
        .await
        .expect("starts");
    for key in ["a", "b"] {
        for _ in 0..3 {
            app.bus()
                .publish(&Charge { key: key.into() })
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(5)).await; // past the window
        }
    }
    let stats = app
        .wait_stats("charge", WAIT, |s| s.settled() == 6)
        .await
        .expect("all settled");
    app.stop().await.expect("stops");
    assert_once(&ledger, 2);
    assert_eq!((stats.acked, stats.idempotent_skipped), (2, 4), "{stats:?}");
    assert_eq!(stats.received, 6);
}

/// The embedded broker: the store unreachable mid-stream pauses the
/// handler (state `paused`, nothing handled, nothing dead-lettered), and
/// it resumes by itself when the store is back; every event handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_outage_pauses_then_resumes() {
    let ledger = Ledger::default();
    let store = MemoryStore::new();
    let app = App::new("t")
        .url(jetflow::testing::memory_url("idem-outage"))
        .state(ledger.clone())
        .idempotency_store(store.clone())
        .handler(charge)
        .start()
        .await
        .expect("starts");
    for i in 0..20 {
        let key = format!("k{i}");
        app.bus().publish(&Charge { key }).await.expect("publish");
    }
    app.wait_stats("charge", WAIT, |s| s.acked == 20)
        .await
        .expect("first 20");

    store.set_available(false);
    for i in 20..60 {
        let key = format!("k{i}");
        app.bus().publish(&Charge { key }).await.expect("publish");
    }
    let status = app
        .wait_status("charge", WAIT, |s| matches!(s, LoopState::Paused { .. }))
        .await
        .expect("paused");
    assert!(!status.state.is_ready());
    assert!(
        status.state.to_string().contains("memory"),
        "{}",
        status.state
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        effects(&ledger).len(),
        20,
        "nothing handled while the store is away"
    );
    let during = app.stats("charge").expect("stats");
    // held, not spent: at most `concurrency` deliveries received during the pause
    assert!(during.received <= 20 + 8, "{during:?}");

    store.set_available(true);
    app.wait_status("charge", WAIT, LoopState::is_receiving)
        .await
        .expect("receiving again");
    let stats = app
        .wait_stats("charge", WAIT, |s| s.acked == 60)
        .await
        .expect("all handled");
    app.stop().await.expect("stops");
    assert_once(&ledger, 60);
    assert_eq!((stats.dead_lettered, stats.retried), (0, 0), "{stats:?}");
}

/// nats-server and the NATS KV store: a producer retrying outside the
/// dedup window (three stored copies of each event): one effect each,
/// two skips each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_duplicates_outside_the_dedup_window_are_handled_once() {
    if jetflow_tests::skip_on_nats_floor_because(
        "nats_duplicates_outside_the_dedup_window_are_handled_once",
        KV_NEEDS,
    ) {
        return;
    }
    let server = server().await;
    let ledger = Ledger::default();
    let app = start_nats(&server, &ledger, kv_store(&server).await).await;
    let client = async_nats::connect(server.url()).await.expect("client");
    let js = js(client);
    for i in 0..10 {
        publish_copies(&js, &format!("d{i}"), 3).await;
    }
    let stats = app
        .wait_stats("charge", WAIT, |s| s.settled() == 30)
        .await
        .expect("all settled");
    app.stop().await.expect("stops");
    assert_once(&ledger, 10);
    assert_eq!(stats.idempotent_skipped, 20, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0);
}

/// Events handled and acked are delivered again (their consumer is
/// recreated from the start of the stream, as after lost acks): every
/// redelivery is skipped, no effect twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_redelivery_of_handled_events_is_skipped() {
    if jetflow_tests::skip_on_nats_floor_because(
        "nats_redelivery_of_handled_events_is_skipped",
        KV_NEEDS,
    ) {
        return;
    }
    let server = server().await;
    let ledger = Ledger::default();
    let app = start_nats(&server, &ledger, kv_store(&server).await).await;
    for i in 0..20 {
        let key = format!("r{i}");
        app.bus().publish(&Charge { key }).await.expect("publish");
    }
    app.wait_stats("charge", WAIT, |s| s.acked == 20)
        .await
        .expect("handled");
    app.stop().await.expect("stops");

    let client = async_nats::connect(server.url()).await.expect("client");
    let stream = js(client).get_stream("CHARGE").await.expect("the stream");
    stream
        .delete_consumer("billing--charge")
        .await
        .expect("consumer deleted");

    let app = start_nats(&server, &ledger, kv_store(&server).await).await;
    let stats = app
        .wait_stats("charge", WAIT, |s| s.idempotent_skipped == 20)
        .await
        .expect("all redelivered and skipped");
    app.stop().await.expect("stops");
    assert_eq!(stats.acked, 0, "{stats:?}");
    assert_once(&ledger, 20);
}

/// Two replicas of one group, each event stored three times: the copies
/// race on the two replicas; one effect per event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_two_replicas_racing_handle_each_event_once() {
    if jetflow_tests::skip_on_nats_floor_because(
        "nats_two_replicas_racing_handle_each_event_once",
        KV_NEEDS,
    ) {
        return;
    }
    let server = server().await;
    let ledger = Ledger::default();
    let a = start_nats(&server, &ledger.tagged("a"), kv_store(&server).await).await;
    let b = start_nats(&server, &ledger.tagged("b"), kv_store(&server).await).await;
    let client = async_nats::connect(server.url()).await.expect("client");
    let js = js(client);
    for i in 0..50 {
        publish_copies(&js, &format!("x{i}"), 3).await;
    }
    ledger
        .wait_until(WAIT, "every event handled", |_| {
            effects(&ledger).len() == 50
        })
        .await;
    // every copy settled, on one replica or the other
    jetflow_tests::eventually(WAIT, "150 copies settled", || async {
        let settled = a.stats("charge")?.settled() + b.stats("charge")?.settled();
        (settled == 150).then_some(())
    })
    .await;
    let replicas: std::collections::BTreeSet<_> =
        ledger.entries().into_iter().map(|e| e.replica).collect();
    a.stop().await.expect("stops");
    b.stop().await.expect("stops");
    assert_once(&ledger, 50);
    eprintln!("effects on replicas {replicas:?}");
}

/// The KV store on its own nats-server, killed mid-stream and restarted:
/// the handler pauses (not ready, nothing pulled), nothing is
/// dead-lettered, and every event is handled exactly once after the
/// store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_outage_pauses_and_every_event_is_handled_once() {
    if jetflow_tests::skip_on_nats_floor_because(
        "nats_kv_outage_pauses_and_every_event_is_handled_once",
        KV_NEEDS,
    ) {
        return;
    }
    let broker = server().await;
    let mut kv = server().await;
    let ledger = Ledger::default();
    let app = start_nats(&broker, &ledger, kv_store(&kv).await).await;
    for i in 0..50 {
        let key = format!("o{i}");
        app.bus().publish(&Charge { key }).await.expect("publish");
    }
    ledger
        .wait_until(WAIT, "a first part handled", |_| {
            effects(&ledger).len() >= 10
        })
        .await;

    kv.kill().await.expect("kv killed");
    for i in 50..100 {
        let key = format!("o{i}");
        app.bus().publish(&Charge { key }).await.expect("publish");
    }
    let status = app
        .wait_status("charge", WAIT, |s| matches!(s, LoopState::Paused { .. }))
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

    kv.restart().await.expect("kv restarted");
    app.wait_status("charge", WAIT, LoopState::is_receiving)
        .await
        .expect("receiving again");
    ledger
        .wait_until(WAIT, "every event handled", |_| {
            effects(&ledger).len() == 100
        })
        .await;
    let stats = app.stats("charge").expect("stats");
    let dead = jetflow::dlq::list(app.bus()).await.unwrap_or_default();
    app.stop().await.expect("stops");
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert_once(&ledger, 100);
}
