//! Incremental snapshots (shared, content-named chunks, only changed chunks read again;
//! manifest v3).
//!
//! - `incremental_snapshots_restore_like_the_oracle`: random histories of writes, shipping,
//!   incremental and `--full` snapshots and prunes; every kept snapshot and every point
//!   after the oldest kept one restores to the in-memory model, verify is clean.
//! - `a_small_change_uploads_few_chunks`: after changing 1% of the keys (one hot range) or
//!   one key, the next snapshot uploads a few chunks (puts counted by the fault wrapper)
//!   and reads only their pairs, whether the changes were shipped or not.
//! - `a_restore_beside_the_service_makes_it_read_everything`: a restore in place under a
//!   running service; its next snapshot takes nothing over.
//! - `prune_keeps_shared_chunks_of_kept_manifests`: prune deletes a shared chunk only when
//!   no kept manifest references it and it is older than the grace period.
//! - `a_crash_at_every_store_call_of_an_incremental_snapshot`: the repository stays
//!   restorable, and a retry succeeds.
//! - `v1_manifests_still_restore`: snapshots written before manifest v2 restore, verify,
//!   and are pruned with their own chunks.
//! - `encrypted_chunk_names_are_keyed`: names in an encrypted repository are not the
//!   unkeyed content hash, and differ between keyrings.
//! - `prune_keeps_chunks_a_snapshot_finished_beside_it_reuses` and
//!   `a_snapshot_whose_reused_chunk_was_pruned_withdraws_and_retries`: a prune and a
//!   snapshot interleaved at their worst moments.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Fixture, Oracle, State, restore_into_memory, small_config};
use futures::TryStreamExt;
use proptest::prelude::*;
use tito_backup::prune::prune_repository_at;
use tito_backup::{BackupConfig, BackupService, Repository, SnapshotOptions, SnapshotResult};
use tito_catalog::{RetentionPolicy, Target};
use tito_engine::memory::MemoryEngine;
use tito_format::Manifest;
use tito_format::layout::{self, ObjectName};
use tito_format::manifest::MANIFEST_FORMAT_V1;
use tito_restore::{NoProgress, verify_repository};
use tito_store::Store;
use tito_store::fault::{Fault, FaultPlan, FaultStore};
use tito_store::memory::MemoryStore;

/// Chunks of about 512 bytes (128 to 4096) so that small histories make many chunks.
fn config() -> BackupConfig {
    BackupConfig {
        chunk_target_bytes: 512,
        compaction: None,
        ..small_config()
    }
}

/// A database on the memory engine backed up into a memory store with [`config`].
async fn memory_fixture() -> Fixture {
    Fixture::with(
        Arc::new(MemoryEngine::new()),
        Arc::new(MemoryStore::new()),
        config(),
    )
    .await
}

fn key(k: u16) -> Vec<u8> {
    format!("key/{k:05}").into_bytes()
}

fn value(v: u8, len: usize) -> Vec<u8> {
    vec![v; len]
}

/// Commit puts (`Some((v, len))`) and deletes in one transaction, in the model too.
async fn commit(fx: &Fixture, oracle: &mut Oracle, ops: &[(u16, Option<(u8, usize)>)]) {
    let ops = ops.to_vec();
    let (_, lsn) = fx
        .db
        .transaction_lsn(|txn| {
            let ops = ops.clone();
            async move {
                for (k, v) in ops {
                    match v {
                        Some((v, len)) => txn.put(key(k), value(v, len))?,
                        None => txn.delete(key(k))?,
                    }
                }
                Ok::<_, tito_capture::CaptureError>(())
            }
        })
        .await
        .expect("commit");
    for (k, v) in ops {
        match v {
            Some((v, len)) => oracle.model.insert(key(k), value(v, len)),
            None => oracle.model.remove(&key(k)),
        };
    }
    if let Some(lsn) = lsn {
        oracle.states.insert(lsn, oracle.model.clone());
    }
}

/// Delete keys `[from, from + len)` with one range delete, in the model too.
async fn delete_range(fx: &Fixture, oracle: &mut Oracle, from: u16, len: u16) {
    let range = tito_engine::KeyRange::new(key(from), key(from.saturating_add(len)));
    let (_, lsn) = fx
        .db
        .transaction_lsn(|txn| {
            let range = range.clone();
            async move { txn.delete_range(&range) }
        })
        .await
        .expect("delete range");
    oracle
        .model
        .retain(|k, _| !(range.start <= *k && Some(k) < range.end.as_ref()));
    if let Some(lsn) = lsn {
        oracle.states.insert(lsn, oracle.model.clone());
    }
}

