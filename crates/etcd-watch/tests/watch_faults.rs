//! Faults on a private 3-member cluster (its own ports and data, so killing members and
//! compacting never disturbs other tests):
//!
//! - `survives_killing_the_member_it_watches`: kill -9 the member the watch reads from
//!   and restart it while writers go on: the backup resumes on another endpoint from the
//!   last revision it received, and restores equal the source at every revision tried.
//! - `compaction_past_the_watch_is_a_gap_closed_by_a_snapshot`: a backup restarted after
//!   the cluster compacted past its position reports a gap (in its result and in the
//!   catalog), takes a new snapshot at once, and restores after it equal the source.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::PrivateCluster;
use etcd_client::{Client, CompactionOptions, ConnectOptions};
use tito_catalog::Target;
use tito_etcd_watch::{Gap, WatchBackup, WatchConfig};
use tito_store::Store;
use tito_store::local::LocalStore;
use tokio::sync::watch;

/// A base port for a private cluster: clients on base+10, +20, +30, peers on the next.
fn base_port(slot: u16) -> u16 {
    26000 + 100 * slot + 40 * (rand::random::<u16>() % 2)
}

async fn client(endpoints: &[String]) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    Client::connect(endpoints, Some(opts))
        .await
        .expect("connect")
}

/// Put `key` until etcd acknowledges it (a failed attempt may have applied: the tests
/// compare with the source, not with what the writer believes).
async fn put_retrying(
    endpoints: &[String],
    client: &mut Client,
    key: String,
    value: String,
) -> u64 {
    for _ in 0..100 {
        match client.put(key.clone(), value.clone(), None).await {
            Ok(r) => return r.header().expect("header").revision() as u64,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                *client = self::client(endpoints).await;
            }
        }
    }
    panic!("no write acknowledged in 100 attempts");
}

