//! Queues, bindings and counts: jetflow's topology on RabbitMQ.

use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Queue};

use super::{RabbitMqTransport, timeout, wire};
use crate::topology::{
    ConsumerDecl, ConsumerState, ConsumerView, StreamDecl, TopologyError, TopologyPolicy,
};
use crate::transport::{ConsumerStatus, Stored};

/// A stream read back stops once nothing more arrives for this long (the
/// end of a RabbitMQ stream is not announced to an AMQP consumer).
const READ_IDLE: Duration = Duration::from_millis(300);
/// At most this long for a whole read.
const READ_LIMIT: Duration = Duration::from_secs(20);

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert((*k).into(), v.clone());
    }
    table
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Whether `e` is RabbitMQ's `404 NOT_FOUND`.
pub(super) fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404)
}

/// Whether `e` is RabbitMQ's `406 PRECONDITION_FAILED` (declared otherwise).
fn differs(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 406)
}

/// `queue` exists (a passive declare, on a channel of its own: a failed
/// one closes it).
async fn inspect(t: &RabbitMqTransport, queue: &str) -> Result<Queue, lapin::Error> {
    let channel = t.channel().await?;
    timeout(channel.queue_declare(queue.into(), passive(), FieldTable::default())).await
}

/// Declares `queue` with `arguments` and binds it to `keys`, by `policy`.
async fn ensure_queue(
    t: &RabbitMqTransport,
    what: &str,
    queue: &str,
    arguments: FieldTable,
    keys: &[String],
    policy: TopologyPolicy,
) -> Result<(), TopologyError> {
    if policy == TopologyPolicy::BindOnly {
        return match inspect(t, queue).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(TopologyError::missing(
                what,
                "start the app once with a topology policy that may create it, or declare the queue",
            )),
            Err(e) => Err(TopologyError::read(what, "look up", e)),
        };
    }
    let channel = t
        .channel()
        .await
        .map_err(|e| TopologyError::create(what, "RabbitMQ is unreachable", e))?;
    if let Err(e) = timeout(channel.queue_declare(queue.into(), durable(), arguments)).await {
        return Err(if differs(&e) {
            TopologyError::drift(
                what,
                format!("the queue `{queue}` exists with other arguments: {e}"),
                "delete the queue (rabbitmqctl delete_queue) so jetflow declares it again; its \
                 messages are lost",
            )
        } else {
            TopologyError::create(what, "", e)
        });
    }
    bind(&channel, what, queue, keys).await
}

