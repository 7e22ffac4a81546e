//! An idempotent handler that writes through the claim's transaction.
use jetflow::Handler;
use jetflow::idempotency::Tx;
use jetflow::prelude::*;

#[event(version = "v1", id = order_id)]
pub struct OrderPaid {
    pub order_id: String,
}

#[handler(group = "ledger", idempotent)]
async fn book(order: OrderPaid, mut tx: Tx) -> Result<(), HandlerError> {
    let _ = (&order.order_id, &mut *tx);
    Ok(())
}

fn main() {
    assert!(<book as Handler>::OPTIONS.idempotent);
}
