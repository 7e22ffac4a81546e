//! Streams and durable pull consumers declared by the code, provisioned at
//! start-up. A server-side config that differs from the declaration is
//! reported field by field and, by [`TopologyPolicy`], updated or refused —
//! never silently ignored.

use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, pull};
use async_nats::jetstream::stream::{self, StorageType};

use crate::error::Error;
use crate::event::subject_matches;
use crate::handler::DeliverPolicy;

mod filter_change;

/// The fix when a server cannot change a durable's filter subject.
const FILTER_CHANGE_HINT: &str = "upgrade nats-server to 2.10 or later; or, once every message of the durable is \
    handled, delete the durable (`nats consumer rm`) so that it is recreated with the new filter (and set the \
    handler's `deliver` to where it should start)";

/// What start-up does when the server's streams and consumers differ from
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
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamSettings {
    /// Replicas of streams jetflow creates (1 on a single server, 3 on an R3 cluster).
    pub replicas: usize,
    /// File (default) or memory storage.
    pub memory_storage: bool,
    /// Server-side publish dedup window on `Nats-Msg-Id`.
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

/// A stream the code needs: its name and the concrete subjects it must store.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamSpec {
    pub(crate) subjects: Vec<String>,
}

/// A durable pull consumer the code declares.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerSpec {
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) filter_subject: String,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: i64,
    pub(crate) deliver: DeliverPolicy,
}

impl ConsumerSpec {
    /// `consumer `x` on stream `Y``, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("consumer `{}` on stream `{}`", self.durable, self.stream)
    }
}

/// Durable name of a group's consumer of an event: `{group}--{name with '.' -> '_'}`.
/// The version is excluded so moving a handler from v1 to v2 keeps its position.
pub fn durable_name(group: &str, event_name: &str) -> String {
    format!("{group}--{}", event_name.replace('.', "_"))
}

/// What provisioning does with one stream.
#[derive(Debug)]
pub(crate) enum StreamPlan {
    /// It exists and stores every declared subject.
    Keep,
    /// Create it with this config.
    Create(stream::Config),
    /// Update it to this config (subjects added).
    Update(stream::Config),
}

/// Decides, by `policy`, what to do with stream `name` given the server's
/// config (`None`: it does not exist). Logs what it decides; an error when
/// the policy forbids the change. Both transports execute the plan.
pub(crate) fn plan_stream(
    name: &str,
    spec: &StreamSpec,
    settings: &StreamSettings,
    policy: TopologyPolicy,
    existing: Option<&stream::Config>,
) -> Result<StreamPlan, Error> {
    let wanted: Vec<String> = {
        let mut w: Vec<String> = spec
            .subjects
            .iter()
            .map(|s| crate::event::stream_subject_of(s))
            .collect();
        w.sort();
        w.dedup();
        w
    };
    let Some(existing) = existing else {
        if policy == TopologyPolicy::BindOnly {
            return Err(Error::Config(format!(
                "stream `{name}` does not exist and the app is bind-only; create it (subjects {wanted:?}) \
                 or start with TopologyPolicy::Update"
            )));
        }
        return Ok(StreamPlan::Create(stream::Config {
            name: name.to_owned(),
            subjects: wanted,
            storage: if settings.memory_storage {
                StorageType::Memory
            } else {
                StorageType::File
            },
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        }));
    };
    let missing: Vec<&String> = spec
        .subjects
        .iter()
        .filter(|s| {
            !existing
                .subjects
                .iter()
                .any(|have| subject_matches(have, s))
        })
        .collect();
    if missing.is_empty() {
        return Ok(StreamPlan::Keep);
    }
    let diff = format!(
        "  subjects: server={:?} declared events need {:?}",
        existing.subjects, missing
    );
    match policy {
        TopologyPolicy::Update => {
            tracing::warn!(stream = name, %diff, "stream does not store every declared subject; adding them");
            let mut config = existing.clone();
            for w in wanted {
                if !config.subjects.contains(&w) {
                    config.subjects.push(w);
                }
            }
            Ok(StreamPlan::Update(config))
        }
        TopologyPolicy::Refuse | TopologyPolicy::BindOnly => Err(Error::Drift {
            what: format!("stream `{name}`"),
            diff,
            hint: "add the subjects to the stream, or start with TopologyPolicy::Update",
        }),
    }
}

/// What provisioning does with one durable consumer.
#[derive(Debug)]
pub(crate) enum ConsumerPlan {
    /// Use it as it is on the server (possibly differing, under bind-only).
    Keep(consumer::Config),
    /// Create it.
    Create(pull::Config),
    /// Update it; `diff` says what changes.
    Update { config: pull::Config, diff: String },
}

