//! Log compaction (issue 14): after a simulated day of 1-second shipping, restore latest
//! from the compacted log next to the restore of the same state from a snapshot taken at
//! the end (target ≤ 2×), and the log's object count before and after.
//!
//! The dataset is bulk-loaded and snapshotted (the day's base). Then `--compaction-seconds`
//! one-put transactions are committed and shipped as one segment each, as 1-second shipping
//! of one transaction per second writes them: each segment's commit time is moved to its
//! second of the simulated day (record bodies are the real ones; only the times in the
//! segment and its name are the day's). One more segment a day later closes every window.
//! That log is compacted with the default levels (a minute, an hour, a day) on the directory
//! store and timed. A second repository holds one snapshot of the final state. Both are
//! restored (latest) from the directory store and, with `--s3-store`, from S3 after copying
//! (the compacted log is a few objects; the S3 test server takes about 50 requests/s, so
//! the 86,400-object log before compaction is restored from the directory store only).
//! Every restore must equal the source.
//! Run: `tito bench --phases compaction [--s3-store s3://tito-test/bench]`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tito_backup::{BackupConfig, BackupService, CompactionConfig, Repository, compact_repository};
use tito_capture::Db;
use tito_format::{RawRecord, SegmentWriter, layout};
use tito_store::Store;

use crate::dataset::{Dataset, Rng, digest};
use crate::env::{BenchEnv, empty_store};
use crate::error::{BenchError, Ctx, Result, store_err};
use crate::report::Timed;
use crate::tito::{check_same, restore_latest};

const PHASE: &str = "compaction";
/// Rounds of each restore after compaction; the best of each is reported.
pub const ROUNDS: usize = 3;
/// Segment uploads (and S3 copies) at once.
const PUT_CONCURRENCY: usize = 32;
const DAY_MS: u64 = 86_400_000;

/// The compaction phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct CompactionFigures {
    /// Seconds of shipping simulated (one segment of one transaction each).
    pub seconds: u64,
    /// Log segments before compaction.
    pub segments_before: u64,
    /// Log segments after.
    pub segments_after: u64,
    /// Stored bytes of the log before and after.
    pub log_bytes_before: u64,
    /// See `log_bytes_before`.
    pub log_bytes_after: u64,
    /// The compaction (directory store): segments read per second.
    pub compact: Timed,
    /// Restore latest from the directory store before compaction (snapshot + every segment).
    pub restore_before: Timed,
    /// Restore latest from the directory store after compaction (best of the rounds).
    pub restore_after: Timed,
    /// Restore of the same state from one snapshot, directory store (best of the rounds).
    pub restore_snapshot: Timed,
    /// Restore after compaction over restore from the snapshot, in time (target ≤ 2).
    pub ratio: f64,
    /// The same two restores from S3, when `--s3-store` is given: (after, snapshot, ratio).
    pub s3: Option<(Timed, Timed, f64)>,
}

/// Measure; engines and stores come from `env`.
pub async fn measure(
    env: &BenchEnv,
    dataset: &Dataset,
    seconds: u64,
    s3_url: Option<&str>,
) -> Result<CompactionFigures> {
    let log_store = env.store("compaction-log").await?;
    let snap_store = env.store("compaction-snapshot").await?;
    let source = env.engine("compaction-source").await?;
    let built = build(dataset, seconds, source.clone(), &log_store, &snap_store).await;
    env.drop_engine(source).await;
    let expected = built?;

    let log_repo = Repository::open(log_store.clone()).await.ctx(PHASE)?;
    let snap_repo = Repository::open(snap_store.clone()).await.ctx(PHASE)?;
    let (before, log_bytes_before) = log_objects(log_store.as_ref()).await?;
    let restore_before = restore_checked(env, &log_repo, dataset, expected, "before").await?;

    let started = Instant::now();
    let config = CompactionConfig {
        max_inputs: None,
        max_duration: None,
        ..CompactionConfig::default()
    };
    let done = compact_repository(&log_repo, &config, false, &())
        .await
        .ctx(PHASE)?;
    let compact = Timed::new(done.read, done.bytes_read, started.elapsed());
    let (after, log_bytes_after) = log_objects(log_store.as_ref()).await?;

    let (restore_after, restore_snapshot) =
        best_pair(env, &log_repo, &snap_repo, dataset, expected).await?;
    let s3 = match s3_url {
        Some(url) => Some(from_s3(env, url, &log_store, &snap_store, dataset, expected).await?),
        None => None,
    };
    Ok(CompactionFigures {
        seconds,
        segments_before: before,
        segments_after: after,
        log_bytes_before,
        log_bytes_after,
        compact,
        restore_before,
        ratio: restore_after.secs / restore_snapshot.secs.max(1e-9),
        restore_after,
        restore_snapshot,
        s3,
    })
}

