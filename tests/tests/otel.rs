//! OpenTelemetry trace propagation on a real nats-server, exported to the
//! SDK's in-memory exporter: producer -> handler A (a retry, then
//! `ctx.publish`) -> handler B (a permanent error: the DLQ copy) is one
//! trace with the right parent/child links, span kinds and messaging
//! attributes; the handler sees the trace id (`Context::trace_id`) and so
//! do its log lines; a foreign producer's message (raw async-nats, no
//! `traceparent`) starts a trace of its own.
//!
//! The subscriber is global (one per process): this binary holds one test.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use jetflow::prelude::*;
use jetflow_tests::{WAIT, eventually, server};
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;

/// An order was placed (published by jetflow, or by a foreign producer).
#[event(version = "v1", id = order_id)]
pub struct Placed {
    order_id: String,
}

/// An order was packed (published by handler A).
#[event(version = "v1", id = order_id)]
pub struct Packed {
    order_id: String,
}

/// What handler A saw: order id -> `ctx.trace_id()` of each delivery.
static SEEN: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());

/// Handler A: fails the first delivery (a retry), then packs the order.
#[handler(group = "packing", max_deliver = 3, backoff = "20ms")]
async fn pack(p: Placed, ctx: Context) -> Result<(), HandlerError> {
    SEEN.lock()
        .expect("not poisoned")
        .push((p.order_id.clone(), ctx.trace_id()));
    tracing::info!(order = %p.order_id, "packing");
    if ctx.delivered() == 1 {
        return Err(HandlerError::retry("the tape ran out"));
    }
    ctx.publish(&Packed {
        order_id: p.order_id,
    })
    .await?;
    Ok(())
}

/// Handler B: refuses every parcel (dead-lettered at once).
#[handler(group = "shipping")]
async fn ship(_p: Packed) -> Result<(), HandlerError> {
    Err(HandlerError::reject("no courier"))
}

/// Log lines, written by the fmt layer.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    attr(span, key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default()
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(i)) => *i,
        other => panic!("{key} of {} is {other:?}, not an integer", span.name),
    }
}

