//! Oracle property test of backup and point-in-time restore.
//!
//! Random workloads (user writes, deletes, range deletes, aborted transactions, queue
//! publish/ack) interleaved with random backup steps (ship, snapshot, restore point,
//! prune). An oracle records the backed-up keyspace after every commit, from an
//! independent model of user keys and from the source engine. Then random targets (LSN,
//! time, label, latest) are restored into fresh engines: each restore must equal the
//! oracle's state at exactly the commit boundary the target names, or be refused with a
//! plan error only when the target lies before everything kept.

mod common;

use std::collections::BTreeMap;

use common::{Fixture, State, state_of};
use proptest::prelude::*;
use tito_catalog::Target;
use tito_engine::KeyRange;
use tito_queue::{Event, QueueError};
use tito_restore::RestoreError;

const PARTITIONS: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, Vec<u8>),
    Del(u8),
    DelRange(u8, u8),
    Publish(u8),
    AckOne(u32),
}

#[derive(Clone, Debug)]
enum Step {
    Commit(Vec<Op>),
    Abort(Vec<Op>),
    Ship,
    Snapshot,
    Label,
    PruneKeepLast(usize),
    Tick,
}

fn key(n: u8) -> Vec<u8> {
    // Binary, non-UTF-8 keys on purpose (the original dropped them).
    vec![b'k', n, 0xFF, n.wrapping_mul(7)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..24).prop_map(Op::Del),
        1 => (0u8..24, 0u8..24).prop_map(|(a, b)| Op::DelRange(a.min(b), a.max(b))),
        1 => (0u8..10).prop_map(Op::Publish),
        1 => (0u32..PARTITIONS).prop_map(Op::AckOne),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => proptest::collection::vec(op(), 1..6).prop_map(Step::Commit),
        1 => proptest::collection::vec(op(), 1..4).prop_map(Step::Abort),
        3 => Just(Step::Ship),
        1 => Just(Step::Snapshot),
        1 => Just(Step::Label),
        1 => (1usize..3).prop_map(Step::PruneKeepLast),
        2 => Just(Step::Tick),
    ]
}

/// Apply `ops` in one transaction; `abort` rolls it back instead of committing.
async fn run_txn(
    fx: &Fixture,
    ops: &[Op],
    abort: bool,
    model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    seq: &mut u64,
) -> Option<u64> {
    let txn = fx.db.begin().await.unwrap();
    let mut local = model.clone();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                txn.put(key(*k), v.clone()).unwrap();
                local.insert(key(*k), v.clone());
            }
            Op::Del(k) => {
                txn.delete(key(*k)).unwrap();
                local.remove(&key(*k));
            }
            Op::DelRange(a, b) => {
                let range = KeyRange::new(key(*a), key(*b));
                txn.delete_range(&range).unwrap();
                local.retain(|k, _| !range.contains(k));
            }
            Op::Publish(k) => {
                *seq += 1;
                let id = format!("ev{seq:06}");
                let now = tito_backup::now_ms();
                tito_queue::publish(
                    &txn,
                    PARTITIONS,
                    Event::new(id, vec![b'e', *k], vec![1, 2, *k], now, now),
                )
                .unwrap();
            }
            Op::AckOne(p) => {
                let due = tito_queue::pull_in(&txn, *p, u64::MAX, 1).await.unwrap();
                if let Some(ev) = due.first() {
                    tito_queue::ack(&txn, ev).await.unwrap();
                }
            }
        }
    }
    if abort {
        txn.rollback().await.unwrap();
        return None;
    }
    let lsn = txn.commit().await.map_err(QueueError::from).unwrap();
    *model = local;
    lsn
}

