//! JetStream through async-nats: pull requests on an inbox, acks on the
//! `$JS.ACK` reply subject, topology through the JetStream API.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, AckKind, ErrorCode, consumer};
use async_nats::{HeaderMap, Message, StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{BoxError, Delivery, Inbound, Inbox, Info, PublishFailure, Signal, Stored, Transport};
use crate::error::Error;
use crate::publish::{PubAck, PublishErrorKind};
use crate::topology::{
    self, ConsumerPlan, ConsumerSpec, ConsumerState, StreamPlan, StreamSettings, StreamSpec,
    TopologyPolicy,
};

/// A connection to a NATS server with JetStream.
#[derive(Debug, Clone)]
pub(crate) struct NatsTransport {
    client: async_nats::Client,
    js: jetstream::Context,
    reconnects: watch::Receiver<u64>,
    /// Keeps the channel open when nobody reports reconnections, so that
    /// `changed()` waits instead of failing at once.
    _unreported: Option<std::sync::Arc<watch::Sender<u64>>>,
}

impl NatsTransport {
    /// `reconnects` counts reconnections (see `ConnectOptions::connect`);
    /// `None` for a connection whose reconnections nobody reports.
    pub(crate) fn new(
        client: async_nats::Client,
        reconnects: Option<watch::Receiver<u64>>,
    ) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(5));
        let (reconnects, unreported) = match reconnects {
            Some(rx) => (rx, None),
            None => {
                let (tx, rx) = watch::channel(0);
                (rx, Some(std::sync::Arc::new(tx)))
            }
        };
        NatsTransport {
            client,
            js,
            reconnects,
            _unreported: unreported,
        }
    }

    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "JetStream on nats-server {} at {}",
            self.client.server_info().version,
            self.client.server_info().host
        )
    }

    async fn ensure_stream(
        &self,
        name: &str,
        spec: &StreamSpec,
        settings: &StreamSettings,
        policy: TopologyPolicy,
    ) -> Result<(), Error> {
        let existing = match self.js.get_stream(name).await {
            Ok(mut stream) => Some(
                stream
                    .info()
                    .await
                    .map_err(|e| Error::topology(format!("cannot read stream `{name}`"), e))?
                    .config
                    .clone(),
            ),
            Err(e) if is_stream_not_found(&e) => None,
            Err(e) => {
                return Err(Error::topology(
                    format!("cannot look up stream `{name}`"),
                    e,
                ));
            }
        };
        match topology::plan_stream(name, spec, settings, policy, existing.as_ref())? {
            StreamPlan::Keep => Ok(()),
            StreamPlan::Create(config) => {
                self.js.create_stream(config).await.map_err(|e| {
                    Error::topology(format!("cannot create stream `{name}` (does the user have $JS.API.STREAM.CREATE rights?)"), e)
                })?;
                tracing::info!(stream = name, "created stream");
                Ok(())
            }
            StreamPlan::Update(config) => {
                self.js.update_stream(config).await.map_err(|e| {
                    Error::topology(format!("cannot add subjects to stream `{name}`"), e)
                })?;
                Ok(())
            }
        }
    }
}

fn is_stream_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

