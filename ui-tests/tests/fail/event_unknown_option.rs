use jetflow::prelude::*;

#[event(verison = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

fn main() {}
