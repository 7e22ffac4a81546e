//! [`RabbitMqServer`]: a private `rabbitmq-server` node for tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::TestingError;
use super::logs::Log;
use super::probe;

/// Where Debian's package puts the scripts that run the broker directly
/// (`/usr/sbin/rabbitmq-server` switches to the `rabbitmq` user first).
const DEBIAN_DIR: &str = "/usr/lib/rabbitmq/bin";
/// The environment variable naming another `rabbitmq-server` script.
const ENV: &str = "JETFLOW_RABBITMQ_SERVER";
/// A node boots in seconds; a loaded machine may need many more.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a killed node may take to exit.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clean stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `rabbitmqctl` may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the node and its own `epmd` until a line on stdin says `stop`
/// (SIGTERM: the node shuts down cleanly) or `kill` (SIGKILL, a crash), or
/// stdin closes: then the test process has exited (killed, or holding the
/// server in a `static` that is never dropped), and the node is killed
/// and its data dir `$2` removed.
const SUPERVISOR: &str = r#"
epmd -port "$ERL_EPMD_PORT" & epmd_pid=$!
n=0
until epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1; do
    n=$((n + 1)); [ "$n" -gt 100 ] && break; sleep 0.05
done
"$1" -noinput </dev/null & node_pid=$!
read -r cmd || cmd=exit
if [ "$cmd" = stop ]; then
    kill -TERM "$node_pid" 2>/dev/null
    wait "$node_pid"
fi
kill -9 "$node_pid" "$epmd_pid" 2>/dev/null
wait
[ "$cmd" = exit ] && rm -rf "$2"
exit 0
"#;

/// A private RabbitMQ node: its own node name, random AMQP, distribution
/// and epmd ports on 127.0.0.1, its data and logs in a temp dir; killed
/// (with its epmd) on drop, or when the test process exits (its data dir
/// then removed too).
///
/// The machine's own RabbitMQ (port 5672, the system epmd on 4369) is
/// never touched. Startup takes seconds: a test binary can share one node
/// and give each test a fresh [`vhost`](Self::vhost).
/// [`kill`](Self::kill) is a crash (SIGKILL), [`stop`](Self::stop) a clean
/// shutdown; [`restart`](Self::restart) stops it cleanly and boots the node
/// again on the same ports with the same data, so durable queues and
/// persistent messages are back.
///
/// The broker is `$JETFLOW_RABBITMQ_SERVER` if set, else Debian's
/// `/usr/lib/rabbitmq/bin/rabbitmq-server` (package `rabbitmq-server`;
/// `scripts/setup` installs it).
///
/// ```no_run
/// use jetflow::testing::RabbitMqServer;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = RabbitMqServer::start().await?;
/// let url = server.vhost("my-test").await?; // amqp://guest:guest@127.0.0.1:PORT/my-test
/// // ... use it, then simulate a crash and recovery:
/// server.kill().await?;
/// server.restart().await?;
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RabbitMqServer {
    /// The supervising shell; closing its stdin kills the node.
    child: Option<Child>,
    binary: PathBuf,
    node: String,
    port: u16,
    dist_port: u16,
    epmd_port: u16,
    log: Log,
    /// Holds the data and logs; declared last so it is removed only after
    /// `Drop::drop` has killed the node.
    dir: tempfile::TempDir,
}

