//! Property test of the local transaction manager against a serial oracle.
//!
//! Random interleavings of a few transactions (gets, scans, puts, deletes, range
//! deletes, commits, rollbacks) run on the in-memory engine, starting from a random
//! bulk-loaded state. Checked:
//! - every read equals the oracle's answer at the transaction's snapshot plus its own
//!   writes (snapshot isolation, buffer merging, limits, reverse order);
//! - every committed writing transaction, replayed serially at its commit point, reads exactly
//!   what it read (serializability);
//! - a transaction that read nothing never conflicts;
//! - the final engine contents equal the oracle's.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use tito_engine::memory::MemoryEngine;
use tito_engine::{Engine, KeyRange, KeyValue, Tx};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const KEYS: &[&[u8]] = &[b"", b"a", b"b", b"ba", b"c", b"d", b"\xff", b"\xff\xff"];
const TXNS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Get(usize, usize),
    Scan {
        t: usize,
        start: usize,
        end: Option<usize>,
        limit: usize,
        reverse: bool,
    },
    Put(usize, usize, u8),
    Delete(usize, usize),
    DeleteRange(usize, usize, Option<usize>),
    Commit(usize),
    Rollback(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TXNS;
    let key = 0..KEYS.len();
    let end = proptest::option::of(0..KEYS.len());
    prop_oneof![
        2 => (t.clone(), key.clone()).prop_map(|(t, k)| Op::Get(t, k)),
        4 => (t.clone(), key.clone(), end.clone(), 0..4usize, any::<bool>())
            .prop_map(|(t, start, end, limit, reverse)| Op::Scan { t, start, end, limit, reverse }),
        4 => (t.clone(), key.clone(), any::<u8>()).prop_map(|(t, k, v)| Op::Put(t, k, v)),
        1 => (t.clone(), key.clone()).prop_map(|(t, k)| Op::Delete(t, k)),
        1 => (t.clone(), key, end).prop_map(|(t, s, e)| Op::DeleteRange(t, s, e)),
        3 => t.clone().prop_map(Op::Commit),
        1 => t.prop_map(Op::Rollback),
    ]
}

fn range(start: usize, end: Option<usize>) -> KeyRange {
    KeyRange {
        start: KEYS[start].to_vec(),
        end: end.map(|e| KEYS[e].to_vec()),
    }
}

/// What a read or write did, replayable on a model.
#[derive(Clone, Debug)]
enum Step {
    Read { op: Op, result: Vec<KeyValue> },
    Write(Op),
}

fn model_read(m: &Model, op: &Op) -> Vec<KeyValue> {
    match op {
        Op::Get(_, k) => m
            .get(KEYS[*k])
            .map(|v| vec![(KEYS[*k].to_vec(), v.clone())])
            .unwrap_or_default(),
        Op::Scan {
            start,
            end,
            limit,
            reverse,
            ..
        } => {
            let r = range(*start, *end);
            let it = m
                .iter()
                .filter(|(k, _)| r.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()));
            if *reverse {
                it.rev().take(*limit).collect()
            } else {
                it.take(*limit).collect()
            }
        }
        _ => Vec::new(),
    }
}

fn model_write(m: &mut Model, op: &Op) {
    match op {
        Op::Put(_, k, v) => {
            m.insert(KEYS[*k].to_vec(), vec![*v]);
        }
        Op::Delete(_, k) => {
            m.remove(KEYS[*k]);
        }
        Op::DeleteRange(_, s, e) => {
            let r = range(*s, *e);
            m.retain(|k, _| !r.contains(k));
        }
        _ => {}
    }
}

struct Open {
    tx: Tx,
    view: Model,
    steps: Vec<Step>,
}

