//! Ack deadlines: a crashed consumer's message comes back after ack_wait;
//! progress signals keep a long handler's message to one delivery.

use std::time::Duration;

use jetflow::prelude::*;

use super::{Broker, Job, Kind, job, settled, wait_stats};
use crate::{Ledger, WAIT};

// ------------------------------------------------------ ack_wait expiry

/// `true` in the first app: the handler never returns (as if the process
/// hung, then crashed).
#[derive(Clone)]
struct Hang(bool);

#[handler(group = "expiry", ack_wait = "2s")]
async fn maybe_hang(
    j: Job,
    ctx: Context,
    State(l): State<Ledger>,
    State(hang): State<Hang>,
) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    if hang.0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// A consumer that crashes mid-handler: its message comes back to the next one after ack_wait.
pub async fn ack_wait_expiry_redelivers(b: Broker) {
    if !b.can_fault(
        "ack_wait_expiry_redelivers",
        &[(Kind::Kafka, "Kafka has no ack deadline: a record held by a live member is never redelivered (a crashed member's records come back through the group, see kafka_transport.rs)")],
    ) {
        return;
    }
    let ledger = Ledger::default();
    let first = b
        .app("t")
        .state(ledger.tagged("first"))
        .state(Hang(true))
        .handler(maybe_hang)
        .start()
        .await
        .expect("first app");
    first.bus().publish(&job("x")).await.expect("publish");
    ledger
        .wait_until(WAIT, "first delivery", |e| !e.is_empty())
        .await;
    // crash: no ack, no nak, no more progress acks
    first.abort();
    let second = b
        .app("t")
        .state(ledger.tagged("second"))
        .state(Hang(false))
        .handler(maybe_hang)
        .start()
        .await
        .expect("second app");
    wait_stats(&second, "maybe_hang", |s| s.acked >= 1).await;
    settled(&second, "JOB", "expiry--job", 1).await;
    second.stop().await.expect("stops");
    let d: Vec<(String, u64)> = ledger
        .of("x")
        .into_iter()
        .map(|e| (e.replica, e.delivered))
        .collect();
    assert_eq!(d, vec![("first".into(), 1), ("second".into(), 2)]);
}

// ----------------------------------------------------------- in progress

#[handler(group = "slow", ack_wait = "1s")]
async fn takes_3x_ack_wait(
    j: Job,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

/// Progress signals keep a handler that runs 3x ack_wait to one delivery.
pub async fn in_progress_keeps_one_delivery(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, takes_3x_ack_wait).await;
    app.bus().publish(&job("slow")).await.expect("publish");
    let stats = wait_stats(&app, "takes_3x_ack_wait", |s| s.acked >= 1).await;
    let s = settled(&app, "JOB", "slow--job", 1).await;
    app.stop().await.expect("stops");
    assert_eq!(stats.received, 1, "progress acks kept it to one delivery");
    assert_eq!(s.num_redelivered, 0);
    assert_eq!(ledger.of("slow").len(), 1);
}
