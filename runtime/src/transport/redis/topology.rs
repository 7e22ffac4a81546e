//! The topology plans executed on Redis, and reading streams and consumer
//! groups back.

use std::collections::HashMap;

use redis::Value;
use redis::aio::ConnectionManager;

use super::entry::{self, Entry};
use super::keys::{self, Keys};
use super::meta::{ConsumerMeta, StreamMeta, millis};
use super::{Routes, parse_routes};
use crate::event::subject_matches;
use crate::topology::{
    self, ConsumerDecl, ConsumerPlan, ConsumerState, ConsumerView, DeliverPolicy, StreamDecl,
    StreamPlan, TopologyError, TopologyPolicy,
};
use crate::transport::{ConsumerStatus, Stored};

/// The declared streams' routes.
pub(super) async fn routes(conn: &mut ConnectionManager) -> Result<Routes, redis::RedisError> {
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::STREAMS)
        .query_async(conn)
        .await?;
    Ok(parse_routes(hash))
}

async fn stream_meta(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Result<Option<StreamMeta>, TopologyError> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(keys::STREAMS)
        .arg(stream)
        .query_async(conn)
        .await
        .map_err(|e| TopologyError::read(format!("stream `{stream}`"), "read", e))?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

pub(super) async fn declare_streams(
    conn: &mut ConnectionManager,
    streams: &[StreamDecl],
    policy: TopologyPolicy,
) -> Result<(), TopologyError> {
    for decl in streams {
        let name = decl.name.as_str();
        let what = || format!("stream `{name}`");
        let existing = stream_meta(conn, name).await?;
        let subjects = match topology::plan_stream(
            decl,
            policy,
            existing.as_ref().map(|m| &m.subjects[..]),
        )? {
            StreamPlan::Keep => continue,
            StreamPlan::Create { subjects } | StreamPlan::AddSubjects { subjects } => subjects,
        };
        check_overlap(conn, name, &subjects).await?;
        let meta = StreamMeta {
            subjects,
            duplicate_window_ms: millis(decl.settings.duplicate_window),
        };
        let json = serde_json::to_string(&meta).unwrap_or_default();
        redis::cmd("HSET")
            .arg(keys::STREAMS)
            .arg(name)
            .arg(json)
            .query_async::<()>(conn)
            .await
            .map_err(|e| TopologyError::create(what(), "", e))?;
        if existing.is_none() {
            tracing::info!(stream = name, "created stream");
        }
    }
    Ok(())
}

/// Two streams may not store one subject: publishing must find one stream.
async fn check_overlap(
    conn: &mut ConnectionManager,
    name: &str,
    subjects: &[String],
) -> Result<(), TopologyError> {
    let routes = routes(conn)
        .await
        .map_err(|e| TopologyError::read("the declared streams", "read", e))?;
    for (pattern, other, _) in routes.iter().filter(|(_, s, _)| s != name) {
        if let Some(b) = subjects
            .iter()
            .find(|b| subject_matches(pattern, b) || subject_matches(b, pattern))
        {
            return Err(TopologyError::overlap(
                format!("stream `{name}`"),
                &format!(
                    "its subject {b:?} overlaps {pattern:?} of stream `{other}`; give the events a distinct stream or first token"
                ),
            ));
        }
    }
    Ok(())
}

/// The group of `durable` exists on the stream.
async fn group_exists(
    conn: &mut ConnectionManager,
    keys: &Keys,
    durable: &str,
) -> Result<bool, redis::RedisError> {
    Ok(group_info(conn, keys, durable).await?.is_some())
}

/// `XINFO GROUPS` of the group, as field -> value; `None` when there is none
/// (or no stream).
async fn group_info(
    conn: &mut ConnectionManager,
    keys: &Keys,
    durable: &str,
) -> Result<Option<HashMap<String, Value>>, redis::RedisError> {
    let reply: Value = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&keys.stream)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        Err(e) if e.code() == Some("ERR") && e.to_string().contains("no such key") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    for group in entry::items(&reply) {
        let fields: HashMap<String, Value> = match group {
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| Some((entry::text(k)?, v.clone())))
                .collect(),
            other => entry::items(other)
                .chunks(2)
                .filter_map(|p| Some((entry::text(p.first()?)?, p.get(1)?.clone())))
                .collect(),
        };
        if fields.get("name").and_then(entry::text).as_deref() == Some(durable) {
            return Ok(Some(fields));
        }
    }
    Ok(None)
}

