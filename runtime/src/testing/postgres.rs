//! [`PostgresServer`]: a private PostgreSQL server for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::TestingError;
use super::logs::Log;
use super::probe::{self, Readiness};
use super::process::Process;

/// Where Debian's `postgresql` packages put the server binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restart waits for a killed server's backends to exit.
const ORPHANS_TIMEOUT: Duration = Duration::from_secs(10);
/// The OS user the server runs as when the tests run as root (PostgreSQL
/// refuses to run as root).
const SERVER_USER: &str = "postgres";

/// A private PostgreSQL server: `initdb` into a temporary dir, then
/// `postgres` on a random `127.0.0.1` port, its unix socket in the same
/// temporary dir, `trust` authentication for the `postgres` user, no
/// fsync. Killable and restartable (same port, same data) like
/// [`NatsServer`](super::NatsServer); dropping it kills the process and
/// removes its dir.
///
/// The binaries are in `$JETFLOW_POSTGRES_BIN` if set, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package:
/// `apt-get install --no-install-recommends postgresql`, or run
/// `scripts/setup`). When the tests run as root, the server runs as the
/// OS user `postgres` (through `setpriv`), which the package creates.
///
/// ```no_run
/// use jetflow::testing::PostgresServer;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = PostgresServer::start().await?;
/// let url = server.url(); // postgres://postgres@127.0.0.1:PORT/postgres
/// server.kill().await?;
/// server.restart().await?;
/// # drop(url);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    process: Process,
    port: u16,
    bin: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    /// `(uid, gid)` to run as, when running as root.
    run_as: Option<(u32, u32)>,
    log: Log,
    _dir: tempfile::TempDir,
}

fn failed(action: &str, reason: impl std::fmt::Display) -> TestingError {
    TestingError::Postgres {
        action: action.to_owned(),
        reason: reason.to_string(),
    }
}

