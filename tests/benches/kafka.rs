//! Throughput of jetflow's Kafka transport against raw rdkafka doing the
//! same work, in one run, on one private tansu broker (memory storage).
//!
//! ```text
//! cargo bench -p jetflow-tests --bench kafka                           # N = 10000, 3 runs, a few minutes
//! JETFLOW_BENCH_N=20000 JETFLOW_BENCH_RUNS=5 cargo bench -p jetflow-tests --bench kafka
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run with N = 200
//! and one run that checks every phase completes; its figures mean nothing.
//!
//! The event is a small JSON object whose id is its `customer` (so every
//! record has a partition key); the topic is jetflow's `BENCH` (one
//! partition, jetflow's default). Each run measures, after `W` warm-up
//! messages:
//! - **publish**, N messages, 256 in flight on both sides:
//!   - jetflow: `Bus::publish(&event)` (JSON encode, the id
//!     `{subject}:{key}`, an RFC 3339 time, jetflow's `ce-*` headers plus
//!     `jetflow-subject` and `jetflow-id`, the delivery report awaited),
//!     256 futures in a `FuturesUnordered`;
//!   - raw: a `FutureProducer` with jetflow's producer settings
//!     (`enable.idempotence`, `acks=all`, `linger.ms=2`, the `murmur2_random`
//!     partitioner, `message.timeout.ms=30000`), `send` of a `FutureRecord`
//!     with the same key and the same 8 headers (values of the same
//!     lengths, precomputed rather than formatted per message), the JSON
//!     encoded per message, each delivery report awaited, 256 in flight.
//! - **consume**: every record both publish phases of the run wrote
//!   (2 N after 2 W warm-up records), each consumer in its own new group
//!   (each run has a new broker), reading from the start of the topic:
//!   - jetflow: an `App` with one `#[handler]` that decodes the JSON into
//!     the event and counts, at `concurrency = 1` and at `concurrency = 64`
//!     (two groups); the runtime acks each record, which stores the
//!     partition's handled watermark (`store_offsets`) for librdkafka's
//!     auto commit (every second);
//!   - raw, same commits: a `StreamConsumer` with jetflow's consumer
//!     settings (`session.timeout.ms=10000`, `auto.offset.reset=earliest`,
//!     auto commit every second of the offsets stored), one loop: `recv`,
//!     check the `jetflow-subject` header, decode the JSON, count,
//!     `store_offset_from_message`: the usual at-least-once rdkafka
//!     consumer;
//!   - raw, commit each (a reference for jetflow's earlier design, one
//!     commit request per record): the same loop with manual commits,
//!     `commit_message(CommitMode::Async)`.
//!
//!   - jetflow without Kafka (a reference, not a ratio): the c=1 handler
//!     on the embedded broker (`memory://`, in this process), reading
//!     `2W + 2N` events published to it beforehand. Its CPU per message is
//!     what jetflow's transport-neutral consume loop costs plus the
//!     in-process broker's work, beside which the Kafka sides' figures say
//!     how much of jetflow's cost on Kafka is the loop, whatever the broker.
//!
//!   The raw loop is sequential: with a handler that does nothing,
//!   concurrency adds no speed to hand-written code, so it is the
//!   reference for both of jetflow's concurrencies. The clock of a consume
//!   phase stops when the last record was decoded and counted; joining
//!   the group is in the warm-up.
//!
//! CPU µs/msg is this process's user + system time over the phase (10 ms
//! ticks; tansu's CPU is not counted; librdkafka's threads are). jetflow
//! and raw alternate which goes first from run to run. The ratios
//! (jetflow / raw msg/s) are printed per run, then their median and range
//! over the runs (`JETFLOW_BENCH_RUNS`, 3 by default).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use jetflow::prelude::*;
use jetflow_tests::measure::{
    self, Counter, Measured, load_average, median_range, timed, windowed,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

/// The event: a small JSON object (~80 bytes); its id (and partition key)
/// is the customer.
#[event(version = "v1", id = customer)]
struct BenchOrder {
    order_id: u64,
    customer: String,
    total_cents: u64,
    items: u32,
}

fn order(i: u64) -> BenchOrder {
    BenchOrder {
        order_id: i,
        customer: customer(i),
        total_cents: 1299 + i % 5000,
        items: 1 + (i % 7) as u32,
    }
}

fn customer(i: u64) -> String {
    format!("customer-{}", i % 1000)
}

/// The subject of `BenchOrder`.
const SUBJECT: &str = "bench.order.v1";
/// The topic jetflow creates for it (the stream).
const TOPIC: &str = "BENCH";
/// Publishes in flight at once, on both sides.
const IN_FLIGHT: usize = 256;
/// How long a send may wait in librdkafka's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

#[handler(group = "bench1")]
async fn consume_c1(
    order: BenchOrder,
    State(counter): State<Arc<Counter>>,
) -> Result<(), HandlerError> {
    black_box(&order);
    counter.hit();
    Ok(())
}

#[handler(group = "bench64", concurrency = 64)]
async fn consume_c64(
    order: BenchOrder,
    State(counter): State<Arc<Counter>>,
) -> Result<(), HandlerError> {
    black_box(&order);
    counter.hit();
    Ok(())
}

/// `Bus::publish`, `IN_FLIGHT` at a time.
async fn publish_jetflow(bus: &Bus, warm: u64, n: u64) -> anyhow::Result<Measured> {
    windowed(warm, n, IN_FLIGHT, |i| {
        let bus = bus.clone();
        async move { bus.publish(&order(i)).await.map(drop).map_err(Into::into) }
    })
    .await
}

/// The 8 headers jetflow writes (`ce-*`, content type, subject, id), with
/// values of the same lengths.
fn raw_headers(id: &str) -> OwnedHeaders {
    let h = |key, value| Header {
        key,
        value: Some(value),
    };
    OwnedHeaders::new_with_capacity(8)
        .insert(h("ce-specversion", "1.0"))
        .insert(h("ce-id", id))
        .insert(h("ce-type", SUBJECT))
        .insert(h("ce-source", "bench-publisher"))
        .insert(h("ce-time", "2026-01-01T00:00:00.123456789Z"))
        .insert(h("content-type", "application/json"))
        .insert(h("jetflow-subject", SUBJECT))
        .insert(h("jetflow-id", id))
}

/// One raw send: key, headers, JSON payload; the delivery report awaited.
async fn raw_publish_one(producer: &FutureProducer, i: u64) -> anyhow::Result<()> {
    let o = order(i);
    let payload = serde_json::to_vec(&o)?;
    let id = format!("{SUBJECT}:{}", o.customer);
    let record = FutureRecord::to(TOPIC)
        .key(&o.customer)
        .payload(&payload)
        .headers(raw_headers(&id));
    producer
        .send(record, QUEUE_TIMEOUT)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("not stored: {e}"))?;
    Ok(())
}

