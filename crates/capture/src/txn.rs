//! The capturing transaction: user reads and writes, recorded for the log.
//!
//! Every write is checked (user keys only, or queue keys through the queue API),
//! encoded into the record body as it is made, and buffered in the engine
//! transaction. At commit, a transaction that made at least one mutation adds the
//! body (compressed when that makes it smaller, see [`crate::log`]) as the engine's one
//! stamped put under [`LOG_PREFIX`], so the record commits atomically with the writes and
//! gets the commit's LSN.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tito_engine::{CommitInfo, EngineError, Finish, KeyRange, KeyValue, Tx};
use tito_format::record::BodyBuilder;

use crate::keys::{self, LOG_PREFIX, QUEUE_PREFIX, RESERVED, display_key};
use crate::{CaptureError, Result};

/// A Tito transaction: a cheap, cloneable handle (clones share one transaction).
///
/// Reads see the transaction's snapshot plus its own writes. Point operations on a key
/// under [`keys::RESERVED`] fail with [`CaptureError::ReservedKey`]; scans skip the
/// reserved prefix (they return user keys only); a range delete overlapping it fails
/// with [`CaptureError::ReservedRange`].
#[derive(Clone)]
pub struct Txn {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Tx,
    /// The record body, in call order. Locked across each write so that the body and
    /// the engine buffer see concurrent writes through clones in the same order.
    body: Mutex<BodyBuilder>,
}

fn reserved_key(key: &[u8], op: &'static str) -> CaptureError {
    CaptureError::ReservedKey {
        key: display_key(key),
        prefix: display_key(RESERVED),
        op,
    }
}

fn check_user_key(key: &[u8], op: &'static str) -> Result<()> {
    if keys::is_reserved(key) {
        Err(reserved_key(key, op))
    } else {
        Ok(())
    }
}

fn check_queue_key(key: &[u8]) -> Result<()> {
    if key.starts_with(QUEUE_PREFIX) {
        Ok(())
    } else {
        Err(CaptureError::NotQueueKey {
            key: display_key(key),
            prefix: display_key(QUEUE_PREFIX),
        })
    }
}

impl Txn {
    pub(crate) fn new(tx: Tx) -> Txn {
        Txn {
            inner: Arc::new(Inner {
                tx,
                body: Mutex::new(BodyBuilder::new()),
            }),
        }
    }

    fn body(&self) -> MutexGuard<'_, BodyBuilder> {
        // A panic while holding the lock can only happen inside the body encoder, which
        // leaves the builder consistent; keep going rather than poisoning every clone.
        self.inner.body.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a mutation and buffer it in the engine; if the engine refuses it, the
    /// record is rolled back so the log never holds a write the engine did not take.
    fn write(
        &self,
        record_then_apply: impl FnOnce(&mut BodyBuilder, &Tx) -> Result<(), EngineError>,
    ) -> Result<()> {
        let mut body = self.body();
        let mark = body.mark();
        if let Err(e) = record_then_apply(&mut body, &self.inner.tx) {
            body.truncate(mark);
            return Err(e.into());
        }
        Ok(())
    }

    /// Number of mutations recorded so far.
    pub fn mutation_count(&self) -> u64 {
        self.body().count()
    }

