//! Throughput and client CPU cost of jetflow against raw async-nats, on one
//! private nats-server.
//!
//! ```text
//! cargo bench -p jetflow-tests --bench throughput              # N = 100_000
//! cargo bench -p jetflow-tests --bench throughput -- --quick   # N = 10_000
//! JETFLOW_BENCH_N=50000 cargo bench -p jetflow-tests --bench throughput
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run with N = 1000
//! that checks every phase completes; its figures mean nothing.
//!
//! Every phase first handles `W` warm-up messages, then measures `N`:
//! messages/s over wall time and client CPU per message (user + system time
//! of this process from `/proc/self/stat`; the server is another process, so
//! its CPU is not counted, but it shares the machine's cores).
//!
//! Consume phases read the same `W + N` messages (published by the typed
//! publish phase, so they carry jetflow's headers); each uses its own durable
//! consumer and ends when the server reports `num_pending == 0` and
//! `num_ack_pending == 0`, i.e. every message is acked on the server.
//!
//! Metrics and OpenTelemetry are measured on and off in one run, in the
//! order off, metrics, metrics+otel, metrics+otel, metrics, off (so that no
//! side always runs first). OpenTelemetry on: jetflow's spans through
//! `jetflow::telemetry::trace::layer`, every span sampled, the SDK's batch
//! processor and an exporter that drops what it is sent (`throughput/otel.rs`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use jetflow::prelude::*;
use jetflow::testing::NatsServer;
use jetflow_tests::measure::{Mark, Measured, load_average};
use tokio::sync::Notify;

#[path = "throughput/otel.rs"]
mod otel;

/// The event every phase carries: a small JSON object (~90 bytes).
#[event(version = "v1")]
struct BenchOrder {
    order_id: u64,
    customer: String,
    total_cents: u64,
    items: u32,
    /// One of 64 ordering keys (the ordered-lanes phase).
    lane: u32,
}

fn order(i: u64) -> BenchOrder {
    BenchOrder {
        order_id: i,
        customer: format!("customer-{}@example.com", i % 1000),
        total_cents: 1299 + i % 5000,
        items: 1 + (i % 7) as u32,
        lane: (i % 64) as u32,
    }
}

/// Stream of the raw publish phases (the jetflow event lives in `BENCH`).
const RAW_STREAM: &str = "RAWBENCH";
const RAW_SUBJECT: &str = "rawbench.order.v1";
const PIPELINE_WINDOW: usize = 256;

// ---------------------------------------------------------------- measuring

/// Counts handled messages; marks the end of the warm-up and signals the end.
struct Counter {
    seen: AtomicU64,
    warm: u64,
    total: u64,
    start: Mutex<Option<Mark>>,
    done: Notify,
}

impl Counter {
    fn new(warm: u64, n: u64) -> Arc<Counter> {
        Arc::new(Counter {
            seen: AtomicU64::new(0),
            warm,
            total: warm + n,
            start: Mutex::new(None),
            done: Notify::new(),
        })
    }
    fn hit(&self) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.warm {
            *self.start.lock().expect("lock") = Some(Mark::now());
        }
        if n == self.total {
            self.done.notify_one();
        }
    }
    fn start(&self) -> Option<Mark> {
        *self.start.lock().expect("lock")
    }
}

