//! Log compaction keeps every point restorable.
//!
//! - `compaction_keeps_every_point`: random histories of many small segments with shipping,
//!   compaction (random level windows and merged-segment caps), snapshots and prunes
//!   interleaved; afterwards a restore to every LSN from the earliest kept base equals the
//!   oracle, verify is clean, compaction has nothing left to do and merged fewer objects.
//! - `a_crash_at_every_store_call_then_a_rerun`: a compaction whose store crashes (or loses
//!   an ack, or damages a body it writes) at each of its calls in turn; right after the
//!   crash every point still restores, and a rerun finishes the job.

mod common;

use std::sync::Arc;

use common::{Fixture, Oracle, State, restore_into_memory, small_config};
use futures::TryStreamExt;
use proptest::prelude::*;
use tito_backup::{BackupConfig, CompactionConfig, Repository, compact_repository};
use tito_catalog::{CompactionPolicy, Target};
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, verify_repository};
use tito_store::Store;
use tito_store::fault::{Fault, FaultPlan, FaultStore};
use tito_store::memory::MemoryStore;

#[derive(Clone, Debug)]
enum Step {
    /// Puts (key, value) and deletes (key) in one transaction.
    Commit(Vec<(u8, Option<u8>)>),
    Ship,
    Compact,
    Snapshot,
    PruneKeepLast(usize),
    Tick(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => proptest::collection::vec((0u8..16, proptest::option::of(any::<u8>())), 1..4)
            .prop_map(Step::Commit),
        6 => Just(Step::Ship),
        3 => Just(Step::Compact),
        1 => Just(Step::Snapshot),
        1 => (1usize..3).prop_map(Step::PruneKeepLast),
        4 => (1u64..6).prop_map(Step::Tick),
    ]
}

fn config_with(windows_ms: Vec<u64>, max_segment_bytes: u64) -> CompactionConfig {
    CompactionConfig {
        policy: CompactionPolicy {
            windows_ms,
            max_segment_bytes,
        },
        max_inputs: None,
        max_duration: None,
        ..CompactionConfig::default()
    }
}

/// Segments of at most 2 records, and no compaction by the service itself.
fn backup_config() -> BackupConfig {
    BackupConfig {
        segment_max_records: 2,
        compaction: None,
        ..small_config()
    }
}

/// A database on the memory engine backed up to a memory store with [`backup_config`].
async fn memory_fixture() -> Fixture {
    Fixture::with(
        Arc::new(MemoryEngine::new()),
        Arc::new(MemoryStore::new()),
        backup_config(),
    )
    .await
}

async fn commit(fx: &Fixture, oracle: &mut Oracle, ops: &[(u8, Option<u8>)]) {
    let ops = ops.to_vec();
    let (_, lsn) = fx
        .db
        .transaction_lsn(|txn| {
            let ops = ops.clone();
            async move {
                for (k, v) in ops {
                    match v {
                        Some(v) => txn.put(vec![b'k', k], vec![v; 40])?,
                        None => txn.delete(vec![b'k', k])?,
                    }
                }
                Ok::<_, tito_capture::CaptureError>(())
            }
        })
        .await
        .expect("commit");
    for (k, v) in ops {
        match v {
            Some(v) => oracle.model.insert(vec![b'k', k], vec![v; 40]),
            None => oracle.model.remove(&vec![b'k', k]),
        };
    }
    if let Some(lsn) = lsn {
        oracle.states.insert(lsn, oracle.model.clone());
    }
}

fn segment_count(keys: &[String]) -> usize {
    keys.iter()
        .filter(|k| {
            matches!(
                tito_format::layout::parse(k),
                tito_format::layout::ObjectName::Segment { .. }
            )
        })
        .count()
}

async fn keys(store: &Arc<dyn Store>) -> Vec<String> {
    store
        .list("")
        .map_ok(|o| o.key)
        .try_collect()
        .await
        .expect("list")
}