impl Transport for NatsTransport {
    async fn publish(
        &self,
        subject: async_nats::Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PubAck, PublishFailure> {
        use jetstream::context::PublishErrorKind as K;
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers);
        let result = match self.js.send_publish(subject, message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ack) => Ok(PubAck {
                stream: ack.stream,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(e) if e.kind() == K::TimedOut || e.kind() == K::BrokenPipe => {
                Err(PublishFailure::Lost(e.into()))
            }
            Err(e) => {
                let kind = match e.kind() {
                    K::StreamNotFound => PublishErrorKind::NoStream,
                    K::MaxPayloadExceeded => PublishErrorKind::TooLarge,
                    _ => PublishErrorKind::Rejected,
                };
                Err(PublishFailure::Failed(kind, e.into()))
            }
        }
    }

    async fn ensure_streams(
        &self,
        streams: &BTreeMap<String, StreamSpec>,
        settings: &StreamSettings,
        policy: TopologyPolicy,
    ) -> Result<(), Error> {
        for (name, spec) in streams {
            self.ensure_stream(name, spec, settings, policy).await?;
        }
        Ok(())
    }

    async fn ensure_consumer(
        &self,
        spec: &ConsumerSpec,
        policy: TopologyPolicy,
    ) -> Result<consumer::Config, Error> {
        let what = spec.describe();
        let stream = self
            .js
            .get_stream_no_info(&spec.stream)
            .await
            .map_err(|e| Error::topology(format!("cannot open stream `{}`", spec.stream), e))?;
        let existing = match stream.consumer_info(&spec.durable).await {
            Ok(info) => Some(info.config),
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => None,
            Err(e) => return Err(Error::topology(format!("cannot read {what}"), e)),
        };
        match topology::plan_consumer(spec, policy, existing.as_ref())? {
            ConsumerPlan::Keep(config) => Ok(config),
            ConsumerPlan::Create(config) => {
                let consumer = stream.create_consumer(config).await.map_err(|e| {
                    Error::topology(
                        format!("cannot create {what} (does the user have $JS.API.CONSUMER.DURABLE.CREATE rights?)"),
                        e,
                    )
                })?;
                tracing::info!(consumer = %spec.durable, stream = %spec.stream, "created durable consumer");
                Ok(consumer.cached_info().config.clone())
            }
            ConsumerPlan::Update { config, diff } => {
                let version = &self.client.server_info().version;
                if let Some(existing) = &existing
                    && let Some(refused) =
                        topology::filter_change_refused(spec, existing, &diff, version)
                {
                    return Err(refused);
                }
                // without the server_2_10 API, creating an existing durable updates it
                stream
                    .create_consumer(config)
                    .await
                    .map_err(|e| topology::update_refused(spec, &diff, e))?;
                let info = stream.consumer_info(&spec.durable).await.map_err(|e| {
                    Error::topology(format!("cannot read {what} after updating it"), e)
                })?;
                Ok(info.config)
            }
        }
    }

    async fn consumer_exists(&self, stream: &str, durable: &str) -> Result<bool, String> {
        let s = self
            .js
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

    async fn open_inbox(&self, spec: &ConsumerSpec) -> Result<Inbox, BoxError> {
        let inbox = self.client.new_inbox();
        let sub = self.client.subscribe(inbox.clone()).await?;
        Ok(Inbox::Nats(NatsInbox {
            client: self.client.clone(),
            js: self.js.clone(),
            request_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", spec.stream, spec.durable),
            inbox,
            sub,
        }))
    }

    async fn stream_messages(&self, name: &str) -> Result<Vec<Stored>, Error> {
        let mut stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| Error::topology(format!("cannot open the `{name}` stream"), e))?;
        let state = stream
            .info()
            .await
            .map_err(|e| Error::topology(format!("cannot read the `{name}` stream's info"), e))?
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
                    return Err(Error::topology(
                        format!("cannot read `{name}` message {seq}"),
                        e,
                    ));
                }
            };
            out.push(Stored {
                sequence: msg.sequence,
                headers: msg.headers,
                payload: msg.payload,
            });
        }
        Ok(out)
    }

    async fn consumer_state(&self, stream: &str, durable: &str) -> Result<ConsumerState, Error> {
        let what = format!("consumer `{durable}` on stream `{stream}`");
        let info = self
            .js
            .get_stream_no_info(stream)
            .await
            .map_err(|e| Error::topology(format!("cannot open stream `{stream}`"), e))?
            .consumer_info(durable)
            .await
            .map_err(|e| Error::topology(format!("cannot read {what}"), e))?;
        Ok(ConsumerState {
            num_pending: info.num_pending,
            num_ack_pending: info.num_ack_pending as u64,
            num_redelivered: info.num_redelivered as u64,
            num_waiting: info.num_waiting as u64,
            ack_floor: info.ack_floor.stream_sequence,
            delivered: info.delivered.stream_sequence,
        })
    }

    async fn flush(&self) -> Result<(), BoxError> {
        self.client.flush().await.map_err(Into::into)
    }

    fn reconnects(&self) -> watch::Receiver<u64> {
        self.reconnects.clone()
    }
}

/// Acks on a message's `$JS.ACK...` reply subject.
#[derive(Debug, Clone)]
pub(crate) struct NatsAcker {
    client: async_nats::Client,
    reply: async_nats::Subject,
}

impl NatsAcker {
    pub(crate) async fn signal(&self, signal: Signal) -> Result<(), BoxError> {
        let kind = match signal {
            Signal::Ack => AckKind::Ack,
            Signal::Nak(delay) => AckKind::Nak(delay),
            Signal::Progress => AckKind::Progress,
            Signal::Term => AckKind::Term,
        };
        self.client
            .publish(self.reply.clone(), kind.into())
            .await
            .map_err(Into::into)
    }
}

