//! The pull requests one subscription has on the server, as plain
//! bookkeeping (no I/O, so it is tested without a server): credits granted
//! and not yet asked for, the requests still waiting (oldest first, the
//! order in which the server fills and expires them), the consumer's limits
//! on a request, and the pause after the server refused a request because
//! its queue of waiting requests was full.
//!
//! The server states its limits only by refusing a request that exceeds
//! them (`409 Exceeded MaxRequestBatch of 2`, `409 Exceeded
//! MaxRequestExpires of 1s`, `409 Exceeded MaxWaiting`); each refusal is
//! learned here, so the next request fits, instead of asking again the same
//! way in a tight loop.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::transport::nats::PullTiming;

/// The first pause after a full waiting queue; doubled per refusal in a row.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause after a full waiting queue.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// At most this many requests of one subscription wait at once. Credits
/// are asked for in one request unless the consumer limits its batch, so
/// this only binds under a small `max_batch`: it keeps one replica from
/// filling the consumer's queue of waiting requests (512 by default).
const MAX_REQUESTS: usize = 16;

/// What a `409` status on the pull inbox says about the consumer's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Limit {
    /// `Exceeded MaxRequestBatch of N`: at most N messages per request.
    Batch(usize),
    /// `Exceeded MaxRequestExpires of D`: a request may wait at most D.
    Expires(Duration),
    /// `Exceeded MaxWaiting`: the consumer's queue of waiting requests (of
    /// every replica) is full; this request was refused.
    Waiting,
}

impl Limit {
    /// Recognises the limit a `409` description names; `None` for any other.
    pub(super) fn parse(description: &str) -> Option<Limit> {
        let d = description.trim();
        if d.eq_ignore_ascii_case("Exceeded MaxWaiting") {
            return Some(Limit::Waiting);
        }
        if let Some(n) = d.strip_prefix("Exceeded MaxRequestBatch of ") {
            return n.trim().parse().ok().filter(|&n| n > 0).map(Limit::Batch);
        }
        if let Some(d) = d.strip_prefix("Exceeded MaxRequestExpires of ") {
            return go_duration(d.trim())
                .filter(|d| !d.is_zero())
                .map(Limit::Expires);
        }
        None
    }
}

/// A Go `time.Duration` as the server prints it: `1s`, `1.5s`, `500ms`,
/// `1m30s`, `2h0m0s`, `100µs`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit..];
        total += value * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The consumer's limits on one pull request, as its configuration states
/// them (read when subscribing; `None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RequestLimits {
    /// `max_batch`: messages per request.
    pub(crate) max_batch: Option<usize>,
    /// `max_expires`: how long a request may wait.
    pub(crate) max_expires: Option<Duration>,
    /// `max_waiting`: requests waiting at once, of all replicas together.
    pub(crate) max_waiting: Option<usize>,
}

