//! The encryption wrapper: the conformance suite through it (memory, local, and the S3 test
//! server), and properties against the plaintext: random objects, ranges and piece sizes
//! round-trip, and any flipped byte, truncation, swapped name or missing key is refused.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use proptest::prelude::*;
use tito_store::encrypt::envelope::{CHUNK, HEADER_LEN, sealed_len};
use tito_store::testing::S3TestServer;
use tito_store::{EncryptStore, Keyring, LocalStore, MemoryStore, Store, StoreError};

fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
    Arc::new(EncryptStore::new(
        inner,
        Keyring::generate(),
        ["plain".to_string()],
    ))
}

mod memory {
    use super::*;
    tito_store::conformance_tests!(async { wrap(Arc::new(MemoryStore::new())) });
}

mod local {
    use super::*;
    tito_store::conformance_tests!(async {
        wrap(Arc::new(LocalStore::temporary().expect("temp store")))
    });
}

mod s3 {
    use super::*;
    tito_store::conformance_tests!(async {
        let prefix = format!("test-encrypt/{:016x}", rand::random::<u64>());
        wrap(Arc::new(
            S3TestServer::settings()
                .config(&prefix)
                .build()
                .expect("S3 store"),
        ))
    });
}

fn stack() -> (Arc<MemoryStore>, EncryptStore) {
    let mem = Arc::new(MemoryStore::new());
    let enc = EncryptStore::new(mem.clone(), Keyring::generate(), ["plain".to_string()]);
    (mem, enc)
}

fn is_corrupt(r: &Result<Bytes, StoreError>, key: &str) -> bool {
    matches!(r, Err(e @ StoreError::Corrupt { .. }) if e.to_string().contains(key))
}

async fn streamed(store: &dyn Store, key: &str) -> Result<Bytes, StoreError> {
    let parts: Vec<Bytes> = store.get_stream(key).await?.try_collect().await?;
    Ok(parts.concat().into())
}

