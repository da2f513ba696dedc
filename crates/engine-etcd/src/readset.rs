//! A transaction's read set and the etcd comparisons that validate it at commit.
//!
//! A commit is valid if nothing it read changed after its pinned revision `R`:
//! - a point read of key `k` that saw modification revision `m` (0: absent) is guarded
//!   by `mod_revision(k) == m`: catches updates, deletions and creations;
//! - a scanned range is guarded by `mod_revision(range) < R + 1`, which etcd evaluates
//!   on every key present in the range at commit: catches inserts and updates. It cannot
//!   see deletions (a deleted key is not there to compare), so each key the scan
//!   returned is also guarded by `mod_revision(k) == m`.
//!
//! etcd bounds the comparisons of one txn (`--max-txn-ops`). When the precise guards do
//! not fit, the read set is coarsened soundly: point reads become one-key ranges,
//! neighbouring ranges are merged into their hull, and the per-key deletion guards are
//! replaced by one comparison on the namespace's delete epoch, a key every deleting
//! commit rewrites. Coarse guards only add false conflicts (retried by the caller),
//! never miss a real one.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp};

/// Keys and ranges read, as etcd keys.
#[derive(Debug, Default)]
pub(crate) struct ReadSet {
    /// Point reads: key → modification revision seen (0 if absent).
    points: BTreeMap<Vec<u8>, i64>,
    /// Keys returned by scans → their modification revision.
    seen: BTreeMap<Vec<u8>, i64>,
    /// Scanned `[start, end)` ranges.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Approximate encoded size of one comparison beyond its keys.
const COMPARE_OVERHEAD: usize = 24;

impl ReadSet {
    pub fn add_point(&mut self, key: Vec<u8>, mod_revision: i64) {
        self.points.insert(key, mod_revision);
    }

    pub fn add_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        if start < end {
            self.ranges.push((start, end));
        }
    }

    pub fn add_seen(&mut self, key: Vec<u8>, mod_revision: i64) {
        self.seen.insert(key, mod_revision);
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.ranges.is_empty()
    }

    /// The guards for a snapshot at `revision`, at most `max_compares` of them and at
    /// most about `max_bytes` encoded, preferring precise ones.
    pub fn compares(
        &self,
        revision: i64,
        delete_epoch: &[u8],
        max_compares: usize,
        max_bytes: usize,
    ) -> Vec<Compare> {
        let precise = self.precise(revision);
        let bytes: usize = precise
            .iter()
            .map(|(k, e, _)| k.len() + e.len() + COMPARE_OVERHEAD)
            .sum();
        if precise.len() <= max_compares && bytes <= max_bytes {
            return precise.into_iter().map(|(_, _, c)| c).collect();
        }
        self.coarse(revision, delete_epoch, max_compares.max(2))
    }

    fn precise(&self, revision: i64) -> Vec<(Vec<u8>, Vec<u8>, Compare)> {
        let mut out = Vec::new();
        for (k, m) in &self.points {
            out.push((
                k.clone(),
                Vec::new(),
                Compare::mod_revision(k.clone(), CompareOp::Equal, *m),
            ));
        }
        for (k, m) in &self.seen {
            if !self.points.contains_key(k) {
                out.push((
                    k.clone(),
                    Vec::new(),
                    Compare::mod_revision(k.clone(), CompareOp::Equal, *m),
                ));
            }
        }
        for (s, e) in merge(self.ranges.clone()) {
            let c = Compare::mod_revision(s.clone(), CompareOp::Less, revision + 1)
                .with_range(e.clone());
            out.push((s, e, c));
        }
        out
    }

    fn coarse(&self, revision: i64, delete_epoch: &[u8], max_compares: usize) -> Vec<Compare> {
        let mut ranges = self.ranges.clone();
        let mut saw_any = !self.seen.is_empty();
        for (k, m) in &self.points {
            let mut end = k.clone();
            end.push(0);
            ranges.push((k.clone(), end));
            saw_any |= *m != 0;
        }
        let mut ranges = merge(ranges);
        let budget = max_compares - 1;
        if ranges.len() > budget {
            // Hull of consecutive groups: fewer, larger ranges.
            let per = ranges.len().div_ceil(budget);
            ranges = ranges
                .chunks(per)
                .map(|g| (g[0].0.clone(), g[g.len() - 1].1.clone()))
                .collect();
        }
        let mut out: Vec<Compare> = ranges
            .into_iter()
            .map(|(s, e)| Compare::mod_revision(s, CompareOp::Less, revision + 1).with_range(e))
            .collect();
        if saw_any {
            out.push(Compare::mod_revision(
                delete_epoch.to_vec(),
                CompareOp::Less,
                revision + 1,
            ));
        }
        out
    }
}

/// Sorted union of `[start, end)` ranges.
fn merge(mut ranges: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    ranges.sort();
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (s, e) in ranges {
        if let Some(last) = out.last_mut() {
            if s <= last.1 {
                if e > last.1 {
                    last.1 = e;
                }
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarsens_to_fit() {
        let mut rs = ReadSet::default();
        for i in 0..50u8 {
            rs.add_point(vec![i * 2], i as i64);
        }
        rs.add_range(vec![200], vec![210]);
        rs.add_seen(vec![201], 3);
        assert_eq!(rs.compares(10, b"epoch", 1000, usize::MAX).len(), 52);
        let coarse = rs.compares(10, b"epoch", 8, usize::MAX);
        assert!(coarse.len() <= 8, "{}", coarse.len());
    }

    #[test]
    fn merges_overlapping_ranges() {
        let m = merge(vec![
            (vec![3], vec![5]),
            (vec![1], vec![4]),
            (vec![7], vec![8]),
        ]);
        assert_eq!(m, vec![(vec![1], vec![5]), (vec![7], vec![8])]);
    }
}
