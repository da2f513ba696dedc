//! The backup service under sustained writes: shipping rounds end, continuous mode still
//! snapshots when due, the lease is renewed during long rounds and released on request.
//! Time is never asserted on: a generous timeout only guards against hangs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tito_backup::lease::{LeaseState, lease_key};
use tito_backup::{BackupConfig, BackupError, BackupService};
use tito_engine::Engine;
use tito_format::layout::{self, ObjectName};
use tito_store::Store;
use tito_store::memory::MemoryStore;

/// Only a guard against a hang: no test relies on it passing by.
const HANG_GUARD: Duration = Duration::from_secs(120);

async fn guarded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return"))
}

/// Every LSN `1..=through` is in the store's segments of timeline 1, with no gap.
async fn assert_log_covered(service: &BackupService, through: u64) {
    let cat = service.repository().catalog().await.expect("catalog");
    let tl = &cat.timelines[&1];
    assert!(tl.gaps.is_empty(), "gaps: {:?}", tl.gaps);
    let run = tl.coverage.first().expect("some coverage");
    assert_eq!(run.first, 1);
    assert!(
        run.last >= through,
        "log covered to {}, not {through}",
        run.last
    );
}

async fn lease_in(engine: &dyn Engine) -> Option<LeaseState> {
    let view = engine.read_view().await.unwrap();
    view.get(&lease_key())
        .await
        .unwrap()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

/// A writer that commits a segment's worth of records after every segment upload is always
/// ahead of the shipper: the log is never empty when the shipper looks again. The round still ends, having shipped
/// everything committed before the call, and leaves the rest for the next round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_ends_when_the_writer_is_always_ahead() {
    let (engine, db) = memory_db().await;
    let store = HookStore::new();
    let service = service(&db, store.clone(), small_config()).await;
    for i in 0..9 {
        commit(&db, format!("before-{i}").into_bytes()).await;
    }
    let before = version(engine.as_ref()).await;
    store.arm(writer_hook(&db, small_config().segment_max_records));

    let shipped = guarded("ship_log", service.ship_log()).await.unwrap();
    assert!(shipped.shipped_lsn >= before, "{shipped:?} before {before}");
    assert!(shipped.complete && shipped.end_lsn >= before, "{shipped:?}");
    assert!(shipped.segments >= 5, "small segments: {shipped:?}");
    // Records committed during the round wait in the engine for the next one.
    let left = db.log_bounds().await.unwrap().expect("records left");
    assert_eq!(left.oldest, shipped.shipped_lsn + 1);

    store.disarm();
    let last = version(engine.as_ref()).await;
    let next = guarded("ship_log", service.ship_log()).await.unwrap();
    assert_eq!(next.shipped_lsn, last);
    assert!(db.log_bounds().await.unwrap().is_none(), "log trimmed");
    assert_log_covered(&service, last).await;
}

