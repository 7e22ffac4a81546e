//! Every option of `#[event]` and `#[handler]`.

use std::time::Duration;

use jetflow::handler::{DeliverPolicy, Extensions};
use jetflow::prelude::*;

/// An HTTP request failed.
#[event(version = "v3", id = request_id, stream = "HTTP_EVENTS")]
#[derive(Debug, Clone, PartialEq)]
pub struct HTTPRequestFailed {
    pub request_id: u64,
    pub status: u16,
}

/// A payment was captured.
#[event(name = "billing.payment-captured", version = "v12")]
pub struct PaymentCaptured {
    pub amount_cents: u64,
}

#[derive(Clone)]
struct Db {
    url: &'static str,
}

/// Alerts on failed requests.
#[handler(
    subject = "http.*.failed.v3",
    group = "alerts",
    max_deliver = 3,
    backoff = "500ms, 2s",
    ack_wait = "1m",
    concurrency = 64,
    prefetch = 32,
    ordered_by = status,
    dead_letter = false,
    deliver = "new",
    idempotent
)]
pub async fn alert(
    failed: HTTPRequestFailed,
    ctx: Context,
    State(db): State<Db>,
) -> Result<(), HandlerError> {
    let _ = (failed, ctx.delivered(), db.url);
    Ok(())
}

/// Records payments; returns nothing.
#[handler(subject = "billing.>", ack_wait = "1h", deliver = "last")]
async fn record(payment: PaymentCaptured) {
    let _ = payment.amount_cents;
}

/// Returns a std error type.
#[handler(deliver = "all")]
async fn parse(payment: PaymentCaptured) -> Result<(), std::num::ParseIntError> {
    let _ = payment;
    "12".parse::<u32>().map(|_| ())
}

fn main() {
    assert_eq!(HTTPRequestFailed::NAME, "http.request.failed");
    assert_eq!(HTTPRequestFailed::SUBJECT, "http.request.failed.v3");
    assert_eq!(HTTPRequestFailed::STREAM, "HTTP_EVENTS");
    let failed = HTTPRequestFailed {
        request_id: 42,
        status: 503,
    };
    assert_eq!(failed.event_key().as_deref(), Some("42"));
    assert_eq!(failed.clone(), failed);

    assert_eq!(PaymentCaptured::SUBJECT, "billing.payment-captured.v12");
    assert_eq!(PaymentCaptured::STREAM, "BILLING");

    let options = <alert as Handler>::OPTIONS;
    assert_eq!(options.name, "alert");
    assert_eq!(options.subject, Some("http.*.failed.v3"));
    assert_eq!(options.group, Some("alerts"));
    assert_eq!(options.max_deliver, Some(3));
    assert_eq!(
        options.backoff,
        Some(&[Duration::from_millis(500), Duration::from_secs(2)][..])
    );
    assert_eq!(options.ack_wait, Some(Duration::from_secs(60)));
    assert_eq!(options.concurrency, Some(64));
    assert_eq!(options.prefetch, Some(32));
    assert!(options.ordered);
    assert_eq!(options.dead_letter, Some(false));
    assert_eq!(options.deliver, Some(DeliverPolicy::New));
    assert!(options.idempotent);
    assert_eq!(options.validate(), Ok(()));

    // `State<Db>` is checked at start-up.
    let mut extensions = Extensions::default();
    let missing = alert.check(&extensions).expect_err("no Db registered");
    assert_eq!(missing.handler, "alert");
    extensions.insert(Db { url: "postgres://" });
    assert!(alert.check(&extensions).is_ok());

    let options = <record as Handler>::OPTIONS;
    assert!(!options.idempotent);
    assert_eq!(options.ack_wait, Some(Duration::from_secs(3600)));
    assert_eq!(options.deliver, Some(DeliverPolicy::Last));
    assert_eq!(
        <parse as Handler>::OPTIONS.deliver,
        Some(DeliverPolicy::All)
    );
    let _ = (record, parse);
}
