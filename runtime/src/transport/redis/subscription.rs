//! A consume loop's subscription on a consumer group, and the acker of its
//! deliveries.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Value;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use tokio::time::Instant;

use super::entry::{self, Entry};
use super::keys::{self, Keys};
use super::{is_lost, now_ms, scripts};
use crate::event::subject_matches;
use crate::topology::ConsumerDecl;
use crate::transport::{
    Acker, BoxError, DeliveryInfo, Inbound, Lost, Message, Settle, SettleError, Subscription,
};

/// The longest a blocking read waits before due retries and stale entries
/// are looked at again.
const MAX_BLOCK: Duration = Duration::from_secs(1);

/// What a subscription and its ackers share.
#[derive(Debug)]
struct Group {
    conn: ConnectionManager,
    keys: Keys,
    parked: String,
    stream: Arc<str>,
    durable: Arc<str>,
    consumer: Arc<str>,
}

/// Settles a delivery of a Redis consumer group.
#[derive(Debug, Clone)]
pub struct RedisAcker {
    group: Arc<Group>,
    id: Arc<str>,
}

impl Acker for RedisAcker {
    async fn settle(&self, settle: Settle) -> Result<(), SettleError> {
        let g = &self.group;
        let mut conn = g.conn.clone();
        let (what, result) = match settle {
            Settle::Ack | Settle::Reject => (
                "ack",
                redis::cmd("XACK")
                    .arg(&g.keys.stream)
                    .arg(&*g.durable)
                    .arg(&*self.id)
                    .query_async::<()>(&mut conn)
                    .await,
            ),
            Settle::Retry(delay) => (
                "retry",
                park(
                    &mut conn,
                    g,
                    &self.id,
                    now_ms() + super::meta::millis(delay),
                )
                .await,
            ),
            Settle::Progress => (
                "in-progress",
                scripts::PROGRESS
                    .key(&g.keys.stream)
                    .arg(&*g.durable)
                    .arg(&*g.consumer)
                    .arg(&*self.id)
                    .invoke_async::<()>(&mut conn)
                    .await,
            ),
        };
        result.map_err(|e| SettleError::new(what, e))
    }
}

async fn park(
    conn: &mut ConnectionManager,
    g: &Group,
    id: &str,
    due_ms: u64,
) -> Result<(), redis::RedisError> {
    scripts::PARK
        .key(&g.keys.stream)
        .key(&g.parked)
        .arg(&*g.durable)
        .arg(id)
        .arg(due_ms)
        .arg(keys::PARKED)
        .invoke_async(conn)
        .await
}

/// Entries ready to be yielded, and when the earliest parked retry is due.
struct Batch {
    messages: Vec<Message<RedisAcker>>,
    next_due_ms: Option<u64>,
}

/// A consume loop's subscription: one consumer of the group, with its own
/// connection for blocking reads.
pub struct RedisSubscription {
    group: Arc<Group>,
    /// Blocking `XREADGROUP`s only.
    reader: MultiplexedConnection,
    filter: Arc<str>,
    ack_wait: Duration,
    /// Granted and not yet yielded.
    credits: usize,
    /// Read (so in this consumer's pending list) and not yet yielded; never
    /// more than `credits`.
    ready: VecDeque<Message<RedisAcker>>,
    /// The Redis call under way, kept across cancelled `next()` calls.
    inflight: Option<BoxFuture<'static, Result<Batch, redis::RedisError>>>,
    /// When due retries and stale entries are looked for next.
    next_claim: Instant,
    next_due_ms: Option<u64>,
}

