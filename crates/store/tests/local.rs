//! The conformance suite on the local-directory backend, plus its own guarantees:
//! keys never escape the root, temporary files never show, durability plumbing.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use tito_store::{LocalStore, Store, StoreError};

tito_store::conformance_tests!(async {
    Arc::new(LocalStore::temporary().expect("temp store")) as Arc<dyn Store>
});

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .expect("under")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn keys_cannot_escape_the_root() {
    let outer = tempfile::tempdir().expect("tempdir");
    let root = outer.path().join("root");
    let store = LocalStore::new(&root).expect("store");
    std::fs::write(outer.path().join("secret"), b"outside").expect("write outside");
    for k in [
        "../secret",
        "../escaped",
        "a/../../escaped",
        "/tmp/escaped",
        "a\0b",
        "a\\..\\x",
    ] {
        let put = store.put(k, Bytes::from_static(b"x")).await;
        assert!(
            matches!(put, Err(StoreError::InvalidKey { .. })),
            "put {k:?}: {put:?}"
        );
        let get = store.get(k).await;
        assert!(
            matches!(get, Err(StoreError::InvalidKey { .. })),
            "get {k:?}: {get:?}"
        );
    }
    let del = store.delete_many(&["../secret".to_string()]).await;
    assert!(matches!(del, Err(StoreError::InvalidKey { .. })));
    assert_eq!(
        std::fs::read(outer.path().join("secret")).expect("still there"),
        b"outside"
    );
    assert_eq!(
        files_under(outer.path()),
        ["secret"],
        "nothing written outside or inside"
    );
}

#[tokio::test]
async fn puts_leave_no_temp_files_and_temp_files_are_never_listed() {
    let store = LocalStore::temporary().expect("store");
    store
        .put("a/b/c", Bytes::from_static(b"1"))
        .await
        .expect("put");
    assert!(
        store
            .put_if_absent("a/b/d", Bytes::from_static(b"2"))
            .await
            .expect("pia")
    );
    assert!(
        !store
            .put_if_absent("a/b/d", Bytes::from_static(b"3"))
            .await
            .expect("pia again")
    );
    let mut up = store.put_multipart("a/e").await.expect("upload");
    up.write(Bytes::from_static(b"4")).await.expect("write");
    up.finish().await.expect("finish");
    assert_eq!(files_under(store.root()), ["a/b/c", "a/b/d", "a/e"]);
    // A crash mid-write leaves a temp file: it must stay invisible.
    std::fs::write(store.root().join("a/b/.tito-tmp-deadbeef"), b"partial").expect("fake temp");
    let listed: Vec<_> = store
        .list("")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed, ["a/b/c", "a/b/d", "a/e"]);
    assert_eq!(
        store.get("a/b/d").await.expect("get"),
        Bytes::from_static(b"2")
    );
}

#[tokio::test]
async fn file_and_directory_conflict_names_the_key() {
    let store = LocalStore::temporary().expect("store");
    store
        .put("x", Bytes::from_static(b"file"))
        .await
        .expect("put");
    let err = store
        .put("x/y", Bytes::from_static(b"under a file"))
        .await
        .expect_err("conflict");
    assert!(err.to_string().contains("x/y"), "{err}");
    assert_eq!(
        store.get("x").await.expect("intact"),
        Bytes::from_static(b"file")
    );
}

#[tokio::test]
async fn open_accepts_file_urls_and_bare_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = tito_store::open(&format!("file://{}", dir.path().display()))
        .await
        .expect("file url");
    a.put("k", Bytes::from_static(b"v")).await.expect("put");
    let b = tito_store::open(dir.path().to_str().expect("utf8"))
        .await
        .expect("bare path");
    assert_eq!(
        b.get("k").await.expect("same dir"),
        Bytes::from_static(b"v")
    );
}
