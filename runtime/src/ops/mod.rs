//! The ops listener (feature `ops`): one HTTP listener per app, off unless
//! an address is configured ([`App::ops`](crate::App::ops) or
//! `JETFLOW_OPS_ADDR` with [`App::from_env`](crate::App::from_env)).
//!
//! | path | answers |
//! |---|---|
//! | `/healthz` | `200 ok` while the process serves it (liveness) |
//! | `/readyz` | `200` when connected, provisioned and every consume loop [receiving](crate::LoopState::is_ready); else `503`; a JSON body names each handler and its state, and why it is not ready |
//! | `/metrics` | the Prometheus scrape of [`telemetry::metrics`](crate::telemetry) (feature `metrics`); without the feature `501` saying so |
//! | `/asyncapi.json`, `/asyncapi.yaml` | the app's AsyncAPI document, [`App::asyncapi`](crate::App::asyncapi) |
//! | `/asyncapi` | an HTML page of that document, rendered by the official AsyncAPI web component (feature `asyncapi-ui`: vendored, served from the binary, nothing loaded from elsewhere; its files under `/asyncapi-ui/`); without the feature `501` saying so |
//!
//! The listener starts with the app, before it connects (so `/healthz`
//! answers and `/readyz` says "connecting" during start-up), and stops at
//! the end of [`AppHandle::stop`](crate::AppHandle::stop).
//!
//! # Adding routes
//!
//! A service serves routes of its own next to these with
//! [`App::ops_routes`](crate::App::ops_routes). Paths must not overlap: a
//! path served twice stops the app at start-up with
//! [`OpsErrorKind::Route`].

// How jetflow's own modules add pages (the AsyncAPI document, ...):
// 1. write `pub(crate) fn routes(..) -> axum::Router` in the module;
// 2. add what it needs from the app to `Parts` (e.g. the `AsyncApi` of
//    `App::asyncapi()`), filled in by `App::serve_ops` (app/ops.rs), the one
//    place the listener is started;
// 3. merge it in `router` below, next to `health::routes` and `scrape::routes`.

mod error;
mod health;
mod listener;
mod readiness;
mod scrape;

pub use error::{OpsError, OpsErrorKind};
pub(crate) use listener::Listener;
pub(crate) use readiness::Readiness;

use std::sync::Arc;

use axum::Router;

/// What the listener's routes need from the app.
pub(crate) struct Parts {
    /// What `/readyz` reports, updated by the app.
    pub(crate) readiness: Arc<Readiness>,
    /// The app's AsyncAPI document, served as JSON, YAML and a page.
    pub(crate) asyncapi: crate::asyncapi::AsyncApi,
    /// The service's own routes ([`App::ops_routes`](crate::App::ops_routes)).
    pub(crate) extra: Option<Router>,
}

/// Every route of the ops listener: jetflow's own (health, readiness,
/// metrics, the AsyncAPI document; a module with pages of its own merges its `routes()` here) and
/// the service's.
pub(crate) fn router(parts: Parts) -> Result<Router, OpsError> {
    let ours = Router::new()
        .merge(health::routes(parts.readiness))
        .merge(scrape::routes())
        .merge(crate::asyncapi::routes(&parts.asyncapi));
    match parts.extra {
        None => Ok(ours),
        Some(extra) => merge(ours, extra),
    }
}

/// `a` with the routes of `b`; a path both serve is an error, not a panic.
fn merge(a: Router, b: Router) -> Result<Router, OpsError> {
    // axum refuses overlapping routes by panicking; turn that into an error
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.merge(b))).map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        OpsError::new(
            None,
            OpsErrorKind::Route,
            format!(
                "the routes given to App::ops_routes overlap the ops listener's ({text}); \
                 `/healthz`, `/readyz`, `/metrics`, `/asyncapi*` are jetflow's: serve yours on other paths"
            ),
            None,
        )
    })
}
