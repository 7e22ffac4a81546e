use std::time::Duration;

use jetflow_rules::{
    DEFAULT_ACK_WAIT, DEFAULT_BACKOFF, DEFAULT_CONCURRENCY, DEFAULT_DEAD_LETTER,
    DEFAULT_MAX_DELIVER, DEFAULT_PREFETCH, HandlerOptionValues, OptionError, check_handler_options,
};
use thiserror::Error;

pub use crate::topology::DeliverPolicy;

/// Options of a [`Handler`](crate::Handler), built in a `const` context.
///
/// `None` means "use the default": subject = the event's subject, group =
/// the app's name, `max_deliver` = 5, `backoff` = 1s, 5s, 30s (the last delay
/// repeats), `ack_wait` = 30s, `concurrency` = 1, `prefetch` = 256,
/// dead-lettering on.
///
/// ```
/// use std::time::Duration;
/// use jetflow::handler::HandlerOptions;
///
/// const OPTS: HandlerOptions = HandlerOptions::new("reserve_stock")
///     .group("inventory")
///     .max_deliver(3)
///     .backoff(&[Duration::from_secs(1), Duration::from_secs(5)])
///     .concurrency(16);
/// assert_eq!(OPTS.max_deliver_or_default(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// Handler name (the function's name), used in logs and DLQ records.
    pub name: &'static str,
    /// Subject filter of the consumer; `None` = the event's subject.
    pub subject: Option<&'static str>,
    /// Consumer group (durable name prefix); `None` = the app's name.
    pub group: Option<&'static str>,
    /// Deliveries before the message is dead-lettered.
    pub max_deliver: Option<u32>,
    /// Delay before delivery `n + 1` after a retryable failure of delivery `n`.
    pub backoff: Option<&'static [Duration]>,
    /// Server-side ack wait.
    pub ack_wait: Option<Duration>,
    /// Messages handled at once by one app instance.
    pub concurrency: Option<u32>,
    /// Messages received ahead of the handler calls, at most (0: none).
    pub prefetch: Option<u32>,
    /// Copy messages that cannot succeed to the DLQ stream before terminating them.
    pub dead_letter: Option<bool>,
    /// Start position of a new durable consumer.
    pub deliver: Option<DeliverPolicy>,
    /// For a notification: every replica hears each one (`true`), instead
    /// of one replica of the group (the default).
    pub broadcast: bool,
    /// Events with the same [`order_key`](crate::Handler::order_key) are
    /// handled one at a time, in order (per-key lanes).
    pub ordered: bool,
    /// jetflow claims each event id in the app's
    /// [`IdempotencyStore`](crate::idempotency::IdempotencyStore) before
    /// the handler runs, and acks a duplicate without calling it.
    pub idempotent: bool,
}

