//! A durable pull consumer of the embedded broker: the delivery cursor,
//! the messages delivered and not yet acknowledged, their ack-wait and
//! nak-delay timers, and redelivery.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::stream::{Message, Stream};
use crate::event::subject_matches;
use crate::topology::DeliverPolicy;
use crate::topology::{ConsumerDecl, ConsumerState, ConsumerView};

/// A consumer's configuration, with what nats-server fills in for fields
/// left at zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Config {
    pub(super) filter_subject: String,
    pub(super) ack_wait: Duration,
    /// `-1`: unlimited.
    pub(super) max_deliver: i64,
    pub(super) deliver: DeliverPolicy,
    pub(super) max_ack_pending: u64,
}

impl Config {
    pub(super) fn of(decl: &ConsumerDecl) -> Config {
        Config {
            filter_subject: decl.filter_subject.clone(),
            ack_wait: if decl.ack_wait.is_zero() {
                Duration::from_secs(30)
            } else {
                decl.ack_wait
            },
            max_deliver: decl.broker_max_deliver(),
            deliver: decl.deliver,
            max_ack_pending: 1000,
        }
    }

    /// In jetflow's terms, for the topology plan.
    pub(super) fn view(&self) -> ConsumerView {
        ConsumerView {
            filter_subject: self.filter_subject.clone(),
            explicit_ack: true,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            deliver: Some(self.deliver),
        }
    }
}

/// A delivered message that is neither acked nor terminated.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Deliveries so far.
    delivered: u64,
    /// Consumer sequence of the latest delivery.
    consumer_sequence: u64,
    due: Due,
}

#[derive(Debug, Clone, Copy)]
enum Due {
    /// Delivered; redelivered if not acked by this time.
    AckBy(Instant),
    /// Nak'd or expired; may be redelivered from this time.
    RedeliverAt(Instant),
}

#[derive(Debug)]
pub(super) struct Consumer {
    pub(super) config: Config,
    /// Distinguishes a consumer from a later one of the same name.
    pub(super) incarnation: u64,
    /// Highest stream sequence looked at for a first delivery.
    cursor: u64,
    consumer_sequence: u64,
    /// Highest stream sequence delivered.
    delivered_stream: u64,
    slots: BTreeMap<u64, Slot>,
    /// Pull requests waiting, per inbox.
    pub(super) waiting: HashMap<u64, usize>,
}

/// What a delivery carries out of the consumer.
#[derive(Debug)]
pub(super) struct Delivered {
    pub(super) stream_sequence: u64,
    pub(super) consumer_sequence: u64,
    pub(super) delivered: u64,
}

