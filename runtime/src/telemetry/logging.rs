//! A default `tracing` subscriber in one call (feature `logging`, on by
//! default): [`init`].

use std::io::IsTerminal as _;

use thiserror::Error;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// The filter when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "info";

/// Why [`init`] could not install the subscriber.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InitError {
    /// `JETFLOW_LOG_FORMAT` is neither `text` nor `json`.
    #[error("JETFLOW_LOG_FORMAT={0:?} is not a log format: use `text` (the default) or `json`")]
    Format(String),
    /// `RUST_LOG` cannot be parsed.
    #[error("RUST_LOG cannot be parsed: {0}; e.g. RUST_LOG=info or RUST_LOG=jetflow=debug,info")]
    Filter(String),
    /// The process already has a global subscriber.
    #[error(
        "a global tracing subscriber is already installed; call jetflow::telemetry::init() \
         once, before anything else installs one"
    )]
    AlreadySet,
    /// The OpenTelemetry exporter could not be set up.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    #[error(transparent)]
    Otel(#[from] crate::telemetry::trace::OtelError),
}

/// Keeps what [`init`] set up; dropping it (at the end of `main`) sends the
/// spans still buffered for export.
#[must_use = "dropping the guard at once stops the trace export; keep it until main returns"]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// `true` when spans are exported over OTLP (feature `otel` and an
    /// OTLP endpoint in the environment).
    pub fn exports_traces(&self) -> bool {
        #[cfg(feature = "otel")]
        return self.provider.is_some();
        #[cfg(not(feature = "otel"))]
        false
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exports_traces", &self.exports_traces())
            .finish()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("jetflow: could not send the last spans: {e}");
        }
    }
}

/// Installs a global `tracing` subscriber that logs to stderr:
///
/// - human-readable lines (colours on a terminal), or one JSON object per
///   line with `JETFLOW_LOG_FORMAT=json`;
/// - filtered by `RUST_LOG` (default `info`; e.g. `RUST_LOG=jetflow=debug,info`);
/// - with the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` (or
///   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans are also exported
///   over OTLP/HTTP ([`trace::otlp_provider`](crate::telemetry::trace::otlp_provider),
///   at info level whatever `RUST_LOG` says), and every log line inside a
///   handler carries its `trace_id`.
///
/// Keep the returned guard until `main` returns: dropping it sends the
/// spans still buffered. jetflow never logs a password, token, nkey seed
/// or creds file.
///
/// ```no_run
/// # use jetflow::prelude::*;
/// # #[event(version = "v1")] pub struct OrderCreated { pub order_id: String }
/// # #[handler(group = "inventory")] async fn reserve_stock(_o: OrderCreated) {}
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let _telemetry = jetflow::telemetry::init()?;
///     App::from_env("inventory").handler(reserve_stock).run().await?;
///     Ok(())
/// }
/// ```
pub fn init() -> Result<Telemetry, InitError> {
    let json = match std::env::var("JETFLOW_LOG_FORMAT") {
        Err(_) => false,
        Ok(f) if f.eq_ignore_ascii_case("text") || f.is_empty() => false,
        Ok(f) if f.eq_ignore_ascii_case("json") => true,
        Ok(other) => return Err(InitError::Format(other)),
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| InitError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers = vec![fmt];
    #[cfg(feature = "otel")]
    let provider = otel_layer(&mut layers)?;
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| InitError::AlreadySet)?;
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        provider,
    })
}

/// Adds the OpenTelemetry layer when an OTLP endpoint is configured;
/// returns its provider.
#[cfg(feature = "otel")]
fn otel_layer(
    layers: &mut Vec<Box<dyn Layer<Registry> + Send + Sync>>,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, InitError> {
    use opentelemetry::trace::TracerProvider as _;

    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !configured {
        return Ok(None);
    }
    let provider = crate::telemetry::trace::otlp_provider()?;
    let layer = crate::telemetry::trace::layer(provider.tracer("jetflow"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    layers.push(layer.boxed());
    Ok(Some(provider))
}