async fn keys(store: &Arc<dyn Store>) -> Vec<String> {
    store
        .list("")
        .map_ok(|o| o.key)
        .try_collect()
        .await
        .expect("list")
}

fn shared_keys(keys: &[String]) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| matches!(layout::parse(k), ObjectName::SharedChunk { .. }))
        .cloned()
        .collect()
}

async fn verify_clean(store: &Arc<dyn Store>, when: &str) {
    let repo = Repository::open(store.clone()).await.unwrap();
    let report = verify_repository(&repo, true, &NoProgress).await.unwrap();
    assert!(report.ok(), "verify {when}: {:?}", report.problems);
}

async fn restores_to(store: &Arc<dyn Store>, target: Target, expected: &State, when: &str) {
    match restore_into_memory(store, target.clone()).await {
        Ok((_, state)) => assert_eq!(&state, expected, "{target:?} {when}"),
        Err(e) => panic!("restore to {target:?} {when} failed: {e}"),
    }
}

async fn manifest_of(store: &Arc<dyn Store>, s: &SnapshotResult) -> Manifest {
    let bytes = store.get(&s.manifest_key).await.unwrap();
    Manifest::decode(&bytes, &s.manifest_key).unwrap()
}

#[derive(Clone, Debug)]
enum Step {
    /// Puts (key, value byte, value length) and deletes in one transaction.
    Commit(Vec<(u16, Option<(u8, usize)>)>),
    /// Delete keys `[from, from + len)` in one transaction.
    DeleteRange(u16, u16),
    Ship,
    Snapshot {
        full: bool,
    },
    PruneKeepLast(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => proptest::collection::vec(
            (0u16..300, proptest::option::weighted(0.85, (any::<u8>(), 1usize..90))),
            1..12,
        )
        .prop_map(Step::Commit),
        1 => (0u16..300, 0u16..40).prop_map(|(from, len)| Step::DeleteRange(from, len)),
        4 => Just(Step::Ship),
        3 => Just(Step::Snapshot { full: false }),
        1 => Just(Step::Snapshot { full: true }),
        1 => (1usize..4).prop_map(Step::PruneKeepLast),
    ]
}

async fn scenario(steps: Vec<Step>) {
    let fx = memory_fixture().await;
    let mut oracle = Oracle::new();
    // Kept snapshots by manifest key: their LSN.
    let mut snapshots: BTreeMap<String, u64> = BTreeMap::new();
    let mut restorable_from = 0u64;
    for step in steps {
        match step {
            Step::Commit(ops) => commit(&fx, &mut oracle, &ops).await,
            Step::DeleteRange(from, len) => delete_range(&fx, &mut oracle, from, len).await,
            Step::Ship => {
                fx.service.ship_log().await.unwrap();
            }
            Step::Snapshot { full } => {
                let s = fx
                    .service
                    .snapshot_with_options(&SnapshotOptions { full }, &|_, _| {})
                    .await
                    .unwrap();
                let m = manifest_of(&fx.store, &s).await;
                assert_eq!(m.shares_chunks(), !full && s.chunks > 0, "{m:?}");
                assert_eq!(s.chunks_reused + s.chunks_uploaded, s.chunks);
                assert!(s.pairs_read <= s.pairs, "{s:?}");
                if full {
                    assert_eq!(s.chunks_reused, 0);
                    assert_eq!(s.pairs_read, s.pairs);
                }
                snapshots.insert(s.manifest_key.clone(), s.lsn);
            }
            Step::PruneKeepLast(n) => {
                fx.service.ship_log().await.unwrap();
                let policy = RetentionPolicy {
                    keep_last: Some(n),
                    ..Default::default()
                };
                let repo = fx.repo().await;
                // No grace: every unreferenced shared chunk goes at once (no snapshot is
                // being written beside this prune).
                let r = prune_repository_at(&repo, &policy, u64::MAX / 2, Duration::ZERO, false)
                    .await
                    .unwrap();
                restorable_from = restorable_from.max(r.oldest_kept_lsn.unwrap_or(0));
                let listed = keys(&fx.store).await;
                snapshots.retain(|k, _| listed.contains(k));
                // Nothing unreferenced is left, nothing referenced is gone.
                let catalog = repo.catalog().await.unwrap();
                assert!(catalog.damaged.is_empty(), "{:?}", catalog.damaged);
                let referenced = tito_catalog::referenced_shared_chunks(&catalog);
                assert_eq!(shared_keys(&listed), referenced, "after prune keep {n}");
            }
        }
    }
    fx.service.ship_log().await.unwrap();
    // Every kept snapshot restores to the model at its LSN.
    for lsn in snapshots.values() {
        let expected = &oracle.states.range(..=lsn).next_back().unwrap().1.clone();
        restores_to(&fx.store, Target::Lsn(*lsn), expected, "at a snapshot").await;
    }
    // A repository that never received a record or a snapshot has nothing to restore.
    let last = *oracle.states.keys().last().unwrap();
    if last == 0 && snapshots.is_empty() {
        return;
    }
    // And every point after the oldest kept snapshot (or from the start if none was pruned).
    for (lsn, expected) in oracle.states.range(restorable_from..=last) {
        restores_to(&fx.store, Target::Lsn(*lsn), expected, "at a point").await;
    }
    verify_clean(&fx.store, "at the end").await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_snapshots_restore_like_the_oracle(
        steps in proptest::collection::vec(step(), 1..50),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(scenario(steps));
    }
}

