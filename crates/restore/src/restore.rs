//! Restore: plan, verify everything the plan needs, check the target, load the snapshot,
//! replay the log up to the target, and leave the database ready to start a new timeline.
//! A log whose net effect fits [`RestoreOptions::overlay_bytes`] is read first and merged
//! into the snapshot as it loads (`overlay.rs`), so every key is written once; a
//! larger one is replayed into the target after the snapshot.
//!
//! Every object of the plan is downloaded once (the log twice only when its effect turned
//! out larger than the overlay's budget, and it is replayed instead). The target decides
//! how:
//!
//! - A target that holds nothing (no backed-up key, no log record) has nothing to lose: it
//!   is marked as a restore in progress first, then objects stream into it, each checked
//!   against its checksums as it is loaded. A failure half-way leaves the marker, so the
//!   half-restored database is refused as partial (never taken for complete), and a
//!   restore with `force` completes it.
//! - Over an existing database (`force`), nothing touches the target before every object
//!   of the plan was read back and matched its checksums: the verify pass stages each
//!   object in a local spool ([`crate::spool`]), then the target is wiped, marked, and
//!   loaded from the spool.
//!
//! A restore interrupted once the target is marked leaves the marker key in the target's
//! metadata, so a half-restored database is never mistaken for a complete one.

use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tito_backup::{PendingBranch, Repository, pending_branch_key};
use tito_capture::keys::{self, display_key};
use tito_catalog::{Catalog, RestorePlan, Target};
use tito_engine::{Engine, KeyRange, KeyValue, Limits};
use tito_format::{ChunkReader, SegmentReader};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::RestoreError;
use crate::overlay::Overlay;
use crate::progress::Progress;
use crate::spool::{Objects, Spool};
use crate::verify::{check_chunk, check_plan_objects};

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
    /// Make the restored database continue the backed-up database's lineage (same
    /// database id, a new timeline that replaces the restored one): for a rebuilt server
    /// replacing a dead one. Without it, a restore into a database that is not the backed-up
    /// one makes a new database with its own id. A restore in place over the backed-up
    /// database itself always continues its lineage.
    pub continue_lineage: bool,
    /// Plan and verify only; touch nothing.
    pub dry_run: bool,
    /// Objects downloaded at once (snapshot chunks; log segments read ahead while replaying).
    pub concurrency: usize,
    /// Where a forced restore over an existing database stages the verified objects (a
    /// private temporary directory created under it, removed at the end). Default: the
    /// system temp dir. It needs room for the plan's compressed bytes.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Uncompressed bytes per bulk-load or replay transaction (capped by the engine's limits).
    /// Replay holds up to about three batches at once (one decoding, one waiting, one
    /// applying); larger transactions make an embedded engine rewrite fewer B-tree pages.
    pub batch_bytes: usize,
    /// Most bytes the log's net effect may take in memory to be merged into the snapshot
    /// as it loads (every key then written once, in key order); a log whose effect is
    /// larger (or whose compressed size is) is replayed into the target after the snapshot.
    /// 0: always replay.
    pub overlay_bytes: usize,
}

impl RestoreOptions {
    /// Restore to `target` with default settings.
    pub fn new(target: Target) -> Self {
        RestoreOptions {
            target,
            timeline: None,
            partitions: None,
            force: false,
            continue_lineage: false,
            dry_run: false,
            concurrency: 4,
            spool_dir: None,
            batch_bytes: 32 << 20,
            overlay_bytes: 256 << 20,
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
    /// Compressed bytes downloaded (each object of the plan once).
    pub bytes_downloaded: u64,
    /// True for a dry run: nothing was written.
    pub dry_run: bool,
    /// What the restored database is: the backed-up database continued on a new timeline,
    /// or a new database.
    pub lineage: Lineage,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// What a restore made of its target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lineage {
    /// The backed-up database, continued: its first backup opens a new timeline branching
    /// at the restored point, and retires the timeline it replaces.
    Continues {
        /// The database id (the repository's).
        database_id: String,
        /// The timeline its first backup retires.
        replaces: u64,
    },
    /// A new database with its own id: its backups go to another store, starting a root
    /// timeline there; backing it up into this store is refused.
    NewDatabase {
        /// Its new id.
        database_id: String,
    },
}

impl std::fmt::Display for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lineage::Continues {
                database_id,
                replaces,
            } => write!(
                f,
                "continues database {database_id}: its next backup opens a new timeline that replaces timeline {replaces}"
            ),
            Lineage::NewDatabase { database_id } => write!(
                f,
                "a new database {database_id}: back it up into another store (this store holds its source's backups)"
            ),
        }
    }
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
    let catalog = repo.catalog().await?;
    restore_with_catalog(repo, &catalog, target, opts, progress).await
}

