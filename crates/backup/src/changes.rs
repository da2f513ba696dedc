//! What changed since the service's last snapshot, so that the next one reads only the
//! chunks whose key ranges changed and takes every other chunk over from that snapshot's
//! manifest as it is (FORMAT.md §7.3, "reading only what changed").
//!
//! The log says what changed: every committed transaction is a record, and every record
//! with an LSN after a snapshot's view is either shipped by this service (which notes its
//! keys here before it trims the record from the engine) or still in the engine's log,
//! where the next snapshot's view reads it. A snapshot uses what is noted only when that
//! covers every LSN between the two views without a hole; anything else (another process
//! shipped meanwhile, the timeline changed, too many distinct keys to keep, the service
//! restarted, or a restore replaced the database beside this service: its pending branch
//! is in the view) makes it read the whole keyspace, as a snapshot always did.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tito_capture::keys;
use tito_engine::{KeyRange, ReadView};
use tito_format::ChunkEntry;
use tito_format::record::{LogRecord, Mutation};

use crate::error::BackupError;

/// Most bytes of distinct changed keys kept for one snapshot; past it the next snapshot
/// reads everything (that much churn touches most chunks anyway).
const MAX_TOUCHED_BYTES: usize = 32 << 20;

/// Log records read from a view per request while looking for unshipped changes.
const LOG_PAGE: usize = 1024;

/// The keys of the records one collector saw, in LSN order without a hole.
#[derive(Clone, Debug)]
struct Touched {
    timeline: u64,
    /// Records up to this LSN are in the snapshot this collector began with: skipped.
    floor: u64,
    /// First and last LSN seen (every LSN between them was seen).
    seen: Option<(u64, u64)>,
    keys: BTreeSet<Vec<u8>>,
    ranges: Vec<KeyRange>,
    bytes: usize,
    /// A hole, another timeline, or too many keys: useless.
    broken: bool,
}

impl Touched {
    fn new(timeline: u64) -> Self {
        Touched {
            timeline,
            floor: 0,
            seen: None,
            keys: BTreeSet::new(),
            ranges: Vec::new(),
            bytes: 0,
            broken: false,
        }
    }

    fn observe(&mut self, timeline: u64, records: &[LogRecord]) {
        if self.broken {
            return;
        }
        if timeline != self.timeline {
            return self.break_off();
        }
        for rec in records.iter().filter(|r| r.lsn > self.floor) {
            match self.seen {
                Some((_, last)) if rec.lsn <= last => continue,
                Some((_, last)) if rec.lsn != last + 1 => return self.break_off(),
                Some((first, _)) => self.seen = Some((first, rec.lsn)),
                None => self.seen = Some((rec.lsn, rec.lsn)),
            }
            for m in &rec.mutations {
                match m {
                    Mutation::Put { key, .. } | Mutation::Delete { key } => {
                        if !self.keys.contains(key) {
                            self.bytes += key.len() + 32;
                            self.keys.insert(key.clone());
                        }
                    }
                    Mutation::DeleteRange { start, end } => {
                        self.bytes += start.len() + end.as_ref().map_or(0, Vec::len) + 48;
                        self.ranges.push(KeyRange {
                            start: start.clone(),
                            end: end.clone(),
                        });
                    }
                }
            }
            if self.bytes > MAX_TOUCHED_BYTES {
                return self.break_off();
            }
        }
    }

    fn break_off(&mut self) {
        self.broken = true;
        self.keys.clear();
        self.ranges.clear();
    }
}

/// The last snapshot this service wrote, as the next one may reuse it.
#[derive(Clone, Debug)]
struct Base {
    timeline: u64,
    lsn: u64,
    chunks: Arc<Vec<ChunkEntry>>,
}

/// The chunks of an earlier snapshot and which of them hold keys that changed since: what
/// `write_snapshot` reads again (the changed ones) and takes over as they are (the rest).
#[derive(Clone, Debug)]
pub struct Reuse {
    /// The earlier snapshot's chunks, in key order.
    pub chunks: Arc<Vec<ChunkEntry>>,
    /// `dirty[i]`: chunk `i`'s key range (from its first key to the next chunk's) holds a
    /// key written or deleted since.
    pub dirty: Vec<bool>,
}

impl Reuse {
    /// The chunk whose key range holds `key`: the last one starting at or before it (the
    /// first chunk's range reaches back to the start of the keyspace).
    fn chunk_of(&self, key: &[u8]) -> usize {
        self.chunks
            .partition_point(|c| c.first_key.as_slice() <= key)
            .saturating_sub(1)
    }

