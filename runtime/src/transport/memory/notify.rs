//! Notifications on the embedded broker: every listener of a subject hears
//! each one; of the listeners sharing a queue group, one (in turn).

use std::collections::HashMap;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::event::subject_matches;
use crate::transport::Headers;

/// Notifications a listener may hold before more are dropped, as a slow
/// core NATS subscriber's are (nothing stores them).
pub(super) const BUFFER: usize = 65_536;

/// One notification on its way to a listener.
#[derive(Debug)]
pub(super) struct Note {
    pub(super) subject: String,
    pub(super) headers: Headers,
    pub(super) payload: Bytes,
    pub(super) published: OffsetDateTime,
}

struct Listener {
    id: u64,
    filter: String,
    queue: Option<String>,
    tx: mpsc::Sender<Note>,
}

/// The listeners of a broker.
#[derive(Default)]
pub(super) struct Listeners {
    list: Vec<Listener>,
    /// Next member, per (filter, queue group).
    turn: HashMap<(String, String), usize>,
}

impl Listeners {
    pub(super) fn add(
        &mut self,
        id: u64,
        filter: &str,
        queue: Option<&str>,
    ) -> mpsc::Receiver<Note> {
        let (tx, rx) = mpsc::channel(BUFFER);
        self.list.push(Listener {
            id,
            filter: filter.to_owned(),
            queue: queue.map(str::to_owned),
            tx,
        });
        rx
    }

    pub(super) fn remove(&mut self, id: u64) {
        self.list.retain(|l| l.id != id);
    }

    /// Hands a notification to every matching listener, and to one member
    /// of each matching queue group; returns how many got it.
    pub(super) fn deliver(&mut self, note: &Note) -> usize {
        let mut groups: HashMap<(String, String), Vec<usize>> = HashMap::new();
        let mut targets = Vec::new();
        for (i, l) in self.list.iter().enumerate() {
            if !subject_matches(&l.filter, &note.subject) {
                continue;
            }
            match &l.queue {
                None => targets.push(i),
                Some(q) => groups
                    .entry((l.filter.clone(), q.clone()))
                    .or_default()
                    .push(i),
            }
        }
        for (key, members) in groups {
            let turn = self.turn.entry(key).or_default();
            targets.push(members[*turn % members.len()]);
            *turn = turn.wrapping_add(1);
        }
        let mut sent = 0;
        for i in targets {
            let l = &self.list[i];
            let copy = Note {
                subject: note.subject.clone(),
                headers: note.headers.clone(),
                payload: note.payload.clone(),
                published: note.published,
            };
            match l.tx.try_send(copy) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(subject = %note.subject, filter = %l.filter, "a notification listener is {BUFFER} notifications behind; dropping this one");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        sent
    }
}