/// Waits until the server confirms every message of `durable` is delivered and acked.
async fn all_acked(js: &jetstream::Context, stream: &str, durable: &str) -> anyhow::Result<()> {
    let mut consumer: jetstream::consumer::Consumer<pull::Config> =
        js.get_consumer_from_stream(durable, stream).await?;
    loop {
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            // Every delivery bumps the consumer sequence; the stream has no
            // gaps, so the difference counts redeliveries (which would make
            // the phase look faster or slower than it is).
            let redelivered = info
                .delivered
                .consumer_sequence
                .saturating_sub(info.delivered.stream_sequence);
            if redelivered > 0 {
                eprintln!("  note: {durable}: {redelivered} deliveries were redeliveries");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------- consume

/// The consume phases' handlers: decode (by jetflow), count, ack; one per
/// set of options, each its own group (so each reads every message).
macro_rules! bench_handler {
    ($name:ident, $($options:tt)*) => {
        #[handler($($options)*)]
        async fn $name(
            order: BenchOrder,
            State(counter): State<Arc<Counter>>,
        ) -> Result<(), HandlerError> {
            black_box(&order);
            counter.hit();
            Ok(())
        }
    };
}

bench_handler!(consume_c1, group = "bench_c1", concurrency = 1);
bench_handler!(
    consume_strict,
    group = "bench_strict",
    concurrency = 1,
    prefetch = 0
);
bench_handler!(consume_c8, group = "bench_c8", concurrency = 8);
bench_handler!(
    consume_lanes,
    group = "bench_lanes",
    concurrency = 64,
    ordered_by = lane
);
bench_handler!(consume_c64, group = "bench_c64", concurrency = 64);
// Metrics on vs off, in A B B A order (off, on, on, off) so that neither
// side always runs first; each phase reads every message: its own group.
bench_handler!(consume_c1_metrics, group = "bench_c1_m", concurrency = 1);
bench_handler!(consume_c1_metrics_2, group = "bench_c1_m2", concurrency = 1);
bench_handler!(consume_c1_2, group = "bench_c1_2", concurrency = 1);
bench_handler!(consume_c64_metrics, group = "bench_c64_m", concurrency = 64);
bench_handler!(
    consume_c64_metrics_2,
    group = "bench_c64_m2",
    concurrency = 64
);
bench_handler!(consume_c64_2, group = "bench_c64_2", concurrency = 64);
// Metrics and OpenTelemetry both on, between the metrics pair:
// off, metrics, both, both, metrics, off.
bench_handler!(consume_c1_otel, group = "bench_c1_o", concurrency = 1);
bench_handler!(consume_c1_otel_2, group = "bench_c1_o2", concurrency = 1);
bench_handler!(consume_c64_otel, group = "bench_c64_o", concurrency = 64);
bench_handler!(consume_c64_otel_2, group = "bench_c64_o2", concurrency = 64);

/// What a phase has on: metrics, OpenTelemetry.
#[derive(Clone, Copy)]
struct On {
    metrics: bool,
    otel: bool,
}

const OFF: On = On {
    metrics: false,
    otel: false,
};
const METRICS: On = On {
    metrics: true,
    otel: false,
};
const BOTH: On = On {
    metrics: true,
    otel: true,
};

/// A jetflow `App` running one handler over the `W + N` messages, with
/// its metrics on (recorded into jetflow's Prometheus registry, installed
/// at the start of the bench) or off, and OpenTelemetry on or off.
async fn consume_jetflow<H: Handler>(
    url: &str,
    js: &jetstream::Context,
    (handler, on): (H, On),
    group: &str,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let counter = Counter::new(warm, n);
    let handle = App::new("bench")
        .url(url)
        .metrics(on.metrics)
        .state(counter.clone())
        .handler(handler)
        .start()
        .await?;
    otel::set(on.otel);
    counter.done.notified().await;
    otel::set(false);
    all_acked(
        js,
        "BENCH",
        &jetflow::topology::durable_name(group, "bench.order"),
    )
    .await?;
    let end = Mark::now();
    handle.stop().await?;
    let start = counter.start().context("warm-up never finished")?;
    Ok(Measured::between(n, start, end))
}

async fn raw_consumer(
    js: &jetstream::Context,
    durable: &str,
) -> anyhow::Result<jetstream::consumer::PullConsumer> {
    let stream = js.get_stream("BENCH").await?;
    let config = pull::Config {
        durable_name: Some(durable.into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    Ok(stream.create_consumer(config).await?)
}

/// Decodes and acks one message, as a jetflow handler does.
async fn decode_and_ack(msg: &jetstream::Message) -> anyhow::Result<()> {
    let order: BenchOrder = serde_json::from_slice(&msg.payload)?;
    black_box(&order);
    msg.ack().await.map_err(|e| anyhow::anyhow!(e))
}

/// Raw async-nats: `consumer.messages()` (default prefetch), decode, ack.
async fn consume_raw_prefetch(
    js: &jetstream::Context,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let counter = Counter::new(warm, n);
    let consumer = raw_consumer(js, "raw_prefetch").await?;
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!(e))?;
        decode_and_ack(&msg).await?;
        counter.hit();
        if counter.seen.load(Ordering::Relaxed) == counter.total {
            break;
        }
    }
    drop(messages);
    all_acked(js, "BENCH", "raw_prefetch").await?;
    let end = Mark::now();
    Ok(Measured::between(
        n,
        counter.start().context("warm-up never finished")?,
        end,
    ))
}

/// Raw async-nats: one `fetch().max_messages(1)` at a time, decode, ack.
async fn consume_raw_fetch1(
    js: &jetstream::Context,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let counter = Counter::new(warm, n);
    let consumer = raw_consumer(js, "raw_fetch1").await?;
    while counter.seen.load(Ordering::Relaxed) < counter.total {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!(e))?;
            decode_and_ack(&msg).await?;
            counter.hit();
        }
    }
    all_acked(js, "BENCH", "raw_fetch1").await?;
    let end = Mark::now();
    Ok(Measured::between(
        n,
        counter.start().context("warm-up never finished")?,
        end,
    ))
}

// ---------------------------------------------------------------- publish

/// `Bus::publish`, one at a time (each awaits its PubAck). Fills `BENCH`.
async fn publish_typed(bus: &Bus, warm: u64, n: u64) -> anyhow::Result<Measured> {
    let mut start = Mark::now();
    for i in 0..warm + n {
        if i == warm {
            start = Mark::now();
        }
        bus.publish(&order(i)).await?;
    }
    Ok(Measured::between(n, start, Mark::now()))
}

/// Raw `jetstream.publish(..).await?.await?`, one at a time.
async fn publish_raw(js: &jetstream::Context, warm: u64, n: u64) -> anyhow::Result<Measured> {
    let mut start = Mark::now();
    for i in 0..warm + n {
        if i == warm {
            start = Mark::now();
        }
        let payload = serde_json::to_vec(&order(i))?;
        js.publish(RAW_SUBJECT, payload.into()).await?.await?;
    }
    Ok(Measured::between(n, start, Mark::now()))
}

/// `Bus::publish` with a window of publishes in flight at once (`try_join_all`
/// over 256 futures): how a jetflow user pipelines, since every publish
/// awaits its own PubAck.
async fn publish_typed_concurrent(bus: &Bus, warm: u64, n: u64) -> anyhow::Result<Measured> {
    let mut start = Mark::now();
    let mut i = 0;
    while i < warm + n {
        if i == warm {
            start = Mark::now();
        }
        let end = if i < warm { warm } else { warm + n };
        let window: Vec<BenchOrder> = (i..end.min(i + PIPELINE_WINDOW as u64))
            .map(order)
            .collect();
        i += window.len() as u64;
        futures_util::future::try_join_all(window.iter().map(|o| bus.publish(o))).await?;
    }
    Ok(Measured::between(n, start, Mark::now()))
}

/// Raw awaited publish carrying the same headers as `Bus::publish` (CloudEvents
/// `ce-*` + `Nats-Msg-Id`, so the server deduplicates it too): separates
/// jetflow's own client cost from the cost of its wire contract.
async fn publish_raw_headers(
    js: &jetstream::Context,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let mut start = Mark::now();
    for i in 0..warm + n {
        if i == warm {
            start = Mark::now();
        }
        let payload = serde_json::to_vec(&order(i))?;
        js.publish_with_headers(RAW_SUBJECT, jetflow_headers(i), payload.into())
            .await?
            .await?;
    }
    Ok(Measured::between(n, start, Mark::now()))
}

/// The 7 headers `Bus::publish` writes, for message `i`.
fn jetflow_headers(i: u64) -> async_nats::HeaderMap {
    let id = format!("{RAW_SUBJECT}:{i}");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-specversion", "1.0");
    headers.insert("ce-id", id.as_str());
    headers.insert("ce-type", RAW_SUBJECT);
    headers.insert("ce-source", "bench");
    headers.insert("ce-time", "2026-01-01T00:00:00.000000000Z");
    headers.insert("content-type", "application/json");
    headers.insert("Nats-Msg-Id", id.as_str());
    headers
}

/// `Bus::batch` of 256 events at a time: sent pipelined, every PubAck checked.
async fn publish_typed_batch(bus: &Bus, warm: u64, n: u64) -> anyhow::Result<Measured> {
    let mut start = Mark::now();
    let mut i = 0;
    while i < warm + n {
        if i == warm {
            start = Mark::now();
        }
        let end = if i < warm { warm } else { warm + n };
        let mut batch = bus.batch();
        while batch.len() < PIPELINE_WINDOW && i < end {
            batch.push(&order(i))?;
            i += 1;
        }
        batch.send().await?;
    }
    Ok(Measured::between(n, start, Mark::now()))
}

/// Raw publish pipelined: send a window of publishes, then await their
/// acks; with jetflow's 7 headers when `headers` is set.
async fn publish_raw_pipelined(
    js: &jetstream::Context,
    headers: bool,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let mut start = Mark::now();
    let mut acks = Vec::with_capacity(PIPELINE_WINDOW);
    let mut i = 0;
    while i < warm + n {
        if i == warm {
            start = Mark::now();
        }
        // windows never straddle the end of the warm-up
        let end = if i < warm { warm } else { warm + n };
        while acks.len() < PIPELINE_WINDOW && i < end {
            let payload = serde_json::to_vec(&order(i))?.into();
            let ack = if headers {
                js.publish_with_headers(RAW_SUBJECT, jetflow_headers(i), payload)
                    .await?
            } else {
                js.publish(RAW_SUBJECT, payload).await?
            };
            acks.push(ack);
            i += 1;
        }
        for ack in acks.drain(..) {
            ack.await?;
        }
    }
    Ok(Measured::between(n, start, Mark::now()))
}

// ---------------------------------------------------------------- main

struct Row {
    name: &'static str,
    result: anyhow::Result<Measured>,
}

/// Phases to run: all, or those whose name contains one of the
/// comma-separated words of `JETFLOW_BENCH_ONLY` (for profiling one phase).
fn selected(name: &str) -> bool {
    match std::env::var("JETFLOW_BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|w| name.contains(w.trim())),
        _ => true,
    }
}

async fn phase<F: Future<Output = anyhow::Result<Measured>>>(
    rows: &mut Vec<Row>,
    name: &'static str,
    limit: Duration,
    f: F,
) {
    if !selected(name) {
        return;
    }
    eprintln!("running: {name}");
    let result = match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("timed out after {limit:?}")),
    };
    match &result {
        Ok(m) => eprintln!("  {:>10.0} msg/s  {:>6.2} µs CPU/msg", m.rate(), m.cpu_us()),
        Err(e) => eprintln!("  FAILED: {e:#}"),
    }
    rows.push(Row { name, result });
}

