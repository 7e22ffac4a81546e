use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a handler did not succeed, and what jetflow should do about it.
///
/// Anything that converts into `Box<dyn Error + Send + Sync>` (every
/// `std::error::Error + Send + Sync`, `anyhow::Error`, `String`, `&str`)
/// converts into a *retryable* `HandlerError`, so `?` works in handlers. Choose explicitly
/// with [`HandlerError::reject`] (permanent: dead-letter at once, never
/// retried) or [`HandlerError::retry_after`] (retry after a given delay
/// instead of the backoff schedule).
///
/// `HandlerError` deliberately does not implement `std::error::Error`
/// (like `anyhow::Error`), which is what allows the blanket conversion.
///
/// ```
/// use std::time::Duration;
/// use jetflow::HandlerError;
///
/// fn check(qty: u32) -> Result<(), HandlerError> {
///     if qty == 0 {
///         return Err(HandlerError::reject("quantity must be positive"));
///     }
///     let _n: u32 = "12".parse()?; // ParseIntError -> retryable HandlerError
///     Err(HandlerError::retry_after("warehouse busy", Duration::from_secs(2)))
/// }
/// assert!(check(0).unwrap_err().is_permanent());
/// ```
pub struct HandlerError {
    kind: Kind,
    source: BoxError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Retry(Option<Duration>),
    Reject,
}

impl HandlerError {
    /// A retryable failure: the message is redelivered after the backoff delay.
    pub fn retry(cause: impl Into<BoxError>) -> Self {
        HandlerError {
            kind: Kind::Retry(None),
            source: cause.into(),
        }
    }
    /// A retryable failure redelivered after `delay` (instead of the backoff schedule).
    pub fn retry_after(cause: impl Into<BoxError>, delay: Duration) -> Self {
        HandlerError {
            kind: Kind::Retry(Some(delay)),
            source: cause.into(),
        }
    }
    /// A permanent failure: retrying cannot help. The message is dead-lettered
    /// and terminated at once.
    pub fn reject(cause: impl Into<BoxError>) -> Self {
        HandlerError {
            kind: Kind::Reject,
            source: cause.into(),
        }
    }
    /// `true` if the failure was classified permanent.
    pub fn is_permanent(&self) -> bool {
        self.kind == Kind::Reject
    }
    /// The delay the handler asked for, if any.
    pub fn requested_delay(&self) -> Option<Duration> {
        match self.kind {
            Kind::Retry(d) => d,
            Kind::Reject => None,
        }
    }
    /// The underlying cause.
    pub fn cause(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

/// Shows the cause followed by its chain of sources, `: `-separated.
impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        let mut next = self.source.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

impl<E: Into<BoxError>> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError::retry(e)
    }
}

/// Conversion of a handler's return value into the result the consume loop acts on: implemented
/// for `()` and for `Result<(), E>` where `E: Into<HandlerError>` (any std
/// error, `HandlerError`, `Box<dyn Error>`, `anyhow::Error`).
#[diagnostic::on_unimplemented(
    message = "a jetflow handler cannot return `{Self}`",
    label = "unsupported return type",
    note = "return `Result<(), E>` where `E` is `jetflow::HandlerError`, a `std::error::Error`, or `anyhow::Error`"
)]
pub trait IntoOutcome {
    /// Converts the value.
    fn into_outcome(self) -> Result<(), HandlerError>;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<E: Into<HandlerError>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}
