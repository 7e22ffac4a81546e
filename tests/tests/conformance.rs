//! One set of delivery scenarios, written once and run against both
//! transports: a real nats-server (`nats::*`) and the embedded broker
//! (`memory::*`). A scenario that behaved differently on the two would be a
//! bug of the embedded broker; where it cannot match JetStream by design
//! (server kill, pause, network faults: there is no server process or
//! network), the scenario lives in the NATS-only tests and README.md lists
//! the differences.
//!
//! The oracle is the ledger of (event key, stream sequence, delivery count)
//! that every handler writes, plus the broker's consumer counts.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetflow::prelude::*;
use jetflow::testing::NatsServer;
use jetflow::topology::ConsumerState;
use jetflow::{AppHandle, HandlerStats};
use jetflow_tests::{Ledger, WAIT, dead_letters};

/// The transport a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nats,
    Memory,
}

/// A private broker for one scenario: a nats-server process, or an
/// embedded broker with a name no other test uses.
struct Broker {
    kind: Kind,
    url: String,
    _server: Option<NatsServer>,
}

impl Broker {
    async fn new(kind: Kind, test: &str) -> Broker {
        match kind {
            Kind::Nats => {
                let server = jetflow_tests::server().await;
                Broker {
                    kind,
                    url: server.url(),
                    _server: Some(server),
                }
            }
            Kind::Memory => {
                jetflow_tests::init_tracing();
                Broker {
                    kind,
                    url: jetflow::testing::memory_url(test),
                    _server: None,
                }
            }
        }
    }

    fn app(&self, name: &str) -> App {
        App::new(name).url(&self.url)
    }

    async fn start<H: Handler>(&self, ledger: &Ledger, handler: H) -> AppHandle {
        self.app("t")
            .state(ledger.clone())
            .handler(handler)
            .start()
            .await
            .expect("app starts")
    }
}

async fn state(app: &AppHandle, stream: &str, durable: &str) -> ConsumerState {
    app.bus()
        .consumer_state(stream, durable)
        .await
        .expect("consumer state readable")
}

/// Waits until the consumer reports everything up to `floor` settled and
/// nothing pending or unacknowledged.
async fn settled(app: &AppHandle, stream: &str, durable: &str, floor: u64) -> ConsumerState {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = state(app, stream, durable).await;
        if s.ack_floor >= floor && s.num_ack_pending == 0 && s.num_pending == 0 {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {stream}/{durable} to settle up to {floor}; it reports {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_stats(
    app: &AppHandle,
    handler: &str,
    done: impl FnMut(&HandlerStats) -> bool,
) -> HandlerStats {
    app.wait_stats(handler, WAIT, done)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs each scenario once per transport.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Broker::new(super::Kind::Nats, stringify!($scenario)).await).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Broker::new(super::Kind::Memory, stringify!($scenario)).await).await;
                }
            )*
        }
    };
}

conformance!(
    payload_and_headers_intact,
    parallel_publishers_all_received,
    subjects_are_isolated,
    nak_then_redelivery,
    undecodable_payload_dead_lettered_without_retry,
    panic_caught_and_retried_while_others_flow,
    ack_wait_expiry_redelivers,
    max_deliver_then_dlq,
    term_stops_redelivery,
    in_progress_keeps_one_delivery,
    groups_fan_out,
    replicas_compete,
    close_and_reopen_loses_nothing,
    order_preserved_with_one_worker,
);

// ---------------------------------------------------------------- events

/// A job keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Job {
    key: String,
}

fn job(key: impl Into<String>) -> Job {
    Job { key: key.into() }
}

/// An event with a payload worth checking byte for byte.
#[event(version = "v1")]
#[derive(Debug, Clone, PartialEq)]
pub struct Parcel {
    key: String,
    note: String,
    weight_grams: u64,
    tags: Vec<String>,
    fragile: Option<bool>,
}

/// What `receive_parcel` saw: the event and the headers it came with.
#[derive(Clone, Default)]
struct Parcels(Arc<Mutex<Vec<(Parcel, Headers, String)>>>);

#[handler(group = "post")]
async fn receive_parcel(
    p: Parcel,
    ctx: Context,
    State(seen): State<Parcels>,
) -> Result<(), HandlerError> {
    let subject = ctx.subject().to_owned();
    seen.0
        .lock()
        .expect("poisoned")
        .push((p, ctx.headers().clone(), subject));
    Ok(())
}

