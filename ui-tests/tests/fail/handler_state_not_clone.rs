use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

/// Not `Clone`, so it cannot be shared state.
pub struct Db;

#[handler]
async fn reserve_stock(order: OrderCreated, State(db): State<Db>) -> Result<(), HandlerError> {
    let _ = (order, db);
    Ok(())
}

fn main() {}
