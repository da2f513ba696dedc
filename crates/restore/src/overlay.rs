//! The net effect of a log on the keyspace, merged into the snapshot as it loads.
//!
//! Replaying a log after its snapshot rewrites, in an embedded B-tree, a page for almost
//! every record (a day of one-put transactions over random keys touches most leaves, each
//! rewritten and checksummed at commit): after log compaction that replay, not the
//! objects, is what a restore spends its time on. When the log's net effect is small
//! enough to hold ([`Overlay::fits`]), restore reads the log first into an [`Overlay`]
//! (the last write of every key it touches, and the ranges it deleted), then loads the
//! snapshot with the overlay merged into each chunk's pairs, so every key of the restored
//! state is written once, in key order, by the engine's bulk load. Larger logs are
//! replayed into the target after the snapshot as before.

use std::collections::BTreeMap;
use std::ops::Bound;

use tito_capture::Mutation;
use tito_engine::{KeyRange, KeyValue};

/// Bytes an overlay entry costs beyond its key and value (map node, lengths).
const ENTRY_OVERHEAD: usize = 64;

/// The last write of every key a log touched, and the ranges it deleted.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Key → its value after the log (`None`: deleted).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Ranges deleted: a snapshot key in one of them is gone unless `writes` has it.
    /// Sorted and disjoint once [`Overlay::seal`] ran.
    cleared: Vec<KeyRange>,
    /// Bytes held (keys, values, overhead).
    bytes: usize,
    /// The most bytes it may hold.
    budget: usize,
    /// Set when an absorbed write did not fit: the overlay is then useless.
    overflowed: bool,
}

