//! The embedded broker: an in-process JetStream with the semantics jetflow
//! relies on, selected by a `memory://` URL.
//!
//! It models streams (subject filters, limits retention, dedup of the
//! message id inside `duplicate_window`) and durable consumers (filter
//! subject, explicit ack, `ack_wait` expiry and redelivery, `max_deliver`,
//! retry with delay, in-progress resetting the ack timer, reject,
//! `max_ack_pending`, delivery count and stream/consumer sequences,
//! competing replicas on one durable, resume from the ack floor when an app
//! restarts in the same process), and notifications (every listener, or one
//! per queue group). Handlers, topology and [`App`](crate::App) behave as on
//! a server, so retry, DLQ and idempotency logic can be tested in
//! milliseconds without one.
//!
//! It runs on tokio's clock, so a test with a paused clock
//! (`#[tokio::test(start_paused = true)]`) checks a 30-second backoff
//! schedule without waiting for it. It spawns no task: the consume loops
//! drive every timer while they wait for messages.
//!
//! ```
//! use jetflow::prelude::*;
//!
//! #[event(version = "v1")]
//! pub struct Ping { pub n: u32 }
//!
//! #[handler(group = "pong")]
//! async fn pong(ping: Ping) -> Result<(), HandlerError> {
//!     println!("ping {}", ping.n);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> jetflow::Result<()> {
//! // `memory://doc-example` names a broker of this process; it lives while
//! // an app, a bus or a `Broker` handle uses it (hold a handle so that an
//! // App that restarts on the same URL finds its streams and consumers).
//! let app = App::new("pong").url("memory://doc-example").handler(pong).start().await?;
//! app.bus().publish(&Ping { n: 1 }).await?;
//! app.stop().await
//! # }
//! ```
//!
//! # Differences from JetStream
//!
//! Nothing is persisted (a broker lives while something uses it); there are
//! no clusters, replicas, mirrors, sources, push consumers, ordered
//! consumers, consumer `backoff` on ack timeouts, multi-filter consumers,
//! per-subject limits, KV or object store; settlements take effect at once
//! (there is no network to lose them); `max_waiting` is not enforced. Two
//! stream subject sets overlap only if one pattern matches the other.
//!
//! A broker is tied to the tokio clock of the runtime that uses it: give
//! each test (each `#[tokio::test]` has its own runtime) its own broker
//! name.

mod consumer;
mod notify;
mod registry;
mod stream;
mod subscription;
mod transport;

pub use self::subscription::{MemoryAcker, MemorySubscription};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use self::consumer::Consumer;
use self::notify::Listeners;
use self::stream::Stream;
use crate::transport::Capabilities;

/// URL scheme of the embedded broker: `memory://` (the process's default
/// broker) or `memory://{name}`.
pub const SCHEME: &str = "memory://";

/// Largest message the embedded broker accepts, like nats-server's default
/// `max_payload` (1 MiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// An embedded broker; it is also its own [`Transport`](crate::transport::Transport).
/// Cheap to clone; clones share the streams.
///
/// ```
/// let broker = jetflow::memory::Broker::named("orders-test");
/// assert_eq!(broker.url(), "memory://orders-test");
/// assert!(broker.stream_names().is_empty());
/// ```
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    state: Mutex<State>,
    /// Bumped on every change a waiting consumer may care about.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    streams: BTreeMap<String, Stream>,
    listeners: Listeners,
    next_id: u64,
    /// A fault hook: notifications fail as if the connection were down.
    offline: bool,
}

impl State {
    fn consumer_mut(&mut self, stream: &str, durable: &str) -> Option<&mut Consumer> {
        self.streams.get_mut(stream)?.consumers.get_mut(durable)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// What the embedded broker does: everything JetStream does for
    /// jetflow, and notifications; nothing outlives the process.
    pub const CAPABILITIES: Capabilities = Capabilities {
        notifications: true,
        persistence: false,
        ..Capabilities::durable()
    };

    /// The broker of this process named `name`; `memory://{name}`
    /// reaches the same one. It is created on first use and lives while
    /// something uses it (this handle, its clones, an app or a bus on it);
    /// after that its messages are gone and the name starts afresh.
    /// Hold a handle to keep a broker across app restarts:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> jetflow::Result<()> {
    /// let broker = jetflow::memory::Broker::named("keep-me");
    /// let app = jetflow::App::new("a").url(broker.url()).start().await?;
    /// app.stop().await?;
    /// // the next app on memory://keep-me finds what the first one left
    /// # Ok(()) }
    /// ```
    pub fn named(name: &str) -> Broker {
        registry::named(name)
    }

    fn new(name: &str) -> Broker {
        Broker {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                state: Mutex::new(State::default()),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// The broker a `memory://...` URL names (`memory://` alone: `default`).
    pub(crate) fn for_url(url: &str) -> Option<Broker> {
        let name = url.strip_prefix(SCHEME)?.trim_end_matches('/');
        Some(Broker::named(if name.is_empty() {
            "default"
        } else {
            name
        }))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The URL that selects it: `memory://{name}`.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}", self.shared.name)
    }

    /// Names of its streams.
    pub fn stream_names(&self) -> Vec<String> {
        self.lock().streams.keys().cloned().collect()
    }

    /// Deletes a durable consumer, as `nats consumer rm` would: its
    /// subscriptions end with "consumer deleted". `false` if there was none.
    /// A fault hook for tests.
    #[cfg(feature = "testing")]
    pub fn delete_consumer(&self, stream: &str, durable: &str) -> bool {
        let removed = self
            .lock()
            .streams
            .get_mut(stream)
            .and_then(|s| s.consumers.remove(durable))
            .is_some();
        self.notify_waiters();
        removed
    }

    /// Deletes a stream with its messages and consumers. `false` if there
    /// was none. A fault hook for tests.
    #[cfg(feature = "testing")]
    pub fn delete_stream(&self, stream: &str) -> bool {
        let removed = self.lock().streams.remove(stream).is_some();
        self.notify_waiters();
        removed
    }

    /// Limits a stream to `max_messages` (`0`: no limit); once full it
    /// refuses new messages (`discard_new`, as JetStream's `discard: new`
    /// does) or drops the oldest. `false` if there is no such stream. A
    /// fault hook for tests.
    #[cfg(feature = "testing")]
    pub fn limit_stream(&self, stream: &str, max_messages: u64, discard_new: bool) -> bool {
        let mut state = self.lock();
        let Some(s) = state.streams.get_mut(stream) else {
            return false;
        };
        s.config.max_messages = max_messages;
        s.config.discard_new = discard_new;
        true
    }

    /// Makes notifications fail as they do while a NATS connection is down
    /// (`offline = true`), or work again. A fault hook for tests.
    #[cfg(feature = "testing")]
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (no invariant spans a
        // user callback), so a poisoned lock is still usable.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify_waiters(&self) {
        self.shared.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}
