//! The ops listener serves the app's AsyncAPI document: `/asyncapi.json`
//! and `/asyncapi.yaml` are exactly [`App::asyncapi`]'s, and `/asyncapi`,
//! loaded in headless Chromium, shows every channel and operation of a
//! shop-like app, rendered by the vendored AsyncAPI web component.

use jetflow::prelude::*;
use jetflow_tests::browser;
use jetflow_tests::ops::get;

/// An order was placed.
#[event(version = "v1", id = order_id)]
pub struct OrderPlaced {
    order_id: String,
    total_cents: u64,
}

/// Stock was put aside for an order.
#[event(version = "v1", id = order_id)]
pub struct StockReserved {
    order_id: String,
}

/// A payment went through (published, consumed elsewhere).
#[event(version = "v1", id = order_id)]
pub struct PaymentCaptured {
    order_id: String,
}

#[handler(group = "inventory")]
async fn reserve_stock(order: OrderPlaced, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish(&StockReserved {
        order_id: order.order_id,
    })
    .await?;
    Ok(())
}

#[handler(group = "notifications")]
async fn send_confirmation(order: OrderPlaced) {
    let _ = order;
}

#[handler(group = "payments")]
async fn capture_payment(stock: StockReserved) {
    let _ = stock;
}

fn shop(url: &str) -> App {
    App::new("shop")
        .url(url)
        .handler(reserve_stock)
        .handler(send_confirmation)
        .handler(capture_payment)
        .publishes::<OrderPlaced>()
        .publishes::<StockReserved>()
        .publishes::<PaymentCaptured>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_listener_serves_the_document_and_a_page_that_shows_it() -> anyhow::Result<()> {
    let url = "memory://asyncapi-page";
    let doc = shop(url).asyncapi();
    let app = shop(url).ops("127.0.0.1:0").start().await?;
    let addr = app.ops_addr().expect("the ops listener");

    let json = get(addr, "/asyncapi.json").await?;
    assert_eq!(json.status, 200, "{}", json.body);
    assert_eq!(json.json(), doc.to_json());
    let yaml = get(addr, "/asyncapi.yaml").await?;
    assert_eq!(yaml.status, 200, "{}", yaml.body);
    assert_eq!(yaml.body, doc.to_yaml());
    for asset in ["/asyncapi-ui/index.js", "/asyncapi-ui/default.min.css"] {
        let answer = get(addr, asset).await?;
        assert_eq!(answer.status, 200, "{asset}");
        assert!(
            answer.body.len() > 10_000,
            "{asset}: {} bytes",
            answer.body.len()
        );
    }

    let document = doc.to_json();
    let channels: Vec<String> = document["channels"]
        .as_object()
        .expect("channels")
        .values()
        .map(|c| c["address"].as_str().expect("an address").to_owned())
        .collect();
    let operations: Vec<&String> = document["operations"]
        .as_object()
        .expect("operations")
        .keys()
        .collect();
    assert_eq!(channels.len(), 3, "{channels:?}");
    for handler in ["reserve_stock", "send_confirmation", "capture_payment"] {
        assert!(
            operations.iter().any(|o| *o == handler),
            "{handler} in {operations:?}"
        );
    }

    if let Some(chromium) = browser::chromium() {
        let page = format!("http://{addr}/asyncapi");
        let dom = browser::dump_dom(&chromium, &page).await?;
        // what the component rendered, not the document the page embeds
        let shown = browser::texts_between(&dom, "asyncapi", "asyncapi-document");
        let missing: Vec<&str> = channels
            .iter()
            .map(String::as_str)
            .chain(operations.iter().map(|o| o.as_str()))
            .filter(|name| !shown.iter().any(|text| text == name))
            .collect();
        assert!(
            missing.is_empty(),
            "{page} does not show {missing:?}; it shows {shown:?}"
        );
    }
    app.stop().await?;
    Ok(())
}