/// Every read path of `key` fails as corrupt (or, when the flipped byte is in the key id
/// of the header, names a key the keyring does not hold).
async fn all_reads_refused(enc: &EncryptStore, key: &str, in_key_id: bool) {
    let refused = |r: &Result<Bytes, StoreError>| {
        is_corrupt(r, key) || (in_key_id && matches!(r, Err(StoreError::KeyMissing { .. })))
    };
    let g = enc.get(key).await;
    assert!(refused(&g), "get: {g:?}");
    let s = streamed(enc, key).await;
    assert!(refused(&s), "stream: {s:?}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Objects of random sizes, written whole or in random pieces, read back whole, as a
    /// stream and in random ranges, equal the plaintext; the stored object is the envelope's
    /// size, never contains the plaintext, and head and list report the plaintext size.
    #[test]
    fn random_objects_round_trip(
        len in prop_oneof![0usize..300, (CHUNK - 2)..(CHUNK + 2), 0usize..(4 * CHUNK + 100)],
        pieces in proptest::collection::vec(1usize..(CHUNK + 500), 1..6),
        multipart in any::<bool>(),
        ranges in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0), 1..6),
        seed in any::<u64>(),
    ) {
        rt().block_on(async {
            let (mem, enc) = stack();
            let data = tito_store::conformance::pattern(seed, 0, len);
            if multipart {
                let mut up = enc.put_multipart("o/k").await.expect("upload");
                let (mut off, mut i) = (0, 0);
                while off < len {
                    let n = pieces[i % pieces.len()].min(len - off);
                    up.write(data.slice(off..off + n)).await.expect("write");
                    off += n;
                    i += 1;
                }
                up.finish().await.expect("finish");
            } else {
                enc.put("o/k", data.clone()).await.expect("put");
            }
            let raw = mem.get("o/k").await.expect("raw");
            prop_assert_eq!(raw.len() as u64, sealed_len(len as u64));
            if len >= 16 {
                prop_assert!(!raw.windows(16).any(|w| w == &data[..16]), "plaintext visible");
            }
            prop_assert_eq!(enc.get("o/k").await.expect("get"), data.clone());
            prop_assert_eq!(streamed(&enc, "o/k").await.expect("stream"), data.clone());
            prop_assert_eq!(enc.head("o/k").await.expect("head").size, len as u64);
            let listed: Vec<_> = enc.list("o/").try_collect().await.expect("list");
            prop_assert_eq!(listed[0].size, len as u64);
            for (a, b) in ranges {
                let (x, y) = ((a * len as f64) as u64, (b * len as f64) as u64);
                let r = x.min(y)..x.max(y);
                let got = enc.get_range("o/k", r.clone()).await.expect("range");
                prop_assert_eq!(got, data.slice(r.start as usize..r.end as usize));
            }
            Ok(())
        })?;
    }

    /// Any single flipped bit anywhere in the stored object, and any truncation, is refused
    /// by every read path as corrupt, naming the object.
    #[test]
    fn any_damage_is_detected(
        len in prop_oneof![0usize..200, 0usize..(3 * CHUNK + 10)],
        at in 0.0f64..1.0,
        bit in 0u8..8,
        cut in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        rt().block_on(async {
            let (mem, enc) = stack();
            let data = tito_store::conformance::pattern(seed, 0, len);
            enc.put("d/k", data).await.expect("put");
            let raw = mem.get("d/k").await.expect("raw");
            let mut flipped = raw.to_vec();
            let i = ((at * raw.len() as f64) as usize).min(raw.len() - 1);
            flipped[i] ^= 1 << bit;
            mem.put("d/k", flipped.into()).await.expect("flip");
            all_reads_refused(&enc, "d/k", (5..13).contains(&i)).await;
            if i >= HEADER_LEN && len > 0 {
                // The chunk holding the flipped byte fails a range read over it too.
                let c = ((i - HEADER_LEN) / (CHUNK + 16)) as u64 * CHUNK as u64;
                let r = c..(c + 1).min(len as u64).max(c);
                if !r.is_empty() {
                    prop_assert!(is_corrupt(&enc.get_range("d/k", r).await, "d/k"));
                }
            }
            let keep = (cut * raw.len() as f64) as usize;
            mem.put("d/k", raw.slice(..keep)).await.expect("truncate");
            prop_assert!(enc.get("d/k").await.is_err(), "truncated to {keep}");
            prop_assert!(streamed(&enc, "d/k").await.is_err(), "truncated stream {keep}");
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn objects_swapped_or_replayed_under_another_name_are_refused() {
    let (mem, enc) = stack();
    let a = Bytes::from(vec![7u8; 3 * CHUNK]);
    enc.put("seg/a", a.clone()).await.expect("put a");
    enc.put("seg/b", Bytes::from_static(b"other"))
        .await
        .expect("put b");
    let raw_a = mem.get("seg/a").await.expect("raw");
    mem.put("seg/b", raw_a.clone()).await.expect("swap");
    assert!(is_corrupt(&enc.get("seg/b").await, "seg/b"));
    assert!(is_corrupt(&streamed(&enc, "seg/b").await, "seg/b"));
    // Chunks reordered within an object, and a chunk dropped at a boundary.
    let mut reordered = raw_a.to_vec();
    let (c1, c2) = (
        HEADER_LEN..HEADER_LEN + CHUNK + 16,
        HEADER_LEN + CHUNK + 16..HEADER_LEN + 2 * (CHUNK + 16),
    );
    let first = reordered[c1.clone()].to_vec();
    let second = reordered[c2.clone()].to_vec();
    reordered[c1].copy_from_slice(&second);
    reordered[c2].copy_from_slice(&first);
    mem.put("seg/a", reordered.into()).await.expect("reorder");
    assert!(is_corrupt(&enc.get("seg/a").await, "seg/a"));
    mem.put("seg/a", raw_a.slice(..HEADER_LEN + 2 * (CHUNK + 16)))
        .await
        .expect("drop last");
    assert!(is_corrupt(&enc.get("seg/a").await, "seg/a"));
    assert!(is_corrupt(&streamed(&enc, "seg/a").await, "seg/a"));
    // An object written without encryption is not silently accepted.
    mem.put("seg/c", Bytes::from_static(b"plain bytes, not an envelope"))
        .await
        .expect("plain");
    assert!(is_corrupt(&enc.get("seg/c").await, "seg/c"));
    // The plaintext keys pass through untouched.
    enc.put("plain", Bytes::from_static(b"config"))
        .await
        .expect("plain put");
    assert_eq!(
        mem.get("plain").await.expect("raw plain"),
        Bytes::from_static(b"config")
    );
}

#[tokio::test]
async fn rotation_keeps_old_objects_readable_and_reseal_moves_them_to_the_new_key() {
    let mem: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let old = Keyring::generate();
    let v1 = EncryptStore::new(mem.clone(), old.clone(), []);
    let big = tito_store::conformance::pattern(1, 0, 5 * CHUNK + 3);
    v1.put("a", big.clone()).await.expect("put a");
    let rotated = old.with_new_key();
    let v2 = EncryptStore::new(mem.clone(), rotated.clone(), []);
    v2.put("b", Bytes::from_static(b"new"))
        .await
        .expect("put b");
    assert_eq!(v2.get("a").await.expect("old key still opens a"), big);
    assert_eq!(v2.sealed_with("a").await.expect("id"), old.write_key().id());
    assert_eq!(
        v2.sealed_with("b").await.expect("id"),
        rotated.write_key().id()
    );
    // Without the new key, b names the key it needs.
    match v1.get("b").await {
        Err(e @ StoreError::KeyMissing { .. }) => {
            assert!(
                e.to_string()
                    .contains(&rotated.write_key().id().to_string()),
                "{e}"
            )
        }
        other => panic!("expected KeyMissing, got {other:?}"),
    }
    assert!(v2.reseal("a").await.expect("reseal a"));
    assert!(
        !v2.reseal("a").await.expect("again"),
        "already on the newest key"
    );
    assert!(
        !v2.reseal("b").await.expect("b"),
        "b was written with the newest key"
    );
    let only_new = Keyring::from_keys(vec![rotated.write_key().clone()]).expect("ring");
    let v3 = EncryptStore::new(mem.clone(), only_new, []);
    assert_eq!(v3.get("a").await.expect("only the new key needed"), big);
    assert!(matches!(
        v1.get("a").await,
        Err(StoreError::KeyMissing { .. })
    ));
}

#[tokio::test]
async fn reseal_of_a_damaged_object_leaves_it_as_it_was() {
    let mem: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let old = Keyring::generate();
    let v1 = EncryptStore::new(mem.clone(), old.clone(), []);
    v1.put("a", tito_store::conformance::pattern(2, 0, 4 * CHUNK))
        .await
        .expect("put");
    let mut raw = mem.get("a").await.expect("raw").to_vec();
    let n = raw.len();
    raw[n - 5] ^= 0x40;
    mem.put("a", raw.clone().into()).await.expect("damage");
    let v2 = EncryptStore::new(mem.clone(), old.with_new_key(), []);
    let err = v2.reseal("a").await.expect_err("damaged");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(mem.get("a").await.expect("raw").to_vec(), raw, "untouched");
    let listed: Vec<_> = mem
        .list("")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed, ["a"]);
}
