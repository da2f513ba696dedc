//! The conformance suite every engine runs.
//!
//! Each `check_*` function takes a fresh, **empty** engine and panics (with a message
//! saying what broke) if the engine violates the contract of [`crate::Engine`],
//! [`crate::Transaction`] or [`crate::ReadView`]. A backend's tests run all of them with
//! [`crate::conformance_tests!`]; engines that can be reopened also run
//! [`check_durable_reopen`].
//!
//! ```ignore
//! tito_engine::conformance_tests!(async {
//!     std::sync::Arc::new(tito_engine::memory::MemoryEngine::new()) as std::sync::Arc<dyn tito_engine::Engine>
//! });
//! ```
//! The calling crate needs `tokio` (with the `macros` and `rt-multi-thread` features)
//! among its dev-dependencies.

use std::future::Future;
use std::sync::Arc;

use crate::{Engine, EngineError, KeyRange, KeyValue, Stamp, Tx};

/// Expands to one `#[tokio::test]` per conformance check, each run on a fresh engine
/// produced by the given `async` expression (evaluated once per test).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        use $crate::__conformance_tests;
        $crate::conformance_checks!(__conformance_tests!($make));
    };
}

/// Calls `callback!(args; check_a, check_b, ...)` with the name of every conformance check
/// (functions of [`crate::conformance`]), for a suite that runs them its own way: one
/// by one on a cluster of its own, say. `callback` must be a macro in scope.
#[macro_export]
macro_rules! conformance_checks {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback! { $($args)*;
            check_no_dirty_reads,
            check_repeatable_reads,
            check_own_writes_visible,
            check_read_write_conflict,
            check_scan_phantom_conflict,
            check_blind_writes_do_not_conflict,
            check_write_skew_prevented,
            check_concurrent_increments,
            check_range_half_open,
            check_range_limit_and_reverse,
            check_unbounded_and_empty_ranges,
            check_empty_key,
            check_ff_keys,
            check_delete,
            check_delete_range_then_put,
            check_scan_merges_buffered_writes,
            check_batch_get_order,
            check_binary_and_large_values,
            check_finished_transaction_errors,
            check_rollback_discards,
            check_stamps_dense_and_layout,
            check_stamps_concurrent,
            check_one_stamped_put_per_transaction,
            check_no_stamp_without_stamped_put,
            check_read_view_stable,
            check_read_view_paged_scan,
            check_advance_version,
            check_reset_version,
            check_bulk_load,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let engine: ::std::sync::Arc<dyn $crate::Engine> = $make.await;
                $crate::conformance::$check(engine).await;
            }
        )*
    };
}

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn keys(pairs: &[KeyValue]) -> Vec<Vec<u8>> {
    pairs.iter().map(|(k, _)| k.clone()).collect()
}

async fn put_all(engine: &dyn Engine, pairs: &[(&[u8], &[u8])]) {
    let tx = engine.begin().await.expect("begin");
    for (key, value) in pairs {
        tx.put(key.to_vec(), value.to_vec()).expect("put");
    }
    tx.commit().await.expect("commit of setup writes");
}

async fn read(engine: &dyn Engine, key: &[u8]) -> Option<Vec<u8>> {
    let tx = engine.begin().await.expect("begin");
    let v = tx.get(key).await.expect("get");
    tx.rollback().await.expect("rollback");
    v
}

async fn scan_all(engine: &dyn Engine, range: &KeyRange) -> Vec<KeyValue> {
    let tx = engine.begin().await.expect("begin");
    let v = tx.scan(range, usize::MAX).await.expect("scan");
    tx.rollback().await.expect("rollback");
    v
}

/// Commit `tx`, returning whether it conflicted (any other error panics).
async fn commit_conflicts(tx: &Tx) -> bool {
    match tx.commit().await {
        Ok(_) => false,
        Err(e) if e.is_conflict() => true,
        Err(e) => panic!("commit failed with a non-conflict error: {e}"),
    }
}

/// Uncommitted writes are invisible to other transactions.
pub async fn check_no_dirty_reads(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"a", b"1")]).await;
    let writer = engine.begin().await.expect("begin");
    writer.put(k("a"), k("2")).expect("put");
    writer.put(k("b"), k("new")).expect("put");
    writer
        .delete_range(&KeyRange::new(k("c"), k("d")))
        .expect("delete_range");
    let reader = engine.begin().await.expect("begin");
    assert_eq!(
        reader.get(b"a").await.expect("get"),
        Some(k("1")),
        "dirty read of a put"
    );
    assert_eq!(
        reader.get(b"b").await.expect("get"),
        None,
        "dirty read of a new key"
    );
    let seen = reader.scan(&KeyRange::all(), 10).await.expect("scan");
    assert_eq!(seen, vec![(k("a"), k("1"))], "scan saw uncommitted writes");
    writer.rollback().await.expect("rollback");
    reader.rollback().await.expect("rollback");
}

