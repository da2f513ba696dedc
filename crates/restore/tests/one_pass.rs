//! Every object a restore needs is read from the store exactly once (issue 14): counted
//! through the call log of a `FaultStore` with no fault planned, on the memory and local
//! directory stores, for a restore into a new database and for a forced restore in place
//! over the backed-up database itself (which stages the verified objects in a local spool
//! and loads from there). The spool directory is empty again afterwards, also when the
//! restore fails, and a failed forced restore leaves the database untouched.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Fixture, State, small_config, state_of};
use tito_backup::Repository;
use tito_catalog::Target;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, RestoreOptions, RestoreResult, restore, restore_with_catalog};
use tito_store::{Fault, FaultPlan, FaultStore, LocalStore, MemoryStore, Store};

/// A source with a snapshot of several chunks, log segments after it, and the state at
/// an LSN in the middle of the log (the oracle of a restore to that LSN).
async fn source(store: Arc<dyn Store>) -> (Fixture, u64, State) {
    let fx = Fixture::with(Arc::new(MemoryEngine::new()), store, small_config()).await;
    for i in 0..80u8 {
        fx.put(&[(&[b'k', i], &[i; 120])]).await;
    }
    fx.service.run_backup().await.expect("backup");
    let mut mid = (0, State::new());
    for i in 0..40u8 {
        let lsn = fx
            .put(&[(&[b'k', i * 2 % 80], b"changed"), (&[b'n', i], &[i; 50])])
            .await;
        if i == 30 {
            mid = (lsn, state_of(fx.engine.as_ref()).await);
        }
    }
    fx.service.ship_log().await.expect("ship");
    (fx, mid.0, mid.1)
}

/// Reads of each key (`get`, `get_range`, `get_stream`) in `plan`'s history.
fn reads(plan: &FaultPlan) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for call in plan.history() {
        if matches!(call.op, "get" | "get_range" | "get_stream") {
            *out.entry(call.key).or_insert(0) += 1;
        }
    }
    out
}

/// Restore to `lsn` through a counting store, opening the repository through it too.
async fn counted_restore(
    store: &Arc<dyn Store>,
    target: Arc<dyn Engine>,
    opts: &RestoreOptions,
) -> (FaultPlan, Result<RestoreResult, String>) {
    let plan = FaultPlan::new();
    let counting: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), plan.clone()));
    let repo = Repository::open(counting).await.expect("open repository");
    let result = restore(&repo, target, opts, &NoProgress)
        .await
        .map_err(|e| e.to_string());
    (plan, result)
}

/// Every object of the plan read once, and no object read twice.
fn assert_once(what: &str, plan: &FaultPlan, result: &RestoreResult) {
    let reads = reads(plan);
    let objects = result.plan.objects();
    assert!(
        objects.len() >= 8,
        "{what}: only {} objects planned",
        objects.len()
    );
    assert!(
        result.plan.segments.len() >= 3 && result.plan.snapshot.chunks.len() >= 3,
        "{what}: the plan needs several chunks and segments"
    );
    for (key, _) in &objects {
        assert_eq!(reads.get(key), Some(&1), "{what}: reads of {key}");
    }
    let manifest = format!(
        "{}{}",
        result.plan.snapshot.dir,
        tito_format::layout::MANIFEST
    );
    assert_eq!(
        reads.get(&manifest),
        Some(&1),
        "{what}: reads of {manifest}"
    );
    for (key, n) in &reads {
        assert_eq!(*n, 1, "{what}: {key} read {n} times");
    }
    let size: u64 = objects.iter().map(|(_, s)| s).sum();
    assert_eq!(
        result.bytes_downloaded, size,
        "{what}: bytes downloaded are the plan's bytes, once"
    );
}

async fn each_object_once(kind: &str, store: Arc<dyn Store>) {
    let (fx, lsn, oracle) = source(store.clone()).await;
    let spool = tempfile::tempdir().expect("spool dir");
    let opts = RestoreOptions {
        spool_dir: Some(spool.path().to_path_buf()),
        ..RestoreOptions::new(Target::Lsn(lsn))
    };

    // A new database: streamed into in one pass.
    let fresh: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let (plan, result) = counted_restore(&store, fresh.clone(), &opts).await;
    let result = result.expect("restore into a new database");
    assert_once(&format!("{kind}, new database"), &plan, &result);
    assert_eq!(
        state_of(fresh.as_ref()).await,
        oracle,
        "{kind}: new database"
    );

    // In place over the backed-up database, which holds later data: forced.
    let before = state_of(fx.engine.as_ref()).await;
    assert_ne!(before, oracle);
    let forced = RestoreOptions {
        force: true,
        ..opts.clone()
    };
    // A store failing at the last read of the verify pass: nothing changed, spool gone.
    let calls = plan.calls();
    let failing = FaultPlan::new();
    failing.fail_call(calls, Fault::Permanent);
    let faulty: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), failing.clone()));
    let repo = Repository::open(faulty).await.expect("open repository");
    let err = restore(&repo, fx.engine.clone(), &forced, &NoProgress)
        .await
        .expect_err("a failing store fails the forced restore");
    assert!(err.to_string().contains("injected fault"), "{kind}: {err}");
    assert_eq!(
        state_of(fx.engine.as_ref()).await,
        before,
        "{kind}: a failed forced restore changed the database"
    );
    assert_spool_empty(kind, spool.path());

    let (plan, result) = counted_restore(&store, fx.engine.clone(), &forced).await;
    let result = result.expect("forced restore in place");
    assert_once(&format!("{kind}, forced in place"), &plan, &result);
    assert_eq!(
        state_of(fx.engine.as_ref()).await,
        oracle,
        "{kind}: in place"
    );
    assert_spool_empty(kind, spool.path());

    // A caller that planned from a catalog passes it on: its documents are read once.
    let plan = FaultPlan::new();
    let counting: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), plan.clone()));
    let repo = Repository::open(counting).await.expect("open repository");
    let catalog = repo.catalog().await.expect("catalog");
    catalog.plan(&opts.target, None).expect("plan");
    let fresh: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let result = restore_with_catalog(&repo, &catalog, fresh.clone(), &opts, &NoProgress)
        .await
        .expect("restore with a catalog");
    assert_once(&format!("{kind}, planned first"), &plan, &result);
    assert_eq!(
        state_of(fresh.as_ref()).await,
        oracle,
        "{kind}: planned first"
    );
}

fn assert_spool_empty(kind: &str, dir: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("spool dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(left.is_empty(), "{kind}: spool files left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_object_is_read_once_from_memory() {
    each_object_once("memory", Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_object_is_read_once_from_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("local store");
    each_object_once("local", Arc::new(store)).await;
}
