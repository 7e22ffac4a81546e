use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler(max_deliver = 3, backoff = "1s, 5s, 30s, 1m, 5m")]
async fn reserve_stock(order: OrderCreated) -> Result<(), HandlerError> {
    let _ = order.order_id;
    Ok(())
}

fn main() {}
