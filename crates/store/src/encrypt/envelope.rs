//! The encrypted object envelope, version 1 (docs/FORMAT.md §9): a 32-byte header, then the
//! plaintext in 64 KiB chunks, each sealed with XChaCha20-Poly1305 and followed by its tag.
//!
//! ```text
//! header  = "TENC" | version u8 (1) | key id (8 bytes) | nonce prefix (19 random bytes)
//! chunk i = ciphertext of plaintext[i*C .. min((i+1)*C, len)] | tag (16 bytes)
//! nonce i = nonce prefix | i as u32 big-endian | 1 if chunk i is the last, else 0
//! aad     = header | object key (UTF-8)
//! ```
//!
//! Every object has at least one chunk (an empty object is one empty last chunk), so its
//! stored size is a function of its plaintext size and back: listings report plaintext
//! sizes without reading anything. The last-chunk flag in the nonce makes a truncation at a
//! chunk boundary fail; the index makes reordering fail; the key in the associated data
//! makes an object copied under another name fail; the header in it makes a changed key id
//! or prefix fail.

use bytes::{Bytes, BytesMut};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use super::keyring::{KEY_ID_LEN, KeyId};
use crate::error::{Result, StoreError};

/// Magic bytes that start every encrypted object.
pub const MAGIC: &[u8; 4] = b"TENC";
/// Envelope version written and read by this build.
pub const VERSION: u8 = 1;
/// Header length: magic, version, key id, nonce prefix.
pub const HEADER_LEN: usize = 4 + 1 + KEY_ID_LEN + PREFIX_LEN;
/// Plaintext bytes per chunk (the last chunk may be shorter, or empty).
pub const CHUNK: usize = 64 * 1024;
/// Authentication tag per chunk.
pub const TAG_LEN: usize = 16;
/// A full chunk as stored.
pub const SEALED_CHUNK: usize = CHUNK + TAG_LEN;
const PREFIX_LEN: usize = 19;

/// Number of chunks of an object with `plain` bytes of plaintext (at least one).
pub fn chunk_count(plain: u64) -> u64 {
    plain.div_ceil(CHUNK as u64).max(1)
}

/// Stored size of an object with `plain` bytes of plaintext.
pub fn sealed_len(plain: u64) -> u64 {
    HEADER_LEN as u64 + plain + TAG_LEN as u64 * chunk_count(plain)
}

/// Plaintext size of a stored object of `sealed` bytes; `None` if no envelope has that size.
pub fn plain_len(sealed: u64) -> Option<u64> {
    let body = sealed.checked_sub(HEADER_LEN as u64)?;
    if body < TAG_LEN as u64 {
        return None;
    }
    let n = body.div_ceil(SEALED_CHUNK as u64);
    let last = body - (n - 1) * SEALED_CHUNK as u64;
    if last < TAG_LEN as u64 {
        return None;
    }
    Some(body - n * TAG_LEN as u64)
}

pub(crate) fn corrupt(key: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A parsed header.
#[derive(Clone)]
pub struct Header {
    bytes: [u8; HEADER_LEN],
}

impl Header {
    /// A new header for `key_id` with a fresh random nonce prefix.
    pub fn new(key_id: &KeyId) -> Header {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..4].copy_from_slice(MAGIC);
        bytes[4] = VERSION;
        bytes[5..5 + KEY_ID_LEN].copy_from_slice(key_id.as_bytes());
        rand::fill(&mut bytes[5 + KEY_ID_LEN..]);
        Header { bytes }
    }

    /// Parse the first [`HEADER_LEN`] bytes of object `key`.
    pub fn parse(key: &str, data: &[u8]) -> Result<Header> {
        if data.len() < HEADER_LEN || &data[..4] != MAGIC {
            return Err(corrupt(
                key,
                "not an encrypted Tito object (no TENC header): written without encryption, or damaged",
            ));
        }
        if data[4] != VERSION {
            return Err(corrupt(
                key,
                format!(
                    "encryption envelope version {} (this build reads {VERSION})",
                    data[4]
                ),
            ));
        }
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(&data[..HEADER_LEN]);
        Ok(Header { bytes })
    }

    /// The id of the key that sealed the object.
    pub fn key_id(&self) -> KeyId {
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&self.bytes[5..5 + KEY_ID_LEN]);
        KeyId(id)
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn nonce(&self, index: u64, last: bool) -> XNonce {
        let mut n = [0u8; 24];
        n[..PREFIX_LEN].copy_from_slice(&self.bytes[5 + KEY_ID_LEN..]);
        n[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&(index as u32).to_be_bytes());
        n[23] = last as u8;
        n.into()
    }
}

