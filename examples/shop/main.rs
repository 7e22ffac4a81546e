//! The jetflow shop demo: one event, two consumer groups, a retry and a dead letter.
//!
//! ```text
//! cargo run --example shop                  # on the embedded broker (memory://shop)
//! NATS_URL=nats://127.0.0.1:4222 cargo run --example shop [-- --serve]   # on JetStream
//! JETFLOW_URL=redis://127.0.0.1:6379 cargo run --example shop --features redis   # on Redis Streams
//! cargo run --example shop -- check-schemas        # the schema gate only (also --check-schemas)
//! cargo run --example shop -- plan                 # what starting would change on the broker
//! cargo run --example shop -- asyncapi [--yaml]    # the AsyncAPI document on stdout
//! cargo run --example shop -- --asyncapi shop.yaml  # run, and also write the AsyncAPI document (.json or .yaml)
//! cargo run --example shop -- --ops 127.0.0.1:9090 --serve   # /healthz, /readyz, /metrics, the /asyncapi page (or JETFLOW_OPS_ADDR)
//! ```
//!
//! The producer publishes five `OrderCreated` events. Two handlers in two
//! *groups* each receive every order (one durable consumer per group):
//! `reserve_stock` (inventory) and `send_confirmation` (notifications).
//! One mail fails once and is retried after the backoff delay; one order
//! is rejected by inventory and lands in the dead-letter stream at once.
//! Without `--serve` the demo checks that this happened, prints a summary
//! and exits (non-zero if something is missing: CI runs it as a smoke test).
//!
//! The subcommands come from `App::commands` (jetflow feature `commands`);
//! no subcommand runs the demo. Before starting, the demo runs the schema gate: the JSON Schema of
//! `OrderCreated` must match its snapshot in `examples/shop/schemas/`
//! (a compatible change updates it; an incompatible one stops the demo
//! with what changed and the version to publish it as).

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jetflow::prelude::*;
use jetflow::schema::SchemaGate;
use jetflow::{ConnectOptions, PubAck};

/// An order was placed. Published as JSON on `order.created.v1` into the
/// `ORDER` stream. `id = order_id` derives the event id (and so the server's
/// dedup id) from the order: publishing the same order twice within the
/// stream's dedup window (2 minutes) stores it once.
#[event(version = "v1", id = order_id)]
pub struct OrderCreated {
    /// Business key, unique per order.
    pub order_id: String,
    /// Customer e-mail address.
    pub customer: String,
    /// Order total in cents.
    pub total_cents: u64,
    /// Number of items ordered.
    pub items: u32,
}

/// Shared state, handed to handlers with `State<T>`: units left in the warehouse.
#[derive(Clone)]
struct Stock(Arc<Mutex<u32>>);

/// What the handlers did, so that `main` can check the story and summarize it.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Seen {
    reserved: HashSet<String>,
    rejected: HashSet<String>,
    confirmed: HashSet<String>,
    mail_failed_at: HashMap<String, Instant>,
    retried_after: HashMap<String, Duration>,
}

impl Journal {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.0.lock().expect("journal lock poisoned")
    }

    /// What has not happened yet, for this run's orders.
    fn missing(&self, published: &[(OrderCreated, PubAck)], dead_lettered: bool) -> Vec<String> {
        let seen = self.seen();
        let mut missing = Vec::new();
        for (o, _) in published {
            if !seen.reserved.contains(&o.order_id) && !seen.rejected.contains(&o.order_id) {
                missing.push(format!("inventory did not handle {}", o.order_id));
            }
            if !seen.confirmed.contains(&o.order_id) {
                missing.push(format!("no confirmation sent for {}", o.order_id));
            }
        }
        if seen.retried_after.is_empty() {
            missing.push("the mail that failed was not retried successfully".into());
        }
        if !dead_lettered {
            missing.push("the rejected order is not in the DLQ stream".into());
        }
        missing
    }
}

