//! A watched prefix of the shared test cluster, written by plain etcd clients (puts,
//! deletes, multi-key txns, range deletes, and writes outside the prefix) while
//! [`WatchBackup`] runs: restores to random revisions equal both `get --prefix --rev` of
//! the source and an oracle kept per revision.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::State;
use etcd_client::{Client, DeleteOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tito_catalog::Target;
use tito_etcd_watch::{WatchBackup, WatchConfig};
use tito_store::Store;
use tito_store::local::LocalStore;
use tokio::sync::watch;

/// The oracle's state at `rev`: after the last own write at or before it.
fn oracle_at(oracle: &BTreeMap<u64, State>, rev: u64) -> State {
    oracle
        .range(..=rev)
        .next_back()
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

fn key(prefix: &str, i: u32) -> Vec<u8> {
    format!("{prefix}k{i:02}").into_bytes()
}

/// One random write; returns its revision. `state` is updated as etcd applies it.
async fn write(
    client: &mut Client,
    rng: &mut StdRng,
    prefix: &str,
    other: &str,
    state: &mut State,
    n: u32,
) -> u64 {
    let value = |rng: &mut StdRng| format!("v{n}-{}", rng.random::<u16>()).into_bytes();
    let header_rev = match rng.random_range(0..100) {
        0..40 => {
            let (k, v) = (key(prefix, rng.random_range(0..30)), value(rng));
            let r = client.put(k.clone(), v.clone(), None).await.expect("put");
            state.insert(k, v);
            r.header().expect("header").revision()
        }
        40..55 => {
            let k = key(prefix, rng.random_range(0..30));
            let r = client.delete(k.clone(), None).await.expect("delete");
            state.remove(&k);
            r.header().expect("header").revision()
        }
        55..75 => {
            // One txn, several keys: one revision.
            let mut picked: Vec<u32> = (0..30).collect();
            let mut ops = Vec::new();
            for j in 0..4 {
                let i = picked.swap_remove(rng.random_range(0..picked.len()));
                let k = key(prefix, i);
                if j == 3 {
                    ops.push(TxnOp::delete(k.clone(), None));
                    state.remove(&k);
                } else {
                    let v = value(rng);
                    ops.push(TxnOp::put(k.clone(), v.clone(), None));
                    state.insert(k, v);
                }
            }
            let r = client.txn(Txn::new().and_then(ops)).await.expect("txn");
            r.header().expect("header").revision()
        }
        75..85 => {
            let a = rng.random_range(0..30);
            let b = (a + rng.random_range(1..8)).min(30);
            let (start, end) = (key(prefix, a), key(prefix, b));
            let r = client
                .delete(
                    start.clone(),
                    Some(DeleteOptions::new().with_range(end.clone())),
                )
                .await
                .expect("range delete");
            state.retain(|k, _| !(k >= &start && k < &end));
            r.header().expect("header").revision()
        }
        _ => {
            // Outside the prefix: an empty record in the backup.
            let r = client
                .put(format!("{other}x"), value(rng), None)
                .await
                .expect("put outside");
            r.header().expect("header").revision()
        }
    };
    header_rev as u64
}

/// One txn of six 1 MiB values: a revision (and a snapshot page) over the 4 MiB that
/// etcd-client decodes by default.
async fn big_txn(client: &mut Client, prefix: &str, state: &mut State, tag: &str) -> u64 {
    let mut ops = Vec::new();
    for i in 0..6 {
        let k = format!("{prefix}big{i}").into_bytes();
        let v = format!("{tag}{i}").repeat(1 << 20 >> 3).into_bytes();
        ops.push(TxnOp::put(k.clone(), v.clone(), None));
        state.insert(k, v);
    }
    let r = client.txn(Txn::new().and_then(ops)).await.expect("big txn");
    r.header().expect("header").revision() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_to_random_revisions_equal_the_source() {
    let seed: u64 = std::env::var("TITO_WATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (TITO_WATCH_SEED)");
    common::init_logging();
    let mut rng = StdRng::seed_from_u64(seed);
    let endpoints = common::shared_endpoints();
    let prefix = common::unique_prefix("oracle");
    let other = common::unique_prefix("other");
    let mut client = Client::connect(&endpoints, None).await.expect("connect");
    let mut state = State::new();
    let mut oracle: BTreeMap<u64, State> = BTreeMap::new();
    // Some keys before the backup starts: its snapshot holds them.
    for n in 0..20 {
        let rev = write(&mut client, &mut rng, &prefix, &other, &mut state, n).await;
        oracle.insert(rev, state.clone());
    }
    let rev = big_txn(&mut client, &prefix, &mut state, "before").await;
    oracle.insert(rev, state.clone());

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()).expect("store"));
    // Small pages: the snapshot reads its 30 keys in several range reads.
    let mut config = WatchConfig::new(endpoints.clone(), prefix.clone());
    config.page = 7;
    // Snapshots on a schedule too, taken while the watch and shipping go on: restores
    // then start from snapshots at many revisions.
    let backup_config = tito_backup::BackupConfig {
        snapshot_every: Some(Duration::from_millis(250)),
        ..common::small_config()
    };
    let backup = Arc::new(
        WatchBackup::open(config, store.clone(), backup_config)
            .await
            .expect("open"),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = tokio::spawn({
        let backup = backup.clone();
        async move { backup.run_continuous(stop_rx).await }
    });
    // Writes while the backup runs.
    let mut last = 0;
    for n in 20..220 {
        last = write(&mut client, &mut rng, &prefix, &other, &mut state, n).await;
        oracle.insert(last, state.clone());
        if n % 37 == 0 {
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        if n == 100 {
            last = big_txn(&mut client, &prefix, &mut state, "during").await;
            oracle.insert(last, state.clone());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while backup.shipper().shipped() < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "shipped only through {} of {last}",
            backup.shipper().shipped()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).expect("stop");
    running.await.expect("task").expect("backup");

    let snap = backup.snapshots()[0].lsn;
    assert!(
        backup.snapshots().len() > 1,
        "no scheduled snapshot: {:?}",
        backup.snapshots()
    );
    assert!(backup.gaps().is_empty(), "{:?}", backup.gaps());
    let repo = tito_backup::Repository::open(store.clone())
        .await
        .expect("repo");
    let catalog = repo.catalog().await.expect("catalog");
    let tl = &catalog.timelines[&1];
    assert!(tl.gaps.is_empty(), "gaps {:?}", tl.gaps);

    let mut revs = vec![snap, last];
    for _ in 0..8 {
        revs.push(rng.random_range(snap..=last));
    }
    for rev in revs {
        let restored = common::restore_state(&store, Target::Lsn(rev))
            .await
            .unwrap_or_else(|e| panic!("restore rev:{rev}: {e}"));
        let source = common::source_at(&mut client, &prefix, rev).await;
        assert_eq!(
            restored, source,
            "rev {rev}: restore differs from get --prefix --rev"
        );
        assert_eq!(
            restored,
            oracle_at(&oracle, rev),
            "rev {rev}: restore differs from the oracle"
        );
    }
    let latest = common::restore_state(&store, Target::Latest)
        .await
        .expect("latest");
    assert_eq!(common::text(&latest), common::text(&state));
}

/// Two backups of one prefix into one store: the one started later claims the timeline
/// and the earlier one stops with an error at its next segment, instead of shipping beside
/// it; what the store holds still restores to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_watcher_fences_the_first() {
    common::init_logging();
    let endpoints = common::shared_endpoints();
    let prefix = common::unique_prefix("fence");
    let mut client = Client::connect(&endpoints, None).await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()).expect("store"));
    let open = || async {
        Arc::new(
            WatchBackup::open(
                WatchConfig::new(endpoints.clone(), prefix.clone()),
                store.clone(),
                common::small_config(),
            )
            .await
            .expect("open"),
        )
    };
    let first = open().await;
    let (stop_first, stop_rx) = watch::channel(false);
    let running_first = tokio::spawn({
        let b = first.clone();
        async move { b.run_continuous(stop_rx).await }
    });
    let mut last = 0;
    for i in 0..10 {
        let r = client
            .put(format!("{prefix}a{i}"), "1", None)
            .await
            .expect("put");
        last = r.header().expect("header").revision() as u64;
    }
    while first.shipper().shipped() < last {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = open().await;
    let (stop_second, stop_rx) = watch::channel(false);
    let running_second = tokio::spawn({
        let b = second.clone();
        async move { b.run_continuous(stop_rx).await }
    });
    for i in 0..10 {
        let r = client
            .put(format!("{prefix}b{i}"), "2", None)
            .await
            .expect("put");
        last = r.header().expect("header").revision() as u64;
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), running_first)
        .await
        .expect("the first backup did not stop")
        .expect("task");
    let err = ended.expect_err("the first backup went on beside the second");
    assert!(err.to_string().contains("claimed the timeline"), "{err}");
    while second.shipper().shipped() < last {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_first.send(true);
    stop_second.send(true).expect("stop");
    running_second.await.expect("task").expect("second backup");
    let restored = common::restore_state(&store, Target::Lsn(last))
        .await
        .expect("restore");
    let source = common::source_at(&mut client, &prefix, last).await;
    assert_eq!(common::text(&restored), common::text(&source));
}
