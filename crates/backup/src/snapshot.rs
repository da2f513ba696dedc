//! Snapshots: one consistent read of the backed-up keyspace, streamed into chunks that are
//! compressed and uploaded in parallel, with the manifest written last.
//!
//! Incremental by default (FORMAT.md §7.3): chunk boundaries are content-defined
//! ([`ChunkBoundaries`]: they depend on the keys at them, not on what came before), each
//! chunk is a shared object named by the hash of its pairs, and a chunk whose name a
//! complete snapshot of the repository already references is not compressed or uploaded
//! again: the manifest (version 3) names it. With the changes since the service's previous
//! snapshot known ([`Reuse`], `crate::changes`), only the chunks they touched are read
//! again; the others are taken over from that snapshot's manifest without a read. New chunks are created with `put_if_absent`
//! (an identical chunk uploaded by a concurrent or crashed snapshot is read back and
//! reused). [`SnapshotOptions::full`] writes every chunk afresh into the snapshot's own
//! folder instead, a snapshot sharing nothing with earlier ones.
//!
//! The read view pins one commit: the snapshot holds exactly the effects of records up to
//! the view's stamp version (its LSN) and nothing after, while writers keep going. Memory
//! is bounded by `upload_concurrency` chunks in flight plus the one being filled.
//!
//! The reading task only scans and copies pairs into a [`PairBatch`] (one buffer a chunk,
//! so no allocation per pair crosses threads); hashing, encoding and compressing a chunk
//! (most of the CPU) run on blocking threads, at most one per core. The keyspace digest is
//! composed of the chunks' content hashes once they are all known.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tito_capture::scan_backed_up_in;
use tito_engine::{KeyRange, ReadView};
use tito_format::chunk::PairBatch;
use tito_format::manifest::{MANIFEST_FORMAT_VERSION, new_snapshot_id};
use tito_format::{
    ChunkBoundaries, ChunkDigest, ChunkEntry, ChunkReader, ChunkWriter, ContentHash, Manifest,
    layout,
};
use tito_store::Store;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::changes::Reuse;
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

