//! etcd-specific behaviour: conflicts the read guards must catch (deletions, in precise
//! and coarse mode), limits, stamp order against etcd revisions, compaction pins, URLs.

mod common;

use std::sync::Arc;

use etcd_client::{Client, GetOptions};
use tito_engine::{Engine, EngineError, KeyRange, RetryPolicy, Tx, run_transaction, transaction};
use tito_engine_etcd::{EtcdConfig, EtcdEngine};

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn setup(engine: &dyn Engine, pairs: &[(&str, &str)]) {
    let tx = engine.begin().await.unwrap();
    for (key, v) in pairs {
        tx.put(k(key), k(v)).unwrap();
    }
    tx.commit().await.unwrap();
}

async fn scan_all(engine: &dyn Engine, range: &KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tx = engine.begin().await.unwrap();
    let out = tx.scan(range, usize::MAX).await.unwrap();
    tx.rollback().await.unwrap();
    out
}

/// Two engines on one fresh namespace: one with the cluster's limits (for setup), and
/// one whose `--max-txn-ops` budget is so small (if `coarse`) that reads are guarded
/// coarsely.
async fn engines(coarse: bool) -> (EtcdEngine, EtcdEngine) {
    let config = common::config();
    let setup = common::engine_with(config.clone()).await;
    let mut small = config;
    if coarse {
        small.max_txn_ops = 8;
    }
    (setup, common::engine_with(small).await)
}

/// A transaction that scanned a key deleted (and nothing else changed) after its
/// snapshot must conflict, in precise and in coarse guard mode, for point deletes and
/// range deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_of_a_scanned_key_conflicts() {
    for coarse in [false, true] {
        for by_range in [false, true] {
            let (full, engine) = engines(coarse).await;
            let pairs: Vec<(String, String)> =
                (0..20).map(|i| (format!("a/{i:02}"), "v".into())).collect();
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            setup(&full, &refs).await;
            let reader: Tx = engine.begin().await.unwrap();
            assert_eq!(
                reader
                    .scan(&KeyRange::prefix(b"a/"), 100)
                    .await
                    .unwrap()
                    .len(),
                20
            );
            reader.put(k("out/x"), k("1")).unwrap();
            let deleter = engine.begin().await.unwrap();
            if by_range {
                deleter
                    .delete_range(&KeyRange::new(k("a/05"), k("a/06")))
                    .unwrap();
            } else {
                deleter.delete(k("a/05")).unwrap();
            }
            deleter.commit().await.unwrap();
            let got = reader.commit().await;
            assert!(
                matches!(got, Err(EngineError::Conflict(_))),
                "coarse={coarse} by_range={by_range}: deletion of a scanned key not detected: {got:?}"
            );
        }
    }
}

