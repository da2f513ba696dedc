//! The embedded, persistent default engine: a [redb](https://docs.rs/redb) file under
//! the shared local transaction manager.
//!
//! Every commit is one redb write transaction, durable when it returns
//! (`Durability::Immediate`), run on tokio's blocking pool. Snapshots are redb read
//! transactions (MVCC), so a long-lived read view never blocks writers.
//!
//! # File layout
//!
//! - `tito_data` holds every key that does not start with `0xFF`, `tito_data_ff` every key
//!   that does (Tito's reserved keys: log, queue, metadata). Kept apart, ascending user
//!   keys append at the right edge of their tree, where redb packs leaves full, instead of
//!   landing in front of the reserved keys, where every full leaf splits in two.
//! - `tito_head` is a table that stays within one page: the commit counters, rewritten by
//!   every commit, and the *staged* stamped puts (see [`crate::Transaction::put_stamped`];
//!   change capture's log records). A stamped put is stored next to the counters, in a
//!   page the commit writes anyway; staged entries move to their data table together
//!   once they fill [`STAGE_BUDGET`] bytes. So most commits with a log record write no
//!   B-tree page for it. A key's value is its staged value if it is staged, otherwise its
//!   data table's.
//!
//! Files written before `tito_head` existed (counters in a `tito_meta` table, every key in
//! `tito_data`) are converted when opened.

mod layout;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};

use crate::local::{Batch, LocalEngine, LocalStore, StoreMeta, StoreSnapshot, lock};
use crate::{EngineError, KeyRange, KeyValue, Result};
use layout::{Staged, decode_counters, encode_counters, is_high, parts, staged_bounds};

pub use layout::STAGE_BUDGET;

/// Keys that do not start with `0xFF`.
const LOW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tito_data");
/// Keys that start with `0xFF`.
const HIGH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tito_data_ff");
/// Counters under [`layout::COUNTERS`], staged entries under [`layout::staged_key`].
const HEAD: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tito_head");
/// Where files of the earlier layout keep their counters.
const LEGACY_META: TableDefinition<&str, u64> = TableDefinition::new("tito_meta");

/// The redb engine (kind `"redb"`).
pub type RedbEngine = LocalEngine<RedbStore>;

/// Bytes of redb's in-process page cache (reads, and a write buffer of up to half of it)
/// unless told otherwise. With redb's own default, 1 GiB, a restore of 1 GiB grew to about
/// 1 GiB of RSS; with 32 MiB it peaks near 180 MiB (64 MiB: up to 270 MiB; `tito bench`).
/// Bulk loads and scans stream through the cache, and the OS page cache still holds the
/// file, so a larger one only helps random reads of a bigger working set.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

impl RedbEngine {
    /// Open the database file at `path`, creating it (not its directory) if missing, with a
    /// page cache of [`DEFAULT_CACHE_BYTES`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES).await
    }

    /// Like [`RedbEngine::open`], with a page cache of `cache_bytes`.
    pub async fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let store = RedbStore::open_with_cache(&path, cache_bytes)?;
            LocalEngine::from_store(store)
        })
        .await
        .map_err(|e| EngineError::Open(format!("redb open task failed: {e}")))?
    }
}

