//! What is specific to the Kafka transport (the shared delivery scenarios
//! run in `conformance.rs`): per-key order over many partitions under
//! retries, a member joining a group mid-stream, offsets committed only up
//! to the handled watermark, and the refusals. Every test runs on its own
//! private tansu broker and is bounded in time.

use std::collections::HashMap;
use std::time::Duration;

use jetflow::prelude::*;
use jetflow_tests::{Ledger, WAIT, kafka_server};

/// One step of an account; its id is the account, so the account is the
/// partition key.
#[event(version = "v1", id = account)]
pub struct Move {
    account: String,
    n: u32,
}

const KEYS: u32 = 64;
const MOVES: u32 = 8;

#[handler(
    group = "moves",
    concurrency = 16,
    ordered_by = account,
    max_deliver = 5,
    backoff = "50ms"
)]
async fn apply_move(m: Move, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    // every fifth move fails on its first delivery
    if (m.n + m.account.len() as u32).is_multiple_of(5) && ctx.delivered() == 1 {
        return Err(HandlerError::retry("fails once"));
    }
    l.record(&format!("{}/{}", m.account, m.n), &ctx);
    Ok(())
}

fn account(i: u32) -> String {
    format!("acct-{i}")
}

/// The `n`s handled per account, in handling order.
fn per_account(ledger: &Ledger) -> HashMap<String, Vec<u32>> {
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    for e in ledger.entries() {
        let (acc, n) = e.key.split_once('/').expect("acct/n");
        seen.entry(acc.to_owned())
            .or_default()
            .push(n.parse().expect("a number"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_over_64_keys_at_concurrency_16_under_retries() {
    if jetflow_tests::skip_on_nats_floor(
        "per_key_order_holds_over_64_keys_at_concurrency_16_under_retries",
    ) {
        return;
    }
    let server = kafka_server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(format!("{}?partitions=8", server.url()))
        .state(ledger.clone())
        .handler(apply_move)
        .start()
        .await
        .expect("app starts");
    let mut batch = app.bus().batch();
    for n in 0..MOVES {
        for i in 0..KEYS {
            batch
                .push(&Move {
                    account: account(i),
                    n,
                })
                .expect("encodes");
        }
    }
    batch.send().await.expect("published");
    let total = u64::from(KEYS * MOVES);
    let stats = app
        .wait_stats("apply_move", WAIT, |s| s.acked >= total)
        .await
        .expect("all handled");
    app.stop().await.expect("stops");

    assert!(stats.retried > 0, "some moves were retried: {stats:?}");
    let seen = per_account(&ledger);
    assert_eq!(seen.len(), KEYS as usize);
    for (acc, ns) in seen {
        assert_eq!(
            ns,
            (0..MOVES).collect::<Vec<_>>(),
            "{acc}: each move once, in order"
        );
    }
}

/// A parcel keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Parcel {
    key: String,
}

#[handler(group = "parcels", concurrency = 4)]
async fn take_parcel(p: Parcel, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    l.record(&p.key, &ctx);
    Ok(())
}

/// A second member joins the group while the first is consuming: the
/// partitions are split between them, and every parcel is handled (some
/// perhaps twice: at least once), none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_stream_loses_nothing() {
    if jetflow_tests::skip_on_nats_floor("a_member_joining_mid_stream_loses_nothing") {
        return;
    }
    const PARCELS: usize = 400;
    let server = kafka_server().await;
    let ledger = Ledger::default();
    let start = |replica: &str| {
        App::new("t")
            .url(format!("{}?partitions=8", server.url()))
            .state(ledger.tagged(replica))
            .handler(take_parcel)
            .start()
    };
    let first = start("first").await.expect("first member starts");
    let publish = |range: std::ops::Range<usize>| {
        let bus = first.bus().clone();
        async move {
            for i in range {
                bus.publish(&Parcel {
                    key: format!("p{i}"),
                })
                .await
                .expect("published");
            }
        }
    };
    publish(0..PARCELS / 2).await;
    let second = start("second").await.expect("second member starts");
    publish(PARCELS / 2..PARCELS).await;
    ledger
        .wait_until(WAIT, "every parcel handled", |entries| {
            let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len() == PARCELS
        })
        .await;
    // the second member got partitions
    ledger
        .wait_until(WAIT, "the second member handled parcels", |entries| {
            entries.iter().any(|e| e.replica == "second")
        })
        .await;
    let state = first
        .bus()
        .consumer_state("PARCEL", "parcels--parcel")
        .await
        .expect("group state");
    second.stop().await.expect("second stops");
    first.stop().await.expect("first stops");
    assert!(state.num_pending <= PARCELS as u64, "{state:?}");
}

#[handler(group = "buffered", concurrency = 2)]
async fn buffered_parcel(
    p: Parcel,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    l.record(&p.key, &ctx);
    Ok(())
}

/// A rebalance takes partitions, and what the member had fetched of them
/// into its prefetch buffer, away from a member: the member drops those
/// buffered records instead of handling them (their commits would be void
/// and the new owner handles them). Only the records running at the
/// rebalance can be handled twice — at most the handler's concurrency per
/// member and rebalance — where handling the buffer would repeat dozens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_takes_back_what_a_member_buffered() {
    if jetflow_tests::skip_on_nats_floor("a_rebalance_takes_back_what_a_member_buffered") {
        return;
    }
    const PARCELS: usize = 160;
    let server = kafka_server().await;
    let ledger = Ledger::default();
    let start = |replica: &str| {
        App::new("t")
            .url(format!("{}?partitions=4", server.url()))
            .state(ledger.tagged(replica))
            .handler(buffered_parcel)
            .start()
    };
    let first = start("first").await.expect("first member starts");
    let mut batch = first.bus().batch();
    for i in 0..PARCELS {
        batch
            .push(&Parcel {
                key: format!("p{i}"),
            })
            .expect("encodes");
    }
    batch.send().await.expect("published");
    // the first member fetched them all into its buffer (prefetch 256)
    // and handles two at a time: 8 s of work alone
    ledger
        .wait_until(WAIT, "the first member is handling", |e| e.len() >= 4)
        .await;
    let second = start("second").await.expect("second member starts");
    ledger
        .wait_until(WAIT, "every parcel handled", |entries| {
            let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len() == PARCELS
        })
        .await;
    second.stop().await.expect("second stops");
    first.stop().await.expect("first stops");

    let entries = ledger.entries();
    let by_second = entries.iter().filter(|e| e.replica == "second").count();
    let repeated = entries.len() - PARCELS;
    eprintln!(
        "rebalance: {} handlings of {PARCELS} parcels ({by_second} by the member that joined), {repeated} repeated",
        entries.len()
    );
    assert!(by_second > 0, "the joining member got partitions");
    // two members, concurrency 2, and room for a second rebalance round
    assert!(
        repeated <= 8,
        "{repeated} parcels handled twice: a member handled records it had buffered from partitions the rebalance took"
    );
}

#[handler(group = "slow")]
async fn slow_parcel(p: Parcel, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&p.key, &ctx);
    if p.key == "hold" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    Ok(())
}

