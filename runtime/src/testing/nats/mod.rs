//! [`NatsServer`]: a private `nats-server -js` process for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::TestingError;
use super::binary::{Program, Version};
use super::logs::Log;
use super::probe::{self, RESTART_PORT_TIMEOUT, RESTART_RETRY_INTERVAL, Readiness};
use super::process::{KillError, Process, SignalError};

mod builder;
mod cluster;
mod info;
#[cfg(test)]
mod tests;

pub use builder::NatsServerBuilder;
pub use cluster::NatsCluster;

/// The binary: `$JETFLOW_NATS_SERVER`, else `nats-server` on `PATH`.
const NATS_SERVER: Program = Program {
    name: "nats-server",
    env: "JETFLOW_NATS_SERVER",
    parse_version: Version::from_version_output,
};
const DEFAULT_MIN_VERSION: &str = "2.9.0";
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

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
    process: Process,
    port: u16,
    binary: PathBuf,
    version: Version,
    args: Vec<String>,
    config_path: Option<PathBuf>,
    startup_timeout: Duration,
    store_dir: PathBuf,
    /// Appended to across restarts.
    log: Log,
    /// Holds the store dir, the log and the config file; declared last so it
    /// is removed only after `Drop::drop` has killed the process.
    _dir: tempfile::TempDir,
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
        self.log.path()
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
        self.process.pid()
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
        self.process.is_paused()
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
        self.process.kill().await.map_err(kill_error)
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
                    tokio::time::sleep(RESTART_RETRY_INTERVAL).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Kills the server and starts it again on the same port with an
    /// empty store, as a server whose disk was lost: every stream and
    /// consumer is gone; clients reconnect to the unchanged URL.
    ///
    /// # Errors
    ///
    /// [`TestingError::Io`] if the store could not be emptied; otherwise
    /// as [`restart`](Self::restart).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::NatsServer::start().await?;
    /// server.restart_with_empty_store().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn restart_with_empty_store(&mut self) -> Result<(), TestingError> {
        self.kill().await?;
        let io = |action: &str| {
            let action = format!("{action} {}", self.store_dir.display());
            move |source| TestingError::Io { action, source }
        };
        std::fs::remove_dir_all(&self.store_dir).map_err(io("empty the store dir"))?;
        std::fs::create_dir_all(&self.store_dir).map_err(io("recreate the store dir"))?;
        self.restart().await
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
        self.process.pause().await.map_err(signal_error)
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
        self.process.resume().await.map_err(signal_error)
    }

    /// Its `server_name` (`jetflow-test-{port}`), as a cluster's leader
    /// fields name it.
    pub fn name(&self) -> String {
        format!("jetflow-test-{}", self.port)
    }

    /// Starts the process on `self.port`; does not wait for it.
    fn spawn(&mut self) -> Result<(), TestingError> {
        let (stdout, stderr) = self
            .log
            .open_for(NATS_SERVER.name, &self.binary, self.port)?;
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
            .arg(self.name())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.process
            .spawn(&mut command)
            .map_err(|source| TestingError::Spawn {
                path: self.binary.clone(),
                source,
            })
    }

    /// Waits until the process answers with its `INFO` line and JetStream
    /// enabled; on failure the process is gone.
    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let port = self.port;
        let name = self.name();
        // Only our own server counts: something else may answer on a port
        // that was taken after it was chosen.
        let ours = || {
            let name = name.clone();
            async move {
                info::probe(port)
                    .await
                    .filter(|info| info.server_name.as_deref() == Some(name.as_str()))
            }
        };
        match probe::wait_ready(&mut self.process, self.startup_timeout, ours).await {
            Readiness::Ready(info) if info.jetstream => Ok(()),
            Readiness::Ready(_) => {
                let _ = self.kill().await;
                Err(TestingError::JetStreamDisabled {
                    port,
                    log_tail: self.log.excerpt(),
                })
            }
            Readiness::NotRunning => Err(TestingError::NotRunning),
            Readiness::Exited(status) => Err(TestingError::Exited {
                port,
                status: status.to_string(),
                log_tail: self.log.excerpt(),
            }),
            Readiness::TimedOut => {
                let _ = self.kill().await;
                Err(TestingError::StartupTimeout {
                    port,
                    timeout: self.startup_timeout,
                    log_tail: self.log.excerpt(),
                })
            }
            Readiness::Failed(e) => {
                let _ = self.kill().await;
                Err(TestingError::io("check whether nats-server is running", e))
            }
        }
    }
}

fn is_port_conflict(err: &TestingError) -> bool {
    matches!(err, TestingError::Exited { log_tail, .. } if probe::mentions_port_conflict(log_tail))
}

fn kill_error(err: KillError) -> TestingError {
    match err {
        KillError::Timeout { pid, timeout } => TestingError::KillTimeout { pid, timeout },
        KillError::Wait(e) => TestingError::io("wait for nats-server to exit", e),
    }
}

fn signal_error(err: SignalError) -> TestingError {
    match err {
        SignalError::NotRunning => TestingError::NotRunning,
        SignalError::Failed {
            signal,
            pid,
            reason,
        } => TestingError::Signal {
            signal,
            pid,
            reason,
        },
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) process.
        self.process.kill_blocking();
        if std::thread::panicking() {
            // The log is removed with the temp dir; show it with the failing test.
            eprintln!(
                "nats-server {} on port {} was dropped during a panic; its last log lines:\n{}",
                self.version,
                self.port,
                self.log.excerpt()
            );
        }
        // `self._dir` is dropped after this, removing the store dir and the log.
    }
}
