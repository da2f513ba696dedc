//! Read sets, write sets and the registry of recent commits used for optimistic
//! serializable validation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use crate::{EngineError, KeyRange, Result};

/// Keys and ranges a transaction read or wrote.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeySet {
    /// Single keys.
    pub points: BTreeSet<Vec<u8>>,
    /// Ranges (only non-empty ones are kept).
    pub ranges: Vec<KeyRange>,
}

/// `(start, end)` bounds of a range, for `BTreeMap::range`.
pub(crate) fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    let end = match &range.end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    };
    (Bound::Included(range.start.as_slice()), end)
}

/// Printable form of a key for error messages.
pub(crate) fn show_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

fn show_range(range: &KeyRange) -> String {
    match &range.end {
        Some(e) => format!("[\"{}\", \"{}\")", show_key(&range.start), show_key(e)),
        None => format!("[\"{}\", end)", show_key(&range.start)),
    }
}

impl KeySet {
    /// Record a key.
    pub fn add_point(&mut self, key: &[u8]) {
        if !self.points.contains(key) {
            self.points.insert(key.to_vec());
        }
    }

    /// Record a range (empty ranges are ignored).
    pub fn add_range(&mut self, range: KeyRange) {
        if !range.is_empty() {
            self.ranges.push(range);
        }
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.ranges.is_empty()
    }

    /// A description of one key or range both sets share, if any.
    pub fn intersection(&self, other: &KeySet) -> Option<String> {
        for p in &self.points {
            if other.points.contains(p) || other.ranges.iter().any(|r| r.contains(p)) {
                return Some(format!("key \"{}\"", show_key(p)));
            }
        }
        for r in &self.ranges {
            if let Some(p) = other.points.range::<[u8], _>(bounds(r)).next() {
                return Some(format!("key \"{}\"", show_key(p)));
            }
            if other.ranges.iter().any(|o| o.overlaps(r)) {
                return Some(format!("range {}", show_range(r)));
            }
        }
        None
    }
}

/// Which snapshots are in use and what recent commits wrote.
///
/// A write set is kept only while some active transaction began before its commit:
/// only such a transaction can be invalidated by it.
#[derive(Default)]
pub(crate) struct Tracker {
    /// Snapshot sequence of each active transaction → count.
    active: BTreeMap<u64, usize>,
    /// `(commit sequence, write set)` in commit order.
    recent: VecDeque<(u64, Arc<KeySet>)>,
}

impl Tracker {
    /// A transaction began at snapshot `seq`.
    pub fn register(&mut self, seq: u64) {
        *self.active.entry(seq).or_default() += 1;
    }

    /// A transaction that began at `seq` finished.
    pub fn deregister(&mut self, seq: u64) {
        if let Some(n) = self.active.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.active.remove(&seq);
            }
        }
        self.gc();
    }

    /// Fail with a conflict if a commit after `snapshot_seq` wrote something in `reads`.
    pub fn validate(&self, snapshot_seq: u64, reads: &KeySet) -> Result<()> {
        for (seq, writes) in self.recent.iter().rev() {
            if *seq <= snapshot_seq {
                break;
            }
            if let Some(what) = writes.intersection(reads) {
                return Err(EngineError::Conflict(format!(
                    "{what} was read by this transaction and written by commit #{seq}, \
                     which committed after its snapshot (#{snapshot_seq})"
                )));
            }
        }
        Ok(())
    }

    /// True if a transaction other than the committing one (registered at `own_snapshot`)
    /// began before commit `seq`, so that it must validate against that commit's writes.
    /// Lets a commit skip building its write set when no one can need it.
    pub fn needs_write_set(&self, seq: u64, own_snapshot: u64) -> bool {
        self.active
            .range(..seq)
            .any(|(s, n)| *s != own_snapshot || *n > 1)
    }

    /// Remember the write set of commit `seq`.
    pub fn record(&mut self, seq: u64, writes: KeySet) {
        if !self.active.is_empty() && !writes.is_empty() {
            self.recent.push_back((seq, Arc::new(writes)));
        }
        self.gc();
    }

    /// Number of write sets kept (for tests).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.recent.len()
    }

    fn gc(&mut self) {
        match self.active.keys().next() {
            None => self.recent.clear(),
            Some(&oldest) => {
                while self.recent.front().is_some_and(|(seq, _)| *seq <= oldest) {
                    self.recent.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_sets_are_dropped_when_no_one_needs_them() {
        let mut t = Tracker::default();
        t.register(0);
        let mut w = KeySet::default();
        w.add_point(b"a");
        t.record(1, w.clone());
        t.register(1);
        t.record(2, w.clone());
        assert_eq!(t.kept(), 2);
        t.deregister(0);
        assert_eq!(t.kept(), 1);
        t.deregister(1);
        assert_eq!(t.kept(), 0);
    }

    #[test]
    fn write_set_needed_only_by_older_other_transactions() {
        let mut t = Tracker::default();
        t.register(3);
        assert!(
            !t.needs_write_set(4, 3),
            "only the committer itself is active"
        );
        t.register(3);
        assert!(
            t.needs_write_set(4, 3),
            "another transaction shares its snapshot"
        );
        t.deregister(3);
        t.register(4);
        assert!(
            !t.needs_write_set(4, 3),
            "a snapshot at the commit already sees it"
        );
        t.register(1);
        assert!(t.needs_write_set(4, 3));
    }

    #[test]
    fn validation_sees_only_later_commits() {
        let mut t = Tracker::default();
        t.register(0);
        let mut w = KeySet::default();
        w.add_range(KeyRange::new(b"b".to_vec(), b"d".to_vec()));
        t.record(1, w);
        let mut r = KeySet::default();
        r.add_point(b"c");
        assert!(t.validate(0, &r).unwrap_err().is_conflict());
        assert!(t.validate(1, &r).is_ok());
        let mut r2 = KeySet::default();
        r2.add_range(KeyRange::new(b"d".to_vec(), b"e".to_vec()));
        assert!(t.validate(0, &r2).is_ok());
    }
}
