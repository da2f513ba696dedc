//! The transaction manager shared by in-process engines (memory, redb).
//!
//! A backend only provides storage through [`LocalStore`]: consistent snapshots and
//! atomic application of a [`Batch`] together with the engine's [`StoreMeta`].
//! [`LocalEngine`] adds everything else: write buffering, reads merged over the
//! snapshot, optimistic serializable validation at commit, stamps and read views.

mod buffer;
mod conflict;
mod txn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::{BoxView, CommitInfo, Engine, EngineError, KeyRange, KeyValue, Result, Stamp, Tx};
use conflict::{KeySet, Tracker};
use txn::{LocalTx, LocalView};

/// Engine-wide counters a backend persists atomically with every commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMeta {
    /// Number of commits that wrote something (orders snapshots for validation).
    pub commit_seq: u64,
    /// The stamp counter: version of the latest stamped commit (or the value set by
    /// [`Engine::advance_version`]).
    pub stamp_version: u64,
    /// `time_ms` of the latest stamp.
    pub stamp_time_ms: u64,
}

/// Writes of one commit: first every range in `delete_ranges` is cleared, then each
/// entry of `writes` is applied (`None` deletes the key).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Ranges to clear, applied first.
    pub delete_ranges: Vec<KeyRange>,
    /// Puts (`Some`) and deletes (`None`), applied after the range deletes.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Index in `writes` of the commit's stamped put, if any. It is an ordinary put for
    /// the batch's meaning; a store may keep such entries apart because their keys only
    /// grow (the redb store stages them next to its counters).
    pub stamped: Option<usize>,
}

impl Batch {
    /// The keys and ranges this batch writes, for validating later commits.
    fn write_set(&self) -> KeySet {
        let mut set = KeySet::default();
        for r in &self.delete_ranges {
            set.add_range(r.clone());
        }
        set.points = self.writes.iter().map(|(k, _)| k.clone()).collect();
        set
    }
}

