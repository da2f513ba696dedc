//! Log replay in many transactions: random histories are restored to random LSNs with tiny
//! replay batches (so decoding and applying overlap across many batches and segments), into
//! an engine that refuses some commits with a conflict or as too large. A refused
//! transaction is rebuilt from the segments (its records were moved into the first
//! attempt), so every restore must still equal the state after exactly its target commit.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use common::{Fixture, State, state_of};
use proptest::prelude::*;
use tito_backup::Repository;
use tito_catalog::Target;
use tito_engine::memory::MemoryEngine;
use tito_engine::{
    BoxView, CommitInfo, Engine, EngineError, KeyRange, KeyValue, Result, Transaction, Tx,
};
use tito_restore::{NoProgress, RestoreOptions, restore};

/// Refuses every `conflict_every`-th commit with a conflict, and any commit of more than
/// `max_writes` writes as too large (nothing is written in either case).
struct Flaky {
    inner: Arc<dyn Engine>,
    commits: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    conflict_every: u64,
    max_writes: u64,
}

struct FlakyTx {
    inner: Tx,
    writes: AtomicU64,
    engine: (Arc<AtomicU64>, Arc<AtomicU64>, u64, u64),
}

#[async_trait]
impl Engine for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    async fn begin(&self) -> Result<Tx> {
        Ok(Arc::new(FlakyTx {
            inner: self.inner.begin().await?,
            writes: AtomicU64::new(0),
            engine: (
                self.commits.clone(),
                self.refused.clone(),
                self.conflict_every,
                self.max_writes,
            ),
        }))
    }
    async fn read_view(&self) -> Result<BoxView> {
        self.inner.read_view().await
    }
    async fn advance_version(&self, at_least: u64) -> Result<()> {
        self.inner.advance_version(at_least).await
    }
    async fn reset_version(&self, version: u64) -> Result<()> {
        self.inner.reset_version(version).await
    }
}

#[async_trait]
impl Transaction for FlakyTx {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.inner.scan(range, limit).await
    }
    async fn scan_reverse(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.inner.scan_reverse(range, limit).await
    }
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put(key, value)
    }
    fn delete(&self, key: Vec<u8>) -> Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key)
    }
    fn delete_range(&self, range: &KeyRange) -> Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_range(range)
    }
    fn put_stamped(&self, prefix: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.inner.put_stamped(prefix, value)
    }
    async fn commit(&self) -> Result<CommitInfo> {
        let (commits, refused, every, max) = &self.engine;
        let n = commits.fetch_add(1, Ordering::Relaxed) + 1;
        let refuse = if self.writes.load(Ordering::Relaxed) > *max {
            Some(EngineError::TooLarge(
                "more writes than the test allows".into(),
            ))
        } else if n % every == 0 {
            Some(EngineError::Conflict("injected by the test".into()))
        } else {
            None
        };
        match refuse {
            Some(e) => {
                refused.fetch_add(1, Ordering::Relaxed);
                self.inner.rollback().await?;
                Err(e)
            }
            None => self.inner.commit().await,
        }
    }
    async fn rollback(&self) -> Result<()> {
        self.inner.rollback().await
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, usize),
    Del(u8),
    DelRange(u8, u8),
}

fn key(k: u8) -> Vec<u8> {
    format!("k{:02}", k % 24).into_bytes()
}

fn txn() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            6 => (any::<u8>(), 0..300usize).prop_map(|(k, n)| Op::Put(k, n)),
            2 => any::<u8>().prop_map(Op::Del),
            1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::DelRange(a, b)),
        ],
        1..4,
    )
}

