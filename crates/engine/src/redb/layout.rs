//! Where keys live in the redb file: the split between the two data tables, the head
//! table's keys, and the budget of staged entries.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::ReadableTable;

use crate::KeyRange;
use crate::local::StoreMeta;

/// The smallest key of the high table: every key at or above it starts with `0xFF`.
pub(super) const SPLIT: &[u8] = &[0xFF];

/// Head-table key of the counters.
pub(super) const COUNTERS: &[u8] = &[0x00];

/// Tag of staged entries in the head table: `0x01 ++ key`.
const STAGED_TAG: u8 = 0x01;

/// Bytes of stamped entries (keys, values and [`ENTRY_OVERHEAD`] each) staged in the head
/// table before they move to their data tables: with the counters, they stay within one
/// 4 KiB redb page, so a commit that stages rewrites a single page.
pub const STAGE_BUDGET: usize = 3 * 1024;

/// Per-entry cost beyond key and value: the tag byte and redb's leaf offsets, rounded up.
const ENTRY_OVERHEAD: usize = 16;

/// Borrowed bounds of a redb range.
pub(super) type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// True if `key` lives in the high table.
pub(super) fn is_high(key: &[u8]) -> bool {
    key.first() == Some(&0xFF)
}

/// The parts of `range` in the low table and in the high table (`None`: empty part).
pub(super) fn parts(range: &KeyRange) -> [Option<Bounds<'_>>; 2] {
    let start = range.start.as_slice();
    let end = range.end.as_deref();
    let low = (start < SPLIT).then(|| {
        let low_end = match end {
            Some(e) if e < SPLIT => e,
            _ => SPLIT,
        };
        (start < low_end).then_some((Bound::Included(start), Bound::Excluded(low_end)))
    });
    let high_start = start.max(SPLIT);
    let high = match end {
        Some(e) if e <= high_start => None,
        Some(e) => Some((Bound::Included(high_start), Bound::Excluded(e))),
        None => Some((Bound::Included(high_start), Bound::Unbounded)),
    };
    [low.flatten(), high]
}

/// Head-table key of the staged entry of `key`.
pub(super) fn staged_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(STAGED_TAG);
    k.extend_from_slice(key);
    k
}

/// Head-table bounds `[start, end)` of the staged entries of `range`.
pub(super) fn staged_bounds(range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
    let end = match &range.end {
        Some(e) => staged_key(e),
        None => vec![STAGED_TAG + 1],
    };
    (staged_key(&range.start), end)
}

/// The smallest key after `key`.
pub(super) fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

/// First and last key of a non-empty run of keys.
pub(super) type Span = (Vec<u8>, Vec<u8>);

/// The first and the last staged key of a head table, if any.
pub(super) fn staged_span<T>(head: &T) -> Result<Option<Span>, redb::Error>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let (start, end) = staged_bounds(&KeyRange::all());
    let mut iter = head.range::<&[u8]>(start.as_slice()..end.as_slice())?;
    let Some(first) = iter.next() else {
        return Ok(None);
    };
    let first = first?.0.value()[1..].to_vec();
    let last = match iter.next_back() {
        Some(last) => last?.0.value()[1..].to_vec(),
        None => first.clone(),
    };
    Ok(Some((first, last)))
}

/// Budget cost of staging `key = value`.
pub(super) fn cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

/// `be_u64(commit_seq) ++ be_u64(stamp_version) ++ be_u64(stamp_time_ms)`.
pub(super) fn encode_counters(meta: StoreMeta) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&meta.commit_seq.to_be_bytes());
    out[8..16].copy_from_slice(&meta.stamp_version.to_be_bytes());
    out[16..].copy_from_slice(&meta.stamp_time_ms.to_be_bytes());
    out
}

/// The inverse of [`encode_counters`]; `None` if `bytes` is not 24 bytes long.
pub(super) fn decode_counters(bytes: &[u8]) -> Option<StoreMeta> {
    let b: &[u8; 24] = bytes.try_into().ok()?;
    let word = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Some(StoreMeta {
        commit_seq: word(0),
        stamp_version: word(1),
        stamp_time_ms: word(2),
    })
}

