//! The graceful stop of one consume loop, bounded by the grace period
//! whatever the broker does: stop receiving and give back what was not
//! started, let running handlers finish, cancel the ones still running
//! near the end (their messages are given back), and confirm the
//! settlements with a flush. A broker that is away cannot hold any step
//! past the deadline; what could not be confirmed is counted and reported.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::flow::Flow;
use super::worker::Shared;
use crate::error::{ConsumerError, ConsumerErrorKind};
use crate::transport::Transport;

/// What a stop could not settle, for the error it returns.
#[derive(Debug, Default)]
pub(super) struct Unsettled {
    /// Messages whose settlement (ack, nak, term) the broker did not confirm.
    messages: usize,
    problems: Vec<String>,
}

/// Time kept at the end of the grace period to settle the messages of
/// handlers cancelled then, and to flush: a fifth of it, at most 2 s.
fn reserve(grace: Duration) -> Duration {
    (grace / 5).min(Duration::from_secs(2))
}

pub(super) async fn drain<T: Transport>(
    flow: &mut Flow<'_, T>,
    shared: &Shared,
    transport: &T,
    grace: Duration,
) -> Unsettled {
    let deadline = Instant::now() + grace;
    let handlers_until = deadline - reserve(grace);
    let mut unsettled = Unsettled::default();
    let handler = shared.binding.handler;

    let given_back = match timeout_at(handlers_until, flow.stop_receiving()).await {
        Ok(n) => n,
        Err(_) => {
            let stranded = flow.waiting();
            unsettled.messages += stranded;
            unsettled.problems.push(format!(
                "the subscription did not close in time; {stranded} received message(s) were not given back"
            ));
            0
        }
    };
    if timeout_at(handlers_until, flow.finish_in_flight())
        .await
        .is_err()
    {
        tracing::warn!(
            handler,
            ?grace,
            "handlers still running near the end of the shutdown grace period; cancelling them and giving their messages back"
        );
        shared.abort.cancel();
        if timeout_at(deadline, flow.finish_in_flight()).await.is_err() {
            let calls = flow.running();
            unsettled.messages += calls;
            unsettled.problems.push(format!(
                "{calls} cancelled handler call(s) could not give their message back"
            ));
        }
    }
    let settled = shared.settled_while_stopping.load(Ordering::Relaxed) + given_back;
    match timeout_at(deadline, transport.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            unsettled.messages += settled;
            unsettled
                .problems
                .push(format!("the broker did not confirm the settlements: {e}"));
        }
        Err(_) => {
            unsettled.messages += settled;
            unsettled.problems.push(format!(
                "the broker did not confirm the settlements within the grace period ({grace:?})"
            ));
        }
    }
    unsettled
}

impl Unsettled {
    /// `Ok` when everything was settled and confirmed; else the error
    /// naming what was not, and what happens to it.
    pub(super) fn into_result(self, shared: &Shared) -> Result<(), ConsumerError> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let b = &shared.binding;
        let reason = format!(
            "the stop could not settle everything within the grace period: {}; {} message(s) are \
             unconfirmed (with any settled since the connection was lost); they are delivered \
             again after their ack_wait, so nothing is lost but they may be handled twice",
            self.problems.join("; "),
            self.messages
        );
        tracing::error!(handler = b.handler, source = %b.source.name(), "{reason}");
        Err(ConsumerError::new(
            b.handler,
            b.source.name(),
            ConsumerErrorKind::Unsettled,
            reason,
        ))
    }
}
