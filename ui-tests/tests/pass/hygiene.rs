//! The generated code names everything by absolute path: shadowing prelude
//! names where the macros are used changes nothing, and no warning appears.
#![deny(warnings)]

use jetflow::prelude::*;

#[allow(dead_code)]
type Result = ();
#[allow(dead_code)]
struct Ok;
#[allow(dead_code)]
struct Err;
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Some;
#[allow(dead_code)]
struct None;
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
struct String;
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
struct Duration;
#[allow(dead_code)]
trait Default {}
#[allow(dead_code)]
trait Clone {}
#[allow(dead_code)]
trait ToString {}
#[allow(dead_code)]
trait Send {}
#[allow(dead_code)]
trait Sync {}
#[allow(dead_code)]
trait Into {}
#[allow(dead_code)]
trait From {}
#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod std {}
#[allow(dead_code)]
mod serde {}

/// An order was placed.
#[event(version = "v1", id = order_id)]
pub struct OrderCreated {
    pub order_id: ::std::string::String,
}

/// Version 2 of the order, upcast from version 1.
#[event(name = "order.created", version = "v2", upcast_from = OrderCreated)]
pub struct OrderCreatedV2 {
    pub order_id: ::std::string::String,
    pub note: ::core::option::Option<::std::string::String>,
}

impl ::core::convert::From<OrderCreated> for OrderCreatedV2 {
    fn from(v1: OrderCreated) -> Self {
        OrderCreatedV2 {
            order_id: v1.order_id,
            note: ::core::option::Option::None,
        }
    }
}

/// Handles every version.
#[handler(group = "hygiene-v2")]
async fn handle_v2(order: OrderCreatedV2) {
    let _ = (order.order_id, order.note);
}

#[derive(::core::clone::Clone)]
struct Db;

/// Handles orders.
#[handler(
    group = "hygiene",
    max_deliver = 2,
    backoff = "1s",
    ack_wait = "5s",
    subject = "order.created.v1"
)]
async fn handle(
    order: OrderCreated,
    ctx: Context,
    State(db): State<Db>,
) -> ::core::result::Result<(), HandlerError> {
    let _db: Db = db;
    let _ = (order, ctx);
    ::core::result::Result::Ok(())
}

fn main() {
    let order = OrderCreated {
        order_id: ::std::string::String::from("o-1"),
    };
    assert_eq!(
        order.event_key().as_deref(),
        ::core::option::Option::Some("o-1")
    );
    assert_eq!(
        <handle as Handler>::OPTIONS.max_deliver,
        ::core::option::Option::Some(2)
    );
    let _ = (handle, handle_v2);
}