async fn payload_and_headers_intact(b: Broker) {
    let seen = Parcels::default();
    let app = b
        .app("parcels")
        .state(seen.clone())
        .handler(receive_parcel)
        .start()
        .await
        .expect("app starts");
    let typed = Parcel {
        key: "p-1".into(),
        note: "fragile: \"glass\" \u{1F4E6} ünïcödé\nsecond line".into(),
        weight_grams: u64::MAX,
        tags: vec!["a".into(), String::new(), "c d".into()],
        fragile: None,
    };
    app.bus().publish(&typed).await.expect("typed publish");
    // a foreign producer: its own headers, JSON written by hand
    let mut headers = Headers::new();
    headers.insert("ce-id", "foreign-7");
    headers.insert("x-tenant", "acme");
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    let raw = r#"{"key":"p-2","note":"","weight_grams":0,"tags":[],"fragile":true}"#;
    app.bus()
        .publish_raw("parcel.v1", headers, raw.into())
        .await
        .expect("raw publish");

    app.wait_stats("receive_parcel", WAIT, |s| s.acked >= 2)
        .await
        .expect("both parcels handled");
    let got = seen.0.lock().expect("poisoned").clone();
    app.stop().await.expect("stops");
    assert_eq!(got.len(), 2, "each parcel handled once");
    let (first, h1, subject1) = &got[0];
    assert_eq!(first, &typed);
    assert_eq!(subject1, "parcel.v1");
    let h = |m: &Headers, k: &str| m.get(k).map(str::to_owned);
    assert_eq!(h(h1, "ce-type").as_deref(), Some("parcel.v1"));
    assert_eq!(h(h1, "ce-source").as_deref(), Some("parcels"));
    assert_eq!(h(h1, "ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(h(h1, "content-type").as_deref(), Some("application/json"));
    assert_eq!(h(h1, "Nats-Msg-Id"), h(h1, "ce-id"));
    let (second, h2, _) = &got[1];
    assert_eq!(
        second,
        &Parcel {
            key: "p-2".into(),
            note: String::new(),
            weight_grams: 0,
            tags: vec![],
            fragile: Some(true),
        }
    );
    assert_eq!(h(h2, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(h(h2, "ce-id").as_deref(), Some("foreign-7"));
    assert_eq!(h(h2, "Nats-Msg-Id").as_deref(), Some("foreign-7"));
    assert_eq!(
        h(h2, "traceparent").as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
}

// ------------------------------------------------------ many publishers

#[handler(group = "sink", concurrency = 64)]
async fn sink(j: Job, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&j.key, &ctx);
    Ok(())
}

async fn parallel_publishers_all_received(b: Broker) {
    const PUBLISHERS: usize = 16;
    const EACH: usize = 1000;
    let ledger = Ledger::default();
    let app = b.start(&ledger, sink).await;
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = app.bus().clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let ack = bus
                    .publish(&job(format!("{p}-{i}")))
                    .await
                    .expect("publish");
                seqs.push(ack.sequence);
            }
            seqs
        }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        seqs.extend(t.await.expect("publisher task"));
    }
    let total = (PUBLISHERS * EACH) as u64;
    assert_eq!(
        seqs.len() as u64,
        total,
        "every publish stored once, under its own sequence"
    );
    assert_eq!(seqs.last().copied(), Some(total));
    wait_stats(&app, "sink", |s| s.acked >= total).await;
    settled(&app, "JOB", "sink--job", total).await;
    app.stop().await.expect("stops");
    let entries = ledger.entries();
    assert_eq!(ledger.distinct() as u64, total, "every event handled");
    assert_eq!(entries.len() as u64, total, "and each exactly once");
}

// ------------------------------------------------------------- subjects

/// A test event of the `AlphaHappened` subject.
#[event(version = "v1", id = key)]
pub struct AlphaHappened {
    key: String,
}

/// A test event of the `AlphaOther` subject.
#[event(version = "v1", id = key)]
pub struct AlphaOther {
    key: String,
}

/// A test event of the `BetaHappened` subject.
#[event(version = "v1", id = key)]
pub struct BetaHappened {
    key: String,
}

#[handler(group = "iso")]
async fn on_alpha(
    e: AlphaHappened,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&format!("{}|{}", ctx.subject(), e.key), &ctx);
    Ok(())
}

