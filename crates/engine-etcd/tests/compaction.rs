//! Compaction and read views. Compaction is cluster-wide, so this runs in its own test
//! binary: no other test of this crate runs at the same time.

mod common;

use tito_engine::{Engine, EngineError, KeyRange};

async fn put(engine: &dyn Engine, key: &str, value: &str) {
    let tx = engine.begin().await.unwrap();
    tx.put(key.as_bytes().to_vec(), value.as_bytes().to_vec())
        .unwrap();
    tx.commit().await.unwrap();
}

/// A live read view pins its revision: compaction through the engine stops there and
/// the view stays readable; a transaction whose older snapshot was compacted away gets
/// a conflict (retrying takes a fresh snapshot); once the view is gone, compaction
/// goes further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_respects_read_views() {
    let engine = common::engine_with(common::config()).await;
    put(&engine, "a", "1").await;
    let old_tx = engine.begin().await.unwrap();
    assert_eq!(old_tx.get(b"a").await.unwrap(), Some(b"1".to_vec()));
    put(&engine, "a", "2").await;
    let view = engine.read_view().await.unwrap();
    for i in 3..8 {
        put(&engine, "a", &i.to_string()).await;
    }
    let first = engine
        .compact(i64::MAX)
        .await
        .unwrap()
        .expect("compaction up to the pin");
    assert_eq!(
        view.get(b"a").await.unwrap(),
        Some(b"2".to_vec()),
        "view lost its revision"
    );
    assert_eq!(
        view.scan(&KeyRange::all(), 10).await.unwrap(),
        vec![(b"a".to_vec(), b"2".to_vec())]
    );
    let got = old_tx.get(b"zz").await;
    assert!(
        matches!(got, Err(EngineError::Conflict(_))),
        "read at a compacted revision: {got:?}"
    );
    drop(view);
    // The pin is released asynchronously (lease revocation).
    let mut further = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        put(&engine, "a", "x").await;
        if let Some(r) = engine.compact(i64::MAX).await.unwrap() {
            if r > first + 5 {
                further = Some(r);
                break;
            }
        }
    }
    assert!(
        further.is_some(),
        "compaction still held at {first} after the view was dropped"
    );
}
