//! Pull requests with strict flow control: the messages requested but not
//! yet received, plus the messages being handled, never exceed the handler
//! slots, so no message waits in a local buffer while its ack_wait runs.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{Message, StatusCode, Subscriber};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::worker::Shared;
use super::{Binding, Env};
use crate::error::Error;
use crate::handler::{BoxFuture, Handler};
use crate::publish::Bus;
use crate::topology::{self, TopologyPolicy};

/// Timing of pull requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PullSettings {
    /// How long one pull request waits on the server.
    pub(crate) expires: Duration,
    /// Idle heartbeat the server sends while a request waits.
    pub(crate) heartbeat: Duration,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            expires: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
        }
    }
}

pub(super) struct Puller<'a, H> {
    env: &'a Env,
    binding: &'a Binding,
    bus: Bus,
    request_subject: String,
    shared: Arc<Shared<H>>,
    /// Handler calls under way (at most `concurrency`).
    in_flight: FuturesUnordered<BoxFuture<'static, ()>>,
    reconnects: watch::Receiver<u64>,
    /// Inbox and its subscription; replaced on every reset.
    inbox: String,
    sub: Option<Subscriber>,
    /// Messages requested but not yet received.
    outstanding: usize,
    last_activity: Instant,
    /// Consecutive failed recoveries, for backoff.
    failures: u32,
}

enum Step {
    Continue,
    Reset,
    Recover(String),
    Fatal(Error),
}

impl<'a, H: Handler> Puller<'a, H> {
    pub(super) fn new(env: &'a Env, binding: &'a Binding, shared: Arc<Shared<H>>) -> Self {
        let mut reconnects = env.reconnects.clone();
        // Connections made before this loop started need no reset.
        reconnects.borrow_and_update();
        Puller {
            env,
            binding,
            bus: env.bus.clone(),
            request_subject: format!(
                "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
                binding.consumer.stream, binding.consumer.durable
            ),
            shared,
            in_flight: FuturesUnordered::new(),
            reconnects,
            inbox: String::new(),
            sub: None,
            outstanding: 0,
            last_activity: Instant::now(),
            failures: 0,
        }
    }

    fn threshold(&self) -> usize {
        (self.binding.concurrency / 4).max(1)
    }

    /// Slots neither running a handler nor promised to a pull request.
    fn free(&self) -> usize {
        self.binding
            .concurrency
            .saturating_sub(self.in_flight.len() + self.outstanding)
    }

