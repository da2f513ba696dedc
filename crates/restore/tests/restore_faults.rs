//! Faults during restore, on every store kind (memory, local directory, the S3 test
//! server): an error, a timeout (a slow call under a per-attempt timeout), a truncated body
//! and an altered body at every store call of a restore, one call at a time.
//!
//! A clean restore counts the calls; then for each call k and each fault, a restore into a
//! new target and a forced restore over an existing database must either fail with an
//! error that names the problem (the injected error, the timeout, or the damaged object)
//! or succeed with exactly the oracle's state. After a failure the target is untouched
//! (its state as before and it opens) or refused as partial by `Db::open`, never taken for
//! complete; and restoring again without the fault gives the oracle's state. With
//! retries, errors and timeouts are absorbed and the first restore succeeds.
//!
//! Each object is read from the store once. A new target is streamed into, so a fault
//! half-way leaves it refused as partial; an existing target restored with `force` is
//! wiped only after every object the plan needs was verified (and staged locally, so
//! loading reads no store): a fault at any store call leaves it exactly as it was.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, State, small_config, state_of};
use tito_backup::Repository;
use tito_capture::{CaptureError, Db};
use tito_catalog::Target;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, RestoreOptions, restore};
use tito_store::testing::S3TestServer;
use tito_store::{
    Fault, FaultPlan, FaultStore, LocalStore, MemoryStore, RetryPolicy, RetryStore, Store,
};

/// A slow call: far longer than any attempt timeout below.
const SLOW: Duration = Duration::from_secs(30);

/// A repository with a snapshot of several chunks and log segments after it, and the
/// source's state (the oracle).
async fn repository(store: Arc<dyn Store>) -> State {
    let fx = Fixture::with(Arc::new(MemoryEngine::new()), store, small_config()).await;
    for i in 0..40u8 {
        fx.put(&[(&[b'k', i], &[i; 120])]).await;
    }
    fx.service.run_backup().await.expect("backup");
    for i in 0..15u8 {
        fx.put(&[(&[b'k', i * 2], b"changed"), (&[b'n', i], &[i; 50])])
            .await;
    }
    fx.service.ship_log().await.expect("ship");
    state_of(fx.engine.as_ref()).await
}

/// `store` seen through a fault plan and a retrying wrapper of `attempts` attempts with a
/// per-attempt timeout of `timeout`.
fn faulty(
    store: &Arc<dyn Store>,
    plan: &FaultPlan,
    attempts: u32,
    timeout: Duration,
) -> Arc<dyn Store> {
    let fault: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), plan.clone()));
    Arc::new(RetryStore::new(
        fault,
        RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            deadline: Duration::from_secs(10),
            attempt_timeout: Some(timeout),
        },
    ))
}

/// A restore of `store`'s repository into `target`, forced or not.
async fn restore_from(
    store: Arc<dyn Store>,
    target: Arc<dyn Engine>,
    force: bool,
) -> Result<(), String> {
    let repo = Repository::open(store).await.map_err(|e| e.to_string())?;
    let opts = RestoreOptions {
        force,
        ..RestoreOptions::new(Target::Latest)
    };
    restore(&repo, target, &opts, &NoProgress)
        .await
        .map(|_| ())
        .map_err(|e| chain(&e))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(x) = s {
        out.push_str(": ");
        out.push_str(&x.to_string());
        s = x.source();
    }
    out
}

/// A database that already holds data of its own.
async fn existing() -> (Arc<dyn Engine>, State) {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let db = Db::open(engine.clone()).await.expect("open");
    db.transaction(|txn| async move {
        for i in 0..30u8 {
            txn.put(vec![b'o', i], vec![i; 10])?;
        }
        Ok::<_, CaptureError>(())
    })
    .await
    .expect("write");
    let before = state_of(engine.as_ref()).await;
    (engine, before)
}

/// The faults of a case, injected at call `k`.
fn faults() -> [Fault; 4] {
    [
        Fault::Transient,
        Fault::Delay(SLOW),
        Fault::Truncate,
        Fault::Alter,
    ]
}

