//! Failover. Members are killed and restarted with `scripts/start-etcd.sh kill|start N`,
//! so this needs the cluster that script started. The tests of this file take turns
//! (one lock), and a killed member is restarted even when a test fails half-way.
//!
//! - `commits_survive_member_failures`: with stamped read-modify-write transactions
//!   running, kill the leader, then a follower, and bring each back. Commits keep
//!   succeeding through the other endpoints; no acknowledged commit is lost, none applies
//!   twice, and the log of stamped records stays dense.
//! - `continuous_backup_survives_member_failures`: the same with continuous backup and a
//!   Tito workload (queue included): backup keeps shipping, nothing committed is lost, and
//!   restores equal the oracle.

mod common;
#[path = "../../restore/tests/common/mod.rs"]
mod restore_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use restore_common::pitr::{self, Effect, Oracle};
use restore_common::{restore_into, state_of};
use tito_backup::{BackupConfig, BackupService};
use tito_capture::{CaptureError, Db};
use tito_catalog::Target;
use tito_engine::fault::{FaultEngine, FaultPlan};
use tito_engine::{Engine, EngineError, KeyRange};
use tito_queue::{Event, QueueError, QueuedEvent};
use tito_store::Store;
use tito_store::memory::MemoryStore;
use tokio::sync::watch;
use tokio::time::Instant;

/// Held by a test while it kills members: two tests killing one member each would stop
/// the cluster's quorum.
static MEMBERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Members a test killed; whatever is still down when it ends (even by a panic) is
/// restarted so the shared cluster is whole again.
#[derive(Default)]
struct Killed(Vec<String>);

impl Killed {
    fn kill(&mut self, member: &str) {
        self.0.push(member.to_string());
        script(&["kill", member]);
    }

    /// Restart `member` and wait until it is healthy.
    fn start(&mut self, member: &str) {
        script(&["start", member]);
        self.0.retain(|m| m != member);
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        for member in self.0.drain(..) {
            // No assertion here: this may run while a failed test unwinds.
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
            let _ = Command::new("bash")
                .arg(root.join("scripts/start-etcd.sh"))
                .args(["start", member.as_str()])
                .current_dir(&root)
                .output();
        }
    }
}

/// All three members healthy.
fn cluster_whole() -> bool {
    let status = script(&["status"]);
    status.matches("healthy").count() - status.matches("unhealthy").count() == 3
}

