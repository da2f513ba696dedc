//! The conformance suite and durability checks on the redb engine.

use std::sync::Arc;

use tito_engine::redb::RedbEngine;
use tito_engine::{Engine, EngineError};

/// A fresh engine in a directory that is removed at once: the open file lives on
/// (Unix semantics) until the engine is dropped.
async fn fresh() -> Arc<dyn Engine> {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = RedbEngine::open(dir.path().join("db.redb"))
        .await
        .expect("open redb");
    drop(dir);
    Arc::new(engine)
}

tito_engine::conformance_tests!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.redb");
    tito_engine::conformance::check_durable_reopen(|| {
        let path = path.clone();
        async move { Arc::new(RedbEngine::open(&path).await.expect("reopen")) as Arc<dyn Engine> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_by_url_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("url.redb");
    let url = format!("redb://{}", path.display());
    {
        let engine = tito_engine::open(&url).await.expect("open redb URL");
        assert_eq!(engine.kind(), "redb");
        let tx = engine.begin().await.expect("begin");
        tx.put(b"k".to_vec(), b"v".to_vec()).expect("put");
        tx.commit().await.expect("commit");
        engine.close().await.expect("close");
    }
    let engine = tito_engine::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("open path");
    let tx = engine.begin().await.expect("begin");
    assert_eq!(tx.get(b"k").await.expect("get"), Some(b"v".to_vec()));
    tx.rollback().await.expect("rollback");

    let memory = tito_engine::open("memory://").await.expect("open memory");
    assert_eq!(memory.kind(), "memory");
    let err = tito_engine::open("etcd://localhost:2379")
        .await
        .err()
        .expect("unknown scheme");
    let msg = err.to_string();
    assert!(matches!(err, EngineError::Open(_)), "{msg}");
    assert!(
        msg.contains("etcd://localhost:2379") && msg.contains("redb://"),
        "{msg}"
    );
    let err = tito_engine::open("redb://relative/path")
        .await
        .err()
        .expect("relative redb URL");
    assert!(matches!(err, EngineError::Open(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_engine_refuses_work_and_releases_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.redb");
    let engine = RedbEngine::open(&path).await.expect("open");
    engine.close().await.expect("close");
    assert!(engine.begin().await.is_err(), "begin after close");
    // The file lock is released: a second instance can open while the first value lives.
    let again = RedbEngine::open(&path).await.expect("reopen after close");
    assert_eq!(again.kind(), "redb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_fails_on_a_missing_directory() {
    let err = RedbEngine::open("/nonexistent-dir-for-tito/x.redb")
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, EngineError::Open(_)), "{err}");
    assert!(
        err.to_string().contains("/nonexistent-dir-for-tito/x.redb"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_file_that_is_not_redb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.redb");
    std::fs::write(&path, vec![0x5A; 8192]).expect("write garbage");
    let err = RedbEngine::open(&path)
        .await
        .err()
        .expect("garbage must not open");
    assert!(matches!(err, EngineError::Open(_)), "{err}");
    assert!(err.to_string().contains("garbage.redb"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_of_a_live_database_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.redb");
    let _first = RedbEngine::open(&path).await.expect("open");
    let err = RedbEngine::open(&path).await.err().expect("already open");
    assert!(matches!(err, EngineError::Open(_)), "{err}");
}