/// Copy both repositories to S3 and restore each from there.
async fn from_s3(
    env: &BenchEnv,
    url: &str,
    log_store: &Arc<dyn Store>,
    snap_store: &Arc<dyn Store>,
    dataset: &Dataset,
    expected: (u64, [u8; 32]),
) -> Result<(Timed, Timed, f64)> {
    let base = format!(
        "{}/tito-bench-compaction-{}-{}",
        url.trim_end_matches('/'),
        std::process::id(),
        tito_backup::now_ms()
    );
    let open = |name: &str| {
        let u = format!("{base}-{name}");
        async move {
            tito_store::open(&u)
                .await
                .map_err(store_err(PHASE, u.clone()))
        }
    };
    let (s3_log, s3_snap) = (open("log").await?, open("snapshot").await?);
    let outcome = async {
        copy(log_store.as_ref(), s3_log.as_ref()).await?;
        copy(snap_store.as_ref(), s3_snap.as_ref()).await?;
        let log_repo = Repository::open(s3_log.clone()).await.ctx(PHASE)?;
        let snap_repo = Repository::open(s3_snap.clone()).await.ctx(PHASE)?;
        let (a, s) = best_pair(env, &log_repo, &snap_repo, dataset, expected).await?;
        let ratio = a.secs / s.secs.max(1e-9);
        Ok((a, s, ratio))
    }
    .await;
    let _ = empty_store(s3_log.as_ref()).await;
    let _ = empty_store(s3_snap.as_ref()).await;
    outcome
}

/// Best of [`ROUNDS`] restores of each repository, alternating which goes first.
async fn best_pair(
    env: &BenchEnv,
    log_repo: &Repository,
    snap_repo: &Repository,
    dataset: &Dataset,
    expected: (u64, [u8; 32]),
) -> Result<(Timed, Timed)> {
    let mut best: [Option<Timed>; 2] = [None, None];
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let repo = if i == 0 { log_repo } else { snap_repo };
            let t = restore_checked(env, repo, dataset, expected, &format!("{i}-{round}")).await?;
            if best[i].as_ref().is_none_or(|b| t.secs < b.secs) {
                best[i] = Some(t);
            }
        }
    }
    let [Some(a), Some(s)] = best else {
        unreachable!("every round restores both");
    };
    Ok((a, s))
}

/// Restore latest from `repo` into a fresh engine, check it holds the source's state.
async fn restore_checked(
    env: &BenchEnv,
    repo: &Repository,
    dataset: &Dataset,
    expected: (u64, [u8; 32]),
    name: &str,
) -> Result<Timed> {
    let fresh = env.engine(&format!("compaction-restore-{name}")).await?;
    let outcome = restore_latest(repo, fresh.clone(), &tito_restore::NoProgress, PHASE).await;
    let got = match &outcome {
        Ok(_) => Some(digest(fresh.as_ref()).await),
        Err(_) => None,
    };
    env.drop_engine(fresh).await;
    let (restored, took) = outcome?;
    check_same(PHASE, expected, got.expect("digest after a restore")?)?;
    Ok(Timed::new(
        restored.state_entries_restored + restored.records_replayed,
        dataset.raw_bytes(),
        took,
    ))
}

