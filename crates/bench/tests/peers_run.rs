//! The peers phase at a few thousand keys, when the peers' tools are installed
//! (`scripts/install-peers.sh`): every figure present and consistent with the others.
//! Without them the test says so and passes, unless `TITO_REQUIRE_PEERS=1` (CI sets it
//! after installing them), where their absence fails it.

use tito_bench::peers::{self, Ratios};
use tito_bench::{BenchOptions, Phase};

const KEYS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_figures_are_consistent() {
    let required = std::env::var("TITO_REQUIRE_PEERS").as_deref() == Ok("1");
    let mut present = 0;
    for (peer, missing) in [
        ("litestream", peers::litestream::missing()),
        ("pgbackrest", peers::pgbackrest::missing()),
    ] {
        match missing {
            Some(reason) if required => {
                panic!("TITO_REQUIRE_PEERS=1 but {peer} cannot run: {reason}")
            }
            Some(reason) => eprintln!("SKIPPED: {peer} peer not installed: {reason}"),
            None => present += 1,
        }
    }
    if present == 0 {
        return;
    }
    let opts = BenchOptions {
        keys: KEYS,
        phases: vec![Phase::Peers],
        ..BenchOptions::tiny()
    };
    let report = tito_bench::run(opts).await.expect("bench run");
    let s = report.snapshot.as_ref().expect("Tito's side is measured");
    let p = report.peers.as_ref().expect("peers figures");
    assert_eq!(p.skipped.len(), 2 - present, "{:?}", p.skipped);
    let table = report.render_table();
    let json = serde_json::to_value(&report).expect("json");

    // Tito's side is the snapshot measurement itself.
    assert_eq!(p.tito.snapshot_secs, s.snapshot.secs);
    assert_eq!(p.tito.restore_secs, s.restore.secs);
    assert_eq!(p.tito.snapshot_bytes, s.snapshot_bytes);
    assert_eq!(s.restore.pairs, KEYS);
    if let Some(l) = &p.litestream {
        assert_eq!(l.restored_rows, KEYS, "restored row count");
        assert_eq!(l.restored_bytes, report.dataset.raw_bytes);
        assert_eq!((l.backup.pairs, l.restore.pairs), (KEYS, KEYS));
        assert!(l.replica_bytes > 0 && l.db_bytes > 0 && p.tito.snapshot_bytes > 0);
        assert!(l.backup.secs > 0.0 && l.restore.secs > 0.0);
        assert!(!l.version.is_empty() && !l.sqlite_version.is_empty());

        check_ratios(
            &p.tito,
            &l.ratios,
            l.backup.secs,
            l.restore.secs,
            l.replica_bytes,
        );
        for row in [
            "Litestream full backup time",
            "Tito full backup time (same rows)",
            "Litestream restore time",
            "Tito restore time (same rows)",
            "Litestream bytes in the replica",
            "Tito snapshot bytes (same rows)",
        ] {
            assert!(table.contains(row), "no {row:?} row in\n{table}");
        }
        assert_eq!(json["peers"]["litestream"]["restored_rows"], KEYS);
    }
    if let Some(g) = &p.pgbackrest {
        assert_eq!(g.restored_rows, KEYS, "restored row count");
        assert_eq!(g.restored_bytes, report.dataset.raw_bytes);
        assert_eq!((g.backup.pairs, g.restore.pairs), (KEYS, KEYS));
        assert!(g.repo_bytes > 0 && g.process_max >= 1);
        assert!(g.restore_files_secs > 0.0 && g.restore_files_secs <= g.restore.secs);
        check_ratios(
            &p.tito,
            &g.ratios,
            g.backup.secs,
            g.restore.secs,
            g.repo_bytes,
        );
        for row in [
            "pgBackRest full backup time",
            "pgBackRest restore time",
            "pgBackRest bytes in the repository",
        ] {
            assert!(table.contains(row), "no {row:?} row in\n{table}");
        }
        assert_eq!(json["peers"]["pgbackrest"]["restored_rows"], KEYS);
    }
}

/// Each ratio is Tito's figure divided by the peer's.
fn check_ratios(t: &peers::TitoSide, r: &Ratios, backup: f64, restore: f64, bytes: u64) {
    assert_eq!(*r, Ratios::of(t, backup, restore, bytes));
    assert!(backup > 0.0 && restore > 0.0 && bytes > 0 && t.snapshot_bytes > 0);
    assert_eq!(r.backup_time, t.snapshot_secs / backup);
    assert_eq!(r.restore_time, t.restore_secs / restore);
    assert_eq!(r.bytes, t.snapshot_bytes as f64 / bytes as f64);
}
