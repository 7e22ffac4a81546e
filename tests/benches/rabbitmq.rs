//! Throughput of jetflow's RabbitMQ transport against raw lapin doing the
//! same work, in one run, on one private rabbitmq-server node.
//!
//! ```text
//! cargo bench -p jetflow-tests --bench rabbitmq                        # N = 5000, 3 runs
//! JETFLOW_BENCH_N=2000 JETFLOW_BENCH_RUNS=5 cargo bench -p jetflow-tests --bench rabbitmq
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run with N = 200
//! and one run that checks every phase completes; its figures mean nothing.
//!
//! Each run measures, after `W` warm-up messages, N messages of:
//! - **publish**, 64 in flight on both sides, to the `jetflow` exchange with
//!   the same routing key, so each message lands in the same two quorum
//!   queues:
//!   - jetflow: `Bus::publish(&event)` (JSON encode, a UUIDv7 id, an
//!     RFC 3339 time, jetflow's `ce-*` headers and its sequence header;
//!     persistent, `mandatory`, AMQP timestamp, message id; the confirm
//!     awaited), 64 futures in a `FuturesUnordered`;
//!   - raw: `basic_publish` on one channel in confirm mode with the same
//!     flags and properties (persistent, `mandatory`, timestamp, a 36-byte
//!     message id) and a header table with the same names and value
//!     lengths (values precomputed, not formatted per message), the JSON
//!     encoded per message, each confirm awaited, 64 in flight.
//! - **consume**, each side on its own quorum queue holding every message
//!   (with jetflow's headers), JSON decoded into the event on both sides:
//!   - jetflow: an `App` with a `#[handler(concurrency = 64)]` that counts
//!     (the runtime then acks each message);
//!   - raw: one channel with `basic_qos` = jetflow's window for
//!     concurrency 64 (64 + its default buffer of 256 = 320), the
//!     consumer stream driven by `try_for_each_concurrent(64, ..)`: each
//!     delivery decoded, counted and acked (`multiple: false`) with up to
//!     64 acks in flight, the same per-message acks jetflow sends.
//!
//! The clock of a consume phase stops when the last message was decoded
//! and counted (its ack may still be on the way, on both sides). CPU
//! µs/msg is this process's user + system time over the phase (10 ms
//! ticks; rabbitmq-server's CPU is not counted).
//!
//! jetflow and raw alternate which goes first from run to run (A B, B A,
//! A B, ...). The ratios (jetflow / raw msg/s) are printed per run, then
//! their median and range over the runs (`JETFLOW_BENCH_RUNS`, 3 by
//! default).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::{StreamExt as _, TryStreamExt as _};
use jetflow::prelude::*;
use jetflow_tests::measure::{
    self, Counter, Measured, load_average, median_range, timed, windowed,
};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

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
/// Handler concurrency, and the raw consumer's acks in flight; the raw
/// prefetch is jetflow's window for it (concurrency plus its default
/// buffer of 256).
const CONCURRENCY: usize = 64;
const RAW_PREFETCH: u16 = 64 + 256;

