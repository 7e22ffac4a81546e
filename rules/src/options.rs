//! Handler options: their defaults and the rules between them.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::ident::{IdentifierError, IdentifierKind, validate_identifier};
use crate::subject::{SubjectError, validate_subject};

/// Deliveries of a message before it is dead-lettered, when a handler does
/// not set `max_deliver`.
///
/// ```
/// assert_eq!(jetflow_rules::DEFAULT_MAX_DELIVER, 5);
/// ```
pub const DEFAULT_MAX_DELIVER: u32 = 5;

/// Delays before the retries of a failed message, when a handler does not
/// set `backoff`: 1s, 5s, 30s (the last delay repeats).
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(jetflow_rules::DEFAULT_BACKOFF[0], Duration::from_secs(1));
/// ```
pub const DEFAULT_BACKOFF: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// Server-side ack wait, when a handler does not set `ack_wait`: 30s.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(jetflow_rules::DEFAULT_ACK_WAIT, Duration::from_secs(30));
/// ```
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// Messages one app instance handles at once, when a handler does not set
/// `concurrency`.
///
/// ```
/// assert_eq!(jetflow_rules::DEFAULT_CONCURRENCY, 1);
/// ```
pub const DEFAULT_CONCURRENCY: u32 = 1;

/// The most messages one app instance keeps received ahead of its handler
/// calls, when a handler does not set `prefetch`. The buffer is sized below
/// this from the observed handler duration so that it drains within half
/// the ack wait, and buffered messages get progress signals before their
/// ack wait could run out.
///
/// ```
/// assert_eq!(jetflow_rules::DEFAULT_PREFETCH, 256);
/// ```
pub const DEFAULT_PREFETCH: u32 = 256;

/// The largest `prefetch`: 65535.
///
/// ```
/// assert_eq!(jetflow_rules::MAX_PREFETCH, u32::from(u16::MAX));
/// ```
pub const MAX_PREFETCH: u32 = 65_535;

/// Whether messages that cannot succeed are copied to the DLQ stream, when
/// a handler does not set `dead_letter`.
///
/// ```
/// assert!(jetflow_rules::DEFAULT_DEAD_LETTER);
/// ```
pub const DEFAULT_DEAD_LETTER: bool = true;

/// The shortest `ack_wait`: 1s.
///
/// jetflow keeps a running handler's message with an in-progress signal
/// every `ack_wait / 2`, and a message waiting in the prefetch buffer with
/// one once it waited `ack_wait / 4`. Below a second, one network round
/// trip or scheduling hiccup eats that margin and the server redelivers a
/// message that is still being handled.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(jetflow_rules::MIN_ACK_WAIT, Duration::from_secs(1));
/// ```
pub const MIN_ACK_WAIT: Duration = Duration::from_secs(1);

/// The largest `concurrency`: 65535.
///
/// ```
/// assert_eq!(jetflow_rules::MAX_CONCURRENCY, u32::from(u16::MAX));
/// ```
pub const MAX_CONCURRENCY: u32 = 65_535;

/// Checks `max_deliver`: at least 1 (the first delivery counts).
///
/// ```
/// use jetflow_rules::check_max_deliver;
///
/// assert!(check_max_deliver(1).is_ok());
/// assert!(check_max_deliver(0).is_err());
/// ```
pub fn check_max_deliver(max_deliver: u32) -> Result<(), OptionError> {
    if max_deliver == 0 {
        return Err(OptionError::MaxDeliverZero);
    }
    Ok(())
}

/// Checks `concurrency`: from 1 to [`MAX_CONCURRENCY`].
///
/// ```
/// use jetflow_rules::check_concurrency;
///
/// assert!(check_concurrency(16).is_ok());
/// assert!(check_concurrency(0).is_err());
/// assert!(check_concurrency(100_000).is_err());
/// ```
pub fn check_concurrency(concurrency: u32) -> Result<(), OptionError> {
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(OptionError::ConcurrencyOutOfRange);
    }
    Ok(())
}

/// Checks `prefetch`: from 0 (strict flow control: nothing is received
/// before a handler slot is free) to [`MAX_PREFETCH`].
///
/// ```
/// use jetflow_rules::check_prefetch;
///
/// assert!(check_prefetch(0).is_ok());
/// assert!(check_prefetch(1000).is_ok());
/// assert!(check_prefetch(100_000).is_err());
/// ```
pub fn check_prefetch(prefetch: u32) -> Result<(), OptionError> {
    if prefetch > MAX_PREFETCH {
        return Err(OptionError::PrefetchTooLarge);
    }
    Ok(())
}