/// Raw rdkafka sends, `IN_FLIGHT` at a time.
async fn publish_raw(producer: &FutureProducer, warm: u64, n: u64) -> anyhow::Result<Measured> {
    windowed(warm, n, IN_FLIGHT, |i| raw_publish_one(producer, i)).await
}

/// The consuming app of a jetflow phase (its own groups).
fn app(url: &str) -> App {
    App::new("bench").url(url).metrics(false)
}

/// The publishing app on `url`: it creates the stream (on Kafka, the
/// topic) and records its subjects.
async fn publisher(url: &str) -> anyhow::Result<jetflow::AppHandle> {
    Ok(App::new("bench-publisher")
        .url(url)
        .metrics(false)
        .publishes::<BenchOrder>()
        .start()
        .await?)
}

/// jetflow's consume loop without Kafka: the same handler at concurrency 1
/// on the embedded broker (`memory://`, in this process, so its work is
/// counted too), reading `warm + n` events published to it beforehand
/// (not timed). An upper bound of what the transport-neutral loop costs
/// per message, whatever the broker.
async fn consume_embedded(run: usize, warm: u64, n: u64) -> anyhow::Result<Measured> {
    let url = format!("memory://kafka-bench-{run}");
    let publisher = publisher(&url).await?;
    for i in 0..warm + n {
        // a customer of its own per event: the id is the customer, and the
        // embedded broker, like JetStream, drops a repeated id as a duplicate
        let event = BenchOrder {
            customer: format!("customer-{i}"),
            ..order(i)
        };
        publisher.bus().publish(&event).await?;
    }
    let measured = measure::consume_jetflow(app(&url), consume_c1, warm, n).await;
    publisher.stop().await?;
    measured
}

/// How the raw consumer records its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Commits {
    /// `commit_message(CommitMode::Async)` per record, as jetflow committed
    /// before it stored offsets.
    EachAsync,
    /// `store_offset_from_message` per record, librdkafka's auto commit
    /// every second, as jetflow commits.
    Stored,
}

/// Settings of jetflow's clients (`client_config`, `consumer_config` in
/// the transport).
fn client_config(bootstrap: &str, name: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", name)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    config
}

