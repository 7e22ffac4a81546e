use jetflow::prelude::*;

#[event(name = "order.created", version = "v1")]
pub struct OrderCreatedV1 {
    pub order_id: String,
}

/// Another event name cannot be part of the chain.
#[event(name = "order.placed", version = "v2", upcast_from = OrderCreatedV1)]
pub struct OrderPlacedV2 {
    pub order_id: String,
}

impl From<OrderCreatedV1> for OrderPlacedV2 {
    fn from(v: OrderCreatedV1) -> Self {
        OrderPlacedV2 { order_id: v.order_id }
    }
}

fn main() {}
