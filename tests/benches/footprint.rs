//! What jetflow costs beside throughput, against raw async-nats in the same
//! run on one private nats-server: CPU of idle handlers, resident memory
//! while a handler works through a large backlog, and publish -> handled
//! latency.
//!
//! ```text
//! cargo bench -p jetflow-tests --bench footprint            # backlog 1,000,000
//! JETFLOW_BENCH_BACKLOG=200000 cargo bench -p jetflow-tests --bench footprint
//! JETFLOW_BENCH_ONLY=idle cargo bench -p jetflow-tests --bench footprint
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run (short
//! windows, backlog 2,000) that checks every phase completes; its figures
//! mean nothing.
//!
//! - **idle**: 100 handlers (100 groups, so 100 durables and 100 pull
//!   loops) with nothing to do; CPU time of this process over a window, as
//!   a share of one core. Raw: 100 `messages()` streams of async-nats.
//! - **backlog**: `B` events in the stream before the consumer starts; a
//!   handler with concurrency 64 and the default prefetch drains it while
//!   resident memory (`VmRSS`) is sampled every 100 ms. Flat means the peak
//!   is bounded by the buffers, not by `B`. Raw: `messages()` (its default
//!   buffer) + decode + ack on another durable of the same stream.
//! - **latency**: one event at a time, publish (PubAck awaited) -> handler
//!   called, p50 and p99 of 2,000 events after 200 warm-up, and the p50 of
//!   the publish alone (PubAck read). jetflow with the default CloudEvents
//!   headers and with the lean profile; raw: publish without headers or
//!   with jetflow's 7, and a `messages()` consumer that decodes and records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use jetflow::WireProfile;
use jetflow::prelude::*;
use jetflow::testing::NatsServer;
use jetflow_tests::measure::{load_average, process_cpu, quantile, rss_bytes};
use tokio::sync::Notify;

// ---------------------------------------------------------------- events

/// What the idle handlers subscribe to; never published.
#[event(version = "v1")]
struct Ping {
    n: u64,
}

/// A backlog entry: about the size of the throughput bench's order.
#[event(version = "v1")]
#[derive(Clone)]
struct Item {
    n: u64,
    sku: String,
    quantity: u32,
    note: String,
}

/// One latency probe.
#[event(version = "v1")]
struct Tick {
    n: u64,
}

// ---------------------------------------------------------------- idle

macro_rules! idle_handlers {
    ($($f:ident $group:tt),* $(,)?) => {
        $(
            #[handler(group = $group)]
            async fn $f(_ping: Ping) {}
        )*
        /// `app` with every idle handler registered.
        fn with_idle_handlers(app: App) -> App {
            app $(.handler($f))*
        }
        /// How many idle handlers there are.
        const IDLE_HANDLERS: usize = [$($group),*].len();
    };
}

idle_handlers!(
    idle000 "idle000",
    idle001 "idle001",
    idle002 "idle002",
    idle003 "idle003",
    idle004 "idle004",
    idle005 "idle005",
    idle006 "idle006",
    idle007 "idle007",
    idle008 "idle008",
    idle009 "idle009",
    idle010 "idle010",
    idle011 "idle011",
    idle012 "idle012",
    idle013 "idle013",
    idle014 "idle014",
    idle015 "idle015",
    idle016 "idle016",
    idle017 "idle017",
    idle018 "idle018",
    idle019 "idle019",
    idle020 "idle020",
    idle021 "idle021",
    idle022 "idle022",
    idle023 "idle023",
    idle024 "idle024",
    idle025 "idle025",
    idle026 "idle026",
    idle027 "idle027",
    idle028 "idle028",
    idle029 "idle029",
    idle030 "idle030",
    idle031 "idle031",
    idle032 "idle032",
    idle033 "idle033",
    idle034 "idle034",
    idle035 "idle035",
    idle036 "idle036",
    idle037 "idle037",
    idle038 "idle038",
    idle039 "idle039",
    idle040 "idle040",
    idle041 "idle041",
    idle042 "idle042",
    idle043 "idle043",
    idle044 "idle044",
    idle045 "idle045",
    idle046 "idle046",
    idle047 "idle047",
    idle048 "idle048",
    idle049 "idle049",
    idle050 "idle050",
    idle051 "idle051",
    idle052 "idle052",
    idle053 "idle053",
    idle054 "idle054",
    idle055 "idle055",
    idle056 "idle056",
    idle057 "idle057",
    idle058 "idle058",
    idle059 "idle059",
    idle060 "idle060",
    idle061 "idle061",
    idle062 "idle062",
    idle063 "idle063",
    idle064 "idle064",
    idle065 "idle065",
    idle066 "idle066",
    idle067 "idle067",
    idle068 "idle068",
    idle069 "idle069",
    idle070 "idle070",
    idle071 "idle071",
    idle072 "idle072",
    idle073 "idle073",
    idle074 "idle074",
    idle075 "idle075",
    idle076 "idle076",
    idle077 "idle077",
    idle078 "idle078",
    idle079 "idle079",
    idle080 "idle080",
    idle081 "idle081",
    idle082 "idle082",
    idle083 "idle083",
    idle084 "idle084",
    idle085 "idle085",
    idle086 "idle086",
    idle087 "idle087",
    idle088 "idle088",
    idle089 "idle089",
    idle090 "idle090",
    idle091 "idle091",
    idle092 "idle092",
    idle093 "idle093",
    idle094 "idle094",
    idle095 "idle095",
    idle096 "idle096",
    idle097 "idle097",
    idle098 "idle098",
    idle099 "idle099"
);

/// CPU of this process over `window`, as a percentage of one core.
async fn cpu_share(window: Duration) -> f64 {
    let (cpu, wall) = (process_cpu(), Instant::now());
    tokio::time::sleep(window).await;
    let spent = process_cpu().saturating_sub(cpu);
    spent.as_secs_f64() * 100.0 / wall.elapsed().as_secs_f64()
}

async fn idle_jetflow(url: &str, settle: Duration, window: Duration) -> anyhow::Result<f64> {
    let app = with_idle_handlers(App::new("footprint").url(url))
        .start()
        .await?;
    tokio::time::sleep(settle).await;
    let share = cpu_share(window).await;
    app.stop().await?;
    Ok(share)
}

async fn idle_raw(
    js: &jetstream::Context,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<f64> {
    let stream = js.get_stream("PING").await?;
    let mut tasks = Vec::new();
    for i in 0..IDLE_HANDLERS {
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("raw_idle{i:03}")),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = messages.next().await {
                let _ = m.ack().await;
            }
        }));
    }
    tokio::time::sleep(settle).await;
    let share = cpu_share(window).await;
    for t in tasks {
        t.abort();
    }
    Ok(share)
}

