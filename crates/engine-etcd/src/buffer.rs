//! A transaction's buffered writes, and their translation into one etcd txn's operations.
//!
//! Kept in a form that already reflects call order: a range delete drops the buffered
//! entries it covers, so a later entry always overrides it. (The embedded engines have a
//! similar buffer in `tito_engine::local`, crate-private and tied to a synchronous
//! snapshot; this one serves async paged reads. Candidates for dedup later.)

use std::collections::BTreeMap;
use std::ops::Bound;

use tito_engine::{KeyRange, KeyValue};

/// Buffered writes of one transaction, in user keys.
#[derive(Debug, Default)]
pub(crate) struct WriteBuffer {
    /// Key → new value, or `None` for a deletion.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Ranges deleted, applied before `overlay`.
    deleted: Vec<KeyRange>,
    /// `(prefix, value)` of the stamped put.
    pub stamped: Option<(Vec<u8>, Vec<u8>)>,
}

/// The final effect of a buffer: keys to put, disjoint ranges to delete (none of
/// which holds a put key), as etcd requires of the operations of one txn.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FinalWrites {
    /// Puts, ascending by key.
    pub puts: Vec<KeyValue>,
    /// Disjoint deleted ranges, ascending, none containing a put key.
    pub deletes: Vec<KeyRange>,
}

impl FinalWrites {
    /// Number of etcd operations these writes take.
    pub fn ops(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// Key and value bytes written (range deletes count their bounds).
    pub fn bytes(&self) -> usize {
        let puts: usize = self.puts.iter().map(|(k, v)| k.len() + v.len()).sum();
        let dels: usize = self
            .deletes
            .iter()
            .map(|r| r.start.len() + r.end.as_ref().map_or(0, Vec::len))
            .sum();
        puts + dels
    }
}

fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (
        Bound::Included(range.start.as_slice()),
        match &range.end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        },
    )
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

impl WriteBuffer {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, None);
    }

    pub fn delete_range(&mut self, range: &KeyRange) {
        if range.is_empty() {
            return;
        }
        let covered: Vec<Vec<u8>> = self
            .overlay
            .range::<[u8], _>(bounds(range))
            .map(|(k, _)| k.clone())
            .collect();
        for k in covered {
            self.overlay.remove(&k);
        }
        self.deleted.push(range.clone());
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty() && self.deleted.is_empty() && self.stamped.is_none()
    }

    /// Number of buffered point entries (bounds how much a scan page may shrink).
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// `Some(value)` if the buffer decides the key's value, `None` if the snapshot does.
    pub fn lookup(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Some(v.clone());
        }
        if self.deleted.iter().any(|r| r.contains(key)) {
            return Some(None);
        }
        None
    }

    /// Merge one page of stored pairs (ascending, or descending if `reverse`) with the
    /// buffered entries of `span` (the part of the range the page settles) into `out`,
    /// stopping at `limit` pairs.
    pub fn merge_page(
        &self,
        page: Vec<KeyValue>,
        span: &KeyRange,
        limit: usize,
        reverse: bool,
        out: &mut Vec<KeyValue>,
    ) {
        let buffered = self.overlay.range::<[u8], _>(bounds(span));
        let mut buffered: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(buffered.rev())
        } else {
            Box::new(buffered)
        };
        let mut stored = page.into_iter().peekable();
        let mut next_buffered = buffered.next();
        while out.len() < limit {
            // Which side holds the next key in scan order (buffered wins a tie).
            let take_buffered = match (&next_buffered, stored.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((bk, _)), Some((sk, _))) => {
                    if reverse {
                        bk.as_slice() >= sk.as_slice()
                    } else {
                        bk.as_slice() <= sk.as_slice()
                    }
                }
            };
            if take_buffered {
                let Some((bk, bv)) = next_buffered.take() else {
                    break;
                };
                if stored.peek().is_some_and(|(sk, _)| sk == bk) {
                    stored.next();
                }
                if let Some(v) = bv {
                    out.push((bk.clone(), v.clone()));
                }
                next_buffered = buffered.next();
            } else if let Some((k, v)) = stored.next() {
                if !self.deleted.iter().any(|r| r.contains(&k)) {
                    out.push((k, v));
                }
            }
        }
    }

    /// The final writes, with `extra` (the stamped record, written last) put on top.
    pub fn final_writes(&self, extra: Option<KeyValue>) -> FinalWrites {
        let mut puts: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut ranges: Vec<KeyRange> = self.deleted.clone();
        for (k, v) in &self.overlay {
            match v {
                Some(v) => {
                    puts.insert(k.clone(), v.clone());
                }
                None => ranges.push(KeyRange {
                    start: k.clone(),
                    end: Some(successor(k)),
                }),
            }
        }
        if let Some((k, v)) = extra {
            puts.insert(k, v);
        }
        let merged = merge_ranges(ranges);
        let mut deletes = Vec::new();
        for range in merged {
            // Split around put keys: etcd rejects a txn whose put lies in its delete range.
            let mut start = range.start.clone();
            for key in puts.range::<[u8], _>(bounds(&range)).map(|(k, _)| k) {
                let piece = KeyRange {
                    start: start.clone(),
                    end: Some(key.clone()),
                };
                if !piece.is_empty() {
                    deletes.push(piece);
                }
                start = successor(key);
            }
            let last = KeyRange {
                start,
                end: range.end.clone(),
            };
            if !last.is_empty() {
                deletes.push(last);
            }
        }
        FinalWrites {
            puts: puts.into_iter().collect(),
            deletes,
        }
    }
}

