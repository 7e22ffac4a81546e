//! The ops listener from outside, as an orchestrator and Prometheus see
//! it: plain HTTP/1 GETs, and scrapes read with a Prometheus text parser.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prometheus_parse::Value;

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Its status code.
    pub status: u16,
    /// Its body.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET http://{addr}{path}`, at most 10 s.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Answer> {
    let ask = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8(body.to_vec())?,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .with_context(|| format!("GET {path} on {addr} took more than 10s"))?
}

/// A `/metrics` scrape, parsed.
#[derive(Debug)]
pub struct Scrape {
    samples: Vec<prometheus_parse::Sample>,
    /// The text, for failure messages.
    pub text: String,
}

/// Scrapes `/metrics` on `addr`; fails unless it answers 200 with the
/// Prometheus text format.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let answer = get(addr, "/metrics").await.expect("GET /metrics");
    assert_eq!(answer.status, 200, "/metrics: {}", answer.body);
    Scrape::parse(answer.body)
}

impl Scrape {
    /// Parses `text` in the Prometheus text format.
    pub fn parse(text: String) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text scrape");
        Scrape {
            samples: parsed.samples,
            text,
        }
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&prometheus_parse::Sample> {
        self.samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// The value of the counter or gauge `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match &self.find(name, labels)?.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            other => panic!("{name} is not a counter or gauge: {other:?}"),
        }
    }

    /// [`value`](Scrape::value), or 0 when there is no such series.
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// How many observations the histogram `name` with `labels` holds:
    /// its `+Inf` bucket.
    pub fn observations(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match &self.find(name, labels)?.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// Every metric name in the scrape (a histogram by its base name).
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.metric.clone()).collect()
    }
}

/// Polls `GET path` on `addr` every 100 ms until `done` accepts an answer
/// (at most `limit`); returns it.
pub async fn until(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&Answer) -> bool,
) -> Answer {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let answer = get(addr, path).await;
        if let Ok(a) = &answer
            && done(a)
        {
            return answer.expect("checked");
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not within {limit:?}; the last answer of {path}: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
