//! A transaction's buffered writes and reads that merge them over a snapshot.

use std::collections::BTreeMap;

use super::conflict::bounds;
use super::{Batch, StoreSnapshot};
use crate::{KeyRange, KeyValue, Result};

/// Largest page read from the snapshot at once while merging a scan.
const MAX_PAGE: usize = 1024;

/// `(prefix, value)` of a stamped put.
pub(crate) type StampedPut = (Vec<u8>, Vec<u8>);

/// Buffered writes, kept in a form that already reflects call order: a range delete
/// drops the buffered entries it covers, so a later entry always overrides it.
///
/// Point writes are first appended to `pending` in call order; they move into the sorted
/// `overlay` only when something needs the buffer ordered (a read, a range delete). A
/// transaction that only writes (replay, bulk work) thus pays one sort at commit instead
/// of an ordered-map insertion per write.
#[derive(Debug, Default)]
pub(crate) struct WriteBuffer {
    /// Key → new value, or `None` for a deletion.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Point writes not yet merged into `overlay`, in call order (later ones win).
    pending: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Ranges deleted, applied before `overlay`.
    deleted: Vec<KeyRange>,
    /// `(prefix, value)` of the stamped put.
    stamped: Option<StampedPut>,
}

impl WriteBuffer {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.push((key, Some(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.push((key, None));
    }

    /// Move the pending writes into the overlay, in call order.
    fn settle(&mut self) {
        for (k, v) in self.pending.drain(..) {
            self.overlay.insert(k, v);
        }
    }

    pub fn delete_range(&mut self, range: &KeyRange) {
        if range.is_empty() {
            return;
        }
        self.settle();
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

    /// True if a stamped put is already buffered.
    pub fn has_stamped(&self) -> bool {
        self.stamped.is_some()
    }

    pub fn put_stamped(&mut self, prefix: Vec<u8>, value: Vec<u8>) {
        self.stamped = Some((prefix, value));
    }

    /// `Some(value)` if the buffer decides the key's value, `None` if the snapshot does.
    fn lookup(&self, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Some(v.as_ref());
        }
        if self.deleted.iter().any(|r| r.contains(key)) {
            return Some(None);
        }
        None
    }

    /// The value of `key` seen by this transaction.
    pub fn get<S: StoreSnapshot>(&mut self, snap: &S, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.settle();
        match self.lookup(key) {
            Some(v) => Ok(v.cloned()),
            None => snap.get(key),
        }
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty()
            && self.pending.is_empty()
            && self.deleted.is_empty()
            && self.stamped.is_none()
    }

    /// The writes as a batch (point writes sorted by key, one per key) and the stamped put
    /// apart.
    pub fn into_batch(mut self) -> (Batch, Option<StampedPut>) {
        let writes = if self.overlay.is_empty() {
            // Only pending writes: one stable sort (cheap on runs that arrive sorted), then
            // the last write of each key wins. `dedup_by` drops the later element of an equal
            // pair, so the later write first moves into the slot that stays.
            let mut w = std::mem::take(&mut self.pending);
            w.sort_by(|a, b| a.0.cmp(&b.0));
            w.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
            w
        } else {
            self.settle();
            self.overlay.into_iter().collect()
        };
        let batch = Batch {
            delete_ranges: self.deleted,
            writes,
            stamped: None,
        };
        (batch, self.stamped)
    }

    /// Up to `limit` pairs of `range`, buffered writes merged over the snapshot, and the
    /// part of the range the result depends on (for the read set).
    pub fn scan<S: StoreSnapshot>(
        &mut self,
        snap: &S,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<KeyValue>, Option<KeyRange>)> {
        if limit == 0 || range.is_empty() {
            return Ok((Vec::new(), None));
        }
        self.settle();
        let page_size = limit.min(MAX_PAGE) + self.overlay.len().min(MAX_PAGE);
        let mut out: Vec<KeyValue> = Vec::new();
        let mut cursor = range.clone();
        loop {
            let page = snap.scan(&cursor, page_size, reverse)?;
            let exhausted = page.len() < page_size;
            // The keys this page settles: from the cursor up to the last key read.
            let span = match page.last() {
                Some((last, _)) if !exhausted => {
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
            let next_cursor = match page.last() {
                Some((last, _)) if !exhausted => Some(if reverse {
                    cursor.before(last)
                } else {
                    cursor.after(last)
                }),
                _ => None,
            };
            self.merge_page(page, &span, limit, reverse, &mut out);
            match next_cursor {
                Some(c) if out.len() < limit => cursor = c,
                _ => break,
            }
        }
        let covered = match out.last() {
            Some((last, _)) if out.len() >= limit => Some(if reverse {
                KeyRange {
                    start: last.clone(),
                    end: range.end.clone(),
                }
            } else {
                KeyRange {
                    start: range.start.clone(),
                    end: Some(range.after(last).start),
                }
            }),
            _ => Some(range.clone()),
        };
        Ok((out, covered))
    }

    /// Merge one snapshot page with the buffered entries of `span` into `out`.
    fn merge_page(
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
}
