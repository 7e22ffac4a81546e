//! [`TopologyError`]: a stream or consumer that could not be read,
//! created or changed, or that differs from the code.

use std::error::Error as StdError;
use std::fmt;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A stream or durable consumer could not be provisioned or read. Says
/// which one (`stream `ORDER``, `consumer `inventory--order_created` on
/// stream `ORDER``), what went wrong and what to do; the broker's answer is
/// the [`source`](StdError::source).
///
/// ```
/// use jetflow::topology::{TopologyError, TopologyErrorKind};
/// let e = TopologyError::missing("stream `ORDER`", "create it (subjects [\"order.>\"])");
/// assert_eq!(e.kind(), &TopologyErrorKind::Missing);
/// assert!(e.to_string().contains("bind-only"));
/// ```
#[derive(Debug)]
pub struct TopologyError {
    kind: TopologyErrorKind,
    what: String,
    message: String,
    source: Option<BoxError>,
}

/// What went wrong with a stream or consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopologyErrorKind {
    /// It does not exist, and the app is bind-only (creates nothing).
    Missing,
    /// It differs from the code and the policy (or the broker) forbids the change.
    Drift {
        /// One line per differing field: `  field: server=.. declared=..`.
        diff: String,
    },
    /// The broker refused to create it.
    Create,
    /// The broker refused to change it.
    Update,
    /// It could not be read (not found, broker unreachable, no rights).
    Read,
    /// Its subjects overlap another stream's.
    Overlap,
}

impl TopologyError {
    /// `what` does not exist and the app is bind-only; `fix` says how to create it.
    pub fn missing(what: impl Into<String>, fix: &str) -> Self {
        let what = what.into();
        TopologyError {
            message: format!(
                "{what} does not exist and the app is bind-only; {fix} or start with TopologyPolicy::Update"
            ),
            kind: TopologyErrorKind::Missing,
            what,
            source: None,
        }
    }

    /// `what` differs from the code by `diff`; `hint` says what to do.
    pub fn drift(what: impl Into<String>, diff: impl Into<String>, hint: &str) -> Self {
        let (what, diff) = (what.into(), diff.into());
        TopologyError {
            message: format!("{what} on the server differs from the code:\n{diff}\n{hint}"),
            kind: TopologyErrorKind::Drift { diff },
            what,
            source: None,
        }
    }

    /// The broker refused to create `what`; `hint` (may be empty) says why it might.
    pub fn create(what: impl Into<String>, hint: &str, source: impl Into<BoxError>) -> Self {
        let what = what.into();
        let source = source.into();
        TopologyError {
            message: format!("cannot create {what}{hint}: {source}"),
            kind: TopologyErrorKind::Create,
            what,
            source: Some(source),
        }
    }

    /// The broker refused to change `what` (`doing`: `add subjects to`, ...).
    pub fn update(what: impl Into<String>, doing: &str, source: impl Into<BoxError>) -> Self {
        let what = what.into();
        let source = source.into();
        TopologyError {
            message: format!("cannot {doing} {what}: {source}"),
            kind: TopologyErrorKind::Update,
            what,
            source: Some(source),
        }
    }

    /// `what` could not be read (`doing`: `read`, `open`, `look up`, ...).
    pub fn read(what: impl Into<String>, doing: &str, source: impl Into<BoxError>) -> Self {
        let what = what.into();
        let source = source.into();
        TopologyError {
            message: format!("cannot {doing} {what}: {source}"),
            kind: TopologyErrorKind::Read,
            what,
            source: Some(source),
        }
    }

    /// The subjects of `what` overlap another stream's, as `detail` says.
    pub fn overlap(what: impl Into<String>, detail: &str) -> Self {
        let what = what.into();
        TopologyError {
            message: format!("cannot create or update {what}: {detail}"),
            kind: TopologyErrorKind::Overlap,
            what,
            source: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &TopologyErrorKind {
        &self.kind
    }

    /// Which stream or consumer: `stream `ORDER``, `consumer `x` on stream `ORDER``.
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for TopologyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