/// A restore in place under a service that stays open (its keys never pass through the
/// log that service ships) makes the service's next snapshot read everything: a snapshot
/// that took its chunks over would hold the replaced database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_beside_the_service_makes_it_read_everything() {
    let fx = memory_fixture().await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 300).await;
    fx.service.ship_log().await.unwrap();
    let early = fx.service.snapshot().await.unwrap();
    commit(&fx, &mut oracle, &[(1, Some((9, 50))), (299, None)]).await;
    fx.service.ship_log().await.unwrap();
    let base = fx.service.snapshot().await.unwrap();
    assert!(base.pairs_read < base.pairs, "{base:?}");
    // Restore the early snapshot in place, then write past the base's LSN.
    let repo = fx.repo().await;
    let mut opts = tito_restore::RestoreOptions::new(Target::Lsn(early.lsn));
    opts.force = true;
    tito_restore::restore(&repo, fx.engine.clone(), &opts, &NoProgress)
        .await
        .unwrap();
    for i in 0..(base.lsn - early.lsn + 2) as u16 {
        fx.db
            .transaction(|t| async move { t.put(key(1000 + i), b"after".to_vec()) })
            .await
            .unwrap();
    }
    let after = fx.service.snapshot().await.unwrap();
    assert!(after.lsn > base.lsn, "{after:?} {base:?}");
    assert_eq!(after.pairs_read, after.pairs, "{after:?}");
    let (_, restored) = restore_into_memory(&fx.store, Target::Lsn(after.lsn))
        .await
        .unwrap();
    assert_eq!(restored, common::state_of(fx.engine.as_ref()).await);
}

/// A fixture whose store counts calls.
async fn counted_fixture(config: BackupConfig) -> (Fixture, FaultPlan) {
    let plan = FaultPlan::new();
    let store: Arc<dyn Store> =
        Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), plan.clone()));
    let fx = Fixture::with(Arc::new(MemoryEngine::new()), store, config).await;
    (fx, plan)
}

/// Chunk objects put (or created) from call `from` on.
fn chunk_puts(plan: &FaultPlan, from: u64) -> usize {
    plan.history()
        .iter()
        .filter(|c| c.n > from && (c.op == "put" || c.op == "put_if_absent"))
        .filter(|c| c.key.ends_with(".chunk"))
        .count()
}

