//! The in-memory engine: a persistent ordered map (`imbl::OrdMap`) whose snapshots
//! are cheap clones, under the shared local transaction manager.
//!
//! Meant for tests and for restores that a caller wants to inspect in memory.

use std::ops::Bound;
use std::sync::Mutex;

use imbl::OrdMap;

use crate::local::{Batch, LocalEngine, LocalStore, StoreMeta, StoreSnapshot, lock};
use crate::{KeyRange, KeyValue, Result};

/// The in-memory engine (kind `"memory"`). Its data lives as long as the value.
pub type MemoryEngine = LocalEngine<MemoryStore>;

impl MemoryEngine {
    /// A new, empty in-memory engine.
    pub fn new() -> Self {
        LocalEngine::with_meta(MemoryStore::default(), StoreMeta::default())
    }
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// Storage of the in-memory engine.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<MemorySnapshot>,
}

/// A snapshot of the in-memory engine: a clone of the map.
#[derive(Clone, Default)]
pub struct MemorySnapshot {
    map: OrdMap<Vec<u8>, Vec<u8>>,
    meta: StoreMeta,
}

fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    let end = match &range.end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    };
    (Bound::Included(range.start.as_slice()), end)
}

impl StoreSnapshot for MemorySnapshot {
    fn meta(&self) -> StoreMeta {
        self.meta
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<KeyValue>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let iter = self.map.range::<_, [u8]>(bounds(range));
        let pairs = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            iter.rev().take(limit).map(pairs).collect()
        } else {
            iter.take(limit).map(pairs).collect()
        })
    }
}

impl LocalStore for MemoryStore {
    type Snapshot = MemorySnapshot;
    const KIND: &'static str = "memory";
    const BLOCKING: bool = false;
    // An in-memory database exists only inside this process.
    const PROCESS_EXCLUSIVE: bool = true;

    fn snapshot(&self) -> Result<MemorySnapshot> {
        Ok(lock(&self.state, "memory store")?.clone())
    }

    fn apply(&self, batch: &Batch, meta: StoreMeta) -> Result<()> {
        // Build the new version aside so a failure leaves the store untouched.
        let mut next = lock(&self.state, "memory store")?.clone();
        for r in &batch.delete_ranges {
            if r.is_empty() {
                continue;
            }
            let doomed: Vec<Vec<u8>> = next
                .map
                .range::<_, [u8]>(bounds(r))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                next.map.remove(&k);
            }
        }
        for (k, v) in &batch.writes {
            match v {
                Some(v) => {
                    next.map.insert(k.clone(), v.clone());
                }
                None => {
                    next.map.remove(k);
                }
            }
        }
        next.meta = meta;
        *lock(&self.state, "memory store")? = next;
        Ok(())
    }
}
