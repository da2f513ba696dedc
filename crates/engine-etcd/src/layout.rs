//! Where the engine's keys live in etcd: user data and the engine's own metadata under
//! one namespace prefix, in disjoint sub-prefixes.
//!
//! - data: `ns ++ 0x00 ++ 'd' ++ user_key`
//! - meta: `ns ++ 0x00 ++ 'm' ++ name` (stamp counter, delete epoch, view pins)

use tito_engine::KeyRange;

/// Key names of one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    data: Vec<u8>,
    data_end: Vec<u8>,
    /// The stamp counter: `be_u64(version) ++ be_u64(time_ms)`.
    pub counter: Vec<u8>,
    /// Written by every commit that deletes: guards scans against deletions when a
    /// transaction's reads are too many to guard key by key (see `readset`).
    pub delete_epoch: Vec<u8>,
    /// Prefix of the read-view pins (revision ++ random id, held by a lease).
    pub pins: Vec<u8>,
}

impl Layout {
    pub fn new(namespace: &[u8]) -> Self {
        let mut data = namespace.to_vec();
        data.extend_from_slice(b"\0d");
        let mut data_end = data.clone();
        // 'd' < 0xFF, so bumping the last byte ends the data prefix.
        if let Some(last) = data_end.last_mut() {
            *last += 1;
        }
        let meta = |name: &[u8]| {
            let mut k = namespace.to_vec();
            k.extend_from_slice(b"\0m");
            k.extend_from_slice(name);
            k
        };
        Layout {
            data,
            data_end,
            counter: meta(b"counter"),
            delete_epoch: meta(b"delete-epoch"),
            pins: meta(b"pins/"),
        }
    }

    /// The etcd key of a user key.
    pub fn key(&self, user_key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.data.len() + user_key.len());
        k.extend_from_slice(&self.data);
        k.extend_from_slice(user_key);
        k
    }

    /// The user key of an etcd key of this namespace's data.
    pub fn user_key<'a>(&self, etcd_key: &'a [u8]) -> &'a [u8] {
        etcd_key
            .strip_prefix(self.data.as_slice())
            .unwrap_or(etcd_key)
    }

    /// The etcd `[start, end)` of a user key range (never unbounded: it stops at the
    /// end of the data prefix).
    pub fn range(&self, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        let end = match &range.end {
            Some(e) => self.key(e),
            None => self.data_end.clone(),
        };
        (self.key(&range.start), end)
    }

    /// Bytes the namespace adds to each key.
    pub fn overhead(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_meta_are_disjoint() {
        let l = Layout::new(b"ns");
        let (s, e) = l.range(&KeyRange::all());
        for meta in [&l.counter, &l.delete_epoch, &l.pins] {
            assert!(!(meta.as_slice() >= s.as_slice() && meta.as_slice() < e.as_slice()));
        }
        let k = l.key(b"\xff\xff");
        assert!(k.as_slice() >= s.as_slice() && k.as_slice() < e.as_slice());
        assert_eq!(l.user_key(&k), b"\xff\xff");
    }
}
