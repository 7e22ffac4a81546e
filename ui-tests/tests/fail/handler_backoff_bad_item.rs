use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler(backoff = "1s, 5x, 30s")]
async fn reserve_stock(order: OrderCreated) -> Result<(), HandlerError> {
    let _ = order.order_id;
    Ok(())
}

fn main() {}
