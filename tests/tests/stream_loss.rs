//! A server that comes back with an empty store (its disk was lost): the
//! app recreates the streams and consumers it declared and events flow
//! again; under bind-only it stops loudly instead. The deletion of one
//! stream on every transport is in `conformance.rs`.

use std::time::Duration;

use jetflow::error::ConsumerErrorKind;
use jetflow::prelude::*;
use jetflow::topology::TopologyPolicy;
use jetflow_tests::{Ledger, WAIT, dead_letters, server};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Parcel {
    key: String,
}

fn parcel(key: &str) -> Parcel {
    Parcel { key: key.into() }
}

#[handler(group = "depot")]
async fn sort(p: Parcel, ctx: Context, State(ledger): State<Ledger>) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    if p.key.starts_with("poison") {
        return Err(HandlerError::reject("unsortable"));
    }
    Ok(())
}

/// Publishes `key` through `bus`, retrying while the app is still
/// reprovisioning (at most [`WAIT`]).
async fn publish_eventually(bus: &jetflow::Bus, key: &str) {
    jetflow_tests::eventually(WAIT, &format!("publish of {key} acked"), || async {
        bus.publish(&parcel(key)).await.ok()
    })
    .await;
}

#[tokio::test]
async fn store_lost_on_restart_streams_and_consumers_are_provisioned_again() {
    let mut server = server().await;
    let ledger = Ledger::default();
    let app = App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(sort)
        .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    for k in ["a1", "a2", "a3"] {
        app.bus().publish(&parcel(k)).await.unwrap();
    }
    ledger
        .wait_until(WAIT, "handled before the loss", |_| ledger.distinct() == 3)
        .await;

    server.restart_with_empty_store().await.unwrap();
    // The first publishes may meet the empty server before anything is
    // back: the bus recreates the stream itself, the loop the consumer.
    for k in ["b1", "b2", "b3"] {
        publish_eventually(app.bus(), k).await;
    }
    ledger
        .wait_until(WAIT, "handled after the loss", |_| ledger.distinct() == 6)
        .await;
    // the DLQ stream came back too
    publish_eventually(app.bus(), "poison-1").await;
    let dead = dead_letters(app.bus(), 1).await;
    assert_eq!(dead[0].error, "rejected: unsortable");
    let state = app
        .bus()
        .consumer_state("PARCEL", "depot--parcel")
        .await
        .unwrap();
    app.stop().await.unwrap();
    assert_eq!(
        state.ack_floor, 4,
        "the new stream holds b1..b3 and poison-1"
    );
    let after: Vec<_> = ledger
        .entries()
        .into_iter()
        .filter(|e| e.key.starts_with('b'))
        .map(|e| (e.key, e.seq))
        .collect();
    assert_eq!(
        after,
        vec![("b1".into(), 1), ("b2".into(), 2), ("b3".into(), 3)],
        "sequences restarted at 1 in the recreated stream"
    );
}

#[tokio::test]
async fn store_lost_under_bind_only_the_loop_stops_loudly() {
    let mut server = server().await;
    let ledger = Ledger::default();
    let app = || {
        App::new("t")
            .url(server.url())
            .state(ledger.clone())
            .handler(sort)
            .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
    };
    // provisioned once by a deployment with create rights
    app().start().await.unwrap().stop().await.unwrap();
    let mut bound = app()
        .topology_policy(TopologyPolicy::BindOnly)
        .start()
        .await
        .unwrap();
    let url = server.url();
    server.restart_with_empty_store().await.unwrap();
    let failed = tokio::time::timeout(WAIT, bound.wait_failure())
        .await
        .expect("the loop stops by itself")
        .expect_err("a bind-only app cannot go on without its stream");
    // the loop has ended; the stop only collects it
    let _ = bound.stop().await;
    match failed {
        jetflow::Error::Consumer(e) => {
            assert_eq!(e.kind(), ConsumerErrorKind::StreamDeleted, "{e}");
            assert!(e.to_string().contains("bind-only"), "{e}");
        }
        other => panic!("unexpected error: {other}"),
    }
    // nothing was created behind the operator's back
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    assert!(js.get_stream("PARCEL").await.is_err());
}
