//! Backup of an etcd database restored into a fresh etcd namespace equals the source.

mod common;
#[path = "../../restore/tests/common/mod.rs"]
mod restore_common;

use std::sync::Arc;

use restore_common::{State, state_of};
use tito_backup::{BackupConfig, BackupService, Repository};
use tito_capture::Db;
use tito_catalog::Target;
use tito_engine::Engine;
use tito_queue::{Event, QueuedEvent};
use tito_restore::{NoProgress, RestoreOptions, RestoreResult, restore};
use tito_store::Store;
use tito_store::memory::MemoryStore;

/// Writes (binary keys and values included), a full backup, and a restore of latest into
/// a fresh etcd namespace: the restored backed-up keyspace equals the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backup_restores_into_fresh_etcd() {
    let engine = common::engine().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let db = Db::open(engine.clone()).await.expect("open db");
    let config = BackupConfig {
        segment_max_records: 7,
        segment_max_bytes: 4096,
        chunk_target_bytes: 2048,
        ..BackupConfig::default()
    };
    let service = BackupService::new(db.clone(), store.clone(), config)
        .await
        .expect("backup service");
    for i in 0u32..40 {
        db.transaction_lsn(|txn| async move {
            txn.put(vec![0, 0xff, (i % 11) as u8], i.to_be_bytes().to_vec())?;
            txn.put(format!("k{i:03}").into_bytes(), vec![i as u8; 100])?;
            Ok::<_, tito_capture::CaptureError>(())
        })
        .await
        .expect("commit");
    }
    service.run_backup().await.expect("backup");
    let source = state_of(engine.as_ref()).await;
    assert!(source.len() >= 51, "source has {} keys", source.len());

    let repo = Repository::open(store.clone()).await.expect("repository");
    let target = common::engine().await;
    let mut options = RestoreOptions::new(Target::Latest);
    options.batch_bytes = 64 * 1024;
    restore(&repo, target.clone(), &options, &NoProgress)
        .await
        .expect("restore");
    assert_eq!(state_of(target.as_ref()).await, source);
}

/// Partitions of the source databases' queues.
const SOURCE_PARTITIONS: u32 = 3;

/// Fill `engine` through capture (binary user keys, queue events published, some acked
/// and some rescheduled), back it up to a fresh store; returns the store, the source's
/// backed-up keyspace and its pending events.
async fn backed_up(engine: Arc<dyn Engine>) -> (Arc<dyn Store>, State, Vec<QueuedEvent>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let db = Db::open(engine.clone()).await.expect("open db");
    let config = BackupConfig {
        segment_max_records: 9,
        ..BackupConfig::default()
    };
    let service = BackupService::new(db.clone(), store.clone(), config)
        .await
        .expect("backup service");
    for i in 0u32..30 {
        db.transaction_lsn(|txn| async move {
            txn.put(vec![0, 0xff, 0x80, i as u8], vec![0xfe, 0, i as u8])?;
            // Keys spread over partitions; due times past and future, some shared.
            let event = Event::new(
                format!("ev-{i:02}"),
                format!("order-{}", i % 11),
                vec![0, 0xff, i as u8],
                1_000 + u64::from(i),
                1_000 + u64::from(i % 4) * 1_000_000,
            );
            tito_queue::publish(&txn, SOURCE_PARTITIONS, event)?;
            Ok::<_, tito_queue::QueueError>(())
        })
        .await
        .expect("commit");
        if i == 12 {
            // Part of the history lies in a snapshot, the rest in the log.
            service.run_backup().await.expect("backup");
        }
    }
    // Consume some: ack the first due event of each partition, reschedule the next one.
    for p in 0..SOURCE_PARTITIONS {
        db.transaction(|txn| async move {
            let due = tito_queue::pull_in(&txn, p, u64::MAX, 2).await?;
            if let Some(ev) = due.first() {
                assert!(tito_queue::ack(&txn, ev).await?);
            }
            if let Some(ev) = due.get(1) {
                tito_queue::reschedule(&txn, ev, 5_000_000).await?;
            }
            Ok::<_, tito_queue::QueueError>(())
        })
        .await
        .expect("consume");
    }
    service.run_backup().await.expect("backup");
    let state = state_of(engine.as_ref()).await;
    let pending = events_of(&state);
    assert!(pending.len() >= 20, "{} pending events", pending.len());
    (store, state, pending)
}

/// The queue events stored in `state`, decoded (the decoding checks their layout).
fn events_of(state: &State) -> Vec<QueuedEvent> {
    let queue = tito_capture::keys::queue_range();
    state
        .iter()
        .filter(|(k, _)| queue.contains(k))
        .map(|(k, v)| tito_queue::decode_event(k, v).expect("queue entry decodes"))
        .collect()
}

