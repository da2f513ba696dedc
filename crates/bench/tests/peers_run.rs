//! The peers phase at a few thousand keys, when the peers' tools are installed
//! (`scripts/install-peers.sh`): every figure present and consistent with the others.
//! Without them the test says so and passes, unless `TITO_REQUIRE_PEERS=1` (CI sets it
//! after installing them), where their absence fails it.

use tito_bench::peers::{self, Ratios};
use tito_bench::{BenchOptions, Phase};

const KEYS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litestream_figures_are_consistent() {
    if let Some(reason) = peers::litestream::missing() {
        assert!(
            std::env::var("TITO_REQUIRE_PEERS").as_deref() != Ok("1"),
            "TITO_REQUIRE_PEERS=1 but litestream cannot run: {reason}"
        );
        eprintln!("SKIPPED: litestream peer not installed: {reason}");
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
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    let l = p.litestream.as_ref().expect("litestream figures");

    // Tito's side is the snapshot measurement itself.
    assert_eq!(p.tito.snapshot_secs, s.snapshot.secs);
    assert_eq!(p.tito.restore_secs, s.restore.secs);
    assert_eq!(p.tito.snapshot_bytes, s.snapshot_bytes);
    assert_eq!(s.restore.pairs, KEYS);

    assert_eq!(l.restored_rows, KEYS, "restored row count");
    assert_eq!(l.restored_bytes, report.dataset.raw_bytes);
    assert_eq!((l.backup.pairs, l.restore.pairs), (KEYS, KEYS));
    assert!(l.replica_bytes > 0 && l.db_bytes > 0 && p.tito.snapshot_bytes > 0);
    assert!(l.backup.secs > 0.0 && l.restore.secs > 0.0);
    assert!(!l.version.is_empty() && !l.sqlite_version.is_empty());

    let r = &l.ratios;
    assert_eq!(
        *r,
        Ratios::of(&p.tito, l.backup.secs, l.restore.secs, l.replica_bytes)
    );
    assert_eq!(r.backup_time, p.tito.snapshot_secs / l.backup.secs);
    assert_eq!(r.restore_time, p.tito.restore_secs / l.restore.secs);
    assert_eq!(
        r.bytes,
        p.tito.snapshot_bytes as f64 / l.replica_bytes as f64
    );

    let table = report.render_table();
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
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["peers"]["litestream"]["restored_rows"], KEYS);
}
