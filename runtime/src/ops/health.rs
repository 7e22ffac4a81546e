//! `/healthz` (liveness) and `/readyz` (readiness).

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Readiness;

pub(super) fn routes(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(move || readyz(readiness.clone())))
}

/// The process runs and serves requests.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `200` when ready, else `503`; the JSON body says why either way.
async fn readyz(readiness: Arc<Readiness>) -> Response {
    let report = readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = report.body.to_string();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
