//! Graceful stop with work in flight and a broker crash, against a real
//! nats-server (group fan-out and competing replicas run on both transports
//! in `conformance.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use jetflow::prelude::*;
use jetflow_tests::{Ledger, WAIT, server, wait_ack_floor};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Job {
    key: String,
}

fn job(i: usize) -> Job {
    Job {
        key: format!("job-{i}"),
    }
}

#[handler(group = "slowpoke", concurrency = 4, ack_wait = "10m")]
async fn slow(j: Job, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    ledger.record(&j.key, &ctx);
    Ok(())
}

#[tokio::test]
async fn stop_with_work_in_flight_loses_nothing_and_acks_what_was_handled() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(server.url())
        .state(ledger.tagged("first"))
        .handler(slow)
        .start()
        .await
        .unwrap();
    for i in 0..40 {
        app.bus().publish(&job(i)).await.unwrap();
    }
    // Stop while handlers are mid-flight.
    ledger
        .wait_until(WAIT, "some handled", |e| e.len() >= 6)
        .await;
    app.stop().await.unwrap();
    let before: Vec<String> = ledger.entries().into_iter().map(|e| e.key).collect();
    assert!(before.len() < 40, "stopped mid-run");

    // Everything handled before the stop is acked on the server, nothing
    // else is: the ack floor is exactly below the first event not handled.
    let handled: BTreeSet<u64> = ledger.entries().iter().map(|e| e.seq).collect();
    let first_unhandled = (1..=40u64)
        .find(|s| !handled.contains(s))
        .expect("stopped mid-run");
    wait_ack_floor(&server.url(), "JOB", "slowpoke--job", first_unhandled - 1).await;

    // A restarted app sees the rest (nak'd at the stop, so at once, not
    // after the ack wait), and none of what was already handled.
    let again = App::new("t")
        .url(server.url())
        .state(ledger.tagged("second"))
        .handler(slow)
        .start()
        .await
        .unwrap();
    ledger
        .wait_until(WAIT, "all 40 handled", |e| e.len() >= 40)
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    again.stop().await.unwrap();
    let entries = ledger.entries();
    assert_eq!(ledger.distinct(), 40, "nothing lost");
    assert_eq!(entries.len(), 40, "nothing handled twice");
    for e in entries.iter().filter(|e| e.replica == "second") {
        assert!(
            !before.contains(&e.key),
            "{} was redelivered after being handled",
            e.key
        );
    }
}

#[handler(group = "crash", concurrency = 32)]
async fn survivor(j: Job, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&j.key, &ctx);
    Ok(())
}

