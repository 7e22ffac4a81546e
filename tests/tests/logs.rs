//! The logs of a service set up as the README's quick start says
//! (`jetflow::telemetry::init()`, the child `chore-service`): they come out
//! (text by default, JSON with `JETFLOW_LOG_FORMAT=json`, filtered by
//! `RUST_LOG`), and no secret it connects with — password, token, nkey
//! seed — is ever printed, even at `RUST_LOG=trace` (every crate's most
//! verbose output) and when the server refuses the credential.

use std::path::Path;

use jetflow::ConnectOptions;
use jetflow::testing::NatsServer;
use jetflow_tests::WAIT;
use jetflow_tests::service::{Chores, Service, brief_chore, provision_and_fill_with};

const CHILD: &str = env!("CARGO_BIN_EXE_chore-service");

async fn server_with(config: String) -> NatsServer {
    tokio::time::timeout(WAIT, NatsServer::builder().config(config).start())
        .await
        .expect("nats-server starts in time")
        .expect("nats-server starts")
}

/// Runs the child with `env` until it handled both chores, stops it;
/// returns its logs.
async fn run_logged(server: &NatsServer, env: &[(&str, &str)]) -> String {
    let service = Service::spawn_with(CHILD, &server.url(), Chores::Brief, env);
    service.wait_handled(2).await;
    service.terminate_logged().await
}

/// Runs the child with a credential the server refuses; returns its logs
/// (it exits with an error).
async fn run_refused(server: &NatsServer, env: &[(&str, &str)]) -> String {
    let service = Service::spawn_with(CHILD, &server.url(), Chores::Brief, env);
    let (status, logs) = service.exited().await;
    assert!(!status.success(), "a refused credential fails the service");
    logs
}

fn assert_clean(logs: &str, secrets: &[&str]) {
    assert!(
        logs.contains("connected"),
        "the logs come out (RUST_LOG=trace):\n{logs}"
    );
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret ({secret}) was printed:\n{logs}"
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_token_or_nkey_seed_is_ever_logged() {
    const PASSWORD: &str = "pw-6d1e0f42";
    const WRONG_PASSWORD: &str = "pw-wrong-73c1";
    const TOKEN: &str = "tok-91aa3e05";
    const WRONG_TOKEN: &str = "tok-wrong-2f6b";
    let trace = [("RUST_LOG", "trace")];

    // user and password, text logs
    let server = server_with(format!(
        r#"authorization {{ user: svc, password: "{PASSWORD}" }}"#
    ))
    .await;
    provision_and_fill_with(
        ConnectOptions::new(server.url()).user_password("svc", PASSWORD),
        brief_chore,
        2,
    )
    .await;
    let logs = run_logged(
        &server,
        &[trace[0], ("NATS_USER", "svc"), ("NATS_PASSWORD", PASSWORD)],
    )
    .await;
    assert!(
        logs.lines()
            .any(|l| l.contains(" INFO ") && l.contains("handler started")),
        "human-readable lines by default:\n{logs}"
    );
    assert_clean(&logs, &[PASSWORD]);
    let logs = run_refused(
        &server,
        &[
            trace[0],
            ("NATS_USER", "svc"),
            ("NATS_PASSWORD", WRONG_PASSWORD),
        ],
    )
    .await;
    assert!(!logs.contains(WRONG_PASSWORD), "{logs}");
    drop(server);

    // token, JSON logs
    let server = server_with(format!(r#"authorization {{ token: "{TOKEN}" }}"#)).await;
    provision_and_fill_with(
        ConnectOptions::new(server.url()).token(TOKEN),
        brief_chore,
        2,
    )
    .await;
    let logs = run_logged(
        &server,
        &[
            trace[0],
            ("NATS_TOKEN", TOKEN),
            ("JETFLOW_LOG_FORMAT", "json"),
        ],
    )
    .await;
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "handler started"),
        "one JSON object per line"
    );
    assert_clean(&logs, &[TOKEN]);
    let logs = run_refused(&server, &[trace[0], ("NATS_TOKEN", WRONG_TOKEN)]).await;
    assert!(!logs.contains(WRONG_TOKEN), "{logs}");
    drop(server);

    // nkey: the seed is in a file the service reads
    let dir = tempfile::tempdir().expect("temp dir");
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().expect("seed");
    let seed_file = write(dir.path(), "user.nk", &seed);
    let server = server_with(format!(
        r#"authorization {{ users = [ {{ nkey: "{}" }} ] }}"#,
        user.public_key()
    ))
    .await;
    provision_and_fill_with(
        ConnectOptions::new(server.url()).nkey_file(&seed_file),
        brief_chore,
        2,
    )
    .await;
    let logs = run_logged(&server, &[trace[0], ("NATS_NKEY", &seed_file)]).await;
    assert_clean(&logs, &[&seed]);
    let stranger = nkeys::KeyPair::new_user();
    let other_seed = stranger.seed().expect("seed");
    let other_file = write(dir.path(), "other.nk", &other_seed);
    let logs = run_refused(&server, &[trace[0], ("NATS_NKEY", &other_file)]).await;
    assert!(!logs.contains(&other_seed), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_filters_and_a_bad_format_is_refused() {
    let server = jetflow_tests::server().await;
    provision_and_fill_with(ConnectOptions::new(server.url()), brief_chore, 2).await;
    let logs = run_logged(&server, &[("RUST_LOG", "warn")]).await;
    assert!(
        !logs.contains("handler started"),
        "RUST_LOG=warn hides info lines:\n{logs}"
    );
    let service = Service::spawn_with(
        CHILD,
        &server.url(),
        Chores::Brief,
        &[("JETFLOW_LOG_FORMAT", "xml")],
    );
    let (status, logs) = service.exited().await;
    assert!(!status.success());
    assert!(logs.contains("JETFLOW_LOG_FORMAT"), "{logs}");
}
