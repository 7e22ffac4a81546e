use jetflow::idempotency::Tx;
use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderPaid {
    pub order_id: String,
}

// `Tx` is the transaction of the idempotency claim: the handler must be `idempotent`
#[handler(group = "ledger")]
async fn book(_order: OrderPaid, _tx: Tx) {}

fn main() {}