#[tokio::test]
async fn server_kill_9_mid_stream_then_restart_loses_nothing() {
    const N: usize = 10_000;
    let mut server = server().await;
    let ledger = Ledger::default();
    let app = || {
        App::new("t")
            .url(server.url())
            .state(ledger.clone())
            .handler(survivor)
            .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
    };
    // Provision the stream and consumer, then fill the stream while nobody consumes.
    let first = app().start().await.unwrap();
    let bus = first.bus().clone();
    first.stop().await.unwrap();
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..8 {
        let bus = bus.clone();
        publishers.spawn(async move {
            for i in (p..N).step_by(8) {
                bus.publish(&job(i)).await.expect("publish acked");
            }
        });
    }
    while let Some(r) = publishers.join_next().await {
        r.unwrap();
    }
    let running = app().start().await.unwrap();
    ledger
        .wait_until(WAIT, "consumption under way", |e| e.len() >= 500)
        .await;
    server.kill().await.unwrap();
    let at_kill = ledger.distinct();
    assert!(
        at_kill < N,
        "the kill must happen mid-stream ({at_kill} of {N} handled)"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await.unwrap();
    ledger
        .wait_until(
            Duration::from_secs(90),
            "every acked publish handled",
            |_| ledger.distinct() >= N,
        )
        .await;
    running.stop().await.unwrap();
    assert_eq!(ledger.distinct(), N);
}

#[handler(group = "stuck", concurrency = 2, ack_wait = "10m")]
async fn unhurried(j: Job, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// A stop asked for while the server is unreachable returns within the
/// grace period, says what it could not settle, and leaves nothing lost:
/// after the server returns, everything is handled by the next run.
#[tokio::test]
async fn stop_while_the_server_is_unreachable_returns_within_the_grace_period() {
    const N: usize = 20;
    const GRACE: Duration = Duration::from_secs(3);
    let mut server = server().await;
    let ledger = Ledger::default();
    let url = server.url();
    let app = || {
        App::new("t")
            .url(&url)
            .state(ledger.clone())
            .handler(unhurried)
            .shutdown_grace(GRACE)
    };
    let running = app().start().await.unwrap();
    for i in 0..N {
        running.bus().publish(&job(i)).await.expect("publish acked");
    }
    ledger
        .wait_until(WAIT, "handlers running", |e| !e.is_empty())
        .await;
    server.kill().await.unwrap();
    let asked = tokio::time::Instant::now();
    let stopped = tokio::time::timeout(GRACE * 4, running.stop())
        .await
        .expect("stop returns while the server is away");
    let took = asked.elapsed();
    assert!(
        took <= GRACE + Duration::from_secs(1),
        "stop took {took:?}, grace is {GRACE:?}"
    );
    let error = stopped
        .expect_err("stop says what it could not settle")
        .to_string();
    assert!(error.contains("could not settle"), "{error}");
    server.restart().await.unwrap();
    let again = app().start().await.unwrap();
    ledger
        .wait_until(WAIT, "every event handled after the restart", |_| {
            ledger.distinct() >= N
        })
        .await;
    again.stop().await.unwrap();
}

/// A server gone for longer than `give_up_after`: the loop fails with
/// `Unreachable` (so `App::run` exits non-zero) instead of staying idle
/// and "healthy"; its status says failed.
#[tokio::test]
async fn server_gone_longer_than_give_up_after_fails_the_loop() {
    let mut server = server().await;
    let ledger = Ledger::default();
    let mut app = App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(unhurried)
        .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
        .give_up_after(Duration::from_secs(2))
        .shutdown_grace(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    app.wait_status("unhurried", WAIT, jetflow::LoopState::is_receiving)
        .await
        .unwrap();
    server.kill().await.unwrap();
    let failed = tokio::time::timeout(WAIT, app.wait_failure())
        .await
        .expect("the loop gives up by itself")
        .expect_err("an unreachable server fails the loop");
    let status = app.status();
    let _ = app.stop().await;
    match failed {
        jetflow::Error::Consumer(e) => {
            assert_eq!(
                e.kind(),
                jetflow::error::ConsumerErrorKind::Unreachable,
                "{e}"
            );
            assert!(e.to_string().contains("give_up_after"), "{e}");
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(
        matches!(status[0].state, jetflow::LoopState::Failed { .. }),
        "{status:?}"
    );
}

/// Two server restarts (kill -9, same port and store) while four publishers
/// run, each retrying a failed publish with the same event id until it is
/// acknowledged: every acknowledged publish is handled, and the stream
/// holds one copy of each (the dedup window absorbs the retries).
#[tokio::test]
async fn two_restarts_under_retrying_publishers_store_each_event_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut server = server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(survivor)
        .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..4 {
        let (bus, acked, done) = (app.bus().clone(), acked.clone(), done.clone());
        publishers.spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let job = Job {
                    key: format!("p{p}-{i}"),
                };
                jetflow_tests::eventually(WAIT, "publish acked", || async {
                    bus.publish(&job).await.ok()
                })
                .await;
                acked.lock().unwrap().insert(job.key);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    for round in 1..=2 {
        let before = ledger.distinct();
        ledger
            .wait_until(WAIT, &format!("progress before restart {round}"), |_| {
                ledger.distinct() >= before + 200
            })
            .await;
        server.restart().await.unwrap();
    }
    let before = ledger.distinct();
    ledger
        .wait_until(WAIT, "progress after the restarts", |_| {
            ledger.distinct() >= before + 200
        })
        .await;
    done.store(true, Ordering::Relaxed);
    while let Some(r) = publishers.join_next().await {
        r.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    ledger
        .wait_until(WAIT, "every acked publish handled", |_| {
            ledger.distinct() >= acked.len()
        })
        .await;
    app.stop().await.unwrap();
    let handled: BTreeSet<String> = ledger.entries().into_iter().map(|e| e.key).collect();
    assert_eq!(handled, acked, "every acked publish handled, nothing else");
    // Handled more than once is legal here, even as a "first" delivery
    // again: a server killed with -9 can lose the last moments of its
    // consumer state (it is not synced per ack), and redelivers from the
    // state it kept. Handlers that must not repeat effects use idempotency.
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let stored = js
        .get_stream("JOB")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(
        stored,
        acked.len() as u64,
        "one copy of each event in the stream"
    );
    eprintln!(
        "two restarts: {} acked, {} stored, {} handlings",
        acked.len(),
        stored,
        ledger.entries().len()
    );
}
