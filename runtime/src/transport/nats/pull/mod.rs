//! The JetStream pull protocol behind a credit-based [`Subscription`]: pull
//! requests on a private inbox for exactly the credits granted, idle
//! heartbeats, request expiry (`408`), `409` statuses, and re-issuing
//! requests after a reconnect.
//!
//! Credits granted and not yet used stay valid across everything this
//! module handles by itself: an expired request gives its unfilled credits
//! back for the next request; a reconnect or an unexpected status opens a
//! fresh inbox and asks again; a request the consumer's limits refuse is
//! asked again within them ([`requests`]). What it cannot handle (consumer
//! deleted, no responders, no heartbeat, statuses that keep coming back
//! without anything delivered) it reports as [`Lost`], so the consume loop
//! recovers with its capped backoff — never a tight loop of requests.
//!
//! [`Subscription`]: crate::transport::Subscription

mod meta;
mod requests;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{Message as NatsMessage, StatusCode, Subscriber};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use self::meta::AckMeta;
pub(crate) use self::requests::RequestLimits;
use self::requests::{Limit, Requests};
use super::{NatsAcker, PullTiming, headers};
use crate::topology::ConsumerDecl;
use crate::transport::{BoxError, DeliveryInfo, Inbound, Lost, Message};

/// Fresh inboxes in a row, without a message or heartbeat between them,
/// before the subscription is reported lost.
const MAX_RESETS: u32 = 4;

#[derive(Debug)]
pub(crate) struct PullSubscription {
    client: async_nats::Client,
    stream: Arc<str>,
    durable: Arc<str>,
    request_subject: String,
    inbox: String,
    /// `None` after a reset, until the next inbox is subscribed.
    sub: Option<Subscriber>,
    /// Credits asked for and not, the waiting requests, learned limits.
    requests: Requests,
    /// Fresh inboxes opened since the server last delivered or sent a
    /// heartbeat: past [`MAX_RESETS`] the subscription is reported lost.
    resets: u32,
    last_activity: Instant,
    reconnects: watch::Receiver<u64>,
    /// The reconnect counter's sender is gone: stop watching it.
    reconnects_closed: bool,
}

/// What one message on the inbox means.
enum Arrival {
    Message(Box<Message<NatsAcker>>),
    Heartbeat,
    /// The oldest request ended (expired, or ended early by the server).
    RequestEnded,
    /// The server refused a request that exceeds one of its limits.
    Refused(Limit),
    Lost(Lost),
    /// Start afresh on a new inbox.
    Reset(String),
    Ignore,
}

impl PullSubscription {
    pub(crate) async fn open(
        client: async_nats::Client,
        consumer: &ConsumerDecl,
        timing: PullTiming,
        limits: RequestLimits,
        mut reconnects: watch::Receiver<u64>,
    ) -> Result<PullSubscription, BoxError> {
        let inbox = client.new_inbox();
        let sub = client.subscribe(inbox.clone()).await?;
        // Reconnections before this subscription need no re-issue.
        reconnects.borrow_and_update();
        Ok(PullSubscription {
            request_subject: format!(
                "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
                consumer.stream, consumer.durable
            ),
            stream: consumer.stream.as_str().into(),
            durable: consumer.durable.as_str().into(),
            client,
            inbox,
            sub: Some(sub),
            requests: Requests::new(timing, limits),
            resets: 0,
            last_activity: Instant::now(),
            reconnects,
            reconnects_closed: false,
        })
    }

    pub(crate) fn grant(&mut self, credits: usize) {
        self.requests.grant(credits);
    }