/// A transaction keeps seeing its snapshot while others commit.
pub async fn check_repeatable_reads(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"a", b"1"), (b"c", b"3")]).await;
    let reader = engine.begin().await.expect("begin");
    assert_eq!(reader.get(b"a").await.expect("get"), Some(k("1")));
    put_all(engine.as_ref(), &[(b"a", b"changed"), (b"b", b"inserted")]).await;
    let tx = engine.begin().await.expect("begin");
    tx.delete(k("c")).expect("delete");
    tx.commit().await.expect("commit");
    assert_eq!(
        reader.get(b"a").await.expect("get"),
        Some(k("1")),
        "non-repeatable read"
    );
    assert_eq!(
        reader.get(b"c").await.expect("get"),
        Some(k("3")),
        "saw a later delete"
    );
    let seen = reader.scan(&KeyRange::all(), 10).await.expect("scan");
    assert_eq!(
        seen,
        vec![(k("a"), k("1")), (k("c"), k("3"))],
        "phantom in scan"
    );
    reader.rollback().await.expect("rollback");
    assert_eq!(read(engine.as_ref(), b"a").await, Some(k("changed")));
}

/// A transaction sees its own buffered writes, in call order.
pub async fn check_own_writes_visible(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"a", b"1"), (b"b", b"2")]).await;
    let tx = engine.begin().await.expect("begin");
    tx.put(k("a"), k("mine")).expect("put");
    tx.delete(k("b")).expect("delete");
    tx.put(k("c"), k("new")).expect("put");
    assert_eq!(tx.get(b"a").await.expect("get"), Some(k("mine")));
    assert_eq!(tx.get(b"b").await.expect("get"), None);
    assert_eq!(tx.get(b"c").await.expect("get"), Some(k("new")));
    tx.put(k("b"), k("back")).expect("put");
    assert_eq!(
        tx.get(b"b").await.expect("get"),
        Some(k("back")),
        "later put must win"
    );
    tx.commit().await.expect("commit");
    let all = scan_all(engine.as_ref(), &KeyRange::all()).await;
    assert_eq!(
        all,
        vec![(k("a"), k("mine")), (k("b"), k("back")), (k("c"), k("new"))]
    );
}

/// A key read by a transaction and changed by a later commit makes it conflict.
pub async fn check_read_write_conflict(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"x", b"0")]).await;
    let t1 = engine.begin().await.expect("begin");
    let _ = t1.get(b"x").await.expect("get");
    t1.put(k("y"), k("from t1")).expect("put");
    put_all(engine.as_ref(), &[(b"x", b"1")]).await;
    assert!(
        commit_conflicts(&t1).await,
        "read-write conflict on x not detected"
    );
    assert_eq!(
        read(engine.as_ref(), b"y").await,
        None,
        "a conflicting commit wrote data"
    );
    // A read of an absent key conflicts with its later creation too.
    let t2 = engine.begin().await.expect("begin");
    assert_eq!(t2.get(b"absent").await.expect("get"), None);
    t2.put(k("z"), k("1")).expect("put");
    put_all(engine.as_ref(), &[(b"absent", b"now")]).await;
    assert!(
        commit_conflicts(&t2).await,
        "creation of a read absent key not detected"
    );
}

/// A range scanned by a transaction and written into by a later commit makes it conflict;
/// writes outside the scanned part do not.
pub async fn check_scan_phantom_conflict(engine: Arc<dyn Engine>) {
    put_all(
        engine.as_ref(),
        &[(b"a1", b""), (b"a2", b""), (b"a3", b""), (b"a5", b"")],
    )
    .await;
    let t1 = engine.begin().await.expect("begin");
    let seen = t1.scan(&KeyRange::prefix(b"a"), 10).await.expect("scan");
    assert_eq!(seen.len(), 4);
    t1.put(k("count"), k("4")).expect("put");
    put_all(engine.as_ref(), &[(b"a4", b"")]).await;
    assert!(
        commit_conflicts(&t1).await,
        "phantom insert into a scanned range not detected"
    );

    // With a limit, only the part actually read counts.
    let t2 = engine.begin().await.expect("begin");
    let seen = t2.scan(&KeyRange::prefix(b"a"), 2).await.expect("scan");
    assert_eq!(keys(&seen), vec![k("a1"), k("a2")]);
    t2.put(k("first two"), k("")).expect("put");
    put_all(engine.as_ref(), &[(b"a6", b"")]).await;
    assert!(
        !commit_conflicts(&t2).await,
        "a write past the scanned part conflicted"
    );

    // The last key a limited scan returned is part of what it read, in both directions.
    let t3 = engine.begin().await.expect("begin");
    let seen = t3.scan(&KeyRange::prefix(b"a"), 2).await.expect("scan");
    assert_eq!(keys(&seen), vec![k("a1"), k("a2")]);
    t3.put(k("x"), k("")).expect("put");
    put_all(engine.as_ref(), &[(b"a2", b"changed")]).await;
    assert!(
        commit_conflicts(&t3).await,
        "change of the last key of a limited scan missed"
    );
    let t4 = engine.begin().await.expect("begin");
    let seen = t4
        .scan_reverse(&KeyRange::prefix(b"a"), 1)
        .await
        .expect("scan_reverse");
    assert_eq!(keys(&seen), vec![k("a6")]);
    t4.put(k("x"), k("")).expect("put");
    put_all(engine.as_ref(), &[(b"a6", b"changed")]).await;
    assert!(
        commit_conflicts(&t4).await,
        "change of the last key of a reverse scan missed"
    );
    let t5 = engine.begin().await.expect("begin");
    let _ = t5
        .scan_reverse(&KeyRange::prefix(b"a"), 1)
        .await
        .expect("scan_reverse");
    t5.put(k("x"), k("")).expect("put");
    put_all(engine.as_ref(), &[(b"a5", b"outside the read part")]).await;
    assert!(
        !commit_conflicts(&t5).await,
        "a write before a reverse scan's part conflicted"
    );
}

