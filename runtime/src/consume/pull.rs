//! Pull requests with strict flow control: the messages requested but not
//! yet received, plus the messages being handled, never exceed the handler
//! slots, so no message waits in a local buffer while its ack_wait runs.
//!
//! Transport-neutral: JetStream and the embedded broker both answer pull
//! requests on an [`Inbox`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::worker::Shared;
use super::{Binding, Env};
use crate::error::Error;
use crate::handler::{BoxFuture, Handler};
use crate::topology::TopologyPolicy;
use crate::transport::{AnyTransport, Delivery, Inbound, Inbox, Signal, Transport};

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
    transport: AnyTransport,
    shared: Arc<Shared<H>>,
    /// Handler calls under way (at most `concurrency`).
    in_flight: FuturesUnordered<BoxFuture<'static, ()>>,
    reconnects: watch::Receiver<u64>,
    /// The pull inbox; replaced on every reset.
    inbox: Option<Inbox>,
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
        let mut reconnects = env.bus.transport().reconnects();
        // Connections made before this loop started need no reset.
        reconnects.borrow_and_update();
        Puller {
            env,
            binding,
            transport: env.bus.transport().clone(),
            shared,
            in_flight: FuturesUnordered::new(),
            reconnects,
            inbox: None,
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
            if self.inbox.is_none() {
                self.recover("the pull inbox is gone", stop).await?;
                continue;
            }
            self.request_more().await;
            let hb_deadline =
                self.last_activity + self.env.pull.heartbeat * 2 + Duration::from_secs(1);
            let step = tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                Some(()) = self.in_flight.next(), if !self.in_flight.is_empty() => Step::Continue,
                inbound = next(&mut self.inbox) => self.inbound(inbound).await,
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
        let Some(inbox) = self.inbox.as_mut() else {
            return;
        };
        let pull = self.env.pull;
        match inbox.request(free, pull.expires, pull.heartbeat).await {
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

    async fn inbound(&mut self, inbound: Inbound) -> Step {
        self.last_activity = Instant::now();
        match inbound {
            Inbound::Message(d) => self.deliver(*d).await,
            Inbound::Heartbeat => Step::Continue,
            Inbound::RequestEnded(Some(n)) => {
                self.release(n);
                Step::Continue
            }
            Inbound::RequestEnded(None) => Step::Reset,
            Inbound::ConsumerDeleted => {
                Step::Recover("the server reports the consumer was deleted".into())
            }
            Inbound::PushConsumer => Step::Fatal(Error::Consumer {
                consumer: self.consumer_name(),
                reason: "it is a push consumer; jetflow needs a pull consumer with this durable name — delete it or change the group".into(),
            }),
            Inbound::NoResponders => Step::Recover(
                "no responder for pull requests (consumer, stream or JetStream unavailable)".into(),
            ),
            Inbound::Unexpected(why) => {
                tracing::warn!(handler = self.binding.handler, %why, "re-issuing pull requests");
                Step::Reset
            }
            Inbound::Closed => Step::Reset,
        }
    }

    async fn deliver(&mut self, d: Delivery) -> Step {
        if self.in_flight.len() >= self.binding.concurrency {
            // More than requested (should not happen): give it back at once.
            nak_now(&d).await;
            return Step::Continue;
        }
        self.outstanding = self.outstanding.saturating_sub(1);
        let shared = self.shared.clone();
        self.in_flight
            .push(Box::pin(async move { shared.process(d).await }));
        Step::Continue
    }

    fn release(&mut self, n: usize) {
        self.outstanding -= n.min(self.outstanding);
    }

    /// New inbox, no outstanding requests; messages on their way to the old
    /// inbox are nak'd (or redelivered by the server after ack_wait).
    async fn reset(&mut self) {
        self.close_inbox().await;
        self.last_activity = Instant::now();
        let open = self.transport.open_inbox(&self.binding.consumer);
        match alongside(&mut self.in_flight, open).await {
            Ok(inbox) => self.inbox = Some(inbox),
            Err(e) => {
                tracing::warn!(handler = self.binding.handler, error = %e, "cannot open the pull inbox; will retry");
            }
        }
    }

    async fn close_inbox(&mut self) {
        if let Some(old) = self.inbox.take() {
            let naked = alongside(&mut self.in_flight, old.close()).await;
            if naked > 0 {
                tracing::info!(
                    handler = self.binding.handler,
                    messages = naked,
                    "nak'd messages that arrived but were not started, for immediate redelivery"
                );
            }
        }
        self.outstanding = 0;
    }

    /// Something is wrong: find out what, repair what the policy allows,
    /// back off so nothing spins, and start pulling again.
    async fn recover(&mut self, why: &str, stop: &CancellationToken) -> Result<(), Error> {
        let spec = &self.binding.consumer;
        tracing::warn!(handler = self.binding.handler, consumer = %spec.durable, stream = %spec.stream, "{why}; checking the consumer");
        let exists = self.transport.consumer_exists(&spec.stream, &spec.durable);
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
                let recreate = self.transport.ensure_consumer(spec, TopologyPolicy::Update);
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

    /// Stops pulling: ends the waiting requests and naks whatever arrived
    /// but was not started. Running handlers keep being driven meanwhile.
    pub(super) async fn stop_pulling(&mut self) {
        self.close_inbox().await;
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

async fn next(inbox: &mut Option<Inbox>) -> Inbound {
    match inbox {
        Some(i) => i.next().await,
        None => std::future::pending().await,
    }
}

/// Naks without delay, for immediate redelivery (to this or another replica).
async fn nak_now(d: &Delivery) {
    if let Err(e) = d.acker.signal(Signal::Nak(None)).await {
        tracing::warn!(error = %e, "could not nak a message; it will be redelivered after ack_wait");
    }
}
