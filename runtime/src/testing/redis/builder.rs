//! [`RedisServerBuilder`]: configures and starts a [`RedisServer`].

use std::path::PathBuf;
use std::time::Duration;

use super::{DEFAULT_MIN_VERSION, DEFAULT_STARTUP_TIMEOUT, REDIS_SERVER, RedisServer};
use crate::testing::TestingError;
use crate::testing::binary::Version;
use crate::testing::logs::Log;
use crate::testing::probe::{self, PORT_ATTEMPTS};
use crate::testing::process::Process;

/// Configures and starts a [`RedisServer`]; made by [`RedisServer::builder`].
///
/// ```no_run
/// use jetflow::testing::RedisServer;
///
/// # async fn example() -> Result<(), jetflow::testing::TestingError> {
/// let server = RedisServer::builder()
///     .min_version("7.0.0")
///     .arg("--maxmemory")
///     .arg("64mb")
///     .start()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    min_version: String,
    args: Vec<String>,
    binary: Option<PathBuf>,
    startup_timeout: Duration,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self {
            min_version: DEFAULT_MIN_VERSION.to_owned(),
            args: Vec::new(),
            binary: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

impl RedisServerBuilder {
    /// Refuses binaries older than `version` (`MAJOR.MINOR.PATCH`) with
    /// [`TestingError::RedisVersionTooOld`]. The default is `6.2.0`, the
    /// first release with `XAUTOCLAIM`.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::builder()
    ///     .min_version("7.0.0")
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

    /// Appends one command-line argument, after the ones jetflow passes;
    /// write options as `--name` followed by their value(s) as further
    /// arguments.
    ///
    /// Do not pass `--port`, `--bind`, `--dir` or `--daemonize`, which
    /// jetflow manages, nor options that make `PING` or `INFO` fail without
    /// `AUTH` (`--requirepass`, ACLs, renamed commands): jetflow sends both
    /// to tell when the server is ready.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::builder()
    ///     .arg("--maxmemory")
    ///     .arg("64mb")
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
    /// let server = jetflow::testing::RedisServer::builder()
    ///     .args(["--maxmemory", "64mb"])
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

    /// Runs this binary instead of `$JETFLOW_REDIS_SERVER` or `redis-server`
    /// from `PATH`.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::builder()
    ///     .binary("/usr/bin/redis-server")
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

    /// How long [`start`](Self::start) and [`RedisServer::restart`] wait for
    /// the server to answer `PING`; 10 seconds by default.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::builder()
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
    /// port and waits until it answers `PING` with `+PONG`.
    ///
    /// If another process takes the chosen port before the server binds it,
    /// a new port is tried (a few times).
    ///
    /// # Errors
    ///
    /// [`TestingError`]: no binary, too old, could not spawn, exited during
    /// startup or not ready in time (the `Redis*` variants). Startup errors
    /// name the binary and the port and include the tail of the server's
    /// log.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::builder().start().await?;
    /// println!("{}", server.url());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self) -> Result<RedisServer, TestingError> {
        let required = Version::parse(&self.min_version)
            .ok_or_else(|| TestingError::RedisInvalidVersion(self.min_version.clone()))?;
        let binary = REDIS_SERVER
            .resolve(self.binary.as_deref())
            .map_err(|reason| TestingError::RedisBinaryNotFound { reason })?;
        let version = REDIS_SERVER.version(&binary).await.map_err(|reason| {
            TestingError::RedisVersionCheck {
                path: binary.clone(),
                reason,
            }
        })?;
        if version < required {
            return Err(TestingError::RedisVersionTooOld {
                path: binary,
                found: version.to_string(),
                required: required.to_string(),
            });
        }

        let dir = tempfile::Builder::new()
            .prefix("jetflow-redis-")
            .tempdir()
            .map_err(|e| TestingError::io("create a temp dir for redis-server", e))?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir)
            .map_err(|e| TestingError::io("create the redis-server working dir", e))?;

        // Built before the process starts so that `Drop` cleans up after
        // every failure below.
        let mut server = RedisServer {
            process: Process::default(),
            port: 0,
            binary,
            version,
            args: self.args,
            startup_timeout: self.startup_timeout,
            data_dir,
            log: Log::new(dir.path().join("redis-server.log")),
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