    /// Cancel-safe: every state change happens after the await it depends on
    /// has completed (async-nats sends through a tokio channel, which sends
    /// nothing when cancelled).
    pub(crate) async fn next(&mut self) -> Inbound<NatsAcker> {
        loop {
            if self.sub.is_none() {
                match self.client.subscribe(self.inbox.clone()).await {
                    Ok(sub) => {
                        self.sub = Some(sub);
                        self.last_activity = Instant::now();
                    }
                    Err(e) => {
                        return Inbound::Lost(Lost::Unavailable(format!(
                            "cannot subscribe to a pull inbox: {e}"
                        )));
                    }
                }
            }
            while let Some(batch) = self.requests.next_batch(Instant::now()) {
                if let Err(e) = self.request(batch).await {
                    return Inbound::Lost(Lost::Unavailable(format!(
                        "could not send a pull request: {e}"
                    )));
                }
                if self.requests.requested() == 0 {
                    self.last_activity = Instant::now();
                }
                self.requests.sent(batch);
            }
            let silence = self.requests.timing().heartbeat * 2 + Duration::from_secs(1);
            let deadline = self.last_activity + silence;
            let paused_until = self.requests.paused_until();
            let Some(sub) = self.sub.as_mut() else {
                continue;
            };
            let arrival = tokio::select! {
                biased;
                changed = self.reconnects.changed(), if !self.reconnects_closed => {
                    match changed {
                        Ok(()) => Arrival::Reset("re-issuing pull requests after a reconnect".into()),
                        Err(_) => {
                            self.reconnects_closed = true;
                            Arrival::Ignore
                        }
                    }
                }
                msg = sub.next() => match msg {
                    Some(msg) => self.classify(msg),
                    None => Arrival::Lost(Lost::Unavailable("the NATS connection is closed".into())),
                },
                () = tokio::time::sleep_until(deadline), if self.requests.requested() > 0 => {
                    Arrival::Lost(Lost::Stalled(format!(
                        "no message or heartbeat from the server for {:?}",
                        Instant::now() - self.last_activity
                    )))
                }
                // paused after a full waiting queue: time to ask again
                () = tokio::time::sleep_until(paused_until.unwrap_or(deadline)), if paused_until.is_some() => {
                    Arrival::Ignore
                }
            };
            match arrival {
                Arrival::Message(m) => {
                    self.last_activity = Instant::now();
                    self.resets = 0;
                    self.requests.delivered();
                    return Inbound::Message(*m);
                }
                Arrival::Heartbeat => {
                    self.last_activity = Instant::now();
                    self.resets = 0;
                    self.requests.progress();
                    return Inbound::Alive;
                }
                Arrival::RequestEnded => {
                    self.last_activity = Instant::now();
                    self.resets = 0;
                    self.requests.ended();
                    return Inbound::Alive;
                }
                Arrival::Refused(limit) => {
                    self.last_activity = Instant::now();
                    tracing::debug!(consumer = %self.durable, stream = %self.stream, ?limit, "the server refused a pull request; asking again within its limits");
                    if self.requests.refused(&limit, Instant::now())
                        && let Some(lost) = self.reset(&format!(
                            "a pull request exceeded the consumer's limit ({limit:?})"
                        ))
                    {
                        return Inbound::Lost(lost);
                    }
                }
                Arrival::Reset(why) => {
                    if let Some(lost) = self.reset(&why) {
                        return Inbound::Lost(lost);
                    }
                }
                Arrival::Lost(lost) => return Inbound::Lost(lost),
                Arrival::Ignore => {}
            }
        }
    }

    async fn request(&self, batch: usize) -> Result<(), async_nats::PublishError> {
        let timing = self.requests.timing();
        let body = format!(
            r#"{{"batch":{batch},"expires":{},"idle_heartbeat":{}}}"#,
            timing.expires.as_nanos(),
            timing.heartbeat.as_nanos()
        );
        self.client
            .publish_with_reply(
                self.request_subject.clone(),
                self.inbox.clone(),
                body.into(),
            )
            .await
    }

    /// A fresh inbox: requests pointing at the old one die with it (its
    /// messages in transit are nak'd in the background), and every credit
    /// is asked for again. Past [`MAX_RESETS`] in a row without a message
    /// or a heartbeat, the subscription is lost instead (the consume loop
    /// recovers with a capped backoff).
    fn reset(&mut self, why: &str) -> Option<Lost> {
        self.resets += 1;
        if self.resets > MAX_RESETS {
            return Some(Lost::Unavailable(format!(
                "{why}; {MAX_RESETS} fresh pull inboxes in a row got nothing from the server"
            )));
        }
        tracing::info!(consumer = %self.durable, stream = %self.stream, "{why}; opening a new pull inbox");
        if let Some(old) = self.sub.take() {
            let client = self.client.clone();
            tokio::spawn(async move {
                let naked = close_inbox(&client, old).await;
                if naked > 0 {
                    tracing::debug!(
                        messages = naked,
                        "nak'd messages that reached an abandoned pull inbox"
                    );
                }
            });
        }
        self.inbox = self.client.new_inbox();
        self.requests.reset();
        None
    }

