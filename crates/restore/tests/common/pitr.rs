//! The backup/restore oracle scenario, one piece of code for every engine: the memory
//! engine runs it in `crates/restore/tests/pitr_oracle.rs`, etcd in
//! `crates/engine-etcd/tests/pitr_oracle.rs` (which includes this module by path).
//!
//! Random workloads (user writes, deletes, range deletes, aborted transactions, queue
//! publish/ack/reschedule, several transactions at once) interleaved with random backup
//! steps (ship, snapshot, restore point, prune, compaction). Every committed transaction's effects
//! (what it wrote, queue pulls resolved to the event acted on) are applied in LSN order to
//! a reference memory database: the oracle's state at an LSN is the reference's backed-up
//! keyspace after that commit, independent of the log. The source must equal it after
//! every step. Then random targets (LSN, time, label, latest) are restored into fresh
//! engines: each restore must equal the oracle at exactly the commit boundary the target
//! names, or be refused with a plan error only when the target lies before everything kept.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use tito_capture::{Db, Txn};
use tito_catalog::Target;
use tito_engine::memory::MemoryEngine;
use tito_engine::{Engine, KeyRange};
use tito_queue::{Event, QueueError, QueuedEvent};
use tito_restore::RestoreError;
use tito_store::memory::MemoryStore;

use super::{Fixture, State, restore_into, small_config, state_of};

/// Queue partitions of the workload.
pub const PARTITIONS: u32 = 3;

/// A boxed future, for engine factories.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Makes a fresh, empty engine: the source of a scenario and every restore target.
pub type NewEngine = Arc<dyn Fn() -> BoxFuture<Arc<dyn Engine>> + Send + Sync>;

/// One operation of a generated transaction.
#[derive(Clone, Debug)]
pub enum Op {
    Put(u8, Vec<u8>),
    Del(u8),
    DelRange(u8, u8),
    Publish(u8),
    AckOne(u32),
    Reschedule(u32),
}

/// One step of a generated history.
#[derive(Clone, Debug)]
pub enum Step {
    Commit(Vec<Op>),
    Abort(Vec<Op>),
    /// Transactions run at the same time (conflicts are retried).
    Concurrent(Vec<Vec<Op>>),
    Ship,
    Snapshot,
    Label,
    PruneKeepLast(usize),
    /// Merge small segments (level windows of 2 ms and 8 ms).
    Compact,
    Tick,
}

/// What a transaction did, resolved so that it can be applied again elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
    DelRange(KeyRange),
    Publish(Event),
    Ack(QueuedEvent),
    Reschedule(QueuedEvent, u64),
}

/// The user key of key number `n`.
pub fn key(n: u8) -> Vec<u8> {
    // Binary, non-UTF-8 keys on purpose (the original dropped them).
    vec![b'k', n, 0xFF, n.wrapping_mul(7)]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..24).prop_map(Op::Del),
        1 => (0u8..24, 0u8..24).prop_map(|(a, b)| Op::DelRange(a.min(b), a.max(b))),
        1 => (0u8..10).prop_map(Op::Publish),
        1 => (0u32..PARTITIONS).prop_map(Op::AckOne),
        1 => (0u32..PARTITIONS).prop_map(Op::Reschedule),
    ]
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => proptest::collection::vec(op(), 1..6).prop_map(Step::Commit),
        1 => proptest::collection::vec(op(), 1..4).prop_map(Step::Abort),
        2 => proptest::collection::vec(proptest::collection::vec(op(), 1..5), 2..5)
            .prop_map(Step::Concurrent),
        3 => Just(Step::Ship),
        1 => Just(Step::Snapshot),
        1 => Just(Step::Label),
        1 => (1usize..3).prop_map(Step::PruneKeepLast),
        1 => Just(Step::Compact),
        2 => Just(Step::Tick),
    ]
}

/// Apply one effect inside `txn`. An ack or reschedule must find its event: the oracle
/// and the source agree on the queue or the test fails here.
pub async fn apply_effect(txn: &Txn, effect: &Effect) -> Result<(), QueueError> {
    match effect {
        Effect::Put(k, v) => txn.put(k.clone(), v.clone())?,
        Effect::Del(k) => txn.delete(k.clone())?,
        Effect::DelRange(r) => txn.delete_range(r)?,
        Effect::Publish(ev) => {
            tito_queue::publish(txn, PARTITIONS, ev.clone())?;
        }
        Effect::Ack(ev) => {
            assert!(
                tito_queue::ack(txn, ev).await?,
                "ack of an event that is not there: {ev:?}"
            );
        }
        Effect::Reschedule(ev, at) => {
            assert!(
                tito_queue::reschedule(txn, ev, *at).await?.is_some(),
                "reschedule of an event that is not there: {ev:?}"
            );
        }
    }
    Ok(())
}

