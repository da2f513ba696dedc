//! Restore: plan, verify everything the plan needs, check the target, load the snapshot,
//! replay the log up to the target, and leave the database ready to start a new timeline.
//!
//! The order is the safety argument: nothing touches the target before every object of the
//! plan was read back and matched its checksums, and before the target was found empty
//! (or `force` was given). A restore interrupted after that leaves a marker key in the
//! target's metadata, so a half-restored database is never mistaken for a complete one.

use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tito_backup::{PendingBranch, Repository, pending_branch_key};
use tito_capture::keys::{self, display_key};
use tito_catalog::{RestorePlan, Target};
use tito_engine::{Engine, KeyRange, KeyValue, Limits};
use tito_format::layout;
use tito_format::{ChunkReader, SegmentReader};

use crate::error::RestoreError;
use crate::progress::Progress;
use crate::verify::verify_plan_objects;

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Where to restore to.
    pub target: Target,
    /// Restore on this timeline (default: the newest).
    pub timeline: Option<u64>,
    /// Re-partition pending queue events into this many partitions.
    pub partitions: Option<u32>,
    /// Replace the target's existing contents (after verification).
    pub force: bool,
    /// Plan and verify only; touch nothing.
    pub dry_run: bool,
    /// Objects downloaded at once.
    pub concurrency: usize,
    /// Uncompressed bytes per bulk-load or replay transaction (capped by the engine's limits).
    pub batch_bytes: usize,
}

