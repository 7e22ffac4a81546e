//! A struct that derives serde itself keeps its derives and serde attributes.

use jetflow::prelude::*;

/// Both derives are the user's.
#[event(version = "v1")]
#[derive(jetflow::__private::serde::Serialize, jetflow::__private::serde::Deserialize)]
#[serde(crate = "jetflow::__private::serde", rename_all = "camelCase")]
pub struct OrderShipped {
    pub order_id: String,
    pub carrier_name: String,
}

/// Only `Serialize` is the user's; `#[event]` adds `Deserialize`.
#[event(version = "v1")]
#[derive(jetflow::__private::serde::Serialize)]
#[serde(crate = "jetflow::__private::serde")]
pub struct OrderCancelled {
    #[serde(rename = "id")]
    pub order_id: String,
}

fn main() {
    let json = jetflow::__private::serde_json::to_string(&OrderShipped {
        order_id: "o-1".into(),
        carrier_name: "ups".into(),
    })
    .expect("serializes");
    assert_eq!(json, r#"{"orderId":"o-1","carrierName":"ups"}"#);

    let back: OrderCancelled =
        jetflow::__private::serde_json::from_str(r#"{"id":"o-2"}"#).expect("deserializes");
    assert_eq!(back.order_id, "o-2");
    assert_eq!(OrderCancelled::SUBJECT, "order.cancelled.v1");
}