impl Consumer {
    /// A new consumer on `stream`.
    pub(super) fn new(config: Config, stream: &Stream, incarnation: u64) -> Consumer {
        let cursor = match config.deliver {
            DeliverPolicy::New => stream.last_sequence,
            DeliverPolicy::Last => stream
                .messages
                .iter()
                .rev()
                .find(|(_, m)| matches_filter(&config, &m.subject))
                .map_or(stream.last_sequence, |(&seq, _)| seq - 1),
            DeliverPolicy::All => 0,
        };
        Consumer {
            config,
            incarnation,
            cursor,
            consumer_sequence: 0,
            delivered_stream: 0,
            slots: BTreeMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// Applies an update (the fields JetStream lets change); the rest must
    /// be equal, or the update is refused with the reason.
    pub(super) fn update(&mut self, config: Config) -> Result<(), String> {
        if config.deliver != self.config.deliver {
            return Err("deliver_policy can not be updated".into());
        }
        self.config = config;
        Ok(())
    }

    fn ack_wait(&self) -> Duration {
        self.config.ack_wait
    }

    fn exhausted(&self, delivered: u64) -> bool {
        self.config.max_deliver > 0 && delivered >= self.config.max_deliver as u64
    }

    /// Turns expired ack deadlines into redeliveries (or drops the message
    /// once max_deliver is reached, as JetStream does).
    fn sweep(&mut self, now: Instant) {
        let max_deliver = self.config.max_deliver;
        self.slots.retain(|_, slot| match slot.due {
            Due::AckBy(deadline) if deadline <= now => {
                if max_deliver > 0 && slot.delivered >= max_deliver as u64 {
                    false
                } else {
                    slot.due = Due::RedeliverAt(deadline);
                    true
                }
            }
            _ => true,
        });
    }

    /// The next message to deliver now, if any: redeliveries first (lowest
    /// sequence), then new messages, while `max_ack_pending` allows.
    pub(super) fn take(
        &mut self,
        messages: &BTreeMap<u64, Message>,
        last_sequence: u64,
        now: Instant,
    ) -> Option<Delivered> {
        self.sweep(now);
        loop {
            let ready = self
                .slots
                .iter()
                .find(|(_, s)| matches!(s.due, Due::RedeliverAt(t) if t <= now))
                .map(|(&seq, _)| seq);
            let Some(seq) = ready else { break };
            if !messages.contains_key(&seq) {
                // removed by the stream's limits meanwhile
                self.slots.remove(&seq);
                continue;
            }
            return Some(self.deliver(seq, now));
        }
        if self.config.max_ack_pending > 0 && self.slots.len() as u64 >= self.config.max_ack_pending
        {
            return None;
        }
        let mut next = None;
        for (&seq, m) in messages.range(self.cursor + 1..) {
            self.cursor = seq;
            if matches_filter(&self.config, &m.subject) {
                next = Some(seq);
                break;
            }
        }
        if next.is_none() {
            self.cursor = self.cursor.max(last_sequence);
        }
        next.map(|seq| self.deliver(seq, now))
    }

    fn deliver(&mut self, seq: u64, now: Instant) -> Delivered {
        self.consumer_sequence += 1;
        let slot = self.slots.entry(seq).or_insert(Slot {
            delivered: 0,
            consumer_sequence: 0,
            due: Due::AckBy(now),
        });
        slot.delivered += 1;
        slot.consumer_sequence = self.consumer_sequence;
        slot.due = Due::AckBy(now + self.config.ack_wait);
        self.delivered_stream = self.delivered_stream.max(seq);
        Delivered {
            stream_sequence: seq,
            consumer_sequence: self.consumer_sequence,
            delivered: slot.delivered,
        }
    }

    /// When something becomes deliverable or expires next (after `now`).
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .map(|s| match s.due {
                Due::AckBy(t) | Due::RedeliverAt(t) => t,
            })
            .min()
    }

    /// Ack or term: done for good. Accepted from any delivery of the
    /// message, a late one included (as JetStream does).
    pub(super) fn settle(&mut self, seq: u64) {
        self.slots.remove(&seq);
    }

    /// Nak: redeliver after `delay`, unless the deliveries are exhausted.
    /// Ignored when it comes from an older delivery than the latest.
    pub(super) fn nak(&mut self, seq: u64, consumer_sequence: u64, delay: Duration, now: Instant) {
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        if slot.consumer_sequence != consumer_sequence {
            return;
        }
        if self.config.max_deliver > 0 && slot.delivered >= self.config.max_deliver as u64 {
            self.slots.remove(&seq);
        } else {
            slot.due = Due::RedeliverAt(now + delay);
        }
    }

    /// In progress: restart the ack-wait timer of the latest delivery.
    pub(super) fn progress(&mut self, seq: u64, consumer_sequence: u64, now: Instant) {
        let ack_wait = self.ack_wait();
        if let Some(slot) = self.slots.get_mut(&seq)
            && slot.consumer_sequence == consumer_sequence
            && matches!(slot.due, Due::AckBy(_))
        {
            slot.due = Due::AckBy(now + ack_wait);
        }
    }

    pub(super) fn state(&self, stream: &Stream, now: Instant) -> ConsumerState {
        let mut this = ConsumerState::default();
        let pending_first = stream
            .messages
            .range(self.cursor + 1..)
            .filter(|(_, m)| matches_filter(&self.config, &m.subject))
            .count() as u64;
        this.num_pending = pending_first;
        // expired ones are still ack-pending (until redelivered or exhausted)
        this.num_ack_pending = self
            .slots
            .values()
            .filter(|s| {
                !(self.exhausted(s.delivered) && matches!(s.due, Due::AckBy(t) if t <= now))
            })
            .count() as u64;
        this.num_redelivered = self.slots.values().filter(|s| s.delivered > 1).count() as u64;
        this.num_waiting = self.waiting.values().filter(|&&n| n > 0).count() as u64;
        this.delivered = self.delivered_stream;
        this.ack_floor = match self.slots.keys().next() {
            Some(&first) => (first - 1).min(self.delivered_stream),
            None => self.delivered_stream,
        };
        this
    }
}

fn matches_filter(config: &Config, subject: &str) -> bool {
    config.filter_subject.is_empty() || subject_matches(&config.filter_subject, subject)
}