impl RestoreOptions {
    /// Restore to `target` with default settings.
    pub fn new(target: Target) -> Self {
        RestoreOptions {
            target,
            timeline: None,
            partitions: None,
            force: false,
            dry_run: false,
            concurrency: 4,
            batch_bytes: 8 << 20,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreResult {
    /// The plan followed.
    pub plan: RestorePlan,
    /// Key-value pairs loaded from the snapshot (the original's `state_entries_restored`).
    pub state_entries_restored: u64,
    /// Log records replayed.
    pub records_replayed: u64,
    /// Pending queue events in the restored database.
    pub events_pending: u64,
    /// Queue events moved to another partition.
    pub events_repartitioned: u64,
    /// The LSN the restored state reflects (the last record applied, or the snapshot's).
    pub restored_lsn: u64,
    /// Commit time of that record (ms), 0 if unknown.
    pub restored_time_ms: u64,
    /// Compressed bytes downloaded (verification included).
    pub bytes_downloaded: u64,
    /// True for a dry run: nothing was written.
    pub dry_run: bool,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// Meta key marking a restore in progress ([`tito_capture::Db::open`] refuses such a database).
pub fn restore_marker_key() -> Vec<u8> {
    keys::META_RESTORE_IN_PROGRESS.to_vec()
}

/// Restore `repo` into `target` as `opts` says.
pub async fn restore(
    repo: &Repository,
    target: Arc<dyn Engine>,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult, RestoreError> {
    let started = Instant::now();
    let catalog = repo.catalog().await?;
    let plan = catalog.plan(&opts.target, opts.timeline)?;
    progress.phase("verify", plan.objects().len() as u64);
    let mut downloaded = verify_plan_objects(repo, &plan, opts.concurrency, progress).await?;

    let mut result = RestoreResult {
        plan: plan.clone(),
        state_entries_restored: 0,
        records_replayed: 0,
        events_pending: 0,
        events_repartitioned: 0,
        restored_lsn: plan.snapshot.lsn,
        restored_time_ms: plan.snapshot.lsn_time_ms,
        bytes_downloaded: 0,
        dry_run: opts.dry_run,
        elapsed_ms: 0,
    };
    if let Some(sample) = first_key(target.as_ref()).await? {
        if !opts.force {
            return Err(RestoreError::TargetNotEmpty {
                sample: display_key(&sample),
            });
        }
    }
    if opts.dry_run {
        result.bytes_downloaded = downloaded;
        result.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(result);
    }

    // From here on the target is modified.
    if opts.force {
        wipe(target.as_ref()).await?;
    }
    set_meta(
        target.as_ref(),
        restore_marker_key(),
        serde_json::to_vec(&plan).expect("plan serializes"),
    )
    .await?;

    let limits = target.limits();
    let (pairs, bytes) = load_snapshot(repo, &plan, target.clone(), opts, limits, progress).await?;
    result.state_entries_restored = pairs;
    downloaded += bytes;

    let (records, last, last_time, bytes) =
        replay_log(repo, &plan, target.as_ref(), opts, limits, progress).await?;
    result.records_replayed = records;
    downloaded += bytes;
    if records > 0 {
        result.restored_lsn = last;
        result.restored_time_ms = last_time;
    }

    if let Some(partitions) = opts.partitions {
        result.events_repartitioned =
            crate::queue::repartition(target.as_ref(), partitions, limits).await?;
    }
    result.events_pending = crate::queue::count_events(target.as_ref()).await?;

    // The restored database continues the log after the restored point, on a new timeline
    // that its first backup will open (restore never writes to the backup repository).
    target.advance_version(result.restored_lsn).await?;
    tito_capture::meta::set_database_id(target.as_ref(), &repo.config().database_id).await?;
    let branch = PendingBranch {
        parent_timeline: plan.timeline,
        branch_lsn: result.restored_lsn,
    };
    set_meta(
        target.as_ref(),
        pending_branch_key(),
        serde_json::to_vec(&branch).expect("branch serializes"),
    )
    .await?;
    tito_capture::meta::set_timeline(target.as_ref(), plan.timeline).await?;
    delete_meta(target.as_ref(), restore_marker_key()).await?;

    result.bytes_downloaded = downloaded;
    result.elapsed_ms = started.elapsed().as_millis() as u64;
    progress.finish();
    Ok(result)
}

/// The first key of the target that would be overwritten or mixed with restored data: any
/// backed-up key or log record. Metadata (database id, timeline) alone does not count.
async fn first_key(engine: &dyn Engine) -> Result<Option<Vec<u8>>, RestoreError> {
    let view = engine.read_view().await?;
    let mut ranges = keys::backed_up_ranges();
    ranges.push(keys::log_range());
    for range in ranges {
        if let Some((k, _)) = view.scan(&range, 1).await?.into_iter().next() {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// Delete everything in the target (force), in batches that fit the engine's limits.
async fn wipe(engine: &dyn Engine) -> Result<(), RestoreError> {
    tito_engine::transaction(engine, |tx| async move {
        tx.delete_range(&KeyRange::all())?;
        Ok::<_, RestoreError>(())
    })
    .await
}

async fn set_meta(engine: &dyn Engine, key: Vec<u8>, value: Vec<u8>) -> Result<(), RestoreError> {
    tito_engine::transaction(engine, |tx| {
        let (key, value) = (key.clone(), value.clone());
        async move {
            tx.put(key, value)?;
            Ok::<_, RestoreError>(())
        }
    })
    .await
}

async fn delete_meta(engine: &dyn Engine, key: Vec<u8>) -> Result<(), RestoreError> {
    tito_engine::transaction(engine, |tx| {
        let key = key.clone();
        async move {
            tx.delete(key)?;
            Ok::<_, RestoreError>(())
        }
    })
    .await
}

/// How many pairs and bytes fit one write transaction.
fn batch_bounds(opts: &RestoreOptions, limits: Limits) -> (usize, usize) {
    let bytes = opts
        .batch_bytes
        .min(limits.max_txn_bytes.saturating_sub(1024).max(1));
    let ops = limits.max_txn_ops.clamp(1, 100_000);
    (bytes, ops)
}

/// Load the plan's snapshot: chunks are downloaded `concurrency` at a time, decoded with
/// full verification, and written with the engine's bulk load in bounded batches.
async fn load_snapshot(
    repo: &Repository,
    plan: &RestorePlan,
    target: Arc<dyn Engine>,
    opts: &RestoreOptions,
    limits: Limits,
    progress: &dyn Progress,
) -> Result<(u64, u64), RestoreError> {
    let (max_bytes, max_ops) = batch_bounds(opts, limits);
    let dir = &plan.snapshot.dir;
    progress.phase("load snapshot", plan.snapshot.total_count);
    let chunks = plan.snapshot.chunks.clone();
    let store = repo.store().clone();
    let results: Vec<(u64, u64)> = futures::stream::iter(chunks.into_iter().map(|entry| {
        let store = store.clone();
        let target = target.clone();
        let key = layout::snapshot_chunk(dir, entry.n);
        async move {
            let bytes = store.get(&key).await?;
            let size = bytes.len() as u64;
            let expected = entry.count;
            // Decoding is CPU work: keep it off the async workers.
            let batches =
                tokio::task::spawn_blocking(move || -> Result<Vec<Vec<KeyValue>>, RestoreError> {
                    let mut reader = ChunkReader::new(&bytes[..], key.clone())?;
                    let mut batches = Vec::new();
                    let mut batch = Vec::new();
                    let mut batch_bytes = 0;
                    for pair in reader.by_ref() {
                        let (k, v) = pair?;
                        let size = k.len() + v.len();
                        // Close the batch before a pair that would not fit in it.
                        if !batch.is_empty()
                            && (batch_bytes + size > max_bytes || batch.len() >= max_ops)
                        {
                            batches.push(std::mem::take(&mut batch));
                            batch_bytes = 0;
                        }
                        batch_bytes += size;
                        batch.push((k, v));
                    }
                    if !batch.is_empty() {
                        batches.push(batch);
                    }
                    Ok(batches)
                })
                .await
                .map_err(|e| RestoreError::Task(e.to_string()))??;
            let mut count = 0u64;
            for batch in batches {
                count += batch.len() as u64;
                target.bulk_load(batch).await?;
            }
            if count != expected {
                return Err(RestoreError::Damaged {
                    key: layout::snapshot_chunk(dir, entry.n),
                    reason: format!("holds {count} pairs but the manifest says {expected}"),
                });
            }
            Ok::<_, RestoreError>((count, size))
        }
    }))
    .buffer_unordered(opts.concurrency.max(1))
    .inspect_ok(|(count, _)| progress.advance(*count))
    .try_collect()
    .await?;
    Ok(results.iter().fold((0, 0), |(p, b), (c, s)| (p + c, b + s)))
}

/// Replay the plan's segments in order, applying whole records up to the stop point, many
/// records per engine transaction. LSNs must follow each other without a hole.
async fn replay_log(
    repo: &Repository,
    plan: &RestorePlan,
    target: &dyn Engine,
    opts: &RestoreOptions,
    limits: Limits,
    progress: &dyn Progress,
) -> Result<(u64, u64, u64, u64), RestoreError> {
    let (max_bytes, max_ops) = batch_bounds(opts, limits);
    progress.phase(
        "replay log",
        plan.stop_lsn.saturating_sub(plan.snapshot.lsn),
    );
    let mut applied = plan.snapshot.lsn;
    let mut last_time = plan.snapshot.lsn_time_ms;
    let (mut records, mut downloaded) = (0u64, 0u64);
    let mut batch: Vec<tito_capture::LogRecord> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut batch_ops = 0usize;
    'segments: for seg in &plan.segments {
        let bytes = repo.store().get(&seg.segment.key).await?;
        downloaded += bytes.len() as u64;
        let reader = SegmentReader::new(&bytes[..], seg.segment.key.clone())?;
        for raw in reader {
            let raw = raw?;
            if raw.lsn <= applied {
                continue; // an overlapping segment re-delivers records already applied
            }
            if raw.lsn > seg.through {
                break; // the rest of this segment belongs to another branch of history
            }
            if raw.lsn > plan.stop_lsn || plan.stop_time_ms.is_some_and(|t| raw.time_ms > t) {
                break 'segments;
            }
            if raw.lsn != applied + 1 {
                return Err(RestoreError::LogDiscontinuity {
                    key: seg.segment.key.clone(),
                    expected: applied + 1,
                    found: raw.lsn,
                });
            }
            let mutations =
                tito_format::record::decode_body(&raw.body).map_err(|e| RestoreError::Damaged {
                    key: seg.segment.key.clone(),
                    reason: format!("record {}: {e}", raw.lsn),
                })?;
            let rec = tito_capture::LogRecord {
                lsn: raw.lsn,
                time_ms: raw.time_ms,
                mutations,
            };
            // Close the batch before a record that would not fit: records are never split.
            if !batch.is_empty()
                && (batch_bytes + raw.body.len() > max_bytes
                    || batch_ops + rec.mutations.len() > max_ops)
            {
                let n = apply_batch(target, std::mem::take(&mut batch)).await?;
                records += n;
                progress.advance(n);
                (batch_bytes, batch_ops) = (0, 0);
            }
            batch_bytes += raw.body.len();
            batch_ops += rec.mutations.len();
            applied = raw.lsn;
            last_time = raw.time_ms;
            batch.push(rec);
        }
    }
    if !batch.is_empty() {
        let n = apply_batch(target, batch).await?;
        records += n;
        progress.advance(n);
    }
    Ok((records, applied, last_time, downloaded))
}

/// Apply whole records in one engine transaction (a record is never split across two).
/// A batch the engine finds too large (it wrote nothing) is applied in two halves: counting
/// mutations cannot foresee every engine's cost (etcd splits a range delete around the keys
/// put inside it in the same transaction).
async fn apply_batch(
    target: &dyn Engine,
    batch: Vec<tito_capture::LogRecord>,
) -> Result<u64, RestoreError> {
    let n = batch.len() as u64;
    let batch = Arc::new(batch);
    // Ranges still to apply, the next one last, so records stay in order.
    let mut todo = vec![(0, batch.len())];
    while let Some((lo, hi)) = todo.pop() {
        let applied = tito_engine::transaction(target, |tx| {
            let batch = batch.clone();
            async move {
                for rec in &batch[lo..hi] {
                    tito_capture::apply_record(tx.as_ref(), rec)?;
                }
                Ok::<_, RestoreError>(())
            }
        })
        .await;
        match applied {
            Ok(()) => {}
            Err(RestoreError::Engine(tito_engine::EngineError::TooLarge(_))) if hi - lo > 1 => {
                let mid = lo + (hi - lo) / 2;
                todo.push((mid, hi));
                todo.push((lo, mid));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
