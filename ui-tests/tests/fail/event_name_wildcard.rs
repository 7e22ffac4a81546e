use jetflow::prelude::*;

#[event(name = "order.*", version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

fn main() {}