    pub(super) async fn pull_until(&mut self, stop: &CancellationToken) -> Result<(), Error> {
        self.reset().await;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if self.sub.is_none() {
                self.recover("the pull inbox subscription is gone", stop)
                    .await?;
                continue;
            }
            self.request_more().await;
            let hb_deadline =
                self.last_activity + self.env.pull.heartbeat * 2 + Duration::from_secs(1);
            let step = tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                Some(()) = self.in_flight.next(), if !self.in_flight.is_empty() => Step::Continue,
                msg = next(&mut self.sub) => match msg {
                    Some(msg) => self.inbound(msg).await,
                    None => Step::Reset,
                },
                changed = self.reconnects.changed() => match changed {
                    Ok(()) => {
                        tracing::info!(handler = self.binding.handler, "re-issuing pull requests after a reconnect");
                        Step::Reset
                    }
                    Err(_) => Step::Continue,
                },
                () = tokio::time::sleep_until(hb_deadline), if self.outstanding > 0 => {
                    Step::Recover(format!(
                        "no message or heartbeat from the server for {:?}",
                        hb_deadline - self.last_activity
                    ))
                }
            };
            match step {
                Step::Continue => self.failures = 0,
                Step::Reset => self.reset().await,
                Step::Recover(why) => self.recover(&why, stop).await?,
                Step::Fatal(e) => return Err(e),
            }
        }
    }

    /// Requests as many messages as there are free slots (once enough are free).
    async fn request_more(&mut self) {
        let free = self.free();
        if free == 0 || (self.outstanding > 0 && free < self.threshold()) {
            return;
        }
        let body = format!(
            r#"{{"batch":{free},"expires":{},"idle_heartbeat":{}}}"#,
            self.env.pull.expires.as_nanos(),
            self.env.pull.heartbeat.as_nanos()
        );
        let sent = self
            .bus
            .client()
            .publish_with_reply(
                self.request_subject.clone(),
                self.inbox.clone(),
                body.into(),
            )
            .await;
        match sent {
            Ok(()) => {
                if self.outstanding == 0 {
                    self.last_activity = Instant::now();
                }
                self.outstanding += free;
            }
            Err(e) => {
                tracing::warn!(handler = self.binding.handler, error = %e, "could not send a pull request; will retry");
            }
        }
    }

    async fn inbound(&mut self, msg: Message) -> Step {
        self.last_activity = Instant::now();
        let Some(status) = msg.status else {
            return self.deliver(msg).await;
        };
        match status {
            StatusCode::IDLE_HEARTBEAT => Step::Continue,
            StatusCode::TIMEOUT | StatusCode::NOT_FOUND => {
                // A request ended; the header says how many of its messages never came.
                match pending_messages(&msg) {
                    Some(n) => {
                        self.release(n);
                        Step::Continue
                    }
                    None => Step::Reset,
                }
            }
            StatusCode::REQUEST_TERMINATED => {
                let why = msg.description.clone().unwrap_or_default();
                let lower = why.to_ascii_lowercase();
                if lower.contains("consumer deleted") {
                    Step::Recover("the server reports the consumer was deleted".into())
                } else if lower.contains("push based") {
                    Step::Fatal(Error::Consumer {
                        consumer: self.consumer_name(),
                        reason: "it is a push consumer; jetflow needs a pull consumer with this durable name — delete it or change the group".into(),
                    })
                } else if let Some(n) = pending_messages(&msg) {
                    tracing::debug!(handler = self.binding.handler, status = %why, "pull request ended early");
                    self.release(n);
                    Step::Continue
                } else {
                    tracing::warn!(handler = self.binding.handler, status = %why, "pull request terminated; re-issuing");
                    Step::Reset
                }
            }
            StatusCode::NO_RESPONDERS => Step::Recover(
                "no responder for pull requests (consumer, stream or JetStream unavailable)".into(),
            ),
            other => {
                tracing::warn!(handler = self.binding.handler, status = %other, description = ?msg.description, "unexpected status on the pull inbox; re-issuing pull requests");
                Step::Reset
            }
        }
    }

    async fn deliver(&mut self, msg: Message) -> Step {
        if self.in_flight.len() >= self.binding.concurrency {
            // More than requested (should not happen): give it back at once.
            nak_now(&self.bus, &msg).await;
            return Step::Continue;
        }
        self.outstanding = self.outstanding.saturating_sub(1);
        let shared = self.shared.clone();
        self.in_flight
            .push(Box::pin(async move { shared.process(msg).await }));
        Step::Continue
    }

    fn release(&mut self, n: usize) {
        self.outstanding -= n.min(self.outstanding);
    }

    /// New inbox, no outstanding requests; messages still addressed to the
    /// old inbox are redelivered by the server after ack_wait.
    async fn reset(&mut self) {
        if let Some(old) = self.sub.take() {
            alongside(&mut self.in_flight, drain_and_nak(&self.bus, old)).await;
        }
        self.outstanding = 0;
        self.last_activity = Instant::now();
        self.inbox = self.bus.client().new_inbox();
        match self.bus.client().subscribe(self.inbox.clone()).await {
            Ok(sub) => self.sub = Some(sub),
            Err(e) => {
                tracing::warn!(handler = self.binding.handler, error = %e, "cannot subscribe to the pull inbox; will retry");
            }
        }
    }

    /// Something is wrong: find out what, repair what the policy allows,
    /// back off so nothing spins, and start pulling again.
    async fn recover(&mut self, why: &str, stop: &CancellationToken) -> Result<(), Error> {
        let spec = &self.binding.consumer;
        tracing::warn!(handler = self.binding.handler, consumer = %spec.durable, stream = %spec.stream, "{why}; checking the consumer");
        let js = self.bus.jetstream();
        let exists = topology::consumer_exists(js, &spec.stream, &spec.durable);
        match alongside(&mut self.in_flight, exists).await {
            Ok(true) => self.failures = 0,
            Ok(false) => {
                if self.env.policy == TopologyPolicy::BindOnly {
                    return Err(Error::Consumer {
                        consumer: self.consumer_name(),
                        reason: "it was deleted on the server and the app is bind-only; recreate it and restart".into(),
                    });
                }
                tracing::warn!(consumer = %spec.durable, stream = %spec.stream, "durable consumer was deleted; recreating it from the declared config");
                let recreate = topology::ensure_consumer(js, spec, TopologyPolicy::Update);
                if let Err(e) = alongside(&mut self.in_flight, recreate).await {
                    tracing::error!(consumer = %spec.durable, error = %e, "cannot recreate the consumer");
                    self.failures += 1;
                } else {
                    self.failures = 0;
                }
            }
            Err(e) => {
                self.failures += 1;
                tracing::error!(handler = self.binding.handler, consumer = %spec.durable, stream = %spec.stream, error = %e, attempt = self.failures, "consumer unavailable; retrying with backoff");
            }
        }
        if self.failures > 0 {
            let delay = Duration::from_millis(500 * 2u64.pow(self.failures.min(6)))
                .min(Duration::from_secs(30));
            let pause = async {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            };
            alongside(&mut self.in_flight, pause).await;
        }
        self.reset().await;
        Ok(())
    }

    fn consumer_name(&self) -> String {
        format!(
            "{}/{}",
            self.binding.consumer.stream, self.binding.consumer.durable
        )
    }

    /// Stops pulling: unsubscribes and naks whatever arrived but was not
    /// started. Running handlers keep being driven meanwhile.
    pub(super) async fn stop_pulling(&mut self) {
        if let Some(sub) = self.sub.take() {
            alongside(&mut self.in_flight, drain_and_nak(&self.bus, sub)).await;
        }
        self.outstanding = 0;
    }

    /// Waits for every running handler call to finish.
    pub(super) async fn finish_in_flight(&mut self) {
        while self.in_flight.next().await.is_some() {}
    }
}

