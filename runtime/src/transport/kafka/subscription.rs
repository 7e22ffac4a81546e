//! [`KafkaSubscription`]: one member of a consumer group (the handler's
//! durable), and [`KafkaAcker`], which settles its deliveries.
//!
//! Offsets are committed per partition up to the contiguous handled
//! watermark: the lowest offset still in flight, or one past the highest
//! delivered when nothing is. A record is never committed past while one
//! before it is unfinished, so a crash or a rebalance redelivers exactly
//! the unfinished records (and perhaps some finished after them: at least
//! once). A retry is delivered again by this subscription (its offset stays
//! in flight) with its delivery count one higher.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::leave::{Detached, Leaving};
use super::wire;
use crate::event::subject_matches;
use crate::transport::{
    Acker, DeliveryInfo, Headers, Inbound, Lost, Message, Settle, SettleError, Subscription,
};

/// The partitions this member owns, shared with the rebalance callbacks.
#[derive(Default)]
pub(super) struct Tracker {
    partitions: HashMap<i32, Partition>,
    /// Bumped at every assignment: an acker of an older one does nothing.
    generation: u64,
}

struct Partition {
    generation: u64,
    /// Offsets delivered and not settled.
    in_flight: BTreeSet<i64>,
    /// Those of `in_flight` given back at a close: left uncommitted.
    given_back: BTreeSet<i64>,
    /// One past the highest offset delivered.
    next: i64,
    /// The last offset committed (or to be committed).
    committed: i64,
}

impl Tracker {
    /// The watermark of `partition` if it moved past the committed one.
    fn advance(&mut self, partition: i32) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        let mark = p.in_flight.first().copied().unwrap_or(p.next);
        (mark > p.committed).then(|| {
            p.committed = mark;
            mark
        })
    }
}

/// Keeps the [`Tracker`] in step with the group's assignments.
pub(super) struct Rebalancing {
    pub(super) tracker: Arc<Mutex<Tracker>>,
}

impl ClientContext for Rebalancing {}

impl ConsumerContext for Rebalancing {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            tracing::warn!(error = %e, partitions = offsets.count(), "kafka: an offset commit failed; the group may redeliver records already handled");
        }
    }

    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut t = lock(&self.tracker);
            for e in list.elements() {
                // what was settled is committed already; what was not comes
                // back to the partition's next owner
                t.partitions.remove(&e.partition());
            }
            tracing::debug!(revoked = list.count(), "kafka partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let mut t = lock(&self.tracker);
            t.generation += 1;
            let generation = t.generation;
            for e in list.elements() {
                t.partitions.insert(
                    e.partition(),
                    Partition {
                        generation,
                        in_flight: BTreeSet::new(),
                        given_back: BTreeSet::new(),
                        next: -1,
                        committed: -1,
                    },
                );
            }
            tracing::debug!(assigned = list.count(), "kafka partitions assigned");
        }
    }
}

fn lock(t: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) type Consumer = StreamConsumer<Rebalancing>;

/// One member of a consumer group: the state a [`KafkaSubscription`]
/// shares with its ackers and, once closed, with [`Leaving`].
pub(super) struct Member {
    /// Set by `close`: a retry is given back (left uncommitted) rather
    /// than delivered again.
    closing: AtomicBool,
    consumer: Detached<Consumer>,
    tracker: Arc<Mutex<Tracker>>,
    topic: String,
}

impl Member {
    /// Is `partition` still this member's, in assignment `generation`?
    fn owns(&self, partition: i32, generation: u64) -> bool {
        lock(&self.tracker)
            .partitions
            .get(&partition)
            .is_some_and(|p| p.generation == generation)
    }

    /// `offset` of `partition` (of assignment `generation`) is settled:
    /// stores the new watermark, if it moved, for librdkafka's next commit
    /// (every [`COMMIT_INTERVAL`](super::config::COMMIT_INTERVAL), at a rebalance
    /// and when the member leaves).
    fn settled(&self, partition: i32, offset: i64, generation: u64) -> Result<(), SettleError> {
        let mark = {
            let mut t = lock(&self.tracker);
            match t.partitions.get_mut(&partition) {
                Some(p) if p.generation == generation => {
                    p.in_flight.remove(&offset);
                }
                // revoked since: its next owner has it
                _ => return Ok(()),
            }
            t.advance(partition)
        };
        let Some(mark) = mark else { return Ok(()) };
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(mark))
            .map_err(|e| SettleError::new("store the offset of", e))?;
        match self.consumer.store_offsets(&list) {
            // revoked meanwhile (the callback has not run yet): its next
            // owner has it
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::State) => Ok(()),
            r => r.map_err(|e| SettleError::new("store the offset of", e)),
        }
    }
}

