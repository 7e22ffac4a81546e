use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;
use crate::memory::Broker;
use crate::transport::AnyTransport;
use crate::transport::nats::NatsTransport;

/// How to reach NATS. Secrets are never printed: `Debug` redacts them.
///
/// ```
/// use jetflow::ConnectOptions;
/// let opts = ConnectOptions::new("nats://127.0.0.1:4222").user_password("svc", "s3cret");
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Server URL(s), comma-separated. `nats://127.0.0.1:4222` by default;
    /// `memory://` or `memory://{name}` selects the embedded broker
    /// ([`crate::memory`]).
    pub url: String,
    /// Path of a `.creds` file (JWT + nkey seed).
    pub creds: Option<PathBuf>,
    user: Option<(String, String)>,
    token: Option<String>,
    /// Timeout of the initial connection.
    pub connect_timeout: Duration,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("creds", &self.creds)
            .field("user", &self.user.as_ref().map(|(u, _)| (u, "<redacted>")))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions::new("nats://127.0.0.1:4222")
    }
}

impl ConnectOptions {
    /// Options for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            creds: None,
            user: None,
            token: None,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Reads `NATS_URL` (`memory://...` selects the embedded broker), `NATS_CREDS`, `NATS_USER` + `NATS_PASSWORD` and `NATS_TOKEN`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut o =
            ConnectOptions::new(var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()));
        o.creds = var("NATS_CREDS").map(PathBuf::from);
        if let (Some(u), Some(p)) = (var("NATS_USER"), var("NATS_PASSWORD")) {
            o.user = Some((u, p));
        }
        o.token = var("NATS_TOKEN");
        o
    }

    /// Authenticates with user and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with a `.creds` file.
    pub fn creds(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds = Some(path.into());
        self
    }

    /// Opens the transport the URL names: the embedded broker for
    /// `memory://...`, else a NATS connection whose reconnections are counted.
    pub(crate) async fn open(&self, name: &str) -> Result<AnyTransport, Error> {
        if let Some(broker) = Broker::for_url(&self.url) {
            return Ok(AnyTransport::Memory(broker.connect()));
        }
        let (tx, rx) = watch::channel(0u64);
        let client = self.connect(name, Some(tx)).await?;
        Ok(AnyTransport::Nats(NatsTransport::new(client, Some(rx))))
    }

    /// Connects; `reconnects` counts every reconnection after the first connection.
    pub(crate) async fn connect(
        &self,
        name: &str,
        reconnects: Option<watch::Sender<u64>>,
    ) -> Result<async_nats::Client, Error> {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| Error::Connect {
            url: self.url.clone(),
            source,
        };
        let mut o = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(self.connect_timeout);
        if let Some(path) = &self.creds {
            o = o.credentials_file(path).await.map_err(|e| {
                fail(format!("cannot read credentials file {}: {e}", path.display()).into())
            })?;
        }
        if let Some((u, p)) = &self.user {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        let url = self.url.clone();
        let first = Arc::new(AtomicBool::new(true));
        o = o.event_callback(move |event| {
            let reconnects = reconnects.clone();
            let url = url.clone();
            let first = first.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        // The initial connection is not a reconnect: nothing to re-issue.
                        if first.swap(false, Ordering::Relaxed) {
                            tracing::debug!(%url, "connected to NATS");
                        } else {
                            tracing::info!(%url, "reconnected to NATS");
                            if let Some(tx) = &reconnects {
                                tx.send_modify(|n| *n += 1);
                            }
                        }
                    }
                    async_nats::Event::Closed => tracing::debug!(%url, "NATS connection closed"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%url, "disconnected from NATS; reconnecting")
                    }
                    async_nats::Event::LameDuckMode => {
                        tracing::warn!(%url, "server entered lame duck mode")
                    }
                    async_nats::Event::ClientError(e) => {
                        tracing::debug!(%url, error = %e, "NATS client error")
                    }
                    other => tracing::warn!(%url, event = %other, "NATS connection event"),
                }
            }
        });
        o.connect(self.url.as_str())
            .await
            .map_err(|e| fail(e.into()))
    }
}