impl PostgresServer {
    /// Initialises a data dir and starts the server; returns once it
    /// accepts connections.
    pub async fn start() -> Result<Self, TestingError> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("jetflow-postgres-")
            .tempdir()
            .map_err(|e| TestingError::io("create a temporary dir for PostgreSQL", e))?;
        let run_as = server_user()?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        for d in [dir.path(), socket_dir.as_path()] {
            std::fs::create_dir_all(d)
                .map_err(|e| TestingError::io("create the PostgreSQL dirs", e))?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(d, Some(uid), Some(gid))
                    .map_err(|e| TestingError::io("give the PostgreSQL dirs to `postgres`", e))?;
            }
        }
        let log = Log::new(dir.path().join("postgres.log"));
        let mut server = PostgresServer {
            process: Process::default(),
            port: probe::free_port()?,
            bin,
            data_dir,
            socket_dir,
            run_as,
            log,
            _dir: dir,
        };
        server.initdb().await?;
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The log file (every process of this server appends to it).
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// SIGKILLs the server (a crash: no shutdown checkpoint) and waits
    /// until it has exited.
    pub async fn kill(&mut self) -> Result<(), TestingError> {
        self.process
            .kill()
            .await
            .map_err(|e| failed("kill postgres", format!("{e:?}")))
    }

    /// Kills the server if it runs, then starts it again on the same port
    /// and data dir (crash recovery replays its WAL).
    pub async fn restart(&mut self) -> Result<(), TestingError> {
        self.kill().await?;
        // A killed postmaster leaves its pid file (the new one checks it)
        // and its backends, which exit once they notice it is gone; until
        // then they hold its shared memory and a new postmaster refuses to
        // start ("pre-existing shared memory block ... is still in use"),
        // so it is started again until they are gone, for a bounded time.
        let deadline = tokio::time::Instant::now() + ORPHANS_TIMEOUT;
        loop {
            let logged = std::fs::metadata(self.log.path()).map_or(0, |m| m.len());
            self.spawn()?;
            let started = self.wait_ready().await;
            if started.is_ok()
                || tokio::time::Instant::now() >= deadline
                || !self.refused_for_orphans(logged)
            {
                return started;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the postmaster whose log begins at byte `logged` refused to
    /// start because the killed one's backends still hold its shared memory.
    fn refused_for_orphans(&self, logged: u64) -> bool {
        let log = std::fs::read(self.log.path()).unwrap_or_default();
        let since = usize::try_from(logged).map_or(&[][..], |at| log.get(at..).unwrap_or_default());
        String::from_utf8_lossy(since).contains("pre-existing shared memory block")
    }

    /// A command running `program` of the server's binaries, as the server
    /// user when running as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    async fn initdb(&mut self) -> Result<(), TestingError> {
        let (stdout, stderr) = self
            .log
            .open_for("initdb", &self.bin.join("initdb"), self.port)?;
        let mut command = self.command("initdb");
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let status = tokio::task::spawn_blocking(move || command.status())
            .await
            .map_err(|e| failed("run initdb", e))?
            .map_err(|e| failed("run initdb (is `setpriv` on PATH when running as root?)", e))?;
        if !status.success() {
            return Err(failed(
                "initdb",
                format!("{status}; its output:\n{}", self.log.excerpt()),
            ));
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<(), TestingError> {
        let (stdout, stderr) =
            self.log
                .open_for("postgres", &self.bin.join("postgres"), self.port)?;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-F"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.process
            .spawn(&mut command)
            .map_err(|e| failed("spawn postgres", e))
    }

    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let ready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        let probe = || {
            let (ready, port) = (ready.clone(), port.clone());
            async move {
                let status = tokio::process::Command::new(ready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                    .status()
                    .await
                    .ok()?;
                status.success().then_some(())
            }
        };
        match probe::wait_ready(&mut self.process, STARTUP_TIMEOUT, probe).await {
            Readiness::Ready(()) => Ok(()),
            Readiness::NotRunning => Err(failed("wait for postgres", "it is not running")),
            Readiness::Exited(status) => Err(failed(
                "start postgres",
                format!("it exited ({status}); its log:\n{}", self.log.excerpt()),
            )),
            Readiness::TimedOut => {
                let _ = self.process.kill().await;
                Err(failed(
                    "start postgres",
                    format!(
                        "not ready within {STARTUP_TIMEOUT:?}; its log:\n{}",
                        self.log.excerpt()
                    ),
                ))
            }
            Readiness::Failed(e) => Err(TestingError::io("check whether postgres runs", e)),
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.process.kill_blocking();
    }
}

/// `$JETFLOW_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/*/bin`
/// holding `initdb`.
fn find_bin() -> Result<PathBuf, TestingError> {
    if let Some(dir) = std::env::var_os("JETFLOW_POSTGRES_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_ROOT)
        .map_err(|e| failed("find the PostgreSQL binaries", no_binaries(e)))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        failed(
            "find the PostgreSQL binaries",
            no_binaries("none has initdb"),
        )
    })
}

fn no_binaries(why: impl std::fmt::Display) -> String {
    format!(
        "nothing usable in {DEBIAN_ROOT}/*/bin ({why}); install Debian's `postgresql` package \
         (`apt-get install --no-install-recommends postgresql`, or run `scripts/setup`) or set \
         JETFLOW_POSTGRES_BIN to a dir holding initdb, postgres and pg_isready"
    )
}

/// `(uid, gid)` of the `postgres` user when running as root (PostgreSQL
/// refuses root), else `None`.
fn server_user() -> Result<Option<(u32, u32)>, TestingError> {
    let id = |flag: &str, who: Option<&str>| -> Result<u32, TestingError> {
        let mut c = Command::new("id");
        c.arg(flag);
        if let Some(who) = who {
            c.arg(who);
        }
        let out = c.output().map_err(|e| TestingError::io("run `id`", e))?;
        if !out.status.success() {
            return Err(failed(
                "find the OS user `postgres`",
                "it does not exist; install Debian's `postgresql` package, which creates it",
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| failed("read the output of `id`", e))
    };
    if id("-u", None)? != 0 {
        return Ok(None);
    }
    Ok(Some((
        id("-u", Some(SERVER_USER))?,
        id("-g", Some(SERVER_USER))?,
    )))
}
