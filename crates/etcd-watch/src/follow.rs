//! Following the cluster: one watch over the whole keyspace (previous values off), its
//! events grouped by revision into log records, LSN = revision.
//!
//! Every revision becomes exactly one record: a multi-key txn is one revision and one
//! record, never split (etcd never splits a revision's events across watch responses
//! unless asked to fragment, which this watch does not). The whole keyspace is watched so
//! that every revision is seen, also those touching only keys outside the prefix: they
//! become empty records, keeping the LSNs dense as segments require. A revision missing
//! from the stream (which etcd does not produce) is never filled in: the watch is opened
//! again after the last revision received. Events of keys outside the prefix are dropped;
//! keys are kept whole.
//!
//! Progress notifications are not used (on etcd 3.4 they can announce revisions whose
//! events were not delivered): the position is only ever the last revision whose events
//! arrived.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use etcd_client::{EventType, WatchOptions};
use tito_backup::{BackupError, LogSource};
use tito_engine::KeyRange;
use tito_format::record::{LogRecord, Mutation};
use tokio::sync::{Notify, watch};

use crate::engine::Cluster;
use crate::error::WatchError;

/// Records received from the watch and not yet shipped: the [`LogSource`] of the
/// shipper. Bounded: the watch waits while it is full.
pub struct WatchSource {
    state: Mutex<Buffer>,
    room: Notify,
    capacity: usize,
    capacity_bytes: usize,
}

/// Records received from the watch and not yet shipped ([`WatchSource::unshipped`]): the
/// backup's lag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unshipped {
    /// Records waiting.
    pub records: u64,
    /// Revision of the oldest (0 if none).
    pub oldest_lsn: u64,
    /// Revision of the newest (0 if none).
    pub newest_lsn: u64,
    /// When Tito observed the oldest (ms since the epoch, 0 if none).
    pub oldest_time_ms: u64,
}

#[derive(Default)]
struct Buffer {
    records: VecDeque<LogRecord>,
    /// The last revision received (or the one the watch starts after).
    last: u64,
    /// The commit time given to the last record (times never go back).
    last_time_ms: u64,
    /// Key and value bytes of `records`.
    bytes: usize,
}

impl WatchSource {
    /// A buffer of at most `capacity` records and about `capacity_bytes` of keys and
    /// values (one record more than that is always taken, so a large one fits).
    pub fn new(capacity: usize, capacity_bytes: usize) -> Self {
        WatchSource {
            state: Mutex::new(Buffer::default()),
            room: Notify::new(),
            capacity: capacity.max(1),
            capacity_bytes,
        }
    }

    /// The last revision received (or the one the watch starts after).
    pub fn last(&self) -> u64 {
        self.state.lock().expect("source lock").last
    }

    /// Records waiting to be shipped.
    pub fn pending(&self) -> usize {
        self.state.lock().expect("source lock").records.len()
    }

    /// What waits to be shipped now: how many records, their first and last revisions and
    /// the time Tito observed the first (all 0 when nothing waits).
    pub fn unshipped(&self) -> Unshipped {
        let s = self.state.lock().expect("source lock");
        Unshipped {
            records: s.records.len() as u64,
            oldest_lsn: s.records.front().map_or(0, |r| r.lsn),
            newest_lsn: s.records.back().map_or(0, |r| r.lsn),
            oldest_time_ms: s.records.front().map_or(0, |r| r.time_ms),
        }
    }

    /// Start again after `revision`: records through it are dropped (a snapshot covers
    /// them), later ones are kept only if they follow on.
    pub fn reset(&self, revision: u64) {
        let mut s = self.state.lock().expect("source lock");
        s.records.retain(|r| r.lsn > revision);
        if s.records.front().is_some_and(|r| r.lsn != revision + 1) {
            s.records.clear();
        }
        s.bytes = s.records.iter().map(size_of_record).sum();
        s.last = s.records.back().map_or(revision, |r| r.lsn);
        drop(s);
        self.room.notify_waiters();
    }

