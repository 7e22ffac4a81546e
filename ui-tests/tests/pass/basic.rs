//! The smallest event and handler.

use jetflow::prelude::*;

/// An order was placed.
#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
    pub total_cents: u64,
}

/// Reserves stock.
#[handler]
async fn reserve_stock(order: OrderCreated) -> Result<(), HandlerError> {
    let _ = (order.order_id, order.total_cents);
    Ok(())
}

fn main() {
    assert_eq!(OrderCreated::NAME, "order.created");
    assert_eq!(OrderCreated::VERSION, "v1");
    assert_eq!(OrderCreated::SUBJECT, "order.created.v1");
    assert_eq!(OrderCreated::STREAM, "ORDER");
    let order = OrderCreated {
        order_id: "o-1".into(),
        total_cents: 250,
    };
    assert_eq!(order.event_key(), None);

    let options = <reserve_stock as Handler>::OPTIONS;
    assert_eq!(options.name, "reserve_stock");
    assert_eq!(options.subject, None);
    assert_eq!(options.group, None);
    assert!(reserve_stock.check(&Default::default()).is_ok());
}
