//! The check functions of the store crate's fuzz targets (`fuzz/fuzz_targets/`), replayed
//! over their kept corpora by `tests/fuzz_corpus.rs` (through `tito_format::fuzz_corpus`,
//! a dev-dependency: the library itself does not depend on the format crate).
//!
//! `envelope`: the encryption envelope (docs/FORMAT.md §9), the one decoder of stored bytes
//! this crate adds. The first input byte picks a mode:
//! - `0`: the rest is a stored object. Its key id is set to the fuzzing key's (so opening
//!   gets past the key lookup), then its header is parsed and its chunks opened, whole and
//!   from every chunk on: nothing may panic, and an object that opens (only a real one
//!   can: a tag cannot be forged) must seal back to the same bytes.
//! - `1`: `[more][at lo][at hi] ++ plaintext`: the plaintext, repeated to fill `more % 4`
//!   more 64 KiB chunks (so objects of several chunks occur), is sealed, then must open to itself,
//!   whole and chunk by chunk; the object with byte `at` flipped, cut at `at`, or opened
//!   under another name must fail.
//!
//! Not a stable API: for the fuzz targets and tests only.

use bytes::BytesMut;
use zeroize::Zeroizing;

use crate::encrypt::Key;
use crate::encrypt::envelope::{
    CHUNK, HEADER_LEN, Header, MAGIC, ObjectCipher, SEALED_CHUNK, VERSION, chunk_count, plain_len,
    seal_all, sealed_len,
};

const NAME: &str = "timelines/00000001/log/00000000000000000001-00000000000000000002_0000000000001-0000000000002.seg";
const KEY_ID_AT: usize = MAGIC.len() + 1;

fn key() -> Key {
    Key::from_bytes(Zeroizing::new([0x5a; 32]))
}

/// A header for the fuzzing key with a nonce prefix taken from `seed`.
fn header(seed: &[u8]) -> Header {
    let key = key();
    let mut bytes = [0u8; HEADER_LEN];
    bytes[..MAGIC.len()].copy_from_slice(MAGIC);
    bytes[MAGIC.len()] = VERSION;
    bytes[KEY_ID_AT..KEY_ID_AT + 8].copy_from_slice(key.id().as_bytes());
    for (i, b) in bytes[KEY_ID_AT + 8..].iter_mut().enumerate() {
        *b = seed.get(i).copied().unwrap_or(i as u8);
    }
    Header::parse(NAME, &bytes).expect("a well-formed header")
}

/// The fuzz target `envelope` (see the module docs).
pub fn envelope(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 2 {
        0 => stored_object(rest),
        _ => sealed_round_trip(rest),
    }
}

fn stored_object(rest: &[u8]) {
    let key = key();
    let mut object = rest.to_vec();
    if object.len() >= KEY_ID_AT + 8 {
        object[KEY_ID_AT..KEY_ID_AT + 8].copy_from_slice(key.id().as_bytes());
    }
    if let Some(plain) = plain_len(object.len() as u64) {
        assert_eq!(
            sealed_len(plain),
            object.len() as u64,
            "sizes map both ways"
        );
    }
    let Ok(header) = Header::parse(NAME, &object) else {
        return;
    };
    assert_eq!(header.key_id(), key.id());
    let cipher = ObjectCipher::new(header, key.bytes(), NAME);
    let body = &object[HEADER_LEN..];
    // Only a real object opens (a tag cannot be forged); when it does, it is exactly what
    // sealing its plaintext under its header gives, and every run of its chunks opens to
    // its part of the plaintext.
    let Ok(plain) = cipher.open(NAME, 0, true, body) else {
        return;
    };
    assert_eq!(
        &seal_all(&cipher, &plain)[..],
        &object[..],
        "open then seal"
    );
    for first in 1..body.len().div_ceil(SEALED_CHUNK) {
        let part = cipher
            .open(NAME, first as u64, true, &body[first * SEALED_CHUNK..])
            .expect("the chunks of an object that opens open from any chunk on");
        assert_eq!(&part[..], &plain[first * CHUNK..]);
    }
}

fn sealed_round_trip(rest: &[u8]) {
    let [more, lo, hi, plain @ ..] = rest else {
        return;
    };
    // Up to three more 64 KiB chunks, so objects of several chunks occur.
    let more = usize::from(*more % 4);
    let plain: Vec<u8> = if more == 0 || plain.is_empty() {
        plain.to_vec()
    } else {
        plain
            .iter()
            .copied()
            .cycle()
            .take(CHUNK * more + plain.len())
            .collect()
    };
    let key = key();
    let cipher = ObjectCipher::new(header(rest), key.bytes(), NAME);
    let sealed = seal_all(&cipher, &plain);
    assert_eq!(sealed.len() as u64, sealed_len(plain.len() as u64));
    assert_eq!(plain_len(sealed.len() as u64), Some(plain.len() as u64));
    let body = &sealed[HEADER_LEN..];
    let opened = cipher
        .open(NAME, 0, true, body)
        .expect("a sealed object opens");
    assert_eq!(&opened[..], &plain[..], "whole object");
    // Chunk by chunk, as a ranged read opens them.
    let chunks = chunk_count(plain.len() as u64) as usize;
    let mut again = BytesMut::new();
    for i in 0..chunks {
        let end = ((i + 1) * SEALED_CHUNK).min(body.len());
        let part = cipher
            .open(
                NAME,
                i as u64,
                i + 1 == chunks,
                &body[i * SEALED_CHUNK..end],
            )
            .expect("each chunk opens alone");
        again.extend_from_slice(&part);
    }
    assert_eq!(&again[..], &plain[..], "chunk by chunk");
    // Damage: one flipped byte (header included), a cut, another name.
    let at = usize::from(u16::from_le_bytes([*lo, *hi])) * 97 % sealed.len();
    let mut flipped = sealed.to_vec();
    flipped[at] ^= 0x01;
    if let Ok(h) = Header::parse(NAME, &flipped) {
        if h.key_id() == key.id() {
            let c = ObjectCipher::new(h, key.bytes(), NAME);
            assert!(
                c.open(NAME, 0, true, &flipped[HEADER_LEN..]).is_err(),
                "flip at {at}"
            );
        }
    }
    if at > HEADER_LEN {
        assert!(
            cipher.open(NAME, 0, true, &sealed[HEADER_LEN..at]).is_err(),
            "cut at {at}"
        );
    }
    let other = ObjectCipher::new(header(rest), key.bytes(), "restore-points/other");
    assert!(
        other.open(NAME, 0, true, body).is_err(),
        "opened under another name"
    );
}

/// Valid inputs: sealed objects of the real writer (mode 0 sees them with their key id
/// already the fuzzing key's) and round-trip descriptions (mode 1).
pub fn envelope_seeds() -> Vec<Vec<u8>> {
    let key = key();
    let mut out = Vec::new();
    for plain in [&b""[..], b"tito", &[7u8; 300][..]] {
        let cipher = ObjectCipher::new(header(plain), key.bytes(), NAME);
        let mut seed = vec![0];
        seed.extend_from_slice(&seal_all(&cipher, plain));
        out.push(seed);
        let mut seed = vec![1, plain.len() as u8, 3, 0];
        seed.extend_from_slice(plain);
        out.push(seed);
    }
    out
}