/// Transactions that only write never conflict, even on the same key.
pub async fn check_blind_writes_do_not_conflict(engine: Arc<dyn Engine>) {
    let t1 = engine.begin().await.expect("begin");
    let t2 = engine.begin().await.expect("begin");
    t1.put(k("k"), k("1")).expect("put");
    t2.put(k("k"), k("2")).expect("put");
    t2.delete_range(&KeyRange::new(k("m"), k("n")))
        .expect("delete_range");
    t1.commit().await.expect("blind write t1 must commit");
    t2.commit().await.expect("blind write t2 must commit");
    assert_eq!(
        read(engine.as_ref(), b"k").await,
        Some(k("2")),
        "last committer wins"
    );
}

/// The classic write-skew anomaly is prevented.
pub async fn check_write_skew_prevented(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"alice", b"on"), (b"bob", b"on")]).await;
    let t1 = engine.begin().await.expect("begin");
    let t2 = engine.begin().await.expect("begin");
    for t in [&t1, &t2] {
        let both = t
            .batch_get(&[k("alice"), k("bob")])
            .await
            .expect("batch_get");
        assert_eq!(both, vec![Some(k("on")), Some(k("on"))]);
    }
    t1.put(k("alice"), k("off")).expect("put");
    t2.put(k("bob"), k("off")).expect("put");
    let c1 = commit_conflicts(&t1).await;
    let c2 = commit_conflicts(&t2).await;
    assert!(c1 || c2, "write skew: both transactions committed");
    let on = [
        read(engine.as_ref(), b"alice").await,
        read(engine.as_ref(), b"bob").await,
    ]
    .iter()
    .filter(|v| v.as_deref() == Some(b"on".as_slice()))
    .count();
    assert!(on >= 1, "write skew left nobody on call");
}

/// N concurrent read-modify-write increments through the retry helper give exactly N.
pub async fn check_concurrent_increments(engine: Arc<dyn Engine>) {
    const N: u64 = 16;
    let mut tasks = Vec::new();
    for _ in 0..N {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let policy = crate::RetryPolicy {
                max_attempts: 1000,
                ..Default::default()
            };
            crate::run_transaction(
                &policy,
                || engine.begin(),
                |tx: Tx| async move {
                    let n =
                        match tx.get(b"counter").await? {
                            Some(v) => u64::from_be_bytes(v.try_into().map_err(|_| {
                                EngineError::Corrupt("counter is not 8 bytes".into())
                            })?),
                            None => 0,
                        };
                    tokio::task::yield_now().await;
                    tx.put(k("counter"), (n + 1).to_be_bytes().to_vec())?;
                    Ok::<_, EngineError>(())
                },
            )
            .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("increment");
    }
    let v = read(engine.as_ref(), b"counter")
        .await
        .expect("counter exists");
    assert_eq!(v, N.to_be_bytes().to_vec(), "lost updates");
}

/// Ranges are half-open: start included, end excluded.
pub async fn check_range_half_open(engine: Arc<dyn Engine>) {
    put_all(
        engine.as_ref(),
        &[(b"a", b""), (b"b", b""), (b"c", b""), (b"d", b"")],
    )
    .await;
    let got = scan_all(engine.as_ref(), &KeyRange::new(k("b"), k("d"))).await;
    assert_eq!(keys(&got), vec![k("b"), k("c")], "range [b, d)");
    let tx = engine.begin().await.expect("begin");
    let rev = tx
        .scan_reverse(&KeyRange::new(k("b"), k("d")), 10)
        .await
        .expect("scan_reverse");
    assert_eq!(keys(&rev), vec![k("c"), k("b")], "reverse range [b, d)");
    let prefix = tx
        .scan(&KeyRange::new(k("a"), k("a\0")), 10)
        .await
        .expect("scan");
    assert_eq!(keys(&prefix), vec![k("a")], "range [a, a\\0)");
}

