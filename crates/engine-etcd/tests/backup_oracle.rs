//! Backup of an etcd database restored into a fresh etcd namespace equals the source.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use tito_backup::{BackupConfig, BackupService, Repository};
use tito_capture::{Db, scan_backed_up};
use tito_catalog::Target;
use tito_engine::Engine;
use tito_restore::{NoProgress, RestoreOptions, restore};
use tito_store::Store;
use tito_store::memory::MemoryStore;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

async fn state_of(engine: &dyn Engine) -> State {
    let view = engine.read_view().await.expect("read view");
    let mut out = State::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = scan_backed_up(view.as_ref(), after.as_deref(), 512)
            .await
            .expect("scan");
        let done = page.len() < 512;
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page);
        if done {
            return out;
        }
    }
}

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

/// Fill `engine` through capture, back it up to a fresh store; returns the store and the
/// source's backed-up keyspace.
async fn backed_up(engine: Arc<dyn Engine>) -> (Arc<dyn Store>, State) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let db = Db::open(engine.clone()).await.expect("open db");
    let service = BackupService::new(db.clone(), store.clone(), BackupConfig::default())
        .await
        .expect("backup service");
    for i in 0u32..20 {
        db.transaction_lsn(|txn| async move {
            txn.put(vec![0, 0xff, 0x80, i as u8], vec![0xfe, 0, i as u8])?;
            Ok::<_, tito_capture::CaptureError>(())
        })
        .await
        .expect("commit");
    }
    service.run_backup().await.expect("backup");
    let state = state_of(engine.as_ref()).await;
    (store, state)
}

async fn restore_into(store: Arc<dyn Store>, target: Arc<dyn Engine>) -> State {
    let repo = Repository::open(store).await.expect("repository");
    restore(
        &repo,
        target.clone(),
        &RestoreOptions::new(Target::Latest),
        &NoProgress,
    )
    .await
    .expect("restore");
    state_of(target.as_ref()).await
}

/// A backup of redb restores into etcd, and one of etcd into redb, with identical keyspaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_engine_redb_and_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb: Arc<dyn Engine> = Arc::new(
        tito_engine::redb::RedbEngine::open(dir.path().join("src.redb"))
            .await
            .expect("redb"),
    );
    let (store, source) = backed_up(redb).await;
    assert_eq!(restore_into(store, common::engine().await).await, source);

    let (store, source) = backed_up(common::engine().await).await;
    let redb: Arc<dyn Engine> = Arc::new(
        tito_engine::redb::RedbEngine::open(dir.path().join("dst.redb"))
            .await
            .expect("redb"),
    );
    assert_eq!(restore_into(store, redb).await, source);
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
    let restored = restore_into(store, common::engine().await).await;
    assert_eq!(restored, source);
}