impl std::fmt::Debug for RedisSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSubscription")
            .field("group", &self.group)
            .field("credits", &self.credits)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl RedisSubscription {
    pub(super) async fn open(
        client: &redis::Client,
        conn: ConnectionManager,
        decl: &ConsumerDecl,
        consumer: String,
    ) -> Result<RedisSubscription, BoxError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(MAX_BLOCK + super::RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(super::RESPONSE_TIMEOUT));
        let reader = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let keys = Keys::of(&decl.stream);
        Ok(RedisSubscription {
            group: Arc::new(Group {
                conn,
                parked: keys.parked(&decl.durable),
                keys,
                stream: decl.stream.as_str().into(),
                durable: decl.durable.as_str().into(),
                consumer: consumer.into(),
            }),
            reader,
            filter: decl.filter_subject.as_str().into(),
            ack_wait: decl.ack_wait,
            credits: 0,
            ready: VecDeque::new(),
            inflight: None,
            next_claim: Instant::now(),
            next_due_ms: None,
        })
    }

    /// How often due retries and stale entries are looked for.
    fn claim_every(&self) -> Duration {
        (self.ack_wait / 4).clamp(Duration::from_millis(50), MAX_BLOCK)
    }

    /// The next Redis call: a claim when it is time, else a blocking read.
    fn call(&mut self, count: usize) -> BoxFuture<'static, Result<Batch, redis::RedisError>> {
        let now = Instant::now();
        let group = self.group.clone();
        let filter = self.filter.clone();
        if now >= self.next_claim {
            self.next_claim = now + self.claim_every();
            let min_idle = super::meta::millis(self.ack_wait);
            return Box::pin(claim(group, filter, count, min_idle));
        }
        let mut block = self.next_claim - now;
        if let Some(due) = self.next_due_ms {
            let until = Duration::from_millis(due.saturating_sub(now_ms()));
            block = block.min(until);
        }
        let block = block.clamp(Duration::from_millis(1), MAX_BLOCK);
        Box::pin(read(self.reader.clone(), group, filter, count, block))
    }
}

/// New entries for this consumer (`>`), waiting up to `block`.
async fn read(
    mut reader: MultiplexedConnection,
    g: Arc<Group>,
    filter: Arc<str>,
    count: usize,
    block: Duration,
) -> Result<Batch, redis::RedisError> {
    let reply: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&*g.durable)
        .arg(&*g.consumer)
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(u64::try_from(block.as_millis()).unwrap_or(1).max(1))
        .arg("STREAMS")
        .arg(&g.keys.stream)
        .arg(">")
        .query_async(&mut reader)
        .await?;
    let mut entries = Vec::new();
    for stream in entry::items(&reply) {
        if let [_key, list] = entry::items(stream) {
            for item in entry::items(list) {
                if let [id, fields] = entry::items(item) {
                    entries.push((id.clone(), fields.clone(), 1));
                }
            }
        }
    }
    deliver(g, &filter, entries, None).await
}

/// Due parked retries and stale entries of silent consumers.
async fn claim(
    g: Arc<Group>,
    filter: Arc<str>,
    count: usize,
    min_idle_ms: u64,
) -> Result<Batch, redis::RedisError> {
    let mut conn = g.conn.clone();
    let reply: Value = scripts::CLAIM
        .key(&g.keys.stream)
        .key(&g.parked)
        .arg(&*g.durable)
        .arg(&*g.consumer)
        .arg(now_ms())
        .arg(min_idle_ms)
        .arg(count)
        .arg(keys::PARKED)
        .invoke_async(&mut conn)
        .await?;
    let parts = entry::items(&reply);
    let mut entries = Vec::new();
    if let Some(list) = parts.first() {
        for item in entry::items(list) {
            if let [id, fields, delivered] = entry::items(item) {
                let delivered = entry::int(delivered).and_then(|d| u64::try_from(d).ok());
                entries.push((id.clone(), fields.clone(), delivered.unwrap_or(1)));
            }
        }
    }
    let next_due = parts
        .get(1)
        .and_then(entry::int)
        .and_then(|d| u64::try_from(d).ok());
    deliver(g, &filter, entries, next_due).await
}

