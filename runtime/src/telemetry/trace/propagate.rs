//! W3C trace context in jetflow's [`Headers`], through the SDK's
//! `TraceContextPropagator`: an [`Injector`] and an [`Extractor`] over the
//! headers, and the current span's context in and out of them.

use opentelemetry::Context as OtelContext;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::transport::Headers;

/// Writes `traceparent` / `tracestate` into the headers.
struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            // an empty `tracestate` says nothing: no header for it
            self.0.remove(key);
            return;
        }
        // the propagator writes valid names and one-line values; one it
        // could not carry is left out rather than panicking
        let _ = self.0.try_insert_known(key, value);
    }
}

/// Reads `traceparent` / `tracestate` from the headers (names match
/// case-insensitively).
struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name).collect()
    }
}

/// Writes the current span's trace context into `headers`, replacing any
/// there (a DLQ copy or a replay carries its own producer span's). Nothing
/// when there is no sampled-or-not valid span (no OpenTelemetry layer).
pub(crate) fn inject(headers: &mut Headers) {
    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The remote parent that `headers` name; `None` without a valid
/// `traceparent`.
pub(crate) fn extract(headers: &Headers) -> Option<OtelContext> {
    if !headers.contains("traceparent") {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn round_trip_through_headers() {
        let sc = SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736_u128),
            SpanId::from(0x00f067aa0ba902b7_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = OtelContext::new().with_remote_span_context(sc.clone());
        let mut h = Headers::new();
        h.insert("traceparent", "stale");
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut h));
        assert_eq!(
            h.get_all("traceparent").collect::<Vec<_>>(),
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
        );
        let back = extract(&h).expect("a valid parent");
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());
        assert_eq!(back.span().span_context().span_id(), sc.span_id());
        assert!(back.span().span_context().is_remote());
    }

    #[test]
    fn no_or_bad_traceparent_is_no_parent() {
        assert!(extract(&Headers::new()).is_none());
        let mut h = Headers::new();
        h.insert("TraceParent", "00-zz-00f067aa0ba902b7-01");
        assert!(extract(&h).is_none());
    }
}
