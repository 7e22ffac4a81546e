//! Limits and hostile input: payloads no handler should see go to the DLQ
//! at once without exhausting the stack or memory; a message over the
//! broker's limit is refused before it is sent; a full stream's refusal
//! reaches the publisher.

use jetflow::PublishError;
use jetflow::prelude::*;
use jetflow::publish::PublishErrorKind;

use super::{Broker, Job, Kind, job, settled, wait_stats};
use crate::{Ledger, dead_letters};

#[handler(group = "wary")]
async fn guarded(j: Job, ctx: Context, State(l): State<Ledger>) -> Result<(), HandlerError> {
    l.record(&j.key, &ctx);
    Ok(())
}

/// JSON nested 10,000 deep, 900 KB of the wrong shape, bytes that are not
/// JSON, an empty payload: each is dead-lettered on its first delivery
/// (the decoder's depth limit keeps the stack safe); the handler is never
/// called, and a good event after them is handled.
pub async fn hostile_payloads_dead_lettered_without_calling(b: Broker) {
    let ledger = Ledger::default();
    let app = b.start(&ledger, guarded).await;
    let bus = app.bus();
    let deep = format!(
        r#"{{"key":{}"k"{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let wide = format!(r#"{{"key":[{}1]}}"#, "1,".repeat(450_000));
    let hostile: [(&str, Vec<u8>); 4] = [
        ("deep", deep.into_bytes()),
        ("wide", wide.into_bytes()),
        ("binary", vec![0xff, 0x00, 0xfe, 0x7b, 0x22]),
        ("empty", Vec::new()),
    ];
    for (name, payload) in &hostile {
        bus.publish_raw("job.v1", Headers::new(), payload.clone().into())
            .await
            .unwrap_or_else(|e| panic!("{name} stored: {e}"));
    }
    bus.publish(&job("good")).await.expect("publish");
    let dead = dead_letters(bus, hostile.len()).await;
    let stats = wait_stats(&app, "guarded", |s| s.settled() >= 5).await;
    settled(&app, "JOB", "wary--job", 5).await;
    app.stop().await.expect("stops");
    assert_eq!(
        (
            stats.undecodable,
            stats.dead_lettered,
            stats.acked,
            stats.retried
        ),
        (4, 4, 1, 0),
        "{stats:?}"
    );
    let keys: Vec<String> = ledger.entries().into_iter().map(|e| e.key).collect();
    assert_eq!(
        keys,
        vec!["good"],
        "only the good event reached the handler"
    );
    for (d, (name, payload)) in dead.iter().zip(&hostile) {
        assert_eq!(d.delivered, 1, "{name}: no retry");
        assert!(d.error.contains("cannot be decoded"), "{name}: {}", d.error);
        assert_eq!(
            &d.payload[..],
            &payload[..],
            "{name}: the payload is kept whole"
        );
    }
}

/// A message over the broker's payload limit is refused before it is
/// sent, with a typed error; the connection stays up and the next
/// publish is stored.
pub async fn oversized_publish_refused_before_sending(b: Broker) {
    if !b.can_fault(
        "oversized_publish_refused_before_sending",
        &[
            (
                Kind::Redis,
                "a stream entry has no size limit there (proto-max-bulk-len is 512 MB)",
            ),
            (
                Kind::RabbitMq,
                "the broker's max_message_size is 128 MB and it closes the channel past it, after the send",
            ),
        ],
    ) {
        return;
    }
    let ledger = Ledger::default();
    let app = b.start(&ledger, guarded).await;
    let huge = format!(r#"{{"key":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let refused: PublishError = app
        .bus()
        .publish_raw("job.v1", Headers::new(), huge.into())
        .await
        .expect_err("over max_payload");
    assert_eq!(refused.kind(), &PublishErrorKind::TooLarge, "{refused}");
    assert!(refused.to_string().contains("max_payload"), "{refused}");
    let ack = app
        .bus()
        .publish(&job("after"))
        .await
        .expect("still connected");
    assert_eq!(ack.sequence, 1, "the refused message was never stored");
    let stats = wait_stats(&app, "guarded", |s| s.acked >= 1).await;
    app.stop().await.expect("stops");
    assert_eq!(stats.received, 1);
}

/// A stream that is full with `discard = new` refuses the publish, and
/// the publisher gets the error: nothing is dropped silently.
pub async fn full_stream_refusal_reaches_the_publisher(b: Broker) {
    if !b.can_fault(
        "full_stream_refusal_reaches_the_publisher",
        &[(
            Kind::Kafka,
            "jetflow declares no size limit for a topic, and the test kit cannot fill one",
        ), (Kind::RabbitMq, "RabbitMQ queues and its DLQ stream have no limit that refuses a publish (its refusal, an unroutable publish, is tested in rabbitmq_transport.rs)"), ],
    ) {
        return;
    }
    if b.kind == Kind::Redis {
        eprintln!(
            "conformance: skipping full_stream_refusal_reaches_the_publisher on Redis: jetflow \
             declares no length limit for a Redis stream"
        );
        return;
    }
    let ledger = Ledger::default();
    let app = b.start(&ledger, guarded).await;
    b.refuse_writes("JOB", "job.filler", true).await;
    let refused = app
        .bus()
        .publish(&job("no room"))
        .await
        .expect_err("the stream is full");
    assert_eq!(refused.kind(), &PublishErrorKind::Rejected, "{refused}");
    b.refuse_writes("JOB", "job.filler", false).await;
    app.bus().publish(&job("room")).await.expect("room again");
    let stats = wait_stats(&app, "guarded", |s| s.acked >= 1).await;
    app.stop().await.expect("stops");
    assert_eq!(stats.received, 1, "the refused event was never stored");
    assert_eq!(
        ledger
            .entries()
            .into_iter()
            .map(|e| e.key)
            .collect::<Vec<_>>(),
        vec!["room"]
    );
}
