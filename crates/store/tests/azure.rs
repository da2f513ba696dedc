//! The conformance suite against an Azure Blob Storage emulator (Azurite, started by
//! scripts/start-azurite.sh), each test under its own random prefix of the test container.
//! Without the emulator's settings (`AZURITE_BLOB_STORAGE_URL` or target/azure.env) the tests fail.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use tito_store::testing::AzureTestServer;
use tito_store::{RetryPolicy, RetryStore, Store};

fn unique_prefix(tag: &str) -> String {
    format!("test-{tag}/{:016x}", rand::random::<u64>())
}

/// As every opened store is: behind a [`RetryStore`]. Azurite (Node) resets pooled
/// connections now and then, and object_store does not retry a reset POST (the blob batch
/// of a bulk delete) or tell whether a reset conditional PUT was applied; the retrying
/// wrapper does both, as it does for every store `tito` opens.
fn fresh() -> Arc<dyn Store> {
    let cfg = AzureTestServer::settings().config(&unique_prefix("conformance"));
    Arc::new(RetryStore::new(
        Arc::new(cfg.build().expect("Azure store")),
        RetryPolicy::default(),
    ))
}

tito_store::conformance_tests!(async { fresh() });

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_put_goes_up_in_parts_and_reads_back() {
    let store = fresh();
    let size = tito_store::cloud::MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 7;
    let data = tito_store::conformance::pattern(9, 0, size);
    store.put("big", data.clone()).await.expect("multipart put");
    assert_eq!(store.head("big").await.expect("head").size, size as u64);
    assert_eq!(store.get("big").await.expect("get"), data);
}

#[tokio::test]
async fn prefixes_keep_stores_apart_and_urls_open() {
    let server = AzureTestServer::settings();
    let base = unique_prefix("apart");
    let a = tito_store::open(&server.url(&format!("{base}/a")))
        .await
        .expect("a");
    let b = server.config(&format!("{base}/ab")).build().expect("b");
    a.put("k", Bytes::from_static(b"in a"))
        .await
        .expect("put a");
    assert!(b.get("k").await.expect_err("not in b").is_not_found());
    let listed: Vec<_> = b.list("").try_collect().await.expect("list b");
    assert!(listed.is_empty(), "b sees nothing of a: {listed:?}");
    assert!(a.describe().starts_with("az://"), "{}", a.describe());
}

#[tokio::test]
async fn missing_container_is_a_permanent_error() {
    let mut cfg = AzureTestServer::settings().config("p");
    cfg.container = format!("no-such-container-{:08x}", rand::random::<u32>());
    let store = cfg.build().expect("store");
    let err = store
        .put("k", Bytes::from_static(b"x"))
        .await
        .expect_err("no container");
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.to_string().contains('k'), "{err}");
}
