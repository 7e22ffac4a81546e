//! The test kit's private servers against real processes: a
//! [`RedisServer`] spoken to in raw RESP (start, kill, restart, pause,
//! resume, drop, refused binaries), and a [`NatsServer`] smoke test of kill
//! and restart, and a [`KafkaServer`](jetflow::testing::KafkaServer) (tansu)
//! killed and restarted under a Kafka client. No test touches a Redis on the
//! default port 6379.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use jetflow::testing::{NatsServer, RedisServer, TestingError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound on every test.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a paused server is given to (wrongly) answer.
const PAUSED_SILENCE: Duration = Duration::from_millis(300);

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test did not finish within 20s");
}

/// A raw RESP connection to `127.0.0.1:port`.
struct Resp(BufReader<TcpStream>);

impl Resp {
    async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        Ok(Self(BufReader::new(stream)))
    }

    /// Sends one command as an array of bulk strings.
    async fn send(&mut self, args: &[&str]) {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.0
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("send a command");
    }

    /// Reads one reply: a simple string, error or integer as its line
    /// (`+OK`, `-ERR ...`, `:1`), a bulk string as its contents, nil as
    /// `(nil)`.
    async fn reply(&mut self) -> String {
        let mut line = String::new();
        let n = self.0.read_line(&mut line).await.expect("read a reply");
        assert!(n > 0, "the server closed the connection");
        let line = line.trim_end_matches("\r\n");
        let Some(len) = line.strip_prefix('$') else {
            return line.to_owned();
        };
        let Ok(len) = usize::try_from(len.parse::<i64>().expect("a bulk length")) else {
            return "(nil)".to_owned();
        };
        let mut bulk = vec![0; len + 2];
        self.0
            .read_exact(&mut bulk)
            .await
            .expect("read a bulk string");
        bulk.truncate(len);
        String::from_utf8(bulk).expect("UTF-8")
    }

    async fn command(&mut self, args: &[&str]) -> String {
        self.send(args).await;
        self.reply().await
    }
}

async fn redis() -> RedisServer {
    RedisServer::start().await.expect("redis-server starts")
}

async fn assert_refused(port: u16) {
    match TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("something still accepts connections on port {port}"),
    }
}

#[tokio::test]
async fn redis_serves_set_and_get_on_a_private_port() {
    bounded(async {
        let server = redis().await;
        assert_ne!(server.port(), 6379, "never the default port");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        assert!(server.data_dir().is_dir());
        assert!(server.log_path().is_file());
        assert!(server.pid().is_some());
        let version: Vec<u64> = server
            .version()
            .split('.')
            .map(|part| part.parse().expect("numeric"))
            .collect();
        assert!(version[..2] >= [6, 2][..], "{}", server.version());

        let mut conn = Resp::connect(server.port()).await.expect("connect");
        assert_eq!(conn.command(&["PING"]).await, "+PONG");
        assert_eq!(conn.command(&["SET", "greeting", "hello"]).await, "+OK");
        assert_eq!(conn.command(&["GET", "greeting"]).await, "hello");
        assert_eq!(conn.command(&["GET", "missing"]).await, "(nil)");
        // Nothing is persisted.
        assert_eq!(
            conn.command(&["CONFIG", "GET", "appendonly"]).await,
            "*2",
            "an array of two bulk strings"
        );
        assert_eq!(conn.reply().await, "appendonly");
        assert_eq!(conn.reply().await, "no");
    })
    .await;
}

#[tokio::test]
async fn redis_kill_refuses_connections_and_restart_starts_empty_on_the_same_port() {
    bounded(async {
        let mut server = redis().await;
        let port = server.port();
        let mut conn = Resp::connect(port).await.expect("connect");
        assert_eq!(conn.command(&["SET", "k", "v"]).await, "+OK");

        server.kill().await.expect("kill");
        assert!(server.pid().is_none());
        assert_refused(port).await;
        server.kill().await.expect("kill is idempotent");
        let err = server.pause().await.expect_err("nothing to pause");
        assert!(
            matches!(err, TestingError::RedisNotRunning { port: p } if p == port),
            "{err:?}"
        );
        assert!(err.to_string().contains("restart()"), "{err}");

        server.restart().await.expect("restart");
        assert_eq!(server.port(), port, "same port");
        let mut conn = Resp::connect(port).await.expect("reconnect");
        assert_eq!(conn.command(&["PING"]).await, "+PONG");
        assert_eq!(conn.command(&["GET", "k"]).await, "(nil)", "data is gone");

        // Restart of a running server.
        server.restart().await.expect("second restart");
        assert_eq!(server.port(), port);
    })
    .await;
}

#[tokio::test]
async fn redis_restart_waits_while_the_port_is_busy() {
    bounded(async {
        let mut server = redis().await;
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
        let mut conn = Resp::connect(server.port()).await.expect("connect");
        assert_eq!(conn.command(&["PING"]).await, "+PONG");
    })
    .await;
}

