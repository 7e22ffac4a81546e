//! Procedural macros of [jetflow](https://docs.rs/jetflow): `#[event]` and
//! `#[handler]`.
//!
//! Use them through the `jetflow` crate (`use jetflow::prelude::*;`), which
//! re-exports them; the code they generate names items of `jetflow` only.
//!
//! The crate is thin: `attr.rs` parses the options, `ast.rs` models the item,
//! `valid.rs` checks the rules (collecting every error in one pass so that
//! one compilation reports all mistakes), `expand/` generates the code.
//! The rules themselves (names, versions, subjects, durations, option
//! defaults) live in `jetflow-rules`, shared with the runtime.
//! All behaviour lives in the runtime's `Event` and `Handler` traits.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Makes a struct a jetflow event: derives serde's `Serialize` and
/// `Deserialize` and schemars' `JsonSchema` (through `jetflow`, so no direct
/// serde or schemars dependency is needed) and implements `jetflow::Event`.
///
/// ```
/// use jetflow::prelude::*;
///
/// /// An order was placed.
/// #[event(version = "v1", id = order_id)]
/// pub struct OrderCreated {
///     pub order_id: String,
///     pub total_cents: u64,
/// }
///
/// assert_eq!(OrderCreated::SUBJECT, "order.created.v1");
/// ```
///
/// # Options
///
/// | option | required | value | default |
/// |---|---|---|---|
/// | `version = "v1"` | yes | `v` and a number from 1, no leading zeros | |
/// | `name = "order.created"` | no | lowercase tokens of `a-z`, `0-9`, `_`, `-` separated by `.`; no wildcards | the type name, CamelCase split into dotted lowercase words: `OrderCreated` -> `order.created`, `HTTPRequestFailed` -> `http.request.failed` |
/// | `stream = "ORDERS"` | no | ASCII letters, digits, `_`, `-` | the name's first token, upper-cased: `order.created` -> `ORDER` |
/// | `id = order_id` | no | a named field whose `Display` text is the business key (used for a stable event id and server-side deduplication) | none: every publish gets a fresh id |
/// | `upcast_from = OrderCreatedV1` | no | the type of the previous version of this event (same `name`, an older `version`); requires `impl From<OrderCreatedV1> for ThisType`. A handler of this type receives every version of the chain, upcast | none |
/// | `notification` | no | a flag: the event is a notification, published with `Bus::notify` without persistence (core NATS) and heard by the handlers listening at that moment; no stream stores it, so it takes no `stream` | stored in a stream |
/// | `crate = path` | no | path to the `jetflow` crate, for a renamed or re-exported dependency | `::jetflow` |
///
/// The subject is `{name}.{version}`. The struct may not be generic. If it
/// already derives `Serialize`, `Deserialize` or `JsonSchema` (any path
/// ending in those names), that derive is not added again. Field types of
/// your own need `JsonSchema` too (`jetflow::schema::schemars`).
///
/// # Equivalent code without the macro
///
/// ```
/// # use jetflow::schema::schemars::{Schema, SchemaGenerator};
/// #[derive(::jetflow::__private::serde::Serialize, ::jetflow::__private::serde::Deserialize)]
/// #[serde(crate = "::jetflow::__private::serde")]
/// #[derive(::jetflow::__private::schemars::JsonSchema)]
/// #[schemars(crate = "::jetflow::__private::schemars")]
/// pub struct OrderCreated {
///     pub order_id: String,
///     pub total_cents: u64,
/// }
///
/// impl ::jetflow::Event for OrderCreated {
///     const NAME: &'static str = "order.created";
///     const VERSION: &'static str = "v1";
///     const SUBJECT: &'static str = "order.created.v1";
///     const STREAM: &'static str = "ORDER";
///     // only with `id = order_id`:
///     fn event_key(&self) -> Option<String> {
///         Some(self.order_id.to_string())
///     }
///     fn schema(generator: &mut SchemaGenerator) -> Option<Schema> {
///         Some(generator.subschema_for::<Self>())
///     }
/// }
/// ```
///
/// With `upcast_from = OrderCreated` on a `v2` type, two more methods and a
/// compile-time check of the chain (same name, newer version):
///
/// ```ignore
/// fn history() -> Vec<jetflow::event::EventInfo> {
///     jetflow::event::history_upcast::<OrderCreatedV2, OrderCreated>()
/// }
/// fn decode(version: &str, payload: &[u8]) -> Result<Self, jetflow::event::DecodeError> {
///     jetflow::event::decode_upcast::<OrderCreatedV2, OrderCreated>(version, payload) // needs `From<OrderCreated>`
/// }
/// // next to the impl:
/// const _: () = jetflow::__private::assert_upcast(
///     (<OrderCreated as Event>::NAME, <OrderCreated as Event>::VERSION),
///     ("order.created", "v2"),
///     ["<different name>", "<same version>", "<older version>"],
/// );
/// ```
///
/// With `notification`, one more constant and a marker trait:
///
/// ```ignore
/// impl Event for CacheInvalidated {
///     // ... as above
///     const NOTIFICATION: bool = true;
/// }
/// impl jetflow::Notification for CacheInvalidated {}
/// ```
#[proc_macro_attribute]
pub fn event(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand_event(attr.into(), item.into()).into()
}

