//! A chain v1 -> v2 -> v3: each version decodes the older ones, upcast.

use jetflow::event::{DecodeError, decode_subject};
use jetflow::prelude::*;

mod old {
    /// Version 1.
    #[jetflow::event(name = "order.created", version = "v1")]
    pub struct OrderCreated {
        pub order_id: String,
    }
}

/// Version 2 adds the currency.
#[event(name = "order.created", version = "v2", upcast_from = old::OrderCreated)]
pub struct OrderCreatedV2 {
    pub order_id: String,
    pub currency: String,
}

impl From<old::OrderCreated> for OrderCreatedV2 {
    fn from(v1: old::OrderCreated) -> Self {
        OrderCreatedV2 { order_id: v1.order_id, currency: "EUR".into() }
    }
}

/// Version 10 (after v2: versions compare as numbers) adds a note.
#[event(name = "order.created", version = "v10", upcast_from = OrderCreatedV2)]
pub struct OrderCreatedV10 {
    pub order_id: String,
    pub currency: String,
    pub note: Option<String>,
}

impl From<OrderCreatedV2> for OrderCreatedV10 {
    fn from(v2: OrderCreatedV2) -> Self {
        OrderCreatedV10 { order_id: v2.order_id, currency: v2.currency, note: None }
    }
}

#[handler(group = "billing")]
async fn bill(order: OrderCreatedV10, ctx: Context) {
    let _ = (order.note, ctx.version());
}

fn main() {
    let versions: Vec<&str> = OrderCreatedV10::history().iter().map(|v| v.version).collect();
    assert_eq!(versions, ["v1", "v2", "v10"]);
    let e: OrderCreatedV10 = decode_subject("order.created.v1", br#"{"order_id":"a"}"#).unwrap();
    assert_eq!((e.order_id.as_str(), e.currency.as_str()), ("a", "EUR"));
    let e: OrderCreatedV10 =
        decode_subject("order.created.v2", br#"{"order_id":"b","currency":"USD"}"#).unwrap();
    assert_eq!(e.currency, "USD");
    let Err(err) = decode_subject::<OrderCreatedV10>("order.created.v11", b"{}") else {
        panic!("v11 must not decode");
    };
    assert!(matches!(err, DecodeError::UnsupportedVersion { .. }), "{err}");
    assert_eq!(jetflow::event::filter_subject::<OrderCreatedV10>(), "order.created.*");
    let _ = bill;
}
