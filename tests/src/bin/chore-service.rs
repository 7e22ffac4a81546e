//! A jetflow service for the child-process tests: `App::run` on
//! `JETFLOW_URL` (any transport) with the handler `JETFLOW_TEST_HANDLER`
//! names (`slow`, the default, `brief`, `unbuffered`, or `ledger` /
//! `redis-ledger` with their store at `JETFLOW_TEST_POSTGRES_URL` /
//! `JETFLOW_TEST_REDIS_URL`; see `jetflow_tests::service`). It runs until
//! SIGINT or SIGTERM, or is killed. Logs and traces are set up by
//! `jetflow::telemetry::init()`, as the README's quick start does; an
//! error is printed (its `Display`) and exits 1.

use jetflow_tests::service::{
    LEDGER_POSTGRES_URL, LEDGER_REDIS_URL, brief_chore, ledger_chore, redis_chore, slow_chore,
    unbuffered_chore,
};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // logs (RUST_LOG, JETFLOW_LOG_FORMAT) and, with
    // OTEL_EXPORTER_OTLP_ENDPOINT, spans over OTLP until the guard drops
    let _telemetry = jetflow::telemetry::init()?;
    let app = jetflow::App::from_env("chore-service");
    let app = match std::env::var("JETFLOW_TEST_HANDLER").as_deref() {
        Ok("brief") => app.handler(brief_chore),
        Ok("unbuffered") => app.handler(unbuffered_chore),
        Ok("ledger") => {
            let url = std::env::var(LEDGER_POSTGRES_URL)?;
            app.idempotency_store(jetflow::idempotency::PostgresStore::new(&url)?)
                .handler(ledger_chore)
        }
        Ok("redis-ledger") => {
            let url = std::env::var(LEDGER_REDIS_URL)?;
            app.idempotency_store(jetflow::idempotency::RedisStore::new(&url)?)
                .handler(redis_chore)
        }
        _ => app.handler(slow_chore),
    };
    app.run().await?;
    Ok(())
}
