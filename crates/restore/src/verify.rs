//! Verification: read objects back and check them against their checksums, before a
//! restore touches anything (`verify_plan_objects`) and for `tito verify`
//! (`verify_repository`, with a deep mode that recomputes snapshot digests and restores the
//! latest state into a scratch redb file, so memory stays bounded whatever the size).

use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use tito_backup::Repository;
use tito_catalog::{Catalog, RestorePlan, Target};
use tito_engine::Engine;
use tito_engine::redb::RedbEngine;
use tito_format::layout::{self, ObjectName};
use tito_format::{ChunkDigest, ChunkEntry, ContentHash, KeyspaceDigest, Manifest, SegmentReader};
use tito_store::Store;

use crate::error::RestoreError;
use crate::progress::{NoProgress, Progress};
use crate::restore::{RestoreOptions, restore};
use crate::spool::Spool;

/// Check a downloaded chunk against its manifest entry (size and whole-object checksum).
pub fn check_chunk(key: &str, bytes: &[u8], entry: &ChunkEntry) -> Result<(), RestoreError> {
    if bytes.len() as u64 != entry.size {
        return Err(RestoreError::Damaged {
            key: key.to_string(),
            reason: format!(
                "size is {} bytes but the manifest says {}",
                bytes.len(),
                entry.size
            ),
        });
    }
    let sum = blake3::hash(bytes).to_hex().to_string();
    if sum != entry.checksum {
        return Err(RestoreError::Damaged {
            key: key.to_string(),
            reason: format!(
                "checksum {sum} does not match the manifest's {}",
                entry.checksum
            ),
        });
    }
    Ok(())
}

/// Decode a whole segment, verifying every frame, the trailer and that its content matches
/// its name. Returns the number of records.
pub fn check_segment(key: &str, bytes: &[u8]) -> Result<u64, RestoreError> {
    let summary = SegmentReader::new(bytes, key.to_string())?.verify()?;
    summary.check_name(key)?;
    Ok(summary.count)
}

async fn fetch(repo: &Repository, key: &str) -> Result<Bytes, RestoreError> {
    fetch_from(repo.store().as_ref(), key).await
}

/// Read one object of a plan; a missing object is a damaged backup.
pub(crate) async fn fetch_from(store: &dyn Store, key: &str) -> Result<Bytes, RestoreError> {
    store.get(key).await.map_err(|e| {
        if e.is_not_found() {
            RestoreError::Missing {
                key: key.to_string(),
            }
        } else if let tito_store::StoreError::Corrupt { reason, .. } = &e {
            RestoreError::Damaged {
                key: key.to_string(),
                reason: reason.clone(),
            }
        } else {
            RestoreError::Store(e)
        }
    })
}

