//! Redis Streams (feature `redis`, `redis://` URLs): the same handlers on
//! the one piece of infrastructure many teams already run.
//!
//! # How jetflow maps onto Redis
//!
//! - A jetflow **stream** (`ORDER`) is one Redis stream,
//!   `jetflow:{ORDER}:messages`, holding every subject it stores. Each entry
//!   has the subject, the headers, the payload, jetflow's own sequence
//!   (`INCR` of `jetflow:{ORDER}:seq`, so stream sequences, PubAcks and
//!   DLQ ids work as on JetStream) and the message id. What the code
//!   declared (the subjects, the dedup window) is kept in the hash
//!   `jetflow:streams`, which topology plans and publish routing read.
//! - **Publish** is one Lua script: if the message id was seen inside the
//!   stream's `duplicate_window` (a key with that expiry) the PubAck says
//!   `duplicate`; otherwise the sequence is incremented and the entry added
//!   with `XADD ... MAXLEN ~` (or `MINID ~` for an age limit), atomically.
//!   The limit ([`StreamLimits`], 1,000,000 entries by default) drops the
//!   oldest entries whether they were consumed or not.
//! - A **durable consumer** is a consumer group named after the durable,
//!   created at `0` (`deliver = "all"`) or `$` (`"new"`); its declared
//!   filter, ack wait and limits are kept next to it. Each subscription is
//!   one consumer of the group with its own connection for the blocking
//!   `XREADGROUP ... COUNT <credits>`. Entries of other subjects are acked
//!   at once and cost no credit.
//! - **Delivery count**: 1 for a new entry, and `XPENDING`'s count after
//!   every claim.
//! - **Crashed consumers**: an entry idle for `ack_wait` (nobody settled it
//!   or sent progress) is taken over with `XAUTOCLAIM` by whichever
//!   replica looks first, its count incremented.
//! - **Settling**: ack and reject are `XACK`; progress resets the entry's
//!   idle time (`XCLAIM ... JUSTID`, only while this consumer owns it);
//!   **retry after a delay** parks the entry: its id goes into a sorted set
//!   scored by when it is due, and it moves to the pseudo-consumer
//!   `jetflow-parked`, still pending. Parked entries are skipped by
//!   `XAUTOCLAIM`; once due, a subscription of the group claims it (its
//!   count one higher) and delivers it. Parking survives a crash of every replica: the
//!   set and the pending entry live in Redis.
//! - Due retries and stale entries are looked for every
//!   `min(ack_wait / 4, 1s)`, and a blocking read waits at most that long,
//!   so a retry comes at most about a second after its delay.
//!
//! # Differences from JetStream
//!
//! Persistence is what the Redis server is configured for (`appendonly`,
//! snapshots): jetflow cannot tell, so the capability says no. There is no
//! `deliver = "last"` (refused at start-up), no notifications, no
//! server-side `max_deliver` (the runtime dead-letters at the count, also
//! for an entry that crashed its consumers). A subscription that stops
//! without its graceful close leaves its consumer name in the group (it
//! owns nothing once its entries were claimed). `rediss://` (TLS) is not
//! built in.
//!
//! ```no_run
//! # async fn demo() -> jetflow::Result<()> {
//! use jetflow::prelude::*;
//! # #[event(version = "v1")] pub struct Ping { pub n: u32 }
//! # #[handler(group = "pong")] async fn pong(_p: Ping) {}
//! // `JETFLOW_URL=redis://127.0.0.1:6379` with `App::from_env` does the same
//! let app = App::new("pong").url("redis://127.0.0.1:6379").handler(pong).start().await?;
//! app.bus().publish(&Ping { n: 1 }).await?;
//! app.stop().await
//! # }
//! ```

mod entry;
mod keys;
mod meta;
mod scripts;
mod subscription;
mod topology;

pub use subscription::{RedisAcker, RedisSubscription};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use self::keys::Keys;
use self::meta::StreamMeta;
use crate::app::ConnectOptions;
use crate::event::subject_matches;
use crate::topology::{
    ConsumerDecl, ConsumerState, ConsumerView, DeliverPolicy, StreamDecl, TopologyError,
    TopologyPolicy,
};
use crate::transport::{
    BoxError, Capabilities, ConnectError, ConnectErrorKind, ConsumerStatus, Outgoing, PubAck,
    PublishErrorKind, PublishFailure, Stored, Transport,
};

