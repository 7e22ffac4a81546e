use jetflow::prelude::*;

#[event(version = "v1", id = orderid)]
pub struct OrderCreated {
    pub order_id: String,
    pub total_cents: u64,
}

fn main() {}
