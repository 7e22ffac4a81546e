use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the broker is and how to authenticate. The URL selects the
/// transport (see [`crate::transport`]). Secrets are never printed: `Debug`
/// redacts them.
///
/// ```
/// use jetflow::ConnectOptions;
/// let opts = ConnectOptions::new("nats://127.0.0.1:4222").user_password("svc", "s3cret");
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Broker URL. `nats://127.0.0.1:4222` by default (NATS: several
    /// comma-separated); `memory://` or `memory://{name}` selects the
    /// embedded broker ([`crate::memory`]); `redis://host:port` Redis
    /// Streams (feature `redis`).
    pub url: String,
    /// Path of a NATS `.creds` file (JWT + nkey seed).
    pub creds: Option<PathBuf>,
    /// Path of a file holding a NATS nkey seed (`SU...`), as natscli's
    /// `NATS_NKEY`.
    pub nkey: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate (TLS with a
    /// private CA); setting it requires TLS.
    pub ca: Option<PathBuf>,
    /// PEM certificate and key files of the client, for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    user: Option<(String, String)>,
    token: Option<String>,
    /// Timeout of the initial connection.
    pub connect_timeout: Duration,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &crate::transport::select::redact(&self.url))
            .field("creds", &self.creds)
            .field("nkey", &self.nkey)
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
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
            nkey: None,
            ca: None,
            client_cert: None,
            user: None,
            token: None,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Reads the URL from `JETFLOW_URL`, else `NATS_URL` (else
    /// `nats://127.0.0.1:4222`: a service never falls back to the embedded
    /// broker by accident), and NATS credentials and TLS files with
    /// natscli's names: `NATS_CREDS`, `NATS_NKEY` (a seed file),
    /// `NATS_USER` + `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_CA`, and
    /// `NATS_CERT` + `NATS_KEY`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let url = var("JETFLOW_URL")
            .or_else(|| var("NATS_URL"))
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let mut o = ConnectOptions::new(url);
        o.creds = var("NATS_CREDS").map(PathBuf::from);
        if let (Some(u), Some(p)) = (var("NATS_USER"), var("NATS_PASSWORD")) {
            o.user = Some((u, p));
        }
        o.token = var("NATS_TOKEN");
        o.nkey = var("NATS_NKEY").map(PathBuf::from);
        o.ca = var("NATS_CA").map(PathBuf::from);
        if let (Some(c), Some(k)) = (var("NATS_CERT"), var("NATS_KEY")) {
            o.client_cert = Some((c.into(), k.into()));
        }
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

    /// Authenticates with the nkey seed in the file at `path`.
    pub fn nkey_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.nkey = Some(path.into());
        self
    }

    /// Trusts the CA in the PEM file at `path` for the server's certificate
    /// (and requires TLS).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(path.into());
        self
    }

    /// Presents the client certificate and key in these PEM files (mutual
    /// TLS; requires TLS).
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Authenticates with a `.creds` file.
    pub fn creds(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds = Some(path.into());
        self
    }

    pub(crate) fn user_and_password(&self) -> Option<(&str, &str)> {
        self.user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub(crate) fn token_value(&self) -> Option<&str> {
        self.token.as_deref()
    }
}