/// Awaits `fut` while still driving the running handler calls, so that
/// supervision work (recovery, backoff, drains) never stalls them.
async fn alongside<T>(
    in_flight: &mut FuturesUnordered<BoxFuture<'static, ()>>,
    fut: impl Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
}

/// Unsubscribes so the server drops our waiting pull requests, then naks
/// every message that was already on its way (bounded: a dead connection
/// cannot hold the drain open).
async fn drain_and_nak(bus: &Bus, mut sub: Subscriber) {
    if sub.drain().await.is_err() {
        return;
    }
    let mut naked = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(msg) = sub.next().await {
            if msg.status.is_none() {
                nak_now(bus, &msg).await;
                naked += 1;
            }
        }
    })
    .await;
    if naked > 0 {
        tracing::info!(
            messages = naked,
            "nak'd messages that arrived but were not started, for immediate redelivery"
        );
    }
    if drained.is_err() {
        tracing::debug!("pull inbox drain timed out; undelivered messages return after ack_wait");
    }
}

async fn next(sub: &mut Option<Subscriber>) -> Option<Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
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

/// Naks without delay, for immediate redelivery (to this or another replica).
pub(super) async fn nak_now(bus: &Bus, msg: &Message) {
    if let Some(reply) = &msg.reply
        && let Err(e) = bus
            .client()
            .publish(reply.clone(), AckKind::Nak(None).into())
            .await
    {
        tracing::warn!(error = %e, "could not nak a message; it will be redelivered after ack_wait");
    }
}
