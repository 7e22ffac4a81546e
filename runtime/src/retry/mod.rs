//! What to do with a failed delivery: the decision table of DESIGN.md §4.

use std::time::Duration;

use crate::handler::{HandlerError, HandlerOptions};

/// The action the consume loop takes for one finished delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `+ACK`.
    Ack,
    /// `-NAK {"delay": ..}`: redelivered after the delay.
    Nak(Duration),
    /// Dead-letter (when enabled) then `+TERM`.
    DeadLetter { reason: String },
}

/// Retry policy of one handler, resolved from its options.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    max_deliver: u64,
    backoff: &'static [Duration],
}

impl RetryPolicy {
    pub(crate) fn new(options: &HandlerOptions) -> Self {
        RetryPolicy {
            max_deliver: u64::from(options.max_deliver_or_default()),
            backoff: options.backoff_or_default(),
        }
    }

    /// Delay before the delivery following failed delivery number `delivered` (1-based).
    pub(crate) fn delay(&self, delivered: u64) -> Duration {
        let i = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::ZERO)
    }

    /// A delivery past the handler's budget: an earlier delivery was the
    /// last one allowed but did not end settled (the DLQ refused the copy,
    /// or the process stopped or crashed before settling). The broker
    /// itself redelivers without limit, so jetflow decides the last
    /// delivery: this one is dead-lettered without calling the handler
    /// again, and nothing is stranded in the stream.
    pub(crate) fn exhausted(&self, delivered: u64) -> Option<Action> {
        (delivered > self.max_deliver).then(|| Action::DeadLetter {
            reason: format!(
                "delivered {delivered} times, over max_deliver {}: the last allowed delivery did \
                 not settle (the DLQ refused the copy, or the service stopped or crashed first)",
                self.max_deliver
            ),
        })
    }

    /// Decides what to do after delivery number `delivered` ended with `result`.
    pub(crate) fn decide(&self, delivered: u64, result: Result<(), &HandlerError>) -> Action {
        match result {
            Ok(()) => Action::Ack,
            Err(e) if e.is_permanent() => Action::DeadLetter {
                reason: format!("rejected: {e}"),
            },
            Err(e) if delivered >= self.max_deliver => Action::DeadLetter {
                reason: format!(
                    "failed on delivery {delivered} of max_deliver {}: {e}",
                    self.max_deliver
                ),
            },
            Err(e) => Action::Nak(e.requested_delay().unwrap_or_else(|| self.delay(delivered))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: HandlerOptions = HandlerOptions::new("h")
        .max_deliver(4)
        .backoff(&[Duration::from_secs(1), Duration::from_secs(5)]);

    #[test]
    fn delays_follow_the_schedule_and_repeat_the_last() {
        let p = RetryPolicy::new(&OPTS);
        assert_eq!(p.delay(1), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(5));
        assert_eq!(p.delay(3), Duration::from_secs(5));
    }

    #[test]
    fn decisions() {
        let p = RetryPolicy::new(&OPTS);
        let retry = HandlerError::retry("boom");
        assert_eq!(p.decide(1, Ok(())), Action::Ack);
        assert_eq!(
            p.decide(1, Err(&retry)),
            Action::Nak(Duration::from_secs(1))
        );
        assert!(matches!(
            p.decide(4, Err(&retry)),
            Action::DeadLetter { .. }
        ));
        let reject = HandlerError::reject("bad order");
        assert!(
            matches!(p.decide(1, Err(&reject)), Action::DeadLetter { reason } if reason.contains("bad order"))
        );
        assert_eq!(p.exhausted(4), None);
        assert!(
            matches!(p.exhausted(5), Some(Action::DeadLetter { reason }) if reason.contains("over max_deliver 4"))
        );
        let after = HandlerError::retry_after("busy", Duration::from_millis(250));
        assert_eq!(
            p.decide(2, Err(&after)),
            Action::Nak(Duration::from_millis(250))
        );
    }
}
