//! `/metrics`: the Prometheus scrape (feature `metrics`), or an answer
//! that says why there is none.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(super) fn routes() -> Router {
    Router::new().route("/metrics", get(metrics))
}

/// The Prometheus text exposition format, version 0.0.4.
#[cfg(feature = "metrics")]
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(feature = "metrics")]
async fn metrics() -> Response {
    use crate::telemetry::metrics;
    match metrics::render() {
        Some(text) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
        }
        None => {
            let why = match metrics::unavailable() {
                Some(e) => e.to_string(),
                None => "jetflow's metrics registry is not installed".to_owned(),
            };
            plain(StatusCode::SERVICE_UNAVAILABLE, why)
        }
    }
}

#[cfg(not(feature = "metrics"))]
async fn metrics() -> Response {
    plain(
        StatusCode::NOT_IMPLEMENTED,
        "this service was built without jetflow's `metrics` feature, so it has no metrics; \
         enable it: jetflow = { features = [\"ops\", \"metrics\"] }"
            .to_owned(),
    )
}

fn plain(status: StatusCode, mut text: String) -> Response {
    text.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