fn bench_size() -> anyhow::Result<u64> {
    if let Ok(n) = std::env::var("JETFLOW_BENCH_N") {
        let n: u64 = n
            .trim()
            .parse()
            .with_context(|| format!("JETFLOW_BENCH_N={n:?} is not a number"))?;
        if n == 0 {
            bail!("JETFLOW_BENCH_N must be positive");
        }
        return Ok(n);
    }
    let args: Vec<String> = std::env::args().collect();
    Ok(if !args.iter().any(|a| a == "--bench") {
        // `cargo test` runs this target without `--bench`: a smoke run that
        // checks every phase works, not a measurement.
        1_000
    } else if args.iter().any(|a| a == "--quick") {
        10_000
    } else {
        100_000
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // warnings on stderr; OpenTelemetry switched on for its phases only
    let (tracer_provider, exported) = otel::install()?;

    let n = bench_size()?;
    let warm = (n / 10).clamp(1_000, 10_000);
    // Generous per phase: 1 ms per message, at least 60 s (the fetch(1)
    // loop runs at ~3,000 msg/s on a busy 2-core machine).
    let limit = Duration::from_secs(60).max(Duration::from_millis(1) * u32::try_from(n + warm)?);

    let server = NatsServer::start().await?;
    let url = server.url();
    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client.clone());
    // Metrics are recorded as an app with the ops listener records them;
    // every phase but the `metrics` ones switches them off.
    jetflow::telemetry::metrics::install()?;
    let bus_app = |metrics| App::new("bench").url(&url).metrics(metrics).start();
    let (quiet, metered) = (bus_app(false).await?, bus_app(true).await?);
    let (bus, bus_metrics) = (quiet.bus().clone(), metered.bus().clone());
    for (name, subject) in [("BENCH", "bench.>"), (RAW_STREAM, "rawbench.>")] {
        // What jetflow creates by default: file storage, 2 min dedup window.
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("jetflow throughput: N = {n} measured after W = {warm} warm-up messages per phase");
    println!(
        "nats-server {} at {url} (file storage), {cores} CPU cores shared by client and server",
        server.version()
    );
    // The machine may be shared: the load says how much to trust the figures.
    println!("load average at start: {}", load_average());

    let mut rows = Vec::new();
    let raw_stream = js.get_stream(RAW_STREAM).await?;
    phase(
        &mut rows,
        "publish raw, awaited one by one",
        limit,
        publish_raw(&js, warm, n),
    )
    .await;
    raw_stream.purge().await?;
    phase(
        &mut rows,
        "publish raw, pipelined (256)",
        limit,
        publish_raw_pipelined(&js, false, warm, n),
    )
    .await;
    raw_stream.purge().await?;
    phase(
        &mut rows,
        "publish raw + headers, pipelined (256)",
        limit,
        publish_raw_pipelined(&js, true, warm, n),
    )
    .await;
    raw_stream.purge().await?;
    phase(
        &mut rows,
        "publish raw + jetflow's headers",
        limit,
        publish_raw_headers(&js, warm, n),
    )
    .await;
    raw_stream.purge().await?;
    // Also fills BENCH with the W + N messages the consume phases read, so
    // it always runs.
    let typed = "publish jetflow Bus::publish";
    eprintln!("running: {typed}");
    let result = tokio::time::timeout(limit, publish_typed(&bus, warm, n))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
    let result =
        result.context("the typed publish phase failed; the consume phases need its messages")?;
    eprintln!(
        "  {:>10.0} msg/s  {:>6.2} µs CPU/msg",
        result.rate(),
        result.cpu_us()
    );
    if selected(typed) {
        rows.push(Row {
            name: typed,
            result: Ok(result),
        });
    }

    phase(
        &mut rows,
        "consume jetflow, concurrency 1",
        limit,
        consume_jetflow(&url, &js, (consume_c1, OFF), "bench_c1", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 1, metrics",
        limit,
        consume_jetflow(
            &url,
            &js,
            (consume_c1_metrics, METRICS),
            "bench_c1_m",
            warm,
            n,
        ),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 1, metrics+otel",
        limit,
        consume_jetflow(&url, &js, (consume_c1_otel, BOTH), "bench_c1_o", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 1, metrics+otel (2)",
        limit,
        consume_jetflow(&url, &js, (consume_c1_otel_2, BOTH), "bench_c1_o2", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 1, metrics (2)",
        limit,
        consume_jetflow(
            &url,
            &js,
            (consume_c1_metrics_2, METRICS),
            "bench_c1_m2",
            warm,
            n,
        ),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 1 (2)",
        limit,
        consume_jetflow(&url, &js, (consume_c1_2, OFF), "bench_c1_2", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, c=1, prefetch 0",
        limit,
        consume_jetflow(&url, &js, (consume_strict, OFF), "bench_strict", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 8",
        limit,
        consume_jetflow(&url, &js, (consume_c8, OFF), "bench_c8", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 64",
        limit,
        consume_jetflow(&url, &js, (consume_c64, OFF), "bench_c64", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 64, metrics",
        limit,
        consume_jetflow(
            &url,
            &js,
            (consume_c64_metrics, METRICS),
            "bench_c64_m",
            warm,
            n,
        ),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 64, metrics+otel",
        limit,
        consume_jetflow(&url, &js, (consume_c64_otel, BOTH), "bench_c64_o", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 64, metrics+otel (2)",
        limit,
        consume_jetflow(
            &url,
            &js,
            (consume_c64_otel_2, BOTH),
            "bench_c64_o2",
            warm,
            n,
        ),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 64, metrics (2)",
        limit,
        consume_jetflow(
            &url,
            &js,
            (consume_c64_metrics_2, METRICS),
            "bench_c64_m2",
            warm,
            n,
        ),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, concurrency 64 (2)",
        limit,
        consume_jetflow(&url, &js, (consume_c64_2, OFF), "bench_c64_2", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume jetflow, c=64, ordered, 64 keys",
        limit,
        consume_jetflow(&url, &js, (consume_lanes, OFF), "bench_lanes", warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume raw, messages() prefetch",
        limit,
        consume_raw_prefetch(&js, warm, n),
    )
    .await;
    phase(
        &mut rows,
        "consume raw, fetch(1) loop",
        limit,
        consume_raw_fetch1(&js, warm, n),
    )
    .await;
    // After the consume phases: they add W + N more messages to BENCH each.
    phase(
        &mut rows,
        "publish jetflow batch (256)",
        limit,
        publish_typed_batch(&bus, warm, n),
    )
    .await;
    phase(
        &mut rows,
        "publish jetflow, 256 concurrent",
        limit,
        publish_typed_concurrent(&bus, warm, n),
    )
    .await;
    phase(
        &mut rows,
        "publish jetflow, 256 concurrent, metrics",
        limit,
        publish_typed_concurrent(&bus_metrics, warm, n),
    )
    .await;
    otel::set(true);
    phase(
        &mut rows,
        "publish jetflow, 256 concurrent, metrics+otel",
        limit,
        publish_typed_concurrent(&bus_metrics, warm, n),
    )
    .await;
    phase(
        &mut rows,
        "publish jetflow, 256 concurrent, metrics+otel (2)",
        limit,
        publish_typed_concurrent(&bus_metrics, warm, n),
    )
    .await;
    otel::set(false);
    phase(
        &mut rows,
        "publish jetflow, 256 concurrent, metrics (2)",
        limit,
        publish_typed_concurrent(&bus_metrics, warm, n),
    )
    .await;
    phase(
        &mut rows,
        "publish jetflow, 256 concurrent (2)",
        limit,
        publish_typed_concurrent(&bus, warm, n),
    )
    .await;
    // The SDK's own cost per message, spans built by hand (no jetflow, no
    // broker): the least any code recording the same spans pays. 5 N spans,
    // for a finer resolution of CPU per span (10 ms ticks).
    phase(
        &mut rows,
        "otel floor: consumer spans by hand",
        limit,
        otel::floor::consumer(&tracer_provider, 5 * n),
    )
    .await;
    phase(
        &mut rows,
        "otel floor: producer spans by hand",
        limit,
        otel::floor::producer(&tracer_provider, 5 * n),
    )
    .await;

    println!(
        "\n{:<40} {:>10} {:>12} {:>14} {:>9}",
        "phase", "N", "msg/s", "CPU µs/msg", "wall s"
    );
    for row in &rows {
        match &row.result {
            Ok(m) => println!(
                "{:<40} {:>10} {:>12.0} {:>14.2} {:>9.2}",
                row.name,
                m.n,
                m.rate(),
                m.cpu_us(),
                m.elapsed.as_secs_f64()
            ),
            Err(e) => println!("{:<40} FAILED: {e:#}", row.name),
        }
    }

    println!(
        "\n{:<46} {:>10} {:>10}",
        "ratio jetflow / raw", "msg/s", "CPU/msg"
    );
    let get = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .and_then(|r| r.result.as_ref().ok())
    };
    for (label, a, b) in [
        (
            "consume c=1  vs raw fetch(1)",
            "consume jetflow, concurrency 1",
            "consume raw, fetch(1) loop",
        ),
        (
            "consume c=1  vs raw messages() prefetch",
            "consume jetflow, concurrency 1",
            "consume raw, messages() prefetch",
        ),
        (
            "consume c=64 vs raw messages() prefetch",
            "consume jetflow, concurrency 64",
            "consume raw, messages() prefetch",
        ),
        (
            "consume c=1 prefetch 0 vs raw messages()",
            "consume jetflow, c=1, prefetch 0",
            "consume raw, messages() prefetch",
        ),
        (
            "consume c=8  vs raw messages() prefetch",
            "consume jetflow, concurrency 8",
            "consume raw, messages() prefetch",
        ),
        (
            "consume ordered (64 keys) vs c=64",
            "consume jetflow, c=64, ordered, 64 keys",
            "consume jetflow, concurrency 64",
        ),
        (
            "publish typed vs raw awaited",
            "publish jetflow Bus::publish",
            "publish raw, awaited one by one",
        ),
        (
            "publish typed vs raw awaited + same headers",
            "publish jetflow Bus::publish",
            "publish raw + jetflow's headers",
        ),
        (
            "publish typed vs raw pipelined (256)",
            "publish jetflow Bus::publish",
            "publish raw, pipelined (256)",
        ),
        (
            "publish batch (256) vs raw pipelined + headers",
            "publish jetflow batch (256)",
            "publish raw + headers, pipelined (256)",
        ),
        (
            "publish batch (256) vs raw pipelined",
            "publish jetflow batch (256)",
            "publish raw, pipelined (256)",
        ),
        (
            "publish typed 256 concurrent vs raw pipelined",
            "publish jetflow, 256 concurrent",
            "publish raw, pipelined (256)",
        ),
    ] {
        match (get(a), get(b)) {
            (Some(x), Some(y)) => println!(
                "{label:<46} {:>9.2}x {:>9.2}x",
                x.rate() / y.rate(),
                x.cpu_us() / y.cpu_us()
            ),
            _ => println!("{label:<46} {:>10} {:>10}", "n/a", "n/a"),
        }
    }
    // On / off over both phases of each side of the A B B A order: all
    // messages over all wall time, all CPU over all messages.
    for (label, base, what) in [
        (
            "metrics on / off: consume c=1",
            "consume jetflow, concurrency 1",
            "metrics",
        ),
        (
            "metrics on / off: consume c=64",
            "consume jetflow, concurrency 64",
            "metrics",
        ),
        (
            "metrics on / off: publish 256 concurrent",
            "publish jetflow, 256 concurrent",
            "metrics",
        ),
        (
            "metrics+otel on / off: consume c=1",
            "consume jetflow, concurrency 1",
            "metrics+otel",
        ),
        (
            "metrics+otel on / off: consume c=64",
            "consume jetflow, concurrency 64",
            "metrics+otel",
        ),
        (
            "metrics+otel on / off: publish 256 concurrent",
            "publish jetflow, 256 concurrent",
            "metrics+otel",
        ),
    ] {
        let sum = |names: [String; 2]| {
            let ms: Vec<&Measured> = names.iter().filter_map(|n| get(n)).collect();
            (ms.len() == 2).then(|| {
                let n: u64 = ms.iter().map(|m| m.n).sum();
                let wall: f64 = ms.iter().map(|m| m.elapsed.as_secs_f64()).sum();
                let cpu: f64 = ms.iter().map(|m| m.cpu.as_secs_f64()).sum();
                (n as f64 / wall, cpu * 1e6 / n as f64)
            })
        };
        let on = sum([format!("{base}, {what}"), format!("{base}, {what} (2)")]);
        let off = sum([base.to_owned(), format!("{base} (2)")]);
        match (on, off) {
            (Some((rate_on, cpu_on)), Some((rate_off, cpu_off))) => {
                println!(
                    "{label:<46} {:>9.2}x {:>9.2}x   ({cpu_on:.2} vs {cpu_off:.2} µs CPU/msg)",
                    rate_on / rate_off,
                    cpu_on / cpu_off
                );
                let floor = match (what, base.starts_with("consume")) {
                    ("metrics+otel", true) => get("otel floor: consumer spans by hand"),
                    ("metrics+otel", false) => get("otel floor: producer spans by hand"),
                    _ => None,
                };
                if let Some(floor) = floor {
                    println!(
                        "{:<46} {:>10} {:>9.2}x   (the SDK by hand: {:.2} µs CPU per span)",
                        "  least possible with the same spans",
                        "",
                        (cpu_off + floor.cpu_us()) / cpu_off,
                        floor.cpu_us()
                    );
                }
            }
            _ => println!("{label:<46} {:>10} {:>10}", "n/a", "n/a"),
        }
    }

    // the registry holds what a scrape would read: the metered phases' counts
    let scrape = jetflow::telemetry::metrics::render().unwrap_or_default();
    eprintln!(
        "metrics: {} series lines in the scrape",
        scrape.lines().filter(|l| !l.starts_with('#')).count()
    );
    tracer_provider.force_flush()?;
    eprintln!("otel: {} spans exported", exported.count());
    tracer_provider.shutdown()?;
    drop((bus, bus_metrics));
    quiet.stop().await?;
    metered.stop().await?;
    drop(client);
    drop(server);
    if rows.iter().any(|r| r.result.is_err()) {
        bail!("some phases failed");
    }
    Ok(())
}
