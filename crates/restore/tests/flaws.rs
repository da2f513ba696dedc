//! One test per flaw of the original backup module (see shared/PRODUCT.md), each showing
//! that Tito does not have it.

mod common;

use std::sync::Arc;

use common::{Fixture, restore_into_memory, small_config, state_of};
use tito_backup::{BackupConfig, BackupError, BackupService};
use tito_capture::Db;
use tito_catalog::{RetentionPolicy, Target};
use tito_engine::memory::MemoryEngine;
use tito_engine::{Engine, KeyRange};
use tito_format::layout::{self, ObjectName};
use tito_queue::Event;
use tito_restore::{NoProgress, RestoreError, RestoreOptions, restore};
use tito_store::memory::MemoryStore;
use tito_store::{FaultPlan, FaultStore, Store};

async fn keys_in_store(store: &Arc<dyn Store>) -> Vec<String> {
    use futures::TryStreamExt;
    store
        .list("")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .unwrap()
}

/// Flaw 1: an entry committed after a shipping scan but stamped before its marker was never
/// shipped. Here the log position is the commit-ordered LSN, assigned at commit.
#[tokio::test]
async fn flaw01_transaction_committing_after_a_ship_is_still_shipped() {
    let fx = Fixture::new().await;
    fx.put(&[(b"a", b"1")]).await;
    let slow = fx.db.begin().await.unwrap(); // begins (and "timestamps") before the ship
    slow.put(b"slow".to_vec(), b"late".to_vec()).unwrap();
    fx.service.run_backup().await.unwrap();
    fx.put(&[(b"b", b"2")]).await;
    slow.commit().await.unwrap(); // commits after the ship scanned the log
    fx.service.ship_log().await.unwrap();
    let (_, state) = fx.restore_to(Target::Latest).await.unwrap();
    assert_eq!(state, state_of(fx.engine.as_ref()).await);
    assert_eq!(
        state.get(b"slow".as_slice()).map(Vec::as_slice),
        Some(b"late".as_slice())
    );
}

/// Flaw 2: two runs within one second overwrote each other's chunks. Segment names are
/// their LSN ranges, so back-to-back runs write distinct objects.
#[tokio::test]
async fn flaw02_back_to_back_runs_never_overwrite_each_other() {
    let fx = Fixture::new().await;
    fx.service.run_backup().await.unwrap();
    let mut shipped = 0;
    for i in 0..5u8 {
        fx.put(&[(&[b'k', i], &[i])]).await;
        shipped += fx.service.ship_log().await.unwrap().segments;
    }
    let segments: Vec<_> = keys_in_store(&fx.store)
        .await
        .into_iter()
        .filter(|k| matches!(layout::parse(k), ObjectName::Segment { .. }))
        .collect();
    assert_eq!(segments.len() as u64, shipped);
    assert_eq!(shipped, 5);
    let (_, state) = fx.restore_to(Target::Latest).await.unwrap();
    assert_eq!(state, state_of(fx.engine.as_ref()).await);
}

/// Flaw 3: one wall-clock key per operation let a PITR cut split a transaction, in app
/// clock order. Here a transaction is one record: restores just before and at it see none
/// or all of it, and commit order (not begin order) decides the outcome.
#[tokio::test]
async fn flaw03_a_cut_never_splits_a_transaction_and_follows_commit_order() {
    let fx = Fixture::new().await;
    fx.put(&[(b"x", b"0")]).await;
    fx.service.run_backup().await.unwrap();
    let first = fx.db.begin().await.unwrap();
    let second = fx.db.begin().await.unwrap();
    for i in 0..50u8 {
        first.put(vec![b'm', i], b"first".to_vec()).unwrap();
    }
    first.put(b"x".to_vec(), b"first".to_vec()).unwrap();
    second.put(b"x".to_vec(), b"second".to_vec()).unwrap();
    let l2 = second.commit().await.unwrap().unwrap(); // begun last, committed first
    let l1 = first.commit().await.unwrap().unwrap();
    assert!(l1 > l2);
    fx.service.ship_log().await.unwrap();
    let (_, before) = fx.restore_to(Target::Lsn(l1 - 1)).await.unwrap();
    assert!(
        before.keys().all(|k| k.first() != Some(&b'm')),
        "no part of the big transaction before it"
    );
    assert_eq!(before[b"x".as_slice()], b"second");
    let (_, at) = fx.restore_to(Target::Lsn(l1)).await.unwrap();
    assert_eq!(
        at.keys().filter(|k| k.first() == Some(&b'm')).count(),
        50,
        "all of it at it"
    );
    assert_eq!(at[b"x".as_slice()], b"first", "commit order decides");
}

