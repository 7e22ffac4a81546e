use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[event(version = "v1", notification)]
pub struct CacheInvalidated {
    pub key: String,
}

// `broadcast` on an event stored in a stream
#[handler(group = "inventory", broadcast)]
async fn reserve(_order: OrderCreated) {}

// options a notification has no use for
#[handler(group = "cache", ack_wait = "10s", deliver = "new", dead_letter = true)]
async fn drop_entry(_e: CacheInvalidated) {}

fn main() {}
