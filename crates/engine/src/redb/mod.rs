//! The embedded, persistent default engine: a [redb](https://docs.rs/redb) file under
//! the shared local transaction manager.
//!
//! Data lives in table `tito_data`; the commit and stamp counters live in table
//! `tito_meta`, written in the same redb write transaction as the data, so they never
//! go backwards across a restart. Every commit is durable (`Durability::Immediate`)
//! and runs on tokio's blocking pool. Snapshots are redb read transactions (MVCC), so a
//! long-lived read view never blocks writers.

use std::fmt::Display;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, TableDefinition};

use crate::local::{Batch, LocalEngine, LocalStore, StoreMeta, StoreSnapshot};
use crate::{EngineError, KeyRange, KeyValue, Result};

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tito_data");
const META: TableDefinition<&str, u64> = TableDefinition::new("tito_meta");
const COMMIT_SEQ: &str = "commit_seq";
const STAMP_VERSION: &str = "stamp_version";
const STAMP_TIME: &str = "stamp_time_ms";

/// The redb engine (kind `"redb"`).
pub type RedbEngine = LocalEngine<RedbStore>;

impl RedbEngine {
    /// Open the database file at `path`, creating it (not its directory) if missing.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let store = RedbStore::open(&path)?;
            LocalEngine::from_store(store)
        })
        .await
        .map_err(|e| EngineError::Open(format!("redb open task failed: {e}")))?
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
}

impl RedbStore {
    /// Open or create the file and its tables.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |e: &dyn Display| EngineError::Open(format!("redb {}: {e}", path.display()));
        let db = Database::create(path).map_err(|e| open_err(&e))?;
        let tx = db.begin_write().map_err(|e| open_err(&e))?;
        tx.open_table(DATA).map_err(|e| open_err(&e))?;
        tx.open_table(META).map_err(|e| open_err(&e))?;
        tx.commit().map_err(|e| open_err(&e))?;
        Ok(RedbStore {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
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
}

/// A snapshot of the redb engine: an open read transaction.
pub struct RedbSnapshot {
    path: PathBuf,
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    meta: StoreMeta,
}

impl StoreSnapshot for RedbSnapshot {
    fn meta(&self) -> StoreMeta {
        self.meta
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let v = self
            .table
            .get(key)
            .map_err(|e| backend(&self.path, "get", e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<KeyValue>> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let end = match &range.end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(range.start.as_slice()), end);
        let iter = self
            .table
            .range::<&[u8]>(bounds)
            .map_err(|e| backend(&self.path, "scan", e))?;
        let iter: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(|e| backend(&self.path, "scan", e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

impl LocalStore for RedbStore {
    type Snapshot = RedbSnapshot;
    const KIND: &'static str = "redb";
    const BLOCKING: bool = true;

    fn snapshot(&self) -> Result<RedbSnapshot> {
        let db = self.db()?;
        let tx = db
            .begin_read()
            .map_err(|e| backend(&self.path, "begin read", e))?;
        let table = tx
            .open_table(DATA)
            .map_err(|e| backend(&self.path, "open data table", e))?;
        let meta_table = tx
            .open_table(META)
            .map_err(|e| backend(&self.path, "open meta table", e))?;
        let read = |name: &str| -> Result<u64> {
            let v = meta_table
                .get(name)
                .map_err(|e| backend(&self.path, name, e))?;
            Ok(v.map(|g| g.value()).unwrap_or(0))
        };
        let meta = StoreMeta {
            commit_seq: read(COMMIT_SEQ)?,
            stamp_version: read(STAMP_VERSION)?,
            stamp_time_ms: read(STAMP_TIME)?,
        };
        Ok(RedbSnapshot {
            path: self.path.clone(),
            table,
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
        {
            let mut data = tx
                .open_table(DATA)
                .map_err(|e| backend(path, "open data table", e))?;
            for r in &batch.delete_ranges {
                if r.is_empty() {
                    continue;
                }
                let end = match &r.end {
                    Some(e) => Bound::Excluded(e.as_slice()),
                    None => Bound::Unbounded,
                };
                let bounds: (Bound<&[u8]>, Bound<&[u8]>) =
                    (Bound::Included(r.start.as_slice()), end);
                data.retain_in::<&[u8], _>(bounds, |_, _| false)
                    .map_err(|e| backend(path, "delete range", e))?;
            }
            for (k, v) in &batch.writes {
                match v {
                    Some(v) => data.insert(k.as_slice(), v.as_slice()).map(|_| ()),
                    None => data.remove(k.as_slice()).map(|_| ()),
                }
                .map_err(|e| backend(path, "write", e))?;
            }
            let mut m = tx
                .open_table(META)
                .map_err(|e| backend(path, "open meta table", e))?;
            for (name, value) in [
                (COMMIT_SEQ, meta.commit_seq),
                (STAMP_VERSION, meta.stamp_version),
                (STAMP_TIME, meta.stamp_time_ms),
            ] {
                m.insert(name, value)
                    .map_err(|e| backend(path, "write meta", e))?;
            }
        }
        // Once the commit starts, a failure leaves its outcome unknown.
        tx.commit().map_err(|e| {
            EngineError::CommitUnknown(format!("redb {}: commit: {e}", path.display()))
        })
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
