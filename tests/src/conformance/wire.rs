//! The lean wire profile: an app publishing with [`WireProfile::Lean`]
//! sends only the event id (in the transport's own id field) and what a
//! consumer cannot derive; a consumer reads lean and CloudEvents messages
//! alike, with the same event id.

use std::sync::{Arc, Mutex};

use jetflow::WireProfile;
use jetflow::prelude::*;

use super::{Broker, Job, job};
use crate::WAIT;

/// One job as `take_job` saw it: its key, event id and headers.
type Sighting = (String, Option<String>, Headers);

/// What `take_job` saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);

#[handler(group = "wire")]
async fn take_job(j: Job, ctx: Context, State(seen): State<Seen>) -> Result<(), HandlerError> {
    let id = ctx.event_id().map(str::to_owned);
    seen.0
        .lock()
        .expect("poisoned")
        .push((j.key, id, ctx.headers().clone()));
    Ok(())
}

/// Dead-letters every job at once: the DLQ copy keeps the event id.
#[handler(group = "wire-dlq")]
async fn refuse_job(_j: Job) -> Result<(), HandlerError> {
    Err(HandlerError::reject("refused"))
}

/// The CloudEvents attributes a lean message leaves out.
const DERIVED: [&str; 5] = [
    "ce-specversion",
    "ce-type",
    "ce-source",
    "ce-time",
    "content-type",
];

/// A lean publisher's event reaches the handler with its event id and
/// without the derivable CloudEvents headers; a CloudEvents publisher's
/// event, on the same subject, still carries them all. Where the
/// transport deduplicates, the lean event's id still does; a DLQ copy of
/// either keeps its event id.
pub async fn lean_wire_profile_keeps_the_event_id(b: Broker) {
    let seen = Seen::default();
    let lean = b
        .app("lean")
        .wire_profile(WireProfile::Lean)
        .state(seen.clone())
        .handler(take_job)
        .handler(refuse_job)
        .start()
        .await
        .expect("app starts");
    assert_eq!(lean.bus().wire_profile(), WireProfile::Lean);
    let full = b
        .app("full")
        .publishes::<Job>()
        .start()
        .await
        .expect("publisher starts");
    let first = lean.bus().publish(&job("lean-1")).await.expect("published");
    let again = lean.bus().publish(&job("lean-1")).await.expect("published");
    if b.kind.capabilities().dedup {
        assert!(
            !first.duplicate && again.duplicate,
            "the lean event's id is its dedup id"
        );
    }
    full.bus().publish(&job("full-1")).await.expect("published");
    let handled = if b.kind.capabilities().dedup { 2 } else { 3 };
    lean.wait_stats("take_job", WAIT, |s| s.acked >= handled)
        .await
        .expect("every job handled");
    let dead = crate::dead_letters(lean.bus(), handled as usize).await;
    full.stop().await.expect("stops");
    lean.stop().await.expect("stops");

    let got = seen.0.lock().expect("poisoned").clone();
    let id_of = |key: &str| format!("{}:{key}", Job::SUBJECT);
    for (key, id, headers) in &got {
        assert_eq!(
            id.as_deref(),
            Some(id_of(key).as_str()),
            "{key}: its event id"
        );
        let present: Vec<&str> = DERIVED
            .iter()
            .copied()
            .filter(|h| headers.contains(h))
            .collect();
        if key.starts_with("lean") {
            assert!(
                present.is_empty(),
                "{key}: lean, yet it carries {present:?}"
            );
        } else {
            assert_eq!(present, DERIVED, "{key}: every CloudEvents header");
            assert_eq!(headers.get("ce-type"), Some(Job::SUBJECT));
        }
    }
    let mut dead_ids: Vec<&str> = dead.iter().filter_map(|d| d.headers.get("ce-id")).collect();
    dead_ids.sort_unstable();
    dead_ids.dedup();
    assert_eq!(
        dead_ids,
        [id_of("full-1"), id_of("lean-1")],
        "each DLQ copy keeps its event id in ce-id"
    );
    assert!(
        got.iter().any(|(k, ..)| k == "full-1") && got.iter().any(|(k, ..)| k == "lean-1"),
        "both jobs handled: {:?}",
        got.iter().map(|(k, ..)| k).collect::<Vec<_>>()
    );
}
