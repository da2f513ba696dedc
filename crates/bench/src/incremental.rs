//! Incremental snapshots (issue 14): a full snapshot of the dataset, then 1% of the keys
//! changed and an incremental snapshot: bytes uploaded (target ≤ 5% of the full one's) and
//! time (target ≥ 3× faster); a week of daily snapshots at 1% churn with the log of those
//! changes, stored bytes next to what the original design stores for the same week (seven
//! full backups and its state change log; target ≤ 0.2×).
//!
//! Where the churn falls decides every figure, so three patterns are measured. The week
//! (and the targets) use one hot range a day: 1% of the keys, consecutive, at a random
//! place (recent keys, a busy tenant). After the week, one day scatters the 1% over ten
//! runs of 0.1%, and one day spreads it uniformly; both are reported without a target:
//! each run touches a chunk or two, and uniform churn touches most chunks of 1 MiB (they
//! hold thousands of keys), so an incremental snapshot then uploads about what a full one
//! does. Changes go through captured transactions and are shipped as the log. The last
//! snapshot is restored and checked against the source.
//! Run: `tito bench --phases incremental`.

use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use serde::Serialize;
use tito_backup::{BackupService, SnapshotResult};
use tito_capture::Db;
use tito_engine::Engine;
use tito_store::Store;

use crate::child::snapshot_config;
use crate::dataset::{Dataset, Rng, digest};
use crate::env::BenchEnv;
use crate::error::{Ctx, Result, store_err};
use crate::report::Timed;
use crate::tito::{check_same, restore_latest};

const PHASE: &str = "incremental";
/// Rows written per transaction when loading the source and changing keys.
const BATCH: u64 = 10_000;
/// Days of the week measured (the first one's snapshot is the full one).
pub const DAYS: u64 = 7;
/// Runs of changed keys on the scattered day.
const RUNS: u64 = 10;

/// The incremental phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct IncrementalFigures {
    /// Keys changed a day (1%).
    pub churn_keys: u64,
    /// The first snapshot (every chunk uploaded).
    pub full: Timed,
    /// Bytes it uploaded.
    pub full_bytes: u64,
    /// The snapshot after 1% churn in one hot range.
    pub incremental: Timed,
    /// Bytes it uploaded.
    pub incremental_bytes: u64,
    /// Chunks it uploaded and chunks it had.
    pub incremental_chunks: (u64, u64),
    /// Pairs it read from the database (those of the chunks the day's changes touched;
    /// the other chunks were taken over from the previous manifest).
    pub incremental_pairs_read: u64,
    /// Incremental bytes over full bytes (target ≤ 0.05).
    pub bytes_ratio: f64,
    /// Full snapshot time over incremental snapshot time (target ≥ 3).
    pub speedup: f64,
    /// Stored bytes after the week: every snapshot and the log of the changes.
    pub week_bytes: u64,
    /// What the original design stores for the same week: a full backup a day and its
    /// state change log of the same changes.
    pub week_baseline_bytes: u64,
    /// `week_bytes / week_baseline_bytes` (target ≤ 0.2).
    pub week_ratio: f64,
    /// After 1% churn in ten runs: bytes uploaded over the full snapshot's (no target).
    pub scattered_bytes_ratio: f64,
    /// After 1% churn spread uniformly: bytes uploaded over the full snapshot's (no target).
    pub uniform_bytes_ratio: f64,
}

/// Measure on `dataset`; engines and stores come from `env`.
pub async fn measure(
    env: &BenchEnv,
    dataset: &Dataset,
    level: Option<i32>,
) -> Result<IncrementalFigures> {
    let source = env.engine("incremental-source").await?;
    let fresh = env.engine("incremental-restore").await?;
    let outcome = measure_with(env, dataset, level, source.clone(), fresh.clone()).await;
    env.drop_engine(source).await;
    env.drop_engine(fresh).await;
    outcome
}

