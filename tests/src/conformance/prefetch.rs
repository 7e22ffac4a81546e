//! The prefetch buffer: messages received ahead of a slow handler never
//! reach their ack wait while they wait, are handled in order at
//! concurrency 1, and are given back when the app stops.

use std::io::Write as _;
use std::time::Duration;

use jetflow::prelude::*;

use super::{Broker, Job, Kind, job, settled, state, wait_stats};
use crate::{Ledger, WAIT};

const BUFFERED: usize = 12;

#[handler(group = "buffered", ack_wait = "1s", prefetch = 16)]
async fn slow_behind_a_buffer(
    j: Job,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Twelve messages buffered in front of a 300ms handler with a 1s ack
/// wait: the last waits about 3.3s (3.3x ack_wait) in the buffer. Progress
/// signals keep every one to a single delivery, handled in publish order.
pub async fn prefetched_messages_never_expire(b: Broker) {
    if !b.supports(
        "prefetched_messages_never_expire",
        "progress signals",
        |c| c.progress,
    ) {
        return;
    }
    let ledger = Ledger::default();
    let app = b.start(&ledger, slow_behind_a_buffer).await;
    let keys: Vec<String> = (0..BUFFERED).map(|i| format!("k{i:02}")).collect();
    for key in &keys {
        app.bus().publish(&job(key.clone())).await.expect("publish");
    }
    let stats = wait_stats(&app, "slow_behind_a_buffer", |s| s.acked >= BUFFERED as u64).await;
    let s = settled(&app, "JOB", "buffered--job", BUFFERED as u64).await;
    app.stop().await.expect("stops");

    assert_eq!(stats.received, BUFFERED as u64, "no message came twice");
    assert_eq!(s.num_redelivered, 0);
    let entries = ledger.entries();
    let order: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(order, keys, "handled once each, in publish order");
    assert!(
        entries.iter().all(|e| e.delivered == 1),
        "every message on its first delivery: {entries:?}"
    );
}

#[handler(group = "drained", ack_wait = "1h", prefetch = 64)]
async fn slow_drain(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// A graceful stop gives the buffered messages back for immediate
/// redelivery: the next app handles them at once, not after the one-hour
/// ack wait (longer than any wait of the test).
pub async fn stop_gives_the_buffer_back(b: Broker) {
    if !b.can_fault(
        "stop_gives_the_buffer_back",
        &[(
            Kind::Kafka,
            "a Kafka group reports no count of records in flight in its members (num_ack_pending)",
        )],
    ) {
        return;
    }
    const N: usize = 20;
    let ledger = Ledger::default();
    let first = b
        .app("t")
        .state(ledger.tagged("first"))
        .handler(slow_drain)
        .start()
        .await
        .expect("first app");
    // nats-server 2.9 keeps the stopped app's waiting pull request until it
    // next delivers to it: what the stop gives back can land there.
    if !first.bus().capabilities().give_back {
        let _ = writeln!(
            std::io::stderr(),
            "conformance: skipping stop_gives_the_buffer_back: the server cannot take messages \
             back at once (nats-server older than 2.10)"
        );
        first.stop().await.expect("first stops");
        return;
    }
    for i in 0..N {
        first
            .bus()
            .publish(&job(format!("k{i:02}")))
            .await
            .expect("publish");
    }
    ledger
        .wait_until(WAIT, "first delivery", |e| !e.is_empty())
        .await;
    // The buffer fills while the first call runs (asynchronously: wait for it).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let before = state(&first, "JOB", "drained--job").await;
        if before.num_ack_pending > 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages wait in the buffer while the handler runs: {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.stop().await.expect("first stops");
    let by_first = ledger.entries().len();
    assert!(by_first < N, "the first app stopped before handling all");

    let second = b
        .app("t")
        .state(ledger.tagged("second"))
        .handler(slow_drain)
        .start()
        .await
        .expect("second app");
    wait_stats(&second, "slow_drain", |s| s.acked >= (N - by_first) as u64).await;
    settled(&second, "JOB", "drained--job", N as u64).await;
    second.stop().await.expect("second stops");

    assert_eq!(ledger.distinct(), N, "every message handled");
    assert_eq!(ledger.entries().len(), N, "each once");
    let second_entries: Vec<_> = ledger
        .entries()
        .into_iter()
        .filter(|e| e.replica == "second")
        .collect();
    // Given back: their second delivery. (Messages the broker had not yet
    // sent to the first app's buffer come on their first.)
    assert!(
        second_entries.iter().any(|e| e.delivered == 2)
            && second_entries.iter().all(|e| e.delivered <= 2),
        "the second app got the given-back messages at once: {second_entries:?}"
    );
}
