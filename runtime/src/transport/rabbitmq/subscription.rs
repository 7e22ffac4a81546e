//! [`RabbitMqSubscription`]: a consumer on a group's quorum queue, and
//! [`RabbitMqAcker`], which settles its deliveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Consumer};
use time::OffsetDateTime;

use super::{Counts, RabbitMqTransport, timeout, wire};
use crate::topology::ConsumerDecl;
use crate::transport::{
    Acker, BoxError, DeliveryInfo, Inbound, Lost, Message, Settle, SettleError, Subscription,
};

/// How long [`Subscription::close`] may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every delivery of one subscription shares.
struct Group {
    transport: RabbitMqTransport,
    /// The subscription's channel: acks go on it, and it lives as long as
    /// any delivery is unsettled (closing it gives them back).
    channel: Channel,
    stream: Arc<str>,
    durable: Arc<str>,
    queue: String,
    /// This process's deliveries and settlements on the queue.
    counts: Arc<Counts>,
}

/// A consumer on a group's quorum queue. The consumer starts on the first
/// credits, with them as its `basic.qos` prefetch: the consume loop's
/// window (concurrency plus buffer), which it never exceeds.
pub struct RabbitMqSubscription {
    group: Arc<Group>,
    tag: String,
    credits: usize,
    consumer: Option<Consumer>,
    /// `basic.qos` then `basic.consume`, kept across cancelled `next` calls.
    starting: Option<BoxFuture<'static, Result<Consumer, lapin::Error>>>,
}

impl std::fmt::Debug for RabbitMqSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqSubscription")
            .field("queue", &self.group.queue)
            .field("credits", &self.credits)
            .finish_non_exhaustive()
    }
}

impl RabbitMqSubscription {
    pub(super) async fn open(
        transport: RabbitMqTransport,
        c: &ConsumerDecl,
    ) -> Result<RabbitMqSubscription, BoxError> {
        let channel = transport.channel().await?;
        let tag = format!(
            "{}-{}",
            transport.shared.name,
            uuid::Uuid::now_v7().simple()
        );
        let queue = wire::group_queue(&c.stream, &c.durable);
        let counts = transport.counts(&queue);
        Ok(RabbitMqSubscription {
            group: Arc::new(Group {
                counts,
                transport,
                channel,
                stream: c.stream.as_str().into(),
                durable: c.durable.as_str().into(),
                queue,
            }),
            tag,
            credits: 0,
            consumer: None,
            starting: None,
        })
    }

    fn start(&self) -> BoxFuture<'static, Result<Consumer, lapin::Error>> {
        let prefetch = u16::try_from(self.credits).unwrap_or(u16::MAX);
        let g = self.group.clone();
        let tag = self.tag.clone();
        Box::pin(async move {
            timeout(g.channel.basic_qos(prefetch, BasicQosOptions::default())).await?;
            timeout(g.channel.basic_consume(
                g.queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ))
            .await
        })
    }

    fn message(&self, d: Delivery) -> Message<RabbitMqAcker> {
        let table = d.properties.headers().as_ref();
        let subject =
            wire::text_header(table, wire::SUBJECT).unwrap_or_else(|| d.routing_key.to_string());
        let earlier = wire::int_header(table, wire::RETRIED).unwrap_or(0)
            + wire::int_header(table, wire::DELIVERY_COUNT).unwrap_or(0);
        let sequence = wire::int_header(table, wire::SEQUENCE).unwrap_or(0);
        let published = d
            .properties
            .timestamp()
            .and_then(|s| i64::try_from(s).ok())
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or_else(OffsetDateTime::now_utc);
        let info = DeliveryInfo::new(
            self.group.stream.clone(),
            self.group.durable.clone(),
            sequence,
            earlier + 1,
            published,
        );
        let mut headers = wire::headers(table);
        headers.fill_event_id(d.properties.message_id().as_ref().map(|id| id.as_str()));
        let payload = bytes::Bytes::from(d.data);
        self.group.counts.delivered(earlier > 0);
        let acker = RabbitMqAcker {
            inner: Arc::new(Delivered {
                settled: AtomicBool::new(false),
                group: self.group.clone(),
                acker: d.acker,
                subject: subject.clone(),
                delivered: earlier + 1,
                properties: d.properties,
                payload: payload.clone(),
            }),
        };
        Message::new(subject, headers, payload, info, acker)
    }
}

impl Subscription for RabbitMqSubscription {
    type Acker = RabbitMqAcker;

    fn grant(&mut self, credits: usize) {
        self.credits += credits;
    }

