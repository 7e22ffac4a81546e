//! SIGTERM to a running service (`App::run` in a child process) with work
//! in flight: in-flight handlers finish and are acked, unstarted messages
//! are nak'd, the process exits 0, and a second run handles exactly the rest.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use jetflow::prelude::*;
use jetflow_tests::sigterm::{Chore, slow_chore};
use jetflow_tests::{WAIT, eventually, server, wait_ack_floor};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const N: u64 = 40;

/// One `handled {key} {seq} {delivered}` line of the child.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Handled {
    seq: u64,
    key: String,
    delivered: u64,
}

/// The service as a child process, and what it printed so far.
struct Service {
    child: Child,
    handled: Arc<Mutex<Vec<Handled>>>,
}

impl Service {
    fn spawn(url: &str) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sigterm-service"))
            .env("NATS_URL", url)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the sigterm-service binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let handled = Arc::new(Mutex::new(Vec::new()));
        let sink = handled.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let ["handled", key, seq, delivered] = parts[..] {
                    sink.lock().expect("lock").push(Handled {
                        seq: seq.parse().expect("seq"),
                        key: key.to_owned(),
                        delivered: delivered.parse().expect("delivered"),
                    });
                }
            }
        });
        Service { child, handled }
    }

    fn handled(&self) -> Vec<Handled> {
        self.handled.lock().expect("lock").clone()
    }

    async fn wait_handled(&self, n: usize) {
        eventually(WAIT, &format!("{n} handled by the child"), || async {
            (self.handled().len() >= n).then_some(())
        })
        .await;
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    async fn terminate(mut self) -> Vec<Handled> {
        let pid = self.child.id().expect("child running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the service exits within the bound after SIGTERM")
            .expect("wait for the service");
        assert!(exit.success(), "graceful stop exits 0, got {exit}");
        // The reader task has seen everything once stdout closed.
        eventually(WAIT, "stdout closed", || async {
            (Arc::strong_count(&self.handled) == 1).then_some(())
        })
        .await;
        self.handled()
    }
}

#[tokio::test]
async fn sigterm_with_work_in_flight_finishes_it_naks_the_rest_and_loses_nothing() {
    let server = server().await;
    // Provision the stream and the durable, then fill the stream while
    // nobody consumes.
    let provision = App::new("sigterm-service")
        .url(server.url())
        .handler(slow_chore)
        .start()
        .await
        .unwrap();
    let bus = provision.bus().clone();
    provision.stop().await.unwrap();
    for i in 0..N {
        bus.publish(&Chore {
            key: format!("chore-{i}"),
        })
        .await
        .unwrap();
    }

    let first = Service::spawn(&server.url());
    first.wait_handled(6).await;
    let before = first.terminate().await;
    assert!((before.len() as u64) < N, "SIGTERM came mid-run");
    let seqs: BTreeSet<u64> = before.iter().map(|h| h.seq).collect();
    assert_eq!(seqs.len(), before.len(), "no message handled twice");
    let first_unhandled = (1..=N).find(|s| !seqs.contains(s)).expect("mid-run");

    // On the server every handled message is acked and nothing else is:
    // the ack floor is exactly below the first unhandled one.
    wait_ack_floor(
        &server.url(),
        "CHORE",
        "sigterm--chore",
        first_unhandled - 1,
    )
    .await;

    // A second run handles exactly the rest: what was not started was nak'd,
    // so it comes back at once (the ack wait is 10 minutes).
    let second = Service::spawn(&server.url());
    second.wait_handled(N as usize - before.len()).await;
    let after = second.terminate().await;
    let mut all: Vec<u64> = before.iter().chain(&after).map(|h| h.seq).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=N).collect::<Vec<_>>(),
        "every event handled exactly once across the two runs"
    );
    assert!(
        before.iter().all(|h| h.delivered == 1),
        "first run: first deliveries only: {before:?}"
    );
}