    /// The value of user key `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_user_key(key, "read")?;
        Ok(self.inner.tx.get(key).await?)
    }

    /// The values of several user keys, in the order asked.
    pub async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        for key in keys {
            check_user_key(key, "read")?;
        }
        Ok(self.inner.tx.batch_get(keys).await?)
    }

    /// Up to `limit` user pairs of `range` in ascending order (reserved keys are skipped).
    pub async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        for part in keys::user_ranges()
            .iter()
            .filter_map(|u| keys::intersect(u, range))
        {
            if out.len() >= limit {
                break;
            }
            out.extend(self.inner.tx.scan(&part, limit - out.len()).await?);
        }
        Ok(out)
    }

    /// Up to `limit` user pairs of `range` in descending order (reserved keys are skipped).
    pub async fn scan_reverse(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        for part in keys::user_ranges()
            .iter()
            .rev()
            .filter_map(|u| keys::intersect(u, range))
        {
            if out.len() >= limit {
                break;
            }
            out.extend(self.inner.tx.scan_reverse(&part, limit - out.len()).await?);
        }
        Ok(out)
    }

    /// Write `value` at user key `key`.
    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        check_user_key(&key, "write")?;
        self.write(|b, tx| {
            b.put(&key, &value);
            tx.put(key, value)
        })
    }

    /// Delete user key `key`.
    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Result<()> {
        let key = key.into();
        check_user_key(&key, "delete")?;
        self.write(|b, tx| {
            b.delete(&key);
            tx.delete(key)
        })
    }

    /// Delete every user key in `range`; fails if `range` overlaps the reserved prefix.
    pub fn delete_range(&self, range: &KeyRange) -> Result<()> {
        if range.overlaps(&keys::reserved_range()) {
            return Err(CaptureError::ReservedRange {
                start: display_key(&range.start),
                end: range
                    .end
                    .as_deref()
                    .map_or("∞".into(), |e| format!("\"{}\"", display_key(e))),
                prefix: display_key(RESERVED),
            });
        }
        self.write(|b, tx| {
            b.delete_range(&range.start, range.end.as_deref());
            tx.delete_range(range)
        })
    }

    /// Queue subspace (for `tito-queue`): the value of `key`, which must start with
    /// [`QUEUE_PREFIX`].
    pub async fn get_queue(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_queue_key(key)?;
        Ok(self.inner.tx.get(key).await?)
    }

    /// Queue subspace (for `tito-queue`): up to `limit` pairs of `range`, which must lie
    /// inside the queue subspace, in ascending order.
    pub async fn scan_queue(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        if keys::intersect(range, &keys::queue_range()).as_ref() != Some(range) {
            return Err(CaptureError::NotQueueKey {
                key: display_key(&range.start),
                prefix: display_key(QUEUE_PREFIX),
            });
        }
        Ok(self.inner.tx.scan(range, limit).await?)
    }

    /// Queue subspace (for `tito-queue`): write `key`, captured in the log like a user write.
    pub fn put_queue(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        check_queue_key(&key)?;
        self.write(|b, tx| {
            b.put(&key, &value);
            tx.put(key, value)
        })
    }

    /// Queue subspace (for `tito-queue`): delete `key`, captured in the log.
    pub fn delete_queue(&self, key: Vec<u8>) -> Result<()> {
        check_queue_key(&key)?;
        self.write(|b, tx| {
            b.delete(&key);
            tx.delete(key)
        })
    }

    /// Commit. Returns the LSN of the commit's log record, or `None` if the transaction
    /// made no mutation (then no record is written).
    pub async fn commit(&self) -> Result<Option<u64>> {
        let info = Finish::commit(self).await?;
        Ok(info.stamp.map(|s| s.version))
    }

    /// Roll back: nothing is written and no record appended.
    pub async fn rollback(&self) -> Result<()> {
        Ok(self.inner.tx.rollback().await?)
    }
}

/// Add the stored record `body` (if any) to `tx` and commit: the record commits
/// atomically with the writes and gets the commit's stamp.
async fn commit_with_record(tx: &Tx, body: Option<Vec<u8>>) -> Result<CommitInfo, EngineError> {
    let wrote = body.is_some();
    if let Some(body) = body {
        tx.put_stamped(LOG_PREFIX.to_vec(), body)?;
    }
    let info = tx.commit().await?;
    if wrote && info.stamp.is_none() {
        // The record was written but we cannot report where: the engine broke its contract.
        return Err(EngineError::Invalid(
            "engine committed a stamped put without reporting its stamp".into(),
        ));
    }
    Ok(info)
}

/// Puts whose log record is encoded and packed (compressed) when they are prepared, so
/// that the work can run on another thread while an earlier transaction commits (a bulk
/// load). Commit them with [`PreparedPuts::commit`]: one captured transaction holding
/// exactly these puts, in order, and their record, as if each pair had gone through
/// [`Txn::put`] (user keys) or [`Txn::put_queue`] (keys under [`QUEUE_PREFIX`]).
pub struct PreparedPuts {
    pairs: Vec<KeyValue>,
    /// The stored record body; `None` if there are no pairs.
    stored: Option<Vec<u8>>,
}

impl PreparedPuts {
    /// Check every key (a user key, or queue state) and encode and pack the record.
    pub fn new(pairs: Vec<KeyValue>) -> Result<PreparedPuts> {
        let mut body = BodyBuilder::new();
        for (k, v) in &pairs {
            if !k.starts_with(QUEUE_PREFIX) {
                check_user_key(k, "write")?;
            }
            body.put(k, v);
        }
        let stored = (!body.is_empty()).then(|| crate::log::pack_body(body.take()));
        Ok(PreparedPuts { pairs, stored })
    }

    /// Number of puts.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True if there are no puts.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Commit the puts as one transaction of `db`. Returns the LSN of its log record, or
    /// `None` if there were no puts (then nothing is written).
    pub async fn commit(self, db: &crate::Db) -> Result<Option<u64>> {
        if self.pairs.is_empty() {
            return Ok(None);
        }
        let tx = db.engine().begin().await?;
        for (k, v) in self.pairs {
            tx.put(k, v)?;
        }
        let info = commit_with_record(&tx, self.stored).await?;
        Ok(info.stamp.map(|s| s.version))
    }
}

#[async_trait]
impl Finish for Txn {
    async fn commit(&self) -> Result<CommitInfo, EngineError> {
        let body = {
            let mut b = self.body();
            (!b.is_empty()).then(|| b.take())
        }
        .map(crate::log::pack_body);
        commit_with_record(&self.inner.tx, body).await
    }

    async fn rollback(&self) -> Result<(), EngineError> {
        self.inner.tx.rollback().await
    }
}
