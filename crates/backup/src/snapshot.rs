//! Snapshots: one consistent read of the backed-up keyspace, streamed into chunks that are
//! compressed and uploaded in parallel, with the manifest written last.
//!
//! Incremental by default (FORMAT.md §7.3): chunk boundaries are content-defined
//! ([`ChunkBoundaries`]: they depend on the keys at them, not on what came before), each
//! chunk is a shared object named by the hash of its pairs, and a chunk whose name a
//! complete snapshot of the repository already references is not compressed or uploaded
//! again: the manifest (version 2) names it. New chunks are created with `put_if_absent`
//! (an identical chunk uploaded by a concurrent or crashed snapshot is read back and
//! reused). [`SnapshotOptions::full`] writes every chunk afresh into the snapshot's own
//! folder instead, a snapshot sharing nothing with earlier ones.
//!
//! The read view pins one commit: the snapshot holds exactly the effects of records up to
//! the view's stamp version (its LSN) and nothing after, while writers keep going. Memory
//! is bounded by `upload_concurrency` chunks in flight plus the one being filled.
//!
//! The reading task only scans and copies pairs into a [`PairBatch`] (one buffer a chunk,
//! so no allocation per pair crosses threads, and the digest hashes a chunk's pairs in one
//! update); encoding and compressing a chunk (most of the CPU) run on blocking threads, at
//! most one per core.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tito_capture::scan_backed_up;
use tito_engine::ReadView;
use tito_format::chunk::PairBatch;
use tito_format::manifest::{MANIFEST_FORMAT_VERSION, new_snapshot_id};
use tito_format::{
    ChunkBoundaries, ChunkEntry, ChunkReader, ChunkWriter, ContentHash, KeyspaceDigest, Manifest,
    layout,
};
use tito_store::Store;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::BackupConfig;
use crate::error::BackupError;
use crate::now_ms;
use crate::repository::Repository;
use crate::service::BackupService;

/// Pairs read from the view in the first page (small: values may be large); later pages
/// are sized by bytes ([`page_for`]).
const SCAN_PAGE: usize = 256;

/// Most pairs per page.
const MAX_PAGE: usize = 65_536;

/// Pairs of the next page, after `pairs` pairs of `bytes` bytes: about `page_bytes` (the
/// view's [`ReadView::scan_page_bytes`]). Large pages matter on etcd, where each range
/// read walks the index over the rest of its range: a 50,000-key etcd snapshot took 0.52 s
/// in 1,024-pair pages and 0.19 s in 16 MiB ones; small ones on redb, whose pages stay in
/// the cache (16 MiB pages made a 1M-key snapshot a third slower).
fn page_for(pairs: u64, bytes: u64, page_bytes: usize) -> usize {
    if pairs == 0 {
        return SCAN_PAGE;
    }
    let average = (bytes / pairs).max(1);
    ((page_bytes as u64 / average) as usize).clamp(16, MAX_PAGE)
}

/// What a chunk task hands back: its manifest entry, bytes uploaded (0 for a chunk reused
/// from an earlier snapshot), whether it was reused, and its batch buffer for reuse.
type ChunkDone = (ChunkEntry, u64, bool, Arc<PairBatch>);

/// Shared chunks complete snapshots of the repository reference, by content hash.
type Known = Arc<HashMap<String, ChunkEntry>>;

/// How to take a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Upload every chunk afresh into the snapshot's own folder, sharing nothing with
    /// earlier snapshots (`tito snapshot --full`). Default: incremental, shared chunks.
    pub full: bool,
}

