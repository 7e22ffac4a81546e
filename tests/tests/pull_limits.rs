//! A durable whose pull-request limits are tighter than what jetflow asks
//! for (a consumer an operator made, bound with `BindOnly`): at most 2
//! messages per request, requests that wait at most 2 s, and one waiting
//! request for all replicas together. The server refuses every request
//! over a limit with a `409`; the subscription learns the limit and asks
//! within it (it reads them from the consumer's info when subscribing, and
//! learns them from a refusal otherwise), backs off while the waiting queue
//! is full, and never re-asks in a tight loop. Every event is handled.

use std::time::Duration;

use futures_util::StreamExt;
use jetflow::LoopState;
use jetflow::prelude::*;
use jetflow::topology::TopologyPolicy;
use jetflow_tests::{Ledger, WAIT, server};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Drip {
    key: String,
}

#[handler(group = "sink", concurrency = 4)]
async fn sink(d: Drip, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&d.key, &ctx);
    Ok(())
}

const EVENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tight_request_limits_are_learned_and_never_hammered() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = |ledger: &Ledger, policy| {
        App::new("t")
            .url(server.url())
            .state(ledger.clone())
            .handler(sink)
            .topology_policy(policy)
            .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
            .start()
    };

    // Provision, then let an operator recreate the durable with limits.
    app(&ledger, TopologyPolicy::default())
        .await
        .expect("provisions")
        .stop()
        .await
        .expect("stops");
    let admin = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let stream = admin.get_stream("DRIP").await.unwrap();
    let mut config = stream
        .consumer_info("sink--drip")
        .await
        .unwrap()
        .config
        .clone();
    stream.delete_consumer("sink--drip").await.unwrap();
    config.max_batch = 2;
    config.max_expires = Duration::from_secs(2);
    config.max_waiting = 1;
    stream.create_consumer(config).await.unwrap();

    let watcher = async_nats::connect(server.url()).await.unwrap();
    let mut requests = watcher
        .subscribe("$JS.API.CONSUMER.MSG.NEXT.DRIP.sink--drip")
        .await
        .unwrap();
    watcher.flush().await.unwrap();

    let replicas = [
        app(&ledger.tagged("a"), TopologyPolicy::BindOnly)
            .await
            .expect("binds"),
        app(&ledger.tagged("b"), TopologyPolicy::BindOnly)
            .await
            .expect("binds"),
    ];
    for i in 0..EVENTS {
        replicas[0]
            .bus()
            .publish(&Drip {
                key: format!("d{i}"),
            })
            .await
            .unwrap();
    }
    ledger
        .wait_until(WAIT, "every event handled", |_| ledger.distinct() == EVENTS)
        .await;

    // Drained: count the requests of a quiet window. Refused requests are
    // asked again after a growing pause and accepted ones wait 2 s, so a
    // few a second; asking again at once would be thousands.
    let mut during_run = 0usize;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), requests.next()).await {
        during_run += 1;
    }
    let window = Duration::from_secs(3);
    let mut quiet = 0usize;
    let _ = tokio::time::timeout(window, async {
        while requests.next().await.is_some() {
            quiet += 1;
        }
    })
    .await;
    let states: Vec<LoopState> = replicas
        .iter()
        .map(|r| r.status()[0].state.clone())
        .collect();
    for r in replicas {
        r.stop().await.expect("stops");
    }
    eprintln!(
        "pull requests: {during_run} while {EVENTS} events flowed, {quiet} in a quiet {window:?}"
    );

    let entries = ledger.entries();
    assert_eq!(ledger.distinct(), EVENTS, "nothing lost");
    for key in (0..EVENTS).map(|i| format!("d{i}")) {
        let deliveries: Vec<u64> = ledger.of(&key).iter().map(|e| e.delivered).collect();
        let mut distinct = deliveries.clone();
        distinct.dedup();
        assert_eq!(distinct, deliveries, "{key} handled twice in one delivery");
    }
    assert!(entries.len() >= EVENTS);
    // With one waiting request for both, one replica's request waits and
    // the other's is refused (2.9: a `409`; newer servers drop it silently
    // and the missing heartbeats tell): that replica asks again after a
    // pause. It may still be `Starting` (none of its requests was taken
    // yet: its peer held the only slot the whole run) or `Recovering`;
    // neither replica gives up, and at least one receives.
    assert!(
        states.iter().all(|s| matches!(
            s,
            LoopState::Receiving | LoopState::Recovering { .. } | LoopState::Starting
        )),
        "both replicas still consuming: {states:?}"
    );
    assert!(
        states.iter().any(LoopState::is_receiving),
        "one replica holds the waiting slot and receives: {states:?}"
    );
    assert!(
        quiet < 60,
        "{quiet} pull requests in {window:?} while idle: the subscription re-asks in a loop"
    );
}