/// Reads of keys that did not change do not conflict with unrelated writes (precise
/// mode), and a limited scan only guards the part it returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_writes_do_not_conflict() {
    let engine = common::engine().await;
    setup(
        engine.as_ref(),
        &[("a/1", "1"), ("a/2", "2"), ("a/3", "3"), ("b/1", "1")],
    )
    .await;
    let reader = engine.begin().await.unwrap();
    assert_eq!(
        reader
            .scan(&KeyRange::prefix(b"a/"), 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(reader.get(b"b/1").await.unwrap(), Some(k("1")));
    reader.put(k("out"), k("x")).unwrap();
    let other = engine.begin().await.unwrap();
    other.put(k("a/4"), k("4")).unwrap(); // beyond the limited scan
    other.delete(k("c/1")).unwrap();
    other.put(k("b/2"), k("2")).unwrap();
    other.commit().await.unwrap();
    reader
        .commit()
        .await
        .expect("unrelated writes must not conflict");
}

/// Money moves out of pool A (scan, delete) into fresh keys of pool B, concurrently.
/// Two movers taking the same A key would create money; only the deletion guard stops
/// it, since movers write nothing else to A. Checked in precise and coarse mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_moves_conserve_money() {
    for coarse in [false, true] {
        let (full, engine) = engines(coarse).await;
        let engine: Arc<dyn Engine> = Arc::new(engine);
        let n = 12u64;
        let tx = full.begin().await.unwrap();
        for i in 0..n {
            tx.put(
                format!("A/{i:02}").into_bytes(),
                (i + 1).to_be_bytes().to_vec(),
            )
            .unwrap();
        }
        tx.commit().await.unwrap();
        let total: u64 = (1..=n).sum();
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                for step in 0..4u64 {
                    let moved: Result<(), EngineError> =
                        transaction(engine.as_ref(), |tx| async move {
                            let a = tx.scan(&KeyRange::prefix(b"A/"), usize::MAX).await?;
                            let Some((key, val)) =
                                a.get(((w + step) as usize) % a.len().max(1)).cloned()
                            else {
                                return Ok(());
                            };
                            tx.delete(key)?;
                            tx.put(
                                format!("B/{w}-{step}-{:x}", rand::random::<u32>()).into_bytes(),
                                val,
                            )?;
                            Ok(())
                        })
                        .await;
                    moved.expect("move");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sum = |pairs: Vec<(Vec<u8>, Vec<u8>)>| -> u64 {
            pairs
                .iter()
                .map(|(_, v)| u64::from_be_bytes(v.as_slice().try_into().unwrap()))
                .sum()
        };
        let a = sum(scan_all(engine.as_ref(), &KeyRange::prefix(b"A/")).await);
        let b = sum(scan_all(engine.as_ref(), &KeyRange::prefix(b"B/")).await);
        assert_eq!(
            a + b,
            total,
            "coarse={coarse}: money created or destroyed (A {a}, B {b})"
        );
    }
}

/// Transactions beyond the limits fail with TooLarge and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_transactions_write_nothing() {
    let mut config = common::config();
    config.max_txn_ops = 16;
    let engine = common::engine_with(config).await;
    let limits = engine.limits();
    assert_eq!(limits.max_txn_ops, 14);
    let tx = engine.begin().await.unwrap();
    for i in 0..=limits.max_txn_ops {
        tx.put(format!("k/{i:03}").into_bytes(), k("v")).unwrap();
    }
    let got = tx.commit().await;
    assert!(matches!(got, Err(EngineError::TooLarge(_))), "{got:?}");
    assert!(
        scan_all(&engine, &KeyRange::prefix(b"k/")).await.is_empty(),
        "partial write"
    );
    // Exactly at the limit fits, with a stamped put as one of the operations.
    let tx = engine.begin().await.unwrap();
    for i in 0..limits.max_txn_ops - 1 {
        tx.put(format!("k/{i:03}").into_bytes(), k("v")).unwrap();
    }
    tx.put_stamped(k("log/"), k("x")).unwrap();
    tx.commit().await.expect("a transaction at the limit fits");
    // Bytes: one value larger than the request limit.
    let tx = engine.begin().await.unwrap();
    tx.put(k("big"), vec![7; limits.max_txn_bytes + 1]).unwrap();
    assert!(matches!(tx.commit().await, Err(EngineError::TooLarge(_))));
    let big: Vec<(Vec<u8>, Vec<u8>)> = (0..=limits.max_txn_ops)
        .map(|i| (format!("bulk/{i:03}").into_bytes(), k("v")))
        .collect();
    assert!(matches!(
        engine.bulk_load(big).await,
        Err(EngineError::TooLarge(_))
    ));
    assert!(
        scan_all(&engine, &KeyRange::prefix(b"bulk/"))
            .await
            .is_empty()
    );
    assert!(
        scan_all(&engine, &KeyRange::prefix(b"big"))
            .await
            .is_empty()
    );
}

/// Stamp versions follow etcd's commit (revision) order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamps_follow_revision_order() {
    let config = common::config();
    let engine: Arc<dyn Engine> = Arc::new(common::engine_with(config.clone()).await);
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let tx = engine.begin().await.unwrap();
            tx.put_stamped(k("log/"), i.to_be_bytes().to_vec()).unwrap();
            tx.commit().await.unwrap().stamp.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let resp = stamped_records(&config).await;
    let revs: Vec<(u64, i64)> = resp
        .kvs()
        .iter()
        .map(|kv| {
            (
                u64::from_be_bytes(kv.key()[kv.key().len() - 8..].try_into().unwrap()),
                kv.mod_revision(),
            )
        })
        .collect();
    assert_eq!(revs.len(), 16);
    assert!(
        revs.windows(2)
            .all(|w| w[0].0 + 1 == w[1].0 && w[0].1 < w[1].1),
        "{revs:?}"
    );
}