/// Load `n` keys of about 100 bytes in batches.
async fn load(fx: &Fixture, oracle: &mut Oracle, n: u16) {
    for start in (0..n).step_by(500) {
        let ops: Vec<_> = (start..n.min(start + 500))
            .map(|k| (k, Some(((k % 251) as u8, 80 + (k % 40) as usize))))
            .collect();
        commit(fx, oracle, &ops).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_change_uploads_few_chunks() {
    // 20,000 pairs of about 110 bytes in chunks of about 16 KiB: about 130 chunks.
    let (fx, plan) = counted_fixture(BackupConfig {
        chunk_target_bytes: 16 << 10,
        ..config()
    })
    .await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 20_000).await;
    let before = plan.calls();
    let first = fx.service.snapshot().await.unwrap();
    assert!(first.chunks > 80, "{first:?}");
    assert_eq!(chunk_puts(&plan, before) as u64, first.chunks);
    assert_eq!(first.chunks_reused, 0);

    // 1% of the keys, one hot range, get new values (some of another length).
    let ops: Vec<_> = (5_000..5_200u16)
        .map(|k| (k, Some((7u8, 80 + (k % 3) as usize * 20))))
        .collect();
    commit(&fx, &mut oracle, &ops).await;
    let before = plan.calls();
    let second = fx.service.snapshot().await.unwrap();
    let uploaded = chunk_puts(&plan, before) as u64;
    assert_eq!(uploaded, second.chunks_uploaded);
    // The changes were still in the database's log: only their chunks were read.
    assert_eq!(first.pairs_read, first.pairs);
    assert!(
        second.pairs_read * 10 < second.pairs,
        "{} of {} pairs read after 1% changed",
        second.pairs_read,
        second.pairs
    );
    assert!(
        uploaded <= 6,
        "1% of the keys in one range changed, {uploaded} of {} chunks uploaded",
        second.chunks
    );
    // Chunk bytes (the manifest, listing every chunk, is most of what is left here).
    let manifest_bytes = |s: &SnapshotResult| {
        let store = fx.store.clone();
        let key = s.manifest_key.clone();
        async move { store.get(&key).await.unwrap().len() as u64 }
    };
    let chunk_bytes_1 = first.bytes - manifest_bytes(&first).await;
    let chunk_bytes_2 = second.bytes - manifest_bytes(&second).await;
    assert!(
        chunk_bytes_2 * 20 < chunk_bytes_1,
        "{chunk_bytes_2} chunk bytes uploaded after {chunk_bytes_1} (a twentieth at most)"
    );

    // One key inserted, one deleted, one changed: their chunks and perhaps a neighbour.
    commit(
        &fx,
        &mut oracle,
        &[
            (30_000, Some((1, 90))),
            (12_345, None),
            (17_000, Some((2, 300))),
        ],
    )
    .await;
    // Shipped (and so trimmed from the database) before the snapshot: the shipper's notes
    // say what changed.
    fx.service.ship_log().await.unwrap();
    let before = plan.calls();
    let third = fx.service.snapshot().await.unwrap();
    let uploaded = chunk_puts(&plan, before);
    assert!((1..=6).contains(&uploaded), "{uploaded} chunks uploaded");
    assert!(
        third.pairs_read * 10 < third.pairs,
        "{} of {} pairs read after three keys changed",
        third.pairs_read,
        third.pairs
    );

    // Nothing changed: nothing but the manifest is uploaded.
    let before = plan.calls();
    let fourth = fx.service.snapshot().await.unwrap();
    assert_eq!(chunk_puts(&plan, before), 0);
    assert_eq!(fourth.chunks_reused, fourth.chunks);
    assert_eq!(fourth.pairs_read, 0, "nothing changed, nothing read");

    // `--full` uploads every chunk again, into its own folder.
    let before = plan.calls();
    let full = fx
        .service
        .snapshot_with_options(&SnapshotOptions { full: true }, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(chunk_puts(&plan, before) as u64, full.chunks);
    assert!(!manifest_of(&fx.store, &full).await.shares_chunks());

    fx.service.ship_log().await.unwrap();
    for s in [&first, &second, &third, &fourth, &full] {
        let expected = &oracle.states.range(..=s.lsn).next_back().unwrap().1.clone();
        restores_to(&fx.store, Target::Lsn(s.lsn), expected, "snapshot").await;
    }
    verify_clean(&fx.store, "after small changes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_shared_chunks_of_kept_manifests() {
    let fx = Fixture::with(
        Arc::new(MemoryEngine::new()),
        Arc::new(MemoryStore::new()),
        BackupConfig {
            chunk_target_bytes: 4 << 10,
            ..config()
        },
    )
    .await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 3_000).await;
    let first = fx.service.snapshot().await.unwrap();
    let ops: Vec<_> = (1_000..1_030u16).map(|k| (k, Some((9u8, 100)))).collect();
    commit(&fx, &mut oracle, &ops).await;
    let second = fx.service.snapshot().await.unwrap();
    fx.service.ship_log().await.unwrap();
    let m1 = manifest_of(&fx.store, &first).await;
    let m2 = manifest_of(&fx.store, &second).await;
    let chunks = |m: &Manifest| -> BTreeSet<String> {
        m.chunks.iter().map(|c| c.object_key("unused/")).collect()
    };
    let (c1, c2) = (chunks(&m1), chunks(&m2));
    let only_first: BTreeSet<_> = c1.difference(&c2).cloned().collect();
    assert!(!only_first.is_empty() && c1.intersection(&c2).count() > 0);
    // A chunk no manifest references (a snapshot that crashed before its manifest).
    let orphan = layout::shared_chunk(&"0f".repeat(32));
    fx.store
        .put(&orphan, fx.store.get(c1.first().unwrap()).await.unwrap())
        .await
        .unwrap();

    let repo = fx.repo().await;
    let keep_last = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let now = tito_backup::now_ms();
    // Within the grace period: the first manifest goes, every chunk stays.
    let r = prune_repository_at(&repo, &keep_last, now, Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert!(r.deleted.contains(&first.manifest_key), "{:?}", r.deleted);
    assert!(
        r.reasons
            .iter()
            .any(|l| l.contains("unreferenced shared chunk(s) kept for now")),
        "{:?}",
        r.reasons
    );
    let listed = shared_keys(&keys(&fx.store).await);
    assert!(listed.is_superset(&c1) && listed.contains(&orphan));
    // Past it: what only the pruned manifest and nothing referenced go; the rest stays.
    let later = now + 2 * 3_600_000;
    let r = prune_repository_at(&repo, &keep_last, later, Duration::from_secs(3600), false)
        .await
        .unwrap();
    let listed = shared_keys(&keys(&fx.store).await);
    assert_eq!(listed, c2, "deleted {:?}", r.deleted);
    assert!(only_first.iter().all(|k| r.deleted.contains(k)));
    assert!(r.deleted.contains(&orphan));
    let latest = oracle.model.clone();
    restores_to(&fx.store, Target::Latest, &latest, "after prune").await;
    restores_to(&fx.store, Target::Lsn(second.lsn), &latest, "after prune").await;
    verify_clean(&fx.store, "after prune").await;
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
async fn a_crash_at_every_store_call_of_an_incremental_snapshot() {
    let fx = Fixture::with(
        Arc::new(MemoryEngine::new()),
        Arc::new(MemoryStore::new()),
        BackupConfig {
            chunk_target_bytes: 2 << 10,
            upload_concurrency: 2,
            ..config()
        },
    )
    .await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 600).await;
    fx.service.snapshot().await.unwrap();
    let ops: Vec<_> = (100..110u16)
        .map(|k| (k, Some((3u8, 120))))
        .chain([(400, None), (700, Some((4u8, 50)))])
        .collect();
    commit(&fx, &mut oracle, &ops).await;
    fx.service.ship_log().await.unwrap();
    let state = oracle.model.clone();

    // A clean run on a copy counts the calls an incremental snapshot makes.
    let plan = FaultPlan::new();
    let counted: Arc<dyn Store> =
        Arc::new(FaultStore::new(copy_store(&fx.store).await, plan.clone()));
    let service = BackupService::new(fx.db.clone(), counted, fx.service.config().clone())
        .await
        .unwrap();
    let start = plan.calls();
    let clean = service.snapshot().await.unwrap();
    assert!(
        clean.chunks_reused > 0 && clean.chunks_uploaded > 0,
        "{clean:?}"
    );
    let total = plan.calls() - start;
    assert!(total > 4);

    for n in 1..=total {
        for fault in [None, Some(Fault::LostAck), Some(Fault::Transient)] {
            let store = copy_store(&fx.store).await;
            let plan = FaultPlan::new();
            let faulty: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), plan.clone()));
            let service = BackupService::new(fx.db.clone(), faulty, fx.service.config().clone())
                .await
                .unwrap();
            let at = plan.calls() + n;
            match fault {
                None => plan.crash_from(at),
                Some(f) => plan.fail_call(at, f),
            };
            let when = format!("after a {fault:?} fault at call {n}");
            let _ = service.snapshot().await;
            // Straight after the crash: restorable, the catalog sees nothing damaged.
            restores_to(&store, Target::Latest, &state, &when).await;
            let repo = Repository::open(store.clone()).await.unwrap();
            let catalog = repo.catalog().await.unwrap();
            assert!(catalog.damaged.is_empty(), "{when}: {:?}", catalog.damaged);
            // The retry succeeds and restores.
            plan.heal();
            let retry = service
                .snapshot()
                .await
                .unwrap_or_else(|e| panic!("retry {when}: {e}"));
            assert_eq!(retry.pairs, state.len() as u64);
            restores_to(&store, Target::Lsn(retry.lsn), &state, &when).await;
            verify_clean(&store, &when).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_manifests_still_restore() {
    let fx = memory_fixture().await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 200).await;
    // A snapshot as builds before manifest v2 wrote it: every chunk in its folder (as
    // `--full` writes them), its manifest version 1.
    let old = fx
        .service
        .snapshot_with_options(&SnapshotOptions { full: true }, &|_, _| {})
        .await
        .unwrap();
    let mut m = manifest_of(&fx.store, &old).await;
    m.format_version = MANIFEST_FORMAT_V1;
    // Version 1 digests every pair (version 3 the chunks' content hashes) and has no
    // `raw_bytes`.
    let mut digest = tito_format::KeyspaceDigest::new();
    for (k, v) in oracle.states.range(..=old.lsn).next_back().unwrap().1 {
        digest.update(k, v);
    }
    m.keyspace_digest = digest.finish();
    m.chunks.iter_mut().for_each(|c| c.raw_bytes = None);
    let body = m.encode(&old.manifest_key).unwrap();
    assert!(String::from_utf8_lossy(&body).contains("tito-manifest v1 blake3:"));
    fx.store
        .put(&old.manifest_key, Bytes::from(body))
        .await
        .unwrap();
    commit(
        &fx,
        &mut oracle,
        &[(5, Some((1, 10))), (300, Some((2, 20)))],
    )
    .await;
    fx.service.ship_log().await.unwrap();
    let at_old = oracle
        .states
        .range(..=old.lsn)
        .next_back()
        .unwrap()
        .1
        .clone();
    restores_to(&fx.store, Target::Lsn(old.lsn), &at_old, "v1").await;
    restores_to(&fx.store, Target::Latest, &oracle.model, "v1 and the log").await;
    verify_clean(&fx.store, "v1").await;

    // An incremental snapshot after it shares nothing with it, and prune takes the v1
    // snapshot with its own chunks.
    let new = fx.service.snapshot().await.unwrap();
    assert_eq!(new.chunks_reused, 0);
    let repo = fx.repo().await;
    let policy = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let r = prune_repository_at(&repo, &policy, tito_backup::now_ms(), Duration::ZERO, false)
        .await
        .unwrap();
    let dir = old.manifest_key.trim_end_matches(layout::MANIFEST);
    assert!(
        keys(&fx.store).await.iter().all(|k| !k.starts_with(dir)),
        "{:?}",
        r.deleted
    );
    restores_to(&fx.store, Target::Latest, &oracle.model, "after prune").await;
    verify_clean(&fx.store, "after prune").await;
}

/// In an encrypted repository chunk names are keyed: they are not the unkeyed content hash
/// anyone could compute from guessed pairs, another keyring names the same pairs
/// differently, and snapshots still share chunks and restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_chunk_names_are_keyed() {
    use tito_store::encrypt::{EncryptStore, Keyring};
    let mut names = Vec::new();
    for _ in 0..2 {
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let store: Arc<dyn Store> = Arc::new(EncryptStore::new(
            raw.clone(),
            Keyring::generate(),
            [layout::REPO_CONFIG.to_string()],
        ));
        let fx = Fixture::with(Arc::new(MemoryEngine::new()), store.clone(), config()).await;
        let mut oracle = Oracle::new();
        load(&fx, &mut oracle, 300).await;
        let first = fx.service.snapshot().await.unwrap();
        commit(&fx, &mut oracle, &[(10, Some((5, 5)))]).await;
        let second = fx.service.snapshot().await.unwrap();
        assert!(second.chunks_reused > 0, "{second:?}");
        // Only the changed chunk was read; the entries taken over keep their unkeyed
        // content hash beside their keyed name, which verify recomputes.
        assert!(second.pairs_read < second.pairs, "{second:?}");
        let m2 = manifest_of(&store, &second).await;
        assert!(
            m2.chunks
                .iter()
                .all(|c| c.content.is_some() && c.hash.is_some())
        );
        assert!(m2.chunks.iter().all(|c| c.content != c.hash));
        fx.service.ship_log().await.unwrap();
        restores_to(&store, Target::Latest, &oracle.model, "encrypted").await;
        restores_to(
            &store,
            Target::Lsn(second.lsn),
            &oracle.model,
            "encrypted snapshot",
        )
        .await;
        verify_clean(&store, "encrypted, incremental").await;
        // The unkeyed hash of the first snapshot's first chunk names no object.
        let m = manifest_of(&store, &first).await;
        let c = &m.chunks[0];
        let bytes = store.get(&c.object_key("unused/")).await.unwrap();
        let mut plain = tito_format::ContentHash::unkeyed();
        for pair in tito_format::ChunkReader::new(&bytes[..], "c").unwrap() {
            let (k, v) = pair.unwrap();
            plain.update(&k, &v);
        }
        let listed = shared_keys(&keys(&raw).await);
        assert!(!listed.contains(&layout::shared_chunk(&plain.finish())));
        assert!(listed.contains(&c.object_key("unused/")));
        names.push(listed);
    }
    assert!(
        names[0].is_disjoint(&names[1]),
        "two keyrings named equal pairs alike"
    );
}

/// A store that lets a test act at the worst moment: a snapshot's manifest appears right
/// before a prune's first delete (a snapshot finishing beside the prune), or a shared chunk
/// is deleted right before a snapshot's manifest is written (a prune beside the snapshot).
#[derive(Debug)]
struct RaceStore {
    inner: Arc<dyn Store>,
    /// Put before the first `delete_many`.
    before_delete: std::sync::Mutex<Option<(String, Bytes)>>,
    /// Deleted before the next manifest put.
    before_manifest: std::sync::Mutex<Option<String>>,
}

impl RaceStore {
    fn new() -> Arc<RaceStore> {
        Arc::new(RaceStore {
            inner: Arc::new(MemoryStore::new()),
            before_delete: Default::default(),
            before_manifest: Default::default(),
        })
    }
}

#[async_trait::async_trait]
impl Store for RaceStore {
    async fn put(&self, key: &str, data: Bytes) -> tito_store::Result<()> {
        if key.ends_with(layout::MANIFEST) {
            let gone = self.before_manifest.lock().unwrap().take();
            if let Some(gone) = gone {
                self.inner.delete_many(&[gone]).await?;
            }
        }
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> tito_store::Result<bool> {
        self.inner.put_if_absent(key, data).await
    }
    async fn put_multipart(&self, key: &str) -> tito_store::Result<Box<dyn tito_store::Upload>> {
        self.inner.put_multipart(key).await
    }
    async fn get(&self, key: &str) -> tito_store::Result<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> tito_store::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get_stream(
        &self,
        key: &str,
    ) -> tito_store::Result<futures::stream::BoxStream<'static, tito_store::Result<Bytes>>> {
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &str) -> tito_store::Result<tito_store::ObjectMeta> {
        self.inner.head(key).await
    }
    fn list(
        &self,
        prefix: &str,
    ) -> futures::stream::BoxStream<'static, tito_store::Result<tito_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn delete_many(&self, keys: &[String]) -> tito_store::Result<()> {
        let appear = self.before_delete.lock().unwrap().take();
        if let Some((key, body)) = appear {
            self.inner.put(&key, body).await?;
        }
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        "race://".into()
    }
}

