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
