//! Model-based property test: random operation sequences on the local and memory stores
//! behave exactly like a `BTreeMap` oracle (contents, create-only puts, deletes, sorted
//! prefix listings, ranges).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use proptest::prelude::*;
use tito_store::{LocalStore, MemoryStore, Store};

#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>),
    PutIfAbsent(String, Vec<u8>),
    Delete(Vec<String>),
    Get(String),
    Range(String, u64, u64),
    List(String),
}

// Small alphabet with '/', '-', '.', '0' so ordering around separators is exercised;
// leaves only (no key is a prefix directory of another) so the filesystem can hold all.
fn key() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["a", "a-", "a.b", "a0", "b", "ab"]),
        prop::sample::select(vec!["x", "y", "z-1", "z/0"]),
    )
        .prop_map(|(d, f)| format!("{d}/{f}"))
}

fn op() -> impl Strategy<Value = Op> {
    let data = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        3 => (key(), data.clone()).prop_map(|(k, d)| Op::Put(k, d)),
        2 => (key(), data).prop_map(|(k, d)| Op::PutIfAbsent(k, d)),
        1 => prop::collection::vec(key(), 0..4).prop_map(Op::Delete),
        2 => key().prop_map(Op::Get),
        1 => (key(), 0u64..70, 0u64..70).prop_map(|(k, a, b)| Op::Range(k, a, b)),
        2 => prop::sample::select(vec!["", "a", "a/", "a-", "b", "ab/z", "zz"]).prop_map(|p| Op::List(p.to_string())),
    ]
}

async fn check(store: Arc<dyn Store>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, d) => {
                store.put(&k, Bytes::from(d.clone())).await.map_err(fail)?;
                model.insert(k, d);
            }
            Op::PutIfAbsent(k, d) => {
                let created = store
                    .put_if_absent(&k, Bytes::from(d.clone()))
                    .await
                    .map_err(fail)?;
                prop_assert_eq!(created, !model.contains_key(&k));
                model.entry(k).or_insert(d);
            }
            Op::Delete(ks) => {
                store.delete_many(&ks).await.map_err(fail)?;
                for k in ks {
                    model.remove(&k);
                }
            }
            Op::Get(k) => match (store.get(&k).await, model.get(&k)) {
                (Ok(got), Some(want)) => prop_assert_eq!(&got[..], &want[..]),
                (Err(e), None) => prop_assert!(e.is_not_found(), "{}", e),
                (got, want) => prop_assert!(false, "get {}: {:?} vs model {:?}", k, got, want),
            },
            Op::Range(k, a, b) => {
                let got = store.get_range(&k, a..b).await;
                match model.get(&k) {
                    None => prop_assert!(got.expect_err("missing").is_not_found()),
                    Some(v) if a <= b && b <= v.len() as u64 => {
                        prop_assert_eq!(&got.map_err(fail)?[..], &v[a as usize..b as usize])
                    }
                    Some(_) => prop_assert!(got.is_err(), "out-of-bounds range accepted"),
                }
            }
            Op::List(p) => {
                let got: Vec<(String, u64)> = store
                    .list(&p)
                    .map_ok(|m| (m.key, m.size))
                    .try_collect()
                    .await
                    .map_err(fail)?;
                let want: Vec<(String, u64)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.len() as u64))
                    .collect();
                prop_assert_eq!(got, want, "list {:?}", p);
            }
        }
    }
    Ok(())
}

fn fail(e: tito_store::StoreError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn run(make: fn() -> Arc<dyn Store>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(check(make(), ops))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn local_store_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(|| Arc::new(LocalStore::temporary().expect("temp store")), ops)?;
    }

    #[test]
    fn memory_store_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(|| Arc::new(MemoryStore::new()), ops)?;
    }
}
