//! The one place a URL's scheme becomes a transport: [`App::start`] and
//! [`App::plan`] both connect through [`on_transport`].

use std::future::Future;

use super::{App, ConnectOptions};
use crate::error::Result;
use crate::transport::nats::PullTiming;
use crate::transport::select::Scheme;
use crate::transport::{Transport, memory, nats};

/// What to do with the transport the app's URL names, once connected.
pub(super) trait OnTransport {
    /// What it gives back.
    type Output;
    /// Runs on `transport`.
    fn run<T: Transport>(self, transport: T) -> impl Future<Output = Result<Self::Output>> + Send;
}

/// How to reach the broker: what [`on_transport`] reads of an [`App`].
pub(super) struct Target {
    connect: ConnectOptions,
    name: String,
    pull: PullTiming,
}

impl Target {
    /// Where `app` connects.
    pub(super) fn of(app: &App) -> Target {
        Target {
            connect: app.connect.clone(),
            name: app.name.clone(),
            pull: app.pull,
        }
    }
}

/// Connects to the broker `target`'s URL names (`memory://`, `nats://` /
/// `tls://`, and `redis://` / `amqp://` / `kafka://` with their features) and runs
/// `then` on it.
pub(super) async fn on_transport<F: OnTransport>(target: Target, then: F) -> Result<F::Output> {
    let Target {
        connect,
        name,
        pull,
    } = target;
    match Scheme::of(&connect.url)? {
        Scheme::Memory => {
            let broker = memory::Broker::for_url(&connect.url)
                .unwrap_or_else(|| memory::Broker::named("default"));
            then.run(broker).await
        }
        Scheme::Nats => then.run(nats::connect(&connect, &name, pull).await?).await,
        #[cfg(feature = "rabbitmq")]
        Scheme::RabbitMq => {
            then.run(crate::transport::rabbitmq::connect(&connect, &name).await?)
                .await
        }
        #[cfg(feature = "kafka")]
        Scheme::Kafka => {
            then.run(crate::transport::kafka::connect(&connect, &name).await?)
                .await
        }
        #[cfg(feature = "redis")]
        Scheme::Redis => {
            then.run(crate::transport::redis::connect(&connect, &name).await?)
                .await
        }
    }
}