/// Flaw 4: restore wiped the database before checking that a usable backup existed.
#[tokio::test]
async fn flaw04_restore_checks_before_it_touches_the_target() {
    let empty_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let source = Fixture::with(
        Arc::new(MemoryEngine::new()),
        empty_store.clone(),
        small_config(),
    )
    .await;
    source.put(&[(b"a", b"1")]).await;
    source.service.ship_log().await.unwrap(); // the log ends at LSN 1: LSN 99 cannot be restored
    let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let target_db = Db::open(target.clone()).await.unwrap();
    target_db
        .transaction(|t| async move { t.put(b"precious".to_vec(), b"data".to_vec()) })
        .await
        .expect("seed the target");
    let before = state_of(target.as_ref()).await;
    let repo = source.repo().await;
    let mut opts = RestoreOptions::new(Target::Lsn(99));
    opts.force = true;
    let err = restore(&repo, target.clone(), &opts, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::Plan(_)), "{err}");
    assert_eq!(state_of(target.as_ref()).await, before, "target untouched");
    // Without --force a non-empty target is refused even with a good backup.
    source.service.snapshot().await.unwrap();
    let latest = RestoreOptions::new(Target::Latest);
    let err = restore(&repo, target.clone(), &latest, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::TargetNotEmpty { .. }), "{err}");
    assert_eq!(state_of(target.as_ref()).await, before, "target untouched");
}

/// Flaw 5: full backup was not one consistent snapshot and dropped non-JSON values and
/// non-UTF-8 keys. Here a snapshot taken while writers run equals the state at its LSN,
/// binary keys and values included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw05_snapshot_is_consistent_and_keeps_binary_data() {
    let fx = Fixture::new().await;
    for i in 0..200u16 {
        fx.put(&[(
            &[0xFF, 0x00, (i >> 8) as u8, i as u8],
            &[0x80, 0xFE, i as u8],
        )])
        .await;
    }
    let db = fx.db.clone();
    let writer = tokio::spawn(async move {
        for i in 0..300u16 {
            let k = vec![0xFF, 0x00, ((i * 7 % 200) >> 8) as u8, (i * 7 % 200) as u8];
            db.transaction(|t| {
                let k = k.clone();
                async move {
                    t.put(k.clone(), vec![0xC3, 0x28, i as u8])?;
                    t.put(vec![0xFE, (i % 13) as u8], vec![0xFF; 3])?;
                    Ok::<_, tito_capture::CaptureError>(())
                }
            })
            .await
            .unwrap();
        }
    });
    let snap = fx.service.snapshot().await.unwrap();
    writer.await.unwrap();
    fx.service.ship_log().await.unwrap();
    let (result, state) = fx.restore_to(Target::Lsn(snap.lsn)).await.unwrap();
    assert_eq!(
        result.records_replayed, 0,
        "the snapshot alone reflects its LSN"
    );
    assert_eq!(state.len() as u64, snap.pairs);
    // Rebuild the expected state at snap.lsn by restoring the log from the start.
    let fx2_state = {
        let (_, s) = fx.restore_to(Target::Latest).await.unwrap();
        s
    };
    assert_eq!(fx2_state, state_of(fx.engine.as_ref()).await);
    assert!(
        state.keys().any(|k| std::str::from_utf8(k).is_err()),
        "non-UTF-8 keys kept"
    );
}

