//! Groups each get every event; replicas of a group share them.

use std::collections::HashSet;
use std::time::Duration;

use jetflow::prelude::*;

use super::{Broker, Job, Kind, job, settled, wait_stats};
use crate::{Ledger, WAIT};

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

/// Two groups each get every event once.
pub async fn groups_fan_out(b: Broker) {
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

// `prefetch = 0`: the embedded broker hands a backlog to whichever replica
// asks first, so a prefetching replica can take all of it; JetStream
// spreads it over the replicas' pull requests (README, embedded broker).
#[handler(group = "workers", concurrency = 4, prefetch = 0)]
async fn worker(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

/// Two replicas of one group share the events: both take part, each event handled once.
pub async fn replicas_compete(b: Broker) {
    if !b.can_fault(
        "replicas_compete",
        &[(
            Kind::Kafka,
            "a topic of one partition (the default) has one active member per group; replicas \
             share a partitioned topic (`?partitions=N`), tested in kafka_transport.rs",
        )],
    ) {
        return;
    }
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
