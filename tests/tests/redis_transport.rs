//! What is specific to the Redis Streams transport (the shared delivery
//! scenarios run in `conformance.rs`): publish dedup inside the window,
//! stream length limits, a parked retry that survives the crash of its
//! consumer, a paused server, and start-up refusals. Every test runs on its
//! own private redis-server and is bounded in time.

use std::time::Duration;

use jetflow::error::{ConfigErrorKind, ConnectErrorKind};
use jetflow::prelude::*;
use jetflow::transport::redis::{RedisTransport, StreamLimits};
use jetflow_tests::{Ledger, WAIT, redis_server};

/// A job keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Chore {
    key: String,
}

#[handler(group = "chores")]
async fn do_chore(c: Chore, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&c.key, &ctx);
    Ok(())
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connects")
}

async fn xlen(url: &str) -> u64 {
    redis::cmd("XLEN")
        .arg("jetflow:{CHORE}:messages")
        .query_async(&mut redis(url).await)
        .await
        .expect("XLEN")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_repeated_inside_the_window_is_stored_once() {
    if jetflow_tests::skip_on_nats_floor("a_publish_repeated_inside_the_window_is_stored_once") {
        return;
    }
    let server = redis_server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(do_chore)
        .start()
        .await
        .expect("app starts");
    let first = app
        .bus()
        .publish(&Chore { key: "k".into() })
        .await
        .expect("publish");
    let again = app
        .bus()
        .publish(&Chore { key: "k".into() })
        .await
        .expect("publish");
    let other = app
        .bus()
        .publish(&Chore { key: "j".into() })
        .await
        .expect("publish");
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!(
        (again.sequence, again.duplicate),
        (1, true),
        "same id: the same message"
    );
    assert_eq!((other.sequence, other.duplicate), (2, false));
    ledger
        .wait_until(WAIT, "both handled", |e| e.len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await.expect("stops");
    assert_eq!(
        xlen(&server.url()).await,
        2,
        "the stream holds one copy of each"
    );
    assert_eq!(ledger.of("k").len(), 1);
}

/// A length limit drops the oldest entries, consumed or not (as JetStream's
/// limits retention does): a consumer that starts late sees the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_trimmed_to_their_limit() {
    if jetflow_tests::skip_on_nats_floor("streams_are_trimmed_to_their_limit") {
        return;
    }
    let server = redis_server().await;
    let url = server.url();
    let connect = || RedisTransport::connect_with(&url, "t", StreamLimits::MaxLen(50));
    let ledger = Ledger::default();
    let app = App::new("t")
        .state(ledger.clone())
        .handler(do_chore)
        .start_on(connect().await.expect("connects"))
        .await
        .expect("app starts");
    let bus = app.bus().clone();
    app.stop().await.expect("stops"); // the stream and group stay; nobody reads
    for i in 0..2_000 {
        bus.publish(&Chore { key: i.to_string() })
            .await
            .expect("publish");
    }
    let len = xlen(&server.url()).await;
    // `MAXLEN ~` trims whole nodes of the stream: about the limit, never the backlog
    assert!((50..500).contains(&len), "the stream holds {len} entries");
    let app = App::new("t")
        .state(ledger.clone())
        .handler(do_chore)
        .start_on(connect().await.expect("connects"))
        .await
        .expect("app starts again");
    ledger
        .wait_until(WAIT, "the kept entries handled", |e| e.len() as u64 >= len)
        .await;
    app.stop().await.expect("stops");
    let seqs: Vec<u64> = ledger.entries().iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len() as u64, len, "{seqs:?}");
    assert_eq!(seqs.last(), Some(&2_000), "the newest is kept");
    assert!(seqs[0] > 1_000, "the oldest are gone: {:?}", &seqs[..5]);
}

