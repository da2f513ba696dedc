//! The etcd phase of `tito bench` at a tiny size against the test cluster
//! (`scripts/start-etcd.sh`, which writes target/etcd.env; or `TITO_TEST_ETCD_URL`):
//! every figure is finite and positive, each rate and ratio agrees with the figures it is
//! computed from, the targets follow from the ratios, and the run's namespaces are gone
//! from the cluster afterwards. No timing is asserted.

mod common;
use common::{cluster_url, keys_left};

use tito_bench::checks::{all_numbers_sane, close, num, timed, verdict_follows};
use tito_bench::etcd::SIDE_BY_SIDE_ROUNDS;
use tito_bench::etcd_private::PRIVATE_MEMBERS;
use tito_bench::report::ETCD_SNAPSHOT_TARGET;
use tito_bench::{BenchError, BenchOptions, BenchReport, Phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_phase_measures_tito_next_to_etcdctl_and_leaves_nothing_on_the_cluster() {
    let url = cluster_url();
    let opts = BenchOptions {
        engine: Some(url.clone()),
        store: Some("memory://".into()),
        phases: vec![Phase::Etcd],
        ..BenchOptions::tiny()
    };
    let keys = opts.etcd_keys;
    let report = tito_bench::run(opts).await.expect("etcd bench run");
    check_report(&report, keys);
    let e = report.etcd.as_ref().expect("etcd figures");

    // A shared cluster is left as it is unless --etcd-compact says otherwise.
    assert!(!e.private);
    assert_eq!(e.member_db.compacted_to, None);
    assert!(!e.member_db.defragmented);
    let table = report.render_table();
    assert!(table.contains("not compacted nor defragmented"), "{table}");

    // Nothing of the run is left on the shared cluster.
    assert!(
        e.namespace.starts_with("tito/tito-bench-"),
        "{}",
        e.namespace
    );
    let left = keys_left(&e.endpoints, &e.namespace).await;
    assert_eq!(left, 0, "keys left under {:?}", e.namespace);
}

/// `--etcd-private`: the phase measures a cluster of its own, never the URL's endpoints
/// (here a port nothing listens on), compacts and defragments it before the side-by-side,
/// and stops every member before returning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_etcd_phase_runs_on_its_own_maintained_cluster_and_stops_it() {
    let opts = BenchOptions {
        engine: Some("etcd://127.0.0.1:1/tito?max_request_bytes=8388608&max_txn_ops=4096".into()),
        store: Some("memory://".into()),
        phases: vec![Phase::Etcd],
        etcd_private: true,
        ..BenchOptions::tiny()
    };
    let keys = opts.etcd_keys;
    let report = tito_bench::run(opts).await.expect("private etcd bench run");
    check_report(&report, keys);
    let e = report.etcd.as_ref().expect("etcd figures");
    assert!(e.private);
    assert_eq!(e.endpoints.len(), PRIVATE_MEMBERS);
    assert!(
        !e.endpoints.iter().any(|h| h == "127.0.0.1:1"),
        "{:?}",
        e.endpoints
    );
    assert_eq!(e.member, e.endpoints[0]);
    let db = &e.member_db;
    // Compacted at or past the revision of the last bulk-load txn.
    let load_txns = keys.div_ceil(e.load_batch_pairs) as i64;
    assert!(db.compacted_to.is_some_and(|r| r > load_txns), "{db:?}");
    assert!(db.defragmented, "{db:?}");
    assert!(db.before_bytes > 0 && db.after_bytes > 0, "{db:?}");
    let table = report.render_table();
    assert!(table.contains("every member defragmented"), "{table}");
    assert!(report.render_markdown().contains("--etcd-private"));
    // Every member was stopped: nothing listens on its client port any more.
    for endpoint in &e.endpoints {
        assert!(
            std::net::TcpStream::connect(endpoint.as_str()).is_err(),
            "a member still listens on {endpoint}"
        );
    }
}

