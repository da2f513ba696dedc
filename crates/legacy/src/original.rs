//! The original backup module's writer (`shared/reference/original-backup.rs`),
//! re-implemented step for step over a [`Store`], quirks included, to write old backup
//! roots for tests and benchmarks. Nothing here is used by the import.
//!
//! [`Source`] stands for the original's database: an ordered map of string keys with the
//! application's data under `table:`, its change log under `state_changelog:<ms>:` (and
//! the older `changelog:`), and its event log under `event_changelog:<ms>:`. The clock is
//! a [`Clock`] the caller moves, so tests choose which runs share a second.
//!
//! Kept as the original had them: second-resolution run names (two runs in one second
//! overwrite each other's chunks, after deleting the entries from the database);
//! wall-clock markers read back with `ts_ms + 1` as the next start key; two prefixes per
//! state run numbered on; a full backup that is a series of separate scans of `table:`
//! only, dropping keys that are not UTF-8 and values that are not JSON, then the marker,
//! then deleting every partial chunk and, by age, old full backups and event chunks. A
//! crash can be asked for after any number of full-backup chunks.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::TryStreamExt;
use serde_json::Value;
use tito_store::{Store, StoreError};

pub use crate::chunk::{ChangelogEntry, EventChangelogEntry};

/// The original's wall clock, moved by the caller (milliseconds).
#[derive(Clone, Debug, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    /// A clock at `ms`.
    pub fn at(ms: i64) -> Clock {
        Clock(Arc::new(AtomicI64::new(ms)))
    }
    /// `Utc::now().timestamp_millis()`.
    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    /// `Utc::now().timestamp()`.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
    /// Move the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Move the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// The original's database: string keys (bytes, so non-UTF-8 keys can be tested), values
/// as bytes.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// Every key.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
    seq: u64,
}

impl Source {
    /// An application write: `table` key `key` set to `data`, with its change-log entry
    /// under `state_changelog:<now_ms>:`.
    pub fn put(&mut self, clock: &Clock, key: &str, data: &Value) {
        self.map.insert(
            key.as_bytes().to_vec(),
            serde_json::to_vec(data).expect("json"),
        );
        self.log(
            "state_changelog:",
            clock,
            &ChangelogEntry {
                op: "put".into(),
                key: key.into(),
                data: Some(data.clone()),
            },
        );
    }

    /// An application delete, with its change-log entry.
    pub fn delete(&mut self, clock: &Clock, key: &str) {
        self.map.remove(key.as_bytes());
        self.log(
            "state_changelog:",
            clock,
            &ChangelogEntry {
                op: "delete".into(),
                key: key.into(),
                data: None,
            },
        );
    }

    /// A change-log entry under `prefix` (`state_changelog:` or `changelog:`) at the
    /// clock's time.
    pub fn log(&mut self, prefix: &str, clock: &Clock, entry: &ChangelogEntry) {
        self.seq += 1;
        let key = format!("{prefix}{}:{:010}", clock.now_ms(), self.seq);
        self.map
            .insert(key.into_bytes(), serde_json::to_vec(entry).expect("json"));
    }

    /// A raw key and value, with no change-log entry (values that are not JSON, keys that
    /// are not UTF-8, keys outside `table:`).
    pub fn put_raw(&mut self, key: &[u8], value: &[u8]) {
        self.map.insert(key.to_vec(), value.to_vec());
    }

    /// An event, archived under `event_changelog:<now_ms>:`.
    pub fn publish(&mut self, clock: &Clock, event: &EventChangelogEntry) {
        self.seq += 1;
        let key = format!("event_changelog:{}:{:010}", clock.now_ms(), self.seq);
        self.map
            .insert(key.into_bytes(), serde_json::to_vec(event).expect("json"));
    }

    /// Up to `limit` pairs of `[start, end)`.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        if start >= end {
            return Vec::new();
        }
        self.map
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The original's `next_string_lexicographically`: the smallest string after `s`.
fn next_string(s: &str) -> String {
    format!("{s}\0")
}

/// The first string after every string starting with `prefix` (its last byte plus one).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// The original's `BackupConfig`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Entries per scan and per chunk.
    pub chunk_size: u32,
    /// Seconds between full backups.
    pub full_backup_interval_secs: i64,
    /// Seconds full backups and event chunks are kept.
    pub retention_secs: i64,
    /// Key prefix in the store ("" for its root; the original always had one).
    pub backup_root: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chunk_size: 1000,
            full_backup_interval_secs: 3600,
            retention_secs: 7 * 86400,
            backup_root: String::new(),
        }
    }
}

