//! Per-key ordered lanes: events with the same key are handled one at a
//! time and in publish order; a retry of one key holds back only that key.

use std::time::Duration;

use jetflow::prelude::*;

use super::{Broker, settled, wait_stats};
use crate::Ledger;

/// One step of an account's history; order matters per account.
#[event(version = "v1")]
pub struct Step {
    account: String,
    n: u32,
}

const ACCOUNTS: [&str; 4] = ["a", "b", "c", "d"];
const STEPS: u32 = 10;

// `prefetch` explicit: room for the held steps of `a` on every server (on
// nats-server 2.9 a handler prefetches only when told to).
#[handler(
    group = "lanes",
    concurrency = 8,
    prefetch = 64,
    ordered_by = account,
    max_deliver = 3,
    backoff = "1s"
)]
async fn apply_step(s: Step, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&format!("{}/{}", s.account, s.n), &ctx);
    if s.account == "a" && s.n == 0 && ctx.delivered() == 1 {
        return Err(HandlerError::retry("a/0 fails once"));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

/// Four accounts x ten steps, interleaved, at concurrency 8: each account's
/// steps run in publish order, one at a time; `a/0` fails once and its
/// retry (1s later) holds back `a`'s later steps while `b`, `c`, `d` go on.
pub async fn ordered_lanes_keep_per_key_order(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, apply_step).await;
    let mut batch = app.bus().batch();
    for n in 0..STEPS {
        for account in ACCOUNTS {
            batch
                .push(&Step {
                    account: account.into(),
                    n,
                })
                .expect("encodes");
        }
    }
    batch.send().await.expect("published");
    let total = u64::from(STEPS) * ACCOUNTS.len() as u64;
    let stats = wait_stats(&app, "apply_step", |s| s.acked >= total).await;
    let state = settled(&app, "STEP", "lanes--step", total).await;
    app.stop().await.expect("stops");

    assert_eq!(stats.retried, 1, "a/0 retried once, in the process");
    assert_eq!(state.num_redelivered, 0, "nothing went back to the broker");
    let entries = ledger.entries();
    for account in ACCOUNTS {
        let mut seen: Vec<(u32, u64)> = entries
            .iter()
            .filter_map(|e| {
                let (acc, n) = e.key.split_once('/')?;
                (acc == account).then(|| (n.parse().expect("a number"), e.delivered))
            })
            .collect();
        if account == "a" {
            assert_eq!(seen.remove(0), (0, 1), "a/0 first, failing");
            assert_eq!(seen.first(), Some(&(0, 2)), "then its retry, before a/1");
            seen.remove(0);
        }
        let order: Vec<u32> = seen.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            order,
            (0..STEPS)
                .filter(|n| account != "a" || *n > 0)
                .collect::<Vec<_>>(),
            "{account}: in publish order"
        );
    }
    // While a/0 waited for its retry, the other accounts finished.
    let at = |key: &str, delivered: u64| {
        entries
            .iter()
            .find(|e| e.key == key && e.delivered == delivered)
            .map(|e| e.at)
            .expect("recorded")
    };
    let (failed, retried) = (at("a/0", 1), at("a/0", 2));
    for account in ["b", "c", "d"] {
        let last = at(&format!("{account}/{}", STEPS - 1), 1);
        assert!(
            failed < last && last < retried,
            "{account} is not held back by a's retry"
        );
    }
}