impl Member {
    /// `offset` stays uncommitted: the partition's next owner gets it.
    fn give_back(&self, partition: i32, offset: i64, generation: u64) {
        let mut t = lock(&self.tracker);
        if let Some(p) = t.partitions.get_mut(&partition)
            && p.generation == generation
        {
            p.given_back.insert(offset);
        }
    }

    /// Every record delivered is settled or given back.
    pub(super) fn drained(&self) -> bool {
        lock(&self.tracker)
            .partitions
            .values()
            .all(|p| p.in_flight.iter().all(|o| p.given_back.contains(o)))
    }

    /// Commits the watermarks synchronously and leaves the group (blocking:
    /// see [`Leaving`]).
    pub(super) fn leave(&self) {
        let marks: Vec<(i32, i64)> = lock(&self.tracker)
            .partitions
            .iter()
            .filter(|(_, p)| p.committed >= 0)
            .map(|(partition, p)| (*partition, p.committed))
            .collect();
        let mut list = TopicPartitionList::new();
        for (partition, mark) in marks {
            let _ = list.add_partition_offset(&self.topic, partition, Offset::Offset(mark));
        }
        if list.count() > 0
            && let Err(e) = self.consumer.commit(&list, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "kafka: the last commit failed; the group redelivers what it did not record");
        }
        self.consumer.unsubscribe();
    }
}

/// A retry on its way back to the subscription.
struct Again {
    message: Message<KafkaAcker>,
}

/// One member of the consumer group of a durable: see the [module
/// docs](super) for how records map to deliveries.
pub struct KafkaSubscription {
    shared: Arc<Member>,
    credits: usize,
    again_tx: mpsc::UnboundedSender<Again>,
    again_rx: mpsc::UnboundedReceiver<Again>,
    filter: String,
    stream: Arc<str>,
    durable: Arc<str>,
    leaving: Arc<Leaving>,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription")
            .field("topic", &self.shared.topic)
            .field("durable", &self.durable)
            .field("credits", &self.credits)
            .finish_non_exhaustive()
    }
}

impl KafkaSubscription {
    pub(super) fn new(
        consumer: Consumer,
        tracker: Arc<Mutex<Tracker>>,
        topic: String,
        filter: String,
        durable: &str,
        leaving: Arc<Leaving>,
    ) -> KafkaSubscription {
        let (again_tx, again_rx) = mpsc::unbounded_channel();
        KafkaSubscription {
            stream: Arc::from(topic.as_str()),
            shared: Arc::new(Member {
                closing: AtomicBool::new(false),
                consumer: Detached::new(consumer),
                tracker,
                topic,
            }),
            credits: 0,
            again_tx,
            again_rx,
            filter,
            durable: Arc::from(durable),
            leaving,
        }
    }

