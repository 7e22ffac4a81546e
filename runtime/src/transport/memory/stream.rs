//! A stream of the embedded broker: stored messages, limits retention and
//! `Nats-Msg-Id` deduplication inside the duplicate window.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::consumer::Consumer;
use crate::topology::StreamDecl;
use crate::transport::Headers;

/// A stream's configuration: its subjects, dedup window and limits
/// (`0` = unlimited, as on JetStream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Config {
    pub(super) name: String,
    pub(super) subjects: Vec<String>,
    pub(super) duplicate_window: Duration,
    pub(super) max_messages: u64,
    pub(super) max_bytes: u64,
    pub(super) max_age: Duration,
    pub(super) max_message_size: u64,
    /// Refuse new messages when full (JetStream's `discard: new`), instead
    /// of dropping the oldest.
    pub(super) discard_new: bool,
}

impl Config {
    /// A stream created for `decl`, storing `subjects`, without limits.
    pub(super) fn new(decl: &StreamDecl, subjects: Vec<String>) -> Config {
        Config {
            name: decl.name.clone(),
            subjects,
            duplicate_window: decl.settings.duplicate_window,
            max_messages: 0,
            max_bytes: 0,
            max_age: Duration::ZERO,
            max_message_size: 0,
            discard_new: false,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub(super) subject: String,
    /// As delivered: the publisher's headers plus `Nats-Msg-Id`, as JetStream stores them.
    pub(super) headers: Headers,
    pub(super) payload: Bytes,
    /// Wall-clock time, for `Context::published`.
    pub(super) time: OffsetDateTime,
    /// Tokio time, for `max_age`.
    pub(super) stored_at: Instant,
    pub(super) size: u64,
}

#[derive(Debug)]
pub(super) struct Stream {
    pub(super) config: Config,
    pub(super) messages: BTreeMap<u64, Message>,
    pub(super) last_sequence: u64,
    bytes: u64,
    /// Msg id -> sequence, and the ids in the order they expire.
    dedup: HashMap<String, u64>,
    dedup_order: VecDeque<(Instant, String)>,
    pub(super) consumers: BTreeMap<String, Consumer>,
}

/// Why a publish was refused.
#[derive(Debug)]
pub(super) enum Refused {
    TooLarge(String),
    Limit(String),
}

impl Stream {
    pub(super) fn new(config: Config) -> Stream {
        Stream {
            config,
            messages: BTreeMap::new(),
            last_sequence: 0,
            bytes: 0,
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
            consumers: BTreeMap::new(),
        }
    }

    /// Drops messages older than `max_age` and dedup ids older than the window.
    pub(super) fn expire(&mut self, now: Instant) {
        if self.config.max_age > Duration::ZERO {
            while let Some((&seq, m)) = self.messages.first_key_value() {
                if now.duration_since(m.stored_at) < self.config.max_age {
                    break;
                }
                self.remove(seq);
            }
        }
        let window = self.config.duplicate_window;
        while let Some((at, _)) = self.dedup_order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
    }

    fn remove(&mut self, seq: u64) {
        self.delete(seq);
    }

    /// Deletes the message at `seq`; `false` if there was none.
    pub(super) fn delete(&mut self, seq: u64) -> bool {
        match self.messages.remove(&seq) {
            Some(m) => {
                self.bytes -= m.size;
                true
            }
            None => false,
        }
    }

    /// Stores a message whose dedup id is `msg_id`; `Ok((seq, duplicate))`.
    pub(super) fn store(
        &mut self,
        subject: &str,
        mut headers: Headers,
        payload: Bytes,
        msg_id: String,
        now: Instant,
    ) -> Result<(u64, bool), Refused> {
        self.expire(now);
        if let Some(&seq) = self.dedup.get(&msg_id) {
            return Ok((seq, true));
        }
        headers.insert(crate::transport::nats::MSG_ID, msg_id.clone());
        let size = message_size(subject, &headers, &payload);
        let c = &self.config;
        if c.max_message_size > 0 && size > c.max_message_size {
            return Err(Refused::TooLarge(format!(
                "message size {size} exceeds the stream's max_message_size {}",
                c.max_message_size
            )));
        }
        let full_count = c.max_messages > 0 && self.messages.len() as u64 >= c.max_messages;
        let full_bytes = c.max_bytes > 0 && self.bytes + size > c.max_bytes;
        if c.discard_new && (full_count || full_bytes) {
            return Err(Refused::Limit(
                if full_count {
                    "maximum messages exceeded"
                } else {
                    "maximum bytes exceeded"
                }
                .into(),
            ));
        }
        self.last_sequence += 1;
        let seq = self.last_sequence;
        self.messages.insert(
            seq,
            Message {
                subject: subject.to_owned(),
                headers,
                payload,
                time: OffsetDateTime::now_utc(),
                stored_at: now,
                size,
            },
        );
        self.bytes += size;
        // discard = old: drop the oldest until within the limits
        let (max_msgs, max_bytes) = (self.config.max_messages, self.config.max_bytes);
        while (max_msgs > 0 && self.messages.len() as u64 > max_msgs)
            || (max_bytes > 0 && self.bytes > max_bytes)
        {
            let Some((&oldest, _)) = self.messages.first_key_value() else {
                break;
            };
            self.remove(oldest);
        }
        if self.config.duplicate_window > Duration::ZERO {
            self.dedup.insert(msg_id.clone(), seq);
            self.dedup_order.push_back((now, msg_id));
        }
        Ok((seq, false))
    }
}

/// Size as JetStream counts it (roughly): subject, headers and payload.
pub(super) fn message_size(subject: &str, headers: &Headers, payload: &[u8]) -> u64 {
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    (subject.len() + header_bytes + payload.len()) as u64
}
