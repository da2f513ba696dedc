//! The redb store against a model: staging of stamped entries, the split between the
//! data tables, reopening, and conversion of files of the earlier layout.

use std::collections::BTreeMap;

use proptest::prelude::*;
use redb::ReadableTableMetadata;

use super::*;
use crate::local::{LocalStore, StoreSnapshot};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keys on both sides of the table split, some under the stamped prefix.
const KEYS: &[&[u8]] = &[
    b"",
    b"a",
    b"b",
    b"\xfe\xff",
    b"\xff",
    b"\xfflog/",
    b"\xfflog/\x00\x00\x00\x00\x00\x00\x00\x02",
    b"\xfflog/\x00\x00\x00\x00\x00\x00\x00\x05",
    b"\xffz",
    b"\xff\xff",
];
const PREFIX: &[u8] = b"\xfflog/";

#[derive(Clone, Debug)]
enum Write {
    Put(usize, usize),
    Delete(usize),
    DeleteRange(usize, Option<usize>),
}

#[derive(Clone, Debug)]
struct Step {
    writes: Vec<Write>,
    /// Value size of the commit's stamped put, if it has one.
    stamped: Option<usize>,
    reopen: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let k = 0..KEYS.len();
    let write = prop_oneof![
        4 => (k.clone(), 0..1500usize).prop_map(|(k, n)| Write::Put(k, n)),
        1 => k.clone().prop_map(Write::Delete),
        1 => (k.clone(), proptest::option::of(k)).prop_map(|(s, e)| Write::DeleteRange(s, e)),
    ];
    (
        proptest::collection::vec(write, 0..4),
        proptest::option::weighted(0.7, prop_oneof![0..200usize, 0..4000usize]),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(writes, stamped, reopen)| Step {
            writes,
            stamped,
            reopen,
        })
}

fn range(s: usize, e: Option<usize>) -> KeyRange {
    KeyRange {
        start: KEYS[s].to_vec(),
        end: e.map(|e| KEYS[e].to_vec()),
    }
}

/// Apply one step to the model and to the store, as the transaction manager would.
fn apply(store: &RedbStore, model: &mut Model, meta: &mut StoreMeta, step: &Step, n: usize) {
    let mut batch = Batch::default();
    let mut points = BTreeMap::new();
    for w in &step.writes {
        match w {
            Write::Put(k, len) => {
                points.insert(KEYS[*k].to_vec(), Some(vec![n as u8; *len]));
            }
            Write::Delete(k) => {
                points.insert(KEYS[*k].to_vec(), None);
            }
            Write::DeleteRange(s, e) => {
                let r = range(*s, *e);
                points.retain(|k: &Vec<u8>, _| !r.contains(k));
                batch.delete_ranges.push(r);
            }
        }
    }
    batch.writes = points.into_iter().collect();
    meta.commit_seq += 1;
    if let Some(len) = step.stamped {
        meta.stamp_version += 1;
        let mut key = PREFIX.to_vec();
        key.extend_from_slice(&meta.stamp_version.to_be_bytes());
        batch.stamped = Some(batch.writes.len());
        batch.writes.push((key, Some(vec![0xA5; len])));
    }
    for r in &batch.delete_ranges {
        model.retain(|k, _| !r.contains(k));
    }
    for (k, v) in &batch.writes {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
    store.apply(&batch, *meta).expect("apply");
}

/// Every read of a snapshot agrees with the model.
fn check(store: &RedbStore, model: &Model, meta: StoreMeta) -> Result<(), TestCaseError> {
    let snap = store.snapshot().expect("snapshot");
    prop_assert_eq!(snap.meta(), meta);
    for k in KEYS {
        prop_assert_eq!(snap.get(k).unwrap(), model.get(*k).cloned(), "get {:?}", k);
    }
    for s in 0..KEYS.len() {
        for e in std::iter::once(None).chain((0..KEYS.len()).map(Some)) {
            let r = range(s, e);
            let want: Vec<KeyValue> = model
                .iter()
                .filter(|(k, _)| r.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for limit in [1, 2, usize::MAX] {
                let fwd = snap.scan(&r, limit, false).unwrap();
                prop_assert_eq!(&fwd[..], &want[..want.len().min(limit)], "scan {:?}", &r);
                let rev = snap.scan(&r, limit, true).unwrap();
                let want_rev: Vec<KeyValue> = want.iter().rev().take(limit).cloned().collect();
                prop_assert_eq!(rev, want_rev, "reverse scan {:?}", &r);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let mut store = RedbStore::open(&path).unwrap();
        let mut model = Model::new();
        let mut meta = StoreMeta::default();
        for (n, s) in steps.iter().enumerate() {
            apply(&store, &mut model, &mut meta, s, n);
            if s.reopen {
                store.close().unwrap();
                drop(store);
                store = RedbStore::open(&path).unwrap();
            }
            check(&store, &model, meta)?;
        }
    }
}

#[test]
fn stamped_entries_are_staged_then_moved_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    let mut model = Model::new();
    let mut meta = StoreMeta::default();
    let small = Step {
        writes: vec![Write::Put(1, 10)],
        stamped: Some(100),
        reopen: false,
    };
    let staged_count = |store: &RedbStore| {
        let db = store.db().unwrap();
        let tx = db.begin_read().unwrap();
        tx.open_table(HEAD).unwrap().len().unwrap() - 1
    };
    let per_budget = STAGE_BUDGET / layout::cost(&[0; PREFIX.len() + 8], &[0; 100]);
    for n in 0..per_budget {
        apply(&store, &mut model, &mut meta, &small, n);
        assert_eq!(staged_count(&store), n as u64 + 1, "entry {n} is staged");
    }
    apply(&store, &mut model, &mut meta, &small, per_budget);
    assert_eq!(
        staged_count(&store),
        1,
        "a full stage moves to the data table"
    );
    check(&store, &model, meta).unwrap();
}

#[test]
fn a_file_of_the_earlier_layout_is_converted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut data = tx.open_table(LOW).unwrap();
            for (k, v) in [
                (&b"a"[..], &b"1"[..]),
                (b"\xff", b"2"),
                (b"\xfflog/x", b"3"),
            ] {
                data.insert(k, v).unwrap();
            }
            let mut meta = tx.open_table(LEGACY_META).unwrap();
            meta.insert("commit_seq", 7).unwrap();
            meta.insert("stamp_version", 5).unwrap();
            meta.insert("stamp_time_ms", 99).unwrap();
        }
        tx.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(
        snap.meta(),
        StoreMeta {
            commit_seq: 7,
            stamp_version: 5,
            stamp_time_ms: 99
        }
    );
    let all = snap.scan(&KeyRange::all(), usize::MAX, false).unwrap();
    let want: Vec<KeyValue> = [
        (&b"a"[..], &b"1"[..]),
        (b"\xff", b"2"),
        (b"\xfflog/x", b"3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_vec(), v.to_vec()))
    .collect();
    assert_eq!(all, want);
    let high: Vec<Vec<u8>> = snap
        .high
        .iter()
        .unwrap()
        .map(|i| i.unwrap().0.value().to_vec())
        .collect();
    assert_eq!(high, vec![b"\xff".to_vec(), b"\xfflog/x".to_vec()]);
}