    /// Append the record of `revision`, which must follow the last one; waits while the
    /// buffer is full.
    async fn push(&self, revision: u64, mutations: Vec<Mutation>) -> Result<(), WatchError> {
        loop {
            let notified = self.room.notified();
            {
                let mut s = self.state.lock().expect("source lock");
                let full = s.records.len() >= self.capacity
                    || (!s.records.is_empty() && s.bytes >= self.capacity_bytes);
                if !full {
                    let time_ms = tito_backup::now_ms().max(s.last_time_ms);
                    s.last_time_ms = time_ms;
                    if revision != s.last + 1 {
                        // Never filled in: a revision the watch skipped may have touched
                        // the prefix. The caller watches again after the last one.
                        return Err(WatchError::WatchLost(format!(
                            "the watch delivered revision {revision} after {}; watching again from {}",
                            s.last,
                            s.last + 1
                        )));
                    }
                    let record = LogRecord {
                        lsn: revision,
                        time_ms,
                        mutations,
                    };
                    s.bytes += size_of_record(&record);
                    s.records.push_back(record);
                    s.last = revision;
                    return Ok(());
                }
            }
            notified.await;
        }
    }
}

#[async_trait]
impl LogSource for WatchSource {
    async fn records_after(
        &self,
        after: u64,
        most: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, BackupError> {
        let s = self.state.lock().expect("source lock");
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for r in s.records.iter().filter(|r| r.lsn > after) {
            if out.len() >= most || (!out.is_empty() && bytes >= max_bytes) {
                break;
            }
            bytes += size_of_record(r);
            out.push(r.clone());
        }
        Ok(out)
    }

    async fn shipped_through(&self, lsn: u64) -> Result<(), BackupError> {
        let mut s = self.state.lock().expect("source lock");
        while s.records.front().is_some_and(|r| r.lsn <= lsn) {
            if let Some(r) = s.records.pop_front() {
                s.bytes -= size_of_record(&r);
            }
        }
        drop(s);
        self.room.notify_waiters();
        Ok(())
    }
}

/// About the bytes a record holds.
fn size_of_record(r: &LogRecord) -> usize {
    16 + r
        .mutations
        .iter()
        .map(|m| match m {
            Mutation::Put { key, value } => key.len() + value.len() + 8,
            Mutation::Delete { key } => key.len() + 4,
            Mutation::DeleteRange { start, end } => {
                start.len() + end.as_ref().map_or(0, Vec::len) + 8
            }
        })
        .sum::<usize>()
}

/// Why [`follow`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop.
    Stopped,
    /// The revision asked for was reached.
    Reached,
    /// The revision to watch from was compacted away: the cluster keeps history only
    /// from `compact_revision` on.
    Compacted {
        /// The cluster's compaction revision.
        compact_revision: u64,
    },
}

