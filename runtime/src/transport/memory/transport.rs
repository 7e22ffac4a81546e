//! The embedded broker as a [`Transport`].

use std::collections::BTreeMap;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::consumer::{self, Consumer};
use super::notify::Note;
use super::stream::{self, Refused, Stream};
use super::subscription::MemorySubscription;
use super::{Broker, MAX_PAYLOAD, MemoryAcker};
use crate::event::subject_matches;
use crate::topology::{
    self, ConsumerDecl, ConsumerPlan, ConsumerState, ConsumerView, StreamDecl, StreamPlan,
    TopologyError, TopologyPolicy,
};
use crate::transport::{
    BoxError, Capabilities, ConsumerStatus, Outgoing, PubAck, PublishErrorKind, PublishFailure,
    Stored, Transport,
};

fn stream_gone(stream: &str) -> TopologyError {
    TopologyError::read(
        format!("stream `{stream}`"),
        "open",
        "the embedded broker has no such stream",
    )
}

impl Transport for Broker {
    type Acker = MemoryAcker;
    type Subscription = MemorySubscription;

    fn describe(&self) -> String {
        format!("the embedded broker {}", self.url())
    }

    fn capabilities(&self) -> Capabilities {
        Broker::CAPABILITIES
    }

    async fn publish(&self, message: Outgoing) -> Result<PubAck, PublishFailure> {
        let Outgoing {
            subject,
            headers,
            payload,
            id,
            ..
        } = message;
        if stream::message_size(&subject, &headers, &payload) > MAX_PAYLOAD as u64 {
            return Err(PublishFailure::Failed(
                PublishErrorKind::TooLarge,
                format!("the embedded broker's max_payload is {MAX_PAYLOAD} bytes").into(),
            ));
        }
        let now = Instant::now();
        let ack = {
            let mut state = self.lock();
            let Some((name, stream)) = state.streams.iter_mut().find(|(_, s)| {
                s.config
                    .subjects
                    .iter()
                    .any(|f| subject_matches(f, &subject))
            }) else {
                return Err(PublishFailure::Failed(
                    PublishErrorKind::NoStream,
                    format!("no stream of the embedded broker stores {subject:?}").into(),
                ));
            };
            let name = name.clone();
            match stream.store(&subject, headers, payload, id, now) {
                Ok((sequence, duplicate)) => PubAck::new(name, sequence, duplicate),
                Err(Refused::TooLarge(why)) => {
                    return Err(PublishFailure::Failed(
                        PublishErrorKind::TooLarge,
                        why.into(),
                    ));
                }
                Err(Refused::Limit(why)) => {
                    return Err(PublishFailure::Failed(
                        PublishErrorKind::Rejected,
                        why.into(),
                    ));
                }
            }
        };
        if !ack.duplicate {
            self.notify_waiters();
        }
        Ok(ack)
    }

    async fn notify(&self, message: Outgoing) -> Result<(), PublishFailure> {
        let mut state = self.lock();
        if state.offline {
            return Err(PublishFailure::Failed(
                PublishErrorKind::Disconnected,
                format!(
                    "the embedded broker {} is offline (a fault set by the test)",
                    self.url()
                )
                .into(),
            ));
        }
        let note = Note {
            subject: message.subject.into_owned(),
            headers: message.headers,
            payload: message.payload,
            published: OffsetDateTime::now_utc(),
        };
        state.listeners.deliver(&note);
        Ok(())
    }