/// Limits cut scans; reverse scans start from the end.
pub async fn check_range_limit_and_reverse(engine: Arc<dyn Engine>) {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..20u8).map(|i| (vec![b'k', i], vec![i])).collect();
    let refs: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect();
    put_all(engine.as_ref(), &refs).await;
    let tx = engine.begin().await.expect("begin");
    let all = KeyRange::prefix(b"k");
    let fwd = tx.scan(&all, 5).await.expect("scan");
    assert_eq!(
        keys(&fwd),
        (0..5u8).map(|i| vec![b'k', i]).collect::<Vec<_>>()
    );
    let rev = tx.scan_reverse(&all, 3).await.expect("scan_reverse");
    assert_eq!(
        keys(&rev),
        vec![vec![b'k', 19], vec![b'k', 18], vec![b'k', 17]]
    );
    assert_eq!(rev[0].1, vec![19], "value of reverse scan");
    assert!(tx.scan(&all, 0).await.expect("scan").is_empty(), "limit 0");
    assert_eq!(
        tx.scan(&all, 100).await.expect("scan").len(),
        20,
        "limit above count"
    );
    // Paging forward and backward visits every key once.
    let mut page_range = all.clone();
    let mut seen = Vec::new();
    loop {
        let page = tx.scan(&page_range, 7).await.expect("scan");
        let Some((last, _)) = page.last() else { break };
        page_range = all.after(last);
        seen.extend(keys(&page));
    }
    assert_eq!(seen.len(), 20, "forward paging");
    let mut page_range = all.clone();
    let mut seen_rev = Vec::new();
    loop {
        let page = tx.scan_reverse(&page_range, 6).await.expect("scan_reverse");
        let Some((first, _)) = page.last() else { break };
        page_range = all.before(first);
        seen_rev.extend(keys(&page));
    }
    seen_rev.reverse();
    assert_eq!(seen_rev, seen, "reverse paging");
}

/// Unbounded ends reach the last key; empty and inverted ranges hold nothing.
pub async fn check_unbounded_and_empty_ranges(engine: Arc<dyn Engine>) {
    put_all(
        engine.as_ref(),
        &[(b"a", b""), (b"m", b""), (b"\xff\xff", b"")],
    )
    .await;
    let tx = engine.begin().await.expect("begin");
    let tail = tx.scan(&KeyRange::from(k("b")), 10).await.expect("scan");
    assert_eq!(keys(&tail), vec![k("m"), b"\xff\xff".to_vec()]);
    let rev = tx
        .scan_reverse(&KeyRange::from(k("b")), 1)
        .await
        .expect("scan_reverse");
    assert_eq!(
        keys(&rev),
        vec![b"\xff\xff".to_vec()],
        "reverse from an unbounded end"
    );
    assert_eq!(tx.scan(&KeyRange::all(), 10).await.expect("scan").len(), 3);
    for empty in [KeyRange::new(k("m"), k("m")), KeyRange::new(k("z"), k("a"))] {
        assert!(
            tx.scan(&empty, 10).await.expect("scan").is_empty(),
            "empty range {empty:?}"
        );
        assert!(tx.scan_reverse(&empty, 10).await.expect("scan").is_empty());
    }
}

/// The empty key is a real key.
pub async fn check_empty_key(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"", b"empty"), (b"a", b"1")]).await;
    assert_eq!(read(engine.as_ref(), b"").await, Some(k("empty")));
    let tx = engine.begin().await.expect("begin");
    let first = tx.scan(&KeyRange::all(), 1).await.expect("scan");
    assert_eq!(
        first,
        vec![(Vec::new(), k("empty"))],
        "empty key sorts first"
    );
    let last = tx
        .scan_reverse(&KeyRange::new(Vec::new(), k("a")), 5)
        .await
        .expect("scan");
    assert_eq!(keys(&last), vec![Vec::<u8>::new()]);
    tx.delete(Vec::new()).expect("delete");
    tx.commit().await.expect("commit");
    assert_eq!(read(engine.as_ref(), b"").await, None, "empty key deleted");
}

/// Keys made of 0xFF bytes sort last and are reachable with unbounded ranges.
pub async fn check_ff_keys(engine: Arc<dyn Engine>) {
    let ff: Vec<Vec<u8>> = vec![vec![0xFF], vec![0xFF; 2], vec![0xFF; 300], vec![0xFE, 0xFF]];
    let tx = engine.begin().await.expect("begin");
    for (i, key) in ff.iter().enumerate() {
        tx.put(key.clone(), vec![i as u8]).expect("put");
    }
    tx.commit().await.expect("commit");
    let got = scan_all(engine.as_ref(), &KeyRange::prefix(&[0xFF])).await;
    assert_eq!(keys(&got), vec![vec![0xFF], vec![0xFF; 2], vec![0xFF; 300]]);
    let tx = engine.begin().await.expect("begin");
    let rev = tx
        .scan_reverse(&KeyRange::all(), 1)
        .await
        .expect("scan_reverse");
    assert_eq!(
        keys(&rev),
        vec![vec![0xFF; 300]],
        "longest 0xFF key is last"
    );
    assert_eq!(tx.get(&[0xFF; 300]).await.expect("get"), Some(vec![2]));
    tx.delete_range(&KeyRange::from(vec![0xFF, 0xFF]))
        .expect("delete_range");
    tx.commit().await.expect("commit");
    let left = scan_all(engine.as_ref(), &KeyRange::all()).await;
    assert_eq!(keys(&left), vec![vec![0xFE, 0xFF], vec![0xFF]]);
}

