//! `App::asyncapi` validates against the official AsyncAPI 3.0.0 JSON
//! Schema (vendored in tests/data, see its README).

use jetflow::prelude::*;

/// Version 1.
#[event(name = "order.created", version = "v1", id = order_id)]
pub struct OrderCreatedV1 {
    order_id: String,
    total_cents: u64,
}

/// Version 2, upcast from version 1.
#[event(name = "order.created", version = "v2", id = order_id, upcast_from = OrderCreatedV1)]
pub struct OrderCreatedV2 {
    order_id: String,
    total_cents: u64,
    currency: String,
    lines: Vec<Line>,
}

/// A nested type: its schema goes to `components.schemas`.
#[derive(
    jetflow::__private::serde::Serialize,
    jetflow::__private::serde::Deserialize,
    jetflow::schema::schemars::JsonSchema,
)]
#[serde(crate = "jetflow::__private::serde")]
#[schemars(crate = "jetflow::schema::schemars")]
pub struct Line {
    sku: String,
    quantity: u32,
}

impl From<OrderCreatedV1> for OrderCreatedV2 {
    fn from(v1: OrderCreatedV1) -> Self {
        OrderCreatedV2 {
            order_id: v1.order_id,
            total_cents: v1.total_cents,
            currency: "EUR".into(),
            lines: Vec::new(),
        }
    }
}

/// What the app publishes.
#[event(version = "v1")]
pub struct StockReserved {
    order_id: String,
}

#[handler(group = "inventory")]
async fn reserve(order: OrderCreatedV2) {
    let _ = order;
}

#[handler(group = "audit", subject = "order.created.v1")]
async fn audit(order: OrderCreatedV1) {
    let _ = order;
}

fn app() -> App {
    App::new("shop")
        .url("nats://127.0.0.1:4222")
        .handler(reserve)
        .handler(audit)
        .publishes::<OrderCreatedV1>()
        .publishes::<StockReserved>()
}

fn validator() -> jsonschema::Validator {
    let text = include_str!("../data/asyncapi-3.0.0.schema.json");
    let schema: serde_json::Value = serde_json::from_str(text).expect("vendored schema is JSON");
    jsonschema::validator_for(&schema).expect("the AsyncAPI schema compiles offline")
}

fn errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_document_validates_against_the_official_schema() {
    let doc = app().asyncapi().to_json();
    let v = validator();
    let errs = errors(&v, &doc);
    assert!(
        errs.is_empty(),
        "{errs:#?}\n{}",
        app().asyncapi().to_json_string()
    );

    // The validator does reject a broken document.
    let mut broken = doc.clone();
    broken["operations"]["reserve"]["action"] = "consume".into();
    broken.as_object_mut().unwrap().remove("info");
    assert!(errors(&v, &broken).len() >= 2, "{:?}", errors(&v, &broken));
}

#[test]
fn channels_operations_and_bindings_describe_the_app() {
    let doc = app().asyncapi().to_json();
    let channel = &doc["channels"]["order_created"];
    assert_eq!(channel["address"], "order.created.{version}");
    assert_eq!(
        channel["parameters"]["version"]["enum"],
        serde_json::json!(["v1", "v2"])
    );
    let op = &doc["operations"]["reserve"];
    assert_eq!(op["action"], "receive");
    assert_eq!(op["bindings"]["nats"]["queue"], "inventory--order_created");
    assert_eq!(op["x-jetflow-filter-subject"], "order.created.*");
    assert_eq!(
        op["messages"].as_array().map(Vec::len),
        Some(2),
        "v1 and v2"
    );
    assert_eq!(
        doc["operations"]["audit"]["messages"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        doc["operations"]["publish_stock_reserved_v1"]["action"],
        "send"
    );
    let v2 = &doc["components"]["messages"]["order_created_v2"];
    assert_eq!(
        v2["headers"]["properties"]["ce-type"]["const"],
        "order.created.v2"
    );
    assert_eq!(v2["payload"]["$ref"], "#/components/schemas/OrderCreatedV2");
    let line = &doc["components"]["schemas"]["OrderCreatedV2"]["properties"]["lines"]["items"];
    assert_eq!(line["$ref"], "#/components/schemas/Line");
    assert!(doc["components"]["schemas"]["Line"].is_object());
    assert_eq!(doc["servers"]["nats"]["host"], "127.0.0.1:4222");

    let yaml = app().asyncapi().to_yaml();
    assert!(yaml.starts_with("asyncapi: \"3.0.0\"\n"), "{yaml}");
    assert!(yaml.contains("queue: inventory--order_created"), "{yaml}");
}

/// An app publishing with the lean wire profile documents the `ce-*`
/// headers as optional (its own events do not carry them), and the
/// document still validates.
#[test]
fn a_lean_app_documents_the_ce_headers_as_optional() {
    let required = |app: App| {
        app.asyncapi().to_json()["components"]["messages"]["stock_reserved_v1"]["headers"]
            ["required"]
            .clone()
    };
    assert_eq!(
        required(app()),
        serde_json::json!(["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time"])
    );
    let lean = app().wire_profile(jetflow::WireProfile::Lean);
    assert_eq!(required(lean), serde_json::json!([]));
    let doc = app()
        .wire_profile(jetflow::WireProfile::Lean)
        .asyncapi()
        .to_json();
    assert!(errors(&validator(), &doc).is_empty());
}