/// Checks `ack_wait`: at least [`MIN_ACK_WAIT`].
///
/// ```
/// use std::time::Duration;
/// use jetflow_rules::check_ack_wait;
///
/// assert!(check_ack_wait(Duration::from_secs(30)).is_ok());
/// assert!(check_ack_wait(Duration::from_millis(500)).is_err());
/// ```
pub fn check_ack_wait(ack_wait: Duration) -> Result<(), OptionError> {
    if ack_wait < MIN_ACK_WAIT {
        return Err(OptionError::AckWaitTooShort);
    }
    Ok(())
}

/// Checks the delays of `backoff` on their own: at least one, each greater
/// than zero.
///
/// ```
/// use std::time::Duration;
/// use jetflow_rules::check_backoff_delays;
///
/// assert!(check_backoff_delays(&[Duration::from_secs(1)]).is_ok());
/// assert!(check_backoff_delays(&[]).is_err());
/// assert!(check_backoff_delays(&[Duration::ZERO]).is_err());
/// ```
pub fn check_backoff_delays(delays: &[Duration]) -> Result<(), OptionError> {
    if delays.is_empty() {
        return Err(OptionError::BackoffEmpty);
    }
    if delays.contains(&Duration::ZERO) {
        return Err(OptionError::BackoffZeroDelay);
    }
    Ok(())
}

/// Checks the number of `backoff` delays against `max_deliver` (`None`:
/// [`DEFAULT_MAX_DELIVER`]): at most one delay per retry, `max_deliver - 1`.
///
/// ```
/// use jetflow_rules::check_backoff_retries;
///
/// assert!(check_backoff_retries(2, Some(3)).is_ok());
/// assert!(check_backoff_retries(3, Some(3)).is_err());
/// assert!(check_backoff_retries(5, None).is_err());
/// ```
pub fn check_backoff_retries(delays: usize, max_deliver: Option<u32>) -> Result<(), OptionError> {
    let max = max_deliver.unwrap_or(DEFAULT_MAX_DELIVER);
    let retries = max.saturating_sub(1);
    if u64::try_from(delays).unwrap_or(u64::MAX) > u64::from(retries) {
        return Err(OptionError::BackoffTooLong {
            delays,
            max_deliver: max,
            default_max_deliver: max_deliver.is_none(),
        });
    }
    Ok(())
}

/// Checks `backoff`: [`check_backoff_delays`], then
/// [`check_backoff_retries`].
///
/// ```
/// use std::time::Duration;
/// use jetflow_rules::check_backoff;
///
/// let delays = [Duration::from_secs(1), Duration::from_secs(5)];
/// assert!(check_backoff(&delays, Some(3)).is_ok());
/// assert!(check_backoff(&delays, Some(2)).is_err());
/// ```
pub fn check_backoff(delays: &[Duration], max_deliver: Option<u32>) -> Result<(), OptionError> {
    check_backoff_delays(delays)?;
    check_backoff_retries(delays.len(), max_deliver)
}

/// The options of one handler, as checked by [`check_handler_options`].
/// `None` means "not set": the default applies, and is valid.
///
/// ```
/// use jetflow_rules::{HandlerOptionValues, check_handler_options};
///
/// let options = HandlerOptionValues {
///     group: Some("inventory"),
///     max_deliver: Some(3),
///     ..HandlerOptionValues::default()
/// };
/// assert!(check_handler_options(&options).is_ok());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerOptionValues<'a> {
    /// Subject filter of the consumer (wildcards allowed).
    pub subject: Option<&'a str>,
    /// Consumer group.
    pub group: Option<&'a str>,
    /// Deliveries before the message is dead-lettered.
    pub max_deliver: Option<u32>,
    /// Delays before the retries.
    pub backoff: Option<&'a [Duration]>,
    /// Server-side ack wait.
    pub ack_wait: Option<Duration>,
    /// Messages handled at once by one app instance.
    pub concurrency: Option<u32>,
    /// Messages kept received ahead of the handler calls, at most.
    pub prefetch: Option<u32>,
    /// jetflow claims each event id before the handler runs (`idempotent`).
    pub idempotent: bool,
}

