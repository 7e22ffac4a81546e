use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler(group = "inventory")]
pub struct ReserveStock;

fn main() {}
