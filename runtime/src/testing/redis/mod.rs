//! [`RedisServer`]: a private `redis-server` process for tests.

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
mod resp;
#[cfg(test)]
mod tests;

pub use builder::RedisServerBuilder;

/// The binary: `$JETFLOW_REDIS_SERVER`, else `redis-server` on `PATH`.
const REDIS_SERVER: Program = Program {
    name: "redis-server",
    env: "JETFLOW_REDIS_SERVER",
    parse_version,
};
/// The first release with `XAUTOCLAIM`.
const DEFAULT_MIN_VERSION: &str = "6.2.0";
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A private `redis-server` process: random loopback port, own working dir,
/// nothing persisted, killed (and its dir removed) on drop.
///
/// The server runs as
/// `redis-server --port PORT --bind 127.0.0.1 --dir DIR --save "" --appendonly no --daemonize no`
/// plus the builder's arguments, logging to [`log_path`](Self::log_path).
/// [`kill`](Self::kill) and [`restart`](Self::restart) keep the port, so
/// clients reconnect to the same [`url`](Self::url), but not the data:
/// nothing is saved, so a restarted server starts empty.
/// [`pause`](Self::pause) and [`resume`](Self::resume) freeze the process
/// (SIGSTOP/SIGCONT) to simulate a hung server.
///
/// The binary is `$JETFLOW_REDIS_SERVER` if set, else the first
/// `redis-server` on `PATH`; versions older than 6.2 (the first with
/// `XAUTOCLAIM`) are refused. On Debian and Ubuntu it is the package
/// `redis-server`; `scripts/setup` finds or installs it. The server never
/// uses the default port 6379, so a system Redis is left alone.
///
/// ```no_run
/// use jetflow::testing::RedisServer;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = RedisServer::start().await?;
/// println!("redis-server {} at {}", server.version(), server.url());
/// // ... use the server, then simulate a crash and recovery:
/// server.kill().await?;
/// server.restart().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisServer {
    process: Process,
    port: u16,
    binary: PathBuf,
    version: Version,
    args: Vec<String>,
    startup_timeout: Duration,
    data_dir: PathBuf,
    /// Appended to across restarts.
    log: Log,
    /// Holds the working dir and the log; declared last so it is removed
    /// only after `Drop::drop` has killed the process.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with the default settings; see [`builder`](Self::builder).
    ///
    /// # Errors
    ///
    /// See [`RedisServerBuilder::start`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::start().await?;
    /// println!("{}", server.url());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start() -> Result<Self, TestingError> {
        Self::builder().start().await
    }

    /// A builder for a server with a minimum version, another binary or
    /// extra arguments.
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
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The URL clients connect to, `redis://127.0.0.1:PORT`; it stays the
    /// same across [`restart`](Self::restart).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::start().await?;
    /// assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port on 127.0.0.1.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::start().await?;
    /// assert_ne!(server.port(), 6379);
    /// # Ok(())
    /// # }
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working dir (`--dir`); removed when the server is
    /// dropped.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::start().await?;
    /// assert!(server.data_dir().is_dir());
    /// # Ok(())
    /// # }
    /// ```
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file the server's stdout and stderr go to, appended to across
    /// restarts; removed when the server is dropped.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = jetflow::testing::RedisServer::start().await?;
    /// let log = std::fs::read_to_string(server.log_path())?;
    /// assert!(log.contains("Ready to accept connections"));
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
    /// let server = jetflow::testing::RedisServer::start().await?;
    /// println!("running {}", server.binary().display());
    /// # Ok(())
    /// # }
    /// ```
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The binary's version as `MAJOR.MINOR.PATCH`, e.g. `7.0.15`.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let server = jetflow::testing::RedisServer::start().await?;
    /// println!("redis-server {}", server.version());
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
    /// let mut server = jetflow::testing::RedisServer::start().await?;
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
    /// let mut server = jetflow::testing::RedisServer::start().await?;
    /// server.pause().await?;
    /// assert!(server.is_paused());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_paused(&self) -> bool {
        self.process.is_paused()
    }

    /// Kills the server with SIGKILL (like a crash) and waits until it has
    /// exited; connecting is then refused. The port is kept for
    /// [`restart`](Self::restart). Does nothing if it is not running.
    ///
    /// # Errors
    ///
    /// [`TestingError::RedisKillTimeout`] if it has not exited 10 seconds
    /// later.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::RedisServer::start().await?;
    /// server.kill().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn kill(&mut self) -> Result<(), TestingError> {
        self.process.kill().await.map_err(|err| match err {
            KillError::Timeout { pid, timeout } => TestingError::RedisKillTimeout {
                pid,
                port: self.port,
                timeout,
            },
            KillError::Wait(e) => TestingError::io("wait for redis-server to exit", e),
        })
    }

    /// Kills the server if it is running, starts it again on the same port
    /// with the same arguments, and waits until it answers `PING`.
    ///
    /// The data is gone: nothing is persisted. While the old port is still
    /// busy, binding is retried for up to 10 seconds.
    ///
    /// # Errors
    ///
    /// As [`RedisServerBuilder::start`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::RedisServer::start().await?;
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

    /// Freezes the server with SIGSTOP: connections stay open (and new ones
    /// are still accepted by the kernel) but nothing is answered, like a hung
    /// server, until [`resume`](Self::resume). Returns once every thread of
    /// the server has stopped.
    ///
    /// # Errors
    ///
    /// [`TestingError::RedisNotRunning`] after [`kill`](Self::kill) or if it
    /// exited; [`TestingError::RedisSignal`] if `kill -STOP` failed.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::RedisServer::start().await?;
    /// server.pause().await?;
    /// // ... clients time out ...
    /// server.resume().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pause(&mut self) -> Result<(), TestingError> {
        let result = self.process.pause().await;
        result.map_err(|err| self.signal_error(err))
    }

    /// Continues a server frozen by [`pause`](Self::pause) (SIGCONT); what
    /// clients sent meanwhile is answered.
    ///
    /// # Errors
    ///
    /// [`TestingError::RedisNotRunning`] after [`kill`](Self::kill) or if it
    /// exited; [`TestingError::RedisSignal`] if `kill -CONT` failed.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), jetflow::testing::TestingError> {
    /// let mut server = jetflow::testing::RedisServer::start().await?;
    /// server.pause().await?;
    /// server.resume().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resume(&mut self) -> Result<(), TestingError> {
        let result = self.process.resume().await;
        result.map_err(|err| self.signal_error(err))
    }

    /// Starts the process on `self.port`; does not wait for it.
    fn spawn(&mut self) -> Result<(), TestingError> {
        let (stdout, stderr) = self
            .log
            .open_for(REDIS_SERVER.name, &self.binary, self.port)?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.data_dir)
            // An empty argument: no RDB snapshots.
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(&self.args)
            .current_dir(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.process
            .spawn(&mut command)
            .map_err(|source| TestingError::RedisSpawn {
                path: self.binary.clone(),
                source,
            })
    }

    /// Waits until the process answers `PING`; on failure it is gone.
    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let port = self.port;
        let Some(pid) = self.process.pid() else {
            return Err(TestingError::RedisNotRunning { port });
        };
        // Only our own server counts: another redis-server may answer on a
        // port that was taken after it was chosen.
        let ours = || async move { resp::probe(port).await.filter(|&answer| answer == pid) };
        match probe::wait_ready(&mut self.process, self.startup_timeout, ours).await {
            Readiness::Ready(_) => Ok(()),
            Readiness::NotRunning => Err(TestingError::RedisNotRunning { port }),
            Readiness::Exited(status) => Err(TestingError::RedisExited {
                path: self.binary.clone(),
                port,
                status: status.to_string(),
                log_tail: self.log.excerpt(),
            }),
            Readiness::TimedOut => {
                let _ = self.kill().await;
                Err(TestingError::RedisStartupTimeout {
                    path: self.binary.clone(),
                    port,
                    timeout: self.startup_timeout,
                    log_tail: self.log.excerpt(),
                })
            }
            Readiness::Failed(e) => {
                let _ = self.kill().await;
                Err(TestingError::io("check whether redis-server is running", e))
            }
        }
    }

    fn signal_error(&self, err: SignalError) -> TestingError {
        match err {
            SignalError::NotRunning => TestingError::RedisNotRunning { port: self.port },
            SignalError::Failed {
                signal,
                pid,
                reason,
            } => TestingError::RedisSignal {
                signal,
                pid,
                port: self.port,
                reason,
            },
        }
    }
}

fn is_port_conflict(err: &TestingError) -> bool {
    matches!(err, TestingError::RedisExited { log_tail, .. } if probe::mentions_port_conflict(log_tail))
}

/// From the output of `redis-server --version`:
/// `Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=...`.
fn parse_version(output: &str) -> Option<Version> {
    output
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .and_then(Version::parse)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) process.
        self.process.kill_blocking();
        if std::thread::panicking() {
            // The log is removed with the temp dir; show it with the failing test.
            eprintln!(
                "redis-server {} on port {} was dropped during a panic; its last log lines:\n{}",
                self.version,
                self.port,
                self.log.excerpt()
            );
        }
        // `self._dir` is dropped after this, removing the working dir and the log.
    }
}