/// Decides, by `policy`, what to do with the declared consumer given the
/// server's config (`None`: it does not exist).
pub(crate) fn plan_consumer(
    spec: &ConsumerSpec,
    policy: TopologyPolicy,
    existing: Option<&consumer::Config>,
) -> Result<ConsumerPlan, Error> {
    let declared = declared_config(spec);
    let Some(existing) = existing else {
        if policy == TopologyPolicy::BindOnly {
            return Err(Error::Config(format!(
                "{} does not exist and the app is bind-only; create it or start with TopologyPolicy::Update",
                spec.describe()
            )));
        }
        return Ok(ConsumerPlan::Create(declared));
    };
    let diff = consumer_diff(existing, &declared);
    if diff.is_empty() {
        return Ok(ConsumerPlan::Keep(existing.clone()));
    }
    match policy {
        TopologyPolicy::Update => {
            tracing::warn!(consumer = %spec.durable, stream = %spec.stream, "consumer config differs from the code; updating:\n{diff}");
            Ok(ConsumerPlan::Update {
                config: declared,
                diff,
            })
        }
        TopologyPolicy::Refuse => Err(Error::Drift {
            what: spec.describe(),
            diff,
            hint: "align the code with the server, or start with TopologyPolicy::Update",
        }),
        TopologyPolicy::BindOnly => {
            tracing::warn!(consumer = %spec.durable, stream = %spec.stream, "bind-only: consumer config differs from the code (not changed):\n{diff}");
            Ok(ConsumerPlan::Keep(existing.clone()))
        }
    }
}

/// The error for a filter-subject change on a server that cannot apply it
/// (nats-server < 2.10 accepts the update and then delivers nothing), or
/// `None` when `server_version` can.
pub(crate) fn filter_change_refused(
    spec: &ConsumerSpec,
    existing: &consumer::Config,
    diff: &str,
    server_version: &str,
) -> Option<Error> {
    if existing.filter_subject == spec.filter_subject {
        return None;
    }
    let why = filter_change::refuse_filter_change(server_version)?;
    Some(Error::Drift {
        what: spec.describe(),
        diff: format!("{diff}\n  ({why})"),
        hint: FILTER_CHANGE_HINT,
    })
}

/// The error when the broker refuses a consumer update.
pub(crate) fn update_refused(
    spec: &ConsumerSpec,
    diff: &str,
    refusal: impl std::fmt::Display,
) -> Error {
    Error::Drift {
        what: spec.describe(),
        diff: format!("{diff}\n  (the server refused the update: {refusal})"),
        hint: "some fields (e.g. deliver_policy) cannot change on an existing consumer; \
               delete the consumer to recreate it, or restore the old value in the code",
    }
}

fn declared_config(spec: &ConsumerSpec) -> pull::Config {
    pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: spec.filter_subject.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        deliver_policy: match spec.deliver {
            DeliverPolicy::New => consumer::DeliverPolicy::New,
            DeliverPolicy::Last => consumer::DeliverPolicy::Last,
            _ => consumer::DeliverPolicy::All,
        },
        ..Default::default()
    }
}

/// Field-by-field differences between the server's consumer and the declaration.
fn consumer_diff(server: &consumer::Config, declared: &pull::Config) -> String {
    let mut out = String::new();
    let mut field = |name: &str, s: String, d: String| {
        if s != d {
            let _ = writeln!(out, "  {name}: server={s} declared={d}");
        }
    };
    field(
        "filter_subject",
        format!("{:?}", server.filter_subject),
        format!("{:?}", declared.filter_subject),
    );
    field(
        "ack_policy",
        format!("{:?}", server.ack_policy),
        format!("{:?}", declared.ack_policy),
    );
    field(
        "ack_wait",
        format!("{:?}", server.ack_wait),
        format!("{:?}", declared.ack_wait),
    );
    field(
        "max_deliver",
        server.max_deliver.to_string(),
        declared.max_deliver.to_string(),
    );
    field(
        "deliver_policy",
        format!("{:?}", server.deliver_policy),
        format!("{:?}", declared.deliver_policy),
    );
    out.trim_end().to_owned()
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

/// Reads the counts of the durable consumer `durable` on `stream`, on
/// either transport: pending, ack pending, redelivered, ack floor.
///
/// ```
/// # async fn demo(bus: jetflow::Bus) -> Result<(), jetflow::Error> {
/// let state = jetflow::topology::consumer_state(&bus, "ORDER", "inventory--order_created").await?;
/// println!("{} waiting for an ack, everything up to #{} done", state.num_ack_pending, state.ack_floor);
/// # Ok(()) }
/// ```
pub async fn consumer_state(
    bus: &crate::Bus,
    stream: &str,
    durable: &str,
) -> Result<ConsumerState, Error> {
    use crate::transport::Transport as _;
    bus.transport().consumer_state(stream, durable).await
}