impl RabbitMqServer {
    /// Starts a node and waits until it accepts AMQP connections.
    ///
    /// # Errors
    ///
    /// [`TestingError::RabbitMqBinaryNotFound`] without a broker;
    /// [`TestingError::RabbitMqStartup`] when it exits or does not listen in
    /// time (with the tail of its log).
    pub async fn start() -> Result<Self, TestingError> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("jetflow-rabbitmq-")
            .tempdir()
            .map_err(|e| TestingError::io("create a temp dir for rabbitmq-server", e))?;
        static N: AtomicU64 = AtomicU64::new(0);
        let node = format!(
            "jetflow-{}-{}@localhost",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut server = RabbitMqServer {
            child: None,
            binary,
            node,
            port: probe::free_port()?,
            dist_port: probe::free_port()?,
            epmd_port: probe::free_port()?,
            log: Log::new(dir.path().join("server.log")),
            dir,
        };
        server.write_config()?;
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// The URL of the default vhost `/`:
    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Creates the vhost `name` (if new), gives `guest` every permission on
    /// it, and returns its URL. Tests sharing a node stay apart this way.
    ///
    /// # Errors
    ///
    /// [`TestingError::RabbitMqCtl`] when `rabbitmqctl` fails.
    pub async fn vhost(&self, name: &str) -> Result<String, TestingError> {
        self.ctl(&["add_vhost", name]).await?;
        self.ctl(&["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
            .await?;
        Ok(format!(
            "amqp://guest:guest@127.0.0.1:{}/{}",
            self.port,
            encode(name)
        ))
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Erlang node name, `jetflow-PID-N@localhost`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's stdout and stderr, appended to across restarts (its own
    /// logs are in the `log` dir next to it).
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// Kills the node with SIGKILL, like a crash, and waits until it has
    /// exited. Does nothing if it is not running.
    ///
    /// # Errors
    ///
    /// [`TestingError::RabbitMqStartup`] if it does not exit in time.
    pub async fn kill(&mut self) -> Result<(), TestingError> {
        self.end("kill", KILL_TIMEOUT).await
    }

    /// Stops the node cleanly (SIGTERM: it closes its connections and
    /// writes everything down) and waits until it has exited. Does nothing
    /// if it is not running.
    ///
    /// RabbitMQ 3.10 keeps the directory of its quorum queues in a file it
    /// writes down lazily: a node killed within seconds of declaring a
    /// quorum queue may come back without that queue's log. A restart test
    /// of persistent messages therefore stops the node cleanly.
    ///
    /// # Errors
    ///
    /// None so far; the signature leaves room for a stop that fails.
    pub async fn stop(&mut self) -> Result<(), TestingError> {
        self.end("stop", STOP_TIMEOUT).await
    }

    /// Sends `command` to the supervisor and waits until it exited.
    async fn end(&mut self, command: &str, within: Duration) -> Result<(), TestingError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{command}");
        }
        let deadline = Instant::now() + within;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        // the port is free once the node is gone
        let deadline = Instant::now() + KILL_TIMEOUT;
        while probe::connect(self.port).await.is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops the node cleanly if it runs (see [`stop`](Self::stop)), boots
    /// it again on the same ports with the same data, and waits until it
    /// accepts connections.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn restart(&mut self) -> Result<(), TestingError> {
        self.stop().await?;
        self.spawn()?;
        self.wait_ready().await
    }

    fn write_config(&self) -> Result<(), TestingError> {
        let config = format!(
            "listeners.tcp.1 = 127.0.0.1:{port}\n\
             loopback_users.guest = true\n\
             log.console = false\n\
             log.file.level = warning\n\
             disk_free_limit.absolute = 1MB\n",
            port = self.port
        );
        let write = |name: &str, text: &str| {
            std::fs::File::create(self.dir.path().join(name))
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| TestingError::io(format!("write the rabbitmq-server {name}"), e))
        };
        write("rabbitmq.conf", &config)?;
        write("enabled_plugins", "[].\n")
    }

    /// The environment of the node and of `rabbitmqctl`.
    fn env(&self, command: &mut Command) {
        let dir = self.dir.path();
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            // a VM that fails to start (this node's or `rabbitmqctl`'s)
            // writes its crash dump here, not into the caller's directory
            .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"))
            // exec the VM itself (no signal-forwarding shell); `-noinput` is passed
            .env("RABBITMQ_ALLOW_INPUT", "1")
            // the Erlang cookie lives in $HOME
            .env("HOME", dir);
    }

    fn spawn(&mut self) -> Result<(), TestingError> {
        let (stdout, stderr) = self
            .log
            .open_for("rabbitmq-server", &self.binary, self.port)?;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("jetflow-rabbitmq")
            .arg(&self.binary)
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr);
        self.env(&mut command);
        let child = command
            .spawn()
            .map_err(|source| TestingError::RabbitMqSpawn {
                path: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the AMQP port accepts connections; on failure the node
    /// is killed.
    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => None,
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                None => Some("not running".to_owned()),
            };
            if let Some(status) = exited {
                return Err(self.startup_error(format!("it exited ({status})")));
            }
            if probe::connect(self.port).await.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.kill().await;
                return Err(
                    self.startup_error(format!("it did not listen within {STARTUP_TIMEOUT:?}"))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn startup_error(&self, what: String) -> TestingError {
        let node_log = std::fs::read_to_string(
            self.dir
                .path()
                .join("log")
                .join(format!("{}.log", self.node)),
        )
        .unwrap_or_default();
        let tail: Vec<&str> = node_log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        TestingError::RabbitMqStartup {
            node: self.node.clone(),
            port: self.port,
            what,
            log_tail: format!("{}\n{}", self.log.excerpt(), tail.join("\n")),
        }
    }

    /// Runs `rabbitmqctl -n NODE args...` against this node.
    async fn ctl(&self, args: &[&str]) -> Result<(), TestingError> {
        let ctl = self.binary.with_file_name("rabbitmqctl");
        let mut command = Command::new(&ctl);
        command.arg("-n").arg(&self.node).args(args);
        self.env(&mut command);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true).stdin(Stdio::null());
        let failed = |reason: String| TestingError::RabbitMqCtl {
            command: args.join(" "),
            reason,
        };
        let output = tokio::time::timeout(CTL_TIMEOUT, command.output())
            .await
            .map_err(|_| failed(format!("no answer within {CTL_TIMEOUT:?}")))?
            .map_err(|e| failed(format!("could not run {}: {e}", ctl.display())))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(failed(format!(
                "{}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

/// `$JETFLOW_RABBITMQ_SERVER`, else Debian's script.
fn find_binary() -> Result<PathBuf, TestingError> {
    if let Some(path) = std::env::var_os(ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(TestingError::RabbitMqBinaryNotFound {
                reason: format!("{ENV}={} is not a file", path.display()),
            })
        };
    }
    let path = Path::new(DEBIAN_DIR).join("rabbitmq-server");
    if path.is_file() {
        Ok(path)
    } else {
        Err(TestingError::RabbitMqBinaryNotFound {
            reason: format!("{ENV} is not set and {} does not exist", path.display()),
        })
    }
}

/// A vhost name as a URL path segment.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for RabbitMqServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"kill\n");
            }
            let deadline = std::time::Instant::now() + KILL_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "rabbitmq-server {} on port {} was dropped during a panic; its last log lines:\n{}",
                self.node,
                self.port,
                self.log.excerpt()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vhost_names_are_encoded() {
        assert_eq!(super::encode("a-b_c.1"), "a-b_c.1");
        assert_eq!(super::encode("a/b c"), "a%2Fb%20c");
    }
}
