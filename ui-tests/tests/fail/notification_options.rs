use jetflow::prelude::*;

#[event(version = "v1", notification = true)]
pub struct FlagWithValue {
    pub key: String,
}

#[event(version = "v1", notification, stream = "CACHE")]
pub struct NotificationWithStream {
    pub key: String,
}

fn main() {}
