//! A notification and its handlers: broadcast and queue group.

use jetflow::prelude::*;

/// A cache entry changed.
#[event(version = "v1", notification)]
pub struct CacheInvalidated {
    pub key: String,
}

/// Every replica drops its copy.
#[handler(group = "cache", broadcast, max_deliver = 2, backoff = "100ms")]
async fn drop_entry(e: CacheInvalidated, ctx: Context) {
    let _ = (e.key, ctx.delivered());
}

/// One replica of the group refreshes the entry.
#[handler(group = "cache", concurrency = 4)]
async fn refresh(e: CacheInvalidated) -> Result<(), HandlerError> {
    let _ = e.key;
    Ok(())
}

fn assert_notification<E: Notification>() {}

fn main() {
    assert!(CacheInvalidated::NOTIFICATION);
    assert_notification::<CacheInvalidated>();
    assert!(<drop_entry as Handler>::OPTIONS.broadcast);
    assert!(!<refresh as Handler>::OPTIONS.broadcast);
}
