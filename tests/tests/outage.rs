//! The server away — frozen (SIGSTOP) for several heartbeats, then killed
//! and restarted: the loop reports that it is recovering, stays idle
//! meanwhile (its CPU time is measured), reports receiving again once the
//! server is back, and nothing is lost. One test in its own binary, so
//! that the process's CPU time is this test's alone.

use std::time::Duration;

use jetflow::LoopState;
use jetflow::prelude::*;
use jetflow_tests::{Ledger, WAIT, server};
use tokio::time::Instant;

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Beat {
    key: String,
}

#[handler(group = "pulse", concurrency = 4)]
async fn pulse(b: Beat, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&b.key, &ctx);
    Ok(())
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    // utime and stime (fields 14 and 15 of proc(5)), in USER_HZ = 100 ticks
    let tick = |i: usize| fields[i].parse::<u64>().expect("a tick count");
    let ticks = tick(11) + tick(12);
    Duration::from_millis(ticks * 10)
}

/// Publishes `keys` (retrying while the server is coming back) and waits
/// until each is handled.
async fn flow(app: &jetflow::AppHandle, ledger: &Ledger, keys: std::ops::Range<usize>) {
    for i in keys.clone() {
        let beat = Beat {
            key: format!("b{i}"),
        };
        jetflow_tests::eventually(WAIT, "publish acked", || async {
            app.bus().publish(&beat).await.ok()
        })
        .await;
    }
    ledger
        .wait_until(WAIT, "every beat handled", |_| {
            ledger.distinct() >= keys.end
        })
        .await;
}

/// Waits `window` while the server is away; the loop must say it is
/// recovering; returns the CPU share the process used meanwhile.
async fn away(app: &jetflow::AppHandle, window: Duration, what: &str) -> f64 {
    let (t0, cpu0) = (Instant::now(), cpu_time());
    let status = app
        .wait_status("pulse", WAIT, |s| matches!(s, LoopState::Recovering { .. }))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: {} after {:?}", status.state, t0.elapsed());
    tokio::time::sleep_until(t0 + window).await;
    let share = (cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    eprintln!("{what}: the service used {:.1}% of a core", share * 100.0);
    share
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_away_the_loop_recovers_idle_and_reports_each_state() {
    let mut server = server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(pulse)
        .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let receiving = |what: &'static str| {
        let app = &app;
        async move {
            app.wait_status("pulse", WAIT, LoopState::is_receiving)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"))
        }
    };
    receiving("after start").await;
    flow(&app, &ledger, 0..50).await;

    // frozen for 6 heartbeats
    server.pause().await.unwrap();
    let frozen = away(&app, Duration::from_secs(6), "server frozen").await;
    server.resume().await.unwrap();
    receiving("after the server resumed").await;
    flow(&app, &ledger, 50..100).await;

    // gone, then back on the same port and store
    server.kill().await.unwrap();
    let gone = away(&app, Duration::from_secs(6), "server killed").await;
    server.restart().await.unwrap();
    receiving("after the restart").await;
    flow(&app, &ledger, 100..150).await;

    let status = app.status();
    app.stop().await.unwrap();
    assert_eq!(ledger.distinct(), 150, "nothing lost");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].source, "BEAT/pulse--beat");
    // a busy loop would use a whole core; an idle one close to nothing
    for (what, share) in [("frozen", frozen), ("killed", gone)] {
        assert!(
            share < 0.10,
            "server {what}: the service used {:.0}% of a core while it waited",
            share * 100.0
        );
    }
}
