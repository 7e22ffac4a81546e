//! SIGTERM to a running service (`App::run` in a child process) with work
//! in flight: in-flight handlers finish and are acked, unstarted messages
//! are nak'd, the process exits 0, and a second run handles exactly the rest.

use std::collections::BTreeSet;

use jetflow_tests::service::{Chores, Service, provision_and_fill, slow_chore};
use jetflow_tests::{server, wait_ack_floor};

const N: u64 = 40;
const CHILD: &str = env!("CARGO_BIN_EXE_chore-service");

#[tokio::test]
async fn sigterm_with_work_in_flight_finishes_it_naks_the_rest_and_loses_nothing() {
    let server = server().await;
    provision_and_fill(&server.url(), slow_chore, N).await;

    let first = Service::spawn(CHILD, &server.url(), Chores::Slow);
    first.wait_handled(6).await;
    let before = first.terminate().await;
    assert!((before.len() as u64) < N, "SIGTERM came mid-run");
    let seqs: BTreeSet<u64> = before.iter().map(|h| h.seq).collect();
    assert_eq!(seqs.len(), before.len(), "no message handled twice");
    let first_unhandled = (1..=N).find(|s| !seqs.contains(s)).expect("mid-run");

    // On the server every handled message is acked and nothing else is:
    // the ack floor is exactly below the first unhandled one.
    wait_ack_floor(
        &server.url(),
        "CHORE",
        "sigterm--chore",
        first_unhandled - 1,
    )
    .await;

    // A second run handles exactly the rest: what was not started was nak'd,
    // so it comes back at once (the ack wait is 10 minutes).
    let second = Service::spawn(CHILD, &server.url(), Chores::Slow);
    second.wait_handled(N as usize - before.len()).await;
    let after = second.terminate().await;
    let mut all: Vec<u64> = before.iter().chain(&after).map(|h| h.seq).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=N).collect::<Vec<_>>(),
        "every event handled exactly once across the two runs"
    );
    assert!(
        before.iter().all(|h| h.delivered == 1),
        "first run: first deliveries only: {before:?}"
    );
}