/// A database on the memory engine backed up in chunks of about 4 KiB to a [`RaceStore`],
/// which the test also gets as a plain store.
async fn race_fixture() -> (Arc<RaceStore>, Arc<dyn Store>, Fixture) {
    let race = RaceStore::new();
    let store: Arc<dyn Store> = race.clone();
    let config = BackupConfig {
        chunk_target_bytes: 4 << 10,
        ..config()
    };
    let fx = Fixture::with(Arc::new(MemoryEngine::new()), store.clone(), config).await;
    (race, store, fx)
}

/// A prune that planned before a snapshot finished keeps the chunks that snapshot reused
/// from a manifest the prune deletes (they are old and were unreferenced in its plan).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_chunks_a_snapshot_finished_beside_it_reuses() {
    let (race, store, fx) = race_fixture().await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 3_000).await;
    let first = fx.service.snapshot().await.unwrap();
    let at_first = oracle.model.clone();
    let ops: Vec<_> = (1_000..1_030u16).map(|k| (k, Some((9u8, 100)))).collect();
    commit(&fx, &mut oracle, &ops).await;
    fx.service.snapshot().await.unwrap();
    fx.service.ship_log().await.unwrap();
    // The snapshot finishing beside the prune holds the first one's pairs (it reused every
    // chunk of it): its manifest appears once the prune has planned.
    let mut m = manifest_of(&store, &first).await;
    m.id = "00000000000000ff".into();
    let key = layout::snapshot_manifest(&layout::snapshot_dir(m.timeline, m.lsn, &m.id));
    *race.before_delete.lock().unwrap() = Some((key.clone(), Bytes::from(m.encode(&key).unwrap())));
    let policy = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let repo = fx.repo().await;
    let r = prune_repository_at(&repo, &policy, u64::MAX / 2, Duration::ZERO, false)
        .await
        .unwrap();
    assert!(r.deleted.contains(&first.manifest_key), "{:?}", r.deleted);
    let listed = shared_keys(&keys(&store).await);
    for c in &m.chunks {
        assert!(listed.contains(&c.object_key("unused/")), "{c:?} deleted");
    }
    assert!(repo.catalog().await.unwrap().damaged.is_empty());
    restores_to(
        &store,
        Target::Lsn(first.lsn),
        &at_first,
        "the late snapshot",
    )
    .await;
    verify_clean(&store, "after the race").await;
}