/// What a chunk task hands back.
struct ChunkDone {
    /// Its manifest entry (with its unkeyed content hash: its name, or `content` where
    /// the name is not it).
    entry: ChunkEntry,
    /// Bytes uploaded (0 for a chunk reused from an earlier snapshot).
    size: u64,
    /// Whether an earlier snapshot had uploaded it.
    reused: bool,
    /// Its batch buffer, for reuse.
    batch: PairBatch,
}

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
    /// Pairs read from the database: all of them, or, when the changes since the previous
    /// snapshot were known, only those of the chunks they touched (the rest was taken over
    /// from its manifest).
    #[serde(default)]
    pub pairs_read: u64,
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
        let _turn = self.snapshot_turn.lock().await;
        let timeline = self.db.timeline().await?;
        // Before the view: every record after it is then seen by the shipper's notes.
        self.changes.begin(timeline);
        let written = async {
            let view = engine.read_view().await?;
            let lsn = view.version();
            self.changes.viewed(lsn);
            let lsn_time_ms = match view.get(&tito_capture::keys::log_key(lsn)).await? {
                Some(v) if v.len() >= 8 => u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                _ => self.shipped_record_time(timeline, lsn).await?,
            };
            let reuse = if options.full {
                None
            } else {
                self.changes.reuse_for(timeline, view.as_ref()).await?
            };
            if let Some(r) = &reuse {
                tracing::debug!(
                    changed = r.dirty_count(),
                    of = r.chunks.len(),
                    "reading only the chunks changed since the last snapshot"
                );
            }
            write_snapshot_manifest(
                &self.repo,
                &self.config,
                SnapshotOf {
                    view: view.as_ref(),
                    timeline,
                    lsn_time_ms,
                    engine: engine.kind(),
                    reuse,
                },
                options,
                progress,
            )
            .await
        }
        .await;
        let result = match written {
            Ok((result, manifest)) => {
                self.changes.finished(timeline, result.lsn, manifest.chunks);
                result
            }
            Err(e) => {
                self.changes.abandon();
                return Err(e);
            }
        };
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
            // Its segment may be pruned while a snapshot at the same LSN is kept (nothing
            // committed since that snapshot): that one knows the time.
            for obj in self.repo.list(&layout::snapshots_prefix(tl)).await? {
                if let layout::ObjectName::SnapshotManifest { lsn: at, .. } =
                    layout::parse(&obj.key)
                    && at == lsn
                    && let Ok(m) = self.repo.manifest(&obj.key).await
                {
                    return Ok(m.lsn_time_ms);
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
    /// An earlier snapshot's chunks and which of them changed since: the unchanged ones
    /// (still referenced by a complete snapshot) are taken over without reading their keys
    /// from the view. `None`: read everything.
    pub reuse: Option<Reuse>,
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
    write_snapshot_manifest(repo, config, of, options, progress)
        .await
        .map(|(result, _)| result)
}

/// What a snapshot does, in key order: take chunks of an earlier snapshot over as they
/// are, or read a key range of the view and cut it into chunks.
enum Step {
    /// Entries of unchanged chunks, in order.
    Take(Vec<ChunkEntry>),
    /// A key range to read.
    Read(KeyRange),
}

/// The steps of a snapshot: the whole keyspace read, or, with `reuse`, runs of unchanged
/// chunks taken over and the key ranges of the others read. A chunk is taken over only if
/// it is shared, says its raw bytes and content hash (a version 3 entry), and a complete
/// snapshot still references it.
fn plan_steps(reuse: Option<&Reuse>, known: &HashMap<String, ChunkEntry>) -> Vec<Step> {
    let Some(reuse) = reuse.filter(|r| !r.chunks.is_empty()) else {
        return vec![Step::Read(KeyRange::all())];
    };
    let chunks = &reuse.chunks;
    let clean = |i: usize| {
        let c = &chunks[i];
        !reuse.dirty[i]
            && c.raw_bytes.is_some()
            && c.content_hash().is_some()
            && c.hash
                .as_ref()
                .and_then(|h| known.get(h))
                .is_some_and(|k| k.count == c.count)
    };
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chunks.len() {
        let run_clean = clean(i);
        let mut j = i;
        while j + 1 < chunks.len() && clean(j + 1) == run_clean {
            j += 1;
        }
        if run_clean {
            steps.push(Step::Take(chunks[i..=j].to_vec()));
        } else {
            // From the run's first chunk's first key (the first chunk's range starts at
            // the beginning) to the next chunk's first key (or the end).
            let start = if i == 0 {
                Vec::new()
            } else {
                chunks[i].first_key.clone()
            };
            let end = chunks.get(j + 1).map(|c| c.first_key.clone());
            steps.push(Step::Read(KeyRange { start, end }));
        }
        i = j + 1;
    }
    steps
}

/// [`write_snapshot`], also handing back the manifest written.
pub(crate) async fn write_snapshot_manifest(
    repo: &Repository,
    config: &BackupConfig,
    of: SnapshotOf<'_>,
    options: &SnapshotOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(SnapshotResult, Manifest), BackupError> {
    let started = Instant::now();
    let started_ms = now_ms();
    let SnapshotOf {
        view,
        timeline,
        lsn_time_ms,
        engine,
        reuse,
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
    let steps = plan_steps(reuse.as_ref().filter(|_| shared), &known);
    let naming_key = store.chunk_naming_key();
    let boundaries = ChunkBoundaries::with_average(config.chunk_target_bytes as u64);
    let in_flight = config.upload_concurrency.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let job = ChunkJob {
        store: store.clone(),
        compressing: Arc::new(Semaphore::new(cores.min(in_flight))),
        level: config.compression_level,
        capacity: config.chunk_target_bytes / 2,
        dir: dir.clone(),
        shared,
        known,
        naming_key,
    };

    // Reading is sequential; hashing, compressing and uploading a chunk run in parallel
    // tasks, at most `upload_concurrency` at once, of which at most one per core
    // compresses (more would only take turns with the reading task). The keyspace digest
    // is composed of the chunks' content hashes at the end (manifest v3).
    let mut tasks: JoinSet<Result<ChunkDone, BackupError>> = JoinSet::new();
    let mut done = Done::default();
    // Room for an average chunk's pairs and their lengths (16 bytes a pair) twice over;
    // a larger chunk grows its buffer.
    let batch_capacity = 2 * config.chunk_target_bytes + config.chunk_target_bytes / 2;
    let mut batch = PairBatch::with_capacity(batch_capacity);
    let (mut pairs, mut raw_bytes, mut next_chunk, mut pairs_read) = (0u64, 0u64, 0u32, 0u64);
    let page_bytes = view.scan_page_bytes();
    for step in steps {
        let range = match step {
            Step::Take(entries) => {
                for mut entry in entries {
                    entry.n = next_chunk;
                    next_chunk += 1;
                    pairs += entry.count;
                    raw_bytes += entry.raw_bytes.unwrap_or(0);
                    done.entries.push(entry);
                    done.reused += 1;
                }
                progress(pairs, raw_bytes);
                continue;
            }
            Step::Read(range) => range,
        };
        let mut want = page_for(pairs, raw_bytes, page_bytes);
        let mut page = scan_backed_up_in(view, &range, want).await?;
        loop {
            let last_page = page.len() < want;
            // The next page is read while this one is cut into chunks: on etcd a read's
            // round trip and index walk hide behind the chunking. Two pages are held at most.
            let read_bytes: u64 = page.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
            let next_want = page_for(
                pairs + page.len() as u64,
                raw_bytes + read_bytes,
                page_bytes,
            );
            let last = page.last().map(|(k, _)| k.clone());
            let read_next = async {
                match last {
                    Some(last) if !last_page => {
                        scan_backed_up_in(view, &range.after(&last), next_want)
                            .await
                            .map(Some)
                    }
                    _ => Ok(None),
                }
            };
            let cut = async {
                pairs_read += page.len() as u64;
                for (k, v) in &page {
                    let pair_bytes = (k.len() + v.len()) as u64;
                    pairs += 1;
                    raw_bytes += pair_bytes;
                    batch.push(k, v);
                    if boundaries.cut_after(k, pair_bytes, batch.raw_bytes()) {
                        let full = done.take_batch(&mut batch, batch_capacity);
                        spawn_chunk(&mut tasks, &job, next_chunk, full);
                        next_chunk += 1;
                        while tasks.len() >= in_flight {
                            done.collect(&mut tasks).await?;
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
        // A chunk ends with the range: the next step's chunks start where it ends.
        if !batch.is_empty() {
            let full = done.take_batch(&mut batch, batch_capacity);
            spawn_chunk(&mut tasks, &job, next_chunk, full);
            next_chunk += 1;
        }
    }
    while !tasks.is_empty() {
        done.collect(&mut tasks).await?;
    }
    let Done {
        mut entries,
        mut uploaded,
        reused: chunks_reused,
        uploaded_chunks: chunks_uploaded,
        ..
    } = done;
    entries.sort_by_key(|e| e.n);
    // Every entry says its unkeyed content hash: its name, or `content` where the name is
    // not it (taken-over entries only when they do, `plan_steps`).
    let mut digest = ChunkDigest::new();
    for entry in &entries {
        let hash = entry
            .content_hash()
            .expect("every entry has a content hash");
        digest.update(hash, entry.count);
    }

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
        pairs_read,
    };
    tracing::info!(
        lsn,
        pairs,
        read = pairs_read,
        chunks = result.chunks,
        reused = chunks_reused,
        "snapshot written"
    );
    Ok((result, manifest))
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
/// Every chunk's content hash is computed: the keyspace digest is composed of them.
fn spawn_chunk(
    tasks: &mut JoinSet<Result<ChunkDone, BackupError>>,
    job: &ChunkJob,
    n: u32,
    batch: PairBatch,
) {
    let job = job.clone();
    let (store, level, capacity) = (job.store.clone(), job.level, job.capacity);
    tasks.spawn(async move {
        let permit = job
            .compressing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BackupError::Task(e.to_string()))?;
        let known = job.known.clone();
        let folder_key = layout::snapshot_chunk(&job.dir, n);
        let (shared, naming_key) = (job.shared, job.naming_key);
        let folder_name = folder_key.clone();
        let (content, name, encoded, batch) =
            tokio::task::spawn_blocking(move || -> Result<_, BackupError> {
                let _permit = permit;
                // The unkeyed hash feeds the keyspace digest; an encrypted repository
                // names shared chunks by a keyed one (a second pass, there only).
                let mut h = ContentHash::unkeyed();
                h.update_batch(&batch);
                let content = h.finish();
                let name = match naming_key {
                    Some(key) if shared => {
                        let mut h = ContentHash::keyed(&key);
                        h.update_batch(&batch);
                        h.finish()
                    }
                    _ => content.clone(),
                };
                if shared
                    && let Some(e) = known.get(&name)
                    && e.count == batch.len()
                {
                    return Ok((content, name, None, batch));
                }
                let object = if shared {
                    layout::shared_chunk(&name)
                } else {
                    folder_name
                };
                let mut w = ChunkWriter::undigested(Vec::with_capacity(capacity))
                    .named(object)
                    .with_level(level);
                w.push_batch(&batch)?;
                let (summary, _, bytes) = w.finish_into_parts()?;
                Ok((content, name, Some((summary, bytes)), batch))
            })
            .await
            .map_err(|e| BackupError::Task(e.to_string()))??;
        // The content hash is written down where the name is not it.
        let own_content = (!shared || naming_key.is_some()).then(|| content.clone());
        let done = |mut entry: ChunkEntry, size, reused, batch| {
            entry.content = own_content.clone();
            ChunkDone {
                entry,
                size,
                reused,
                batch,
            }
        };
        let Some((summary, bytes)) = encoded else {
            let mut entry = job.known[&name].clone();
            entry.n = n;
            return Ok(done(entry, 0, true, batch));
        };
        let size = bytes.len() as u64;
        if !shared {
            store.put(&folder_key, Bytes::from(bytes)).await?;
            return Ok(done(summary.entry(n), size, false, batch));
        }
        let key = layout::shared_chunk(&name);
        let mut entry = summary.entry(n);
        entry.hash = Some(name.clone());
        let body = Bytes::from(bytes);
        if store.put_if_absent(&key, body.clone()).await? {
            return Ok(done(entry, size, false, batch));
        }
        // Already there: uploaded by a snapshot that crashed before its manifest, or by
        // one running beside this one. Its bytes may differ (another compression level),
        // so the entry describes the object as stored, once it proved to hold these pairs.
        match existing_chunk(store.as_ref(), &key, &name, job.naming_key.as_ref()).await? {
            Some(found) => {
                let mut found = found.entry(n);
                found.hash = Some(name);
                Ok(done(found, 0, true, batch))
            }
            None => {
                tracing::warn!(key, "replacing a damaged shared chunk");
                store.put(&key, body).await?;
                Ok(done(entry, size, false, batch))
            }
        }
    });
}

/// What every chunk task of one snapshot shares.
#[derive(Clone)]
struct ChunkJob {
    /// Where chunks go.
    store: Arc<dyn Store>,
    /// At most one chunk per core is encoded at once.
    compressing: Arc<Semaphore>,
    /// zstd level.
    level: i32,
    /// Initial capacity of a chunk's encoded bytes.
    capacity: usize,
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

/// What the chunk tasks of one snapshot handed back so far.
#[derive(Default)]
struct Done {
    /// Manifest entries, in the order tasks finished.
    entries: Vec<ChunkEntry>,
    /// Bytes uploaded.
    uploaded: u64,
    /// Chunks an earlier snapshot had uploaded, referenced again.
    reused: u64,
    /// Chunks uploaded.
    uploaded_chunks: u64,
    /// Batch buffers free for the next chunks.
    spare: Vec<PairBatch>,
}

impl Done {
    /// The filled `batch`, replaced by a spare buffer (or a new one of `capacity`).
    fn take_batch(&mut self, batch: &mut PairBatch, capacity: usize) -> PairBatch {
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| PairBatch::with_capacity(capacity));
        std::mem::replace(batch, next)
    }

    /// Wait for one chunk task and record what it did.
    async fn collect(
        &mut self,
        tasks: &mut JoinSet<Result<ChunkDone, BackupError>>,
    ) -> Result<(), BackupError> {
        let Some(joined) = tasks.join_next().await else {
            return Ok(());
        };
        let mut done = joined.map_err(|e| BackupError::Task(e.to_string()))??;
        self.entries.push(done.entry);
        self.uploaded += done.size;
        if done.reused {
            self.reused += 1;
        } else {
            self.uploaded_chunks += 1;
        }
        done.batch.clear();
        self.spare.push(done.batch);
        Ok(())
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
