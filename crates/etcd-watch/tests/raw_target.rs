//! The etcd engine with raw keys (`etcd+watch://hosts` opened as a database: the target of
//! a restore that gives applications their keys back), on a private cluster whose whole
//! keyspace it owns:
//!
//! - the engine conformance suite, the cluster emptied before each check, less the two
//!   checks raw keys cannot pass by construction (etcd has no empty key; keys from
//!   `RAW_META_PREFIX` on hold the engine's metadata): those keys are refused instead;
//! - the metadata is out of reach of user reads, writes and deletes.

mod common;

use std::sync::Arc;

use common::{PRIVATE_MAX_REQUEST_BYTES, PRIVATE_MAX_TXN_OPS, PrivateCluster};
use etcd_client::{Client, DeleteOptions};
use tito_engine::{Engine, EngineError, KeyRange, conformance};
use tito_engine_etcd::{EtcdConfig, EtcdEngine, RAW_META_PREFIX};

async fn raw_engine(endpoints: &[String]) -> Arc<dyn Engine> {
    let mut config = EtcdConfig::raw(endpoints.to_vec());
    config.max_txn_ops = PRIVATE_MAX_TXN_OPS;
    config.max_request_bytes = PRIVATE_MAX_REQUEST_BYTES;
    Arc::new(EtcdEngine::with_config(config).await.expect("open raw"))
}

/// Delete every key of the cluster.
async fn wipe(endpoints: &[String]) {
    let mut c = Client::connect(endpoints, None).await.expect("connect");
    c.delete(vec![0u8], Some(DeleteOptions::new().with_range(vec![0u8])))
        .await
        .expect("wipe");
}

/// Run each check on a fresh raw engine over the emptied cluster, one after another,
/// less those raw keys cannot pass by construction.
macro_rules! run_checks {
    ($endpoints:expr; $($check:ident),* $(,)?) => {
        $(
            if !["check_empty_key", "check_ff_keys"].contains(&stringify!($check)) {
                wipe($endpoints).await;
                conformance::$check(raw_engine($endpoints).await).await;
            }
        )*
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_keys_pass_the_conformance_suite_and_keep_the_metadata_apart() {
    let cluster = PrivateCluster::start(26500 + 40 * (rand::random::<u16>() % 2)).await;
    let endpoints = &cluster.endpoints();
    tito_engine::conformance_checks!(run_checks!(endpoints));

    wipe(endpoints).await;
    let engine = raw_engine(endpoints).await;
    let meta_key = [RAW_META_PREFIX, b"counter"].concat();
    let tx = engine.begin().await.expect("begin");
    tx.put(b"app/a".to_vec(), b"1".to_vec()).expect("put");
    tx.put(vec![0xff, 0xff], b"2".to_vec())
        .expect("ff keys below the metadata");
    tx.put_stamped(b"log/".to_vec(), b"3".to_vec())
        .expect("stamped");
    tx.commit().await.expect("commit");
    // Keys that have no place are refused, not hidden.
    let tx = engine.begin().await.expect("begin");
    for bad in [Vec::new(), meta_key.clone(), vec![0xff; 4]] {
        let e = tx.put(bad.clone(), b"x".to_vec()).expect_err("refused");
        assert!(matches!(e, EngineError::Invalid(_)), "{bad:?}: {e}");
    }
    assert!(
        tx.put_stamped(RAW_META_PREFIX.to_vec(), Vec::new())
            .is_err()
    );
    assert!(
        engine
            .bulk_load(vec![(meta_key.clone(), Vec::new())])
            .await
            .is_err()
    );
    // The metadata cannot be read, deleted or scanned as data.
    assert_eq!(tx.get(&meta_key).await.expect("get"), None);
    tx.delete(meta_key.clone()).expect("a no-op");
    tx.delete_range(&KeyRange::all()).expect("delete all data");
    tx.commit().await.expect("commit");
    let tx = engine.begin().await.expect("begin");
    assert!(
        tx.scan(&KeyRange::all(), 100)
            .await
            .expect("scan")
            .is_empty()
    );
    let view = engine.read_view().await.expect("view");
    assert_eq!(view.get(&meta_key).await.expect("get"), None);
    assert!(
        view.scan(&KeyRange::from(RAW_META_PREFIX.to_vec()), 10)
            .await
            .expect("scan")
            .is_empty()
    );
    // The counter survived the wipe of the data: the next stamp follows the last one.
    let mut c = Client::connect(endpoints, None).await.expect("connect");
    let counter = c.get(meta_key, None).await.expect("get");
    assert_eq!(counter.kvs().len(), 1, "the stamp counter is still there");
}
