//! The ops listener and the metrics, from outside: `/metrics` scraped over
//! HTTP after a known workload and read with a Prometheus text parser
//! (every counter equals what happened, on JetStream and on the embedded
//! broker); `/readyz` following the server through a pause (SIGSTOP), a
//! kill and a restart while `/healthz` stays up; the Grafana dashboard
//! querying only names the exporter emits.
//!
//! The metrics registry is one per process, and publish and connection
//! series are shared by every app in it: the tests of this binary take
//! turns ([`SERIAL`]) so that the differences they read are their own.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jetflow::prelude::*;
use jetflow::telemetry::metrics::METRICS;
use jetflow_tests::ops::{Scrape, get, scrape, until};
use jetflow_tests::{WAIT, server};
use tokio::sync::{Mutex, Notify};

/// One test of this binary at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A parcel whose `fate` decides what the handler does with it.
#[event(version = "v1", id = key)]
pub struct Parcel {
    key: String,
    /// `ok`, `flaky` (fails its first delivery), `panicky` (panics on its
    /// first delivery) or `reject` (a permanent error).
    fate: String,
}

/// The group is the app's name (one per test), so each test's handler
/// series are its own.
#[handler(max_deliver = 3, backoff = "20ms")]
async fn weigh(p: Parcel, ctx: Context) -> Result<(), HandlerError> {
    match (p.fate.as_str(), ctx.delivered()) {
        ("flaky", 1) => Err(HandlerError::retry("the scale is busy")),
        ("panicky", 1) => panic!("the scale fell over"),
        ("reject", _) => Err(HandlerError::reject("too heavy")),
        _ => Ok(()),
    }
}

/// How many parcels of each fate, and undecodable payloads.
#[derive(Debug, Clone, Copy)]
struct Workload {
    ok: u64,
    flaky: u64,
    panicky: u64,
    reject: u64,
    garbage: u64,
}

impl Workload {
    fn typed(&self) -> u64 {
        self.ok + self.flaky + self.panicky + self.reject
    }
    fn settled(&self) -> u64 {
        self.typed() + self.garbage
    }
}

