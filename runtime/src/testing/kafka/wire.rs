//! The readiness probe: one Kafka `ApiVersions` (v0) request, raw.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::testing::probe::{self, MAX_BYTES, READ_TIMEOUT};

/// An arbitrary correlation id the answer must echo.
const CORRELATION: i32 = 0x6a66_6c77;

/// `Some(())` when something on `127.0.0.1:port` answers `ApiVersions`
/// with our correlation id and no error.
pub(super) async fn probe(port: u16) -> Option<()> {
    let mut stream = probe::connect(port).await?;
    let client = b"jetflow-probe";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // v0
    body.extend_from_slice(&CORRELATION.to_be_bytes());
    body.extend_from_slice(&i16::try_from(client.len()).ok()?.to_be_bytes());
    body.extend_from_slice(client);
    let mut request = i32::try_from(body.len()).ok()?.to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    let answer = async {
        stream.write_all(&request).await.ok()?;
        let size = stream.read_i32().await.ok()?;
        if !(6..=i32::try_from(MAX_BYTES).ok()?).contains(&size) {
            return None;
        }
        let correlation = stream.read_i32().await.ok()?;
        let error = stream.read_i16().await.ok()?;
        (correlation == CORRELATION && error == 0).then_some(())
    };
    tokio::time::timeout(READ_TIMEOUT, answer).await.ok()?
}
