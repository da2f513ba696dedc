//! A restore that dies half-way leaves a database that refuses to open as if complete;
//! restoring again with force finishes it.

mod common;

use std::sync::Arc;

use common::{Fixture, state_of};
use tito_capture::{CaptureError, Db};
use tito_catalog::Target;
use tito_engine::Engine;
use tito_engine::fault::{FaultEngine, FaultPlan};
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, RestoreOptions, restore};

#[tokio::test]
async fn an_interrupted_restore_is_never_taken_for_a_complete_one() {
    let fx = Fixture::new().await;
    for i in 0..60u8 {
        fx.put(&[(&[b'k', i], &[i; 80])]).await;
    }
    fx.service.run_backup().await.unwrap();
    for i in 0..20u8 {
        fx.put(&[(&[b'n', i], &[i; 80])]).await;
    }
    fx.service.ship_log().await.unwrap();
    let expected = state_of(fx.engine.as_ref()).await;
    let repo = fx.repo().await;

    // Count the target's calls of a whole restore, then crash at each point after the
    // target starts being written.
    let plan = FaultPlan::new();
    let counting: Arc<dyn Engine> = Arc::new(FaultEngine::new(
        Arc::new(MemoryEngine::new()),
        plan.clone(),
    ));
    let latest = RestoreOptions::new(Target::Latest);
    restore(&repo, counting, &latest, &NoProgress)
        .await
        .unwrap();
    let total = plan.calls();
    let mut interrupted = 0;
    for k in 1..=total {
        let inner: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let plan = FaultPlan::new();
        plan.crash_at(k);
        let faulty: Arc<dyn Engine> = Arc::new(FaultEngine::new(inner.clone(), plan));
        if restore(&repo, faulty, &latest, &NoProgress).await.is_ok() {
            continue;
        }
        let touched = !state_of(inner.as_ref()).await.is_empty();
        match Db::open(inner.clone()).await {
            Err(CaptureError::RestoreInProgress) => interrupted += 1,
            Ok(_) => assert!(
                !touched,
                "crash at call {k}: a partial database opened as if complete"
            ),
            Err(e) => panic!("crash at call {k}: unexpected error {e}"),
        }
        // Restoring again over it (forced) completes the job.
        let mut again = RestoreOptions::new(Target::Latest);
        again.force = true;
        restore(&repo, inner.clone(), &again, &NoProgress)
            .await
            .unwrap();
        assert_eq!(state_of(inner.as_ref()).await, expected);
        Db::open(inner).await.expect("a completed restore opens");
    }
    assert!(
        interrupted > 3,
        "only {interrupted} of {total} crash points hit the middle of a restore"
    );
}

/// Every key of `src` (user keys and Tito's own) in a new memory engine: a copy of the
/// backed-up database itself, with its id, to restore over in place.
async fn copy_of(src: &dyn Engine) -> Arc<dyn Engine> {
    let view = src.read_view().await.expect("view");
    let pairs = view
        .scan(&tito_engine::KeyRange::all(), usize::MAX)
        .await
        .expect("scan");
    let copy: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    tito_engine::transaction(copy.as_ref(), |tx| {
        let pairs = pairs.clone();
        async move {
            for (k, v) in pairs {
                tx.put(k, v)?;
            }
            Ok::<_, tito_engine::EngineError>(())
        }
    })
    .await
    .expect("copy");
    copy
}

/// An undo in place (`--force` over the backed-up database) killed at any call: the
/// database is either untouched or refused as partial, never an emptied database that opens
/// as complete, and it keeps its id, so the re-run is still an undo in place.
#[tokio::test]
async fn an_interrupted_undo_in_place_is_refused_and_stays_in_place() {
    let fx = Fixture::new().await;
    for i in 0..40u8 {
        fx.put(&[(&[b'k', i], &[i; 80])]).await;
    }
    fx.service.run_backup().await.unwrap();
    let target_lsn = fx.engine.read_view().await.unwrap().version();
    let at_target = state_of(fx.engine.as_ref()).await;
    for i in 0..10u8 {
        fx.put(&[(&[b'n', i], &[i; 80])]).await;
    }
    fx.service.ship_log().await.unwrap();
    let before = state_of(fx.engine.as_ref()).await;
    let repo = fx.repo().await;
    let mut undo = RestoreOptions::new(Target::Lsn(target_lsn));
    undo.force = true;

    let plan = FaultPlan::new();
    let counting: Arc<dyn Engine> = Arc::new(FaultEngine::new(
        copy_of(fx.engine.as_ref()).await,
        plan.clone(),
    ));
    restore(&repo, counting, &undo, &NoProgress).await.unwrap();
    let total = plan.calls();
    let mut partial = 0;
    for k in 1..=total {
        let inner = copy_of(fx.engine.as_ref()).await;
        let plan = FaultPlan::new();
        plan.crash_at(k);
        let faulty: Arc<dyn Engine> = Arc::new(FaultEngine::new(inner.clone(), plan));
        if restore(&repo, faulty, &undo, &NoProgress).await.is_ok() {
            continue;
        }
        match Db::open(inner.clone()).await {
            Err(CaptureError::RestoreInProgress) => partial += 1,
            Ok(_) => assert_eq!(
                state_of(inner.as_ref()).await,
                before,
                "crash at call {k}: a changed database opened as if complete"
            ),
            Err(e) => panic!("crash at call {k}: unexpected error {e}"),
        }
        let again = restore(&repo, inner.clone(), &undo, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("crash at call {k}: re-run failed: {e}"));
        assert!(
            matches!(again.lineage, tito_restore::Lineage::Continues { .. }),
            "crash at call {k}: the re-run is no longer in place: {:?}",
            again.lineage
        );
        assert_eq!(
            state_of(inner.as_ref()).await,
            at_target,
            "crash at call {k}"
        );
    }
    assert!(
        partial > 2,
        "only {partial} of {total} crash points hit the middle of the undo"
    );
}