/// Deletes remove keys; deleting an absent key is fine.
pub async fn check_delete(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"a", b"1"), (b"b", b"2")]).await;
    let tx = engine.begin().await.expect("begin");
    tx.delete(k("a")).expect("delete");
    tx.delete(k("never existed"))
        .expect("delete of an absent key");
    tx.commit().await.expect("commit");
    assert_eq!(read(engine.as_ref(), b"a").await, None);
    assert_eq!(
        scan_all(engine.as_ref(), &KeyRange::all()).await,
        vec![(k("b"), k("2"))]
    );
}

/// `delete_range` then `put` inside it: the put survives; writes apply in call order.
pub async fn check_delete_range_then_put(engine: Arc<dyn Engine>) {
    put_all(
        engine.as_ref(),
        &[(b"a", b""), (b"b1", b"old"), (b"b2", b"old"), (b"c", b"")],
    )
    .await;
    let tx = engine.begin().await.expect("begin");
    tx.put(k("b3"), k("lost")).expect("put");
    tx.delete_range(&KeyRange::prefix(b"b"))
        .expect("delete_range");
    tx.put(k("b2"), k("new")).expect("put");
    assert_eq!(tx.get(b"b1").await.expect("get"), None);
    assert_eq!(
        tx.get(b"b3").await.expect("get"),
        None,
        "put before delete_range survived"
    );
    let inside = tx.scan(&KeyRange::all(), 10).await.expect("scan");
    assert_eq!(keys(&inside), vec![k("a"), k("b2"), k("c")]);
    tx.commit().await.expect("commit");
    let after = scan_all(engine.as_ref(), &KeyRange::all()).await;
    assert_eq!(
        after,
        vec![(k("a"), vec![]), (k("b2"), k("new")), (k("c"), vec![])]
    );
}

/// Scans merge buffered puts and deletes with committed data, honouring limits.
pub async fn check_scan_merges_buffered_writes(engine: Arc<dyn Engine>) {
    let stored: Vec<(Vec<u8>, Vec<u8>)> = (0..10u8)
        .map(|i| (vec![b'k', b'0' + i], k("stored")))
        .collect();
    let refs: Vec<(&[u8], &[u8])> = stored
        .iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect();
    put_all(engine.as_ref(), &refs).await;
    let tx = engine.begin().await.expect("begin");
    tx.delete(k("k0")).expect("delete");
    tx.delete(k("k1")).expect("delete");
    tx.put(k("k15"), k("buffered")).expect("put");
    tx.put(k("k3"), k("overwritten")).expect("put");
    tx.delete_range(&KeyRange::new(k("k5"), k("k8")))
        .expect("delete_range");
    let all = KeyRange::prefix(b"k");
    let first3 = tx.scan(&all, 3).await.expect("scan");
    assert_eq!(
        first3,
        vec![
            (k("k15"), k("buffered")),
            (k("k2"), k("stored")),
            (k("k3"), k("overwritten"))
        ]
    );
    let last3 = tx.scan_reverse(&all, 3).await.expect("scan_reverse");
    assert_eq!(keys(&last3), vec![k("k9"), k("k8"), k("k4")]);
    let everything = tx.scan(&all, 100).await.expect("scan");
    assert_eq!(
        keys(&everything),
        vec![k("k15"), k("k2"), k("k3"), k("k4"), k("k8"), k("k9")]
    );
    let mut rev = tx.scan_reverse(&all, 100).await.expect("scan_reverse");
    rev.reverse();
    assert_eq!(rev, everything, "reverse scan disagrees with forward scan");
    tx.rollback().await.expect("rollback");
}

/// `batch_get` answers in the order asked, duplicates and absent keys included.
pub async fn check_batch_get_order(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]).await;
    let tx = engine.begin().await.expect("begin");
    tx.put(k("d"), k("4")).expect("put");
    let got = tx
        .batch_get(&[k("c"), k("zz"), k("a"), k("d"), k("c")])
        .await
        .expect("batch_get");
    assert_eq!(
        got,
        vec![Some(k("3")), None, Some(k("1")), Some(k("4")), Some(k("3"))]
    );
    tx.rollback().await.expect("rollback");
}

/// Values are arbitrary bytes, empty or larger than 1 MiB.
pub async fn check_binary_and_large_values(engine: Arc<dyn Engine>) {
    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let large: Vec<u8> = (0..(1usize << 20) + 4099)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let tx = engine.begin().await.expect("begin");
    tx.put(vec![0, 0, 0], binary.clone()).expect("put");
    tx.put(k("empty"), Vec::new()).expect("put");
    tx.put(k("large"), large.clone()).expect("put");
    tx.commit().await.expect("commit");
    assert_eq!(read(engine.as_ref(), &[0, 0, 0]).await, Some(binary));
    assert_eq!(
        read(engine.as_ref(), b"empty").await,
        Some(Vec::new()),
        "empty value vs absent"
    );
    let got = read(engine.as_ref(), b"large")
        .await
        .expect("large value present");
    assert!(
        got == large,
        "large value corrupted (len {} vs {})",
        got.len(),
        large.len()
    );
    let view = engine.read_view().await.expect("read_view");
    let page = view
        .scan(&KeyRange::prefix(b"large"), 1)
        .await
        .expect("view scan");
    assert!(
        page.len() == 1 && page[0].1 == large,
        "large value through a read view"
    );
}

