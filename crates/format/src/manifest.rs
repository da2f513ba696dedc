//! The snapshot manifest: written last; a snapshot without one does not exist for restore.

use serde::{Deserialize, Serialize};

use crate::doc::{decode, encode, is_digest};
use crate::error::{FormatError, key_hex};

/// One chunk of a snapshot as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Chunk number: its position in the snapshot (and, for a chunk without `hash`, its
    /// object `layout::snapshot_chunk(dir, n)`).
    pub n: u32,
    /// Size of the chunk object in bytes.
    pub size: u64,
    /// First key held (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub first_key: Vec<u8>,
    /// Last key held.
    #[serde(with = "hex_bytes")]
    pub last_key: Vec<u8>,
    /// Number of key-value pairs.
    pub count: u64,
    /// Checksum of the whole chunk object (hex blake3).
    pub checksum: String,
    /// Content hash naming a shared chunk (`layout::shared_chunk(hash)`, manifest v2 only);
    /// `None`: the chunk lives in the snapshot's own folder (every v1 chunk, and the chunks
    /// of a `--full` snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Uncompressed key and value bytes of its pairs (manifest v3; absent before). An
    /// incremental snapshot that takes the entry over from an earlier manifest without
    /// reading the chunk's keys counts them from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<u64>,
    /// The unkeyed content hash of its pairs ([`crate::ContentHash::unkeyed`], manifest v3)
    /// when `hash` is not it: a chunk of a `--full` snapshot (no `hash`) or of an encrypted
    /// repository (whose names are keyed). Absent: `hash` is the unkeyed content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl ChunkEntry {
    /// The object holding this chunk of the snapshot in folder `dir`.
    pub fn object_key(&self, dir: &str) -> String {
        match &self.hash {
            Some(hash) => crate::layout::shared_chunk(hash),
            None => crate::layout::snapshot_chunk(dir, self.n),
        }
    }

    /// The unkeyed content hash of its pairs, which the keyspace digest of a version 3
    /// manifest is composed of: `content`, else the name `hash`.
    pub fn content_hash(&self) -> Option<&str> {
        self.content.as_deref().or(self.hash.as_deref())
    }

    /// True if the chunk is a shared, content-named object that other snapshots may hold too.
    pub fn is_shared(&self) -> bool {
        self.hash.is_some()
    }
}

/// A snapshot manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format_version: u32,
    /// Unique snapshot id (also in the folder name).
    pub id: String,
    /// Timeline the snapshot was taken on.
    pub timeline: u64,
    /// The LSN the snapshot reflects: every record up to it is in, none after.
    pub lsn: u64,
    /// Commit time of record `lsn` (ms), 0 if the log was empty.
    pub lsn_time_ms: u64,
    /// When the snapshot was started (ms since the epoch).
    pub started_ms: u64,
    /// When the manifest was written.
    pub finished_ms: u64,
    /// Engine kind the snapshot was read from (`redb`, `etcd`, ...).
    pub engine: String,
    /// Database id (matches the repository config).
    pub database_id: String,
    /// Chunks, in key order.
    pub chunks: Vec<ChunkEntry>,
    /// Total key-value pairs.
    pub total_count: u64,
    /// Total uncompressed key and value bytes.
    pub total_raw_bytes: u64,
    /// Digest of the whole keyspace (FORMAT.md §5): from version 3 a [`crate::ChunkDigest`]
    /// of the chunks' content hashes, before it a [`crate::KeyspaceDigest`] of every pair.
    pub keyspace_digest: String,
}

/// Hex encoding of byte strings inside JSON documents.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize bytes as lowercase hex.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    /// Parse lowercase or uppercase hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        // Byte pairs, not string slices: a non-ASCII character must be an error, not a
        // slice through the middle of it (a panic found by fuzzing).
        let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        s.as_bytes()
            .chunks_exact(2)
            .map(|p| match (digit(p[0]), digit(p[1])) {
                (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
                _ => Err(serde::de::Error::custom(format!(
                    "not a hex byte: {:?}",
                    String::from_utf8_lossy(p)
                ))),
            })
            .collect()
    }
}

/// Manifest format version written by this build: 3, the keyspace digest is composed of
/// the chunks' content hashes ([`crate::ChunkDigest`]) and every chunk records its
/// `raw_bytes`, so an incremental snapshot can take an unchanged chunk over from the
/// previous manifest without reading its pairs. Versions 1 and 2 are still read.
pub const MANIFEST_FORMAT_VERSION: u32 = 3;
/// The first manifest format version, still read: no chunk has a `hash`.
pub const MANIFEST_FORMAT_V1: u32 = 1;
/// Manifest format version 2, still read: chunks may be shared content-named objects
/// (`hash`); the keyspace digest is a [`crate::KeyspaceDigest`] of every pair.
pub const MANIFEST_FORMAT_V2: u32 = 2;
/// Document kind on a manifest's checksum line.
pub(crate) const KIND: &str = "tito-manifest";