/// Resolve `op` against what `txn` sees (queue pulls) and apply it; `None` if it did
/// nothing (a pull found no event).
async fn run_op(txn: &Txn, op: &Op, seq: &AtomicU64) -> Result<Option<Effect>, QueueError> {
    let first_due = |p: u32| async move {
        let due = tito_queue::pull_in(txn, p, u64::MAX, 1).await?;
        Ok::<_, QueueError>(due.into_iter().next())
    };
    let effect = match op {
        Op::Put(k, v) => Effect::Put(key(*k), v.clone()),
        Op::Del(k) => Effect::Del(key(*k)),
        Op::DelRange(a, b) => Effect::DelRange(KeyRange::new(key(*a), key(*b))),
        Op::Publish(k) => {
            let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
            let now = tito_backup::now_ms();
            let id = format!("ev{n:06}");
            Effect::Publish(Event::new(id, vec![b'e', *k], vec![1, 2, *k], now, now))
        }
        Op::AckOne(p) => match first_due(*p).await? {
            Some(ev) => Effect::Ack(ev),
            None => return Ok(None),
        },
        Op::Reschedule(p) => match first_due(*p).await? {
            Some(ev) => {
                let at = ev.event.scheduled_at_ms + 1 + u64::from(ev.event.attempts);
                Effect::Reschedule(ev, at)
            }
            None => return Ok(None),
        },
    };
    apply_effect(txn, &effect).await?;
    Ok(Some(effect))
}

async fn run_ops(txn: &Txn, ops: &[Op], seq: &AtomicU64) -> Result<Vec<Effect>, QueueError> {
    let mut effects = Vec::new();
    for op in ops {
        effects.extend(run_op(txn, op, seq).await?);
    }
    Ok(effects)
}

/// Run `ops` in one transaction of `db` and commit it (conflicts retried); returns its
/// effects and LSN.
pub async fn commit_ops(db: Db, ops: Vec<Op>, seq: Arc<AtomicU64>) -> (Vec<Effect>, Option<u64>) {
    db.transaction_lsn(|txn| {
        let (ops, seq) = (ops.clone(), seq.clone());
        async move { run_ops(&txn, &ops, &seq).await }
    })
    .await
    .expect("commit")
}