fn script(args: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/start-etcd.sh"))
        .args(args)
        .current_dir(&root)
        .output()
        .expect("run scripts/start-etcd.sh");
    assert!(
        out.status.success(),
        "scripts/start-etcd.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One writer's step: increment its counter key and append a stamped log record.
/// Returns true once the increment is known to be committed.
async fn step(engine: &dyn Engine, key: &[u8], expect: u64) -> bool {
    let attempt = async {
        let tx = engine.begin().await?;
        let cur = tx
            .get(key)
            .await?
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])));
        assert_eq!(
            cur,
            expect,
            "writer {:?}: acknowledged commit lost or applied twice",
            String::from_utf8_lossy(key)
        );
        tx.put(key.to_vec(), (cur + 1).to_be_bytes().to_vec())?;
        tx.put_stamped(b"log/".to_vec(), key.to_vec())?;
        tx.commit().await
    };
    match attempt.await {
        Ok(_) => true,
        Err(EngineError::CommitUnknown(_)) => {
            // Resolve by reading the writer's own key back (reads retry across failover).
            loop {
                let Ok(tx) = engine.begin().await else {
                    continue;
                };
                match tx.get(key).await {
                    Ok(v) => {
                        let now =
                            v.map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])));
                        assert!(now == expect || now == expect + 1, "counter jumped");
                        return now == expect + 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        // Conflicts and transient read failures: try again.
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_member_failures() {
    let _members = MEMBERS.lock().await;
    let mut killed = Killed::default();
    let engine: Arc<dyn Engine> = common::engine().await;
    script(&[]); // the whole cluster is up (reused)
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3u32 {
        let (engine, stop, acked) = (engine.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let key = format!("w/{w}").into_bytes();
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if step(engine.as_ref(), &key, done).await {
                    done += 1;
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            done
        }));
    }
    let progress = |label: &'static str| {
        let acked = acked.clone();
        async move {
            let before = acked.load(Ordering::Relaxed);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while acked.load(Ordering::Relaxed) < before + 10 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no progress {label}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    progress("before any failure").await;
    let leader = script(&["leader"]);
    killed.kill(&leader);
    progress("with the old leader dead").await;
    killed.start(&leader);
    progress("after the old leader came back").await;
    let follower = if leader == "1" { "2" } else { "1" };
    killed.kill(follower);
    progress("with a follower dead").await;
    killed.start(follower);
    progress("after the follower came back").await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for (w, t) in writers.into_iter().enumerate() {
        let done = t.await.expect("writer");
        let tx = engine.begin().await.unwrap();
        let v = tx
            .get(format!("w/{w}").as_bytes())
            .await
            .unwrap()
            .map(|v| u64::from_be_bytes(v.try_into().unwrap()));
        assert_eq!(
            v.unwrap_or(0),
            done,
            "writer {w}: committed state differs from acknowledged commits"
        );
        total += done;
    }
    let tx = engine.begin().await.unwrap();
    let log = tx
        .scan(&KeyRange::prefix(b"log/"), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        log.len() as u64,
        total,
        "one log record per committed transaction"
    );
    for (i, (k, _)) in log.iter().enumerate() {
        let version = u64::from_be_bytes(k[4..12].try_into().unwrap());
        assert_eq!(version, i as u64 + 1, "log versions not dense");
    }
    assert!(cluster_whole());
}

/// Liveness bound of every wait below: a hang guard, not a performance assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn row(w: u8, i: u32) -> Vec<u8> {
    let mut k = b"row/".to_vec();
    k.push(w);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn lsn_of(row_value: &[u8]) -> u64 {
    u64::from_be_bytes(row_value[..8].try_into().expect("row value holds its LSN"))
}

fn event(w: u8, i: u32) -> QueuedEvent {
    let event = Event::new(
        format!("w{w}-{i:05}"),
        format!("key-{}", (u32::from(w) * 7 + i) % 5),
        vec![w, i as u8],
        1_000 + u64::from(i),
        1_000 + u64::from(i),
    );
    QueuedEvent {
        partition: tito_queue::partition_for(&event.key, pitr::PARTITIONS).unwrap(),
        event,
    }
}

/// What transaction `i` of writer `w` writes when it commits as LSN `lsn`. Every
/// transaction increments one shared counter, so the counter it read tells its place in
/// the commit order, which is its LSN: an outcome found by reading back comes with it.
fn effects(w: u8, i: u32, lsn: u64) -> Vec<Effect> {
    let mut row_value = lsn.to_be_bytes().to_vec();
    row_value.extend_from_slice(&[w; 24]);
    let mut out = vec![
        Effect::Put(row(w, i), row_value),
        Effect::Put(b"total".to_vec(), lsn.to_be_bytes().to_vec()),
        Effect::Put(
            [b"cursor/".as_slice(), &[w]].concat(),
            i.to_be_bytes().to_vec(),
        ),
        Effect::Publish(event(w, i).event),
    ];
    if i >= 3 {
        out.push(Effect::Ack(event(w, i - 3)));
    }
    if i % 10 == 9 {
        out.push(Effect::DelRange(KeyRange::new(
            row(w, i - 9),
            row(w, i - 4),
        )));
    }
    out
}

/// One attempt at transaction `i` of writer `w` (conflicts retried). Returns its LSN
/// and the stamp of this commit; no stamp means an earlier attempt whose outcome was
/// unknown had committed it (it is never applied twice).
async fn attempt(db: &Db, w: u8, i: u32) -> Result<(u64, Option<u64>), QueueError> {
    db.transaction_lsn(|txn| async move {
        if let Some(v) = txn.get(&row(w, i)).await? {
            return Ok(lsn_of(&v));
        }
        let total = txn.get(b"total").await?.map_or(0, |v| {
            u64::from_be_bytes(v.try_into().expect("8-byte counter"))
        });
        for e in effects(w, i, total + 1) {
            pitr::apply_effect(&txn, &e).await?;
        }
        Ok(total + 1)
    })
    .await
}

/// After an unknown commit outcome: is transaction `i` of writer `w` there, and as which
/// LSN? Reads ride out the failover; a commit is whole or absent, never half (the final
/// comparison with the oracle checks every effect).
async fn read_back(db: &Db, w: u8, i: u32) -> Option<u64> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = async { db.begin().await?.get(&row(w, i)).await }.await;
        match got {
            Ok(v) => return v.map(|v| lsn_of(&v)),
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot read back: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A committed transaction: (LSN, writer, index, acknowledged by its commit).
type Committed = (u64, u8, u32, bool);

/// Counts of unknown commit outcomes, by what reading back found.
#[derive(Default)]
struct Unknown {
    present: AtomicU64,
    absent: AtomicU64,
}

/// Run transactions 0, 1, ... of writer `w` until `stop`; returns those committed.
async fn writer(
    db: Db,
    w: u8,
    stop: Arc<AtomicBool>,
    newest: Arc<AtomicU64>,
    unknown: Arc<Unknown>,
) -> Vec<Committed> {
    let mut done = Vec::new();
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let committed = match attempt(&db, w, i).await {
            Ok((lsn, stamp)) => {
                if let Some(stamp) = stamp {
                    assert_eq!(stamp, lsn, "LSN differs from the commit-order position");
                }
                Some((lsn, stamp.is_some()))
            }
            Err(QueueError::Capture(CaptureError::Engine(EngineError::CommitUnknown(_)))) => {
                let found = read_back(&db, w, i).await;
                let count = match found {
                    Some(_) => &unknown.present,
                    None => &unknown.absent,
                };
                count.fetch_add(1, Ordering::Relaxed);
                found.map(|lsn| (lsn, false))
            }
            Err(_) => {
                // Nothing was written (injected failure, conflicts exhausted, reads
                // failing): the same transaction is tried again.
                tokio::time::sleep(Duration::from_millis(5)).await;
                None
            }
        };
        if let Some((lsn, acked)) = committed {
            done.push((lsn, w, i, acked));
            newest.fetch_max(lsn, Ordering::Relaxed);
            i += 1;
        }
    }
    done
}

/// With continuous backup and a write load running, kill a follower, then the leader,
/// and bring each back. Backup keeps shipping through every phase; every LSN is one
/// committed transaction (acknowledged, or found by reading back after an unknown
/// outcome), whole; the source and restores to the latest point and to LSNs around the
/// failures equal the oracle.
///
/// Real failovers leave a commit's outcome unknown only now and then, so the writers also
/// go through a fault-injecting wrapper that reports some commits as unknown, applied
/// or not, until reading back has found both cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_backup_survives_member_failures() {
    let _members = MEMBERS.lock().await;
    let mut killed = Killed::default();
    script(&[]);
    let engine: Arc<dyn Engine> = common::engine().await;
    let db = Db::open(engine.clone()).await.expect("open db");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let config = BackupConfig {
        segment_max_records: 40,
        ship_interval: Duration::from_millis(50),
        snapshot_every_records: Some(60),
        ..BackupConfig::default()
    };
    let service = Arc::new(
        BackupService::new(db.clone(), store.clone(), config)
            .await
            .expect("backup service"),
    );
    let (stop_backup, stopped) = watch::channel(false);
    let backup = tokio::spawn({
        let service = service.clone();
        async move { service.run_continuous(stopped).await }
    });
    // The first round snapshots the empty database: every LSN is restorable from it.
    let deadline = Instant::now() + PATIENCE;
    while service.stats().snapshot().snapshots == 0 {
        assert!(Instant::now() < deadline, "no first snapshot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let newest = Arc::new(AtomicU64::new(0));
    let unknown = Arc::new(Unknown::default());
    let plan = FaultPlan::new();
    let faulty = Db::new(Arc::new(FaultEngine::new(engine.clone(), plan.clone())));
    let writers: Vec<_> = (0..3u8)
        .map(|w| {
            let task = writer(
                faulty.clone(),
                w,
                stop.clone(),
                newest.clone(),
                unknown.clone(),
            );
            tokio::spawn(task)
        })
        .collect();
    let injector = tokio::spawn({
        let stop = stop.clone();
        async move {
            for n in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
                // A call a few ahead; when it is not a commit it just fails (retried).
                let at = plan.calls() + 1 + n % 4;
                if n % 2 == 0 {
                    plan.commit_unknown_at(at);
                } else {
                    plan.fail_at(at, || {
                        EngineError::CommitUnknown("injected: reply lost".into())
                    });
                }
            }
        }
    });
    // Commits go on, and the shipper ships everything committed before the phase began.
    let progress = |label: &'static str| {
        let (newest, service) = (newest.clone(), service.clone());
        async move {
            let from = newest.load(Ordering::Relaxed);
            let deadline = Instant::now() + PATIENCE;
            while newest.load(Ordering::Relaxed) < from + 20
                || service.stats().snapshot().shipped_lsn < from
            {
                assert!(
                    Instant::now() < deadline,
                    "no progress {label}: newest LSN {} (from {from}), stats {:?}",
                    newest.load(Ordering::Relaxed),
                    service.stats().snapshot()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            newest.load(Ordering::Relaxed)
        }
    };
    let mut marks = vec![progress("before any failure").await];
    let leader = script(&["leader"]);
    let follower = if leader == "1" { "2" } else { "1" };
    killed.kill(follower);
    marks.push(progress("with a follower dead").await);
    killed.start(follower);
    marks.push(progress("after the follower came back").await);
    let leader = script(&["leader"]);
    killed.kill(&leader);
    marks.push(progress("with the leader dead").await);
    killed.start(&leader);
    marks.push(progress("after the leader came back").await);
    let deadline = Instant::now() + PATIENCE;
    while unknown.present.load(Ordering::Relaxed) == 0
        || unknown.absent.load(Ordering::Relaxed) == 0
    {
        assert!(
            Instant::now() < deadline,
            "reading back never found both outcomes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    injector.await.expect("injector");
    let mut committed: Vec<Committed> = Vec::new();
    for w in writers {
        committed.extend(w.await.expect("writer"));
    }
    stop_backup.send(true).expect("backup running");
    backup
        .await
        .expect("backup task")
        .expect("continuous backup ends cleanly, having shipped the rest");
    assert!(cluster_whole());

    committed.sort();
    let n = committed.len() as u64;
    let lsns: Vec<u64> = committed.iter().map(|c| c.0).collect();
    assert_eq!(
        lsns,
        (1..=n).collect::<Vec<_>>(),
        "every LSN is exactly one committed transaction"
    );
    let stats = service.stats().snapshot();
    assert_eq!(stats.shipped_lsn, n, "the shipper shipped every record");
    let found = committed.iter().filter(|c| !c.3).count() as u64;
    assert_eq!(found, unknown.present.load(Ordering::Relaxed));
    eprintln!(
        "{n} transactions committed ({found} found by reading back, {} unknown outcomes not applied); backup stats {stats:?}",
        unknown.absent.load(Ordering::Relaxed)
    );

    // Restore targets: latest, the LSNs reached at each phase, and two more.
    let mut targets: BTreeSet<u64> = marks.into_iter().filter(|l| *l > 0).collect();
    targets.insert(n);
    targets.insert(1 + rand::random::<u64>() % n);
    targets.insert(1 + rand::random::<u64>() % n);
    let mut oracle = Oracle::new().await;
    let mut expected: BTreeMap<u64, restore_common::State> = BTreeMap::new();
    for &(lsn, w, i, _) in &committed {
        oracle
            .apply_keeping(Some(lsn), 0, &effects(w, i, lsn), false)
            .await;
        if targets.contains(&lsn) {
            expected.insert(lsn, oracle.current().await);
        }
    }
    assert_eq!(
        state_of(engine.as_ref()).await,
        oracle.current().await,
        "source differs from the oracle (a commit lost, doubled or split)"
    );
    for lsn in targets {
        let target = if lsn == n {
            Target::Latest
        } else {
            Target::Lsn(lsn)
        };
        let (result, state) = restore_into(&store, common::engine().await, target.clone())
            .await
            .unwrap_or_else(|e| panic!("restore to {target:?}: {e}"));
        assert_eq!(result.restored_lsn, lsn, "{target:?}");
        assert_eq!(
            state, expected[&lsn],
            "restore to {target:?} differs from the oracle at LSN {lsn}"
        );
    }
}
