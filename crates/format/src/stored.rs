//! How change capture stores a log record body in the engine.
//!
//! The engine value of a record is `be_u64(time_ms) ++ stored` (see [`crate::record`]):
//!
//! ```text
//! stored = body                                        the body as it is (first byte 1), or
//!        | 0x82 crc:le_u32 raw_len:varint zstd_frame+  compressed, checksummed (written), or
//!        | 0x81 raw_len:varint zstd_frame              compressed, no checksum (read only)
//! ```
//!
//! `crc = crc32c(raw_len:varint ++ zstd_frame+)`, checked before anything is decompressed.
//! `raw_len` is the body's length, at most [`STORED_MAX`] (`0x81`: [`COMPRESS_MAX`]), and
//! the frames, one after the other, must decompress to exactly that many bytes. A body
//! longer than [`COMPRESS_MAX`] is compressed in frames of that many bytes each, on
//! several threads when the machine has them, so a large commit (a bulk load) pays for
//! compression on one core's share of its body. A commit writes the compressed form only
//! when it is smaller (every byte a commit writes costs disk I/O before it is durable).
//! Bodies written before the checksum was added (`0x81`) stay readable.

use std::borrow::Cow;
use std::cell::RefCell;

use thiserror::Error;

use crate::record::{BODY_VERSION, LogRecord, RecordError, TIME_PREFIX_LEN, decode_body};
use crate::record::{put_varint, varint_len};

/// First byte of a compressed, checksummed stored body (what this build writes).
pub const COMPRESSED: u8 = 0x82;
/// First byte of a compressed stored body without a checksum (written by earlier builds,
/// still read).
pub const COMPRESSED_V1: u8 = 0x81;
/// Bodies shorter than this are stored as they are (a zstd frame has a dozen bytes of
/// overhead).
const COMPRESS_MIN: usize = 64;
/// Raw bytes per zstd frame of a compressed body, and the largest `raw_len` a reader
/// accepts in the `0x81` form (one frame, no checksum: its length is all that bounds the
/// allocation).
pub const COMPRESS_MAX: usize = 1 << 20;
/// Largest body stored compressed, and the largest `raw_len` a reader accepts in the
/// `0x82` form (checked after the checksum), so that a length cannot make it allocate
/// without bound. Larger bodies are stored as they are.
pub const STORED_MAX: usize = 256 << 20;
/// Most threads compressing the frames of one body.
const MAX_THREADS: usize = 4;
/// zstd level of stored bodies: the fastest standard level, as this runs in every commit.
const LEVEL: i32 = 1;
/// Bytes of the checksum after [`COMPRESSED`].
const CRC_LEN: usize = 4;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Why a stored body could not be unpacked.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoredError {
    /// The checksum of a compressed body does not match its bytes.
    #[error("checksum mismatch: stored crc32c {stored:08x}, bytes give {actual:08x}")]
    Checksum {
        /// The checksum stored in the body.
        stored: u32,
        /// The checksum of the bytes found.
        actual: u32,
    },
    /// The body ends inside its checksum.
    #[error("truncated: {len} byte(s) after the marker, the checksum needs {CRC_LEN}")]
    Truncated {
        /// Bytes after the marker.
        len: usize,
    },
    /// The length varint is malformed.
    #[error("malformed length varint")]
    BadLength,
    /// The length is over the largest of its form ([`STORED_MAX`], or [`COMPRESS_MAX`]
    /// for `0x81`).
    #[error("length {len} exceeds the largest compressed body ({max})")]
    TooLarge {
        /// The length found.
        len: u64,
        /// The largest of the form.
        max: usize,
    },
    /// The zstd frame is damaged, or decompresses to another length.
    #[error("{0}")]
    Decompress(String),
}

/// The stored form of a record `body`: compressed if that makes it smaller.
pub fn pack_body(body: Vec<u8>) -> Vec<u8> {
    if body.len() < COMPRESS_MIN || body.len() > STORED_MAX {
        return body;
    }
    let head = 1 + CRC_LEN + varint_len(body.len() as u64);
    let mut out = Vec::with_capacity(head + body.len() / 2);
    out.push(COMPRESSED);
    out.extend_from_slice(&[0; CRC_LEN]);
    put_varint(&mut out, body.len() as u64);
    let packed = if body.len() <= COMPRESS_MAX {
        compress_into(&body, &mut out)
    } else {
        compress_frames(&body, &mut out)
    };
    // Incompressible (or no compressor): the body as it is.
    if packed.is_none() || out.len() >= body.len() {
        return body;
    }
    let crc = crc32c::crc32c(&out[1 + CRC_LEN..]);
    out[1..1 + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Append one zstd frame of `raw` to `out`, with this thread's compressor.
fn compress_into(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        let z = c.as_mut()?.compress(raw).ok()?;
        out.extend_from_slice(&z);
        Some(())
    })
}

