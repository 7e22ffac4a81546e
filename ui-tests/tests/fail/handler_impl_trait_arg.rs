use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler]
async fn reserve_stock(
    order: OrderCreated,
    tag: impl Clone + Send + 'static,
) -> Result<(), HandlerError> {
    let _ = (order, tag);
    Ok(())
}

fn main() {}
