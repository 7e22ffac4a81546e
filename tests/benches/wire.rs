//! What the wire contract costs: the same events published with jetflow's
//! default headers ([`WireProfile::CloudEvents`]), with the lean profile
//! ([`WireProfile::Lean`]) and, by raw async-nats, with no header at all;
//! then each stream consumed by raw async-nats code and by jetflow, in one
//! run, on one private nats-server.
//!
//! ```text
//! cargo bench -p jetflow-tests --bench wire                       # N = 20000, 3 runs
//! JETFLOW_BENCH_N=50000 JETFLOW_BENCH_RUNS=5 cargo bench -p jetflow-tests --bench wire
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run with N = 200
//! and one run that checks every phase completes; its figures mean nothing.
//!
//! Each run starts a new nats-server (file storage) and measures, after `W`
//! warm-up messages, N messages of:
//! - **publish**, 256 in flight: `Bus::publish` of an app with the
//!   CloudEvents profile (stream `FULL`: 6 `ce-*`/content-type headers and
//!   `Nats-Msg-Id`), of an app with the lean profile (stream `LEAN`:
//!   `Nats-Msg-Id` only), and raw `jetstream.publish(subject, json)` with
//!   no header (stream `BARE`); each PubAck awaited.
//! - **consume, raw**: each stream read by the same raw loop (a durable
//!   pull consumer's `messages()`, the JSON decoded into the event, the
//!   ack awaited): what any NATS client pays to read jetflow's messages.
//! - **consume, jetflow**: a `#[handler]` at concurrency 1 that decodes and
//!   counts, on `FULL` and on `LEAN`.
//!
//! The order of the phases of a kind alternates from run to run. CPU
//! µs/msg is this process's user + system time over the phase (10 ms
//! ticks; nats-server's CPU is not counted). The ratios are printed per
//! run, then their median and range over the runs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt as _;
use jetflow::WireProfile;
use jetflow::prelude::*;
use jetflow::testing::NatsServer;
use jetflow_tests::measure::{self, Counter, Measured, load_average, median_range, windowed};

/// An order published with the CloudEvents profile (stream `FULL`).
#[event(version = "v1")]
struct FullOrder {
    order_id: u64,
    customer: String,
    total_cents: u64,
    items: u32,
}

/// The same order published with the lean profile (stream `LEAN`).
#[event(version = "v1")]
struct LeanOrder {
    order_id: u64,
    customer: String,
    total_cents: u64,
    items: u32,
}

/// The subject the raw publisher writes, without headers (stream `BARE`).
const BARE_SUBJECT: &str = "bare.order.v1";
/// Publishes in flight at once.
const IN_FLIGHT: usize = 256;

fn full(i: u64) -> FullOrder {
    FullOrder {
        order_id: i,
        customer: format!("customer-{}", i % 1000),
        total_cents: 1299 + i % 5000,
        items: 1 + (i % 7) as u32,
    }
}

fn lean(i: u64) -> LeanOrder {
    let FullOrder {
        order_id,
        customer,
        total_cents,
        items,
    } = full(i);
    LeanOrder {
        order_id,
        customer,
        total_cents,
        items,
    }
}

#[handler(group = "bench")]
async fn take_full(o: FullOrder, State(counter): State<Arc<Counter>>) -> Result<(), HandlerError> {
    black_box(&o);
    counter.hit();
    Ok(())
}

#[handler(group = "bench")]
async fn take_lean(o: LeanOrder, State(counter): State<Arc<Counter>>) -> Result<(), HandlerError> {
    black_box(&o);
    counter.hit();
    Ok(())
}

/// `Bus::publish` of `event(i)`, `IN_FLIGHT` at a time.
async fn publish_jetflow<E: Event>(
    bus: &Bus,
    event: fn(u64) -> E,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    windowed(warm, n, IN_FLIGHT, |i| {
        let bus = bus.clone();
        async move { bus.publish(&event(i)).await.map(drop).map_err(Into::into) }
    })
    .await
}

/// Raw publishes without headers, `IN_FLIGHT` at a time.
async fn publish_bare(js: &jetstream::Context, warm: u64, n: u64) -> anyhow::Result<Measured> {
    windowed(warm, n, IN_FLIGHT, |i| {
        let js = js.clone();
        async move {
            let payload = serde_json::to_vec(&full(i))?;
            js.publish(BARE_SUBJECT, payload.into()).await?.await?;
            Ok(())
        }
    })
    .await
}

/// The raw loop on a new durable of `stream`: decode, ack (awaited).
async fn consume_raw(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(pull::Config {
            durable_name: Some(durable.into()),
            ..Default::default()
        })
        .await?;
    let counter = Counter::new(warm, n);
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        let order: FullOrder = serde_json::from_slice(&message.payload)?;
        black_box(&order);
        message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if counter.hit() {
            break;
        }
    }
    counter.measured()
}

/// The consuming app of a jetflow phase.
fn consumer(url: &str) -> App {
    App::new("bench-consumer").url(url).metrics(false)
}