impl HandlerOptions {
    /// Options with every value at its default.
    pub const fn new(name: &'static str) -> Self {
        HandlerOptions {
            name,
            subject: None,
            group: None,
            max_deliver: None,
            backoff: None,
            ack_wait: None,
            concurrency: None,
            prefetch: None,
            dead_letter: None,
            deliver: None,
            broadcast: false,
            ordered: false,
            idempotent: false,
        }
    }
    /// Sets the subject filter.
    pub const fn subject(mut self, subject: &'static str) -> Self {
        self.subject = Some(subject);
        self
    }
    /// Sets the consumer group.
    pub const fn group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }
    /// Sets the number of deliveries before dead-lettering (>= 1).
    pub const fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = Some(n);
        self
    }
    /// Sets the retry delays, indexed by delivery count (the last one repeats):
    /// at least one, each > 0, at most `max_deliver - 1` of them.
    pub const fn backoff(mut self, delays: &'static [Duration]) -> Self {
        self.backoff = Some(delays);
        self
    }
    /// Sets the server-side ack wait (>= 1ms).
    pub const fn ack_wait(mut self, d: Duration) -> Self {
        self.ack_wait = Some(d);
        self
    }
    /// Sets how many messages one instance handles at once (1 to 65535).
    pub const fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }
    /// Sets how many messages one instance keeps received ahead of its
    /// handler calls, at most (0 to 65535; 0 receives a message only when a
    /// handler slot is free). The runtime sizes the buffer below this so
    /// that it drains within half the ack wait at the observed handler
    /// duration, caps it by bytes ([`App::prefetch_bytes`](crate::App::prefetch_bytes)),
    /// and sends progress signals for messages that wait in it, so none
    /// reaches its ack wait there. A graceful stop gives the buffer back for
    /// immediate redelivery.
    pub const fn prefetch(mut self, n: u32) -> Self {
        self.prefetch = Some(n);
        self
    }
    /// Turns dead-lettering on or off.
    pub const fn dead_letter(mut self, on: bool) -> Self {
        self.dead_letter = Some(on);
        self
    }
    /// Sets where a new durable consumer starts.
    pub const fn deliver(mut self, policy: DeliverPolicy) -> Self {
        self.deliver = Some(policy);
        self
    }
    /// For a notification handler: every replica hears each notification,
    /// not one replica of the group.
    pub const fn broadcast(mut self) -> Self {
        self.broadcast = true;
        self
    }

    /// Handles events with the same [`order_key`](crate::Handler::order_key)
    /// one at a time, in the order they arrive, and different keys in
    /// parallel (up to `concurrency`). A failed event is retried in the
    /// process, after its backoff delay (with progress signals), so the
    /// later events of its key wait behind it while other keys go on; it is
    /// dead-lettered after `max_deliver` attempts as usual.
    pub const fn ordered(mut self) -> Self {
        self.ordered = true;
        self
    }
    /// Makes the handler idempotent by jetflow: before each call, jetflow
    /// claims `(group, event id)` in the store given to
    /// [`App::idempotency_store`](crate::App::idempotency_store); an event
    /// already done is acked without calling the handler (counted in
    /// [`HandlerStats::idempotent_skipped`](crate::HandlerStats::idempotent_skipped)),
    /// one claimed by a live replica is given back to be tried later, and
    /// a store that cannot be reached pauses the handler's consumption
    /// until it is back. See [`crate::idempotency`]. Needs `max_deliver >= 2`
    /// and a stored event (not a notification).
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
    /// `max_deliver`, or its default (5).
    pub const fn max_deliver_or_default(&self) -> u32 {
        match self.max_deliver {
            Some(n) => n,
            None => DEFAULT_MAX_DELIVER,
        }
    }
    /// `backoff`, or its default (1s, 5s, 30s).
    pub const fn backoff_or_default(&self) -> &'static [Duration] {
        match self.backoff {
            Some(b) => b,
            None => DEFAULT_BACKOFF,
        }
    }
    /// `ack_wait`, or its default (30s).
    pub const fn ack_wait_or_default(&self) -> Duration {
        match self.ack_wait {
            Some(d) => d,
            None => DEFAULT_ACK_WAIT,
        }
    }
    /// `concurrency`, or its default (1).
    pub const fn concurrency_or_default(&self) -> u32 {
        match self.concurrency {
            Some(n) => n,
            None => DEFAULT_CONCURRENCY,
        }
    }
    /// `prefetch`, or its default (256).
    pub const fn prefetch_or_default(&self) -> u32 {
        match self.prefetch {
            Some(n) => n,
            None => DEFAULT_PREFETCH,
        }
    }
    /// `dead_letter`, or its default (`true`).
    pub const fn dead_letter_or_default(&self) -> bool {
        match self.dead_letter {
            Some(b) => b,
            None => DEFAULT_DEAD_LETTER,
        }
    }

    /// Checks the options with the rules `#[handler]` checks at compile
    /// time (`jetflow_rules`), so that options built by hand are accepted or
    /// rejected exactly as the macro would: a valid `subject` filter and
    /// `group`, `max_deliver >= 1`, `backoff` of 1 to `max_deliver - 1`
    /// delays greater than zero, `ack_wait >= 1ms`, `concurrency` from 1 to
    /// 65535, `prefetch` up to 65535. [`App`](crate::App) calls it for every handler before it
    /// connects.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jetflow::handler::HandlerOptions;
    ///
    /// assert!(HandlerOptions::new("reserve").max_deliver(3).validate().is_ok());
    ///
    /// const TOO_MANY_DELAYS: HandlerOptions = HandlerOptions::new("reserve")
    ///     .max_deliver(2)
    ///     .backoff(&[Duration::from_secs(1), Duration::from_secs(5)]);
    /// let err = TOO_MANY_DELAYS.validate().unwrap_err();
    /// assert_eq!(err.option, "backoff");
    /// assert_eq!(
    ///     err.to_string(),
    ///     "handler `reserve`: `backoff` has 2 delays but `max_deliver = 2` allows only 1 retry; \
    ///      drop delays or raise `max_deliver`"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), InvalidOptions> {
        check_handler_options(&HandlerOptionValues {
            subject: self.subject,
            group: self.group,
            max_deliver: self.max_deliver,
            backoff: self.backoff,
            ack_wait: self.ack_wait,
            concurrency: self.concurrency,
            prefetch: self.prefetch,
            idempotent: self.idempotent,
        })
        .map_err(|source| InvalidOptions {
            handler: self.name,
            option: source.option(),
            source,
        })
    }
}