/// A snapshot whose reused chunk a prune deleted before its manifest went up withdraws the
/// manifest and fails; the retry uploads the chunk again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_reused_chunk_was_pruned_withdraws_and_retries() {
    let (race, store, fx) = race_fixture().await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 2_000).await;
    let first = fx.service.snapshot().await.unwrap();
    commit(&fx, &mut oracle, &[(5, Some((1, 10)))]).await;
    fx.service.ship_log().await.unwrap();
    let m = manifest_of(&store, &first).await;
    let victim = m.chunks.last().unwrap().object_key("unused/");
    *race.before_manifest.lock().unwrap() = Some(victim.clone());
    let err = fx
        .service
        .snapshot()
        .await
        .expect_err("a reused chunk is gone");
    assert!(
        matches!(err, tito_backup::BackupError::ChunksGone { missing: 1, .. }),
        "{err}"
    );
    let catalog = fx.repo().await.catalog().await.unwrap();
    // The new manifest was withdrawn; the first snapshot lost its chunk (damaged).
    assert!(catalog.timelines[&1].snapshots.is_empty());
    assert_eq!(catalog.damaged.len(), 1);
    assert_eq!(catalog.damaged[0].manifest_key, first.manifest_key);
    let retry = fx.service.snapshot().await.unwrap();
    assert!(keys(&store).await.contains(&victim), "uploaded again");
    restores_to(&store, Target::Lsn(retry.lsn), &oracle.model, "retry").await;
    // The chunk uploaded again repairs the first snapshot too.
    assert!(fx.repo().await.catalog().await.unwrap().damaged.is_empty());
    verify_clean(&store, "after the retry").await;
}

