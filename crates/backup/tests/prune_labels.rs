//! Prune and restore points, end to end: a label created inside the PITR window keeps the
//! snapshot and the log it needs, whatever else the policy lets go, and label objects are
//! never deleted. Restores of the labels are compared with an oracle of the keyspace after
//! every commit.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tito_backup::{BackupConfig, Repository, prune_repository_at};
use tito_capture::{CaptureError, Db, scan_backed_up};
use tito_catalog::{RetentionPolicy, Target, plan_retention};
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_format::RestorePoint;
use tito_format::layout::{self, ObjectName};
use tito_restore::{NoProgress, RestoreOptions, restore};
use tito_store::Store;
use tito_store::memory::MemoryStore;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

async fn state_of(engine: &dyn Engine) -> State {
    let view = engine.read_view().await.unwrap();
    let mut out = State::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = scan_backed_up(view.as_ref(), after.as_deref(), 256)
            .await
            .unwrap();
        let done = page.len() < 256;
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// Commit number `i`: overwrite one of a few keys, sometimes delete another.
async fn step(db: &Db, i: u64) -> u64 {
    let (_, lsn) = db
        .transaction_lsn(|txn| async move {
            txn.put(format!("k{}", i % 7).into_bytes(), i.to_be_bytes().to_vec())?;
            if i % 5 == 0 {
                txn.delete(format!("k{}", (i + 3) % 7).into_bytes())?;
            }
            Ok::<_, CaptureError>(())
        })
        .await
        .unwrap();
    lsn.unwrap()
}

async fn restore_to(store: &Arc<dyn Store>, target: Target) -> Result<(u64, State), String> {
    let repo = Repository::open(store.clone()).await.unwrap();
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let r = restore(
        &repo,
        engine.clone(),
        &RestoreOptions::new(target),
        &NoProgress,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((r.restored_lsn, state_of(engine.as_ref()).await))
}

#[tokio::test]
async fn labels_inside_the_window_survive_prune() {
    let (engine, db) = memory_db().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // One segment per shipping call.
    let service = service(&db, store.clone(), BackupConfig::default()).await;
    let mut oracle: BTreeMap<u64, State> = BTreeMap::new();
    for i in 1..=35u64 {
        let lsn = step(&db, i).await;
        assert_eq!(lsn, i);
        oracle.insert(lsn, state_of(engine.as_ref()).await);
        if i % 10 == 0 {
            service.ship_log().await.unwrap();
            assert_eq!(service.snapshot().await.unwrap().lsn, i);
        }
    }
    service.ship_log().await.unwrap();
    service.release_lease().await.unwrap();

    // Prune as of ten minutes from now with a one-minute window: every snapshot finished
    // before the window. Labels dated at that time are inside it, labels dated 1 ms after
    // the epoch outside. They name old LSNs (labelled late), so only the label rule keeps
    // what they need.
    let now = tito_backup::now_ms() + 600_000;
    let repo = service.repository();
    let labels = [("mid", 15u64, now), ("late", 25, now), ("outside", 7, 1)];
    for (name, lsn, created_ms) in labels {
        repo.put_restore_point(&RestorePoint {
            name: name.into(),
            timeline: 1,
            lsn,
            created_ms,
        })
        .await
        .unwrap();
    }
    let policy = RetentionPolicy {
        keep_last: Some(1),
        keep_within_ms: Some(60_000),
        ..RetentionPolicy::default()
    };
    let before = repo.catalog().await.unwrap();
    // Control: without the labels, the policy deletes objects the inside labels need.
    let mut bare = before.clone();
    bare.restore_points.clear();
    let without = plan_retention(&bare, &policy, now, 0);
    for (name, _, created_ms) in labels {
        if created_ms == now {
            let needs = before.plan(&Target::Label(name.into()), None).unwrap();
            assert!(
                needs
                    .objects()
                    .iter()
                    .any(|(k, _)| without.delete.contains(k)),
                "label {name}: the scenario must be one where the label rule matters"
            );
        }
    }

    for (name, _, _) in labels {
        assert!(
            before.plan(&Target::Label(name.into()), None).is_ok(),
            "label {name} must be restorable before the prune"
        );
    }
    let dry = prune_repository_at(repo, &policy, now, Duration::ZERO, true)
        .await
        .unwrap();
    let pruned = prune_repository_at(repo, &policy, now, Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(
        dry.lost_restore_points, pruned.lost_restore_points,
        "a dry run warns of the same labels"
    );
    // The log before the oldest label's base went: the prune did prune.
    assert!(
        pruned
            .deleted
            .iter()
            .any(|k| matches!(layout::parse(k), ObjectName::Segment { last: 10, .. })),
        "the old log went: {pruned:?}"
    );
    assert!(
        !pruned
            .deleted
            .iter()
            .any(|k| k.starts_with(layout::RESTORE_POINTS)),
        "label objects are never deleted: {:?}",
        pruned.deleted
    );
    let listed = repo.list(layout::RESTORE_POINTS).await.unwrap();
    assert_eq!(listed.len(), labels.len(), "{listed:?}");

    // Inside labels and the latest point restore exactly; the outside label may be refused,
    // and the prune named exactly the labels it made unrestorable.
    let mut lost = Vec::new();
    for (name, lsn, created_ms) in labels {
        match restore_to(&store, Target::Label(name.into())).await {
            Ok((restored, state)) => {
                assert_eq!(restored, lsn, "label {name}");
                assert_eq!(state, oracle[&lsn], "label {name}: keyspace differs");
            }
            Err(e) => {
                assert!(created_ms != now, "label {name} lost to prune: {e}");
                lost.push(name.to_string());
            }
        }
    }
    assert_eq!(
        lost,
        ["outside"],
        "the scenario loses the label outside the window"
    );
    let reported: Vec<String> = pruned
        .lost_restore_points
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(reported, lost, "{:?}", pruned.lost_restore_points);
    // Already lost: a second prune does not warn again.
    let again = prune_repository_at(repo, &policy, now, Duration::ZERO, true)
        .await
        .unwrap();
    assert!(again.lost_restore_points.is_empty(), "{again:?}");
    let (restored, state) = restore_to(&store, Target::Latest).await.unwrap();
    assert_eq!((restored, &state), (35, &oracle[&35]));
}
