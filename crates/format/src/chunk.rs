//! Snapshot chunks: the sorted key-value pairs of one key range, and the keyspace digest.
//!
//! ```text
//! header   "TITO-CHK" version:u32=1 crc32c:u32
//! frame*   see the container (crate::frame); entries: key_len:u32 key value_len:u32 value
//! trailer  'T' frames:u64 count:u64 raw_bytes:u64 first_len:u32 first_key last_len:u32 last_key blake3[32]
//! ```

use std::io::{Read, Write};

use crate::error::{FormatError, Result, key_hex};
use crate::frame::{
    FrameReader, FrameWriter, Next, Progress, frame_writer_options, len_u32, put_bytes,
};
use crate::manifest::ChunkEntry;

/// Magic bytes opening every snapshot chunk.
pub const CHUNK_MAGIC: &[u8; 8] = b"TITO-CHK";
/// Snapshot chunk format version written and read by this build.
pub const CHUNK_FORMAT_VERSION: u32 = 1;

/// Digest of a keyspace: blake3 over every pair in key order, each fed as
/// `le_u64(key_len) ++ key ++ le_u64(value_len) ++ value`. It does not depend on how the
/// pairs are split into chunks, so a restored database can be checked against a manifest.
#[derive(Clone, Debug, Default)]
pub struct KeyspaceDigest {
    hasher: blake3::Hasher,
    count: u64,
}

impl KeyspaceDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next pair (pairs must come in key order).
    pub fn update(&mut self, key: &[u8], value: &[u8]) {
        self.hasher.update(&(key.len() as u64).to_le_bytes());
        self.hasher.update(key);
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
        self.count += 1;
    }

    /// Pairs fed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hex digest of the pairs fed so far.
    pub fn finish(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

/// What a chunk holds, known once it is fully written or fully read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkSummary {
    /// Number of pairs.
    pub count: u64,
    /// First key (empty when `count` is 0).
    pub first_key: Vec<u8>,
    /// Last key (empty when `count` is 0).
    pub last_key: Vec<u8>,
    /// Sum of key and value lengths.
    pub raw_bytes: u64,
    /// Size of the object in bytes.
    pub bytes: u64,
    /// Hex blake3 of the complete object as stored.
    pub checksum: String,
}

impl ChunkSummary {
    /// Check that a chunk read back from `object` is the one `entry` of a manifest describes
    /// (size, checksum, count, first and last key).
    pub fn check_entry(&self, object: &str, entry: &ChunkEntry) -> Result<()> {
        let mismatch = |what: &str, manifest: String, found: String| {
            Err(FormatError::corrupt(
                object,
                format!("manifest says {what} {manifest}, object has {found}"),
            ))
        };
        if self.bytes != entry.size {
            return mismatch("size", entry.size.to_string(), self.bytes.to_string());
        }
        if self.checksum != entry.checksum {
            return mismatch("checksum", entry.checksum.clone(), self.checksum.clone());
        }
        if self.count != entry.count {
            return mismatch("count", entry.count.to_string(), self.count.to_string());
        }
        if self.first_key != entry.first_key {
            return mismatch(
                "first key",
                key_hex(&entry.first_key),
                key_hex(&self.first_key),
            );
        }
        if self.last_key != entry.last_key {
            return mismatch(
                "last key",
                key_hex(&entry.last_key),
                key_hex(&self.last_key),
            );
        }
        Ok(())
    }

    /// The manifest entry of this chunk stored as chunk number `n`.
    pub fn entry(&self, n: u32) -> ChunkEntry {
        ChunkEntry {
            n,
            size: self.bytes,
            first_key: self.first_key.clone(),
            last_key: self.last_key.clone(),
            count: self.count,
            checksum: self.checksum.clone(),
        }
    }
}

/// Order bookkeeping shared by writer and reader.
#[derive(Default)]
struct Keys {
    count: u64,
    first: Vec<u8>,
    last: Vec<u8>,
    raw_bytes: u64,
}

impl Keys {
    fn accept(&mut self, object: &str, key: &[u8], value_len: usize) -> Result<()> {
        if self.count > 0 && key <= self.last.as_slice() {
            return Err(FormatError::KeyOrder {
                object: object.to_string(),
                index: self.count,
                key: key_hex(key),
                previous: key_hex(&self.last),
            });
        }
        if self.count == 0 {
            self.first = key.to_vec();
        }
        self.last.clear();
        self.last.extend_from_slice(key);
        self.count += 1;
        self.raw_bytes += (key.len() + value_len) as u64;
        Ok(())
    }
}

/// Streams sorted key-value pairs into a chunk object, feeding a [`KeyspaceDigest`].
///
/// Keys must be strictly increasing. Memory holds one frame (see [`Self::buffered_bytes`]).
pub struct ChunkWriter<W: Write> {
    frames: FrameWriter<W>,
    keys: Keys,
    digest: KeyspaceDigest,
}

impl<W: Write> ChunkWriter<W> {
    /// A writer of a chunk onto `w` with a fresh digest.
    pub fn new(w: W) -> Self {
        Self::continuing(w, KeyspaceDigest::new())
    }

    /// A writer of a chunk onto `w` that continues `digest` (the digest of the chunks before
    /// this one), so a snapshot written chunk by chunk yields the keyspace digest.
    pub fn continuing(w: W, digest: KeyspaceDigest) -> Self {
        let mut header = CHUNK_MAGIC.to_vec();
        header.extend_from_slice(&CHUNK_FORMAT_VERSION.to_le_bytes());
        ChunkWriter {
            frames: FrameWriter::new(w, "snapshot chunk".into(), header),
            keys: Keys::default(),
            digest,
        }
    }

