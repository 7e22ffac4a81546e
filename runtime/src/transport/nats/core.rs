//! Notifications on core NATS: published without a stream or PubAck,
//! heard by every subscriber or by one member of a queue group.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use async_nats::connection::State;
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{NatsAcker, headers, subject};
use crate::event::headers as wire;
use crate::transport::{
    BoxError, DeliveryInfo, Inbound, Lost, Message, Outgoing, PublishErrorKind, PublishFailure,
};

/// How long a flush (a notification sent, a subscription opened) may take
/// before it is an error.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes and waits until the server has it (a flush): an error when
/// disconnected, never a message buffered for a reconnect that may not come.
pub(super) async fn notify(
    client: &async_nats::Client,
    message: Outgoing,
) -> Result<(), PublishFailure> {
    let disconnected =
        |why: String| PublishFailure::Failed(PublishErrorKind::Disconnected, why.into());
    if client.connection_state() != State::Connected {
        return Err(disconnected(format!(
            "the connection to {} is {}",
            client.server_info().host,
            client.connection_state()
        )));
    }
    let headers = headers::to_nats(message.headers, None);
    client
        .publish_with_headers(subject(message.subject), headers, message.payload)
        .await
        .map_err(|e| PublishFailure::Failed(PublishErrorKind::Connection, e.into()))?;
    // Once handed to the client it cannot be taken back: a flush that
    // fails leaves it in the client's buffer, to be sent on a reconnect.
    confirmed(client)
        .await
        .map_err(|why| PublishFailure::Failed(PublishErrorKind::Unconfirmed, why.into()))
}

/// A flush within [`FLUSH_TIMEOUT`]: the server has processed everything
/// sent before it. `Err` says why not.
async fn confirmed(client: &async_nats::Client) -> Result<(), String> {
    match tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the flush failed: {e}")),
        Err(_) => Err(format!(
            "the server did not confirm the flush within {FLUSH_TIMEOUT:?}"
        )),
    }
}

/// A core NATS subscription, yielding only as many messages as granted.
/// Core NATS has no flow control: what arrives meanwhile waits in the
/// client's buffer (and is dropped by the client if it overflows, as for
/// any slow core NATS subscriber).
#[derive(Debug)]
pub(crate) struct CoreSubscription {
    client: async_nats::Client,
    sub: Subscriber,
    queue: Arc<str>,
    /// A notification has no stream (an empty name, shared).
    no_stream: Arc<str>,
    credits: usize,
}

impl CoreSubscription {
    pub(crate) async fn open(
        client: &async_nats::Client,
        subject: &str,
        queue: Option<&str>,
    ) -> Result<CoreSubscription, BoxError> {
        let sub = match queue {
            Some(q) => {
                client
                    .queue_subscribe(subject.to_owned(), q.to_owned())
                    .await?
            }
            None => client.subscribe(subject.to_owned()).await?,
        };
        // `subscribe` returns once the SUB is queued; the round trip of a
        // flush makes sure the server has it, so that a notification sent
        // (on any connection) after this returns reaches this listener.
        confirmed(client)
            .await
            .map_err(|why| format!("the server did not confirm the subscription: {why}"))?;
        Ok(CoreSubscription {
            client: client.clone(),
            sub,
            queue: queue.unwrap_or_default().into(),
            no_stream: "".into(),
            credits: 0,
        })
    }

    pub(crate) fn grant(&mut self, credits: usize) {
        self.credits += credits;
    }

    /// Cancel-safe: `Subscriber::next` is.
    pub(crate) async fn next(&mut self) -> Inbound<NatsAcker> {
        if self.credits == 0 {
            return std::future::pending().await;
        }
        loop {
            let Some(msg) = self.sub.next().await else {
                return Inbound::Lost(Lost::Unavailable("the NATS connection is closed".into()));
            };
            if msg.status.is_some() {
                continue;
            }
            self.credits -= 1;
            let headers = headers::from_nats(msg.headers.as_ref());
            let published = headers
                .get(wire::TIME)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                .unwrap_or_else(OffsetDateTime::now_utc);
            let info =
                DeliveryInfo::new(self.no_stream.clone(), self.queue.clone(), 0, 1, published);
            return Inbound::Message(Message::new(
                msg.subject.to_string(),
                headers,
                msg.payload,
                info,
                NatsAcker {
                    client: self.client.clone(),
                    reply: None,
                },
            ));
        }
    }

    /// Unsubscribes; notifications already in the client's buffer are
    /// dropped (nothing stores them).
    pub(crate) async fn close(mut self) -> usize {
        let _ = self.sub.unsubscribe().await;
        0
    }
}