/// Stamped commits of several engines on one namespace, each engine guarding its
/// commits by the counter it saw last (stale whenever another engine committed, or after
/// `advance_version`): the stamps reported are exactly the records stored, dense, in
/// revision order, with non-decreasing times, and read-modify-write commits of one key
/// lose no update (first committer wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamps_stay_dense_across_engines() {
    let config = common::config();
    let mut engines: Vec<Arc<dyn Engine>> = Vec::new();
    for _ in 0..3 {
        engines.push(Arc::new(common::engine_with(config.clone()).await));
    }
    let policy = RetryPolicy {
        max_attempts: 1000,
        ..RetryPolicy::default()
    };
    // Each phase: every engine runs two tasks of commits, one incrementing "hot" (a real
    // conflict with the other engines' incrementers), one writing only its own keys.
    let phase = |from: u64| {
        let engines = engines.clone();
        let policy = policy.clone();
        async move {
            let mut tasks = Vec::new();
            for (e, engine) in engines.iter().enumerate() {
                for t in 0..2usize {
                    let engine = engine.clone();
                    let policy = policy.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut stamps = Vec::new();
                        for step in 0..5usize {
                            let payload = format!("{from}-{e}-{t}-{step}").into_bytes();
                            let (_, info) = run_transaction(
                                &policy,
                                || engine.begin(),
                                |tx| {
                                    let payload = payload.clone();
                                    async move {
                                        if t == 0 {
                                            let n = tx.get(b"hot").await?.map_or(0, |v| {
                                                u64::from_be_bytes(v.try_into().unwrap())
                                            });
                                            tx.put(k("hot"), (n + 1).to_be_bytes().to_vec())?;
                                        } else {
                                            tx.put(payload.clone(), payload.clone())?;
                                        }
                                        tx.put_stamped(k("log/"), payload)?;
                                        Ok::<_, EngineError>(())
                                    }
                                },
                            )
                            .await
                            .expect("commit");
                            stamps.push((info.stamp.expect("stamp").version, payload));
                        }
                        stamps
                    }));
                }
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        }
    };
    let mut reported = phase(0).await;
    // Moves the counter behind the other engines' backs.
    engines[0].advance_version(1000).await.unwrap();
    reported.extend(phase(1000).await);
    reported.sort();

    let resp = stamped_records(&config).await;
    // (version, mod revision, time, payload), ascending by version (the key).
    let stored: Vec<(u64, i64, u64, Vec<u8>)> = resp
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key();
            let v = kv.value();
            (
                u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap()),
                kv.mod_revision(),
                u64::from_be_bytes(v[..8].try_into().unwrap()),
                v[8..].to_vec(),
            )
        })
        .collect();
    let stored_pairs: Vec<(u64, Vec<u8>)> =
        stored.iter().map(|(v, _, _, p)| (*v, p.clone())).collect();
    assert_eq!(
        stored_pairs, reported,
        "reported stamps differ from stored records"
    );
    let versions: Vec<u64> = stored.iter().map(|r| r.0).collect();
    let expected: Vec<u64> = (1..=30).chain(1001..=1030).collect();
    assert_eq!(versions, expected, "stamps not dense");
    assert!(
        stored
            .windows(2)
            .all(|w| w[0].1 < w[1].1 && w[0].2 <= w[1].2),
        "stamps out of revision order or times decreasing: {stored:?}"
    );
    let tx = engines[1].begin().await.unwrap();
    let hot = u64::from_be_bytes(tx.get(b"hot").await.unwrap().unwrap().try_into().unwrap());
    assert_eq!(hot, 30, "lost or duplicated increments");
}

/// The stamped records under `log/` of `config`'s namespace, read straight from the
/// cluster (not through the engine under test), in key order.
async fn stamped_records(config: &EtcdConfig) -> etcd_client::GetResponse {
    let client = Client::connect(config.endpoint_urls(), None).await.unwrap();
    let mut prefix = config.namespace.clone();
    prefix.extend_from_slice(b"\0dlog/");
    client
        .kv_client()
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap()
}

/// Engines open from URLs; bad URLs and unreachable clusters fail with Open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_from_url() {
    let config = common::config();
    let url = format!(
        "etcd://{}/{}?max_request_bytes={}&max_txn_ops={}",
        config.endpoints.join(","),
        String::from_utf8_lossy(&config.namespace),
        config.max_request_bytes,
        config.max_txn_ops
    );
    let engine = tito_engine_etcd::open(&url).await.unwrap();
    assert_eq!(engine.kind(), "etcd");
    assert_eq!(engine.config(), &config);
    setup(&engine, &[("x", "y")]).await;
    assert!(matches!(
        EtcdEngine::open("etcd://").await,
        Err(EngineError::Open(_))
    ));
    let mut dead = EtcdConfig::new(vec!["127.0.0.1:1".into()], "x");
    dead.connect_timeout = std::time::Duration::from_millis(200);
    dead.request_timeout = std::time::Duration::from_millis(500);
    let started = std::time::Instant::now();
    assert!(matches!(
        EtcdEngine::with_config(dead).await,
        Err(EngineError::Open(_))
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// With a member's endpoint unreachable, commits are not failed for it: a commit that
/// could not be sent at all is sent again (through another endpoint), and applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_go_around_an_unreachable_endpoint() {
    let mut config = common::config();
    config.endpoints.insert(0, "127.0.0.1:1".into());
    config.connect_timeout = std::time::Duration::from_millis(200);
    let engine = common::engine_with(config).await;
    for i in 0u64..40 {
        let tx = engine.begin().await.unwrap();
        let cur = tx
            .get(b"n")
            .await
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
        assert_eq!(cur, i);
        tx.put(k("n"), (cur + 1).to_be_bytes().to_vec()).unwrap();
        tx.put_stamped(k("log/"), k("x")).unwrap();
        let info = tx.commit().await.expect("commit through a live endpoint");
        assert_eq!(info.stamp.map(|s| s.version), Some(i + 1));
    }
}
