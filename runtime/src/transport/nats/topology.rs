//! The topology plans executed on JetStream, and reading streams and
//! consumers back.

use async_nats::jetstream::consumer::{self, AckPolicy, pull};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{
    self, DeleteMessageErrorKind, RawMessageErrorKind, StorageType,
};
use async_nats::jetstream::{self, ErrorCode};

use super::{filter_change, headers};
use crate::topology::DeliverPolicy;
use crate::topology::{
    self, ConsumerDecl, ConsumerPlan, ConsumerState, ConsumerView, StreamDecl, StreamPlan,
    TopologyError, TopologyPolicy,
};
use crate::transport::{ConsumerStatus, Stored};

/// The fix when a server cannot change a durable's filter subject.
const FILTER_CHANGE_HINT: &str = "upgrade nats-server to 2.10 or later; or, once every message of the durable is \
    handled, delete the durable (`nats consumer rm`) so that it is recreated with the new filter (and set the \
    handler's `deliver` to where it should start)";

pub(super) async fn declare_stream(
    js: &jetstream::Context,
    decl: &StreamDecl,
    policy: TopologyPolicy,
) -> Result<(), TopologyError> {
    let name = decl.name.as_str();
    let what = || format!("stream `{name}`");
    let existing = stream_config(js, name).await?;
    let plan = topology::plan_stream(decl, policy, existing.as_ref().map(|c| &c.subjects[..]))?;
    match (plan, existing) {
        (StreamPlan::Keep, _) => Ok(()),
        (StreamPlan::Create { subjects }, _) => {
            let s = &decl.settings;
            let config = stream::Config {
                name: name.to_owned(),
                subjects,
                storage: if s.memory_storage {
                    StorageType::Memory
                } else {
                    StorageType::File
                },
                num_replicas: s.replicas,
                duplicate_window: s.duplicate_window,
                ..Default::default()
            };
            js.create_stream(config).await.map_err(|e| {
                TopologyError::create(
                    what(),
                    " (does the user have $JS.API.STREAM.CREATE rights?)",
                    e,
                )
            })?;
            tracing::info!(stream = name, "created stream");
            Ok(())
        }
        (StreamPlan::AddSubjects { subjects }, Some(mut config)) => {
            config.subjects = subjects;
            js.update_stream(config)
                .await
                .map_err(|e| TopologyError::update(what(), "add subjects to", e))?;
            Ok(())
        }
        (plan, None) => Err(TopologyError::read(
            what(),
            "provision",
            format!("the plan {plan:?} is for a stream that exists, and it does not"),
        )),
    }
}

