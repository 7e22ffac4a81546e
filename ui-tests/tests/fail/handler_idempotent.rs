use jetflow::prelude::*;

#[event(version = "v1")]
pub struct OrderCreated {
    pub order_id: String,
}

#[event(version = "v1", notification)]
pub struct CacheInvalidated {
    pub key: String,
}

// a single delivery leaves no room to give back an event held elsewhere
#[handler(group = "inventory", max_deliver = 1, idempotent)]
async fn reserve(_order: OrderCreated) {}

// a notification is never redelivered: nothing to skip
#[handler(group = "cache", idempotent)]
async fn drop_entry(_e: CacheInvalidated) {}

// a flag takes no value
#[handler(group = "billing", idempotent = true)]
async fn bill(_order: OrderCreated) {}

fn main() {}
