use std::rc::Rc;

use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler]
async fn reserve_stock(order: OrderCreated) -> Result<(), HandlerError> {
    let count = Rc::new(order.order_id.len());
    std::future::ready(()).await;
    let _ = count;
    Ok(())
}

fn main() {}