/// Makes an `async fn` a jetflow handler: the function becomes a unit struct
/// of the same name (same visibility and docs) implementing
/// `jetflow::Handler`, to register with `App::handler(reserve_stock)`.
///
/// The first argument is the event, taken by value. Every further argument
/// is an extractor (`jetflow::handler::FromContext`): `Context`, `State<T>`.
/// The function returns `()` or `Result<(), E>` where `E` converts into
/// `HandlerError` (`HandlerError` itself or any `std::error::Error`).
///
/// ```
/// use jetflow::prelude::*;
/// # #[event(version = "v1")]
/// # pub struct OrderCreated { pub order_id: String }
///
/// #[derive(Clone)]
/// struct Db;
///
/// #[handler(group = "inventory", max_deliver = 3, backoff = "1s, 5s")]
/// async fn reserve_stock(order: OrderCreated, ctx: Context, State(db): State<Db>) -> Result<(), HandlerError> {
///     Ok(())
/// }
/// ```
///
/// # Options
///
/// All are optional; an option that is not given keeps the runtime's
/// default (see `jetflow::handler::HandlerOptions`).
///
/// | option | value | default |
/// |---|---|---|
/// | `subject = "order.created.v1"` | a NATS subject: non-empty tokens separated by `.`, no white space, `*` only as a whole token, `>` only as the whole last token. It must match the event's subject (checked at compile time). | the event's subject |
/// | `group = "inventory"` | ASCII letters, digits, `_`, `-`: the consumer group (durable name prefix) | the app's name |
/// | `max_deliver = 5` | integer >= 1: deliveries before the message is dead-lettered | 5 |
/// | `backoff = "1s, 5s, 30s"` | comma list of durations > 0, at most `max_deliver - 1` of them; the last one repeats | `1s, 5s, 30s` |
/// | `ack_wait = "30s"` | duration >= `1ms` | `30s` |
/// | `concurrency = 64` | integer from 1 to 65535: messages handled at once per instance | 1 |
/// | `prefetch = 64` | integer from 0 to 65535: at most this many messages received ahead of the handler calls (sized down to what drains in half the ack wait; they get progress signals, so none expires while it waits); 0 receives nothing before a handler slot is free | 256 |
/// | `ordered_by = customer_id` | a field of the event (any `Display` type; a missing field is a compile error at this token): events with the same value are handled one at a time, in order, different values in parallel up to `concurrency`; a failed event is retried in the process, holding back only its own key | no per-key order |
/// | `dead_letter = false` | `true` / `false`: copy failed messages to the DLQ stream | `true` |
/// | `deliver = "new"` | `"all"`, `"new"` or `"last"`: where a new durable consumer starts | `"all"` |
/// | `broadcast` | a flag, for a notification handler: every replica of the app hears each notification, instead of one replica of the group (a queue group). A compile error on a handler of a stored event | one replica per group |
/// | `idempotent` | a flag: jetflow claims `(group, event id)` in the app's idempotency store (`App::idempotency_store`) before each call; an event already done is acked without calling the handler, one held by a live replica is retried later, an unreachable store pauses consumption (see `jetflow::idempotency`). Needs `max_deliver >= 2`; a compile error on a notification handler; the app refuses to start without a store. A `jetflow::idempotency::Tx` argument (the claim's Postgres transaction) requires it: a compile error on that argument otherwise | not idempotent |
/// | `crate = path` | path to the `jetflow` crate, for a renamed or re-exported dependency | `::jetflow` |
///
/// A handler of a notification (`#[event(notification)]`) takes no
/// `ack_wait`, `deliver`, `dead_letter = true` or `idempotent` (nothing
/// stores, acknowledges or redelivers a notification): each is a compile
/// error spanned on the option. Its failures are retried in-process with `max_deliver` and
/// `backoff`.
///
/// Durations are an integer followed by `ms`, `s`, `m` or `h`: `500ms`,
/// `30s`, `5m`, `1h`.
///
/// # Equivalent code without the macro
///
/// ```
/// # use std::time::Duration;
/// # use jetflow::prelude::*;
/// # use jetflow::handler::{BoxFuture, Extensions, FromContext, HandlerOptions, IntoOutcome, MissingState};
/// # #[event(version = "v1")]
/// # pub struct OrderCreated { pub order_id: String }
/// # #[derive(Clone)]
/// # struct Db;
/// #[derive(Debug, Clone, Copy, Default)]
/// #[allow(non_camel_case_types)]
/// struct reserve_stock;
///
/// impl ::jetflow::Handler for reserve_stock {
///     type Event = OrderCreated;
///     const OPTIONS: HandlerOptions = HandlerOptions::new("reserve_stock")
///         .group("inventory")
///         .max_deliver(3)
///         .backoff(&[Duration::from_millis(1000), Duration::from_millis(5000)]);
///         // with `idempotent`: `.idempotent()` — nothing else is generated;
///         // the consume loop claims, completes and releases around `call`
///
///     fn check(&self, ext: &Extensions) -> Result<(), MissingState> {
///         // one line per extractor: fails at start-up if `App::state` lacks a `Db`
///         <State<Db> as FromContext>::check(Self::OPTIONS.name, ext)?;
///         Ok(())
///     }
///
///     // only with `ordered_by = order_id` (and `.ordered()` in OPTIONS): the lane key,
///     // spanned on the field, so a field the event lacks is an error there
///     // fn order_key(&self, event: &OrderCreated) -> Option<String> {
///     //     Some(ToString::to_string(&event.order_id))
///     // }
///
///     fn call(&self, event: OrderCreated, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
///         async fn reserve_stock(order: OrderCreated, ctx: Context, State(db): State<Db>) -> Result<(), HandlerError> {
///             Ok(())
///         }
///         Box::pin(async move {
///             let arg1 = <Context as FromContext>::from_context(&ctx)?;
///             let arg2 = <State<Db> as FromContext>::from_context(&ctx)?;
///             IntoOutcome::into_outcome(reserve_stock(event, arg1, arg2).await)
///         })
///     }
/// }
///
/// // only with `subject = "..."`: a compile error if the subject cannot carry the event
/// const _: () = ::jetflow::__private::assert_subject_matches(<OrderCreated as Event>::SUBJECT, "order.created.v1");
/// // one per `Tx` argument of a handler that is not `idempotent`, spanned on it:
/// // const _: () = ::jetflow::__private::assert_claimed(<Tx as FromContext>::NEEDS_CLAIM, false);
/// // one per option that fits only one kind of event (`ack_wait`, `deliver`,
/// // `dead_letter = true`, `idempotent`: stored events; `broadcast`: notifications),
/// // spanned on it
/// const _: () = ::jetflow::__private::assert_event_kind(
///     <OrderCreated as Event>::NOTIFICATION, false, "`ack_wait` does not apply to a notification ...",
/// );
/// ```
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand_handler(attr.into(), item.into()).into()
}
