//! Fault injection: an error or a simulated crash at every engine call and every store
//! call the backup service makes while shipping, snapshotting and pruning.
//!
//! For each case the scenario runs until the injected fault stops it (or to the end, if
//! the fault was absorbed). Then a new shipper starts on the healthy engine and store,
//! takes the lease over, and backs up. The repository must then restore to exactly the
//! source database's state: nothing committed lost, nothing applied twice (replay checks
//! that LSNs follow each other without a hole or a repeat).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{restore_into_memory, small_config, state_of};
use tito_backup::{BackupConfig, BackupError, BackupService};
use tito_capture::Db;
use tito_catalog::{RetentionPolicy, Target};
use tito_engine::fault::{FaultEngine, FaultPlan as EnginePlan};
use tito_engine::memory::MemoryEngine;
use tito_engine::{Engine, EngineError};
use tito_store::memory::MemoryStore;
use tito_store::{Fault as StoreFault, FaultPlan as StorePlan, FaultStore, Store};

async fn write(db: &Db, round: u32, n: u32) {
    for i in 0..n {
        db.transaction(|txn| async move {
            txn.put(
                format!("key-{:03}", (round * 7 + i) % 40).into_bytes(),
                format!("v{round}.{i}").repeat(20),
            )?;
            if i % 3 == 0 {
                txn.delete(format!("key-{:03}", (round + i * 5) % 40).into_bytes())?;
            }
            Ok::<_, tito_capture::CaptureError>(())
        })
        .await
        .expect("workload commit");
    }
}

/// The scenario: writes interleaved with ship, snapshot and prune steps. Writes go to the
/// healthy engine; only the backup service sees the faults.
async fn scenario(service: &BackupService, writer: &Db) -> Result<(), BackupError> {
    write(writer, 1, 12).await;
    service.ship_log().await?;
    write(writer, 2, 8).await;
    service.snapshot().await?;
    write(writer, 3, 12).await;
    service.ship_log().await?;
    service.snapshot().await?;
    let policy = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    service.prune(&policy, false).await?;
    write(writer, 4, 9).await;
    service.ship_log().await?;
    Ok(())
}

/// Two shapes of the same scenario: few large objects, and many tiny ones (more
/// segment and chunk boundaries to fail at).
fn faulty_config(tiny: bool) -> BackupConfig {
    let base = BackupConfig {
        lease_ttl: Duration::from_millis(30),
        ..small_config()
    };
    if tiny {
        BackupConfig {
            segment_max_records: 3,
            chunk_target_bytes: 300,
            upload_concurrency: 2,
            ..base
        }
    } else {
        base
    }
}

/// Run one case; `arm` injects the fault into fresh plans. Returns the calls counted.
async fn run_case(tiny: bool, arm: impl FnOnce(&EnginePlan, &StorePlan)) -> (u64, u64) {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let writer = Db::open(engine.clone()).await.unwrap();
    let (eplan, splan) = (EnginePlan::new(), StorePlan::new());
    let faulty_engine: Arc<dyn Engine> = Arc::new(FaultEngine::new(engine.clone(), eplan.clone()));
    let faulty_store: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), splan.clone()));
    arm(&eplan, &splan);
    let outcome =
        match BackupService::new(Db::new(faulty_engine), faulty_store, faulty_config(tiny)).await {
            Ok(service) => scenario(&service, &writer).await,
            Err(e) => Err(e),
        };
    let counted = (eplan.calls(), splan.calls());
    if outcome.is_err() {
        // The rest of the workload still happens: the application does not stop when
        // its backup process dies.
        write(&writer, 9, 3).await;
    }

    // Restart: a new shipper on the healthy systems takes over and catches up.
    let config = BackupConfig {
        wait_for_lease: true,
        ..small_config()
    };
    let recovery = BackupService::new(writer.clone(), store.clone(), config)
        .await
        .expect("recovery service");
    recovery.run_backup().await.expect("recovery backup");

    let expected = state_of(engine.as_ref()).await;
    let version = engine.read_view().await.unwrap().version();
    let (result, restored) = restore_into_memory(&store, Target::Latest)
        .await
        .expect("restore after recovery");
    assert_eq!(
        result.restored_lsn, version,
        "restore reaches the last commit"
    );
    assert_eq!(restored, expected, "restored keyspace equals the source");
    counted
}

async fn inject_everywhere(tiny: bool) -> u64 {
    let (engine_calls, store_calls) = run_case(tiny, |_, _| {}).await;
    assert!(
        engine_calls > 20 && store_calls > 10,
        "scenario too small: {engine_calls} engine / {store_calls} store calls"
    );
    let mut cases = 0;
    for k in 1..=engine_calls {
        run_case(tiny, |e, _| {
            e.fail_at(k, || EngineError::Backend("injected I/O error".into()))
        })
        .await;
        run_case(tiny, |e, _| {
            e.fail_at(k, || EngineError::Conflict("injected conflict".into()))
        })
        .await;
        run_case(tiny, |e, _| e.crash_at(k)).await;
        run_case(tiny, |e, _| e.commit_unknown_at(k)).await;
        run_case(tiny, |e, _| e.commit_then_crash_at(k)).await;
        cases += 5;
    }
    for k in 1..=store_calls {
        for fault in [
            StoreFault::Transient,
            StoreFault::Permanent,
            StoreFault::LostAck,
        ] {
            run_case(tiny, |_, s| {
                s.fail_call(k, fault);
            })
            .await;
            cases += 1;
        }
        run_case(tiny, |_, s| {
            s.crash_from(k);
        })
        .await;
        cases += 1;
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_and_store_call_can_fail_or_crash() {
    let cases = inject_everywhere(false).await + inject_everywhere(true).await;
    assert!(cases >= 1000, "only {cases} fault cases");
}
