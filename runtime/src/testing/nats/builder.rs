//! [`NatsServerBuilder`]: configures and starts a [`NatsServer`].

use std::path::PathBuf;
use std::time::Duration;

use super::{DEFAULT_MIN_VERSION, DEFAULT_STARTUP_TIMEOUT, NATS_SERVER, NatsServer};
use crate::testing::TestingError;
use crate::testing::binary::Version;
use crate::testing::logs::Log;
use crate::testing::probe::{self, PORT_ATTEMPTS};
use crate::testing::process::Process;

/// Configures and starts a [`NatsServer`]; made by [`NatsServer::builder`].
///
/// ```no_run
/// use jetflow::testing::NatsServer;
///
/// # async fn example() -> Result<(), jetflow::testing::TestingError> {
/// let server = NatsServer::builder()
///     .min_version("2.10.0")
///     .arg("--max_payload=2MB")
///     .start()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    min_version: String,
    args: Vec<String>,
    config: Option<String>,
    binary: Option<PathBuf>,
    startup_timeout: Duration,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            min_version: DEFAULT_MIN_VERSION.to_owned(),
            args: Vec::new(),
            config: None,
            binary: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

impl NatsServerBuilder {
    /// Refuses binaries older than `version` (`MAJOR.MINOR.PATCH`) with
    /// [`TestingError::VersionTooOld`]. The default is `2.9.0`, the oldest
    /// server jetflow supports.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::builder()
    ///     .min_version("2.10.0")
    ///     .start()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn min_version(mut self, version: impl Into<String>) -> Self {
        self.min_version = version.into();
        self
    }

    /// Appends one command-line argument, after the ones jetflow passes.
    ///
    /// Do not pass `-a`, `-p`, `-sd` or `--server_name`: jetflow manages them
    /// and recognises its server by its name.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::builder()
    ///     .arg("--max_payload=2MB")
    ///     .start()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several command-line arguments; see [`arg`](Self::arg).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::builder()
    ///     .args(["--max_payload", "2MB"])
    ///     .start()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the server with this configuration file text (`-c FILE`).
    ///
    /// Command-line arguments, including the ones jetflow passes (address,
    /// port, JetStream, store dir, server name), take precedence over it.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::builder()
    ///     .config("max_payload: 2MB\njetstream { max_memory_store: 64MB }\n")
    ///     .start()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Runs this binary instead of `$JETFLOW_NATS_SERVER` or `nats-server`
    /// from `PATH`, e.g. an older server to test compatibility.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let floor = jetflow::testing::NatsServer::builder()
    ///     .binary("/usr/sbin/nats-server")
    ///     .start()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// How long [`start`](Self::start) and [`NatsServer::restart`] wait for
    /// the server to answer; 10 seconds by default.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::builder()
    ///     .startup_timeout(std::time::Duration::from_secs(30))
    ///     .start()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Finds and checks the binary, starts the server on a free loopback
    /// port and waits until it accepts clients with JetStream enabled.
    ///
    /// If another process takes the chosen port before the server binds it,
    /// a new port is tried (a few times).
    ///
    /// # Errors
    ///
    /// [`TestingError`]: no binary, too old, could not spawn, exited during
    /// startup, not ready in time, or JetStream disabled. Startup errors
    /// include the tail of the server's log.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::builder().start().await?;
    /// println!("{}", server.url());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self) -> Result<NatsServer, TestingError> {
        let required = Version::parse(&self.min_version)
            .ok_or_else(|| TestingError::InvalidVersion(self.min_version.clone()))?;
        let binary = NATS_SERVER
            .resolve(self.binary.as_deref())
            .map_err(|reason| TestingError::BinaryNotFound { reason })?;
        let version =
            NATS_SERVER
                .version(&binary)
                .await
                .map_err(|reason| TestingError::VersionCheck {
                    path: binary.clone(),
                    reason,
                })?;
        if version < required {
            return Err(TestingError::VersionTooOld {
                path: binary,
                found: version.to_string(),
                required: required.to_string(),
            });
        }

        let dir = tempfile::Builder::new()
            .prefix("jetflow-nats-")
            .tempdir()
            .map_err(|e| TestingError::io("create a temp dir for nats-server", e))?;
        let store_dir = dir.path().join("store");
        std::fs::create_dir(&store_dir)
            .map_err(|e| TestingError::io("create the nats-server store dir", e))?;
        let config_path = match self.config {
            Some(text) => {
                let path = dir.path().join("nats-server.conf");
                std::fs::write(&path, text)
                    .map_err(|e| TestingError::io("write the nats-server config file", e))?;
                Some(path)
            }
            None => None,
        };

        // Built before the process starts so that `Drop` cleans up after
        // every failure below.
        let mut server = NatsServer {
            process: Process::default(),
            port: 0,
            binary,
            version,
            args: self.args,
            config_path,
            startup_timeout: self.startup_timeout,
            log: Log::new(dir.path().join("nats-server.log")),
            store_dir,
            _dir: dir,
        };
        let mut attempt = 1;
        loop {
            server.port = probe::free_port()?;
            server.spawn()?;
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(err) if attempt < PORT_ATTEMPTS && super::is_port_conflict(&err) => {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}