/// Base snapshot and a simulated day of 1-second segments into `log_store`; a snapshot of
/// the final state into `snap_store`. Returns the source's digest.
async fn build(
    dataset: &Dataset,
    seconds: u64,
    source: Arc<dyn tito_engine::Engine>,
    log_store: &Arc<dyn Store>,
    snap_store: &Arc<dyn Store>,
) -> Result<(u64, [u8; 32])> {
    dataset.load(source.as_ref(), 100_000).await?;
    let db = Db::open(source.clone()).await.ctx(PHASE)?;
    let config = BackupConfig {
        compaction: None,
        ..BackupConfig::default()
    };
    let service = BackupService::new(db.clone(), log_store.clone(), config.clone())
        .await
        .ctx(PHASE)?;
    let base = service.snapshot().await.ctx(PHASE)?;
    service.release_lease().await.ctx(PHASE)?;
    let timeline = db.timeline().await.ctx(PHASE)?;
    let mut rng = Rng::new(dataset.seed ^ 0x636f_6d70);
    // One more transaction than seconds: the last, a day later, closes every window.
    for s in 0..=seconds {
        let i = rng.below(dataset.keys.max(1));
        let txn = db.begin().await.ctx(PHASE)?;
        txn.put(Dataset::key(i), dataset.value(i, s + 1))
            .ctx(PHASE)?;
        txn.commit().await.ctx(PHASE)?;
    }
    // The day starts at a day boundary after the base snapshot's record time.
    let day = (tito_backup::now_ms() / DAY_MS + 1) * DAY_MS;
    let mut after = base.lsn;
    let mut segments: Vec<(String, Bytes)> = Vec::new();
    loop {
        let records = db.read_log(after, 4096, 64 << 20).await.ctx(PHASE)?;
        if records.is_empty() {
            break;
        }
        for rec in records {
            let second = rec.lsn - base.lsn - 1;
            let time_ms = if second < seconds {
                day + second * 1000 + 500
            } else {
                day + DAY_MS + 500
            };
            let mut w = SegmentWriter::new(Vec::new(), timeline);
            w.push(&RawRecord {
                lsn: rec.lsn,
                time_ms,
                body: rec.encode_body(),
            })
            .map_err(tito_backup::BackupError::from)
            .ctx(PHASE)?;
            let (summary, bytes) = w
                .finish_into_inner()
                .map_err(tito_backup::BackupError::from)
                .ctx(PHASE)?;
            let key = layout::segment(
                timeline,
                summary.first,
                summary.last,
                summary.t0,
                summary.t1,
            );
            segments.push((key, Bytes::from(bytes)));
            after = rec.lsn;
        }
        if segments.len() >= 8192 {
            put_all(log_store.as_ref(), std::mem::take(&mut segments)).await?;
        }
    }
    put_all(log_store.as_ref(), segments).await?;
    // The same final state as one snapshot, in a repository of its own.
    let snap = BackupService::new(db.clone(), snap_store.clone(), config)
        .await
        .ctx(PHASE)?;
    snap.snapshot().await.ctx(PHASE)?;
    snap.release_lease().await.ctx(PHASE)?;
    digest(source.as_ref()).await
}

async fn put_all(store: &dyn Store, objects: Vec<(String, Bytes)>) -> Result<()> {
    futures::stream::iter(objects.into_iter().map(|(key, bytes)| async move {
        store.put(&key, bytes).await.map_err(store_err(PHASE, key))
    }))
    .buffer_unordered(PUT_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// Log segments in `store` and their stored bytes.
async fn log_objects(store: &dyn Store) -> Result<(u64, u64)> {
    let objects: Vec<tito_store::ObjectMeta> = store
        .list(layout::TIMELINES)
        .try_collect()
        .await
        .map_err(store_err(PHASE, store.describe()))?;
    let segs = objects
        .iter()
        .filter(|o| matches!(layout::parse(&o.key), layout::ObjectName::Segment { .. }));
    Ok(segs.fold((0, 0), |(n, b), o| (n + 1, b + o.size)))
}

/// Copy every object of `from` to `to`.
async fn copy(from: &dyn Store, to: &dyn Store) -> Result<()> {
    let keys: Vec<String> = from
        .list("")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .map_err(store_err(PHASE, from.describe()))?;
    futures::stream::iter(keys.into_iter().map(|key| async move {
        let bytes = from
            .get(&key)
            .await
            .map_err(store_err(PHASE, key.clone()))?;
        to.put(&key, bytes).await.map_err(store_err(PHASE, key))
    }))
    .buffer_unordered(8)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// A zero-second day is refused with a clear message.
pub fn check_seconds(seconds: u64) -> Result<()> {
    if seconds == 0 {
        return Err(BenchError::Options(
            "--compaction-seconds must be at least 1".into(),
        ));
    }
    Ok(())
}
