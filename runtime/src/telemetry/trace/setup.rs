//! The pieces a subscriber needs to export jetflow's spans: the
//! `tracing-opentelemetry` layer with jetflow's settings, and an OTLP/HTTP
//! tracer provider configured by the standard `OTEL_*` variables.

use opentelemetry::trace::Tracer;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use thiserror::Error;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// The OTLP exporter could not be set up.
#[derive(Debug, Error)]
#[error(
    "cannot set up the OTLP trace exporter: {0}; check OTEL_EXPORTER_OTLP_ENDPOINT / \
     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (an http:// URL, e.g. http://localhost:4318)"
)]
pub struct OtelError(#[source] opentelemetry_otlp::ExporterBuildError);

/// The `tracing-opentelemetry` layer that turns jetflow's spans (and the
/// application's) into OpenTelemetry spans of `tracer`.
///
/// Set for a low cost per span: no source location, thread or target
/// attributes, no busy/idle time, no OpenTelemetry context activated on
/// each enter (jetflow reads the span's context where it propagates it).
///
/// ```
/// use opentelemetry::trace::TracerProvider as _;
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let subscriber = tracing_subscriber::registry()
///     .with(jetflow::telemetry::trace::layer(provider.tracer("orders")));
/// # drop(subscriber);
/// ```
pub fn layer<S, T>(tracer: T) -> OpenTelemetryLayer<S, T>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    T: Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
}

/// A tracer provider that batches spans and sends them over OTLP
/// (HTTP/protobuf) to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces` (default
/// `http://localhost:4318/v1/traces`). The other standard variables apply:
/// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`
/// (+ `_ARG`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
/// `OTEL_BSP_*`. Plain `http://` only (no TLS client is built in).
///
/// Spans are sent from the batch processor's own thread. Call
/// [`SdkTracerProvider::shutdown`] before the process exits to send what
/// is still buffered.
pub fn otlp_provider() -> Result<SdkTracerProvider, OtelError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(OtelError)?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build())
}
