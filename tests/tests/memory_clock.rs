//! The embedded broker runs on tokio's clock: with the clock paused, a
//! 1s, 5s, 30s backoff schedule and the dead letter after `max_deliver`
//! take no real time, and the delays are exact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetflow::prelude::*;
use tokio::time::Instant;

/// A payment that never goes through.
#[event(version = "v1", id = key)]
pub struct Payment {
    key: String,
}

/// When each delivery arrived, on tokio's (paused) clock.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(u64, Instant)>>>);

#[handler(group = "psp", max_deliver = 4, backoff = "1s, 5s, 30s")]
async fn charge(_p: Payment, ctx: Context, State(a): State<Arrivals>) -> Result<(), HandlerError> {
    a.0.lock()
        .expect("poisoned")
        .push((ctx.delivered(), Instant::now()));
    Err(HandlerError::retry("payment provider unavailable"))
}

#[tokio::test(start_paused = true)]
async fn backoff_schedule_and_dlq_on_a_paused_clock() {
    jetflow_tests::init_tracing();
    let wall = std::time::Instant::now();
    let arrivals = Arrivals::default();
    let app = App::new("billing")
        .url("memory://paused-clock-backoff")
        .state(arrivals.clone())
        .handler(charge)
        .start()
        .await
        .expect("app starts on the embedded broker");
    app.bus()
        .publish(&Payment { key: "p-1".into() })
        .await
        .expect("publish");
    let stats = app
        .wait_stats("charge", Duration::from_secs(600), |s| s.dead_lettered == 1)
        .await
        .expect("dead-lettered after max_deliver");
    let dead = jetflow::dlq::list(app.bus()).await.expect("DLQ readable");
    app.stop().await.expect("stops");

    assert_eq!(
        (stats.received, stats.retried, stats.dead_lettered),
        (4, 3, 1)
    );
    let a = arrivals.0.lock().expect("poisoned").clone();
    assert_eq!(
        a.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let gaps: Vec<Duration> = a.windows(2).map(|w| w[1].1 - w[0].1).collect();
    for (gap, want) in gaps.iter().zip([1, 5, 30].map(Duration::from_secs)) {
        // tokio timers have millisecond resolution
        assert!(
            *gap >= want && *gap < want + Duration::from_millis(5),
            "redelivery after {gap:?}, expected {want:?} (all gaps: {gaps:?})"
        );
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivered, 4);
    assert!(
        dead[0].error.contains("payment provider unavailable"),
        "{}",
        dead[0].error
    );
    // 36 s of schedule on the paused clock; far less in real time
    assert!(
        wall.elapsed() < Duration::from_secs(30),
        "the paused clock should make the schedule take no real time, took {:?}",
        wall.elapsed()
    );
}
