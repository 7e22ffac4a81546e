use jetflow::prelude::*;

#[event(name = "order.created", version = "v1")]
pub struct OrderCreatedV1 {
    pub order_id: String,
}

/// Both types claim v1.
#[event(name = "order.created", version = "v1", upcast_from = OrderCreatedV1)]
pub struct OrderCreatedAgain {
    pub order_id: String,
}

impl From<OrderCreatedV1> for OrderCreatedAgain {
    fn from(v: OrderCreatedV1) -> Self {
        OrderCreatedAgain { order_id: v.order_id }
    }
}

/// Upcasting from itself.
#[event(name = "order.created", version = "v3", upcast_from = OrderCreatedV3)]
pub struct OrderCreatedV3 {
    pub order_id: String,
}

fn main() {}