/// Entries of the consumer's subjects as messages; the others acked at once.
async fn deliver(
    g: Arc<Group>,
    filter: &str,
    entries: Vec<(Value, Value, u64)>,
    next_due_ms: Option<u64>,
) -> Result<Batch, redis::RedisError> {
    let mut messages = Vec::with_capacity(entries.len());
    let mut skipped = Vec::new();
    for (id, fields, delivered) in entries {
        match Entry::parse(&id, &fields) {
            Some(e) if filter.is_empty() || subject_matches(filter, &e.subject) => {
                let info = DeliveryInfo::new(
                    g.stream.clone(),
                    g.durable.clone(),
                    e.sequence,
                    delivered,
                    e.published(),
                );
                let acker = RedisAcker {
                    group: g.clone(),
                    id: e.id.as_str().into(),
                };
                messages.push(Message::new(e.subject, e.headers, e.payload, info, acker));
            }
            Some(e) => skipped.push(e.id),
            None => {
                let id = entry::text(&id).unwrap_or_default();
                tracing::warn!(stream = %g.stream, id, "acking an entry jetflow did not write (no subject or sequence)");
                skipped.push(id);
            }
        }
    }
    if !skipped.is_empty() {
        let mut conn = g.conn.clone();
        redis::cmd("XACK")
            .arg(&g.keys.stream)
            .arg(&*g.durable)
            .arg(&skipped)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(Batch {
        messages,
        next_due_ms,
    })
}

impl Subscription for RedisSubscription {
    type Acker = RedisAcker;

    /// Every blocking read is answered, with entries or empty.
    fn confirms_alive(&self) -> bool {
        true
    }

    fn grant(&mut self, credits: usize) {
        self.credits += credits;
    }

    /// Cancel-safe: the Redis call under way is kept in the subscription
    /// and awaited again by the next call.
    async fn next(&mut self) -> Inbound<RedisAcker> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                self.credits = self.credits.saturating_sub(1);
                return Inbound::Message(m);
            }
            if self.inflight.is_none() {
                if self.credits == 0 {
                    return std::future::pending().await;
                }
                let call = self.call(self.credits);
                self.inflight = Some(call);
            }
            let Some(call) = self.inflight.as_mut() else {
                continue;
            };
            let result = call.await;
            self.inflight = None;
            match result {
                Ok(batch) => {
                    if batch.next_due_ms.is_some() {
                        self.next_due_ms = batch.next_due_ms;
                    }
                    if batch.messages.is_empty() {
                        // the server answered: the group is served
                        return Inbound::Alive;
                    }
                    self.ready.extend(batch.messages);
                }
                Err(e) if e.code() == Some("NOGROUP") => {
                    return Inbound::Lost(Lost::ConsumerDeleted);
                }
                Err(e) => {
                    let why = if is_lost(&e) {
                        format!("the Redis server is unreachable: {e}")
                    } else {
                        format!("Redis refused a read: {e}")
                    };
                    return Inbound::Lost(Lost::Unavailable(why));
                }
            }
        }
    }

    /// Gives back what was read but not handled (parked, due at once, for
    /// any replica), then leaves the group if it owns nothing.
    async fn close(mut self) -> usize {
        if let Some(call) = self.inflight.take()
            && let Ok(Ok(batch)) = tokio::time::timeout(MAX_BLOCK * 2, call).await
        {
            self.ready.extend(batch.messages);
        }
        let g = self.group.clone();
        let mut conn = g.conn.clone();
        let now = now_ms();
        let mut given_back = 0;
        for m in self.ready.drain(..) {
            match park(&mut conn, &g, &m.acker.id, now).await {
                Ok(()) => given_back += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "could not give a message back; it is redelivered after ack_wait");
                }
            }
        }
        let retired: Result<i64, _> = scripts::RETIRE
            .key(&g.keys.stream)
            .arg(&*g.durable)
            .arg(&*g.consumer)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = retired {
            tracing::debug!(error = %e, consumer = %g.consumer, "could not remove the consumer name from its group");
        }
        given_back
    }
}
