//! The framed container shared by log segments and snapshot chunks.
//!
//! ```text
//! header   magic[8] version:u32 fields.. crc32c:u32      (crc over the header bytes before it)
//! frame*   'F' count:u32 raw_len:u32 comp_len:u32 payload_crc:u32 header_crc:u32 payload[comp_len]
//! trailer  'T' fields.. blake3[32]                        (blake3 of every object byte before it)
//! ```
//!
//! All integers are little-endian. The writer holds at most one frame; the reader holds at
//! most one compressed and one decompressed frame, so memory is bounded by the frame size
//! (about the target, plus one entry when an entry is larger than the target).
//!
//! A frame's entries are stored as rows (each entry's fields together) or, for objects
//! whose version says so, as two columns: `col0_len:u32 col0 col1`, the first field of
//! every entry, then the second (snapshot chunks v2: keys, then values). Sorted keys and
//! similar values compress better apart.

use std::io::{self, BufReader, Read, Write};

use crate::error::{FormatError, Result, hex};

/// Tag byte opening a frame.
pub(crate) const TAG_FRAME: u8 = b'F';
/// Tag byte opening the trailer.
pub(crate) const TAG_TRAILER: u8 = b'T';
/// Default uncompressed frame size the writers aim for.
pub const DEFAULT_FRAME_TARGET: usize = 1 << 20;
/// Default zstd level of segments and chunks: zstd's own default, as fast as level 1 on
/// the bench's rows and smaller (BENCHMARKS.md, Backup size).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Uncompressed frame size snapshot chunks aim for: a larger window finds more of the
/// repetition across values, at the same speed.
pub const CHUNK_FRAME_TARGET: usize = 4 << 20;
/// Largest length of one key, value or record body (lengths are 32-bit).
pub const MAX_ENTRY_LEN: u64 = u32::MAX as u64;
/// Largest decompressed frame whose buffer is reserved from the header's `raw_len` before
/// decompressing; larger frames grow their buffer as bytes arrive.
pub(crate) const RESERVE_MAX: usize = 2 * CHUNK_FRAME_TARGET;
/// Bytes of a frame header.
const FRAME_HEADER_LEN: usize = 21;
/// Bytes of the whole-object hash closing the trailer.
const HASH_LEN: usize = 32;

