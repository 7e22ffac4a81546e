//! Streams and durable consumers declared by the code, in jetflow's own
//! terms, and provisioned at start-up by whichever transport runs the app.
//! A broker-side config that differs from the declaration is reported field
//! by field and, by [`TopologyPolicy`], updated or refused — never silently
//! ignored. The decision is one pure plan per stream ([`plan_stream`]) and
//! per consumer ([`plan_consumer`]); each transport executes it against its
//! broker.

mod error;
mod plan;
mod restore;

pub use error::{TopologyError, TopologyErrorKind};
pub use plan::{ConsumerPlan, ConsumerView, StreamPlan, plan_consumer, plan_stream};
pub(crate) use plan::{diff, missing_subjects, update_refused};
pub(crate) use restore::Declared;

use std::time::Duration;

/// Where a newly created durable consumer starts reading its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeliverPolicy {
    /// Every message still in the stream (the default).
    #[default]
    All,
    /// Only messages published after the consumer was created.
    New,
    /// The last message in the stream, then everything after it.
    Last,
}

/// What start-up does when the broker's streams and consumers differ from
/// the code, or are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TopologyPolicy {
    /// Create what is missing; update what differs (logging the diff). The default.
    #[default]
    Update,
    /// Create what is missing; refuse to start when something differs.
    Refuse,
    /// Create nothing and change nothing (no create rights needed): fail when
    /// something is missing, log differences as warnings.
    BindOnly,
}

/// Stream settings that are deployment configuration rather than code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSettings {
    /// Replicas of streams jetflow creates (1 on a single server, 3 on an R3 cluster).
    pub replicas: usize,
    /// File (default) or memory storage.
    pub memory_storage: bool,
    /// Broker-side publish dedup window on the message id.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            replicas: 1,
            memory_storage: false,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// A stream the code needs: its name, the concrete subjects it must store,
/// and the deployment's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamDecl {
    /// Stream name, e.g. `ORDER`.
    pub name: String,
    /// Concrete subjects published into it (`order.created.v1`).
    pub subjects: Vec<String>,
    /// Replicas, storage, dedup window.
    pub settings: StreamSettings,
}

impl StreamDecl {
    /// A stream `name` storing `subjects`.
    pub fn new(name: impl Into<String>, subjects: Vec<String>, settings: StreamSettings) -> Self {
        StreamDecl {
            name: name.into(),
            subjects,
            settings,
        }
    }

    /// The subject patterns a stream jetflow creates stores: `{first token}.>`
    /// of every declared subject, sorted, without repeats.
    pub fn patterns(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .subjects
            .iter()
            .map(|s| crate::event::stream_subject_of(s))
            .collect();
        w.sort();
        w.dedup();
        w
    }
}

/// A durable consumer the code declares: one per handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerDecl {
    /// The stream it reads.
    pub stream: String,
    /// Durable name, see [`durable_name`].
    pub durable: String,
    /// Subject filter (may hold wildcards: `order.created.*`).
    pub filter_subject: String,
    /// How long a delivery may stay unsettled before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries of one message the broker may make; `0`: no limit.
    ///
    /// jetflow declares `0` and decides the last delivery itself (the
    /// handler's `max_deliver`): a message whose last allowed delivery did
    /// not settle (the DLQ refused the copy, the service crashed) is
    /// delivered again and dead-lettered then, instead of staying in the
    /// stream delivered to no one.
    pub max_deliver: u32,
    /// Where a new durable starts.
    pub deliver: DeliverPolicy,
}

impl ConsumerDecl {
    /// A consumer of `stream` named `durable` filtering `filter_subject`,
    /// with the handler defaults (ack wait 30s, no broker-side delivery
    /// limit, from the first message); set the other fields as needed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut c = jetflow::topology::ConsumerDecl::new("ORDER", "inventory--order_created", "order.created.v1");
    /// c.ack_wait = Duration::from_secs(10);
    /// assert_eq!(c.max_deliver, 0);
    /// assert_eq!(c.broker_max_deliver(), -1);
    /// ```
    pub fn new(
        stream: impl Into<String>,
        durable: impl Into<String>,
        filter_subject: impl Into<String>,
    ) -> ConsumerDecl {
        ConsumerDecl {
            stream: stream.into(),
            durable: durable.into(),
            filter_subject: filter_subject.into(),
            ack_wait: jetflow_rules::DEFAULT_ACK_WAIT,
            max_deliver: 0,
            deliver: DeliverPolicy::All,
        }
    }

    /// `max_deliver` as brokers spell it: `-1` for no limit.
    pub fn broker_max_deliver(&self) -> i64 {
        max_deliver_limit(self.max_deliver)
    }

    /// `consumer `x` on stream `Y``, for messages.
    pub fn describe(&self) -> String {
        format!("consumer `{}` on stream `{}`", self.durable, self.stream)
    }
}

/// A delivery limit as brokers spell it: `0` (none) is `-1`.
pub(crate) fn max_deliver_limit(max_deliver: u32) -> i64 {
    if max_deliver == 0 {
        -1
    } else {
        i64::from(max_deliver)
    }
}

/// Durable name of a group's consumer of an event: `{group}--{name with '.' -> '_'}`.
/// The version is excluded so moving a handler from v1 to v2 keeps its position.
pub fn durable_name(group: &str, event_name: &str) -> String {
    format!("{group}--{}", event_name.replace('.', "_"))
}

/// Counts of a durable consumer, as the broker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConsumerState {
    /// Messages matching the filter not yet delivered to it.
    pub num_pending: u64,
    /// Messages delivered and not yet acked or terminated (nak'd ones count
    /// until they are redelivered).
    pub num_ack_pending: u64,
    /// Messages delivered more than once that are still unacknowledged.
    pub num_redelivered: u64,
    /// Pull requests waiting.
    pub num_waiting: u64,
    /// Stream sequence up to which every message is acked or terminated.
    pub ack_floor: u64,
    /// Stream sequence of the last message delivered.
    pub delivered: u64,
}