async fn bind(
    channel: &Channel,
    what: &str,
    queue: &str,
    keys: &[String],
) -> Result<(), TopologyError> {
    for key in keys {
        timeout(channel.queue_bind(
            queue.into(),
            wire::EXCHANGE.into(),
            wire::binding_key(key).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await
        .map_err(|e| TopologyError::create(what, "binding it to the jetflow exchange failed", e))?;
    }
    Ok(())
}

/// The exchange (declared with every session) and, for the DLQ, the
/// RabbitMQ stream that keeps it. Other streams store nothing by
/// themselves: the queues of their groups do.
pub(super) async fn declare_streams(
    t: &RabbitMqTransport,
    streams: &[StreamDecl],
    policy: TopologyPolicy,
) -> Result<(), TopologyError> {
    t.session()
        .await
        .map_err(|e| TopologyError::create("the jetflow exchange", "RabbitMQ is unreachable", e))?;
    for s in streams.iter().filter(|s| s.name == crate::dlq::STREAM) {
        let queue = wire::store_queue(&s.name);
        let arguments = args(&[("x-queue-type", AMQPValue::LongString("stream".into()))]);
        ensure_queue(
            t,
            &format!("stream {}", s.name),
            &queue,
            arguments,
            &s.patterns(),
            policy,
        )
        .await?;
    }
    Ok(())
}

/// The group's quorum queue, bound to its subject (or, without a filter,
/// to every subject of its stream).
pub(super) async fn declare_consumer(
    t: &RabbitMqTransport,
    c: &ConsumerDecl,
    stream_patterns: &[String],
    policy: TopologyPolicy,
) -> Result<ConsumerView, TopologyError> {
    let queue = wire::group_queue(&c.stream, &c.durable);
    let keys = if c.filter_subject.is_empty() {
        stream_patterns.to_vec()
    } else {
        vec![c.filter_subject.clone()]
    };
    let arguments = args(&[("x-queue-type", AMQPValue::LongString("quorum".into()))]);
    ensure_queue(
        t,
        &format!("consumer {}/{}", c.stream, c.durable),
        &queue,
        arguments,
        &keys,
        policy,
    )
    .await?;
    Ok(ConsumerView::declared(c))
}

/// The queue `jetflow.delay.{ms}.{queue}`: messages wait `ms`, then go back
/// to `queue` through the default exchange. It removes itself when unused
/// for a minute past the delay.
pub(super) async fn declare_delay_queue(
    t: &RabbitMqTransport,
    name: &str,
    queue: &str,
    ms: u64,
) -> Result<(), lapin::Error> {
    let channel = t.channel().await?;
    let ms_value = i64::try_from(ms).unwrap_or(i64::MAX);
    let arguments = args(&[
        ("x-message-ttl", AMQPValue::LongLongInt(ms_value)),
        ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
        (
            "x-dead-letter-routing-key",
            AMQPValue::LongString(LongString::from(queue)),
        ),
        (
            "x-expires",
            AMQPValue::LongLongInt(ms_value.saturating_mul(2).saturating_add(60_000)),
        ),
    ]);
    timeout(channel.queue_declare(name.into(), durable(), arguments)).await?;
    Ok(())
}

/// Whether the group's queue exists.
pub(super) async fn consumer_status(t: &RabbitMqTransport, c: &ConsumerDecl) -> ConsumerStatus {
    match inspect(t, &wire::group_queue(&c.stream, &c.durable)).await {
        Ok(_) => ConsumerStatus::Exists,
        Err(e) if is_not_found(&e) => ConsumerStatus::Missing,
        Err(e) => ConsumerStatus::Unavailable(e.to_string()),
    }
}

/// What AMQP tells of a group's queue: its ready messages.
pub(super) async fn consumer_state(
    t: &RabbitMqTransport,
    stream: &str,
    durable: &str,
) -> Result<ConsumerState, TopologyError> {
    let what = format!("consumer {stream}/{durable}");
    match inspect(t, &wire::group_queue(stream, durable)).await {
        Ok(q) => Ok(ConsumerState {
            num_pending: u64::from(q.message_count()),
            ..ConsumerState::default()
        }),
        Err(e) if is_not_found(&e) => Err(TopologyError::missing(
            what,
            "start the app whose handler declares it",
        )),
        Err(e) => Err(TopologyError::read(what, "read", e)),
    }
}

/// Every message of the RabbitMQ stream keeping `stream`, from its first
/// offset; sequences are offsets + 1.
pub(super) async fn read_stream(
    t: &RabbitMqTransport,
    stream: &str,
) -> Result<Vec<Stored>, TopologyError> {
    let what = format!("stream {stream}");
    if stream != crate::dlq::STREAM {
        return Err(TopologyError::read(
            what,
            "read",
            "on RabbitMQ only the DLQ is kept in a stream that can be read back; the messages of \
             other streams live in their groups' queues",
        ));
    }
    let queue = wire::store_queue(stream);
    match inspect(t, &queue).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            return Err(TopologyError::missing(
                what,
                "start an app with handlers once: it declares the DLQ",
            ));
        }
        Err(e) => return Err(TopologyError::read(what, "look up", e)),
    }
    let read = async {
        let channel = t.channel().await?;
        timeout(channel.basic_qos(1000, BasicQosOptions::default())).await?;
        let mut consumer = timeout(channel.basic_consume(
            queue.as_str().into(),
            format!("jetflow-read-{}", uuid::Uuid::now_v7().simple()).into(),
            BasicConsumeOptions::default(),
            args(&[("x-stream-offset", AMQPValue::LongString("first".into()))]),
        ))
        .await?;
        let mut stored = Vec::new();
        while let Ok(Some(delivery)) = tokio::time::timeout(READ_IDLE, consumer.next()).await {
            let d = delivery?;
            let table = d.properties.headers().as_ref();
            let offset = wire::int_header(table, wire::STREAM_OFFSET).unwrap_or(0);
            stored.push(Stored::new(
                offset + 1,
                d.routing_key.to_string(),
                wire::headers(table),
                d.data.clone().into(),
            ));
            // a stream consumer needs acks to get more (credit)
            let _ = d.ack(lapin::options::BasicAckOptions::default()).await;
        }
        let _ = channel.close(200, "read".into()).await;
        Ok::<_, lapin::Error>(stored)
    };
    match tokio::time::timeout(READ_LIMIT, read).await {
        Ok(Ok(stored)) => Ok(stored),
        Ok(Err(e)) => Err(TopologyError::read(what, "read", e)),
        Err(_) => Err(TopologyError::read(
            what,
            "read",
            format!("reading did not end within {READ_LIMIT:?}"),
        )),
    }
}
