//! Provisioning: streams and consumers created from the code, drift
//! reported and handled by policy, a deleted consumer recreated, invalid
//! options refused before anything reaches the server.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use jetflow::handler::{BoxFuture, HandlerOptions};
use jetflow::prelude::*;
use jetflow::topology::TopologyPolicy;
use jetflow_tests::{Ledger, WAIT, consumer_info, server};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Parcel {
    key: String,
}

#[handler(group = "depot", ack_wait = "10s", max_deliver = 4, backoff = "1s")]
async fn sort_parcel(
    p: Parcel,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    Ok(())
}

#[allow(clippy::unwrap_used)]
async fn drifted_consumer(url: &str) {
    // What an older deployment left behind: same durable, other ack_wait.
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "PARCEL".into(),
            subjects: vec!["parcel.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("depot--parcel".into()),
            filter_subject: "parcel.v1".into(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(45),
            max_deliver: 4,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn declared_streams_and_consumers_are_created() {
    let server = server().await;
    let app = App::new("t")
        .url(server.url())
        .state(Ledger::default())
        .handler(sort_parcel)
        .start()
        .await
        .unwrap();
    let info = consumer_info(&server.url(), "PARCEL", "depot--parcel").await;
    assert_eq!(info.config.filter_subject, "parcel.v1");
    assert_eq!(info.config.ack_wait, Duration::from_secs(10));
    // no server-side limit: jetflow dead-letters at the handler's max_deliver
    // itself, so a last delivery that does not settle is never stranded
    assert_eq!(info.config.max_deliver, -1);
    assert_eq!(info.config.ack_policy, AckPolicy::Explicit);
    let js = async_nats::jetstream::new(jetflow_tests::nats_client(app.bus()));
    let mut parcel = js.get_stream("PARCEL").await.unwrap();
    assert_eq!(
        parcel.info().await.unwrap().config.subjects,
        vec!["parcel.>".to_owned()]
    );
    let mut dlq = js.get_stream("DLQ").await.unwrap();
    assert_eq!(
        dlq.info().await.unwrap().config.subjects,
        vec!["dlq.>".to_owned()]
    );
    app.stop().await.unwrap();
}

/// An event only published, never consumed, by the app under test.
#[event(version = "v1")]
pub struct Shipped {
    parcel: String,
}

#[tokio::test]
async fn a_producer_only_app_provisions_what_it_publishes() {
    let server = server().await;
    // Without `publishes`, nothing declares `SHIPPED`: the publish is refused.
    let bare = App::new("t").url(server.url()).start().await.unwrap();
    let shipped = Shipped {
        parcel: "p1".into(),
    };
    let refused = bare.bus().publish(&shipped).await.unwrap_err();
    assert!(
        refused.to_string().contains("no stream captures"),
        "{refused}"
    );
    bare.stop().await.unwrap();

    let app = App::new("t")
        .url(server.url())
        .publishes::<Shipped>()
        .start()
        .await
        .unwrap();
    let ack = app.bus().publish(&shipped).await.unwrap();
    assert_eq!((ack.stream.as_str(), ack.sequence), ("SHIPPED", 1));
    let js = async_nats::jetstream::new(jetflow_tests::nats_client(app.bus()));
    let mut stream = js.get_stream("SHIPPED").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().config.subjects,
        vec!["shipped.>".to_owned()]
    );
    // No handler with a DLQ: no DLQ stream either.
    assert!(js.get_stream("DLQ").await.is_err());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn drift_is_refused_with_a_field_diff_under_the_refuse_policy() {
    let server = server().await;
    drifted_consumer(&server.url()).await;
    let err = App::new("t")
        .url(server.url())
        .state(Ledger::default())
        .handler(sort_parcel)
        .topology_policy(TopologyPolicy::Refuse)
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("consumer `depot--parcel`"), "{text}");
    assert!(text.contains("ack_wait: server=45s declared=10s"), "{text}");
    // Refused means unchanged.
    let info = consumer_info(&server.url(), "PARCEL", "depot--parcel").await;
    assert_eq!(info.config.ack_wait, Duration::from_secs(45));
}

#[tokio::test]
async fn drift_is_updated_under_the_default_policy() {
    let server = server().await;
    drifted_consumer(&server.url()).await;
    let app = App::new("t")
        .url(server.url())
        .state(Ledger::default())
        .handler(sort_parcel)
        .start()
        .await
        .unwrap();
    let info = consumer_info(&server.url(), "PARCEL", "depot--parcel").await;
    assert_eq!(info.config.ack_wait, Duration::from_secs(10));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bind_only_needs_existing_topology() {
    let server = server().await;
    let err = App::new("t")
        .url(server.url())
        .state(Ledger::default())
        .handler(sort_parcel)
        .topology_policy(TopologyPolicy::BindOnly)
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bind-only"), "{err}");
}

#[tokio::test]
async fn a_consumer_deleted_while_running_is_recreated_and_consumption_resumes() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(sort_parcel)
        .pull_timing(Duration::from_secs(4), Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    app.bus()
        .publish(&Parcel {
            key: "before".into(),
        })
        .await
        .unwrap();
    ledger
        .wait_until(WAIT, "first parcel", |e| e.len() == 1)
        .await;
    let js = async_nats::jetstream::new(jetflow_tests::nats_client(app.bus()));
    js.get_stream("PARCEL")
        .await
        .unwrap()
        .delete_consumer("depot--parcel")
        .await
        .unwrap();
    let recreated = jetflow_tests::eventually(WAIT, "consumer recreated", || async {
        let stream = js.get_stream("PARCEL").await.ok()?;
        stream.consumer_info("depot--parcel").await.ok()
    })
    .await;
    assert_eq!(recreated.config.ack_wait, Duration::from_secs(10));
    app.bus()
        .publish(&Parcel {
            key: "after".into(),
        })
        .await
        .unwrap();
    ledger
        .wait_until(WAIT, "parcel after recreation", |e| {
            e.iter().any(|e| e.key == "after")
        })
        .await;
    app.stop().await.unwrap();
}

struct BadOptions;

impl Handler for BadOptions {
    type Event = Parcel;
    const OPTIONS: HandlerOptions = HandlerOptions::new("bad").max_deliver(2).backoff(&[
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(3),
    ]);
    fn call(&self, _: Parcel, _: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn invalid_options_are_refused_before_connecting() {
    // Nothing listens on this port: the error must come from validation.
    let err = App::new("t")
        .url("nats://127.0.0.1:1")
        .handler(BadOptions)
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("handler `bad`") && text.contains("`max_deliver = 2` allows only 1 retry"),
        "{text}"
    );
}