#[handler(group = "iso")]
async fn on_alpha_other(
    e: AlphaOther,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&format!("{}|{}", ctx.subject(), e.key), &ctx);
    Ok(())
}

#[handler(group = "iso")]
async fn on_beta(
    e: BetaHappened,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&format!("{}|{}", ctx.subject(), e.key), &ctx);
    Ok(())
}

async fn subjects_are_isolated(b: Broker) {
    let (alpha, other, beta) = (Ledger::default(), Ledger::default(), Ledger::default());
    // three apps so that each handler writes to its own ledger
    let a = b
        .app("a")
        .state(alpha.clone())
        .handler(on_alpha)
        .start()
        .await
        .expect("a");
    let o = b
        .app("o")
        .state(other.clone())
        .handler(on_alpha_other)
        .start()
        .await
        .expect("o");
    let z = b
        .app("z")
        .state(beta.clone())
        .handler(on_beta)
        .start()
        .await
        .expect("z");
    for i in 0..10 {
        let k = i.to_string();
        a.bus()
            .publish(&AlphaHappened { key: k.clone() })
            .await
            .expect("publish");
        a.bus()
            .publish(&AlphaOther { key: k.clone() })
            .await
            .expect("publish");
        a.bus()
            .publish(&BetaHappened { key: k })
            .await
            .expect("publish");
    }
    wait_stats(&a, "on_alpha", |s| s.acked >= 10).await;
    wait_stats(&o, "on_alpha_other", |s| s.acked >= 10).await;
    wait_stats(&z, "on_beta", |s| s.acked >= 10).await;
    // Both alpha events share the ALPHA stream (20 interleaved messages).
    // Its two filtered consumers are not checked for an ack floor: under
    // load nats-server 2.9.10 sometimes reports one that never settles
    // there (seen twice in full-suite runs, never alone; 2.15.1 always
    // does). The acked counts above and the ledgers below say the same.
    settled(&z, "BETA", "iso--beta_happened", 10).await;
    for app in [a, o, z] {
        app.stop().await.expect("stops");
    }
    let only = |l: &Ledger, subject: &str| {
        let e = l.entries();
        assert_eq!(e.len(), 10, "{subject}: 10 deliveries, got {e:?}");
        assert!(
            e.iter().all(|e| e.key.starts_with(&format!("{subject}|"))),
            "{subject} handler saw other subjects: {e:?}"
        );
    };
    only(&alpha, "alpha.happened.v1");
    only(&other, "alpha.other.v1");
    only(&beta, "beta.happened.v1");
}

// ------------------------------------------------------- nak, redelivery

#[handler(group = "flaky", max_deliver = 4, backoff = "300ms, 600ms")]
async fn fails_twice(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    if ctx.delivered() < 3 {
        return Err(HandlerError::retry("downstream unavailable"));
    }
    Ok(())
}

async fn nak_then_redelivery(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, fails_twice).await;
    app.bus().publish(&job("n")).await.expect("publish");
    let stats = wait_stats(&app, "fails_twice", |s| s.acked >= 1).await;
    settled(&app, "JOB", "flaky--job", 1).await;
    app.stop().await.expect("stops");
    assert_eq!((stats.retried, stats.acked, stats.received), (2, 1, 3));
    let e = ledger.of("n");
    let d: Vec<(u64, u64)> = e.iter().map(|e| (e.seq, e.delivered)).collect();
    assert_eq!(
        d,
        vec![(1, 1), (1, 2), (1, 3)],
        "the same message, deliveries 1, 2, 3"
    );
    // the nak delay is the backoff entry for the delivery: never earlier
    for (i, min) in [(1, 300), (2, 600)] {
        let gap = e[i].at - e[i - 1].at;
        assert!(
            gap >= Duration::from_millis(min),
            "delivery {} came {gap:?} after the previous one, before the {min}ms backoff",
            i + 1
        );
    }
}

// -------------------------------------------- undecodable payload, panic

#[handler(group = "strict")]
async fn never_called(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    Ok(())
}

