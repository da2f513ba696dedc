//! Timelines: a restored database backs up on a new timeline branching at the restored
//! point; both histories stay restorable and never mix.

mod common;

use std::sync::Arc;

use common::{Fixture, restore_into_memory, small_config, state_of};
use tito_backup::BackupService;
use tito_capture::Db;
use tito_catalog::Target;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, RestoreOptions, restore};

#[tokio::test]
async fn restored_database_continues_on_a_new_timeline() {
    let fx = Fixture::new().await;
    fx.put(&[(b"a", b"1")]).await;
    fx.service.run_backup().await.unwrap();
    let branch = fx.put(&[(b"a", b"2")]).await;
    let state_at_branch = state_of(fx.engine.as_ref()).await;
    fx.put(&[(b"a", b"3"), (b"old-only", b"x")]).await;
    fx.service.ship_log().await.unwrap();
    let old_final = state_of(fx.engine.as_ref()).await;

    // A plain restore into a new database makes a new database: backing it up into its
    // source's store is refused.
    let repo = fx.repo().await;
    let copy: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    restore(
        &repo,
        copy.clone(),
        &RestoreOptions::new(Target::Lsn(branch)),
        &NoProgress,
    )
    .await
    .unwrap();
    let copy_db = Db::open(copy.clone()).await.unwrap();
    match BackupService::new(copy_db, fx.store.clone(), small_config()).await {
        Err(tito_backup::BackupError::ForeignRepository { .. }) => {}
        Err(e) => panic!("expected the foreign-repository refusal, got {e}"),
        Ok(_) => panic!("a restored copy must not back up into its source's store"),
    }

    // Restore to the branch point into a new database that continues the lineage (a
    // rebuilt server), then back it up to the same store.
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let mut continuing = RestoreOptions::new(Target::Lsn(branch));
    continuing.continue_lineage = true;
    let result = restore(&repo, engine.clone(), &continuing, &NoProgress)
        .await
        .unwrap();
    assert_eq!(result.restored_lsn, branch);
    assert_eq!(state_of(engine.as_ref()).await, state_at_branch);
    let db = Db::open(engine.clone()).await.unwrap();
    let service = BackupService::new(db.clone(), fx.store.clone(), small_config())
        .await
        .unwrap();
    let new_lsn = db
        .transaction_lsn(|t| async move { t.put(b"a".to_vec(), b"new".to_vec()) })
        .await
        .unwrap()
        .1
        .unwrap();
    assert_eq!(
        new_lsn,
        branch + 1,
        "the log continues right after the restored point"
    );
    let shipped = service.run_backup().await.unwrap();
    assert_eq!(shipped.shipped.timeline, 2, "a new timeline was opened");
    let new_final = state_of(engine.as_ref()).await;
    // The replaced database may not ship to its retired timeline any more.
    fx.put(&[(b"late", b"x")]).await;
    match fx.service.ship_log().await {
        Err(tito_backup::BackupError::TimelineRetired { timeline: 1, by: 2 }) => {}
        other => panic!("the replaced database must be refused: {other:?}"),
    }

    // Latest (newest timeline) is the new history; the old one is still there.
    let (_, latest) = restore_into_memory(&fx.store, Target::Latest)
        .await
        .unwrap();
    assert_eq!(latest, new_final);
    assert!(!latest.contains_key(b"old-only".as_slice()));
    let repo = fx.repo().await;
    let mut on_old = RestoreOptions::new(Target::Latest);
    on_old.timeline = Some(1);
    let old_engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    restore(&repo, old_engine.clone(), &on_old, &NoProgress)
        .await
        .unwrap();
    assert_eq!(state_of(old_engine.as_ref()).await, old_final);
    // The same LSN means different states on the two timelines.
    let mut at = RestoreOptions::new(Target::Lsn(branch + 1));
    at.timeline = Some(2);
    let e2: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    restore(&repo, e2.clone(), &at, &NoProgress).await.unwrap();
    assert_eq!(state_of(e2.as_ref()).await, new_final);
    // Before the branch, timeline 2 replays timeline 1's log (no snapshot on 2 yet is needed).
    let mut before = RestoreOptions::new(Target::Lsn(branch));
    before.timeline = Some(2);
    let e3: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    restore(&repo, e3.clone(), &before, &NoProgress)
        .await
        .unwrap();
    assert_eq!(state_of(e3.as_ref()).await, state_at_branch);
}
