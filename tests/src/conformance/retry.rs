//! Retries with the backoff delay, decode failures and rejects to the DLQ
//! without retry, panics caught, max_deliver then exactly one DLQ record.

use std::time::Duration;

use jetflow::prelude::*;

use super::{Broker, Job, Kind, job, settled, wait_stats};
use crate::{Ledger, dead_letters};

// ------------------------------------------------------- nak, redelivery

#[handler(group = "flaky", max_deliver = 4, backoff = "300ms, 600ms")]
async fn fails_twice(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    if ctx.delivered() < 3 {
        return Err(HandlerError::retry("downstream unavailable"));
    }
    Ok(())
}

/// A retryable failure comes back after the backoff delay, never earlier, until it succeeds.
pub async fn nak_then_redelivery(b: Broker) {
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

/// Truncated JSON and wrong types go to the DLQ at once; the handler is never called.
pub async fn undecodable_payload_dead_lettered_without_retry(b: Broker) {
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

/// A panic is caught and retried after its delay while other events keep flowing.
pub async fn panic_caught_and_retried_while_others_flow(b: Broker) {
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

// --------------------------------------------------- max_deliver -> DLQ

#[handler(group = "doomed", max_deliver = 3, backoff = "100ms")]
async fn always_fails(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    Err(HandlerError::retry(format!(
        "attempt {} failed",
        ctx.delivered()
    )))
}

/// An always-failing handler gets exactly max_deliver attempts, then one DLQ record with payload, headers and the last error.
pub async fn max_deliver_then_dlq(b: Broker) {
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

/// A rejected message without dead-lettering is never delivered again.
pub async fn term_stops_redelivery(b: Broker) {
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

// ------------------------------------------- DLQ refuses the last delivery

#[handler(group = "stranded", max_deliver = 2, backoff = "50ms")]
async fn fails_until_dead(
    j: Job,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    Err(HandlerError::retry(format!(
        "attempt {} failed",
        ctx.delivered()
    )))
}

/// The DLQ refuses the copy at the last delivery: the message is not
/// stranded. It stays in its stream and comes back, the copy is tried
/// again at each delivery (the handler is not called again), and once the
/// DLQ accepts it the record carries the handler's last error and the
/// original is terminated.
pub async fn dlq_refused_at_last_delivery_is_not_stranded(b: Broker) {
    if !b.can_fault(
        "dlq_refused_at_last_delivery_is_not_stranded",
        &[
            (
                Kind::Kafka,
                "the test kit cannot make the DLQ topic refuse writes",
            ),
            (
                Kind::RabbitMq,
                "the DLQ is a RabbitMQ stream, which has no limit that refuses a publish",
            ),
        ],
    ) {
        return;
    }
    if !b.supports(
        "dlq_refused_at_last_delivery_is_not_stranded",
        "redelivery",
        |c| c.redelivery,
    ) {
        return;
    }
    let ledger = Ledger::default();
    let app = b.start(&ledger, fails_until_dead).await;
    b.refuse_dead_letters(true).await;
    app.bus().publish(&job("s")).await.expect("publish");
    // the copy refused at the last delivery and again at a redelivery
    let refused = wait_stats(&app, "fails_until_dead", |s| s.dead_letter_failed >= 2).await;
    assert_eq!(refused.dead_lettered, 0, "{refused:?}");
    let ours = |d: &[jetflow::dlq::DeadLetter]| d.iter().filter(|d| d.group == "stranded").count();
    assert_eq!(
        ours(&jetflow::dlq::list(app.bus()).await.unwrap_or_default()),
        0,
        "nothing reached the refusing DLQ"
    );
    b.refuse_dead_letters(false).await;
    let stats = wait_stats(&app, "fails_until_dead", |s| s.dead_lettered >= 1).await;
    settled(&app, "JOB", "stranded--job", 1).await;
    let dead = jetflow::dlq::list(app.bus()).await.expect("DLQ readable");
    app.stop().await.expect("stops");
    assert_eq!(
        ledger
            .of("s")
            .iter()
            .map(|e| e.delivered)
            .collect::<Vec<_>>(),
        vec![1, 2],
        "the handler runs max_deliver times, never for a delivery past it"
    );
    assert!(stats.received >= 4, "redelivered while refused: {stats:?}");
    let dead: Vec<_> = dead.into_iter().filter(|d| d.group == "stranded").collect();
    assert_eq!(dead.len(), 1, "one DLQ record: {dead:?}");
    assert_eq!(
        dead[0].error,
        "failed on delivery 2 of max_deliver 2: attempt 2 failed"
    );
    assert_eq!(&dead[0].payload[..], br#"{"key":"s"}"#);
}
