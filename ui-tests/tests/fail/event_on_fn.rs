use jetflow::prelude::*;

#[event(version = "v1")]
async fn order_created(order_id: String) {
    let _ = order_id;
}

fn main() {}