/// A fresh random snapshot id (16 hex digits), safe in object names.
pub fn new_snapshot_id() -> String {
    crate::doc::random_id(8)
}

impl Manifest {
    /// Check the manifest's rules; `object` names it in the error.
    ///
    /// Rules: supported version; non-empty id (no `/`), engine and database id; chunks
    /// numbered `0..n` in order; a chunk with pairs has `first_key <= last_key` (equal iff one
    /// pair), an empty chunk has empty keys; key ranges of non-empty chunks strictly
    /// increasing and disjoint; counts add up to `total_count`; checksums are blake3 hex.
    pub fn validate(&self, object: &str) -> Result<(), FormatError> {
        let bad = |problem: String| FormatError::Invalid {
            object: object.to_string(),
            kind: "manifest",
            problem,
        };
        if !(MANIFEST_FORMAT_V1..=MANIFEST_FORMAT_VERSION).contains(&self.format_version) {
            return Err(FormatError::UnsupportedVersion {
                object: object.to_string(),
                kind: "manifest",
                version: self.format_version,
                supported: MANIFEST_FORMAT_VERSION,
            });
        }
        if self.id.is_empty() || self.id.contains('/') {
            return Err(bad(format!(
                "snapshot id {:?} is empty or contains '/'",
                self.id
            )));
        }
        if self.engine.is_empty() || self.database_id.is_empty() {
            return Err(bad("engine and database id must not be empty".into()));
        }
        if !is_digest(&self.keyspace_digest) {
            return Err(bad(format!(
                "keyspace digest {:?} is not a blake3 hex digest",
                self.keyspace_digest
            )));
        }
        let mut total = 0u64;
        let mut raw_total = 0u64;
        let mut prev_last: Option<&[u8]> = None;
        for (i, c) in self.chunks.iter().enumerate() {
            if c.n as usize != i {
                return Err(bad(format!("chunk at position {i} is numbered {}", c.n)));
            }
            if self.digests_chunks() {
                match c.content_hash() {
                    Some(h) if crate::layout::is_hash(h) => {}
                    Some(h) => {
                        return Err(bad(format!(
                            "chunk {i} content {h:?} is not 64 lowercase hex digits"
                        )));
                    }
                    None => {
                        return Err(bad(format!(
                            "chunk {i} has neither a hash nor a content hash, which a version 3 manifest requires"
                        )));
                    }
                }
                let raw = c.raw_bytes.ok_or_else(|| {
                    bad(format!(
                        "chunk {i} has no raw_bytes, which a version 3 manifest requires"
                    ))
                })?;
                raw_total = raw_total
                    .checked_add(raw)
                    .ok_or_else(|| bad("chunk raw bytes overflow".into()))?;
            }
            match (&c.hash, self.format_version) {
                (None, _) => {}
                (Some(_), MANIFEST_FORMAT_V1) => {
                    return Err(bad(format!(
                        "chunk {i} has a content hash, which a version 1 manifest cannot hold"
                    )));
                }
                (Some(h), _) if !crate::layout::is_hash(h) => {
                    return Err(bad(format!(
                        "chunk {i} content hash {h:?} is not 64 lowercase hex digits"
                    )));
                }
                (Some(_), _) => {}
            }
            if !is_digest(&c.checksum) {
                return Err(bad(format!(
                    "chunk {i} checksum {:?} is not a blake3 hex digest",
                    c.checksum
                )));
            }
            total = total
                .checked_add(c.count)
                .ok_or_else(|| bad("chunk counts overflow".into()))?;
            if c.count == 0 {
                if !c.first_key.is_empty() || !c.last_key.is_empty() {
                    return Err(bad(format!("chunk {i} is empty but has keys")));
                }
                continue;
            }
            let consistent = match c.count {
                1 => c.first_key == c.last_key,
                _ => c.first_key < c.last_key,
            };
            if !consistent {
                return Err(bad(format!(
                    "chunk {i} holds {} pairs but its keys are {} ..= {}",
                    c.count,
                    key_hex(&c.first_key),
                    key_hex(&c.last_key)
                )));
            }
            if let Some(prev) = prev_last
                && c.first_key.as_slice() <= prev
            {
                return Err(bad(format!(
                    "chunk {i} starts at key {} which is not after the previous chunk's last key {}",
                    key_hex(&c.first_key),
                    key_hex(prev)
                )));
            }
            prev_last = Some(&c.last_key);
        }
        if total != self.total_count {
            return Err(bad(format!(
                "chunk counts add up to {total} but total_count is {}",
                self.total_count
            )));
        }
        if self.digests_chunks() && raw_total != self.total_raw_bytes {
            return Err(bad(format!(
                "chunk raw bytes add up to {raw_total} but total_raw_bytes is {}",
                self.total_raw_bytes
            )));
        }
        Ok(())
    }

