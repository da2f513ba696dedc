//! Property test: random concurrent transactions through change capture.
//!
//! Several tokio tasks run random transactions (puts, deletes, range deletes, point and
//! range reads, read-modify-writes, queue writes, aborts) against one database, with
//! conflicts retried. Afterwards:
//! - every committed writing transaction produced exactly one record, holding exactly
//!   its mutations in order; read-only and aborted ones produced none;
//! - LSNs are dense from 1 and commit times never decrease along them;
//! - replaying the records in LSN order keeps every read each transaction observed
//!   (the log order is a valid serial order);
//! - replaying the log from empty into a fresh memory engine reproduces the source's
//!   backed-up keyspace exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use tito_capture::keys::{self, QUEUE_PREFIX};
use tito_capture::{CaptureError, Db, Mutation, Txn, apply_record, scan_backed_up};
use tito_engine::memory::MemoryEngine;
use tito_engine::redb::RedbEngine;
use tito_engine::{Engine, EngineError, KeyRange, KeyValue, Retryable};

#[derive(Clone, Debug)]
enum Op {
    Put(u8),
    Delete(u8),
    DeleteRange(u8, Option<u8>),
    Get(u8),
    Scan(u8, Option<u8>, usize, bool),
    /// Read a key and append a byte to it: creates read-write conflicts.
    Incr(u8),
    QueuePut(u8),
    QueueDelete(u8),
}

#[derive(Clone, Debug)]
struct Plan {
    ops: Vec<Op>,
    abort: bool,
}

/// Keys chosen to hit edges: the empty key, keys around the reserved prefix, 0xFF runs.
fn key(i: u8) -> Vec<u8> {
    match i % 9 {
        0 => Vec::new(),
        7 => vec![0xff],
        8 => vec![0xff, 0xff, 0xff],
        n => vec![b'k', n],
    }
}

fn queue_key(i: u8) -> Vec<u8> {
    let mut k = QUEUE_PREFIX.to_vec();
    k.push(i % 4);
    k
}

fn range(a: u8, b: Option<u8>) -> KeyRange {
    KeyRange {
        start: key(a),
        end: b.map(key),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Put),
        2 => any::<u8>().prop_map(Op::Delete),
        1 => (any::<u8>(), proptest::option::of(any::<u8>())).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        2 => any::<u8>().prop_map(Op::Get),
        2 => (any::<u8>(), proptest::option::of(any::<u8>()), 0usize..5, any::<bool>())
            .prop_map(|(a, b, l, r)| Op::Scan(a, b, l, r)),
        3 => any::<u8>().prop_map(Op::Incr),
        1 => any::<u8>().prop_map(Op::QueuePut),
        1 => any::<u8>().prop_map(Op::QueueDelete),
    ]
}

fn plans(tasks: usize, txs: usize, ops: usize) -> impl Strategy<Value = Vec<Vec<Plan>>> {
    let plan = (
        proptest::collection::vec(op(), 0..ops),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(ops, abort)| Plan { ops, abort });
    proptest::collection::vec(proptest::collection::vec(plan, 1..txs), 1..tasks)
}

#[derive(Debug)]
enum TestError {
    Abort,
    Capture(CaptureError),
}

impl From<EngineError> for TestError {
    fn from(e: EngineError) -> Self {
        TestError::Capture(e.into())
    }
}
impl From<CaptureError> for TestError {
    fn from(e: CaptureError) -> Self {
        TestError::Capture(e)
    }
}
impl Retryable for TestError {
    fn is_conflict(&self) -> bool {
        matches!(self, TestError::Capture(e) if e.is_conflict())
    }
}

/// What a transaction did, in order: its writes and what its reads returned.
#[derive(Clone, Debug)]
enum Step {
    Write(Mutation),
    Get(Vec<u8>, Option<Vec<u8>>),
    Scan(KeyRange, usize, bool, Vec<KeyValue>),
}

