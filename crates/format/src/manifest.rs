//! The snapshot manifest: written last; a snapshot without one does not exist for restore.

use serde::{Deserialize, Serialize};

/// One chunk of a snapshot as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Chunk number (its object is `layout::snapshot_chunk(dir, n)`).
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
    /// Digest of the whole keyspace (hex blake3 over every key and value in order, see FORMAT.md).
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
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}