    frame_writer_options!();

    /// Append one pair; `key` must be greater than the previous key.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.frames.check()?;
        // Refused before the pair counts as pushed.
        for (what, len) in [("key", key.len()), ("value", value.len())] {
            len_u32(self.frames.name(), what, len)?;
        }
        self.keys.accept(self.frames.name(), key, value.len())?;
        self.digest.update(key, value);
        let name = self.frames.name().to_string();
        let raw = self.frames.raw_mut();
        put_bytes(raw, &name, "key", key)?;
        put_bytes(raw, &name, "value", value)?;
        self.frames.entry_done()
    }

    /// Pairs pushed so far.
    pub fn count(&self) -> u64 {
        self.keys.count
    }

    /// Bytes held in the writer's buffers: about one frame.
    pub fn buffered_bytes(&self) -> usize {
        self.frames.buffered_bytes()
    }

    /// Write the last frame and the trailer; returns the summary, the digest continued over
    /// this chunk's pairs, and the inner writer.
    pub fn finish_into_parts(self) -> Result<(ChunkSummary, KeyspaceDigest, W)> {
        let name = self.frames.name().to_string();
        let k = &self.keys;
        let mut fields = Vec::with_capacity(40 + k.first.len() + k.last.len());
        for v in [self.frames.frames_after_flush(), k.count, k.raw_bytes] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes(&mut fields, &name, "first key", &k.first)?;
        put_bytes(&mut fields, &name, "last key", &k.last)?;
        let (bytes, checksum, w) = self.frames.finish(&fields)?;
        let k = self.keys;
        let summary = ChunkSummary {
            count: k.count,
            first_key: k.first,
            last_key: k.last,
            raw_bytes: k.raw_bytes,
            bytes,
            checksum,
        };
        Ok((summary, self.digest, w))
    }

    /// Write the last frame and the trailer; returns the summary and the continued digest.
    pub fn finish(self) -> Result<(ChunkSummary, KeyspaceDigest)> {
        self.finish_into_parts().map(|(s, d, _)| (s, d))
    }
}

/// Reads a chunk pair by pair, verifying as it goes (same guarantees as
/// [`crate::segment::SegmentReader`]: any damage ends the iteration with an `Err`).
pub struct ChunkReader<R: Read> {
    frames: FrameReader<R>,
    keys: Keys,
    progress: Progress<ChunkSummary>,
}

impl<R: Read> ChunkReader<R> {
    /// Open the chunk `name` (used in error messages) and check its header.
    pub fn new(r: R, name: impl Into<String>) -> Result<Self> {
        let (frames, _) = FrameReader::open(
            r,
            name.into(),
            "snapshot chunk",
            CHUNK_MAGIC,
            CHUNK_FORMAT_VERSION,
            0,
        )?;
        Ok(ChunkReader {
            frames,
            keys: Keys::default(),
            progress: Progress::Reading,
        })
    }

    /// The summary, once the iteration has ended successfully.
    pub fn summary(&self) -> Option<&ChunkSummary> {
        self.progress.summary()
    }

    /// Bytes held in the reader's frame buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.frames.buffered_bytes()
    }

    /// Read and verify the rest of the object, feeding every pair to `digest`; returns the summary.
    pub fn verify_into(mut self, digest: &mut KeyspaceDigest) -> Result<ChunkSummary> {
        for pair in &mut self {
            let (k, v) = pair?;
            digest.update(&k, &v);
        }
        self.progress.into_summary(&self.frames.name)
    }

    /// Read and verify the rest of the object, dropping the pairs; returns the summary.
    pub fn verify(self) -> Result<ChunkSummary> {
        self.verify_into(&mut KeyspaceDigest::new())
    }

    fn next_pair(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self.frames.advance()? {
            Next::Entry => {
                let key = self.frames.take_bytes()?;
                let value = self.frames.take_bytes()?;
                self.keys.accept(&self.frames.name, &key, value.len())?;
                Ok(Some((key, value)))
            }
            Next::Trailer => {
                let frames = self.frames.read_u64("frame count")?;
                let count = self.frames.read_u64("pair count")?;
                let raw_bytes = self.frames.read_u64("raw bytes")?;
                let first_key = self.frames.read_bytes("first key")?;
                let last_key = self.frames.read_bytes("last key")?;
                let (bytes, checksum) = self.frames.finish()?;
                let k = &self.keys;
                let name = &self.frames.name;
                let mismatch = |w: &str, said: String, seen: String| {
                    Err(FormatError::corrupt(
                        name,
                        format!("trailer {w} is {said} but the frames hold {seen}"),
                    ))
                };
                if frames != self.frames.frames() {
                    return mismatch(
                        "frame count",
                        frames.to_string(),
                        self.frames.frames().to_string(),
                    );
                }
                if count != k.count {
                    return mismatch("pair count", count.to_string(), k.count.to_string());
                }
                if raw_bytes != k.raw_bytes {
                    return mismatch("raw bytes", raw_bytes.to_string(), k.raw_bytes.to_string());
                }
                if first_key != k.first {
                    return mismatch("first key", key_hex(&first_key), key_hex(&k.first));
                }
                if last_key != k.last {
                    return mismatch("last key", key_hex(&last_key), key_hex(&k.last));
                }
                self.progress = Progress::Done(ChunkSummary {
                    count,
                    first_key,
                    last_key,
                    raw_bytes,
                    bytes,
                    checksum,
                });
                Ok(None)
            }
        }
    }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.progress.is_reading() {
            return None;
        }
        let step = self.next_pair();
        self.progress.yield_step(step)
    }
}
