//! What is specific to the RabbitMQ transport (the shared delivery
//! scenarios run in `conformance.rs`): a publish no queue is bound for is
//! an error, persistent messages survive a broker restart mid-stream, the
//! DLQ is read back from its RabbitMQ stream, and start-up refusals. Tests
//! share one private node (a vhost each), except the one that kills its
//! own; every test is bounded in time.

use std::time::Duration;

use jetflow::error::{ConfigErrorKind, ConnectErrorKind};
use jetflow::prelude::*;
use jetflow::transport::PublishErrorKind;
use jetflow_tests::{Ledger, WAIT, rabbitmq_server, rabbitmq_vhost};

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

async fn start(url: &str, ledger: &Ledger) -> jetflow::AppHandle {
    App::new("t")
        .url(url)
        .state(ledger.clone())
        .handler(do_chore)
        .start()
        .await
        .expect("app starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_no_queue_is_bound_for_is_an_error() {
    if jetflow_tests::skip_on_nats_floor("a_publish_no_queue_is_bound_for_is_an_error") {
        return;
    }
    let url = rabbitmq_vhost("unroutable").await;
    let ledger = Ledger::default();
    let app = start(&url, &ledger).await;
    let err = app
        .bus()
        .publish_raw("nobody.listens.v1", Headers::new(), "{}".into())
        .await
        .expect_err("no queue is bound for the subject");
    assert_eq!(err.kind(), &PublishErrorKind::Unroutable, "{err}");
    assert!(err.to_string().contains("no queue is bound"), "{err}");
    // the connection is still good: a routable publish goes through
    app.bus()
        .publish(&Chore {
            key: "after".into(),
        })
        .await
        .expect("routable publish");
    ledger.wait_until(WAIT, "handled", |e| !e.is_empty()).await;
    app.stop().await.expect("stops");
    assert_eq!(ledger.of("after").len(), 1);
}

// After the restart the consumer must handle the rest. This once failed
// (the settle of the message that was running when the connection died
// hung on the dead channel and held the handler's only slot); every settle
// is bounded by the response timeout now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_survive_a_broker_restart_mid_stream() {
    if jetflow_tests::skip_on_nats_floor("persistent_messages_survive_a_broker_restart_mid_stream")
    {
        return;
    }
    const N: usize = 200;
    let mut server = rabbitmq_server().await;
    let url = server.url();
    let ledger = Ledger::default();
    // the group's queue exists before the backlog is published
    let app = start(&url, &ledger).await;
    app.stop().await.expect("stops");
    let publisher = App::new("publisher")
        .url(&url)
        .start()
        .await
        .expect("publisher starts");
    for i in 0..N / 2 {
        publisher
            .bus()
            .publish(&Chore { key: i.to_string() })
            .await
            .expect("confirmed before the crash");
    }
    let consumer = start(&url, &ledger).await;
    ledger
        .wait_until(WAIT, "some handled", |e| !e.is_empty())
        .await;
    // restart mid-stream: a clean stop (see `RabbitMqServer::stop` for why
    // not SIGKILL), then the same node with the same data
    tokio::time::timeout(Duration::from_secs(120), server.restart())
        .await
        .expect("restarted in time")
        .expect("restart");
    // publishes after the restart: each one retried until confirmed
    for i in N / 2..N {
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Err(e) = publisher.bus().publish(&Chore { key: i.to_string() }).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "publish {i} not confirmed after the restart: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    ledger
        .wait_until(
            Duration::from_secs(120),
            "every confirmed message handled",
            |_| ledger.distinct() >= N,
        )
        .await;
    consumer.stop().await.expect("stops");
    publisher.stop().await.expect("stops");
    for i in 0..N {
        assert!(
            !ledger.of(&i.to_string()).is_empty(),
            "message {i} was lost"
        );
    }
}

#[handler(group = "doomed", max_deliver = 2, backoff = "100ms")]
async fn always_fails(c: Chore, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&c.key, &ctx);
    Err(HandlerError::retry("downstream down"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_from_the_dlq_stream_and_cannot_be_purged() {
    if jetflow_tests::skip_on_nats_floor(
        "dead_letters_are_listed_from_the_dlq_stream_and_cannot_be_purged",
    ) {
        return;
    }
    let url = rabbitmq_vhost("dlq").await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(&url)
        .state(ledger.clone())
        .handler(always_fails)
        .start()
        .await
        .expect("app starts");
    app.bus()
        .publish(&Chore { key: "d".into() })
        .await
        .expect("publish");
    let records = jetflow_tests::dead_letters(app.bus(), 1).await;
    let d = &records[0];
    assert_eq!((d.delivered, d.group.as_str()), (2, "doomed"));
    assert_eq!(d.subject, "chore.v1");
    assert_eq!(d.dlq_sequence, 1, "the first record of the stream");
    let purge = jetflow::dlq::purge(app.bus(), &jetflow::dlq::Filter::new(), false).await;
    app.stop().await.expect("stops");
    assert!(purge.is_err(), "a RabbitMQ stream is append-only");
    assert_eq!(
        ledger
            .of("d")
            .iter()
            .map(|e| e.delivered)
            .collect::<Vec<_>>(),
        [1, 2]
    );
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
async fn a_start_position_rabbitmq_lacks_is_refused_at_start_up() {
    if jetflow_tests::skip_on_nats_floor("a_start_position_rabbitmq_lacks_is_refused_at_start_up") {
        return;
    }
    let url = rabbitmq_vhost("refused").await;
    let err = App::new("t")
        .url(url)
        .state(Ledger::default())
        .handler(from_the_last)
        .start()
        .await
        .expect_err("deliver = last is refused");
    let jetflow::Error::Config(e) = &err else {
        panic!("a configuration error, got {err}");
    };
    assert_eq!(e.kind(), ConfigErrorKind::Unsupported);
    assert!(err.to_string().contains("`deliver = Last`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_that_does_not_exist_is_a_connect_error() {
    if jetflow_tests::skip_on_nats_floor("a_vhost_that_does_not_exist_is_a_connect_error") {
        return;
    }
    let url = rabbitmq_vhost("exists").await;
    let missing = format!("{}-not-there", url);
    let err = App::new("t")
        .url(&missing)
        .start()
        .await
        .expect_err("no such vhost");
    let jetflow::Error::Connect(e) = &err else {
        panic!("a connect error, got {err}");
    };
    assert_eq!(e.kind(), ConnectErrorKind::Unauthorized, "{err}");
    assert!(
        !err.to_string().contains("guest:guest"),
        "the password is redacted: {err}"
    );
}