/// Append the frames of `body` ([`COMPRESS_MAX`] raw bytes each) to `out`, in order,
/// compressed by up to [`MAX_THREADS`] threads each taking a contiguous run of frames.
fn compress_frames(body: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let frames: Vec<&[u8]> = body.chunks(COMPRESS_MAX).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(frames.len());
    if threads <= 1 {
        return frames.iter().try_for_each(|f| compress_into(f, out));
    }
    let per = frames.len().div_ceil(threads);
    let runs: Vec<Option<Vec<u8>>> = std::thread::scope(|scope| {
        let mut runs = frames.chunks(per);
        // This thread takes the first run; the others the rest.
        let first = runs.next().unwrap_or_default();
        let others: Vec<_> = runs
            .map(|run| {
                scope.spawn(move || {
                    let mut z = Vec::with_capacity(run.iter().map(|f| f.len()).sum::<usize>() / 2);
                    run.iter().try_for_each(|f| compress_into(f, &mut z))?;
                    Some(z)
                })
            })
            .collect();
        let mut z = Vec::new();
        let mine = first
            .iter()
            .try_for_each(|f| compress_into(f, &mut z))
            .map(|()| z);
        std::iter::once(mine)
            .chain(others.into_iter().map(|h| h.join().ok().flatten()))
            .collect()
    });
    for run in runs {
        out.extend_from_slice(&run?);
    }
    Some(())
}

/// The record body of a stored body: borrowed if it was stored as it is.
///
/// A first byte other than the two compressed markers is taken as a plain body (its
/// version byte is checked by [`decode_body`]).
pub fn unpack_body(stored: &[u8]) -> Result<Cow<'_, [u8]>, StoredError> {
    match stored.split_first() {
        Some((&COMPRESSED, rest)) => {
            let (crc, rest) = rest
                .split_first_chunk::<CRC_LEN>()
                .ok_or(StoredError::Truncated { len: rest.len() })?;
            let stored_crc = u32::from_le_bytes(*crc);
            let actual = crc32c::crc32c(rest);
            if stored_crc != actual {
                return Err(StoredError::Checksum {
                    stored: stored_crc,
                    actual,
                });
            }
            decompress(rest, STORED_MAX).map(Cow::Owned)
        }
        Some((&COMPRESSED_V1, rest)) => decompress(rest, COMPRESS_MAX).map(Cow::Owned),
        _ => Ok(Cow::Borrowed(stored)),
    }
}

/// `raw_len:varint zstd_frame+` to the body; `raw_len` may be at most `max`.
fn decompress(b: &[u8], max: usize) -> Result<Vec<u8>, StoredError> {
    let (raw_len, used) = read_varint(b).ok_or(StoredError::BadLength)?;
    if raw_len > max as u64 {
        return Err(StoredError::TooLarge { len: raw_len, max });
    }
    let raw_len = raw_len as usize;
    let body = DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
            }
            let d = d.as_mut().expect("set above");
            d.decompress(&b[used..], raw_len)
                .map_err(|e| format!("zstd: {e}"))
        })
        .map_err(StoredError::Decompress)?;
    if body.len() != raw_len {
        return Err(StoredError::Decompress(format!(
            "decompressed to {} bytes, its length says {raw_len}",
            body.len()
        )));
    }
    Ok(body)
}

/// A LEB128 varint at the start of `b` and its length in bytes.
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Why an engine log value could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoredValueError {
    /// The compressed body could not be unpacked.
    #[error("log record {lsn}: corrupt compressed body: {source}")]
    Stored {
        /// The record's LSN.
        lsn: u64,
        /// What is wrong.
        #[source]
        source: StoredError,
    },
    /// The (unpacked) body does not decode.
    #[error("log record {lsn}: {source}")]
    Record {
        /// The record's LSN.
        lsn: u64,
        /// What is wrong.
        #[source]
        source: RecordError,
    },
}

/// Decode an engine log value `be_u64(time_ms) ++ stored` stored under `lsn`. Also returns
/// the length the value would have with its body uncompressed.
pub fn decode_stored_value(lsn: u64, value: &[u8]) -> Result<(LogRecord, usize), StoredValueError> {
    let record = |source| StoredValueError::Record { lsn, source };
    let (time, stored) = value
        .split_first_chunk::<TIME_PREFIX_LEN>()
        .ok_or_else(|| {
            record(RecordError::ShortValue {
                lsn,
                len: value.len(),
            })
        })?;
    let body = unpack_body(stored).map_err(|source| StoredValueError::Stored { lsn, source })?;
    let rec = LogRecord {
        lsn,
        time_ms: u64::from_be_bytes(*time),
        mutations: decode_body(&body).map_err(record)?,
    };
    Ok((rec, TIME_PREFIX_LEN + body.len()))
}