/// Publishes `w` through `app`'s bus and waits until every message is
/// settled, the lag gauges read 0 and nothing is in flight; returns the
/// scrape before publishing and the one after.
async fn run(
    app: &jetflow::AppHandle,
    addr: SocketAddr,
    group: &str,
    w: Workload,
) -> (Scrape, Scrape) {
    let before = scrape(addr).await;
    let fates = [
        ("ok", w.ok),
        ("flaky", w.flaky),
        ("panicky", w.panicky),
        ("reject", w.reject),
    ];
    for (fate, n) in fates {
        for i in 0..n {
            let parcel = Parcel {
                key: format!("{group}-{fate}-{i}"),
                fate: fate.into(),
            };
            app.bus().publish(&parcel).await.expect("publish");
        }
    }
    for i in 0..w.garbage {
        let mut headers = jetflow::Headers::new();
        headers.insert("ce-id", format!("{group}-garbage-{i}"));
        app.bus()
            .publish_raw(Parcel::SUBJECT, headers, "{not json".into())
            .await
            .expect("publish garbage");
    }
    app.wait_stats("weigh", WAIT, |s| {
        s.settled() == w.settled() && s.retried == w.flaky + w.panicky
    })
    .await
    .expect("every message settled");
    let labels = handler(group);
    let drained = tokio::time::timeout(WAIT, async {
        loop {
            let s = scrape(addr).await;
            let zero = |name| s.value(name, &labels) == Some(0.0);
            if zero("jetflow_consumer_pending_messages")
                && zero("jetflow_consumer_ack_pending_messages")
                && zero("jetflow_handler_in_flight_messages")
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let after = drained.unwrap_or_else(|_| {
        panic!("the lag and in-flight gauges did not drop to 0 within {WAIT:?}")
    });
    (before, after)
}

fn handler(group: &str) -> [(&'static str, &str); 3] {
    [
        ("handler", "weigh"),
        ("group", group),
        ("subject", Parcel::SUBJECT),
    ]
}

/// Every series the workload touches equals what happened.
fn check(before: &Scrape, after: &Scrape, group: &str, w: Workload) {
    let labels = handler(group);
    let get = |name: &str| {
        after
            .value(name, &labels)
            .unwrap_or_else(|| panic!("no {name} for {labels:?} in\n{}", after.text))
    };
    let retried_calls = w.flaky + w.panicky;
    let counts = [
        (
            "jetflow_handler_received_total",
            w.settled() + retried_calls,
        ),
        ("jetflow_handler_acked_total", w.ok + w.flaky + w.panicky),
        ("jetflow_handler_retried_total", retried_calls),
        ("jetflow_handler_dead_lettered_total", w.reject + w.garbage),
        ("jetflow_handler_terminated_total", 0),
        ("jetflow_handler_panicked_total", w.panicky),
        ("jetflow_handler_decode_failed_total", w.garbage),
        ("jetflow_handler_dead_letter_failed_total", 0),
        ("jetflow_handler_in_flight_messages", 0),
        ("jetflow_consumer_pending_messages", 0),
        ("jetflow_consumer_ack_pending_messages", 0),
    ];
    for (name, expected) in counts {
        assert_eq!(get(name), expected as f64, "{name}");
    }
    let observed = |name: &str, labels: &[(&str, &str)]| {
        after
            .observations(name, labels)
            .unwrap_or_else(|| panic!("no histogram {name} for {labels:?}"))
    };
    // every handler call, whatever its outcome (undecodable payloads make none)
    assert_eq!(
        observed("jetflow_handler_duration_seconds", &labels),
        (w.typed() + retried_calls) as f64
    );
    assert_eq!(
        observed("jetflow_handler_publish_to_ack_seconds", &labels),
        (w.ok + w.flaky + w.panicky) as f64
    );
    let state = |s: &str| {
        let mut l = labels.to_vec();
        l.push(("state", s));
        after.value_or_zero("jetflow_consume_loop_state", &l)
    };
    assert_eq!((state("starting"), state("receiving")), (0.0, 1.0));

    // publishes, by subject label: the typed events, the raw garbage, the DLQ copies
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value_or_zero(name, labels) - before.value_or_zero(name, labels)
    };
    let stored = |subject| {
        delta(
            "jetflow_publish_total",
            &[("subject", subject), ("outcome", "stored")],
        )
    };
    assert_eq!(stored(Parcel::SUBJECT), w.typed() as f64);
    assert_eq!(stored("raw"), w.garbage as f64);
    assert_eq!(stored("dlq"), (w.reject + w.garbage) as f64);
    let acks = |s: &Scrape| {
        s.observations(
            "jetflow_publish_duration_seconds",
            &[("subject", Parcel::SUBJECT)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(acks(after) - acks(before), w.typed() as f64);
}

/// An app of group `group` on `url` running `weigh`, with the ops
/// listener on a free port and the lag read every 100 ms.
async fn metered(group: &str, url: impl Into<String>) -> (jetflow::AppHandle, SocketAddr) {
    let app = App::new(group)
        .url(url)
        .ops("127.0.0.1:0")
        .lag_every(Duration::from_millis(100))
        .handler(weigh)
        .start()
        .await
        .expect("app starts");
    let addr = app.ops_addr().expect("listening");
    (app, addr)
}

const WORKLOAD: Workload = Workload {
    ok: 20,
    flaky: 5,
    panicky: 2,
    reject: 3,
    garbage: 4,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_workload_on_jetstream() {
    let _turn = SERIAL.lock().await;
    let server = server().await;
    let group = "scale-nats";
    let (app, addr) = metered(group, server.url()).await;
    let (before, after) = run(&app, addr, group, WORKLOAD).await;
    check(&before, &after, group, WORKLOAD);
    assert!(after.value_or_zero("jetflow_transport_connections", &[("transport", "nats")]) >= 1.0);
    app.stop().await.expect("stops");
}

/// Metrics are transport-neutral: the same workload on the embedded
/// broker gives the same counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_same_on_the_embedded_broker() {
    let _turn = SERIAL.lock().await;
    jetflow_tests::init_tracing();
    let group = "scale-memory";
    let (app, addr) = metered(group, "memory://ops-metrics").await;
    let (before, after) = run(&app, addr, group, WORKLOAD).await;
    check(&before, &after, group, WORKLOAD);
    app.stop().await.expect("stops");
}

/// An app whose metrics are switched off leaves no series of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_metrics_off_records_none() {
    let _turn = SERIAL.lock().await;
    jetflow_tests::init_tracing();
    let group = "scale-quiet";
    let app = App::new(group)
        .url("memory://ops-quiet")
        .ops("127.0.0.1:0")
        .metrics(false)
        .handler(weigh)
        .start()
        .await
        .expect("app starts");
    let addr = app.ops_addr().expect("listening");
    let w = Workload {
        ok: 3,
        flaky: 1,
        panicky: 0,
        reject: 1,
        garbage: 0,
    };
    for (i, fate) in ["ok", "ok", "ok", "flaky", "reject"]
        .into_iter()
        .enumerate()
    {
        let p = Parcel {
            key: format!("quiet-{i}"),
            fate: fate.into(),
        };
        app.bus().publish(&p).await.expect("publish");
    }
    let stats = app
        .wait_stats("weigh", WAIT, |s| s.settled() == w.settled())
        .await
        .expect("settled");
    assert_eq!(
        stats.acked,
        w.ok + w.flaky,
        "the in-process counts still count"
    );
    let s = scrape(addr).await;
    assert_eq!(
        s.value("jetflow_handler_received_total", &handler(group)),
        None,
        "no series for an app whose metrics are off:\n{}",
        s.text
    );
    app.stop().await.expect("stops");
}

fn not_ready_handlers(body: &serde_json::Value) -> BTreeSet<String> {
    body["handlers"]
        .as_array()
        .expect("a handlers array")
        .iter()
        .filter(|h| h["ready"] == false)
        .map(|h| {
            assert!(
                h["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "a handler that is not ready says why: {h}"
            );
            h["handler"].as_str().expect("a handler name").to_owned()
        })
        .collect()
}

#[handler(group = "beacon")]
async fn beacon(_p: Parcel) {}

#[handler(group = "relay")]
async fn relay(_p: Parcel) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_server_and_healthz_stays_up() {
    let _turn = SERIAL.lock().await;
    let mut server = server().await;
    let app = App::new("ready")
        .url(server.url())
        .ops("127.0.0.1:0")
        .pull_timing(Duration::from_secs(2), Duration::from_millis(500))
        .handler(beacon)
        .handler(relay)
        .start()
        .await
        .expect("app starts");
    let addr = app.ops_addr().expect("listening");
    let both: BTreeSet<String> = ["beacon".to_owned(), "relay".to_owned()].into();
    let ready = |what: &'static str| until(addr, "/readyz", WAIT, what, |a| a.status == 200);
    let not_ready = |what: &'static str| until(addr, "/readyz", WAIT, what, |a| a.status == 503);
    let healthy = || async {
        let h = get(addr, "/healthz").await.expect("/healthz answers");
        assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    };

    let up = ready("ready after start-up").await.json();
    assert_eq!(up["ready"], true);
    assert_eq!(up["connected"], true);
    assert!(not_ready_handlers(&up).is_empty(), "{up}");
    healthy().await;

    // frozen: no heartbeats; both loops recover, so not ready, each named
    server.pause().await.expect("SIGSTOP");
    let body = until(
        addr,
        "/readyz",
        WAIT,
        "every handler named while paused",
        |a| a.status == 503 && not_ready_handlers(&a.json()) == both,
    )
    .await
    .json();
    assert_eq!(body["ready"], false);
    for h in body["handlers"].as_array().expect("handlers") {
        assert_eq!(h["state"], "recovering", "{h}");
    }
    assert!(
        body["reasons"].as_array().is_some_and(|r| r.len() >= 2),
        "{body}"
    );
    healthy().await;
    server.resume().await.expect("SIGCONT");
    ready("ready again after the pause").await;

    // killed: the connection is down at once
    let connections =
        |s: &Scrape| s.value_or_zero("jetflow_transport_connections", &[("transport", "nats")]);
    let reconnects = |s: &Scrape| {
        s.value_or_zero(
            "jetflow_transport_reconnects_total",
            &[("transport", "nats")],
        )
    };
    let before = scrape(addr).await;
    server.kill().await.expect("kill");
    let down = not_ready("not ready once killed").await.json();
    assert_eq!(down["ready"], false);
    assert!(
        down["connected"] == false || !not_ready_handlers(&down).is_empty(),
        "not ready says why: {down}"
    );
    healthy().await;
    let lost = until(
        addr,
        "/metrics",
        WAIT,
        "the connection counted as down",
        |a| {
            a.status == 200
                && connections(&Scrape::parse(a.body.clone())) == connections(&before) - 1.0
        },
    )
    .await;
    assert_eq!(
        Scrape::parse(lost.body).value_or_zero(
            "jetflow_transport_disconnects_total",
            &[("transport", "nats")]
        ) - before.value_or_zero(
            "jetflow_transport_disconnects_total",
            &[("transport", "nats")]
        ),
        1.0
    );
    server.restart().await.expect("restart");
    let back = ready("ready again after the restart").await.json();
    assert!(not_ready_handlers(&back).is_empty(), "{back}");
    // the client reports connection events asynchronously: wait for them
    let counted = until(addr, "/metrics", WAIT, "the reconnect counted", |a| {
        let after = Scrape::parse(a.body.clone());
        a.status == 200 && reconnects(&after) > reconnects(&before)
    })
    .await;
    let after = Scrape::parse(counted.body);
    assert_eq!(reconnects(&after) - reconnects(&before), 1.0);
    assert_eq!(connections(&after), connections(&before));
    healthy().await;

    app.stop().await.expect("stops");
    assert!(
        get(addr, "/healthz").await.is_err(),
        "the listener stops with the app"
    );
}

/// `docs/grafana/jetflow.json` queries only metric names that a real
/// scrape holds, and every metric of the table is in the scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_emitted_metrics() {
    let _turn = SERIAL.lock().await;
    let server = server().await;
    let group = "scale-dashboard";
    let (app, addr) = metered(group, server.url()).await;
    let w = Workload {
        ok: 2,
        flaky: 1,
        panicky: 0,
        reject: 1,
        garbage: 1,
    };
    let (_, scrape) = run(&app, addr, group, w).await;
    app.stop().await.expect("stops");
    let emitted = scrape.names();

    for m in METRICS {
        assert!(
            emitted.contains(m.name),
            "{} is in the metrics table but not in the scrape:\n{}",
            m.name,
            scrape.text
        );
    }

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/jetflow.json");
    let text = std::fs::read_to_string(path).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "the dashboard has {} queries",
        exprs.len()
    );
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| emitted.contains(*base));
            assert!(
                emitted.contains(&name) || base.is_some(),
                "the dashboard queries `{name}` (in `{expr}`), which the exporter does not emit"
            );
            used.insert(base.map(str::to_owned).unwrap_or(name));
        }
    }
    for m in METRICS {
        assert!(
            used.contains(m.name),
            "the dashboard does not show {}",
            m.name
        );
    }
}

/// Every `expr` and `query` string anywhere in `v` (the panels' PromQL
/// queries and the template variables' queries).
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `jetflow_...` identifiers of a PromQL query.
fn metric_names(expr: &str) -> Vec<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    expr.split(|c: char| !is_ident(c))
        .filter(|t| t.starts_with("jetflow_"))
        .map(str::to_owned)
        .collect()
}