/// [`restore`] with the repository's catalog already loaded (by a caller that planned
/// first), so its documents are not read again.
pub async fn restore_with_catalog(
    repo: &Repository,
    catalog: &Catalog,
    target: Arc<dyn Engine>,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult, RestoreError> {
    let started = Instant::now();
    let plan = catalog.plan(&opts.target, opts.timeline)?;

    let repo_id = repo.config().database_id.clone();
    let target_id = tito_capture::meta::database_id(target.as_ref()).await?;
    // The timeline the target database ships to: a pending branch not opened yet (an
    // earlier restore with no backup since) still replaces what it was to replace.
    let target_timeline = match pending_branch(target.as_ref()).await? {
        Some(branch) => branch.replaces,
        None => Some(tito_capture::meta::timeline(target.as_ref()).await?),
    };
    let in_place = target_id.as_deref() == Some(repo_id.as_str());
    let lineage = if in_place || opts.continue_lineage {
        Lineage::Continues {
            database_id: repo_id.clone(),
            // In place, the database's own timeline is replaced; a copy told to continue
            // the lineage replaces the timeline it was restored from.
            replaces: match (in_place, target_timeline) {
                (true, Some(own)) => own,
                _ => replaced_by_copy(catalog, plan.timeline)?,
            },
        }
    } else {
        Lineage::NewDatabase {
            database_id: format!("{:032x}", rand::random::<u128>()),
        }
    };
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
        lineage: lineage.clone(),
        elapsed_ms: 0,
    };
    let occupied = first_key(target.as_ref()).await?;
    if let Some(sample) = &occupied {
        if !opts.force {
            return Err(RestoreError::TargetNotEmpty {
                sample: display_key(sample),
            });
        }
    }
    let mut downloaded = 0;
    let mut plan = plan;
    if opts.dry_run {
        let (checked, bytes, _) = check_replanning(repo, opts, plan, progress, false).await?;
        result.bytes_downloaded = bytes;
        result.plan = checked;
        result.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(result);
    }
    let objects = if occupied.is_some() {
        // Existing data is replaced only once every object checked out: the verify pass
        // stages them locally, and loading reads them from there. An object gone since
        // planning (compaction, prune) means planning again: nothing is modified yet.
        let (checked, bytes, spool) = check_replanning(repo, opts, plan, progress, true).await?;
        plan = checked;
        downloaded = bytes;
        let spool = spool.expect("staged");
        let marker = serde_json::to_vec(&plan).expect("plan serializes");
        // From here on the target is modified. The marker goes in the wipe's transaction:
        // a crash between the two would leave an emptied database that passes for
        // complete (and, without its id, is no longer the database a re-run restores in
        // place).
        wipe_and_mark(target.as_ref(), marker).await?;
        Objects::Spool(Arc::new(spool))
    } else {
        // Nothing to lose: stream into the target, checking each object as it loads.
        let marker = serde_json::to_vec(&plan).expect("plan serializes");
        set_meta(target.as_ref(), restore_marker_key(), marker).await?;
        Objects::Store(repo.store().clone())
    };
    result.restored_lsn = plan.snapshot.lsn;
    result.restored_time_ms = plan.snapshot.lsn_time_ms;
    result.plan = plan.clone();

    let limits = target.limits();
    let read_from_store = objects.downloads();
    let log_bytes: u64 = plan.segments.iter().map(|s| s.segment.size).sum();
    let mut loaded = None;
    if Overlay::fits(log_bytes, opts.overlay_bytes) {
        // The log first, into an overlay merged into the snapshot as it loads. Nothing is
        // written to the target until the overlay is complete, so a log whose effect
        // turns out too large is simply replayed the usual way.
        let mut overlay = Overlay::new(opts.overlay_bytes);
        let (segments, downloads) = fetch_segments(repo, &objects, &plan, opts.concurrency);
        let replayed = replay_log(
            segments,
            &plan,
            Sink::Overlay(&mut overlay),
            opts,
            limits,
            progress,
        )
        .await;
        downloads.abort();
        let _ = downloads.await;
        let replayed = replayed?;
        if !overlay.overflowed() {
            overlay.seal();
            let overlay = Some(Arc::new(overlay));
            let snapshot = load_snapshot(
                &objects,
                &plan,
                target.clone(),
                opts,
                limits,
                overlay,
                progress,
            )
            .await;
            loaded = Some(snapshot.map(|(pairs, bytes)| (pairs, bytes, replayed)));
        }
    }
    let loaded = match loaded {
        Some(done) => done,
        None => {
            // Segments download while the snapshot loads (a remote store's latency hides
            // behind the engine's writes); replay takes them in LSN order.
            let (segments, downloads) = fetch_segments(repo, &objects, &plan, opts.concurrency);
            let loaded = async {
                let (pairs, bytes) = load_snapshot(
                    &objects,
                    &plan,
                    target.clone(),
                    opts,
                    limits,
                    None,
                    progress,
                )
                .await?;
                let sink = Sink::Engine(target.as_ref());
                let replayed = replay_log(segments, &plan, sink, opts, limits, progress).await?;
                Ok::<_, RestoreError>((pairs, bytes, replayed))
            }
            .await;
            // The download task holds the objects (and so the spool) until it has ended:
            // wait for that, so the spool is gone when the restore returns, whatever the
            // outcome.
            downloads.abort();
            let _ = downloads.await;
            loaded
        }
    };
    drop(objects);
    let (pairs, bytes, (records, last, last_time, read)) = loaded?;
    result.state_entries_restored = pairs;
    result.records_replayed = records;
    if read_from_store {
        downloaded += bytes + read;
    }
    if records > 0 {
        result.restored_lsn = last;
        result.restored_time_ms = last_time;
    }

    if let Some(partitions) = opts.partitions {
        result.events_repartitioned =
            crate::queue::repartition(target.as_ref(), partitions, limits).await?;
    }
    result.events_pending = crate::queue::count_events(target.as_ref()).await?;

    // The restored database continues the log right after the restored point (the wipe
    // left the counter where the replaced database had it), on a new timeline that its
    // first backup will open (restore never writes to the backup repository).
    target.reset_version(result.restored_lsn).await?;
    let (database_id, parent_timeline, replaces) = match &lineage {
        Lineage::Continues {
            database_id,
            replaces,
        } => (database_id.clone(), Some(plan.timeline), Some(*replaces)),
        Lineage::NewDatabase { database_id } => (database_id.clone(), None, None),
    };
    tito_capture::meta::set_database_id(target.as_ref(), &database_id).await?;
    let branch = PendingBranch {
        parent_timeline,
        branch_lsn: result.restored_lsn,
        branch_time_ms: result.restored_time_ms,
        id: format!("{:032x}", rand::random::<u128>()),
        replaces,
    };
    set_meta(
        target.as_ref(),
        pending_branch_key(),
        serde_json::to_vec(&branch).expect("branch serializes"),
    )
    .await?;
    if let Some(parent) = parent_timeline {
        tito_capture::meta::set_timeline(target.as_ref(), parent).await?;
    }
    delete_meta(target.as_ref(), restore_marker_key()).await?;

    result.bytes_downloaded = downloaded;
    result.elapsed_ms = started.elapsed().as_millis() as u64;
    progress.finish();
    Ok(result)
}

