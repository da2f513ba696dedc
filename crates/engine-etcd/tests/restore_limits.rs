//! Restore into an empty etcd cluster writes in batches that fit etcd's limits.
//!
//! The shared test cluster runs with raised limits, so this test starts its own
//! single-member cluster with etcd's defaults (`--max-txn-ops` 128, `--max-request-bytes`
//! 1.5 MiB) and an engine configured with the same defaults. Generated histories mix
//! large values (hundreds of KiB, several per snapshot chunk and log segment), small
//! writes, range deletes, and a burst of many tiny transactions right after a range
//! delete (whose keys split the delete into many etcd operations when replayed in one
//! batch). Every record fits the limits on its own, so a restore of latest must succeed
//! and equal the source; a batch that does not fit fails the restore.

mod common;
#[path = "../../restore/tests/common/mod.rs"]
mod restore_common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use restore_common::state_of;
use tito_backup::{BackupConfig, BackupService, Repository};
use tito_capture::Db;
use tito_catalog::Target;
use tito_engine::memory::MemoryEngine;
use tito_engine::{Engine, KeyRange};
use tito_engine_etcd::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, EtcdConfig, EtcdEngine};
use tito_restore::{NoProgress, RestoreOptions, restore};
use tito_store::Store;
use tito_store::memory::MemoryStore;

/// A single-member etcd with default limits, on free loopback ports, killed on drop.
struct SoloEtcd {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl SoloEtcd {
    fn start() -> SoloEtcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "solo", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("solo={peer_url}")])
            .args(["--logger", "zap", "--log-outputs"])
            .arg(dir.path().join("etcd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/start-etcd.sh installs it)");
        SoloEtcd {
            child,
            endpoint: format!("127.0.0.1:{client}"),
            dir,
        }
    }

    /// An engine on a fresh namespace, limits left at etcd's defaults (as the server's).
    async fn engine(&self) -> EtcdEngine {
        let namespace = format!("limits/{:016x}", rand::random::<u64>());
        let mut config = EtcdConfig::new(vec![self.endpoint.clone()], namespace);
        config.connect_timeout = Duration::from_millis(500);
        assert_eq!(
            (config.max_txn_ops, config.max_request_bytes),
            (DEFAULT_MAX_TXN_OPS, DEFAULT_MAX_REQUEST_BYTES)
        );
        let started = Instant::now();
        loop {
            match EtcdEngine::with_config(config.clone()).await {
                Ok(e) => return e,
                // Startup, not a timed assertion: give up only if etcd never comes up.
                Err(_) if started.elapsed() < Duration::from_secs(60) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!(
                    "private etcd at {} did not come up: {e}\n{}",
                    self.endpoint,
                    log_tail(&self.dir.path().join("etcd.log"))
                ),
            }
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for SoloEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
enum W {
    Put(u8, usize),
    DelRange(u8, u8),
}

/// Key and value bytes one generated transaction may write: its record then fits one
/// etcd request of the default size with room for the engine's overhead.
const TXN_BUDGET: usize = 1_100_000;

fn txn() -> impl Strategy<Value = Vec<W>> {
    let write = prop_oneof![
        5 => (any::<u8>(), 0usize..64).prop_map(|(k, n)| W::Put(k, n)),
        3 => (any::<u8>(), 100_000usize..600_000).prop_map(|(k, n)| W::Put(k, n)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| W::DelRange(a.min(b), a.max(b))),
    ];
    proptest::collection::vec(write, 1..8).prop_map(|ws| {
        let mut used = 0;
        ws.into_iter()
            .filter(|w| match w {
                W::Put(_, n) if used + n > TXN_BUDGET => false,
                W::Put(_, n) => {
                    used += n;
                    true
                }
                W::DelRange(..) => true,
            })
            .collect()
    })
}

fn key(n: u8) -> Vec<u8> {
    vec![b'k', n, 0xFF]
}

fn value(n: u8, len: usize, salt: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ salt ^ u64::from(n)) as u8)
        .collect()
}

async fn commit(db: &Db, ws: &[W], salt: u64) {
    let ws = Arc::new(ws.to_vec());
    db.transaction(|txn| {
        let ws = ws.clone();
        async move {
            for w in ws.iter() {
                match w {
                    W::Put(k, n) => txn.put(key(*k), value(*k, *n, salt))?,
                    W::DelRange(a, b) => txn.delete_range(&KeyRange::new(key(*a), key(*b)))?,
                }
            }
            Ok::<_, tito_capture::CaptureError>(())
        }
    })
    .await
    .expect("source commit");
}

/// History: `before` (shipped, then a snapshot), `after`, then a range delete of every
/// key followed by one tiny transaction per key, all in the log.
async fn case(solo: &SoloEtcd, before: Vec<Vec<W>>, after: Vec<Vec<W>>) {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let db = Db::open(engine.clone()).await.unwrap();
    let service = BackupService::new(db.clone(), store.clone(), BackupConfig::default())
        .await
        .unwrap();
    let mut salt = 0;
    for ws in &before {
        salt += 1;
        commit(&db, ws, salt).await;
    }
    let snap = service.run_backup().await.unwrap();
    assert!(snap.snapshot.is_some(), "the first round takes a snapshot");
    for ws in &after {
        salt += 1;
        commit(&db, ws, salt).await;
    }
    commit(&db, &[W::DelRange(0, 255)], 0).await;
    for k in 0..(DEFAULT_MAX_TXN_OPS + 4) as u8 {
        salt += 1;
        commit(&db, &[W::Put(k, 8)], salt).await;
    }
    service.ship_log().await.unwrap();
    let source = state_of(engine.as_ref()).await;

    let target: Arc<dyn Engine> = Arc::new(solo.engine().await);
    let repo = Repository::open(store).await.unwrap();
    let result = restore(
        &repo,
        target.clone(),
        &RestoreOptions::new(Target::Latest),
        &NoProgress,
    )
    .await
    .unwrap_or_else(|e| panic!("restore into etcd with default limits failed: {e}"));
    assert!(result.records_replayed > DEFAULT_MAX_TXN_OPS as u64);
    assert_eq!(state_of(target.as_ref()).await, source);
}

#[test]
fn restore_batches_fit_default_etcd_limits() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let solo = SoloEtcd::start();
    // Each case restores into etcd: few cases, and a bounded shrink on failure.
    let mut runner = TestRunner::new(Config {
        cases: 4,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let history = (
        proptest::collection::vec(txn(), 1..20),
        proptest::collection::vec(txn(), 1..20),
    );
    let outcome = runner.run(&history, |(before, after)| {
        rt.block_on(case(&solo, before, after));
        Ok(())
    });
    drop(solo);
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