impl RequestLimits {
    /// From a consumer's configuration (zero means no limit there).
    pub(crate) fn of(config: &async_nats::jetstream::consumer::Config) -> RequestLimits {
        let positive = |n: i64| usize::try_from(n).ok().filter(|&n| n > 0);
        RequestLimits {
            max_batch: positive(config.max_batch),
            max_expires: Some(config.max_expires).filter(|d| !d.is_zero()),
            max_waiting: positive(config.max_waiting),
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Requests {
    /// Credits granted but not yet asked for.
    unrequested: usize,
    /// Credits each waiting request still holds, oldest first.
    waiting: VecDeque<usize>,
    /// The sum of `waiting`.
    requested: usize,
    /// At most this many messages per request (`None`: no limit known).
    max_batch: Option<usize>,
    /// At most this many of our requests waiting at once (learned when the
    /// server's queue was full).
    max_requests: usize,
    /// How long a request waits on the server, and its heartbeat.
    timing: PullTiming,
    /// No request before this instant (after a full waiting queue).
    paused_until: Option<Instant>,
    /// Full-queue refusals since the last sign of progress.
    refusals: u32,
}

impl Requests {
    pub(super) fn new(timing: PullTiming, limits: RequestLimits) -> Requests {
        let mut requests = Requests {
            unrequested: 0,
            waiting: VecDeque::new(),
            requested: 0,
            max_batch: None,
            max_requests: MAX_REQUESTS.min(limits.max_waiting.unwrap_or(usize::MAX)),
            timing,
            paused_until: None,
            refusals: 0,
        };
        let now = Instant::now();
        if let Some(max) = limits.max_batch {
            requests.refused(&Limit::Batch(max), now);
        }
        if let Some(max) = limits.max_expires {
            requests.refused(&Limit::Expires(max), now);
        }
        requests
    }

    /// Room for `credits` more messages.
    pub(super) fn grant(&mut self, credits: usize) {
        self.unrequested += credits;
    }

    /// Credits the waiting requests hold.
    pub(super) fn requested(&self) -> usize {
        self.requested
    }

    /// The expiry and heartbeat to put in the next request.
    pub(super) fn timing(&self) -> PullTiming {
        self.timing
    }

    /// When a paused subscription may ask again (`None`: not paused).
    pub(super) fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// The batch of the next request to send now, if one should be sent.
    pub(super) fn next_batch(&mut self, now: Instant) -> Option<usize> {
        if let Some(until) = self.paused_until {
            if now < until {
                return None;
            }
            self.paused_until = None;
        }
        if self.unrequested == 0 || self.waiting.len() >= self.max_requests {
            return None;
        }
        Some(
            self.max_batch
                .map_or(self.unrequested, |max| self.unrequested.min(max)),
        )
    }

    /// A request for `batch` messages was sent.
    pub(super) fn sent(&mut self, batch: usize) {
        self.unrequested -= batch;
        self.requested += batch;
        self.waiting.push_back(batch);
    }

    /// A message arrived (it fills the oldest waiting request).
    pub(super) fn delivered(&mut self) {
        self.progress();
        if let Some(front) = self.waiting.front_mut() {
            *front -= 1;
            self.requested -= 1;
            if *front == 0 {
                self.waiting.pop_front();
            }
        }
    }

    /// The server is alive and serving (a heartbeat).
    pub(super) fn progress(&mut self) {
        self.refusals = 0;
    }

    /// The oldest waiting request ended (it expired, or the server ended
    /// it early): what it still held is asked for again. (The server's
    /// count of what it did not fill is the same: it sends a request's
    /// messages before the status that ends it.)
    pub(super) fn ended(&mut self) {
        self.progress();
        if let Some(unfilled) = self.waiting.pop_front() {
            self.requested -= unfilled;
            self.unrequested += unfilled;
        }
    }

    /// The server refused a request because of `limit`. Returns `true`
    /// when every waiting request is gone (they were all refused, or all
    /// must be asked again): the caller opens a fresh inbox.
    pub(super) fn refused(&mut self, limit: &Limit, now: Instant) -> bool {
        match *limit {
            Limit::Waiting => {
                // The request just sent tipped the queue over.
                if let Some(last) = self.waiting.pop_back() {
                    self.requested -= last;
                    self.unrequested += last;
                }
                self.max_requests = self.waiting.len().clamp(1, MAX_REQUESTS);
                self.refusals = self.refusals.saturating_add(1);
                let pause = FIRST_PAUSE
                    .saturating_mul(1 << (self.refusals - 1).min(16))
                    .min(MAX_PAUSE);
                self.paused_until = Some(now + pause);
                false
            }
            Limit::Batch(max) => {
                self.max_batch = Some(max);
                true
            }
            Limit::Expires(max) => {
                self.timing.expires = self.timing.expires.min(max);
                // The server refuses a heartbeat over half the expiry.
                self.timing.heartbeat = self.timing.heartbeat.min(self.timing.expires / 2);
                true
            }
        }
    }

    /// Every waiting request is gone (a fresh inbox): ask for all credits
    /// again.
    pub(super) fn reset(&mut self) {
        self.unrequested += std::mem::take(&mut self.requested);
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> PullTiming {
        PullTiming {
            expires: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
        }
    }

    #[test]
    fn parses_the_servers_limit_statuses() {
        assert_eq!(Limit::parse("Exceeded MaxWaiting"), Some(Limit::Waiting));
        assert_eq!(
            Limit::parse("Exceeded MaxRequestBatch of 2"),
            Some(Limit::Batch(2))
        );
        assert_eq!(
            Limit::parse("Exceeded MaxRequestExpires of 1.5s"),
            Some(Limit::Expires(Duration::from_millis(1500)))
        );
        assert_eq!(
            Limit::parse("Exceeded MaxRequestExpires of 1m30s"),
            Some(Limit::Expires(Duration::from_secs(90)))
        );
        assert_eq!(
            Limit::parse("Exceeded MaxRequestExpires of 500ms"),
            Some(Limit::Expires(Duration::from_millis(500)))
        );
        assert_eq!(Limit::parse("Exceeded MaxRequestBatch of 0"), None);
        assert_eq!(Limit::parse("Leadership Change"), None);
        assert_eq!(go_duration("2h0m0s"), Some(Duration::from_secs(7200)));
        assert_eq!(go_duration("100µs"), Some(Duration::from_micros(100)));
        assert_eq!(go_duration("1x"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn a_batch_limit_splits_requests() {
        let now = Instant::now();
        let mut r = Requests::new(timing(), RequestLimits::default());
        r.grant(5);
        assert_eq!(r.next_batch(now), Some(5));
        r.sent(5);
        assert!(r.refused(&Limit::Batch(2), now), "start afresh");
        r.reset();
        let mut batches = Vec::new();
        while let Some(b) = r.next_batch(now) {
            r.sent(b);
            batches.push(b);
        }
        assert_eq!(batches, [2, 2, 1]);
        assert_eq!(r.requested(), 5);
    }

    #[test]
    fn limits_stated_by_the_consumer_apply_from_the_first_request() {
        let limits = RequestLimits {
            max_batch: Some(3),
            max_expires: Some(Duration::from_secs(4)),
            max_waiting: Some(2),
        };
        let now = Instant::now();
        let mut r = Requests::new(timing(), limits);
        assert_eq!(r.timing().expires, Duration::from_secs(4));
        assert_eq!(r.timing().heartbeat, Duration::from_secs(2));
        r.grant(10);
        let mut batches = Vec::new();
        while let Some(b) = r.next_batch(now) {
            r.sent(b);
            batches.push(b);
        }
        assert_eq!(batches, [3, 3], "at most two requests wait");
    }

    #[test]
    fn an_expiry_limit_shortens_requests_and_heartbeats() {
        let mut r = Requests::new(timing(), RequestLimits::default());
        assert!(r.refused(&Limit::Expires(Duration::from_secs(2)), Instant::now()));
        assert_eq!(r.timing().expires, Duration::from_secs(2));
        assert_eq!(r.timing().heartbeat, Duration::from_secs(1));
    }

    #[test]
    fn a_full_waiting_queue_pauses_and_caps_the_requests() {
        let now = Instant::now();
        let mut r = Requests::new(timing(), RequestLimits::default());
        r.grant(4);
        let b = r.next_batch(now).unwrap();
        r.sent(b);
        r.grant(3);
        let b = r.next_batch(now).unwrap();
        r.sent(b);
        assert!(!r.refused(&Limit::Waiting, now));
        assert_eq!(r.requested(), 4, "the refused request's credits are back");
        assert_eq!(r.next_batch(now), None, "paused");
        let later = now + FIRST_PAUSE;
        assert_eq!(r.next_batch(later), None, "one request may wait at a time");
        // the first request is filled: room for another
        for _ in 0..4 {
            r.delivered();
        }
        assert_eq!(r.requested(), 0);
        assert_eq!(r.next_batch(later), Some(3));
    }

    #[test]
    fn pauses_grow_and_are_capped() {
        let now = Instant::now();
        let mut r = Requests::new(timing(), RequestLimits::default());
        let mut pauses = Vec::new();
        for _ in 0..10 {
            r.grant(1);
            let b = r.next_batch(now + MAX_PAUSE * 20).unwrap();
            r.sent(b);
            r.refused(&Limit::Waiting, now);
            pauses.push(r.paused_until().unwrap() - now);
        }
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        r.delivered();
        r.grant(1);
        r.refused(&Limit::Waiting, now);
        assert_eq!(
            r.paused_until().unwrap() - now,
            FIRST_PAUSE,
            "progress resets it"
        );
    }

    #[test]
    fn an_ended_request_gives_its_unused_credits_back() {
        let now = Instant::now();
        let mut r = Requests::new(timing(), RequestLimits::default());
        r.grant(10);
        let b = r.next_batch(now).unwrap();
        r.sent(b);
        for _ in 0..3 {
            r.delivered();
        }
        r.ended();
        assert_eq!(r.requested(), 0);
        assert_eq!(r.next_batch(now), Some(7));
    }
}
