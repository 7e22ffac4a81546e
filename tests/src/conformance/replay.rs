//! DLQ operations: dead letters are found by filter and replayed to their
//! original subject; the (now fixed) handler handles each replay once; a
//! second replay of a record is refused unless forced; a dry run
//! publishes nothing; a purge deletes what its filter matches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jetflow::dlq::{Filter, Replay, ReplayError, find, purge, replay};
use jetflow::prelude::*;

use super::{Broker, Job, Kind, job, wait_stats};
use crate::{Ledger, dead_letters};

/// Broken until the flag is cleared.
#[derive(Clone, Default)]
pub struct Broken(Arc<AtomicBool>);

#[handler(group = "repair")]
async fn mend(
    j: Job,
    ctx: Context,
    State(l): State<Ledger>,
    State(broken): State<Broken>,
) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    if broken.0.load(Ordering::Relaxed) {
        return Err(HandlerError::reject("the handler is broken"));
    }
    Ok(())
}

/// Three events dead-lettered by a broken handler are found by filter,
/// previewed by a dry run, replayed once each after the fix; a second
/// replay is refused, a forced one handled again.
pub async fn dlq_replay_once_unless_forced(b: Broker) {
    let ledger = Ledger::default();
    let broken = Broken::default();
    broken.0.store(true, Ordering::Relaxed);
    let app = b
        .app("t")
        .state(ledger.clone())
        .state(broken.clone())
        .handler(mend)
        .start()
        .await
        .expect("app starts");
    let bus = app.bus();
    for k in ["r1", "r2", "r3"] {
        bus.publish(&job(k)).await.expect("publish");
    }
    dead_letters(bus, 3).await;
    let ours = find(bus, &Filter::new().group("repair").error_contains("BROKEN"))
        .await
        .expect("DLQ readable");
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert!(ours.iter().all(|d| !d.replayed));
    assert!(
        find(bus, &Filter::new().group("other"))
            .await
            .expect("DLQ")
            .is_empty(),
        "the group filter applies"
    );

    broken.0.store(false, Ordering::Relaxed);
    let preview = replay(
        bus,
        ours[0].dlq_sequence,
        Replay {
            dry_run: true,
            ..Replay::default()
        },
    )
    .await
    .expect("dry run");
    assert!(preview.ack.is_none(), "a dry run publishes nothing");
    assert_eq!(preview.subject, "job.v1");
    assert_eq!(
        preview.headers.get("jetflow-replay-of"),
        Some(ours[0].dlq_sequence.to_string().as_str())
    );
    assert!(
        preview
            .headers
            .iter()
            .all(|(n, _)| !n.starts_with("jetflow-dlq-")),
        "{:?}",
        preview.headers
    );
    for d in &ours {
        let done = replay(bus, d.dlq_sequence, Replay::default())
            .await
            .expect("replayed");
        assert!(done.ack.is_some());
    }
    wait_stats(&app, "mend", |s| s.acked >= 3).await;
    let again = replay(bus, ours[0].dlq_sequence, Replay::default()).await;
    assert!(
        matches!(again, Err(ReplayError::AlreadyReplayed(s)) if s == ours[0].dlq_sequence),
        "{again:?}"
    );
    replay(
        bus,
        ours[0].dlq_sequence,
        Replay {
            force: true,
            ..Replay::default()
        },
    )
    .await
    .expect("forced replay");
    let stats = wait_stats(&app, "mend", |s| s.acked >= 4).await;
    let after = find(bus, &Filter::new().group("repair"))
        .await
        .expect("DLQ");
    let would = purge(bus, &Filter::new().group("repair"), true)
        .await
        .expect("dry run");
    let kept = find(bus, &Filter::new()).await.expect("DLQ").len();
    let purged = purge(bus, &Filter::new().group("repair").replayed(true), false).await;
    if matches!(b.kind, Kind::Kafka | Kind::RabbitMq) {
        // Kafka topics and RabbitMQ streams delete by retention only: the
        // purge says so, and deletes nothing
        let refused = purged
            .expect_err("no single record can be deleted")
            .to_string();
        assert!(refused.contains("retention"), "{refused}");
        assert_eq!(jetflow::dlq::list(bus).await.expect("DLQ").len(), 3);
    } else {
        let purged = purged.expect("purge");
        let left = jetflow::dlq::list(bus).await.expect("DLQ");
        let gone = replay(bus, ours[1].dlq_sequence, Replay::default()).await;
        assert_eq!(purged, would);
        assert!(left.is_empty(), "purged: {left:?}");
        assert!(matches!(gone, Err(ReplayError::NotFound(_))), "{gone:?}");
    }
    app.stop().await.expect("stops");
    assert_eq!(would.len(), 3, "{would:?}");
    assert_eq!(kept, 3, "a dry-run purge deletes nothing");
    assert_eq!(stats.acked, 4, "three replays and one forced: {stats:?}");
    assert_eq!(after.len(), 3, "markers are not dead letters: {after:?}");
    assert!(after.iter().all(|d| d.replayed), "{after:?}");
    let handled = |k: &str| ledger.of(k).len();
    assert_eq!(
        (handled("r1"), handled("r2"), handled("r3")),
        (3, 2, 2),
        "each dead-lettered once, replayed once; r1 forced once more (the dry run added nothing)"
    );
}
