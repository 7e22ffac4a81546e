//! The Redis keys of a jetflow stream. Every key of one stream carries the
//! stream's name as a hash tag (`{ORDER}`), so that one Lua script may touch
//! them all on a Redis Cluster too.

/// The declared streams: a hash of stream name -> [`StreamMeta`](super::meta::StreamMeta) JSON.
pub(super) const STREAMS: &str = "jetflow:streams";

/// The pseudo-consumer that owns entries parked for a delayed retry.
pub(super) const PARKED: &str = "jetflow-parked";

/// The keys of one jetflow stream.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// The Redis stream with the messages.
    pub(super) stream: String,
    /// The jetflow sequence counter.
    pub(super) seq: String,
    /// The declared consumers: a hash of durable -> consumer meta JSON.
    pub(super) consumers: String,
    prefix: String,
}

impl Keys {
    pub(super) fn of(stream: &str) -> Keys {
        let prefix = format!("jetflow:{{{stream}}}");
        Keys {
            stream: format!("{prefix}:messages"),
            seq: format!("{prefix}:seq"),
            consumers: format!("{prefix}:consumers"),
            prefix,
        }
    }

    /// Holds the sequence of message id `id` for the dedup window.
    pub(super) fn dedup(&self, id: &str) -> String {
        format!("{}:id:{id}", self.prefix)
    }

    /// The sorted set of `durable`'s entries parked for a delayed retry
    /// (score: when they are due, in Unix milliseconds).
    pub(super) fn parked(&self, durable: &str) -> String {
        format!("{}:parked:{durable}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_stream_shares_its_hash_tag() {
        let k = Keys::of("ORDER");
        for key in [
            &k.stream,
            &k.seq,
            &k.consumers,
            &k.dedup("x"),
            &k.parked("inv--order"),
        ] {
            assert!(key.starts_with("jetflow:{ORDER}:"), "{key}");
        }
    }
}
