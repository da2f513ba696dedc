//! Tito's side: full snapshot and restore of the dataset, log replay rate, and the cost of
//! shipping the same changes from a small and a large database.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tito_backup::{BackupConfig, BackupService};
use tito_capture::Db;
use tito_catalog::Target;
use tito_engine::Engine;
use tito_restore::{Progress, RestoreOptions, RestoreResult};
use tito_store::Store;

use crate::capture::median;
use crate::child::{self, ChildCommand, ChildSpec};
use crate::dataset::{Dataset, Rng, digest};
use crate::env::BenchEnv;
use crate::error::{BenchError, Ctx, Result};
use crate::memory::{PeakMemory, PeakMeter};
use crate::report::Timed;

/// Tito's full snapshot and restore of the dataset.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotRestore {
    /// `BackupService::snapshot`: pairs, raw bytes, wall time.
    pub snapshot: Timed,
    /// Bytes the snapshot uploaded (chunks and manifest).
    pub snapshot_bytes: u64,
    /// Chunks written.
    pub chunks: u64,
    /// zstd level of the chunks.
    pub level: i32,
    /// Peak memory of the snapshot.
    pub snapshot_memory: Option<PeakMemory>,
    /// `tito_restore::restore` into a fresh engine (plan, verify, load, replay).
    pub restore: Timed,
    /// Peak memory of the restore.
    pub restore_memory: Option<PeakMemory>,
    /// CPU seconds of the snapshot, when it ran in a process of its own (opening the
    /// engine and store included).
    pub snapshot_cpu_secs: Option<f64>,
    /// CPU seconds of the restore, when it ran in a process of its own.
    pub restore_cpu_secs: Option<f64>,
}

/// Snapshot `source` into `store`, restore into `fresh`, and check the restored dataset
/// equals `expected` (the source's [`digest`]). Both run in this process.
pub async fn snapshot_restore(
    source: Arc<dyn Engine>,
    level: Option<i32>,
    expected: (u64, [u8; 32]),
    store: Arc<dyn Store>,
    fresh: Arc<dyn Engine>,
) -> Result<SnapshotRestore> {
    const PHASE: &str = "snapshot";
    let db = Db::open(source).await.ctx(PHASE)?;
    let service = BackupService::new(db, store, child::snapshot_config(level))
        .await
        .ctx(PHASE)?;

    let meter = PeakMeter::start();
    let snap = service.snapshot().await.ctx(PHASE)?;
    let snapshot_memory = meter.finish();
    let snapshot = Timed::new(
        snap.pairs,
        snap.raw_bytes,
        Duration::from_millis(snap.elapsed_ms),
    );

    let meter = PeakMeter::start();
    let (restored, took) = restore_latest(
        service.repository(),
        fresh.clone(),
        &tito_restore::NoProgress,
        "restore",
    )
    .await?;
    let restore = Timed::new(restored.state_entries_restored, snap.raw_bytes, took);
    let restore_memory = meter.finish();
    check_same("restore", expected, digest(fresh.as_ref()).await?)?;
    Ok(SnapshotRestore {
        snapshot,
        snapshot_bytes: snap.bytes,
        chunks: snap.chunks,
        level: child::snapshot_config(level).compression_level,
        snapshot_memory,
        restore,
        restore_memory,
        snapshot_cpu_secs: None,
        restore_cpu_secs: None,
    })
}