/// Flaw 6: full backup covered only `table:` keys; indexes and queue state were lost.
#[tokio::test]
async fn flaw06_every_key_and_the_queue_are_backed_up() {
    let fx = Fixture::new().await;
    fx.put(&[
        (b"table:users:1", b"{}"),
        (b"index:email:a@b", b"1"),
        (b"zzz", b"x"),
        (b"", b"empty key"),
    ])
    .await;
    fx.db
        .transaction(|t| async move {
            tito_queue::publish(&t, 4, Event::new("e1", "user-1", "welcome", 1, 2))?;
            Ok::<_, tito_queue::QueueError>(())
        })
        .await
        .unwrap();
    fx.service.run_backup().await.unwrap();
    let (result, state) = fx.restore_to(Target::Latest).await.unwrap();
    assert_eq!(state, state_of(fx.engine.as_ref()).await);
    assert_eq!(result.events_pending, 1);
    assert!(
        state.contains_key(b"index:email:a@b".as_slice()) && state.contains_key(b"".as_slice())
    );
}

/// Flaw 7: each full backup deleted all incremental chunks: no PITR between full backups.
#[tokio::test]
async fn flaw07_log_between_snapshots_is_kept() {
    let fx = Fixture::new().await;
    fx.put(&[(b"a", b"1")]).await;
    fx.service.run_backup().await.unwrap();
    let mid = fx.put(&[(b"a", b"2")]).await;
    fx.put(&[(b"a", b"3")]).await;
    fx.service.ship_log().await.unwrap();
    fx.service.snapshot().await.unwrap();
    let (_, state) = fx.restore_to(Target::Lsn(mid)).await.unwrap();
    assert_eq!(state[b"a".as_slice()], b"2");
}

/// Flaw 8: an interrupted full backup looked complete. Here a snapshot whose manifest was
/// never written does not exist for restore, which uses the previous one.
#[tokio::test]
async fn flaw08_interrupted_snapshot_is_not_used() {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let plan = FaultPlan::new();
    let faulty: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), plan.clone()));
    let fx = Fixture::with(engine, faulty, small_config()).await;
    fx.put(&[(b"a", b"1")]).await;
    let good = fx.service.run_backup().await.unwrap().snapshot.unwrap();
    for i in 0..40u8 {
        fx.put(&[(&[b'b', i], &[7; 100])]).await;
    }
    fx.service.ship_log().await.unwrap();
    let good_chunks: Vec<String> = keys_in_store(&store)
        .await
        .into_iter()
        .filter(|k| matches!(layout::parse(k), ObjectName::SharedChunk { .. }))
        .collect();
    // Let the chunks go up, then crash before the manifest.
    let mut config_probe = 0;
    loop {
        config_probe += 1;
        plan.heal();
        plan.crash_from(plan.calls() + config_probe + 1);
        if fx.service.snapshot().await.is_err() {
            // Chunks of the interrupted snapshot: shared ones (incremental snapshots) that
            // the good snapshot does not reference, or folder chunks of another snapshot.
            let chunks = keys_in_store(&store)
                .await
                .into_iter()
                .filter(|k| match layout::parse(k) {
                    ObjectName::SnapshotChunk { lsn, .. } => lsn != good.lsn,
                    ObjectName::SharedChunk { .. } => !good_chunks.contains(k),
                    _ => false,
                })
                .count();
            if chunks > 0 {
                break;
            }
        }
        assert!(
            config_probe < 50,
            "could not interrupt a snapshot between chunks and manifest"
        );
    }
    plan.heal();
    let (result, state) = restore_into_memory(&store, Target::Latest).await.unwrap();
    assert_eq!(
        result.plan.snapshot.lsn, good.lsn,
        "the interrupted snapshot is ignored"
    );
    assert_eq!(state, state_of(fx.engine.as_ref()).await);
}