    fn mark_key(&mut self, key: &[u8]) {
        if !self.dirty.is_empty() {
            let i = self.chunk_of(key);
            self.dirty[i] = true;
        }
    }

    fn mark_range(&mut self, start: &[u8], end: Option<&[u8]>) {
        if self.dirty.is_empty() || end.is_some_and(|e| e <= start) {
            return;
        }
        let from = self.chunk_of(start);
        // The last chunk starting before `end` (its range reaches into `[start, end)`).
        let to = match end {
            Some(e) => self
                .chunks
                .partition_point(|c| c.first_key.as_slice() < e)
                .saturating_sub(1)
                .max(from),
            None => self.chunks.len() - 1,
        };
        self.dirty[from..=to].iter_mut().for_each(|d| *d = true);
    }

    fn mark_record(&mut self, rec: &LogRecord) {
        for m in &rec.mutations {
            match m {
                Mutation::Put { key, .. } | Mutation::Delete { key } => self.mark_key(key),
                Mutation::DeleteRange { start, end } => self.mark_range(start, end.as_deref()),
            }
        }
    }

    /// Chunks to read again, of all.
    pub fn dirty_count(&self) -> usize {
        self.dirty.iter().filter(|d| **d).count()
    }
}

#[derive(Default)]
struct State {
    base: Option<Base>,
    /// Seen since the base's view was read.
    since_base: Option<Touched>,
    /// Seen since the view of the snapshot in progress was read (its base once it is done).
    pending: Option<Touched>,
}

/// The changes a service noted since its last snapshot (one per service; snapshots take
/// turns, see `BackupService::snapshot_with_options`).
#[derive(Default)]
pub(crate) struct Changes {
    state: Mutex<State>,
}

impl Changes {
    /// Note the records just shipped on `timeline` (before they are trimmed).
    pub(crate) fn observe(&self, timeline: u64, records: &[LogRecord]) {
        let mut guard = self.state.lock().expect("changes lock");
        let s = &mut *guard;
        for t in [s.since_base.as_mut(), s.pending.as_mut()]
            .into_iter()
            .flatten()
        {
            t.observe(timeline, records);
        }
    }

    /// A snapshot on `timeline` is about to read its view: start noting what ships from
    /// now on, for the snapshot after it.
    pub(crate) fn begin(&self, timeline: u64) {
        self.state.lock().expect("changes lock").pending = Some(Touched::new(timeline));
    }

    /// The snapshot begun last read its view at `lsn`: records up to it are in that
    /// snapshot, so the pending collector skips them from now on.
    pub(crate) fn viewed(&self, lsn: u64) {
        if let Some(t) = self.state.lock().expect("changes lock").pending.as_mut() {
            t.floor = lsn;
        }
    }

    /// The snapshot begun last failed: forget what was noted for it.
    pub(crate) fn abandon(&self) {
        self.state.lock().expect("changes lock").pending = None;
    }

    /// The snapshot begun last is written: it is the base of the next one.
    pub(crate) fn finished(&self, timeline: u64, lsn: u64, chunks: Vec<ChunkEntry>) {
        let mut s = self.state.lock().expect("changes lock");
        s.base = Some(Base {
            timeline,
            lsn,
            chunks: Arc::new(chunks),
        });
        s.since_base = s.pending.take();
    }

