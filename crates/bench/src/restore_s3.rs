//! Restore from S3 next to the restore of the same backup from a local directory (issue 14:
//! S3 ≥ 0.9× local, each object fetched once).
//!
//! A source database of the dataset is snapshotted into a directory store, then
//! [`RECORDS_PER_SEGMENT`] one-put transactions are shipped `--restore-s3-segments` times
//! (one segment each). The repository is copied object by object to the S3 store at
//! `--s3-store`, and the latest state is restored into fresh engines from each store, in
//! alternating order over [`ROUNDS`] rounds; each figure is the best of its rounds (plan,
//! load, replay: the whole restore). Every restore must hold the source's dataset.
//! Run: `scripts/start-s3.sh; set -a; . target/s3.env; set +a;
//! tito bench --phases restore-s3 --s3-store s3://tito-test/bench`.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tito_backup::{BackupConfig, BackupService, Repository};
use tito_capture::Db;
use tito_store::Store;

use crate::dataset::{Dataset, Rng, digest};
use crate::env::{BenchEnv, empty_store};
use crate::error::{BenchError, Ctx, Result, store_err};
use crate::report::Timed;
use crate::tito::{check_same, restore_latest};

const PHASE: &str = "restore-s3";
/// Rounds of each restore; the best of each is reported.
pub const ROUNDS: usize = 3;
/// One-put transactions per shipped segment.
pub const RECORDS_PER_SEGMENT: u64 = 5;
/// Objects copied to S3 at once.
const COPY_CONCURRENCY: usize = 8;

/// The restore-s3 phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreS3Figures {
    /// The S3 store restored from (no secrets).
    pub s3_store: String,
    /// Objects in the repository.
    pub objects: u64,
    /// Snapshot chunks and log segments a restore reads.
    pub planned_objects: u64,
    /// Log segments replayed.
    pub segments: u64,
    /// Compressed bytes one restore downloads.
    pub bytes_downloaded: u64,
    /// Restore from the directory store (best of the rounds).
    pub local: Timed,
    /// Restore from S3 (best of the rounds).
    pub s3: Timed,
    /// S3 restore speed over directory restore speed.
    pub ratio: f64,
}

/// Measure, restoring from the S3 store at `s3_url`; engines come from `env`.
pub async fn measure(
    env: &BenchEnv,
    dataset: &Dataset,
    segments: u64,
    s3_url: Option<&str>,
) -> Result<RestoreS3Figures> {
    let url = s3_url.ok_or_else(|| {
        BenchError::Options(
            "the restore-s3 phase needs an S3 store: --s3-store s3://bucket/prefix \
             (endpoint and credentials from the AWS_* environment)"
                .into(),
        )
    })?;
    if !url.starts_with("s3://") {
        return Err(BenchError::Options(format!(
            "--s3-store {url:?}: not an s3:// URL"
        )));
    }
    let url = sub_url(
        url,
        &format!(
            "tito-bench-{}-{}",
            std::process::id(),
            tito_backup::now_ms()
        ),
    )?;
    let s3 = tito_store::open(&url)
        .await
        .map_err(store_err(PHASE, url.clone()))?;
    let outcome = measure_with(env, dataset, segments, s3.clone()).await;
    let _ = empty_store(s3.as_ref()).await;
    outcome
}

async fn measure_with(
    env: &BenchEnv,
    dataset: &Dataset,
    segments: u64,
    s3: Arc<dyn Store>,
) -> Result<RestoreS3Figures> {
    let local = env.store("restore-s3-local").await?;
    let source = env.engine("restore-s3-source").await?;
    let built = build(dataset, segments, source.clone(), local.clone()).await;
    env.drop_engine(source).await;
    let expected = built?;
    let objects = copy(local.as_ref(), s3.as_ref()).await?;

    let local_repo = Repository::open(local).await.ctx(PHASE)?;
    let s3_repo = Repository::open(s3.clone()).await.ctx(PHASE)?;
    let mut best: [Option<(Timed, Duration)>; 2] = [None, None];
    let mut planned = (0, 0, 0);
    for round in 0..ROUNDS {
        // Alternate which store goes first, so neither always meets a warm cache.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let repo = if i == 0 { &local_repo } else { &s3_repo };
            let fresh = env.engine(&format!("restore-s3-{i}-{round}")).await?;
            let outcome =
                restore_latest(repo, fresh.clone(), &tito_restore::NoProgress, PHASE).await;
            let got = match &outcome {
                Ok(_) => Some(digest(fresh.as_ref()).await),
                Err(_) => None,
            };
            env.drop_engine(fresh).await;
            let (restored, took) = outcome?;
            check_same(PHASE, expected, got.expect("digest after a restore")?)?;
            planned = (
                restored.plan.objects().len() as u64,
                restored.plan.segments.len() as u64,
                restored.bytes_downloaded,
            );
            let timed = Timed::new(
                restored.state_entries_restored + restored.records_replayed,
                dataset.raw_bytes(),
                took,
            );
            if best[i].as_ref().is_none_or(|(_, t)| took < *t) {
                best[i] = Some((timed, took));
            }
        }
    }
    let [Some((local, _)), Some((s3_timed, _))] = best else {
        unreachable!("every round restores from both stores");
    };
    Ok(RestoreS3Figures {
        s3_store: s3.describe(),
        objects,
        planned_objects: planned.0,
        segments: planned.1,
        bytes_downloaded: planned.2,
        ratio: local.secs / s3_timed.secs.max(1e-9),
        local,
        s3: s3_timed,
    })
}

/// Snapshot the dataset into `store`, then ship `segments` segments of log; returns the
/// source's digest.
async fn build(
    dataset: &Dataset,
    segments: u64,
    source: Arc<dyn tito_engine::Engine>,
    store: Arc<dyn Store>,
) -> Result<(u64, [u8; 32])> {
    dataset.load(source.as_ref(), 100_000).await?;
    let db = Db::open(source.clone()).await.ctx(PHASE)?;
    let service = BackupService::new(db.clone(), store, BackupConfig::default())
        .await
        .ctx(PHASE)?;
    service.snapshot().await.ctx(PHASE)?;
    let mut rng = Rng::new(dataset.seed ^ 0x7333_7265);
    for s in 0..segments {
        for _ in 0..RECORDS_PER_SEGMENT {
            let i = rng.below(dataset.keys.max(1));
            let txn = db.begin().await.ctx(PHASE)?;
            txn.put(Dataset::key(i), dataset.value(i, s + 1))
                .ctx(PHASE)?;
            txn.commit().await.ctx(PHASE)?;
        }
        service.ship_log().await.ctx(PHASE)?;
    }
    digest(source.as_ref()).await
}

/// Copy every object of `from` to `to`; returns how many.
async fn copy(from: &dyn Store, to: &dyn Store) -> Result<u64> {
    let keys: Vec<String> = from
        .list("")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .map_err(store_err(PHASE, from.describe()))?;
    let n = keys.len() as u64;
    futures::stream::iter(keys.into_iter().map(|key| async move {
        let bytes = from
            .get(&key)
            .await
            .map_err(store_err(PHASE, key.clone()))?;
        to.put(&key, bytes).await.map_err(store_err(PHASE, key))
    }))
    .buffer_unordered(COPY_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(n)
}

/// `url` with `/<name>` appended to its path (its query kept).
fn sub_url(url: &str, name: &str) -> Result<String> {
    let mut u = url::Url::parse(url)
        .map_err(|e| BenchError::Options(format!("--s3-store {url:?}: {e}")))?;
    let path = format!("{}/{name}", u.path().trim_end_matches('/'));
    u.set_path(&path);
    Ok(u.to_string())
}
