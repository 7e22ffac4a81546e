use thiserror::Error;

/// The ops listener could not start.
#[derive(Debug, Error)]
#[error("ops listener{}: {message}", .addr.as_ref().map(|a| format!(" on {a}")).unwrap_or_default())]
pub struct OpsError {
    addr: Option<String>,
    kind: OpsErrorKind,
    message: String,
    #[source]
    source: Option<std::io::Error>,
}

/// Why the ops listener could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpsErrorKind {
    /// The address cannot be listened on: not an address, in use, or not
    /// allowed.
    Bind,
    /// Routes given to [`App::ops_routes`](crate::App::ops_routes) overlap
    /// the listener's own.
    Route,
}

impl OpsError {
    pub(crate) fn new(
        addr: Option<&str>,
        kind: OpsErrorKind,
        message: impl Into<String>,
        source: Option<std::io::Error>,
    ) -> OpsError {
        OpsError {
            addr: addr.map(str::to_owned),
            kind,
            message: message.into(),
            source,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> OpsErrorKind {
        self.kind
    }

    /// The address asked for, if the error concerns it.
    pub fn addr(&self) -> Option<&str> {
        self.addr.as_deref()
    }
}