/// The stream's config on the server; `None` when it does not exist.
pub(super) async fn stream_config(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Config>, TopologyError> {
    let what = || format!("stream `{name}`");
    match js.get_stream(name).await {
        Ok(mut stream) => Ok(Some(
            stream
                .info()
                .await
                .map_err(|e| TopologyError::read(what(), "read", e))?
                .config
                .clone(),
        )),
        Err(e) if is_stream_not_found(&e) => Ok(None),
        Err(e) => Err(TopologyError::read(what(), "look up", e)),
    }
}

/// The durable consumer as the server has it; `None` when it or its
/// stream does not exist.
pub(super) async fn consumer_view(
    js: &jetstream::Context,
    decl: &ConsumerDecl,
) -> Result<Option<ConsumerView>, TopologyError> {
    if stream_config(js, &decl.stream).await?.is_none() {
        return Ok(None);
    }
    let stream = js
        .get_stream_no_info(&decl.stream)
        .await
        .map_err(|e| TopologyError::read(format!("stream `{}`", decl.stream), "open", e))?;
    match stream.consumer_info(&decl.durable).await {
        Ok(info) => Ok(Some(view(&info.config))),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(TopologyError::read(decl.describe(), "read", e)),
    }
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

pub(super) async fn declare_consumer(
    js: &jetstream::Context,
    server_version: &str,
    decl: &ConsumerDecl,
    policy: TopologyPolicy,
) -> Result<ConsumerView, TopologyError> {
    let what = decl.describe();
    let stream = js
        .get_stream_no_info(&decl.stream)
        .await
        .map_err(|e| TopologyError::read(format!("stream `{}`", decl.stream), "open", e))?;
    let existing = match stream.consumer_info(&decl.durable).await {
        Ok(info) => Some(view(&info.config)),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => None,
        Err(e) => return Err(TopologyError::read(what, "read", e)),
    };
    match topology::plan_consumer(decl, policy, existing.as_ref())? {
        ConsumerPlan::Keep(view) => Ok(view),
        ConsumerPlan::Create => {
            let consumer = stream.create_consumer(config(decl)).await.map_err(|e| {
                TopologyError::create(
                    what,
                    " (does the user have $JS.API.CONSUMER.DURABLE.CREATE rights?)",
                    e,
                )
            })?;
            tracing::info!(consumer = %decl.durable, stream = %decl.stream, "created durable consumer");
            Ok(view(&consumer.cached_info().config))
        }
        ConsumerPlan::Update { diff } => {
            if let Some(existing) = &existing
                && existing.filter_subject != decl.filter_subject
                && let Some(why) = filter_change::refuse_filter_change(server_version)
            {
                return Err(TopologyError::drift(
                    decl.describe(),
                    format!("{diff}\n  ({why})"),
                    FILTER_CHANGE_HINT,
                ));
            }
            // without the server_2_10 API, creating an existing durable updates it
            stream
                .create_consumer(config(decl))
                .await
                .map_err(|e| topology::update_refused(decl, &diff, e))?;
            let info = stream
                .consumer_info(&decl.durable)
                .await
                .map_err(|e| TopologyError::read(what, "read back the updated", e))?;
            Ok(view(&info.config))
        }
    }
}

/// The declared consumer as JetStream config.
fn config(decl: &ConsumerDecl) -> pull::Config {
    pull::Config {
        durable_name: Some(decl.durable.clone()),
        filter_subject: decl.filter_subject.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: decl.ack_wait,
        max_deliver: decl.broker_max_deliver(),
        deliver_policy: match decl.deliver {
            DeliverPolicy::New => consumer::DeliverPolicy::New,
            DeliverPolicy::Last => consumer::DeliverPolicy::Last,
            DeliverPolicy::All => consumer::DeliverPolicy::All,
        },
        ..Default::default()
    }
}

/// What the server has, in jetflow's terms.
fn view(config: &consumer::Config) -> ConsumerView {
    ConsumerView {
        filter_subject: config.filter_subject.clone(),
        explicit_ack: config.ack_policy == AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        deliver: match config.deliver_policy {
            consumer::DeliverPolicy::All => Some(DeliverPolicy::All),
            consumer::DeliverPolicy::New => Some(DeliverPolicy::New),
            consumer::DeliverPolicy::Last => Some(DeliverPolicy::Last),
            _ => None,
        },
    }
}

pub(super) async fn consumer_status(
    js: &jetstream::Context,
    decl: &ConsumerDecl,
) -> ConsumerStatus {
    let stream = match js.get_stream_no_info(&decl.stream).await {
        Ok(s) => s,
        Err(e) => return ConsumerStatus::Unavailable(e.to_string()),
    };
    match stream.consumer_info(&decl.durable).await {
        Ok(_) => ConsumerStatus::Exists,
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => ConsumerStatus::Missing,
        Err(e) if e.kind() == ConsumerInfoErrorKind::StreamNotFound => {
            ConsumerStatus::StreamMissing
        }
        Err(e) => ConsumerStatus::Unavailable(e.to_string()),
    }
}

/// The durable's limits on one pull request; none known when its info
/// cannot be read.
pub(super) async fn request_limits(
    js: &jetstream::Context,
    decl: &ConsumerDecl,
) -> super::pull::RequestLimits {
    let info = async {
        js.get_stream_no_info(&decl.stream)
            .await
            .ok()?
            .consumer_info(&decl.durable)
            .await
            .ok()
    };
    match info.await {
        Some(info) => super::pull::RequestLimits::of(&info.config),
        None => super::pull::RequestLimits::default(),
    }
}

pub(super) async fn read_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Vec<Stored>, TopologyError> {
    let what = || format!("stream `{name}`");
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| TopologyError::read(what(), "open", e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| TopologyError::read(what(), "read the info of", e))?
        .state
        .clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let msg = match stream.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => continue,
            Err(e) => {
                return Err(TopologyError::read(
                    what(),
                    &format!("read message {seq} of"),
                    e,
                ));
            }
        };
        out.push(Stored::new(
            msg.sequence,
            msg.subject.to_string(),
            headers::from_nats(Some(&msg.headers)),
            msg.payload,
        ));
    }
    Ok(out)
}

pub(super) async fn delete_messages(
    js: &jetstream::Context,
    name: &str,
    sequences: &[u64],
) -> Result<usize, TopologyError> {
    let what = || format!("stream `{name}`");
    let stream = js
        .get_stream_no_info(name)
        .await
        .map_err(|e| TopologyError::read(what(), "open", e))?;
    let mut deleted = 0;
    for &seq in sequences {
        match stream.delete_message(seq).await {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            // already gone: nothing to delete
            Err(e)
                if matches!(e.kind(), DeleteMessageErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::NO_MESSAGE_FOUND
                        || j.error_code() == ErrorCode::SEQUENCE_NOT_FOUND) => {}
            Err(e) => {
                return Err(TopologyError::read(
                    what(),
                    &format!("delete message {seq} of"),
                    e,
                ));
            }
        }
    }
    Ok(deleted)
}

pub(super) async fn consumer_state(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<ConsumerState, TopologyError> {
    let what = format!("consumer `{durable}` on stream `{stream}`");
    let info = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| TopologyError::read(format!("stream `{stream}`"), "open", e))?
        .consumer_info(durable)
        .await
        .map_err(|e| TopologyError::read(what, "read", e))?;
    Ok(ConsumerState {
        num_pending: info.num_pending,
        num_ack_pending: info.num_ack_pending as u64,
        num_redelivered: info.num_redelivered as u64,
        num_waiting: info.num_waiting as u64,
        ack_floor: info.ack_floor.stream_sequence,
        delivered: info.delivered.stream_sequence,
    })
}