/// The staged keys and the budget they use (mirrors the head table).
#[derive(Debug, Default)]
pub(super) struct Staged {
    keys: BTreeMap<Vec<u8>, usize>,
    bytes: usize,
}

impl Staged {
    /// Read the staged keys of a head table.
    pub fn load<T>(head: &T) -> Result<Staged, redb::Error>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let mut staged = Staged::default();
        let (start, end) = staged_bounds(&KeyRange::all());
        for item in head.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            let (k, v) = item?;
            let key = k.value()[1..].to_vec();
            let c = cost(&key, v.value());
            staged.insert(key, c);
        }
        Ok(staged)
    }

    /// True if an entry of `cost` fits next to the staged ones.
    pub fn fits(&self, cost: usize) -> bool {
        self.bytes + cost <= STAGE_BUDGET
    }

    pub fn insert(&mut self, key: Vec<u8>, cost: usize) {
        if let Some(old) = self.keys.insert(key, cost) {
            self.bytes -= old;
        }
        self.bytes += cost;
    }

    /// Forget `key`; true if it was staged.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        match self.keys.remove(key) {
            Some(c) => {
                self.bytes -= c;
                true
            }
            None => false,
        }
    }

    /// Forget and return the staged keys inside `range`.
    pub fn take_range(&mut self, range: &KeyRange) -> Vec<Vec<u8>> {
        if self.keys.is_empty() {
            return Vec::new();
        }
        let end = match &range.end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        let doomed: Vec<Vec<u8>> = self
            .keys
            .range::<[u8], _>((Bound::Included(range.start.as_slice()), end))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            self.remove(k);
        }
        doomed
    }

    /// Forget and return every staged key.
    pub fn take_all(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        std::mem::take(&mut self.keys).into_keys().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = (Bound<Vec<u8>>, Bound<Vec<u8>>);

    fn sides(r: &KeyRange) -> [Option<Owned>; 2] {
        parts(r).map(|p| p.map(|(a, b)| (a.map(<[u8]>::to_vec), b.map(<[u8]>::to_vec))))
    }

    #[test]
    fn parts_split_at_the_first_ff_key() {
        use Bound::*;
        let v = |s: &[u8]| s.to_vec();
        assert_eq!(
            sides(&KeyRange::all()),
            [
                Some((Included(v(b"")), Excluded(v(b"\xff")))),
                Some((Included(v(b"\xff")), Unbounded))
            ]
        );
        assert_eq!(
            sides(&KeyRange::new(b"a".to_vec(), b"b".to_vec())),
            [Some((Included(v(b"a")), Excluded(v(b"b")))), None]
        );
        assert_eq!(
            sides(&KeyRange::new(b"\xfe\xff".to_vec(), b"\xff".to_vec())),
            [Some((Included(v(b"\xfe\xff")), Excluded(v(b"\xff")))), None]
        );
        assert_eq!(
            sides(&KeyRange::new(b"\xff".to_vec(), b"\xff\x01".to_vec())),
            [None, Some((Included(v(b"\xff")), Excluded(v(b"\xff\x01"))))]
        );
        assert_eq!(
            sides(&KeyRange::new(b"a".to_vec(), b"\xff\x01".to_vec())),
            [
                Some((Included(v(b"a")), Excluded(v(b"\xff")))),
                Some((Included(v(b"\xff")), Excluded(v(b"\xff\x01"))))
            ]
        );
        assert_eq!(
            sides(&KeyRange::new(b"b".to_vec(), b"a".to_vec())),
            [None, None]
        );
    }

    #[test]
    fn counters_round_trip() {
        let m = StoreMeta {
            commit_seq: 1,
            stamp_version: u64::MAX,
            stamp_time_ms: 1 << 40,
        };
        assert_eq!(decode_counters(&encode_counters(m)), Some(m));
        assert_eq!(decode_counters(&[0; 23]), None);
    }
}
