use jetflow::prelude::*;

#[event(version = "v1", name = "order.created", version = "v2")]
pub struct OrderCreated {
    pub order_id: String,
}

fn main() {}
