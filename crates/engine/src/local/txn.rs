//! Transactions and read views of a [`super::LocalEngine`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::buffer::WriteBuffer;
use super::conflict::KeySet;
use super::{CommitRequest, LocalEngine, LocalStore, Shared, StoreSnapshot, lock};
use crate::{CommitInfo, EngineError, KeyRange, KeyValue, ReadView, Result, Transaction};

/// Mutable part of a transaction.
#[derive(Default)]
struct TxState {
    buffer: WriteBuffer,
    reads: KeySet,
    finished: bool,
}

/// A transaction of a local engine: reads from one snapshot, writes into a buffer.
pub(crate) struct LocalTx<S: LocalStore> {
    shared: Arc<Shared<S>>,
    snapshot: S::Snapshot,
    snapshot_seq: u64,
    state: Mutex<TxState>,
}

impl<S: LocalStore> LocalTx<S> {
    pub fn new(shared: Arc<Shared<S>>, snapshot: S::Snapshot, snapshot_seq: u64) -> Self {
        LocalTx {
            shared,
            snapshot,
            snapshot_seq,
            state: Mutex::new(TxState::default()),
        }
    }

    /// Run `f` on the state of an unfinished transaction.
    fn with<T>(&self, f: impl FnOnce(&mut TxState, &S::Snapshot) -> Result<T>) -> Result<T> {
        let mut state = lock(&self.state, "transaction")?;
        if state.finished {
            return Err(EngineError::Finished);
        }
        self.shared.check_open()?;
        f(&mut state, &self.snapshot)
    }

    /// Mark finished and hand out the buffered state.
    fn finish(&self) -> Result<TxState> {
        let mut state = lock(&self.state, "transaction")?;
        if state.finished {
            return Err(EngineError::Finished);
        }
        let taken = std::mem::take(&mut *state);
        state.finished = true;
        drop(state);
        Ok(taken)
    }

    fn scan_impl(&self, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<KeyValue>> {
        self.with(|st, snap| {
            let (out, covered) = st.buffer.scan(snap, range, limit, reverse)?;
            if let Some(c) = covered {
                st.reads.add_range(c);
            }
            Ok(out)
        })
    }
}

impl<S: LocalStore> Drop for LocalTx<S> {
    fn drop(&mut self) {
        let finished = self.state.get_mut().map(|s| s.finished).unwrap_or(true);
        if !finished {
            self.shared.end(self.snapshot_seq);
        }
    }
}

#[async_trait]
impl<S: LocalStore> Transaction for LocalTx<S> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with(|st, snap| {
            st.reads.add_point(key);
            st.buffer.get(snap, key)
        })
    }

    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.scan_impl(range, limit, false)
    }

    async fn scan_reverse(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.scan_impl(range, limit, true)
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.with(|st, _| {
            st.buffer.put(key, value);
            Ok(())
        })
    }

    fn delete(&self, key: Vec<u8>) -> Result<()> {
        self.with(|st, _| {
            st.buffer.delete(key);
            Ok(())
        })
    }

    fn delete_range(&self, range: &KeyRange) -> Result<()> {
        self.with(|st, _| {
            st.buffer.delete_range(range);
            Ok(())
        })
    }

    fn put_stamped(&self, prefix: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.with(|st, _| {
            if st.buffer.has_stamped() {
                return Err(EngineError::Invalid(
                    "a transaction may make at most one stamped put".into(),
                ));
            }
            st.buffer.put_stamped(prefix, value);
            Ok(())
        })
    }

    async fn commit(&self) -> Result<CommitInfo> {
        let state = self.finish()?;
        let snapshot_seq = self.snapshot_seq;
        // The snapshot stays registered until the commit has finished, wherever it runs:
        // the guard moves into the commit closure, so a future dropped while a blocking
        // commit runs (a cancelled `select!`) does not end it early; other transactions'
        // conflict tracking depends on it until this commit's write set is recorded.
        let end = EndGuard {
            shared: self.shared.clone(),
            snapshot_seq,
        };
        if state.buffer.is_empty() {
            drop(end);
            self.shared.check_open().map(|()| CommitInfo::default())
        } else {
            let (batch, stamped) = state.buffer.into_batch();
            let req = CommitRequest {
                snapshot_seq,
                reads: state.reads,
                batch,
                stamped,
            };
            LocalEngine::<S>::run(&self.shared, move |s| {
                let result = s.commit(req);
                drop(end);
                result
            })
            .await
        }
    }

    async fn rollback(&self) -> Result<()> {
        self.finish()?;
        self.shared.end(self.snapshot_seq);
        Ok(())
    }
}

/// Deregisters a finished transaction's snapshot when dropped.
struct EndGuard<S: LocalStore> {
    shared: Arc<Shared<S>>,
    snapshot_seq: u64,
}

impl<S: LocalStore> Drop for EndGuard<S> {
    fn drop(&mut self) {
        self.shared.end(self.snapshot_seq);
    }
}

/// A read view of a local engine: a snapshot with no buffer.
pub(crate) struct LocalView<T: StoreSnapshot> {
    snapshot: T,
}

impl<T: StoreSnapshot> LocalView<T> {
    pub fn new(snapshot: T) -> Self {
        LocalView { snapshot }
    }
}

#[async_trait]
impl<T: StoreSnapshot> ReadView for LocalView<T> {
    fn version(&self) -> u64 {
        self.snapshot.meta().stamp_version
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snapshot.get(key)
    }

    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        if limit == 0 || range.is_empty() {
            return Ok(Vec::new());
        }
        self.snapshot.scan(range, limit, false)
    }
}
