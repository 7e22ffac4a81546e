//! Connecting to NATS with the app's [`ConnectOptions`], counting
//! reconnections so that pull requests are re-issued after each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::{NatsTransport, PullTiming};
use crate::app::ConnectOptions;
use crate::telemetry::export;
use crate::transport::{ConnectError, ConnectErrorKind};

/// Connects as client `name`; pull requests use `pull`.
pub(crate) async fn connect(
    options: &ConnectOptions,
    name: &str,
    pull: PullTiming,
) -> Result<NatsTransport, ConnectError> {
    let (tx, rx) = watch::channel(0u64);
    let client = client(options, name, tx).await?;
    Ok(NatsTransport::new(client, Some(rx)).with_pull_timing(pull))
}

/// Connects; `reconnects` counts every reconnection after the first connection.
async fn client(
    options: &ConnectOptions,
    name: &str,
    reconnects: watch::Sender<u64>,
) -> Result<async_nats::Client, ConnectError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(options.connect_timeout);
    if let Some(path) = &options.creds {
        o = o.credentials_file(path).await.map_err(|e| {
            ConnectError::new(
                &options.url,
                ConnectErrorKind::Credentials,
                format!(
                    "cannot read the credentials file {}; check NATS_CREDS and the file's permissions",
                    path.display()
                ),
                Some(e.into()),
            )
        })?;
    }
    if let Some((u, p)) = options.user_and_password() {
        o = o.user_and_password(u.to_owned(), p.to_owned());
    }
    if let Some(t) = options.token_value() {
        o = o.token(t.to_owned());
    }
    if let Some(path) = &options.nkey {
        let seed = std::fs::read_to_string(path).map_err(|e| {
            ConnectError::new(
                &options.url,
                ConnectErrorKind::Credentials,
                format!(
                    "cannot read the nkey seed file {}; check NATS_NKEY and the file's permissions",
                    path.display()
                ),
                Some(e.into()),
            )
        })?;
        o = o.nkey(seed.trim().to_owned());
    }
    if let Some(ca) = &options.ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &options.client_cert {
        o = o
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    let url = crate::transport::select::redact(&options.url);
    let first = Arc::new(AtomicBool::new(true));
    // whether the connection counts as up in the metrics
    let up = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(reconnects);
    o = o.event_callback(move |event| {
        let reconnects = reconnects.clone();
        let url = url.clone();
        let first = first.clone();
        let up = up.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    // The initial connection is not a reconnect: nothing to re-issue.
                    let again = !first.swap(false, Ordering::Relaxed);
                    if again {
                        tracing::info!(%url, "reconnected to NATS");
                        reconnects.send_modify(|n| *n += 1);
                    } else {
                        tracing::debug!(%url, "connected to NATS");
                    }
                    if !up.swap(true, Ordering::Relaxed) {
                        export::connected("nats", again);
                    }
                }
                async_nats::Event::Closed => {
                    tracing::debug!(%url, "NATS connection closed");
                    if up.swap(false, Ordering::Relaxed) {
                        export::disconnected("nats", false);
                    }
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!(%url, "disconnected from NATS; reconnecting");
                    if up.swap(false, Ordering::Relaxed) {
                        export::disconnected("nats", true);
                    }
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
    // `nats://a:4222,nats://b:4222`: every server of a cluster (as natscli's
    // NATS_URL takes them); the client also learns the others from the first
    let servers: Vec<&str> = options.url.split(',').map(str::trim).collect();
    o.connect(servers).await.map_err(|e| {
        use async_nats::ConnectErrorKind as K;
        let (kind, hint) = match e.kind() {
            K::AuthorizationViolation | K::Authentication => (
                ConnectErrorKind::Unauthorized,
                "the server refused the credentials; check NATS_USER/NATS_PASSWORD, NATS_TOKEN, \
                 NATS_NKEY or NATS_CREDS (nothing is retried with wrong credentials)",
            ),
            // rustls' verdicts reach async-nats as I/O errors
            K::Io if is_tls_failure(&e.to_string()) => (
                ConnectErrorKind::Tls,
                "the TLS handshake failed; check NATS_CA (the CA that signed the server's \
                 certificate), NATS_CERT/NATS_KEY, and that the server speaks TLS",
            ),
            K::Tls => (
                ConnectErrorKind::Tls,
                "the TLS handshake failed; check NATS_CA (the CA that signed the server's \
                 certificate), NATS_CERT/NATS_KEY, and that the server speaks TLS",
            ),
            _ => (
                ConnectErrorKind::Unreachable,
                "check NATS_URL and that the server is reachable",
            ),
        };
        ConnectError::new(&options.url, kind, format!("{e}; {hint}"), Some(e.into()))
    })
}

/// An I/O error text that is a TLS verdict (an unknown CA, a bad
/// signature, a refused client certificate).
fn is_tls_failure(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["certificate", "handshake", "tls"]
        .iter()
        .any(|w| text.contains(w))
}