/// Sorted, disjoint union of `ranges` (touching ranges are joined).
fn merge_ranges(mut ranges: Vec<KeyRange>) -> Vec<KeyRange> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by(|a, b| a.start.cmp(&b.start));
    let mut out: Vec<KeyRange> = Vec::new();
    for r in ranges {
        if let Some(last) = out.last_mut() {
            let touches = last.end.as_ref().is_none_or(|e| r.start <= *e);
            if touches {
                last.end = match (&last.end, &r.end) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b).clone()),
                };
                continue;
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        DeleteRange(u8, Option<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..20, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            (0u8..20).prop_map(Op::Delete),
            (0u8..20, proptest::option::of(0u8..21)).prop_map(|(s, e)| Op::DeleteRange(s, e)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Applying the final writes to any state equals applying the ops in call order,
        /// and the final writes obey etcd's rule (no put inside a delete range).
        #[test]
        fn final_writes_equal_call_order(
            initial in proptest::collection::btree_map(0u8..20, any::<u8>(), 0..20),
            ops in proptest::collection::vec(op(), 0..20),
        ) {
            let mut oracle: BTreeMap<Vec<u8>, Vec<u8>> =
                initial.iter().map(|(k, v)| (vec![*k], vec![*v])).collect();
            let mut buf = WriteBuffer::default();
            for op in &ops {
                match op {
                    Op::Put(k, v) => { oracle.insert(vec![*k], vec![*v]); buf.put(vec![*k], vec![*v]); }
                    Op::Delete(k) => { oracle.remove(&vec![*k]); buf.delete(vec![*k]); }
                    Op::DeleteRange(s, e) => {
                        let r = KeyRange { start: vec![*s], end: e.map(|e| vec![e]) };
                        oracle.retain(|k, _| !r.contains(k));
                        buf.delete_range(&r);
                    }
                }
            }
            let fw = buf.final_writes(None);
            let mut state: BTreeMap<Vec<u8>, Vec<u8>> =
                initial.iter().map(|(k, v)| (vec![*k], vec![*v])).collect();
            for r in &fw.deletes {
                for (k, _) in &fw.puts { prop_assert!(!r.contains(k)); }
                state.retain(|k, _| !r.contains(k));
            }
            for w in fw.deletes.windows(2) { prop_assert!(!w[0].overlaps(&w[1])); }
            for (k, v) in fw.puts { state.insert(k, v); }
            prop_assert_eq!(state, oracle.clone());
            // Lookups agree with the oracle for keys the buffer decides.
            for k in 0u8..21 {
                if let Some(v) = buf.lookup(&[k]) {
                    prop_assert_eq!(v, oracle.get(&vec![k]).cloned());
                }
            }
        }
    }
}
