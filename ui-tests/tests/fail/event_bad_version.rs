use jetflow::prelude::*;

#[event(version = "v01")]
pub struct OrderCreated {
    pub order_id: String,
}

fn main() {}