/// Group "inventory": up to 4 orders at once. `Ok(())` acks the message;
/// `HandlerError::reject` is permanent: no retry, the message is copied to
/// the `DLQ` stream and terminated. `idempotent`: jetflow claims each
/// order's event id in the app's idempotency store first, so a redelivered
/// or re-published order never reserves stock twice (the demo uses the
/// in-process store; a `NatsKvStore` or `RedisStore` in production).
#[handler(group = "inventory", concurrency = 4, idempotent)]
async fn reserve_stock(
    order: OrderCreated,
    ctx: Context,
    State(stock): State<Stock>,
    State(journal): State<Journal>,
) -> Result<(), HandlerError> {
    println!(
        "[inventory]     {} {} #{} (delivery {}): order {} with {} items",
        ctx.subject(),
        ctx.stream(),
        ctx.stream_sequence(),
        ctx.delivered(),
        order.order_id,
        order.items
    );
    if order.items == 0 {
        journal.seen().rejected.insert(order.order_id);
        return Err(HandlerError::reject("order has no items"));
    }
    let left = {
        let mut units = stock.0.lock().expect("stock lock poisoned");
        *units = units.saturating_sub(order.items);
        *units
    };
    println!(
        "[inventory]     reserved {} units for {} ({left} left)",
        order.items, order.order_id
    );
    journal.seen().reserved.insert(order.order_id);
    Ok(())
}

/// Group "notifications": gets every order too. A plain error is retryable:
/// jetflow naks it with the backoff delay for that delivery (1s after the
/// first, 2s after the second) and dead-letters it after the 3rd delivery.
#[handler(group = "notifications", max_deliver = 3, backoff = "1s, 2s")]
async fn send_confirmation(
    order: OrderCreated,
    ctx: Context,
    State(journal): State<Journal>,
) -> Result<(), HandlerError> {
    println!(
        "[notifications] {} {} #{} (delivery {}): mail to {}",
        ctx.subject(),
        ctx.stream(),
        ctx.stream_sequence(),
        ctx.delivered(),
        order.customer
    );
    // This customer's mail server times out once; the redelivery succeeds.
    if order.customer.ends_with("@slowmail.example") && ctx.delivered() == 1 {
        journal
            .seen()
            .mail_failed_at
            .insert(order.order_id, Instant::now());
        return Err(HandlerError::retry("mail server timeout"));
    }
    let mut seen = journal.seen();
    if let Some(failed) = seen.mail_failed_at.get(&order.order_id).copied() {
        seen.retried_after
            .insert(order.order_id.clone(), failed.elapsed());
    }
    println!(
        "[notifications] confirmation sent for {} ({:.2} EUR)",
        order.order_id,
        order.total_cents as f64 / 100.0
    );
    seen.confirmed.insert(order.order_id);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // RUST_LOG overrides; `info` shows jetflow's retry and dead-letter logs.
    let _telemetry = match jetflow::telemetry::init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    // JETFLOW_URL (or NATS_URL) selects the transport: nats://... runs on
    // JetStream, redis://... on Redis Streams (feature `redis`); without
    // either, the embedded broker (same semantics, in this process, nothing
    // to install).
    let mut connect = ConnectOptions::from_env();
    let set = |k: &str| std::env::var(k).is_ok_and(|u| !u.is_empty());
    if !set("JETFLOW_URL") && !set("NATS_URL") {
        connect.url = "memory://shop".into();
    }

    // Starting provisions the streams (ORDER, DLQ) and one durable consumer per group.
    let journal = Journal::default();
    let stock = Stock(Arc::new(Mutex::new(100)));
    // `from_env`: JETFLOW_OPS_ADDR switches the ops listener on; `--ops` too.
    let app = App::from_env("shop")
        .connect_options(connect)
        .state(stock.clone())
        .state(journal.clone())
        .idempotency_store(jetflow::idempotency::MemoryStore::new())
        .handler(reserve_stock)
        .handler(send_confirmation)
        .publishes::<OrderCreated>();
    // The schema gate: the contract of every published version is frozen.
    // `check-schemas` runs it alone; the demo (`run`, the default) first.
    let gate = SchemaGate::new(concat!(env!("CARGO_MANIFEST_DIR"), "/shop/schemas"))
        .event::<OrderCreated>();
    app.commands()
        .schemas(gate)
        .main_with(|app, args| demo(app, args, stock, journal))
        .await
}

