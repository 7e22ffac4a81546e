//! Telling when a redis-server is ready: `PING` and `INFO server` in raw RESP
//! (the runtime does not depend on a Redis client).

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::testing::probe;

/// `PING` and `INFO server`, pipelined, as RESP arrays of bulk strings.
const REQUEST: &[u8] = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n";

/// Connects to the port, sends `PING` and `INFO server`, and returns the
/// `process_id` the server reports if `PING` was answered with `+PONG`;
/// `None` if nothing (or something else) answers.
pub(super) async fn probe(port: u16) -> Option<u32> {
    let mut stream = probe::connect(port).await?;
    let exchange = async move {
        stream.write_all(REQUEST).await.ok()?;
        let mut reader = tokio::io::BufReader::new(stream.take(probe::MAX_BYTES));
        let mut line = String::new();
        reader.read_line(&mut line).await.ok()?;
        if line != "+PONG\r\n" {
            return None;
        }
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let len = bulk_len(&line)?;
        let mut info = vec![0; len];
        reader.read_exact(&mut info).await.ok()?;
        process_id(&String::from_utf8_lossy(&info))
    };
    tokio::time::timeout(probe::READ_TIMEOUT, exchange)
        .await
        .ok()?
}

/// The length in a bulk string header, `$LEN\r\n`, if it is at most
/// [`probe::MAX_BYTES`].
fn bulk_len(line: &str) -> Option<usize> {
    let len: u64 = line.strip_prefix('$')?.strip_suffix("\r\n")?.parse().ok()?;
    if len > probe::MAX_BYTES {
        return None;
    }
    usize::try_from(len).ok()
}

/// `process_id:1234` from the text of `INFO server`.
fn process_id(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bulk_headers_and_the_process_id() {
        assert_eq!(bulk_len("$12\r\n"), Some(12));
        assert_eq!(bulk_len("$-1\r\n"), None);
        assert_eq!(bulk_len("-ERR unknown command\r\n"), None);
        assert_eq!(bulk_len("$99999999999\r\n"), None);
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\ntcp_port:6379\r\n";
        assert_eq!(process_id(info), Some(4242));
        assert_eq!(process_id("# Server\r\nredis_version:7.0.15\r\n"), None);
    }
}