/// Every call on a committed or rolled-back transaction fails with `Finished`.
pub async fn check_finished_transaction_errors(engine: Arc<dyn Engine>) {
    for commit in [true, false] {
        let tx = engine.begin().await.expect("begin");
        tx.put(k("a"), k("1")).expect("put");
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        let finished = |r: Result<(), EngineError>, what: &str| {
            assert!(
                matches!(r, Err(EngineError::Finished)),
                "{what} after finish: {r:?}"
            );
        };
        finished(tx.get(b"a").await.map(|_| ()), "get");
        finished(tx.scan(&KeyRange::all(), 1).await.map(|_| ()), "scan");
        finished(
            tx.scan_reverse(&KeyRange::all(), 1).await.map(|_| ()),
            "scan_reverse",
        );
        finished(tx.put(k("b"), k("2")), "put");
        finished(tx.delete(k("a")), "delete");
        finished(tx.delete_range(&KeyRange::all()), "delete_range");
        finished(tx.put_stamped(k("log/"), k("x")), "put_stamped");
        finished(tx.commit().await.map(|_| ()), "commit");
        finished(tx.rollback().await, "rollback");
    }
    assert_eq!(read(engine.as_ref(), b"b").await, None);
}

/// Rollback (or dropping the handle) discards buffered writes.
pub async fn check_rollback_discards(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"keep", b"1")]).await;
    let tx = engine.begin().await.expect("begin");
    tx.put(k("gone"), k("x")).expect("put");
    tx.delete(k("keep")).expect("delete");
    tx.put_stamped(k("log/"), k("x")).expect("put_stamped");
    tx.rollback().await.expect("rollback");
    {
        let dropped = engine.begin().await.expect("begin");
        dropped.put(k("dropped"), k("x")).expect("put");
    }
    let all = scan_all(engine.as_ref(), &KeyRange::all()).await;
    assert_eq!(all, vec![(k("keep"), k("1"))], "rolled-back writes leaked");
    let view = engine.read_view().await.expect("read_view");
    assert_eq!(
        view.version(),
        0,
        "a rolled-back stamped put advanced the counter"
    );
}

async fn stamped_commit(engine: &dyn Engine, prefix: &[u8], payload: &[u8]) -> Stamp {
    let tx = engine.begin().await.expect("begin");
    tx.put_stamped(prefix.to_vec(), payload.to_vec())
        .expect("put_stamped");
    tx.commit()
        .await
        .expect("commit")
        .stamp
        .expect("a stamped commit reports its stamp")
}

fn check_log_entry(prefix: &[u8], (key, value): &KeyValue, stamp: Stamp, payload: &[u8]) {
    let mut want_key = prefix.to_vec();
    want_key.extend_from_slice(&stamp.version.to_be_bytes());
    assert_eq!(
        key, &want_key,
        "stamped key must be prefix ++ be_u64(version)"
    );
    let mut want_value = stamp.time_ms.to_be_bytes().to_vec();
    want_value.extend_from_slice(payload);
    assert_eq!(
        value, &want_value,
        "stamped value must be be_u64(time_ms) ++ value"
    );
}

/// Stamps are dense from 1, time never decreases, and the layout is exact.
pub async fn check_stamps_dense_and_layout(engine: Arc<dyn Engine>) {
    let prefix = b"\xfftito\x00log/";
    let mut stamps = Vec::new();
    for i in 0..5u8 {
        if i == 2 {
            put_all(engine.as_ref(), &[(b"unstamped", b"")]).await;
        }
        stamps.push(stamped_commit(engine.as_ref(), prefix, &[i, 0xFF, 0]).await);
    }
    let versions: Vec<u64> = stamps.iter().map(|s| s.version).collect();
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5],
        "versions must be dense from 1"
    );
    assert!(
        stamps.windows(2).all(|w| w[0].time_ms <= w[1].time_ms),
        "time went backwards"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    assert!(
        stamps[0].time_ms > 0 && stamps[4].time_ms <= now + 60_000,
        "time_ms is not wall time"
    );
    let log = scan_all(engine.as_ref(), &KeyRange::prefix(prefix)).await;
    assert_eq!(log.len(), 5);
    for (i, (entry, stamp)) in log.iter().zip(&stamps).enumerate() {
        check_log_entry(prefix, entry, *stamp, &[i as u8, 0xFF, 0]);
    }
}

