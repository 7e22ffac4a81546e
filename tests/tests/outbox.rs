//! The transactional outbox (`jetflow::outbox`) against a private
//! PostgreSQL and nats-server: a committed transaction's events are
//! published once, a rolled-back one's never; a relay that died between
//! publishing and marking is absorbed by the stream's dedup window; two
//! relays publish every row once, each key's events in order.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use jetflow::AppHandle;
use jetflow::outbox::Outbox;
use jetflow::prelude::*;
use jetflow::testing::{NatsServer, PostgresServer};
use jetflow_tests::{WAIT, server};
use sqlx::{PgPool, Row};

/// The first step of an order.
#[event(name = "order.created", version = "v1", id = order_id)]
pub struct OrderCreated {
    order_id: String,
}

/// The second step.
#[event(name = "order.paid", version = "v1", id = order_id)]
pub struct OrderPaid {
    order_id: String,
}

/// The third step.
#[event(name = "order.shipped", version = "v1", id = order_id)]
pub struct OrderShipped {
    order_id: String,
}

async fn postgres() -> PostgresServer {
    jetflow_tests::postgres_server().await
}

/// The `ORDER` stream, with `window` as its dedup window.
async fn order_stream(nats: &NatsServer, window: Duration) -> jetstream::Context {
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("client"));
    js.create_stream(jetstream::stream::Config {
        name: "ORDER".into(),
        subjects: vec!["order.>".into()],
        duplicate_window: window,
        ..Default::default()
    })
    .await
    .expect("stream");
    js
}

/// Every message of `ORDER`: (sequence, subject, ce-id, Nats-Msg-Id).
async fn messages(js: &jetstream::Context) -> Vec<(u64, String, String, String)> {
    let mut stream = js.get_stream("ORDER").await.expect("stream");
    let count = stream.info().await.expect("info").state.messages;
    let mut out = Vec::new();
    if count == 0 {
        return out;
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(count as usize)
        .messages()
        .await
        .expect("fetch");
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        let info = m.info().expect("info");
        let header = |name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        out.push((
            info.stream_sequence,
            m.subject.to_string(),
            header("ce-id"),
            header("Nats-Msg-Id"),
        ));
    }
    out
}

async fn wait_messages(js: &jetstream::Context, n: u64) {
    jetflow_tests::eventually(WAIT, &format!("{n} messages in ORDER"), || async {
        let mut stream = js.get_stream("ORDER").await.ok()?;
        (stream.info().await.ok()?.state.messages >= n).then_some(())
    })
    .await;
}

async fn relay_app(nats: &NatsServer, outbox: Outbox) -> AppHandle {
    App::new("orders")
        .url(nats.url())
        .outbox(outbox)
        .start()
        .await
        .expect("app starts")
}

