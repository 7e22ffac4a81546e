use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler]
async fn reserve_stock(ctx: Context, order: OrderCreated) -> Result<(), HandlerError> {
    let _ = (ctx, order);
    Ok(())
}

fn main() {}
