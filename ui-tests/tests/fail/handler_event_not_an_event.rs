use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

/// Not annotated with `#[event]`.
pub struct StockLow {
    pub sku: String,
}

#[handler]
async fn reorder(low: StockLow) -> Result<(), HandlerError> {
    let _ = (low.sku, OrderCreated::SUBJECT);
    Ok(())
}

fn main() {}
