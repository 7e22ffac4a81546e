use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler(concurrency = 0)]
async fn reserve_stock(order: OrderCreated) -> Result<(), HandlerError> {
    let _ = order.order_id;
    Ok(())
}

fn main() {}
