//! The document on the ops listener (feature `ops`): `/asyncapi.json`,
//! `/asyncapi.yaml`, and the page that renders it, `/asyncapi` (feature
//! `asyncapi-ui`; without it `501` saying so).

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AsyncApi;

/// The document's routes, rendered once: the app's handlers and events do
/// not change while it runs.
pub(crate) fn routes(doc: &AsyncApi) -> Router {
    let json = doc.to_json_string();
    let yaml = doc.to_yaml();
    let router = Router::new()
        .route(
            "/asyncapi.json",
            get(move || text(json, "application/json")),
        )
        .route(
            "/asyncapi.yaml",
            get(move || text(yaml, "application/yaml; charset=utf-8")),
        );
    page(router, doc)
}

async fn text(body: String, content_type: &'static str) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(feature = "asyncapi-ui")]
fn page(router: Router, doc: &AsyncApi) -> Router {
    router.merge(super::ui::routes(doc))
}

#[cfg(not(feature = "asyncapi-ui"))]
fn page(router: Router, _doc: &AsyncApi) -> Router {
    router.route(
        "/asyncapi",
        get(|| async {
            (
                StatusCode::NOT_IMPLEMENTED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "this service was built without jetflow's `asyncapi-ui` feature, so it has no \
                 documentation page (the document is at /asyncapi.json and /asyncapi.yaml); \
                 enable it: jetflow = { features = [\"ops\", \"asyncapi-ui\"] }\n",
            )
        }),
    )
}
