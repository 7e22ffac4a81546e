//! OpenTelemetry for the bench, switched per phase: a global subscriber
//! with jetflow's OpenTelemetry layer (`jetflow::telemetry::trace::layer`,
//! every span sampled unless `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
//! say otherwise (the SDK reads them), the SDK's batch processor, an
//! exporter that counts and drops what it is sent) behind a switch. Off, jetflow's info spans are
//! disabled, as in a service without a tracing layer; on, they are
//! recorded, exported and propagated as in a traced service. Warnings are
//! logged to stderr either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// Whether info-level spans and events are on (OpenTelemetry on).
static ON: AtomicBool = AtomicBool::new(false);

/// Switches OpenTelemetry on or off for the phases that follow.
pub(crate) fn set(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Spans the exporter was handed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exported(Arc<AtomicU64>);

impl Exported {
    pub(crate) fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Warnings always; info (jetflow's spans) while switched on.
struct Switch;

impl<S: tracing::Subscriber> Layer<S> for Switch {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if *meta.level() <= Level::WARN {
            Interest::always()
        } else if *meta.level() <= Level::INFO {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _cx: Context<'_, S>) -> bool {
        *meta.level() <= Level::WARN || ON.load(Ordering::Relaxed)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
}

/// Warnings only, for the log lines.
struct Warnings;

impl<S> Filter<S> for Warnings {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        *meta.level() <= Level::WARN
    }
}

/// Installs the switched subscriber (off); returns the provider (shut it
/// down at the end) and the exporter's count.
pub(crate) fn install() -> anyhow::Result<(SdkTracerProvider, Exported)> {
    let exported = Exported::default();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exported.clone())
        .build();
    tracing_subscriber::registry()
        .with(Switch)
        .with(jetflow::telemetry::trace::layer(provider.tracer("bench")))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(Warnings),
        )
        .try_init()?;
    Ok((provider, exported))
}

/// The floor: what the OpenTelemetry SDK alone costs per message when the
/// spans are built by hand, as the strongest hand-written code would
/// (constant values `&'static str` or a shared `Arc<str>`, only the
/// message id copied, no `tracing` in between), on the same provider,
/// batch processor and exporter as the bench's "on" phases. It bounds from
/// below what any implementation of the same spans can cost.
pub(crate) mod floor {
    use std::sync::Arc;

    use jetflow_tests::measure::{Mark, Measured};
    use opentelemetry::propagation::{Injector, TextMapPropagator as _};
    use opentelemetry::trace::{
        Span as _, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// The subject, group and stream the spans name.
    const SUBJECT: &str = "bench.order.v1";

    /// A message id per message (a UUID's length), made before the clock
    /// starts: the span copies it, as it would an id it reads.
    fn ids(n: u64) -> Vec<String> {
        (0..n)
            .map(|i| format!("0193a5e0-0000-7000-8000-{i:012}"))
            .collect()
    }

    /// The export thread's share: the spans handed over are exported
    /// before the clock stops.
    async fn flushed(provider: &SdkTracerProvider) -> anyhow::Result<()> {
        let provider = provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush()).await??;
        Ok(())
    }

    /// `n` consumer spans as jetflow's handler span carries them (kind
    /// consumer, a new trace, the same 10 attributes, `outcome` set at the
    /// end), nothing else per message.
    pub(crate) async fn consumer(provider: &SdkTracerProvider, n: u64) -> anyhow::Result<Measured> {
        let tracer = provider.tracer("bench-floor");
        let ids = ids(n);
        let name: &'static str = Box::leak(format!("process {SUBJECT}").into_boxed_str());
        let (subject, group): (Arc<str>, Arc<str>) = (SUBJECT.into(), "bench_floor".into());
        let (stream, consumer): (Arc<str>, Arc<str>) = ("BENCH".into(), "bench_floor".into());
        let start = Mark::now();
        for (i, id) in ids.iter().enumerate() {
            // no traceparent: a new trace
            let parent = Context::new();
            let mut span = tracer
                .span_builder(name)
                .with_kind(SpanKind::Consumer)
                .with_attributes([
                    KeyValue::new("messaging.system", "nats"),
                    KeyValue::new("messaging.operation.type", "process"),
                    KeyValue::new("messaging.destination.name", subject.clone()),
                    KeyValue::new("messaging.consumer.group.name", group.clone()),
                    KeyValue::new("messaging.message.id", id.clone()),
                    KeyValue::new("handler", "consume_floor"),
                    KeyValue::new("stream", stream.clone()),
                    KeyValue::new("consumer", consumer.clone()),
                    KeyValue::new("seq", i as i64 + 1),
                    KeyValue::new("delivered", 1_i64),
                ])
                .start_with_context(&tracer, &parent);
            std::hint::black_box(span.span_context().trace_id());
            span.set_attribute(KeyValue::new("outcome", "ack"));
            span.end();
        }
        flushed(provider).await?;
        Ok(Measured::between(n, start, Mark::now()))
    }

    /// Headers as a publish carries them.
    struct Carrier(Vec<(String, String)>);

    impl Injector for Carrier {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }

    /// `n` producer spans as jetflow's publish span carries them (kind
    /// producer, 4 attributes), each writing `traceparent` into the
    /// message's headers, nothing else per message.
    pub(crate) async fn producer(provider: &SdkTracerProvider, n: u64) -> anyhow::Result<Measured> {
        let tracer = provider.tracer("bench-floor");
        let propagator = TraceContextPropagator::new();
        let ids = ids(n);
        let name: &'static str = Box::leak(format!("publish {SUBJECT}").into_boxed_str());
        let subject: Arc<str> = SUBJECT.into();
        let start = Mark::now();
        for id in &ids {
            let span = tracer
                .span_builder(name)
                .with_kind(SpanKind::Producer)
                .with_attributes([
                    KeyValue::new("messaging.system", "nats"),
                    KeyValue::new("messaging.operation.type", "publish"),
                    KeyValue::new("messaging.destination.name", subject.clone()),
                    KeyValue::new("messaging.message.id", id.clone()),
                ])
                .start_with_context(&tracer, &Context::current());
            let cx = Context::current().with_span(span);
            let mut headers = Carrier(Vec::with_capacity(8));
            propagator.inject_context(&cx, &mut headers);
            std::hint::black_box(&headers.0);
            cx.span().end();
        }
        flushed(provider).await?;
        Ok(Measured::between(n, start, Mark::now()))
    }
}
