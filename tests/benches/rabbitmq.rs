//! Throughput of jetflow's RabbitMQ transport against raw lapin doing the
//! same work, in one run, on one private rabbitmq-server node.
//!
//! ```text
//! cargo bench -p jetflow-tests --bench rabbitmq                        # N = 5000, 3 runs
//! JETFLOW_BENCH_N=2000 cargo bench -p jetflow-tests --bench rabbitmq
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run with N = 200
//! and one run that checks every phase completes; its figures mean nothing.
//!
//! Each run measures, after `W` warm-up messages, N messages of:
//! - publish, 64 in flight: jetflow's `Bus::publish` (persistent,
//!   mandatory, confirm awaited, jetflow's headers) vs lapin's
//!   `basic_publish` with the same flags, message id and a header table of
//!   the same size, confirm awaited; both to the `jetflow` exchange with the
//!   same routing key, so each message lands in the same two quorum queues;
//! - consume: a jetflow handler (concurrency 64: decode, count, ack) vs a
//!   lapin consumer with the same prefetch as jetflow's window (decode,
//!   count, ack), each on its own quorum queue holding every message.
//!
//! jetflow and raw alternate which goes first from run to run (A B, B A,
//! A B). The ratios (jetflow / raw msg/s) are printed per run, with their
//! range over the runs.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use jetflow::prelude::*;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::Notify;

/// The event: a small JSON object (~80 bytes).
#[event(version = "v1")]
struct BenchOrder {
    order_id: u64,
    customer: String,
    total_cents: u64,
    items: u32,
}

fn order(i: u64) -> BenchOrder {
    BenchOrder {
        order_id: i,
        customer: format!("customer-{}", i % 1000),
        total_cents: 1299 + i % 5000,
        items: 1 + (i % 7) as u32,
    }
}

/// The subject (routing key) of `BenchOrder`.
const SUBJECT: &str = "bench.order.v1";
/// The raw consumer's quorum queue.
const RAW_QUEUE: &str = "rawbench";
/// Publishes in flight at once, on both sides.
const IN_FLIGHT: usize = 64;
/// Handler concurrency; the raw prefetch is jetflow's window for it
/// (concurrency plus its default buffer of 256).
const CONCURRENCY: usize = 64;
const RAW_PREFETCH: u16 = 64 + 256;

/// Counts handled messages, marks the end of the warm-up, signals the end.
struct Counter {
    seen: AtomicU64,
    warm: u64,
    total: u64,
    start: std::sync::Mutex<Option<Instant>>,
    done: Notify,
}

impl Counter {
    fn new(warm: u64, n: u64) -> Arc<Counter> {
        Arc::new(Counter {
            seen: AtomicU64::new(0),
            warm,
            total: warm + n,
            start: std::sync::Mutex::new(None),
            done: Notify::new(),
        })
    }
    fn hit(&self) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.warm {
            *self.start.lock().expect("lock") = Some(Instant::now());
        }
        if n == self.total {
            self.done.notify_one();
        }
    }
    fn start(&self) -> Option<Instant> {
        *self.start.lock().expect("lock")
    }
}

#[handler(group = "bench", concurrency = 64)]
async fn consume(
    order: BenchOrder,
    State(counter): State<Arc<Counter>>,
) -> Result<(), HandlerError> {
    black_box(&order);
    counter.hit();
    Ok(())
}

