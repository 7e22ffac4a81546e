use std::time::Duration;

pub use crate::topology::DeliverPolicy;

/// Options of a [`Handler`](crate::Handler), built in a `const` context.
///
/// `None` means "use the default": subject = the event's subject, group =
/// the app's name, `max_deliver` = 5, `backoff` = 1s, 5s, 30s (the last delay
/// repeats), `ack_wait` = 30s, `concurrency` = 1, dead-lettering on.
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
    /// Copy messages that cannot succeed to the DLQ stream before terminating them.
    pub dead_letter: Option<bool>,
    /// Start position of a new durable consumer.
    pub deliver: Option<DeliverPolicy>,
    /// For a notification: every replica hears each one (`true`), instead
    /// of one replica of the group (the default).
    pub broadcast: bool,
}

/// Default delays between attempts.
pub(crate) const DEFAULT_BACKOFF: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

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
            dead_letter: None,
            deliver: None,
            broadcast: false,
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
    /// Sets the retry delays, indexed by delivery count (the last one repeats).
    pub const fn backoff(mut self, delays: &'static [Duration]) -> Self {
        self.backoff = Some(delays);
        self
    }
    /// Sets the server-side ack wait (> 0).
    pub const fn ack_wait(mut self, d: Duration) -> Self {
        self.ack_wait = Some(d);
        self
    }
    /// Sets how many messages one instance handles at once (>= 1).
    pub const fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
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

    /// `max_deliver`, or its default (5).
    pub const fn max_deliver_or_default(&self) -> u32 {
        match self.max_deliver {
            Some(n) => n,
            None => 5,
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
            None => Duration::from_secs(30),
        }
    }
    /// `concurrency`, or its default (1).
    pub const fn concurrency_or_default(&self) -> u32 {
        match self.concurrency {
            Some(n) => n,
            None => 1,
        }
    }
    /// `dead_letter`, or its default (`true`).
    pub const fn dead_letter_or_default(&self) -> bool {
        match self.dead_letter {
            Some(b) => b,
            None => true,
        }
    }

    /// Checks the options for values the server would reject or that
    /// cannot work, naming the option and what to do.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_deliver == Some(0) {
            return Err("`max_deliver` must be at least 1".into());
        }
        if self.concurrency == Some(0) {
            return Err("`concurrency` must be at least 1".into());
        }
        if self.ack_wait.is_some_and(|d| d < Duration::from_millis(1)) {
            return Err("`ack_wait` must be at least 1ms".into());
        }
        if let Some(b) = self.backoff {
            if b.is_empty() {
                return Err("`backoff` needs at least one delay".into());
            }
            let retries = self.max_deliver_or_default().saturating_sub(1) as usize;
            if b.len() > retries {
                return Err(format!(
                    "`backoff` has {} delays but `max_deliver = {}` allows only {} retries; \
                     drop delays or raise `max_deliver`",
                    b.len(),
                    self.max_deliver_or_default(),
                    retries
                ));
            }
        }
        if let Some(s) = self.subject
            && (s.is_empty()
                || s.split('.')
                    .any(|t| t.is_empty() || t.contains(char::is_whitespace)))
        {
            return Err(format!("`subject = {s:?}` is not a valid NATS subject"));
        }
        if let Some(g) = self.group
            && (g.is_empty()
                || !g
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(format!(
                "`group = {g:?}` may only contain ASCII letters, digits, `_` and `-`"
            ));
        }
        Ok(())
    }
}