/// How many times a restore plans again because objects it planned on went away.
const MAX_REPLANS: usize = 3;

/// Plan `opts.target` again from a freshly loaded catalog, because `missing` (an object
/// the current plan needs) is no longer in the store. The fresh plan must not need it: if
/// it does, the catalog still lists an object the store lost, and that is reported.
async fn replan_without(
    repo: &Repository,
    opts: &RestoreOptions,
    missing: &str,
) -> Result<RestorePlan, RestoreError> {
    tracing::info!(
        object = missing,
        "a planned backup object is gone; planning again"
    );
    listed_again(repo, missing, |catalog| {
        let plan = catalog.plan(&opts.target, opts.timeline)?;
        let needs = plan.objects().iter().any(|(key, _)| key == missing);
        Ok((plan, needs))
    })
    .await
}

/// What a fresh listing gives once `missing` was found gone: `pick` takes what the
/// restore needs from the new catalog and says whether that still names `missing`, in
/// which case the object is really lost, not merged or replaced.
async fn listed_again<T>(
    repo: &Repository,
    missing: &str,
    pick: impl FnOnce(&Catalog) -> Result<(T, bool), RestoreError>,
) -> Result<T, RestoreError> {
    let catalog = repo.catalog().await?;
    match pick(&catalog)? {
        (_, true) => Err(RestoreError::Missing {
            key: missing.to_string(),
        }),
        (picked, false) => Ok(picked),
    }
}