// ---------------------------------------------------------------- backlog

/// Handled events, for the backlog drain.
#[derive(Default)]
struct Drained {
    n: AtomicU64,
    done: Notify,
    total: AtomicU64,
}

impl Drained {
    fn hit(&self) {
        let n = self.n.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.total.load(Ordering::Relaxed) {
            self.done.notify_one();
        }
    }
}

#[handler(group = "backlog", concurrency = 64)]
async fn drain_item(item: Item, State(drained): State<Arc<Drained>>) {
    std::hint::black_box(&item);
    drained.hit();
}

fn item(n: u64) -> Item {
    Item {
        n,
        sku: format!("SKU-{:06}", n % 100_000),
        quantity: (n % 7) as u32 + 1,
        note: "handle with care, fragile goods".into(),
    }
}

/// What memory did while a backlog drained.
struct RssProfile {
    before: u64,
    at_10: u64,
    at_50: u64,
    at_90: u64,
    peak: u64,
    elapsed: Duration,
}

/// Samples RSS every 100 ms until `done` resolves; `progress` says how far
/// the drain is (0..=1).
async fn profile_rss<F: Future<Output = anyhow::Result<()>>>(
    progress: impl Fn() -> f64,
    done: F,
) -> anyhow::Result<RssProfile> {
    let before = rss_bytes();
    let start = Instant::now();
    let mut p = RssProfile {
        before,
        at_10: 0,
        at_50: 0,
        at_90: 0,
        peak: before,
        elapsed: Duration::ZERO,
    };
    let mut every = tokio::time::interval(Duration::from_millis(100));
    tokio::pin!(done);
    loop {
        tokio::select! {
            r = &mut done => { r?; break; }
            _ = every.tick() => {
                let (rss, f) = (rss_bytes(), progress());
                p.peak = p.peak.max(rss);
                for (mark, slot) in [(0.1, &mut p.at_10), (0.5, &mut p.at_50), (0.9, &mut p.at_90)] {
                    if f >= mark && *slot == 0 {
                        *slot = rss;
                    }
                }
            }
        }
    }
    p.peak = p.peak.max(rss_bytes());
    p.elapsed = start.elapsed();
    Ok(p)
}