/// A raw consumer of group `group` reading `warm + n` records: check the
/// subject, decode, count, record the offset.
async fn consume_raw(
    bootstrap: &str,
    group: &str,
    commits: Commits,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let auto = if commits == Commits::Stored {
        "true"
    } else {
        "false"
    };
    let consumer: StreamConsumer = client_config(bootstrap, "rawbench")
        .set("group.id", group)
        .set("enable.auto.commit", auto)
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    let counter = Counter::new(warm, n);
    loop {
        let record = match consumer.recv().await {
            Ok(record) => record,
            // as jetflow does: librdkafka retries what is not fatal
            Err(e) if e.rdkafka_error_code() != Some(RDKafkaErrorCode::Fatal) => {
                eprintln!("raw consumer: {e:?} (librdkafka retries)");
                continue;
            }
            Err(e) => return Err(anyhow::anyhow!("raw consumer: {e:?}")),
        };
        let ours = record.headers().is_some_and(|h| {
            h.iter()
                .any(|h| h.key == "jetflow-subject" && h.value == Some(SUBJECT.as_bytes()))
        });
        if ours {
            let o: BenchOrder = serde_json::from_slice(record.payload().unwrap_or_default())?;
            black_box(&o);
        }
        match commits {
            Commits::EachAsync => consumer.commit_message(&record, CommitMode::Async),
            Commits::Stored => consumer.store_offset_from_message(&record),
        }
        .map_err(|e| anyhow::anyhow!("commit: {e:?}"))?;
        if ours && counter.hit() {
            break;
        }
    }
    // the next run starts where this one ended; leaving the group blocks
    tokio::task::spawn_blocking(move || {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            // every offset was committed already
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            r => r.map_err(|e| anyhow::anyhow!("last commit: {e:?}"))?,
        }
        consumer.unsubscribe();
        drop(consumer);
        anyhow::Ok(())
    })
    .await??;
    counter.measured()
}