/// Every fault at every call of a restore from `store`, whose healthy calls answer well
/// within `timeout`; returns the cases run.
async fn every_call(
    kind: &str,
    store: Arc<dyn Store>,
    timeout: Duration,
    every_target: bool,
) -> usize {
    // Healthy runs get room for a loaded machine.
    let patient = Duration::from_secs(20);
    let oracle = repository(store.clone()).await;

    let count = FaultPlan::new();
    let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    restore_from(faulty(&store, &count, 1, patient), target.clone(), false)
        .await
        .expect("clean restore");
    assert_eq!(
        state_of(target.as_ref()).await,
        oracle,
        "{kind}: clean restore"
    );
    let calls = count.calls();
    assert!(calls >= 8, "{kind}: only {calls} store calls in a restore");

    let mut cases = 0;
    let mut failed = 0;
    for k in 1..=calls {
        for fault in faults() {
            // On S3 (slow calls) the two targets take turns between calls.
            let forces: &[bool] = match (every_target, k % 2) {
                (true, _) => &[false, true],
                (false, 0) => &[true],
                (false, _) => &[false],
            };
            for &force in forces {
                let (target, before) = if force {
                    existing().await
                } else {
                    (
                        Arc::new(MemoryEngine::new()) as Arc<dyn Engine>,
                        State::new(),
                    )
                };
                let plan = FaultPlan::new();
                plan.fail_call(k, fault);
                let what = format!("{kind}: {fault:?} at call {k} of {calls} (force {force})");
                match restore_from(faulty(&store, &plan, 1, timeout), target.clone(), force).await {
                    Ok(()) => {
                        // The fault missed a body, or was on a call a damaged answer
                        // cannot mislead: the result must be exact.
                        assert_eq!(state_of(target.as_ref()).await, oracle, "{what}");
                    }
                    Err(message) => {
                        failed += 1;
                        let hit = plan
                            .history()
                            .into_iter()
                            .find(|c| c.n == k)
                            .expect("call k happened");
                        // A timeout of a healthy call on a loaded machine is clear too.
                        let named = message.contains("no answer within")
                            || match fault {
                                Fault::Transient => message.contains("injected fault"),
                                Fault::Delay(_) => false,
                                _ => message.contains(&hit.key),
                            };
                        assert!(named, "{what}: unclear error {message:?} ({hit:?})");
                        let after = state_of(target.as_ref()).await;
                        match Db::open(target.clone()).await {
                            Err(CaptureError::RestoreInProgress) if !force => {}
                            Ok(_) => assert_eq!(after, before, "{what}: target changed"),
                            Err(e) => panic!("{what}: opening the target: {e}"),
                        }
                        // Without the fault, the same restore (forced over whatever the
                        // failure left) gives the oracle's state.
                        let healthy = FaultPlan::new();
                        restore_from(faulty(&store, &healthy, 1, patient), target.clone(), true)
                            .await
                            .unwrap_or_else(|e| panic!("{what}: retry failed: {e}"));
                        assert_eq!(state_of(target.as_ref()).await, oracle, "{what}: retry");
                        Db::open(target.clone()).await.expect("restored opens");
                    }
                }
                cases += 1;
            }
        }
        // With retries, an error or a slow call at k is absorbed.
        for fault in [Fault::Transient, Fault::Delay(SLOW)] {
            let plan = FaultPlan::new();
            plan.fail_call(k, fault);
            let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
            restore_from(faulty(&store, &plan, 3, timeout), target.clone(), false)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {fault:?} at {k} with retries: {e}"));
            assert_eq!(state_of(target.as_ref()).await, oracle, "{kind}: retried");
            cases += 1;
        }
    }
    assert!(
        failed >= calls as usize,
        "{kind}: only {failed} cases failed"
    );
    eprintln!("{kind}: {calls} store calls per restore, {cases} cases, {failed} failed cleanly");
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_every_call_of_a_restore_from_memory() {
    every_call(
        "memory",
        Arc::new(MemoryStore::new()),
        Duration::from_millis(200),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_every_call_of_a_restore_from_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("local store");
    every_call("local", Arc::new(store), Duration::from_millis(500), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_every_call_of_a_restore_from_s3() {
    let server = S3TestServer::settings();
    let prefix = format!("restore-faults-{:016x}", rand::random::<u64>());
    let store = server.config(&prefix).build().expect("s3 store");
    every_call("s3", Arc::new(store), Duration::from_secs(1), false).await;
}