async fn run_plan(txn: Txn, plan: Plan, tag: Vec<u8>) -> Result<Vec<Step>, TestError> {
    let mut steps = Vec::new();
    for (n, op) in plan.ops.iter().enumerate() {
        // Let other tasks run between operations so transactions overlap and conflict.
        tokio::task::yield_now().await;
        let mut value = tag.clone();
        value.push(n as u8);
        match op {
            Op::Put(k) => {
                txn.put(key(*k), value.clone())?;
                steps.push(Step::Write(Mutation::Put {
                    key: key(*k),
                    value,
                }));
            }
            Op::Delete(k) => {
                txn.delete(key(*k))?;
                steps.push(Step::Write(Mutation::Delete { key: key(*k) }));
            }
            Op::DeleteRange(a, b) => {
                let r = range(*a, *b);
                // A range over the reserved prefix must be refused and leave no trace.
                match txn.delete_range(&r) {
                    Err(CaptureError::ReservedRange { .. })
                        if r.overlaps(&keys::reserved_range()) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                    Ok(()) => assert!(
                        !r.overlaps(&keys::reserved_range()),
                        "reserved range {r:?} accepted"
                    ),
                }
                steps.push(Step::Write(Mutation::DeleteRange {
                    start: r.start,
                    end: r.end,
                }));
            }
            Op::Get(k) => steps.push(Step::Get(key(*k), txn.get(&key(*k)).await?)),
            Op::Scan(a, b, limit, rev) => {
                let r = range(*a, *b);
                let got = if *rev {
                    txn.scan_reverse(&r, *limit).await?
                } else {
                    txn.scan(&r, *limit).await?
                };
                steps.push(Step::Scan(r, *limit, *rev, got));
            }
            Op::Incr(k) => {
                let old = txn.get(&key(*k)).await?;
                steps.push(Step::Get(key(*k), old.clone()));
                let mut new = old.unwrap_or_default();
                new.push(n as u8);
                new.truncate(16);
                txn.put(key(*k), new.clone())?;
                steps.push(Step::Write(Mutation::Put {
                    key: key(*k),
                    value: new,
                }));
            }
            Op::QueuePut(k) => {
                txn.put_queue(queue_key(*k), value.clone())?;
                steps.push(Step::Write(Mutation::Put {
                    key: queue_key(*k),
                    value,
                }));
            }
            Op::QueueDelete(k) => {
                txn.delete_queue(queue_key(*k))?;
                steps.push(Step::Write(Mutation::Delete { key: queue_key(*k) }));
            }
        }
    }
    if plan.abort {
        Err(TestError::Abort)
    } else {
        Ok(steps)
    }
}

#[derive(Default)]
struct Outcome {
    /// LSN → steps of the committed writing transaction.
    committed: HashMap<u64, Vec<Step>>,
    read_only: usize,
    aborted: usize,
}

async fn run_task(db: Db, task: usize, plans: Vec<Plan>) -> Outcome {
    let mut out = Outcome::default();
    for (i, plan) in plans.into_iter().enumerate() {
        let tag = vec![task as u8, i as u8];
        let res = db
            .transaction_lsn(|txn| run_plan(txn, plan.clone(), tag.clone()))
            .await;
        match res {
            Ok((steps, lsn)) => {
                let writes = steps.iter().any(|s| matches!(s, Step::Write(_)));
                match (writes, lsn) {
                    (true, Some(lsn)) => assert!(
                        out.committed.insert(lsn, steps).is_none(),
                        "lsn {lsn} twice"
                    ),
                    (false, None) => out.read_only += 1,
                    other => panic!("writes/lsn mismatch: {other:?}"),
                }
            }
            Err(TestError::Abort) => out.aborted += 1,
            // Retries exhausted under contention: nothing was committed.
            Err(e) if e.is_conflict() => out.aborted += 1,
            Err(e) => panic!("transaction failed: {e:?}"),
        }
    }
    out
}

