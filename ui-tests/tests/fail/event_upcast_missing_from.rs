use jetflow::prelude::*;

#[event(name = "order.created", version = "v1")]
pub struct OrderCreatedV1 {
    pub order_id: String,
}

/// No `impl From<OrderCreatedV1> for OrderCreatedV2`.
#[event(name = "order.created", version = "v2", upcast_from = OrderCreatedV1)]
pub struct OrderCreatedV2 {
    pub order_id: String,
    pub currency: String,
}

/// `upcast_from` names a type that is not an event, in quotes.
#[event(name = "order.created", version = "v3", upcast_from = "OrderCreatedV2")]
pub struct OrderCreatedV3 {
    pub order_id: String,
}

fn main() {}
