//! What starts and stops with an app for operators: the ops listener
//! (feature `ops`) and the metrics settings (feature `metrics`).

use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::error::Result;
use crate::publish::Bus;
use crate::status::StateCell;

/// The environment variable naming the ops listener's address.
pub(super) const OPS_ADDR_ENV: &str = "JETFLOW_OPS_ADDR";

/// [`App::lag_every`] by default.
pub(super) const DEFAULT_LAG_EVERY: Duration = Duration::from_secs(10);

/// `JETFLOW_OPS_ADDR`, when set and not empty.
pub(super) fn addr_from_env() -> Option<String> {
    std::env::var(OPS_ADDR_ENV)
        .ok()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
}

impl App {
    /// Serves the ops endpoints on `addr` (`host:port`; port 0 picks a free
    /// port, see [`AppHandle::ops_addr`](super::AppHandle::ops_addr)):
    /// `/healthz`, `/readyz`, with the `metrics` feature `/metrics`, the
    /// app's [AsyncAPI document](App::asyncapi) on `/asyncapi.json` and
    /// `/asyncapi.yaml` and, with the `asyncapi-ui` feature, a page of it
    /// on `/asyncapi` (see [`crate::ops`]). Off unless set here or by `JETFLOW_OPS_ADDR`
    /// ([`App::from_env`]). The listener starts with the app, before it
    /// connects, and stops at the end of its graceful stop.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> jetflow::Result<()> {
    /// let app = jetflow::App::new("orders")
    ///     .url("memory://ops-doc")
    ///     .ops("127.0.0.1:0")
    ///     .start()
    ///     .await?;
    /// println!("readiness on http://{}/readyz", app.ops_addr().expect("listening"));
    /// app.stop().await
    /// # }
    /// ```
    #[cfg(feature = "ops")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
    pub fn ops(mut self, addr: impl Into<String>) -> App {
        self.ops = Some(addr.into());
        self
    }

    /// Routes of the service's own served by the ops listener next to
    /// jetflow's (a debug page, ...); paths must not overlap `/healthz`,
    /// `/readyz`, `/metrics` and `/asyncapi*` (an overlap stops the app at start-up
    /// with [`OpsErrorKind::Route`](crate::ops::OpsErrorKind::Route)).
    /// Several calls add up.
    ///
    /// ```
    /// use axum::routing::get;
    /// let app = jetflow::App::new("orders")
    ///     .ops("127.0.0.1:0")
    ///     .ops_routes(axum::Router::new().route("/version", get(|| async { "1.4.2" })));
    /// ```
    #[cfg(feature = "ops")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
    pub fn ops_routes(mut self, routes: axum::Router) -> App {
        self.ops_routes = Some(match self.ops_routes.take() {
            Some(before) => before.merge(routes),
            None => routes,
        });
        self
    }

    /// Whether this app records metrics (on by default): `false` leaves
    /// every handle of its handlers and bus empty and times nothing (its
    /// [`HandlerStats`](crate::HandlerStats) still count). See
    /// [`telemetry::metrics`](crate::telemetry::metrics).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, on: bool) -> App {
        self.metrics = on;
        self
    }

    /// How often each durable consumer's counts (pending, ack pending,
    /// redelivered) are read from the broker for the lag gauges (10 s by
    /// default): one request per handler per period.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn lag_every(mut self, every: Duration) -> App {
        self.lag_every = every.max(Duration::from_millis(10));
        self
    }

    /// Starts the ops listener when an address is configured (installing
    /// jetflow's metrics registry first, with the `metrics` feature, unless
    /// another recorder is installed).
    pub(super) async fn serve_ops(&mut self) -> Result<Option<Serving>> {
        let Some(addr) = self.ops.clone() else {
            return Ok(None);
        };
        #[cfg(feature = "ops")]
        {
            // also for an app whose own metrics are off: `/metrics` serves
            // whatever else the process records
            #[cfg(feature = "metrics")]
            if let Err(e) = crate::telemetry::metrics::install() {
                tracing::warn!(error = %e, "`/metrics` will not serve jetflow's metrics");
            }
            let readiness = crate::ops::Readiness::new();
            let router = crate::ops::router(crate::ops::Parts {
                readiness: readiness.clone(),
                asyncapi: self.asyncapi(),
                extra: self.ops_routes.take(),
            })?;
            let listener = crate::ops::Listener::bind(&addr, router).await?;
            Ok(Some(Serving {
                listener,
                readiness,
            }))
        }
        #[cfg(not(feature = "ops"))]
        {
            tracing::warn!(
                addr,
                "an ops listener address is set ({OPS_ADDR_ENV}), but jetflow was built without its \
                 `ops` feature: nothing listens; enable it: jetflow = {{ features = [\"ops\"] }}"
            );
            Ok(None)
        }
    }
}

/// A running ops listener and the readiness it reports.
#[derive(Debug)]
pub(super) struct Serving {
    #[cfg(feature = "ops")]
    listener: crate::ops::Listener,
    #[cfg(feature = "ops")]
    readiness: Arc<crate::ops::Readiness>,
}

#[cfg_attr(not(feature = "ops"), allow(unused_variables))]
impl Serving {
    pub(super) fn provisioning(&self) {
        #[cfg(feature = "ops")]
        self.readiness.provisioning();
    }

    pub(super) fn running(&self, states: Vec<Arc<StateCell>>, bus: Bus) {
        #[cfg(feature = "ops")]
        self.readiness.running(states, bus);
    }

    pub(super) fn stopping(&self) {
        #[cfg(feature = "ops")]
        self.readiness.stopping();
    }

    #[cfg(feature = "ops")]
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.listener.addr()
    }

    pub(super) async fn stop(self) {
        #[cfg(feature = "ops")]
        self.listener.stop().await;
    }
}