/// What a snapshot did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotResult {
    /// Timeline it was taken on.
    pub timeline: u64,
    /// The LSN it reflects.
    pub lsn: u64,
    /// Its id.
    pub id: String,
    /// Its manifest's object key.
    pub manifest_key: String,
    /// Key-value pairs.
    pub pairs: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Uncompressed key and value bytes.
    pub raw_bytes: u64,
    /// Bytes uploaded (chunks and manifest).
    pub bytes: u64,
    /// Wall time taken, in milliseconds.
    pub elapsed_ms: u64,
    /// Chunks an earlier snapshot had uploaded, referenced again without an upload.
    #[serde(default)]
    pub chunks_reused: u64,
    /// Chunks uploaded by this snapshot.
    #[serde(default)]
    pub chunks_uploaded: u64,
}

impl BackupService {
    /// Take a snapshot now (incremental: unchanged chunks are not uploaded again).
    pub async fn snapshot(&self) -> Result<SnapshotResult, BackupError> {
        self.snapshot_with_progress(&|_, _| {}).await
    }

    /// Take a snapshot, calling `progress(pairs, raw_bytes)` as pairs are read.
    pub async fn snapshot_with_progress(
        &self,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<SnapshotResult, BackupError> {
        self.snapshot_with_options(&SnapshotOptions::default(), progress)
            .await
    }

    /// Take a snapshot as `options` say, calling `progress(pairs, raw_bytes)` as pairs are
    /// read.
    pub async fn snapshot_with_options(
        &self,
        options: &SnapshotOptions,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<SnapshotResult, BackupError> {
        let engine = self.db.engine().clone();
        let timeline = self.db.timeline().await?;
        let view = engine.read_view().await?;
        let lsn = view.version();
        let lsn_time_ms = match view.get(&tito_capture::keys::log_key(lsn)).await? {
            Some(v) if v.len() >= 8 => u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            _ => self.shipped_record_time(timeline, lsn).await?,
        };
        let result = write_snapshot(
            &self.repo,
            &self.config,
            SnapshotOf {
                view: view.as_ref(),
                timeline,
                lsn_time_ms,
                engine: engine.kind(),
            },
            options,
            progress,
        )
        .await?;
        self.note_snapshot(timeline, result.lsn);
        self.stats.record_snapshot(&result);
        Ok(result)
    }

    /// Commit time of record `lsn` once it left the engine: it is in a shipped segment.
    /// Restore-to-time needs it to know which snapshots precede a time.
    async fn shipped_record_time(&self, timeline: u64, lsn: u64) -> Result<u64, BackupError> {
        if lsn == 0 {
            return Ok(0);
        }
        let mut lineage_timeline = Some(timeline);
        while let Some(tl) = lineage_timeline {
            for obj in self.repo.list(&layout::log_prefix(tl)).await? {
                if let layout::ObjectName::Segment {
                    first, last, t1, ..
                } = layout::parse(&obj.key)
                {
                    if last == lsn {
                        return Ok(t1);
                    }
                    if first <= lsn && lsn < last {
                        let bytes = self.store.get(&obj.key).await?;
                        for raw in tito_format::SegmentReader::new(&bytes[..], obj.key.clone())? {
                            let raw = raw?;
                            if raw.lsn == lsn {
                                return Ok(raw.time_ms);
                            }
                        }
                    }
                }
            }
            // Before the branch point the record lives on the parent timeline.
            lineage_timeline = self.repo.history(tl).await?.and_then(|h| h.parent);
        }
        // Unknown (its segment was pruned): a time later than the true one is safe, since
        // planners then only pick this snapshot for targets that are surely after it.
        tracing::warn!(
            lsn,
            "commit time of the snapshot's LSN is unknown; using the snapshot start time"
        );
        Ok(now_ms())
    }
}

/// What [`write_snapshot`] reads: a consistent view and where it sits in the log.
pub struct SnapshotOf<'a> {
    /// The view read; its [`ReadView::version`] is the snapshot's LSN.
    pub view: &'a dyn ReadView,
    /// The timeline the snapshot belongs to.
    pub timeline: u64,
    /// Commit time of the record at the view's LSN (a later time is safe: restore planning
    /// then picks this snapshot only for targets surely after it).
    pub lsn_time_ms: u64,
    /// The engine's kind, recorded in the manifest.
    pub engine: &'a str,
}

/// Write a snapshot of `of.view`'s backed-up keyspace into `repo` as `options` say: chunks
/// compressed and uploaded in parallel (or reused, when incremental), the manifest last
/// (until it is written the snapshot does not exist for restore). Used by
/// [`BackupService::snapshot`] and by sources whose records do not come from a Tito
/// database's capture log (`crate::LogShipper::snapshot`).
pub async fn write_snapshot(
    repo: &Repository,
    config: &BackupConfig,
    of: SnapshotOf<'_>,
    options: &SnapshotOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<SnapshotResult, BackupError> {
    let started = Instant::now();
    let started_ms = now_ms();
    let SnapshotOf {
        view,
        timeline,
        lsn_time_ms,
        engine,
    } = of;
    let store = repo.store();
    let database_id = repo.config().database_id.clone();
    let lsn = view.version();
    let id = new_snapshot_id();
    let dir = layout::snapshot_dir(timeline, lsn, &id);
    let shared = !options.full;
    let known: Known = Arc::new(if shared {
        known_chunks(repo).await
    } else {
        HashMap::new()
    });
    let naming_key = store.chunk_naming_key();
    let boundaries = ChunkBoundaries::with_average(config.chunk_target_bytes as u64);
    let job = ChunkJob {
        dir: dir.clone(),
        shared,
        known,
        naming_key,
    };

    // Reading is sequential, and so is the keyspace digest, in a stage of its own fed each
    // chunk's batch in key order (off the reading task, which bounds an incremental
    // snapshot); hashing, compressing and uploading a chunk run in parallel tasks, at most
    // `upload_concurrency` at once, of which at most one per core compresses (more would
    // only take turns with the reading task).
    let in_flight = config.upload_concurrency.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let compressing = Arc::new(Semaphore::new(cores.min(in_flight)));
    let mut tasks: JoinSet<Result<ChunkDone, BackupError>> = JoinSet::new();
    let mut entries: Vec<ChunkEntry> = Vec::new();
    let mut spare: Vec<PairBatch> = Vec::new();
    let (digest_tx, mut digest_rx) = tokio::sync::mpsc::channel::<Arc<PairBatch>>(in_flight);
    let digesting = tokio::task::spawn_blocking(move || {
        let mut digest = KeyspaceDigest::new();
        while let Some(batch) = digest_rx.blocking_recv() {
            digest.update_batch(&batch);
        }
        digest
    });
    // Room for an average chunk's pairs and their lengths (16 bytes a pair) twice over;
    // a larger chunk grows its buffer.
    let batch_capacity = 2 * config.chunk_target_bytes + config.chunk_target_bytes / 2;
    let mut batch = PairBatch::with_capacity(batch_capacity);
    let (mut pairs, mut raw_bytes, mut uploaded, mut next_chunk) = (0u64, 0u64, 0u64, 0u32);
    let mut counts = (0u64, 0u64);
    let page_bytes = view.scan_page_bytes();
    let mut want = page_for(0, 0, page_bytes);
    let mut page = scan_backed_up(view, None, want).await?;
    loop {
        let done = page.len() < want;
        // The next page is read while this one is cut into chunks: on etcd a read's round
        // trip and index walk hide behind the chunking. Two pages are held at most.
        let read_bytes: u64 = page.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        let next_want = page_for(
            pairs + page.len() as u64,
            raw_bytes + read_bytes,
            page_bytes,
        );
        let last = page.last().map(|(k, _)| k.clone());
        let read_next = async {
            if done {
                return Ok(None);
            }
            scan_backed_up(view, last.as_deref(), next_want)
                .await
                .map(Some)
        };
        let cut = async {
            for (k, v) in &page {
                let pair_bytes = (k.len() + v.len()) as u64;
                pairs += 1;
                raw_bytes += pair_bytes;
                batch.push(k, v);
                if boundaries.cut_after(k, pair_bytes, batch.raw_bytes()) {
                    let next = spare
                        .pop()
                        .unwrap_or_else(|| PairBatch::with_capacity(batch_capacity));
                    let full = Arc::new(std::mem::replace(&mut batch, next));
                    send_to_digest(&digest_tx, &full).await?;
                    spawn_chunk(
                        store,
                        config,
                        &mut tasks,
                        &compressing,
                        &job,
                        next_chunk,
                        full,
                    );
                    next_chunk += 1;
                    while tasks.len() >= in_flight {
                        uploaded +=
                            collect(&mut tasks, &mut entries, &mut spare, &mut counts).await?;
                    }
                }
            }
            progress(pairs, raw_bytes);
            Ok::<(), BackupError>(())
        };
        let (next, cut) = futures::join!(read_next, cut);
        cut?;
        match next? {
            Some(p) => {
                page = p;
                want = next_want;
            }
            None => break,
        }
    }
    if !batch.is_empty() {
        let batch = Arc::new(batch);
        send_to_digest(&digest_tx, &batch).await?;
        spawn_chunk(
            store,
            config,
            &mut tasks,
            &compressing,
            &job,
            next_chunk,
            batch,
        );
    }
    drop(digest_tx);
    let digest = digesting
        .await
        .map_err(|e| BackupError::Task(e.to_string()))?;
    while !tasks.is_empty() {
        uploaded += collect(&mut tasks, &mut entries, &mut spare, &mut counts).await?;
    }
    entries.sort_by_key(|e| e.n);
    let (chunks_reused, chunks_uploaded) = counts;

    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id.clone(),
        timeline,
        lsn,
        lsn_time_ms,
        started_ms,
        finished_ms: now_ms(),
        engine: engine.to_string(),
        database_id,
        total_count: pairs,
        total_raw_bytes: raw_bytes,
        keyspace_digest: digest.finish(),
        chunks: entries,
    };
    let manifest_key = layout::snapshot_manifest(&dir);
    let body = manifest.encode(&manifest_key)?;
    uploaded += body.len() as u64;
    // Written last: until this put returns, the snapshot does not exist for restore.
    store.put(&manifest_key, Bytes::from(body)).await?;
    if chunks_reused > 0 {
        check_reused_chunks(repo, &manifest, &manifest_key).await?;
    }
    let result = SnapshotResult {
        timeline,
        lsn,
        id,
        manifest_key,
        pairs,
        chunks: manifest.chunks.len() as u64,
        raw_bytes,
        bytes: uploaded,
        elapsed_ms: started.elapsed().as_millis() as u64,
        chunks_reused,
        chunks_uploaded,
    };
    tracing::info!(
        lsn,
        pairs,
        chunks = result.chunks,
        reused = chunks_reused,
        "snapshot written"
    );
    Ok(result)
}

/// The shared chunks that complete snapshots of the repository reference, by content
/// hash (a catalog of the whole repository: each was listed with its size). If the
/// catalog cannot be loaded the snapshot goes on without reuse, uploading every chunk.
async fn known_chunks(repo: &Repository) -> HashMap<String, ChunkEntry> {
    let catalog = match repo.catalog().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list earlier snapshots; uploading every chunk");
            return HashMap::new();
        }
    };
    let mut known = HashMap::new();
    for info in catalog.timelines.values() {
        for s in &info.snapshots {
            for c in s.chunks.iter().filter(|c| c.is_shared()) {
                if let Some(h) = &c.hash {
                    known.insert(h.clone(), c.clone());
                }
            }
        }
    }
    known
}