/// How long one Redis command may take before it counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to Redis, as a jetflow transport. Cheap to clone.
#[derive(Clone)]
pub struct RedisTransport {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    /// Publishes, settlements, scripts; reconnects by itself.
    conn: ConnectionManager,
    /// The URL without its secret, for logs.
    url: String,
    /// The app's name, the prefix of its consumer names.
    name: String,
    limits: StreamLimits,
    /// Subject pattern -> stream, from `jetflow:streams` (refreshed on a miss).
    routes: RwLock<Vec<(String, String, StreamMeta)>>,
}

/// How long a Redis stream may grow: entries past the limit are trimmed
/// (approximately, `~`) on every publish, whether consumed or not — as
/// JetStream's limits retention does. Size it above the largest backlog a
/// consumer may fall behind by: a trimmed entry no group read is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamLimits {
    /// At most about this many entries (`MAXLEN ~`).
    MaxLen(u64),
    /// Entries at most about this old (`MINID ~`).
    MaxAge(Duration),
    /// Never trimmed.
    Unlimited,
}

impl Default for StreamLimits {
    /// At most about 1,000,000 entries per stream (a Redis stream is kept in
    /// memory; unlimited, it only grows).
    fn default() -> Self {
        StreamLimits::MaxLen(1_000_000)
    }
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("url", &self.shared.url)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// What Redis Streams do for jetflow.
    pub const CAPABILITIES: Capabilities = Capabilities {
        persistence: false,
        deliver: &[DeliverPolicy::All, DeliverPolicy::New],
        ..Capabilities::durable()
    };

    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`);
    /// `name` prefixes this app's consumer names.
    pub async fn connect(url: &str, name: &str) -> Result<RedisTransport, ConnectError> {
        RedisTransport::connect_with(url, name, StreamLimits::default()).await
    }

    /// Like [`RedisTransport::connect`], trimming streams by `limits`.
    pub async fn connect_with(
        url: &str,
        name: &str,
        limits: StreamLimits,
    ) -> Result<RedisTransport, ConnectError> {
        let fail = |kind, message: String, e: redis::RedisError| {
            ConnectError::new(url, kind, message, Some(e.into()))
        };
        let client = redis::Client::open(url).map_err(|e| {
            fail(
                ConnectErrorKind::UnknownScheme,
                "not a Redis URL (`redis://[user:password@]host[:port][/db]`)".into(),
                e,
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| {
                fail(
                    ConnectErrorKind::Unreachable,
                    format!("{e}; check JETFLOW_URL and that the Redis server is reachable"),
                    e,
                )
            })?;
        let transport = RedisTransport {
            shared: Arc::new(Shared {
                client,
                conn,
                url: crate::transport::select::redact(url),
                name: name.to_owned(),
                limits,
                routes: RwLock::new(Vec::new()),
            }),
        };
        transport.check_version().await?;
        Ok(transport)
    }

    /// Redis 6.2 or later (`XAUTOCLAIM`).
    async fn check_version(&self) -> Result<(), ConnectError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| {
                ConnectError::new(
                    &self.shared.url,
                    ConnectErrorKind::Unreachable,
                    format!("the server does not answer INFO: {e}"),
                    Some(e.into()),
                )
            })?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < (6, 2) {
            return Err(ConnectError::new(
                &self.shared.url,
                ConnectErrorKind::Unreachable,
                format!("Redis {version} is too old: jetflow needs 6.2 or later (XAUTOCLAIM)"),
                None,
            ));
        }
        Ok(())
    }

    fn conn(&self) -> ConnectionManager {
        self.shared.conn.clone()
    }

    /// The stream that stores `subject`, with its declared settings.
    async fn route(
        &self,
        subject: &str,
    ) -> Result<Option<(String, StreamMeta)>, redis::RedisError> {
        let find = |routes: &[(String, String, StreamMeta)]| {
            routes
                .iter()
                .find(|(pattern, ..)| subject_matches(pattern, subject))
                .map(|(_, stream, meta)| (stream.clone(), meta.clone()))
        };
        if let Some(found) = find(&self.shared.routes.read().unwrap_or_else(|p| p.into_inner())) {
            return Ok(Some(found));
        }
        // declared by another app meanwhile?
        let fresh = topology::routes(&mut self.conn()).await?;
        let found = find(&fresh);
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(found)
    }
}

/// A Redis error that leaves it open whether the command ran.
fn is_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// Unix time now, in milliseconds.
fn now_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

