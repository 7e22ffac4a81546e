//! Credits and the prefetch buffer: credits granted but not yet used, the
//! messages being handled and the messages buffered ahead of them never
//! exceed the handler's slots plus its prefetch target, and no buffered
//! message reaches its ack wait (see [`super::prefetch`]). And the
//! supervision of the subscription: when it is lost, find out why, repair
//! what the policy allows, back off so nothing spins, subscribe again.
//!
//! Transport-neutral: every transport's [`Subscription`] speaks credits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lanes::Lanes;
use super::prefetch::Prefetch;
use super::worker::Shared;
use super::{Binding, Env, Source};
use crate::error::{ConsumerError, ConsumerErrorKind, Error};
use crate::handler::BoxFuture;
use crate::status::LoopState;
use crate::topology::TopologyPolicy;
use crate::transport::{
    Acker, ConsumerStatus, Inbound, Lost, Message, Settle, Subscription, Transport,
};

/// Handler calls under way; each yields how long it took and its
/// ordering key (an ordered handler's).
type Calls = FuturesUnordered<BoxFuture<'static, (Duration, Option<String>)>>;

pub(super) struct Flow<'a, T: Transport> {
    transport: &'a T,
    env: &'a Env,
    binding: &'a Binding,
    shared: Arc<Shared>,
    /// Handler calls under way (at most `concurrency`).
    in_flight: Calls,
    /// Messages received ahead of the handler calls.
    buffer: Prefetch<T::Acker>,
    /// Messages waiting behind the call of their key (ordered handlers).
    lanes: Lanes<T::Acker>,
    /// Calls that ended while supervision work ran, not yet accounted for.
    ended: Vec<(Duration, Option<String>)>,
    /// `None` until subscribed, and after the subscription was lost.
    sub: Option<T::Subscription>,
    /// Credits granted to the subscription and not yet used.
    granted: usize,
    /// Recoveries since the last message, for backoff.
    failures: u32,
    /// Told when the first subscription is open.
    ready: Option<oneshot::Sender<()>>,
    /// The loop's state says receiving (saves a state update per message).
    receiving: bool,
    /// When the recoveries under way began (`None` while receiving).
    recovering_since: Option<Instant>,
}

impl<'a, T: Transport> Flow<'a, T> {
    pub(super) fn new(
        transport: &'a T,
        env: &'a Env,
        binding: &'a Binding,
        shared: Arc<Shared>,
        ready: oneshot::Sender<()>,
    ) -> Self {
        let expires = binding.caps.progress.then_some(binding.ack_wait);
        Flow {
            transport,
            env,
            binding,
            shared,
            in_flight: FuturesUnordered::new(),
            buffer: Prefetch::new(
                binding.prefetch,
                env.prefetch_bytes,
                expires,
                binding.concurrency,
            ),
            lanes: Lanes::new(expires),
            ended: Vec::new(),
            sub: None,
            granted: 0,
            failures: 0,
            ready: Some(ready),
            receiving: false,
            recovering_since: None,
        }
    }

    /// Slots plus buffer: what may be received and not yet finished.
    fn window(&self) -> usize {
        self.binding.concurrency + self.buffer.target()
    }

    /// Grant credits once this many are free (or nothing is granted).
    fn threshold(&self) -> usize {
        (self.window() / 4).max(1)
    }

    /// Room in the window not taken by running calls, waiting messages
    /// (buffered or held in a lane) or credits already granted.
    fn free(&self) -> usize {
        let taken = self.in_flight.len() + self.buffer.len() + self.lanes.held() + self.granted;
        self.window().saturating_sub(taken)
    }

