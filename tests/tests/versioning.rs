//! Event versioning against a real nats-server: a handler of v2 receives
//! v1 (upcast) and v2 from two producers running side by side, a version
//! newer than its chain is dead-lettered as unsupported, and moving a
//! durable from v1 to the chain keeps its position.

use std::time::Duration;

use jetflow::prelude::*;
use jetflow::{AppHandle, Bus};
use jetflow_tests::{Ledger, WAIT, consumer_info, dead_letters, server};

/// Version 1, as an old producer still publishes it.
#[event(name = "order.created", version = "v1", id = order_id)]
pub struct OrderCreatedV1 {
    order_id: String,
    total_cents: u64,
}

/// Version 2 adds the currency; v1 orders were all in euros.
#[event(name = "order.created", version = "v2", id = order_id, upcast_from = OrderCreatedV1)]
pub struct OrderCreatedV2 {
    order_id: String,
    total_cents: u64,
    currency: String,
}

impl From<OrderCreatedV1> for OrderCreatedV2 {
    fn from(v1: OrderCreatedV1) -> Self {
        OrderCreatedV2 {
            order_id: v1.order_id,
            total_cents: v1.total_cents,
            currency: "EUR".into(),
        }
    }
}

/// Version 3, published by a producer that is ahead of the consumers.
#[event(name = "order.created", version = "v3", id = order_id)]
pub struct OrderCreatedV3 {
    order_id: String,
    amount: String,
}

/// Records `{order}:{version that arrived}:{currency}`.
#[handler(group = "billing")]
async fn bill(
    order: OrderCreatedV2,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    let key = format!(
        "{}:{}:{}:{}",
        order.order_id,
        ctx.version().unwrap_or("?"),
        order.currency,
        order.total_cents
    );
    ledger.record(&key, &ctx);
    Ok(())
}

/// The same group before the migration: v1 only.
#[handler(group = "billing")]
async fn bill_v1(
    order: OrderCreatedV1,
    ctx: Context,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    ledger.record(&format!("{}:v1-only", order.order_id), &ctx);
    Ok(())
}

async fn producer(url: &str, name: &str) -> Bus {
    let client = async_nats::connect(url).await.expect("producer connects");
    Bus::on(
        jetflow::transport::nats::NatsTransport::from_client(client),
        name,
    )
}

async fn start_app<H: Handler>(url: &str, ledger: &Ledger, handler: H) -> AppHandle {
    App::new("billing")
        .url(url)
        .state(ledger.clone())
        .handler(handler)
        .start()
        .await
        .expect("app starts")
}

fn keys(ledger: &Ledger) -> Vec<String> {
    let mut keys: Vec<String> = ledger.entries().into_iter().map(|e| e.key).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_v2_handler_gets_v1_upcast_and_v2_and_dead_letters_v3() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = start_app(&server.url(), &ledger, bill).await;
    let old = producer(&server.url(), "shop-v1").await;
    let new = producer(&server.url(), "shop-v2").await;

    old.publish(&OrderCreatedV1 {
        order_id: "a".into(),
        total_cents: 100,
    })
    .await
    .unwrap();
    new.publish(&OrderCreatedV2 {
        order_id: "b".into(),
        total_cents: 200,
        currency: "USD".into(),
    })
    .await
    .unwrap();
    let v3 = new
        .publish(&OrderCreatedV3 {
            order_id: "c".into(),
            amount: "3.00 CHF".into(),
        })
        .await
        .unwrap();
    old.publish(&OrderCreatedV1 {
        order_id: "d".into(),
        total_cents: 400,
    })
    .await
    .unwrap();

    let dead = dead_letters(app.bus(), 1).await;
    ledger
        .wait_until(WAIT, "a, b and d handled", |e| e.len() >= 3)
        .await;
    assert_eq!(
        keys(&ledger),
        ["a:v1:EUR:100", "b:v2:USD:200", "d:v1:EUR:400"]
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(
        (d.subject.as_str(), d.sequence, d.delivered),
        ("order.created.v3", v3.sequence, 1)
    );
    assert!(
        d.error.contains("unsupported version v3") && d.error.contains("knows v1, v2 only"),
        "{}",
        d.error
    );
    // One durable for every version, filtered on the name.
    let info = consumer_info(&server.url(), "ORDER", "billing--order_created").await;
    assert_eq!(info.config.filter_subject, "order.created.*");
    app.stop().await.unwrap();
}

/// Moving a group's handler from v1 to the v2 chain changes its durable's
/// filter from `order.created.v1` to `order.created.*` (`TopologyPolicy::Update`).
/// The durable keeps its position: handled messages are not delivered
/// again, and a v1 published while no consumer ran arrives upcast. On
/// nats-server 2.9 the change is refused (see `topology/filter_change.rs`).
#[tokio::test]
async fn moving_a_durable_from_v1_to_the_chain_keeps_its_position() {
    let server = server().await;
    let url = server.url();
    let ledger = Ledger::default();
    let old = producer(&url, "shop-v1").await;

    let before = start_app(&url, &ledger, bill_v1).await;
    let info = consumer_info(&url, "ORDER", "billing--order_created").await;
    assert_eq!(info.config.filter_subject, "order.created.v1");
    old.publish(&OrderCreatedV1 {
        order_id: "a".into(),
        total_cents: 1,
    })
    .await
    .unwrap();
    ledger
        .wait_until(WAIT, "a handled", |e| !e.is_empty())
        .await;
    before.stop().await.unwrap();
    jetflow_tests::wait_ack_floor(&url, "ORDER", "billing--order_created", 1).await;

    // Published while the consumers are being upgraded.
    old.publish(&OrderCreatedV1 {
        order_id: "b".into(),
        total_cents: 2,
    })
    .await
    .unwrap();

    if server.version().starts_with("2.9.") {
        // 2.9 accepts the filter change, then silently delivers nothing
        // from the durable: jetflow refuses it with the way out.
        let err = App::new("billing")
            .url(&url)
            .state(ledger.clone())
            .handler(bill)
            .start()
            .await
            .expect_err("a filter change is refused on 2.9");
        let text = err.to_string();
        assert!(
            text.contains("filter_subject") && text.contains("upgrade nats-server to 2.10"),
            "{text}"
        );
        let info = consumer_info(&url, "ORDER", "billing--order_created").await;
        assert_eq!(info.config.filter_subject, "order.created.v1");
        assert_eq!(info.num_pending, 1, "b still waits for the durable");
        return;
    }
    let after = start_app(&url, &ledger, bill).await;
    let info = consumer_info(&url, "ORDER", "billing--order_created").await;
    assert_eq!(info.config.filter_subject, "order.created.*");
    after
        .bus()
        .publish(&OrderCreatedV2 {
            order_id: "c".into(),
            total_cents: 3,
            currency: "USD".into(),
        })
        .await
        .unwrap();
    ledger
        .wait_until(WAIT, "b and c handled", |e| e.len() >= 3)
        .await;
    // Give a wrong redelivery of `a` the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(keys(&ledger), ["a:v1-only", "b:v1:EUR:2", "c:v2:USD:3"]);
    jetflow_tests::wait_ack_floor(&url, "ORDER", "billing--order_created", 3).await;
    after.stop().await.unwrap();
}