/// The checks both clusters share: every figure consistent with the ones it is computed
/// from, and the targets following from the ratios.
fn check_report(report: &BenchReport, keys: u64) {
    assert_eq!(report.dataset.engine, "etcd");
    assert_eq!(
        report.dataset.keys, keys,
        "the etcd dataset has --etcd-keys keys"
    );
    assert!(report.snapshot.is_none() && report.capture.is_none() && report.limits.is_none());
    let e = report.etcd.as_ref().expect("etcd figures");

    let r = serde_json::to_value(report).expect("json");
    all_numbers_sane(&r, "");
    let raw = num(&r, "dataset.raw_bytes");
    for (path, pairs) in [
        ("etcd.bulk_load", keys as f64),
        ("etcd.snapshot", keys as f64),
        ("etcd.restore", keys as f64),
    ] {
        timed(&r, path);
        assert_eq!(num(&r, &format!("{path}.pairs")), pairs, "{path}");
        assert_eq!(num(&r, &format!("{path}.bytes")), raw, "{path}");
    }
    let bulk = num(&r, "etcd.bulk_load.mib_per_s");
    let snap = num(&r, "etcd.snapshot.mib_per_s");
    let restore = num(&r, "etcd.restore.mib_per_s");
    assert!(num(&r, "etcd.snapshot_bytes") > 0.0 && num(&r, "etcd.chunks") >= 1.0);
    assert!(num(&r, "etcd.load_batch_pairs") >= 1.0);

    // etcdctl saved the whole member database: at least the dataset, in one file that
    // its restore then read.
    let save = timed(&r, "etcd.etcdctl_save.timed").1;
    let file_bytes = num(&r, "etcd.etcdctl_save.timed.bytes");
    assert!(num(&r, "etcd.etcdctl_save.timed.pairs") >= keys as f64);
    assert_eq!(num(&r, "etcd.etcdctl_save.written_bytes"), file_bytes);
    let etcd_restore = timed(&r, "etcd.etcdctl_restore.timed").1;
    assert_eq!(num(&r, "etcd.etcdctl_restore.timed.bytes"), file_bytes);
    assert_eq!(
        num(&r, "etcd.etcdctl_restore.timed.pairs"),
        num(&r, "etcd.etcdctl_save.timed.pairs")
    );
    assert!(num(&r, "etcd.etcdctl_restore.written_bytes") >= file_bytes);
    assert_eq!(r["etcd"]["etcdctl_save"]["tool"], "etcdctl snapshot save");
    assert!(
        r["etcd"]["etcdctl_restore"]["tool"]
            .as_str()
            .is_some_and(|t| t.ends_with("snapshot restore")),
        "{}",
        r["etcd"]["etcdctl_restore"]
    );

    let capture = &r["etcd"]["capture"];
    assert_eq!(num(capture, "rounds"), 3.0);
    assert!(num(capture, "raw_commits_per_s") > 0.0 && num(capture, "capture_commits_per_s") > 0.0);

    // Each ratio, recomputed from the figures above.
    let ratios = [
        ("capture", num(capture, "ratio")),
        ("snapshot_vs_etcdctl_save", snap / save),
        ("restore_vs_etcdctl_restore", restore / etcd_restore),
        ("restore_vs_bulk_load", restore / bulk),
        ("dataset_share_of_member_db", raw / file_bytes),
    ];
    for (name, value) in ratios {
        let got = num(&r, &format!("etcd.ratios.{name}"));
        assert!(got > 0.0, "{name} = {got}");
        close(name, got, value);
    }
    assert!(
        num(&r, "etcd.ratios.dataset_share_of_member_db") < 1.0,
        "the member db holds the dataset and more"
    );

    // Each side's figure is its median round, and every round is kept.
    assert_eq!(e.rounds, SIDE_BY_SIDE_ROUNDS);
    for (what, secs, median) in [
        ("snapshot", &e.snapshot_secs, e.snapshot.secs),
        (
            "etcdctl save",
            &e.etcdctl_save_secs,
            e.etcdctl_save.timed.secs,
        ),
    ] {
        assert_eq!(secs.len(), SIDE_BY_SIDE_ROUNDS, "{what}: {secs:?}");
        let mut sorted = secs.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(median, sorted[SIDE_BY_SIDE_ROUNDS / 2], "{what}: {secs:?}");
    }

    // The product targets the phase can check, from its ratios: the snapshot against
    // etcdctl only where the member db was compacted and defragmented.
    let mut targets = vec![
        (
            "commit throughput with capture vs raw (etcd)",
            e.ratios.capture,
        ),
        (
            "restore speed vs engine bulk load (etcd)",
            e.ratios.restore_vs_bulk_load,
        ),
    ];
    if e.member_db.compacted_to.is_some() {
        targets.push((ETCD_SNAPSHOT_TARGET, e.ratios.snapshot_vs_etcdctl_save));
    }
    assert_eq!(report.targets.len(), targets.len(), "{:?}", report.targets);
    for (name, value) in targets {
        let t = report
            .targets
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no target {name:?}"));
        close(name, t.measured, value);
        verdict_follows(t);
    }

    let table = report.render_table();
    let md = report.render_markdown();
    for row in [
        "etcd bulk_load",
        "Tito snapshot (etcd)",
        "etcdctl snapshot save (whole member db)",
        "Tito restore (etcd, verify + load)",
        "snapshot restore (new data dir)",
        "Tito snapshot vs etcdctl snapshot save",
        "Tito restore vs etcdctl snapshot restore",
        "commit throughput, capture vs raw (etcd)",
    ] {
        assert!(table.contains(row), "table lacks {row:?}:\n{table}");
        assert!(
            md.lines().any(|l| l.starts_with("| ") && l.contains(row)),
            "markdown lacks {row:?}:\n{md}"
        );
    }
    assert!(
        md.contains("--phases etcd") && md.contains(&format!("--etcd-keys {keys}")),
        "{md}"
    );
    assert!(
        table.contains(&format!("{:.3}×", e.ratios.capture)),
        "the table shows the capture ratio:\n{table}"
    );
    assert!(
        table.contains("member db etcdctl saved")
            && table.contains(&format!(
                "{:.1} MiB",
                e.member_db.after_bytes as f64 / (1024.0 * 1024.0)
            )),
        "the table shows the member db etcdctl saved:\n{table}"
    );
    let json = serde_json::to_value(report).expect("json");
    assert!(
        json["etcd"]["member_db"]["before_bytes"].is_u64(),
        "{}",
        json["etcd"]
    );
}

