//! A consume loop's subscription on the embedded broker (a durable
//! consumer, or notifications), and the acker of its deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Broker;
use super::consumer::Consumer;
use super::notify::Note;
use super::stream::{self, Stream};
use crate::transport::{
    Acker, DeliveryInfo, Inbound, Lost, Message, Settle, SettleError, Subscription,
};

/// Settles a delivery of the embedded broker (a notification's: nothing to do).
#[derive(Debug, Clone)]
pub struct MemoryAcker(Option<Target>);

#[derive(Debug, Clone)]
struct Target {
    broker: Broker,
    stream: Arc<str>,
    durable: Arc<str>,
    stream_sequence: u64,
    consumer_sequence: u64,
}

impl Acker for MemoryAcker {
    async fn settle(&self, settle: Settle) -> Result<(), SettleError> {
        let Some(t) = &self.0 else {
            return Ok(());
        };
        let now = Instant::now();
        {
            let mut state = t.broker.lock();
            let Some(c) = state.consumer_mut(&t.stream, &t.durable) else {
                return Ok(());
            };
            let seq = t.stream_sequence;
            match settle {
                Settle::Ack | Settle::Reject => c.settle(seq),
                Settle::Retry(delay) => c.nak(seq, t.consumer_sequence, delay, now),
                Settle::Progress => {
                    c.progress(seq, t.consumer_sequence, now);
                    return Ok(());
                }
            }
        }
        t.broker.notify_waiters();
        Ok(())
    }
}

/// A subscription on the embedded broker.
#[derive(Debug)]
pub struct MemorySubscription(Kind);

#[derive(Debug)]
enum Kind {
    Durable(Durable),
    Notes(Notes),
}

impl MemorySubscription {
    pub(super) fn durable(
        broker: &Broker,
        stream: &str,
        durable: &str,
        id: u64,
        incarnation: Option<u64>,
    ) -> MemorySubscription {
        MemorySubscription(Kind::Durable(Durable {
            broker: broker.clone(),
            stream: stream.into(),
            durable: durable.into(),
            id,
            incarnation,
            changed: broker.shared.changed.subscribe(),
            credits: 0,
        }))
    }

    pub(super) fn notes(
        broker: &Broker,
        id: u64,
        queue: Option<&str>,
        rx: mpsc::Receiver<Note>,
    ) -> MemorySubscription {
        MemorySubscription(Kind::Notes(Notes {
            broker: broker.clone(),
            id,
            queue: queue.unwrap_or_default().into(),
            no_stream: "".into(),
            rx,
            credits: 0,
        }))
    }
}

impl Subscription for MemorySubscription {
    type Acker = MemoryAcker;

    fn grant(&mut self, credits: usize) {
        match &mut self.0 {
            Kind::Durable(d) => {
                d.credits += credits;
                d.publish_waiting();
            }
            Kind::Notes(n) => n.credits += credits,
        }
    }

    async fn next(&mut self) -> Inbound<MemoryAcker> {
        match &mut self.0 {
            Kind::Durable(d) => d.next().await,
            Kind::Notes(n) => n.next().await,
        }
    }

    /// Nothing is ever in transit on the broker: only the credits end.
    async fn close(self) -> usize {
        0
    }
}

#[derive(Debug)]
struct Durable {
    broker: Broker,
    stream: Arc<str>,
    durable: Arc<str>,
    id: u64,
    /// The consumer this subscription was opened on (`None`: it did not exist).
    incarnation: Option<u64>,
    changed: watch::Receiver<u64>,
    credits: usize,
}

impl Durable {
    /// Tells the consumer how many messages this subscription waits for
    /// (`num_waiting`).
    fn publish_waiting(&self) {
        if let Some(c) = self.broker.lock().consumer_mut(&self.stream, &self.durable) {
            c.waiting.insert(self.id, self.credits);
        }
    }

    /// Cancel-safe: all state changes happen between awaits.
    async fn next(&mut self) -> Inbound<MemoryAcker> {
        loop {
            // Mark the current version seen before looking, so that no
            // change between the look and the wait is missed.
            self.changed.borrow_and_update();
            let wake = match self.poll_once(Instant::now()) {
                Ok(inbound) => return inbound,
                Err(wake) => wake,
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = self.changed.changed() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => {
                    let _ = self.changed.changed().await;
                }
            }
        }
    }

    /// What arrives now, or `Err(when to look again)`.
    fn poll_once(&mut self, now: Instant) -> Result<Inbound<MemoryAcker>, Option<Instant>> {
        if self.credits == 0 {
            return Err(None);
        }
        let broker = self.broker.clone();
        let mut guard = broker.lock();
        let polled = guard.streams.get_mut(&*self.stream).and_then(|stream| {
            // disjoint borrows: the consumer changes while the messages are read
            let Stream {
                messages,
                last_sequence,
                consumers,
                ..
            } = stream;
            let consumer = consumers.get_mut(&*self.durable)?;
            self.poll_consumer(consumer, messages, *last_sequence, now)
        });
        drop(guard);
        // the consumer (or its stream) is gone, or a new one has its name
        polled.unwrap_or(Ok(Inbound::Lost(Lost::ConsumerDeleted)))
    }

    /// `None`: this subscription's consumer is gone.
    fn poll_consumer(
        &mut self,
        consumer: &mut Consumer,
        messages: &BTreeMap<u64, stream::Message>,
        last_sequence: u64,
        now: Instant,
    ) -> Option<Result<Inbound<MemoryAcker>, Option<Instant>>> {
        if Some(consumer.incarnation) != self.incarnation {
            return None;
        }
        let Some(d) = consumer.take(messages, last_sequence, now) else {
            return Some(Err(consumer.next_due()));
        };
        self.credits -= 1;
        consumer.waiting.insert(self.id, self.credits);
        let m = &messages[&d.stream_sequence];
        let info = DeliveryInfo::new(
            self.stream.clone(),
            self.durable.clone(),
            d.stream_sequence,
            d.delivered,
            m.time,
        )
        .with_consumer_sequence(d.consumer_sequence);
        let acker = MemoryAcker(Some(Target {
            broker: self.broker.clone(),
            stream: self.stream.clone(),
            durable: self.durable.clone(),
            stream_sequence: d.stream_sequence,
            consumer_sequence: d.consumer_sequence,
        }));
        Some(Ok(Inbound::Message(Message::new(
            m.subject.clone(),
            m.headers.clone(),
            m.payload.clone(),
            info,
            acker,
        ))))
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        if let Some(c) = self.broker.lock().consumer_mut(&self.stream, &self.durable) {
            c.waiting.remove(&self.id);
        }
    }
}

#[derive(Debug)]
struct Notes {
    broker: Broker,
    id: u64,
    queue: Arc<str>,
    no_stream: Arc<str>,
    rx: mpsc::Receiver<Note>,
    credits: usize,
}

impl Notes {
    /// Cancel-safe: `mpsc::Receiver::recv` is.
    async fn next(&mut self) -> Inbound<MemoryAcker> {
        if self.credits == 0 {
            return std::future::pending().await;
        }
        let Some(note) = self.rx.recv().await else {
            return Inbound::Lost(Lost::Unavailable("the listener was removed".into()));
        };
        self.credits -= 1;
        let info = DeliveryInfo::new(
            self.no_stream.clone(),
            self.queue.clone(),
            0,
            1,
            note.published,
        );
        Inbound::Message(Message::new(
            note.subject,
            note.headers,
            note.payload,
            info,
            MemoryAcker(None),
        ))
    }
}

impl Drop for Notes {
    fn drop(&mut self) {
        self.broker.lock().listeners.remove(self.id);
    }
}