/// After the manifest is written: every shared chunk it reuses must still be listed. A
/// prune that planned before the manifest existed may have deleted one an older,
/// pruned manifest referenced; then the manifest is deleted again (the snapshot does
/// not exist) and the snapshot fails: a retry uploads the missing chunks.
async fn check_reused_chunks(
    repo: &Repository,
    manifest: &Manifest,
    manifest_key: &str,
) -> Result<(), BackupError> {
    let listed: BTreeSet<String> = repo
        .list(layout::SHARED_CHUNKS)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let dir = manifest_key.trim_end_matches(layout::MANIFEST);
    let missing = manifest
        .chunks
        .iter()
        .map(|c| c.object_key(dir))
        .filter(|k| k.starts_with(layout::SHARED_CHUNKS) && !listed.contains(k))
        .count();
    if missing > 0 {
        repo.store()
            .delete_many(&[manifest_key.to_string()])
            .await?;
        return Err(BackupError::ChunksGone {
            manifest: manifest_key.to_string(),
            missing,
        });
    }
    Ok(())
}

/// Encode chunk `n` from `batch` on a blocking thread once a core is free, then upload
/// it; a shared chunk already known (by its content hash) is neither encoded nor uploaded.
fn spawn_chunk(
    store: &Arc<dyn Store>,
    config: &BackupConfig,
    tasks: &mut JoinSet<Result<ChunkDone, BackupError>>,
    compressing: &Arc<Semaphore>,
    job: &ChunkJob,
    n: u32,
    batch: Arc<PairBatch>,
) {
    let store = store.clone();
    let level = config.compression_level;
    let capacity = config.chunk_target_bytes / 2;
    let compressing = compressing.clone();
    let job = job.clone();
    tasks.spawn(async move {
        let permit = compressing
            .acquire_owned()
            .await
            .map_err(|e| BackupError::Task(e.to_string()))?;
        let known = job.known.clone();
        let folder_key = layout::snapshot_chunk(&job.dir, n);
        let (shared, naming_key) = (job.shared, job.naming_key);
        let folder_name = folder_key.clone();
        let (hash, encoded, batch) =
            tokio::task::spawn_blocking(move || -> Result<_, BackupError> {
                let _permit = permit;
                let hash = shared.then(|| {
                    let mut h = ContentHash::new(naming_key.as_ref());
                    h.update_batch(&batch);
                    h.finish()
                });
                if let Some(h) = &hash
                    && let Some(e) = known.get(h)
                    && e.count == batch.len()
                {
                    return Ok((hash, None, batch));
                }
                let name = match &hash {
                    Some(h) => layout::shared_chunk(h),
                    None => folder_name,
                };
                // The digest stage digests the keyspace in key order.
                let mut w = ChunkWriter::undigested(Vec::with_capacity(capacity))
                    .named(name)
                    .with_level(level);
                w.push_batch(&batch)?;
                let (summary, _, bytes) = w.finish_into_parts()?;
                Ok((hash, Some((summary, bytes)), batch))
            })
            .await
            .map_err(|e| BackupError::Task(e.to_string()))??;
        let Some((summary, bytes)) = encoded else {
            let h = hash.expect("only shared chunks are known");
            let mut entry = job.known[&h].clone();
            entry.n = n;
            return Ok((entry, 0, true, batch));
        };
        let size = bytes.len() as u64;
        let Some(h) = hash else {
            store.put(&folder_key, Bytes::from(bytes)).await?;
            return Ok((summary.entry(n), size, false, batch));
        };
        let key = layout::shared_chunk(&h);
        let mut entry = summary.entry(n);
        entry.hash = Some(h.clone());
        let body = Bytes::from(bytes);
        if store.put_if_absent(&key, body.clone()).await? {
            return Ok((entry, size, false, batch));
        }
        // Already there: uploaded by a snapshot that crashed before its manifest, or by
        // one running beside this one. Its bytes may differ (another compression level),
        // so the entry describes the object as stored, once it proved to hold these pairs.
        match existing_chunk(store.as_ref(), &key, &h, job.naming_key.as_ref()).await? {
            Some(found) => {
                let mut found = found.entry(n);
                found.hash = Some(h);
                Ok((found, 0, true, batch))
            }
            None => {
                tracing::warn!(key, "replacing a damaged shared chunk");
                store.put(&key, body).await?;
                Ok((entry, size, false, batch))
            }
        }
    });
}

