//! FaultEngine: call counting, failures, crashes and unknown commit outcomes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tito_engine::fault::{FaultEngine, FaultPlan};
use tito_engine::memory::MemoryEngine;
use tito_engine::{Engine, EngineError, KeyRange, Tx};

/// One transaction of three calls plus a commit: begin, get, put, commit.
async fn scenario(engine: &dyn Engine) -> Result<(), EngineError> {
    let tx = engine.begin().await?;
    let n = tx.get(b"n").await?.map(|v| v[0]).unwrap_or(0);
    tx.put(b"n".to_vec(), vec![n + 1])?;
    tx.commit().await?;
    Ok(())
}

async fn value(engine: &dyn Engine) -> Option<Vec<u8>> {
    let tx = engine.begin().await.expect("begin");
    tx.get(b"n").await.expect("get")
}

fn wrap() -> (Arc<dyn Engine>, FaultEngine, FaultPlan) {
    let inner: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let plan = FaultPlan::new();
    let faulty = FaultEngine::new(inner.clone(), plan.clone());
    (inner, faulty, plan)
}

#[tokio::test]
async fn counts_every_call() {
    let (_, faulty, plan) = wrap();
    scenario(&faulty).await.expect("scenario");
    assert_eq!(plan.calls(), 4);
    let view = faulty.read_view().await.expect("view");
    view.scan(&KeyRange::all(), 10).await.expect("scan");
    view.get(b"n").await.expect("get");
    faulty
        .bulk_load(vec![(b"x".to_vec(), vec![])])
        .await
        .expect("bulk_load");
    assert_eq!(plan.calls(), 8);
}

#[tokio::test]
async fn failure_at_each_call_never_half_applies() {
    let (_, faulty, plan) = wrap();
    scenario(&faulty).await.expect("count run");
    let total = plan.calls();
    for k in 1..=total {
        let (inner, faulty, plan) = wrap();
        plan.fail_at(k, || EngineError::Backend("injected".into()));
        let err = scenario(&faulty)
            .await
            .expect_err("an injected failure must surface");
        assert!(err.to_string().contains("injected"), "call {k}: {err}");
        assert_eq!(
            value(inner.as_ref()).await,
            None,
            "call {k}: failed transaction applied"
        );
        // Later calls work again (a failure is not a crash).
        scenario(&faulty).await.expect("after a single failure");
        assert_eq!(value(inner.as_ref()).await, Some(vec![1]));
    }
}

#[tokio::test]
async fn crash_fails_every_later_call() {
    let (_, faulty, plan) = wrap();
    scenario(&faulty).await.expect("count run");
    scenario(&faulty).await.expect("count run");
    let total = plan.calls();
    for k in 1..=total {
        let (inner, faulty, plan) = wrap();
        plan.crash_at(k);
        let first = scenario(&faulty).await;
        let second = scenario(&faulty).await;
        assert!(plan.crashed());
        assert!(
            second.is_err(),
            "call {k}: a call after the crash succeeded"
        );
        // Only a transaction whose commit came before the crash is applied.
        let want = if k > 4 { Some(vec![1]) } else { None };
        assert_eq!(first.is_ok(), k > 4, "call {k}");
        assert_eq!(value(inner.as_ref()).await, want, "call {k}");
        assert!(faulty.begin().await.is_err(), "engine usable after a crash");
    }
}

#[tokio::test]
async fn commit_unknown_is_applied_and_not_retried() {
    let (inner, faulty, plan) = wrap();
    plan.commit_unknown_at(4);
    let runs = AtomicU32::new(0);
    let result = tito_engine::transaction(&faulty, |tx: Tx| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            tx.put(b"n".to_vec(), vec![7])?;
            tx.get(b"n").await?;
            Ok::<_, EngineError>(())
        }
    })
    .await;
    assert!(
        matches!(result, Err(EngineError::CommitUnknown(_))),
        "{result:?}"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "closure re-run after an unknown outcome"
    );
    assert_eq!(
        value(inner.as_ref()).await,
        Some(vec![7]),
        "the commit was applied"
    );
    assert!(!plan.crashed());
    scenario(&faulty).await.expect("engine still usable");
}

#[tokio::test]
async fn commit_then_crash_applies_then_dies() {
    let (inner, faulty, plan) = wrap();
    plan.commit_then_crash_at(4);
    let err = scenario(&faulty).await.expect_err("outcome lost");
    assert!(matches!(err, EngineError::CommitUnknown(_)), "{err}");
    assert_eq!(value(inner.as_ref()).await, Some(vec![1]));
    assert!(plan.crashed());
    assert!(faulty.read_view().await.is_err());
}

#[tokio::test]
async fn injected_conflicts_are_retried_by_the_helper() {
    let (inner, faulty, plan) = wrap();
    plan.fail_at(4, || EngineError::Conflict("injected".into()));
    plan.fail_at(6, || EngineError::Conflict("injected".into()));
    let runs = AtomicU32::new(0);
    tito_engine::transaction(&faulty, |tx: Tx| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            let n = tx.get(b"n").await?.map(|v| v[0]).unwrap_or(0);
            tx.put(b"n".to_vec(), vec![n + 1])?;
            Ok::<_, EngineError>(())
        }
    })
    .await
    .expect("retried to success");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        value(inner.as_ref()).await,
        Some(vec![1]),
        "applied exactly once"
    );
}
