//! The consume loop of one handler: pull requests sized to free worker
//! slots, a fixed pool of workers (no task spawned per message), the
//! ack / nak / DLQ+term decision, automatic progress acks, supervision of
//! heartbeats, reconnects and consumer deletion, and graceful shutdown.

mod pull;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::handler::{Extensions, Handler};
use crate::publish::Bus;
use crate::retry::RetryPolicy;
use crate::topology::{ConsumerSpec, TopologyPolicy};

pub(crate) use pull::PullSettings;

/// Everything one handler's loop needs, resolved at start-up.
#[derive(Debug)]
pub(crate) struct Binding {
    pub(crate) handler: &'static str,
    pub(crate) group: String,
    pub(crate) consumer: ConsumerSpec,
    /// Server-effective ack wait (drives automatic progress acks).
    pub(crate) ack_wait: Duration,
    pub(crate) concurrency: usize,
    pub(crate) dead_letter: bool,
    pub(crate) retry: RetryPolicy,
}

/// What all loops of one app share.
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) bus: Bus,
    pub(crate) extensions: Arc<Extensions>,
    pub(crate) reconnects: watch::Receiver<u64>,
    pub(crate) policy: TopologyPolicy,
    pub(crate) grace: Duration,
    pub(crate) pull: PullSettings,
}

/// Runs the handler until `stop` is cancelled (then drains gracefully) or
/// the loop cannot continue (returns the error).
pub(crate) async fn run<H: Handler>(
    handler: Arc<H>,
    binding: Arc<Binding>,
    env: Env,
    stop: CancellationToken,
) -> Result<(), Error> {
    let concurrency = binding.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let (tx, rx) = mpsc::channel(concurrency);
    let rx = Arc::new(Mutex::new(rx));
    // `stopping`: do not start new messages; `abort`: grace period over.
    let stopping = CancellationToken::new();
    let abort = CancellationToken::new();
    let shared = Arc::new(worker::Shared {
        handler,
        binding: binding.clone(),
        bus: env.bus.clone(),
        extensions: env.extensions.clone(),
        stopping: stopping.clone(),
        abort: abort.clone(),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(worker::work(shared.clone(), rx.clone()));
    }

    let result = pull::Puller::new(&env, &binding, slots, tx)
        .run(&stop)
        .await;

    // Graceful drain: the puller has unsubscribed and nak'd what it held;
    // queued-but-unstarted messages are nak'd by the workers; in-flight
    // handlers get the grace period.
    stopping.cancel();
    let drained = tokio::time::timeout(env.grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            handler = binding.handler,
            grace = ?env.grace,
            "handlers still running after the shutdown grace period; cancelling them and nak'ing their messages"
        );
        abort.cancel();
        while workers.join_next().await.is_some() {}
    }
    if let Err(e) = env.bus.client().flush().await {
        tracing::warn!(handler = binding.handler, error = %e, "could not flush acks before stopping; unacked messages will be redelivered after ack_wait");
    }
    result
}