fn user_part(state: &State) -> BTreeMap<Vec<u8>, Vec<u8>> {
    state
        .iter()
        .filter(|(k, _)| !tito_capture::keys::is_reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The reference: committed effects applied in LSN order to a memory database, with the
/// state after every commit.
pub struct Oracle {
    db: Db,
    /// User keys only, applied by hand (checks the reference engine itself).
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    /// LSN → (commit time, backed-up keyspace after that commit). LSN 0 = empty.
    pub states: BTreeMap<u64, (u64, State)>,
}

impl Oracle {
    /// An empty reference (state at LSN 0 = empty).
    pub async fn new() -> Oracle {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut states = BTreeMap::new();
        states.insert(0, (0, State::new()));
        Oracle {
            db: Db::open(engine).await.expect("reference db"),
            model: BTreeMap::new(),
            states,
        }
    }

    /// Apply one committed transaction of the source: it took `lsn` (`None`: it wrote
    /// nothing) at `time_ms`; the reference must give it the same LSN.
    pub async fn apply(&mut self, lsn: Option<u64>, time_ms: u64, effects: &[Effect]) {
        self.apply_keeping(lsn, time_ms, effects, true).await
    }

    /// [`Oracle::apply`], keeping the state after it only if `keep` (long histories
    /// keep the states they restore to).
    pub async fn apply_keeping(
        &mut self,
        lsn: Option<u64>,
        time_ms: u64,
        effects: &[Effect],
        keep: bool,
    ) {
        let shared = Arc::new(effects.to_vec());
        let (_, got) = self
            .db
            .transaction_lsn(|txn| {
                let effects = shared.clone();
                async move {
                    for e in effects.iter() {
                        apply_effect(&txn, e).await?;
                    }
                    Ok::<_, QueueError>(())
                }
            })
            .await
            .expect("reference commit");
        assert_eq!(got, lsn, "the reference gave {effects:?} another LSN");
        for e in effects {
            match e {
                Effect::Put(k, v) => {
                    self.model.insert(k.clone(), v.clone());
                }
                Effect::Del(k) => {
                    self.model.remove(k);
                }
                Effect::DelRange(r) => self.model.retain(|k, _| !r.contains(k)),
                _ => {}
            }
        }
        let Some(lsn) = lsn.filter(|_| keep) else {
            return;
        };
        let state = self.current().await;
        assert_eq!(
            user_part(&state),
            self.model,
            "reference after commit {lsn}"
        );
        self.states.insert(lsn, (time_ms, state));
    }

    /// The reference's backed-up keyspace now.
    pub async fn current(&self) -> State {
        state_of(self.db.engine().as_ref()).await
    }

    /// The state at `lsn` (kept by [`Oracle::apply`]).
    pub fn state(&self, lsn: u64) -> &State {
        &self.states[&lsn].1
    }

    /// The newest LSN whose state is kept.
    pub fn last(&self) -> u64 {
        *self.states.keys().last().expect("LSN 0 is always there")
    }
}

/// Commit time of the record `lsn`, read from the source before it is shipped.
async fn record_time(engine: &dyn Engine, lsn: u64) -> u64 {
    let v = engine
        .read_view()
        .await
        .unwrap()
        .get(&tito_capture::keys::log_key(lsn))
        .await
        .unwrap()
        .expect("record present until shipped");
    u64::from_be_bytes(v[..8].try_into().unwrap())
}

/// Run `steps` on a fresh engine from `new_engine`, then restore the targets `picks`
/// chooses (and every label, and latest) into fresh engines and compare with the oracle.
pub async fn scenario(new_engine: &NewEngine, steps: Vec<Step>, picks: Vec<u64>) {
    let fx = Fixture::with(
        new_engine().await,
        Arc::new(MemoryStore::new()),
        small_config(),
    )
    .await;
    let seq = Arc::new(AtomicU64::new(0));
    let mut oracle = Oracle::new().await;
    let mut labels: Vec<(String, u64)> = Vec::new();
    // Targets below this LSN may be refused: before the first snapshot, or pruned away.
    let mut first_snapshot: Option<u64> = None;
    let mut pruned_below = 0u64;
    let version = || async { fx.engine.read_view().await.unwrap().version() };

    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Commit(ops) => {
                let before = version().await;
                let (effects, lsn) = commit_ops(fx.db.clone(), ops, seq.clone()).await;
                let mut time = 0;
                if let Some(lsn) = lsn {
                    assert_eq!(lsn, before + 1, "LSNs are dense");
                    time = record_time(fx.engine.as_ref(), lsn).await;
                }
                oracle.apply(lsn, time, &effects).await;
            }
            Step::Concurrent(txns) => {
                let before = version().await;
                let tasks: Vec<_> = txns
                    .into_iter()
                    .map(|ops| tokio::spawn(commit_ops(fx.db.clone(), ops, seq.clone())))
                    .collect();
                let mut done = Vec::new();
                for t in tasks {
                    done.push(t.await.expect("transaction task"));
                }
                // Commit order is LSN order; transactions that wrote nothing go anywhere.
                done.sort_by_key(|(_, lsn)| *lsn);
                let lsns: Vec<u64> = done.iter().filter_map(|(_, l)| *l).collect();
                let dense: Vec<u64> = (before + 1..=before + lsns.len() as u64).collect();
                assert_eq!(lsns, dense, "LSNs of concurrent commits are dense");
                for (effects, lsn) in done {
                    let time = match lsn {
                        Some(lsn) => record_time(fx.engine.as_ref(), lsn).await,
                        None => 0,
                    };
                    oracle.apply(lsn, time, &effects).await;
                }
            }
            Step::Abort(ops) => {
                let before = version().await;
                let txn = fx.db.begin().await.unwrap();
                run_ops(&txn, &ops, &seq).await.unwrap();
                txn.rollback().await.unwrap();
                assert_eq!(
                    version().await,
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
            Step::Compact => {
                let config = tito_backup::CompactionConfig {
                    policy: tito_catalog::CompactionPolicy {
                        windows_ms: vec![2, 8],
                        max_segment_bytes: 1 << 20,
                    },
                    max_inputs: None,
                    max_duration: None,
                    ..Default::default()
                };
                tito_backup::compact_repository(fx.service.repository(), &config, false, &())
                    .await
                    .unwrap();
            }
            Step::Tick => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
        }
        assert_eq!(
            state_of(fx.engine.as_ref()).await,
            *oracle.state(oracle.last()),
            "source differs from the oracle after step {i}"
        );
    }
    // Make the end of the history restorable.
    fx.service.run_backup().await.unwrap();
    let last = oracle.last();
    let latest = fx.service.snapshot().await.unwrap();
    assert_eq!(latest.lsn, last);
    let refusable_below = pruned_below.max(first_snapshot.unwrap_or(latest.lsn));

    let mut targets: Vec<(Target, u64)> = vec![(Target::Latest, last)];
    for p in picks {
        let lsn = p % (last + 1);
        targets.push((Target::Lsn(lsn), lsn));
        let (time, _) = oracle.states[&lsn];
        if lsn > 0 {
            // The longest prefix of records all at or before `time`.
            let expected = oracle
                .states
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
        match restore_into(&fx.store, new_engine().await, target.clone()).await {
            Ok((result, state)) => {
                assert_eq!(
                    result.restored_lsn, expected,
                    "{target:?} restored to the wrong commit"
                );
                assert_eq!(
                    state,
                    *oracle.state(expected),
                    "{target:?}: restored keyspace differs from the oracle at LSN {expected}"
                );
            }
            // Before the first snapshot, or pruned away as the policy allows.
            Err(RestoreError::Plan(_)) if expected < refusable_below => {}
            Err(e) => {
                let cat = fx.repo().await.catalog().await.unwrap();
                let times: Vec<(u64, u64)> =
                    oracle.states.iter().map(|(l, (t, _))| (*l, *t)).collect();
                panic!(
                    "{target:?} (expected LSN {expected}, refusable below {refusable_below}) failed: {e}\ncatalog: {cat:#?}\noracle times: {times:?}"
                )
            }
        }
    }
}