/// Messages per second of `n` messages in `elapsed`.
fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// `Bus::publish`, `IN_FLIGHT` at a time.
async fn publish_jetflow(bus: &Bus, warm: u64, n: u64) -> anyhow::Result<f64> {
    let mut start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..warm + n {
        if i == warm {
            while let Some(r) = inflight.next().await {
                r?;
            }
            start = Instant::now();
        }
        if inflight.len() >= IN_FLIGHT
            && let Some(r) = inflight.next().await
        {
            r?;
        }
        let bus = bus.clone();
        inflight.push(async move { bus.publish(&order(i)).await.map(drop) });
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(rate(n, start.elapsed()))
}

/// A header table of the size jetflow sends (`ce-*`, content type, the
/// publisher's sequence).
fn raw_headers(i: u64) -> FieldTable {
    let mut t = FieldTable::default();
    let s = |v: String| AMQPValue::LongString(LongString::from(v));
    t.insert("ce-specversion".into(), s("1.0".into()));
    t.insert("ce-id".into(), s(format!("bench-{i}")));
    t.insert("ce-source".into(), s("bench".into()));
    t.insert("ce-type".into(), s("bench.order.v1".into()));
    t.insert("ce-time".into(), s("2026-01-01T00:00:00Z".into()));
    t.insert("content-type".into(), s("application/json".into()));
    t.insert(
        "x-jetflow-sequence".into(),
        AMQPValue::LongLongInt(i as i64),
    );
    t
}

/// One raw publish: persistent, mandatory, confirm awaited.
async fn raw_publish_one(channel: &Channel, i: u64) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(&order(i))?;
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(format!("bench-{i}").into())
        .with_headers(raw_headers(i));
    let confirm = channel
        .basic_publish(
            "jetflow".into(),
            SUBJECT.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            &payload,
            properties,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        other => bail!("not stored: {other:?}"),
    }
}

