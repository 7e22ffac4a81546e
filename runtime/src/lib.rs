#![doc = include_str!("../../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
pub mod asyncapi;
#[cfg(feature = "commands")]
#[cfg_attr(docsrs, doc(cfg(feature = "commands")))]
pub mod commands;
mod consume;
pub mod dlq;
pub mod error;
pub mod event;
pub mod handler;
pub mod idempotency;
#[cfg(feature = "ops")]
#[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
pub mod ops;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod outbox;
pub mod publish;
mod retry;
pub mod schema;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;
pub mod transport;

pub use app::{App, AppHandle, ConnectOptions, WaitError};
pub use error::{Error, Result};
pub use event::{Event, Notification};
pub use handler::{Context, Handler, HandlerError, State};
pub use publish::{Bus, PubAck, PublishError, WireProfile};
pub use status::{HandlerStatus, LoopState};
pub use telemetry::HandlerStats;
pub use transport::{Headers, memory};

#[cfg(feature = "macros")]
pub use jetflow_macros::{event, handler};

/// Everything a service usually needs: `use jetflow::prelude::*;`.
pub mod prelude {
    pub use crate::{
        App, Bus, Context, Event, Handler, HandlerError, Headers, Notification, State,
    };
    #[cfg(feature = "macros")]
    pub use crate::{event, handler};
}

/// Paths used by the code `#[event]` and `#[handler]` generate. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;

    /// Compile-time check that an explicit handler `subject` can carry the
    /// event's subject; a failure is a compile error pointing at the literal.
    pub const fn assert_subject_matches(event_subject: &str, handler_subject: &str) {
        if !crate::event::subject_matches(handler_subject, event_subject) {
            panic!(
                "the handler's `subject` does not match the subject its event is published on \
                 (`<Event>::SUBJECT`); remove `subject = ...` or use a subject that matches it"
            );
        }
    }

    /// Compile-time check that a handler option fits its event's kind:
    /// `is_notification` is the event's `NOTIFICATION`, `wanted` the kind
    /// the option needs; a failure is a compile error with `message`,
    /// spanned on the option.
    pub const fn assert_event_kind(is_notification: bool, wanted: bool, message: &'static str) {
        if is_notification != wanted {
            panic!("{}", message);
        }
    }

    /// Compile-time check that an extractor which needs an idempotency
    /// claim (`Tx`) is only taken by an `idempotent` handler; a failure is
    /// a compile error spanned on the argument's type.
    pub const fn assert_claimed(needs_claim: bool, idempotent: bool) {
        if needs_claim && !idempotent {
            panic!(
                "this extractor runs in the transaction of the handler's idempotency claim: add \
                 `idempotent` to `#[handler(...)]` (and give the app a PostgresStore)"
            );
        }
    }

    /// Compile-time rules of `#[event(upcast_from = P)]` (same name, newer
    /// version); a failure is a compile error with the macro's message.
    pub const fn assert_upcast(from: (&str, &str), to: (&str, &str), messages: [&'static str; 3]) {
        crate::event::check_upcast(from, to, messages)
    }
}