/// Fails the first delivery with a 2 s retry delay.
#[handler(group = "later", max_deliver = 3)]
async fn retry_in_two_seconds(
    c: Chore,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&c.key, &ctx);
    if ctx.delivered() == 1 {
        return Err(HandlerError::retry_after("not yet", Duration::from_secs(2)));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_retry_survives_the_crash_of_its_consumer() {
    if jetflow_tests::skip_on_nats_floor("a_parked_retry_survives_the_crash_of_its_consumer") {
        return;
    }
    let server = redis_server().await;
    let ledger = Ledger::default();
    let first = App::new("t")
        .url(server.url())
        .state(ledger.tagged("first"))
        .handler(retry_in_two_seconds)
        .start()
        .await
        .expect("first app");
    first
        .bus()
        .publish(&Chore { key: "p".into() })
        .await
        .expect("publish");
    first
        .wait_stats("retry_in_two_seconds", WAIT, |s| s.retried >= 1)
        .await
        .expect("the first delivery is retried");
    first.abort(); // the only consumer is gone while the retry waits
    let second = App::new("t")
        .url(server.url())
        .state(ledger.tagged("second"))
        .handler(retry_in_two_seconds)
        .start()
        .await
        .expect("second app");
    second
        .wait_stats("retry_in_two_seconds", WAIT, |s| s.acked >= 1)
        .await
        .expect("the retry is delivered to the next consumer");
    second.stop().await.expect("stops");
    let e = ledger.of("p");
    let seen: Vec<(&str, u64)> = e
        .iter()
        .map(|e| (e.replica.as_str(), e.delivered))
        .collect();
    assert_eq!(seen, [("first", 1), ("second", 2)]);
    let gap = e[1].at - e[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "redelivered after {gap:?}, before its delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_after_the_server_was_paused() {
    if jetflow_tests::skip_on_nats_floor("delivery_resumes_after_the_server_was_paused") {
        return;
    }
    let mut server = redis_server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(do_chore)
        .start()
        .await
        .expect("app starts");
    app.bus()
        .publish(&Chore {
            key: "before".into(),
        })
        .await
        .expect("publish");
    ledger
        .wait_until(WAIT, "handled before", |e| e.len() == 1)
        .await;
    server.pause().await.expect("pause");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.resume().await.expect("resume");
    app.bus()
        .publish(&Chore {
            key: "after".into(),
        })
        .await
        .expect("publish after resume");
    ledger
        .wait_until(WAIT, "handled after the pause", |e| e.len() == 2)
        .await;
    app.stop().await.expect("stops");
    assert_eq!(ledger.of("after").len(), 1);
}

#[handler(group = "late", deliver = "last")]
async fn from_the_last(
    c: Chore,
    ctx: Context,
    State(l): State<Ledger>,
) -> Result<(), HandlerError> {
    l.record(&c.key, &ctx);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_position_redis_lacks_is_refused_at_start_up() {
    if jetflow_tests::skip_on_nats_floor("a_start_position_redis_lacks_is_refused_at_start_up") {
        return;
    }
    let server = redis_server().await;
    let err = App::new("t")
        .url(server.url())
        .state(Ledger::default())
        .handler(from_the_last)
        .start()
        .await
        .expect_err("deliver = last is refused");
    let jetflow::Error::Config(e) = &err else {
        panic!("a configuration error, got {err}");
    };
    assert_eq!(e.kind(), ConfigErrorKind::Unsupported);
    assert_eq!(e.handler(), Some("from_the_last"));
    assert!(err.to_string().contains("`deliver = Last`"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_connect_error() {
    if jetflow_tests::skip_on_nats_floor("a_server_that_is_not_there_is_a_connect_error") {
        return;
    }
    // a port nothing listens on: one a private server held, then released
    let url = {
        let server = redis_server().await;
        server.url()
    };
    let err = App::new("t")
        .url(format!("{url}/0"))
        .handler(do_chore)
        .state(Ledger::default())
        .start()
        .await
        .expect_err("nothing listens");
    let jetflow::Error::Connect(e) = &err else {
        panic!("a connect error, got {err}");
    };
    assert_eq!(e.kind(), ConnectErrorKind::Unreachable);
    let secret = App::new("t")
        .url("redis://user:s3cret@127.0.0.1:1/0")
        .start()
        .await
        .expect_err("nothing listens");
    assert!(!secret.to_string().contains("s3cret"), "{secret}");
}