    /// Cancel-safe: the consumer's start is kept in the subscription, and
    /// the consumer's stream keeps what it received.
    async fn next(&mut self) -> Inbound<RabbitMqAcker> {
        if self.credits == 0 {
            return std::future::pending().await;
        }
        if self.consumer.is_none() {
            if self.starting.is_none() {
                self.starting = Some(self.start());
            }
            let Some(starting) = self.starting.as_mut() else {
                return std::future::pending().await;
            };
            let started = starting.await;
            self.starting = None;
            match started {
                Ok(consumer) => self.consumer = Some(consumer),
                Err(e) if super::topology::is_not_found(&e) => {
                    return Inbound::Lost(Lost::ConsumerDeleted);
                }
                Err(e) => {
                    return Inbound::Lost(Lost::Unavailable(format!(
                        "cannot consume from RabbitMQ queue {}: {e}",
                        self.group.queue
                    )));
                }
            }
        }
        let Some(consumer) = self.consumer.as_mut() else {
            return std::future::pending().await;
        };
        match consumer.next().await {
            Some(Ok(d)) => {
                self.credits -= 1;
                Inbound::Message(self.message(d))
            }
            Some(Err(e)) => Inbound::Lost(Lost::Unavailable(format!(
                "the RabbitMQ consumer on {} failed: {e}",
                self.group.queue
            ))),
            // the broker cancelled the consumer: its queue was deleted, or
            // the channel closed
            None if self.group.channel.status().connected() => Inbound::Lost(Lost::ConsumerDeleted),
            None => Inbound::Lost(Lost::Unavailable(format!(
                "the channel consuming {} closed",
                self.group.queue
            ))),
        }
    }

    /// Cancels the consumer and gives back (requeues) what it received but
    /// did not yield. Unsettled messages stay with the channel until their
    /// handlers settle them.
    async fn close(mut self) -> usize {
        self.starting = None;
        let Some(mut consumer) = self.consumer.take() else {
            return 0;
        };
        let g = self.group.clone();
        let tag = self.tag.clone();
        let give_back = async move {
            let _ = g
                .channel
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await;
            let mut given_back = 0;
            while let Some(Some(Ok(d))) = futures_util::FutureExt::now_or_never(consumer.next()) {
                let requeue = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                if d.acker.nack(requeue).await.is_ok() {
                    given_back += 1;
                }
            }
            given_back
        };
        tokio::time::timeout(CLOSE_TIMEOUT, give_back)
            .await
            .unwrap_or(0)
    }
}

/// Settles one RabbitMQ delivery. Cheap to clone.
#[derive(Clone)]
pub struct RabbitMqAcker {
    inner: Arc<Delivered>,
}

struct Delivered {
    /// Keeps the channel open until this delivery is settled.
    group: Arc<Group>,
    acker: lapin::Acker,
    /// Acked, rejected or given back: counted once.
    settled: AtomicBool,
    subject: String,
    delivered: u64,
    properties: BasicProperties,
    payload: bytes::Bytes,
}

impl Drop for Delivered {
    /// Dropped unsettled (its handler was aborted): RabbitMQ gives it back
    /// when the channel closes; it no longer counts as this process's.
    fn drop(&mut self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            self.group.counts.settled(false);
        }
    }
}

impl std::fmt::Debug for RabbitMqAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqAcker")
            .field("queue", &self.inner.group.queue)
            .field("subject", &self.inner.subject)
            .finish_non_exhaustive()
    }
}

impl RabbitMqAcker {
    /// Copies the message into the group's delay queue for `delay`, then
    /// acks the original.
    async fn retry_later(&self, delay: Duration) -> Result<(), SettleError> {
        let d = &self.inner;
        let mut table = d.properties.headers().clone().unwrap_or_default();
        table.insert(
            wire::SUBJECT.into(),
            AMQPValue::LongString(LongString::from(d.subject.as_str())),
        );
        table.insert(
            wire::RETRIED.into(),
            AMQPValue::LongLongInt(i64::try_from(d.delivered).unwrap_or(i64::MAX)),
        );
        let properties = d.properties.clone().with_headers(table);
        d.group
            .transport
            .delay(&d.group.queue, delay, &d.payload, properties)
            .await
            .map_err(|e| SettleError::new("retry copy", e))?;
        d.acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| SettleError::new("ack after the retry copy", e))
    }
}

impl Acker for RabbitMqAcker {
    async fn settle(&self, settle: Settle) -> Result<(), SettleError> {
        let result = self.send(settle).await;
        let last = match settle {
            Settle::Progress => false,
            Settle::Retry(_) | Settle::Ack | Settle::Reject => true,
        };
        if last && result.is_ok() && !self.inner.settled.swap(true, Ordering::AcqRel) {
            let done = !matches!(settle, Settle::Retry(_));
            self.inner.group.counts.settled(done);
        }
        result
    }
}

impl RabbitMqAcker {
    async fn send(&self, settle: Settle) -> Result<(), SettleError> {
        let acker = &self.inner.acker;
        match settle {
            // bounded like every broker call: on a connection that died
            // under it, a settle must fail, not hold the handler's slot
            Settle::Ack => super::timeout(acker.ack(BasicAckOptions::default()))
                .await
                .map(drop)
                .map_err(|e| SettleError::new("ack", e)),
            Settle::Retry(delay) if delay.is_zero() => {
                super::timeout(acker.nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                }))
                .await
                .map(drop)
                .map_err(|e| SettleError::new("nack", e))
            }
            Settle::Retry(delay) => self.retry_later(delay).await,
            // no ack deadline to extend: the message stays with this channel
            Settle::Progress => Ok(()),
            Settle::Reject => super::timeout(acker.reject(BasicRejectOptions { requeue: false }))
                .await
                .map(drop)
                .map_err(|e| SettleError::new("reject", e)),
        }
    }
}