/// The result of a phase (printed), or why it failed or timed out.
async fn timed<F>(what: &str, limit: Duration, phase: F) -> anyhow::Result<Measured>
where
    F: Future<Output = anyhow::Result<Measured>>,
{
    let m = measure::timed(what, limit, phase).await?;
    println!(
        "  {what:<34} {:>8.0} msg/s {:>6.2} µs/msg",
        m.rate(),
        m.cpu_us()
    );
    Ok(m)
}

/// One run's ratios, in the order of [`RATIOS`]: `(msg/s, CPU/msg)`.
async fn run(run: usize, n: u64, warm: u64, limit: Duration) -> anyhow::Result<Vec<(f64, f64)>> {
    let server = NatsServer::start().await?;
    let url = server.url();
    let js = jetstream::new(async_nats::connect(&url).await?);
    js.create_stream(stream::Config {
        name: "BARE".into(),
        subjects: vec![BARE_SUBJECT.into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let full_app = App::new("bench-full")
        .url(&url)
        .metrics(false)
        .publishes::<FullOrder>()
        .start()
        .await?;
    let lean_app = App::new("bench-lean")
        .url(&url)
        .metrics(false)
        .wire_profile(WireProfile::Lean)
        .publishes::<LeanOrder>()
        .start()
        .await?;
    let (full_bus, lean_bus) = (full_app.bus().clone(), lean_app.bus().clone());
    let flip = run % 2 == 1;

    println!("run {}:", run + 1);
    let (pub_full, pub_lean) = measure::in_order(
        flip,
        timed(
            "publish jetflow, CloudEvents",
            limit,
            publish_jetflow(&full_bus, full, warm, n),
        ),
        timed(
            "publish jetflow, lean",
            limit,
            publish_jetflow(&lean_bus, lean, warm, n),
        ),
    )
    .await;
    let (pub_full, pub_lean) = (pub_full?, pub_lean?);
    timed("publish raw, no header", limit, publish_bare(&js, warm, n)).await?;

    let mut raw = std::collections::HashMap::new();
    let mut streams = ["FULL", "LEAN", "BARE"];
    if flip {
        streams.reverse();
    }
    for s in streams {
        let what = format!("consume raw, {s}");
        raw.insert(
            s,
            timed(&what, limit, consume_raw(&js, s, "raw", warm, n)).await?,
        );
    }
    let (jf_full, jf_lean) = measure::in_order(
        flip,
        timed(
            "consume jetflow c=1, FULL",
            limit,
            measure::consume_jetflow(consumer(&url), take_full, warm, n),
        ),
        timed(
            "consume jetflow c=1, LEAN",
            limit,
            measure::consume_jetflow(consumer(&url), take_lean, warm, n),
        ),
    )
    .await;
    let (jf_full, jf_lean) = (jf_full?, jf_lean?);
    full_app.stop().await?;
    lean_app.stop().await?;
    drop((full_bus, lean_bus));
    drop(server);

    let ratio = |a: &Measured, b: &Measured| (a.rate() / b.rate(), a.cpu_us() / b.cpu_us());
    Ok(vec![
        ratio(&raw["FULL"], &raw["BARE"]),
        ratio(&raw["LEAN"], &raw["BARE"]),
        ratio(&jf_lean, &jf_full),
        ratio(&pub_lean, &pub_full),
    ])
}

/// What each ratio compares.
const RATIOS: [&str; 4] = [
    "raw consume, CloudEvents / no header",
    "raw consume, lean / no header",
    "jetflow consume c=1, lean / CloudEvents",
    "jetflow publish 256, lean / CloudEvents",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jetflow_tests::log_to_stderr("warn");
    let (n, runs) = measure::size(20_000, 200)?;
    let warm = (n / 10).clamp(100, 5_000);
    let limit = Duration::from_secs(120).max(Duration::from_millis(5) * u32::try_from(n + warm)?);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "jetflow wire profiles: N = {n} after W = {warm} warm-up messages per phase, {runs} run(s); \
         a new private nats-server per run; {cores} CPU cores shared by client and server; load {}",
        load_average()
    );
    let mut all: Vec<Vec<(f64, f64)>> = Vec::new();
    for r in 0..runs {
        let ratios = run(r, n, warm, limit).await?;
        for (name, (rate, cpu)) in RATIOS.iter().zip(&ratios) {
            println!(
                "run {}: {name:<42} {rate:>5.2}x msg/s, {cpu:>5.2}x CPU/msg",
                r + 1
            );
        }
        all.push(ratios);
    }
    println!(
        "median (range) over {runs} run(s); load {}:",
        load_average()
    );
    for (i, name) in RATIOS.iter().enumerate() {
        let rates: Vec<f64> = all.iter().map(|r| r[i].0).collect();
        let cpus: Vec<f64> = all.iter().map(|r| r[i].1).collect();
        let ((rm, rl, rh), (cm, cl, ch)) = (median_range(&rates), median_range(&cpus));
        println!(
            "  {name:<42} msg/s {rm:.2}x ({rl:.2}-{rh:.2}), CPU/msg {cm:.2}x ({cl:.2}-{ch:.2})"
        );
    }
    Ok(())
}