#[handler(group = "linger")]
async fn linger(_p: Parcel, State(gate): State<Arc<Notify>>) {
    gate.notified().await;
}

/// A service's own routes are served beside jetflow's; `/readyz` says
/// `stopping` while a stop drains; the listener goes with the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_routes_and_readiness_while_stopping() {
    jetflow_tests::init_tracing();
    let gate = Arc::new(Notify::new());
    let version = axum::Router::new().route("/version", axum::routing::get(|| async { "1.4.2" }));
    let app = App::new("lingering")
        .url("memory://ops-stopping")
        .ops("127.0.0.1:0")
        .ops_routes(version)
        .state(gate.clone())
        .handler(linger)
        .shutdown_grace(Duration::from_secs(30))
        .start()
        .await
        .expect("app starts");
    let addr = app.ops_addr().expect("listening");
    let v = get(addr, "/version").await.expect("GET /version");
    assert_eq!((v.status, v.body.as_str()), (200, "1.4.2"));
    until(addr, "/readyz", WAIT, "ready", |a| a.status == 200).await;

    let p = Parcel {
        key: "slow".into(),
        fate: "ok".into(),
    };
    app.bus().publish(&p).await.expect("publish");
    app.wait_stats("linger", WAIT, |s| s.received == 1)
        .await
        .expect("the handler runs");
    let stopping = tokio::spawn(app.stop());
    let body = until(addr, "/readyz", WAIT, "not ready while stopping", |a| {
        a.status == 503 && a.json()["phase"] == "stopping"
    })
    .await
    .json();
    assert!(
        body["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r == "the app is stopping"),
        "{body}"
    );
    let h = get(addr, "/healthz").await.expect("healthz while stopping");
    assert_eq!(h.status, 200);
    gate.notify_one();
    stopping.await.expect("stop task").expect("stops");
    assert!(
        get(addr, "/healthz").await.is_err(),
        "the listener stops with the app"
    );
}

/// A route of the service's own on one of jetflow's paths is refused when
/// the app starts, with the path named, not a panic.
#[tokio::test]
async fn a_service_route_on_a_jetflow_path_is_refused() {
    let clash = axum::Router::new().route("/healthz", axum::routing::get(|| async { "mine" }));
    let err = App::new("clash")
        .url("memory://ops-clash")
        .ops("127.0.0.1:0")
        .ops_routes(clash)
        .handler(beacon)
        .start()
        .await
        .expect_err("overlapping routes");
    match &err {
        jetflow::Error::Ops(e) => assert_eq!(e.kind(), jetflow::ops::OpsErrorKind::Route),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("/healthz"), "{err}");
}

/// An address that cannot be listened on stops the app with a typed error
/// that names it.
#[tokio::test]
async fn an_ops_address_in_use_is_a_typed_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = App::new("taken")
        .url("memory://ops-taken")
        .ops(addr.clone())
        .handler(beacon)
        .start()
        .await
        .expect_err("address in use");
    match &err {
        jetflow::Error::Ops(e) => {
            assert_eq!(e.kind(), jetflow::ops::OpsErrorKind::Bind);
            assert_eq!(e.addr(), Some(addr.as_str()));
        }
        other => panic!("{other}"),
    }
}
