use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler]
async fn reserve_stock<E: Event>(order: E) -> Result<(), HandlerError> {
    let _ = order;
    Ok(())
}

fn main() {}