async fn run(initial: Vec<bool>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let engine = MemoryEngine::new();
    let mut model = Model::new();
    for (key, present) in KEYS.iter().zip(initial) {
        if present {
            model.insert(key.to_vec(), b"initial".to_vec());
        }
    }
    engine
        .bulk_load(model.clone().into_iter().collect())
        .await
        .expect("bulk_load");
    let mut open: Vec<Option<Open>> = (0..TXNS).map(|_| None).collect();
    for op in ops {
        let t = match &op {
            Op::Get(t, _) | Op::Put(t, _, _) | Op::Delete(t, _) | Op::DeleteRange(t, _, _) => *t,
            Op::Scan { t, .. } | Op::Commit(t) | Op::Rollback(t) => *t,
        };
        if open[t].is_none() {
            let tx = engine.begin().await.expect("begin");
            open[t] = Some(Open {
                tx,
                view: model.clone(),
                steps: Vec::new(),
            });
        }
        let Some(cur) = open[t].as_mut() else {
            unreachable!()
        };
        match &op {
            Op::Get(_, k) => {
                let got = cur.tx.get(KEYS[*k]).await.expect("get");
                let got: Vec<KeyValue> = got
                    .map(|v| vec![(KEYS[*k].to_vec(), v)])
                    .unwrap_or_default();
                prop_assert_eq!(&got, &model_read(&cur.view, &op), "get {:?}", op);
                cur.steps.push(Step::Read {
                    op: op.clone(),
                    result: got,
                });
            }
            Op::Scan {
                start,
                end,
                limit,
                reverse,
                ..
            } => {
                let r = range(*start, *end);
                let got = if *reverse {
                    cur.tx.scan_reverse(&r, *limit).await.expect("scan_reverse")
                } else {
                    cur.tx.scan(&r, *limit).await.expect("scan")
                };
                prop_assert_eq!(&got, &model_read(&cur.view, &op), "scan {:?}", op);
                cur.steps.push(Step::Read {
                    op: op.clone(),
                    result: got,
                });
            }
            Op::Put(_, k, v) => cur.tx.put(KEYS[*k].to_vec(), vec![*v]).expect("put"),
            Op::Delete(_, k) => cur.tx.delete(KEYS[*k].to_vec()).expect("delete"),
            Op::DeleteRange(_, s, e) => cur.tx.delete_range(&range(*s, *e)).expect("delete_range"),
            Op::Commit(_) | Op::Rollback(_) => {}
        }
        // An empty range delete writes nothing (the transaction stays read-only).
        let noop = matches!(&op, Op::DeleteRange(_, s, e) if range(*s, *e).is_empty());
        if matches!(op, Op::Put(..) | Op::Delete(..) | Op::DeleteRange(..)) && !noop {
            model_write(&mut cur.view, &op);
            cur.steps.push(Step::Write(op.clone()));
        }
        match op {
            Op::Commit(_) => {
                let Some(cur) = open[t].take() else {
                    unreachable!()
                };
                match cur.tx.commit().await {
                    // A read-only transaction serializes at its snapshot, where its
                    // reads were already checked.
                    Ok(_) if !cur.steps.iter().any(|s| matches!(s, Step::Write(_))) => {}
                    Ok(_) => {
                        // Serial replay at the commit point must read the same.
                        let mut serial = model.clone();
                        for step in &cur.steps {
                            match step {
                                Step::Read { op, result } => prop_assert_eq!(
                                    &model_read(&serial, op),
                                    result,
                                    "not serializable: {:?}",
                                    op
                                ),
                                Step::Write(op) => model_write(&mut serial, op),
                            }
                        }
                        model = serial;
                    }
                    Err(e) => {
                        prop_assert!(e.is_conflict(), "commit failed: {}", e);
                        let read_something =
                            cur.steps.iter().any(|s| matches!(s, Step::Read { .. }));
                        prop_assert!(read_something, "a blind transaction conflicted");
                    }
                }
            }
            Op::Rollback(_) => {
                if let Some(cur) = open[t].take() {
                    cur.tx.rollback().await.expect("rollback");
                }
            }
            _ => {}
        }
    }
    let check = engine.begin().await.expect("begin");
    let all = check
        .scan(&KeyRange::all(), usize::MAX)
        .await
        .expect("scan");
    let want: Vec<KeyValue> = model.into_iter().collect();
    prop_assert_eq!(all, want, "final contents differ from the oracle");
    let _: Arc<dyn Engine> = Arc::new(engine);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn local_transactions_match_a_serial_oracle(
        initial in proptest::collection::vec(any::<bool>(), KEYS.len()),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(run(initial, ops))?;
    }
}

/// A limited scan's last key is read: a later change to it must conflict.
#[test]
fn limited_scan_then_change_of_its_last_key() {
    let ops = vec![
        Op::Scan {
            t: 0,
            start: 1,
            end: None,
            limit: 1,
            reverse: false,
        },
        Op::Put(1, 1, 5),
        Op::Commit(1),
        Op::Put(0, 2, 0),
        Op::Commit(0),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(run(vec![false, true, false, true], ops))
        .expect("serializable");
}