    async fn declare_streams(
        &self,
        streams: &[StreamDecl],
        policy: TopologyPolicy,
    ) -> Result<(), TopologyError> {
        let mut state = self.lock();
        for decl in streams {
            let name = &decl.name;
            let existing = state.streams.get(name).map(|s| &s.config.subjects[..]);
            match topology::plan_stream(decl, policy, existing)? {
                StreamPlan::Keep => {}
                StreamPlan::Create { subjects } => {
                    let config = stream::Config::new(decl, subjects);
                    check_overlap(&state.streams, &config)?;
                    state.streams.insert(name.clone(), Stream::new(config));
                    tracing::info!(stream = %name, broker = %self.url(), "created stream");
                }
                StreamPlan::AddSubjects { subjects } => {
                    if let Some(s) = state.streams.get(name) {
                        let mut config = s.config.clone();
                        config.subjects = subjects;
                        check_overlap(&state.streams, &config)?;
                        if let Some(s) = state.streams.get_mut(name) {
                            s.config = config;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn declare_consumer(
        &self,
        decl: &ConsumerDecl,
        policy: TopologyPolicy,
    ) -> Result<ConsumerView, TopologyError> {
        let view = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let incarnation = state.next_id();
            let stream = state
                .streams
                .get_mut(&decl.stream)
                .ok_or_else(|| stream_gone(&decl.stream))?;
            let existing = stream.consumers.get(&decl.durable).map(|c| c.config.view());
            match topology::plan_consumer(decl, policy, existing.as_ref())? {
                ConsumerPlan::Keep(view) => view,
                ConsumerPlan::Create => {
                    let consumer = Consumer::new(consumer::Config::of(decl), stream, incarnation);
                    let view = consumer.config.view();
                    stream.consumers.insert(decl.durable.clone(), consumer);
                    tracing::info!(consumer = %decl.durable, stream = %decl.stream, "created durable consumer");
                    view
                }
                ConsumerPlan::Update { diff } => {
                    let consumer = stream
                        .consumers
                        .get_mut(&decl.durable)
                        .ok_or_else(|| stream_gone(&decl.stream))?;
                    consumer
                        .update(consumer::Config::of(decl))
                        .map_err(|why| topology::update_refused(decl, &diff, why))?;
                    consumer.config.view()
                }
            }
        };
        self.notify_waiters();
        Ok(view)
    }

    async fn consumer_status(&self, decl: &ConsumerDecl) -> ConsumerStatus {
        match self.lock().streams.get(&decl.stream) {
            Some(s) if s.consumers.contains_key(&decl.durable) => ConsumerStatus::Exists,
            Some(_) => ConsumerStatus::Missing,
            None => ConsumerStatus::StreamMissing,
        }
    }

    async fn subscribe(&self, decl: &ConsumerDecl) -> Result<MemorySubscription, BoxError> {
        let (id, incarnation) = {
            let mut state = self.lock();
            let id = state.next_id();
            let incarnation = state
                .streams
                .get(&decl.stream)
                .and_then(|s| s.consumers.get(&decl.durable))
                .map(|c| c.incarnation);
            (id, incarnation)
        };
        Ok(MemorySubscription::durable(
            self,
            &decl.stream,
            &decl.durable,
            id,
            incarnation,
        ))
    }

    async fn listen(
        &self,
        subject: &str,
        queue: Option<&str>,
    ) -> Result<MemorySubscription, BoxError> {
        let mut state = self.lock();
        let id = state.next_id();
        let rx = state.listeners.add(id, subject, queue);
        Ok(MemorySubscription::notes(self, id, queue, rx))
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<Stored>, TopologyError> {
        let mut state = self.lock();
        let s = state
            .streams
            .get_mut(stream)
            .ok_or_else(|| stream_gone(stream))?;
        s.expire(Instant::now());
        Ok(s.messages
            .iter()
            .map(|(&sequence, m)| {
                Stored::new(
                    sequence,
                    m.subject.clone(),
                    m.headers.clone(),
                    m.payload.clone(),
                )
            })
            .collect())
    }

    async fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> Result<usize, TopologyError> {
        let mut state = self.lock();
        let s = state
            .streams
            .get_mut(stream)
            .ok_or_else(|| stream_gone(stream))?;
        Ok(sequences.iter().filter(|&&seq| s.delete(seq)).count())
    }

    async fn consumer_state(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerState, TopologyError> {
        let state = self.lock();
        let s = state
            .streams
            .get(stream)
            .ok_or_else(|| stream_gone(stream))?;
        let c = s.consumers.get(durable).ok_or_else(|| {
            TopologyError::read(
                format!("consumer `{durable}` on stream `{stream}`"),
                "read",
                "the embedded broker has no such consumer",
            )
        })?;
        Ok(c.state(s, Instant::now()))
    }

    async fn flush(&self) -> Result<(), BoxError> {
        // settlements take effect synchronously
        Ok(())
    }
}

fn check_overlap(
    streams: &BTreeMap<String, Stream>,
    config: &stream::Config,
) -> Result<(), TopologyError> {
    for (other, s) in streams {
        if *other == config.name {
            continue;
        }
        for a in &s.config.subjects {
            for b in &config.subjects {
                if subject_matches(a, b) || subject_matches(b, a) {
                    return Err(TopologyError::overlap(
                        format!("stream `{}`", config.name),
                        &format!(
                            "its subject {b:?} overlaps {a:?} of stream `{other}`; give the events a distinct stream or first token"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