/// Checks every option that is set, in the order `subject`, `group`,
/// `max_deliver`, `backoff` (against `max_deliver` or its default),
/// `ack_wait`, `concurrency`, `prefetch`, `idempotent` (against
/// `max_deliver`), and returns the first error.
///
/// ```
/// use jetflow_rules::{HandlerOptionValues, OptionError, check_handler_options};
///
/// let options = HandlerOptionValues {
///     subject: Some("order.cr*ated"),
///     ..HandlerOptionValues::default()
/// };
/// let err = check_handler_options(&options).unwrap_err();
/// assert!(matches!(err, OptionError::Subject(_)));
/// assert_eq!(err.option(), "subject");
/// ```
pub fn check_handler_options(options: &HandlerOptionValues<'_>) -> Result<(), OptionError> {
    if let Some(subject) = options.subject {
        validate_subject(subject).map_err(OptionError::Subject)?;
    }
    if let Some(group) = options.group {
        validate_identifier(IdentifierKind::Group, group).map_err(OptionError::Group)?;
    }
    if let Some(max_deliver) = options.max_deliver {
        check_max_deliver(max_deliver)?;
    }
    if let Some(backoff) = options.backoff {
        check_backoff(backoff, options.max_deliver)?;
    }
    if let Some(ack_wait) = options.ack_wait {
        check_ack_wait(ack_wait)?;
    }
    if let Some(concurrency) = options.concurrency {
        check_concurrency(concurrency)?;
    }
    if let Some(prefetch) = options.prefetch {
        check_prefetch(prefetch)?;
    }
    check_idempotent(options.idempotent, options.max_deliver)?;
    Ok(())
}

/// Checks `idempotent` against `max_deliver` (`None`: the default): an
/// idempotent handler needs `max_deliver >= 2`, because a delivery that
/// finds its event claimed by a live replica is given back to be tried
/// again later, which takes another delivery.
///
/// ```
/// use jetflow_rules::check_idempotent;
///
/// assert!(check_idempotent(true, None).is_ok());
/// assert!(check_idempotent(true, Some(2)).is_ok());
/// assert!(check_idempotent(false, Some(1)).is_ok());
/// let err = check_idempotent(true, Some(1)).unwrap_err();
/// assert_eq!(err.option(), "idempotent");
/// ```
pub fn check_idempotent(idempotent: bool, max_deliver: Option<u32>) -> Result<(), OptionError> {
    if idempotent && max_deliver == Some(1) {
        return Err(OptionError::IdempotentSingleDelivery);
    }
    Ok(())
}

/// A handler option that breaks a rule, from [`check_handler_options`] or
/// one of the `check_*` functions.
///
/// ```
/// use jetflow_rules::check_max_deliver;
///
/// let err = check_max_deliver(0).unwrap_err();
/// assert_eq!(err.option(), "max_deliver");
/// assert_eq!(err.to_string(), "`max_deliver` must be at least 1 (the first delivery counts)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionError {
    /// `subject` is not a valid subject.
    Subject(SubjectError),
    /// `group` is not a valid group name.
    Group(IdentifierError),
    /// `max_deliver` is 0.
    MaxDeliverZero,
    /// `concurrency` is 0 or larger than [`MAX_CONCURRENCY`].
    ConcurrencyOutOfRange,
    /// `ack_wait` is shorter than [`MIN_ACK_WAIT`].
    AckWaitTooShort,
    /// `prefetch` is larger than [`MAX_PREFETCH`].
    PrefetchTooLarge,
    /// `backoff` has no delay.
    BackoffEmpty,
    /// A `backoff` delay is zero.
    BackoffZeroDelay,
    /// `backoff` has more delays than `max_deliver` allows retries.
    BackoffTooLong {
        /// The number of delays.
        delays: usize,
        /// `max_deliver`, given or default.
        max_deliver: u32,
        /// `true` if `max_deliver` was not set ([`DEFAULT_MAX_DELIVER`]).
        default_max_deliver: bool,
    },
    /// `idempotent` with `max_deliver = 1`.
    IdempotentSingleDelivery,
}

