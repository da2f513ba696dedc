//! The etcd-watch-rpo phase of `tito bench`, briefly (2 s at 100 puts/s) against the test
//! cluster (`TITO_TEST_ETCD_URL`, or target/etcd.env from `scripts/start-etcd.sh`): one
//! lag per write, lags ordered p50 ≤ p99 ≤ max, revisions consistent with the writes,
//! the target row from the max, and the prefix gone from the cluster afterwards. Without
//! a cluster the phase is skipped with a note. No timing is asserted.

mod common;
use common::{cluster_url, keys_left};

use tito_bench::checks::{all_numbers_sane, num, verdict_follows};
use tito_bench::{BenchOptions, Phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rpo_has_one_lag_per_write_and_leaves_nothing_on_the_cluster() {
    let (rate, secs) = (100, 2);
    let opts = BenchOptions {
        engine: Some(cluster_url()),
        phases: vec![Phase::EtcdWatchRpo],
        watch_rpo_rate: rate,
        rpo_secs: secs,
        rpo_interval_ms: 100,
        ..BenchOptions::tiny()
    };
    let report = tito_bench::run(opts).await.expect("etcd-watch-rpo run");
    assert!(report.etcd.is_none() && report.rpo.is_none() && report.skipped.is_empty());
    let w = report
        .etcd_watch_rpo
        .as_ref()
        .expect("etcd-watch-rpo figures");
    let r = serde_json::to_value(&report).expect("json");
    all_numbers_sane(&r, "");

    // The writers keep a fixed schedule: every put due in the run was made, and each one
    // got a lag.
    assert_eq!(w.writes, rate * secs, "{w:?}");
    assert_eq!(w.lags as u64, w.writes, "one lag per write: {w:?}");
    assert_eq!(num(&r, "etcd_watch_rpo.writes"), w.writes as f64);
    assert_eq!(w.target_rate, rate);
    assert_eq!((w.duration_secs, w.interval_ms), (secs, 100));
    assert!(
        w.achieved_rate > 0.0 && w.achieved_rate.is_finite(),
        "{w:?}"
    );

    // Lags are ordered, and the shipping that covered them is consistent with the writes.
    assert!(w.p50_ms <= w.p99_ms && w.p99_ms <= w.max_ms, "{w:?}");
    assert!(
        w.first_revision > 0 && w.last_revision >= w.first_revision + w.writes - 1,
        "each put is a revision of its own: {w:?}"
    );
    assert!(
        w.records_shipped > w.last_revision - w.first_revision,
        "every revision from the first write to the last was shipped: {w:?}"
    );
    assert!(w.segments >= 1 && w.polls >= 1, "{w:?}");
    assert!(
        w.prefix.starts_with("tito/tito-bench-watch-rpo-"),
        "{}",
        w.prefix
    );

    // The target, from the max.
    let name = format!("RPO ≤ 1 s at {rate} w/s (etcd watch)");
    assert_eq!(report.targets.len(), 1, "{:?}", report.targets);
    let t = &report.targets[0];
    assert_eq!(t.name, name);
    assert_eq!(t.measured, w.max_ms as f64);
    assert_eq!(
        (t.bound, t.at_least, t.unit.as_str()),
        (1000.0, false, "ms")
    );
    verdict_follows(t);

    let md = report.render_markdown();
    let table = report.render_table();
    eprintln!("{table}");
    for row in [
        "RPO lag, etcd watch backup (100 ms interval)",
        name.as_str(),
    ] {
        assert!(table.contains(row), "table lacks {row:?}:\n{table}");
        assert!(
            md.lines().any(|l| l.starts_with("| ") && l.contains(row)),
            "markdown lacks {row:?}:\n{md}"
        );
    }
    let shown = format!("p50 {} / p99 {} / max {} ms", w.p50_ms, w.p99_ms, w.max_ms);
    assert!(table.contains(&shown), "{table}");
    assert!(
        md.contains("--phases etcd-watch-rpo") && md.contains("--watch-rpo-rate 100"),
        "{md}"
    );

    // Nothing of the run is left on the shared cluster.
    let left = keys_left(&w.endpoints, &w.prefix).await;
    assert_eq!(left, 0, "keys left under {:?}", w.prefix);
}

#[tokio::test]
async fn without_a_cluster_the_phase_is_skipped_with_a_note() {
    let opts = BenchOptions {
        phases: vec![Phase::EtcdWatchRpo],
        store: Some("memory://".into()),
        ..BenchOptions::tiny()
    };
    let report = tito_bench::run(opts).await.expect("a run that skips");
    assert!(report.etcd_watch_rpo.is_none() && report.targets.is_empty());
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].phase, Phase::EtcdWatchRpo);
    let table = report.render_table();
    for needle in [
        "RPO ≤ 1 s at 100 w/s (etcd watch)",
        "SKIPPED",
        "no etcd cluster configured",
        "--db etcd://",
    ] {
        assert!(table.contains(needle), "{needle:?} not in:\n{table}");
    }
}
