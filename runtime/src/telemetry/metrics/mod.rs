//! Metrics through the [`metrics`] facade (feature `metrics`),
//! and the Prometheus registry that the ops listener serves on `/metrics`.
//!
//! Every event a consume loop records feeds the in-process
//! [`HandlerStats`](crate::HandlerStats) and these metrics from one place,
//! with handles resolved once per handler when the app starts: nothing is
//! looked up or formatted per message. The metrics go to whatever recorder
//! is installed when the app starts:
//!
//! - jetflow's Prometheus registry, installed by an app that serves the
//!   ops listener ([`App::ops`](crate::App::ops), `JETFLOW_OPS_ADDR`), or by
//!   [`install`]; [`render`] gives the scrape text, for an HTTP server of
//!   your own;
//! - a recorder of your own (StatsD, OpenTelemetry, ...) installed before
//!   the app starts, with [`metrics::set_global_recorder`];
//! - none: the handles do nothing (switch an app's metrics off entirely
//!   with [`App::metrics`](crate::App::metrics)).
//!
//! Every name, its type and labels are in [`METRICS`] and in the README's
//! "Operating jetflow" table (a test keeps the two equal). Labels are
//! bounded: a handler's labels are its fn name, group and declared subject
//! (never the subject of one message, never an event id).
//!
//! ```
//! jetflow::telemetry::metrics::install().expect("no other recorder");
//! let text = jetflow::telemetry::metrics::render().expect("installed");
//! assert!(text.is_empty() || text.contains("jetflow_"));
//! ```

mod handler;
pub(crate) mod lag;
mod publish;
mod transport;

pub(crate) use handler::HandlerMetrics;
pub(crate) use publish::{PublishMetrics, PublishOutcome};
pub(crate) use transport::{connected, disconnected};

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric jetflow emits.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Metric {
    /// Its name, as scraped (a histogram's series add `_bucket`, `_sum`, `_count`).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names.
    pub labels: &'static [&'static str],
    /// What it counts or measures.
    pub help: &'static str,
}

/// The labels of every per-handler metric: the handler's fn name, its
/// consumer group and the subject it consumes as declared (a filter such
/// as `order.created.*`, never the subject of one message).
pub const HANDLER_LABELS: &[&str] = &["handler", "group", "subject"];
const STATE_LABELS: &[&str] = &["handler", "group", "subject", "state"];
const PUBLISH_LABELS: &[&str] = &["subject", "outcome"];
const TRANSPORT_LABELS: &[&str] = &["transport"];

macro_rules! metrics_table {
    ($($id:ident = $name:literal, $kind:ident, $labels:expr, $help:literal;)*) => {
        $(pub(crate) const $id: &str = $name;)*
        /// Every metric jetflow emits.
        pub const METRICS: &[Metric] = &[$(Metric { name: $name, kind: Kind::$kind, labels: $labels, help: $help },)*];
    };
}

metrics_table! {
    RECEIVED = "jetflow_handler_received_total", Counter, HANDLER_LABELS,
        "Deliveries received (redeliveries included).";
    ACKED = "jetflow_handler_acked_total", Counter, HANDLER_LABELS,
        "Deliveries acked: the handler returned Ok.";
    RETRIED = "jetflow_handler_retried_total", Counter, HANDLER_LABELS,
        "Deliveries given back for a retry after the backoff delay.";
    DEAD_LETTERED = "jetflow_handler_dead_lettered_total", Counter, HANDLER_LABELS,
        "Deliveries copied to the DLQ stream, then terminated.";
    TERMINATED = "jetflow_handler_terminated_total", Counter, HANDLER_LABELS,
        "Deliveries terminated without a DLQ copy (dead-lettering off, or a notification).";
    PANICKED = "jetflow_handler_panicked_total", Counter, HANDLER_LABELS,
        "Handler calls that panicked (each also counted as retried or dead-lettered).";
    DECODE_FAILED = "jetflow_handler_decode_failed_total", Counter, HANDLER_LABELS,
        "Payloads that could not be decoded as the handler's event (dead-lettered; the handler is not called).";
    DEAD_LETTER_FAILED = "jetflow_handler_dead_letter_failed_total", Counter, HANDLER_LABELS,
        "DLQ copies the broker refused (the message stays in its stream; the copy is tried again at its next delivery).";
    IDEMPOTENT_SKIPPED = "jetflow_handler_idempotent_skipped_total", Counter, HANDLER_LABELS,
        "Deliveries of an idempotent handler acked without calling it: the idempotency store had their event id as done.";
    HANDLER_DURATION = "jetflow_handler_duration_seconds", Histogram, HANDLER_LABELS,
        "How long handler calls ran, whatever their outcome.";
    PUBLISH_TO_ACK = "jetflow_handler_publish_to_ack_seconds", Histogram, HANDLER_LABELS,
        "From the broker storing a message to its ack being sent, for acked deliveries (clocks of two hosts when the broker is remote).";
    IN_FLIGHT = "jetflow_handler_in_flight_messages", Gauge, HANDLER_LABELS,
        "Deliveries being handled now (the handler running, or the delivery being settled).";
    PENDING = "jetflow_consumer_pending_messages", Gauge, HANDLER_LABELS,
        "Messages of the handler's durable consumer not yet delivered (the lag), refreshed on a schedule.";
    ACK_PENDING = "jetflow_consumer_ack_pending_messages", Gauge, HANDLER_LABELS,
        "Messages delivered to the durable consumer and not yet acked or terminated, refreshed on a schedule.";
    REDELIVERED = "jetflow_consumer_redelivered_messages", Gauge, HANDLER_LABELS,
        "Unacked messages of the durable consumer delivered more than once, refreshed on a schedule.";
    LOOP_STATE = "jetflow_consume_loop_state", Gauge, STATE_LABELS,
        "1 for the state the handler's consume loop is in (starting, receiving, recovering, paused, stopping, stopped, failed), 0 for the others it has been in.";
    LOOP_TRANSITIONS = "jetflow_consume_loop_transitions_total", Counter, STATE_LABELS,
        "Moves of the handler's consume loop into `state`.";
    PUBLISHED = "jetflow_publish_total", Counter, PUBLISH_LABELS,
        "Publishes by outcome: stored, duplicate (the broker had it already), sent (a notification), failed.";
    PUBLISH_DURATION = "jetflow_publish_duration_seconds", Histogram, &["subject"],
        "From sending a publish to its acknowledgement (the PubAck), retries of a lost one included; stored and duplicate publishes.";
    CONNECTIONS = "jetflow_transport_connections", Gauge, TRANSPORT_LABELS,
        "Connections to the broker that are up (one per app; a lost one counts again once it reconnects).";
    DISCONNECTS = "jetflow_transport_disconnects_total", Counter, TRANSPORT_LABELS,
        "Connections to the broker lost.";
    RECONNECTS = "jetflow_transport_reconnects_total", Counter, TRANSPORT_LABELS,
        "Connections to the broker made again after one was lost.";
}