async fn pending(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jetflow_outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .expect("pending rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_are_published_once_rolled_back_ones_never() {
    let nats = server().await;
    let pg = postgres().await;
    let js = order_stream(&nats, Duration::from_secs(120)).await;
    let pool = PgPool::connect(&pg.url()).await.expect("connect");
    let outbox = Outbox::with_pool(pool.clone(), "orders").poll_every(Duration::from_millis(200));
    let app = relay_app(&nats, outbox.clone()).await;

    let mut tx = pool.begin().await.expect("begin");
    let id = outbox
        .publish(
            &mut tx,
            &OrderCreated {
                order_id: "o1".into(),
            },
        )
        .await
        .expect("stored");
    tx.commit().await.expect("commit");
    let mut tx = pool.begin().await.expect("begin");
    outbox
        .publish(
            &mut tx,
            &OrderCreated {
                order_id: "o2".into(),
            },
        )
        .await
        .expect("stored");
    tx.rollback().await.expect("rollback");

    wait_messages(&js, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // several relay rounds
    let got = messages(&js).await;
    app.stop().await.expect("stops");
    assert_eq!(got.len(), 1, "{got:?}");
    let (_, subject, ce_id, msg_id) = &got[0];
    assert_eq!(subject, "order.created.v1");
    assert_eq!(ce_id, &id);
    assert_eq!(msg_id, &id, "the event id is the message id");
    assert_eq!(pending(&pool).await, 0);
}

/// The relay published a row and died before marking it: the next relay
/// publishes it again and the stream's dedup window keeps one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_dying_between_publish_and_mark_leaves_one_copy() {
    let nats = server().await;
    let pg = postgres().await;
    let js = order_stream(&nats, Duration::from_secs(120)).await;
    let pool = PgPool::connect(&pg.url()).await.expect("connect");
    let outbox = Outbox::with_pool(pool.clone(), "orders");
    let mut tx = pool.begin().await.expect("begin");
    outbox
        .publish(
            &mut tx,
            &OrderPaid {
                order_id: "o7".into(),
            },
        )
        .await
        .expect("stored");
    tx.commit().await.expect("commit");

    // what the dead relay did: published the row, did not mark it
    let row = sqlx::query("SELECT subject, headers, payload FROM jetflow_outbox")
        .fetch_one(&pool)
        .await
        .expect("the row");
    let pairs: Vec<(String, String)> =
        serde_json::from_str(row.get::<&str, _>("headers")).expect("headers");
    let mut headers = jetflow::Headers::new();
    for (k, v) in pairs {
        headers.insert(k, v);
    }
    let publisher = App::new("orders")
        .url(nats.url())
        .start()
        .await
        .expect("app");
    let payload: Vec<u8> = row.get("payload");
    let first = publisher
        .bus()
        .publish_raw(row.get::<&str, _>("subject"), headers, payload.into())
        .await
        .expect("published");
    assert!(!first.duplicate);
    publisher.stop().await.expect("stops");
    assert_eq!(pending(&pool).await, 1);

    let app = relay_app(&nats, outbox).await;
    jetflow_tests::eventually(WAIT, "the row marked", || async {
        (pending(&pool).await == 0).then_some(())
    })
    .await;
    let got = messages(&js).await;
    app.stop().await.expect("stops");
    assert_eq!(got.len(), 1, "one copy in the stream: {got:?}");
}

/// Two relays, 30 orders of three events each stored while they run: every
/// row published and marked once (its `publish_count`: two relays taking
/// one row would both count; the stream's dedup window would hide the
/// copy), and each order's events in the stream in the order they were
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_each_row_once_in_key_order() {
    let nats = server().await;
    let pg = postgres().await;
    let js = order_stream(&nats, Duration::from_secs(120)).await;
    let pool = PgPool::connect(&pg.url()).await.expect("connect");
    let outbox = Outbox::with_pool(pool.clone(), "orders").poll_every(Duration::from_millis(100));
    let a = relay_app(&nats, outbox.clone()).await;
    let b = relay_app(&nats, outbox.clone()).await;

    for step in 0..3 {
        for i in 0..30 {
            let order_id = format!("o{i}");
            let mut tx = pool.begin().await.expect("begin");
            match step {
                0 => outbox.publish(&mut tx, &OrderCreated { order_id }).await,
                1 => outbox.publish(&mut tx, &OrderPaid { order_id }).await,
                _ => outbox.publish(&mut tx, &OrderShipped { order_id }).await,
            }
            .expect("stored");
            tx.commit().await.expect("commit");
        }
    }
    wait_messages(&js, 90).await;
    jetflow_tests::eventually(WAIT, "every row marked", || async {
        (pending(&pool).await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = messages(&js).await;
    a.stop().await.expect("stops");
    b.stop().await.expect("stops");
    assert_eq!(got.len(), 90, "each event once in the stream");
    let counts: Vec<(i32, i64)> =
        sqlx::query_as("SELECT publish_count, count(*) FROM jetflow_outbox GROUP BY publish_count")
            .fetch_all(&pool)
            .await
            .expect("publish counts");
    assert_eq!(counts, [(1, 90)], "every row published by one relay, once");
    let mut by_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, subject, ce_id, _) in &got {
        let order = ce_id.rsplit(':').next().expect("a key").to_owned();
        by_order.entry(order).or_default().push(subject.clone());
    }
    assert_eq!(by_order.len(), 30);
    for (order, subjects) in by_order {
        assert_eq!(
            subjects,
            ["order.created.v1", "order.paid.v1", "order.shipped.v1"],
            "order {order}"
        );
    }
}