    fn classify(&self, msg: NatsMessage) -> Arrival {
        let Some(status) = msg.status else {
            return match self.delivery(msg) {
                Some(m) => Arrival::Message(Box::new(m)),
                None => Arrival::Ignore,
            };
        };
        match status {
            StatusCode::IDLE_HEARTBEAT => Arrival::Heartbeat,
            // A request ended; the header says how many of its messages never came.
            StatusCode::TIMEOUT | StatusCode::NOT_FOUND => Arrival::RequestEnded,
            StatusCode::REQUEST_TERMINATED => {
                let why = msg.description.clone().unwrap_or_default();
                let lower = why.to_ascii_lowercase();
                if let Some(limit) = Limit::parse(&why) {
                    Arrival::Refused(limit)
                } else if lower.contains("consumer deleted") {
                    Arrival::Lost(Lost::ConsumerDeleted)
                } else if lower.contains("push based") {
                    Arrival::Lost(Lost::Incompatible(
                        "it is a push consumer; jetflow needs a pull consumer with this durable name — delete it or change the group".into(),
                    ))
                } else if pending_messages(&msg).is_some() {
                    tracing::debug!(status = %why, "pull request ended early");
                    Arrival::RequestEnded
                } else {
                    Arrival::Reset(format!("pull request terminated: {why}"))
                }
            }
            StatusCode::NO_RESPONDERS => Arrival::Lost(Lost::Unavailable(
                "no responder for pull requests (consumer, stream or JetStream unavailable)".into(),
            )),
            other => Arrival::Reset(format!(
                "unexpected status {other} on the pull inbox ({})",
                msg.description.as_deref().unwrap_or("no description")
            )),
        }
    }

    fn delivery(&self, msg: NatsMessage) -> Option<Message<NatsAcker>> {
        let Some(reply) = msg.reply.clone() else {
            tracing::warn!(subject = %msg.subject, "message without a reply subject on a pull inbox; ignored");
            return None;
        };
        let Some(meta) = AckMeta::parse(reply.as_str()) else {
            tracing::warn!(reply = %reply, "cannot parse JetStream metadata; ignoring message");
            return None;
        };
        let info = DeliveryInfo::new(
            self.stream.clone(),
            self.durable.clone(),
            meta.stream_sequence,
            meta.delivered,
            meta.published,
        )
        .with_consumer_sequence(meta.consumer_sequence);
        Some(Message::new(
            msg.subject.to_string(),
            headers::from_nats(msg.headers.as_ref()),
            msg.payload,
            info,
            NatsAcker {
                client: self.client.clone(),
                reply: Some(reply),
            },
        ))
    }

    /// Unsubscribes so the server drops the waiting pull requests, then naks
    /// every message already on its way (bounded: a dead connection cannot
    /// hold the drain open).
    pub(crate) async fn close(mut self) -> usize {
        match self.sub.take() {
            Some(sub) => close_inbox(&self.client, sub).await,
            None => 0,
        }
    }
}

async fn close_inbox(client: &async_nats::Client, mut sub: Subscriber) -> usize {
    if sub.drain().await.is_err() {
        return 0;
    }
    let mut naked = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(msg) = sub.next().await {
            if msg.status.is_none()
                && let Some(reply) = msg.reply
            {
                if let Err(e) = client.publish(reply, AckKind::Nak(None).into()).await {
                    tracing::warn!(error = %e, "could not nak a message; it will be redelivered after ack_wait");
                }
                naked += 1;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("pull inbox drain timed out; undelivered messages return after ack_wait");
    }
    naked
}

fn pending_messages(msg: &NatsMessage) -> Option<usize> {
    msg.headers
        .as_ref()?
        .get("Nats-Pending-Messages")?
        .as_str()
        .parse()
        .ok()
}