#[tokio::test]
async fn redis_paused_answers_nothing_until_resumed() {
    bounded(async {
        let mut server = redis().await;
        let mut conn = Resp::connect(server.port()).await.expect("connect");
        assert_eq!(conn.command(&["PING"]).await, "+PONG");

        server.pause().await.expect("pause");
        assert!(server.is_paused());
        conn.send(&["PING"]).await;
        let answer = tokio::time::timeout(PAUSED_SILENCE, conn.reply()).await;
        assert!(answer.is_err(), "a paused server answered: {answer:?}");

        server.resume().await.expect("resume");
        assert!(!server.is_paused());
        // The PING sent while paused is answered now.
        assert_eq!(conn.reply().await, "+PONG");
        assert_eq!(conn.command(&["PING"]).await, "+PONG");
    })
    .await;
}

#[tokio::test]
async fn redis_drop_removes_its_dir_and_frees_the_port() {
    bounded(async {
        let server = redis().await;
        let port = server.port();
        let data_dir = server.data_dir().to_path_buf();
        let log = server.log_path().to_path_buf();
        let mut conn = Resp::connect(port).await.expect("connect");
        assert_eq!(conn.command(&["PING"]).await, "+PONG");

        drop(server);
        assert!(!data_dir.exists(), "working dir removed on drop");
        assert!(!log.exists(), "log removed on drop");
        assert_refused(port).await;
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
    })
    .await;
}

#[tokio::test]
async fn redis_refuses_unsuitable_binaries_with_typed_errors() {
    bounded(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = dir.path().join("redis-server");
        std::fs::write(
            &old,
            "#!/bin/sh\necho 'Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64'\n",
        )
        .expect("write a fake redis-server");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755))
                .expect("make it executable");
        }
        let err = RedisServer::builder()
            .binary(&old)
            .start()
            .await
            .expect_err("6.0 is too old");
        match &err {
            TestingError::RedisVersionTooOld {
                found, required, ..
            } => assert_eq!((found.as_str(), required.as_str()), ("6.0.16", "6.2.0")),
            other => panic!("expected RedisVersionTooOld, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("package `redis-server`"), "{message}");
        assert!(message.contains("JETFLOW_REDIS_SERVER"), "{message}");

        let err = RedisServer::builder().min_version("two").start().await;
        assert!(
            matches!(err, Err(TestingError::RedisInvalidVersion(_))),
            "{err:?}"
        );
        let err = RedisServer::builder()
            .binary("/nonexistent/redis-server")
            .start()
            .await;
        assert!(
            matches!(err, Err(TestingError::RedisBinaryNotFound { .. })),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn redis_bad_argument_exits_with_its_log_in_the_error() {
    bounded(async {
        let err = RedisServer::builder()
            .arg("--no-such-option")
            .arg("1")
            .start()
            .await
            .expect_err("redis-server rejects the option");
        let message = err.to_string();
        match err {
            TestingError::RedisExited {
                path,
                port,
                log_tail,
                ..
            } => {
                assert!(log_tail.contains("no-such-option"), "{log_tail}");
                assert!(message.contains(&format!("port {port}")), "{message}");
                assert!(message.contains(&*path.to_string_lossy()), "{message}");
            }
            other => panic!("expected RedisExited, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn nats_server_kill_and_restart_keep_the_port() {
    bounded(async {
        let mut server = NatsServer::start().await.expect("nats-server starts");
        let port = server.port();
        let client = async_nats::connect(server.url()).await.expect("connect");
        client.flush().await.expect("flush");
        drop(client);

        server.kill().await.expect("kill");
        assert!(server.pid().is_none());
        assert_refused(port).await;

        server.restart().await.expect("restart");
        assert_eq!(server.port(), port, "same port");
        let client = async_nats::connect(server.url()).await.expect("reconnect");
        client.flush().await.expect("flush after restart");
    })
    .await;
}

#[tokio::test]
async fn kafka_kill_refuses_connections_and_restart_serves_on_the_same_port() {
    bounded(async {
        let mut server = jetflow::testing::KafkaServer::start()
            .await
            .expect("tansu starts");
        let port = server.port();
        assert!(server.url().ends_with(&format!(":{port}")));
        assert!(server.log_path().is_file());
        let name = "kit";
        jetflow::transport::kafka::KafkaTransport::connect(&server.url(), name)
            .await
            .expect("a Kafka client connects");

        server.kill().await.expect("kill");
        assert!(server.pid().is_none());
        assert_refused(port).await;
        server.kill().await.expect("kill is idempotent");

        server.restart().await.expect("restart");
        assert_eq!(server.port(), port, "same port");
        jetflow::transport::kafka::KafkaTransport::connect(&server.url(), name)
            .await
            .expect("a Kafka client connects again");
        let dir = server.log_path().parent().expect("a dir").to_owned();
        drop(server);
        assert!(!dir.exists(), "its dir is removed");
        assert_refused(port).await;
    })
    .await;
}
