//! A jetflow service as a child process (`src/bin/chore-service.rs`,
//! `App::run` on `JETFLOW_URL`), so that tests send it real signals: SIGTERM
//! for a graceful stop, SIGKILL for a crash mid-handler. Its handlers
//! print one line per step on stdout, which [`Service`] collects.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetflow::prelude::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{WAIT, eventually};

/// A job of the child-process tests, keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Chore {
    /// Business key.
    pub key: String,
}

/// Takes 300 ms, then prints `handled {key} {stream sequence} {delivery}`.
/// The ack wait is far longer than any test waits, so only a nak brings a
/// message back in time.
#[handler(group = "sigterm", concurrency = 4, ack_wait = "10m")]
pub async fn slow_chore(c: Chore, ctx: Context) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "handled {} {} {}",
        c.key,
        ctx.stream_sequence(),
        ctx.delivered()
    );
    Ok(())
}

/// Prints `started ...`, takes 300 ms, then prints `handled ...` (key,
/// stream sequence, delivery). A 2 s ack wait, so what a killed replica
/// held comes back to another one quickly.
#[handler(group = "sigkill", concurrency = 4, ack_wait = "2s")]
pub async fn brief_chore(c: Chore, ctx: Context) -> Result<(), HandlerError> {
    brief(&c, &ctx).await;
    Ok(())
}

/// [`brief_chore`] with `prefetch = 0`: it receives no more than its 4
/// slots run, so replicas share the work as it comes (on Kafka, a member
/// holds no records of partitions a rebalance took from it beyond those
/// running).
#[handler(
    group = "sigkill-unbuffered",
    concurrency = 4,
    prefetch = 0,
    ack_wait = "2s"
)]
pub async fn unbuffered_chore(c: Chore, ctx: Context) -> Result<(), HandlerError> {
    brief(&c, &ctx).await;
    Ok(())
}