    /// What the snapshot of `view` (on `timeline`) may take over from the last one, or
    /// `None` when it must read everything: no base on this timeline, or the noted changes
    /// and the view's own log do not cover every LSN since the base without a hole.
    /// Call after [`Changes::begin`] and after reading the view, so every record after the
    /// view is seen by the pending collector.
    pub(crate) async fn reuse_for(
        &self,
        timeline: u64,
        view: &dyn ReadView,
    ) -> Result<Option<Reuse>, BackupError> {
        let lsn = view.version();
        // A restore replaced the database since this service opened it (it leaves a
        // pending branch that only a new service opens): its keys never went through
        // the log this service saw.
        if view
            .get(&crate::branch::pending_branch_key())
            .await?
            .is_some()
        {
            tracing::warn!("the database was restored beside this backup; reading everything");
            return Ok(None);
        }
        let (mut reuse, covered, base_lsn) = {
            let s = self.state.lock().expect("changes lock");
            let Some(base) = s.base.as_ref().filter(|b| b.timeline == timeline) else {
                return Ok(None);
            };
            if base.lsn > lsn || base.chunks.is_empty() {
                return Ok(None);
            }
            let mut reuse = Reuse {
                chunks: base.chunks.clone(),
                dirty: vec![false; base.chunks.len()],
            };
            // The records the shipper saw, if they start right after the base.
            let mut covered = base.lsn;
            if let Some(t) = s.since_base.as_ref().filter(|t| !t.broken)
                && let Some((first, last)) = t.seen
                && first <= base.lsn + 1
            {
                for k in &t.keys {
                    reuse.mark_key(k);
                }
                for r in &t.ranges {
                    reuse.mark_range(&r.start, r.end.as_deref());
                }
                covered = covered.max(last);
            }
            (reuse, covered, base.lsn)
        };
        // The rest, up to the view, must still be in the view's log, every one of them.
        let mut next = covered + 1;
        let mut range = keys::log_range_after(covered);
        while next <= lsn {
            let page = view.scan(&range, LOG_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            let last = last.clone();
            for (k, v) in &page {
                let rec = tito_capture::log::decode_log_entry(k, v)?;
                if rec.lsn > lsn {
                    break;
                }
                if rec.lsn != next {
                    return Ok(None);
                }
                reuse.mark_record(&rec);
                next += 1;
            }
            if page.len() < LOG_PAGE {
                break;
            }
            range = range.after(&last);
        }
        if next <= lsn {
            tracing::debug!(
                base_lsn,
                covered = next - 1,
                lsn,
                "changes since the last snapshot are not all known; reading everything"
            );
            return Ok(None);
        }
        Ok(Some(reuse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(first: &str) -> ChunkEntry {
        ChunkEntry {
            n: 0,
            size: 1,
            first_key: first.as_bytes().to_vec(),
            last_key: first.as_bytes().to_vec(),
            count: 1,
            checksum: "0".repeat(64),
            hash: Some("1".repeat(64)),
            raw_bytes: Some(1),
            content: None,
        }
    }

    fn reuse() -> Reuse {
        let chunks = ["c", "f", "m"].map(entry).to_vec();
        Reuse {
            dirty: vec![false; chunks.len()],
            chunks: Arc::new(chunks),
        }
    }

    #[test]
    fn keys_fall_in_the_chunk_whose_range_holds_them() {
        for (key, want) in [
            ("a", 0),
            ("c", 0),
            ("e", 0),
            ("f", 1),
            ("l", 1),
            ("m", 2),
            ("z", 2),
        ] {
            let mut r = reuse();
            r.mark_key(key.as_bytes());
            let marked: Vec<usize> = (0..3).filter(|i| r.dirty[*i]).collect();
            assert_eq!(marked, vec![want], "{key}");
        }
    }

    #[test]
    fn ranges_mark_every_chunk_they_reach() {
        let cases: [(&str, Option<&str>, &[usize]); 6] = [
            ("a", Some("b"), &[0]),
            ("d", Some("f"), &[0]),
            ("d", Some("f\0"), &[0, 1]),
            ("g", None, &[1, 2]),
            ("a", None, &[0, 1, 2]),
            ("x", Some("a"), &[]),
        ];
        for (start, end, want) in cases {
            let mut r = reuse();
            r.mark_range(start.as_bytes(), end.map(str::as_bytes));
            let marked: Vec<usize> = (0..3).filter(|i| r.dirty[*i]).collect();
            assert_eq!(marked, want.to_vec(), "{start}..{end:?}");
        }
    }

    fn rec(lsn: u64, key: &str) -> LogRecord {
        LogRecord {
            lsn,
            time_ms: 0,
            mutations: vec![Mutation::Delete {
                key: key.as_bytes().to_vec(),
            }],
        }
    }

    #[test]
    fn a_hole_or_another_timeline_makes_what_was_seen_useless() {
        let mut t = Touched::new(1);
        t.observe(1, &[rec(5, "a"), rec(6, "b")]);
        t.observe(1, &[rec(6, "b"), rec(7, "c")]);
        assert_eq!(t.seen, Some((5, 7)));
        assert!(!t.broken);
        t.observe(1, &[rec(9, "d")]);
        assert!(t.broken, "a hole");
        let mut t = Touched::new(1);
        t.observe(2, &[rec(1, "a")]);
        assert!(t.broken, "another timeline");
    }
}
