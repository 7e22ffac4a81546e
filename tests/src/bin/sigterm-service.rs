//! A jetflow service for the SIGTERM test: `App::run` with one slow
//! handler, on `NATS_URL`. It runs until SIGINT or SIGTERM.

#[tokio::main]
async fn main() -> jetflow::Result<()> {
    jetflow_tests::log_to_stderr("jetflow=info");
    jetflow::App::from_env("sigterm-service")
        .handler(jetflow_tests::sigterm::slow_chore)
        .run()
        .await
}
