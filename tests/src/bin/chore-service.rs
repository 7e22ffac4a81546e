//! A jetflow service for the child-process tests: `App::run` on
//! `NATS_URL` with the handler `JETFLOW_TEST_HANDLER` names (`slow`, the
//! default, or `brief`; see `jetflow_tests::service`). It runs until
//! SIGINT or SIGTERM, or is killed.

use jetflow_tests::service::{brief_chore, slow_chore};

#[tokio::main]
async fn main() -> jetflow::Result<()> {
    jetflow_tests::log_to_stderr("jetflow=info");
    let app = jetflow::App::from_env("chore-service");
    let app = match std::env::var("JETFLOW_TEST_HANDLER").as_deref() {
        Ok("brief") => app.handler(brief_chore),
        _ => app.handler(slow_chore),
    };
    app.run().await
}