/// Every LSN from `from` to the oracle's last restores to the oracle's state.
async fn every_point_restores(store: &Arc<dyn Store>, oracle: &Oracle, from: u64, when: &str) {
    let last = *oracle.states.keys().last().unwrap();
    for lsn in from..=last {
        let Some(expected) = oracle.states.get(&lsn) else {
            continue;
        };
        match restore_into_memory(store, Target::Lsn(lsn)).await {
            Ok((_, state)) => assert_eq!(&state, expected, "LSN {lsn} {when}"),
            Err(e) => panic!("restore to LSN {lsn} {when} failed: {e}"),
        }
    }
}

async fn verify_clean(store: &Arc<dyn Store>, when: &str) {
    let repo = Repository::open(store.clone()).await.unwrap();
    let report = verify_repository(&repo, true, &NoProgress).await.unwrap();
    assert!(report.ok(), "verify {when}: {:?}", report.problems);
}

async fn scenario(steps: Vec<Step>, windows_ms: Vec<u64>, cap: u64) {
    let fx = memory_fixture().await;
    let config = config_with(windows_ms, cap);
    let mut oracle = Oracle::new();
    let mut pruned_below = 0u64;
    let mut first_snapshot: Option<u64> = None;
    let noop = ();
    for step in steps {
        match step {
            Step::Commit(ops) => commit(&fx, &mut oracle, &ops).await,
            Step::Ship => {
                fx.service.ship_log().await.unwrap();
            }
            Step::Compact => {
                let repo = fx.repo().await;
                compact_repository(&repo, &config, false, &noop)
                    .await
                    .unwrap();
            }
            Step::Snapshot => {
                let s = fx.service.snapshot().await.unwrap();
                first_snapshot.get_or_insert(s.lsn);
            }
            Step::PruneKeepLast(n) => {
                let policy = tito_catalog::RetentionPolicy {
                    keep_last: Some(n),
                    ..Default::default()
                };
                let r = fx.service.prune(&policy, false).await.unwrap();
                pruned_below = pruned_below.max(r.oldest_kept_lsn.unwrap_or(0));
            }
            Step::Tick(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        }
    }
    fx.service.ship_log().await.unwrap();
    // Close every window: a last commit after the largest one.
    let top = *config.policy.windows_ms.last().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(top + 1)).await;
    commit(&fx, &mut oracle, &[(0, Some(0))]).await;
    fx.service.ship_log().await.unwrap();

    let before = segment_count(&keys(&fx.store).await);
    let repo = fx.repo().await;
    let done = compact_repository(&repo, &config, false, &noop)
        .await
        .unwrap();
    assert!(done.complete);
    let after = segment_count(&keys(&fx.store).await);
    assert_eq!(
        after as u64, done.segments_after,
        "the result counts the log"
    );
    assert!(after <= before, "compaction never adds segments");
    // Runs again reach a fixpoint, each shrinking the log: a merged segment compresses
    // better than its inputs did apart, so two pieces cut at the cap may fit together in the
    // next run, but never without fewer segments after it.
    let mut segments = after;
    let mut runs = 0;
    loop {
        let again = compact_repository(&repo, &config, false, &noop)
            .await
            .unwrap();
        if (again.written, again.deleted) == (0, 0) {
            break;
        }
        let now = segment_count(&keys(&fx.store).await);
        assert!(
            now < segments,
            "a run that merged left {now} segments of {segments}"
        );
        segments = now;
        runs += 1;
        assert!(runs <= after, "no fixpoint after {runs} more runs");
    }
    // Every closed top-level window holds at most one piece per cap, here: the merged log
    // has no two consecutive segments of one closed top window that would fit together.
    let catalog = repo.catalog().await.unwrap();
    for level in 1..=config.policy.windows_ms.len() {
        assert!(tito_catalog::plan_compaction(&catalog, &config.policy, level).is_empty());
    }
    // Points before the oldest snapshot a prune kept may be gone; all others must restore.
    let _ = first_snapshot;
    every_point_restores(&fx.store, &oracle, pruned_below, "after compaction").await;
    verify_clean(&fx.store, "after compaction").await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_every_point(
        steps in proptest::collection::vec(step(), 1..70),
        base in 1u64..4,
        factors in proptest::collection::vec(2u64..5, 1..4),
        cap in prop_oneof![Just(u64::MAX), 200u64..4000],
    ) {
        let mut windows = vec![base];
        for f in factors {
            let w = windows.last().unwrap() * f;
            windows.push(w);
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(scenario(steps, windows, cap));
    }
}

/// Copy every object of `from` into a new memory store.
async fn copy_store(from: &Arc<dyn Store>) -> Arc<dyn Store> {
    let to: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for key in keys(from).await {
        to.put(&key, from.get(&key).await.unwrap()).await.unwrap();
    }
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_store_call_then_a_rerun() {
    let fx = memory_fixture().await;
    let mut oracle = Oracle::new();
    // Three closed 4 ms windows of several small segments each, a snapshot in the middle.
    for round in 0..12u8 {
        commit(&fx, &mut oracle, &[(round % 5, Some(round)), (round, None)]).await;
        commit(&fx, &mut oracle, &[(round % 3, Some(round))]).await;
        fx.service.ship_log().await.unwrap();
        if round == 5 {
            fx.service.snapshot().await.unwrap();
        }
        if round % 3 == 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    commit(&fx, &mut oracle, &[(1, Some(1))]).await;
    fx.service.ship_log().await.unwrap();
    let config = config_with(vec![4, 16], 1 << 20);
    let noop = ();

    // A clean run on a copy counts the calls a compaction makes.
    let plan = FaultPlan::new();
    let counted: Arc<dyn Store> =
        Arc::new(FaultStore::new(copy_store(&fx.store).await, plan.clone()));
    let clean = compact_repository(
        &Repository::open(counted.clone()).await.unwrap(),
        &config,
        false,
        &noop,
    )
    .await
    .unwrap();
    assert!(
        clean.written >= 2,
        "the history must give merges: {clean:?}"
    );
    let total = plan.calls();
    assert!(total > 4);

    for n in 1..=total {
        for fault in [
            None,
            Some(Fault::LostAck),
            Some(Fault::Truncate),
            Some(Fault::Alter),
        ] {
            let store = copy_store(&fx.store).await;
            let plan = FaultPlan::new();
            let faulty: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), plan.clone()));
            let repo = Repository::open(faulty).await.unwrap();
            let at = plan.calls() + n;
            match fault {
                None => plan.crash_from(at),
                Some(f) => plan.fail_call(at, f),
            };
            let _ = compact_repository(&repo, &config, false, &noop).await;
            let when = format!("after a {fault:?} fault at call {n}");
            // Straight after the crash: nothing lost, only perhaps overlaps left.
            every_point_restores(&store, &oracle, 0, &when).await;
            // The rerun finishes the job.
            let rerun = Repository::open(store.clone()).await.unwrap();
            compact_repository(&rerun, &config, false, &noop)
                .await
                .unwrap_or_else(|e| panic!("rerun {when}: {e}"));
            let catalog = rerun.catalog().await.unwrap();
            for level in 1..=2 {
                assert!(
                    tito_catalog::plan_compaction(&catalog, &config.policy, level).is_empty(),
                    "work left {when}"
                );
            }
            assert_eq!(
                segment_count(&keys(&store).await) as u64,
                clean.segments_after,
                "segments {when}"
            );
            every_point_restores(&store, &oracle, 0, &format!("{when}, rerun")).await;
            verify_clean(&store, &when).await;
        }
    }
}

