//! Unit tests of [`RedisServer`]; the tests against real redis-server
//! processes are in `tests/tests/testing_kit.rs`.

use super::*;

#[test]
fn futures_and_server_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RedisServer>();
    assert_send(&RedisServer::start());
    let mut server: Option<RedisServer> = None;
    if let Some(server) = server.as_mut() {
        assert_send(&server.kill());
        assert_send(&server.restart());
        assert_send(&server.pause());
        assert_send(&server.resume());
    }
}

#[test]
fn parses_redis_versions() {
    let parsed = |output| parse_version(output).map(|v| v.to_string());
    assert_eq!(
        parsed("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c"),
        Some("7.0.15".to_owned())
    );
    assert_eq!(
        parsed("Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64"),
        Some("6.0.16".to_owned())
    );
    assert_eq!(
        parsed("Valkey server v=8.0.1 sha=00000000:0"),
        Some("8.0.1".to_owned())
    );
    assert_eq!(parsed("nats-server: v2.15.1"), None);
    assert_eq!(parsed("command not found"), None);
    let floor = Version::parse(DEFAULT_MIN_VERSION).expect("valid");
    assert!(parse_version("Redis server v=6.0.16").expect("parsed") < floor);
    assert!(parse_version("Redis server v=6.2.0").expect("parsed") >= floor);
}
