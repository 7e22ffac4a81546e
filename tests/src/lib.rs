//! Shared helpers of jetflow's integration tests: a private server per
//! test, a ledger handlers write to, and bounded waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetflow::dlq::DeadLetter;
use jetflow::testing::NatsServer;
use jetflow::{App, AppHandle, Bus, Context, Handler};
use tokio::time::Instant;

pub mod browser;
pub mod conformance;
pub mod measure;
pub mod ops;

/// Upper bound of any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(60);

/// Runs the body of the test `name` on a runtime of its own (two workers,
/// as `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` does)
/// and fails it after `limit`. The runtime is then shut down within 10s:
/// a blocking call still stuck on a server the test stopped cannot hold
/// the test binary (`#[tokio::test]` waits for it, unbounded).
pub fn run_bounded(name: &str, limit: Duration, body: impl std::future::Future<Output = ()>) {
    use futures_util::FutureExt as _;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the test");
    let outcome = runtime.block_on(async {
        // the timer is made inside the runtime
        std::panic::AssertUnwindSafe(tokio::time::timeout(limit, body))
            .catch_unwind()
            .await
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("{name} did not finish within {limit:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Logs to the test output (`RUST_LOG` to change the filter).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("jetflow=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Logs to stderr, for the test binaries and the bench (`RUST_LOG` overrides
/// `default_filter`).
pub fn log_to_stderr(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Awaits a test server's start, bounded by `limit`: a server that does not
/// start (or is not there) fails the test with `what` and the reason.
pub async fn started<S, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    start: impl std::future::Future<Output = Result<S, E>>,
) -> S {
    match tokio::time::timeout(limit, start).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => panic!("{what} failed to start: {e}"),
        Err(_) => panic!("{what} did not start within {limit:?}"),
    }
}

/// A private nats-server for one test.
pub async fn server() -> NatsServer {
    init_tracing();
    started("nats-server", Duration::from_secs(30), NatsServer::start()).await
}

/// A private PostgreSQL for one test.
pub async fn postgres_server() -> jetflow::testing::PostgresServer {
    init_tracing();
    let start = jetflow::testing::PostgresServer::start();
    started("postgres", Duration::from_secs(60), start).await
}

/// A private redis-server for one test.
pub async fn redis_server() -> jetflow::testing::RedisServer {
    init_tracing();
    let start = jetflow::testing::RedisServer::start();
    started("redis-server", Duration::from_secs(30), start).await
}

/// `true` (and says why on stderr) in `scripts/test`'s second pass, which
/// runs the integration tests again with the oldest nats-server
/// (`JETFLOW_NATS_SERVER` = `JETFLOW_NATS_SERVER_FLOOR`), for a test that
/// does not use nats-server: it already ran in the first pass.
pub fn skip_on_nats_floor(test: &str) -> bool {
    skip_on_nats_floor_because(test, "it does not use nats-server")
}

/// Like [`skip_on_nats_floor`], for a test that needs a newer nats-server
/// than the floor, `why`.
pub fn skip_on_nats_floor_because(test: &str, why: &str) -> bool {
    use std::io::Write as _;
    let floor = std::env::var_os("JETFLOW_NATS_SERVER_FLOOR");
    let skip = floor.is_some() && floor == std::env::var_os("JETFLOW_NATS_SERVER");
    if skip {
        let _ = writeln!(
            std::io::stderr(),
            "skipping {test}: the nats-server floor pass, and {why}"
        );
    }
    skip
}

/// A fresh vhost on the RabbitMQ node this test binary shares, as an
/// `amqp://` URL. The node starts on first use (seconds) and is killed when
/// the test process exits; each test gets its own vhost, so tests stay
/// apart. A test that kills the broker starts its own
/// [`RabbitMqServer`](jetflow::testing::RabbitMqServer).
pub async fn rabbitmq_vhost(test: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NODE: tokio::sync::OnceCell<jetflow::testing::RabbitMqServer> =
        tokio::sync::OnceCell::const_new();
    static N: AtomicU64 = AtomicU64::new(0);
    init_tracing();
    let node = NODE
        .get_or_init(|| async {
            let start = jetflow::testing::RabbitMqServer::start();
            started("rabbitmq-server", Duration::from_secs(120), start).await
        })
        .await;
    let vhost = format!("{test}-{}", N.fetch_add(1, Ordering::Relaxed));
    tokio::time::timeout(Duration::from_secs(60), node.vhost(&vhost))
        .await
        .expect("rabbitmqctl did not answer within 60s")
        .expect("vhost created")
}

/// A private RabbitMQ node for one test that kills or restarts it.
pub async fn rabbitmq_server() -> jetflow::testing::RabbitMqServer {
    init_tracing();
    let start = jetflow::testing::RabbitMqServer::start();
    started("rabbitmq-server", Duration::from_secs(120), start).await
}

/// A private Kafka broker (tansu) for one test.
pub async fn kafka_server() -> jetflow::testing::KafkaServer {
    init_tracing();
    let start = jetflow::testing::KafkaServer::start();
    started("tansu", Duration::from_secs(30), start).await
}

/// Starts an app named `t` on `server` with `ledger` as its state and
/// `handler` as its one handler.
pub async fn start<H: Handler>(server: &NatsServer, ledger: &Ledger, handler: H) -> AppHandle {
    App::new("t")
        .url(server.url())
        .state(ledger.clone())
        .handler(handler)
        .start()
        .await
        .expect("app starts")
}

/// Waits until the DLQ stream holds at least `n` records, at most [`WAIT`];
/// returns them, oldest first. A DLQ that cannot be read yet (it is being
/// recreated) counts as not there yet.
pub async fn dead_letters(bus: &Bus, n: usize) -> Vec<DeadLetter> {
    eventually(WAIT, &format!("{n} DLQ record(s)"), || async {
        match jetflow::dlq::list(bus).await {
            Ok(d) => (d.len() >= n).then_some(d),
            Err(_not_yet) => None,
        }
    })
    .await
}

/// Waits (at most [`WAIT`]) until the durable's ack floor is exactly
/// `ack_floor`: every message up to it is acked. The server applies acks
/// asynchronously, so even after a flush the floor can lag for a moment; a
/// lost ack never settles, and an extra ack overshoots, and both fail.
///
/// (Nak'd messages still count in `num_ack_pending` until they are
/// redelivered, so that count says nothing about a graceful stop.)
pub async fn wait_ack_floor(url: &str, stream: &str, durable: &str, ack_floor: u64) {
    let settled = tokio::time::timeout(WAIT, async {
        loop {
            let info = consumer_info(url, stream, durable).await;
            if info.ack_floor.stream_sequence == ack_floor {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if settled.is_err() {
        let info = consumer_info(url, stream, durable).await;
        panic!(
            "timed out after {WAIT:?} waiting for the ack floor of {stream}/{durable} to be {ack_floor}; the server reports {info:?}"
        );
    }
}

/// One handled delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Business key of the event.
    pub key: String,
    /// Stream sequence.
    pub seq: u64,
    /// Delivery count.
    pub delivered: u64,
    /// Which app instance handled it.
    pub replica: String,
    /// When the handler started.
    pub at: Instant,
}

/// What handlers saw, shared through `State<Ledger>`.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: Arc<Mutex<Vec<Entry>>>,
    replica: Arc<str>,
}

impl Ledger {
    /// A ledger whose entries are tagged with `replica`.
    pub fn tagged(&self, replica: &str) -> Ledger {
        Ledger {
            entries: self.entries.clone(),
            replica: replica.into(),
        }
    }

    /// Records a delivery.
    pub fn record(&self, key: &str, ctx: &Context) {
        self.entries.lock().expect("ledger poisoned").push(Entry {
            key: key.to_owned(),
            seq: ctx.stream_sequence(),
            delivered: ctx.delivered(),
            replica: self.replica.to_string(),
            at: Instant::now(),
        });
    }

    /// A snapshot of every entry.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().expect("ledger poisoned").clone()
    }

    /// Entries for `key`, in order.
    pub fn of(&self, key: &str) -> Vec<Entry> {
        self.entries()
            .into_iter()
            .filter(|e| e.key == key)
            .collect()
    }

    /// Number of distinct keys seen.
    pub fn distinct(&self) -> usize {
        let mut keys: Vec<String> = self.entries().into_iter().map(|e| e.key).collect();
        keys.sort();
        keys.dedup();
        keys.len()
    }

    /// Waits until `pred` holds for the entries, at most `within`; panics
    /// with `what` and the entries otherwise.
    pub async fn wait_until(&self, within: Duration, what: &str, pred: impl Fn(&[Entry]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if pred(&self.entries()) {
                return;
            }
            if Instant::now() > deadline {
                let entries = self.entries();
                panic!(
                    "timed out after {within:?} waiting for: {what}; {} entries: {:?}",
                    entries.len(),
                    &entries[..entries.len().min(20)]
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `f` until it returns `Some`, at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The NATS client under an app's bus (the app must run on NATS).
pub fn nats_client(bus: &Bus) -> async_nats::Client {
    jetflow::transport::nats::NatsTransport::of(bus)
        .expect("the app runs on NATS")
        .client()
        .clone()
}

/// The server's view of a durable consumer.
pub async fn consumer_info(
    url: &str,
    stream: &str,
    durable: &str,
) -> async_nats::jetstream::consumer::Info {
    let client = async_nats::connect(url)
        .await
        .expect("connect for consumer info");
    let js = async_nats::jetstream::new(client);
    js.get_stream(stream)
        .await
        .expect("stream exists")
        .consumer_info(durable)
        .await
        .expect("consumer exists")
}

pub mod service;