impl OptionError {
    /// The name of the option that breaks the rule, as written in
    /// `#[handler(...)]`.
    ///
    /// ```
    /// use jetflow_rules::check_backoff;
    ///
    /// assert_eq!(check_backoff(&[], None).unwrap_err().option(), "backoff");
    /// ```
    pub fn option(&self) -> &'static str {
        match self {
            OptionError::Subject(_) => "subject",
            OptionError::Group(_) => "group",
            OptionError::MaxDeliverZero => "max_deliver",
            OptionError::ConcurrencyOutOfRange => "concurrency",
            OptionError::AckWaitTooShort => "ack_wait",
            OptionError::PrefetchTooLarge => "prefetch",
            OptionError::BackoffEmpty
            | OptionError::BackoffZeroDelay
            | OptionError::BackoffTooLong { .. } => "backoff",
            OptionError::IdempotentSingleDelivery => "idempotent",
        }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Subject(e) => e.fmt(f),
            OptionError::Group(e) => e.fmt(f),
            OptionError::MaxDeliverZero => {
                f.write_str("`max_deliver` must be at least 1 (the first delivery counts)")
            }
            OptionError::ConcurrencyOutOfRange => {
                write!(f, "`concurrency` must be between 1 and {MAX_CONCURRENCY}")
            }
            OptionError::AckWaitTooShort => {
                f.write_str(
                    "`ack_wait` must be at least `1s`: in-progress signals go every half ack wait, and a \
                     shorter one leaves no margin for a round trip; e.g. `ack_wait = \"30s\"`",
                )
            }
            OptionError::PrefetchTooLarge => write!(
                f,
                "`prefetch` must be between 0 (no prefetch) and {MAX_PREFETCH}"
            ),
            OptionError::BackoffEmpty => {
                f.write_str("`backoff` needs at least one delay, e.g. `backoff = \"1s, 5s, 30s\"`")
            }
            OptionError::BackoffZeroDelay => f.write_str(
                "`backoff` delays must be greater than zero, e.g. `backoff = \"1s, 5s, 30s\"`",
            ),
            OptionError::IdempotentSingleDelivery => f.write_str(
                "`idempotent` needs `max_deliver` of at least 2: a delivery that finds its event \
                 claimed by a live replica is given back and tried again later; raise `max_deliver` \
                 or remove it",
            ),
            OptionError::BackoffTooLong {
                delays,
                max_deliver,
                default_max_deliver,
            } => {
                let (given, fix) = if *default_max_deliver {
                    ("the default ", "set")
                } else {
                    ("", "raise")
                };
                let retries = max_deliver.saturating_sub(1);
                write!(
                    f,
                    "`backoff` has {} but {given}`max_deliver = {max_deliver}` allows only {}; drop \
                     delays or {fix} `max_deliver`",
                    count(
                        u64::try_from(*delays).unwrap_or(u64::MAX),
                        "delay",
                        "delays"
                    ),
                    count(u64::from(retries), "retry", "retries"),
                )
            }
        }
    }
}

impl Error for OptionError {}

