//! A stream of the embedded broker: stored messages, limits retention and
//! `Nats-Msg-Id` deduplication inside the duplicate window.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::stream::{self, DiscardPolicy};
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::consumer::Consumer;
use crate::publish::headers::NATS_MSG_ID;

/// One stored message.
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub(super) subject: String,
    pub(super) headers: HeaderMap,
    pub(super) payload: Bytes,
    /// Wall-clock time, for `Context::published`.
    pub(super) time: OffsetDateTime,
    /// Tokio time, for `max_age`.
    pub(super) stored_at: Instant,
    pub(super) size: u64,
}

#[derive(Debug)]
pub(super) struct Stream {
    pub(super) config: stream::Config,
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
    pub(super) fn new(config: stream::Config) -> Stream {
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
        if let Some(m) = self.messages.remove(&seq) {
            self.bytes -= m.size;
        }
    }

    /// Stores a message; `Ok((seq, duplicate))`.
    pub(super) fn store(
        &mut self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
        now: Instant,
    ) -> Result<(u64, bool), Refused> {
        self.expire(now);
        let msg_id = headers.get(NATS_MSG_ID).map(|v| v.as_str().to_owned());
        if let Some(id) = &msg_id
            && let Some(&seq) = self.dedup.get(id)
        {
            return Ok((seq, true));
        }
        let size = message_size(subject, &headers, &payload);
        let c = &self.config;
        if c.max_message_size > 0 && size > c.max_message_size as u64 {
            return Err(Refused::TooLarge(format!(
                "message size {size} exceeds the stream's max_message_size {}",
                c.max_message_size
            )));
        }
        let full_count = c.max_messages > 0 && self.messages.len() as u64 >= c.max_messages as u64;
        let full_bytes = c.max_bytes > 0 && self.bytes + size > c.max_bytes as u64;
        if c.discard == DiscardPolicy::New && (full_count || full_bytes) {
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
        while (max_msgs > 0 && self.messages.len() as u64 > max_msgs as u64)
            || (max_bytes > 0 && self.bytes > max_bytes as u64)
        {
            let Some((&oldest, _)) = self.messages.first_key_value() else {
                break;
            };
            self.remove(oldest);
        }
        if let Some(id) = msg_id
            && self.config.duplicate_window > Duration::ZERO
        {
            self.dedup.insert(id.clone(), seq);
            self.dedup_order.push_back((now, id));
        }
        Ok((seq, false))
    }
}

/// Size as JetStream counts it (roughly): subject, headers and payload.
pub(super) fn message_size(subject: &str, headers: &HeaderMap, payload: &[u8]) -> u64 {
    let header_bytes: usize = headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| AsRef::<str>::as_ref(name).len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum();
    (subject.len() + header_bytes + payload.len()) as u64
}