/// [`HandlerOptions`] that break a rule, from [`HandlerOptions::validate`]:
/// which handler, which option, and the rule's error (which says what a
/// valid value looks like).
///
/// ```
/// use jetflow::handler::{HandlerOptions, OptionError};
///
/// let err = HandlerOptions::new("reserve").concurrency(0).validate().unwrap_err();
/// assert_eq!(err.handler, "reserve");
/// assert_eq!(err.option, "concurrency");
/// assert_eq!(err.source, OptionError::ConcurrencyOutOfRange);
/// assert_eq!(err.to_string(), "handler `reserve`: `concurrency` must be between 1 and 65535");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("handler `{handler}`: {source}")]
#[non_exhaustive]
pub struct InvalidOptions {
    /// [`HandlerOptions::name`].
    pub handler: &'static str,
    /// The option that breaks the rule, as named in `#[handler(...)]`
    /// (`subject`, `group`, `max_deliver`, `backoff`, `ack_wait`, `concurrency`,
    /// `prefetch`, `idempotent`).
    pub option: &'static str,
    /// The rule's error.
    #[source]
    pub source: OptionError,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Constants, so that `&[S1, S5]` is promoted to `&'static`.
    const S1: Duration = Duration::from_secs(1);
    const S5: Duration = Duration::from_secs(5);
    const S30: Duration = Duration::from_secs(30);

    fn rejected(options: HandlerOptions) -> &'static str {
        match options.validate() {
            Ok(()) => panic!("{options:?} passed validation"),
            Err(e) => e.option,
        }
    }

    #[test]
    fn defaults_are_the_rules_defaults() {
        let o = HandlerOptions::new("h");
        assert_eq!(o.validate(), Ok(()));
        assert_eq!(o.max_deliver_or_default(), 5);
        assert_eq!(o.backoff_or_default(), &[S1, S5, S30]);
        assert_eq!(o.ack_wait_or_default(), S30);
        assert_eq!(o.concurrency_or_default(), 1);
        assert!(o.dead_letter_or_default());
    }

    #[test]
    fn valid_options_pass() {
        let o = HandlerOptions::new("h")
            .subject("order.*.v1")
            .group("inventory")
            .max_deliver(3)
            .backoff(&[S1, S5])
            .ack_wait(Duration::from_secs(1))
            .concurrency(65_535);
        assert_eq!(o.validate(), Ok(()));
        assert_eq!(
            HandlerOptions::new("h").subject("order.>").validate(),
            Ok(())
        );
    }

    /// Inputs the runtime used to accept although `#[handler]` rejects them.
    #[test]
    fn rejects_what_the_macro_rejects() {
        let h = HandlerOptions::new("h");
        assert_eq!(rejected(h.subject("order.cr*ated")), "subject");
        assert_eq!(rejected(h.subject("order.>.v1")), "subject");
        assert_eq!(rejected(h.subject("order.>x")), "subject");
        assert_eq!(rejected(h.subject("a\u{7}b")), "subject");
        assert_eq!(rejected(h.backoff(&[S1, Duration::ZERO])), "backoff");
        assert_eq!(rejected(h.concurrency(65_536)), "concurrency");
        assert_eq!(rejected(h.idempotent().max_deliver(1)), "idempotent");
        assert_eq!(h.idempotent().max_deliver(2).validate(), Ok(()));
    }

    #[test]
    fn rejects_what_it_rejected_before() {
        let h = HandlerOptions::new("h");
        assert_eq!(rejected(h.max_deliver(0)), "max_deliver");
        assert_eq!(rejected(h.concurrency(0)), "concurrency");
        assert_eq!(rejected(h.ack_wait(Duration::from_millis(999))), "ack_wait");
        assert_eq!(rejected(h.backoff(&[])), "backoff");
        assert_eq!(rejected(h.backoff(&[S1; 5])), "backoff");
        assert_eq!(rejected(h.max_deliver(2).backoff(&[S1; 2])), "backoff");
        assert_eq!(rejected(h.subject("")), "subject");
        assert_eq!(rejected(h.subject("order..v1")), "subject");
        assert_eq!(rejected(h.subject("order created")), "subject");
        assert_eq!(rejected(h.group("")), "group");
        assert_eq!(rejected(h.group("inventory team")), "group");
        assert_eq!(rejected(h.group("a.b")), "group");
    }

    #[test]
    fn errors_name_the_handler_and_the_rule() {
        let err = HandlerOptions::new("reserve")
            .subject("order.cr*ated")
            .validate()
            .unwrap_err();
        assert!(matches!(err.source, OptionError::Subject(_)));
        assert_eq!(
            err.to_string(),
            "handler `reserve`: subject `order.cr*ated`: `*` must be a whole token (`cr*ated`); a subject \
             is non-empty tokens separated by `.`, e.g. `order.created.v1`; `*` matches one token and `>` \
             the rest (`order.*.v1`, `order.>`)"
        );
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source, Some(err.source.to_string()));
    }
}
