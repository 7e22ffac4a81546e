// Several mistakes in one file: every one is reported in the same compilation.
use jetflow::prelude::*;

#[event(version = "1", nmae = "order.created", stream = "ORDERS EU", id = orderid)]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler(
    grup = "inventory",
    max_deliver = 0,
    backoff = "1s, soon",
    ack_wait = "0s",
    deliver = "first"
)]
fn reserve_stock(order: &OrderCreated, tag: impl Clone) -> Result<(), HandlerError> {
    let _ = (order, tag);
    Ok(())
}

fn main() {
    // Uses of the handler still resolve: no cascade of secondary errors.
    let _ = reserve_stock;
}