#[tokio::test]
async fn the_etcd_phase_and_an_etcd_engine_go_together() {
    let url = "etcd://127.0.0.1:1/tito".to_string();
    for (engine, phases, needle) in [
        (None, vec![Phase::Etcd], "etcd://host:port"),
        (Some(url.clone()), vec![], "--phases etcd"),
        (
            Some(url.clone()),
            vec![Phase::Etcd, Phase::Capture],
            "--phases etcd",
        ),
        (Some("etcd://nohost".into()), vec![Phase::Etcd], "nohost"),
    ] {
        let opts = BenchOptions {
            engine: engine.clone(),
            phases: phases.clone(),
            ..BenchOptions::tiny()
        };
        let err = tito_bench::run(opts)
            .await
            .expect_err(&format!("{engine:?} {phases:?}"));
        assert!(matches!(err, BenchError::Options(_)), "{err}");
        assert!(err.to_string().contains(needle), "{needle:?} not in: {err}");
    }
    let zero = BenchOptions {
        engine: Some(url),
        phases: vec![Phase::Etcd],
        etcd_keys: 0,
        ..BenchOptions::tiny()
    };
    let err = tito_bench::run(zero).await.expect_err("zero keys");
    assert!(err.to_string().contains("--etcd-keys"), "{err}");
}