/// The steps of [`brief_chore`] and [`unbuffered_chore`].
async fn brief(c: &Chore, ctx: &Context) {
    let line = format!("{} {} {}", c.key, ctx.stream_sequence(), ctx.delivered());
    println!("started {line}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("handled {line}");
}

/// Prints `started ...`, writes its effect (a row in `effects`) in the
/// transaction the Postgres store claimed the event in, takes 300 ms, then
/// prints `handled ...` and commits: a SIGKILL in between rolls the effect
/// back with the claim. A 2 s ack wait, as [`brief_chore`].
#[handler(group = "ledger", idempotent, concurrency = 4, ack_wait = "2s")]
pub async fn ledger_chore(
    c: Chore,
    ctx: Context,
    mut tx: jetflow::idempotency::Tx,
) -> Result<(), HandlerError> {
    let line = format!("{} {} {}", c.key, ctx.stream_sequence(), ctx.delivered());
    println!("started {line}");
    sqlx::query("INSERT INTO effects (key) VALUES ($1)")
        .bind(&c.key)
        .execute(&mut *tx)
        .await
        .map_err(HandlerError::retry)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("handled {line}");
    Ok(())
}

/// Its effect first: prints `started ...` (the effect, which no store can
/// take back), takes 300 ms, then prints `handled ...` and returns, after
/// which the Redis store marks the event done. A SIGKILL in between leaves
/// the claim to expire after the lease (the 2 s ack wait) and the event
/// runs again elsewhere: the Redis store's documented window.
#[handler(group = "redis-ledger", idempotent, concurrency = 4, ack_wait = "2s")]
pub async fn redis_chore(c: Chore, ctx: Context) -> Result<(), HandlerError> {
    let line = format!("{} {} {}", c.key, ctx.stream_sequence(), ctx.delivered());
    println!("started {line}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("handled {line}");
    Ok(())
}

/// The environment variable that gives [`redis_chore`]'s child the Redis
/// URL of its idempotency store.
pub const LEDGER_REDIS_URL: &str = "JETFLOW_TEST_REDIS_URL";

/// The environment variable that gives [`ledger_chore`]'s child the
/// PostgreSQL URL of its idempotency store.
pub const LEDGER_POSTGRES_URL: &str = "JETFLOW_TEST_POSTGRES_URL";

/// Provisions the stream and durable of `handler` on `url` with an app
/// like the child's, then fills the stream with `n` chores
/// (`chore-0`, ...) while nobody consumes.
pub async fn provision_and_fill<H: Handler>(url: &str, handler: H, n: u64) {
    provision_and_fill_with(jetflow::ConnectOptions::new(url), handler, n).await;
}

/// [`provision_and_fill`], connecting with `options` (credentials).
pub async fn provision_and_fill_with<H: Handler>(
    options: jetflow::ConnectOptions,
    handler: H,
    n: u64,
) {
    let app = App::new("chore-service")
        .connect_options(options)
        .handler(handler);
    provision_and_fill_on(app, n).await;
}

/// Starts and stops `app` (which provisions the stream, the durables of its
/// handlers and whatever its stores need), then publishes `n` chores.
pub async fn provision_and_fill_on(app: App, n: u64) {
    let provision = app.start().await.expect("provisioning app starts");
    let bus = provision.bus().clone();
    provision.stop().await.expect("provisioning app stops");
    for i in 0..n {
        bus.publish(&Chore {
            key: format!("chore-{i}"),
        })
        .await
        .expect("chore published");
    }
}

/// Which handler the child runs (`JETFLOW_TEST_HANDLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chores {
    /// [`slow_chore`], group `sigterm`.
    Slow,
    /// [`brief_chore`], group `sigkill`.
    Brief,
    /// [`unbuffered_chore`], group `sigkill-unbuffered`.
    Unbuffered,
    /// [`ledger_chore`], group `ledger`, on the Postgres store at
    /// [`LEDGER_POSTGRES_URL`].
    Ledger,
    /// [`redis_chore`], group `redis-ledger`, on the Redis store at
    /// [`LEDGER_REDIS_URL`].
    RedisLedger,
}

impl Chores {
    /// The value of `JETFLOW_TEST_HANDLER` that selects it.
    pub fn env(self) -> &'static str {
        match self {
            Chores::Slow => "slow",
            Chores::Brief => "brief",
            Chores::Unbuffered => "unbuffered",
            Chores::Ledger => "ledger",
            Chores::RedisLedger => "redis-ledger",
        }
    }
}

/// One step a child printed: `started` or `handled`, with the delivery.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Step {
    /// Stream sequence.
    pub seq: u64,
    /// Business key.
    pub key: String,
    /// Delivery count.
    pub delivered: u64,
}

#[derive(Debug, Default)]
struct Printed {
    started: Vec<Step>,
    handled: Vec<Step>,
}

/// The service as a child process, and what it printed so far.
pub struct Service {
    child: Child,
    printed: Arc<Mutex<Printed>>,
    /// Its stderr (its logs), when captured ([`Service::spawn_with`]).
    logs: Arc<Mutex<String>>,
}

impl Service {
    /// Starts the child `binary` (a test's
    /// `env!("CARGO_BIN_EXE_chore-service")`) on `url`, running `chores`.
    pub fn spawn(binary: &str, url: &str, chores: Chores) -> Service {
        Service::start(binary, url, chores, &[], false)
    }

    /// Like [`Service::spawn`], with more environment variables (the
    /// credentials, `RUST_LOG`, `OTEL_*`, ...), capturing its logs
    /// (stderr) for [`Service::logs`].
    pub fn spawn_with(binary: &str, url: &str, chores: Chores, env: &[(&str, &str)]) -> Service {
        Service::start(binary, url, chores, env, true)
    }

