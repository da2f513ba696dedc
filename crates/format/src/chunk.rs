//! Snapshot chunks: the sorted key-value pairs of one key range, and the keyspace digest.
//!
//! ```text
//! header   "TITO-CHK" version:u32=2 crc32c:u32
//! frame*   see the container (crate::frame); two columns (version 2):
//!          keys_len:u32 (key_len:u32 key)* (value_len:u32 value)*
//!          or rows (version 1): (key_len:u32 key value_len:u32 value)*
//! trailer  'T' frames:u64 count:u64 raw_bytes:u64 first_len:u32 first_key last_len:u32 last_key blake3[32]
//! ```

use std::io::{Read, Write};

use crate::error::{FormatError, Result, key_hex};
use crate::frame::{
    CHUNK_FRAME_TARGET, FrameReader, FrameWriter, Next, Progress, frame_writer_options, len_u32,
    put_bytes, put_checked,
};
use crate::manifest::ChunkEntry;

/// Magic bytes opening every snapshot chunk.
pub const CHUNK_MAGIC: &[u8; 8] = b"TITO-CHK";
/// Snapshot chunk format version written by this build: 2 stores each frame's keys and
/// values as two columns; version 1 (rows) is still read.
pub const CHUNK_FORMAT_VERSION: u32 = 2;
/// The oldest snapshot chunk format version this build reads.
pub const CHUNK_FORMAT_OLDEST: u32 = 1;

/// Digest of a keyspace: blake3 over every pair in key order, each fed as
/// `le_u64(key_len) ++ key ++ le_u64(value_len) ++ value`. It does not depend on how the
/// pairs are split into chunks, so a restored database can be checked against a manifest.
#[derive(Clone, Debug, Default)]
pub struct KeyspaceDigest {
    hasher: blake3::Hasher,
    /// Bytes not yet hashed. blake3 hashes many 1 KiB chunks at once with SIMD only when
    /// it is handed them together: fed a pair at a time it compresses one 64-byte block
    /// after another, several times slower. The digest is the same however input is split.
    pending: Vec<u8>,
    count: u64,
}

/// Bytes [`KeyspaceDigest`] gathers before hashing them (a multiple of blake3's 1 KiB chunk).
const DIGEST_BUFFER: usize = 64 << 10;

impl KeyspaceDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next pair (pairs must come in key order).
    pub fn update(&mut self, key: &[u8], value: &[u8]) {
        self.feed(&(key.len() as u64).to_le_bytes());
        self.feed(key);
        self.feed(&(value.len() as u64).to_le_bytes());
        self.feed(value);
        self.count += 1;
    }

    fn feed(&mut self, mut b: &[u8]) {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(DIGEST_BUFFER);
        }
        while !b.is_empty() {
            if self.pending.is_empty() && b.len() >= DIGEST_BUFFER {
                // Large enough to hash in place, without a copy.
                self.hasher.update(b);
                return;
            }
            let n = (DIGEST_BUFFER - self.pending.len()).min(b.len());
            self.pending.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.pending.len() == DIGEST_BUFFER {
                self.hasher.update(&self.pending);
                self.pending.clear();
            }
        }
    }

    /// Feed every pair of `batch`, in its order (one hash update, whatever the pair count).
    pub fn update_batch(&mut self, batch: &PairBatch) {
        self.feed(&batch.bytes);
        self.count += batch.count;
    }

    /// Pairs fed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hex digest of the pairs fed so far.
    pub fn finish(&self) -> String {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        hasher.finalize().to_hex().to_string()
    }
}

/// Key-value pairs in one buffer, each encoded as [`KeyspaceDigest`] feeds it
/// (`le_u64(key_len) ++ key ++ le_u64(value_len) ++ value`): one allocation for the whole
/// batch, and one hash update to digest it ([`KeyspaceDigest::update_batch`]).
#[derive(Clone, Debug, Default)]
pub struct PairBatch {
    bytes: Vec<u8>,
    count: u64,
    raw_bytes: u64,
}

