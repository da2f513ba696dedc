//! The in-process backup handle: sync makes committed data durable, stop ships what is
//! committed, errors of failed rounds are surfaced in the status and returned by calls.

use std::sync::Arc;
use std::time::Duration;

use tito::{BackupConfig, Tito};
use tito_store::{FaultPlan, FaultStore, MemoryStore, Store};

fn slow() -> BackupConfig {
    // Rounds only at start: whatever ships later was shipped by sync or stop.
    BackupConfig {
        ship_interval: Duration::from_secs(3600),
        ..BackupConfig::default()
    }
}

async fn put(app: &Tito, k: &str) -> u64 {
    let k = k.to_string();
    app.transaction_lsn(|txn| {
        let k = k.clone();
        async move { txn.put(k.into_bytes(), b"v".to_vec()) }
    })
    .await
    .expect("put")
    .1
    .expect("lsn")
}

#[tokio::test]
async fn sync_and_stop_ship_everything_committed() {
    let app = Tito::open("memory://").await.expect("open");
    let backup = app.start_backup("memory://", slow()).await.expect("start");
    let first = put(&app, "a").await;
    let shipped = backup.sync().await.expect("sync");
    assert!(shipped.shipped_lsn >= first, "{shipped:?}");
    assert_eq!(backup.status().await.expect("status").lag.records, 0);
    let last = put(&app, "b").await;
    assert_eq!(backup.status().await.expect("status").lag.records, 1);
    // One backup per database.
    assert!(app.start_backup("memory://", slow()).await.is_err());
    backup.stop().await.expect("stop");
    let status = backup.status().await.expect("status");
    assert!(!status.running);
    assert_eq!(status.stats.shipped_lsn, last);
    assert_eq!(status.lag.records, 0);
    assert!(backup.sync().await.is_err(), "stopped");
    backup.stop().await.expect("stopping twice");
    app.close().await.expect("close");
}

#[tokio::test]
async fn store_failures_are_surfaced() {
    let app = Tito::open("memory://").await.expect("open");
    let plan = FaultPlan::new();
    let store: Arc<dyn Store> =
        Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), plan.clone()));
    let config = BackupConfig {
        ship_interval: Duration::from_millis(10),
        ..BackupConfig::default()
    };
    let backup = app
        .start_backup_to(store, "memory://faulty", config)
        .await
        .expect("start");
    put(&app, "a").await;
    plan.crash_from(plan.calls() + 1);
    let e = backup.sync().await.expect_err("the store is down");
    assert!(e.to_string().contains("injected fault"), "{e}");
    // The continuous rounds fail too, and the status says why.
    let mut seen = None;
    for _ in 0..1000 {
        seen = backup.status().await.expect("status").last_error;
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen.expect("an error in the status")
            .contains("injected fault")
    );
    assert!(backup.status().await.expect("status").stats.errors > 0);
    plan.heal();
    backup.sync().await.expect("healed");
    let mut cleared = false;
    for _ in 0..1000 {
        if backup.status().await.expect("status").last_error.is_none() {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cleared, "a successful round clears the error");
    app.close().await.expect("close");
}