/// One measured phase of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    PublishJetflow,
    PublishRaw,
    ConsumeJetflow1,
    ConsumeJetflow64,
    ConsumeRawEach,
    ConsumeRawStored,
    ConsumeEmbedded1,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::PublishJetflow => "publish jetflow",
            Phase::PublishRaw => "publish raw",
            Phase::ConsumeJetflow1 => "consume jetflow c=1",
            Phase::ConsumeJetflow64 => "consume jetflow c=64",
            Phase::ConsumeRawEach => "consume raw, commit each (async)",
            Phase::ConsumeRawStored => "consume raw, stored offsets + auto commit",
            Phase::ConsumeEmbedded1 => "consume jetflow c=1, embedded broker",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jetflow_tests::log_to_stderr("warn");
    let (n, runs) = measure::size(10_000, 200)?;
    let warm = (n / 10).clamp(100, 2_000);
    let limit = Duration::from_secs(120).max(Duration::from_millis(5) * u32::try_from(n + warm)?);

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "jetflow on Kafka vs raw rdkafka: N = {n} after W = {warm} warm-up messages per publish phase \
         (consume phases read both: 2N after 2W), {runs} run(s)"
    );
    println!(
        "a new private tansu (memory storage) on 127.0.0.1 for each run, topic {TOPIC} with 1 partition, \
         new groups; {cores} CPU cores shared by client and broker; load {}",
        load_average()
    );
    let mut ratios: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("publish, 256 in flight", Vec::new(), Vec::new()),
        ("consume c=1 vs raw commit each", Vec::new(), Vec::new()),
        ("consume c=64 vs raw commit each", Vec::new(), Vec::new()),
        ("consume c=1 vs raw stored offsets", Vec::new(), Vec::new()),
        ("consume c=64 vs raw stored offsets", Vec::new(), Vec::new()),
    ];
    // CPU µs/msg at c=1 per run: raw stored offsets, jetflow on Kafka,
    // jetflow on the embedded broker
    let mut cpu_c1: [Vec<f64>; 3] = Default::default();
    for run in 0..runs {
        // a fresh broker per run: every group starts new, with no member
        // of an earlier run still leaving
        let server = jetflow::testing::KafkaServer::start().await?;
        let url = server.url();
        let bootstrap = server.bootstrap();
        let publisher = publisher(&url).await?;
        let bus = publisher.bus().clone();
        let producer: FutureProducer = client_config(&bootstrap, "rawbench")
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .create()?;

        let jetflow_first = run % 2 == 0;
        let publish = if jetflow_first {
            [Phase::PublishJetflow, Phase::PublishRaw]
        } else {
            [Phase::PublishRaw, Phase::PublishJetflow]
        };
        let consume = if jetflow_first {
            [
                Phase::ConsumeJetflow1,
                Phase::ConsumeRawEach,
                Phase::ConsumeJetflow64,
                Phase::ConsumeRawStored,
            ]
        } else {
            [
                Phase::ConsumeRawStored,
                Phase::ConsumeJetflow64,
                Phase::ConsumeRawEach,
                Phase::ConsumeJetflow1,
            ]
        };
        let mut results = std::collections::HashMap::new();
        for phase in publish
            .into_iter()
            .chain(consume)
            .chain([Phase::ConsumeEmbedded1])
        {
            let (cw, cn) = (2 * warm, 2 * n);
            let m = match phase {
                Phase::PublishJetflow => {
                    timed(phase.name(), limit, publish_jetflow(&bus, warm, n)).await?
                }
                Phase::PublishRaw => {
                    timed(phase.name(), limit, publish_raw(&producer, warm, n)).await?
                }
                Phase::ConsumeJetflow1 => {
                    timed(
                        phase.name(),
                        limit,
                        measure::consume_jetflow(app(&url), consume_c1, cw, cn),
                    )
                    .await?
                }
                Phase::ConsumeJetflow64 => {
                    timed(
                        phase.name(),
                        limit,
                        measure::consume_jetflow(app(&url), consume_c64, cw, cn),
                    )
                    .await?
                }
                Phase::ConsumeRawEach => {
                    timed(
                        phase.name(),
                        limit,
                        consume_raw(&bootstrap, "raw-each", Commits::EachAsync, cw, cn),
                    )
                    .await?
                }
                Phase::ConsumeRawStored => {
                    timed(
                        phase.name(),
                        limit,
                        consume_raw(&bootstrap, "raw-stored", Commits::Stored, cw, cn),
                    )
                    .await?
                }
                Phase::ConsumeEmbedded1 => {
                    timed(phase.name(), limit, consume_embedded(run, cw, cn)).await?
                }
            };
            println!(
                "run {}: {:<42} {:>8.0} msg/s {:>6.1} µs/msg",
                run + 1,
                phase.name(),
                m.rate(),
                m.cpu_us()
            );
            results.insert(phase, m);
        }
        publisher.stop().await?;
        drop(bus);
        drop(producer);
        drop(server);
        let pair = |a: Phase, b: Phase| {
            let (a, b) = (&results[&a], &results[&b]);
            (a.rate() / b.rate(), a.cpu_us() / b.cpu_us())
        };
        let pairs = [
            pair(Phase::PublishJetflow, Phase::PublishRaw),
            pair(Phase::ConsumeJetflow1, Phase::ConsumeRawEach),
            pair(Phase::ConsumeJetflow64, Phase::ConsumeRawEach),
            pair(Phase::ConsumeJetflow1, Phase::ConsumeRawStored),
            pair(Phase::ConsumeJetflow64, Phase::ConsumeRawStored),
        ];
        for ((name, rates, cpus), (rate, cpu)) in ratios.iter_mut().zip(pairs) {
            println!(
                "run {}: jetflow / raw, {name}: {rate:.2}x msg/s, {cpu:.2}x CPU/msg",
                run + 1
            );
            rates.push(rate);
            cpus.push(cpu);
        }
        // What the transport-neutral consume loop costs without Kafka
        // (with the in-process broker's work), beside the two Kafka sides.
        let (raw, embedded, kafka) = (
            results[&Phase::ConsumeRawStored].cpu_us(),
            results[&Phase::ConsumeEmbedded1].cpu_us(),
            results[&Phase::ConsumeJetflow1].cpu_us(),
        );
        println!(
            "run {}: CPU µs/msg at c=1: raw rdkafka {raw:.2}, jetflow on Kafka {kafka:.2}, \
             jetflow on the embedded broker {embedded:.2} (its loop and the in-process broker)",
            run + 1,
        );
        for (costs, cost) in cpu_c1.iter_mut().zip([raw, kafka, embedded]) {
            costs.push(cost);
        }
    }
    println!(
        "jetflow / raw rdkafka, median (range) over {runs} run(s); load {}:",
        load_average()
    );
    for (name, rates, cpus) in &ratios {
        let (rm, rlo, rhi) = median_range(rates);
        let (cm, clo, chi) = median_range(cpus);
        println!(
            "  {name:<36} msg/s {rm:.2}x ({rlo:.2}-{rhi:.2}), CPU/msg {cm:.2}x ({clo:.2}-{chi:.2})"
        );
    }
    for (name, costs) in [
        "raw rdkafka",
        "jetflow on Kafka",
        "jetflow on the embedded broker",
    ]
    .iter()
    .zip(&cpu_c1)
    {
        let (m, lo, hi) = median_range(costs);
        println!("  CPU µs/msg at c=1, {name:<30} {m:.2} ({lo:.2}-{hi:.2})");
    }
    Ok(())
}