/// A consistent, immutable view of a [`LocalStore`].
pub trait StoreSnapshot: Send + Sync + 'static {
    /// The counters as of this snapshot.
    fn meta(&self) -> StoreMeta;
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` pairs of `range`, ascending, or descending if `reverse`.
    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<KeyValue>>;
}

/// The storage part of an in-process engine.
pub trait LocalStore: Send + Sync + 'static {
    /// The snapshot type.
    type Snapshot: StoreSnapshot;
    /// The engine kind reported by [`Engine::kind`].
    const KIND: &'static str;
    /// True if [`LocalStore::apply`] blocks on I/O and must run off the async workers.
    const BLOCKING: bool;
    /// True if no other process can open the same database while this store is open
    /// (see [`Engine::process_exclusive`]).
    const PROCESS_EXCLUSIVE: bool;

    /// The latest committed state.
    fn snapshot(&self) -> Result<Self::Snapshot>;

    /// Apply `batch` and store `meta`, atomically and durably. Only one call runs at a
    /// time. On error nothing may be applied, except for
    /// [`EngineError::CommitUnknown`].
    fn apply(&self, batch: &Batch, meta: StoreMeta) -> Result<()>;

    /// Release resources; later calls may fail.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// What a commit needs from a finished transaction.
pub(crate) struct CommitRequest {
    snapshot_seq: u64,
    reads: KeySet,
    batch: Batch,
    stamped: Option<buffer::StampedPut>,
}

/// State shared by the engine and its transactions.
pub(crate) struct Shared<S> {
    store: S,
    /// The commit mutex; holds the counters of the latest commit.
    commit: Mutex<Counters>,
    tracker: Mutex<Tracker>,
    closed: AtomicBool,
}

/// The counters of the latest commit, as the commit mutex holds them.
pub(crate) struct Counters {
    meta: StoreMeta,
    /// True after a commit failed and the counters could not be reloaded: the commit may
    /// have landed, so they must be read back from the store before the next commit may
    /// hand out a stamp (otherwise it could reuse the LSN of a commit that landed).
    stale: bool,
}

/// Lock a mutex, treating poisoning as a backend failure.
pub(crate) fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>> {
    m.lock()
        .map_err(|_| EngineError::Backend(format!("{what} lock poisoned by a panic")))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<S: LocalStore> Shared<S> {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Invalid(format!(
                "the {} engine is closed",
                S::KIND
            )));
        }
        Ok(())
    }

    /// Take a snapshot and register it as in use by a transaction.
    fn begin(&self) -> Result<(S::Snapshot, u64)> {
        self.check_open()?;
        let mut tracker = lock(&self.tracker, "tracker")?;
        let snap = self.store.snapshot()?;
        let seq = snap.meta().commit_seq;
        tracker.register(seq);
        Ok((snap, seq))
    }

    fn end(&self, snapshot_seq: u64) {
        if let Ok(mut t) = lock(&self.tracker, "tracker") {
            t.deregister(snapshot_seq);
        }
    }

    /// Validate and apply a commit under the commit mutex. Blocks on the store.
    fn commit(&self, req: CommitRequest) -> Result<CommitInfo> {
        self.check_open()?;
        let CommitRequest {
            snapshot_seq,
            reads,
            mut batch,
            stamped,
        } = req;
        if batch.delete_ranges.is_empty() && batch.writes.is_empty() && stamped.is_none() {
            // Read-only: its snapshot is a consistent serial point already.
            return Ok(CommitInfo::default());
        }
        let mut counters = self.counters()?;
        let meta = &mut counters.meta;
        lock(&self.tracker, "tracker")?.validate(snapshot_seq, &reads)?;
        let mut next = StoreMeta {
            commit_seq: meta.commit_seq + 1,
            ..*meta
        };
        let mut stamp = None;
        if let Some((mut key, value)) = stamped {
            let s = Stamp {
                version: meta.stamp_version + 1,
                time_ms: now_ms().max(meta.stamp_time_ms),
            };
            key.extend_from_slice(&s.version.to_be_bytes());
            let mut v = Vec::with_capacity(8 + value.len());
            v.extend_from_slice(&s.time_ms.to_be_bytes());
            v.extend_from_slice(&value);
            // Its key is new, so it comes after every other write of the batch.
            batch.stamped = Some(batch.writes.len());
            batch.writes.push((key, Some(v)));
            next.stamp_version = s.version;
            next.stamp_time_ms = s.time_ms;
            stamp = Some(s);
        }
        self.apply(&mut counters, &batch, next)?;
        self.record_writes(next.commit_seq, snapshot_seq, &batch)?;
        Ok(CommitInfo { stamp })
    }

    /// Keep the write set of commit `seq` for the transactions that began before it. The
    /// committer itself (registered at `own_snapshot` until its commit returns) does not
    /// count, so a lone writer never copies its keys.
    fn record_writes(&self, seq: u64, own_snapshot: u64, batch: &Batch) -> Result<()> {
        let mut tracker = lock(&self.tracker, "tracker")?;
        if tracker.needs_write_set(seq, own_snapshot) {
            tracker.record(seq, batch.write_set());
        }
        Ok(())
    }

    /// Lock the commit mutex, reloading the counters first if a failed commit left them
    /// unknown.
    fn counters(&self) -> Result<MutexGuard<'_, Counters>> {
        let mut counters = lock(&self.commit, "commit")?;
        if counters.stale {
            let snap = self.store.snapshot().map_err(|e| {
                EngineError::Backend(format!(
                    "the {} engine's counters are unknown after a failed commit and cannot \
                     be read back ({e}); retry",
                    S::KIND
                ))
            })?;
            counters.meta = snap.meta();
            counters.stale = false;
        }
        Ok(counters)
    }

    /// Apply under the held commit mutex and update the counters.
    fn apply(&self, counters: &mut Counters, batch: &Batch, next: StoreMeta) -> Result<()> {
        match self.store.apply(batch, next) {
            Ok(()) => {
                counters.meta = next;
                Ok(())
            }
            Err(e) => {
                // The commit may have landed: reload the counters from the store, or
                // remember that they must be reloaded before the next commit.
                match self.store.snapshot() {
                    Ok(snap) => counters.meta = snap.meta(),
                    Err(_) => counters.stale = true,
                }
                Err(e)
            }
        }
    }

    /// Set the stamp counter to what `version` makes of it (`None`: leave it).
    fn set_version(&self, version: impl FnOnce(u64) -> Option<u64>) -> Result<()> {
        self.check_open()?;
        let mut counters = self.counters()?;
        let Some(v) = version(counters.meta.stamp_version) else {
            return Ok(());
        };
        let next = StoreMeta {
            stamp_version: v,
            ..counters.meta
        };
        self.apply(&mut counters, &Batch::default(), next)
    }

    fn bulk_load(&self, mut pairs: Vec<KeyValue>) -> Result<()> {
        self.check_open()?;
        if pairs.is_empty() {
            return Ok(());
        }
        // Sorted input loads fastest; one covering range stands for the write set.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut writes = KeySet::default();
        if let (Some(first), Some(last)) = (pairs.first(), pairs.last()) {
            writes.add_range(KeyRange {
                start: first.0.clone(),
                end: Some(KeyRange::from(Vec::new()).after(&last.0).start),
            });
        }
        let batch = Batch {
            delete_ranges: Vec::new(),
            writes: pairs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            stamped: None,
        };
        let mut counters = self.counters()?;
        let next = StoreMeta {
            commit_seq: counters.meta.commit_seq + 1,
            ..counters.meta
        };
        self.apply(&mut counters, &batch, next)?;
        let mut tracker = lock(&self.tracker, "tracker")?;
        // No transaction of its own: anyone active began before it.
        if tracker.needs_write_set(next.commit_seq, u64::MAX) {
            tracker.record(next.commit_seq, writes);
        }
        Ok(())
    }
}

/// An [`Engine`] made of a [`LocalStore`] and the shared transaction manager.
pub struct LocalEngine<S: LocalStore> {
    shared: Arc<Shared<S>>,
}

impl<S: LocalStore> LocalEngine<S> {
    /// Wrap `store`, reading its counters from its latest snapshot.
    pub fn from_store(store: S) -> Result<Self> {
        let meta = store.snapshot()?.meta();
        Ok(Self::with_meta(store, meta))
    }

    /// Wrap `store` whose latest counters are `meta`.
    pub fn with_meta(store: S, meta: StoreMeta) -> Self {
        LocalEngine {
            shared: Arc::new(Shared {
                store,
                commit: Mutex::new(Counters { meta, stale: false }),
                tracker: Mutex::new(Tracker::default()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The storage backend.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Run `f` on the shared state, off the async workers if the store blocks.
    pub(crate) async fn run<T, F>(shared: &Arc<Shared<S>>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared<S>) -> Result<T> + Send + 'static,
    {
        if S::BLOCKING {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || f(&shared))
                .await
                .map_err(|e| {
                    EngineError::CommitUnknown(format!("{} commit task failed: {e}", S::KIND))
                })?
        } else {
            f(shared)
        }
    }
}

#[async_trait]
impl<S: LocalStore> Engine for LocalEngine<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }

    async fn begin(&self) -> Result<Tx> {
        let (snapshot, seq) = self.shared.begin()?;
        Ok(Arc::new(LocalTx::new(self.shared.clone(), snapshot, seq)))
    }

    async fn read_view(&self) -> Result<BoxView> {
        self.shared.check_open()?;
        Ok(Box::new(LocalView::new(self.shared.store.snapshot()?)))
    }

    async fn advance_version(&self, at_least: u64) -> Result<()> {
        Self::run(&self.shared, move |s| {
            s.set_version(|v| (v < at_least).then_some(at_least))
        })
        .await
    }

    async fn reset_version(&self, version: u64) -> Result<()> {
        Self::run(&self.shared, move |s| {
            s.set_version(|v| (v != version).then_some(version))
        })
        .await
    }

    fn process_exclusive(&self) -> bool {
        S::PROCESS_EXCLUSIVE
    }

    async fn bulk_load(&self, pairs: Vec<KeyValue>) -> Result<()> {
        Self::run(&self.shared, move |s| s.bulk_load(pairs)).await
    }

    async fn close(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Wait for a running commit, then release the store.
        let shared = self.shared.clone();
        Self::run(&self.shared, move |_| {
            let _commit = lock(&shared.commit, "commit")?;
            shared.store.close()
        })
        .await
    }
}
