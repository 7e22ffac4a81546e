//! Everything works without the macros: a hand-written `Event` and `Handler`.

use std::time::Duration;

use jetflow::handler::{BoxFuture, HandlerOptions};
use jetflow::{App, Context, Event, Handler, HandlerError, State};
use jetflow_tests::{Ledger, WAIT, server};
use serde_json::json;

#[derive(Debug, jetflow::__private::serde::Serialize, jetflow::__private::serde::Deserialize)]
#[serde(crate = "jetflow::__private::serde")]
struct Payment {
    id: String,
    cents: u64,
}

impl Event for Payment {
    const NAME: &'static str = "payment.settled";
    const VERSION: &'static str = "v1";
    const SUBJECT: &'static str = "payment.settled.v1";
    const STREAM: &'static str = "PAYMENT";
    fn event_key(&self) -> Option<String> {
        Some(self.id.clone())
    }
}

struct Settle;

impl Handler for Settle {
    type Event = Payment;
    const OPTIONS: HandlerOptions = HandlerOptions::new("settle").group("ledger");

    fn check(
        &self,
        ext: &jetflow::handler::Extensions,
    ) -> Result<(), jetflow::handler::MissingState> {
        <State<Ledger> as jetflow::handler::FromContext>::check(Self::OPTIONS.name, ext)
    }

    fn call(&self, event: Payment, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(async move {
            let State(ledger) =
                <State<Ledger> as jetflow::handler::FromContext>::from_context(&ctx)?;
            ledger.record(&format!("{}:{}", event.id, event.cents), &ctx);
            Ok(())
        })
    }
}

#[tokio::test]
async fn hand_written_event_and_handler_round_trip_with_headers() {
    let server = server().await;
    let ledger = Ledger::default();
    let app = App::new("payments")
        .url(server.url())
        .state(ledger.clone())
        .handler(Settle)
        .start()
        .await
        .unwrap();
    let ack = app
        .bus()
        .publish(&Payment {
            id: "p1".into(),
            cents: 250,
        })
        .await
        .unwrap();
    assert_eq!(
        (ack.stream.as_str(), ack.sequence, ack.duplicate),
        ("PAYMENT", 1, false)
    );
    // Same business key inside the dedup window: stored once.
    let again = app
        .bus()
        .publish(&Payment {
            id: "p1".into(),
            cents: 250,
        })
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, 1);

    ledger.wait_until(WAIT, "handled", |e| !e.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ledger.entries().len(), 1);
    assert_eq!(ledger.entries()[0].key, "p1:250");

    // The wire contract: plain JSON and CloudEvents headers.
    let js = async_nats::jetstream::new(jetflow_tests::nats_client(app.bus()));
    let raw = js
        .get_stream("PAYMENT")
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&raw.payload).unwrap(),
        json!({"id": "p1", "cents": 250})
    );
    let h = |k: &str| raw.headers.get(k).map(|v| v.as_str().to_owned());
    assert_eq!(h("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(h("ce-id").as_deref(), Some("payment.settled.v1:p1"));
    assert_eq!(h("Nats-Msg-Id").as_deref(), Some("payment.settled.v1:p1"));
    assert_eq!(h("ce-type").as_deref(), Some("payment.settled.v1"));
    assert_eq!(h("ce-source").as_deref(), Some("payments"));
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    assert!(h("ce-time").is_some_and(|t| t.contains('T')));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn missing_state_is_reported_at_start_with_the_fix() {
    let server = server().await;
    let err = App::new("payments")
        .url(server.url())
        .handler(Settle)
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("State<jetflow_tests::Ledger>") && text.contains("App::state"),
        "{text}"
    );
}

#[tokio::test]
async fn two_handlers_of_one_group_on_one_event_are_rejected() {
    let err = App::new("payments")
        .state(Ledger::default())
        .handler(Settle)
        .handler(Settle)
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("two handlers of group `ledger`"),
        "{err}"
    );
}
