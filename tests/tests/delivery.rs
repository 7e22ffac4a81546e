//! DESIGN.md §4 delivery semantics against a real nats-server: ack, retry
//! with delay, DLQ after max_deliver, undecodable payload, panic, progress.

use std::time::Duration;

use jetflow::prelude::*;
use jetflow_tests::{Ledger, WAIT, consumer_info, dead_letters, server, start};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Ping {
    key: String,
}

fn ping(key: &str) -> Ping {
    Ping {
        key: key.to_owned(),
    }
}

#[handler(group = "ok")]
async fn always_ok(
    p: Ping,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    Ok(())
}

#[tokio::test]
async fn ok_acks_once_and_nothing_is_redelivered() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, always_ok).await;
    for k in ["a", "b", "c"] {
        let ack = app.bus().publish(&ping(k)).await.unwrap();
        assert_eq!(ack.stream, "PING");
        assert!(!ack.duplicate);
    }
    ledger.wait_until(WAIT, "3 handled", |e| e.len() >= 3).await;
    let info = jetflow_tests::eventually(WAIT, "all acked on the server", || async {
        let i = consumer_info(&server.url(), "PING", "ok--ping").await;
        (i.ack_floor.stream_sequence == 3 && i.num_ack_pending == 0).then_some(i)
    })
    .await;
    assert_eq!(info.num_redelivered, 0);
    app.stop().await.unwrap();
    assert_eq!(
        ledger
            .entries()
            .iter()
            .map(|e| e.delivered)
            .collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
}

#[handler(group = "flaky", max_deliver = 4, backoff = "300ms, 600ms")]
async fn fails_twice(
    p: Ping,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    if ctx.delivered() < 3 {
        return Err(HandlerError::retry("downstream unavailable"));
    }
    Ok(())
}

#[tokio::test]
async fn retryable_error_naks_with_the_backoff_delay() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, fails_twice).await;
    app.bus().publish(&ping("r")).await.unwrap();
    ledger
        .wait_until(WAIT, "3 deliveries", |e| e.len() >= 3)
        .await;
    let e = ledger.of("r");
    assert_eq!(
        e.iter().map(|e| e.delivered).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        e[1].at - e[0].at >= Duration::from_millis(300),
        "first retry came after {:?}",
        e[1].at - e[0].at
    );
    assert!(
        e[2].at - e[1].at >= Duration::from_millis(600),
        "second retry came after {:?}",
        e[2].at - e[1].at
    );
    jetflow_tests::eventually(WAIT, "acked after success", || async {
        let i = consumer_info(&server.url(), "PING", "flaky--ping").await;
        (i.ack_floor.stream_sequence == 1 && i.num_ack_pending == 0).then_some(())
    })
    .await;
    app.stop().await.unwrap();
}

#[handler(group = "doomed", max_deliver = 3, backoff = "100ms")]
async fn always_fails(p: Ping, ctx: Context, State(ledger): State<Ledger>) -> anyhow::Result<()> {
    ledger.record(&p.key, &ctx);
    // Any error type works; `anyhow` errors are retryable.
    anyhow::bail!("warehouse rejected {}", p.key)
}

#[tokio::test]
async fn max_deliver_attempts_then_one_dlq_record_then_silence() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, always_fails).await;
    let ack = app.bus().publish(&ping("d")).await.unwrap();
    let dead = dead_letters(app.bus(), 1).await;
    // Nothing more arrives after the DLQ + term (wait well past the backoff).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let dead_after = jetflow::dlq::list(app.bus()).await.unwrap();
    assert_eq!(
        dead_after.len(),
        1,
        "exactly one DLQ record: {dead_after:?}"
    );
    assert_eq!(
        ledger
            .of("d")
            .iter()
            .map(|e| e.delivered)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let d = &dead[0];
    assert_eq!(d.subject, "ping.v1");
    assert_eq!(d.stream, "PING");
    assert_eq!(d.sequence, ack.sequence);
    assert_eq!(d.delivered, 3);
    assert_eq!(d.handler, "always_fails");
    assert_eq!(d.group, "doomed");
    assert!(
        d.error.contains("warehouse rejected d"),
        "error: {}",
        d.error
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&d.payload).unwrap()["key"],
        "d"
    );
    assert_eq!(
        d.headers.get("ce-id").map(|v| v.as_str()),
        Some("ping.v1:d")
    );
    let info = consumer_info(&server.url(), "PING", "doomed--ping").await;
    assert_eq!(info.num_ack_pending, 0, "terminated, not pending");
    app.stop().await.unwrap();
}