/// Raw lapin publishes, `IN_FLIGHT` at a time, on one confirm channel.
async fn publish_raw(channel: &Channel, warm: u64, n: u64) -> anyhow::Result<f64> {
    let mut start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..warm + n {
        if i == warm {
            while let Some(r) = inflight.next().await {
                r?;
            }
            start = Instant::now();
        }
        if inflight.len() >= IN_FLIGHT
            && let Some(r) = inflight.next().await
        {
            r?;
        }
        inflight.push(raw_publish_one(channel, i));
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(rate(n, start.elapsed()))
}

/// A jetflow app reading `warm + n` messages of its group's queue.
async fn consume_jetflow(url: &str, warm: u64, n: u64) -> anyhow::Result<f64> {
    let counter = Counter::new(warm, n);
    let app = App::new("bench")
        .url(url)
        .metrics(false)
        .state(counter.clone())
        .handler(consume)
        .start()
        .await?;
    counter.done.notified().await;
    let end = Instant::now();
    app.stop().await?;
    let start = counter.start().context("warm-up never finished")?;
    Ok(rate(n, end - start))
}

/// A lapin consumer reading `warm + n` messages of the raw queue: decode,
/// count, ack.
async fn consume_raw(conn: &Connection, warm: u64, n: u64) -> anyhow::Result<f64> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(RAW_PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            RAW_QUEUE.into(),
            "rawbench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let counter = Counter::new(warm, n);
    while counter.seen.load(Ordering::Relaxed) < warm + n {
        let d = consumer.next().await.context("consumer ended")??;
        let o: BenchOrder = serde_json::from_slice(&d.data)?;
        black_box(&o);
        d.ack(BasicAckOptions::default()).await?;
        counter.hit();
    }
    let end = Instant::now();
    let _ = channel.close(200, "done".into()).await;
    let start = counter.start().context("warm-up never finished")?;
    Ok(rate(n, end - start))
}

/// `(n, runs)`: from `JETFLOW_BENCH_N`, else 5000 and 3 runs under
/// `--bench`, 200 and 1 run as a smoke test.
fn size() -> anyhow::Result<(u64, usize)> {
    let bench = std::env::args().any(|a| a == "--bench");
    let runs = if bench { 3 } else { 1 };
    if let Ok(n) = std::env::var("JETFLOW_BENCH_N") {
        let n: u64 = n
            .trim()
            .parse()
            .context("JETFLOW_BENCH_N is not a number")?;
        return Ok((n.max(1), runs));
    }
    Ok((if bench { 5_000 } else { 200 }, runs))
}

/// `(min, max)` of `values`.
fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jetflow_tests::log_to_stderr("warn");
    let (n, runs) = size()?;
    let warm = (n / 10).clamp(100, 2_000);
    let limit = Duration::from_secs(120).max(Duration::from_millis(5) * u32::try_from(n + warm)?);

    let server = jetflow::testing::RabbitMqServer::start().await?;
    let url = server.url();
    // declares the exchange and the handler's queue
    let app = App::new("bench")
        .url(&url)
        .metrics(false)
        .state(Counter::new(0, 0))
        .handler(consume)
        .start()
        .await?;
    app.stop().await?;
    let publisher = App::new("bench-publisher")
        .url(&url)
        .metrics(false)
        .start()
        .await?;
    let bus = publisher.bus().clone();
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            RAW_QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            quorum,
        )
        .await?;
    channel
        .queue_bind(
            RAW_QUEUE.into(),
            "jetflow".into(),
            SUBJECT.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let jetflow_queue = format!(
        "jetflow.BENCH.{}",
        jetflow::topology::durable_name("bench", "bench.order")
    );

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "jetflow on RabbitMQ vs raw lapin: N = {n} after W = {warm} warm-up messages, {runs} run(s)"
    );
    println!(
        "private rabbitmq-server node at 127.0.0.1:{}, quorum queues; {cores} CPU cores shared by client and server; load {}",
        server.port(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (mut publish_ratios, mut consume_ratios) = (Vec::new(), Vec::new());
    for run in 0..runs {
        for queue in [RAW_QUEUE, jetflow_queue.as_str()] {
            channel
                .queue_purge(queue.into(), QueuePurgeOptions::default())
                .await?;
        }
        let jetflow_first = run % 2 == 0;
        let timed = |what: &'static str, r: Result<anyhow::Result<f64>, _>| {
            r.map_err(|_| anyhow::anyhow!("{what} timed out after {limit:?}"))?
        };
        // both publish phases fill both queues: 2 (W + N) messages each
        let (pj, pr) = if jetflow_first {
            let pj = timed(
                "publish jetflow",
                tokio::time::timeout(limit, publish_jetflow(&bus, warm, n)).await,
            )?;
            let pr = timed(
                "publish raw",
                tokio::time::timeout(limit, publish_raw(&channel, warm, n)).await,
            )?;
            (pj, pr)
        } else {
            let pr = timed(
                "publish raw",
                tokio::time::timeout(limit, publish_raw(&channel, warm, n)).await,
            )?;
            let pj = timed(
                "publish jetflow",
                tokio::time::timeout(limit, publish_jetflow(&bus, warm, n)).await,
            )?;
            (pj, pr)
        };
        let (cj, cr) = if jetflow_first {
            let cj = timed(
                "consume jetflow",
                tokio::time::timeout(limit, consume_jetflow(&url, warm, n)).await,
            )?;
            let cr = timed(
                "consume raw",
                tokio::time::timeout(limit, consume_raw(&conn, warm, n)).await,
            )?;
            (cj, cr)
        } else {
            let cr = timed(
                "consume raw",
                tokio::time::timeout(limit, consume_raw(&conn, warm, n)).await,
            )?;
            let cj = timed(
                "consume jetflow",
                tokio::time::timeout(limit, consume_jetflow(&url, warm, n)).await,
            )?;
            (cj, cr)
        };
        println!(
            "run {}: publish ({IN_FLIGHT} in flight) jetflow {pj:>8.0} msg/s, raw {pr:>8.0} msg/s, ratio {:.2}x; \
             consume (c={CONCURRENCY}) jetflow {cj:>8.0} msg/s, raw {cr:>8.0} msg/s, ratio {:.2}x",
            run + 1,
            pj / pr,
            cj / cr
        );
        publish_ratios.push(pj / pr);
        consume_ratios.push(cj / cr);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (plo, phi) = range(&publish_ratios);
    let (clo, chi) = range(&consume_ratios);
    println!(
        "ratio jetflow / raw lapin over {runs} run(s): publish {:.2}x ({plo:.2}-{phi:.2}), consume {:.2}x ({clo:.2}-{chi:.2})",
        mean(&publish_ratios),
        mean(&consume_ratios)
    );
    publisher.stop().await?;
    drop(bus);
    let _ = conn.close(200, "done".into()).await;
    drop(server);
    Ok(())
}