fn user_part(state: &State) -> BTreeMap<Vec<u8>, Vec<u8>> {
    state
        .iter()
        .filter(|(k, _)| !tito_capture::keys::is_reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn scenario(steps: Vec<Step>, picks: Vec<u64>) {
    let fx = Fixture::new().await;
    let mut model = BTreeMap::new();
    let mut seq = 0;
    // Oracle: LSN -> (commit time, backed-up keyspace after that commit). LSN 0 = empty.
    let mut oracle: BTreeMap<u64, (u64, State)> = BTreeMap::new();
    oracle.insert(0, (0, State::new()));
    let mut labels: Vec<(String, u64)> = Vec::new();
    // Targets below this LSN may be refused: before the first snapshot, or pruned away.
    let mut first_snapshot: Option<u64> = None;
    let mut pruned_below = 0u64;

    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Commit(ops) | Step::Abort(ops) if ops.is_empty() => {}
            Step::Commit(ops) => {
                let before = fx.engine.read_view().await.unwrap().version();
                if let Some(lsn) = run_txn(&fx, &ops, false, &mut model, &mut seq).await {
                    assert_eq!(lsn, before + 1, "LSNs are dense");
                    let state = state_of(fx.engine.as_ref()).await;
                    assert_eq!(
                        user_part(&state),
                        model,
                        "engine matches the model after commit {lsn}"
                    );
                    let time = fx
                        .engine
                        .read_view()
                        .await
                        .unwrap()
                        .get(&tito_capture::keys::log_key(lsn))
                        .await
                        .unwrap()
                        .map(|v| u64::from_be_bytes(v[..8].try_into().unwrap()));
                    // The record may already be trimmed by nothing (no ship in between): it exists.
                    oracle.insert(lsn, (time.expect("record present until shipped"), state));
                }
            }
            Step::Abort(ops) => {
                let before = fx.engine.read_view().await.unwrap().version();
                run_txn(&fx, &ops, true, &mut model, &mut seq).await;
                assert_eq!(
                    fx.engine.read_view().await.unwrap().version(),
                    before,
                    "an aborted transaction wrote no record"
                );
            }
            Step::Ship => {
                fx.service.ship_log().await.unwrap();
            }
            Step::Snapshot => {
                let snap = fx.service.snapshot().await.unwrap();
                first_snapshot.get_or_insert(snap.lsn);
            }
            Step::Label => {
                let name = format!("point-{i}");
                let point = fx.service.restore_point(&name).await.unwrap();
                labels.push((name, point.lsn));
            }
            Step::PruneKeepLast(n) => {
                let policy = tito_catalog::RetentionPolicy {
                    keep_last: Some(n),
                    ..Default::default()
                };
                let pruned = fx.service.prune(&policy, false).await.unwrap();
                pruned_below = pruned_below.max(pruned.oldest_kept_lsn.unwrap_or(0));
            }
            Step::Tick => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
        }
    }
    // Make the end of the history restorable.
    fx.service.run_backup().await.unwrap();
    let last = *oracle.keys().last().unwrap();
    let latest = fx.service.snapshot().await.unwrap();
    assert_eq!(latest.lsn, last);
    let refusable_below = pruned_below.max(first_snapshot.unwrap_or(latest.lsn));

    let mut targets: Vec<(Target, u64)> = vec![(Target::Latest, last)];
    for p in picks {
        let lsn = p % (last + 1);
        targets.push((Target::Lsn(lsn), lsn));
        let (time, _) = oracle[&lsn];
        if lsn > 0 {
            // The longest prefix of records all at or before `time`.
            let expected = oracle
                .iter()
                .filter(|(_, (t, _))| *t <= time)
                .map(|(l, _)| *l)
                .max()
                .unwrap();
            targets.push((Target::Time(time), expected));
        }
    }
    for (name, lsn) in &labels {
        targets.push((Target::Label(name.clone()), *lsn));
    }
    for (target, expected) in targets {
        match fx.restore_to(target.clone()).await {
            Ok((result, state)) => {
                assert_eq!(
                    result.restored_lsn, expected,
                    "{target:?} restored to the wrong commit"
                );
                assert_eq!(
                    state, oracle[&expected].1,
                    "{target:?}: restored keyspace differs from the oracle at LSN {expected}"
                );
            }
            // Before the first snapshot, or pruned away as the policy allows.
            Err(RestoreError::Plan(_)) if expected < refusable_below => {}
            Err(e) => {
                let cat = fx.repo().await.catalog().await.unwrap();
                let times: Vec<(u64, u64)> = oracle.iter().map(|(l, (t, _))| (*l, *t)).collect();
                panic!(
                    "{target:?} (expected LSN {expected}, refusable below {refusable_below}) failed: {e}\ncatalog: {cat:#?}\noracle times: {times:?}"
                )
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn restore_equals_oracle_at_every_target(
        steps in proptest::collection::vec(step(), 1..60),
        picks in proptest::collection::vec(any::<u64>(), 1..8),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(scenario(steps, picks));
    }
}