/// Download and check every object `plan` needs, `concurrency` at a time. Returns the
/// bytes downloaded.
pub async fn verify_plan_objects(
    repo: &Repository,
    plan: &RestorePlan,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<u64, RestoreError> {
    check_plan_objects(repo, plan, concurrency, progress, None).await
}

/// [`verify_plan_objects`], staging each object that checked out in `spool` (when given)
/// so that loading reads it from local disk instead of downloading it again.
pub(crate) async fn check_plan_objects(
    repo: &Repository,
    plan: &RestorePlan,
    concurrency: usize,
    progress: &dyn Progress,
    spool: Option<&Spool>,
) -> Result<u64, RestoreError> {
    let dir = plan.snapshot.dir.clone();
    // After a failure no new object is started, but those in flight finish: a spool write
    // dropped half-way would go on in the background and outlive the spool's removal.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let failed = &failed;
    let stop = move |r: Result<u64, RestoreError>| {
        if r.is_err() {
            failed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        r
    };
    let skip = move || failed.load(std::sync::atomic::Ordering::Relaxed);
    let chunk_checks = plan.snapshot.chunks.iter().map(|entry| {
        let key = entry.object_key(&dir);
        let entry = entry.clone();
        async move {
            if skip() {
                return None;
            }
            let r = async {
                let bytes = fetch(repo, &key).await?;
                check_chunk(&key, &bytes, &entry)?;
                if let Some(spool) = spool {
                    spool.put(&key, &bytes).await?;
                }
                Ok::<u64, RestoreError>(bytes.len() as u64)
            }
            .await;
            Some(stop(r))
        }
        .boxed()
    });
    let segment_checks = plan.segments.iter().map(|seg| {
        let key = seg.segment.key.clone();
        async move {
            if skip() {
                return None;
            }
            let r = async {
                let bytes = fetch(repo, &key).await?;
                let size = bytes.len() as u64;
                let (k, b) = (key.clone(), bytes.clone());
                tokio::task::spawn_blocking(move || check_segment(&k, &b))
                    .await
                    .map_err(|e| RestoreError::Task(e.to_string()))??;
                if let Some(spool) = spool {
                    spool.put(&key, &bytes).await?;
                }
                Ok::<u64, RestoreError>(size)
            }
            .await;
            Some(stop(r))
        }
        .boxed()
    });
    let results: Vec<Option<Result<u64, RestoreError>>> =
        futures::stream::iter(chunk_checks.chain(segment_checks))
            .buffer_unordered(concurrency.max(1))
            .inspect(|r| {
                if matches!(r, Some(Ok(_))) {
                    progress.advance(1)
                }
            })
            .collect()
            .await;
    let mut total = 0;
    for r in results.into_iter().flatten() {
        total += r?;
    }
    Ok(total)
}

/// One problem found by [`verify_repository`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object (or snapshot folder) concerned.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// What [`verify_repository`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Objects read and checked.
    pub objects_checked: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Complete snapshots whose every chunk checked out.
    pub snapshots_ok: u64,
    /// Log segments that checked out.
    pub segments_ok: u64,
    /// Snapshots whose decoded pairs matched their manifest's count and digest (deep mode).
    pub snapshots_compared: u64,
    /// Everything wrong, one line each.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True if nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check every object of the repository: every segment decoded and matched against its
/// name, every chunk of every complete snapshot matched against its manifest, and the
/// catalog's gaps and damaged snapshots reported. With `deep`, also decode every pair of
/// each complete snapshot, recompute its pair count and keyspace digest and compare them
/// with the manifest, then restore the latest state into an in-memory engine (snapshot load
/// and log replay to the end of coverage, exactly as a real restore runs).
pub async fn verify_repository(
    repo: &Repository,
    deep: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport, RestoreError> {
    let catalog: Catalog = repo.catalog().await?;
    let mut report = VerifyReport::default();
    for p in catalog.problems() {
        report.problems.push(Problem {
            key: p.key.clone(),
            problem: p.problem.clone(),
        });
    }
    let objects = repo.list("").await?;
    let referenced = tito_catalog::referenced_shared_chunks(&catalog);
    // Shared chunks checked so far (key, checksum), and what was wrong, if anything.
    let mut checked = SharedChecked::new();
    // In an encrypted repository every object is authenticated, not only those a restore
    // reads: the chunks of complete snapshots are read below with their manifests.
    let encrypted = repo.config().encryption.is_some();
    let manifest_dirs: std::collections::BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix(layout::MANIFEST))
        .collect();
    progress.phase("verify", objects.len() as u64);
    for obj in &objects {
        match layout::parse(&obj.key) {
            ObjectName::Segment { .. } => {
                report.objects_checked += 1;
                match fetch(repo, &obj.key).await {
                    Ok(bytes) => {
                        report.bytes_read += bytes.len() as u64;
                        match check_segment(&obj.key, &bytes) {
                            Ok(_) => report.segments_ok += 1,
                            Err(e) => report.problems.push(Problem {
                                key: obj.key.clone(),
                                problem: e.to_string(),
                            }),
                        }
                    }
                    Err(e) => report.problems.push(Problem {
                        key: obj.key.clone(),
                        problem: e.to_string(),
                    }),
                }
            }
            ObjectName::SnapshotManifest { .. } => {
                report.objects_checked += 1;
                match repo.manifest(&obj.key).await {
                    Ok(manifest) => {
                        let dir = obj.key.trim_end_matches(layout::MANIFEST).to_string();
                        if check_snapshot(repo, &dir, &manifest, &mut report, &mut checked).await {
                            report.snapshots_ok += 1;
                            if deep {
                                compare_snapshot(repo, &dir, &manifest, &mut report).await;
                            }
                        }
                    }
                    Err(e) => report.problems.push(Problem {
                        key: obj.key.clone(),
                        problem: e.to_string(),
                    }),
                }
            }
            // Referenced shared chunks are read with the manifests that name them.
            ObjectName::SharedChunk { .. } if referenced.contains(&obj.key) => {}
            ObjectName::SnapshotChunk { .. }
                if obj
                    .key
                    .rsplit_once('/')
                    .is_some_and(|(dir, _)| manifest_dirs.contains(&format!("{dir}/")[..])) => {}
            _ if encrypted && obj.key != layout::REPO_CONFIG => {
                report.objects_checked += 1;
                match authenticate(repo.store().as_ref(), &obj.key).await {
                    Ok(n) => report.bytes_read += n,
                    Err(e) => report.problems.push(Problem {
                        key: obj.key.clone(),
                        problem: e.to_string(),
                    }),
                }
            }
            _ => {}
        }
        progress.advance(1);
    }
    if deep && report.ok() {
        // The newest state reachable must also replay cleanly to the end of the log. It goes
        // to a scratch file, not memory: a restore of a large database would not fit there.
        if let Err(problem) = restore_latest_to_scratch(repo).await {
            report.problems.push(Problem {
                key: "latest".into(),
                problem,
            });
        }
    }
    progress.finish();
    Ok(report)
}

/// Read a whole object as a stream (bounded memory), so the encrypting store underneath
/// authenticates every chunk of it. Returns its size.
async fn authenticate(store: &dyn Store, key: &str) -> Result<u64, tito_store::StoreError> {
    let mut stream = store.get_stream(key).await?;
    let mut n = 0;
    while let Some(piece) = stream.next().await {
        n += piece?.len() as u64;
    }
    Ok(n)
}

/// Restore the latest state into a redb file in a fresh temporary directory (under
/// `TMPDIR`), removed afterwards; the error says what failed.
async fn restore_latest_to_scratch(repo: &Repository) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("tito-verify-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory for the restore: {e}"))?;
    let engine = RedbEngine::open(dir.path().join("latest.redb"))
        .await
        .map_err(|e| format!("cannot open the scratch database: {e}"))?;
    let engine: Arc<dyn Engine> = Arc::new(engine);
    let result = restore(
        repo,
        engine.clone(),
        &RestoreOptions::new(Target::Latest),
        &NoProgress,
    )
    .await;
    // Close before the directory goes, so the file is not written to after removal.
    let _ = engine.close().await;
    result
        .map(|_| ())
        .map_err(|e| format!("restore to latest failed: {e}"))
}