/// The one span named `name` whose attribute `key` is `value`.
fn only<'a>(spans: &'a [&'a SpanData], name: &str) -> &'a SpanData {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span: {:#?}", names(spans));
    found[0]
}

fn names(spans: &[&SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_the_event_through_retry_publish_and_dlq() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(jetflow::telemetry::trace::layer(
            provider.tracer("otel-test"),
        ))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let server = server().await;
    let app = App::new("otel")
        .url(server.url())
        .handler(pack)
        .handler(ship)
        .start()
        .await
        .expect("app starts");

    // a jetflow producer, and a foreign one: raw JetStream publish, no headers
    app.bus()
        .publish(&Placed {
            order_id: "traced".into(),
        })
        .await
        .expect("published");
    let client = async_nats::connect(server.url()).await.expect("connects");
    let js = async_nats::jetstream::new(client);
    js.publish(Placed::SUBJECT, r#"{"order_id":"foreign"}"#.into())
        .await
        .expect("sent")
        .await
        .expect("stored");

    app.wait_stats("ship", WAIT, |s| s.dead_lettered >= 2)
        .await
        .expect("both parcels dead-lettered");
    // every span of both chains: 2 x (process A twice, publish, process B,
    // publish DLQ copy) + the jetflow producer's publish
    let spans = eventually(WAIT, "11 exported spans", || async {
        let spans = exporter.get_finished_spans().expect("in-memory spans");
        (spans.len() >= 11).then_some(spans)
    })
    .await;
    app.stop().await.expect("stops");
    let _ = provider.shutdown();

    let mut traces: HashMap<TraceId, Vec<&SpanData>> = HashMap::new();
    for s in &spans {
        traces.entry(s.span_context.trace_id()).or_default().push(s);
    }
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let parent = |s: &SpanData| by_id.get(&s.parent_span_id).copied();
    let message_of = |s: &SpanData| text(s, "messaging.message.id");

    // --- the jetflow producer's trace
    let root = spans
        .iter()
        .find(|s| s.name == "publish placed.v1")
        .expect("the producer span");
    let trace = root.span_context.trace_id();
    let chain = &traces[&trace];
    assert_eq!(
        chain.len(),
        6,
        "one trace from the producer to the DLQ copy: {:?}",
        names(chain)
    );
    assert_eq!(root.span_kind, SpanKind::Producer);
    assert_eq!(root.parent_span_id, SpanId::INVALID, "a root span");
    assert_eq!(text(root, "messaging.system"), "nats");
    assert_eq!(text(root, "messaging.operation.type"), "publish");
    assert_eq!(text(root, "messaging.destination.name"), "placed.v1");
    assert_eq!(message_of(root), "placed.v1:traced");

    let mut deliveries: Vec<&SpanData> = chain
        .iter()
        .copied()
        .filter(|s| s.name == "process placed.v1")
        .collect();
    deliveries.sort_by_key(|s| int(s, "delivered"));
    assert_eq!(deliveries.len(), 2, "a retry and a success");
    for (n, d) in deliveries.iter().enumerate() {
        assert_eq!(d.span_kind, SpanKind::Consumer);
        assert_eq!(d.parent_span_id, root.span_context.span_id());
        assert!(d.parent_span_is_remote, "the parent came in the headers");
        assert_eq!(text(d, "messaging.system"), "nats");
        assert_eq!(text(d, "messaging.operation.type"), "process");
        assert_eq!(text(d, "messaging.destination.name"), "placed.v1");
        assert_eq!(text(d, "messaging.consumer.group.name"), "packing");
        assert_eq!(message_of(d), "placed.v1:traced");
        assert_eq!(text(d, "handler"), "pack");
        assert_eq!(int(d, "delivered"), n as i64 + 1);
        assert_eq!(text(d, "trace_id"), trace.to_string());
    }
    assert_eq!(text(deliveries[0], "outcome"), "retry");
    assert_eq!(text(deliveries[1], "outcome"), "ack");

    let packed = only(chain, "publish packed.v1");
    assert_eq!(packed.span_kind, SpanKind::Producer);
    assert_eq!(
        parent(packed).map(|p| p.span_context.span_id()),
        Some(deliveries[1].span_context.span_id()),
        "ctx.publish runs in the handler's span"
    );
    let shipped = only(chain, "process packed.v1");
    assert_eq!(shipped.span_kind, SpanKind::Consumer);
    assert_eq!(shipped.parent_span_id, packed.span_context.span_id());
    assert_eq!(text(shipped, "messaging.consumer.group.name"), "shipping");
    assert_eq!(text(shipped, "outcome"), "dead-lettered");
    let copy = only(chain, "publish dlq.shipping.packed.v1");
    assert_eq!(copy.span_kind, SpanKind::Producer);
    assert_eq!(copy.parent_span_id, shipped.span_context.span_id());

    // --- the foreign producer's message: a trace of its own
    let foreign: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "process placed.v1" && message_of(s).is_empty())
        .collect();
    assert_eq!(foreign.len(), 2, "its two deliveries");
    let foreign_trace = foreign[0].span_context.trace_id();
    assert_ne!(foreign_trace, trace);
    for f in &foreign {
        assert_eq!(
            f.parent_span_id,
            SpanId::INVALID,
            "no producer span before it"
        );
    }
    // its redelivery is a new root: each delivery without `traceparent` starts a trace
    let foreign_chain = &traces[&foreign_trace];
    assert!(
        foreign_chain.iter().all(|s| s.name != "publish placed.v1"),
        "{:?}",
        names(foreign_chain)
    );

    // --- what the handler and its log lines saw
    let seen = SEEN.lock().expect("not poisoned").clone();
    let traced: Vec<_> = seen.iter().filter(|(id, _)| id == "traced").collect();
    assert_eq!(traced.len(), 2);
    for (_, id) in &traced {
        assert_eq!(id.as_deref(), Some(trace.to_string().as_str()));
    }
    let logs = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("utf-8");
    let packing: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("packing") && l.contains("order=traced"))
        .collect();
    assert_eq!(packing.len(), 2, "{logs}");
    for line in packing {
        assert!(
            line.contains(&format!("trace_id={trace}")),
            "the trace id is on the handler's log lines: {line}"
        );
    }
}
