//! [`Capabilities`]: what a transport's broker does by itself, so that the
//! runtime emulates the rest in one place or refuses it at start-up.

use crate::topology::DeliverPolicy;

/// What a transport's broker does natively for durable consumption.
///
/// The runtime reads these once per handler at start-up:
///
/// | capability | when the broker lacks it |
/// |---|---|
/// | `redelivery` | a failed message is retried in-process after its backoff delay, at most `max_deliver` times; it cannot be dead-lettered (nothing stores it) |
/// | `delayed_retry` | the runtime holds the message through the backoff delay (sending progress), then asks for an immediate redelivery |
/// | `progress` | a backoff delay the runtime must wait out itself may not reach the ack deadline: such a handler is refused at start-up |
/// | `dedup` | a publish retried after a lost acknowledgement may be stored twice (handlers see it as a duplicate) |
/// | `persistence`, `replay` | the DLQ cannot be listed or replayed |
/// | `notifications` | a handler or publish of a `#[event(notification)]` is refused |
/// | `deliver` | a handler whose `deliver` start position is not listed is refused |
///
/// ```
/// use jetflow::transport::Capabilities;
/// let caps = Capabilities::durable();
/// assert!(caps.delayed_retry && caps.progress && caps.dedup);
/// assert!(!Capabilities::NONE.redelivery);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// An unsettled or retried message is delivered again (to any replica).
    pub redelivery: bool,
    /// A retry can wait a given delay on the broker (JetStream's nak with delay).
    pub delayed_retry: bool,
    /// An in-progress signal restarts the ack deadline of a long handler.
    pub progress: bool,
    /// The broker drops a second publish with the same message id inside a window.
    pub dedup: bool,
    /// One entity's events keep their order across partitions and replicas
    /// (a partition key). Without it, order holds per stream with one worker.
    pub per_key_order: bool,
    /// Stored messages survive a broker restart.
    pub persistence: bool,
    /// Stored messages can be read back (DLQ listing and replay).
    pub replay: bool,
    /// Notifications (`#[event(notification)]`): published without
    /// persistence, heard by every replica or one per queue group.
    pub notifications: bool,
    /// Start positions a new durable consumer can take.
    pub deliver: &'static [DeliverPolicy],
    /// A message given back when a subscription closes (a stop, a lost
    /// subscription) is redelivered to the next consumer at once. Without
    /// it (nats-server 2.9, which keeps a closed subscription's waiting
    /// pull request until it next delivers to it) the runtime does not
    /// prefetch by default, so a stop has little to give back.
    pub give_back: bool,
}

impl Capabilities {
    /// Nothing at all: what a notification subscription has (no stream, no
    /// acknowledgement).
    pub const NONE: Capabilities = Capabilities {
        redelivery: false,
        delayed_retry: false,
        progress: false,
        dedup: false,
        per_key_order: false,
        persistence: false,
        replay: false,
        notifications: false,
        deliver: &[],
        give_back: false,
    };

    /// A JetStream-like broker: redelivery, delayed retry, progress, dedup,
    /// persistence, replay, every start position; no notifications and no
    /// per-key order. Adjust the fields for a transport that differs.
    pub const fn durable() -> Capabilities {
        Capabilities {
            redelivery: true,
            delayed_retry: true,
            progress: true,
            dedup: true,
            per_key_order: false,
            persistence: true,
            replay: true,
            notifications: false,
            deliver: &[DeliverPolicy::All, DeliverPolicy::New, DeliverPolicy::Last],
            give_back: true,
        }
    }

    /// Can a new durable start at `policy`?
    pub fn supports_deliver(&self, policy: DeliverPolicy) -> bool {
        self.deliver.contains(&policy)
    }

    /// The rows of a capability table: `(capability, meaning)` in a fixed
    /// order, for [`Capabilities::markdown_table`].
    const ROWS: &'static [(&'static str, &'static str)] = &[
        ("redelivery", "failed messages come back"),
        ("delayed retry", "retry after a delay on the broker"),
        ("progress", "in-progress keeps a long handler's message"),
        ("dedup", "a retried publish is stored once"),
        ("per-key order", "order per key across partitions"),
        ("persistence", "messages survive a broker restart"),
        ("replay", "DLQ listing and replay"),
        ("notifications", "core NATS-style broadcast / queue groups"),
        ("deliver", "start positions of a new durable"),
    ];

    fn cell(&self, row: usize) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        match row {
            0 => yes(self.redelivery),
            1 => yes(self.delayed_retry),
            2 => yes(self.progress),
            3 => yes(self.dedup),
            4 => yes(self.per_key_order),
            5 => yes(self.persistence),
            6 => yes(self.replay),
            7 => yes(self.notifications),
            _ => {
                let names: Vec<&str> = self
                    .deliver
                    .iter()
                    .map(|d| match d {
                        DeliverPolicy::All => "all",
                        DeliverPolicy::New => "new",
                        DeliverPolicy::Last => "last",
                    })
                    .collect();
                names.join(", ")
            }
        }
    }

    /// A Markdown table with one column per transport: the README's
    /// capability table is this table (a test checks it).
    ///
    /// ```
    /// use jetflow::transport::Capabilities;
    /// let table = Capabilities::markdown_table(&[("a", Capabilities::durable()), ("b", Capabilities::NONE)]);
    /// assert!(table.starts_with("| capability | what it means | a | b |"));
    /// assert!(table.contains("| redelivery | failed messages come back | yes | no |"));
    /// ```
    pub fn markdown_table(transports: &[(&str, Capabilities)]) -> String {
        let mut out = String::from("| capability | what it means |");
        for (name, _) in transports {
            out.push_str(&format!(" {name} |"));
        }
        out.push_str("\n|---|---|");
        for _ in transports {
            out.push_str("---|");
        }
        for (i, (row, meaning)) in Self::ROWS.iter().enumerate() {
            out.push_str(&format!("\n| {row} | {meaning} |"));
            for (_, caps) in transports {
                out.push_str(&format!(" {} |", caps.cell(i)));
            }
        }
        out.push('\n');
        out
    }
}