/// Open the file at `path`, creating it if missing. A new file is built under a temporary
/// name beside it and linked into place once redb has written it whole: redb writes its
/// header after creating the file, so a process killed in between would leave a file that
/// nothing opens again ("not a redb database"), not even a forced restore. Linking never
/// replaces a file another process created meanwhile (that one is opened instead).
fn create_whole(path: &Path, cache_bytes: usize) -> std::result::Result<Database, redb::Error> {
    let builder = || {
        let mut b = redb::Builder::new();
        b.set_cache_size(cache_bytes);
        b
    };
    if path.exists() {
        return Ok(builder().create(path)?);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(
        ".{}.{}-{:08x}.creating",
        name.unwrap_or_default(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let db = builder().create(&temp)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        // The handle stays on the file, now under its own name.
        Ok(()) => Ok(db),
        // Created meanwhile by another process, or no hard links here: open it by name.
        Err(_) => {
            drop(db);
            Ok(builder().create(path)?)
        }
    }
}

fn backend(path: &Path, what: &str, e: impl Display) -> EngineError {
    EngineError::Backend(format!("redb {}: {what}: {e}", path.display()))
}

/// Storage of the redb engine.
pub struct RedbStore {
    path: PathBuf,
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
    /// The staged keys as of the last successful commit; `None` until loaded, and again
    /// after a failed commit (whose outcome may be unknown), so it is reloaded from the file.
    staged: Mutex<Option<Staged>>,
}

impl RedbStore {
    /// Open or create the file and its tables (converting a file of the earlier layout).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`RedbStore::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self> {
        let open_err = |e: &dyn Display| EngineError::Open(format!("redb {}: {e}", path.display()));
        let db = create_whole(path, cache_bytes).map_err(|e| open_err(&e))?;
        let tx = db.begin_write().map_err(|e| open_err(&e))?;
        let has_counters = {
            let head = tx.open_table(HEAD).map_err(|e| open_err(&e))?;
            head.get(layout::COUNTERS)
                .map_err(|e| open_err(&e))?
                .is_some()
        };
        if !has_counters {
            let meta = legacy_counters(&tx).map_err(|e| open_err(&e))?;
            move_high_keys(&tx).map_err(|e| open_err(&e))?;
            let mut head = tx.open_table(HEAD).map_err(|e| open_err(&e))?;
            head.insert(layout::COUNTERS, encode_counters(meta).as_slice())
                .map_err(|e| open_err(&e))?;
        }
        tx.open_table(LOW).map_err(|e| open_err(&e))?;
        tx.open_table(HIGH).map_err(|e| open_err(&e))?;
        tx.commit().map_err(|e| open_err(&e))?;
        Ok(RedbStore {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            staged: Mutex::new(None),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> Result<Arc<Database>> {
        let guard = self
            .db
            .read()
            .map_err(|_| backend(&self.path, "handle", "lock poisoned by a panic"))?;
        guard
            .clone()
            .ok_or_else(|| EngineError::Invalid(format!("redb {} is closed", self.path.display())))
    }

    /// Buffer `batch` and `meta` in `tx`; returns the staged keys afterwards.
    fn write(
        &self,
        tx: &WriteTransaction,
        batch: &Batch,
        meta: StoreMeta,
        staged: Option<Staged>,
    ) -> Result<Staged> {
        let path = &self.path;
        let err = |what: &'static str| move |e: redb::Error| backend(path, what, e);
        let mut tables = Tables {
            low: tx
                .open_table(LOW)
                .map_err(|e| err("open data table")(e.into()))?,
            high: tx
                .open_table(HIGH)
                .map_err(|e| err("open data table")(e.into()))?,
            head: tx
                .open_table(HEAD)
                .map_err(|e| err("open head table")(e.into()))?,
        };
        let mut staged = match staged {
            Some(s) => s,
            None => Staged::load(&tables.head).map_err(err("load staged entries"))?,
        };
        for r in &batch.delete_ranges {
            if r.is_empty() {
                continue;
            }
            for (part, bounds) in parts(r).into_iter().enumerate() {
                if let Some(bounds) = bounds {
                    tables
                        .data(part == 1)
                        .retain_in::<&[u8], _>(bounds, |_, _| false)
                        .map_err(|e| err("delete range")(e.into()))?;
                }
            }
            for key in staged.take_range(r) {
                tables.unstage(&key).map_err(err("delete range"))?;
            }
        }
        for (i, (k, v)) in batch.writes.iter().enumerate() {
            match v {
                Some(v) if batch.stamped == Some(i) => {
                    tables
                        .stage(&mut staged, k, v)
                        .map_err(err("stamped write"))?;
                }
                _ => {
                    if staged.remove(k) {
                        tables.unstage(k).map_err(err("write"))?;
                    }
                    let t = tables.data(is_high(k));
                    match v {
                        Some(v) => t.insert(k.as_slice(), v.as_slice()).map(|_| ()),
                        None => t.remove(k.as_slice()).map(|_| ()),
                    }
                    .map_err(|e| err("write")(e.into()))?;
                }
            }
        }
        tables
            .head
            .insert(layout::COUNTERS, encode_counters(meta).as_slice())
            .map_err(|e| err("write counters")(e.into()))?;
        Ok(staged)
    }
}

/// The tables of one write transaction.
struct Tables<'txn> {
    low: Table<'txn, &'static [u8], &'static [u8]>,
    high: Table<'txn, &'static [u8], &'static [u8]>,
    head: Table<'txn, &'static [u8], &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn data(&mut self, high: bool) -> &mut Table<'txn, &'static [u8], &'static [u8]> {
        if high { &mut self.high } else { &mut self.low }
    }

    /// Drop the staged entry of `key` (already removed from `Staged`).
    fn unstage(&mut self, key: &[u8]) -> std::result::Result<(), redb::Error> {
        self.head.remove(layout::staged_key(key).as_slice())?;
        Ok(())
    }

    /// Store the stamped put `key = value`: staged if it fits the budget, after moving
    /// the staged entries to their data tables if they would not leave room for it.
    fn stage(
        &mut self,
        staged: &mut Staged,
        key: &[u8],
        value: &[u8],
    ) -> std::result::Result<(), redb::Error> {
        if staged.remove(key) {
            self.unstage(key)?;
        }
        let cost = layout::cost(key, value);
        if !staged.fits(cost) {
            for k in staged.take_all() {
                let moved = self
                    .head
                    .remove(layout::staged_key(&k).as_slice())?
                    .map(|g| g.value().to_vec());
                let Some(v) = moved else {
                    return Err(redb::StorageError::Corrupted(format!(
                        "staged entry {:?} listed but missing",
                        k.escape_ascii().to_string()
                    ))
                    .into());
                };
                self.data(is_high(&k)).insert(k.as_slice(), v.as_slice())?;
            }
        }
        if staged.fits(cost) {
            self.head
                .insert(layout::staged_key(key).as_slice(), value)?;
            staged.insert(key.to_vec(), cost);
        } else {
            // Larger than the whole budget: straight to its table.
            self.data(is_high(key)).insert(key, value)?;
        }
        Ok(())
    }
}

/// The counters of a file of the earlier layout (zero for a new file); drops its table.
fn legacy_counters(tx: &WriteTransaction) -> std::result::Result<StoreMeta, redb::Error> {
    let meta = {
        let m = tx.open_table(LEGACY_META)?;
        let read = |name: &str| -> std::result::Result<u64, redb::Error> {
            Ok(m.get(name)?.map(|g| g.value()).unwrap_or(0))
        };
        StoreMeta {
            commit_seq: read("commit_seq")?,
            stamp_version: read("stamp_version")?,
            stamp_time_ms: read("stamp_time_ms")?,
        }
    };
    tx.delete_table(LEGACY_META)?;
    Ok(meta)
}

/// Move the keys starting with `0xFF` of a file of the earlier layout to their own table,
/// a bounded number at a time.
fn move_high_keys(tx: &WriteTransaction) -> std::result::Result<(), redb::Error> {
    let mut low = tx.open_table(LOW)?;
    let mut high = tx.open_table(HIGH)?;
    loop {
        let chunk = low
            .range::<&[u8]>(layout::SPLIT..)?
            .take(1024)
            .map(|item| item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if chunk.is_empty() {
            return Ok(());
        }
        for (k, v) in &chunk {
            high.insert(k.as_slice(), v.as_slice())?;
            low.remove(k.as_slice())?;
        }
    }
}

type ReadTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A snapshot of the redb engine: an open read transaction.
pub struct RedbSnapshot {
    path: PathBuf,
    low: ReadTable,
    high: ReadTable,
    head: ReadTable,
    /// First and last staged key, if any: reads of other keys skip the head table.
    staged_span: Option<layout::Span>,
    meta: StoreMeta,
}

impl RedbSnapshot {
    fn data(&self, high: bool) -> &ReadTable {
        if high { &self.high } else { &self.low }
    }

    /// True if `key` may be staged.
    fn maybe_staged(&self, key: &[u8]) -> bool {
        self.staged_span
            .as_ref()
            .is_some_and(|(lo, hi)| lo.as_slice() <= key && key <= hi.as_slice())
    }

    /// The staged entries of `range`, in scan order.
    fn staged_in(&self, range: &KeyRange, reverse: bool) -> Result<Vec<KeyValue>> {
        let Some((lo, hi)) = &self.staged_span else {
            return Ok(Vec::new());
        };
        if !range.overlaps(&KeyRange::new(lo.clone(), layout::successor(hi))) {
            return Ok(Vec::new());
        }
        let (start, end) = staged_bounds(range);
        let mut out = Vec::new();
        for item in self
            .head
            .range::<&[u8]>(start.as_slice()..end.as_slice())
            .map_err(|e| backend(&self.path, "scan", e))?
        {
            let (k, v) = item.map_err(|e| backend(&self.path, "scan", e))?;
            out.push((k.value()[1..].to_vec(), v.value().to_vec()));
        }
        if reverse {
            out.reverse();
        }
        Ok(out)
    }
}

impl StoreSnapshot for RedbSnapshot {
    fn meta(&self) -> StoreMeta {
        self.meta
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.maybe_staged(key) {
            let v = self
                .head
                .get(layout::staged_key(key).as_slice())
                .map_err(|e| backend(&self.path, "get", e))?;
            if let Some(v) = v {
                return Ok(Some(v.value().to_vec()));
            }
        }
        let v = self
            .data(is_high(key))
            .get(key)
            .map_err(|e| backend(&self.path, "get", e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<KeyValue>> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let scan_err = |e: redb::StorageError| backend(&self.path, "scan", e);
        let mut staged = self.staged_in(range, reverse)?.into_iter().peekable();
        // In scan order: is `a` before `b`?
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut out = Vec::new();
        let mut order = parts(range);
        if reverse {
            order.reverse();
        }
        for (high, bounds) in order
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| ((i == 1) != reverse, b)))
        {
            let iter = self.data(high).range::<&[u8]>(bounds).map_err(scan_err)?;
            let iter: Box<dyn Iterator<Item = _>> = if reverse {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
            for item in iter {
                if out.len() >= limit {
                    return Ok(out);
                }
                let (k, v) = item.map_err(scan_err)?;
                let k = k.value();
                while let Some(s) = staged.next_if(|(sk, _)| before(sk, k)) {
                    out.push(s);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                // A staged entry shadows a stored value of the same key.
                match staged.next_if(|(sk, _)| sk.as_slice() == k) {
                    Some(s) => out.push(s),
                    None => out.push((k.to_vec(), v.value().to_vec())),
                }
            }
        }
        out.extend(staged.take(limit.saturating_sub(out.len())));
        Ok(out)
    }
}

impl LocalStore for RedbStore {
    type Snapshot = RedbSnapshot;
    const KIND: &'static str = "redb";
    const BLOCKING: bool = true;
    // redb holds an exclusive lock on its file while open.
    const PROCESS_EXCLUSIVE: bool = true;

    fn snapshot(&self) -> Result<RedbSnapshot> {
        let db = self.db()?;
        let path = &self.path;
        let tx = db
            .begin_read()
            .map_err(|e| backend(path, "begin read", e))?;
        let open = |def, what| tx.open_table(def).map_err(|e| backend(path, what, e));
        let low = open(LOW, "open data table")?;
        let high = open(HIGH, "open data table")?;
        let head = open(HEAD, "open head table")?;
        let counters = head
            .get(layout::COUNTERS)
            .map_err(|e| backend(path, "read counters", e))?
            .ok_or_else(|| backend(path, "read counters", "missing"))?;
        let meta = decode_counters(counters.value())
            .ok_or_else(|| backend(path, "read counters", "malformed"))?;
        drop(counters);
        let staged_span = layout::staged_span(&head).map_err(|e| backend(path, "read head", e))?;
        Ok(RedbSnapshot {
            path: path.clone(),
            low,
            high,
            head,
            staged_span,
            meta,
        })
    }

    fn apply(&self, batch: &Batch, meta: StoreMeta) -> Result<()> {
        let db = self.db()?;
        let path = &self.path;
        let mut tx = db
            .begin_write()
            .map_err(|e| backend(path, "begin write", e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| backend(path, "durability", e))?;
        // Taken out: it is put back only once the commit is known to have landed.
        let mut slot = lock(&self.staged, "staged index")?;
        let staged = self.write(&tx, batch, meta, slot.take())?;
        // Once the commit starts, a failure leaves its outcome unknown.
        tx.commit().map_err(|e| {
            EngineError::CommitUnknown(format!("redb {}: commit: {e}", path.display()))
        })?;
        *slot = Some(staged);
        Ok(())
    }

    fn close(&self) -> Result<()> {
        let mut guard = self
            .db
            .write()
            .map_err(|_| backend(&self.path, "handle", "lock poisoned by a panic"))?;
        guard.take();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