/// Checks every object of `plan` (staging each in a new spool when `stage`), planning
/// again from a fresh listing, at most [`MAX_REPLANS`] times, when one is gone since
/// planning. Returns the plan that checked out, the bytes downloaded and the spool.
async fn check_replanning(
    repo: &Repository,
    opts: &RestoreOptions,
    mut plan: RestorePlan,
    progress: &dyn Progress,
    stage: bool,
) -> Result<(RestorePlan, u64, Option<Spool>), RestoreError> {
    let mut replans = 0;
    loop {
        let spool = match stage {
            true => Some(Spool::create(opts.spool_dir.as_deref(), &plan)?),
            false => None,
        };
        progress.phase("verify", plan.objects().len() as u64);
        match check_plan_objects(repo, &plan, opts.concurrency, progress, spool.as_ref()).await {
            Ok(bytes) => return Ok((plan, bytes, spool)),
            Err(RestoreError::Missing { key }) if replans < MAX_REPLANS => {
                replans += 1;
                drop(spool);
                plan = replan_without(repo, opts, &key).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The timeline a copy that continues the lineage replaces: the live timeline the dead
/// database shipped to. The plan's own timeline if it is live, else the only live one.
fn replaced_by_copy(catalog: &Catalog, planned: u64) -> Result<u64, RestoreError> {
    let live = catalog.live_timelines();
    if live.contains(&planned) {
        return Ok(planned);
    }
    match live.as_slice() {
        [only] => Ok(*only),
        _ => Err(RestoreError::Refused {
            reason: format!(
                "--continue-lineage: the repository has {} live timelines ({live:?}); name the one \
                 this copy replaces with --timeline",
                live.len()
            ),
        }),
    }
}

/// The pending branch a restore left in `engine`, if its first backup has not opened it.
async fn pending_branch(engine: &dyn Engine) -> Result<Option<PendingBranch>, RestoreError> {
    let view = engine.read_view().await?;
    let Some(bytes) = view.get(&pending_branch_key()).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RestoreError::Damaged {
            key: "database metadata: pending-branch".into(),
            reason: e.to_string(),
        })
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

/// Empty the target (force) and mark the restore in progress, in one transaction. The keys
/// the lineage decision reads (database id, timeline, pending branch) survive the wipe, so
/// a re-run after a crash decides as the first run did (an in-place restore stays in
/// place); the finished restore overwrites them.
async fn wipe_and_mark(engine: &dyn Engine, marker: Vec<u8>) -> Result<(), RestoreError> {
    tito_engine::transaction(engine, |tx| {
        let marker = marker.clone();
        async move {
            let mut kept = Vec::new();
            for key in [
                keys::META_DATABASE_ID.to_vec(),
                keys::META_TIMELINE.to_vec(),
                pending_branch_key(),
            ] {
                if let Some(v) = tx.get(&key).await? {
                    kept.push((key, v));
                }
            }
            tx.delete_range(&KeyRange::all())?;
            for (k, v) in kept {
                tx.put(k, v)?;
            }
            tx.put(restore_marker_key(), marker)?;
            Ok::<_, RestoreError>(())
        }
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

/// A chunk to load (none: no chunk, the overlay's writes alone) and its span of keys
/// `[lo, hi)` (`hi` `None`: unbounded).
type Span = (
    Option<tito_format::manifest::ChunkEntry>,
    Vec<u8>,
    Option<Vec<u8>>,
);

/// Load the plan's snapshot: chunks are read `concurrency` at a time, checked against
/// their manifest entry, decoded with full verification, and written with the engine's
/// bulk load in bounded batches. With an `overlay` (the log's net effect), each chunk's
/// pairs are merged with the overlay's writes of its span of keys (from its first key to
/// the next chunk's; the first from the empty key, the last unbounded), so the target gets
/// the state after the log, every key written once. Returns the snapshot's pairs read and
/// its bytes.
async fn load_snapshot(
    objects: &Objects,
    plan: &RestorePlan,
    target: Arc<dyn Engine>,
    opts: &RestoreOptions,
    limits: Limits,
    overlay: Option<Arc<Overlay>>,
    progress: &dyn Progress,
) -> Result<(u64, u64), RestoreError> {
    let (max_bytes, max_ops) = batch_bounds(opts, limits);
    let dir = &plan.snapshot.dir;
    progress.phase("load snapshot", plan.snapshot.total_count);
    let mut chunks = plan.snapshot.chunks.clone();
    chunks.sort_by_key(|c| c.n);
    // Each chunk's span of keys, for the overlay; with no chunk at all, one span of
    // everything for the overlay's writes alone.
    let firsts: Vec<Vec<u8>> = chunks.iter().map(|c| c.first_key.clone()).collect();
    let mut spans: Vec<Span> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let lo = if i == 0 {
                Vec::new()
            } else {
                firsts[i].clone()
            };
            (Some(c), lo, firsts.get(i + 1).cloned())
        })
        .collect();
    if spans.is_empty() && overlay.is_some() {
        spans.push((None, Vec::new(), None));
    }
    let results: Vec<(u64, u64)> =
        futures::stream::iter(spans.into_iter().map(|(entry, lo, hi)| {
            let objects = objects.clone();
            let target = target.clone();
            let overlay = overlay.clone();
            async move {
                let (bytes, key, expected) = match &entry {
                    Some(entry) => {
                        let key = entry.object_key(dir);
                        let bytes = objects.get(&key).await?;
                        check_chunk(&key, &bytes, entry)?;
                        (Some(bytes), key, entry.count)
                    }
                    None => (None, String::new(), 0),
                };
                let size = bytes.as_ref().map_or(0, |b| b.len() as u64);
                // Decoding is CPU work: keep it off the async workers.
                let (count, batches) = tokio::task::spawn_blocking(
                    move || -> Result<(u64, Vec<Vec<KeyValue>>), RestoreError> {
                        let mut batches = Vec::new();
                        let mut batch = Vec::new();
                        let mut batch_bytes = 0;
                        let mut push = |(k, v): KeyValue| -> Result<(), RestoreError> {
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
                            Ok(())
                        };
                        let mut count = 0u64;
                        let mut reader = match &bytes {
                            Some(b) => Some(ChunkReader::new(&b[..], key.clone())?),
                            None => None,
                        };
                        let pairs = reader.iter_mut().flat_map(|r| r.by_ref()).map(|p| {
                            count += 1;
                            p.map_err(RestoreError::from)
                        });
                        match &overlay {
                            Some(o) => o.merge(pairs, &lo, hi.as_deref(), &mut push)?,
                            None => {
                                for pair in pairs {
                                    push(pair?)?;
                                }
                            }
                        }
                        if !batch.is_empty() {
                            batches.push(batch);
                        }
                        Ok((count, batches))
                    },
                )
                .await
                .map_err(|e| RestoreError::Task(e.to_string()))??;
                for batch in batches {
                    target.bulk_load(batch).await?;
                }
                if count != expected {
                    return Err(RestoreError::Damaged {
                        key: entry.map(|e| e.object_key(dir)).unwrap_or_default(),
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
///
/// Segments are read ahead ([`FETCH_AHEAD`] at a time, within [`FETCH_AHEAD_BYTES`]) and
/// decoded [`DECODE_AHEAD`] at a time on the blocking pool, the whole of each one verified,
/// each one's point writes sorted by key there; whole records are grouped into batches in
/// LSN order and each batch is applied in one engine transaction while the next ones
/// decode. Memory stays at about `DECODE_AHEAD` decoded segments, the compressed bytes
/// read ahead, and two batches.
async fn replay_log(
    segments: SegmentFeed,
    plan: &RestorePlan,
    mut sink: Sink<'_>,
    opts: &RestoreOptions,
    limits: Limits,
    progress: &dyn Progress,
) -> Result<(u64, u64, u64, u64), RestoreError> {
    let (max_bytes, max_ops) = batch_bounds(opts, limits);
    progress.phase(
        "replay log",
        plan.stop_lsn.saturating_sub(plan.snapshot.lsn),
    );
    let (sender, receiver) = tokio::sync::mpsc::channel::<ReplayBatch>(1);
    let stop = Stop {
        lsn: plan.stop_lsn,
        time_ms: plan.stop_time_ms,
    };
    let decode = async move {
        let fetched = futures::stream::unfold(segments, |mut feed| async move {
            feed.rx.recv().await.map(|item| (item, feed))
        })
        .boxed();
        let mut decoded = fetched
            .map(|fetched| async move {
                let (source, permit) = match fetched? {
                    Fetched::Segment(source, permit) => (source, permit),
                    Fetched::End => return Ok(None),
                };
                let decoded = tokio::task::spawn_blocking(move || Decoded::read(source, stop))
                    .await
                    .map_err(|e| RestoreError::Task(e.to_string()))?;
                drop(permit);
                decoded.map(Some)
            })
            .buffered(DECODE_AHEAD);
        let mut applied = plan.snapshot.lsn;
        let mut last_time = plan.snapshot.lsn_time_ms;
        let mut downloaded = 0u64;
        let mut batch = ReplayBatch::default();
        // Records, bytes and mutations of the batch being filled.
        let mut fill = (0u64, 0usize, 0usize);
        // Whether the feed said it sent the whole log, or replay ended before its end on
        // purpose: the feed ending early any other way must not pass for the end of the log.
        let (mut complete, mut ended) = (false, false);
        'segments: while let Some(seg) = decoded.next().await {
            let Some(seg) = seg? else {
                complete = true;
                break;
            };
            downloaded += seg.source.bytes.len() as u64;
            // This segment's new records as runs of LSNs, with the batch cuts between them.
            let mut events: Vec<Event> = Vec::new();
            let mut done = false;
            for r in &seg.records {
                if r.lsn <= applied {
                    continue; // an overlapping segment re-delivers records already applied
                }
                if r.lsn > stop.lsn || stop.time_ms.is_some_and(|t| r.time_ms > t) {
                    done = true;
                    break;
                }
                if r.lsn != applied + 1 {
                    return Err(RestoreError::LogDiscontinuity {
                        key: seg.source.key.clone(),
                        expected: applied + 1,
                        found: r.lsn,
                    });
                }
                // Close the batch before a record that would not fit: records are never split.
                if fill.0 > 0 && (fill.1 + r.bytes > max_bytes || fill.2 + r.ops > max_ops) {
                    events.push(Event::Cut);
                    fill = (0, 0, 0);
                }
                match events.last_mut() {
                    Some(Event::Run(_, last)) => *last = r.lsn,
                    _ => events.push(Event::Run(r.lsn, r.lsn)),
                }
                fill = (fill.0 + 1, fill.1 + r.bytes, fill.2 + r.ops);
                applied = r.lsn;
                last_time = r.time_ms;
            }
            let runs: Vec<(u64, u64)> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Run(a, b) => Some((*a, *b)),
                    Event::Cut => None,
                })
                .collect();
            let source = seg.source.clone();
            let mut parts = seg.split(&runs).into_iter().zip(runs);
            for e in &events {
                match e {
                    Event::Cut => {
                        if sender.send(std::mem::take(&mut batch)).await.is_err() {
                            ended = true;
                            break 'segments; // the applying side failed: its error is reported
                        }
                    }
                    Event::Run(..) => {
                        let (part, run) = parts.next().expect("one part per run");
                        batch.push(part, run, &source);
                    }
                }
            }
            if done {
                ended = true;
                break;
            }
        }
        if !ended && !complete {
            return Err(RestoreError::Task(
                "segment downloads stopped before the end of the log".into(),
            ));
        }
        if batch.records() > 0 {
            let _ = sender.send(batch).await;
        }
        Ok::<_, RestoreError>((applied, last_time, downloaded))
    };
    let apply = async {
        // Owned here, so that an overlay that overflowed stops the decoding side too.
        let mut receiver = receiver;
        let mut records = 0u64;
        while let Some(batch) = receiver.recv().await {
            let n = match &mut sink {
                Sink::Engine(target) => apply_batch(*target, batch).await?,
                Sink::Overlay(overlay) => {
                    let n = absorb(overlay, batch);
                    if overlay.overflowed() {
                        break; // the caller replays the usual way
                    }
                    n
                }
            };
            records += n;
            progress.advance(n);
        }
        Ok::<_, RestoreError>(records)
    };
    let ((applied, last_time, downloaded), records) = futures::try_join!(decode, apply)?;
    Ok((records, applied, last_time, downloaded))
}

/// Where replayed records go.
enum Sink<'a> {
    /// Into the target, many whole records per transaction.
    Engine(&'a dyn Engine),
    /// Into an overlay, merged into the snapshot as it loads.
    Overlay(&'a mut Overlay),
}

/// Apply a batch's records to `overlay`, in order; returns how many.
fn absorb(overlay: &mut Overlay, batch: ReplayBatch) -> u64 {
    let n = batch.records();
    for part in batch.parts {
        match part {
            // Sorted by key, the writes of one key in log order: the last one stays.
            Writes::Sorted(writes) => {
                for w in writes {
                    overlay.set(w.key, w.value);
                }
            }
            Writes::InOrder(records) => {
                for (_, mutations) in records {
                    overlay.apply(mutations);
                }
            }
        }
    }
    n
}

/// Downloaded segments in LSN order, each holding its share of the read-ahead budget
/// until decoded, then [`Fetched::End`]. Dropping the feed stops the downloads.
struct SegmentFeed {
    rx: tokio::sync::mpsc::Receiver<Result<Fetched, RestoreError>>,
    _downloads: AbortOnDrop,
}

/// One item of the [`SegmentFeed`].
enum Fetched {
    /// The next segment, holding its share of the read-ahead budget.
    Segment(Source, OwnedSemaphorePermit),
    /// Every segment the log needs was sent: a feed closed without it stopped early.
    End,
}

/// Aborts a background task when dropped (a failed restore leaves no download running).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A segment to download, and the LSN after which its records are needed.
struct Wanted {
    key: String,
    size: u64,
    through: u64,
    after: u64,
}

impl Wanted {
    /// The segments of a chain that carries the log from `after + 1` on.
    fn chain(after: u64, segments: &[tito_catalog::PlannedSegment]) -> Vec<Wanted> {
        let mut after = after;
        segments
            .iter()
            .map(|s| {
                let wanted = Wanted {
                    key: s.segment.key.clone(),
                    size: s.segment.size,
                    through: s.through,
                    after,
                };
                after = s.through;
                wanted
            })
            .collect()
    }
}

/// Start downloading the plan's segments in the background, in LSN order: many small
/// segments at once (a remote store is latency-bound on them), [`FETCH_AHEAD`] at a time
/// (or `concurrency` if larger), but never more than [`FETCH_AHEAD_BYTES`] of compressed
/// bytes not yet decoded.
///
/// Reading from the store, a planned segment that is gone (a compactor beside a running
/// backup merged it into a larger one after the restore planned) is not the end: the rest
/// of the log is taken from a fresh listing, from where the gone segment's records were
/// needed on (replay skips records it already applied).
///
/// Returns the feed and the task's handle: dropping the feed aborts the task, and the
/// caller awaits the handle to know the task (and its hold on `objects`) has ended.
fn fetch_segments(
    repo: &Repository,
    objects: &Objects,
    plan: &RestorePlan,
    concurrency: usize,
) -> (SegmentFeed, tokio::task::JoinHandle<()>) {
    let ahead = FETCH_AHEAD.max(concurrency);
    let (tx, rx) = tokio::sync::mpsc::channel(ahead);
    let budget = Arc::new(tokio::sync::Semaphore::new(FETCH_AHEAD_BYTES));
    let objects = objects.clone();
    let mut wanted = Wanted::chain(plan.snapshot.lsn, &plan.segments);
    // A spool holds what the verify pass found, so only the store can have changed since.
    let rechain = objects
        .downloads()
        .then(|| (repo.clone(), plan.timeline, plan.stop_lsn));
    let task = tokio::spawn(async move {
        let mut replans = 0;
        loop {
            let mut fetched =
                futures::stream::iter(std::mem::take(&mut wanted).into_iter().map(|w| {
                    let objects = objects.clone();
                    let budget = budget.clone();
                    let share = (w.size as usize).clamp(1, FETCH_AHEAD_BYTES) as u32;
                    async move {
                        let permit = budget
                            .acquire_many_owned(share)
                            .await
                            .map_err(|e| (RestoreError::Task(e.to_string()), w.after))?;
                        let bytes = objects.get(&w.key).await.map_err(|e| (e, w.after))?;
                        let source = Source {
                            key: w.key,
                            bytes,
                            through: w.through,
                        };
                        Ok::<_, (RestoreError, u64)>(Fetched::Segment(source, permit))
                    }
                }))
                .buffered(ahead);
            let mut gone = None;
            while let Some(item) = fetched.next().await {
                let item = match item {
                    Err((RestoreError::Missing { key }, after))
                        if rechain.is_some() && replans < MAX_REPLANS =>
                    {
                        gone = Some((key, after));
                        break;
                    }
                    Err((e, _)) => Err(e),
                    Ok(segment) => Ok(segment),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
            // Downloads after a gone segment are dropped: the fresh chain replaces them.
            drop(fetched);
            let Some((key, after)) = gone else {
                let _ = tx.send(Ok(Fetched::End)).await;
                return;
            };
            replans += 1;
            let (repo, timeline, until) = rechain.as_ref().expect("checked above");
            match rest_of_log(repo, *timeline, after, *until, &key).await {
                Ok(rest) => wanted = rest,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let feed = SegmentFeed {
        rx,
        _downloads: AbortOnDrop(task.abort_handle()),
    };
    (feed, task)
}

/// The segments that now carry `timeline`'s log from `after + 1` through `until`, from a
/// fresh listing, which must no longer need `missing` (a segment found gone).
async fn rest_of_log(
    repo: &Repository,
    timeline: u64,
    after: u64,
    until: u64,
    missing: &str,
) -> Result<Vec<Wanted>, RestoreError> {
    tracing::info!(
        segment = missing,
        "a planned log segment is gone (merged by compaction?); listing the log again"
    );
    listed_again(repo, missing, |catalog| {
        let segments = catalog.log_after(timeline, after, until)?;
        let needs = segments.iter().any(|s| s.segment.key == missing);
        Ok((Wanted::chain(after, &segments), needs))
    })
    .await
}

/// Segments decoded at once during replay (at most).
const DECODE_AHEAD: usize = 2;

/// Segment downloads in flight during replay (at least; `concurrency` if larger).
const FETCH_AHEAD: usize = 32;

/// Compressed bytes of segments downloaded ahead of decoding, at most (one segment larger
/// than this is downloaded alone).
const FETCH_AHEAD_BYTES: usize = 32 << 20;

/// Where replay stops: after `lsn`, or before the first record later than `time_ms`.
#[derive(Clone, Copy)]
struct Stop {
    lsn: u64,
    time_ms: Option<u64>,
}

/// A downloaded segment.
#[derive(Clone)]
struct Source {
    key: String,
    bytes: bytes::Bytes,
    /// Apply its records only up to this LSN.
    through: u64,
}

/// What batching needs to know of a record.
struct RecordInfo {
    lsn: u64,
    time_ms: u64,
    /// Size of its encoded body.
    bytes: usize,
    /// Number of mutations.
    ops: usize,
}

/// A point write of a record: `value` `None` deletes `key`.
struct Write {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    lsn: u64,
}

/// The writes of (part of) a segment.
enum Writes {
    /// Point writes only, sorted by key; writes of one key stay in log order.
    Sorted(Vec<Write>),
    /// Some record deletes a range: each record's mutations, in log order.
    InOrder(Vec<(u64, Vec<tito_capture::Mutation>)>),
}

/// A segment decoded (and its records checked) on the blocking pool.
struct Decoded {
    source: Source,
    /// Its records up to `through` and the stop point, in log order.
    records: Vec<RecordInfo>,
    writes: Writes,
}

impl Decoded {
    /// Decode `source` up to its `through` LSN and the stop point. Sorting here keeps the
    /// engine's own sort of a batch (of already sorted runs) cheap, and runs in parallel.
    fn read(source: Source, stop: Stop) -> Result<Decoded, RestoreError> {
        let mut records = Vec::new();
        let mut all: Vec<(u64, Vec<tito_capture::Mutation>)> = Vec::new();
        let mut ranges = false;
        let mut reader = SegmentReader::new(&source.bytes[..], source.key.clone())?;
        // Past the records to apply, the rest is still read: only a segment verified to
        // its end (frames, trailer, name) is applied at all, as the verify pass checks.
        let mut past = false;
        for raw in reader.by_ref() {
            let raw = raw?;
            if past {
                continue;
            }
            if raw.lsn > source.through
                || raw.lsn > stop.lsn
                || stop.time_ms.is_some_and(|t| raw.time_ms > t)
            {
                // Kept for the batching side, which stops there.
                records.push(RecordInfo {
                    lsn: raw.lsn,
                    time_ms: raw.time_ms,
                    bytes: raw.body.len(),
                    ops: 0,
                });
                past = true;
                continue;
            }
            let rec = tito_capture::LogRecord {
                lsn: raw.lsn,
                time_ms: raw.time_ms,
                mutations: decode_record(&source.key, raw.lsn, &raw.body)?,
            };
            tito_capture::replay::check_record(&rec)?;
            ranges |= rec
                .mutations
                .iter()
                .any(|m| matches!(m, tito_capture::Mutation::DeleteRange { .. }));
            records.push(RecordInfo {
                lsn: rec.lsn,
                time_ms: rec.time_ms,
                bytes: raw.body.len(),
                ops: rec.mutations.len(),
            });
            all.push((rec.lsn, rec.mutations));
        }
        match reader.summary() {
            Some(summary) => summary.check_name(&source.key)?,
            None => {
                return Err(RestoreError::Damaged {
                    key: source.key.clone(),
                    reason: "the segment ended without its trailer".into(),
                });
            }
        }
        // A record past `through` is not this segment's to apply: drop it here so that
        // batching sees where the segment ends (it checks the stop point itself).
        if records.last().is_some_and(|r| r.lsn > source.through) {
            records.pop();
        }
        let writes = if ranges {
            Writes::InOrder(all)
        } else {
            let mut w = Vec::with_capacity(all.iter().map(|(_, m)| m.len()).sum());
            for (lsn, mutations) in all {
                for m in mutations {
                    let (key, value) = match m {
                        tito_capture::Mutation::Put { key, value } => (key, Some(value)),
                        tito_capture::Mutation::Delete { key } => (key, None),
                        tito_capture::Mutation::DeleteRange { .. } => unreachable!("no ranges"),
                    };
                    w.push(Write { key, value, lsn });
                }
            }
            w.sort_by(|a, b| a.key.cmp(&b.key));
            Writes::Sorted(w)
        };
        Ok(Decoded {
            source,
            records,
            writes,
        })
    }

    /// The writes of each run `(first, last)` of LSNs, in run order.
    fn split(self, runs: &[(u64, u64)]) -> Vec<Writes> {
        let index = |lsn: u64| runs.iter().position(|(a, b)| (*a..=*b).contains(&lsn));
        match self.writes {
            Writes::Sorted(all) => {
                let mut out: Vec<Vec<Write>> = runs.iter().map(|_| Vec::new()).collect();
                let mut at: Option<usize> = None;
                for w in all {
                    // Consecutive writes mostly share a run: try the last one first.
                    let i = match at {
                        Some(i) if (runs[i].0..=runs[i].1).contains(&w.lsn) => Some(i),
                        _ => index(w.lsn),
                    };
                    if let Some(i) = i {
                        out[i].push(w);
                        at = Some(i);
                    }
                }
                out.into_iter().map(Writes::Sorted).collect()
            }
            Writes::InOrder(all) => {
                let mut out: Vec<Vec<_>> = runs.iter().map(|_| Vec::new()).collect();
                for (lsn, m) in all {
                    if let Some(i) = index(lsn) {
                        out[i].push((lsn, m));
                    }
                }
                out.into_iter().map(Writes::InOrder).collect()
            }
        }
    }
}

fn decode_record(
    key: &str,
    lsn: u64,
    body: &[u8],
) -> Result<Vec<tito_capture::Mutation>, RestoreError> {
    tito_format::record::decode_body(body).map_err(|e| RestoreError::Damaged {
        key: key.to_string(),
        reason: format!("record {lsn}: {e}"),
    })
}

/// Batching of one segment's records: a run of consecutive LSNs, or a cut between batches.
enum Event {
    Run(u64, u64),
    Cut,
}

/// Whole records `first..=last` for one transaction: their writes, and the segments they
/// came from (compressed, shared), to decode them again if the transaction must be rebuilt.
#[derive(Default)]
struct ReplayBatch {
    parts: Vec<Writes>,
    sources: Vec<Source>,
    /// LSNs `first..=last`, if any record.
    lsns: Option<(u64, u64)>,
}

impl ReplayBatch {
    fn records(&self) -> u64 {
        self.lsns.map_or(0, |(a, b)| b - a + 1)
    }

    /// Add the writes of records `run` (the next ones), decoded from `source`.
    fn push(&mut self, part: Writes, (first, last): (u64, u64), source: &Source) {
        self.parts.push(part);
        self.lsns = Some((self.lsns.map_or(first, |(a, _)| a), last));
        if !self.sources.iter().any(|s| s.key == source.key) {
            self.sources.push(source.clone());
        }
    }
}

/// Apply whole records in one engine transaction (a record is never split across two).
/// A batch the engine finds too large (it wrote nothing) is applied in two halves: counting
/// mutations cannot foresee every engine's cost (etcd splits a range delete around the keys
/// put inside it in the same transaction). A transaction that must be rebuilt (after a
/// conflict, or in halves) decodes its records again from their segments.
async fn apply_batch(target: &dyn Engine, batch: ReplayBatch) -> Result<u64, RestoreError> {
    let n = batch.records();
    let Some((first, last)) = batch.lsns else {
        return Ok(0);
    };
    let sources = batch.sources;
    let mut parts = Some(batch.parts);
    // LSN ranges still to apply, the next one last, so records stay in order.
    let mut todo = vec![(first, last)];
    while let Some((lo, hi)) = todo.pop() {
        let applied = tito_engine::transaction(target, |tx| {
            let filled = match parts.take() {
                Some(parts) => fill_parts(tx.as_ref(), parts),
                None => fill_range(tx.as_ref(), &sources, lo, hi),
            };
            async move { filled }
        })
        .await;
        match applied {
            Ok(()) => {}
            Err(RestoreError::Engine(tito_engine::EngineError::TooLarge(_))) if hi > lo => {
                let mid = lo + (hi - lo) / 2;
                todo.push((mid + 1, hi));
                todo.push((lo, mid));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Buffer decoded writes in `tx`, moving keys and values. In a sorted part only the last
/// write of each key counts; the engine sorts a transaction's writes, and runs that arrive
/// sorted cost it little.
fn fill_parts(tx: &dyn tito_engine::Transaction, parts: Vec<Writes>) -> Result<(), RestoreError> {
    for part in parts {
        match part {
            Writes::Sorted(writes) => {
                let mut writes = writes.into_iter().peekable();
                while let Some(w) = writes.next() {
                    if writes.peek().is_some_and(|next| next.key == w.key) {
                        continue; // a later write of the same key follows
                    }
                    match w.value {
                        Some(v) => tx.put(w.key, v)?,
                        None => tx.delete(w.key)?,
                    }
                }
            }
            Writes::InOrder(records) => {
                for (_, mutations) in records {
                    for m in mutations {
                        match m {
                            tito_capture::Mutation::Put { key, value } => tx.put(key, value)?,
                            tito_capture::Mutation::Delete { key } => tx.delete(key)?,
                            tito_capture::Mutation::DeleteRange { start, end } => {
                                tx.delete_range(&KeyRange { start, end })?
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Buffer records `lo..=hi` in `tx`, decoding them again from `sources` (in order; a
/// record an overlapping segment repeats is applied once).
fn fill_range(
    tx: &dyn tito_engine::Transaction,
    sources: &[Source],
    lo: u64,
    hi: u64,
) -> Result<(), RestoreError> {
    let mut next = lo;
    for source in sources {
        for raw in SegmentReader::new(&source.bytes[..], source.key.clone())? {
            let raw = raw?;
            if raw.lsn > hi || raw.lsn > source.through {
                break;
            }
            if raw.lsn != next {
                continue;
            }
            let rec = tito_capture::LogRecord {
                lsn: raw.lsn,
                time_ms: raw.time_ms,
                mutations: decode_record(&source.key, raw.lsn, &raw.body)?,
            };
            tito_capture::replay::apply_record_owned(tx, rec)?;
            next += 1;
        }
    }
    if next != hi + 1 {
        return Err(RestoreError::Damaged {
            key: sources.last().map(|s| s.key.clone()).unwrap_or_default(),
            reason: format!("record {next} is no longer in its segment"),
        });
    }
    Ok(())
}
