//! A jetflow service for the SIGTERM test: `App::run` with one slow
//! handler, on `NATS_URL`. It runs until SIGINT or SIGTERM.

#[tokio::main]
async fn main() -> jetflow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("jetflow=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    jetflow::App::from_env("sigterm-service")
        .handler(jetflow_tests::sigterm::slow_chore)
        .run()
        .await
}