/// Hand `batch` to the digest stage (in key order: the reading task sends each batch before
/// the next is filled).
async fn send_to_digest(
    tx: &tokio::sync::mpsc::Sender<Arc<PairBatch>>,
    batch: &Arc<PairBatch>,
) -> Result<(), BackupError> {
    tx.send(batch.clone())
        .await
        .map_err(|_| BackupError::Task("the snapshot's digest stage ended early".into()))
}

/// What every chunk task of one snapshot shares.
#[derive(Clone)]
struct ChunkJob {
    /// The snapshot's folder (chunks of a full snapshot live in it).
    dir: String,
    /// Shared, content-named chunks (incremental) rather than the folder's own.
    shared: bool,
    /// Shared chunks complete snapshots reference.
    known: Known,
    /// The store's chunk naming key (encrypted repositories).
    naming_key: Option<[u8; 32]>,
}

/// The summary of the shared chunk `key` already in the store, if it is a sound chunk whose
/// pairs hash to `hash`; `None` if it is damaged or holds other pairs.
async fn existing_chunk(
    store: &dyn Store,
    key: &str,
    hash: &str,
    naming_key: Option<&[u8; 32]>,
) -> Result<Option<tito_format::ChunkSummary>, BackupError> {
    let bytes = match store.get(key).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let key = key.to_string();
    let hash = hash.to_string();
    let naming_key = naming_key.copied();
    tokio::task::spawn_blocking(move || {
        let Ok(mut reader) = ChunkReader::new(&bytes[..], key) else {
            return Ok(None);
        };
        let mut h = ContentHash::new(naming_key.as_ref());
        for pair in reader.by_ref() {
            match pair {
                Ok((k, v)) => h.update(&k, &v),
                Err(_) => return Ok(None),
            }
        }
        Ok(reader.summary().filter(|_| h.finish() == hash).cloned())
    })
    .await
    .map_err(|e| BackupError::Task(e.to_string()))?
}