/// Concurrent stamped committers get distinct, dense versions and consistent times.
pub async fn check_stamps_concurrent(engine: Arc<dyn Engine>) {
    const N: usize = 24;
    let prefix = b"L/";
    let mut tasks = Vec::new();
    for i in 0..N {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let tx = engine.begin().await.expect("begin");
            tx.put(format!("data/{i}").into_bytes(), k("v"))
                .expect("put");
            tx.put_stamped(prefix.to_vec(), (i as u32).to_be_bytes().to_vec())
                .expect("put_stamped");
            let stamp = tx
                .commit()
                .await
                .expect("blind stamped commit")
                .stamp
                .expect("stamp");
            (stamp, i)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    got.sort();
    let versions: Vec<u64> = got.iter().map(|(s, _)| s.version).collect();
    assert_eq!(
        versions,
        (1..=N as u64).collect::<Vec<_>>(),
        "versions not dense and unique"
    );
    assert!(
        got.windows(2).all(|w| w[0].0.time_ms <= w[1].0.time_ms),
        "time decreased along versions"
    );
    let log = scan_all(engine.as_ref(), &KeyRange::prefix(prefix)).await;
    assert_eq!(log.len(), N);
    for (entry, (stamp, i)) in log.iter().zip(&got) {
        check_log_entry(prefix, entry, *stamp, &(*i as u32).to_be_bytes());
    }
    // A stamped commit that starts after another finished gets a larger version.
    let later = stamped_commit(engine.as_ref(), prefix, b"after").await;
    assert_eq!(later.version, N as u64 + 1);
}

/// A second stamped put in one transaction is refused.
pub async fn check_one_stamped_put_per_transaction(engine: Arc<dyn Engine>) {
    let tx = engine.begin().await.expect("begin");
    tx.put_stamped(k("log/"), k("one"))
        .expect("first put_stamped");
    let second = tx.put_stamped(k("log/"), k("two"));
    assert!(
        matches!(second, Err(EngineError::Invalid(_))),
        "second put_stamped: {second:?}"
    );
    let info = tx.commit().await.expect("commit");
    assert_eq!(info.stamp.map(|s| s.version), Some(1));
    let log = scan_all(engine.as_ref(), &KeyRange::prefix(b"log/")).await;
    assert_eq!(log.len(), 1);
    assert_eq!(&log[0].1[8..], b"one");
}

/// Commits without a stamped put report no stamp and leave the counter alone.
pub async fn check_no_stamp_without_stamped_put(engine: Arc<dyn Engine>) {
    let tx = engine.begin().await.expect("begin");
    tx.put(k("a"), k("1")).expect("put");
    assert_eq!(tx.commit().await.expect("commit").stamp, None);
    let ro = engine.begin().await.expect("begin");
    let _ = ro.get(b"a").await.expect("get");
    assert_eq!(ro.commit().await.expect("read-only commit").stamp, None);
    assert_eq!(engine.read_view().await.expect("view").version(), 0);
    let s = stamped_commit(engine.as_ref(), b"log/", b"").await;
    assert_eq!(s.version, 1, "unstamped commits consumed versions");
    put_all(engine.as_ref(), &[(b"b", b"2")]).await;
    assert_eq!(
        stamped_commit(engine.as_ref(), b"log/", b"").await.version,
        2
    );
}

/// A read view stays at its commit while writers continue, and reports its version.
pub async fn check_read_view_stable(engine: Arc<dyn Engine>) {
    put_all(engine.as_ref(), &[(b"a", b"1"), (b"b", b"2")]).await;
    let s1 = stamped_commit(engine.as_ref(), b"log/", b"1").await;
    let view = engine.read_view().await.expect("read_view");
    assert_eq!(
        view.version(),
        s1.version,
        "view must report the latest stamp"
    );
    // Writers are not blocked by the view.
    let writes = async {
        for i in 0..5u8 {
            let tx = engine.begin().await.expect("begin");
            tx.put(k("a"), vec![i]).expect("put");
            tx.delete(k("b")).expect("delete");
            tx.put(vec![b'n', i], k("")).expect("put");
            tx.put_stamped(k("log/"), vec![i]).expect("put_stamped");
            tx.commit().await.expect("commit while a view is open");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), writes)
        .await
        .expect("writers blocked by an open read view");
    assert_eq!(view.get(b"a").await.expect("get"), Some(k("1")));
    assert_eq!(view.get(b"b").await.expect("get"), Some(k("2")));
    let user = view
        .scan(&KeyRange::new(Vec::new(), k("log/")), 100)
        .await
        .expect("scan");
    assert_eq!(keys(&user), vec![k("a"), k("b")], "view saw later writes");
    assert_eq!(view.version(), s1.version);
    let fresh = engine.read_view().await.expect("read_view");
    assert_eq!(fresh.version(), s1.version + 5);
    assert_eq!(fresh.get(b"b").await.expect("get"), None);
}

/// A read view can be scanned in pages with `KeyRange::after`.
pub async fn check_read_view_paged_scan(engine: Arc<dyn Engine>) {
    let pairs: Vec<KeyValue> = (0..250u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8]))
        .collect();
    let tx = engine.begin().await.expect("begin");
    for (a, b) in &pairs {
        tx.put(a.clone(), b.clone()).expect("put");
    }
    tx.commit().await.expect("commit");
    let view = engine.read_view().await.expect("read_view");
    put_all(
        engine.as_ref(),
        &[(&[0, 0, 0, 7], b"changed"), (&[0, 0, 9, 9], b"new")],
    )
    .await;
    let all = KeyRange::all();
    let mut range = all.clone();
    let mut seen = Vec::new();
    loop {
        let page = view.scan(&range, 16).await.expect("view scan");
        assert!(page.len() <= 16, "page larger than its limit");
        let Some((last, _)) = page.last() else { break };
        range = all.after(last);
        seen.extend(page);
    }
    assert_eq!(
        seen, pairs,
        "paged view scan must return the view's exact contents"
    );
    assert!(view.scan(&all, 0).await.expect("scan").is_empty());
}

