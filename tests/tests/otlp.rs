//! Spans leave the process over OTLP/HTTP: the child `chore-service`
//! (`jetflow::telemetry::init()`, configured only by `OTEL_*` variables)
//! sends its spans to a receiver started here, which decodes the
//! protobuf bodies. A message published with a `traceparent` is handled in
//! that trace, as the child of the span it names; messages without one
//! start traces of their own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use jetflow::prelude::*;
use jetflow_tests::service::{Chore, Chores, Service, brief_chore, provision_and_fill};
use jetflow_tests::{WAIT, eventually, server};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

const CHILD: &str = env!("CARGO_BIN_EXE_chore-service");
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

/// What the receiver got: each request's content type and body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP trace receiver on a random loopback port.
async fn receiver() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sink.lock().expect("lock").push((content_type, body));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// Every span received so far, with its resource's `service.name`.
fn spans(received: &Received) -> Vec<(Option<String>, Span)> {
    let mut out = Vec::new();
    for (content_type, body) in received.lock().expect("lock").iter() {
        assert_eq!(content_type, "application/x-protobuf");
        let request = ExportTraceServiceRequest::decode(body.clone()).expect("an OTLP request");
        for rs in request.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| text(&r.attributes, "service.name"));
            for ss in rs.scope_spans {
                for span in ss.spans {
                    out.push((service.clone(), span));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_over_otlp_http_in_the_producers_trace() {
    let (addr, received) = receiver().await;
    let server = server().await;
    provision_and_fill(&server.url(), brief_chore, 2).await;
    // a producer in another service: its span is the parent
    let bus = Bus::on(
        jetflow::transport::nats::NatsTransport::from_client(
            async_nats::connect(server.url()).await.expect("connects"),
        ),
        "upstream",
    );
    let mut headers = Headers::new();
    headers.insert("ce-id", "chore-traced");
    headers.insert("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"));
    bus.publish_raw(Chore::SUBJECT, headers, r#"{"key":"chore-traced"}"#.into())
        .await
        .expect("published");

    let endpoint = format!("http://{addr}");
    let service = Service::spawn_with(
        CHILD,
        &server.url(),
        Chores::Brief,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "chores"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    service.wait_handled(3).await;
    let logs = service.terminate_logged().await;
    assert!(
        !logs.contains("OpenTelemetry"),
        "no exporter error:\n{logs}"
    );

    let process: Vec<(Option<String>, Span)> = eventually(WAIT, "3 consumer spans", || async {
        let process: Vec<_> = spans(&received)
            .into_iter()
            .filter(|(_, s)| s.name == "process chore.v1")
            .collect();
        (process.len() >= 3).then_some(process)
    })
    .await;
    assert_eq!(process.len(), 3, "one per delivery");
    for (service, span) in &process {
        assert_eq!(service.as_deref(), Some("chores"), "OTEL_SERVICE_NAME");
        assert_eq!(span.kind, SpanKind::Consumer as i32);
        assert_eq!(
            text(&span.attributes, "messaging.consumer.group.name").as_deref(),
            Some("sigkill")
        );
        assert_eq!(
            text(&span.attributes, "messaging.system").as_deref(),
            Some("nats")
        );
        assert_eq!(text(&span.attributes, "outcome").as_deref(), Some("ack"));
    }
    let traced: Vec<_> = process
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) == TRACE_ID)
        .collect();
    assert_eq!(traced.len(), 1, "the traced message continues its trace");
    assert_eq!(hex(&traced[0].1.parent_span_id), PARENT_ID);
    let roots = process
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) != TRACE_ID && s.parent_span_id.is_empty())
        .count();
    assert_eq!(
        roots, 2,
        "messages without traceparent start their own traces"
    );
}