/// The demo (the `run` command): starts the app, publishes five orders and
/// checks what happened (or, with `--serve`, serves until Ctrl-C).
async fn demo(
    app: App,
    args: Vec<String>,
    stock: Stock,
    journal: Journal,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let serve = args.iter().any(|a| a == "--serve");
    let value = |flag: &str, example: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| {
                args.get(i + 1)
                    .cloned()
                    .ok_or(format!("{flag} needs a value, e.g. {flag} {example}"))
            })
            .transpose()
    };
    let asyncapi = value("--asyncapi", "shop.yaml")?;
    let ops = value("--ops", "127.0.0.1:9090")?;
    let mut app = app;
    if let Some(addr) = &ops {
        app = app.ops(addr);
    }
    if let Some(path) = &asyncapi {
        let doc = app.asyncapi();
        let text = if path.ends_with(".json") {
            doc.to_json_string()
        } else {
            doc.to_yaml()
        };
        std::fs::write(path, text)
            .map_err(|e| format!("cannot write the AsyncAPI document to {path}: {e}"))?;
        println!("AsyncAPI 3.0 document written to {path}");
    }
    let mut handle = app.start().await?;
    println!("shop demo on {}", handle.bus().transport_name());
    if let Some(addr) = handle.ops_addr() {
        println!("ops: http://{addr}/healthz  http://{addr}/readyz  http://{addr}/metrics");
        println!(
            "docs: http://{addr}/asyncapi  (the document: http://{addr}/asyncapi.json, .yaml)"
        );
    }

    // Streams and durable consumers outlive this process, so order ids carry
    // a per-run suffix and only this run's orders are checked.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() % 1_000_000;
    let orders = [
        ("alice@example.com", 2, 2_598),
        ("bob@example.com", 1, 1_299),
        ("carol@slowmail.example", 3, 4_497), // the mail fails once
        ("dave@example.com", 0, 0),           // inventory rejects it
        ("erin@example.com", 1, 1_299),
    ];
    let mut published = Vec::new();
    for (n, (customer, items, total_cents)) in orders.into_iter().enumerate() {
        let order = OrderCreated {
            order_id: format!("{run}-{}", n + 1),
            customer: customer.into(),
            total_cents,
            items,
        };
        let ack = handle.bus().publish(&order).await?; // returns once the server stored it
        println!(
            "[producer]      published order {} -> {} #{}",
            order.order_id, ack.stream, ack.sequence
        );
        published.push((order, ack));
    }

    if serve {
        println!("serving; Ctrl-C to stop");
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            r = handle.wait_failure() => r?, // a consume loop gave up
        }
        handle.stop().await?; // no new messages; in-flight handlers finish; acks flushed
        return Ok(ExitCode::SUCCESS);
    }

    // Wait (bounded) until both groups handled every order, the mail was
    // retried and the rejected order is in the DLQ stream.
    let rejected = published
        .iter()
        .find(|(o, _)| o.items == 0)
        .map(|(_, ack)| ack.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let (missing, dead) = loop {
        // Dead letters keep the original's stream and sequence: find ours.
        let dead = jetflow::dlq::list(handle.bus())
            .await?
            .into_iter()
            .find(|d| {
                rejected
                    .as_ref()
                    .is_some_and(|a| d.stream == a.stream && d.sequence == a.sequence)
            });
        let missing = journal.missing(&published, dead.is_some());
        if missing.is_empty() || Instant::now() > deadline {
            break (missing, dead);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    println!("\n== summary ==");
    let stock_left = *stock.0.lock().expect("stock lock poisoned");
    {
        let seen = journal.seen();
        let ours = |set: &HashSet<String>| {
            published
                .iter()
                .filter(|(o, _)| set.contains(&o.order_id))
                .count()
        };
        println!(
            "inventory:     {} reserved, {} rejected; stock left: {stock_left}",
            ours(&seen.reserved),
            ours(&seen.rejected)
        );
        println!(
            "notifications: {} of {} confirmations sent",
            ours(&seen.confirmed),
            published.len()
        );
        for (id, delay) in &seen.retried_after {
            println!(
                "retry:         mail for {id} failed on delivery 1; delivery 2 came {delay:.2?} later (backoff 1s)"
            );
        }
    }
    if let Some(d) = &dead {
        println!(
            "dead letter:   {} {} #{} from {} after {} delivery: {}",
            d.subject, d.stream, d.sequence, d.handler, d.delivered, d.error
        );
    }
    handle.stop().await?;
    if missing.is_empty() {
        println!("all good");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nNOT everything happened within 30s:");
        missing.iter().for_each(|m| println!("  - {m}"));
        Ok(ExitCode::FAILURE)
    }
}