#[handler(group = "strict")]
async fn never_called(
    p: Ping,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    Ok(())
}

#[handler(group = "wild", subject = "ping.*")]
async fn any_version(
    p: Ping,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    Ok(())
}

#[tokio::test]
async fn a_newer_version_is_never_decoded_as_the_current_one() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, any_version).await;
    let js = async_nats::jetstream::new(app.bus().client().clone());
    // Same shape, so a careless consumer would decode it as v1.
    js.publish("ping.v2", "{\"key\": \"v2\"}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    app.bus().publish(&ping("v1")).await.unwrap();
    let dead = dead_letters(app.bus(), 1).await;
    ledger
        .wait_until(WAIT, "v1 handled", |e| !e.is_empty())
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subject, "ping.v2");
    assert_eq!(dead[0].delivered, 1);
    assert!(
        dead[0].error.contains("unsupported version v2"),
        "{}",
        dead[0].error
    );
    assert_eq!(
        ledger
            .entries()
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        vec!["v1"]
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn undecodable_payload_is_dead_lettered_without_retry() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, never_called).await;
    let js = async_nats::jetstream::new(app.bus().client().clone());
    js.publish("ping.v1", "{\"key\": 42".into())
        .await
        .unwrap()
        .await
        .unwrap(); // truncated JSON
    js.publish("ping.v1", "{\"key\": 42}".into())
        .await
        .unwrap()
        .await
        .unwrap(); // wrong type
    let dead = dead_letters(app.bus(), 2).await;
    assert!(dead.iter().all(|d| d.delivered == 1), "no retry: {dead:?}");
    assert!(
        dead.iter().all(|d| d.error.contains("cannot be decoded")),
        "{dead:?}"
    );
    assert_eq!(&dead[0].payload[..], b"{\"key\": 42");
    assert!(ledger.entries().is_empty(), "handler must not be called");
    app.stop().await.unwrap();
}

#[handler(group = "panicky", max_deliver = 3, backoff = "200ms")]
async fn panics_once(
    p: Ping,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    if p.key == "boom" && ctx.delivered() == 1 {
        panic!("bug in handler");
    }
    Ok(())
}

#[tokio::test]
async fn panic_is_caught_and_retried_while_others_flow() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, panics_once).await;
    app.bus().publish(&ping("boom")).await.unwrap();
    for i in 0..5 {
        app.bus().publish(&ping(&format!("ok{i}"))).await.unwrap();
    }
    ledger
        .wait_until(WAIT, "boom retried and 5 others handled", |e| e.len() >= 7)
        .await;
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
        jetflow::dlq::list(app.bus())
            .await
            .map(|d| d.is_empty())
            .unwrap_or(true)
    );
    app.stop().await.unwrap();
}

#[handler(group = "slow", ack_wait = "1s")]
async fn runs_three_ack_waits(
    p: Ping,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

#[tokio::test]
async fn progress_acks_keep_a_long_handler_to_one_delivery() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, runs_three_ack_waits).await;
    app.bus().publish(&ping("long")).await.unwrap();
    jetflow_tests::eventually(WAIT, "acked", || async {
        let i = consumer_info(&server.url(), "PING", "slow--ping").await;
        (i.ack_floor.stream_sequence == 1).then_some(())
    })
    .await;
    let i = consumer_info(&server.url(), "PING", "slow--ping").await;
    assert_eq!(
        i.num_redelivered, 0,
        "in-progress acks must prevent redelivery"
    );
    assert_eq!(ledger.of("long").len(), 1);
    app.stop().await.unwrap();
}
