//! [`NatsCluster`]: three `nats-server -js` processes routed into one
//! cluster on loopback, for tests of replicated (R3) streams and leader
//! elections.

use std::time::Duration;

use tokio::time::Instant;

use super::{NatsServer, NatsServerBuilder};
use crate::testing::{TestingError, probe};

/// Nodes in a cluster.
const NODES: usize = 3;
/// How long [`NatsCluster::start`] and [`NatsCluster::wait_for_quorum`] wait
/// for the cluster to place a stream on every node.
const QUORUM_TIMEOUT: Duration = Duration::from_secs(60);

/// Three JetStream servers routed into one cluster on 127.0.0.1, each
/// with its own random client port, cluster port and store dir. Any node
/// can be killed and restarted (same ports, same store); the leaders of a
/// stream and of a consumer can be asked for. Dropping it kills every node
/// and removes their stores.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jetflow::topology::StreamSettings;
/// let mut cluster = jetflow::testing::NatsCluster::start().await?;
/// let mut settings = StreamSettings::default();
/// settings.replicas = 3;
/// let app = jetflow::App::new("t").url(cluster.url()).stream_settings(settings).start().await?;
/// if let Some(leader) = cluster.stream_leader("ORDER").await {
///     cluster.kill(leader).await?; // a new leader is elected among the other two
///     cluster.restart(leader).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three nodes with the binary [`NatsServer::start`] would use,
    /// and waits until a stream can be placed on all three.
    ///
    /// # Errors
    ///
    /// As [`NatsServerBuilder::start`]; [`TestingError::StartupTimeout`]
    /// if no stream can be placed on all three within 60 s.
    pub async fn start() -> Result<NatsCluster, TestingError> {
        let cluster_ports = (0..NODES)
            .map(|_| probe::free_port())
            .collect::<Result<Vec<u16>, _>>()?;
        let route = |p: u16| format!("nats://127.0.0.1:{p}");
        let mut nodes = Vec::with_capacity(NODES);
        for (i, port) in cluster_ports.iter().enumerate() {
            let routes: Vec<String> = cluster_ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| route(*p))
                .collect();
            let node = NatsServerBuilder::default()
                .args(["--cluster_name", "jetflow-test"])
                .arg("--cluster")
                .arg(route(*port))
                .arg("--routes")
                .arg(routes.join(","))
                .start()
                .await?;
            nodes.push(node);
        }
        let cluster = NatsCluster { nodes };
        cluster.wait_for_quorum().await?;
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated (as `NATS_URL` takes a
    /// cluster): a client reaches whichever is up.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i` (0, 1 or 2).
    ///
    /// # Panics
    ///
    /// If `i` is not a node.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// Kills node `i` (SIGKILL); the others elect new leaders for what it led.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::kill`].
    pub async fn kill(&mut self, i: usize) -> Result<(), TestingError> {
        self.nodes[i].kill().await
    }

    /// Starts node `i` again (same ports and store); it catches up with the
    /// others.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::restart`].
    pub async fn restart(&mut self, i: usize) -> Result<(), TestingError> {
        self.nodes[i].restart().await
    }

    /// The node that leads `stream` now, if one does and a node answers.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        let js = self.jetstream().await?;
        let info = js.get_stream(stream).await.ok()?.info().await.ok()?.clone();
        self.index_of(info.cluster?.leader?.as_str())
    }

    /// The node that leads the durable consumer `durable` of `stream` now.
    pub async fn consumer_leader(&self, stream: &str, durable: &str) -> Option<usize> {
        let js = self.jetstream().await?;
        let info = js
            .get_stream_no_info(stream)
            .await
            .ok()?
            .consumer_info(durable)
            .await
            .ok()?;
        self.index_of(info.cluster?.leader?.as_str())
    }

    /// Waits until the cluster can place a stream on all three nodes (after
    /// a start or a restart), at most 60 s: a throwaway R3 stream is
    /// created and deleted.
    ///
    /// # Errors
    ///
    /// [`TestingError::StartupTimeout`] naming the first node's port.
    pub async fn wait_for_quorum(&self) -> Result<(), TestingError> {
        let deadline = Instant::now() + QUORUM_TIMEOUT;
        loop {
            if self.place_a_probe().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestingError::StartupTimeout {
                    port: self.nodes[0].port(),
                    timeout: QUORUM_TIMEOUT,
                    log_tail: format!(
                        "the cluster could not place a stream on its {NODES} nodes; the log of node 0:\n{}",
                        self.nodes[0].log.excerpt()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates and deletes an R3 stream; `true` if both worked.
    async fn place_a_probe(&self) -> bool {
        use async_nats::jetstream::stream::{Config, StorageType};
        let Some(js) = self.jetstream().await else {
            return false;
        };
        let probe = Config {
            name: "JETFLOW_CLUSTER_PROBE".into(),
            subjects: vec!["jetflow-cluster-probe".into()],
            num_replicas: NODES,
            storage: StorageType::Memory,
            ..Config::default()
        };
        js.create_stream(probe).await.is_ok()
            && js.delete_stream("JETFLOW_CLUSTER_PROBE").await.is_ok()
    }

    fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name() == server_name)
    }

    /// A JetStream context on the nodes that are up (`None`: none is).
    async fn jetstream(&self) -> Option<async_nats::jetstream::Context> {
        let up: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .map(NatsServer::url)
            .collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(up)
            .await
            .ok()?;
        let mut js = async_nats::jetstream::new(client);
        js.set_timeout(Duration::from_secs(2));
        Some(js)
    }
}