/// The original's `BackupResult`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupResult {
    /// Change-log entries shipped.
    pub state_changelog_entries: usize,
    /// Event entries shipped.
    pub event_changelog_entries: usize,
    /// Entries of the full backup taken, if one was due.
    pub full_backup_entries: Option<usize>,
}

/// What the writer did not survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crashed;

/// The original's `TitoBackupService`, writing into a [`Store`].
#[derive(Clone, Debug)]
pub struct Writer {
    /// Where to write.
    pub store: Arc<dyn Store>,
    /// Its settings.
    pub config: Config,
    /// Its wall clock.
    pub clock: Clock,
}

/// The original's `upload`, `download`, `list_keys`, `delete_keys`.
impl Writer {
    fn key(&self, rest: &str) -> String {
        if self.config.backup_root.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.config.backup_root)
        }
    }

    async fn upload(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.store.put(key, Bytes::from(data)).await
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.store
            .list(prefix)
            .map_ok(|o| o.key)
            .try_collect()
            .await
    }

    async fn download_marker_timestamp(&self, key: &str) -> Option<i64> {
        let bytes = self.store.get(key).await.ok()?;
        String::from_utf8_lossy(&bytes).trim().parse::<i64>().ok()
    }

    async fn upload_marker(&self, key: &str, value: i64) -> Result<(), StoreError> {
        self.upload(key, value.to_string().into_bytes()).await
    }

    async fn compress_and_upload<T: serde::Serialize>(
        &self,
        entries: &[T],
        key: &str,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(entries).expect("json");
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&json).expect("gzip to memory");
        self.upload(key, encoder.finish().expect("gzip to memory"))
            .await
    }

    /// `run_backup`: ship the change log, ship the events, take a full backup when due.
    pub async fn run_backup(&self, db: &mut Source) -> Result<BackupResult, StoreError> {
        let state_changelog_entries = self.ship_state_changelog(db).await?;
        let event_changelog_entries = self.ship_event_changelog(db).await?;
        let last_full = self
            .download_marker_timestamp(&self.key("LATEST_STATE_FULL"))
            .await
            .unwrap_or(0);
        let full_backup_entries =
            if self.clock.now_secs() - last_full < self.config.full_backup_interval_secs {
                None
            } else {
                Some(
                    self.run_full_state_backup(db, None)
                        .await?
                        .expect("no crash"),
                )
            };
        Ok(BackupResult {
            state_changelog_entries,
            event_changelog_entries,
            full_backup_entries,
        })
    }

    /// `ship_state_changelog`.
    pub async fn ship_state_changelog(&self, db: &mut Source) -> Result<usize, StoreError> {
        let timestamp = self.clock.now_secs();
        let timestamp_ms = self.clock.now_ms();
        let chunk_size = self.config.chunk_size as usize;
        let latest_key = self.key("LATEST_STATE_PARTIAL");
        let start_ts = self.download_marker_timestamp(&latest_key).await;
        let mut total_entries = 0;
        let mut seq = 0;
        for prefix in ["state_changelog:", "changelog:"] {
            let mut current = match start_ts {
                Some(ts) => {
                    let ts_ms = if ts < 1_000_000_000_000 {
                        ts * 1000
                    } else {
                        ts
                    };
                    format!("{prefix}{}:", ts_ms + 1)
                }
                None => prefix.to_string(),
            };
            let mut to_delete: Vec<Vec<u8>> = Vec::new();
            loop {
                let results = db.scan(current.as_bytes(), &prefix_end(prefix), chunk_size);
                if results.is_empty() {
                    break;
                }
                let mut entries = Vec::new();
                let mut last_key = None;
                for (k, v) in results {
                    let key = String::from_utf8(k).expect("Invalid key");
                    let entry: ChangelogEntry =
                        serde_json::from_slice(&v).expect("Invalid changelog entry");
                    last_key = Some(key.clone());
                    to_delete.push(key.into_bytes());
                    entries.push(entry);
                }
                let chunk_key =
                    self.key(&format!("state/partial/{timestamp}/chunk-{seq:04}.json.gz"));
                total_entries += entries.len();
                self.compress_and_upload(&entries, &chunk_key).await?;
                seq += 1;
                match last_key {
                    Some(lk) => current = next_string(&lk),
                    None => break,
                }
            }
            for k in to_delete {
                db.map.remove(&k);
            }
        }
        if total_entries > 0 {
            self.upload_marker(&latest_key, timestamp_ms).await?;
        }
        Ok(total_entries)
    }

    /// `ship_event_changelog`.
    pub async fn ship_event_changelog(&self, db: &mut Source) -> Result<usize, StoreError> {
        let timestamp = self.clock.now_secs();
        let timestamp_ms = self.clock.now_ms();
        let chunk_size = self.config.chunk_size as usize;
        let latest_key = self.key("LATEST_EVENTS");
        let mut current = match self.download_marker_timestamp(&latest_key).await {
            Some(ts) => {
                let ts_ms = if ts < 1_000_000_000_000 {
                    ts * 1000
                } else {
                    ts
                };
                format!("event_changelog:{}:", ts_ms + 1)
            }
            None => "event_changelog:".to_string(),
        };
        let (mut seq, mut total_entries) = (0, 0);
        let mut to_delete: Vec<Vec<u8>> = Vec::new();
        loop {
            let results = db.scan(
                current.as_bytes(),
                &prefix_end("event_changelog:"),
                chunk_size,
            );
            if results.is_empty() {
                break;
            }
            let mut entries = Vec::new();
            let mut last_key = None;
            for (k, v) in results {
                let key = String::from_utf8(k).expect("Invalid key");
                let entry: EventChangelogEntry =
                    serde_json::from_slice(&v).expect("Invalid event changelog entry");
                last_key = Some(key.clone());
                to_delete.push(key.into_bytes());
                entries.push(entry);
            }
            let chunk_key = self.key(&format!("events/{timestamp}/chunk-{seq:04}.json.gz"));
            total_entries += entries.len();
            self.compress_and_upload(&entries, &chunk_key).await?;
            seq += 1;
            match last_key {
                Some(lk) => current = next_string(&lk),
                None => break,
            }
        }
        if total_entries > 0 {
            self.upload_marker(&latest_key, timestamp_ms).await?;
            for k in to_delete {
                db.map.remove(&k);
            }
        }
        Ok(total_entries)
    }

    /// `run_full_state_backup`; with `crash_after: Some(n)`, the process dies after
    /// uploading `n` chunks (no marker, no clean-up) and `Ok(None)` is returned.
    pub async fn run_full_state_backup(
        &self,
        db: &Source,
        crash_after: Option<usize>,
    ) -> Result<Option<usize>, StoreError> {
        let timestamp = self.clock.now_secs();
        let mut cursor = b"table:".to_vec();
        let end = b"table:\xff".to_vec();
        let (mut seq, mut total_entries) = (0usize, 0usize);
        loop {
            // Each scan is its own transaction: not one consistent snapshot.
            let results = db.scan(&cursor, &end, self.config.chunk_size as usize);
            let Some((last, _)) = results.last() else {
                break;
            };
            let last = last.clone();
            total_entries += results.len();
            let entries: Vec<ChangelogEntry> = results
                .into_iter()
                .filter_map(|(k, v)| {
                    let key = String::from_utf8(k).ok()?;
                    let data: Value = serde_json::from_slice(&v).ok()?;
                    Some(ChangelogEntry {
                        op: "put".into(),
                        key,
                        data: Some(data),
                    })
                })
                .collect();
            if crash_after == Some(seq) {
                return Ok(None);
            }
            let chunk_key = self.key(&format!("state/full/{timestamp}/chunk-{seq:04}.json.gz"));
            self.compress_and_upload(&entries, &chunk_key).await?;
            seq += 1;
            cursor = last;
            cursor.push(0);
        }
        if crash_after.is_some_and(|n| n >= seq) {
            return Ok(None); // died before the marker
        }
        self.upload_marker(&self.key("LATEST_STATE_FULL"), timestamp)
            .await?;
        let partial = self.list_keys(&self.key("state/partial/")).await?;
        if !partial.is_empty() {
            self.store.delete_many(&partial).await?;
        }
        let cutoff = timestamp - self.config.retention_secs;
        // The original saw keys under its root: count the root's part even when it is "".
        let ts_of = |k: &str| extract_backup_timestamp(&format!("root/{k}"));
        let old_full: Vec<String> = self
            .list_keys(&self.key("state/full/"))
            .await?
            .into_iter()
            .filter(|k| ts_of(k).is_some_and(|ts| ts < cutoff))
            .collect();
        if !old_full.is_empty() {
            self.store.delete_many(&old_full).await?;
        }
        let old_events: Vec<String> = self
            .list_keys(&self.key("events/"))
            .await?
            .into_iter()
            .filter(|k| ts_of(k).is_some_and(|ts| ts < cutoff))
            .collect();
        if !old_events.is_empty() {
            self.store.delete_many(&old_events).await?;
        }
        Ok(Some(total_entries))
    }
}

/// The original's `extract_backup_timestamp`: the second-to-last path part, in keys of at
/// least four parts (with its root, `<root>/events/<secs>/chunk-NNNN.json.gz` has four).
pub fn extract_backup_timestamp(key: &str) -> Option<i64> {
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() >= 4 {
        parts[parts.len() - 2].parse::<i64>().ok()
    } else {
        None
    }
}