/// Snapshot the closed redb file `source` into the store at `store_url` in one child
/// process, restore it into a fresh file in another, and check the restored dataset
/// equals `expected`. Each peak memory figure is then its process's own.
pub async fn snapshot_restore_isolated(
    env: &BenchEnv,
    cmd: &ChildCommand,
    level: Option<i32>,
    source: PathBuf,
    store_url: String,
    expected: (u64, [u8; 32]),
) -> Result<SnapshotRestore> {
    let cache_bytes = env.cache_bytes();
    let snap = child::run(
        cmd,
        &ChildSpec::Snapshot {
            engine: source,
            store: store_url.clone(),
            cache_bytes,
            level,
        },
    )
    .await?;
    let target = env.fresh_file("snapshot-restore").ok_or_else(|| {
        BenchError::Options("a restore in a child process needs a redb engine".into())
    })?;
    let restored = child::run(
        cmd,
        &ChildSpec::Restore {
            engine: target.clone(),
            store: store_url,
            cache_bytes,
        },
    )
    .await?;
    let fresh = env.reopen(&target).await?;
    let got = digest(fresh.as_ref()).await;
    env.drop_engine(fresh).await;
    check_same("restore", expected, got?)?;
    Ok(SnapshotRestore {
        snapshot: snap.timed(),
        snapshot_bytes: snap.bytes,
        chunks: snap.chunks,
        level: child::snapshot_config(level).compression_level,
        snapshot_memory: snap.memory,
        restore: Timed {
            bytes: snap.raw_bytes,
            ..restored.timed()
        },
        restore_memory: restored.memory,
        snapshot_cpu_secs: snap.cpu_secs,
        restore_cpu_secs: restored.cpu_secs,
    })
}

/// Fail unless two (count, digest) pairs agree.
pub(crate) fn check_same(
    phase: &'static str,
    expected: (u64, [u8; 32]),
    got: (u64, [u8; 32]),
) -> Result<()> {
    if expected == got {
        return Ok(());
    }
    Err(BenchError::Mismatch {
        phase,
        detail: format!(
            "expected {} pairs (digest {}), restored {} pairs (digest {})",
            expected.0,
            hex(&expected.1[..8]),
            got.0,
            hex(&got.1[..8])
        ),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Log replay rate.
#[derive(Clone, Debug, Serialize)]
pub struct Replay {
    /// Records replayed.
    pub records: u64,
    /// Time of the restore's replay phase alone.
    pub replay_secs: f64,
    /// Wall time of the whole restore (plan, verify, replay).
    pub restore_secs: f64,
}

impl Replay {
    /// Records replayed per second of the replay phase.
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.replay_secs.max(1e-9)
    }
}

/// Notes when each restore phase started, so one phase can be timed alone.
#[derive(Default)]
struct PhaseClock(Mutex<Vec<(String, Instant)>>);

impl Progress for PhaseClock {
    fn phase(&self, name: &str, _total: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), Instant::now()));
    }
    fn advance(&self, _n: u64) {}
    fn finish(&self) {
        self.phase("finish", 0);
    }
}

impl PhaseClock {
    /// From the start of `name` to the next mark (or now).
    fn span(&self, name: &str) -> Option<Duration> {
        let marks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = marks.iter().position(|(n, _)| n == name)?;
        let end = marks.get(i + 1).map(|m| m.1).unwrap_or_else(Instant::now);
        Some(end.duration_since(marks[i].1))
    }
}

/// Build a repository with an empty snapshot and `records` log records (one put of a
/// dataset-sized value each, written on an in-memory source so building is fast), then
/// restore it into `fresh` and time the replay.
pub async fn replay(
    dataset: &Dataset,
    records: u64,
    store: Arc<dyn Store>,
    fresh: Arc<dyn Engine>,
) -> Result<Replay> {
    const PHASE: &str = "replay";
    let source: Arc<dyn Engine> = Arc::new(tito_engine::memory::MemoryEngine::new());
    let db = Db::open(source.clone()).await.ctx(PHASE)?;
    let service = BackupService::new(db.clone(), store, BackupConfig::default())
        .await
        .ctx(PHASE)?;
    service.snapshot().await.ctx(PHASE)?;
    let mut rng = Rng::new(dataset.seed ^ 0x7265_706c);
    for n in 0..records {
        let i = rng.below(dataset.keys.max(1));
        let txn = db.begin().await.ctx(PHASE)?;
        txn.put(Dataset::key(i), dataset.value(i, n + 1))
            .ctx(PHASE)?;
        txn.commit().await.ctx(PHASE)?;
        if n % 50_000 == 49_999 {
            service.ship_log().await.ctx(PHASE)?; // keeps the source's log short
        }
    }
    service.ship_log().await.ctx(PHASE)?;
    let expected = digest(source.as_ref()).await?;

    let clock = PhaseClock::default();
    let (restored, took) =
        restore_latest(service.repository(), fresh.clone(), &clock, PHASE).await?;
    let restore_secs = took.as_secs_f64();
    check_same(PHASE, expected, digest(fresh.as_ref()).await?)?;
    if restored.records_replayed != records {
        return Err(BenchError::Mismatch {
            phase: PHASE,
            detail: format!(
                "replayed {} records, the log held {records}",
                restored.records_replayed
            ),
        });
    }
    let replay_secs = clock
        .span("replay log")
        .map(|d| d.as_secs_f64())
        .unwrap_or(restore_secs);
    Ok(Replay {
        records,
        replay_secs,
        restore_secs,
    })
}