/// Restore with a catalog loaded before a compaction deleted the segments it planned on
/// (a restore beside a running backup that compacts): into an empty engine, over an
/// existing one (`--force`) and as a dry run.
async fn restore_with_stale(
    repo: &Repository,
    stale: &tito_catalog::Catalog,
    target: Target,
    mode: &str,
) -> Result<State, tito_restore::RestoreError> {
    let engine: Arc<dyn tito_engine::Engine> = Arc::new(MemoryEngine::new());
    let mut opts = tito_restore::RestoreOptions::new(target);
    match mode {
        "force" => {
            // An occupied target: restore replaces it once every object checked out.
            let db = tito_capture::Db::open(engine.clone()).await.unwrap();
            db.transaction(|txn| async move {
                txn.put(b"old".to_vec(), b"data".to_vec())?;
                Ok::<_, tito_capture::CaptureError>(())
            })
            .await
            .unwrap();
            opts.force = true;
        }
        "dry-run" => opts.dry_run = true,
        _ => {}
    }
    tito_restore::restore_with_catalog(repo, stale, engine.clone(), &opts, &NoProgress).await?;
    Ok(common::state_of(engine.as_ref()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_planned_before_a_compaction_takes_the_merged_segments() {
    let fx = memory_fixture().await;
    let mut oracle = Oracle::new();
    let config = config_with(vec![4, 16], 1 << 20);
    let noop = ();
    // Early windows, compacted before the restore plans: their merged segments stay.
    for r in 0..6u8 {
        commit(&fx, &mut oracle, &[(r % 5, Some(r)), (r, None)]).await;
        fx.service.ship_log().await.unwrap();
        if r == 2 {
            fx.service.snapshot().await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let repo = fx.repo().await;
    compact_repository(&repo, &config, false, &noop)
        .await
        .unwrap();
    // Later windows of small segments, still uncompacted when the restore plans.
    for r in 6..14u8 {
        commit(&fx, &mut oracle, &[(r % 7, Some(r))]).await;
        fx.service.ship_log().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    commit(&fx, &mut oracle, &[(1, Some(1))]).await;
    fx.service.ship_log().await.unwrap();
    let last = *oracle.states.keys().last().unwrap();
    let snapshot_lsn = repo
        .catalog()
        .await
        .unwrap()
        .plan(&Target::Latest, None)
        .unwrap()
        .snapshot
        .lsn;

    for mode in ["new", "force", "dry-run"] {
        for target in [
            Target::Latest,
            Target::Lsn(last - 1),
            Target::Lsn(snapshot_lsn + 1),
        ] {
            let store = copy_store(&fx.store).await;
            let repo = Repository::open(store.clone()).await.unwrap();
            let stale = repo.catalog().await.unwrap();
            let planned = stale.plan(&target, None).unwrap();
            let before = segment_count(&keys(&store).await);
            let done = compact_repository(&repo, &config, false, &noop)
                .await
                .unwrap();
            assert!(
                done.deleted > 0,
                "the compaction must delete planned segments"
            );
            let mut gone = 0;
            for s in &planned.segments {
                gone += usize::from(store.head(&s.segment.key).await.is_err());
            }
            // The latest state needs the later small segments, which the compaction merges
            // (their windows are closed); earlier targets may have planned on kept ones.
            assert!(
                gone > 0 || target != Target::Latest,
                "{mode} {target:?}: some planned segment must be gone ({before} segments before)"
            );
            let state = restore_with_stale(&repo, &stale, target.clone(), mode)
                .await
                .unwrap_or_else(|e| panic!("{mode} restore to {target:?} with a stale plan: {e}"));
            if mode == "dry-run" {
                continue;
            }
            let lsn = match &target {
                Target::Lsn(n) => *n,
                _ => last,
            };
            assert_eq!(&state, &oracle.states[&lsn], "{mode} restore to {target:?}");
        }
    }

    // A planned segment the store lost for good is reported, not skipped: the fresh
    // listing has a hole where it was.
    let store = copy_store(&fx.store).await;
    let repo = Repository::open(store.clone()).await.unwrap();
    let stale = repo.catalog().await.unwrap();
    let planned = stale.plan(&Target::Latest, None).unwrap();
    let lost = planned.segments[planned.segments.len() / 2]
        .segment
        .key
        .clone();
    store
        .delete_many(std::slice::from_ref(&lost))
        .await
        .unwrap();
    for mode in ["new", "force", "dry-run"] {
        let err = restore_with_stale(&repo, &stale, Target::Latest, mode)
            .await
            .expect_err("a lost segment must fail the restore");
        assert!(
            matches!(
                err,
                tito_restore::RestoreError::Plan(tito_catalog::PlanError::Gap { .. })
            ),
            "{mode}: {err}"
        );
    }
}