    /// A record received: a delivery, or `None` when it is another
    /// subject's (settled at once) or not jetflow's.
    fn delivery(
        &self,
        record: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Option<Message<KafkaAcker>> {
        let (partition, offset) = (record.partition(), record.offset());
        let generation = {
            let mut t = lock(&self.shared.tracker);
            let p = t.partitions.get_mut(&partition)?;
            p.in_flight.insert(offset);
            p.next = p.next.max(offset + 1);
            if p.committed < 0 {
                // the first record of this assignment: everything before it
                // was committed by a previous owner
                p.committed = offset;
            }
            p.generation
        };
        let decoded = wire::decode(record.headers());
        let wanted = decoded
            .as_ref()
            .is_some_and(|(subject, _)| subject_matches(&self.filter, subject));
        if !wanted {
            let _ = self.shared.settled(partition, offset, generation);
            return None;
        }
        let (subject, headers) = decoded?;
        let published = record
            .timestamp()
            .to_millis()
            .and_then(|ms| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .unwrap_or_else(OffsetDateTime::now_utc);
        let info = DeliveryInfo::new(
            self.stream.clone(),
            self.durable.clone(),
            wire::sequence(partition, offset),
            1,
            published,
        );
        let acker = KafkaAcker {
            shared: Arc::downgrade(&self.shared),
            again: self.again_tx.clone(),
            partition,
            offset,
            generation,
            copy: Arc::new(Copy {
                subject: subject.clone(),
                headers: headers.clone(),
                payload: Bytes::copy_from_slice(record.payload().unwrap_or_default()),
                info: info.clone(),
            }),
        };
        let payload = acker.copy.payload.clone();
        Some(Message::new(subject, headers, payload, info, acker))
    }
}

impl Subscription for KafkaSubscription {
    type Acker = KafkaAcker;

    fn grant(&mut self, credits: usize) {
        self.credits += credits;
    }

    async fn next(&mut self) -> Inbound<KafkaAcker> {
        loop {
            if self.credits == 0 {
                // no room: the records wait in Kafka (and librdkafka's fetch
                // buffer), where nothing expires
                std::future::pending::<()>().await;
            }
            let shared = self.shared.clone();
            tokio::select! {
                biased;
                Some(again) = self.again_rx.recv() => {
                    if again.message.acker.is_current() {
                        self.credits -= 1;
                        return Inbound::Message(again.message);
                    }
                }
                record = shared.consumer.recv() => match record {
                    Ok(record) => {
                        if let Some(message) = self.delivery(&record) {
                            self.credits -= 1;
                            return Inbound::Message(message);
                        }
                    }
                    Err(e) if is_fatal(&e) => {
                        return Inbound::Lost(Lost::Unavailable(format!("kafka consumer: {e}")));
                    }
                    Err(e) => tracing::debug!(error = %e, "kafka consumer error (librdkafka retries)"),
                },
            }
        }
    }

    async fn close(mut self) -> usize {
        // Deliveries still running are settled after this returns (the
        // runtime finishes them alongside); unstarted ones are given back
        // with a retry. The member stays in the group until all are
        // settled or given back, commits its watermarks and leaves (see
        // `Leaving`): what was given back stays uncommitted and comes to
        // the partition's next owner.
        self.shared.closing.store(true, Ordering::SeqCst);
        let mut given_back = 0;
        while let Ok(again) = self.again_rx.try_recv() {
            let a = &again.message.acker;
            self.shared.give_back(a.partition, a.offset, a.generation);
            given_back += 1;
        }
        self.leaving.start(self.shared);
        given_back
    }
}

/// Errors after which the consumer cannot go on.
fn is_fatal(e: &rdkafka::error::KafkaError) -> bool {
    e.rdkafka_error_code()
        .is_some_and(|c| c == rdkafka::types::RDKafkaErrorCode::Fatal)
}

/// What a retry is delivered again with.
#[derive(Debug)]
struct Copy {
    subject: String,
    headers: Headers,
    payload: Bytes,
    info: DeliveryInfo,
}

/// Settles one delivery of a [`KafkaSubscription`]: ack and reject move
/// the partition's committed watermark; a retry delivers it again to the
/// same subscription (delivery count + 1, the offset still uncommitted);
/// progress does nothing (nothing expires on Kafka).
#[derive(Debug, Clone)]
pub struct KafkaAcker {
    shared: Weak<Member>,
    again: mpsc::UnboundedSender<Again>,
    partition: i32,
    offset: i64,
    generation: u64,
    copy: Arc<Copy>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Again {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Again").finish_non_exhaustive()
    }
}

impl KafkaAcker {
    fn again(&self) {
        match self.shared.upgrade() {
            Some(shared) if shared.closing.load(Ordering::SeqCst) => {
                shared.give_back(self.partition, self.offset, self.generation);
                return;
            }
            None => return,
            Some(_) => {}
        }
        let mut info = self.copy.info.clone();
        info.delivered += 1;
        let acker = KafkaAcker {
            copy: Arc::new(Copy {
                subject: self.copy.subject.clone(),
                headers: self.copy.headers.clone(),
                payload: self.copy.payload.clone(),
                info: info.clone(),
            }),
            ..self.clone()
        };
        let message = Message::new(
            self.copy.subject.clone(),
            self.copy.headers.clone(),
            self.copy.payload.clone(),
            info,
            acker,
        );
        // a closed subscription left it uncommitted: the group redelivers it
        let _ = self.again.send(Again { message });
    }
}

impl Acker for KafkaAcker {
    fn is_current(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|s| s.owns(self.partition, self.generation))
    }

    async fn settle(&self, settle: Settle) -> Result<(), SettleError> {
        match settle {
            Settle::Ack | Settle::Reject => match self.shared.upgrade() {
                Some(shared) => shared.settled(self.partition, self.offset, self.generation),
                // closed: left uncommitted, so the group redelivers it
                None => Ok(()),
            },
            Settle::Progress => Ok(()),
            Settle::Retry(_)
                if self
                    .shared
                    .upgrade()
                    .is_none_or(|s| s.closing.load(Ordering::SeqCst)) =>
            {
                if let Some(shared) = self.shared.upgrade() {
                    shared.give_back(self.partition, self.offset, self.generation);
                }
                Ok(())
            }
            Settle::Retry(delay) => {
                if delay.is_zero() {
                    self.again();
                } else {
                    let me = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        me.again();
                    });
                }
                Ok(())
            }
        }
    }
}
