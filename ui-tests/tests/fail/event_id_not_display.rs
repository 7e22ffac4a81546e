use jetflow::prelude::*;

#[event(version = "v1", id = order_ids)]
pub struct OrdersMerged {
    pub order_ids: Vec<String>,
}

fn main() {}
