use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler]
async fn reserve_stock(order: OrderCreated, warehouse: String) -> Result<(), HandlerError> {
    let _ = (order, warehouse);
    Ok(())
}

fn main() {}
