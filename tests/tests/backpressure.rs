//! A handler slower than the inflow: the backlog stays in the stream, not
//! in the service. What the service holds is bounded by its slots and its
//! prefetch buffer (checked on the server: messages delivered and not yet
//! acked), its memory does not grow with the backlog (resident set
//! measured), and nothing is dropped. One test in its own binary, so the
//! process's memory is this test's alone.

use std::time::Duration;

use jetflow::prelude::*;
use jetflow_tests::{Ledger, WAIT, server};

/// A test event with a 4 KiB body.
#[event(version = "v1", id = key)]
pub struct Upload {
    key: String,
    body: String,
}

#[handler(group = "slow", concurrency = 4, prefetch = 64)]
async fn digest(u: Upload, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&u.key, &ctx);
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

/// Resident set size of this process.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

const N: usize = 10_000;
const BODY: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_holds_a_bounded_window_and_the_backlog_stays_in_the_stream() {
    let server = server().await;
    let ledger = Ledger::default();
    let start = || {
        App::new("t")
            .url(server.url())
            .state(ledger.clone())
            .handler(digest)
            .start()
    };
    // provision, then fill the stream with 40 MB while nobody consumes
    let provision = start().await.unwrap();
    let bus = provision.bus().clone();
    provision.stop().await.unwrap();
    let body = "x".repeat(BODY);
    let mut batch = bus.batch();
    for i in 0..N {
        batch
            .push(&Upload {
                key: format!("u{i}"),
                body: body.clone(),
            })
            .unwrap();
        if batch.len() == 256 {
            batch.send().await.unwrap();
            batch = bus.batch();
        }
    }
    batch.send().await.unwrap();
    drop(body);

    let before = rss_bytes();
    let app = start().await.unwrap();
    // let it run well into the backlog
    ledger
        .wait_until(WAIT, "a few hundred handled", |e| e.len() >= 300)
        .await;
    let mut held = 0;
    let mut peak = 0;
    for _ in 0..20 {
        let s = app
            .bus()
            .consumer_state("UPLOAD", "slow--upload")
            .await
            .unwrap();
        held = held.max(s.num_ack_pending);
        peak = peak.max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = app
        .bus()
        .consumer_state("UPLOAD", "slow--upload")
        .await
        .unwrap();
    app.stop().await.unwrap();
    let handled = ledger.distinct() as u64;
    eprintln!(
        "backpressure: {N} x {BODY} B in the stream; the service held at most {held} unacked; \
         RSS {} MiB before, peak {} MiB; {handled} handled, {} still pending in the stream",
        before / (1 << 20),
        peak / (1 << 20),
        state.num_pending
    );
    // 4 slots + a 64-message buffer (+ the credits of one pull request)
    assert!(held <= 4 + 64 + 64, "the service held {held} messages");
    assert!(
        state.num_pending > (N as u64) / 2,
        "the backlog stays in the stream: {state:?}"
    );
    assert!(
        peak.saturating_sub(before) < 20 << 20,
        "memory grew by {} MiB with a 40 MB backlog",
        peak.saturating_sub(before) >> 20
    );
    // nothing dropped: what is not handled is still in the stream
    assert!(
        handled + state.num_pending + state.num_ack_pending >= N as u64,
        "{state:?}"
    );
}
