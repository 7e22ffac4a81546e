//! Reading the `INFO` line a NATS server sends first, to tell when it is
//! ready.

use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::testing::probe;

/// What readiness needs from the server's `INFO` line.
#[derive(Debug)]
pub(super) struct ServerInfo {
    pub(super) server_name: Option<String>,
    pub(super) jetstream: bool,
}

/// Connects to the port and reads the `INFO {...}` line a NATS server sends
/// first; `None` if nothing (or something else) answers.
pub(super) async fn probe(port: u16) -> Option<ServerInfo> {
    let stream = probe::connect(port).await?;
    // The `INFO` line is a few hundred bytes.
    let mut reader = tokio::io::BufReader::new(stream.take(probe::MAX_BYTES));
    let mut line = String::new();
    tokio::time::timeout(probe::READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .ok()?
        .ok()?;
    parse_info(&line)
}

fn parse_info(line: &str) -> Option<ServerInfo> {
    let json = line.strip_prefix("INFO")?.trim();
    let info: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(ServerInfo {
        server_name: info
            .get("server_name")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        jetstream: info
            .get("jetstream")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_line() {
        let info = parse_info("INFO {\"server_name\":\"a\",\"jetstream\":true}\r\n")
            .expect("an INFO line");
        assert_eq!(info.server_name.as_deref(), Some("a"));
        assert!(info.jetstream);
        let info = parse_info("INFO {\"server_name\":\"a\"}\r\n").expect("an INFO line");
        assert!(!info.jetstream);
        assert!(parse_info("HTTP/1.1 400 Bad Request\r\n").is_none());
    }
}