/// Shared chunks checked by (key, checksum): what was wrong, if anything.
type SharedChecked = std::collections::BTreeMap<(String, String), Option<String>>;

/// Check every chunk of one snapshot; record problems. True if all is well.
async fn check_snapshot(
    repo: &Repository,
    dir: &str,
    manifest: &Manifest,
    report: &mut VerifyReport,
    checked: &mut SharedChecked,
) -> bool {
    let mut ok = true;
    for entry in &manifest.chunks {
        let key = entry.object_key(dir);
        // A shared chunk several manifests reference (the same object, the same checksum)
        // is read once.
        if entry.is_shared() {
            match checked.get(&(key.clone(), entry.checksum.clone())) {
                Some(None) => continue,
                Some(Some(_)) => {
                    ok = false;
                    continue;
                }
                None => {}
            }
        }
        report.objects_checked += 1;
        let result = match fetch(repo, &key).await {
            Ok(bytes) => {
                report.bytes_read += bytes.len() as u64;
                check_chunk(&key, &bytes, entry)
            }
            Err(e) => Err(e),
        };
        if entry.is_shared() {
            let problem = result.as_ref().err().map(|e| e.to_string());
            checked.insert((key.clone(), entry.checksum.clone()), problem);
        }
        if let Err(e) = result {
            ok = false;
            report.problems.push(Problem {
                key,
                problem: e.to_string(),
            });
        }
    }
    ok
}