/// `advance_version` moves the next stamp past the given version, never backwards.
pub async fn check_advance_version(engine: Arc<dyn Engine>) {
    assert_eq!(
        stamped_commit(engine.as_ref(), b"log/", b"").await.version,
        1
    );
    engine.advance_version(100).await.expect("advance_version");
    assert_eq!(
        stamped_commit(engine.as_ref(), b"log/", b"").await.version,
        101
    );
    engine
        .advance_version(50)
        .await
        .expect("advance_version backwards is a no-op");
    assert_eq!(
        stamped_commit(engine.as_ref(), b"log/", b"").await.version,
        102
    );
    assert!(engine.read_view().await.expect("read_view").version() >= 102);
}

/// `reset_version` sets the counter exactly, downwards too: the next stamp follows it.
pub async fn check_reset_version(engine: Arc<dyn Engine>) {
    engine.advance_version(90).await.expect("advance_version");
    let before = stamped_commit(engine.as_ref(), b"log/", b"").await;
    assert_eq!(before.version, 91);
    engine.reset_version(3).await.expect("reset_version");
    let after = stamped_commit(engine.as_ref(), b"log/", b"").await;
    assert_eq!(after.version, 4, "the next stamp follows the reset counter");
    assert!(
        after.time_ms >= before.time_ms,
        "commit times never go back"
    );
    engine
        .reset_version(4)
        .await
        .expect("reset_version to the current value");
    assert_eq!(
        stamped_commit(engine.as_ref(), b"log/", b"").await.version,
        5
    );
}

/// `bulk_load` writes everything atomically, and conflicts readers of those keys.
pub async fn check_bulk_load(engine: Arc<dyn Engine>) {
    let pairs: Vec<KeyValue> = (0..2000u32)
        .rev()
        .map(|i| {
            (
                format!("bulk/{i:05}").into_bytes(),
                i.to_le_bytes().to_vec(),
            )
        })
        .collect();
    let reader = engine.begin().await.expect("begin");
    assert_eq!(reader.get(b"bulk/00010").await.expect("get"), None);
    reader.put(k("derived"), k("x")).expect("put");
    engine.bulk_load(pairs.clone()).await.expect("bulk_load");
    assert!(
        commit_conflicts(&reader).await,
        "bulk_load did not conflict a reader of its keys"
    );
    let mut want = pairs;
    want.sort();
    assert_eq!(
        scan_all(engine.as_ref(), &KeyRange::prefix(b"bulk/")).await,
        want
    );
    engine.bulk_load(Vec::new()).await.expect("empty bulk_load");
}

/// Write, close and drop the engine, reopen it: data and the stamp counter survive.
///
/// `open` must open the same database each time, and the previous instance is
/// dropped before it is called again.
pub async fn check_durable_reopen<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Engine>>,
{
    let prefix = b"log/";
    {
        let engine = open().await;
        put_all(engine.as_ref(), &[(b"a", b"1"), (b"b", b"2")]).await;
        let s1 = stamped_commit(engine.as_ref(), prefix, b"first").await;
        let s2 = stamped_commit(engine.as_ref(), prefix, b"second").await;
        assert_eq!((s1.version, s2.version), (1, 2));
        // Delete the log so only the persisted counter remembers version 2.
        let tx = engine.begin().await.expect("begin");
        tx.delete_range(&KeyRange::prefix(prefix))
            .expect("delete_range");
        tx.delete(k("b")).expect("delete");
        tx.commit().await.expect("commit");
        engine.close().await.expect("close");
    }
    let engine = open().await;
    assert_eq!(
        read(engine.as_ref(), b"a").await,
        Some(k("1")),
        "committed data lost"
    );
    assert_eq!(
        read(engine.as_ref(), b"b").await,
        None,
        "committed delete lost"
    );
    assert_eq!(
        engine.read_view().await.expect("view").version(),
        2,
        "stamp counter lost"
    );
    let s3 = stamped_commit(engine.as_ref(), prefix, b"third").await;
    assert_eq!(s3.version, 3, "stamp counter went backwards across reopen");
    engine.close().await.expect("close");
    drop(engine);
    let engine = open().await;
    let log = scan_all(engine.as_ref(), &KeyRange::prefix(prefix)).await;
    assert_eq!(log.len(), 1);
    check_log_entry(prefix, &log[0], s3, b"third");
    engine.close().await.expect("close");
}
