//! Connections to the broker: how many are up, how often one was lost and
//! made again.

use super::{CONNECTIONS, DISCONNECTS, RECONNECTS};

/// A connection of `transport` (`nats`, ...) is up; `again`: after it was lost.
pub(crate) fn connected(transport: &'static str, again: bool) {
    ::metrics::gauge!(CONNECTIONS, "transport" => transport).increment(1.0);
    let reconnects = ::metrics::counter!(RECONNECTS, "transport" => transport);
    // `increment(0)` shows the counters from the first connection on
    reconnects.increment(u64::from(again));
    ::metrics::counter!(DISCONNECTS, "transport" => transport).increment(0);
}

/// A connection of `transport` that was up is down; `lost`: not closed by the app.
pub(crate) fn disconnected(transport: &'static str, lost: bool) {
    ::metrics::gauge!(CONNECTIONS, "transport" => transport).decrement(1.0);
    ::metrics::counter!(DISCONNECTS, "transport" => transport).increment(u64::from(lost));
}
