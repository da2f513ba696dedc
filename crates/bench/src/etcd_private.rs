//! A private etcd cluster for the etcd phase (`--etcd-private`): [`PRIVATE_MEMBERS`]
//! `etcd` processes on free 127.0.0.1 ports, with data directories in a temp dir, so the
//! phase's figures never depend on what a shared cluster's earlier users left in its
//! database. The members are killed and their data removed when the [`PrivateCluster`]
//! is dropped, so a failed or panicking phase stops them too.

use std::fs::File;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tito_engine_etcd::endpoint_url;

use crate::error::{BenchError, Result, io_err};

/// Members of a private cluster: as many as the test cluster of `scripts/start-etcd.sh`,
/// so every write still goes through Raft to three members.
pub const PRIVATE_MEMBERS: usize = 3;

/// How long the members get to elect a leader and answer reads.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private cluster; dropping it kills its members and deletes their data.
pub struct PrivateCluster {
    /// Client endpoints, `127.0.0.1:port`, one per member.
    pub endpoints: Vec<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// Start [`PRIVATE_MEMBERS`] members accepting requests of up to `max_request_bytes`
    /// and txns of up to `max_txn_ops` operations (the limits the engine's URL names),
    /// and wait until each answers a linearizable read. `phase` names errors.
    pub async fn start(
        phase: &'static str,
        max_request_bytes: usize,
        max_txn_ops: usize,
    ) -> Result<PrivateCluster> {
        let dir = tempfile::Builder::new()
            .prefix("tito-bench-etcd-cluster-")
            .tempdir()
            .map_err(io_err(phase, "temp dir"))?;
        // Hold every listener until all ports are chosen, so no two are the same.
        let listeners = (0..2 * PRIVATE_MEMBERS)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_err(phase, "a free port on 127.0.0.1"))?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_err(phase, "a free port on 127.0.0.1"))?;
        drop(listeners);
        let (client_ports, peer_ports) = ports.split_at(PRIVATE_MEMBERS);
        let initial_cluster = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("p{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = PrivateCluster {
            endpoints: client_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect(),
            children: Vec::new(),
            dir,
        };
        for i in 0..PRIVATE_MEMBERS {
            let client = format!("http://127.0.0.1:{}", client_ports[i]);
            let peer = format!("http://127.0.0.1:{}", peer_ports[i]);
            let log_path = cluster.log(i);
            let log = File::create(&log_path).map_err(io_err(phase, log_path.clone()))?;
            let child = Command::new("etcd")
                .arg("--name")
                .arg(format!("p{i}"))
                .arg("--data-dir")
                .arg(cluster.dir.path().join(format!("p{i}.data")))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-token", "tito-bench-private"])
                .args(["--initial-cluster-state", "new"])
                .args(["--max-request-bytes", &max_request_bytes.to_string()])
                .args(["--max-txn-ops", &max_txn_ops.to_string()])
                // As scripts/start-etcd.sh: a loopback cluster elects fast.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(io_err(phase, "etcd (scripts/start-etcd.sh installs it)"))?;
            cluster.children.push(child);
        }
        cluster.wait_ready(phase).await?;
        Ok(cluster)
    }

    /// The log file of member `i`.
    fn log(&self, i: usize) -> String {
        self.dir
            .path()
            .join(format!("p{i}.log"))
            .display()
            .to_string()
    }

    /// Wait until every member answers a linearizable read (a leader is elected and the
    /// member follows it); fail early when a member exits.
    async fn wait_ready(&mut self, phase: &'static str) -> Result<()> {
        let started = Instant::now();
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        for i in 0..self.endpoints.len() {
            loop {
                if let Ok(Some(status)) = self.children[i].try_wait() {
                    return Err(self.failed(phase, i, format!("member exited with {status}")));
                }
                let ready = async {
                    let mut c = etcd_client::Client::connect(
                        [endpoint_url(&self.endpoints[i])],
                        Some(options.clone()),
                    )
                    .await?;
                    c.get("tito-bench-ready", None).await
                }
                .await;
                match ready {
                    Ok(_) => break,
                    Err(e) if started.elapsed() > START_TIMEOUT => {
                        return Err(self.failed(
                            phase,
                            i,
                            format!("not ready after {} s: {e}", START_TIMEOUT.as_secs()),
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }

    /// An error about member `i`, with the last line of its log.
    fn failed(&self, phase: &'static str, i: usize, what: String) -> BenchError {
        let log = std::fs::read_to_string(self.log(i)).unwrap_or_default();
        let last = log.trim().lines().last().unwrap_or("(empty log)");
        BenchError::Cluster {
            phase,
            detail: format!("member {} at {}: {what}; log: {last}", i, self.endpoints[i]),
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}
