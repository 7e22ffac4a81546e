//! [`Process`]: a handler with its event type erased, so that the consume
//! loop is generic over the transport only.

use crate::event::DecodeError;
use crate::handler::{BoxFuture, Context, Handler, HandlerError};

/// Decodes a payload for the handler and calls it.
pub(crate) trait Process: Send + Sync + 'static {
    /// The handler's future for the message on `subject`, or why the
    /// payload cannot be its event (permanent: dead-lettered).
    fn call(
        &self,
        subject: &str,
        payload: &[u8],
        ctx: Context,
    ) -> Result<BoxFuture<'static, Result<(), HandlerError>>, DecodeError>;

    /// The ordering key of the message, for an ordered handler (decodes
    /// the payload); `None` when it has none or cannot be decoded (the call
    /// then reports the decode failure).
    fn key(&self, subject: &str, payload: &[u8]) -> Option<String>;
}

impl<H: Handler> Process for H {
    fn call(
        &self,
        subject: &str,
        payload: &[u8],
        ctx: Context,
    ) -> Result<BoxFuture<'static, Result<(), HandlerError>>, DecodeError> {
        let event = crate::event::decode_subject::<H::Event>(subject, payload)?;
        Ok(Handler::call(self, event, ctx))
    }

    fn key(&self, subject: &str, payload: &[u8]) -> Option<String> {
        let event = crate::event::decode_subject::<H::Event>(subject, payload).ok()?;
        self.order_key(&event)
    }
}