impl PairBatch {
    /// An empty batch with room for `bytes` bytes of encoded pairs (16 bytes per pair more
    /// than its key and value).
    pub fn with_capacity(bytes: usize) -> Self {
        PairBatch {
            bytes: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Append a pair.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        for b in [key, value] {
            self.bytes
                .extend_from_slice(&(b.len() as u64).to_le_bytes());
            self.bytes.extend_from_slice(b);
        }
        self.count += 1;
        self.raw_bytes += (key.len() + value.len()) as u64;
    }

    /// Pairs held.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when the batch holds no pair.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the key and value lengths.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Drop every pair, keeping the buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
        self.raw_bytes = 0;
    }

    /// The pairs in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = self.bytes.as_slice();
        let mut take = move || -> Option<&[u8]> {
            let (len, tail) = rest.split_first_chunk::<8>()?;
            // Pushed from a slice of this process, so the length fits a usize.
            let (b, tail) = tail.split_at(u64::from_le_bytes(*len) as usize);
            rest = tail;
            Some(b)
        };
        std::iter::from_fn(move || Some((take()?, take()?)))
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
            hash: None,
            raw_bytes: Some(self.raw_bytes),
            content: None,
        }
    }
}

/// Content-defined chunk boundaries over the sorted keyspace (FORMAT.md §7.3).
///
/// A snapshot streams pairs in key order and closes its chunk after a pair when
/// [`Self::cut_after`] says so: never before `min` bytes (key and value lengths), always at
/// `max`, and in between when `xxh3(key)`, read as a fraction of 2^64, is below
/// `pair_bytes / (avg - min)`. So the chance of a cut grows with the bytes a pair adds and
/// chunks hold `avg` bytes on average, and a boundary depends only on the key at it (and the
/// length of its value), never on what came before: an inserted, deleted or changed pair
/// moves at most the boundaries next to it, and every other chunk keeps its content and so
/// its content-hash name. Two snapshots of mostly equal keyspaces share most chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkBoundaries {
    min: u64,
    avg: u64,
    max: u64,
    /// `2^64 / (avg - min)`: the hash threshold a byte of a pair adds.
    per_byte: u64,
}

impl ChunkBoundaries {
    /// Boundaries for chunks of `avg` bytes on average, at least `avg / 4` and at most
    /// `avg * 8` (`avg` = 1 MiB: 256 KiB, 1 MiB, 8 MiB).
    pub fn with_average(avg: u64) -> Self {
        let avg = avg.max(4);
        let min = avg / 4;
        ChunkBoundaries {
            min,
            avg,
            max: avg.saturating_mul(8),
            per_byte: u64::MAX / (avg - min).max(1),
        }
    }

    /// Least bytes of a chunk (but the last).
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Average bytes of a chunk.
    pub fn avg(&self) -> u64 {
        self.avg
    }

    /// Most bytes of a chunk (more only by the one pair that crossed it).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// True if the chunk, holding `chunk_bytes` once the pair (`key`, `pair_bytes` of key and
    /// value) was added, ends after that pair.
    pub fn cut_after(&self, key: &[u8], pair_bytes: u64, chunk_bytes: u64) -> bool {
        if chunk_bytes < self.min {
            return false;
        }
        if chunk_bytes >= self.max {
            return true;
        }
        xxhash_rust::xxh3::xxh3_64(key) < pair_bytes.saturating_mul(self.per_byte)
    }
}

/// The content hash naming a shared chunk (`layout::shared_chunk`): blake3 over the
/// chunk's pairs encoded as [`KeyspaceDigest`] feeds them, with the key derived from
/// `layout::CHUNK_HASH_CONTEXT` in an unencrypted repository, or keyed with the store's
/// chunk naming key ([`ContentHash::keyed`]) in an encrypted one, so the names of an
/// encrypted repository reveal nothing about the pairs to who lacks the key.
#[derive(Clone, Debug)]
pub struct ContentHash(blake3::Hasher);