fn apply_model(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, m: &Mutation) {
    match m {
        Mutation::Put { key, value } => {
            model.insert(key.clone(), value.clone());
        }
        Mutation::Delete { key } => {
            model.remove(key);
        }
        Mutation::DeleteRange { start, end } => {
            let r = KeyRange {
                start: start.clone(),
                end: end.clone(),
            };
            model.retain(|k, _| !r.contains(k));
        }
    }
}

fn model_scan(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    r: &KeyRange,
    limit: usize,
    rev: bool,
) -> Vec<KeyValue> {
    let it = model
        .iter()
        .filter(|(k, _)| r.contains(k) && !keys::is_reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()));
    if rev {
        it.rev().take(limit).collect()
    } else {
        it.take(limit).collect()
    }
}

async fn backed_up(engine: &dyn Engine) -> Vec<KeyValue> {
    let view = engine.read_view().await.unwrap();
    let mut all: Vec<KeyValue> = Vec::new();
    loop {
        // A small odd page size exercises paging across the range boundaries.
        let page = scan_backed_up(view.as_ref(), all.last().map(|(k, _)| k.as_slice()), 7)
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

async fn check(engine: Arc<dyn Engine>, tasks: Vec<Vec<Plan>>) {
    let db = Db::open(engine.clone()).await.unwrap();
    let handles: Vec<_> = tasks
        .into_iter()
        .enumerate()
        .map(|(i, p)| tokio::spawn(run_task(db.clone(), i, p)))
        .collect();
    let mut committed = HashMap::new();
    for h in handles {
        committed.extend(h.await.unwrap().committed);
    }

    let records = db.read_log(0, usize::MAX, usize::MAX).await.unwrap();
    assert_eq!(
        records.len(),
        committed.len(),
        "one record per committed writing transaction"
    );
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec.lsn, i as u64 + 1, "LSNs are dense from 1");
        if i > 0 {
            assert!(
                rec.time_ms >= records[i - 1].time_ms,
                "commit time decreased at lsn {}",
                rec.lsn
            );
        }
        let steps = committed
            .get(&rec.lsn)
            .expect("record of a committed transaction");
        let writes: Vec<Mutation> = steps
            .iter()
            .filter_map(|s| {
                if let Step::Write(m) = s {
                    Some(m.clone())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            rec.mutations, writes,
            "record {} holds its transaction's mutations in order",
            rec.lsn
        );
    }
    match db.log_bounds().await.unwrap() {
        None => assert!(records.is_empty()),
        Some(b) => assert_eq!((b.oldest, b.newest), (1, records.len() as u64)),
    }

    // Serial replay in LSN order must reproduce what every transaction read.
    let mut model = BTreeMap::new();
    for rec in &records {
        for step in &committed[&rec.lsn] {
            match step {
                Step::Write(m) => apply_model(&mut model, m),
                Step::Get(k, seen) => assert_eq!(
                    &model.get(k).cloned(),
                    seen,
                    "read of lsn {} not serializable",
                    rec.lsn
                ),
                Step::Scan(r, limit, rev, seen) => {
                    assert_eq!(
                        &model_scan(&model, r, *limit, *rev),
                        seen,
                        "scan of lsn {} not serializable",
                        rec.lsn
                    )
                }
            }
        }
    }

    // Replaying the log from empty reproduces the backed-up keyspace exactly.
    let target = MemoryEngine::new();
    for rec in &records {
        let tx = target.begin().await.unwrap();
        apply_record(tx.as_ref(), rec).unwrap();
        tx.commit().await.unwrap();
    }
    let source_state = backed_up(engine.as_ref()).await;
    assert_eq!(backed_up(&target).await, source_state);
    let model_state: Vec<KeyValue> = model.into_iter().collect();
    assert_eq!(source_state, model_state);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replay_reproduces_memory_engine(tasks in plans(5, 7, 7)) {
        runtime().block_on(check(Arc::new(MemoryEngine::new()), tasks));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replay_reproduces_redb_engine(tasks in plans(4, 5, 6)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let engine = RedbEngine::open(dir.path().join("db.redb")).await.unwrap();
            check(Arc::new(engine), tasks).await;
        });
    }
}