/// The `subject` label of publishes whose subject is not an event type's:
/// [`Bus::publish_raw`](crate::Bus::publish_raw) and DLQ replays.
pub const RAW_SUBJECT: &str = "raw";
/// The `subject` label of DLQ copies.
pub const DLQ_SUBJECT: &str = "dlq";

/// Histogram buckets of every `_seconds` metric (seconds): 0.5 ms to 2 min.
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// How often the registry folds recorded histogram samples into its
/// buckets (bounds the memory samples take between scrapes).
const UPKEEP: Duration = Duration::from_secs(5);

/// jetflow's Prometheus registry, once installed.
static PROMETHEUS: OnceLock<Result<PrometheusHandle, InstallError>> = OnceLock::new();

/// [`install`] could not make jetflow's registry the global recorder.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// Another recorder was installed first: jetflow's metrics go to it,
    /// and `/metrics` cannot serve them; scrape that recorder where it
    /// serves them.
    #[error(
        "another metrics recorder is installed in this process; jetflow's metrics go to it, and \
         jetflow's `/metrics` cannot render them (serve them from that recorder, or install none \
         before the app starts)"
    )]
    OtherRecorder,
}

/// Installs jetflow's Prometheus registry as the process's global
/// recorder (once; later calls return the first call's result), with
/// histogram buckets for every `_seconds` metric ([`BUCKETS`]) and a
/// thread that folds samples into them every few seconds. An app that
/// serves the ops listener calls it when it starts.
pub fn install() -> Result<(), InstallError> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("BUCKETS is not empty")
                .build_recorder();
            let handle = recorder.handle();
            ::metrics::set_global_recorder(recorder).map_err(|_| InstallError::OtherRecorder)?;
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("jetflow-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                // `render` folds the samples too: a scrape keeps memory bounded
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histogram samples are folded at each scrape only");
            }
            describe();
            Ok(handle)
        })
        .clone()
        .map(|_| ())
}

/// The scrape text of jetflow's registry (Prometheus text format 0.0.4),
/// or `None` until [`install`] succeeded.
pub fn render() -> Option<String> {
    match PROMETHEUS.get() {
        Some(Ok(handle)) => Some(handle.render()),
        _ => None,
    }
}

/// Why [`render`] has nothing: not installed, or another recorder is.
#[cfg_attr(not(feature = "ops"), allow(dead_code))]
pub(crate) fn unavailable() -> Option<InstallError> {
    match PROMETHEUS.get() {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    }
}

/// Gives every metric its help text and unit, in the global recorder.
pub(crate) fn describe() {
    for m in METRICS {
        let unit = m.name.ends_with("_seconds").then_some(Unit::Seconds);
        let help = m.help;
        match (m.kind, unit) {
            (Kind::Counter, _) => ::metrics::describe_counter!(m.name, help),
            (Kind::Gauge, _) => ::metrics::describe_gauge!(m.name, help),
            (Kind::Histogram, Some(u)) => ::metrics::describe_histogram!(m.name, u, help),
            (Kind::Histogram, None) => ::metrics::describe_histogram!(m.name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's metric table lists exactly [`METRICS`]: name, type, labels.
    #[test]
    fn the_readme_table_is_the_metrics_table() {
        let readme = include_str!("../../../../README.md");
        let documented: Vec<(String, String, String)> = readme
            .lines()
            .filter(|l| l.starts_with("| `jetflow_"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    cells[1].trim_matches('`').to_owned(),
                    cells[2].to_owned(),
                    cells[3].to_owned(),
                )
            })
            .collect();
        let emitted: Vec<(String, String, String)> = METRICS
            .iter()
            .map(|m| {
                let kind = format!("{:?}", m.kind).to_lowercase();
                (m.name.to_owned(), kind, m.labels.join(", "))
            })
            .collect();
        assert_eq!(documented, emitted);
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for m in METRICS {
            assert!(m.name.starts_with("jetflow_"), "{}", m.name);
            match m.kind {
                Kind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                Kind::Histogram => assert!(m.name.ends_with("_seconds"), "{}", m.name),
                Kind::Gauge => assert!(!m.name.ends_with("_total"), "{}", m.name),
            }
            assert!(
                m.labels
                    .iter()
                    .all(|l| !l.is_empty() && !l.starts_with("__"))
            );
        }
    }
}
