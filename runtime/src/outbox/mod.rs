//! The transactional outbox (feature `postgres`): events stored in the
//! caller's Postgres transaction, published by a relay inside the
//! [`App`](crate::App).
//!
//! A service that writes to its database and publishes an event must not
//! do one without the other. [`Outbox::publish`] inserts the event (its
//! JSON payload and jetflow's wire headers) into `jetflow_outbox` in the
//! caller's transaction: a rolled-back transaction publishes nothing, a
//! committed one publishes exactly what it stored. The relay
//! ([`App::outbox`](crate::App::outbox)) publishes pending rows with
//! `Nats-Msg-Id` = the event id, marks them published, and:
//!
//! - a relay that dies after publishing and before marking publishes the
//!   row again when it (or another replica) comes back; the stream's dedup
//!   window absorbs the copy;
//! - several replicas relay without double work: rows are taken with
//!   `FOR UPDATE SKIP LOCKED`;
//! - events with the same key (`#[event(id = field)]`) are published in
//!   the order they were stored: a relay takes only the oldest pending row
//!   of each key, so a later row waits until the earlier one is published;
//! - it wakes on `LISTEN/NOTIFY` (`jetflow_outbox`) at each commit, and
//!   polls every second as a fallback;
//! - published rows are deleted after the retention (1 day by default).
//!
//! Inside an idempotent handler on a
//! [`PostgresStore`](crate::idempotency::PostgresStore), publishing through
//! the handler's [`Tx`](crate::idempotency::Tx) makes consume -> transform
//! -> produce atomic: the claim, the handler's rows and the outgoing events
//! commit together.
//!
//! ```no_run
//! use jetflow::prelude::*;
//! use jetflow::idempotency::{PostgresStore, Tx};
//! use jetflow::outbox::Outbox;
//!
//! #[event(version = "v1", id = order_id)]
//! pub struct OrderPaid { pub order_id: String }
//! #[event(version = "v1", id = order_id)]
//! pub struct OrderShipped { pub order_id: String }
//!
//! #[handler(group = "shipping", idempotent)]
//! async fn ship(o: OrderPaid, mut tx: Tx, State(outbox): State<Outbox>) -> Result<(), HandlerError> {
//!     outbox
//!         .publish(&mut tx, &OrderShipped { order_id: o.order_id })
//!         .await
//!         .map_err(HandlerError::retry)?;
//!     Ok(()) // the claim and the outgoing event commit together
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgres://app@127.0.0.1/app";
//! let outbox = Outbox::new(url, "shipping")?;
//! App::from_env("shipping")
//!     .idempotency_store(PostgresStore::new(url)?)
//!     .state(outbox.clone())
//!     .outbox(outbox)
//!     .handler(ship)
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```

mod relay;

pub(crate) use relay::relay;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::event::Event;
use crate::publish::{PublishError, WireProfile, encode, event_headers};

/// The channel the relay listens on.
pub(crate) const CHANNEL: &str = "jetflow_outbox";

/// Stores events in the caller's Postgres transaction; the app's relay
/// publishes them (see [the module](self)). Clones share one pool.
#[derive(Clone)]
pub struct Outbox {
    pub(crate) pool: PgPool,
    /// The `ce-source` of the events.
    source: String,
    pub(crate) poll: Duration,
    pub(crate) retention: Duration,
    migrated: Arc<OnceCell<()>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the URL may hold a password: not shown
        f.debug_struct("Outbox")
            .field("source", &self.source)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// What [`Outbox`] could not do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The event cannot be encoded (or its key holds control characters).
    #[error("cannot encode the event for the outbox: {0}")]
    Encode(#[from] PublishError),
    /// The database refused or could not be reached; the caller's
    /// transaction should be rolled back (or retried).
    #[error("outbox: {what}: {source}; check that Postgres is reachable and the migrations ran")]
    Database {
        /// What failed.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> OutboxError {
    move |source| OutboxError::Database { what, source }
}

impl Outbox {
    /// An outbox at `url` whose events carry `ce-source = source` (the
    /// service's name); connects on first use.
    pub fn new(url: &str, source: impl Into<String>) -> Result<Outbox, OutboxError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)
            .map_err(db("not a Postgres URL"))?;
        Ok(Outbox::with_pool(pool, source))
    }

    /// An outbox on `pool`.
    pub fn with_pool(pool: PgPool, source: impl Into<String>) -> Outbox {
        Outbox {
            pool,
            source: source.into(),
            poll: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            migrated: Default::default(),
        }
    }

    /// How often the relay looks for rows when no notification came
    /// (default 1 s).
    pub fn poll_every(mut self, poll: Duration) -> Outbox {
        self.poll = poll;
        self
    }

    /// How long published rows are kept (default 1 day).
    pub fn retention(mut self, retention: Duration) -> Outbox {
        self.retention = retention;
        self
    }

    /// Applies jetflow's migrations once.
    pub(crate) async fn ready(&self) -> Result<(), OutboxError> {
        self.migrated
            .get_or_try_init(|| async {
                crate::idempotency::postgres::schema::migrate(&self.pool)
                    .await
                    .map_err(db("cannot apply jetflow's migrations"))
            })
            .await
            .map(|_| ())
    }

    /// Stores `event` in the transaction `conn` (a [`Tx`](crate::idempotency::Tx),
    /// or `&mut *transaction` of your own): it is published once the
    /// transaction commits, never if it rolls back. Returns the event id.
    pub async fn publish<E: Event>(
        &self,
        conn: &mut PgConnection,
        event: &E,
    ) -> Result<String, OutboxError> {
        self.ready().await?;
        let (payload, id) = encode(event)?;
        // the outbox's rows keep the whole contract (they outlive the app's
        // configuration; the relay may run in another process)
        let mut headers =
            event_headers::<E>(WireProfile::CloudEvents, &self.source, &id, None, None);
        // The caller's trace context is stored with the row: the relay's
        // publish continues it (feature `otel`; nothing otherwise).
        crate::telemetry::traced::inject(&mut headers);
        let pairs: Vec<(&str, &str)> = headers.iter().collect();
        let headers = serde_json::to_string(&pairs).unwrap_or_default();
        insert(
            conn,
            id.clone(),
            E::SUBJECT,
            event.event_key(),
            headers,
            payload.to_vec(),
        )
        .await?;
        Ok(id)
    }
}

/// The insert and the notification, with owned arguments (the future is
/// `Send` for any lifetime).
async fn insert(
    conn: &mut PgConnection,
    id: String,
    subject: &'static str,
    key: Option<String>,
    headers: String,
    payload: Vec<u8>,
) -> Result<(), OutboxError> {
    sqlx::query(
        "INSERT INTO jetflow_outbox (event_id, subject, order_key, headers, payload) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(subject)
    .bind(key)
    .bind(headers)
    .bind(payload)
    .execute(&mut *conn)
    .await
    .map_err(db("cannot insert the event"))?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut *conn)
        .await
        .map_err(db("cannot notify the relay"))?;
    Ok(())
}
