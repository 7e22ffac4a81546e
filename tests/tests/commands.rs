//! A service's own subcommands (`App::commands`, feature `commands`) on a
//! real nats-server: `plan` shows what starting would create, then a
//! consumer whose config differs from the code, and changes nothing on the
//! server; `asyncapi` prints the document of every channel and handler;
//! arguments that are no subcommand run the service with them.

use std::process::ExitCode;
use std::time::Duration;

use jetflow::commands::Command;
use jetflow::prelude::*;
use jetflow_tests::server;

/// A parcel to weigh.
#[event(version = "v1", id = key)]
pub struct Parcel {
    key: String,
}

/// Weighs parcels, as first deployed (ack wait 30 s).
#[handler(group = "scale", ack_wait = "30s")]
async fn weigh(_p: Parcel) {}

/// The same durable (group and event), as the code now declares it.
#[handler(group = "scale", ack_wait = "45s")]
async fn weigh_slowly(_p: Parcel) {}

/// Runs `command` on `app`; its exit code and what it printed. A `run`
/// here would be a test failure: no command in this file runs the app.
async fn execute(app: App, command: Command) -> (ExitCode, String) {
    let mut out = Vec::new();
    let code = app
        .commands()
        .execute(command, &mut out, |_app, _args| async {
            panic!("not a run")
        })
        .await
        .expect("the command works");
    (code, String::from_utf8(out).expect("utf-8"))
}

async fn stream_names(js: &async_nats::jetstream::Context) -> Vec<String> {
    use futures_util::TryStreamExt as _;
    js.stream_names().try_collect().await.expect("stream names")
}

#[tokio::test]
async fn plan_shows_the_diff_and_changes_nothing() {
    let server = server().await;
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.expect("connects"));
    let app = || App::new("weighbridge").url(server.url());

    // nothing on the server yet: everything would be created
    let (code, out) = execute(app().handler(weigh), Command::Plan).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.contains("+ stream `PARCEL` (create)"), "{out}");
    assert!(out.contains("+ stream `DLQ` (create)"), "{out}");
    assert!(
        out.contains("+ consumer `scale--parcel` on stream `PARCEL` (create)"),
        "{out}"
    );
    assert!(
        out.contains("starting the app makes these changes"),
        "{out}"
    );
    assert!(stream_names(&js).await.is_empty(), "plan created nothing");

    // provisioned as first deployed: nothing to change
    app()
        .handler(weigh)
        .start()
        .await
        .expect("starts")
        .stop()
        .await
        .expect("stops");
    let (_, out) = execute(app().handler(weigh), Command::Plan).await;
    assert!(out.contains("= stream `PARCEL` (unchanged)"), "{out}");
    assert!(out.contains("nothing to change"), "{out}");

    // the code now declares another ack wait: an update, shown, not made
    let (_, out) = execute(app().handler(weigh_slowly), Command::Plan).await;
    assert!(
        out.contains("~ consumer `scale--parcel` on stream `PARCEL` (update)"),
        "{out}"
    );
    assert!(out.contains("ack_wait: server=30s declared=45s"), "{out}");
    let info = js
        .get_stream("PARCEL")
        .await
        .expect("stream")
        .consumer_info("scale--parcel")
        .await
        .expect("consumer")
        .clone();
    assert_eq!(info.config.ack_wait, Duration::from_secs(30), "unchanged");
}

#[tokio::test]
async fn asyncapi_prints_every_channel_and_handler() {
    let app = || {
        App::new("weighbridge")
            .url("memory://commands-asyncapi")
            .handler(weigh)
    };
    let (code, json) = execute(app(), Command::Asyncapi { yaml: false }).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(json.trim_end(), app().asyncapi().to_json_string());
    assert!(json.contains("parcel"), "the channel: {json}");
    assert!(json.contains("weigh"), "the handler: {json}");
    let (_, yaml) = execute(app(), Command::Asyncapi { yaml: true }).await;
    assert_eq!(yaml, app().asyncapi().to_yaml());
}

#[test]
fn arguments_that_are_no_subcommand_run_the_service_with_them() {
    let parse = |args: &[&str]| Command::parse_from(args.iter().copied());
    assert_eq!(
        parse(&["svc"]).expect("parses"),
        Command::Run { args: vec![] }
    );
    assert_eq!(
        parse(&["svc", "--serve", "--ops", "127.0.0.1:9090"]).expect("parses"),
        Command::Run {
            args: vec!["--serve".into(), "--ops".into(), "127.0.0.1:9090".into()]
        }
    );
    assert_eq!(
        parse(&["svc", "run", "--serve"]).expect("parses"),
        Command::Run {
            args: vec!["--serve".into()]
        }
    );
    assert_eq!(parse(&["svc", "plan"]).expect("parses"), Command::Plan);
    assert_eq!(
        parse(&["svc", "asyncapi", "--yaml"]).expect("parses"),
        Command::Asyncapi { yaml: true }
    );
    assert_eq!(
        parse(&["svc", "--check-schemas"]).expect("parses"),
        Command::CheckSchemas
    );
    assert!(parse(&["svc", "plan", "--bogus"]).is_err());
}
