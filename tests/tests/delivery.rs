//! Delivery semantics that need a raw NATS client. The rest of DESIGN.md §4
//! (ack, retry with delay, DLQ after max_deliver, undecodable payload,
//! panic, progress, term) runs on both transports in `conformance.rs`.

use jetflow::prelude::*;
use jetflow_tests::{Ledger, WAIT, dead_letters, server, start};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Ping {
    key: String,
}

fn ping(key: &str) -> Ping {
    Ping {
        key: key.to_owned(),
    }
}

#[handler(group = "wild", subject = "ping.*")]
async fn any_version(
    p: Ping,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    Ok(())
}

#[tokio::test]
async fn a_newer_version_is_never_decoded_as_the_current_one() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start(&server, &ledger, any_version).await;
    let js = async_nats::jetstream::new(jetflow_tests::nats_client(app.bus()));
    // Same shape, so a careless consumer would decode it as v1.
    js.publish("ping.v2", "{\"key\": \"v2\"}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    app.bus().publish(&ping("v1")).await.unwrap();
    let dead = dead_letters(app.bus(), 1).await;
    ledger
        .wait_until(WAIT, "v1 handled", |e| !e.is_empty())
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subject, "ping.v2");
    assert_eq!(dead[0].delivered, 1);
    assert!(
        dead[0].error.contains("unsupported version v2"),
        "{}",
        dead[0].error
    );
    assert_eq!(
        ledger
            .entries()
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        vec!["v1"]
    );
    app.stop().await.unwrap();
}
