//! [`DynTransport`]: the object-safe face of a [`Transport`], for the
//! [`Bus`](crate::Bus), which is not generic. One boxed future per call;
//! the consume loop uses the transport directly.

use std::any::Any;

use super::{BoxError, Capabilities, Outgoing, PubAck, PublishFailure, Stored, Transport};
use futures_util::future::BoxFuture;

use crate::topology::{ConsumerState, StreamDecl, TopologyError, TopologyPolicy};

pub(crate) trait DynTransport: Send + Sync + 'static {
    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<PubAck, PublishFailure>>;
    fn publish_batch(
        &self,
        messages: Vec<Outgoing>,
    ) -> BoxFuture<'_, Vec<Result<PubAck, PublishFailure>>>;
    fn notify(&self, message: Outgoing) -> BoxFuture<'_, Result<(), PublishFailure>>;
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Stored>, TopologyError>>;
    fn consumer_state<'a>(
        &'a self,
        stream: &'a str,
        durable: &'a str,
    ) -> BoxFuture<'a, Result<ConsumerState, TopologyError>>;
    fn delete_messages<'a>(
        &'a self,
        stream: &'a str,
        sequences: &'a [u64],
    ) -> BoxFuture<'a, Result<usize, TopologyError>>;
    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>>;
    fn declare_streams<'a>(
        &'a self,
        streams: &'a [StreamDecl],
        policy: TopologyPolicy,
    ) -> BoxFuture<'a, Result<(), TopologyError>>;
    fn describe(&self) -> String;
    fn capabilities(&self) -> Capabilities;
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    fn system(&self) -> &'static str;
    #[cfg_attr(not(feature = "ops"), allow(dead_code))]
    fn is_connected(&self) -> bool;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Transport> DynTransport for T {
    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<PubAck, PublishFailure>> {
        Box::pin(Transport::publish(self, message))
    }
    fn publish_batch(
        &self,
        messages: Vec<Outgoing>,
    ) -> BoxFuture<'_, Vec<Result<PubAck, PublishFailure>>> {
        Box::pin(Transport::publish_batch(self, messages))
    }
    fn notify(&self, message: Outgoing) -> BoxFuture<'_, Result<(), PublishFailure>> {
        Box::pin(Transport::notify(self, message))
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Stored>, TopologyError>> {
        Box::pin(Transport::read_stream(self, stream))
    }
    fn consumer_state<'a>(
        &'a self,
        stream: &'a str,
        durable: &'a str,
    ) -> BoxFuture<'a, Result<ConsumerState, TopologyError>> {
        Box::pin(Transport::consumer_state(self, stream, durable))
    }
    fn delete_messages<'a>(
        &'a self,
        stream: &'a str,
        sequences: &'a [u64],
    ) -> BoxFuture<'a, Result<usize, TopologyError>> {
        Box::pin(Transport::delete_messages(self, stream, sequences))
    }
    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(Transport::flush(self))
    }
    fn declare_streams<'a>(
        &'a self,
        streams: &'a [StreamDecl],
        policy: TopologyPolicy,
    ) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(Transport::declare_streams(self, streams, policy))
    }
    fn describe(&self) -> String {
        Transport::describe(self)
    }
    fn capabilities(&self) -> Capabilities {
        Transport::capabilities(self)
    }
    fn system(&self) -> &'static str {
        Transport::system(self)
    }
    fn is_connected(&self) -> bool {
        Transport::is_connected(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
