//! [`FaultProxy`]: a TCP proxy on loopback between a client and a server,
//! for network faults in tests: latency on every packet, replies held back
//! (a PubAck that never arrives), connections cut.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::TestingError;

/// Chunks in flight per direction before the reader waits (backpressure).
const IN_FLIGHT: usize = 64;

/// A TCP proxy on `127.0.0.1:{random port}` in front of `upstream`, with
/// faults to switch on and off. Clients connect to [`url`](Self::url);
/// every accepted connection opens its own connection upstream. Dropping it
/// closes the listener and every connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let server = jetflow::testing::NatsServer::start().await?;
/// let proxy = jetflow::testing::FaultProxy::start(&server.url()).await?;
/// let app = jetflow::App::new("t").url(proxy.url()).start().await?;
/// proxy.set_latency(Duration::from_millis(200)); // every chunk, both ways
/// proxy.hold_replies(true); // nothing from the server reaches the client
/// proxy.cut(); // close every connection (clients reconnect); held replies are lost
/// proxy.hold_replies(false);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    _tasks: JoinSet<()>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    latency: Duration,
    hold_replies: bool,
    /// Bumped by every cut: connections opened before it close.
    cuts: u64,
}

impl FaultProxy {
    /// Starts a proxy to the server of `upstream_url` (`nats://host:port`,
    /// `redis://host:port`, or `host:port`).
    ///
    /// # Errors
    ///
    /// [`TestingError::Io`] if the URL has no `host:port` or the listener
    /// cannot be bound.
    pub async fn start(upstream_url: &str) -> Result<FaultProxy, TestingError> {
        let io = |action: &str| {
            let action = action.to_owned();
            move |source| TestingError::Io { action, source }
        };
        let hostport = upstream_url
            .split_once("://")
            .map_or(upstream_url, |(_, rest)| rest)
            .trim_end_matches('/');
        let upstream: SocketAddr = tokio::net::lookup_host(hostport)
            .await
            .map_err(io(&format!("resolve the proxy's upstream {hostport:?}")))?
            .next()
            .ok_or_else(|| TestingError::Io {
                action: format!("resolve the proxy's upstream {hostport:?}"),
                source: std::io::Error::other("no address"),
            })?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind the fault proxy on 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io("read the proxy's address"))?;
        let (faults, watching) = watch::channel(Faults::default());
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(listener, upstream, watching));
        Ok(FaultProxy {
            addr,
            faults,
            _tasks: tasks,
        })
    }

    /// `nats://127.0.0.1:{port}` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Delays every chunk, in both directions, by `latency` (zero: none).
    /// Chunks stay in order; the delay is added once, not per chunk queued.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = latency);
    }

    /// Holds back (`true`) everything the server sends, as a network that
    /// loses replies would; the client's requests still reach the server.
    /// `false` delivers what was held, unless a [`cut`](Self::cut) dropped it.
    pub fn hold_replies(&self, hold: bool) {
        self.faults.send_modify(|f| f.hold_replies = hold);
    }

    /// Closes every open connection at once; what was held or in flight is
    /// lost. New connections (a client reconnecting) are accepted as before.
    pub fn cut(&self) {
        self.faults.send_modify(|f| f.cuts += 1);
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, faults: watch::Receiver<Faults>) {
    let mut connections = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let faults = faults.clone();
        connections.spawn(async move {
            if let Ok(server) = TcpStream::connect(upstream).await {
                relay(client, server, faults).await;
            }
        });
        // reap finished connections
        while connections.try_join_next().is_some() {}
    }
}

/// Relays both ways until either side closes or a cut comes.
async fn relay(client: TcpStream, server: TcpStream, mut faults: watch::Receiver<Faults>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let born = faults.borrow_and_update().cuts;
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    let mut cut = faults.clone();
    let mut directions = JoinSet::new();
    directions.spawn(direction(client_rx, server_tx, faults.clone(), false));
    directions.spawn(direction(server_rx, client_tx, faults, true));
    tokio::select! {
        _ = directions.join_next() => {}
        _ = cut.wait_for(|f| f.cuts != born) => {}
    }
    // dropping the set aborts both directions and closes the sockets
}

/// One direction: a reader stamps each chunk, a writer sends it once its
/// latency has passed (and, for replies, while they are not held).
async fn direction(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    replies: bool,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    // the reader ends at EOF (the writer then drains what is queued) or
    // when the writer is gone; the writer when the peer is gone
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            let latency = faults.borrow().latency;
            tokio::time::sleep_until(read_at + latency).await;
            if replies && faults.wait_for(|f| !f.hold_replies).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