async fn consumer_meta(
    conn: &mut ConnectionManager,
    keys: &Keys,
    durable: &str,
) -> Result<Option<ConsumerMeta>, redis::RedisError> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(&keys.consumers)
        .arg(durable)
        .query_async(conn)
        .await?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

pub(super) async fn declare_consumer(
    conn: &mut ConnectionManager,
    decl: &ConsumerDecl,
    policy: TopologyPolicy,
) -> Result<ConsumerView, TopologyError> {
    let what = decl.describe();
    let keys = Keys::of(&decl.stream);
    if stream_meta(conn, &decl.stream).await?.is_none() {
        return Err(TopologyError::read(
            format!("stream `{}`", decl.stream),
            "open",
            "no such stream is declared on this Redis",
        ));
    }
    let read = |e: redis::RedisError| TopologyError::read(what.clone(), "read", e);
    let existing = if group_exists(conn, &keys, &decl.durable)
        .await
        .map_err(read)?
    {
        consumer_meta(conn, &keys, &decl.durable)
            .await
            .map_err(read)?
            .map(|m| m.view())
    } else {
        None
    };
    let declared = ConsumerMeta::of(decl);
    match topology::plan_consumer(decl, policy, existing.as_ref())? {
        ConsumerPlan::Keep(view) => return Ok(view),
        ConsumerPlan::Create => {
            let start = match decl.deliver {
                DeliverPolicy::New => "$",
                _ => "0",
            };
            let created = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&keys.stream)
                .arg(&decl.durable)
                .arg(start)
                .arg("MKSTREAM")
                .query_async::<()>(conn)
                .await;
            match created {
                Ok(()) => {}
                // created by a replica meanwhile
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(TopologyError::create(what, "", e)),
            }
            tracing::info!(consumer = %decl.durable, stream = %decl.stream, "created durable consumer");
        }
        ConsumerPlan::Update { diff } => {
            if existing.as_ref().and_then(|v| v.deliver) != Some(decl.deliver) {
                return Err(topology::update_refused(
                    decl,
                    &diff,
                    "a consumer group's start position cannot change",
                ));
            }
        }
    }
    let json = serde_json::to_string(&declared).unwrap_or_default();
    redis::cmd("HSET")
        .arg(&keys.consumers)
        .arg(&decl.durable)
        .arg(json)
        .query_async::<()>(conn)
        .await
        .map_err(|e| TopologyError::update(what, "record the config of", e))?;
    Ok(declared.view())
}

pub(super) async fn consumer_status(
    conn: &mut ConnectionManager,
    decl: &ConsumerDecl,
) -> ConsumerStatus {
    match stream_meta(conn, &decl.stream).await {
        Ok(Some(_)) => {}
        Ok(None) => return ConsumerStatus::StreamMissing,
        Err(e) => return ConsumerStatus::Unavailable(e.to_string()),
    }
    match group_exists(conn, &Keys::of(&decl.stream), &decl.durable).await {
        Ok(true) => ConsumerStatus::Exists,
        Ok(false) => ConsumerStatus::Missing,
        Err(e) => ConsumerStatus::Unavailable(e.to_string()),
    }
}

/// Entries from `start` (`-`, or `(id` exclusive), oldest first, in pages.
async fn range(
    conn: &mut ConnectionManager,
    key: &str,
    start: &str,
    end: &str,
    limit: Option<usize>,
) -> Result<Vec<Entry>, redis::RedisError> {
    const PAGE: usize = 1000;
    let mut out = Vec::new();
    let mut from = start.to_owned();
    loop {
        let page = limit.map_or(PAGE, |l| (l - out.len()).min(PAGE));
        let reply: Value = redis::cmd("XRANGE")
            .arg(key)
            .arg(&from)
            .arg(end)
            .arg("COUNT")
            .arg(page)
            .query_async(conn)
            .await?;
        let items = entry::items(&reply);
        for item in items {
            let parts = entry::items(item);
            if let [id, fields] = parts
                && let Some(e) = Entry::parse(id, fields)
            {
                out.push(e);
            }
        }
        match items.last().map(entry::items) {
            Some([id, ..]) if items.len() == page && limit.is_none_or(|l| out.len() < l) => {
                from = format!("({}", entry::text(id).unwrap_or_default());
            }
            _ => return Ok(out),
        }
    }
}