impl ContentHash {
    /// The hash of an unencrypted repository.
    pub fn unkeyed() -> Self {
        ContentHash(blake3::Hasher::new_derive_key(
            crate::layout::CHUNK_HASH_CONTEXT,
        ))
    }

    /// The hash keyed with a chunk naming key (an encrypted repository's).
    pub fn keyed(key: &[u8; 32]) -> Self {
        ContentHash(blake3::Hasher::new_keyed(key))
    }

    /// [`Self::keyed`] with `key`, else [`Self::unkeyed`].
    pub fn new(key: Option<&[u8; 32]>) -> Self {
        key.map_or_else(Self::unkeyed, Self::keyed)
    }

    /// Feed the next pair.
    pub fn update(&mut self, key: &[u8], value: &[u8]) {
        for b in [key, value] {
            self.0.update(&(b.len() as u64).to_le_bytes());
            self.0.update(b);
        }
    }

    /// Feed every pair of `batch`, in its order.
    pub fn update_batch(&mut self, batch: &PairBatch) {
        self.0.update(&batch.bytes);
    }

    /// The hash as 64 lowercase hex digits.
    pub fn finish(&self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

/// The keyspace digest of a version 3 manifest (FORMAT.md §5): blake3, with the key
/// derived from [`CHUNK_DIGEST_CONTEXT`], over each chunk's unkeyed [`ContentHash`] (its 64
/// hex digits) and pair count (`le_u64`), in chunk order. Composed of the chunks' hashes, it
/// lets an incremental snapshot take an unchanged chunk over from the previous manifest
/// without reading its pairs again, and verify recompute it chunk by chunk.
#[derive(Clone, Debug)]
pub struct ChunkDigest {
    hasher: blake3::Hasher,
    count: u64,
}

/// blake3 key derivation context of [`ChunkDigest`].
pub const CHUNK_DIGEST_CONTEXT: &str = "tito 2026-12 keyspace digest of chunk content hashes v3";

impl Default for ChunkDigest {
    fn default() -> Self {
        ChunkDigest {
            hasher: blake3::Hasher::new_derive_key(CHUNK_DIGEST_CONTEXT),
            count: 0,
        }
    }
}

impl ChunkDigest {
    /// An empty digest (a snapshot of no chunks).
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next chunk: its content hash (hex) and pair count.
    pub fn update(&mut self, content_hash: &str, count: u64) {
        self.hasher.update(content_hash.as_bytes());
        self.hasher.update(&count.to_le_bytes());
        self.count += count;
    }

    /// Pairs of the chunks fed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hex digest of the chunks fed so far.
    pub fn finish(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
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
    /// `None` for a writer made by [`Self::undigested`].
    digest: Option<KeyspaceDigest>,
}

impl<W: Write> ChunkWriter<W> {
    /// A writer of a chunk onto `w` with a fresh digest.
    pub fn new(w: W) -> Self {
        Self::continuing(w, KeyspaceDigest::new())
    }

    /// A writer of a chunk onto `w` that continues `digest` (the digest of the chunks before
    /// this one), so a snapshot written chunk by chunk yields the keyspace digest.
    pub fn continuing(w: W, digest: KeyspaceDigest) -> Self {
        Self::with_digest(w, Some(digest))
    }

    /// A writer of a chunk onto `w` that feeds no digest, for a caller that digests the
    /// pairs itself (a snapshot digests them in key order while its chunks are written in
    /// parallel). The digest its `finish` methods return is empty.
    pub fn undigested(w: W) -> Self {
        Self::with_digest(w, None)
    }

    fn with_digest(w: W, digest: Option<KeyspaceDigest>) -> Self {
        let mut header = CHUNK_MAGIC.to_vec();
        header.extend_from_slice(&CHUNK_FORMAT_VERSION.to_le_bytes());
        let mut frames = FrameWriter::new(w, "snapshot chunk".into(), header).columns();
        frames.set_target(CHUNK_FRAME_TARGET);
        ChunkWriter {
            frames,
            keys: Keys::default(),
            digest,
        }
    }

    frame_writer_options!();

    /// Append one pair; `key` must be greater than the previous key.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.frames.check()?;
        // Refused before the pair counts as pushed.
        let key_len = len_u32(self.frames.name(), "key", key.len())?;
        let value_len = len_u32(self.frames.name(), "value", value.len())?;
        self.keys.accept(self.frames.name(), key, value.len())?;
        if let Some(d) = &mut self.digest {
            d.update(key, value);
        }
        let (keys, values) = self.frames.columns_mut();
        put_checked(keys, key_len, key);
        put_checked(values, value_len, value);
        self.frames.entry_done()
    }

    /// Append every pair of `batch`, in its order (each must follow the previous key).
    pub fn push_batch(&mut self, batch: &PairBatch) -> Result<()> {
        batch.iter().try_for_each(|(k, v)| self.push(k, v))
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
    /// this chunk's pairs (empty for an [`Self::undigested`] writer), and the inner writer.
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
        Ok((summary, self.digest.unwrap_or_default(), w))
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
        let (mut frames, _) = FrameReader::open(
            r,
            name.into(),
            "snapshot chunk",
            CHUNK_MAGIC,
            CHUNK_FORMAT_OLDEST..=CHUNK_FORMAT_VERSION,
            0,
        )?;
        frames.set_columns(frames.version() >= 2);
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
    pub fn verify_into(self, digest: &mut KeyspaceDigest) -> Result<ChunkSummary> {
        self.verify_with(|k, v| digest.update(k, v))
    }

    /// Read and verify the rest of the object, handing each pair to `each`; returns the
    /// summary.
    pub fn verify_with(mut self, mut each: impl FnMut(&[u8], &[u8])) -> Result<ChunkSummary> {
        for pair in &mut self {
            let (k, v) = pair?;
            each(&k, &v);
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
                let value = match self.frames.version() {
                    1 => self.frames.take_bytes()?,
                    _ => self.frames.take_bytes_col1()?,
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The digest's definition, hashed in one piece.
    fn oracle(pairs: &[(Vec<u8>, Vec<u8>)]) -> String {
        let mut all = Vec::new();
        for (k, v) in pairs {
            all.extend_from_slice(&(k.len() as u64).to_le_bytes());
            all.extend_from_slice(k);
            all.extend_from_slice(&(v.len() as u64).to_le_bytes());
            all.extend_from_slice(v);
        }
        blake3::hash(&all).to_hex().to_string()
    }

    proptest! {
        /// Buffering never changes the digest: pairs of any size, straddling the buffer or
        /// larger than it, and a digest read midway and then continued.
        #[test]
        fn buffered_digest_is_blake3_of_the_pairs(
            sizes in proptest::collection::vec((0usize..40, 0usize..3 * DIGEST_BUFFER), 0..12),
            seed in any::<u8>(),
        ) {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &(k, v))| {
                    let fill = |n: usize, s: usize| (0..n).map(|j| (j * 31 + s) as u8 ^ seed).collect();
                    (fill(k, i), fill(v, i + 7))
                })
                .collect();
            let mut d = KeyspaceDigest::new();
            for (i, (k, v)) in pairs.iter().enumerate() {
                d.update(k, v);
                prop_assert_eq!(d.finish(), oracle(&pairs[..=i]));
            }
            prop_assert_eq!(d.count(), pairs.len() as u64);
            prop_assert_eq!(d.finish(), oracle(&pairs));

            // The same pairs as batches, split at `seed`, after a first pair fed alone.
            let mut batched = KeyspaceDigest::new();
            let (head, tail) = pairs.split_at(pairs.len().min(1));
            for (k, v) in head {
                batched.update(k, v);
            }
            let mut raw = 0u64;
            for part in tail.chunks(usize::from(seed % 4) + 1) {
                let mut b = PairBatch::with_capacity(16);
                for (k, v) in part {
                    b.push(k, v);
                    raw += (k.len() + v.len()) as u64;
                }
                prop_assert_eq!(b.len(), part.len() as u64);
                let back: Vec<(Vec<u8>, Vec<u8>)> =
                    b.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                prop_assert_eq!(back.as_slice(), part);
                batched.update_batch(&b);
            }
            prop_assert_eq!(raw, tail.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum::<u64>());
            prop_assert_eq!(batched.count(), pairs.len() as u64);
            prop_assert_eq!(batched.finish(), oracle(&pairs));
        }
    }

    /// A version-1 chunk (rows, as builds before columns wrote it), written by the container
    /// directly.
    fn chunk_v1(pairs: &[(Vec<u8>, Vec<u8>)], target: usize) -> Vec<u8> {
        let mut header = CHUNK_MAGIC.to_vec();
        header.extend_from_slice(&1u32.to_le_bytes());
        let mut frames = FrameWriter::new(Vec::new(), "v1".into(), header);
        frames.set_target(target);
        let mut keys = Keys::default();
        for (k, v) in pairs {
            keys.accept("v1", k, v.len()).expect("sorted");
            let raw = frames.raw_mut();
            put_checked(raw, k.len() as u32, k);
            put_checked(raw, v.len() as u32, v);
            frames.entry_done().expect("entry");
        }
        let mut fields = Vec::new();
        for v in [frames.frames_after_flush(), keys.count, keys.raw_bytes] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes(&mut fields, "v1", "first key", &keys.first).expect("fits");
        put_bytes(&mut fields, "v1", "last key", &keys.last).expect("fits");
        frames.finish(&fields).expect("finish").2
    }

    /// Chunks of both versions read back to the same pairs, at any frame size (the bytes
    /// saved are measured by `tito bench`, on realistic rows).
    #[test]
    fn version_1_rows_and_version_2_columns_read_the_same() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..3000u32)
            .map(|i| {
                let v = format!(
                    "{{\"id\":{i},\"name\":\"item {}\",\"qty\":{}}}",
                    i % 40,
                    i % 7
                );
                (format!("order/{i:08}").into_bytes(), v.into_bytes())
            })
            .collect();
        for target in [200usize, 4096, 1 << 20] {
            let v1 = chunk_v1(&pairs, target);
            let mut w = ChunkWriter::new(Vec::new()).with_frame_target(target);
            for (k, v) in &pairs {
                w.push(k, v).expect("push");
            }
            let (summary, _, v2) = w.finish_into_parts().expect("finish");
            assert_eq!(u32::from_le_bytes(v2[8..12].try_into().unwrap()), 2);
            for (name, obj) in [("v1", &v1), ("v2", &v2)] {
                let r = ChunkReader::new(obj.as_slice(), name).expect("open");
                let back: Vec<_> = r.collect::<Result<_>>().expect(name);
                assert_eq!(back, pairs, "{name} at target {target}");
            }
            let s1 = ChunkReader::new(v1.as_slice(), "v1")
                .unwrap()
                .verify()
                .unwrap();
            assert_eq!(
                (s1.count, &s1.first_key, s1.raw_bytes),
                (summary.count, &summary.first_key, summary.raw_bytes)
            );
            assert_ne!(v1[12..], v2[12..], "version 2 frames are not the rows");
        }
    }

    /// A two-column frame whose first column's length runs past the frame is refused.
    #[test]
    fn a_column_length_past_the_frame_is_refused() {
        let mut w = ChunkWriter::new(Vec::new());
        w.push(b"a", b"1").unwrap();
        let (_, _, obj) = w.finish_into_parts().unwrap();
        // Rebuild the one frame with a first-column length of 1000.
        let mut frames = FrameWriter::new(Vec::new(), "bad".into(), obj[..12].to_vec());
        let raw = frames.raw_mut();
        raw.extend_from_slice(&1000u32.to_le_bytes());
        put_checked(raw, 1, b"a");
        put_checked(raw, 1, b"1");
        frames.entry_done().unwrap();
        let mut fields = Vec::new();
        for v in [1u64, 1, 2] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes(&mut fields, "bad", "first key", b"a").unwrap();
        put_bytes(&mut fields, "bad", "last key", b"a").unwrap();
        let bad = frames.finish(&fields).unwrap().2;
        let err = ChunkReader::new(bad.as_slice(), "bad")
            .unwrap()
            .verify()
            .expect_err("refused");
        assert!(
            err.to_string().contains("first column runs past the frame"),
            "{err}"
        );
    }

    /// A chunk written from a batch is byte for byte the chunk written pair by pair.
    #[test]
    fn push_batch_writes_the_same_chunk() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..500u32)
            .map(|i| {
                (
                    format!("k{i:05}").into_bytes(),
                    vec![i as u8; (i % 97) as usize],
                )
            })
            .collect();
        let mut one = ChunkWriter::new(Vec::new()).with_frame_target(1000);
        let mut batch = PairBatch::default();
        for (k, v) in &pairs {
            one.push(k, v).expect("push");
            batch.push(k, v);
        }
        let mut two = ChunkWriter::undigested(Vec::new()).with_frame_target(1000);
        two.push_batch(&batch).expect("push batch");
        let (s1, d1, b1) = one.finish_into_parts().expect("finish");
        let (s2, d2, b2) = two.finish_into_parts().expect("finish");
        assert_eq!((s1, &b1), (s2, &b2));
        assert_eq!(d1.finish(), oracle(&pairs));
        assert_eq!(d2.count(), 0, "an undigested writer feeds no digest");
        let mut d = KeyspaceDigest::new();
        d.update_batch(&batch);
        assert_eq!(d.finish(), d1.finish());
    }
}

