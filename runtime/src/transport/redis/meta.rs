//! What jetflow keeps in Redis about a declared stream and consumer, so that
//! topology plans compare the code with what is there.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topology::{ConsumerDecl, ConsumerView, DeliverPolicy};

/// A declared stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StreamMeta {
    /// Subject patterns it stores (`order.>`).
    pub(super) subjects: Vec<String>,
    /// Publish dedup window, in milliseconds (0: none).
    pub(super) duplicate_window_ms: u64,
}

/// A declared durable consumer (one consumer group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ConsumerMeta {
    pub(super) filter_subject: String,
    pub(super) ack_wait_ms: u64,
    pub(super) max_deliver: u32,
    /// `all` or `new`.
    pub(super) deliver: String,
}

impl ConsumerMeta {
    pub(super) fn of(decl: &ConsumerDecl) -> ConsumerMeta {
        ConsumerMeta {
            filter_subject: decl.filter_subject.clone(),
            ack_wait_ms: millis(decl.ack_wait),
            max_deliver: decl.max_deliver,
            deliver: match decl.deliver {
                DeliverPolicy::New => "new",
                DeliverPolicy::Last => "last",
                DeliverPolicy::All => "all",
            }
            .to_owned(),
        }
    }

    pub(super) fn view(&self) -> ConsumerView {
        ConsumerView {
            filter_subject: self.filter_subject.clone(),
            explicit_ack: true,
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            max_deliver: crate::topology::max_deliver_limit(self.max_deliver),
            deliver: match self.deliver.as_str() {
                "all" => Some(DeliverPolicy::All),
                "new" => Some(DeliverPolicy::New),
                "last" => Some(DeliverPolicy::Last),
                _ => None,
            },
        }
    }
}

/// Whole milliseconds of `d`, saturating.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
