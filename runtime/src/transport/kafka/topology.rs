//! Topics from jetflow's stream declarations, and reading topics and
//! consumer groups back (DLQ listing, consumer counts).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::leave::Detached;
use super::{KafkaOptions, REQUEST_TIMEOUT, wire};
use crate::topology::{ConsumerState, StreamDecl, TopologyError};
use crate::transport::Stored;

/// The topic where every app records the subjects of the streams it
/// declared, so that any publisher can route a subject to its topic.
pub(super) const REGISTRY: &str = "jetflow-streams";

/// Creates the topic of every stream that has none yet, and the registry.
pub(super) async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    streams: &[StreamDecl],
    options: KafkaOptions,
) -> Result<(), TopologyError> {
    let one = |name| NewTopic::new(name, 1, TopicReplication::Fixed(options.replication));
    let topics: Vec<NewTopic<'_>> = streams
        .iter()
        .map(|s| {
            let partitions = if s.name == crate::dlq::STREAM {
                1
            } else {
                options.partitions
            };
            NewTopic::new(
                &s.name,
                partitions,
                TopicReplication::Fixed(options.replication),
            )
        })
        .chain(std::iter::once(one(REGISTRY)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(|e| TopologyError::create("the stream topics", HINT, e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopologyError::create(
                    format!("topic `{topic}`"),
                    HINT,
                    rdkafka::error::KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

const HINT: &str = "check that the cluster allows creating topics (or create them beforehand, \
     named after the streams) and that the replication factor fits the brokers";

/// Whether `topic` exists (blocking).
pub(super) fn topic_exists<C: ClientContext>(client: &Client<C>, topic: &str) -> KafkaResult<bool> {
    let metadata = client.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

/// A partition with its low and high watermarks.
type Watermarks = (i32, i64, i64);

/// The partitions of `topic` with their low and high watermarks
/// (blocking); `None` when there is no such topic.
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<Option<Vec<Watermarks>>, TopologyError> {
    let read = |e| TopologyError::read(format!("topic `{topic}`"), "read", e);
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(read)?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    let Some(t) = found else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
            .map_err(read)?;
        out.push((p.id(), low, high));
    }
    Ok(Some(out))
}

/// Every record of `topic`, partition by partition, oldest first
/// (blocking); `None` when there is no such topic.
pub(super) fn read_topic(
    config: &ClientConfig,
    topic: &str,
) -> Result<Option<Vec<Stored>>, TopologyError> {
    let read = |e| TopologyError::read(format!("topic `{topic}`"), "read", e);
    let consumer: Detached<BaseConsumer> = Detached::new(config.create().map_err(read)?);
    let Some(marks) = watermarks(&consumer, topic)? else {
        return Ok(None);
    };
    let mut list = TopicPartitionList::new();
    let mut left: HashMap<i32, i64> = HashMap::new();
    for &(partition, low, high) in &marks {
        if high > low {
            list.add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(read)?;
            left.insert(partition, high);
        }
    }
    let mut stored = Vec::new();
    if left.is_empty() {
        return Ok(Some(stored));
    }
    consumer.assign(&list).map_err(read)?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while !left.is_empty() {
        if Instant::now() > deadline {
            return Err(TopologyError::read(
                format!("topic `{topic}`"),
                "read",
                "the records up to the high watermark did not arrive in time",
            ));
        }
        let Some(record) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let record = record.map_err(read)?;
        let (partition, offset) = (record.partition(), record.offset());
        if left.get(&partition).is_some_and(|&high| offset + 1 >= high) {
            left.remove(&partition);
        }
        if let Some((subject, headers)) = wire::decode(record.headers()) {
            stored.push(Stored::new(
                wire::sequence(partition, offset),
                subject,
                headers,
                Bytes::copy_from_slice(record.payload().unwrap_or_default()),
            ));
        }
    }
    stored.sort_by_key(|s| s.sequence);
    Ok(Some(stored))
}

/// The counts of the consumer group `config` names on `topic` (blocking).
pub(super) fn group_state(
    config: &ClientConfig,
    topic: &str,
) -> Result<ConsumerState, TopologyError> {
    let read = |e| TopologyError::read(format!("the consumer group on `{topic}`"), "read", e);
    let consumer: Detached<BaseConsumer> = Detached::new(config.create().map_err(read)?);
    let Some(marks) = watermarks(&consumer, topic)? else {
        return Err(TopologyError::read(
            format!("the consumer group on `{topic}`"),
            "read",
            format!("there is no topic `{topic}`"),
        ));
    };
    let mut list = TopicPartitionList::new();
    for &(partition, ..) in &marks {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, REQUEST_TIMEOUT)
        .map_err(read)?;
    let mut state = ConsumerState::default();
    for (partition, low, high) in marks {
        let at = committed
            .find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(low);
        let done = u64::try_from(at).unwrap_or(0);
        state.ack_floor += done;
        state.delivered += done;
        state.num_pending += u64::try_from(high - at).unwrap_or(0);
    }
    Ok(state)
}
