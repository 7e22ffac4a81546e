use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler]
async fn reserve_stock(order: OrderCreated) -> Option<u32> {
    let _ = order;
    None
}

fn main() {}
