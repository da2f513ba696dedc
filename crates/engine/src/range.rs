/// A half-open range of keys `[start, end)`; `end == None` means "to the end of the keyspace".
///
/// An unbounded end is needed because no finite key bounds keys made of `0xFF` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub start: Vec<u8>,
    /// Exclusive upper bound, or `None` for unbounded.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// `[start, end)`.
    pub fn new(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: start.into(),
            end: Some(end.into()),
        }
    }

    /// `[start, ∞)`.
    pub fn from(start: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: start.into(),
            end: None,
        }
    }

    /// The whole keyspace.
    pub fn all() -> Self {
        KeyRange::default()
    }

    /// All keys that start with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            start: prefix.to_vec(),
            end: prefix_end(prefix),
        }
    }

    /// True if `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// True if the range holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.end
            .as_deref()
            .is_some_and(|e| e <= self.start.as_slice())
    }

    /// True if the two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        let a_before_b = self
            .end
            .as_deref()
            .is_some_and(|e| e <= other.start.as_slice());
        let b_before_a = other
            .end
            .as_deref()
            .is_some_and(|e| e <= self.start.as_slice());
        !(a_before_b || b_before_a)
    }

    /// The range that continues a forward page scan after `last_key`.
    pub fn after(&self, last_key: &[u8]) -> KeyRange {
        let mut start = last_key.to_vec();
        start.push(0);
        KeyRange {
            start,
            end: self.end.clone(),
        }
    }

    /// The range that continues a reverse page scan before `first_key`.
    pub fn before(&self, first_key: &[u8]) -> KeyRange {
        KeyRange {
            start: self.start.clone(),
            end: Some(first_key.to_vec()),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` if there is none
/// (the prefix is empty or all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(KeyRange::prefix(b"ab").end, Some(b"ac".to_vec()));
        assert_eq!(KeyRange::prefix(b"a\xff").end, Some(b"b".to_vec()));
        assert_eq!(KeyRange::prefix(b"\xff\xff").end, None);
        assert!(KeyRange::prefix(b"a").contains(b"a\xff\xff"));
        assert!(!KeyRange::prefix(b"a").contains(b"b"));
    }

    #[test]
    fn overlap() {
        let a = KeyRange::new(b"a".to_vec(), b"c".to_vec());
        assert!(a.overlaps(&KeyRange::new(b"b".to_vec(), b"d".to_vec())));
        assert!(!a.overlaps(&KeyRange::new(b"c".to_vec(), b"d".to_vec())));
        assert!(a.overlaps(&KeyRange::from(b"".to_vec())));
        assert!(!a.overlaps(&KeyRange::new(b"x".to_vec(), b"a".to_vec())));
    }
}
