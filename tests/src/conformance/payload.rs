//! Payloads and headers arrive intact, many publishers lose nothing,
//! subjects do not leak into each other's consumers.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use jetflow::prelude::*;

use super::{Broker, Job, job, settled, wait_stats};
use crate::{Ledger, WAIT};

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

/// A typed event and a foreign producer's raw message arrive with payload and headers intact.
pub async fn payload_and_headers_intact(b: Broker) {
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
    if b.kind.jetstream_wire() {
        // the dedup id is the event id
        assert_eq!(h(h1, "Nats-Msg-Id"), h(h1, "ce-id"));
    }
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
    if b.kind.jetstream_wire() {
        assert_eq!(h(h2, "Nats-Msg-Id").as_deref(), Some("foreign-7"));
    }
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

/// 16 concurrent publishers x 1000 events: every publish stored once, every event handled once.
pub async fn parallel_publishers_all_received(b: Broker) {
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

/// A pipelined batch of 1000 events (one repeated): PubAcks in push order
/// with increasing sequences, the repeat reported as a duplicate, every
/// stored event handled once.
pub async fn batch_publish_pipelined(b: Broker) {
    const N: usize = 1000;
    let ledger = Ledger::default();
    let app = b.start(&ledger, sink).await;
    let mut batch = app.bus().batch();
    for i in 0..N {
        batch.push(&job(format!("b-{i}"))).expect("encodes");
    }
    batch.push(&job("b-7")).expect("encodes"); // same event id as #7
    assert_eq!(batch.len(), N + 1);
    let acks = batch.send().await.expect("every event stored");
    assert_eq!(acks.len(), N + 1, "one PubAck per event");
    let seqs: Vec<u64> = acks[..N].iter().map(|a| a.sequence).collect();
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "stored in push order"
    );
    assert!(acks[..N].iter().all(|a| !a.duplicate));
    let last = &acks[N];
    if b.supports("batch duplicate detection", "dedup", |c| c.dedup) {
        assert!(
            last.duplicate,
            "the repeated event id is a duplicate: {last:?}"
        );
        assert_eq!(last.sequence, 8, "reported at the original's sequence");
    }
    wait_stats(&app, "sink", |s| s.acked >= N as u64).await;
    settled(&app, "JOB", "sink--job", N as u64).await;
    app.stop().await.expect("stops");
    assert_eq!(ledger.distinct(), N, "every event handled");
    // without dedup, the repeat is stored (and handled) a second time
    let stored = if b.kind.capabilities().dedup {
        N
    } else {
        N + 1
    };
    assert_eq!(
        ledger.entries().len(),
        stored,
        "and each stored event exactly once"
    );
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

/// Consumers of three subjects (two in one stream) each see only their own subject.
pub async fn subjects_are_isolated(b: Broker) {
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