/// The member that leads the private cluster now.
async fn leader(cluster: &PrivateCluster) -> usize {
    for _ in 0..100 {
        for n in 0..3 {
            let Ok(mut c) = Client::connect([cluster.endpoint(n)], None).await else {
                continue;
            };
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), c.status()).await {
                if s.leader() != 0 && s.header().is_some_and(|h| h.member_id() == s.leader()) {
                    return n;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader");
}

async fn current_revision(client: &mut Client) -> u64 {
    client
        .get("x", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision() as u64
}

async fn wait_shipped(backup: &WatchBackup, rev: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while backup.shipper().shipped() < rev {
        assert!(
            tokio::time::Instant::now() < deadline,
            "shipped only through {} of {rev}",
            backup.shipper().shipped()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(
    backup: &Arc<WatchBackup>,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), tito_etcd_watch::WatchError>>,
) {
    let (tx, rx) = watch::channel(false);
    let b = backup.clone();
    (tx, tokio::spawn(async move { b.run_continuous(rx).await }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_killing_the_member_it_watches() {
    common::init_logging();
    let mut cluster = PrivateCluster::start(base_port(0)).await;
    let endpoints = cluster.endpoints();
    let prefix = "app/".to_string();
    let mut c = client(&endpoints).await;
    for i in 0..10 {
        put_retrying(&endpoints, &mut c, format!("{prefix}k{i}"), format!("v{i}")).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()).expect("store"));
    let backup = Arc::new(
        WatchBackup::open(
            WatchConfig::new(endpoints.clone(), prefix.clone()),
            store.clone(),
            common::small_config(),
        )
        .await
        .expect("open"),
    );
    let (stop, running) = start(&backup);
    let mut last = 0;
    for i in 0..40 {
        last = put_retrying(
            &endpoints,
            &mut c,
            format!("{prefix}k{}", i % 13),
            format!("a{i}"),
        )
        .await;
    }
    wait_shipped(&backup, last).await;
    let watched = backup.endpoint();
    let member = cluster.member_of(&watched);
    cluster.kill(member);
    let mut revs = vec![last];
    for i in 0..60 {
        last = put_retrying(
            &endpoints,
            &mut c,
            format!("{prefix}k{}", i % 17),
            format!("b{i}"),
        )
        .await;
        if i == 30 {
            revs.push(last);
            cluster.start_member(member);
        }
    }
    cluster.wait_healthy().await;
    for i in 0..20 {
        last = put_retrying(
            &endpoints,
            &mut c,
            format!("{prefix}k{}", i % 5),
            format!("c{i}"),
        )
        .await;
    }
    wait_shipped(&backup, last).await;
    assert_ne!(
        backup.endpoint(),
        watched,
        "the watch did not move to another endpoint"
    );
    // Then the leader: a leader change under the watch and the writers.
    let leading = leader(&cluster).await;
    cluster.kill(leading);
    for i in 0..40 {
        last = put_retrying(
            &endpoints,
            &mut c,
            format!("{prefix}k{}", i % 9),
            format!("d{i}"),
        )
        .await;
        if i == 20 {
            cluster.start_member(leading);
        }
    }
    cluster.wait_healthy().await;
    wait_shipped(&backup, last).await;
    stop.send(true).expect("stop");
    running.await.expect("task").expect("backup");
    assert!(backup.gaps().is_empty(), "{:?}", backup.gaps());

    // Every revision from the snapshot on, around both failures included.
    let first = backup.snapshots()[0].lsn;
    assert!(revs.iter().all(|r| *r >= first));
    for rev in first..=last {
        let restored = common::restore_state(&store, Target::Lsn(rev))
            .await
            .unwrap_or_else(|e| panic!("restore rev:{rev}: {e}"));
        let source = common::source_at(&mut c, &prefix, rev).await;
        assert_eq!(common::text(&restored), common::text(&source), "rev {rev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_past_the_watch_is_a_gap_closed_by_a_snapshot() {
    common::init_logging();
    let cluster = PrivateCluster::start(base_port(1)).await;
    let endpoints = cluster.endpoints();
    let prefix = "reg/".to_string();
    let mut c = client(&endpoints).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()).expect("store"));
    let config = WatchConfig::new(endpoints.clone(), prefix.clone());

    // A first backup ships through `shipped`.
    let first = Arc::new(
        WatchBackup::open(config.clone(), store.clone(), common::small_config())
            .await
            .expect("open"),
    );
    let (stop, running) = start(&first);
    let mut last = 0;
    for i in 0..30 {
        last = put_retrying(
            &endpoints,
            &mut c,
            format!("{prefix}k{}", i % 7),
            format!("a{i}"),
        )
        .await;
    }
    wait_shipped(&first, last).await;
    stop.send(true).expect("stop");
    running.await.expect("task").expect("backup");
    let shipped = first.shipper().shipped();
    let before = common::source_at(&mut c, &prefix, shipped).await;

    // While no backup runs, the cluster writes on and compacts past the backup's position.
    for i in 0..30 {
        last = put_retrying(
            &endpoints,
            &mut c,
            format!("{prefix}k{}", i % 11),
            format!("b{i}"),
        )
        .await;
    }
    let compacted = last;
    c.compact(last as i64, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");

    // The next backup cannot watch from `shipped + 1`: a gap, then a new snapshot.
    let second = Arc::new(
        WatchBackup::open(config, store.clone(), common::small_config())
            .await
            .expect("open"),
    );
    let (stop, running) = start(&second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while second.gaps().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no gap reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..20 {
        last = put_retrying(
            &endpoints,
            &mut c,
            format!("{prefix}k{}", i % 3),
            format!("c{i}"),
        )
        .await;
    }
    wait_shipped(&second, last).await;
    stop.send(true).expect("stop");
    running.await.expect("task").expect("backup");

    let gaps = second.gaps();
    let snap = second.snapshots()[0].lsn;
    assert!(
        snap >= compacted,
        "snapshot at {snap}, before the compaction at {compacted}"
    );
    assert!(snap <= current_revision(&mut c).await);
    assert_eq!(
        gaps,
        vec![Gap {
            from: shipped + 1,
            to: snap
        }]
    );
    let repo = tito_backup::Repository::open(store.clone())
        .await
        .expect("repo");
    let catalog = repo.catalog().await.expect("catalog");
    assert_eq!(catalog.timelines[&1].gaps, vec![(shipped + 1, snap)]);

    // Before the gap: the old coverage; inside it: refused; from the snapshot on: exact.
    assert_eq!(
        common::text(
            &common::restore_state(&store, Target::Lsn(shipped))
                .await
                .expect("before the gap")
        ),
        common::text(&before)
    );
    assert!(
        common::restore_state(&store, Target::Lsn(shipped + 1))
            .await
            .is_err()
    );
    for rev in [snap, (snap + last) / 2, last] {
        let restored = common::restore_state(&store, Target::Lsn(rev))
            .await
            .unwrap_or_else(|e| panic!("restore rev:{rev}: {e}"));
        let source = common::source_at(&mut c, &prefix, rev).await;
        assert_eq!(common::text(&restored), common::text(&source), "rev {rev}");
    }
}