/// A writer that hashes and counts everything it passes on.
struct HashWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    fn put(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

/// Writing side of the container: buffers entries into one frame, compresses and emits it.
pub(crate) struct FrameWriter<W: Write> {
    out: HashWriter<W>,
    name: String,
    /// Header bytes not yet written (written with the first frame or the trailer, so that
    /// constructing a writer cannot fail).
    header: Option<Vec<u8>>,
    /// Rows, or the first column after its 4-byte length (see [`Self::columns`]).
    raw: Vec<u8>,
    /// The second column, in a two-column writer.
    col1: Option<Vec<u8>>,
    comp: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    level: i32,
    target: usize,
    entries: u32,
    frames: u64,
    failed: Option<String>,
}

impl<W: Write> FrameWriter<W> {
    /// A writer whose object starts with `header` (magic, version, fields; the crc is added here).
    pub(crate) fn new(w: W, name: String, mut header: Vec<u8>) -> Self {
        let crc = crc32c::crc32c(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        FrameWriter {
            out: HashWriter {
                inner: w,
                hasher: blake3::Hasher::new(),
                bytes: 0,
            },
            name,
            header: Some(header),
            raw: Vec::new(),
            col1: None,
            comp: Vec::new(),
            compressor: None,
            level: DEFAULT_ZSTD_LEVEL,
            target: DEFAULT_FRAME_TARGET,
            entries: 0,
            frames: 0,
            failed: None,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_name(&mut self, name: String) {
        self.name = name;
    }

    pub(crate) fn set_target(&mut self, target: usize) {
        self.target = target.max(1);
    }

    pub(crate) fn set_level(&mut self, level: i32) {
        self.level = level;
    }

    /// Store entries as two columns from now on (before the first entry).
    pub(crate) fn columns(mut self) -> Self {
        debug_assert_eq!(self.entries, 0);
        self.col1 = Some(Vec::new());
        self.start_columns();
        self
    }

    /// A new frame of a two-column writer starts with room for the first column's length.
    fn start_columns(&mut self) {
        if let Some(col1) = &mut self.col1 {
            self.raw.extend_from_slice(&[0; 4]);
            // Sized once, so that filling it does not double it past the target.
            col1.reserve(self.target);
        }
    }

    /// Bytes held in the writer's buffers (capacity, not length).
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.raw.capacity() + self.comp.capacity() + self.col1.as_ref().map_or(0, Vec::capacity)
    }

    /// Error out if an earlier call failed: the output is incomplete from then on.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.failed {
            Some(problem) => Err(FormatError::WriterFailed {
                object: self.name.clone(),
                problem: problem.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Fail with `err`, remembering it so later calls fail too.
    fn fail(&mut self, err: FormatError) -> FormatError {
        self.failed = Some(err.to_string());
        err
    }

    /// The buffer of the current frame's uncompressed entries.
    pub(crate) fn raw_mut(&mut self) -> &mut Vec<u8> {
        &mut self.raw
    }

    /// The two columns of the current frame, of a writer made with [`Self::columns`].
    pub(crate) fn columns_mut(&mut self) -> (&mut Vec<u8>, &mut Vec<u8>) {
        let col1 = self.col1.as_mut().expect("a two-column writer");
        (&mut self.raw, col1)
    }

    /// One entry was appended to [`Self::raw_mut`] (or [`Self::columns_mut`]): emit the
    /// frame once it reaches the target.
    pub(crate) fn entry_done(&mut self) -> Result<()> {
        self.entries += 1;
        let len = self.raw.len() + self.col1.as_ref().map_or(0, Vec::len);
        if len >= self.target || self.entries == u32::MAX {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn write_header(&mut self) -> Result<()> {
        if let Some(header) = self.header.take() {
            self.out.put(&header).map_err(|source| FormatError::Io {
                object: self.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<()> {
        if self.entries == 0 {
            return Ok(());
        }
        self.emit_frame().map_err(|e| self.fail(e))
    }

    fn emit_frame(&mut self) -> Result<()> {
        let io_err = |name: &str, source| FormatError::Io {
            object: name.to_string(),
            source,
        };
        self.write_header()?;
        if let Some(col1) = &mut self.col1 {
            let col0 = len_u32(&self.name, "frame column", self.raw.len() - 4)?;
            self.raw[..4].copy_from_slice(&col0.to_le_bytes());
            self.raw.reserve_exact(col1.len());
            self.raw.extend_from_slice(col1);
            col1.clear();
        }
        let raw_len = len_u32(&self.name, "frame", self.raw.len())?;
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => self.compressor.insert(
                zstd::bulk::Compressor::new(self.level).map_err(|e| io_err(&self.name, e))?,
            ),
        };
        self.comp.clear();
        self.comp
            .reserve(zstd::zstd_safe::compress_bound(self.raw.len()));
        compressor
            .compress_to_buffer(&self.raw, &mut self.comp)
            .map_err(|e| io_err(&self.name, e))?;
        let comp_len = len_u32(&self.name, "compressed frame", self.comp.len())?;
        let mut head = [0u8; FRAME_HEADER_LEN];
        head[0] = TAG_FRAME;
        head[1..5].copy_from_slice(&self.entries.to_le_bytes());
        head[5..9].copy_from_slice(&raw_len.to_le_bytes());
        head[9..13].copy_from_slice(&comp_len.to_le_bytes());
        head[13..17].copy_from_slice(&crc32c::crc32c(&self.comp).to_le_bytes());
        let hcrc = crc32c::crc32c(&head[..17]);
        head[17..21].copy_from_slice(&hcrc.to_le_bytes());
        self.out.put(&head).map_err(|e| io_err(&self.name, e))?;
        self.out
            .put(&self.comp)
            .map_err(|e| io_err(&self.name, e))?;
        self.frames += 1;
        self.entries = 0;
        self.raw.clear();
        // One huge entry must not pin a huge buffer for the rest of the object.
        let keep = self.target.saturating_mul(2).max(64 << 10);
        if self.raw.capacity() > keep {
            self.raw.shrink_to(self.target);
        }
        if self.comp.capacity() > keep {
            self.comp.shrink_to(0);
        }
        if let Some(col1) = &mut self.col1 {
            if col1.capacity() > keep {
                col1.shrink_to(self.target);
            }
        }
        self.start_columns();
        Ok(())
    }

    /// Frames emitted so far (including the pending one once flushed).
    pub(crate) fn frames_after_flush(&self) -> u64 {
        self.frames + u64::from(self.entries > 0)
    }

    /// Emit the last frame and the trailer (`'T'`, `fields`, blake3 of all preceding bytes).
    /// Returns the object size, the blake3 of the complete object and the inner writer.
    pub(crate) fn finish(mut self, fields: &[u8]) -> Result<(u64, String, W)> {
        self.check()?;
        self.flush_frame()?;
        self.write_header()?;
        let name = self.name.clone();
        let io_err = |source| FormatError::Io {
            object: name.clone(),
            source,
        };
        self.out.put(&[TAG_TRAILER]).map_err(io_err)?;
        self.out.put(fields).map_err(io_err)?;
        let inner_hash = self.out.hasher.finalize();
        self.out.put(inner_hash.as_bytes()).map_err(io_err)?;
        self.out.inner.flush().map_err(io_err)?;
        let checksum = self.out.hasher.finalize().to_hex().to_string();
        Ok((self.out.bytes, checksum, self.out.inner))
    }
}

/// A reader that hashes and counts everything read through it.
struct HashReader<R> {
    inner: BufReader<R>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// What [`FrameReader::advance`] found.
pub(crate) enum Next {
    /// An entry is ready to be parsed from the current frame.
    Entry,
    /// The trailer tag was read; the trailer fields follow.
    Trailer,
}

/// Reading side of the container: verifies and decompresses one frame at a time.
pub(crate) struct FrameReader<R: Read> {
    r: HashReader<R>,
    pub(crate) name: String,
    /// The decompressed frame.
    raw: Vec<u8>,
    /// Next byte of the rows, or of the first column.
    pos: usize,
    /// End of the rows, or of the first column.
    end0: usize,
    /// Next byte of the second column (`raw.len()` when rows).
    pos1: usize,
    /// Whether frames hold two columns.
    columns: bool,
    /// The version the header gave.
    version: u32,
    left: u32,
    payload: Vec<u8>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    frames: u64,
}

impl<R: Read> FrameReader<R> {
    /// Read and check the header: `magic`, a version among `versions`, then `fields_len`
    /// bytes of fields and the header crc. Returns the reader and the fields.
    pub(crate) fn open(
        r: R,
        name: String,
        kind: &'static str,
        magic: &[u8; 8],
        versions: std::ops::RangeInclusive<u32>,
        fields_len: usize,
    ) -> Result<(Self, Vec<u8>)> {
        let mut me = FrameReader {
            r: HashReader {
                inner: BufReader::with_capacity(64 << 10, r),
                hasher: blake3::Hasher::new(),
                bytes: 0,
            },
            name,
            raw: Vec::new(),
            pos: 0,
            end0: 0,
            pos1: 0,
            columns: false,
            version: 0,
            left: 0,
            payload: Vec::new(),
            decompressor: None,
            frames: 0,
        };
        let mut head = vec![0u8; 12 + fields_len + 4];
        me.read_exact(&mut head[..8], || "the header magic".into())?;
        if &head[..8] != magic {
            return Err(FormatError::BadMagic {
                object: me.name,
                expected: kind,
                found: hex(&head[..8]),
            });
        }
        me.read_exact(&mut head[8..], || "the header".into())?;
        let found = u32::from_le_bytes(le4(&head[8..12]));
        if !versions.contains(&found) {
            return Err(FormatError::UnsupportedVersion {
                object: me.name,
                kind,
                version: found,
                supported: *versions.end(),
            });
        }
        me.version = found;
        let body = head.len() - 4;
        if crc32c::crc32c(&head[..body]) != u32::from_le_bytes(le4(&head[body..])) {
            return Err(FormatError::Checksum {
                object: me.name,
                part: "header".into(),
            });
        }
        let fields = head[12..body].to_vec();
        Ok((me, fields))
    }

    /// The object's version, from its header.
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// Frames hold two columns (see [`FrameWriter::columns`]).
    pub(crate) fn set_columns(&mut self, columns: bool) {
        self.columns = columns;
    }

    /// Bytes held in the reader's frame buffers (capacity).
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.raw.capacity() + self.payload.capacity()
    }

    /// Frames read so far.
    pub(crate) fn frames(&self) -> u64 {
        self.frames
    }

    /// Read exactly `buf.len()` bytes; a short read is a truncation of `what`.
    pub(crate) fn read_exact(
        &mut self,
        buf: &mut [u8],
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        self.r
            .read_exact(buf)
            .map_err(|e| FormatError::read(&self.name, what, e))
    }

    /// Read a little-endian u64 of the trailer.
    pub(crate) fn read_u64(&mut self, what: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b, || format!("the trailer ({what})"))?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read a u32-length-prefixed byte string of the trailer, growing the buffer only as
    /// bytes arrive (a corrupt length cannot make us allocate more than the object holds).
    pub(crate) fn read_bytes(&mut self, what: &str) -> Result<Vec<u8>> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, || format!("the trailer ({what} length)"))?;
        let len = u64::from(u32::from_le_bytes(b));
        let mut out = Vec::new();
        let n = (&mut self.r)
            .take(len)
            .read_to_end(&mut out)
            .map_err(|e| FormatError::read(&self.name, || format!("the trailer ({what})"), e))?;
        if n as u64 != len {
            return Err(FormatError::Truncated {
                object: self.name.clone(),
                what: format!("the trailer ({what})"),
            });
        }
        Ok(out)
    }

    /// Move to the next entry: within the current frame, else to the next frame (verified and
    /// decompressed), else report the trailer.
    pub(crate) fn advance(&mut self) -> Result<Next> {
        if self.left > 0 {
            self.left -= 1;
            return Ok(Next::Entry);
        }
        if self.pos != self.end0 || self.pos1 != self.raw.len() {
            return Err(FormatError::corrupt(
                &self.name,
                format!(
                    "frame {} has {} bytes after its last entry",
                    self.frames - 1,
                    (self.end0 - self.pos) + (self.raw.len() - self.pos1)
                ),
            ));
        }
        let k = self.frames;
        let mut tag = [0u8; 1];
        self.read_exact(&mut tag, || format!("frame {k} (no trailer)"))?;
        match tag[0] {
            TAG_FRAME => {
                let count = self.read_frame()?;
                self.left = count - 1;
                Ok(Next::Entry)
            }
            TAG_TRAILER => Ok(Next::Trailer),
            other => Err(FormatError::corrupt(
                &self.name,
                format!(
                    "unknown block tag 0x{other:02x} at byte {} (frame {k} or trailer expected)",
                    self.r.bytes - 1
                ),
            )),
        }
    }

    /// Read, verify and decompress one frame whose tag was read; returns its entry count.
    fn read_frame(&mut self) -> Result<u32> {
        let k = self.frames;
        let mut head = [0u8; FRAME_HEADER_LEN];
        head[0] = TAG_FRAME;
        self.read_exact(&mut head[1..], || format!("frame {k} header"))?;
        if crc32c::crc32c(&head[..17]) != u32::from_le_bytes(le4(&head[17..21])) {
            return Err(FormatError::Checksum {
                object: self.name.clone(),
                part: format!("frame {k} header"),
            });
        }
        let count = u32::from_le_bytes(le4(&head[1..5]));
        let raw_len = u32::from_le_bytes(le4(&head[5..9])) as usize;
        let comp_len = u64::from(u32::from_le_bytes(le4(&head[9..13])));
        let payload_crc = u32::from_le_bytes(le4(&head[13..17]));
        if count == 0 {
            return Err(FormatError::corrupt(
                &self.name,
                format!("frame {k} holds no entries"),
            ));
        }
        self.payload.clear();
        let n = (&mut self.r)
            .take(comp_len)
            .read_to_end(&mut self.payload)
            .map_err(|e| FormatError::read(&self.name, || format!("frame {k} payload"), e))?;
        if n as u64 != comp_len {
            return Err(FormatError::Truncated {
                object: self.name.clone(),
                what: format!("frame {k} payload"),
            });
        }
        if crc32c::crc32c(&self.payload) != payload_crc {
            return Err(FormatError::Checksum {
                object: self.name.clone(),
                part: format!("frame {k} payload"),
            });
        }
        if self.raw.capacity() > 2 * raw_len.max(DEFAULT_FRAME_TARGET) {
            self.raw = Vec::new();
        }
        self.raw.clear();
        let not_zstd = |name: &str, e: io::Error| {
            FormatError::corrupt(name, format!("frame {k} does not decompress: {e}"))
        };
        if raw_len <= RESERVE_MAX {
            self.raw.reserve(raw_len);
            let name = self.name.clone();
            let decompressor = match &mut self.decompressor {
                Some(d) => d,
                None => self
                    .decompressor
                    .insert(
                        zstd::bulk::Decompressor::new().map_err(|source| FormatError::Io {
                            object: name,
                            source,
                        })?,
                    ),
            };
            decompressor
                .decompress_to_buffer(&self.payload, &mut self.raw)
                .map_err(|e| not_zstd(&self.name, e))?;
        } else {
            // A frame larger than any the writers aim for (one big entry), or a damaged
            // header: the buffer grows only as bytes decompress, so a length the payload
            // does not back cannot allocate (the header crc is no proof of the length).
            let mut decoder = zstd::stream::read::Decoder::with_buffer(&self.payload[..])
                .map_err(|e| not_zstd(&self.name, e))?
                .single_frame();
            (&mut decoder)
                .take(raw_len as u64 + 1)
                .read_to_end(&mut self.raw)
                .map_err(|e| not_zstd(&self.name, e))?;
        }
        if self.raw.len() != raw_len {
            return Err(FormatError::corrupt(
                &self.name,
                format!(
                    "frame {k} decompresses to {} bytes, header says {raw_len}",
                    self.raw.len()
                ),
            ));
        }
        self.pos = 0;
        self.end0 = self.raw.len();
        self.pos1 = self.raw.len();
        if self.columns {
            let col0 = self
                .raw
                .get(..4)
                .map(|b| u32::from_le_bytes(le4(b)) as usize)
                .filter(|&n| n <= self.raw.len() - 4)
                .ok_or_else(|| {
                    FormatError::corrupt(
                        &self.name,
                        format!("frame {k}: its first column runs past the frame"),
                    )
                })?;
            self.pos = 4;
            self.end0 = 4 + col0;
            self.pos1 = self.end0;
        }
        self.frames += 1;
        Ok(count)
    }

    fn entry_past_end(&self) -> FormatError {
        FormatError::corrupt(
            &self.name,
            format!(
                "frame {} has an entry running past its end",
                self.frames - 1
            ),
        )
    }

    /// Take `n` bytes of the current entry (of its first column, in a two-column frame).
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.end0)
            .ok_or_else(|| self.entry_past_end())?;
        let out = &self.raw[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Take a u32-length-prefixed byte string of the current entry's second column.
    pub(crate) fn take_bytes_col1(&mut self) -> Result<Vec<u8>> {
        let len = self.take_col1(4)?;
        let len = u32::from_le_bytes(le4(&self.raw[len])) as usize;
        let bytes = self.take_col1(len)?;
        Ok(self.raw[bytes].to_vec())
    }

    /// The range of the next `n` bytes of the second column.
    fn take_col1(&mut self, n: usize) -> Result<std::ops::Range<usize>> {
        let end = self
            .pos1
            .checked_add(n)
            .filter(|&e| e <= self.raw.len())
            .ok_or_else(|| self.entry_past_end())?;
        Ok(std::mem::replace(&mut self.pos1, end)..end)
    }

    /// Take a little-endian u64 of the current entry.
    pub(crate) fn take_u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Take a u32-length-prefixed byte string of the current entry.
    pub(crate) fn take_bytes(&mut self) -> Result<Vec<u8>> {
        let len = u32::from_le_bytes(le4(self.take(4)?)) as usize;
        Ok(self.take(len)?.to_vec())
    }

    /// After the trailer fields: check the whole-object hash and that nothing follows.
    /// Returns the object size and the blake3 of the complete object.
    pub(crate) fn finish(&mut self) -> Result<(u64, String)> {
        let actual = self.r.hasher.finalize();
        let mut stored = [0u8; HASH_LEN];
        self.read_exact(&mut stored, || "the trailer (object checksum)".into())?;
        if stored != *actual.as_bytes() {
            return Err(FormatError::ObjectChecksum {
                object: self.name.clone(),
                expected: hex(&stored),
                actual: actual.to_hex().to_string(),
            });
        }
        let mut extra = [0u8; 1];
        loop {
            match self.r.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(FormatError::TrailingBytes {
                        object: self.name.clone(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(FormatError::Io {
                        object: self.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok((self.r.bytes, self.r.hasher.finalize().to_hex().to_string()))
    }
}

/// The builder methods both framed writers (segment, chunk) take, over their `frames` field:
/// one definition so that the two object kinds take the same options.
macro_rules! frame_writer_options {
    () => {
        /// Name the object in error messages (e.g. its store key).
        pub fn named(mut self, name: impl Into<String>) -> Self {
            self.frames.set_name(name.into());
            self
        }

        /// Uncompressed frame size to aim for (default [`crate::frame::DEFAULT_FRAME_TARGET`]).
        pub fn with_frame_target(mut self, bytes: usize) -> Self {
            self.frames.set_target(bytes);
            self
        }

        /// zstd level (default [`crate::frame::DEFAULT_ZSTD_LEVEL`]).
        pub fn with_level(mut self, level: i32) -> Self {
            self.frames.set_level(level);
            self
        }
    };
}
pub(crate) use frame_writer_options;

/// Where the iteration of a verifying reader (segment, chunk) stands. Any error ends it:
/// nothing is yielded after an `Err`, and it ends with `None` only once the trailer has
/// verified the whole object.
pub(crate) enum Progress<S> {
    /// Entries may follow.
    Reading,
    /// The trailer was read and agrees with the frames: the object's summary.
    Done(S),
    /// An error was yielded.
    Failed,
}

impl<S> Progress<S> {
    /// True while entries may follow.
    pub(crate) fn is_reading(&self) -> bool {
        matches!(self, Progress::Reading)
    }

    /// The summary, once the iteration has ended successfully.
    pub(crate) fn summary(&self) -> Option<&S> {
        match self {
            Progress::Done(s) => Some(s),
            _ => None,
        }
    }

    /// The item of one reading step: an entry, the end (`Ok(None)`, after the step recorded
    /// [`Progress::Done`]), or an error, which ends the iteration.
    pub(crate) fn yield_step<T>(&mut self, step: Result<Option<T>>) -> Option<Result<T>> {
        match step {
            Ok(entry) => entry.map(Ok),
            Err(e) => {
                *self = Progress::Failed;
                Some(Err(e))
            }
        }
    }

    /// The summary of an object read to its end; an error naming `object` if an earlier
    /// read failed.
    pub(crate) fn into_summary(self, object: &str) -> Result<S> {
        match self {
            Progress::Done(s) => Ok(s),
            _ => Err(FormatError::corrupt(
                object,
                "an earlier read of this object failed",
            )),
        }
    }
}

/// The first four bytes of `b` as an array (callers pass slices of known length).
pub(crate) fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

/// `len` as a u32 length field; over [`MAX_ENTRY_LEN`], an error naming `what` of `object`.
pub(crate) fn len_u32(object: &str, what: &'static str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| FormatError::TooLarge {
        object: object.to_string(),
        what,
        len: len as u64,
        limit: MAX_ENTRY_LEN,
    })
}

/// Append a u32-length-prefixed byte string, refusing lengths over [`MAX_ENTRY_LEN`].
pub(crate) fn put_bytes(
    out: &mut Vec<u8>,
    object: &str,
    what: &'static str,
    b: &[u8],
) -> Result<()> {
    let len = len_u32(object, what, b.len())?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// Append a byte string with its length already checked by [`len_u32`] (no allocation:
/// writers call this once per entry).
pub(crate) fn put_checked(out: &mut Vec<u8>, len: u32, b: &[u8]) {
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container with one frame whose header (crc and all) claims `raw_len` bytes.
    fn lying_frame(raw_len: u32, entry: &[u8]) -> Vec<u8> {
        let mut obj = b"TITO-TST".to_vec();
        obj.extend_from_slice(&1u32.to_le_bytes());
        obj.extend_from_slice(&crc32c::crc32c(&obj).to_le_bytes());
        let comp = zstd::bulk::compress(entry, 1).unwrap();
        let mut head = vec![TAG_FRAME];
        head.extend_from_slice(&1u32.to_le_bytes());
        head.extend_from_slice(&raw_len.to_le_bytes());
        head.extend_from_slice(&(comp.len() as u32).to_le_bytes());
        head.extend_from_slice(&crc32c::crc32c(&comp).to_le_bytes());
        head.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
        obj.extend_from_slice(&head);
        obj.extend_from_slice(&comp);
        obj
    }

    fn open(obj: &[u8]) -> FrameReader<&[u8]> {
        FrameReader::open(obj, "t".into(), "test", b"TITO-TST", 1..=1, 0)
            .unwrap()
            .0
    }

    /// Regression (fuzz targets frame, segment, chunk): a header's `raw_len` was reserved
    /// before decompressing, so 25 bytes could make a reader allocate 4 GiB.
    #[test]
    fn a_lying_raw_len_allocates_only_what_decompresses() {
        let entry = [7u8; 100];
        for raw_len in [u32::MAX, RESERVE_MAX as u32 + 1, 99, 101] {
            let obj = lying_frame(raw_len, &entry);
            let mut r = open(&obj);
            let err = r.advance().err().expect("length mismatch");
            assert!(err.to_string().contains("frame 0"), "{err}");
            assert!(
                r.buffered_bytes() < 1 << 20,
                "{raw_len}: {}",
                r.buffered_bytes()
            );
        }
        // Honest frames decode either way: reserved, and grown as they decompress.
        let big = vec![3u8; RESERVE_MAX + 10];
        for entry in [&entry[..], &big[..]] {
            let obj = lying_frame(entry.len() as u32, entry);
            let mut r = open(&obj);
            assert!(matches!(r.advance(), Ok(Next::Entry)));
            assert_eq!(r.take(entry.len()).unwrap(), entry);
        }
    }
}