    pub(super) async fn run_until(&mut self, stop: &CancellationToken) -> Result<(), Error> {
        if stop.run_until_cancelled(self.subscribe()).await.is_none() {
            return Ok(());
        }
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if self.sub.is_none() {
                // a stop does not wait for a broker that is away
                let recovered = stop.run_until_cancelled(
                    self.recover(Lost::Unavailable("not subscribed".into()), stop),
                );
                recovered.await.transpose()?;
                continue;
            }
            for (took, key) in std::mem::take(&mut self.ended) {
                self.finished(took, key);
            }
            self.start_buffered();
            self.grant_more();
            let refresh_at = self.buffer.refresh_at();
            let lanes_refresh_at = self.lanes.refresh_at();
            let lost = tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                Some((took, key)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.finished(took, key);
                    None
                }
                () = self.shared.pause.resumed() => None,
                () = sleep_until(refresh_at), if refresh_at.is_some() => {
                    alongside(&mut self.in_flight, &mut self.ended, self.buffer.refresh()).await;
                    None
                }
                () = sleep_until(lanes_refresh_at), if lanes_refresh_at.is_some() => {
                    alongside(&mut self.in_flight, &mut self.ended, self.lanes.refresh()).await;
                    None
                }
                inbound = next(&mut self.sub) => match inbound {
                    Inbound::Message(m) => {
                        self.deliver(m).await;
                        None
                    }
                    Inbound::Alive => {
                        self.mark_receiving();
                        None
                    }
                    Inbound::Lost(lost) => Some(lost),
                },
            };
            if let Some(lost) = lost {
                stop.run_until_cancelled(self.recover(lost, stop))
                    .await
                    .transpose()?;
            }
        }
    }

    /// Grants as many credits as the window has room (once enough is free).
    fn grant_more(&mut self) {
        if self.shared.pause.is_paused() {
            return; // the idempotency store is unreachable: pull nothing more
        }
        let free = self.free();
        if free == 0 || (self.granted > 0 && free < self.threshold()) {
            return;
        }
        if let Some(sub) = self.sub.as_mut() {
            sub.grant(free);
            self.granted += free;
        }
    }

    /// Starts buffered messages while handler slots are free (one whose
    /// key is busy moves to its lane instead).
    fn start_buffered(&mut self) {
        while self.in_flight.len() < self.binding.concurrency {
            let Some(m) = self.buffer.pop() else { break };
            self.dispatch(m);
        }
    }

    /// Starts `m` now, or (an ordered handler, its key busy) holds it
    /// behind the call of its key. Needs a free slot.
    fn dispatch(&mut self, m: Message<T::Acker>) {
        if !self.binding.ordered {
            return self.start(m, None);
        }
        let Some(key) = self.shared.handler.key(&m.subject, &m.payload) else {
            return self.start(m, None); // no key (or undecodable): no order to keep
        };
        if let Some(m) = self.lanes.admit(&key, m) {
            self.start(m, Some(key));
        }
    }

    fn start(&mut self, mut m: Message<T::Acker>, key: Option<String>) {
        // A delivery the broker gave to another consumer while it waited
        // here (a Kafka partition revoked): its new owner handles it.
        while !m.acker.is_current() {
            tracing::debug!(
                handler = self.binding.handler,
                subject = %m.subject,
                seq = m.info.stream_sequence,
                "dropped a buffered delivery the broker has given to another consumer"
            );
            let next = key.as_deref().and_then(|k| self.lanes.finished(k));
            let Some(next) = next else { return };
            m = next;
        }
        let shared = self.shared.clone();
        self.in_flight.push(Box::pin(async move {
            let started = Instant::now();
            shared.process(m).await;
            (started.elapsed(), key)
        }));
    }

    /// A call ended: learn its duration; the next message of its key (if
    /// any) takes the free slot.
    fn finished(&mut self, took: Duration, key: Option<String>) {
        self.buffer.observe(took);
        if let Some(key) = key
            && let Some(next) = self.lanes.finished(&key)
        {
            self.start(next, Some(key));
        }
    }

    /// The subscription is served: the loop is receiving.
    fn mark_receiving(&mut self) {
        if !self.receiving {
            self.receiving = true;
            self.recovering_since = None;
            self.binding.state.set(self.shared.pause.receiving_state());
        }
    }

    /// The loop is recovering, because of `reason`.
    fn mark_recovering(&mut self, reason: String) {
        self.receiving = false;
        self.recovering_since.get_or_insert_with(Instant::now);
        let attempt = self.failures.max(1);
        self.binding
            .state
            .set(LoopState::Recovering { reason, attempt });
    }

    async fn deliver(&mut self, m: Message<T::Acker>) {
        self.mark_receiving();
        self.failures = 0;
        self.granted = self.granted.saturating_sub(1);
        let waiting = self.buffer.len() + self.lanes.held();
        if self.in_flight.len() < self.binding.concurrency && self.buffer.len() == 0 {
            self.dispatch(m);
        } else if self.in_flight.len() + waiting < self.binding.concurrency + self.buffer.capacity()
        {
            self.buffer.push(m);
        } else {
            // More than granted (a transport bug): give it back at once.
            tracing::warn!(
                handler = self.binding.handler,
                "the subscription yielded more messages than it was granted; giving one back"
            );
            if let Err(e) = m.acker.settle(Settle::Retry(Duration::ZERO)).await {
                tracing::warn!(error = %e, "could not give the message back");
            }
        }
    }

    async fn subscribe(&mut self) {
        let opened = match &self.binding.source {
            Source::Durable(decl) => {
                alongside(
                    &mut self.in_flight,
                    &mut self.ended,
                    self.transport.subscribe(decl),
                )
                .await
            }
            Source::Notifications { subject, queue } => {
                let listen = self.transport.listen(subject, queue.as_deref());
                alongside(&mut self.in_flight, &mut self.ended, listen).await
            }
        };
        match opened {
            Ok(sub) => {
                if !sub.confirms_alive() {
                    self.mark_receiving();
                }
                self.sub = Some(sub);
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(());
                }
            }
            Err(e) => {
                tracing::warn!(handler = self.binding.handler, source = %self.binding.source.name(), error = %e, "cannot subscribe; will retry");
                self.mark_recovering(format!("cannot subscribe: {e}"));
            }
        }
    }

    /// Ends the subscription, giving back what is on its way and what
    /// waits in the prefetch buffer; returns how many were given back.
    async fn unsubscribe(&mut self) -> usize {
        let mut given_back = 0;
        if let Some(old) = self.sub.take() {
            given_back += alongside(&mut self.in_flight, &mut self.ended, old.close()).await;
        }
        given_back += alongside(
            &mut self.in_flight,
            &mut self.ended,
            self.buffer.give_back(),
        )
        .await;
        given_back += alongside(&mut self.in_flight, &mut self.ended, self.lanes.give_back()).await;
        if given_back > 0 {
            tracing::info!(
                handler = self.binding.handler,
                messages = given_back,
                "gave back messages that arrived but were not started, for immediate redelivery"
            );
        }
        self.granted = 0;
        given_back
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
        self.mark_recovering(lost.to_string());
        if let (Some(limit), Some(since)) = (self.env.give_up_after, self.recovering_since)
            && since.elapsed() >= limit
        {
            let reason = format!(
                "could not reach its consumer for {:?}, longer than give_up_after ({limit:?}); \
                 the last problem: {lost}. Check that the broker is up and reachable; the app \
                 stops so that it can be restarted",
                since.elapsed()
            );
            let kind = ConsumerErrorKind::Unreachable;
            return Err(ConsumerError::new(b.handler, b.source.name(), kind, reason).into());
        }
        // the move to `recovering` above logs why (with the handler and source)
        if let Source::Durable(decl) = &b.source {
            let status = alongside(
                &mut self.in_flight,
                &mut self.ended,
                self.transport.consumer_status(decl),
            )
            .await;
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
                    self.recreate_consumer(decl).await;
                }
                ConsumerStatus::StreamMissing => {
                    if self.env.policy == TopologyPolicy::BindOnly {
                        return Err(ConsumerError::new(
                            b.handler,
                            b.source.name(),
                            ConsumerErrorKind::StreamDeleted,
                            format!("stream `{}` is missing on the server (deleted, or the server lost its store) and the app is bind-only; recreate the stream and its consumers, then restart", decl.stream),
                        )
                        .into());
                    }
                    let declared = &self.env.declared;
                    let restored = match declared.stream(&decl.stream) {
                        Some(stream) => {
                            let restore = declared.restore(self.transport, stream);
                            alongside(&mut self.in_flight, &mut self.ended, restore).await
                        }
                        None => Ok(false),
                    };
                    if let Ok(true) = restored {
                        self.recreate_consumer(decl).await;
                    } else {
                        tracing::error!(handler = b.handler, consumer = %decl.durable, stream = %decl.stream, attempt = self.failures, "stream `{}` does not exist and was not recreated; retrying with backoff", decl.stream);
                    }
                }
                ConsumerStatus::Unavailable(e) => {
                    tracing::error!(handler = b.handler, consumer = %decl.durable, stream = %decl.stream, error = %e, attempt = self.failures, "consumer unavailable; retrying with backoff");
                }
            }
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
            alongside(&mut self.in_flight, &mut self.ended, pause).await;
        }
        if !stop.is_cancelled() {
            self.subscribe().await;
        }
        Ok(())
    }

    /// Recreates the declared consumer (it is missing); on success the
    /// next subscription comes without a backoff.
    async fn recreate_consumer(&mut self, decl: &crate::topology::ConsumerDecl) {
        let recreate = self
            .transport
            .declare_consumer(decl, TopologyPolicy::Update);
        match alongside(&mut self.in_flight, &mut self.ended, recreate).await {
            Ok(_) => self.failures = 1,
            Err(e) => {
                tracing::error!(consumer = %decl.durable, stream = %decl.stream, error = %e, "cannot recreate the consumer");
            }
        }
    }

    /// Stops receiving: ends the subscription and gives back whatever
    /// arrived but was not started. Running handlers keep being driven.
    pub(super) async fn stop_receiving(&mut self) -> usize {
        self.unsubscribe().await
    }

    /// Messages received and not started (buffered or held in a lane).
    pub(super) fn waiting(&self) -> usize {
        self.buffer.len() + self.lanes.held()
    }

    /// Handler calls under way.
    pub(super) fn running(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits for every running handler call to finish.
    pub(super) async fn finish_in_flight(&mut self) {
        while self.in_flight.next().await.is_some() {}
    }
}

/// Awaits `fut` while still driving the running handler calls, so that
/// supervision work (recovery, backoff, drains) never stalls them.
async fn alongside<T>(
    in_flight: &mut Calls,
    ended: &mut Vec<(Duration, Option<String>)>,
    fut: impl Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            Some(call) = in_flight.next(), if !in_flight.is_empty() => ended.push(call),
        }
    }
}

async fn next<S: Subscription>(sub: &mut Option<S>) -> Inbound<S::Acker> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
