//! Notifications: published without persistence, heard by every replica
//! (broadcast) or by one replica of a queue group; a failing handler is
//! retried in-process, a panic caught, an undecodable payload dropped and
//! counted; publishing while disconnected is an error.

use std::collections::HashSet;
use std::time::Duration;

use jetflow::prelude::*;
use jetflow::transport::PublishErrorKind;
use jetflow::{AppHandle, PublishError};

use super::{Broker, Kind, wait_stats};
use crate::{Ledger, WAIT};

/// A cache entry changed: every replica drops its copy.
#[event(version = "v1", notification)]
pub struct CacheInvalidated {
    key: String,
}

fn invalidated(key: impl Into<String>) -> CacheInvalidated {
    CacheInvalidated { key: key.into() }
}

#[handler(group = "cache", broadcast)]
async fn drop_entry(
    e: CacheInvalidated,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&e.key, &ctx);
    Ok(())
}

#[handler(group = "cache")]
async fn refresh_once(
    e: CacheInvalidated,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&e.key, &ctx);
    Ok(())
}

#[handler(group = "flaky-cache", max_deliver = 3, backoff = "100ms")]
async fn fails_then_panics_then_works(
    e: CacheInvalidated,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&e.key, &ctx);
    match ctx.delivered() {
        1 => Err(HandlerError::retry("cache node busy")),
        2 => panic!("bug in the cache client"),
        _ => Ok(()),
    }
}

async fn replicas<H: Handler>(
    b: &Broker,
    ledger: &Ledger,
    handler: impl Fn() -> H,
) -> [AppHandle; 2] {
    let mut apps = Vec::new();
    for name in ["one", "two"] {
        apps.push(
            b.app("t")
                .state(ledger.tagged(name))
                .handler(handler())
                .start()
                .await
                .expect("replica starts"),
        );
    }
    let [one, two] = <[AppHandle; 2]>::try_from(apps).unwrap_or_else(|_| unreachable!());
    [one, two]
}

/// Every replica of a `broadcast` handler hears every notification once;
/// no stream or durable is created for it.
pub async fn notification_broadcast(b: Broker) {
    if !b.supports("notification_broadcast", "notifications", |c| {
        c.notifications
    }) {
        return;
    }
    const N: usize = 20;
    let ledger = Ledger::default();
    let [one, two] = replicas(&b, &ledger, || drop_entry).await;
    for i in 0..N {
        one.bus()
            .notify(&invalidated(i.to_string()))
            .await
            .expect("notify");
    }
    ledger
        .wait_until(WAIT, "each replica hears every notification", |e| {
            e.len() >= 2 * N
        })
        .await;
    // nothing more arrives
    tokio::time::sleep(Duration::from_millis(200)).await;
    let entries = ledger.entries();
    one.stop().await.expect("stops");
    two.stop().await.expect("stops");
    assert_eq!(entries.len(), 2 * N, "{entries:?}");
    for replica in ["one", "two"] {
        let keys: HashSet<&str> = entries
            .iter()
            .filter(|e| e.replica == replica)
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys.len(), N, "{replica} heard each notification once");
    }
    assert!(
        entries.iter().all(|e| e.seq == 0 && e.delivered == 1),
        "a notification has no stream sequence: {entries:?}"
    );
}

/// Replicas of one group share a queue group: each notification is
/// handled by exactly one of them, and both take part.
pub async fn notification_queue_group(b: Broker) {
    if !b.supports("notification_queue_group", "notifications", |c| {
        c.notifications
    }) {
        return;
    }
    const N: usize = 60;
    let ledger = Ledger::default();
    let [one, two] = replicas(&b, &ledger, || refresh_once).await;
    for i in 0..N {
        one.bus()
            .notify(&invalidated(i.to_string()))
            .await
            .expect("notify");
    }
    ledger
        .wait_until(WAIT, "every notification handled", |e| e.len() >= N)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let entries = ledger.entries();
    one.stop().await.expect("stops");
    two.stop().await.expect("stops");
    assert_eq!(entries.len(), N, "each handled by one replica: {entries:?}");
    assert_eq!(ledger.distinct(), N);
    let by_one = entries.iter().filter(|e| e.replica == "one").count();
    assert!(
        by_one > 0 && by_one < N,
        "both replicas of the queue group take part: one handled {by_one} of {N}"
    );
}

