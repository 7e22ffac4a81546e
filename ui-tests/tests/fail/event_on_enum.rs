use jetflow::prelude::*;

#[event(version = "v1")]
pub enum OrderEvent {
    Created { order_id: String },
    Cancelled { order_id: String },
}

fn main() {}
