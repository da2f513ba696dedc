//! Interactive transactions: snapshot reads at a pinned revision, buffered writes, and a
//! commit that is one compare-guarded etcd txn.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use etcd_client::{GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};
use tito_engine::{CommitInfo, EngineError, KeyRange, KeyValue, Result, Transaction};

use crate::buffer::WriteBuffer;
use crate::commit::{check_fits, compare_budget, counter_guard, stamped_record, write_ops};
use crate::errors::{Kind, classify, commit_error};
use crate::readset::ReadSet;
use crate::shared::{Counter, Shared};

/// Largest page fetched from etcd at once while merging a scan.
const MAX_PAGE: usize = 1024;
/// How often a commit is re-sent because only the stamp counter moved.
const MAX_COUNTER_RETRIES: usize = 1000;

#[derive(Default)]
struct State {
    buffer: WriteBuffer,
    reads: ReadSet,
    finished: bool,
}

/// A transaction of [`crate::EtcdEngine`].
pub(crate) struct EtcdTx {
    shared: Arc<Shared>,
    /// The snapshot revision, pinned by the first read.
    pin: tokio::sync::Mutex<Option<i64>>,
    state: Mutex<State>,
}

impl EtcdTx {
    pub fn new(shared: Arc<Shared>) -> Self {
        EtcdTx {
            shared,
            pin: tokio::sync::Mutex::new(None),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> Result<MutexGuard<'_, State>> {
        let st = self
            .state
            .lock()
            .map_err(|_| EngineError::Backend("etcd transaction state poisoned".into()))?;
        if st.finished {
            return Err(EngineError::Finished);
        }
        Ok(st)
    }

    /// A read at the pinned revision; the first read pins the revision it was served at.
    async fn fetch(
        &self,
        what: &str,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<(Vec<etcd_client::KeyValue>, bool)> {
        let mut pin = self.pin.lock().await;
        let mut resp = match *pin {
            Some(rev) => {
                drop(pin);
                self.shared
                    .get(what, key, Some(options.with_revision(rev)))
                    .await
            }
            None => {
                // Held across the read so that concurrent first reads pin one revision.
                let resp = self.shared.get(what, key, Some(options)).await;
                if let Ok(r) = &resp {
                    *pin = Some(r.header().map_or(0, |h| h.revision()));
                }
                resp
            }
        }
        .map_err(|e| self.read_error(what, e))?;
        let more = resp.more();
        Ok((resp.take_kvs(), more))
    }

    fn read_error(&self, what: &str, e: etcd_client::Error) -> EngineError {
        if classify(&e) == Kind::Compacted {
            // The snapshot is gone: a fresh transaction will take a newer one.
            return EngineError::Conflict(format!("{what}: snapshot revision was compacted: {e}"));
        }
        crate::errors::read_error(what, e)
    }

    async fn scan_impl(
        &self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>> {
        let overlay = self.state()?.buffer.overlay_len();
        if limit == 0 || range.is_empty() {
            return Ok(Vec::new());
        }
        let page = (limit.saturating_add(overlay)).min(MAX_PAGE);
        let layout = &self.shared.layout;
        let mut out: Vec<KeyValue> = Vec::new();
        let mut cursor = range.clone();
        loop {
            let (start, end) = layout.range(&cursor);
            let mut options = GetOptions::new().with_range(end).with_limit(page as i64);
            if reverse {
                options = options.with_sort(SortTarget::Key, SortOrder::Descend);
            }
            let (kvs, more) = self.fetch("scan", start, options).await?;
            let page_kvs: Vec<(KeyValue, i64)> = kvs
                .into_iter()
                .map(|kv| {
                    let m = kv.mod_revision();
                    let (k, v) = kv.into_key_value();
                    ((layout.user_key(&k).to_vec(), v), m)
                })
                .collect();
            let last = page_kvs.last().map(|((k, _), _)| k.clone());
            // The part of the range this page settles.
            let span = match &last {
                Some(last) if more => {
                    if reverse {
                        KeyRange {
                            start: last.clone(),
                            end: cursor.end.clone(),
                        }
                    } else {
                        KeyRange {
                            start: cursor.start.clone(),
                            end: Some(cursor.after(last).start),
                        }
                    }
                }
                _ => cursor.clone(),
            };
            let mut st = self.state()?;
            let (s, e) = layout.range(&span);
            st.reads.add_range(s, e);
            let mut pairs = Vec::with_capacity(page_kvs.len());
            for ((k, v), m) in page_kvs {
                st.reads.add_seen(layout.key(&k), m);
                pairs.push((k, v));
            }
            st.buffer.merge_page(pairs, &span, limit, reverse, &mut out);
            drop(st);
            match last {
                Some(last) if more && out.len() < limit => {
                    cursor = if reverse {
                        cursor.before(&last)
                    } else {
                        cursor.after(&last)
                    };
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Send the commit; retry while only the stamp counter moved.
    async fn commit_impl(&self, buffer: WriteBuffer, reads: ReadSet) -> Result<CommitInfo> {
        let shared = &self.shared;
        let pinned = *self.pin.lock().await;
        let stamped = buffer.stamped.clone();
        // The counter's key must not count against the user's limits: check the writes
        // with a placeholder record of the same size.
        let placeholder = stamped
            .as_ref()
            .map(|(p, v)| stamped_record(p, v, Default::default()));
        let sized = buffer.final_writes(placeholder);
        check_fits(shared, &sized, "transaction")?;
        let compares = match pinned {
            Some(rev) if !reads.is_empty() => reads.compares(
                rev,
                &shared.layout.delete_epoch,
                shared.config.max_txn_ops - 1,
                compare_budget(shared, &sized),
            ),
            _ => Vec::new(),
        };
        let Some((prefix, value)) = stamped else {
            let txn = Txn::new()
                .when(compares)
                .and_then(write_ops(shared, &sized));
            let resp = shared
                .txn(txn)
                .await
                .map_err(|e| commit_error("commit", e))?;
            if !resp.succeeded() {
                return Err(EngineError::Conflict(
                    "a key or range this transaction read was changed since its snapshot".into(),
                ));
            }
            return Ok(CommitInfo { stamp: None });
        };
        // No read of the counter before sending: the commit is guarded by the counter this
        // engine saw last. If another commit moved it since, the txn fails, its failure
        // branch returns the fresh counter, and the commit is re-sent with that.
        let mut counter = shared.known_counter().await?;
        for _ in 0..MAX_COUNTER_RETRIES {
            let stamp = counter.next_stamp();
            let writes = buffer.final_writes(Some(stamped_record(&prefix, &value, stamp)));
            let (guard, bump) = counter_guard(shared, &counter, stamp);
            let mut all = compares.clone();
            all.push(guard);
            let mut ops = write_ops(shared, &writes);
            ops.push(bump);
            let txn = Txn::new()
                .when(all)
                .and_then(ops)
                .or_else(vec![TxnOp::get(shared.layout.counter.clone(), None)]);
            let resp = shared
                .txn(txn)
                .await
                .map_err(|e| commit_error("stamped commit", e))?;
            if resp.succeeded() {
                // The txn's revision is the one that wrote the counter.
                if let Some(h) = resp.header() {
                    shared.remember_counter(Counter {
                        version: stamp.version,
                        time_ms: stamp.time_ms,
                        mod_revision: h.revision(),
                    });
                }
                return Ok(CommitInfo { stamp: Some(stamp) });
            }
            let fresh = match resp.op_responses().into_iter().next() {
                Some(TxnOpResponse::Get(g)) => Counter::decode(g.kvs().first())?,
                _ => {
                    return Err(EngineError::Backend(
                        "etcd txn failure branch returned no counter read".into(),
                    ));
                }
            };
            shared.remember_counter(fresh);
            if fresh.mod_revision == counter.mod_revision {
                return Err(EngineError::Conflict(
                    "a key or range this transaction read was changed since its snapshot".into(),
                ));
            }
            // Another stamped commit took the version: the user's reads may still hold.
            counter = fresh;
        }
        Err(EngineError::Conflict(format!(
            "stamp counter contended for {MAX_COUNTER_RETRIES} attempts"
        )))
    }
}

#[async_trait]
impl Transaction for EtcdTx {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.state()?.buffer.lookup(key) {
            return Ok(v);
        }
        if !self.shared.layout.holds(key) {
            return Ok(None); // no such key can be stored
        }
        let etcd_key = self.shared.layout.key(key);
        let (mut kvs, _) = self
            .fetch("get", etcd_key.clone(), GetOptions::new())
            .await?;
        let found = kvs.pop();
        let m = found.as_ref().map_or(0, |kv| kv.mod_revision());
        self.state()?.reads.add_point(etcd_key, m);
        Ok(found.map(|kv| kv.into_key_value().1))
    }

    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.scan_impl(range, limit, false).await
    }

    async fn scan_reverse(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.scan_impl(range, limit, true).await
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.shared.layout.check(&key)?;
        self.state()?.buffer.put(key, value);
        Ok(())
    }

    fn delete(&self, key: Vec<u8>) -> Result<()> {
        if !self.shared.layout.holds(&key) {
            return Ok(()); // no such key can be stored (raw: it would name metadata)
        }
        self.state()?.buffer.delete(key);
        Ok(())
    }

    fn delete_range(&self, range: &KeyRange) -> Result<()> {
        self.state()?.buffer.delete_range(range);
        Ok(())
    }

    fn put_stamped(&self, prefix: Vec<u8>, value: Vec<u8>) -> Result<()> {
        // The stamp follows the prefix: the whole key must stay in the data.
        let mut last = prefix.clone();
        last.extend_from_slice(&[0xff; 8]);
        self.shared.layout.check(&last)?;
        let mut st = self.state()?;
        if st.buffer.stamped.is_some() {
            return Err(EngineError::Invalid(
                "a transaction may make at most one stamped put".into(),
            ));
        }
        st.buffer.stamped = Some((prefix, value));
        Ok(())
    }

    async fn commit(&self) -> Result<CommitInfo> {
        let (buffer, reads) = {
            let mut st = self.state()?;
            st.finished = true;
            (
                std::mem::take(&mut st.buffer),
                std::mem::take(&mut st.reads),
            )
        };
        self.shared.check_open()?;
        if buffer.is_empty() {
            // Read-only: its reads came from one snapshot, which is serializable as is.
            return Ok(CommitInfo::default());
        }
        self.commit_impl(buffer, reads).await
    }

    async fn rollback(&self) -> Result<()> {
        let mut st = self.state()?;
        st.finished = true;
        st.buffer = WriteBuffer::default();
        st.reads = ReadSet::default();
        Ok(())
    }
}
