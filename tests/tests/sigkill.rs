//! SIGKILL to one of two replicas (`App::run` in child processes)
//! mid-handler: nothing it held is settled, so after the ack wait (2 s)
//! every message it had started or buffered comes back to the other
//! replica; nothing is lost, and a message is handled twice only as a
//! redelivery (its ack died with the process).

use std::collections::{BTreeMap, BTreeSet};

use jetflow_tests::service::{Chores, Service, Step, brief_chore, provision_and_fill};
use jetflow_tests::{WAIT, eventually, server};

const N: u64 = 40;
const CHILD: &str = env!("CARGO_BIN_EXE_chore-service");

#[tokio::test]
async fn sigkill_mid_handler_the_other_replica_gets_its_messages_after_ack_wait() {
    let server = server().await;
    provision_and_fill(&server.url(), brief_chore, N).await;

    let doomed = Service::spawn(CHILD, &server.url(), Chores::Brief);
    doomed.wait_handled(4).await;
    let survivor = Service::spawn(CHILD, &server.url(), Chores::Brief);
    let (started, handled_before) = doomed.kill().await;
    let finished: BTreeSet<u64> = handled_before.iter().map(|s| s.seq).collect();
    let cut_off: Vec<&Step> = started
        .iter()
        .filter(|s| !finished.contains(&s.seq))
        .collect();
    assert!(
        (finished.len() as u64) < N,
        "the kill came mid-run ({} handled)",
        finished.len()
    );

    eventually(
        WAIT,
        "every event handled by one replica or the other",
        || async {
            let all: BTreeSet<u64> = finished
                .iter()
                .copied()
                .chain(survivor.handled().iter().map(|s| s.seq))
                .collect();
            (all.len() as u64 == N).then_some(())
        },
    )
    .await;
    let handled_after = survivor.terminate().await;

    let mut by_seq: BTreeMap<u64, Vec<&Step>> = BTreeMap::new();
    for s in handled_before.iter().chain(&handled_after) {
        by_seq.entry(s.seq).or_default().push(s);
    }
    assert_eq!(by_seq.len() as u64, N, "nothing lost");
    for (seq, steps) in &by_seq {
        let mut deliveries: Vec<u64> = steps.iter().map(|s| s.delivered).collect();
        deliveries.sort_unstable();
        deliveries.dedup();
        assert_eq!(
            deliveries.len(),
            steps.len(),
            "#{seq} handled twice on the same delivery: {steps:?}"
        );
    }
    for s in &cut_off {
        let redelivered = handled_after
            .iter()
            .find(|h| h.seq == s.seq)
            .unwrap_or_else(|| panic!("#{} cut off by the kill was never handled again", s.seq));
        assert!(
            redelivered.delivered > s.delivered,
            "#{} came back as a redelivery after the ack wait: {redelivered:?}",
            s.seq
        );
    }
    eprintln!(
        "sigkill: {} handled before the kill, {} cut off mid-handler, {} handled by the survivor",
        handled_before.len(),
        cut_off.len(),
        handled_after.len()
    );
}
