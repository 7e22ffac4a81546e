//! Consumer lag: each durable consumer's counts read from the broker on a
//! schedule (one request per handler per period, never per message).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::telemetry::Counters;
use crate::topology::ConsumerDecl;
use crate::transport::Transport;

/// At most this long for one consumer's counts.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the counts of every consumer in `consumers` every `every` into
/// its handler's gauges, until `stop` is cancelled. A read that fails
/// (the broker away) leaves the last values; readiness reports the outage.
pub(crate) async fn refresh<T: Transport>(
    transport: T,
    consumers: Vec<(ConsumerDecl, Arc<Counters>)>,
    every: Duration,
    stop: CancellationToken,
) {
    if consumers.is_empty() {
        return;
    }
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        for (decl, counters) in &consumers {
            let ask = transport.consumer_state(&decl.stream, &decl.durable);
            match stop
                .run_until_cancelled(tokio::time::timeout(every.min(ASK_TIMEOUT), ask))
                .await
            {
                None => return,
                Some(Ok(Ok(state))) => counters.metrics().consumer_state(&state),
                Some(Ok(Err(e))) => {
                    tracing::debug!(stream = %decl.stream, consumer = %decl.durable, error = %e, "cannot read the consumer's counts for its lag metrics; keeping the last ones")
                }
                Some(Err(_)) => {
                    tracing::debug!(stream = %decl.stream, consumer = %decl.durable, "the broker did not report the consumer's counts in time; keeping the last ones")
                }
            }
        }
    }
}