    /// True if the keyspace digest is a [`crate::ChunkDigest`] of the chunks' content
    /// hashes (version 3 on), false if a [`crate::KeyspaceDigest`] of every pair.
    pub fn digests_chunks(&self) -> bool {
        self.format_version >= 3
    }

    /// Encode as a checksummed JSON document (after validating; `object` names it in errors).
    pub fn encode(&self, object: &str) -> Result<Vec<u8>, FormatError> {
        self.validate(object)?;
        encode(object, KIND, self.format_version, self)
    }

    /// Decode and validate a manifest read from `object`: version 3, or an earlier one
    /// (whose checksum line says `v1` or `v2`). The checksum line's version must equal
    /// `format_version`.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self, FormatError> {
        let (m, version): (Manifest, u32) =
            match decode(bytes, object, KIND, MANIFEST_FORMAT_VERSION) {
                Err(FormatError::UnsupportedVersion {
                    version: older @ (MANIFEST_FORMAT_V1 | MANIFEST_FORMAT_V2),
                    ..
                }) => (decode(bytes, object, KIND, older)?, older),
                other => (other?, MANIFEST_FORMAT_VERSION),
            };
        if m.format_version != version {
            return Err(FormatError::Invalid {
                object: object.to_string(),
                kind: "manifest",
                problem: format!(
                    "checksum line says version {version}, the document says {}",
                    m.format_version
                ),
            });
        }
        m.validate(object)?;
        Ok(m)
    }

    /// True if any chunk is a shared, content-named object (a v2 incremental snapshot).
    pub fn shares_chunks(&self) -> bool {
        self.chunks.iter().any(ChunkEntry::is_shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_chunk(version: u32) -> Manifest {
        Manifest {
            format_version: version,
            id: "ab".into(),
            timeline: 1,
            lsn: 1,
            lsn_time_ms: 0,
            started_ms: 0,
            finished_ms: 0,
            engine: "memory".into(),
            database_id: "db".into(),
            chunks: vec![ChunkEntry {
                n: 0,
                size: 10,
                first_key: b"a".to_vec(),
                last_key: b"a".to_vec(),
                count: 1,
                checksum: "0".repeat(64),
                hash: Some("1".repeat(64)),
                raw_bytes: (version >= 3).then_some(2),
                content: None,
            }],
            total_count: 1,
            total_raw_bytes: 2,
            keyspace_digest: "0".repeat(64),
        }
    }

    /// What builds that read only versions 1 or 2 do with a version 3 manifest: their
    /// decoder (the same `doc::decode` with their version) refuses it before parsing,
    /// naming the version.
    #[test]
    fn older_readers_refuse_a_v3_manifest() {
        let bytes = one_chunk(MANIFEST_FORMAT_VERSION)
            .encode("m")
            .expect("encode");
        for older in [MANIFEST_FORMAT_V1, MANIFEST_FORMAT_V2] {
            let err = decode::<Manifest>(&bytes, "m", KIND, older).expect_err("refused");
            assert!(
                matches!(
                    err,
                    FormatError::UnsupportedVersion { version: 3, supported, .. } if supported == older
                ),
                "{err}"
            );
        }
    }

    /// A version 2 manifest (no `raw_bytes`) is still read; a version 3 one must say every
    /// chunk's raw bytes, adding up to the total.
    #[test]
    fn v2_is_read_and_v3_requires_raw_bytes() {
        let v2 = one_chunk(MANIFEST_FORMAT_V2);
        let bytes = v2.encode("m").expect("encode v2");
        let back = Manifest::decode(&bytes, "m").expect("a v2 manifest decodes");
        assert_eq!(back, v2);
        assert!(!back.digests_chunks());
        let mut v3 = one_chunk(MANIFEST_FORMAT_VERSION);
        assert!(v3.digests_chunks());
        v3.chunks[0].raw_bytes = None;
        assert!(v3.encode("m").is_err());
        v3.chunks[0].raw_bytes = Some(3);
        let err = v3.encode("m").expect_err("raw bytes must add up");
        assert!(err.to_string().contains("raw bytes add up to 3"), "{err}");
    }
}
