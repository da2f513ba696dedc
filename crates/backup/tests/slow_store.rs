//! A slow store does not end continuous backup: an upload far longer than the lease TTL
//! keeps the owner's lease (nobody else can take it meanwhile), and shipping goes on.

use std::sync::Arc;
use std::time::Duration;

use tito_backup::{BackupConfig, BackupError, BackupService};
use tito_capture::Db;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_store::Store;
use tito_store::fault::{Fault, FaultPlan, FaultStore};
use tito_store::memory::MemoryStore;

async fn commit(db: &Db, key: &str) -> u64 {
    let key = key.as_bytes().to_vec();
    db.transaction_lsn(|t| {
        let key = key.clone();
        async move { t.put(key, b"v".to_vec()) }
    })
    .await
    .expect("commit")
    .1
    .expect("stamped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_longer_than_the_lease_ttl_does_not_end_continuous_backup() {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let db = Db::open(engine).await.unwrap();
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let plan = FaultPlan::new();
    let store: Arc<dyn Store> = Arc::new(FaultStore::new(memory.clone(), plan.clone()));
    let config = BackupConfig {
        lease_ttl: Duration::from_millis(150),
        ship_interval: Duration::from_millis(20),
        ..BackupConfig::default()
    };
    let service = Arc::new(
        BackupService::new(db.clone(), store, config.clone())
            .await
            .unwrap(),
    );
    commit(&db, "first").await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let run = tokio::spawn({
        let service = service.clone();
        async move { service.run_continuous(shutdown).await }
    });
    // Let the first round (and its snapshot) finish, then make the next call very slow.
    while service.stats().snapshot().shipped_lsn < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    plan.fail_call(plan.calls() + 1, Fault::Delay(Duration::from_millis(1200)));
    commit(&db, "during-the-slow-call").await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Meanwhile another shipper cannot take the lease: the owner keeps renewing it.
    let other = BackupService::new(db.clone(), memory.clone(), config)
        .await
        .unwrap();
    match other.ship_log().await {
        Err(BackupError::LeaseHeld { .. }) => {}
        r => panic!("the slow owner's lease must hold: {r:?}"),
    }

    // After the slow call the owner goes on shipping.
    let last = commit(&db, "after").await;
    for _ in 0..500 {
        if service.stats().snapshot().shipped_lsn >= last {
            break;
        }
        assert!(
            !run.is_finished(),
            "continuous backup ended: {:?}",
            run.await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(service.stats().snapshot().shipped_lsn >= last);
    stop.send(true).unwrap();
    run.await.unwrap().expect("continuous backup ends cleanly");
}
