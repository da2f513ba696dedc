//! The original design's full backup and restore (`shared/reference/original-backup.rs`),
//! re-implemented faithfully over today's engine and store traits so both designs run
//! side by side on the same data:
//!
//! - backup: serial scans of 1,000 `table:` entries, each in its own engine transaction;
//!   entries become JSON `{"op":"put","key":..,"data":..}` arrays (values that are not
//!   JSON, or keys that are not UTF-8, are dropped as the original dropped them), gzip at
//!   the default level, one upload at a time, then the `LATEST_STATE_FULL` marker and the
//!   listing of partial chunks the original cleans up;
//! - restore: wipe, list the full backups and pick the newest, list the chunks, then for
//!   each chunk in order download, gunzip, parse, and write in transactions of 100.

use std::io::{Read, Write};
use std::time::Instant;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tito_engine::{Engine, EngineError, KeyRange};
use tito_store::Store;

use crate::error::{BenchError, Ctx, Result, io_err, store_err};
use crate::report::Timed;

const PHASE: &str = "baseline";
/// The original's `chunk_size`: entries per scan and per uploaded chunk.
pub const SCAN_CHUNK: usize = 1_000;
/// Entries per restore transaction in the original.
pub const RESTORE_BATCH: usize = 100;
const ROOT: &str = "backup";

/// One entry of the original's chunk format.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct ChangelogEntry {
    op: String,
    key: String,
    data: Option<Value>,
}

/// What the original's full backup did.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineBackup {
    /// Pairs read and key + value bytes of them, with the wall time.
    pub timed: Timed,
    /// Entries dropped because the key was not UTF-8 or the value not JSON.
    pub dropped: u64,
    /// Chunks uploaded.
    pub chunks: u64,
    /// Bytes uploaded (chunks and marker).
    pub bytes: u64,
}

