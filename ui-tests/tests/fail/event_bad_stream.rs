use jetflow::prelude::*;

#[event(version = "v1", stream = "ORDERS.EU")]
pub struct OrderCreated {
    pub order_id: String,
}

fn main() {}
