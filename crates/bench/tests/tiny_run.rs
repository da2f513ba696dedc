//! Every phase of `tito bench` at a tiny size: proves the benchmark code works end to end
//! (each restore it times is checked against the source's digest). No timing assertions.

use std::sync::Arc;

use tito_bench::checks::verdict_follows;
use tito_bench::{BenchError, BenchOptions, Phase, baseline, dataset};
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_store::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_phase_runs_on_redb_and_a_file_store() {
    let report = tito_bench::run(BenchOptions::tiny())
        .await
        .expect("bench run");
    assert!(report.limits.is_some(), "limits");
    assert!(report.baseline.is_some(), "baseline");
    assert!(report.snapshot.is_some(), "snapshot");
    assert!(report.replay.is_some(), "replay");
    assert!(report.ship.is_some(), "ship");
    assert!(report.rpo.is_some(), "rpo");
    assert!(report.capture.is_some(), "capture");
    let load = report.load.as_ref().expect("load");
    assert_eq!((load.bulk_load.pairs, load.tito_load.pairs), (300, 300));
    assert!(load.batches >= 1 && load.check.secs <= load.tito_load.secs);
    assert_eq!(report.dataset.engine, "redb");

    let b = report.baseline.as_ref().expect("baseline");
    assert_eq!(b.backup.timed.pairs, 300);
    assert_eq!(b.backup.dropped, 0, "every generated value is JSON");
    assert_eq!(b.restore.pairs, 300);
    assert_eq!(b.backup.chunks, 1, "300 entries fit one 1,000-entry chunk");
    let s = report.snapshot.as_ref().expect("snapshot");
    assert_eq!(s.snapshot.pairs, 300);
    assert_eq!(s.restore.pairs, 300);
    assert!(s.snapshot_bytes > 0);
    assert_eq!(report.replay.as_ref().expect("replay").records, 200);
    let rpo = report.rpo.as_ref().expect("rpo");
    assert!(rpo.commits > 0 && rpo.samples > 0, "{rpo:?}");

    // One target per product goal whose phases ran: 11 in all.
    let names: Vec<&str> = report.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(report.targets.len(), 11, "{names:?}");
    for t in &report.targets {
        verdict_follows(t);
    }

    let table = report.render_table();
    for row in [
        "zstd -1, in-process",
        "disk sequential write",
        "engine bulk_load",
        "original full backup",
        "original restore",
        "Tito snapshot",
        "Tito restore",
        "Tito log replay",
        "ship 50 changes",
        "RPO lag",
        "commit throughput",
        "tito load FILE",
        "snapshot speed vs original backup",
    ] {
        assert!(table.contains(row), "table lacks {row:?}:\n{table}");
    }
    let md = report.render_markdown();
    assert!(
        md.contains(&format!("**Machine:** {}", report.machine.describe())),
        "{md}"
    );
    assert!(
        md.contains("| target | measured | goal | verdict | note |"),
        "{md}"
    );
    assert!(md.contains("--keys 300"), "{md}");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["dataset"]["keys"], 300);
    assert!(json["targets"].as_array().is_some_and(|t| t.len() == 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_phases_on_memory_engine_and_store() {
    let opts = BenchOptions {
        engine: Some("memory://".into()),
        store: Some("memory://".into()),
        phases: vec![Phase::Baseline, Phase::Snapshot, Phase::Capture],
        ..BenchOptions::tiny()
    };
    let report = tito_bench::run(opts).await.expect("bench run");
    assert_eq!(report.dataset.engine, "memory");
    assert!(report.baseline.is_some() && report.snapshot.is_some());
    assert!(report.capture.is_some());
    assert!(report.limits.is_none() && report.rpo.is_none() && report.replay.is_none());
    // Without limits there is no zstd or bulk-load comparison.
    assert!(
        report
            .targets
            .iter()
            .all(|t| !t.name.contains("zstd") && !t.name.contains("bulk load"))
    );
}

#[tokio::test]
async fn bad_options_are_refused_with_the_offending_value() {
    let existing = tempfile::NamedTempFile::new().expect("temp file");
    let path = existing.path().display().to_string();
    for (engine, needle) in [
        (path.clone(), path.clone()),
        ("etcd://127.0.0.1:2379".to_string(), "etcd://".to_string()),
        ("redb://relative".to_string(), "absolute path".to_string()),
    ] {
        let opts = BenchOptions {
            engine: Some(engine.clone()),
            ..BenchOptions::tiny()
        };
        let err = tito_bench::run(opts).await.expect_err(&engine);
        assert!(matches!(err, BenchError::Options(_)), "{err}");
        assert!(err.to_string().contains(&needle), "{err}");
    }
    let zero = BenchOptions {
        keys: 0,
        ..BenchOptions::tiny()
    };
    assert!(matches!(
        tito_bench::run(zero).await,
        Err(BenchError::Options(_))
    ));
}

#[tokio::test]
async fn baseline_drops_what_the_original_dropped_and_restores_the_rest() {
    let engine = Arc::new(MemoryEngine::new());
    let tx = engine.begin().await.expect("begin");
    for i in 0..2_500u32 {
        tx.put(
            format!("table:t:{i:05}").into_bytes(),
            format!("{{\"n\":{i}}}").into_bytes(),
        )
        .expect("put");
    }
    tx.put(b"table:bin:\xfe".to_vec(), b"{}".to_vec())
        .expect("non-UTF-8 key");
    tx.put(b"table:raw".to_vec(), b"not json".to_vec())
        .expect("non-JSON value");
    tx.put(b"other:x".to_vec(), b"{}".to_vec())
        .expect("outside table:");
    tx.commit().await.expect("commit");

    let store = MemoryStore::new();
    let b = baseline::backup(engine.as_ref(), &store)
        .await
        .expect("backup");
    assert_eq!(b.timed.pairs, 2_502, "scans table: keys only");
    assert_eq!(b.dropped, 2, "non-UTF-8 key and non-JSON value");
    assert_eq!(b.chunks, 3, "chunks of 1,000 entries");

    let target = MemoryEngine::new();
    let r = baseline::restore(&store, &target).await.expect("restore");
    assert_eq!(r.pairs, 2_500);
    let tx = target.begin().await.expect("begin");
    assert_eq!(
        tx.get(b"table:t:00042").await.expect("get"),
        Some(b"{\"n\":42}".to_vec())
    );
    assert_eq!(tx.get(b"table:raw").await.expect("get"), None);
    assert_eq!(tx.get(b"other:x").await.expect("get"), None);
}

#[tokio::test]
async fn digest_tells_datasets_apart() {
    let d = dataset::Dataset {
        keys: 100,
        value_size: 300,
        seed: 1,
        values: dataset::ValueKind::Orders,
    };
    let (a, b) = (MemoryEngine::new(), MemoryEngine::new());
    d.load(&a, 30).await.expect("load a");
    d.load(&b, 1_000).await.expect("load b");
    let da = dataset::digest(&a).await.expect("digest a");
    assert_eq!(da.0, 100);
    assert_eq!(da, dataset::digest(&b).await.expect("digest b"));
    let tx = b.begin().await.expect("begin");
    tx.put(dataset::Dataset::key(5), d.value(5, 1))
        .expect("put");
    tx.commit().await.expect("commit");
    assert_ne!(da, dataset::digest(&b).await.expect("digest b"));
}

/// The `tito` CLI's shape: global `--db`, `--store`, `--json`, and `bench` flattening
/// [`BenchOptions`]. clap panics at build time on clashing names; this proves none clash.
mod cli_shape {
    use clap::{CommandFactory, Parser, Subcommand};
    use tito_bench::{BenchOptions, Phase};

    #[derive(Parser)]
    struct FakeCli {
        #[arg(long, global = true)]
        db: Option<String>,
        #[arg(long, global = true)]
        store: Option<String>,
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        Bench {
            #[command(flatten)]
            opts: BenchOptions,
        },
    }

    #[test]
    fn bench_options_flatten_into_the_cli_without_clashes() {
        FakeCli::command().debug_assert();
        let cli = FakeCli::try_parse_from([
            "tito",
            "bench",
            "--keys",
            "5000",
            "--phases",
            "baseline,rpo",
            "--store",
            "memory://",
            "--json",
        ])
        .expect("parse");
        let Command::Bench { opts } = cli.command;
        assert_eq!(opts.keys, 5000);
        assert_eq!(opts.value_size, BenchOptions::default().value_size);
        assert_eq!(opts.phases, vec![Phase::Baseline, Phase::Rpo]);
        assert!(opts.runs(Phase::Rpo) && !opts.runs(Phase::Snapshot));
        assert_eq!(cli.store.as_deref(), Some("memory://"));
        assert!(cli.json);
        assert_eq!(opts.store, None, "the CLI passes its own --store");
    }
}