/// `1 delay`, `2 delays`.
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_pass_the_rules() {
        assert!(check_max_deliver(DEFAULT_MAX_DELIVER).is_ok());
        assert!(check_concurrency(DEFAULT_CONCURRENCY).is_ok());
        assert!(check_prefetch(DEFAULT_PREFETCH).is_ok());
        assert!(check_ack_wait(DEFAULT_ACK_WAIT).is_ok());
        assert!(check_backoff(DEFAULT_BACKOFF, None).is_ok());
        assert!(check_handler_options(&HandlerOptionValues::default()).is_ok());
    }

    #[test]
    fn single_options() {
        assert_eq!(check_max_deliver(0), Err(OptionError::MaxDeliverZero));
        assert!(check_max_deliver(u32::MAX).is_ok());
        assert_eq!(
            check_concurrency(0),
            Err(OptionError::ConcurrencyOutOfRange)
        );
        assert!(check_concurrency(MAX_CONCURRENCY).is_ok());
        assert_eq!(
            check_concurrency(MAX_CONCURRENCY + 1),
            Err(OptionError::ConcurrencyOutOfRange)
        );
        assert_eq!(
            check_ack_wait(Duration::ZERO),
            Err(OptionError::AckWaitTooShort)
        );
        assert_eq!(
            check_ack_wait(Duration::from_millis(999)),
            Err(OptionError::AckWaitTooShort)
        );
        assert!(check_ack_wait(MIN_ACK_WAIT).is_ok());
    }

    #[test]
    fn backoff() {
        assert_eq!(check_backoff(&[], Some(3)), Err(OptionError::BackoffEmpty));
        assert_eq!(
            check_backoff(&[secs(1), Duration::ZERO], Some(3)),
            Err(OptionError::BackoffZeroDelay)
        );
        assert!(check_backoff(&[secs(1); 4], None).is_ok());
        assert_eq!(
            check_backoff(&[secs(1); 5], None),
            Err(OptionError::BackoffTooLong {
                delays: 5,
                max_deliver: 5,
                default_max_deliver: true
            })
        );
        assert!(check_backoff(&[secs(1); 2], Some(3)).is_ok());
        assert!(check_backoff(&[secs(1)], Some(1)).is_err());
        // max_deliver 0 is reported on its own; the count check saturates.
        assert!(check_backoff_retries(1, Some(0)).is_err());
        assert!(check_backoff_retries(0, Some(1)).is_ok());
    }

    #[test]
    fn messages() {
        let too_long = |delays, max_deliver| {
            check_backoff_retries(delays, max_deliver)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            too_long(5, None),
            "`backoff` has 5 delays but the default `max_deliver = 5` allows only 4 retries; drop delays \
             or set `max_deliver`"
        );
        assert_eq!(
            too_long(5, Some(3)),
            "`backoff` has 5 delays but `max_deliver = 3` allows only 2 retries; drop delays or raise \
             `max_deliver`"
        );
        assert_eq!(
            too_long(1, Some(1)),
            "`backoff` has 1 delay but `max_deliver = 1` allows only 0 retries; drop delays or raise \
             `max_deliver`"
        );
        assert!(too_long(3, Some(2)).contains("`max_deliver = 2` allows only 1 retry;"));
        assert_eq!(
            OptionError::ConcurrencyOutOfRange.to_string(),
            "`concurrency` must be between 1 and 65535"
        );
        assert_eq!(
            OptionError::AckWaitTooShort.to_string(),
            "`ack_wait` must be at least `1s`: in-progress signals go every half ack wait, and a \
             shorter one leaves no margin for a round trip; e.g. `ack_wait = \"30s\"`"
        );
    }

    #[test]
    fn all_options() {
        fn check(options: HandlerOptionValues<'_>) -> Result<(), OptionError> {
            check_handler_options(&options)
        }
        fn option(options: HandlerOptionValues<'_>) -> &'static str {
            check(options).unwrap_err().option()
        }
        let base = HandlerOptionValues::default();
        assert_eq!(
            option(HandlerOptionValues {
                subject: Some("order.>.v1"),
                ..base
            }),
            "subject"
        );
        assert_eq!(
            option(HandlerOptionValues {
                group: Some("a.b"),
                ..base
            }),
            "group"
        );
        assert_eq!(
            option(HandlerOptionValues {
                max_deliver: Some(0),
                backoff: Some(&[secs(1)]),
                ..base
            }),
            "max_deliver"
        );
        assert_eq!(
            option(HandlerOptionValues {
                max_deliver: Some(2),
                backoff: Some(&[secs(1), secs(2)]),
                ..base
            }),
            "backoff"
        );
        assert_eq!(
            option(HandlerOptionValues {
                ack_wait: Some(Duration::ZERO),
                ..base
            }),
            "ack_wait"
        );
        assert_eq!(
            option(HandlerOptionValues {
                concurrency: Some(0),
                ..base
            }),
            "concurrency"
        );
        assert_eq!(
            option(HandlerOptionValues {
                prefetch: Some(MAX_PREFETCH + 1),
                ..base
            }),
            "prefetch"
        );
        assert!(
            check(HandlerOptionValues {
                subject: Some("order.*.v1"),
                group: Some("inventory"),
                max_deliver: Some(3),
                backoff: Some(&[secs(1), secs(5)]),
                ack_wait: Some(secs(10)),
                concurrency: Some(16),
                prefetch: Some(0),
                idempotent: true,
            })
            .is_ok()
        );
        assert_eq!(
            option(HandlerOptionValues {
                max_deliver: Some(1),
                idempotent: true,
                ..base
            }),
            "idempotent"
        );
    }
}
