//! OpenTelemetry for the bench, switched per phase: a global subscriber
//! with jetflow's OpenTelemetry layer (`jetflow::telemetry::trace::layer`,
//! every span sampled, the SDK's batch processor, an exporter that counts
//! and drops what it is sent) behind a switch. Off, jetflow's info spans are
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
