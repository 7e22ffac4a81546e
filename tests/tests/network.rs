//! Network faults between the service and the server, through a
//! [`FaultProxy`]: a PubAck that never arrives is retried with the same
//! event id and stored once; latency on every packet causes no false
//! heartbeat alarm and every ack is confirmed.

use std::time::{Duration, SystemTime};

use jetflow::LoopState;
use jetflow::prelude::*;
use jetflow::testing::FaultProxy;
use jetflow_tests::{Ledger, WAIT, server, wait_ack_floor};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Packet {
    key: String,
}

fn packet(key: impl Into<String>) -> Packet {
    Packet { key: key.into() }
}

#[handler(group = "wire", concurrency = 8)]
async fn receive(
    p: Packet,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&p.key, &ctx);
    Ok(())
}

/// The app, connected through `proxy`, with 1 s heartbeats (a silent
/// server is declared after 3 s).
async fn through(proxy: &FaultProxy, ledger: &Ledger) -> jetflow::AppHandle {
    App::new("t")
        .url(proxy.url())
        .state(ledger.clone())
        .handler(receive)
        .pull_timing(Duration::from_secs(5), Duration::from_secs(1))
        .start()
        .await
        .expect("the app starts through the proxy")
}

/// Messages the stream holds, asked of the server directly.
async fn stored(url: &str, stream: &str) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.expect("connects"));
    let mut stream = js.get_stream(stream).await.expect("stream");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test]
async fn a_lost_puback_is_retried_with_the_same_id_and_stored_once() {
    let server = server().await;
    let proxy = FaultProxy::start(&server.url()).await.unwrap();
    let ledger = Ledger::default();
    let app = through(&proxy, &ledger).await;
    // The publish reaches the server; its PubAck does not reach the client.
    proxy.hold_replies(true);
    let bus = app.bus().clone();
    let publish = tokio::spawn(async move { bus.publish(&packet("once")).await });
    // the first attempt times out (5 s); then the connection is cut, what
    // was held is lost, and a retry goes out on the new connection
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.cut();
    proxy.hold_replies(false);
    let ack = tokio::time::timeout(WAIT, publish)
        .await
        .expect("the publish ends")
        .expect("publish task")
        .expect("a retry with the same id is acknowledged");
    assert_eq!(ack.sequence, 1, "{ack:?}");
    ledger.wait_until(WAIT, "handled", |e| !e.is_empty()).await;
    wait_ack_floor(&server.url(), "PACKET", "wire--packet", 1).await;
    app.stop().await.unwrap();
    assert_eq!(stored(&server.url(), "PACKET").await, 1, "stored once");
    assert_eq!(
        ledger.of("once").len(),
        1,
        "handled once: {:?}",
        ledger.entries()
    );
}

#[tokio::test]
async fn latency_on_every_packet_raises_no_false_alarm_and_every_ack_is_confirmed() {
    const N: usize = 50;
    let server = server().await;
    let proxy = FaultProxy::start(&server.url()).await.unwrap();
    let ledger = Ledger::default();
    // 600 ms of round trip must not look like a silent server
    let app = through(&proxy, &ledger).await;
    app.wait_status("receive", WAIT, LoopState::is_receiving)
        .await
        .unwrap();
    proxy.set_latency(Duration::from_millis(300));
    let slowed = SystemTime::now();
    // published straight to the server, consumed through the slow link
    let publisher = App::new("publisher")
        .url(server.url())
        .start()
        .await
        .unwrap();
    for i in 0..N {
        publisher
            .bus()
            .publish(&packet(i.to_string()))
            .await
            .unwrap();
    }
    ledger
        .wait_until(WAIT, "every packet handled", |_| ledger.distinct() == N)
        .await;
    wait_ack_floor(&server.url(), "PACKET", "wire--packet", N as u64).await;
    // a few more heartbeat periods through the slow link
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = app.status();
    app.stop().await.unwrap();
    publisher.stop().await.unwrap();
    assert_eq!(status[0].state, LoopState::Receiving, "{status:?}");
    assert!(
        status[0].since <= slowed,
        "the loop left `receiving` under latency: {status:?}"
    );
    assert_eq!(ledger.entries().len(), N, "each packet handled once");
}
