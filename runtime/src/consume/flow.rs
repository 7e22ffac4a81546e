//! Credits with strict flow control: credits granted but not yet used,
//! plus the messages being handled, never exceed the handler's slots, so
//! no message waits in a local buffer while its ack deadline runs. And the
//! supervision of the subscription: when it is lost, find out why, repair
//! what the policy allows, back off so nothing spins, subscribe again.
//!
//! Transport-neutral: every transport's [`Subscription`] speaks credits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::worker::Shared;
use super::{Binding, Env, Source};
use crate::error::{ConsumerError, ConsumerErrorKind, Error};
use crate::handler::BoxFuture;
use crate::topology::TopologyPolicy;
use crate::transport::{
    Acker, ConsumerStatus, Inbound, Lost, Message, Settle, Subscription, Transport,
};

pub(super) struct Flow<'a, T: Transport> {
    transport: &'a T,
    env: &'a Env,
    binding: &'a Binding,
    shared: Arc<Shared>,
    /// Handler calls under way (at most `concurrency`).
    in_flight: FuturesUnordered<BoxFuture<'static, ()>>,
    /// `None` until subscribed, and after the subscription was lost.
    sub: Option<T::Subscription>,
    /// Credits granted to the subscription and not yet used.
    granted: usize,
    /// Recoveries since the last message, for backoff.
    failures: u32,
    /// Told when the first subscription is open.
    ready: Option<oneshot::Sender<()>>,
}

impl<'a, T: Transport> Flow<'a, T> {
    pub(super) fn new(
        transport: &'a T,
        env: &'a Env,
        binding: &'a Binding,
        shared: Arc<Shared>,
        ready: oneshot::Sender<()>,
    ) -> Self {
        Flow {
            transport,
            env,
            binding,
            shared,
            in_flight: FuturesUnordered::new(),
            sub: None,
            granted: 0,
            failures: 0,
            ready: Some(ready),
        }
    }

    /// Grant credits once this many slots are free (or nothing is granted).
    fn threshold(&self) -> usize {
        (self.binding.concurrency / 4).max(1)
    }

    /// Slots neither running a handler nor promised as a credit.
    fn free(&self) -> usize {
        self.binding
            .concurrency
            .saturating_sub(self.in_flight.len() + self.granted)
    }