fn without_queue(state: &State) -> State {
    let queue = tito_capture::keys::queue_range();
    state
        .iter()
        .filter(|(k, _)| !queue.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Restore latest into `target`, with the source's partition count or `partitions`.
async fn restore_into(
    store: Arc<dyn Store>,
    target: Arc<dyn Engine>,
    partitions: Option<u32>,
) -> (RestoreResult, State) {
    let repo = Repository::open(store).await.expect("repository");
    let mut options = RestoreOptions::new(Target::Latest);
    options.partitions = partitions;
    let result = restore(&repo, target.clone(), &options, &NoProgress)
        .await
        .expect("restore");
    (result, state_of(target.as_ref()).await)
}

/// Restores of the backup in `store` into fresh engines from `new_target`: with the
/// source's partition count the keyspace is identical; with another count the user keys
/// are identical and exactly the pending events are there, each in the partition the
/// stable hash gives, pulled and acked through the queue as usual.
async fn check_restores<F, Fut>(
    store: Arc<dyn Store>,
    source: &State,
    pending: &[QueuedEvent],
    new_target: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Engine>>,
{
    let (result, restored) = restore_into(store.clone(), new_target().await, None).await;
    assert_eq!(&restored, source, "restore with the same partition count");
    assert_eq!(result.events_pending, pending.len() as u64);
    assert_eq!(result.events_repartitioned, 0);

    for partitions in [1, 5] {
        let target = new_target().await;
        let (result, restored) =
            restore_into(store.clone(), target.clone(), Some(partitions)).await;
        assert_eq!(without_queue(&restored), without_queue(source));
        let mut expected: Vec<QueuedEvent> = pending
            .iter()
            .map(|q| QueuedEvent {
                partition: tito_queue::partition_for(&q.event.key, partitions).unwrap(),
                event: q.event.clone(),
            })
            .collect();
        let moved = pending
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a.partition != b.partition)
            .count();
        expected.sort_by_key(|q| q.engine_key());
        assert_eq!(
            events_of(&restored),
            expected,
            "pending events re-partitioned into {partitions}"
        );
        assert_eq!(result.events_pending, pending.len() as u64);
        assert_eq!(result.events_repartitioned, moved as u64);
        // The restored queue works: every event is pulled from its partition and acked.
        let db = Db::open(target.clone()).await.expect("open restored db");
        let mut pulled = Vec::new();
        for p in 0..partitions {
            let due = tito_queue::pull(&db, p, u64::MAX, 1000).await.unwrap();
            for ev in &due {
                db.transaction(|txn| async move {
                    assert!(tito_queue::ack(&txn, ev).await?, "event {ev:?} vanished");
                    Ok::<_, tito_queue::QueueError>(())
                })
                .await
                .unwrap();
            }
            pulled.extend(due);
        }
        pulled.sort_by_key(|q| q.engine_key());
        assert_eq!(pulled, expected);
        assert!(events_of(&state_of(target.as_ref()).await).is_empty());
    }
}

/// A backup of redb restores into etcd, and one of etcd into redb, with identical
/// keyspaces, queue included; pending events restore exactly, also into another
/// partition count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_engine_redb_and_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = |name: String| {
        let path = dir.path().join(name);
        async move {
            Arc::new(
                tito_engine::redb::RedbEngine::open(path)
                    .await
                    .expect("redb"),
            ) as Arc<dyn Engine>
        }
    };
    let (store, source, pending) = backed_up(redb("src.redb".into()).await).await;
    check_restores(store, &source, &pending, common::engine).await;

    let (store, source, pending) = backed_up(common::engine().await).await;
    let n = std::sync::atomic::AtomicU32::new(0);
    check_restores(store, &source, &pending, || {
        redb(format!(
            "dst{}.redb",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    })
    .await;
}

/// Concurrent writer tasks on overlapping keys while the log is shipped: a restore of
/// latest equals the source's final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_restore_equals_final_state() {
    let engine = common::engine().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let db = Db::open(engine.clone()).await.expect("open db");
    let service = BackupService::new(db.clone(), store.clone(), BackupConfig::default())
        .await
        .expect("backup service");
    let mut writers = Vec::new();
    for w in 0u8..3 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            for i in 0u8..15 {
                db.transaction_lsn(|txn| async move {
                    txn.put(vec![b'c', i % 5], vec![w, i])?;
                    txn.put(vec![b'w', w, i], vec![i; 3])?;
                    Ok::<_, tito_capture::CaptureError>(())
                })
                .await
                .expect("commit");
            }
        }));
    }
    for _ in 0..5 {
        service.ship_log().await.expect("ship");
    }
    for w in writers {
        w.await.expect("writer");
    }
    service.run_backup().await.expect("backup");
    let source = state_of(engine.as_ref()).await;
    let (_, restored) = restore_into(store, common::engine().await, None).await;
    assert_eq!(restored, source);
}
