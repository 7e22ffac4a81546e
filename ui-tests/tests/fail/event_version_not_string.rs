use jetflow::prelude::*;

#[event(version = 1)]
pub struct OrderCreated {
    pub order_id: String,
}

fn main() {}