/// Wait for one chunk task; record its entry, keep its batch buffer for reuse and return
/// its uploaded bytes. `counts` are (reused, uploaded) chunks so far.
async fn collect(
    tasks: &mut JoinSet<Result<ChunkDone, BackupError>>,
    entries: &mut Vec<ChunkEntry>,
    spare: &mut Vec<PairBatch>,
    counts: &mut (u64, u64),
) -> Result<u64, BackupError> {
    match tasks.join_next().await {
        Some(joined) => {
            let (entry, size, reused, batch) =
                joined.map_err(|e| BackupError::Task(e.to_string()))??;
            entries.push(entry);
            // Reused once the digest stage is done with it too.
            if let Ok(mut batch) = Arc::try_unwrap(batch) {
                batch.clear();
                spare.push(batch);
            }
            if reused {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            Ok(size)
        }
        None => Ok(0),
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    #[test]
    fn pages_aim_at_a_few_mebibytes_whatever_the_pairs() {
        let etcd = 16 << 20;
        assert_eq!(page_for(0, 0, etcd), SCAN_PAGE);
        // 270-byte pairs: about 62k a page on etcd, about 970 on redb.
        assert_eq!(page_for(1000, 270_000, etcd), etcd / 270);
        assert_eq!(page_for(1000, 270_000, 256 << 10), (256 << 10) / 270);
        // Tiny pairs: capped.
        assert_eq!(page_for(1000, 1000, etcd), MAX_PAGE);
        // 1 MiB values: a few pairs, never a response of hundreds of MiB.
        assert_eq!(page_for(10, 10 << 20, etcd), 16);
    }
}