/// Watch the whole keyspace from revision `from`, pushing one record per revision into
/// `source` (mutations of keys in the backed-up ranges `prefix` only), until `until` is reached (if given),
/// `stop` turns true, or the watch ends. A broken stream is [`WatchError::WatchLost`]:
/// the caller reconnects (to another endpoint) and resumes after [`WatchSource::last`].
pub async fn follow(
    cluster: &Cluster,
    source: &WatchSource,
    prefix: &[KeyRange],
    from: u64,
    until: Option<u64>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, WatchError> {
    if until.is_some_and(|u| source.last() >= u) {
        return Ok(Ended::Reached);
    }
    // A revision's events come in one response however large (a big txn): lift the 4 MiB
    // default limit on a decoded message.
    let mut client = cluster
        .client()
        .await?
        .watch_client()
        .max_decoding_message_size(crate::engine::MAX_DECODE);
    let opts = WatchOptions::new()
        .with_range(vec![0u8])
        .with_start_revision(from as i64);
    let mut stream = tokio::time::timeout(
        cluster.config().request_timeout,
        client.watch(vec![0u8], Some(opts)),
    )
    .await
    .map_err(|_| WatchError::WatchLost(format!("{} did not open the watch", cluster.endpoint())))?
    .map_err(|e| WatchError::WatchLost(format!("{}: {e}", cluster.endpoint())))?;
    tracing::debug!(endpoint = %cluster.endpoint(), from, "watching");
    loop {
        if *stop.borrow() {
            return Ok(Ended::Stopped);
        }
        let message = tokio::select! {
            m = stream.message() => m,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return Ok(Ended::Stopped);
                }
                continue;
            }
        };
        let resp = match message {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(WatchError::WatchLost(format!(
                    "{} ended the watch stream",
                    cluster.endpoint()
                )));
            }
            Err(e) => {
                return Err(WatchError::WatchLost(format!(
                    "{}: {e}",
                    cluster.endpoint()
                )));
            }
        };
        if resp.compact_revision() > 0 {
            return Ok(Ended::Compacted {
                compact_revision: resp.compact_revision() as u64,
            });
        }
        if resp.canceled() {
            return Err(WatchError::WatchLost(format!(
                "{} canceled the watch: {}",
                cluster.endpoint(),
                resp.cancel_reason()
            )));
        }
        let mut current: Option<(u64, Vec<Mutation>)> = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let revision = kv.mod_revision() as u64;
            if revision <= source.last() {
                continue; // already received before a reconnect
            }
            if current.as_ref().is_some_and(|(r, _)| *r != revision) {
                let (r, m) = current.take().expect("current");
                source.push(r, m).await?;
            }
            let (_, mutations) = current.get_or_insert_with(|| (revision, Vec::new()));
            if !prefix.iter().any(|r| r.contains(kv.key())) {
                continue;
            }
            mutations.push(match ev.event_type() {
                EventType::Put => Mutation::Put {
                    key: kv.key().to_vec(),
                    value: kv.value().to_vec(),
                },
                EventType::Delete => Mutation::Delete {
                    key: kv.key().to_vec(),
                },
            });
        }
        if let Some((r, m)) = current {
            source.push(r, m).await?;
        }
        if until.is_some_and(|u| source.last() >= u) {
            return Ok(Ended::Reached);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> Vec<Mutation> {
        vec![Mutation::Put {
            key: k.as_bytes().to_vec(),
            value: b"v".to_vec(),
        }]
    }

    #[tokio::test]
    async fn the_buffer_keeps_revisions_dense_and_forgets_what_shipped() {
        let source = WatchSource::new(100, 1 << 20);
        source.reset(9);
        source.push(10, put("a")).await.unwrap();
        source.push(11, Vec::new()).await.unwrap();
        // A skipped revision is refused, never filled in.
        assert!(matches!(
            source.push(13, put("b")).await,
            Err(WatchError::WatchLost(_))
        ));
        source.push(12, put("b")).await.unwrap();
        let got = source.records_after(9, 2, usize::MAX).await.unwrap();
        assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), [10, 11]);
        assert!(got[1].mutations.is_empty());
        source.shipped_through(11).await.unwrap();
        assert_eq!(source.pending(), 1);
        // Times never go back.
        let all = source.records_after(0, 10, usize::MAX).await.unwrap();
        assert_eq!(all[0].lsn, 12);
        assert!(all[0].time_ms >= got[1].time_ms);
        // After a snapshot at 20, what it covers is dropped and the next revision is 21.
        source.reset(20);
        assert_eq!((source.pending(), source.last()), (0, 20));
        assert!(source.push(22, put("c")).await.is_err());
        source.push(21, put("c")).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_buffer_makes_the_watch_wait_until_records_ship() {
        let source = std::sync::Arc::new(WatchSource::new(2, 1 << 20));
        source.reset(0);
        source.push(1, put("a")).await.unwrap();
        source.push(2, put("b")).await.unwrap();
        let pushing = tokio::spawn({
            let source = source.clone();
            async move { source.push(3, put("c")).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!pushing.is_finished(), "pushed into a full buffer");
        source.shipped_through(1).await.unwrap();
        pushing.await.unwrap().unwrap();
        assert_eq!(source.last(), 3);
    }
}
