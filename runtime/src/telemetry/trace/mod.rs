//! OpenTelemetry traces (feature `otel`): one trace follows an event across
//! services.
//!
//! Every publish ([`Bus::publish`](crate::Bus::publish),
//! [`Context::publish`](crate::Context::publish), batches, the DLQ copy,
//! replays) runs in a producer span (`publish <subject>`) whose W3C
//! `traceparent` / `tracestate` go into the message's headers; every
//! consumed message's handler span (`process <subject>`, kind consumer) is
//! the child of the producer span those headers name. A message without
//! `traceparent` (a foreign producer) starts a new trace. The trace id is
//! [`Context::trace_id`](crate::Context::trace_id) and the `trace_id` field
//! of the handler span, on every log line written inside it.
//!
//! Spans are ordinary [`tracing`] spans, bridged to OpenTelemetry by
//! `tracing-opentelemetry`: install [`layer`] in the subscriber (or let
//! [`init`](crate::telemetry::init) do it), with a tracer from
//! [`otlp_provider`] or any `opentelemetry_sdk` tracer provider.
//!
//! Span attributes follow OpenTelemetry's messaging conventions:
//!
//! | attribute | value |
//! |---|---|
//! | `messaging.system` | the transport: `nats`, `redis`, `jetflow` (the embedded broker) |
//! | `messaging.operation.type` | `publish`, `send` (a batch), `process` |
//! | `messaging.destination.name` | the subject |
//! | `messaging.consumer.group.name` | the handler's group (consumer spans) |
//! | `messaging.message.id` | the event id (`ce-id`) |
//! | `messaging.batch.message_count` | events in a batch (batch spans) |
//! | `handler`, `stream`, `consumer`, `seq` | where the delivery comes from |
//! | `delivered` | the delivery count, 1 for the first delivery |
//! | `outcome` | `ack`, `retry`, `dead-lettered`, `reject`, ... |
//! | `trace_id` | the trace id (also on log lines) |
//!
//! ```no_run
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // OTLP over HTTP/protobuf to OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318)
//! let provider = jetflow::telemetry::trace::otlp_provider()?;
//! let subscriber = tracing_subscriber::registry()
//!     .with(jetflow::telemetry::trace::layer(provider.tracer("my-service")));
//! tracing::subscriber::set_global_default(subscriber)?;
//! // ... run the app; at exit, flush what is still buffered:
//! provider.shutdown()?;
//! # Ok(()) }
//! ```

mod propagate;
mod setup;

pub use setup::{OtelError, layer, otlp_provider};

pub(crate) use propagate::inject;

use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing::field::{Empty, display};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::transport::Headers;

/// Where a consumed message comes from, for its handler span.
pub(crate) struct Delivery<'a> {
    pub(crate) system: &'static str,
    pub(crate) handler: &'static str,
    pub(crate) group: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) seq: u64,
    pub(crate) delivered: u64,
    pub(crate) event_id: &'a str,
    pub(crate) headers: &'a Headers,
}

/// The handler span of one delivery: kind consumer, the child of the
/// producer span its `traceparent` names (a new trace without one), with
/// the trace id recorded as `trace_id`; and that trace id (`None` when no
/// OpenTelemetry layer traces the span).
pub(crate) fn handler_span(d: Delivery<'_>) -> (Span, Option<u128>) {
    let span = tracing::info_span!(
        "jetflow.handle",
        otel.name = %format_args!("process {}", d.subject),
        otel.kind = "consumer",
        messaging.system = d.system,
        messaging.operation.type = "process",
        messaging.destination.name = d.subject,
        messaging.consumer.group.name = d.group,
        messaging.message.id = d.event_id,
        handler = d.handler,
        stream = d.stream,
        consumer = d.consumer,
        // integers as i64: OpenTelemetry has no unsigned attribute
        seq = d.seq as i64,
        delivered = d.delivered as i64,
        outcome = Empty,
        trace_id = Empty,
    );
    if span.is_disabled() {
        return (span, None);
    }
    // An explicit parent, also when there is none: a message without
    // `traceparent` starts its own trace, whatever span the loop runs in.
    let parent = propagate::extract(d.headers).unwrap_or_default();
    let trace_id = match span.set_parent(parent) {
        Ok(()) => record_trace_id(&span),
        Err(_) => None,
    };
    (span, trace_id)
}

/// The producer span of one publish, kind producer; its context goes into
/// the message's headers ([`inject`], called inside it).
pub(crate) fn publish_span(system: &'static str, subject: &str, msg_id: &str) -> Span {
    tracing::info_span!(
        "jetflow.publish",
        otel.name = %format_args!("publish {subject}"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.operation.type = "publish",
        messaging.destination.name = subject,
        messaging.message.id = msg_id,
    )
}

/// The producer span of a pipelined batch of `count` events, the first on
/// `subject`.
pub(crate) fn batch_span(system: &'static str, subject: &str, count: usize) -> Span {
    tracing::info_span!(
        "jetflow.publish",
        otel.name = %format_args!("send {subject}"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.operation.type = "send",
        messaging.destination.name = subject,
        messaging.batch.message_count = count as i64,
    )
}

/// A producer span with no current parent continues the trace named by
/// `headers` (a replay continues the trace of the event it replays).
pub(crate) fn continue_from(span: &Span, headers: &Headers) {
    if span.is_disabled() || Span::current().context().span().span_context().is_valid() {
        return;
    }
    if let Some(parent) = propagate::extract(headers) {
        let _ = span.set_parent(parent);
    }
}

/// Records the span's trace id as its `trace_id` field, and returns it.
fn record_trace_id(span: &Span) -> Option<u128> {
    let cx = span.context();
    let trace_id = {
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        if !sc.is_valid() {
            return None;
        }
        sc.trace_id()
    };
    span.record("trace_id", display(trace_id));
    Some(u128::from_be_bytes(trace_id.to_bytes()))
}