    fn start(
        binary: &str,
        url: &str,
        chores: Chores,
        env: &[(&str, &str)],
        capture_logs: bool,
    ) -> Service {
        let mut command = Command::new(binary);
        command
            // JETFLOW_URL wins over NATS_URL in `App::from_env`: the child
            // runs on the test's server whatever the environment says
            .env("JETFLOW_URL", url)
            .env("JETFLOW_TEST_HANDLER", chores.env())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if capture_logs {
            command.stderr(Stdio::piped());
        }
        let mut child = command.spawn().expect("spawn the chore-service binary");
        let logs = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut logs = sink.lock().expect("lock");
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let printed = Arc::new(Mutex::new(Printed::default()));
        let sink = printed.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let [what @ ("started" | "handled"), key, seq, delivered] = parts[..] {
                    let step = Step {
                        seq: seq.parse().expect("seq"),
                        key: key.to_owned(),
                        delivered: delivered.parse().expect("delivered"),
                    };
                    let mut p = sink.lock().expect("lock");
                    if what == "started" {
                        p.started.push(step);
                    } else {
                        p.handled.push(step);
                    }
                }
            }
        });
        Service {
            child,
            printed,
            logs,
        }
    }

    /// What it logged so far (stderr; empty unless spawned with
    /// [`Service::spawn_with`]).
    pub fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }

    /// Waits (at most [`WAIT`]) until it exits by itself; its exit status.
    pub async fn exited(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the service exits within the bound")
            .expect("wait for the service");
        self.drained().await;
        eventually(WAIT, "stderr closed", || async {
            (Arc::strong_count(&self.logs) == 1).then_some(())
        })
        .await;
        (status, self.logs())
    }

    /// Deliveries it finished handling, in the order printed.
    pub fn handled(&self) -> Vec<Step> {
        self.printed.lock().expect("lock").handled.clone()
    }

    /// Deliveries it started handling (the handlers that print `started`).
    pub fn started(&self) -> Vec<Step> {
        self.printed.lock().expect("lock").started.clone()
    }

    /// Waits (at most [`WAIT`]) until it has handled `n` deliveries.
    pub async fn wait_handled(&self, n: usize) {
        eventually(WAIT, &format!("{n} handled by the child"), || async {
            (self.handled().len() >= n).then_some(())
        })
        .await;
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns what it
    /// handled.
    pub async fn terminate(mut self) -> Vec<Step> {
        self.signal("TERM").await;
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the service exits within the bound after SIGTERM")
            .expect("wait for the service");
        assert!(exit.success(), "graceful stop exits 0, got {exit}");
        self.drained().await;
        self.handled()
    }

    /// Sends SIGTERM, waits (bounded) for a clean exit and for its stderr
    /// to close; returns its logs.
    pub async fn terminate_logged(self) -> String {
        self.terminate_with_logs().await.1
    }

    /// Sends SIGTERM, waits (bounded) for a clean exit and for its stderr
    /// to close; returns what it handled and its logs.
    pub async fn terminate_with_logs(self) -> (Vec<Step>, String) {
        let logs = self.logs.clone();
        let handled = self.terminate().await;
        (handled, Service::closed(logs).await)
    }

    /// Sends SIGKILL (a crash: nothing is settled) and waits for the exit;
    /// returns what it started and what it handled.
    pub async fn kill(mut self) -> (Vec<Step>, Vec<Step>) {
        self.signal("KILL").await;
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("a killed service exits")
            .expect("wait for the service");
        self.drained().await;
        (self.started(), self.handled())
    }

    /// [`Service::kill`], then waits (bounded) for its stderr to close;
    /// returns what it started, what it handled and its logs.
    pub async fn kill_with_logs(self) -> (Vec<Step>, Vec<Step>, String) {
        let logs = self.logs.clone();
        let (started, handled) = self.kill().await;
        (started, handled, Service::closed(logs).await)
    }

    /// The logs once the reader task has seen stderr close.
    async fn closed(logs: Arc<Mutex<String>>) -> String {
        eventually(WAIT, "stderr closed", || async {
            (Arc::strong_count(&logs) == 1).then_some(())
        })
        .await;
        logs.lock().expect("lock").clone()
    }

    async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("child running").to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// The reader task has seen everything once stdout closed.
    async fn drained(&self) {
        eventually(WAIT, "stdout closed", || async {
            (Arc::strong_count(&self.printed) == 1).then_some(())
        })
        .await;
    }
}