async fn undecodable_payload_dead_lettered_without_retry(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, never_called).await;
    let bus = app.bus();
    bus.publish_raw("job.v1", Headers::new(), r#"{"key": 42"#.into())
        .await
        .expect("truncated JSON stored");
    bus.publish_raw("job.v1", Headers::new(), r#"{"key": 42}"#.into())
        .await
        .expect("wrong type stored");
    let dead = dead_letters(bus, 2).await;
    let stats = wait_stats(&app, "never_called", |s| s.dead_lettered >= 2).await;
    settled(&app, "JOB", "strict--job", 2).await;
    app.stop().await.expect("stops");
    assert_eq!(
        (stats.received, stats.retried, stats.acked),
        (2, 0, 0),
        "no retry"
    );
    assert!(dead.iter().all(|d| d.delivered == 1), "no retry: {dead:?}");
    assert!(
        dead.iter().all(|d| d.error.contains("cannot be decoded")),
        "{dead:?}"
    );
    assert_eq!(&dead[0].payload[..], br#"{"key": 42"#);
    assert!(
        ledger.entries().is_empty(),
        "the handler must not be called"
    );
}

#[handler(group = "panicky", max_deliver = 3, backoff = "200ms")]
async fn panics_once(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    if j.key == "boom" && ctx.delivered() == 1 {
        panic!("bug in handler");
    }
    Ok(())
}

async fn panic_caught_and_retried_while_others_flow(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, panics_once).await;
    app.bus().publish(&job("boom")).await.expect("publish");
    for i in 0..5 {
        app.bus()
            .publish(&job(format!("ok{i}")))
            .await
            .expect("publish");
    }
    let stats = wait_stats(&app, "panics_once", |s| s.acked >= 6).await;
    settled(&app, "JOB", "panicky--job", 6).await;
    let dead = jetflow::dlq::list(app.bus()).await.expect("DLQ readable");
    app.stop().await.expect("stops");
    assert_eq!((stats.panicked, stats.retried, stats.acked), (1, 1, 6));
    let boom = ledger.of("boom");
    assert_eq!(
        boom.iter().map(|e| e.delivered).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(boom[1].at - boom[0].at >= Duration::from_millis(200));
    for i in 0..5 {
        assert_eq!(ledger.of(&format!("ok{i}")).len(), 1);
    }
    assert!(
        dead.is_empty(),
        "a panic is retryable, not a dead letter: {dead:?}"
    );
}

// ------------------------------------------------------ ack_wait expiry

/// `true` in the first app: the handler never returns (as if the process
/// hung, then crashed).
#[derive(Clone)]
struct Hang(bool);

#[handler(group = "expiry", ack_wait = "2s")]
async fn maybe_hang(
    j: Job,
    ctx: Context,
    State(l): State<Ledger>,
    State(hang): State<Hang>,
) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    if hang.0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

async fn ack_wait_expiry_redelivers(b: Broker) {
    let ledger = Ledger::default();
    let first = b
        .app("t")
        .state(ledger.tagged("first"))
        .state(Hang(true))
        .handler(maybe_hang)
        .start()
        .await
        .expect("first app");
    first.bus().publish(&job("x")).await.expect("publish");
    ledger
        .wait_until(WAIT, "first delivery", |e| !e.is_empty())
        .await;
    // crash: no ack, no nak, no more progress acks
    first.abort();
    let second = b
        .app("t")
        .state(ledger.tagged("second"))
        .state(Hang(false))
        .handler(maybe_hang)
        .start()
        .await
        .expect("second app");
    wait_stats(&second, "maybe_hang", |s| s.acked >= 1).await;
    settled(&second, "JOB", "expiry--job", 1).await;
    second.stop().await.expect("stops");
    let d: Vec<(String, u64)> = ledger
        .of("x")
        .into_iter()
        .map(|e| (e.replica, e.delivered))
        .collect();
    assert_eq!(d, vec![("first".into(), 1), ("second".into(), 2)]);
}

// --------------------------------------------------- max_deliver -> DLQ

#[handler(group = "doomed", max_deliver = 3, backoff = "100ms")]
async fn always_fails(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    Err(HandlerError::retry(format!(
        "attempt {} failed",
        ctx.delivered()
    )))
}

async fn max_deliver_then_dlq(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, always_fails).await;
    app.bus().publish(&job("d")).await.expect("publish");
    let dead = dead_letters(app.bus(), 1).await;
    let stats = wait_stats(&app, "always_fails", |s| s.dead_lettered >= 1).await;
    settled(&app, "JOB", "doomed--job", 1).await;
    app.stop().await.expect("stops");
    assert_eq!(
        (stats.received, stats.retried, stats.dead_lettered),
        (3, 2, 1),
        "exactly max_deliver attempts, one dead letter"
    );
    assert_eq!(
        ledger
            .of("d")
            .iter()
            .map(|e| e.delivered)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!((d.subject.as_str(), d.stream.as_str()), ("job.v1", "JOB"));
    assert_eq!((d.sequence, d.delivered), (1, 3));
    assert_eq!(
        d.error,
        "failed on delivery 3 of max_deliver 3: attempt 3 failed"
    );
    assert_eq!(d.handler, "always_fails");
    assert_eq!(d.group, "doomed");
    assert_eq!(&d.payload[..], br#"{"key":"d"}"#);
    assert_eq!(d.headers.get("ce-type"), Some("job.v1"));
    assert_eq!(d.headers.get("ce-id"), Some("job.v1:d"));
}

// ------------------------------------------------------------------ term

#[handler(group = "final", dead_letter = false)]
async fn rejects(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    Err(HandlerError::reject("not for us"))
}

async fn term_stops_redelivery(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, rejects).await;
    app.bus().publish(&job("t1")).await.expect("publish");
    app.bus().publish(&job("t2")).await.expect("publish");
    let stats = wait_stats(&app, "rejects", |s| s.terminated >= 2).await;
    let s = settled(&app, "JOB", "final--job", 2).await;
    let dlq = jetflow::dlq::list(app.bus()).await;
    app.stop().await.expect("stops");
    assert_eq!(
        (stats.received, stats.retried, stats.dead_lettered),
        (2, 0, 0)
    );
    assert_eq!(s.num_redelivered, 0);
    assert_eq!(
        ledger.entries().len(),
        2,
        "each delivered once, never again"
    );
    assert!(
        dlq.is_err(),
        "no DLQ stream, dead-lettering is off: {dlq:?}"
    );
}

// ----------------------------------------------------------- in progress

#[handler(group = "slow", ack_wait = "1s")]
async fn takes_3x_ack_wait(
    j: Job,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

async fn in_progress_keeps_one_delivery(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, takes_3x_ack_wait).await;
    app.bus().publish(&job("slow")).await.expect("publish");
    let stats = wait_stats(&app, "takes_3x_ack_wait", |s| s.acked >= 1).await;
    let s = settled(&app, "JOB", "slow--job", 1).await;
    app.stop().await.expect("stops");
    assert_eq!(stats.received, 1, "progress acks kept it to one delivery");
    assert_eq!(s.num_redelivered, 0);
    assert_eq!(ledger.of("slow").len(), 1);
}

// ------------------------------------------------------ groups, replicas

#[handler(group = "billing")]
async fn billing(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&format!("billing|{}", j.key), &ctx);
    Ok(())
}

#[handler(group = "shipping")]
async fn shipping(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&format!("shipping|{}", j.key), &ctx);
    Ok(())
}

