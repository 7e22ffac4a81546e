//! Handlers: the [`Handler`] trait that `#[handler]` implements, its
//! [`HandlerOptions`], the [`HandlerError`] a handler returns, and the
//! extractors ([`Context`], [`State`]) it takes as arguments.

mod config;
pub(crate) mod context;
mod error;
mod extract;

pub use config::{DeliverPolicy, HandlerOptions, InvalidOptions};
pub use context::Context;
pub use error::{HandlerError, IntoOutcome};
pub use extract::{Extensions, FromContext, MissingState, State};
pub use jetflow_rules::OptionError;

use std::future::Future;
use std::pin::Pin;

use crate::event::Event;

/// A boxed, `Send` future, as returned by [`Handler::call`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event handler bound to one event type.
///
/// `#[handler]` turns an `async fn` into a unit struct implementing this
/// trait; the trait can also be implemented by hand.
///
/// # Example (the equivalent of what `#[handler]` generates)
///
/// ```
/// use jetflow::prelude::*;
/// use jetflow::handler::{BoxFuture, HandlerOptions};
///
/// #[event(version = "v1")]
/// pub struct OrderCreated { pub order_id: String }
///
/// pub struct ReserveStock;
///
/// impl Handler for ReserveStock {
///     type Event = OrderCreated;
///     const OPTIONS: HandlerOptions = HandlerOptions::new("reserve_stock").group("inventory");
///
///     fn call(&self, event: OrderCreated, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
///         Box::pin(async move {
///             println!("reserving stock for {} (delivery {})", event.order_id, ctx.delivered());
///             Ok(())
///         })
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a jetflow handler",
    label = "not a handler",
    note = "put `#[jetflow::handler]` on an `async fn` whose first argument is an event"
)]
pub trait Handler: Send + Sync + 'static {
    /// The event this handler receives.
    type Event: Event;

    /// Subject, group, retry and flow-control options.
    const OPTIONS: HandlerOptions;

    /// Checks, once at start-up, that every extractor the handler takes can
    /// be served by the app (for instance that `State<T>` was registered).
    fn check(&self, extensions: &Extensions) -> Result<(), MissingState> {
        let _ = extensions;
        Ok(())
    }

    /// The ordering key of `event`, for a handler whose options are
    /// [`ordered`](HandlerOptions::ordered) (`#[handler(ordered_by =
    /// field)]` generates it from the field): events with the same key are
    /// handled one at a time, in the order they arrive, and a retry of one
    /// holds the later events of its key only. `None` (the default): the
    /// event has no order to keep.
    fn order_key(&self, event: &Self::Event) -> Option<String> {
        let _ = event;
        None
    }

    /// Handles one decoded event.
    fn call(
        &self,
        event: Self::Event,
        ctx: Context,
    ) -> BoxFuture<'static, Result<(), HandlerError>>;
}
