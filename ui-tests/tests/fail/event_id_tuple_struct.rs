use jetflow::prelude::*;

#[event(version = "v1", id = order_id)]
pub struct OrderCreated(pub String);

fn main() {}