/// The same with a writer task committing continuously beside the shipper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ship_log_returns_under_a_concurrent_writer() {
    let (engine, db) = memory_db().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let service = service(&db, store, small_config()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                commit(&db, format!("w-{n:08}").into_bytes()).await;
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    while version(engine.as_ref()).await < 50 {
        tokio::task::yield_now().await;
    }
    for _ in 0..5 {
        let before = version(engine.as_ref()).await;
        let shipped = guarded("ship_log", service.ship_log()).await.unwrap();
        assert!(shipped.shipped_lsn >= before, "{shipped:?} before {before}");
        assert!(shipped.complete, "{shipped:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let committed = writer.await.unwrap();
    assert!(committed >= 50);
    let last = version(engine.as_ref()).await;
    assert_eq!(service.ship_log().await.unwrap().shipped_lsn, last);
    assert_log_covered(&service, last).await;
}

/// With a time budget a round stops after the first segment past it (with a zero budget,
/// after one segment) and the next rounds carry on where it stopped.
#[tokio::test]
async fn a_time_budget_stops_a_round_between_segments() {
    let (engine, db) = memory_db().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let config = BackupConfig {
        segment_max_records: 3,
        ..small_config()
    };
    let service = service(&db, store, config).await;
    for i in 0..10 {
        commit(&db, format!("k{i}").into_bytes()).await;
    }
    let mut rounds = Vec::new();
    loop {
        let r = service.ship_log_within(Duration::ZERO).await.unwrap();
        assert!(r.segments <= 1, "{r:?}");
        rounds.push(r.shipped_lsn);
        if r.complete {
            break;
        }
        assert!(rounds.len() < 10, "no progress: {rounds:?}");
    }
    assert_eq!(rounds, vec![3, 6, 9, 10]);
    assert_log_covered(&service, version(engine.as_ref()).await).await;
}

/// Each segment upload "takes" half the lease TTL (the hook moves the lease's expiry back).
/// A round of many segments outlives its original lease; renewing with each trim keeps it.
#[tokio::test]
async fn a_long_round_renews_its_lease() {
    let (engine, db) = memory_db().await;
    let store = HookStore::new();
    let ttl = Duration::from_secs(600);
    let config = BackupConfig {
        segment_max_records: 1,
        lease_ttl: ttl,
        ..small_config()
    };
    let service = service(&db, store.clone(), config).await;
    for i in 0..6 {
        commit(&db, format!("k{i}").into_bytes()).await;
    }
    let hook_engine = engine.clone();
    store.arm(Arc::new(move || {
        let engine = hook_engine.clone();
        Box::pin(async move {
            tito_engine::transaction(engine.as_ref(), |tx| async move {
                let bytes = tx.get(&lease_key()).await?.expect("lease held");
                let mut l: LeaseState = serde_json::from_slice(&bytes).unwrap();
                l.expires_ms -= ttl.as_millis() as u64 / 2 + 1;
                tx.put(lease_key(), serde_json::to_vec(&l).unwrap())?;
                Ok::<_, tito_engine::EngineError>(())
            })
            .await
            .unwrap();
        })
    }));
    let shipped = service.ship_log().await.expect("the round kept its lease");
    assert_eq!((shipped.segments, shipped.shipped_lsn), (6, 6));
    let lease = lease_in(engine.as_ref()).await.expect("lease");
    assert_eq!(lease.owner, service.lease().owner());
    assert!(lease.expires_ms > tito_backup::now_ms());
}

/// Continuous mode under a writer that is always ahead of the shipper: rounds end, the
/// first snapshot is taken, then more by log volume; a stop ships the rest and releases
/// the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_snapshots_by_volume_under_sustained_writes() {
    let (engine, db) = memory_db().await;
    let store = HookStore::new();
    let config = BackupConfig {
        ship_interval: Duration::from_millis(1),
        snapshot_every_records: Some(4),
        ..small_config()
    };
    let service = Arc::new(service(&db, store.clone(), config).await);
    for i in 0..20 {
        commit(&db, format!("before-{i}").into_bytes()).await;
    }
    store.arm(writer_hook(&db, small_config().segment_max_records));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = {
        let service = service.clone();
        tokio::spawn(async move { service.run_continuous(stop_rx).await })
    };
    guarded("three snapshots", async {
        while service.stats().snapshot().snapshots < 3 {
            assert!(!run.is_finished(), "continuous mode stopped");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    store.disarm();
    stop_tx.send(true).unwrap();
    guarded("run_continuous", run).await.unwrap().unwrap();

    // Three complete snapshots at increasing LSNs, each taken once the shipped log had
    // moved at least 4 past the one before.
    let mut lsns: Vec<u64> = Vec::new();
    for obj in service
        .repository()
        .list(&layout::snapshots_prefix(1))
        .await
        .unwrap()
    {
        if let ObjectName::SnapshotManifest { lsn, .. } = layout::parse(&obj.key) {
            lsns.push(lsn);
        }
    }
    lsns.sort();
    assert!(lsns.len() >= 3, "{lsns:?}");
    assert!(lsns.windows(2).all(|w| w[1] >= w[0] + 4), "{lsns:?}");
    // The stop shipped everything, and released the lease.
    let last = version(engine.as_ref()).await;
    assert_log_covered(&service, last).await;
    assert!(lease_in(engine.as_ref()).await.is_none(), "lease released");
    let other = common::service(&db, store.clone(), small_config()).await;
    other
        .ship_log()
        .await
        .expect("the next shipper starts at once");
}

/// A released lease lets another shipper start at once, without waiting for the TTL.
#[tokio::test]
async fn a_released_lease_lets_another_shipper_start_at_once() {
    let (engine, db) = memory_db().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = service(&db, store.clone(), small_config()).await;
    let b = service(&db, store.clone(), small_config()).await;
    commit(&db, b"k".to_vec()).await;
    a.ship_log().await.unwrap();
    assert!(matches!(
        b.ship_log().await,
        Err(BackupError::LeaseHeld { .. })
    ));
    a.release_lease().await.unwrap();
    assert!(lease_in(engine.as_ref()).await.is_none());
    commit(&db, b"k2".to_vec()).await;
    assert_eq!(b.ship_log().await.unwrap().shipped_lsn, 2);
    // Releasing a lease we do not hold is a no-op.
    a.release_lease().await.unwrap();
    assert_eq!(
        lease_in(engine.as_ref()).await.map(|l| l.owner),
        Some(b.lease().owner().to_string())
    );
}

/// A shipper whose lease expired and was taken over releases nothing: the new holder keeps
/// its lease.
#[tokio::test]
async fn a_release_after_takeover_keeps_the_new_holders_lease() {
    let (engine, db) = memory_db().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // A lease with no TTL is expired as soon as it is taken.
    let old = service(
        &db,
        store.clone(),
        BackupConfig {
            lease_ttl: Duration::ZERO,
            ..small_config()
        },
    )
    .await;
    old.lease().acquire().await.unwrap();
    let new = service(&db, store.clone(), small_config()).await;
    commit(&db, b"k".to_vec()).await;
    new.ship_log().await.expect("takes the expired lease");
    let taken = lease_in(engine.as_ref()).await.expect("lease");
    assert_eq!(taken.owner, new.lease().owner());
    assert_eq!(taken.epoch, 2);

    old.release_lease().await.unwrap();
    assert_eq!(lease_in(engine.as_ref()).await, Some(taken));
    // The old holder stays fenced, and a third shipper is refused.
    assert!(matches!(
        old.ship_log().await,
        Err(BackupError::LeaseHeld { .. })
    ));
    let third = service(&db, store.clone(), small_config()).await;
    assert!(matches!(
        third.ship_log().await,
        Err(BackupError::LeaseHeld { .. })
    ));
}

/// An engine error at any call of a shipping round (the trim after an upload included)
/// never makes the counters miss or double-count a segment: once a clean round follows,
/// `records_shipped` equals the records committed and `shipped_lsn` the newest LSN.
#[tokio::test]
async fn counters_stay_exact_when_a_round_fails_at_any_engine_call() {
    use tito_engine::fault::{FaultEngine, FaultPlan};
    const RECORDS: u64 = 7;
    let mut hit = 0;
    for k in 1.. {
        let plan = FaultPlan::new();
        let memory: Arc<dyn Engine> = Arc::new(tito_engine::memory::MemoryEngine::new());
        let engine: Arc<dyn Engine> = Arc::new(FaultEngine::new(memory, plan.clone()));
        let db = tito_capture::Db::open(engine).await.unwrap();
        for i in 0..RECORDS {
            commit(&db, format!("k{i}").into_bytes()).await;
        }
        let service = service(&db, Arc::new(MemoryStore::new()), small_config()).await;
        let start = plan.calls();
        plan.fail_at(start + k, || {
            tito_engine::EngineError::Backend("injected".into())
        });
        let first = service.ship_log().await;
        let reached = plan.calls() >= start + k;
        plan.reset();
        let second = guarded("ship_log", service.ship_log()).await.unwrap();
        assert_eq!(second.shipped_lsn, RECORDS, "fault at call {k}");
        let stats = service.stats().snapshot();
        assert_eq!(
            (stats.records_shipped, stats.shipped_lsn),
            (RECORDS, RECORDS),
            "fault at call {k} (first round: {first:?})"
        );
        assert_log_covered(&service, RECORDS).await;
        if !reached {
            break; // the round made fewer calls than k: every call has had its fault
        }
        hit += 1;
    }
    assert!(hit > 10, "only {hit} calls were faulted");
}
