//! The JetStream pull protocol behind a credit-based [`Subscription`]: pull
//! requests on a private inbox for exactly the credits granted, idle
//! heartbeats, request expiry (`408`), `409` statuses, and re-issuing
//! requests after a reconnect.
//!
//! Credits granted and not yet used stay valid across everything this
//! module handles by itself: an expired request gives its unfilled credits
//! back for the next request; a reconnect or an unexpected status opens a
//! fresh inbox and asks again. What it cannot handle (consumer deleted, no
//! responders, no heartbeat) it reports as [`Lost`].
//!
//! [`Subscription`]: crate::transport::Subscription

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{Message as NatsMessage, StatusCode, Subscriber};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{NatsAcker, PullTiming, headers};
use crate::topology::ConsumerDecl;
use crate::transport::{BoxError, DeliveryInfo, Inbound, Lost, Message};

#[derive(Debug)]
pub(crate) struct PullSubscription {
    client: async_nats::Client,
    stream: Arc<str>,
    durable: Arc<str>,
    request_subject: String,
    timing: PullTiming,
    inbox: String,
    /// `None` after a reset, until the next inbox is subscribed.
    sub: Option<Subscriber>,
    /// Credits granted but not yet asked for.
    unrequested: usize,
    /// Credits in pull requests the server still holds.
    requested: usize,
    last_activity: Instant,
    reconnects: watch::Receiver<u64>,
    /// The reconnect counter's sender is gone: stop watching it.
    reconnects_closed: bool,
}

/// What one message on the inbox means.
enum Arrival {
    Message(Box<Message<NatsAcker>>),
    Heartbeat,
    /// A request ended; `Some(n)`: `n` of its credits were not used.
    RequestEnded(Option<usize>),
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
            timing,
            inbox,
            sub: Some(sub),
            unrequested: 0,
            requested: 0,
            last_activity: Instant::now(),
            reconnects,
            reconnects_closed: false,
        })
    }

    pub(crate) fn grant(&mut self, credits: usize) {
        self.unrequested += credits;
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
            if self.unrequested > 0 {
                let batch = self.unrequested;
                if let Err(e) = self.request(batch).await {
                    return Inbound::Lost(Lost::Unavailable(format!(
                        "could not send a pull request: {e}"
                    )));
                }
                if self.requested == 0 {
                    self.last_activity = Instant::now();
                }
                self.requested += batch;
                self.unrequested -= batch;
            }
            let silence = self.timing.heartbeat * 2 + Duration::from_secs(1);
            let deadline = self.last_activity + silence;
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
                () = tokio::time::sleep_until(deadline), if self.requested > 0 => {
                    Arrival::Lost(Lost::Stalled(format!(
                        "no message or heartbeat from the server for {:?}",
                        Instant::now() - self.last_activity
                    )))
                }
            };
            match arrival {
                Arrival::Message(m) => {
                    self.last_activity = Instant::now();
                    self.requested = self.requested.saturating_sub(1);
                    return Inbound::Message(*m);
                }
                Arrival::Heartbeat => {
                    self.last_activity = Instant::now();
                    return Inbound::Alive;
                }
                Arrival::RequestEnded(Some(n)) => {
                    self.last_activity = Instant::now();
                    let n = n.min(self.requested);
                    self.requested -= n;
                    self.unrequested += n;
                    return Inbound::Alive;
                }
                Arrival::RequestEnded(None) => self.reset("a pull request ended without a count"),
                Arrival::Reset(why) => self.reset(&why),
                Arrival::Lost(lost) => return Inbound::Lost(lost),
                Arrival::Ignore => {}
            }
        }
    }

    async fn request(&self, batch: usize) -> Result<(), async_nats::PublishError> {
        let body = format!(
            r#"{{"batch":{batch},"expires":{},"idle_heartbeat":{}}}"#,
            self.timing.expires.as_nanos(),
            self.timing.heartbeat.as_nanos()
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
    /// is asked for again.
    fn reset(&mut self, why: &str) {
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
        self.unrequested += std::mem::take(&mut self.requested);
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
            StatusCode::TIMEOUT | StatusCode::NOT_FOUND => {
                Arrival::RequestEnded(pending_messages(&msg))
            }
            StatusCode::REQUEST_TERMINATED => {
                let why = msg.description.clone().unwrap_or_default();
                let lower = why.to_ascii_lowercase();
                if lower.contains("consumer deleted") {
                    Arrival::Lost(Lost::ConsumerDeleted)
                } else if lower.contains("push based") {
                    Arrival::Lost(Lost::Incompatible(
                        "it is a push consumer; jetflow needs a pull consumer with this durable name — delete it or change the group".into(),
                    ))
                } else if let Some(n) = pending_messages(&msg) {
                    tracing::debug!(status = %why, "pull request ended early");
                    Arrival::RequestEnded(Some(n))
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

/// The delivery metadata JetStream puts in a message's reply subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`,
/// or with `<domain>.<account hash>` after `ACK` (and a token at the end)
/// on newer servers.
#[derive(Debug, PartialEq, Eq)]
struct AckMeta {
    delivered: u64,
    stream_sequence: u64,
    consumer_sequence: u64,
    published: OffsetDateTime,
}

impl AckMeta {
    fn parse(reply: &str) -> Option<AckMeta> {
        // no allocation: this runs once per message
        let mut tokens = [""; 12];
        let mut n = 0;
        for token in reply.split('.') {
            if n < tokens.len() {
                tokens[n] = token;
            }
            n += 1;
        }
        if tokens[0] != "$JS" || tokens[1] != "ACK" {
            return None;
        }
        // v1: 9 tokens; v2: domain and account hash after `ACK`, 11 or more.
        let at = match n {
            9 => 4,
            n if n >= 11 => 6,
            _ => return None,
        };
        let number = |i: usize| tokens[at + i].parse::<u64>().ok();
        let nanos = i128::from(number(3)?);
        Some(AckMeta {
            delivered: number(0)?,
            stream_sequence: number(1)?,
            consumer_sequence: number(2)?,
            published: OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_reply_formats() {
        let v1 = AckMeta::parse("$JS.ACK.ORDER.inv--order.2.17.40.1700000000123456789.5").unwrap();
        assert_eq!(
            (v1.delivered, v1.stream_sequence, v1.consumer_sequence),
            (2, 17, 40)
        );
        assert_eq!(v1.published.unix_timestamp(), 1_700_000_000);
        let v2 =
            AckMeta::parse("$JS.ACK.hub.ACCHASH.ORDER.inv--order.1.3.4.1700000000000000000.0.xyz")
                .unwrap();
        assert_eq!(
            (v2.delivered, v2.stream_sequence, v2.consumer_sequence),
            (1, 3, 4)
        );
        assert!(AckMeta::parse("$JS.ACK.ORDER.x.1.2").is_none());
        assert!(AckMeta::parse("_INBOX.abc.def.1.2.3.4.5.6").is_none());
    }
}
