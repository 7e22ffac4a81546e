use jetflow::prelude::*;

#[event(name = "Order.Created", version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

fn main() {}
