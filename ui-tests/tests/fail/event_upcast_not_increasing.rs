use jetflow::prelude::*;

#[event(name = "order.created", version = "v2")]
pub struct OrderCreatedV2 {
    pub order_id: String,
}

/// Says v1 but upcasts from v2: versions must increase along the chain.
#[event(name = "order.created", version = "v1", upcast_from = OrderCreatedV2)]
pub struct OrderCreatedV1 {
    pub order_id: String,
}

impl From<OrderCreatedV2> for OrderCreatedV1 {
    fn from(v: OrderCreatedV2) -> Self {
        OrderCreatedV1 { order_id: v.order_id }
    }
}

fn main() {}
