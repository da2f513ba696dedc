//! The peers phase at a few thousand keys, when the peers' tools are installed
//! (`scripts/install-peers.sh`): every figure present and consistent with the others.
//! Without them the test says so and passes, unless `TITO_REQUIRE_PEERS=1` (CI sets it
//! after installing them), where their absence fails it.

use tito_bench::peers::continuous::{ContinuousFigures, LagRatios, WriteRun};
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
        check_continuous(&l.continuous, &report.options, &table);
        assert!(json["peers"]["litestream"]["continuous"]["throughput"]["ratio"].is_number());
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

/// The continuous rows: every run wrote, the ratios are what they say, both lags were
/// measured at the same rate, duration and interval, and every row is in the table.
fn check_continuous(c: &ContinuousFigures, opts: &BenchOptions, table: &str) {
    let t = &c.throughput;
    for run in [
        t.redb_alone,
        t.tito_backup,
        t.sqlite_alone,
        t.sqlite_litestream,
    ] {
        let WriteRun {
            commits,
            secs,
            tx_per_s,
        } = run;
        assert!(commits > 0 && secs >= opts.rpo_secs as f64, "{run:?}");
        assert_eq!(tx_per_s, commits as f64 / secs);
    }
    assert_eq!(
        t.ratio,
        t.tito_backup.tx_per_s / t.sqlite_litestream.tx_per_s
    );
    let (tl, ll) = (&c.tito_lag, &c.litestream_lag);
    assert_eq!(
        (tl.target_rate, ll.target_rate),
        (opts.rpo_rate, opts.rpo_rate)
    );
    assert_eq!(
        (tl.duration_secs, ll.duration_secs),
        (opts.rpo_secs, opts.rpo_secs)
    );
    assert_eq!(
        (tl.interval_ms, ll.interval_ms),
        (opts.rpo_interval_ms, opts.rpo_interval_ms)
    );
    assert!(
        ll.commits > 0 && ll.samples > 0 && ll.restores > 0,
        "{ll:?}"
    );
    assert!(ll.p50_ms <= ll.p99_ms && ll.p99_ms <= ll.max_ms, "{ll:?}");
    assert!(tl.commits > 0 && tl.samples > 0, "{tl:?}");
    assert_eq!(c.lag_ratios, LagRatios::of(tl, ll));
    for row in [
        "Litestream write throughput (backup running)",
        "Tito write throughput (backup running)",
        "Litestream RPO lag at",
        "Tito RPO lag at",
    ] {
        assert!(table.contains(row), "no {row:?} row in\n{table}");
    }
}