/// True if `stored` is a compressed body (of either marker); a plain body starts with
/// [`BODY_VERSION`].
pub fn is_compressed(stored: &[u8]) -> bool {
    matches!(stored.first(), Some(&COMPRESSED | &COMPRESSED_V1))
}

const _: () = assert!(BODY_VERSION != COMPRESSED && BODY_VERSION != COMPRESSED_V1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Mutation, encode_body};

    fn legacy_sample() -> Vec<Mutation> {
        (0..4u8)
            .map(|i| Mutation::Put {
                key: format!("user/{i:04}").into_bytes(),
                value: vec![b'a' + i; 40],
            })
            .chain([Mutation::Delete {
                key: b"user/0001".to_vec(),
            }])
            .collect()
    }

    /// A `0x81` body exactly as the build before the checksum wrote it.
    pub(crate) const LEGACY_HEX: &str = "81dd0128b52ffd20ddbd0100340201050109757365722f3030303028613128623228633328640209757365722f3030303107007065000ce0ca0018c095b90a0694a00e";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn legacy_bodies_still_decode() {
        let stored = unhex(LEGACY_HEX);
        let mut value = 42u64.to_be_bytes().to_vec();
        value.extend_from_slice(&stored);
        let (rec, len) = decode_stored_value(7, &value).unwrap();
        assert_eq!(rec.mutations, legacy_sample());
        assert_eq!((rec.lsn, rec.time_ms), (7, 42));
        assert_eq!(len, 8 + encode_body(&legacy_sample()).len());
    }

    #[test]
    fn written_bodies_carry_a_checksum_that_every_byte_change_breaks() {
        let body = encode_body(&legacy_sample());
        let stored = pack_body(body.clone());
        assert_eq!(stored[0], COMPRESSED);
        assert_eq!(unpack_body(&stored).unwrap().as_ref(), body.as_slice());
        for i in 1..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x10;
            let err = unpack_body(&bad).unwrap_err();
            assert!(
                matches!(err, StoredError::Checksum { .. }),
                "byte {i}: {err}"
            );
        }
        for n in 1..stored.len() {
            assert!(unpack_body(&stored[..n]).is_err(), "prefix {n}");
        }
    }

    /// A body of `len` bytes that compresses (JSON-like rows) and differs per frame.
    fn rows(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!("{{\"id\":{i},\"note\":\"row {}\"}}", i * 7919 % 1000).as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn bodies_over_one_frame_compress_in_frames_that_read_back_in_order() {
        for len in [
            COMPRESS_MAX + 1,
            3 * COMPRESS_MAX,
            5 * COMPRESS_MAX + 12_345,
        ] {
            let body = rows(len);
            let stored = pack_body(body.clone());
            assert_eq!(stored[0], COMPRESSED, "{len}: compressed");
            assert!(
                stored.len() * 3 < body.len(),
                "{len}: {} bytes",
                stored.len()
            );
            assert_eq!(
                unpack_body(&stored).unwrap().as_ref(),
                body.as_slice(),
                "{len}"
            );
            // One frame per COMPRESS_MAX bytes of body: each frame starts with zstd's magic.
            let magic = [0x28, 0xb5, 0x2f, 0xfd];
            let frames = stored.windows(4).filter(|w| *w == magic).count();
            assert_eq!(frames, len.div_ceil(COMPRESS_MAX), "{len}");
            let mut bad = stored.clone();
            let at = bad.len() / 2;
            bad[at] ^= 0x01;
            assert!(matches!(
                unpack_body(&bad),
                Err(StoredError::Checksum { .. })
            ));
        }
    }

    #[test]
    fn lengths_over_the_largest_of_each_form_are_refused() {
        for (marker, len, checked) in [
            (COMPRESSED, STORED_MAX as u64 + 1, true),
            (COMPRESSED_V1, COMPRESS_MAX as u64 + 1, false),
        ] {
            let mut sealed = Vec::new();
            put_varint(&mut sealed, len);
            sealed.extend_from_slice(&[0; 16]);
            let mut stored = vec![marker];
            if checked {
                stored.extend_from_slice(&crc32c::crc32c(&sealed).to_le_bytes());
            }
            stored.extend_from_slice(&sealed);
            let err = unpack_body(&stored).unwrap_err();
            assert!(
                matches!(err, StoredError::TooLarge { .. }),
                "{marker:x}: {err}"
            );
        }
    }

    #[test]
    fn errors_name_the_lsn() {
        let mut value = 1u64.to_be_bytes().to_vec();
        value.extend_from_slice(&pack_body(encode_body(&legacy_sample())));
        let last = value.len() - 1;
        value[last] ^= 1;
        let err = decode_stored_value(1234, &value).unwrap_err();
        assert!(
            matches!(err, StoredValueError::Stored { lsn: 1234, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("log record 1234") && msg.contains("checksum"),
            "{msg}"
        );
    }
}
