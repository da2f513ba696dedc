//! Helpers of the etcd watch tests: the shared test cluster (`TITO_TEST_ETCD` or the
//! `target/etcd.env` that `scripts/start-etcd.sh` writes), private clusters for tests
//! that kill members or compact, and restoring a backup into a memory engine.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use tito_backup::{BackupConfig, Repository};
use tito_capture::scan_backed_up;
use tito_catalog::Target;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, RestoreError, RestoreOptions, restore};
use tito_store::Store;

/// Keys and values.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

const HOW: &str = "no etcd test cluster: run scripts/start-etcd.sh (it writes target/etcd.env), \
                   or set TITO_TEST_ETCD=host:port,host:port,...";

/// The shared test cluster's endpoints.
pub fn shared_endpoints() -> Vec<String> {
    let from_env = std::env::var("TITO_TEST_ETCD")
        .ok()
        .filter(|v| !v.is_empty());
    let endpoints = from_env.or_else(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/etcd.env");
        std::fs::read_to_string(path).ok().and_then(|text| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == "TITO_TEST_ETCD")
                .map(|(_, v)| v.trim().trim_matches('\'').to_string())
        })
    });
    endpoints
        .unwrap_or_else(|| panic!("{HOW}"))
        .split(',')
        .map(str::to_string)
        .collect()
}

/// `state` as text, for readable assertion failures.
pub fn text(state: &State) -> BTreeMap<String, String> {
    state
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// Log to stderr as `RUST_LOG` says (default: this crate's warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("tito_etcd_watch=info,tito_backup=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A unique key prefix for one test.
pub fn unique_prefix(test: &str) -> String {
    format!("tito-watch-test/{test}/{:016x}/", rand::random::<u64>())
}

/// Backup settings that make many small objects and ship often.
pub fn small_config() -> BackupConfig {
    BackupConfig {
        segment_max_records: 16,
        segment_max_bytes: 4096,
        chunk_target_bytes: 2048,
        ship_interval: Duration::from_millis(50),
        ..BackupConfig::default()
    }
}

/// `etcdctl get --prefix --rev=N`, through the client.
pub async fn source_at(client: &mut Client, prefix: &str, rev: u64) -> State {
    let resp = client
        .kv_client()
        .max_decoding_message_size(256 << 20)
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_revision(rev as i64)),
        )
        .await
        .expect("get --prefix --rev");
    resp.kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect()
}

/// Restore the repository in `store` to `target` into a fresh memory engine and read its
/// keyspace back.
pub async fn restore_state(store: &Arc<dyn Store>, target: Target) -> Result<State, RestoreError> {
    let repo = Repository::open(store.clone()).await?;
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    restore(
        &repo,
        engine.clone(),
        &RestoreOptions::new(target),
        &NoProgress,
    )
    .await?;
    let view = engine.read_view().await.expect("view");
    let mut out = State::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = scan_backed_up(view.as_ref(), after.as_deref(), 512)
            .await
            .expect("scan");
        let done = page.len() < 512;
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// `--max-txn-ops` of private clusters.
pub const PRIVATE_MAX_TXN_OPS: usize = 4096;
/// `--max-request-bytes` of private clusters.
pub const PRIVATE_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// A private 3-member cluster on its own ports and data directory, for tests that kill
/// members or compact. Its members are killed when it is dropped.
pub struct PrivateCluster {
    pub dir: tempfile::TempDir,
    pub base: u16,
    members: Vec<Option<Child>>,
}

impl PrivateCluster {
    /// Start a cluster whose member `n` (0..3) serves clients on `base + 10 * (n + 1)`.
    pub async fn start(base: u16) -> PrivateCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = PrivateCluster {
            dir,
            base,
            members: vec![None, None, None],
        };
        for n in 0..3 {
            c.start_member(n);
        }
        c.wait_healthy().await;
        c
    }

    fn client_port(&self, n: usize) -> u16 {
        self.base + 10 * (n as u16 + 1)
    }

    /// Member `n`'s client endpoint.
    pub fn endpoint(&self, n: usize) -> String {
        format!("127.0.0.1:{}", self.client_port(n))
    }

    /// Every member's endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        (0..3).map(|n| self.endpoint(n)).collect()
    }

    /// The member serving `endpoint`.
    pub fn member_of(&self, endpoint: &str) -> usize {
        (0..3)
            .find(|&n| self.endpoint(n) == endpoint)
            .expect("a member's endpoint")
    }

    /// Start (or restart on its data) member `n`.
    pub fn start_member(&mut self, n: usize) {
        let peers: Vec<String> = (0..3)
            .map(|m| format!("p{m}=http://127.0.0.1:{}", self.client_port(m) + 1))
            .collect();
        let data: PathBuf = self.dir.path().join(format!("p{n}.data"));
        let state = if data.join("member").exists() {
            "existing"
        } else {
            "new"
        };
        let log = std::fs::File::create(self.dir.path().join(format!("p{n}.log"))).expect("log");
        let child = Command::new("etcd")
            .args([
                "--name",
                &format!("p{n}"),
                "--data-dir",
                data.to_str().expect("utf-8"),
                "--listen-client-urls",
                &format!("http://{}", self.endpoint(n)),
                "--advertise-client-urls",
                &format!("http://{}", self.endpoint(n)),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.client_port(n) + 1),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", self.client_port(n) + 1),
                "--initial-cluster",
                &peers.join(","),
                "--initial-cluster-token",
                &format!("tito-watch-{}", self.base),
                "--initial-cluster-state",
                state,
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                // The shared test cluster's limits (scripts/start-etcd.sh).
                "--max-txn-ops",
                &PRIVATE_MAX_TXN_OPS.to_string(),
                "--max-request-bytes",
                &PRIVATE_MAX_REQUEST_BYTES.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (apt-get install etcd-server; scripts/start-etcd.sh installs it)");
        self.members[n] = Some(child);
    }

    /// SIGKILL member `n` (its data stays).
    pub fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.members[n].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait until every running member answers.
    pub async fn wait_healthy(&self) {
        for n in 0..3 {
            if self.members[n].is_none() {
                continue;
            }
            let ep = self.endpoint(n);
            let mut ok = false;
            for _ in 0..150 {
                if let Ok(Ok(mut c)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    Client::connect([ep.as_str()], None),
                )
                .await
                {
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(1), c.get("health", None)).await
                    {
                        ok = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(ok, "private etcd member {n} at {ep} not healthy after 30 s");
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for n in 0..3 {
            self.kill(n);
        }
    }
}