impl Transport for RedisTransport {
    type Acker = RedisAcker;
    type Subscription = RedisSubscription;

    fn describe(&self) -> String {
        format!("Redis Streams at {}", self.shared.url)
    }

    fn capabilities(&self) -> Capabilities {
        RedisTransport::CAPABILITIES
    }

    fn system(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, message: Outgoing) -> Result<PubAck, PublishFailure> {
        let lost_or_failed = |e: redis::RedisError| {
            if is_lost(&e) {
                PublishFailure::Lost(e.into())
            } else {
                PublishFailure::Failed(PublishErrorKind::Rejected, e.into())
            }
        };
        let Some((stream, meta)) = self.route(&message.subject).await.map_err(lost_or_failed)?
        else {
            return Err(PublishFailure::Failed(
                PublishErrorKind::NoStream,
                format!(
                    "no stream declared on {} stores {:?}",
                    self.shared.url, message.subject
                )
                .into(),
            ));
        };
        let keys = Keys::of(&stream);
        let (trim, threshold) = match self.shared.limits {
            StreamLimits::MaxLen(n) => ("MAXLEN", n.to_string()),
            StreamLimits::MaxAge(age) => (
                "MINID",
                now_ms().saturating_sub(meta::millis(age)).to_string(),
            ),
            StreamLimits::Unlimited => ("", String::new()),
        };
        let (sequence, duplicate): (u64, u8) = scripts::PUBLISH
            .key(&keys.stream)
            .key(&keys.seq)
            .key(keys.dedup(&message.id))
            .arg(&*message.subject)
            .arg(entry::encode_headers(&message.headers))
            .arg(&message.payload[..])
            .arg(&message.id)
            .arg(meta.duplicate_window_ms)
            .arg(trim)
            .arg(threshold)
            .invoke_async(&mut self.conn())
            .await
            .map_err(lost_or_failed)?;
        Ok(PubAck::new(stream, sequence, duplicate == 1))
    }

    async fn declare_streams(
        &self,
        streams: &[StreamDecl],
        policy: TopologyPolicy,
    ) -> Result<(), TopologyError> {
        topology::declare_streams(&mut self.conn(), streams, policy).await?;
        let routes = topology::routes(&mut self.conn())
            .await
            .map_err(|e| TopologyError::read("the declared streams", "read", e))?;
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = routes;
        Ok(())
    }

    async fn declare_consumer(
        &self,
        consumer: &ConsumerDecl,
        policy: TopologyPolicy,
    ) -> Result<ConsumerView, TopologyError> {
        topology::declare_consumer(&mut self.conn(), consumer, policy).await
    }

    async fn consumer_status(&self, consumer: &ConsumerDecl) -> ConsumerStatus {
        topology::consumer_status(&mut self.conn(), consumer).await
    }

    async fn subscribe(&self, consumer: &ConsumerDecl) -> Result<RedisSubscription, BoxError> {
        let consumer_name = format!("{}-{}", self.shared.name, uuid::Uuid::now_v7().simple());
        RedisSubscription::open(&self.shared.client, self.conn(), consumer, consumer_name).await
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<Stored>, TopologyError> {
        topology::read_stream(&mut self.conn(), stream).await
    }

    async fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerState, TopologyError> {
        topology::consumer_state(&mut self.conn(), stream, durable).await
    }

    async fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> Result<usize, TopologyError> {
        topology::delete_messages(&mut self.conn(), stream, sequences).await
    }

    async fn flush(&self) -> Result<(), BoxError> {
        // every command is answered before it counts as done
        Ok(())
    }
}

/// Connects for an app: `options.url` is the Redis URL.
pub(crate) async fn connect(
    options: &ConnectOptions,
    name: &str,
) -> Result<RedisTransport, ConnectError> {
    RedisTransport::connect(&options.url, name).await
}

/// Routes read from `jetflow:streams`: `(pattern, stream, meta)`.
type Routes = Vec<(String, String, StreamMeta)>;

/// Parses the hash of declared streams.
fn parse_routes(hash: HashMap<String, String>) -> Routes {
    let mut routes = Vec::new();
    for (stream, json) in hash {
        let Ok(meta) = serde_json::from_str::<StreamMeta>(&json) else {
            tracing::warn!(stream, "ignoring a stream declaration jetflow cannot read");
            continue;
        };
        for pattern in &meta.subjects {
            routes.push((pattern.clone(), stream.clone(), meta.clone()));
        }
    }
    routes
}