/// Decode every chunk of a snapshot in order, recomputing its pair count and keyspace
/// digest, and compare them with the manifest. From manifest version 3 the digest is
/// composed of the chunks' content hashes (each also compared with the manifest's entry).
async fn compare_snapshot(
    repo: &Repository,
    dir: &str,
    manifest: &Manifest,
    report: &mut VerifyReport,
) {
    let mut digest = SnapshotDigest::for_manifest(manifest);
    for entry in &manifest.chunks {
        let key = entry.object_key(dir);
        let bytes = match fetch(repo, &key).await {
            Ok(b) => b,
            Err(e) => {
                report.problems.push(Problem {
                    key,
                    problem: e.to_string(),
                });
                return;
            }
        };
        report.bytes_read += bytes.len() as u64;
        let reader = match tito_format::ChunkReader::new(&bytes[..], key.clone()) {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(Problem {
                    key,
                    problem: e.to_string(),
                });
                return;
            }
        };
        if let Err(problem) = digest.chunk(reader, entry) {
            report.problems.push(Problem { key, problem });
            return;
        }
    }
    let (count, sum) = digest.finish();
    if count != manifest.total_count || sum != manifest.keyspace_digest {
        report.problems.push(Problem {
            key: format!("{dir}{}", layout::MANIFEST),
            problem: format!(
                "snapshot content ({count} pairs, digest {sum}) does not match its manifest ({} pairs, digest {})",
                manifest.total_count, manifest.keyspace_digest
            ),
        });
    } else {
        report.snapshots_compared += 1;
    }
}

/// The keyspace digest of a snapshot as its manifest's version defines it, recomputed
/// chunk by chunk.
enum SnapshotDigest {
    /// Versions 1 and 2: every pair.
    Pairs(KeyspaceDigest),
    /// Version 3: the chunks' content hashes.
    Chunks(ChunkDigest),
}

impl SnapshotDigest {
    fn for_manifest(manifest: &Manifest) -> Self {
        if manifest.digests_chunks() {
            SnapshotDigest::Chunks(ChunkDigest::new())
        } else {
            SnapshotDigest::Pairs(KeyspaceDigest::new())
        }
    }

    /// Feed the chunk `reader` reads (described by `entry`); pairs whose unkeyed content
    /// hash is not the one the entry says are a problem.
    fn chunk(
        &mut self,
        reader: tito_format::ChunkReader<&[u8]>,
        entry: &ChunkEntry,
    ) -> Result<(), String> {
        match self {
            SnapshotDigest::Pairs(d) => {
                reader.verify_into(d).map(|_| ()).map_err(|e| e.to_string())
            }
            SnapshotDigest::Chunks(d) => {
                let mut hash = ContentHash::unkeyed();
                let summary = reader
                    .verify_with(|k, v| hash.update(k, v))
                    .map_err(|e| e.to_string())?;
                let hash = hash.finish();
                if let Some(said) = entry.content_hash()
                    && said != hash
                {
                    return Err(format!(
                        "chunk {} holds pairs whose content hash is {hash}, not the {said} its manifest says",
                        entry.n
                    ));
                }
                d.update(&hash, summary.count);
                Ok(())
            }
        }
    }

    /// Pairs fed and the hex digest.
    fn finish(&self) -> (u64, String) {
        match self {
            SnapshotDigest::Pairs(d) => (d.count(), d.finish()),
            SnapshotDigest::Chunks(d) => (d.count(), d.finish()),
        }
    }
}