/// Commit `ops` on the fixture; returns its LSN.
async fn commit(f: &Fixture, ops: &[Op], n: usize) -> u64 {
    let (_, lsn) =
        f.db.transaction_lsn(|txn| {
            let ops = ops.to_vec();
            async move {
                for op in ops {
                    match op {
                        Op::Put(k, len) => txn.put(key(k), vec![n as u8; len])?,
                        Op::Del(k) => txn.delete(key(k))?,
                        Op::DelRange(a, b) => {
                            let (a, b) = (key(a.min(b)), key(a.max(b)));
                            txn.delete_range(&KeyRange::new(a, b))?
                        }
                    }
                }
                Ok::<_, tito_capture::CaptureError>(())
            }
        })
        .await
        .expect("commit");
    lsn.expect("a writing transaction has an LSN")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replay_in_small_batches_equals_the_oracle(
        txns in proptest::collection::vec((txn(), proptest::bool::weighted(0.2)), 1..50),
        batch_bytes in 1usize..3000,
        conflict_every in 2u64..9,
        max_writes in 3u64..12,
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let f = Fixture::new().await;
            // The oracle: the backed-up keyspace after each LSN.
            let mut oracle: BTreeMap<u64, State> = BTreeMap::new();
            oracle.insert(0, State::new());
            for (n, (ops, ship)) in txns.iter().enumerate() {
                let lsn = commit(&f, ops, n).await;
                oracle.insert(lsn, state_of(f.engine.as_ref()).await);
                if *ship {
                    f.service.ship_log().await.expect("ship");
                }
            }
            f.service.ship_log().await.expect("ship");
            let repo = Repository::open(f.store.clone()).await.expect("repository");
            let lsns: Vec<u64> = oracle.keys().copied().filter(|l| *l > 0).collect();
            for pick in &picks {
                let lsn = lsns[pick.index(lsns.len())];
                let target = if lsn == *lsns.last().unwrap() { Target::Latest } else { Target::Lsn(lsn) };
                let flaky = Arc::new(Flaky {
                    inner: Arc::new(MemoryEngine::new()),
                    commits: Arc::default(),
                    refused: Arc::default(),
                    conflict_every,
                    max_writes,
                });
                let mut opts = RestoreOptions::new(target.clone());
                opts.overlay_bytes = 0; // this file tests replay into the engine
                opts.batch_bytes = batch_bytes;
                let result = restore(&repo, flaky.clone(), &opts, &NoProgress).await;
                let result = match result {
                    Ok(r) => r,
                    Err(e) => panic!("restore to {target:?} failed: {e}"),
                };
                prop_assert_eq!(result.records_replayed, lsn);
                prop_assert_eq!(&state_of(flaky.inner.as_ref()).await, &oracle[&lsn], "target {:?}", target);
            }
            Ok(())
        })?;
    }
}

/// The batches of the test above do get refused and rebuilt (else it would prove little).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_rebuilt() {
    let f = Fixture::new().await;
    for n in 0..40 {
        commit(&f, &[Op::Put(n as u8, 50), Op::Put(n as u8 + 1, 10)], n).await;
    }
    f.service.ship_log().await.expect("ship");
    let want = state_of(f.engine.as_ref()).await;
    let repo = Repository::open(f.store.clone()).await.expect("repository");
    let flaky = Arc::new(Flaky {
        inner: Arc::new(MemoryEngine::new()),
        commits: Arc::default(),
        refused: Arc::default(),
        conflict_every: 3,
        max_writes: 7,
    });
    let mut opts = RestoreOptions::new(Target::Latest);
    opts.overlay_bytes = 0; // this file tests replay into the engine
    opts.batch_bytes = 600;
    let result = restore(&repo, flaky.clone(), &opts, &NoProgress)
        .await
        .expect("restore");
    assert_eq!(result.records_replayed, 40);
    assert!(
        flaky.refused.load(Ordering::Relaxed) > 5,
        "commits were refused"
    );
    assert_eq!(state_of(flaky.inner.as_ref()).await, want);
}

/// Large segments with many writes of few keys: each key's writes must keep log order
/// through the sort of a segment's writes, and through cuts between batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_segments_keep_log_order_per_key() {
    let config = tito_backup::BackupConfig {
        segment_max_records: 1000,
        segment_max_bytes: 1 << 20,
        ..common::small_config()
    };
    let f = Fixture::with(
        Arc::new(MemoryEngine::new()),
        Arc::new(tito_store::memory::MemoryStore::new()),
        config,
    )
    .await;
    let mut oracle = BTreeMap::new();
    for n in 0..1500usize {
        let lsn = commit(&f, &[Op::Put((n % 5) as u8, n % 97 + 1)], n).await;
        if n % 250 == 17 {
            oracle.insert(lsn, state_of(f.engine.as_ref()).await);
        }
    }
    oracle.insert(1500, state_of(f.engine.as_ref()).await);
    f.service.ship_log().await.expect("ship");
    let repo = Repository::open(f.store.clone()).await.expect("repository");
    for (lsn, want) in &oracle {
        for batch_bytes in [700, 64 << 20] {
            let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
            let mut opts = RestoreOptions::new(Target::Lsn(*lsn));
            opts.overlay_bytes = 0; // this file tests replay into the engine
            opts.batch_bytes = batch_bytes;
            let r = restore(&repo, engine.clone(), &opts, &NoProgress)
                .await
                .expect("restore");
            assert_eq!(r.records_replayed, *lsn);
            assert_eq!(
                &state_of(engine.as_ref()).await,
                want,
                "lsn {lsn}, batch {batch_bytes}"
            );
        }
    }
}