    pub(super) async fn run_until(&mut self, stop: &CancellationToken) -> Result<(), Error> {
        self.subscribe().await;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if self.sub.is_none() {
                self.recover(Lost::Unavailable("not subscribed".into()), stop)
                    .await?;
                continue;
            }
            self.grant_more();
            let lost = tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                Some(()) = self.in_flight.next(), if !self.in_flight.is_empty() => None,
                inbound = next(&mut self.sub) => match inbound {
                    Inbound::Message(m) => {
                        self.deliver(m).await;
                        None
                    }
                    Inbound::Lost(lost) => Some(lost),
                },
            };
            if let Some(lost) = lost {
                self.recover(lost, stop).await?;
            }
        }
    }

    /// Grants as many credits as there are free slots (once enough are free).
    fn grant_more(&mut self) {
        let free = self.free();
        if free == 0 || (self.granted > 0 && free < self.threshold()) {
            return;
        }
        if let Some(sub) = self.sub.as_mut() {
            sub.grant(free);
            self.granted += free;
        }
    }

    async fn deliver(&mut self, m: Message<T::Acker>) {
        self.failures = 0;
        self.granted = self.granted.saturating_sub(1);
        if self.in_flight.len() >= self.binding.concurrency {
            // More than granted (a transport bug): give it back at once.
            tracing::warn!(
                handler = self.binding.handler,
                "the subscription yielded more messages than it was granted; giving one back"
            );
            if let Err(e) = m.acker.settle(Settle::Retry(Duration::ZERO)).await {
                tracing::warn!(error = %e, "could not give the message back");
            }
            return;
        }
        let shared = self.shared.clone();
        self.in_flight
            .push(Box::pin(async move { shared.process(m).await }));
    }

    async fn subscribe(&mut self) {
        let opened = match &self.binding.source {
            Source::Durable(decl) => {
                alongside(&mut self.in_flight, self.transport.subscribe(decl)).await
            }
            Source::Notifications { subject, queue } => {
                let listen = self.transport.listen(subject, queue.as_deref());
                alongside(&mut self.in_flight, listen).await
            }
        };
        match opened {
            Ok(sub) => {
                self.sub = Some(sub);
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(());
                }
            }
            Err(e) => {
                tracing::warn!(handler = self.binding.handler, source = %self.binding.source.name(), error = %e, "cannot subscribe; will retry");
            }
        }
    }

    /// Ends the subscription, giving back what is on its way.
    async fn unsubscribe(&mut self) {
        if let Some(old) = self.sub.take() {
            let given_back = alongside(&mut self.in_flight, old.close()).await;
            if given_back > 0 {
                tracing::info!(
                    handler = self.binding.handler,
                    messages = given_back,
                    "gave back messages that arrived but were not started, for immediate redelivery"
                );
            }
        }
        self.granted = 0;
    }

    /// The subscription is lost: find out why, repair what the policy
    /// allows, back off (from the second recovery in a row) so nothing
    /// spins, and subscribe again.
    async fn recover(&mut self, lost: Lost, stop: &CancellationToken) -> Result<(), Error> {
        let b = self.binding;
        if let Lost::Incompatible(reason) = lost {
            let kind = ConsumerErrorKind::Incompatible;
            return Err(ConsumerError::new(b.handler, b.source.name(), kind, reason).into());
        }
        self.unsubscribe().await;
        self.failures += 1;
        if let Source::Durable(decl) = &b.source {
            tracing::warn!(handler = b.handler, consumer = %decl.durable, stream = %decl.stream, "{lost}; checking the consumer");
            let status = alongside(&mut self.in_flight, self.transport.consumer_status(decl)).await;
            match status {
                ConsumerStatus::Exists => {}
                ConsumerStatus::Missing => {
                    if self.env.policy == TopologyPolicy::BindOnly {
                        return Err(ConsumerError::new(
                            b.handler,
                            b.source.name(),
                            ConsumerErrorKind::Deleted,
                            "it was deleted on the server and the app is bind-only; recreate it and restart",
                        )
                        .into());
                    }
                    tracing::warn!(consumer = %decl.durable, stream = %decl.stream, "durable consumer was deleted; recreating it from the declared config");
                    let recreate = self
                        .transport
                        .declare_consumer(decl, TopologyPolicy::Update);
                    match alongside(&mut self.in_flight, recreate).await {
                        Ok(_) => self.failures = 1,
                        Err(e) => {
                            tracing::error!(consumer = %decl.durable, error = %e, "cannot recreate the consumer");
                        }
                    }
                }
                ConsumerStatus::StreamMissing => {
                    tracing::error!(handler = b.handler, consumer = %decl.durable, stream = %decl.stream, attempt = self.failures, "stream `{}` does not exist (was it deleted?); retrying with backoff", decl.stream);
                }
                ConsumerStatus::Unavailable(e) => {
                    tracing::error!(handler = b.handler, consumer = %decl.durable, stream = %decl.stream, error = %e, attempt = self.failures, "consumer unavailable; retrying with backoff");
                }
            }
        } else {
            tracing::warn!(handler = b.handler, source = %b.source.name(), "{lost}; subscribing again");
        }
        if self.failures > 1 {
            let delay = Duration::from_millis(500 * 2u64.pow((self.failures - 1).min(6)))
                .min(Duration::from_secs(30));
            let pause = async {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            };
            alongside(&mut self.in_flight, pause).await;
        }
        if !stop.is_cancelled() {
            self.subscribe().await;
        }
        Ok(())
    }

    /// Stops receiving: ends the subscription and gives back whatever
    /// arrived but was not started. Running handlers keep being driven.
    pub(super) async fn stop_receiving(&mut self) {
        self.unsubscribe().await;
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

async fn next<S: Subscription>(sub: &mut Option<S>) -> Inbound<S::Acker> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
