//! Binding the ops listener and serving its router until the app stops.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{OpsError, OpsErrorKind};

/// How long a stop waits for requests under way.
const DRAIN: Duration = Duration::from_secs(1);

/// A serving ops listener; dropping it stops it at once.
#[derive(Debug)]
pub(crate) struct Listener {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: AbortOnDropHandle<()>,
}

impl Listener {
    /// Listens on `addr` (`host:port`; port 0 picks a free one) and serves `router`.
    pub(crate) async fn bind(addr: &str, router: Router) -> Result<Listener, OpsError> {
        let bind_error = |e: std::io::Error| {
            let message = format!(
                "cannot listen: {e}; set a free `host:port` with App::ops or JETFLOW_OPS_ADDR \
                 (e.g. 127.0.0.1:9090, or 0.0.0.0:9090 for every interface)"
            );
            OpsError::new(Some(addr), OpsErrorKind::Bind, message, Some(e))
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let shutdown = CancellationToken::new();
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(addr = %local, error = %e, "the ops listener stopped");
            }
        });
        tracing::info!(addr = %local, "ops listener: /healthz, /readyz, /metrics, /asyncapi");
        Ok(Listener {
            addr: local,
            shutdown,
            task: AbortOnDropHandle::new(task),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests under way finish (briefly), stops.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
            task.abort();
        }
    }
}
