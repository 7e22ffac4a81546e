//! The consume loop of one handler: pull requests sized to free handler
//! slots, handler calls run concurrently inside the loop's task (no task
//! spawned per message), the
//! ack / nak / DLQ+term decision, automatic progress acks, supervision of
//! heartbeats, reconnects and consumer deletion, and graceful shutdown.

mod pull;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::handler::{Extensions, Handler};
use crate::publish::Bus;
use crate::retry::RetryPolicy;
use crate::telemetry::Counters;
use crate::topology::{ConsumerSpec, TopologyPolicy};
use crate::transport::Transport as _;

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
    pub(crate) stats: Arc<Counters>,
}

/// What all loops of one app share.
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) bus: Bus,
    pub(crate) extensions: Arc<Extensions>,
    pub(crate) policy: TopologyPolicy,
    pub(crate) grace: Duration,
    pub(crate) pull: PullSettings,
}

/// Runs the handler until `stop` is cancelled (then drains gracefully) or
/// the loop cannot continue (returns the error).
///
/// Handler calls run as futures inside this one task (at most
/// `concurrency` at a time): no task is spawned and no message crosses a
/// channel on its way to the handler. A handler that does heavy CPU work
/// should move it to `tokio::task::spawn_blocking`.
pub(crate) async fn run<H: Handler>(
    handler: Arc<H>,
    binding: Arc<Binding>,
    env: Env,
    stop: CancellationToken,
) -> Result<(), Error> {
    let shared = Arc::new(worker::Shared {
        handler,
        binding: binding.clone(),
        bus: env.bus.clone(),
        extensions: env.extensions.clone(),
        abort: CancellationToken::new(),
    });
    let mut puller = pull::Puller::new(&env, &binding, shared.clone());
    let result = puller.pull_until(&stop).await;

    // Graceful drain: stop pulling and nak what arrived but was not started;
    // in-flight handlers get the grace period, then are dropped and nak'd.
    puller.stop_pulling().await;
    if tokio::time::timeout(env.grace, puller.finish_in_flight())
        .await
        .is_err()
    {
        tracing::warn!(
            handler = binding.handler,
            grace = ?env.grace,
            "handlers still running after the shutdown grace period; cancelling them and nak'ing their messages"
        );
        shared.abort.cancel();
        puller.finish_in_flight().await;
    }
    if let Err(e) = env.bus.transport().flush().await {
        tracing::warn!(handler = binding.handler, error = %e, "could not flush acks before stopping; unacked messages will be redelivered after ack_wait");
    }
    result
}