/// A subscription on a private inbox that pull requests name as their reply.
#[derive(Debug)]
pub(crate) struct NatsInbox {
    client: async_nats::Client,
    js: jetstream::Context,
    request_subject: String,
    inbox: String,
    sub: Subscriber,
}

impl NatsInbox {
    pub(crate) async fn request(
        &mut self,
        batch: usize,
        expires: Duration,
        heartbeat: Duration,
    ) -> Result<(), BoxError> {
        let body = format!(
            r#"{{"batch":{batch},"expires":{},"idle_heartbeat":{}}}"#,
            expires.as_nanos(),
            heartbeat.as_nanos()
        );
        self.client
            .publish_with_reply(
                self.request_subject.clone(),
                self.inbox.clone(),
                body.into(),
            )
            .await
            .map_err(Into::into)
    }

    pub(crate) async fn next(&mut self) -> Inbound {
        loop {
            let Some(msg) = self.sub.next().await else {
                return Inbound::Closed;
            };
            let Some(status) = msg.status else {
                match self.delivery(msg) {
                    Some(d) => return Inbound::Message(Box::new(d)),
                    None => continue,
                }
            };
            return match status {
                StatusCode::IDLE_HEARTBEAT => Inbound::Heartbeat,
                // A request ended; the header says how many of its messages never came.
                StatusCode::TIMEOUT | StatusCode::NOT_FOUND => {
                    Inbound::RequestEnded(pending_messages(&msg))
                }
                StatusCode::REQUEST_TERMINATED => {
                    let why = msg.description.clone().unwrap_or_default();
                    let lower = why.to_ascii_lowercase();
                    if lower.contains("consumer deleted") {
                        Inbound::ConsumerDeleted
                    } else if lower.contains("push based") {
                        Inbound::PushConsumer
                    } else if let Some(n) = pending_messages(&msg) {
                        tracing::debug!(status = %why, "pull request ended early");
                        Inbound::RequestEnded(Some(n))
                    } else {
                        Inbound::Unexpected(format!("pull request terminated: {why}"))
                    }
                }
                StatusCode::NO_RESPONDERS => Inbound::NoResponders,
                other => Inbound::Unexpected(format!(
                    "unexpected status {other} on the pull inbox ({})",
                    msg.description.as_deref().unwrap_or("no description")
                )),
            };
        }
    }

    fn delivery(&self, msg: Message) -> Option<Delivery> {
        let Some(reply) = msg.reply.clone() else {
            tracing::warn!(subject = %msg.subject, "message without a reply subject on a pull inbox; ignored");
            return None;
        };
        let js_msg = jetstream::Message {
            message: msg,
            context: self.js.clone(),
        };
        let info = match js_msg.info() {
            Ok(i) => Info {
                stream: i.stream.to_owned(),
                consumer: i.consumer.to_owned(),
                stream_sequence: i.stream_sequence,
                consumer_sequence: i.consumer_sequence,
                delivered: u64::try_from(i.delivered).unwrap_or(1),
                published: i.published,
            },
            Err(e) => {
                tracing::warn!(reply = %reply, error = %e, "cannot parse JetStream metadata; ignoring message");
                return None;
            }
        };
        let msg = js_msg.message;
        Some(Delivery {
            subject: msg.subject.to_string(),
            headers: msg.headers,
            payload: msg.payload,
            info,
            acker: super::Acker::Nats(NatsAcker {
                client: self.client.clone(),
                reply,
            }),
        })
    }

    /// Unsubscribes so the server drops our waiting pull requests, then naks
    /// every message that was already on its way (bounded: a dead connection
    /// cannot hold the drain open).
    pub(crate) async fn close(mut self) -> usize {
        if self.sub.drain().await.is_err() {
            return 0;
        }
        let mut naked = 0usize;
        let drained = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(msg) = self.sub.next().await {
                if msg.status.is_none()
                    && let Some(reply) = msg.reply
                {
                    if let Err(e) = self
                        .client
                        .publish(reply, AckKind::Nak(None).into())
                        .await
                    {
                        tracing::warn!(error = %e, "could not nak a message; it will be redelivered after ack_wait");
                    }
                    naked += 1;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::debug!(
                "pull inbox drain timed out; undelivered messages return after ack_wait"
            );
        }
        naked
    }
}

fn pending_messages(msg: &Message) -> Option<usize> {
    msg.headers
        .as_ref()?
        .get("Nats-Pending-Messages")?
        .as_str()
        .parse()
        .ok()
}