/// Flaw 9: no checksums or manifest: corruption surfaced mid-restore, after the wipe. Here
/// any altered object is refused, naming the object: over an existing database (forced)
/// before anything is touched; into a new database, which objects stream into in one pass,
/// the restore stops at the object and the database is refused as partial (or untouched).
#[tokio::test]
async fn flaw09_corruption_is_detected_before_the_target_is_touched() {
    let fx = Fixture::new().await;
    for i in 0..30u8 {
        fx.put(&[(&[b'k', i], &[i; 64])]).await;
    }
    fx.service.run_backup().await.unwrap();
    for i in 0..10u8 {
        fx.put(&[(&[b'n', i], &[i; 64])]).await;
    }
    fx.service.ship_log().await.unwrap();
    let mut dry = RestoreOptions::new(Target::Latest);
    dry.dry_run = true;
    let probe: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let planned = restore(&fx.repo().await, probe, &dry, &NoProgress)
        .await
        .unwrap()
        .plan
        .objects();
    assert!(
        planned.len() >= 3,
        "a snapshot chunk and segments: {planned:?}"
    );
    let latest = RestoreOptions::new(Target::Latest);
    let forced = RestoreOptions {
        force: true,
        ..latest.clone()
    };
    for (key, _) in planned {
        let original = fx.store.get(&key).await.unwrap();
        let mut bad = original.to_vec();
        let at = bad.len() / 2;
        bad[at] ^= 0x40;
        fx.store.put(&key, bad.into()).await.unwrap();
        let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let repo = fx.repo().await;
        let err = restore(&repo, target.clone(), &latest, &NoProgress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&key), "error names {key}: {err}");
        let untouched = target
            .read_view()
            .await
            .unwrap()
            .scan(&KeyRange::all(), 1)
            .await
            .unwrap()
            .is_empty();
        match Db::open(target.clone()).await {
            Err(tito_capture::CaptureError::RestoreInProgress) => {}
            Ok(_) => assert!(untouched, "{key}: a partial restore opened"),
            Err(e) => panic!("{key}: opening the target: {e}"),
        }
        // An existing database is not touched at all.
        let existing: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let db = Db::open(existing.clone()).await.unwrap();
        db.transaction(|t| async move { t.put(b"precious".to_vec(), b"data".to_vec()) })
            .await
            .unwrap();
        let before = state_of(existing.as_ref()).await;
        let err = restore(&repo, existing.clone(), &forced, &NoProgress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&key), "error names {key}: {err}");
        assert_eq!(
            state_of(existing.as_ref()).await,
            before,
            "target untouched"
        );
        Db::open(existing)
            .await
            .expect("the existing database opens");
        fx.store.put(&key, original).await.unwrap();
    }
}

/// Flaw 10: event restore re-enqueued every archived event, processed or not, partitioned
/// with DefaultHasher. Here acked events stay acked and re-partitioning uses the stable hash.
#[tokio::test]
async fn flaw10_only_pending_events_come_back_in_stable_partitions() {
    let fx = Fixture::new().await;
    fx.db
        .transaction(|t| async move {
            for i in 0..6 {
                tito_queue::publish(
                    &t,
                    2,
                    Event::new(format!("e{i}"), format!("user-{i}"), "p", 1, 2),
                )?;
            }
            Ok::<_, tito_queue::QueueError>(())
        })
        .await
        .unwrap();
    fx.db
        .transaction(|t| async move {
            for p in 0..2 {
                for ev in tito_queue::pull_in(&t, p, u64::MAX, 1).await? {
                    tito_queue::ack(&t, &ev).await?;
                }
            }
            Ok::<_, tito_queue::QueueError>(())
        })
        .await
        .unwrap();
    fx.service.run_backup().await.unwrap();
    let repo = fx.repo().await;
    let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let mut opts = RestoreOptions::new(Target::Latest);
    opts.partitions = Some(5);
    let result = restore(&repo, target.clone(), &opts, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        result.events_pending, 4,
        "the two acked events are not re-enqueued"
    );
    let db = Db::new(target);
    let mut seen = 0;
    for p in 0..5 {
        for ev in tito_queue::pull(&db, p, u64::MAX, 100).await.unwrap() {
            assert_eq!(p, tito_queue::partition_for(&ev.event.key, 5).unwrap());
            seen += 1;
        }
    }
    assert_eq!(seen, 4);
}

