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
}
