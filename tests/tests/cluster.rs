//! A 3-node cluster with an R3 stream under load: concurrent publishers,
//! two replicas of one consumer group; the consumer's leader is killed,
//! then the stream's. Consumption resumes by itself after each election,
//! every acknowledged publish is handled (a second handling is counted:
//! at least once allows it after a leader dies).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetflow::prelude::*;
use jetflow::testing::NatsCluster;
use jetflow::topology::StreamSettings;
use jetflow_tests::{Ledger, WAIT, eventually, init_tracing};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Vote {
    key: String,
}

#[handler(group = "tally", concurrency = 8, ack_wait = "5s")]
async fn tally(v: Vote, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&v.key, &ctx);
    Ok(())
}

const PUBLISHERS: usize = 4;

/// Kills node `i`, waits until `what` has a leader again among the other
/// two, then restarts `i` and waits for its quorum.
async fn fail_over(
    cluster: &mut NatsCluster,
    i: usize,
    what: &str,
    leader: impl AsyncFn(&NatsCluster) -> Option<usize>,
) {
    cluster.kill(i).await.expect("node killed");
    let new = eventually(WAIT, &format!("a new leader of {what}"), || async {
        leader(cluster).await.filter(|l| *l != i)
    })
    .await;
    eprintln!("cluster: {what}: node {i} killed, node {new} leads");
    cluster.restart(i).await.expect("node restarted");
    cluster
        .wait_for_quorum()
        .await
        .expect("the cluster is whole again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_stream_survives_killing_the_consumer_leader_then_the_stream_leader() {
    init_tracing();
    let mut cluster = tokio::time::timeout(WAIT, NatsCluster::start())
        .await
        .expect("the cluster starts in time")
        .expect("the cluster starts");
    let ledger = Ledger::default();
    let mut settings = StreamSettings::default();
    settings.replicas = 3;
    let replica = |name: &str| {
        App::new("t")
            .url(cluster.url())
            .state(ledger.tagged(name))
            .handler(tally)
            .stream_settings(settings.clone())
            .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
            .start()
    };
    let one = replica("one").await.unwrap();
    let two = replica("two").await.unwrap();

    // Publishers run through both elections, each retrying a failed
    // publish with the same event id (the key) until it is acknowledged;
    // the stream dedups what an election made them send twice.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        let (bus, acked, done) = (one.bus().clone(), acked.clone(), done.clone());
        publishers.spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let key = format!("vote-{p}-{i}");
                let vote = Vote { key: key.clone() };
                eventually(WAIT, "publish acked", || async {
                    bus.publish(&vote).await.ok()
                })
                .await;
                acked.lock().expect("acked").push(key);
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    ledger
        .wait_until(WAIT, "consumption under way", |e| e.len() >= 200)
        .await;

    // leaders move while a restarted node catches up: ask until one answers
    let consumer = eventually(WAIT, "the consumer has a leader", || {
        cluster.consumer_leader("VOTE", "tally--vote")
    })
    .await;
    fail_over(
        &mut cluster,
        consumer,
        "the consumer",
        async |c: &NatsCluster| c.consumer_leader("VOTE", "tally--vote").await,
    )
    .await;
    let stream = eventually(WAIT, "the stream has a leader", || {
        cluster.stream_leader("VOTE")
    })
    .await;
    fail_over(
        &mut cluster,
        stream,
        "the stream",
        async |c: &NatsCluster| c.stream_leader("VOTE").await,
    )
    .await;

    // some more load after the second election
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::Relaxed);
    while let Some(r) = publishers.join_next().await {
        r.unwrap();
    }
    let acked: BTreeSet<String> = acked.lock().expect("acked").iter().cloned().collect();
    ledger
        .wait_until(
            Duration::from_secs(120),
            "every acked publish handled",
            |_| ledger.distinct() >= acked.len(),
        )
        .await;
    one.stop().await.ok();
    two.stop().await.ok();

    let entries = ledger.entries();
    let handled: BTreeSet<String> = entries.iter().map(|e| e.key.clone()).collect();
    assert_eq!(handled, acked, "every acked publish handled, nothing else");
    // A second handling is legal (at least once): a leader killed before it
    // replicated a delivery or an ack lets the next leader deliver again,
    // possibly with the same count. It is counted, not refused.
    let mut by_key: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &entries {
        *by_key.entry(e.key.as_str()).or_default() += 1;
    }
    let again = by_key.values().filter(|n| **n > 1).count();
    let replicas: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.replica.as_str()).collect();
    eprintln!(
        "cluster: {} acked publishes, {} handlings ({again} events handled more than once), by {replicas:?}",
        acked.len(),
        entries.len(),
    );
}