/// Flaw 11: retention deleted event chunks by age whether or not a kept backup needed them.
/// Here prune keeps every segment a kept snapshot needs.
#[tokio::test]
async fn flaw11_prune_keeps_what_kept_snapshots_need() {
    let fx = Fixture::new().await;
    let mut lsns = Vec::new();
    for round in 0..3u8 {
        for i in 0..5u8 {
            lsns.push(fx.put(&[(&[b'k', i], &[round])]).await);
        }
        fx.service.run_backup().await.unwrap();
        fx.service.snapshot().await.unwrap();
    }
    for i in 0..5u8 {
        lsns.push(fx.put(&[(&[b'z', i], &[9])]).await);
    }
    fx.service.ship_log().await.unwrap();
    let policy = RetentionPolicy {
        keep_last: Some(2),
        ..Default::default()
    };
    let pruned = fx.service.prune(&policy, false).await.unwrap();
    assert!(!pruned.deleted.is_empty(), "something old was pruned");
    let oldest_kept = pruned.oldest_kept_lsn.unwrap();
    for lsn in lsns.into_iter().filter(|l| *l >= oldest_kept) {
        fx.restore_to(Target::Lsn(lsn))
            .await
            .unwrap_or_else(|e| panic!("LSN {lsn} must stay restorable: {e}"));
    }
}

/// Flaw 12: nothing stopped two backup processes from shipping and deleting the same
/// entries. Here the second shipper is refused, and a shipper whose lease was taken over
/// is fenced: it cannot trim the log.
#[tokio::test]
async fn flaw12_one_shipper_per_database() {
    let fx = Fixture::new().await;
    fx.put(&[(b"a", b"1")]).await;
    fx.service.ship_log().await.unwrap();
    let second = BackupService::new(fx.db.clone(), fx.store.clone(), small_config())
        .await
        .unwrap();
    assert!(matches!(
        second.ship_log().await,
        Err(BackupError::LeaseHeld { .. })
    ));

    // A shipper whose lease expired is fenced once another took over.
    let short = BackupConfig {
        lease_ttl: std::time::Duration::from_millis(20),
        ..small_config()
    };
    let f2 = Fixture::with(
        Arc::new(MemoryEngine::new()),
        Arc::new(MemoryStore::new()),
        short.clone(),
    )
    .await;
    f2.put(&[(b"x", b"1")]).await;
    f2.service.ship_log().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    let usurper = BackupService::new(f2.db.clone(), f2.store.clone(), short)
        .await
        .unwrap();
    usurper.ship_log().await.unwrap(); // takes the expired lease
    f2.put(&[(b"y", b"2")]).await;
    assert!(matches!(
        f2.service.ship_log().await,
        Err(BackupError::LeaseHeld { .. } | BackupError::LeaseLost { .. })
    ));
    assert!(
        f2.db.log_bounds().await.unwrap().is_some(),
        "the fenced shipper trimmed nothing"
    );
}

/// Flaw 13: gzip'd JSON was large. Backup bytes are at most 0.7x the original format's for
/// the same data (sizes are deterministic; speed is measured by `tito bench`).
#[tokio::test]
async fn flaw13_backup_is_smaller_than_the_original_format() {
    use std::io::Write;
    let fx = Fixture::with(
        Arc::new(MemoryEngine::new()),
        Arc::new(MemoryStore::new()),
        BackupConfig::default(),
    )
    .await;
    let mut original_entries = Vec::new();
    for batch in 0..20u32 {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..100u32)
            .map(|i| {
                let n = batch * 100 + i;
                (format!("table:orders:{n:08}").into_bytes(), format!("{{\"id\":{n},\"customer\":\"c{}\",\"total\":{}.{:02},\"status\":\"paid\"}}", n % 97, n * 13 % 1000, n % 100).into_bytes())
            })
            .collect();
        for (k, v) in &pairs {
            original_entries.push(serde_json::json!({"op": "put", "key": String::from_utf8_lossy(k), "data": serde_json::from_slice::<serde_json::Value>(v).unwrap()}));
        }
        let refs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        fx.put(&refs).await;
    }
    let snap = fx.service.snapshot().await.unwrap();
    // The original: JSON arrays of 1000 entries, default gzip.
    let mut original = 0;
    for chunk in original_entries.chunks(1000) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&serde_json::to_vec(chunk).unwrap()).unwrap();
        original += gz.finish().unwrap().len();
    }
    let ratio = snap.bytes as f64 / original as f64;
    eprintln!(
        "backup bytes: tito {} vs original format {original}: ratio {ratio:.3}",
        snap.bytes
    );
    assert!(
        ratio <= 0.7,
        "snapshot {} bytes vs original {original} bytes: ratio {ratio:.2}",
        snap.bytes
    );
}
