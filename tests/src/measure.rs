//! What the benches read off this process: wall time, CPU time and
//! resident memory.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;

/// A point in time: wall clock and this process's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// Wall clock.
    pub wall: Instant,
    /// CPU time of this process so far ([`process_cpu`]).
    pub cpu: Duration,
}

impl Mark {
    /// Now.
    pub fn now() -> Mark {
        Mark {
            wall: Instant::now(),
            cpu: process_cpu(),
        }
    }
}

/// The fields of `/proc/self/stat` after the command name (which may
/// contain spaces); index 0 is field 3 (state).
fn stat_fields() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_comm
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .collect()
}

/// User + system CPU time of this process (all threads, including exited
/// ones), from `/proc/self/stat` (fields 14 and 15, in USER_HZ = 100
/// ticks/s on Linux: 10 ms resolution).
pub fn process_cpu() -> Duration {
    let fields = stat_fields();
    let tick = |i: usize| fields.get(i).copied().unwrap_or(0);
    // utime is field 14 -> index 11, stime 15 -> 12.
    Duration::from_millis((tick(11) + tick(12)) * 10)
}

/// Resident set size of this process in bytes (`VmRSS` of
/// `/proc/self/status`), 0 where it cannot be read.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The load average of the machine, as `/proc/loadavg` gives its first
/// three fields: how much to trust a figure taken on a shared machine.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One measured phase: `n` messages between two marks.
#[derive(Debug)]
pub struct Measured {
    /// Messages.
    pub n: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// CPU time of this process.
    pub cpu: Duration,
}

impl Measured {
    /// `n` messages between `start` and `end`.
    pub fn between(n: u64, start: Mark, end: Mark) -> Measured {
        Measured {
            n,
            elapsed: end.wall - start.wall,
            cpu: end.cpu.saturating_sub(start.cpu),
        }
    }
    /// Messages per second of wall time.
    pub fn rate(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }
    /// Client CPU per message, in microseconds.
    pub fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.n as f64
    }
}

/// Runs `send(i)` for `i` in `0..warm + n`, `in_flight` at a time, and
/// measures the last `n`: the warm-up's sends are all settled before the
/// clock starts, every send's result is checked.
pub async fn windowed<F, Fut>(
    warm: u64,
    n: u64,
    in_flight: usize,
    mut send: F,
) -> anyhow::Result<Measured>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut start = Mark::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..warm + n {
        if i == warm {
            while let Some(r) = inflight.next().await {
                r?;
            }
            start = Mark::now();
        }
        if inflight.len() >= in_flight
            && let Some(r) = inflight.next().await
        {
            r?;
        }
        inflight.push(send(i));
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(Measured::between(n, start, Mark::now()))
}

/// Counts handled messages of a consume phase: marks the end of the
/// warm-up and the last message, and wakes [`finished`](Counter::finished).
#[derive(Debug)]
pub struct Counter {
    seen: AtomicU64,
    warm: u64,
    total: u64,
    start: Mutex<Option<Mark>>,
    end: Mutex<Option<Mark>>,
    done: Notify,
}

impl Counter {
    /// A counter of `warm` messages of warm-up and `n` measured ones.
    pub fn new(warm: u64, n: u64) -> std::sync::Arc<Counter> {
        std::sync::Arc::new(Counter {
            seen: AtomicU64::new(0),
            warm,
            total: warm + n,
            start: Mutex::new(None),
            end: Mutex::new(None),
            done: Notify::new(),
        })
    }

    /// One more message; `true` from the last one on.
    pub fn hit(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.warm {
            *self.start.lock().expect("lock") = Some(Mark::now());
        }
        if n == self.total {
            *self.end.lock().expect("lock") = Some(Mark::now());
            self.done.notify_one();
        }
        n >= self.total
    }

    /// Waits until the last message was counted.
    pub async fn finished(&self) {
        self.done.notified().await;
    }

    /// The measured messages, from the end of the warm-up to the last.
    pub fn measured(&self) -> anyhow::Result<Measured> {
        use anyhow::Context as _;
        let start = self
            .start
            .lock()
            .expect("lock")
            .context("warm-up never finished")?;
        let end = self.end.lock().expect("lock").context("never finished")?;
        Ok(Measured::between(self.total - self.warm, start, end))
    }
}

/// A consume phase of jetflow: starts `app` with `handler` (which calls
/// [`Counter::hit`] per message on its `State<Arc<Counter>>`), waits until
/// it has handled `warm + n` messages, stops it, and returns the `n`
/// after the warm-up.
pub async fn consume_jetflow<H: jetflow::Handler>(
    app: jetflow::App,
    handler: H,
    warm: u64,
    n: u64,
) -> anyhow::Result<Measured> {
    let counter = Counter::new(warm, n);
    let app = app.state(counter.clone()).handler(handler).start().await?;
    counter.finished().await;
    app.stop().await?;
    counter.measured()
}

/// Runs the phases `a` and `b` one after the other, `b` first when
/// `flip` (benches alternate which side goes first from run to run);
/// their results in the order `(a, b)`.
pub async fn in_order<A: Future, B: Future>(flip: bool, a: A, b: B) -> (A::Output, B::Output) {
    if flip {
        let b = b.await;
        (a.await, b)
    } else {
        let a = a.await;
        (a, b.await)
    }
}

/// `(n, runs)` of a bench binary: `JETFLOW_BENCH_N` (else `bench_n` under
/// `cargo bench`, `smoke_n` under `cargo test`, which runs a bench without
/// `--bench` as a smoke test) and `JETFLOW_BENCH_RUNS` (else 3 under
/// `cargo bench`, 1).
pub fn size(bench_n: u64, smoke_n: u64) -> anyhow::Result<(u64, usize)> {
    use anyhow::Context as _;
    let bench = std::env::args().any(|a| a == "--bench");
    let var = |name: &str, default: u64| -> anyhow::Result<u64> {
        match std::env::var(name) {
            Ok(v) => Ok(v
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{name} is not a number"))?
                .max(1)),
            Err(_) => Ok(default),
        }
    };
    let n = var("JETFLOW_BENCH_N", if bench { bench_n } else { smoke_n })?;
    let runs = var("JETFLOW_BENCH_RUNS", if bench { 3 } else { 1 })?;
    Ok((n, usize::try_from(runs)?))
}

/// The result of the phase `what`, or why it failed or did not finish
/// within `limit`.
pub async fn timed<F>(what: &str, limit: Duration, phase: F) -> anyhow::Result<Measured>
where
    F: Future<Output = anyhow::Result<Measured>>,
{
    use anyhow::Context as _;
    tokio::time::timeout(limit, phase)
        .await
        .map_err(|_| anyhow::anyhow!("{what} timed out after {limit:?}"))?
        .with_context(|| what.to_owned())
}

/// The `q` quantile (0..=1) of `samples`, sorted in place; zero when empty.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// `(median, min, max)` of `values` (the mean of the two middle values
/// for an even count); zeros when empty. For ratios over several runs.
pub fn median_range(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    (median, v[0], v[v.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_samples() {
        let mut s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut s, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&mut s, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&mut s, 0.0), Duration::from_millis(1));
        assert_eq!(quantile(&mut [], 0.5), Duration::ZERO);
    }

    #[test]
    fn median_and_range_of_known_values() {
        assert_eq!(median_range(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_range(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(median_range(&[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn this_process_has_memory_and_spends_cpu() {
        assert!(
            rss_bytes() > 1024 * 1024,
            "a test binary holds more than 1 MiB"
        );
        let before = process_cpu();
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(
            process_cpu() > before,
            "60 ms of spinning shows as CPU time"
        );
    }
}