/// Run the original's full backup of `engine` into `store`.
pub async fn backup(engine: &dyn Engine, store: &dyn Store) -> Result<BaselineBackup> {
    let started = Instant::now();
    let timestamp = tito_backup::now_ms() / 1000;
    let mut cursor = b"table:".to_vec();
    let end = b"table:\xff".to_vec();
    let (mut seq, mut pairs, mut raw, mut dropped, mut bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    loop {
        let range = KeyRange::new(cursor.clone(), end.clone());
        let results = tito_engine::transaction(engine, |tx| {
            let range = range.clone();
            async move { tx.scan(&range, SCAN_CHUNK).await }
        })
        .await
        .ctx(PHASE)?;
        let Some((last, _)) = results.last() else {
            break;
        };
        let last = last.clone();
        pairs += results.len() as u64;
        let mut entries = Vec::with_capacity(results.len());
        for (k, v) in results {
            raw += (k.len() + v.len()) as u64;
            let (Ok(key), Ok(data)) = (String::from_utf8(k), serde_json::from_slice::<Value>(&v))
            else {
                dropped += 1;
                continue;
            };
            entries.push(ChangelogEntry {
                op: "put".into(),
                key,
                data: Some(data),
            });
        }
        let chunk_key = format!("{ROOT}/state/full/{timestamp}/chunk-{seq:04}.json.gz");
        bytes += compress_and_upload(store, &entries, &chunk_key).await?;
        seq += 1;
        cursor = last;
        cursor.push(0);
    }
    let marker = format!("{ROOT}/LATEST_STATE_FULL");
    let body = Bytes::from(timestamp.to_string());
    bytes += body.len() as u64;
    store
        .put(&marker, body)
        .await
        .map_err(store_err(PHASE, marker.clone()))?;
    // The original then lists partial chunks to delete them (none here).
    list(store, &format!("{ROOT}/state/partial/")).await?;
    Ok(BaselineBackup {
        timed: Timed::new(pairs, raw, started.elapsed()),
        dropped,
        chunks: seq,
        bytes,
    })
}

/// Bytes the original design's state change log would store for `pairs` (puts): its
/// entries JSON-encoded, [`SCAN_CHUNK`] to a chunk, each gzip'd at the default level.
/// Pairs whose key is not UTF-8 or value not JSON are dropped, as the original did.
pub fn changelog_bytes(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<u64> {
    let mut total = 0;
    for part in pairs.chunks(SCAN_CHUNK) {
        let entries: Vec<ChangelogEntry> = part
            .iter()
            .filter_map(|(k, v)| {
                Some(ChangelogEntry {
                    op: "put".into(),
                    key: String::from_utf8(k.clone()).ok()?,
                    data: Some(serde_json::from_slice::<Value>(v).ok()?),
                })
            })
            .collect();
        total += gzip_json(&entries, "changelog")?.len() as u64;
    }
    Ok(total)
}

fn gzip_json(entries: &[ChangelogEntry], chunk_key: &str) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(entries).map_err(|source| BenchError::Json {
        phase: PHASE,
        object: chunk_key.to_string(),
        source,
    })?;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(&json)
        .map_err(io_err(PHASE, chunk_key.to_string()))?;
    encoder
        .finish()
        .map_err(io_err(PHASE, chunk_key.to_string()))
}

/// JSON-encode, gzip at the default level, upload; returns the bytes uploaded.
async fn compress_and_upload(
    store: &dyn Store,
    entries: &[ChangelogEntry],
    chunk_key: &str,
) -> Result<u64> {
    let compressed = gzip_json(entries, chunk_key)?;
    let n = compressed.len() as u64;
    store
        .put(chunk_key, Bytes::from(compressed))
        .await
        .map_err(store_err(PHASE, chunk_key.to_string()))?;
    Ok(n)
}

/// Keys under `prefix`.
async fn list(store: &dyn Store, prefix: &str) -> Result<Vec<String>> {
    store
        .list(prefix)
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .map_err(store_err(PHASE, prefix.to_string()))
}

/// Run the original's restore of the newest full backup in `store` into `engine`.
pub async fn restore(store: &dyn Store, engine: &dyn Engine) -> Result<Timed> {
    let started = Instant::now();
    engine
        .begin()
        .await
        .and_then(|tx| {
            tx.delete_range(&KeyRange::new(Vec::new(), vec![0xFF; 32]))
                .map(|_| tx)
        })
        .ctx(PHASE)?
        .commit()
        .await
        .ctx(PHASE)?;
    let full = list(store, &format!("{ROOT}/state/full/")).await?;
    let newest = full
        .iter()
        .filter_map(|k| k.split('/').rev().nth(1)?.parse::<i64>().ok())
        .max()
        .ok_or_else(|| BenchError::Mismatch {
            phase: PHASE,
            detail: "no full backup found in the store".into(),
        })?;
    let mut chunks: Vec<String> = list(store, &format!("{ROOT}/state/full/{newest}/"))
        .await?
        .into_iter()
        .filter(|k| k.ends_with(".json.gz"))
        .collect();
    chunks.sort();
    // The original also lists partial and event chunks to replay after the full backup.
    list(store, &format!("{ROOT}/state/partial/")).await?;
    list(store, &format!("{ROOT}/events/")).await?;
    let (mut pairs, mut raw) = (0u64, 0u64);
    for chunk_key in &chunks {
        let compressed = store
            .get(chunk_key)
            .await
            .map_err(store_err(PHASE, chunk_key.clone()))?;
        let mut json = Vec::new();
        GzDecoder::new(&compressed[..])
            .read_to_end(&mut json)
            .map_err(io_err(PHASE, chunk_key.clone()))?;
        let entries: Vec<ChangelogEntry> =
            serde_json::from_slice(&json).map_err(|source| BenchError::Json {
                phase: PHASE,
                object: chunk_key.clone(),
                source,
            })?;
        for batch in entries.chunks(RESTORE_BATCH) {
            let mut encoded = Vec::with_capacity(batch.len());
            for entry in batch {
                if entry.op != "put" {
                    continue;
                }
                let Some(data) = &entry.data else { continue };
                let value = serde_json::to_vec(data).map_err(|source| BenchError::Json {
                    phase: PHASE,
                    object: entry.key.clone(),
                    source,
                })?;
                raw += (entry.key.len() + value.len()) as u64;
                pairs += 1;
                encoded.push((entry.key.as_bytes().to_vec(), value));
            }
            tito_engine::transaction(engine, |tx| {
                let encoded = encoded.clone();
                async move {
                    for (k, v) in encoded {
                        tx.put(k, v)?;
                    }
                    Ok::<_, EngineError>(())
                }
            })
            .await
            .ctx(PHASE)?;
        }
    }
    Ok(Timed::new(pairs, raw, started.elapsed()))
}