/// A notification handler that fails is retried in-process after its
/// backoff, a panic is caught, and an undecodable payload is dropped and
/// counted without calling the handler; nothing goes to a DLQ.
pub async fn notification_retried_in_process(b: Broker) {
    if !b.supports("notification_retried_in_process", "notifications", |c| {
        c.notifications
    }) {
        return;
    }
    let ledger = Ledger::default();
    let app = b.start(&ledger, fails_then_panics_then_works).await;
    app.bus().notify(&invalidated("k")).await.expect("notify");
    app.bus()
        .notify_raw(
            "cache.invalidated.v1",
            Headers::new(),
            r#"{"key": 7"#.into(),
        )
        .await
        .expect("raw notify");
    let stats = wait_stats(&app, "fails_then_panics_then_works", |s| {
        s.acked >= 1 && s.terminated >= 1
    })
    .await;
    let dlq = jetflow::dlq::list(app.bus()).await;
    app.stop().await.expect("stops");
    assert_eq!(
        (stats.received, stats.retried, stats.panicked, stats.acked),
        (4, 2, 1, 1),
        "three attempts of one notification, one undecodable: {stats:?}"
    );
    assert_eq!((stats.undecodable, stats.terminated), (1, 1));
    let attempts: Vec<u64> = ledger.of("k").iter().map(|e| e.delivered).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let e = ledger.of("k");
    assert!(
        e[1].at - e[0].at >= Duration::from_millis(100),
        "the backoff is kept"
    );
    assert!(dlq.is_err(), "no DLQ stream for notifications: {dlq:?}");
}

/// Publishing a notification while disconnected is an error (never a
/// silent buffer); once connected again it is heard.
pub async fn notification_disconnected_publish_fails(mut b: Broker) {
    if !b.supports(
        "notification_disconnected_publish_fails",
        "notifications",
        |c| c.notifications,
    ) {
        return;
    }
    let ledger = Ledger::default();
    let app = b.start(&ledger, refresh_once).await;
    app.bus()
        .notify(&invalidated("before"))
        .await
        .expect("notify");
    ledger
        .wait_until(WAIT, "heard before", |e| e.len() == 1)
        .await;

    disconnect(&mut b, true).await;
    // Until the client notices the server is gone, a notify is handed to
    // the connection and its flush fails (`Unconfirmed`: it may be sent on
    // the reconnect); once it knows, a notify is refused before sending
    // (`Disconnected`) and must never be heard.
    let mut attempt = 0;
    let (err, refused): (PublishError, String) =
        crate::eventually(WAIT, "a disconnected notify is refused", || {
            attempt += 1;
            let key = format!("lost-{attempt}");
            let app = &app;
            async move {
                match app.bus().notify(&invalidated(&key)).await {
                    Err(e) if e.kind() == &PublishErrorKind::Disconnected => Some((e, key)),
                    Err(e) => {
                        assert_eq!(e.kind(), &PublishErrorKind::Unconfirmed, "{e}");
                        None
                    }
                    Ok(()) => None,
                }
            }
        })
        .await;
    assert!(err.to_string().contains("not connected"), "{err}");

    disconnect(&mut b, false).await;
    crate::eventually(WAIT, "a notify after the reconnect is heard", || async {
        let _ = app.bus().notify(&invalidated("after")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        (!ledger.of("after").is_empty()).then_some(())
    })
    .await;
    app.stop().await.expect("stops");
    assert!(
        ledger.of(&refused).is_empty(),
        "a notify refused as disconnected is never heard later ({refused})"
    );
}

/// Takes the broker away (`true`) or brings it back.
async fn disconnect(b: &mut Broker, down: bool) {
    match b.kind {
        Kind::Nats => {
            let server = b.nats().expect("a NATS server");
            if down {
                server.kill().await.expect("kill");
            } else {
                server.restart().await.expect("restart");
            }
        }
        Kind::Memory => b.memory().set_offline(down),
        Kind::Redis | Kind::RabbitMq | Kind::Kafka => {
            unreachable!("this transport has no notifications")
        }
    }
}
