use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler(group = "inventory")]
async fn reserve_stock() -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
