//! Per-key ordered lanes (`#[handler(ordered_by = field)]`): events with
//! the same key are handled one at a time, in arrival order; different
//! keys run in parallel up to `concurrency`. A message whose key is busy
//! waits here, behind the call of its key, and gets progress signals like a
//! buffered one (see [`super::prefetch`]), so it never reaches its ack wait
//! while it waits. Retries of an ordered handler happen in the process
//! (see `worker.rs`), so a failing event holds back its own key only.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::prefetch::{Waiting, give_back};
use crate::transport::{Acker, Message};

pub(super) struct Lanes<A> {
    /// Keys with a call under way, each with the messages waiting behind it.
    busy: HashMap<String, VecDeque<Waiting<A>>>,
    /// Messages waiting in all lanes.
    held: usize,
    /// `None` when nothing expires: no progress signals.
    ack_wait: Option<Duration>,
}

impl<A: Acker> Lanes<A> {
    pub(super) fn new(ack_wait: Option<Duration>) -> Self {
        Lanes {
            busy: HashMap::new(),
            held: 0,
            ack_wait,
        }
    }

    /// Messages waiting behind a call of their key.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// `message` of `key` may start now (its key is marked busy): it is
    /// returned. Or it waits behind the call of its key: `None`.
    pub(super) fn admit(&mut self, key: &str, message: Message<A>) -> Option<Message<A>> {
        match self.busy.get_mut(key) {
            Some(waiting) => {
                waiting.push_back(Waiting::new(message));
                self.held += 1;
                None
            }
            None => {
                self.busy.insert(key.to_owned(), VecDeque::new());
                Some(message)
            }
        }
    }

    /// The call of `key` ended: the next message of that key, to start now
    /// (the key stays busy), or `None` (the key is free).
    pub(super) fn finished(&mut self, key: &str) -> Option<Message<A>> {
        let waiting = self.busy.get_mut(key)?;
        match waiting.pop_front() {
            Some(next) => {
                self.held -= 1;
                Some(next.message)
            }
            None => {
                self.busy.remove(key);
                None
            }
        }
    }

    /// When the longest-waiting held message needs a progress signal.
    pub(super) fn refresh_at(&self) -> Option<Instant> {
        let every = self.ack_wait? / 4;
        if self.held == 0 {
            return None;
        }
        self.busy
            .values()
            .filter_map(VecDeque::front)
            .map(|w| w.since + every)
            .min()
    }

    /// Progress signals for every held message (all at once, which keeps
    /// `since` ordered along each lane).
    pub(super) async fn refresh(&mut self) {
        let now = Instant::now();
        for waiting in self.busy.values_mut() {
            for w in waiting.iter_mut() {
                w.keep_alive(now).await;
            }
        }
    }

    /// Gives every held message back for immediate redelivery (the keys'
    /// running calls go on); returns how many.
    pub(super) async fn give_back(&mut self) -> usize {
        let mut given = 0;
        for waiting in self.busy.values_mut() {
            while let Some(w) = waiting.pop_front() {
                give_back(w.message).await;
                given += 1;
            }
        }
        self.held = 0;
        given
    }
}