/// An app that crashes while an early record is unfinished leaves the
/// committed offset before it: the next member gets it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_never_pass_an_unfinished_record() {
    if jetflow_tests::skip_on_nats_floor("offsets_never_pass_an_unfinished_record") {
        return;
    }
    let server = kafka_server().await;
    let ledger = Ledger::default();
    let start = || {
        App::new("t")
            .url(format!("{}?partitions=8", server.url()))
            .state(ledger.clone())
            .handler(slow_parcel)
            .start()
    };
    let app = start().await.expect("app starts");
    // keyless ids would go to partition 0; these keys may land anywhere,
    // so wait for `hold` itself
    app.bus()
        .publish(&Parcel { key: "hold".into() })
        .await
        .expect("published");
    ledger
        .wait_until(WAIT, "hold is being handled", |e| {
            e.iter().any(|e| e.key == "hold")
        })
        .await;
    app.abort();
    let again = start().await.expect("app starts again");
    ledger
        .wait_until(WAIT, "hold delivered again after the crash", |e| {
            e.iter().filter(|e| e.key == "hold").count() >= 2
        })
        .await;
    again.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_and_a_missing_broker_are_explained() {
    if jetflow_tests::skip_on_nats_floor("a_bad_url_and_a_missing_broker_are_explained") {
        return;
    }
    let start = |url: &str| {
        App::new("t")
            .url(url)
            .state(Ledger::default())
            .handler(take_parcel)
            .start()
    };
    let err = start("kafka://u:secret@127.0.0.1:1")
        .await
        .expect_err("credentials are refused")
        .to_string();
    assert!(
        err.contains("kafka://host:port") && !err.contains("secret"),
        "{err}"
    );
    let err = tokio::time::timeout(WAIT, start("kafka://127.0.0.1:1"))
        .await
        .expect("gives up in time")
        .expect_err("nothing listens")
        .to_string();
    assert!(err.contains("no Kafka broker answered"), "{err}");
}

/// A stop while the broker is gone returns within the grace period, and
/// the runtime then shuts down: the members' last commits and their
/// consumers' close wait for the group coordinator, with no bound of their
/// own, on threads nothing waits for past the grace period (a
/// `spawn_blocking` there would hold the runtime's shutdown, so the
/// process's exit, for as long as the broker stays away).
#[test]
fn a_stop_with_the_broker_gone_ends_and_so_does_the_runtime() {
    if jetflow_tests::skip_on_nats_floor("a_stop_with_the_broker_gone_ends_and_so_does_the_runtime")
    {
        return;
    }
    const PARCELS: usize = 20;
    let grace = Duration::from_secs(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (took, stopped) = runtime.block_on(async {
        let mut server = kafka_server().await;
        let ledger = Ledger::default();
        let app = App::new("t")
            .url(format!("{}?partitions=4", server.url()))
            .shutdown_grace(grace)
            .state(ledger.clone())
            .handler(take_parcel)
            .start()
            .await
            .expect("app starts");
        for i in 0..PARCELS {
            app.bus()
                .publish(&Parcel {
                    key: format!("p{i}"),
                })
                .await
                .expect("published");
        }
        app.wait_stats("take_parcel", WAIT, |s| s.acked >= PARCELS as u64)
            .await
            .expect("all handled");
        server.kill().await.expect("the broker is killed");
        let started = std::time::Instant::now();
        let stopped = tokio::time::timeout(WAIT, app.stop())
            .await
            .expect("the stop returns");
        (started.elapsed(), stopped)
    });
    // the grace period, its slack, and the producer's flush (10s at most)
    assert!(
        took < grace + Duration::from_secs(15),
        "the stop took {took:?}"
    );
    if let Err(e) = stopped {
        assert!(
            e.to_string().contains("grace period"),
            "the only error is what could not be confirmed in time: {e}"
        );
    }
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(runtime);
        let _ = done.send(());
    });
    ended
        .recv_timeout(Duration::from_secs(30))
        .expect("the runtime shut down with the broker gone");
}
