//! The conformance suite against a real S3-compatible server (started by
//! scripts/start-s3.sh), each test under its own random prefix of the test bucket.
//!
//! Reads TITO_TEST_S3_ENDPOINT, TITO_TEST_S3_BUCKET (default tito-test) and the usual
//! AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment, falling back to the
//! file target/s3.env that the script writes (`tito_store::testing`). Without either, the
//! tests fail.

use std::sync::Arc;

use bytes::Bytes;
use tito_store::testing::S3TestServer;
use tito_store::{S3Config, Store};

fn config(prefix: &str) -> S3Config {
    S3TestServer::settings().config(prefix)
}

fn unique_prefix(tag: &str) -> String {
    format!("test-{tag}/{:016x}", rand::random::<u64>())
}

fn fresh() -> Arc<dyn Store> {
    Arc::new(
        config(&unique_prefix("conformance"))
            .build()
            .expect("S3 store"),
    )
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
async fn prefixes_keep_stores_apart() {
    let base = unique_prefix("apart");
    let a = config(&format!("{base}/a")).build().expect("a");
    let b = config(&format!("{base}/ab")).build().expect("b");
    a.put("k", Bytes::from_static(b"in a"))
        .await
        .expect("put a");
    assert!(b.get("k").await.expect_err("not in b").is_not_found());
    use futures::TryStreamExt;
    let listed: Vec<_> = b.list("").try_collect().await.expect("list b");
    assert!(listed.is_empty(), "b sees nothing of a: {listed:?}");
    assert!(
        a.describe().starts_with("s3://") && !a.describe().contains("testing"),
        "{}",
        a.describe()
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_a_transient_error_naming_the_key() {
    let mut cfg = config(&unique_prefix("down"));
    cfg.endpoint = Some("http://127.0.0.1:9".into()); // discard port: nothing listens
    let store = cfg.build().expect("store");
    let err = store.get("some/key").await.expect_err("connection refused");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("some/key"), "{err}");
}

#[tokio::test]
async fn missing_bucket_is_a_permanent_error() {
    let mut cfg = config("p");
    cfg.bucket = format!("no-such-bucket-{:08x}", rand::random::<u32>());
    let store = cfg.build().expect("store");
    let err = store
        .put("k", Bytes::from_static(b"x"))
        .await
        .expect_err("no bucket");
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.to_string().contains('k'), "{err}");
}
