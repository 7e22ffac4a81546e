//! A server's child process: spawn, SIGKILL, SIGSTOP/SIGCONT, all with
//! bounded waits; shared by the servers of the test kit.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// How long a SIGKILLed process may take to exit.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the `kill` command, and the stop of every thread after SIGSTOP,
/// may take.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often waits look at the process again.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The current process of a server, if one runs.
#[derive(Debug, Default)]
pub(super) struct Process {
    child: Option<Child>,
    paused: bool,
}

/// Where the current process is.
#[derive(Debug)]
pub(super) enum State {
    /// Nothing was spawned, or it was killed.
    NotRunning,
    Running,
    /// It exited by itself (and has been reaped).
    Exited(ExitStatus),
}

/// Why [`Process::kill`] failed.
#[derive(Debug)]
pub(super) enum KillError {
    /// It had not exited [`KILL_TIMEOUT`] after SIGKILL.
    Timeout { pid: u32, timeout: Duration },
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// Why [`Process::pause`] or [`Process::resume`] failed.
#[derive(Debug)]
pub(super) enum SignalError {
    /// There is no process: it was killed or it exited.
    NotRunning,
    /// The `kill` command failed.
    Failed {
        signal: &'static str,
        pid: u32,
        reason: String,
    },
}

impl Process {
    /// Spawns `command` as the current process (the previous one must be
    /// gone); does not wait for it to be ready.
    pub(super) fn spawn(&mut self, command: &mut Command) -> std::io::Result<()> {
        let child = command.spawn()?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// The process id, or `None` if it is not running.
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is stopped by [`pause`](Self::pause).
    pub(super) fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether it still runs; an exited process is reaped and forgotten.
    pub(super) fn state(&mut self) -> std::io::Result<State> {
        let Some(child) = self.child.as_mut() else {
            return Ok(State::NotRunning);
        };
        match child.try_wait()? {
            Some(status) => {
                self.child = None;
                self.paused = false;
                Ok(State::Exited(status))
            }
            None => Ok(State::Running),
        }
    }

    /// SIGKILL (which also ends a paused process), then waits until it has
    /// exited. Does nothing if it is not running.
    pub(super) async fn kill(&mut self) -> Result<(), KillError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        // An error only means that the process has exited already.
        let _ = child.kill();
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(POLL_INTERVAL).await,
                Ok(None) => {
                    return Err(KillError::Timeout {
                        pid,
                        timeout: KILL_TIMEOUT,
                    });
                }
                Err(e) => return Err(KillError::Wait(e)),
            }
        }
        self.child = None;
        self.paused = false;
        Ok(())
    }

    /// [`kill`](Self::kill) for `Drop`: blocks the thread, at most
    /// [`KILL_TIMEOUT`], and ignores errors.
    pub(super) fn kill_blocking(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let deadline = std::time::Instant::now() + KILL_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.paused = false;
    }

    /// SIGSTOP; returns once every thread has stopped, so that the process
    /// cannot answer any more.
    pub(super) async fn pause(&mut self) -> Result<(), SignalError> {
        self.signal("STOP").await?;
        self.paused = true;
        // `kill` returns once the signal is queued; every thread stops a
        // moment later.
        if let Some(pid) = self.pid() {
            wait_stopped(pid).await;
        }
        Ok(())
    }

    /// SIGCONT.
    pub(super) async fn resume(&mut self) -> Result<(), SignalError> {
        self.signal("CONT").await?;
        self.paused = false;
        Ok(())
    }

    /// Sends `SIG<name>` with the `kill` command (jetflow has no unsafe code
    /// and no libc dependency).
    async fn signal(&mut self, name: &'static str) -> Result<(), SignalError> {
        let child = self.child.as_mut().ok_or(SignalError::NotRunning)?;
        // Reaping an exited child here also guarantees that its pid was not
        // reused by another process.
        if !matches!(child.try_wait(), Ok(None)) {
            self.child = None;
            self.paused = false;
            return Err(SignalError::NotRunning);
        }
        let pid = child.id();
        let output = tokio::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let fail = |reason: String| SignalError::Failed {
            signal: name,
            pid,
            reason,
        };
        match tokio::time::timeout(SIGNAL_TIMEOUT, output).await {
            Err(_) => Err(fail(format!(
                "`kill` did not finish within {SIGNAL_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(fail(format!("could not run `kill`: {e}"))),
            Ok(Ok(out)) if !out.status.success() => Err(fail(format!(
                "`kill` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// Waits (at most [`SIGNAL_TIMEOUT`]) until every thread of `pid` is in the
/// stopped state (`T` in `/proc/{pid}/task/*/stat`). Where there is no
/// `/proc` (not Linux), returns at once.
async fn wait_stopped(pid: u32) {
    let all_stopped = || -> Option<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut any = false;
        for task in tasks {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // `pid (comm) state ...`: the state follows the last `)`.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            if state != 'T' && state != 't' {
                return Some(false);
            }
            any = true;
        }
        Some(any)
    };
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    while all_stopped() == Some(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
