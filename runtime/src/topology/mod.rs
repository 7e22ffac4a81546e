//! Streams and durable pull consumers declared by the code, provisioned at
//! start-up. A server-side config that differs from the declaration is
//! reported field by field and, by [`TopologyPolicy`], updated or refused —
//! never silently ignored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, pull};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, ErrorCode};

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

/// Durable name of a group's consumer of an event: `{group}--{name with '.' -> '_'}`.
/// The version is excluded so moving a handler from v1 to v2 keeps its position.
pub fn durable_name(group: &str, event_name: &str) -> String {
    format!("{group}--{}", event_name.replace('.', "_"))
}

/// Ensures every stream in `streams` exists and stores its subjects.
pub(crate) async fn ensure_streams(
    js: &jetstream::Context,
    streams: &BTreeMap<String, StreamSpec>,
    settings: &StreamSettings,
    policy: TopologyPolicy,
) -> Result<(), Error> {
    for (name, spec) in streams {
        ensure_stream(js, name, spec, settings, policy).await?;
    }
    Ok(())
}

async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    spec: &StreamSpec,
    settings: &StreamSettings,
    policy: TopologyPolicy,
) -> Result<(), Error> {
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
    match js.get_stream(name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| Error::topology(format!("cannot read stream `{name}`"), e))?;
            let mut config = info.config.clone();
            let missing: Vec<&String> = spec
                .subjects
                .iter()
                .filter(|s| !config.subjects.iter().any(|have| subject_matches(have, s)))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let diff = format!(
                "  subjects: server={:?} declared events need {:?}",
                config.subjects, missing
            );
            match policy {
                TopologyPolicy::Update => {
                    tracing::warn!(stream = name, %diff, "stream does not store every declared subject; adding them");
                    for w in wanted {
                        if !config.subjects.contains(&w) {
                            config.subjects.push(w);
                        }
                    }
                    js.update_stream(config).await.map_err(|e| {
                        Error::topology(format!("cannot add subjects to stream `{name}`"), e)
                    })?;
                    Ok(())
                }
                TopologyPolicy::Refuse | TopologyPolicy::BindOnly => Err(Error::Drift {
                    what: format!("stream `{name}`"),
                    diff,
                    hint: "add the subjects to the stream, or start with TopologyPolicy::Update",
                }),
            }
        }
        Err(e) if is_stream_not_found(&e) => {
            if policy == TopologyPolicy::BindOnly {
                return Err(Error::Config(format!(
                    "stream `{name}` does not exist and the app is bind-only; create it (subjects {wanted:?}) \
                     or start with TopologyPolicy::Update"
                )));
            }
            let config = stream::Config {
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
            };
            js.create_stream(config).await.map_err(|e| {
                Error::topology(format!("cannot create stream `{name}` (does the user have $JS.API.STREAM.CREATE rights?)"), e)
            })?;
            tracing::info!(stream = name, "created stream");
            Ok(())
        }
        Err(e) => Err(Error::topology(
            format!("cannot look up stream `{name}`"),
            e,
        )),
    }
}

fn is_stream_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
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

/// Ensures the durable consumer exists as declared; returns the
/// server-effective config (whose `ack_wait` drives automatic progress acks).
pub(crate) async fn ensure_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    policy: TopologyPolicy,
) -> Result<consumer::Config, Error> {
    let what = format!("consumer `{}` on stream `{}`", spec.durable, spec.stream);
    let stream = js
        .get_stream_no_info(&spec.stream)
        .await
        .map_err(|e| Error::topology(format!("cannot open stream `{}`", spec.stream), e))?;
    let declared = declared_config(spec);
    match stream.consumer_info(&spec.durable).await {
        Ok(info) => {
            let diff = consumer_diff(&info.config, &declared);
            if diff.is_empty() {
                return Ok(info.config);
            }
            match policy {
                TopologyPolicy::Update
                    if info.config.filter_subject != declared.filter_subject
                        && let Some(why) = filter_change::refuse_filter_change(
                            &js.client().server_info().version,
                        ) =>
                {
                    Err(Error::Drift {
                        what,
                        diff: format!("{diff}\n  ({why})"),
                        hint: FILTER_CHANGE_HINT,
                    })
                }
                TopologyPolicy::Update => {
                    tracing::warn!(consumer = %spec.durable, stream = %spec.stream, "consumer config differs from the code; updating:\n{diff}");
                    let updated: pull::Config = declared;
                    // without the server_2_10 API, creating an existing durable updates it
                    stream.create_consumer(updated).await.map_err(|e| Error::Drift {
                        what: what.clone(),
                        diff: format!("{diff}\n  (the server refused the update: {e})"),
                        hint: "some fields (e.g. deliver_policy) cannot change on an existing consumer; \
                               delete the consumer to recreate it, or restore the old value in the code",
                    })?;
                    let info = stream.consumer_info(&spec.durable).await.map_err(|e| {
                        Error::topology(format!("cannot read {what} after updating it"), e)
                    })?;
                    Ok(info.config)
                }
                TopologyPolicy::Refuse => Err(Error::Drift {
                    what,
                    diff,
                    hint: "align the code with the server, or start with TopologyPolicy::Update",
                }),
                TopologyPolicy::BindOnly => {
                    tracing::warn!(consumer = %spec.durable, stream = %spec.stream, "bind-only: consumer config differs from the code (not changed):\n{diff}");
                    Ok(info.config)
                }
            }
        }
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
            if policy == TopologyPolicy::BindOnly {
                return Err(Error::Config(format!(
                    "{what} does not exist and the app is bind-only; create it or start with TopologyPolicy::Update"
                )));
            }
            let consumer = stream.create_consumer(declared).await.map_err(|e| {
                Error::topology(
                    format!("cannot create {what} (does the user have $JS.API.CONSUMER.DURABLE.CREATE rights?)"),
                    e,
                )
            })?;
            tracing::info!(consumer = %spec.durable, stream = %spec.stream, "created durable consumer");
            Ok(consumer.cached_info().config.clone())
        }
        Err(e) => Err(Error::topology(format!("cannot read {what}"), e)),
    }
}

/// Whether the consumer still exists: `Ok(true)`, `Ok(false)` (consumer gone),
/// or the error (stream gone, server unreachable...).
pub(crate) async fn consumer_exists(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<bool, String> {
    let s = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| e.to_string())?;
    match s.consumer_info(durable).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == ConsumerInfoErrorKind::StreamNotFound => Err(format!(
            "stream `{stream}` does not exist (was it deleted?)"
        )),
        Err(e) => Err(e.to_string()),
    }
}
