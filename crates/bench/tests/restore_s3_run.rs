//! The restore-s3 phase at a tiny size on the S3 test server (`scripts/start-s3.sh`): both
//! restores hold the source's dataset (checked inside the phase), each reads every planned
//! object once, and the phase is refused with a clear message without an S3 store. No
//! timing assertions.

use tito_bench::checks::verdict_follows;
use tito_bench::{BenchError, BenchOptions, Phase};
use tito_store::testing::S3TestServer;

/// `s3://bucket/prefix` of the test server, with its `AWS_*` settings in the environment.
fn s3_url() -> String {
    let server = S3TestServer::settings();
    for (k, v) in server.aws_env() {
        // SAFETY: set once, before the run, by the only test of this binary that reads them.
        unsafe { std::env::set_var(k, v) };
    }
    format!("s3://{}/bench-restore-s3", server.bucket())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_s3_phase_restores_the_same_backup_from_both_stores() {
    let opts = BenchOptions {
        phases: vec![Phase::RestoreS3],
        s3_store: Some(s3_url()),
        ..BenchOptions::tiny()
    };
    let report = tito_bench::run(opts).await.expect("bench run");
    let r = report.restore_s3.as_ref().expect("restore-s3 figures");
    assert_eq!(r.segments, 5, "{r:?}");
    assert!(r.planned_objects > r.segments, "chunks and segments: {r:?}");
    assert!(r.objects >= r.planned_objects, "{r:?}");
    // Pairs of the snapshot plus the records replayed, from either store.
    assert_eq!(r.local.pairs, 300 + 25, "{r:?}");
    assert_eq!(r.s3.pairs, r.local.pairs, "{r:?}");
    assert!(r.bytes_downloaded > 0 && r.ratio > 0.0, "{r:?}");
    assert!(r.s3_store.contains("bench-restore-s3"), "{r:?}");
    assert_eq!(report.targets.len(), 1, "{:?}", report.targets);
    for t in &report.targets {
        verdict_follows(t);
    }
    let md = report.render_markdown();
    assert!(md.contains("restore from S3 vs local directory"), "{md}");
    assert!(md.contains("--phases restore-s3"), "{md}");
}

#[tokio::test]
async fn restore_s3_phase_needs_an_s3_store() {
    for (store, needle) in [
        (None, "--s3-store"),
        (Some("file:///tmp/x"), "not an s3://"),
    ] {
        let opts = BenchOptions {
            phases: vec![Phase::RestoreS3],
            s3_store: store.map(str::to_string),
            ..BenchOptions::tiny()
        };
        let err = tito_bench::run(opts).await.expect_err("refused");
        assert!(matches!(err, BenchError::Options(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}