#[handler(group = "bench", concurrency = 64)]
async fn consume(
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

/// A 36-byte id, the length of jetflow's UUIDv7 event ids.
fn raw_id(i: u64) -> String {
    format!("00000000-0000-7000-8000-{i:012}")
}

/// The header table jetflow sends (`ce-*`, content type, the publisher's
/// sequence), with values of the same lengths.
fn raw_headers(id: &str, i: u64) -> FieldTable {
    let mut t = FieldTable::default();
    let s = |v: &str| AMQPValue::LongString(LongString::from(v));
    t.insert("ce-specversion".into(), s("1.0"));
    t.insert("ce-id".into(), s(id));
    t.insert("ce-type".into(), s(SUBJECT));
    t.insert("ce-source".into(), s("bench-publisher"));
    t.insert("ce-time".into(), s("2026-01-01T00:00:00.123456789Z"));
    t.insert("content-type".into(), s("application/json"));
    t.insert(
        "x-jetflow-sequence".into(),
        AMQPValue::LongLongInt(i as i64),
    );
    t
}

/// One raw publish: persistent, mandatory, confirm awaited.
async fn raw_publish_one(channel: &Channel, i: u64) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(&order(i))?;
    let id = raw_id(i);
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp(1_767_225_600 + i)
        .with_headers(raw_headers(&id, i))
        .with_message_id(id.into());
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
async fn publish_raw(channel: &Channel, warm: u64, n: u64) -> anyhow::Result<Measured> {
    windowed(warm, n, IN_FLIGHT, |i| raw_publish_one(channel, i)).await
}

/// A lapin consumer reading `warm + n` messages of the raw queue: decode,
/// count, ack; `CONCURRENCY` messages at a time.
async fn consume_raw(conn: &Connection, warm: u64, n: u64) -> anyhow::Result<Measured> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(RAW_PREFETCH, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            RAW_QUEUE.into(),
            "rawbench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let counter = Counter::new(warm, n);
    consumer
        .take(usize::try_from(warm + n)?)
        .map_err(anyhow::Error::from)
        .try_for_each_concurrent(CONCURRENCY, |d| {
            let counter = &counter;
            async move {
                let o: BenchOrder = serde_json::from_slice(&d.data)?;
                black_box(&o);
                counter.hit();
                d.ack(BasicAckOptions::default()).await?;
                Ok(())
            }
        })
        .await?;
    let _ = channel.close(200, "done".into()).await;
    counter.measured()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jetflow_tests::log_to_stderr("warn");
    let (n, runs) = measure::size(5_000, 200)?;
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
    println!(
        "jetflow on RabbitMQ vs raw lapin: N = {n} after W = {warm} warm-up messages, {runs} run(s)"
    );
    println!(
        "private rabbitmq-server node at 127.0.0.1:{}, quorum queues; {cores} CPU cores shared by client and server; load {}",
        server.port(),
        load_average()
    );
    let (mut publish_ratios, mut consume_ratios) = (Vec::new(), Vec::new());
    for run in 0..runs {
        for queue in [RAW_QUEUE, jetflow_queue.as_str()] {
            channel
                .queue_purge(queue.into(), QueuePurgeOptions::default())
                .await?;
        }
        let jetflow_first = run % 2 == 0;
        // both publish phases fill both queues: 2 (W + N) messages each
        let (pj, pr) = measure::in_order(
            !jetflow_first,
            timed("publish jetflow", limit, publish_jetflow(&bus, warm, n)),
            timed("publish raw", limit, publish_raw(&channel, warm, n)),
        )
        .await;
        let (pj, pr) = (pj?, pr?);
        let jetflow_app = App::new("bench").url(&url).metrics(false);
        let (cj, cr) = measure::in_order(
            !jetflow_first,
            timed(
                "consume jetflow",
                limit,
                measure::consume_jetflow(jetflow_app, consume, warm, n),
            ),
            timed("consume raw", limit, consume_raw(&conn, warm, n)),
        )
        .await;
        let (cj, cr) = (cj?, cr?);
        println!(
            "run {}: publish ({IN_FLIGHT} in flight) jetflow {:>7.0} msg/s {:>5.1} µs/msg, raw {:>7.0} msg/s {:>5.1} µs/msg, ratio {:.2}x; \
             consume (c={CONCURRENCY}) jetflow {:>7.0} msg/s {:>5.1} µs/msg, raw {:>7.0} msg/s {:>5.1} µs/msg, ratio {:.2}x",
            run + 1,
            pj.rate(),
            pj.cpu_us(),
            pr.rate(),
            pr.cpu_us(),
            pj.rate() / pr.rate(),
            cj.rate(),
            cj.cpu_us(),
            cr.rate(),
            cr.cpu_us(),
            cj.rate() / cr.rate()
        );
        publish_ratios.push(pj.rate() / pr.rate());
        consume_ratios.push(cj.rate() / cr.rate());
    }
    let (pm, plo, phi) = median_range(&publish_ratios);
    let (cm, clo, chi) = median_range(&consume_ratios);
    println!(
        "ratio jetflow / raw lapin, median (range) over {runs} run(s): publish {pm:.2}x ({plo:.2}-{phi:.2}), consume {cm:.2}x ({clo:.2}-{chi:.2}); load {}",
        load_average()
    );
    publisher.stop().await?;
    drop(bus);
    let _ = conn.close(200, "done".into()).await;
    drop(server);
    Ok(())
}
