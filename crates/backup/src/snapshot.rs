//! Full snapshots: one consistent read of the backed-up keyspace, streamed into chunks that
//! are compressed and uploaded in parallel, with the manifest written last.
//!
//! The read view pins one commit: the snapshot holds exactly the effects of records up to
//! the view's stamp version (its LSN) and nothing after, while writers keep going. Memory
//! is bounded by `upload_concurrency` chunks in flight plus the one being filled.
//!
//! The reading task only scans and copies pairs into a [`PairBatch`] (one buffer a chunk,
//! so no allocation per pair crosses threads, and the digest hashes a chunk's pairs in one
//! update); encoding and compressing a chunk (most of the CPU) run on blocking threads, at
//! most one per core.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tito_capture::scan_backed_up;
use tito_format::chunk::PairBatch;
use tito_format::manifest::{MANIFEST_FORMAT_VERSION, new_snapshot_id};
use tito_format::{ChunkEntry, ChunkWriter, KeyspaceDigest, Manifest, layout};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use tito_engine::ReadView;
use tito_store::Store;

use crate::config::BackupConfig;
use crate::error::BackupError;
use crate::now_ms;
use crate::repository::Repository;
use crate::service::BackupService;

/// Pairs read from the view per page.
const SCAN_PAGE: usize = 1024;

/// What a chunk task hands back: its manifest entry, bytes uploaded, and its batch buffer
/// for reuse.
type ChunkDone = (ChunkEntry, u64, PairBatch);

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
}

impl BackupService {
    /// Take a full snapshot now.
    pub async fn snapshot(&self) -> Result<SnapshotResult, BackupError> {
        self.snapshot_with_progress(&|_, _| {}).await
    }

    /// Take a full snapshot, calling `progress(pairs, raw_bytes)` as pairs are read.
    pub async fn snapshot_with_progress(
        &self,
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

/// Write a full snapshot of `of.view`'s backed-up keyspace into `repo`: chunks compressed
/// and uploaded in parallel, the manifest last (until it is written the snapshot does not
/// exist for restore). Used by [`BackupService::snapshot`] and by sources whose records
/// do not come from a Tito database's capture log.
pub async fn write_snapshot(
    repo: &Repository,
    config: &BackupConfig,
    of: SnapshotOf<'_>,
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
    let database_id = repo.config().database_id.clone();
    let lsn = view.version();
    let id = new_snapshot_id();
    let dir = layout::snapshot_dir(timeline, lsn, &id);

    // Reading and the keyspace digest are sequential; compressing and uploading a chunk
    // run in parallel tasks, at most `upload_concurrency` at once, of which at most one
    // per core compresses (more would only take turns with the reading task).
    let in_flight = config.upload_concurrency.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let compressing = Arc::new(Semaphore::new(cores.min(in_flight)));
    let mut tasks: JoinSet<Result<ChunkDone, BackupError>> = JoinSet::new();
    let mut entries: Vec<ChunkEntry> = Vec::new();
    let mut spare: Vec<PairBatch> = Vec::new();
    let mut digest = KeyspaceDigest::new();
    // Room for a chunk's pairs and their lengths (16 bytes a pair), so the buffer does
    // not double past it.
    let batch_capacity = config.chunk_target_bytes + config.chunk_target_bytes / 4;
    let mut batch = PairBatch::with_capacity(batch_capacity);
    let mut after: Option<Vec<u8>> = None;
    let (mut pairs, mut raw_bytes, mut uploaded, mut next_chunk) = (0u64, 0u64, 0u64, 0u32);
    loop {
        let page = scan_backed_up(view, after.as_deref(), SCAN_PAGE).await?;
        let done = page.len() < SCAN_PAGE;
        for (k, v) in &page {
            pairs += 1;
            raw_bytes += (k.len() + v.len()) as u64;
            batch.push(k, v);
            if batch.raw_bytes() >= config.chunk_target_bytes as u64 {
                digest.update_batch(&batch);
                let next = spare
                    .pop()
                    .unwrap_or_else(|| PairBatch::with_capacity(batch_capacity));
                let full = std::mem::replace(&mut batch, next);
                spawn_chunk(
                    repo.store(),
                    config,
                    &mut tasks,
                    &compressing,
                    &dir,
                    next_chunk,
                    full,
                );
                next_chunk += 1;
                while tasks.len() >= in_flight {
                    uploaded += collect(&mut tasks, &mut entries, &mut spare).await?;
                }
            }
        }
        after = page.into_iter().next_back().map(|(k, _)| k);
        progress(pairs, raw_bytes);
        if done {
            break;
        }
    }
    if !batch.is_empty() {
        digest.update_batch(&batch);
        spawn_chunk(
            repo.store(),
            config,
            &mut tasks,
            &compressing,
            &dir,
            next_chunk,
            batch,
        );
    }
    while !tasks.is_empty() {
        uploaded += collect(&mut tasks, &mut entries, &mut spare).await?;
    }
    entries.sort_by_key(|e| e.n);

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
    repo.store().put(&manifest_key, Bytes::from(body)).await?;
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
    };
    tracing::info!(lsn, pairs, chunks = result.chunks, "snapshot written");
    Ok(result)
}

/// Encode chunk `n` from `batch` on a blocking thread once a core is free, then upload it.
fn spawn_chunk(
    store: &Arc<dyn Store>,
    config: &BackupConfig,
    tasks: &mut JoinSet<Result<ChunkDone, BackupError>>,
    compressing: &Arc<Semaphore>,
    dir: &str,
    n: u32,
    mut batch: PairBatch,
) {
    let key = layout::snapshot_chunk(dir, n);
    let store = store.clone();
    let level = config.compression_level;
    let capacity = config.chunk_target_bytes / 2;
    let compressing = compressing.clone();
    tasks.spawn(async move {
        let name = key.clone();
        let permit = compressing
            .acquire_owned()
            .await
            .map_err(|e| BackupError::Task(e.to_string()))?;
        let (summary, bytes, batch) =
            tokio::task::spawn_blocking(move || -> Result<_, BackupError> {
                let _permit = permit;
                // The reading task digests the keyspace in key order.
                let mut w = ChunkWriter::undigested(Vec::with_capacity(capacity))
                    .named(name)
                    .with_level(level);
                w.push_batch(&batch)?;
                let (summary, _, bytes) = w.finish_into_parts()?;
                batch.clear();
                Ok((summary, bytes, batch))
            })
            .await
            .map_err(|e| BackupError::Task(e.to_string()))??;
        let size = bytes.len() as u64;
        store.put(&key, Bytes::from(bytes)).await?;
        Ok((summary.entry(n), size, batch))
    });
}

/// Wait for one chunk task; record its entry, keep its batch buffer for reuse and return
/// its uploaded bytes.
async fn collect(
    tasks: &mut JoinSet<Result<ChunkDone, BackupError>>,
    entries: &mut Vec<ChunkEntry>,
    spare: &mut Vec<PairBatch>,
) -> Result<u64, BackupError> {
    match tasks.join_next().await {
        Some(joined) => {
            let (entry, size, batch) = joined.map_err(|e| BackupError::Task(e.to_string()))??;
            entries.push(entry);
            spare.push(batch);
            Ok(size)
        }
        None => Ok(0),
    }
}