async fn backlog_jetflow(url: &str, backlog: u64) -> anyhow::Result<RssProfile> {
    let drained = Arc::new(Drained::default());
    drained.total.store(backlog, Ordering::Relaxed);
    let app = App::new("footprint")
        .url(url)
        .state(drained.clone())
        .handler(drain_item)
        .start()
        .await?;
    let progress = || drained.n.load(Ordering::Relaxed) as f64 / backlog as f64;
    let profile = profile_rss(progress, async {
        drained.done.notified().await;
        Ok(())
    })
    .await;
    app.stop().await?;
    profile
}

async fn backlog_raw(js: &jetstream::Context, backlog: u64) -> anyhow::Result<RssProfile> {
    let consumer = js
        .get_stream("ITEM")
        .await?
        .create_consumer(pull::Config {
            durable_name: Some("raw_backlog".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let seen = AtomicU64::new(0);
    let progress = || seen.load(Ordering::Relaxed) as f64 / backlog as f64;
    let drain = async {
        let mut messages = consumer.messages().await?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| anyhow::anyhow!(e))?;
            let item: Item = serde_json::from_slice(&m.payload)?;
            std::hint::black_box(&item);
            m.ack().await.map_err(|e| anyhow::anyhow!(e))?;
            if seen.fetch_add(1, Ordering::Relaxed) + 1 == backlog {
                break;
            }
        }
        Ok(())
    };
    profile_rss(progress, drain).await
}

async fn fill_backlog(bus: &Bus, backlog: u64) -> anyhow::Result<()> {
    let mut i = 0;
    while i < backlog {
        let mut batch = bus.batch();
        while batch.len() < 256 && i < backlog {
            batch.push(&item(i))?;
            i += 1;
        }
        batch.send().await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- latency

/// When the latency handler (or raw loop) last saw the probe it waits for;
/// other ticks (a durable's backlog from another variant) are ignored.
#[derive(Default)]
struct Seen {
    expect: AtomicU64,
    at: std::sync::Mutex<Option<Instant>>,
    ran: Notify,
}

impl Seen {
    fn mark(&self, n: u64) {
        if n == self.expect.load(Ordering::Acquire) {
            *self.at.lock().expect("lock") = Some(Instant::now());
            self.ran.notify_one();
        }
    }
    async fn wait(&self) -> Instant {
        loop {
            if let Some(at) = self.at.lock().expect("lock").take() {
                return at;
            }
            self.ran.notified().await;
        }
    }
}

#[handler(group = "latency")]
async fn record_tick(t: Tick, State(seen): State<Arc<Seen>>) {
    seen.mark(std::hint::black_box(t.n));
}

/// Latency of one way to publish and consume, from 2,000 probes: each
/// probe's publish started at `t0`, its PubAck was read at `acked`, and its
/// handler (or raw loop) saw it at `handled`.
struct Latency {
    /// `handled - t0`: what the target is about.
    handled: Vec<Duration>,
    /// `acked - t0`: the publish alone (PubAck awaited).
    acked: Vec<Duration>,
}

impl Latency {
    fn with_capacity(n: u64) -> Self {
        let n = usize::try_from(n).unwrap_or(0);
        Latency {
            handled: Vec::with_capacity(n),
            acked: Vec::with_capacity(n),
        }
    }
    fn push(&mut self, t0: Instant, acked: Instant, handled: Instant) {
        self.handled.push(handled - t0);
        self.acked.push(acked - t0);
    }
    fn row(mut self, name: &str) -> Duration {
        let p50 = quantile(&mut self.handled, 0.5);
        let p99 = quantile(&mut self.handled, 0.99);
        let acked = quantile(&mut self.acked, 0.5);
        println!(
            "{name:<44} {:>9.1} {:>9.1} {:>12.1}",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            acked.as_secs_f64() * 1e6
        );
        p50
    }
}

/// Who publishes the probes on `tick.v1`.
#[derive(Clone, Copy)]
enum Publisher {
    /// `Bus::publish` with this profile, PubAck awaited.
    Jetflow(WireProfile),
    /// `jetstream.publish`, PubAck awaited; with jetflow's 7 headers or none.
    Raw { headers: bool },
}

/// Who reads them.
#[derive(Clone, Copy)]
enum Reader {
    /// A `#[handler]` (concurrency 1, default prefetch) of the publishing
    /// app (one connection for both).
    Jetflow,
    /// The same handler in an app of its own (its own connection), as
    /// when producer and consumer are two services.
    JetflowApart,
    /// A `messages()` loop on a durable of its own: decode, record, ack.
    Raw,
}

/// One way to publish and read `n` probes (after `warm`), one at a time;
/// probe numbers start at `base` (unique per variant).
async fn latency(
    url: &str,
    js: &jetstream::Context,
    (publisher, reader): (Publisher, Reader),
    base: u64,
    (warm, n): (u64, u64),
) -> anyhow::Result<Latency> {
    let seen = Arc::new(Seen::default());
    let profile = match publisher {
        Publisher::Jetflow(p) => p,
        Publisher::Raw { .. } => WireProfile::CloudEvents,
    };
    let mut app = App::new("footprint").url(url).wire_profile(profile);
    if let Reader::Jetflow = reader {
        app = app.state(seen.clone()).handler(record_tick);
    }
    let app = app.start().await?;
    let apart = match reader {
        Reader::JetflowApart => Some(
            App::new("footprint-reader")
                .url(url)
                .state(seen.clone())
                .handler(record_tick)
                .start()
                .await?,
        ),
        _ => None,
    };
    let raw_reader = match reader {
        Reader::Jetflow | Reader::JetflowApart => None,
        Reader::Raw => {
            let consumer = js
                .get_stream(Tick::STREAM)
                .await?
                .create_consumer(pull::Config {
                    durable_name: Some(format!("raw_latency_{base}")),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    deliver_policy: jetstream::consumer::DeliverPolicy::New,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            let seen = seen.clone();
            Some(tokio::spawn(async move {
                while let Some(Ok(m)) = messages.next().await {
                    if let Ok(t) = serde_json::from_slice::<Tick>(&m.payload) {
                        seen.mark(std::hint::black_box(t.n));
                    }
                    let _ = m.ack().await;
                }
            }))
        }
    };
    let mut latency = Latency::with_capacity(n);
    for i in 0..warm + n {
        let tick = Tick { n: base + i };
        seen.expect.store(tick.n, Ordering::Release);
        let payload = serde_json::to_vec(&tick)?;
        let t0 = Instant::now();
        match publisher {
            Publisher::Jetflow(_) => {
                app.bus().publish(&tick).await?;
            }
            Publisher::Raw { headers: true } => {
                let headers = tick_headers(base, i);
                js.publish_with_headers(Tick::SUBJECT, headers, payload.into())
                    .await?
                    .await?;
            }
            Publisher::Raw { headers: false } => {
                js.publish(Tick::SUBJECT, payload.into()).await?.await?;
            }
        }
        let acked = Instant::now();
        let at = seen.wait().await;
        if i >= warm {
            latency.push(t0, acked, at);
        }
    }
    if let Some(r) = raw_reader {
        r.abort();
    }
    if let Some(reader) = apart {
        reader.stop().await?;
    }
    app.stop().await?;
    Ok(latency)
}

/// jetflow's default headers for a tick, with a unique id (the time a
/// fixed string: raw code formats none).
fn tick_headers(run: u64, i: u64) -> async_nats::HeaderMap {
    let id = format!("tick-{run}-{i}");
    let mut h = async_nats::HeaderMap::new();
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", id.as_str());
    h.insert("ce-type", Tick::SUBJECT);
    h.insert("ce-source", "footprint");
    h.insert("ce-time", "2026-01-01T00:00:00.000000000Z");
    h.insert("content-type", "application/json");
    h.insert("Nats-Msg-Id", id.as_str());
    h
}

// ---------------------------------------------------------------- main

fn selected(name: &str) -> bool {
    match std::env::var("JETFLOW_BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|w| name.contains(w.trim())),
        _ => true,
    }
}

fn backlog_size(measuring: bool) -> anyhow::Result<u64> {
    match std::env::var("JETFLOW_BENCH_BACKLOG") {
        Ok(b) => {
            let b: u64 = b
                .trim()
                .parse()
                .with_context(|| format!("JETFLOW_BENCH_BACKLOG={b:?} is not a number"))?;
            if b == 0 {
                bail!("JETFLOW_BENCH_BACKLOG must be positive");
            }
            Ok(b)
        }
        Err(_) => Ok(if measuring { 1_000_000 } else { 2_000 }),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_rss(name: &str, p: &RssProfile, backlog: u64) {
    // A mark the 100 ms sampling skipped over (a fast drain) shows as "-".
    let cell = |bytes: u64| {
        if bytes == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", mib(bytes))
        }
    };
    println!(
        "{name:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8.1} {:>9.0}",
        cell(p.before),
        cell(p.at_10),
        cell(p.at_50),
        cell(p.at_90),
        cell(p.peak),
        mib(p.peak.saturating_sub(p.at_10)),
        backlog as f64 / p.elapsed.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jetflow_tests::log_to_stderr("warn");
    let measuring = std::env::args().any(|a| a == "--bench");
    let backlog = backlog_size(measuring)?;
    let (settle, window) = if measuring {
        (Duration::from_secs(5), Duration::from_secs(30))
    } else {
        (Duration::from_millis(500), Duration::from_secs(1))
    };
    let (warm, n) = if measuring { (200, 2_000) } else { (5, 50) };

    let server = NatsServer::start().await?;
    let url = server.url();
    let js = jetstream::new(async_nats::connect(&url).await?);
    // What jetflow creates by default: file storage, 2 min dedup window.
    js.create_stream(stream::Config {
        name: "ITEM".into(),
        subjects: vec!["item.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    println!(
        "jetflow footprint: nats-server {} at {url}; load average at start: {}",
        server.version(),
        load_average()
    );

    if selected("idle") {
        // The app declares the PING stream; raw reuses it.
        let jetflow = idle_jetflow(&url, settle, window).await?;
        let raw = idle_raw(&js, settle, window).await?;
        println!(
            "\nidle, {IDLE_HANDLERS} handlers, {window:?} window: jetflow {jetflow:.2}% of one core, raw {raw:.2}%"
        );
    }

    if selected("backlog") {
        let publisher = App::new("footprint").url(&url).start().await?;
        let filled = Instant::now();
        fill_backlog(publisher.bus(), backlog).await?;
        eprintln!("backlog of {backlog} published in {:?}", filled.elapsed());
        publisher.stop().await?;
        let jetflow = backlog_jetflow(&url, backlog).await?;
        let raw = backlog_raw(&js, backlog).await?;
        println!(
            "\nbacklog of {backlog} events, RSS in MiB (growth = peak - at 10%), drain rate in events/s"
        );
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "", "before", "at 10%", "at 50%", "at 90%", "peak", "growth", "events/s"
        );
        print_rss("jetflow", &jetflow, backlog);
        print_rss("raw", &raw, backlog);
    }

    if selected("latency") {
        // Declares the TICK stream and the handler's durable.
        App::new("footprint")
            .url(&url)
            .state(Arc::new(Seen::default()))
            .handler(record_tick)
            .start()
            .await?
            .stop()
            .await?;
        println!(
            "\nlatency, one event at a time, {n} events after {warm}: publish -> handled (µs)"
        );
        println!(
            "{:<44} {:>9} {:>9} {:>12}",
            "publisher -> reader", "p50", "p99", "PubAck p50"
        );
        let variants = [
            (
                "jetflow (CloudEvents) -> jetflow",
                Publisher::Jetflow(WireProfile::CloudEvents),
                Reader::Jetflow,
            ),
            (
                "raw, no header -> raw",
                Publisher::Raw { headers: false },
                Reader::Raw,
            ),
            (
                "jetflow (lean) -> jetflow",
                Publisher::Jetflow(WireProfile::Lean),
                Reader::Jetflow,
            ),
            (
                "raw, jetflow's 7 headers -> raw",
                Publisher::Raw { headers: true },
                Reader::Raw,
            ),
            (
                "jetflow (CloudEvents) -> raw",
                Publisher::Jetflow(WireProfile::CloudEvents),
                Reader::Raw,
            ),
            (
                "raw, jetflow's 7 headers -> jetflow",
                Publisher::Raw { headers: true },
                Reader::Jetflow,
            ),
            (
                "jetflow (CloudEvents) -> jetflow, 2 apps",
                Publisher::Jetflow(WireProfile::CloudEvents),
                Reader::JetflowApart,
            ),
        ];
        // The starting variant rotates with the clock, so none always goes first.
        let first = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as usize;
        let mut p50 = [Duration::ZERO; 7];
        for k in 0..variants.len() {
            let v = (first + k) % variants.len();
            let (name, publisher, reader) = variants[v];
            let base = (v as u64 + 1) * 1_000_000;
            p50[v] = latency(&url, &js, (publisher, reader), base, (warm, n))
                .await?
                .row(name);
        }
        println!(
            "p50 difference, jetflow (default) -> jetflow minus raw (no header) -> raw: {:+.1} µs",
            (p50[0].as_secs_f64() - p50[1].as_secs_f64()) * 1e6
        );
    }
    Ok(())
}