pub(super) async fn read_stream(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Result<Vec<Stored>, TopologyError> {
    if stream_meta(conn, stream).await?.is_none() {
        return Err(TopologyError::read(
            format!("stream `{stream}`"),
            "open",
            "no such stream is declared on this Redis",
        ));
    }
    let entries = range(conn, &Keys::of(stream).stream, "-", "+", None)
        .await
        .map_err(|e| TopologyError::read(format!("stream `{stream}`"), "read", e))?;
    Ok(entries
        .into_iter()
        .map(|e| Stored::new(e.sequence, e.subject, e.headers, e.payload))
        .collect())
}

/// Deletes the entries with jetflow sequences `sequences` (found by a
/// scan: entries are keyed by time, not by sequence).
pub(super) async fn delete_messages(
    conn: &mut ConnectionManager,
    stream: &str,
    sequences: &[u64],
) -> Result<usize, TopologyError> {
    let wanted: std::collections::HashSet<u64> = sequences.iter().copied().collect();
    let key = Keys::of(stream).stream;
    let entries = range(conn, &key, "-", "+", None)
        .await
        .map_err(|e| TopologyError::read(format!("stream `{stream}`"), "read", e))?;
    let ids: Vec<String> = entries
        .into_iter()
        .filter(|e| wanted.contains(&e.sequence))
        .map(|e| e.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted: usize = redis::cmd("XDEL")
        .arg(&key)
        .arg(&ids)
        .query_async(conn)
        .await
        .map_err(|e| TopologyError::read(format!("stream `{stream}`"), "delete entries of", e))?;
    Ok(deleted)
}

pub(super) async fn consumer_state(
    conn: &mut ConnectionManager,
    stream: &str,
    durable: &str,
) -> Result<ConsumerState, TopologyError> {
    let what = format!("consumer `{durable}` on stream `{stream}`");
    let read = |e: redis::RedisError| TopologyError::read(what.clone(), "read", e);
    let keys = Keys::of(stream);
    let Some(group) = group_info(conn, &keys, durable).await.map_err(read)? else {
        return Err(TopologyError::read(
            what.clone(),
            "read",
            "no such consumer group on this Redis",
        ));
    };
    let filter = consumer_meta(conn, &keys, durable)
        .await
        .map_err(read)?
        .map(|m| m.filter_subject)
        .unwrap_or_default();
    let last_id = group
        .get("last-delivered-id")
        .and_then(entry::text)
        .unwrap_or_else(|| "0-0".into());
    let mut state = ConsumerState::default();
    // not yet delivered, of the consumer's subjects
    let after = range(conn, &keys.stream, &format!("({last_id}"), "+", None)
        .await
        .map_err(read)?;
    state.num_pending = after
        .iter()
        .filter(|e| filter.is_empty() || subject_matches(&filter, &e.subject))
        .count() as u64;
    let seq_of = async |conn: &mut ConnectionManager, id: &str| -> Result<u64, TopologyError> {
        Ok(range(conn, &keys.stream, id, id, Some(1))
            .await
            .map_err(read)?
            .first()
            .map_or(0, |e| e.sequence))
    };
    state.delivered = if last_id == "0-0" {
        0
    } else {
        seq_of(conn, &last_id).await?
    };
    // pending: delivered (or parked) and not settled
    let pending: Value = redis::cmd("XPENDING")
        .arg(&keys.stream)
        .arg(durable)
        .arg("-")
        .arg("+")
        .arg(10_000)
        .query_async(conn)
        .await
        .map_err(read)?;
    let pending = entry::items(&pending);
    state.num_ack_pending = pending.len() as u64;
    state.num_redelivered = pending
        .iter()
        .filter(|p| entry::items(p).get(3).and_then(entry::int).unwrap_or(1) > 1)
        .count() as u64;
    state.ack_floor = match pending
        .first()
        .and_then(|p| entry::items(p).first())
        .and_then(entry::text)
    {
        Some(first) => seq_of(conn, &first).await?.saturating_sub(1),
        None => state.delivered,
    };
    Ok(state)
}
