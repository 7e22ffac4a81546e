//! Free loopback ports and waiting until a server answers on one; shared by
//! the servers of the test kit.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::TestingError;
use super::process::{POLL_INTERVAL, Process, State};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a probe waits for the server's answer.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes never read more than this from a port that might belong to
/// something else.
pub(super) const MAX_BYTES: u64 = 64 * 1024;
/// Fresh ports tried by `start` when the one picked was taken meanwhile.
pub(super) const PORT_ATTEMPTS: usize = 5;
/// How long `restart` keeps retrying while the old port is still busy.
pub(super) const RESTART_PORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two attempts of `restart` to bind the old port.
pub(super) const RESTART_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// A loopback port that was free a moment ago.
pub(super) fn free_port() -> Result<u16, TestingError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestingError::io("bind a free port on 127.0.0.1", e))?;
    let address = listener
        .local_addr()
        .map_err(|e| TestingError::io("read the port of a loopback socket", e))?;
    Ok(address.port())
}

/// Whether a server's log says that it could not bind its port.
pub(super) fn mentions_port_conflict(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}

/// A connection to `127.0.0.1:port`; `None` if nothing accepts it in time.
pub(super) async fn connect(port: u16) -> Option<TcpStream> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .ok()?
        .ok()
}

/// How [`wait_ready`] ended.
#[derive(Debug)]
pub(super) enum Readiness<T> {
    /// The probe answered.
    Ready(T),
    /// There was no process to wait for.
    NotRunning,
    /// The process exited (and was reaped).
    Exited(ExitStatus),
    /// The probe did not answer in time; the process still runs.
    TimedOut,
    /// Checking the process failed; it may still run.
    Failed(std::io::Error),
}

/// Until `timeout` has passed: while `process` runs, calls `probe` every
/// [`POLL_INTERVAL`] until it returns `Some`.
pub(super) async fn wait_ready<T, F, Fut>(
    process: &mut Process,
    timeout: Duration,
    mut probe: F,
) -> Readiness<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match process.state() {
            Ok(State::Running) => {}
            Ok(State::NotRunning) => return Readiness::NotRunning,
            Ok(State::Exited(status)) => return Readiness::Exited(status),
            Err(e) => return Readiness::Failed(e),
        }
        if let Some(answer) = probe().await {
            return Readiness::Ready(answer);
        }
        if Instant::now() >= deadline {
            return Readiness::TimedOut;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_port_conflicts() {
        assert!(mentions_port_conflict(
            "[FTL] listen tcp 127.0.0.1:4222: bind: address already in use"
        ));
        assert!(mentions_port_conflict(
            "Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use"
        ));
        assert!(!mentions_port_conflict("Server is ready"));
    }

    #[tokio::test]
    async fn free_ports_accept_nothing() {
        let port = free_port().expect("a free port");
        assert_ne!(port, 0);
        assert!(connect(port).await.is_none());
    }
}