/// Seals or opens the chunks of one object: its header, cipher and associated data.
pub struct ObjectCipher {
    header: Header,
    cipher: XChaCha20Poly1305,
    aad: Vec<u8>,
}

impl ObjectCipher {
    /// The cipher for object `key` with `header`, under key bytes `key_bytes`.
    pub fn new(header: Header, key_bytes: &[u8; 32], key: &str) -> ObjectCipher {
        let mut aad = header.as_bytes().to_vec();
        aad.extend_from_slice(key.as_bytes());
        ObjectCipher {
            header,
            cipher: XChaCha20Poly1305::new(key_bytes.into()),
            aad,
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Append chunk `index` of `plain` (at most [`CHUNK`] bytes), sealed, to `out`.
    pub fn seal(&self, index: u64, last: bool, plain: &[u8], out: &mut BytesMut) {
        debug_assert!(plain.len() <= CHUNK);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &self.header.nonce(index, last),
                &self.aad,
                &mut out[start..],
            )
            .expect("a chunk of at most 64 KiB always encrypts");
        out.extend_from_slice(&tag);
    }

    /// Open sealed chunks starting at chunk `first`, the last of them being the object's
    /// last when `ends_object`; `sealed` holds whole chunks only. Returns the plaintext.
    pub fn open(&self, key: &str, first: u64, ends_object: bool, sealed: &[u8]) -> Result<Bytes> {
        let n = sealed.len().div_ceil(SEALED_CHUNK).max(1);
        let mut out = BytesMut::with_capacity(sealed.len());
        for (i, piece) in (0..n).map(|i| {
            let end = ((i + 1) * SEALED_CHUNK).min(sealed.len());
            (i, &sealed[i * SEALED_CHUNK..end])
        }) {
            let index = first + i as u64;
            if index > u32::MAX as u64 {
                return Err(corrupt(key, "more chunks than an envelope can have"));
            }
            if piece.len() < TAG_LEN {
                return Err(corrupt(key, format!("chunk {index} is truncated")));
            }
            let last = ends_object && i + 1 == n;
            let (body, tag) = piece.split_at(piece.len() - TAG_LEN);
            let start = out.len();
            out.extend_from_slice(body);
            self.cipher
                .decrypt_in_place_detached(
                    &self.header.nonce(index, last),
                    &self.aad,
                    &mut out[start..],
                    Tag::from_slice(tag),
                )
                .map_err(|_| {
                    corrupt(
                        key,
                        format!(
                            "chunk {index} failed authentication: the object was altered, \
                             truncated, reordered or stored under another name"
                        ),
                    )
                })?;
        }
        Ok(out.freeze())
    }
}

/// Seal a whole object.
pub fn seal_all(cipher: &ObjectCipher, plain: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(sealed_len(plain.len() as u64) as usize);
    out.extend_from_slice(cipher.header().as_bytes());
    let n = chunk_count(plain.len() as u64);
    for i in 0..n {
        let start = (i as usize * CHUNK).min(plain.len());
        let end = (start + CHUNK).min(plain.len());
        cipher.seal(i, i + 1 == n, &plain[start..end], &mut out);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_both_ways() {
        for p in [
            0u64,
            1,
            100,
            CHUNK as u64 - 1,
            CHUNK as u64,
            CHUNK as u64 + 1,
            3 * CHUNK as u64,
            1 << 30,
        ] {
            assert_eq!(plain_len(sealed_len(p)), Some(p), "plaintext {p}");
        }
        // Sizes no envelope has: too short, or a last chunk shorter than its tag.
        for s in [
            0u64,
            10,
            HEADER_LEN as u64 + 15,
            (HEADER_LEN + SEALED_CHUNK + 3) as u64,
        ] {
            assert_eq!(plain_len(s), None, "sealed {s}");
        }
    }
}
