//! `crate = path` for a renamed or re-exported jetflow.

extern crate jetflow as renamed;

mod my {
    pub use ::jetflow;
}

/// Through `extern crate ... as`.
#[renamed::event(version = "v1", crate = renamed)]
pub struct Ping {
    pub seq: u64,
}

/// Through a re-export in a module.
#[my::jetflow::event(version = "v1", id = seq, crate = crate::my::jetflow)]
pub struct Pong {
    pub seq: u64,
}

/// Handles pings.
#[renamed::handler(crate = renamed, subject = "ping.v1")]
async fn on_ping(ping: Ping, ctx: renamed::Context) -> Result<(), renamed::HandlerError> {
    let _ = (ping.seq, ctx);
    Ok(())
}

/// Handles pongs.
#[my::jetflow::handler(crate = my::jetflow, group = "pongs")]
async fn on_pong(pong: Pong, my::jetflow::State(n): my::jetflow::State<u32>) {
    let _ = (pong.seq, n);
}

fn main() {
    use renamed::{Event, Handler};
    assert_eq!(Ping::SUBJECT, "ping.v1");
    assert_eq!(Pong { seq: 7 }.event_key().as_deref(), Some("7"));
    assert_eq!(<on_ping as Handler>::OPTIONS.subject, Some("ping.v1"));
    assert_eq!(<on_pong as Handler>::OPTIONS.group, Some("pongs"));
    let _ = (on_ping, on_pong);
}