async fn groups_fan_out(b: Broker) {
    let ledger = Ledger::default();
    let app = b
        .app("t")
        .state(ledger.clone())
        .handler(billing)
        .handler(shipping)
        .start()
        .await
        .expect("app starts");
    for i in 0..50 {
        app.bus()
            .publish(&job(i.to_string()))
            .await
            .expect("publish");
    }
    wait_stats(&app, "billing", |s| s.acked >= 50).await;
    wait_stats(&app, "shipping", |s| s.acked >= 50).await;
    settled(&app, "JOB", "billing--job", 50).await;
    settled(&app, "JOB", "shipping--job", 50).await;
    app.stop().await.expect("stops");
    let entries = ledger.entries();
    assert_eq!(entries.len(), 100);
    for group in ["billing", "shipping"] {
        let keys: HashSet<String> = entries
            .iter()
            .filter_map(|e| e.key.strip_prefix(&format!("{group}|")).map(str::to_owned))
            .collect();
        assert_eq!(keys.len(), 50, "{group} got every event once");
    }
}

#[handler(group = "workers", concurrency = 4)]
async fn worker(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

async fn replicas_compete(b: Broker) {
    let ledger = Ledger::default();
    let one = b
        .app("t")
        .state(ledger.tagged("one"))
        .handler(worker)
        .start()
        .await
        .expect("one");
    let two = b
        .app("t")
        .state(ledger.tagged("two"))
        .handler(worker)
        .start()
        .await
        .expect("two");
    for i in 0..200 {
        one.bus()
            .publish(&job(i.to_string()))
            .await
            .expect("publish");
    }
    ledger
        .wait_until(WAIT, "200 handled", |e| e.len() >= 200)
        .await;
    settled(&one, "JOB", "workers--job", 200).await;
    one.stop().await.expect("stops");
    two.stop().await.expect("stops");
    let entries = ledger.entries();
    assert_eq!(
        entries.len(),
        200,
        "each event handled once across replicas"
    );
    assert_eq!(ledger.distinct(), 200);
    let by_one = entries.iter().filter(|e| e.replica == "one").count();
    assert!(
        by_one > 0 && by_one < 200,
        "both replicas of the group take part: one handled {by_one} of 200"
    );
}

// ------------------------------------------------- close and reopen x 5

#[handler(group = "reopen", concurrency = 8)]
async fn steady(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

async fn close_and_reopen_loses_nothing(b: Broker) {
    const N: usize = 500;
    let ledger = Ledger::default();
    let first = b.start(&ledger, steady).await;
    let bus = first.bus().clone();
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            bus.publish(&job(i.to_string())).await.expect("publish");
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut app = first;
    for round in 1..=5 {
        let before = ledger.entries().len();
        ledger
            .wait_until(WAIT, &format!("progress in round {round}"), |e| {
                e.len() > before
            })
            .await;
        app.stop().await.expect("graceful stop");
        app = b.start(&ledger, steady).await;
    }
    publisher.await.expect("publisher");
    ledger
        .wait_until(WAIT, "all handled", |e| e.len() >= N)
        .await;
    settled(&app, "JOB", "reopen--job", N as u64).await;
    app.stop().await.expect("stops");
    assert_eq!(ledger.distinct(), N, "nothing lost");
    let entries = ledger.entries();
    let twice: Vec<_> = entries
        .iter()
        .filter(|e| entries.iter().filter(|o| o.key == e.key).count() > 1)
        .collect();
    if b.kind == Kind::Memory {
        assert!(twice.is_empty(), "handled twice: {twice:?}");
    } else {
        // JetStream is at-least-once: a duplicate is legal only as a server
        // redelivery (seen once in ~15 runs on 2.9.10, never on 2.15.1),
        // never as two first deliveries, which would be jetflow's doing.
        let firsts = twice.iter().filter(|e| e.delivered == 1).count();
        assert!(
            firsts <= twice.len() / 2,
            "a message delivered once was handled twice: {twice:?}"
        );
    }
}

// ----------------------------------------------------------------- order

#[handler(group = "ordered", concurrency = 1)]
async fn in_order(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    Ok(())
}

async fn order_preserved_with_one_worker(b: Broker) {
    const N: u64 = 200;
    let ledger = Ledger::default();
    // a backlog first: declare the stream and consumer, stop, publish
    let app = b.start(&ledger, in_order).await;
    let bus = app.bus().clone();
    app.stop().await.expect("stops");
    for i in 0..N {
        bus.publish(&job(i.to_string())).await.expect("publish");
    }
    let app = b.start(&ledger, in_order).await;
    for i in N..2 * N {
        app.bus()
            .publish(&job(i.to_string()))
            .await
            .expect("publish");
    }
    ledger
        .wait_until(WAIT, "all handled", |e| e.len() as u64 >= 2 * N)
        .await;
    settled(&app, "JOB", "ordered--job", 2 * N).await;
    app.stop().await.expect("stops");
    let got: Vec<(u64, u64)> = ledger
        .entries()
        .iter()
        .map(|e| (e.key.parse().expect("numeric key"), e.seq))
        .collect();
    let expected: Vec<(u64, u64)> = (0..2 * N).map(|i| (i, i + 1)).collect();
    assert_eq!(got, expected, "publish order, one delivery each");
}