/// Chunks a crashed snapshot left (no manifest references them) are taken as they are once
/// read back and proven to hold the pairs; a damaged one is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_left_by_a_crashed_snapshot_are_checked_before_reuse() {
    let (fx, plan) = counted_fixture(BackupConfig {
        chunk_target_bytes: 4 << 10,
        ..config()
    })
    .await;
    let mut oracle = Oracle::new();
    load(&fx, &mut oracle, 2_000).await;
    let crashed = fx.service.snapshot().await.unwrap();
    // Its manifest never made it; one of its chunks is damaged in the store.
    let m = manifest_of(&fx.store, &crashed).await;
    fx.store
        .delete_many(std::slice::from_ref(&crashed.manifest_key))
        .await
        .unwrap();
    let damaged = m.chunks[1].object_key("unused/");
    fx.store
        .put(&damaged, Bytes::from_static(b"not a chunk"))
        .await
        .unwrap();
    let before = plan.calls();
    let retry = fx.service.snapshot().await.unwrap();
    assert_eq!(retry.chunks, crashed.chunks);
    // Every chunk was offered, found present and read back; only the damaged one went up
    // again.
    let history = plan.history();
    let after: Vec<_> = history.iter().filter(|c| c.n > before).collect();
    let offered = after.iter().filter(|c| c.op == "put_if_absent").count() as u64;
    let replaced: Vec<_> = after
        .iter()
        .filter(|c| c.op == "put" && c.key.ends_with(".chunk"))
        .collect();
    assert_eq!(offered, crashed.chunks);
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_eq!(replaced[0].key, damaged);
    assert_eq!(retry.chunks_reused, crashed.chunks - 1);
    fx.service.ship_log().await.unwrap();
    restores_to(
        &fx.store,
        Target::Lsn(retry.lsn),
        &oracle.model,
        "after reuse",
    )
    .await;
    verify_clean(&fx.store, "after reuse").await;
}