impl Overlay {
    /// An empty overlay that holds at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Overlay {
            budget,
            ..Overlay::default()
        }
    }

    /// Whether a log of `log_bytes` compressed bytes may fit in `budget`: its net effect is
    /// never larger than its records, and records are rarely less than their compressed
    /// size, so a larger log is not even tried.
    pub fn fits(log_bytes: u64, budget: usize) -> bool {
        budget > 0 && log_bytes <= budget as u64
    }

    /// True if a write did not fit in the budget.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Apply a put (`Some`) or delete (`None`) of `key`, after every earlier one.
    pub fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let (klen, vlen) = (key.len(), value.as_ref().map_or(0, Vec::len));
        match self.writes.insert(key, value) {
            // A rewrite costs only its value's growth.
            Some(old) => self.bytes = self.bytes + vlen - old.map_or(0, |v| v.len()),
            None => self.bytes += klen + vlen + ENTRY_OVERHEAD,
        }
        self.check_budget();
    }

    /// Apply a range delete, after every earlier write.
    pub fn delete_range(&mut self, range: KeyRange) {
        if range.is_empty() {
            return; // deletes nothing (and a reversed range would not make a map range)
        }
        let upper = match &range.end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        let gone: Vec<Vec<u8>> = self
            .writes
            .range((Bound::Included(range.start.clone()), upper))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(v) = self.writes.remove(&k) {
                self.bytes -= k.len() + v.map_or(0, |v| v.len()) + ENTRY_OVERHEAD;
            }
        }
        self.bytes += range.start.len() + range.end.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        self.cleared.push(range);
        self.check_budget();
    }

    /// Apply one record's mutations, in order.
    pub fn apply(&mut self, mutations: Vec<Mutation>) {
        for m in mutations {
            match m {
                Mutation::Put { key, value } => self.set(key, Some(value)),
                Mutation::Delete { key } => self.set(key, None),
                Mutation::DeleteRange { start, end } => self.delete_range(KeyRange { start, end }),
            }
        }
    }

    fn check_budget(&mut self) {
        if self.bytes > self.budget {
            self.overflowed = true;
        }
    }

    /// Done absorbing: merge the deleted ranges into sorted disjoint ones for lookups.
    pub fn seal(&mut self) {
        let mut ranges = std::mem::take(&mut self.cleared);
        ranges.retain(|r| !r.is_empty());
        ranges.sort_by(|a, b| a.start.cmp(&b.start));
        let mut merged: Vec<KeyRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            if let Some(last) = merged.last_mut() {
                // Overlapping or touching: extend the last one.
                let touches = match &last.end {
                    None => true,
                    Some(e) => r.start <= *e,
                };
                if touches {
                    last.end = match (&last.end, &r.end) {
                        (None, _) | (_, None) => None,
                        (Some(a), Some(b)) => Some(a.max(b).clone()),
                    };
                    continue;
                }
            }
            merged.push(r);
        }
        self.cleared = merged;
    }

    /// Whether `key` lies in a deleted range (after [`Overlay::seal`]).
    fn cleared(&self, key: &[u8]) -> bool {
        let i = self.cleared.partition_point(|r| r.start.as_slice() <= key);
        i > 0 && self.cleared[i - 1].contains(key)
    }

    /// The restored pairs of `[lo, hi)` (`hi` `None`: unbounded): `pairs`, a snapshot's
    /// sorted pairs of that span, with the overlay's writes of the span merged in (after
    /// [`Overlay::seal`]). Handed to `emit` in key order.
    pub fn merge<E>(
        &self,
        pairs: impl Iterator<Item = Result<KeyValue, E>>,
        lo: &[u8],
        hi: Option<&[u8]>,
        mut emit: impl FnMut(KeyValue) -> Result<(), E>,
    ) -> Result<(), E> {
        let upper = match hi {
            Some(h) => Bound::Excluded(h),
            None => Bound::Unbounded,
        };
        let mut writes = self
            .writes
            .range::<[u8], _>((Bound::Included(lo), upper))
            .peekable();
        for pair in pairs {
            let (k, v) = pair?;
            // The overlay's own keys before this one.
            while let Some((wk, wv)) = writes.next_if(|(wk, _)| wk.as_slice() < k.as_slice()) {
                if let Some(wv) = wv {
                    emit((wk.clone(), wv.clone()))?;
                }
            }
            match writes.next_if(|(wk, _)| **wk == k) {
                Some((_, Some(wv))) => emit((k, wv.clone()))?,
                Some((_, None)) => {}
                None if self.cleared(&k) => {}
                None => emit((k, v))?,
            }
        }
        for (wk, wv) in writes {
            if let Some(wv) = wv {
                emit((wk.clone(), wv.clone()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(0u8..4, 0..3)
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            3 => (key(), key()).prop_map(|(key, value)| Mutation::Put { key, value }),
            1 => key().prop_map(|key| Mutation::Delete { key }),
            1 => (key(), prop::option::of(key()))
                .prop_map(|(start, end)| Mutation::DeleteRange { start, end }),
        ]
    }

    /// The oracle: the mutations applied one by one to a map.
    fn apply(state: &mut BTreeMap<Vec<u8>, Vec<u8>>, m: &Mutation) {
        match m {
            Mutation::Put { key, value } => {
                state.insert(key.clone(), value.clone());
            }
            Mutation::Delete { key } => {
                state.remove(key);
            }
            Mutation::DeleteRange { start, end } => {
                let r = KeyRange {
                    start: start.clone(),
                    end: end.clone(),
                };
                state.retain(|k, _| !r.contains(k));
            }
        }
    }

    proptest! {
        /// A snapshot cut into spans at any keys, each merged with the overlay of any log,
        /// gives the state the log applied to the snapshot leaves, in key order.
        #[test]
        fn merged_spans_equal_the_log_applied_to_the_snapshot(
            snapshot in prop::collection::btree_map(key(), key(), 0..12),
            log in prop::collection::vec(mutation(), 0..24),
            cuts in prop::collection::btree_set(prop::collection::vec(0u8..4, 1..3), 0..4),
        ) {
            let mut expected = snapshot.clone();
            let mut overlay = Overlay::new(usize::MAX);
            for m in &log {
                apply(&mut expected, m);
                overlay.apply(vec![m.clone()]);
            }
            overlay.seal();
            // Spans [lo, hi) from the cuts: the first from the empty key, the last unbounded.
            let mut bounds: Vec<Vec<u8>> = vec![Vec::new()];
            bounds.extend(cuts.into_iter());
            let mut got = Vec::new();
            for (i, lo) in bounds.iter().enumerate() {
                let hi = bounds.get(i + 1).map(Vec::as_slice);
                let span = KeyRange { start: lo.clone(), end: hi.map(<[u8]>::to_vec) };
                let pairs = snapshot
                    .iter()
                    .filter(|(k, _)| span.contains(k))
                    .map(|(k, v)| Ok::<_, ()>((k.clone(), v.clone())));
                overlay.merge(pairs, lo, hi, |p| { got.push(p); Ok(()) }).unwrap();
            }
            let expected: Vec<KeyValue> = expected.into_iter().collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn the_budget_is_kept() {
        let mut o = Overlay::new(200);
        o.set(b"a".to_vec(), Some(vec![0; 50]));
        assert!(!o.overflowed());
        o.set(b"a".to_vec(), Some(vec![0; 60]));
        assert!(!o.overflowed(), "a rewrite costs only its growth");
        o.set(b"b".to_vec(), Some(vec![0; 100]));
        assert!(o.overflowed());
        assert!(Overlay::fits(100, 200) && !Overlay::fits(300, 200) && !Overlay::fits(0, 0));
    }
}
