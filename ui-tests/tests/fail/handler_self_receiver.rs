use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

pub struct Service;

impl Service {
    #[handler]
    async fn reserve_stock(&self, order: OrderCreated) -> Result<(), HandlerError> {
        let _ = order;
        Ok(())
    }
}

fn main() {}
