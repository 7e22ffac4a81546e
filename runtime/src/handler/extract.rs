use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use super::{Context, HandlerError};

/// Values registered with [`App::state`](crate::App::state), by type.
#[derive(Default, Clone)]
pub struct Extensions {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Extensions {
    /// Stores `value`, replacing an earlier value of the same type.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.map.insert(TypeId::of::<T>(), Arc::new(value));
    }
    /// The value of type `T`, if one was registered.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.len())
            .finish()
    }
}

/// A handler takes `State<T>` but the app has no value of type `T`.
#[derive(Debug, Clone, Error)]
#[error(
    "handler `{handler}` takes `State<{type_name}>`, but no value of that type was registered; call `App::state(value)` with a `{type_name}` before `run`"
)]
pub struct MissingState {
    /// The handler's name.
    pub handler: &'static str,
    /// The missing type.
    pub type_name: &'static str,
}

/// A handler argument built from the message's [`Context`].
///
/// The first argument of a `#[handler]` function is the event; every other
/// argument implements `FromContext`: [`Context`] itself and [`State<T>`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a jetflow handler argument",
    label = "not an extractor",
    note = "after the event, handler arguments must be extractors: `jetflow::Context` or `jetflow::State<T>`"
)]
pub trait FromContext: Sized + Send + 'static {
    /// Builds the argument for one message.
    fn from_context(ctx: &Context) -> Result<Self, HandlerError>;

    /// `true` for an extractor that needs the handler's idempotency claim
    /// ([`Tx`](crate::idempotency::Tx)): `#[handler]` then requires
    /// `idempotent` at compile time.
    const NEEDS_CLAIM: bool = false;

    /// Checks once at start-up that the app can serve this extractor.
    fn check(handler: &'static str, extensions: &Extensions) -> Result<(), MissingState> {
        let _ = (handler, extensions);
        Ok(())
    }
}

impl FromContext for Context {
    fn from_context(ctx: &Context) -> Result<Self, HandlerError> {
        Ok(ctx.clone())
    }
}

/// Shared application state registered with [`App::state`](crate::App::state),
/// cloned into each call (wrap large values in an `Arc`).
///
/// ```
/// use jetflow::prelude::*;
///
/// #[derive(Clone)]
/// struct Db { url: String }
///
/// #[event(version = "v1")]
/// struct OrderCreated { order_id: String }
///
/// #[handler(group = "inventory")]
/// async fn reserve(order: OrderCreated, State(db): State<Db>) -> Result<(), HandlerError> {
///     let _ = (order, db.url);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromContext for State<T> {
    fn from_context(ctx: &Context) -> Result<Self, HandlerError> {
        match ctx.extensions().get::<T>() {
            Some(v) => Ok(State(v.clone())),
            // `check` runs at start-up, so this is unreachable for apps built with `App`.
            None => Err(HandlerError::reject(MissingState {
                handler: ctx.handler(),
                type_name: type_name::<T>(),
            })),
        }
    }

    fn check(handler: &'static str, extensions: &Extensions) -> Result<(), MissingState> {
        match extensions.get::<T>() {
            Some(_) => Ok(()),
            None => Err(MissingState {
                handler,
                type_name: type_name::<T>(),
            }),
        }
    }
}
