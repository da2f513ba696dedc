use std::sync::Arc;

use async_trait::async_trait;

use crate::{KeyRange, Result};

/// One key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What an engine assigns to a commit that made a stamped put ([`Transaction::put_stamped`]).
///
/// Versions are dense (each stamped commit takes the previous version plus one) and
/// strictly increase in commit order; `time_ms` never decreases along versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// The engine's stamp counter after this commit (the first stamped commit gets 1).
    pub version: u64,
    /// Commit time in milliseconds since the Unix epoch: `max(wall clock, previous time_ms)`.
    pub time_ms: u64,
}

/// What a successful commit reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CommitInfo {
    /// The stamp of the commit if it made a stamped put, `None` otherwise.
    pub stamp: Option<Stamp>,
}

/// Limits a transaction must respect on this engine; callers that write in batches
/// (restore, bulk load) size their batches to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest total of key and value bytes one transaction may write.
    pub max_txn_bytes: usize,
    /// Largest number of write operations one transaction may hold.
    pub max_txn_ops: usize,
}

impl Limits {
    /// No practical limit (embedded engines).
    pub const UNLIMITED: Limits = Limits {
        max_txn_bytes: usize::MAX,
        max_txn_ops: usize::MAX,
    };
}

/// An interactive transaction.
///
/// Contract:
/// - **Snapshot reads**: every read sees the state as of one point (the snapshot taken at
///   `begin`), plus this transaction's own buffered writes. No transaction ever sees
///   another's uncommitted writes.
/// - **Buffered writes**: `put`, `delete`, `delete_range` and `put_stamped` are buffered
///   locally and only sent at `commit`. They apply in call order: a `put` after a
///   `delete_range` covering its key survives.
/// - **Serializable commit**: `commit` fails with [`crate::EngineError::Conflict`] if any key
///   or range this transaction read was changed by a transaction that committed after its
///   snapshot. Blind writes never conflict. On conflict nothing is written.
/// - **Atomic**: a commit applies all of the writes or none of them.
/// - After `commit` or `rollback`, every call fails with [`crate::EngineError::Finished`].
///   Dropping an unfinished transaction rolls it back.
///
/// Handles are shared (`Arc`) so that closures given to [`crate::transaction`] can own one.
#[async_trait]
pub trait Transaction: Send + Sync {
    /// The value of `key`, or `None`.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values of several keys, in the order asked.
    async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    /// Up to `limit` pairs of `range` in ascending key order.
    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>>;

    /// Up to `limit` pairs of `range` in descending key order (starting from the end).
    async fn scan_reverse(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>>;

    /// Buffer a write of `value` at `key`.
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()>;

    /// Buffer a deletion of `key` (deleting an absent key is not an error).
    fn delete(&self, key: Vec<u8>) -> Result<()>;

    /// Buffer a deletion of every key in `range`.
    fn delete_range(&self, range: &KeyRange) -> Result<()>;

    /// Buffer a stamped put: at commit the engine writes key `prefix ++ be_u64(version)`
    /// with value `be_u64(time_ms) ++ value`, where `(version, time_ms)` is the commit's
    /// [`Stamp`]. At most one stamped put per transaction. Change capture builds the
    /// commit-ordered log on this.
    fn put_stamped(&self, prefix: Vec<u8>, value: Vec<u8>) -> Result<()>;

    /// Commit the buffered writes atomically (see the trait's contract).
    async fn commit(&self) -> Result<CommitInfo>;

    /// Discard the buffered writes.
    async fn rollback(&self) -> Result<()>;
}

/// A shared transaction handle.
pub type Tx = Arc<dyn Transaction>;

/// A consistent, read-only view of the whole keyspace at one commit, meant for long
/// paged scans (full snapshots). It stays consistent however long it is held and never
/// blocks writers.
#[async_trait]
pub trait ReadView: Send + Sync {
    /// The highest stamp version visible in this view (0 if none): the log position
    /// the view reflects.
    fn version(&self) -> u64;

    /// The value of `key` in this view.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Up to `limit` pairs of `range` in ascending order. Page with [`KeyRange::after`].
    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>>;

    /// Bytes of pairs a long paged scan should ask for at a time: a page that stays in
    /// the cache for an embedded engine (the default, 256 KiB); far more for a remote one
    /// whose every read costs a round trip and more.
    fn scan_page_bytes(&self) -> usize {
        256 << 10
    }
}

/// A boxed read view.
pub type BoxView = Box<dyn ReadView>;

/// An ordered, transactional key-value engine.
///
/// Implementations must be safe to share between tasks and make no assumption of a
/// single writer: several transactions may run at once, from several processes.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Short name of the backend: `memory`, `redb`, `etcd`, `tikv`.
    fn kind(&self) -> &'static str;

    /// Start a transaction.
    async fn begin(&self) -> Result<Tx>;

    /// Take a consistent read view of the latest committed state.
    async fn read_view(&self) -> Result<BoxView>;

    /// Make sure the next stamped commit gets a version greater than `at_least` (restore
    /// uses this so a restored database continues the log after the restored point).
    async fn advance_version(&self, at_least: u64) -> Result<()>;

    /// Set the stamp counter to exactly `version`: the next stamped commit gets
    /// `version + 1`, even if stamps above it were given before. Only for a database whose
    /// log was just emptied (a restore in place over it): it makes the restored database's
    /// log continue densely after the restored point. Commit times never go back.
    async fn reset_version(&self, version: u64) -> Result<()>;

    /// True if, while this engine is open, no other process can open the same database
    /// (an embedded engine's exclusive file lock). A lease that another process left in
    /// such a database is then provably abandoned.
    fn process_exclusive(&self) -> bool {
        false
    }

    /// Write `pairs` as one atomic blind write, as fast as the engine allows. Meant for
    /// loading into an empty database (restore); it takes part in no conflict checks of
    /// its own but still conflicts running transactions that read these keys.
    async fn bulk_load(&self, pairs: Vec<KeyValue>) -> Result<()> {
        let tx = self.begin().await?;
        for (k, v) in pairs {
            tx.put(k, v)?;
        }
        tx.commit().await.map(|_| ())
    }

    /// The transaction limits of this engine.
    fn limits(&self) -> Limits {
        Limits::UNLIMITED
    }

    /// Flush and release resources. Further use fails.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
