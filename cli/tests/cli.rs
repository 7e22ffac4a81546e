//! The `jetflow` command as a child process against a private server:
//! three events dead-lettered by a broken handler are listed, shown,
//! replayed once each to the (now fixed) handler, a second replay is
//! refused, a purge empties the DLQ; consumer lag and publishing work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jetflow::prelude::*;
use jetflow_tests::{Ledger, WAIT, dead_letters, server};

/// A test event keyed by `key`.
#[event(version = "v1", id = key)]
pub struct Chore {
    key: String,
}

#[derive(Clone, Default)]
struct Broken(Arc<AtomicBool>);

#[handler(group = "house")]
async fn sweep(
    c: Chore,
    ctx: Context,
    State(l): State<Ledger>,
    State(broken): State<Broken>,
) -> Result<(), HandlerError> {
    l.record(&c.key, &ctx);
    if broken.0.load(Ordering::Relaxed) {
        return Err(HandlerError::reject("the broom is broken"));
    }
    Ok(())
}

/// Runs `jetflow {args}` on `url`; (exit success, stdout, stderr).
async fn jetflow(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jetflow"))
            .env("NATS_URL", url)
            .env_remove("JETFLOW_URL")
            .args(args)
            .output(),
    )
    .await
    .expect("the command ends in time")
    .expect("the command runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_once_and_purged_from_the_command_line() {
    let server = server().await;
    let url = server.url();
    let (ledger, broken) = (Ledger::default(), Broken::default());
    broken.0.store(true, Ordering::Relaxed);
    let app = App::new("t")
        .url(&url)
        .state(ledger.clone())
        .state(broken.clone())
        .handler(sweep)
        .start()
        .await
        .unwrap();
    for k in ["c1", "c2", "c3"] {
        app.bus().publish(&Chore { key: k.into() }).await.unwrap();
    }
    let dead = dead_letters(app.bus(), 3).await;

    let (ok, list, _) = jetflow(&url, &["dlq", "list", "--group", "house"]).await;
    assert!(ok);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines.iter().all(|l| l.contains("house/sweep")
            && l.contains("pending")
            && l.contains("the broom is broken")),
        "{list}"
    );
    let (_, none, _) = jetflow(&url, &["dlq", "list", "--error", "no such text"]).await;
    assert!(none.is_empty(), "{none}");
    let first = dead[0].dlq_sequence.to_string();
    let (ok, shown, _) = jetflow(&url, &["dlq", "show", &first]).await;
    assert!(
        ok && shown.contains("jetflow-dlq-error: rejected: the broom is broken")
            && shown.contains(r#"{"key":"c1"}"#),
        "{shown}"
    );

    broken.0.store(false, Ordering::Relaxed);
    let all: Vec<String> = dead.iter().map(|d| d.dlq_sequence.to_string()).collect();
    let mut args = vec!["dlq", "replay"];
    args.extend(all.iter().map(String::as_str));
    let (ok, replayed, err) = jetflow(&url, &args).await;
    assert!(ok, "{err}");
    assert_eq!(replayed.matches("replayed #").count(), 3, "{replayed}");
    // stderr is no terminal here: plain counts, no progress bar
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("replayed "))
            .collect::<Vec<_>>(),
        ["replayed 3 of 3"],
        "{err}"
    );
    app.wait_stats("sweep", WAIT, |s| s.acked >= 3)
        .await
        .unwrap();
    let (ok, _, refused) = jetflow(&url, &["dlq", "replay", &first]).await;
    assert!(!ok, "a second replay is refused");
    assert!(
        refused.contains("replayed already") && refused.contains("force"),
        "{refused}"
    );

    let (ok, lag, _) = jetflow(&url, &["consumer", "CHORE", "house--chore"]).await;
    assert!(ok && lag.contains("0 pending, 0 unacknowledged"), "{lag}");
    let (ok, published, err) = jetflow(
        &url,
        &[
            "publish",
            "chore.v1",
            r#"{"key":"c4"}"#,
            "--header",
            "ce-id=cli-c4",
        ],
    )
    .await;
    assert!(ok && published.contains("CHORE"), "{published}{err}");
    app.wait_stats("sweep", WAIT, |s| s.acked >= 4)
        .await
        .unwrap();

    let (ok, _, err) = jetflow(&url, &["dlq", "purge"]).await;
    assert!(
        !ok && err.contains("--all"),
        "a purge of everything needs --all: {err}"
    );
    let (ok, purged, err) =
        jetflow(&url, &["dlq", "purge", "--group", "house", "--replayed"]).await;
    assert!(ok && purged.contains("purged 3"), "{purged}");
    assert!(err.contains("purged 3 of 3"), "plain counts: {err}");
    let (_, empty, _) = jetflow(&url, &["dlq", "list"]).await;
    app.stop().await.unwrap();
    assert!(empty.is_empty(), "{empty}");
    assert_eq!(
        ledger.of("c1").len(),
        2,
        "dead-lettered once, replayed once"
    );
    assert_eq!(ledger.of("c4").len(), 1);
}
