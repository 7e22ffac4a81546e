//! The consume loop of one handler, above the transport seam: credits
//! sized to free handler slots, handler calls run concurrently inside the
//! loop's task (no task spawned per message), the ack / retry / DLQ+reject
//! decision, automatic progress signals, the emulation of what a broker
//! lacks, recovery of a lost subscription, and graceful shutdown.

mod claim;
mod drain;
mod flow;
mod lanes;
mod pause;
mod prefetch;
mod process;
mod worker;

pub(crate) use process::Process;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::handler::Extensions;
use crate::idempotency::IdempotencyStore;
use crate::publish::Bus;
use crate::retry::RetryPolicy;
use crate::status::{LoopState, StateCell};
use crate::telemetry::Counters;
use crate::topology::{ConsumerDecl, Declared, TopologyPolicy};
use crate::transport::{Capabilities, Transport};

/// Where a handler's messages come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A durable consumer of a stream.
    Durable(ConsumerDecl),
    /// Notifications on `subject`: every replica, or one per `queue` group.
    Notifications {
        subject: String,
        queue: Option<String>,
    },
}

impl Source {
    /// `ORDER/inventory--order_created`, or the notification subject.
    pub(crate) fn name(&self) -> String {
        match self {
            Source::Durable(c) => format!("{}/{}", c.stream, c.durable),
            Source::Notifications { subject, queue } => match queue {
                Some(q) => format!("notifications {subject} (queue group {q})"),
                None => format!("notifications {subject}"),
            },
        }
    }
}

/// Everything one handler's loop needs, resolved at start-up.
#[derive(Debug)]
pub(crate) struct Binding {
    pub(crate) handler: &'static str,
    pub(crate) group: String,
    pub(crate) source: Source,
    /// What the source does natively (a notification: nothing).
    pub(crate) caps: Capabilities,
    /// Broker-effective ack wait (drives automatic progress signals).
    pub(crate) ack_wait: Duration,
    pub(crate) concurrency: usize,
    /// Messages kept received ahead of the handler calls, at most (already
    /// 0 where nothing could keep their deadlines).
    pub(crate) prefetch: usize,
    /// Per-key lanes ([`HandlerOptions::ordered`](crate::handler::HandlerOptions::ordered)).
    pub(crate) ordered: bool,
    pub(crate) dead_letter: bool,
    pub(crate) retry: RetryPolicy,
    pub(crate) stats: Arc<Counters>,
    /// What the loop is doing now, for the app's status.
    pub(crate) state: Arc<StateCell>,
    /// The store an idempotent handler claims its events in (`None`: the
    /// handler is not idempotent). The claims' lease is `ack_wait`.
    pub(crate) idempotency: Option<Arc<dyn IdempotencyStore>>,
}

/// What all loops of one app share.
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) bus: Bus,
    pub(crate) extensions: Arc<Extensions>,
    pub(crate) policy: TopologyPolicy,
    /// The app's streams, to recreate one that vanished.
    pub(crate) declared: Arc<Declared>,
    pub(crate) grace: Duration,
    /// How long a loop may recover before it fails (`None`: never).
    pub(crate) give_up_after: Option<Duration>,
    /// Payload bytes one loop keeps received ahead of its handler calls.
    pub(crate) prefetch_bytes: usize,
}

/// Runs the handler until `stop` is cancelled (then drains gracefully,
/// within the grace period whatever the broker does: see [`drain`]) or the
/// loop cannot continue (returns the error; also when the drain could not
/// settle everything). `ready` is sent once the
/// first subscription is open (a notification listener hears what is sent
/// from then on).
///
/// Handler calls run as futures inside this one task (at most
/// `concurrency` at a time): no task is spawned and no message crosses a
/// channel on its way to the handler. A handler that does heavy CPU work
/// should move it to `tokio::task::spawn_blocking`.
pub(crate) async fn run<T: Transport>(
    transport: T,
    handler: Arc<dyn Process>,
    binding: Arc<Binding>,
    env: Env,
    stop: CancellationToken,
    ready: oneshot::Sender<()>,
) -> Result<(), Error> {
    let shared = Arc::new(worker::Shared {
        handler,
        binding: binding.clone(),
        bus: env.bus.clone(),
        extensions: env.extensions.clone(),
        stopping: stop.clone(),
        abort: CancellationToken::new(),
        refused: Default::default(),
        settled_while_stopping: Default::default(),
        pause: pause::Pause::new(binding.state.clone()),
    });
    let mut flow = flow::Flow::new(&transport, &env, &binding, shared.clone(), ready);
    let result = flow.run_until(&stop).await;
    binding.state.set(LoopState::Stopping);
    let unsettled = drain::drain(&mut flow, &shared, &transport, env.grace).await;
    binding.state.set(match &result {
        Ok(()) => LoopState::Stopped,
        Err(e) => LoopState::Failed {
            error: e.to_string(),
        },
    });
    result?;
    Ok(unsettled.into_result(&shared)?)
}