async fn measure_with(
    env: &BenchEnv,
    dataset: &Dataset,
    level: Option<i32>,
    source: Arc<dyn Engine>,
    fresh: Arc<dyn Engine>,
) -> Result<IncrementalFigures> {
    dataset.load(source.as_ref(), BATCH).await?;
    let db = Db::open(source.clone()).await.ctx(PHASE)?;
    let store = env.store("incremental").await?;
    let service = BackupService::new(db.clone(), store.clone(), snapshot_config(level))
        .await
        .ctx(PHASE)?;
    let baseline_store = env.store("incremental-baseline").await?;
    let baseline_full = crate::baseline::backup(source.as_ref(), baseline_store.as_ref())
        .await?
        .bytes;

    let churn = (dataset.keys / 100).max(1);
    let mut rng = Rng::new(dataset.seed ^ 0x1ac4);
    let (full, full_took) = timed_snapshot(&service).await?;
    let mut log_baseline = 0u64;
    let mut incremental = None;
    for day in 1..DAYS {
        let changed = runs(dataset.keys, churn, 1, &mut rng);
        log_baseline += change(&db, dataset, &changed, day).await?;
        service.ship_log().await.ctx(PHASE)?;
        let (snap, took) = timed_snapshot(&service).await?;
        if day == 1 {
            incremental = Some((snap, took));
        }
    }
    service.ship_log().await.ctx(PHASE)?;
    let week_bytes = stored_bytes(store.as_ref()).await?;
    let week_baseline_bytes = DAYS * baseline_full + log_baseline;

    // One more day of churn in ten runs, and one spread over the whole keyspace.
    let scattered = runs(dataset.keys, churn, RUNS, &mut rng);
    change(&db, dataset, &scattered, DAYS).await?;
    service.ship_log().await.ctx(PHASE)?;
    let (scattered, _) = timed_snapshot(&service).await?;
    let uniform: Vec<u64> = (0..churn).map(|_| rng.below(dataset.keys)).collect();
    change(&db, dataset, &uniform, DAYS + 1).await?;
    service.ship_log().await.ctx(PHASE)?;
    let (spread, _) = timed_snapshot(&service).await?;
    service.release_lease().await.ctx(PHASE)?;

    let expected = digest(source.as_ref()).await?;
    restore_latest(
        service.repository(),
        fresh.clone(),
        &tito_restore::NoProgress,
        PHASE,
    )
    .await?;
    check_same(PHASE, expected, digest(fresh.as_ref()).await?)?;

    let (inc, inc_took) = incremental.expect("a week has a second day");
    Ok(IncrementalFigures {
        churn_keys: churn,
        bytes_ratio: inc.bytes as f64 / full.bytes.max(1) as f64,
        speedup: full_took.as_secs_f64() / inc_took.as_secs_f64().max(1e-9),
        full: Timed::new(full.pairs, full.raw_bytes, full_took),
        full_bytes: full.bytes,
        incremental: Timed::new(inc.pairs, inc.raw_bytes, inc_took),
        incremental_bytes: inc.bytes,
        incremental_chunks: (inc.chunks_uploaded, inc.chunks),
        incremental_pairs_read: inc.pairs_read,
        week_bytes,
        week_baseline_bytes,
        week_ratio: week_bytes as f64 / week_baseline_bytes.max(1) as f64,
        scattered_bytes_ratio: scattered.bytes as f64 / full.bytes.max(1) as f64,
        uniform_bytes_ratio: spread.bytes as f64 / full.bytes.max(1) as f64,
    })
}

async fn timed_snapshot(service: &BackupService) -> Result<(SnapshotResult, std::time::Duration)> {
    let started = Instant::now();
    let snap = service.snapshot().await.ctx(PHASE)?;
    Ok((snap, started.elapsed()))
}

/// `churn` key numbers in `runs` runs of consecutive keys at random places.
fn runs(keys: u64, churn: u64, runs: u64, rng: &mut Rng) -> Vec<u64> {
    let run = (churn / runs.max(1)).max(1);
    let mut out = Vec::with_capacity(churn as usize);
    while (out.len() as u64) < churn {
        let start = rng.below(keys.saturating_sub(run).max(1));
        out.extend((start..(start + run).min(keys)).take((churn - out.len() as u64) as usize));
    }
    out
}

/// Give keys `changed` their value of `version` in captured transactions; returns the
/// bytes the original design's state change log would store for these changes.
async fn change(db: &Db, dataset: &Dataset, changed: &[u64], version: u64) -> Result<u64> {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = changed
        .iter()
        .map(|&i| (Dataset::key(i), dataset.value(i, version)))
        .collect();
    for part in pairs.chunks(BATCH as usize) {
        let part = part.to_vec();
        db.transaction(|txn| {
            let part = part.clone();
            async move {
                for (k, v) in part {
                    txn.put(k, v)?;
                }
                Ok::<_, tito_capture::CaptureError>(())
            }
        })
        .await
        .ctx(PHASE)?;
    }
    crate::baseline::changelog_bytes(&pairs)
}

async fn stored_bytes(store: &dyn Store) -> Result<u64> {
    let metas: Vec<_> = store
        .list("")
        .try_collect()
        .await
        .map_err(store_err(PHASE, store.describe()))?;
    Ok(metas.iter().map(|m| m.size).sum())
}