#[cfg(test)]
mod boundary_tests {
    use super::*;

    /// Cut positions of a run of keys `key/<i>` of `value`-byte values.
    fn cuts(b: &ChunkBoundaries, keys: &[Vec<u8>], value: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for k in keys {
            let pair = k.len() as u64 + value;
            bytes += pair;
            if b.cut_after(k, pair, bytes) {
                out.push(k.clone());
                bytes = 0;
            }
        }
        out
    }

    #[test]
    fn boundaries_follow_the_keys_and_keep_the_average() {
        let b = ChunkBoundaries::with_average(64 << 10);
        assert_eq!((b.min(), b.avg(), b.max()), (16 << 10, 64 << 10, 512 << 10));
        let keys: Vec<Vec<u8>> = (0..200_000u32)
            .map(|i| format!("key/{i:08}").into_bytes())
            .collect();
        let first = cuts(&b, &keys, 100);
        // 200,000 pairs of 112 bytes in chunks of about 64 KiB: about 340.
        let n = first.len() as f64;
        let expected = 200_000.0 * 112.0 / f64::from(64 << 10);
        assert!(
            (n / expected - 1.0).abs() < 0.15,
            "{n} chunks, {expected} expected"
        );
        // Insert keys in one place: every boundary well past it stays.
        let mut changed = keys.clone();
        changed.insert(1000, b"key/00000999a".to_vec());
        changed.insert(1001, b"key/00000999b".to_vec());
        let second = cuts(&b, &changed, 100);
        let later = |c: &Vec<Vec<u8>>| -> Vec<Vec<u8>> {
            c.iter()
                .filter(|k| k.as_slice() > b"key/00010000".as_slice())
                .cloned()
                .collect()
        };
        assert_eq!(later(&first), later(&second));
        // Never below min (but the last), never past max plus one pair.
        let mut bytes = 0;
        for k in &keys {
            bytes += k.len() as u64 + 100;
            if b.cut_after(k, k.len() as u64 + 100, bytes) {
                assert!(bytes >= b.min() && bytes < b.max() + 112);
                bytes = 0;
            }
        }
    }
}
