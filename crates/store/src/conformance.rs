//! The store conformance suite. Every backend runs it through [`crate::conformance_tests!`]:
//!
//! ```ignore
//! tito_store::conformance_tests!(async { std::sync::Arc::new(MyStore::new()) as Arc<dyn Store> });
//! ```
//!
//! The expression must produce a fresh, empty store each time it is evaluated (one per
//! test; tests run in parallel). The calling crate needs `tokio` (with `macros`,
//! `rt-multi-thread`). Each check is a public async fn here that panics on a violation.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use crate::error::StoreError;
use crate::store::Store;

/// Expands to one `#[tokio::test]` per conformance check, each on a fresh store made by
/// evaluating the given async block.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            put_get_round_trip, overwrite_replaces_whole_object, missing_objects_are_not_found,
            put_if_absent_is_create_only, ranges_and_edge_cases, large_object_streams_bounded,
            list_is_sorted_and_filtered_by_prefix, list_paginates_past_1000_keys,
            delete_many_ignores_missing_keys, head_reports_sizes, empty_objects,
            unusual_valid_keys_round_trip, invalid_keys_are_rejected,
            multipart_abort_leaves_nothing, describe_has_no_secrets);
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::Store> = $make.await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

type S = Arc<dyn Store>;

/// Deterministic pseudo-random bytes: block `i` of a stream seeded by `seed`.
pub fn pattern(seed: u64, offset: u64, len: usize) -> Bytes {
    // xorshift64* per 8-byte word, indexed by absolute word number, so any slice of the
    // stream can be regenerated on its own.
    let mut out = BytesMut::with_capacity(len);
    let mut word = offset / 8;
    let mut skip = (offset % 8) as usize;
    while out.len() < len {
        let mut x = seed ^ word.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let bytes = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (8 - skip).min(len - out.len());
        out.extend_from_slice(&bytes[skip..skip + take]);
        skip = 0;
        word += 1;
    }
    out.freeze()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn keys(store: &S, prefix: &str) -> Vec<String> {
    let metas: Vec<_> = store.list(prefix).try_collect().await.expect("list");
    metas.into_iter().map(|m| m.key).collect()
}

fn assert_not_found(r: Result<impl std::fmt::Debug, StoreError>, key: &str, op: &str) {
    match r {
        Err(e @ StoreError::NotFound { .. }) => {
            assert!(
                e.to_string().contains(key),
                "{op}: error {e} does not name key {key:?}"
            )
        }
        other => panic!("{op} of missing {key:?}: expected NotFound, got {other:?}"),
    }
}

/// put then get returns the same bytes, for several sizes and nested keys.
pub async fn put_get_round_trip(store: S) {
    for (i, size) in [1usize, 17, 4096, 1 << 20].into_iter().enumerate() {
        let key = format!("rt/dir{i}/obj-{size}");
        let data = pattern(i as u64, 0, size);
        store.put(&key, data.clone()).await.expect("put");
        assert_eq!(
            store.get(&key).await.expect("get"),
            data,
            "round trip of {key}"
        );
    }
}

/// A second put replaces the object entirely (shorter content leaves no tail behind).
pub async fn overwrite_replaces_whole_object(store: S) {
    store
        .put("ow/k", pattern(1, 0, 10_000))
        .await
        .expect("put 1");
    store.put("ow/k", b("short")).await.expect("put 2");
    assert_eq!(store.get("ow/k").await.expect("get"), b("short"));
    assert_eq!(store.head("ow/k").await.expect("head").size, 5);
}

/// Every read of a missing object fails with NotFound naming the key.
pub async fn missing_objects_are_not_found(store: S) {
    let key = "missing/nothing-here";
    assert_not_found(store.get(key).await, key, "get");
    assert_not_found(store.get_range(key, 0..1).await, key, "get_range");
    assert_not_found(store.get_range(key, 0..0).await, key, "empty get_range");
    assert_not_found(store.head(key).await, key, "head");
    assert_not_found(store.get_stream(key).await.map(|_| ()), key, "get_stream");
    // A "directory" made by a deeper key is not an object either.
    store.put("missing/dir/leaf", b("x")).await.expect("put");
    assert_not_found(
        store.get("missing/dir").await,
        "missing/dir",
        "get of a directory",
    );
    assert_not_found(
        store.head("missing/dir").await,
        "missing/dir",
        "head of a directory",
    );
}

/// put_if_absent creates once, never overwrites, and exactly one of many racers wins.
pub async fn put_if_absent_is_create_only(store: S) {
    assert!(
        store
            .put_if_absent("pia/k", b("first"))
            .await
            .expect("create")
    );
    assert!(
        !store
            .put_if_absent("pia/k", b("second"))
            .await
            .expect("second create")
    );
    assert_eq!(store.get("pia/k").await.expect("get"), b("first"));
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { (i, s.put_if_absent("pia/race", b(&format!("w{i}"))).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        let (i, created) = r.await.expect("join");
        if created.expect("put_if_absent") {
            winners.push(i);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one racer creates the object: {winners:?}"
    );
    assert_eq!(
        store.get("pia/race").await.expect("get"),
        b(&format!("w{}", winners[0]))
    );
    // An ordinary put still overwrites.
    store.put("pia/k", b("third")).await.expect("put");
    assert_eq!(store.get("pia/k").await.expect("get"), b("third"));
}

/// Ranges: whole, head, tail, middle, single byte, empty; out-of-bounds rejected.
pub async fn ranges_and_edge_cases(store: S) {
    let data = pattern(7, 0, 1000);
    store.put("rng/k", data.clone()).await.expect("put");
    for r in [
        0..1000u64,
        0..1,
        0..10,
        990..1000,
        999..1000,
        123..457,
        0..0,
        500..500,
        1000..1000,
    ] {
        let got = store
            .get_range("rng/k", r.clone())
            .await
            .expect("get_range");
        assert_eq!(
            got,
            data.slice(r.start as usize..r.end as usize),
            "range {r:?}"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    for r in [
        0..1001u64,
        999..1001,
        1000..1001,
        1001..1001,
        2000..3000,
        10..5,
    ] {
        match store.get_range("rng/k", r.clone()).await {
            Err(e @ StoreError::InvalidRange { .. }) => {
                assert!(e.to_string().contains("rng/k"), "{e} names the key")
            }
            other => {
                panic!("range {r:?} of 1000-byte object: expected InvalidRange, got {other:?}")
            }
        }
    }
}

/// Size of the large object check.
pub const LARGE_SIZE: u64 = 64 << 20;

/// A 64 MiB object uploaded in parts and read back as a stream in bounded chunks; content
/// compared by hash without ever holding the whole object in the test.
pub async fn large_object_streams_bounded(store: S) {
    const PIECE: usize = 1 << 20;
    let key = "large/obj";
    let mut up = store.put_multipart(key).await.expect("put_multipart");
    let mut sent = blake3::Hasher::new();
    let mut off = 0u64;
    while off < LARGE_SIZE {
        // Odd piece sizes so parts do not line up with pieces.
        let len = (PIECE as u64 + 12_345).min(LARGE_SIZE - off) as usize;
        let piece = pattern(42, off, len);
        sent.update(&piece);
        up.write(piece).await.expect("upload write");
        off += len as u64;
    }
    up.finish().await.expect("upload finish");
    assert_eq!(store.head(key).await.expect("head").size, LARGE_SIZE);

    let mut stream = store.get_stream(key).await.expect("get_stream");
    let (mut got, mut total, mut chunks, mut max_chunk) =
        (blake3::Hasher::new(), 0u64, 0u32, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("stream chunk");
        got.update(&chunk);
        total += chunk.len() as u64;
        chunks += 1;
        max_chunk = max_chunk.max(chunk.len());
    }
    assert_eq!(total, LARGE_SIZE, "streamed size");
    assert_eq!(got.finalize(), sent.finalize(), "streamed content hash");
    assert!(
        chunks > 1 && max_chunk <= 16 << 20,
        "streamed in bounded chunks: {chunks} chunks, max {max_chunk}"
    );
    // Ranges across part boundaries match the generator.
    for r in [(8 << 20) - 100..(8 << 20) + 100, LARGE_SIZE - 7..LARGE_SIZE] {
        let got = store
            .get_range(key, r.clone())
            .await
            .expect("range of large object");
        assert_eq!(
            got,
            pattern(42, r.start, (r.end - r.start) as usize),
            "range {r:?}"
        );
    }
    store
        .delete_many(&[key.to_string()])
        .await
        .expect("delete large");
}

/// Listing returns keys in byte order and filters by a plain string prefix.
pub async fn list_is_sorted_and_filtered_by_prefix(store: S) {
    let all = [
        "p/a-b", "p/a/b", "p/a/c/d", "p/a0", "p/ab", "p/b-", "p/b/x", "q/z", "pz",
    ];
    for (i, k) in all.iter().rev().enumerate() {
        store
            .put(k, pattern(i as u64, 0, i + 1))
            .await
            .expect("put");
    }
    let mut sorted: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(keys(&store, "").await, sorted, "full listing sorted");
    assert_eq!(
        keys(&store, "p/").await,
        ["p/a-b", "p/a/b", "p/a/c/d", "p/a0", "p/ab", "p/b-", "p/b/x"]
    );
    assert_eq!(
        keys(&store, "p/a").await,
        ["p/a-b", "p/a/b", "p/a/c/d", "p/a0", "p/ab"]
    );
    assert_eq!(keys(&store, "p/a/").await, ["p/a/b", "p/a/c/d"]);
    assert_eq!(keys(&store, "p/a/c/d").await, ["p/a/c/d"]);
    assert_eq!(keys(&store, "p").await.len(), 8);
    assert!(keys(&store, "nothing/").await.is_empty());
    assert!(keys(&store, "p/zz").await.is_empty());
    let metas: Vec<_> = store.list("p/b").try_collect().await.expect("list");
    assert_eq!(
        metas.iter().map(|m| m.size).collect::<Vec<_>>(),
        [4, 3],
        "sizes in listing"
    );
}

/// More than 1,000 keys (one S3 page) are all listed, in order; bulk delete clears them.
pub async fn list_paginates_past_1000_keys(store: S) {
    const N: usize = 1_050;
    let names: Vec<String> = (0..N).map(|i| format!("page/k{i:05}")).collect();
    futures::stream::iter(names.iter().cloned())
        .map(|k| {
            let s = store.clone();
            async move { s.put(&k, Bytes::from(k.clone().into_bytes())).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("puts");
    assert_eq!(keys(&store, "page/").await, names, "all {N} keys, in order");
    assert_eq!(keys(&store, "page/k01").await.len(), 50);
    store.delete_many(&names).await.expect("delete_many");
    assert!(keys(&store, "page/").await.is_empty(), "all deleted");
}

/// delete_many removes what exists and accepts missing keys and an empty list.
pub async fn delete_many_ignores_missing_keys(store: S) {
    for k in ["del/a", "del/b", "del/c"] {
        store.put(k, b(k)).await.expect("put");
    }
    let doomed = vec![
        "del/a".to_string(),
        "del/never".to_string(),
        "del/c".to_string(),
    ];
    store.delete_many(&doomed).await.expect("delete_many");
    assert_eq!(keys(&store, "del/").await, ["del/b"]);
    store.delete_many(&doomed).await.expect("delete again");
    store.delete_many(&[]).await.expect("delete nothing");
    assert_not_found(store.get("del/a").await, "del/a", "get after delete");
}

/// head reports exact sizes and a plausible modification time.
pub async fn head_reports_sizes(store: S) {
    let now_ms = crate::range::millis(std::time::SystemTime::now());
    for size in [0usize, 1, 1000, (1 << 20) + 3] {
        let key = format!("head/{size}");
        store.put(&key, pattern(3, 0, size)).await.expect("put");
        let m = store.head(&key).await.expect("head");
        assert_eq!((m.key.as_str(), m.size), (key.as_str(), size as u64));
        let skew = 10 * 60 * 1000;
        assert!(
            m.last_modified_ms + skew > now_ms && m.last_modified_ms < now_ms + skew,
            "mtime {m:?}"
        );
    }
}

/// Empty objects behave like any other: stored, listed, read whole, ranged and streamed.
pub async fn empty_objects(store: S) {
    store.put("empty/put", Bytes::new()).await.expect("put");
    assert!(
        store
            .put_if_absent("empty/pia", Bytes::new())
            .await
            .expect("put_if_absent")
    );
    let up = store
        .put_multipart("empty/multi")
        .await
        .expect("put_multipart");
    up.finish().await.expect("finish empty upload");
    for k in ["empty/multi", "empty/pia", "empty/put"] {
        assert!(store.get(k).await.expect("get").is_empty());
        assert!(store.get_range(k, 0..0).await.expect("range").is_empty());
        let streamed: Vec<Bytes> = store
            .get_stream(k)
            .await
            .expect("stream")
            .try_collect()
            .await
            .expect("chunks");
        assert_eq!(streamed.iter().map(|c| c.len()).sum::<usize>(), 0);
        assert_eq!(store.head(k).await.expect("head").size, 0);
    }
    let metas: Vec<_> = store.list("empty/").try_collect().await.expect("list");
    assert_eq!(
        metas
            .iter()
            .map(|m| (m.key.as_str(), m.size))
            .collect::<Vec<_>>(),
        [("empty/multi", 0), ("empty/pia", 0), ("empty/put", 0)]
    );
}

/// Keys with spaces, Unicode, dots, '%', '#', '=', '&', '+' and other punctuation.
pub async fn unusual_valid_keys_round_trip(store: S) {
    let odd = [
        "odd/sp ace/fi le",
        "odd/ünï/cødé",
        "odd/😀",
        "odd/a..b",
        "odd/..a",
        "odd/x=1&y=%20",
        "odd/a#1",
        "odd/~!@$^()[]{}';,+",
        "odd/UPPER/lower",
        "odd/-_.",
        "odd/%2F",
        "odd/a:b",
    ];
    for k in odd {
        crate::key::validate_key(k).expect("valid key");
        store
            .put(k, b(k))
            .await
            .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
    }
    for k in odd {
        assert_eq!(
            store
                .get(k)
                .await
                .unwrap_or_else(|e| panic!("get {k:?}: {e}")),
            b(k)
        );
    }
    let mut expected: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        keys(&store, "odd/").await,
        expected,
        "listed verbatim, in byte order"
    );
}

/// Keys that could escape the root or are malformed are rejected by every operation.
pub async fn invalid_keys_are_rejected(store: S) {
    for k in [
        "../escape",
        "a/../../escape",
        "/abs",
        "a//b",
        "a/",
        "",
        "a\0b",
        "a\\b",
        ".",
        "x/./y",
        "a\nb",
    ] {
        let named = |r: Result<(), StoreError>, op: &str| match r {
            Err(StoreError::InvalidKey { key, .. }) => assert_eq!(key, k, "{op}"),
            other => panic!("{op} of {k:?}: expected InvalidKey, got {other:?}"),
        };
        named(store.put(k, b("x")).await, "put");
        named(
            store.put_if_absent(k, b("x")).await.map(|_| ()),
            "put_if_absent",
        );
        named(store.put_multipart(k).await.map(|_| ()), "put_multipart");
        named(store.get(k).await.map(|_| ()), "get");
        named(store.get_range(k, 0..1).await.map(|_| ()), "get_range");
        named(store.get_stream(k).await.map(|_| ()), "get_stream");
        named(store.head(k).await.map(|_| ()), "head");
        named(store.delete_many(&[k.to_string()]).await, "delete_many");
    }
    for p in ["../", "/abs", "a//"] {
        let r: Result<Vec<_>, _> = store.list(p).try_collect().await;
        assert!(
            matches!(r, Err(StoreError::InvalidKey { .. })),
            "list {p:?}: {r:?}"
        );
    }
    assert!(keys(&store, "").await.is_empty(), "nothing was written");
}

/// An aborted or dropped upload leaves no object.
pub async fn multipart_abort_leaves_nothing(store: S) {
    let mut up = store
        .put_multipart("mp/aborted")
        .await
        .expect("put_multipart");
    up.write(pattern(5, 0, 100_000)).await.expect("write");
    up.abort().await.expect("abort");
    let mut up = store
        .put_multipart("mp/dropped")
        .await
        .expect("put_multipart");
    up.write(pattern(5, 0, 1000)).await.expect("write");
    drop(up);
    assert_not_found(
        store.head("mp/aborted").await,
        "mp/aborted",
        "head after abort",
    );
    assert_not_found(
        store.head("mp/dropped").await,
        "mp/dropped",
        "head after drop",
    );
    assert!(
        keys(&store, "").await.is_empty(),
        "no object or temp file listed"
    );
    // A finished small upload (one part) is visible whole.
    let mut up = store.put_multipart("mp/done").await.expect("put_multipart");
    for i in 0..3u64 {
        up.write(pattern(6, i * 333, 333)).await.expect("write");
    }
    up.finish().await.expect("finish");
    assert_eq!(store.get("mp/done").await.expect("get"), pattern(6, 0, 999));
}

/// describe() is a URL and never contains the secret key.
pub async fn describe_has_no_secrets(store: S) {
    let d = store.describe();
    assert!(d.contains("://"), "describe is a URL: {d}");
    if let Ok(secret) = std::env::var("AWS_SECRET_ACCESS_KEY") {
        assert!(
            secret.is_empty() || !d.contains(&secret),
            "describe leaks the secret: {d}"
        );
    }
}
