//! Where the engine's keys live in etcd: user data and the engine's own metadata under
//! one namespace prefix, in disjoint sub-prefixes.
//!
//! - data: `ns ++ 0x00 ++ 'd' ++ user_key`
//! - meta: `ns ++ 0x00 ++ 'm' ++ name` (stamp counter, delete epoch, view pins)
//!
//! Or raw ([`Layout::raw`]): user keys are the etcd keys themselves, as the cluster's own
//! applications see them (a restore of a watched cluster's backup gives them their keys
//! back), and the metadata lives under [`RAW_META_PREFIX`], above every key stored.

use tito_engine::{EngineError, KeyRange, Result};

/// Where a raw layout keeps the engine's metadata: `ff ff ff "tito-etcd" 00`. User keys
/// that sort at or above it cannot be stored raw (refused, never hidden).
pub const RAW_META_PREFIX: &[u8] = b"\xff\xff\xfftito-etcd\x00";

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

/// etcd refuses an empty key; the smallest key there is starts a range from the beginning.
const FIRST_KEY: &[u8] = b"\0";

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

    /// The raw layout: user keys are etcd keys, metadata under [`RAW_META_PREFIX`].
    pub fn raw() -> Self {
        let meta = |name: &[u8]| [RAW_META_PREFIX, name].concat();
        Layout {
            data: Vec::new(),
            data_end: RAW_META_PREFIX.to_vec(),
            counter: meta(b"counter"),
            delete_epoch: meta(b"delete-epoch"),
            pins: meta(b"pins/"),
        }
    }

    /// Whether `user_key` has a place in the data: always in a namespace; raw, a key that
    /// is not empty and sorts below the metadata.
    pub fn holds(&self, user_key: &[u8]) -> bool {
        !self.data.is_empty() || (!user_key.is_empty() && user_key < self.data_end.as_slice())
    }

    /// [`Layout::holds`], or the error that says why the key cannot be written.
    pub fn check(&self, user_key: &[u8]) -> Result<()> {
        if self.holds(user_key) {
            return Ok(());
        }
        Err(EngineError::Invalid(format!(
            "key {:?} cannot be stored in etcd's raw keyspace: etcd keys are not empty, and keys \
             from {:?} on hold the engine's metadata",
            String::from_utf8_lossy(user_key),
            String::from_utf8_lossy(RAW_META_PREFIX)
        )))
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
    /// end of the data). A range with nothing of the data in it is `[end, end)`, which
    /// etcd reads as empty (never `[x, "\0")`, which etcd reads as "every key from x").
    pub fn range(&self, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        let end = match &range.end {
            Some(e) => self.key(e).min(self.data_end.clone()),
            None => self.data_end.clone(),
        };
        let mut start = self.key(&range.start);
        if start.is_empty() {
            start = FIRST_KEY.to_vec();
        }
        if start >= end {
            return (self.data_end.clone(), self.data_end.clone());
        }
        (start, end)
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

    #[test]
    fn raw_keys_are_etcd_keys_and_meta_is_above_them() {
        let l = Layout::raw();
        assert_eq!(l.key(b"app/x"), b"app/x");
        assert_eq!(l.user_key(b"app/x"), b"app/x");
        let all = l.range(&KeyRange::all());
        assert_eq!(all, (b"\0".to_vec(), RAW_META_PREFIX.to_vec()));
        for meta in [&l.counter, &l.delete_epoch, &l.pins] {
            assert!(meta.as_slice() >= all.1.as_slice());
        }
        // Tito's own reserved keys are data here.
        assert!(l.holds(b"\xfftito\x00meta/database_id"));
        for bad in [&b""[..], RAW_META_PREFIX, b"\xff\xff\xff\xff"] {
            assert!(!l.holds(bad) && l.check(bad).is_err(), "{bad:?}");
        }
        // Ranges past the data are empty, never "everything from here" (etcd's "\0" end).
        for r in [
            KeyRange::new(b"".to_vec(), b"\0".to_vec()),
            KeyRange::new(RAW_META_PREFIX.to_vec(), b"\xff\xff\xff\xff".to_vec()),
            KeyRange::prefix(b"\xff\xff\xff\xff"),
        ] {
            let (s, e) = l.range(&r);
            assert!(s >= e, "{r:?}");
            assert!(e.as_slice() != b"\0" && !e.is_empty(), "{r:?}");
        }
        let (s, e) = l.range(&KeyRange::prefix(b"\xff\xff"));
        assert_eq!(
            (s.as_slice(), e.as_slice()),
            (&b"\xff\xff"[..], RAW_META_PREFIX)
        );
    }
}