/// Shipping cost on a small vs a large database.
#[derive(Clone, Debug, Serialize)]
pub struct Shipping {
    /// Changes (puts) shipped per round.
    pub changes: u64,
    /// Rounds (median taken).
    pub rounds: usize,
    /// Keys of the small database.
    pub small_keys: u64,
    /// Keys of the large database.
    pub large_keys: u64,
    /// Median seconds of one `ship_log` of the changes on the small database.
    pub small_secs: f64,
    /// Same on the large database.
    pub large_secs: f64,
}

impl Shipping {
    /// large / small: 1.0 means shipping cost does not grow with the database.
    pub fn ratio(&self) -> f64 {
        self.large_secs / self.small_secs.max(1e-9)
    }
}

/// Rounds of (write `changes` puts, time one `ship_log`) on one database.
pub const SHIP_ROUNDS: usize = 3;
/// Puts per transaction of the shipping workload.
const PUTS_PER_TXN: u64 = 10;

/// Median seconds to ship `changes` puts from a database of `dataset` in `engine`.
pub async fn ship_time(
    dataset: &Dataset,
    changes: u64,
    engine: Arc<dyn Engine>,
    store: Arc<dyn Store>,
) -> Result<f64> {
    const PHASE: &str = "ship";
    dataset.load(engine.as_ref(), 100_000).await?;
    let db = Db::open(engine).await.ctx(PHASE)?;
    let service = BackupService::new(db.clone(), store, BackupConfig::default())
        .await
        .ctx(PHASE)?;
    // Acquire the lease and find the position once, as continuous mode does.
    service.ship_log().await.ctx(PHASE)?;
    let mut rng = Rng::new(dataset.seed ^ 0x7368_6970);
    let mut times = Vec::new();
    for round in 0..SHIP_ROUNDS {
        let mut written = 0;
        while written < changes {
            let n = PUTS_PER_TXN.min(changes - written);
            let txn = db.begin().await.ctx(PHASE)?;
            for _ in 0..n {
                let i = rng.below(dataset.keys.max(1));
                txn.put(Dataset::key(i), dataset.value(i, round as u64 + 1))
                    .ctx(PHASE)?;
            }
            txn.commit().await.ctx(PHASE)?;
            written += n;
        }
        let started = Instant::now();
        let shipped = service.ship_log().await.ctx(PHASE)?;
        times.push(started.elapsed().as_secs_f64());
        if shipped.records == 0 && changes > 0 {
            return Err(BenchError::Mismatch {
                phase: PHASE,
                detail: "ship_log shipped nothing after the changes".into(),
            });
        }
    }
    Ok(median(times))
}

/// Restore the latest state of `repo` into `target`, as every phase times it: the result
/// and the wall time of the whole restore (plan, verify, load, replay).
pub(crate) async fn restore_latest(
    repo: &tito_backup::Repository,
    target: Arc<dyn Engine>,
    progress: &dyn Progress,
    phase: &'static str,
) -> Result<(RestoreResult, Duration)> {
    let started = Instant::now();
    let restored =
        tito_restore::restore(repo, target, &RestoreOptions::new(Target::Latest), progress)
            .await
            .ctx(phase)?;
    Ok((restored, started.elapsed()))
}
