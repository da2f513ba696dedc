//! `tito bench`: one command that measures, side by side in one run and on one generated
//! dataset, the original design's backup and restore, Tito's snapshot, restore, log
//! replay, shipping cost and lag, change-capture overhead, and the machine's own limits on
//! the same bytes, then checks the product's targets.
//!
//! The CLI embeds [`BenchOptions`] with `#[command(flatten)]`, sets the engine, the store
//! and a [`ChildCommand`] (how to start itself again), calls [`run`], and prints
//! [`BenchReport::render_table`] or the report as JSON; [`BenchReport::render_markdown`]
//! gives the BENCHMARKS.md section (machine, command, figures, targets). With a child
//! command, Tito's snapshot and restore each run in a process of their own
//! ([`child_main`]), so each peak-memory figure is that work's alone. With an `etcd://`
//! engine, the [`etcd`] phase measures Tito on that cluster next to etcd's own snapshot
//! tools, the [`etcd_watch_rpo`] phase the RPO of backing up that cluster by watching
//! it while plain etcd clients write, and the [`peers`] phase puts other databases' backup
//! tools (Litestream, pgBackRest) next to Tito's snapshot and restore of the same rows. No
//! timing is ever asserted in tests: they run every phase at a tiny size to prove the code
//! works.
#![warn(missing_docs)]

pub mod baseline;
pub mod capture;
pub mod checks;
pub mod child;
pub mod compaction;
pub mod dataset;
pub mod encryption;
pub mod env;
pub mod error;
pub mod etcd;
pub mod etcd_private;
pub mod etcd_watch_rpo;
pub mod incremental;
pub mod limits;
pub mod load;
pub mod machine;
pub mod memory;
pub mod options;
pub mod peers;
pub mod report;
pub mod restore_s3;
pub mod rpo;
pub mod tito;

use std::time::Instant;

pub use child::{ChildCommand, ChildReport, ChildSpec, child_main};
pub use dataset::{Dataset, ValueKind};
pub use env::BenchEnv;
pub use error::BenchError;
pub use machine::Machine;
pub use options::{BenchOptions, Phase};
pub use report::{BenchReport, DatasetInfo, TargetCheck, Timed, Verdict};

use report::BaselineFigures;
use tito::Shipping;

/// Pairs per `bulk_load` call when loading a source database (not timed).
const LOAD_BATCH: u64 = 100_000;

/// Run the phases `opts` selects and return the report, targets checked. Every engine
/// file and stored object the run created is removed before returning, error or not.
pub async fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.keys == 0 {
        return Err(BenchError::Options("--keys must be at least 1".into()));
    }
    let etcd_url = etcd_engine(&opts)?;
    let cache_bytes = opts.redb_cache_mb.map(|mb| mb << 20);
    // On etcd the environment serves the store only: the phase makes its own namespaces.
    let engine = if etcd_url.is_some() {
        None
    } else {
        opts.engine.as_deref()
    };
    let env = BenchEnv::new(engine, opts.store.as_deref(), cache_bytes)?;
    let outcome = run_in(&env, etcd_url.as_deref(), opts).await;
    env.cleanup().await;
    outcome
}

/// The etcd URL when the engine is one, after checking the phases fit the engine: the
/// etcd phases (`etcd`, `etcd-watch-rpo`) run on etcd only and with no other phase (the
/// others create engine files).
fn etcd_engine(opts: &BenchOptions) -> Result<Option<String>, BenchError> {
    match opts.engine.as_deref().filter(|u| u.starts_with("etcd://")) {
        Some(url) => {
            etcd::config(url)?;
            if opts.phases.is_empty()
                || opts
                    .phases
                    .iter()
                    .any(|p| !matches!(p, Phase::Etcd | Phase::EtcdWatchRpo))
            {
                return Err(BenchError::Options(format!(
                    "engine {url:?}: only the etcd phases run on an etcd:// engine; add --phases etcd \
                     (or etcd-watch-rpo, or both)"
                )));
            }
            if opts.etcd_keys == 0 {
                return Err(BenchError::Options("--etcd-keys must be at least 1".into()));
            }
            Ok(Some(url.to_string()))
        }
        None if opts.runs(Phase::Etcd) => Err(BenchError::Options(
            "the etcd phase needs a cluster: --db etcd://host:port[,host:port...][/namespace]"
                .into(),
        )),
        None => Ok(None),
    }
}

async fn run_in(
    env: &BenchEnv,
    etcd_url: Option<&str>,
    opts: BenchOptions,
) -> Result<BenchReport, BenchError> {
    let started = Instant::now();
    let dataset = Dataset {
        keys: if etcd_url.is_some() {
            opts.etcd_keys
        } else {
            opts.keys
        },
        value_size: opts.value_size,
        seed: opts.seed,
        values: opts.values,
    };
    let mut report = BenchReport {
        machine: Machine::detect(&env.dump_dir()),
        command: None,
        load_average: [machine::load_average(), None],
        build: format!(
            "tito {} ({} build)",
            env!("CARGO_PKG_VERSION"),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        ),
        dataset: DatasetInfo {
            keys: dataset.keys,
            value_size: dataset.value_size,
            raw_bytes: dataset.raw_bytes(),
            values: dataset.values,
            engine: if etcd_url.is_some() {
                "etcd".into()
            } else {
                env.engine_kind().to_string()
            },
            store: env.store_description(),
        },
        options: opts.clone(),
        limits: None,
        baseline: None,
        snapshot: None,
        replay: None,
        ship: None,
        rpo: None,
        capture: None,
        load: None,
        etcd: None,
        restore_s3: None,
        compaction: None,
        encryption: None,
        incremental: None,
        etcd_watch_rpo: None,
        skipped: Vec::new(),
        peers: None,
        targets: Vec::new(),
        elapsed_secs: 0.0,
    };

    if opts.runs(Phase::Limits) {
        let fresh = env.engine("bulk").await?;
        report.limits = Some(limits::measure(&dataset, &env.dump_dir(), fresh.as_ref()).await?);
        env.drop_engine(fresh).await;
    }

    if opts.runs(Phase::Baseline) || opts.runs(Phase::Snapshot) || opts.runs(Phase::Peers) {
        let source = env.engine("source").await?;
        dataset.load(source.as_ref(), LOAD_BATCH).await?;
        if opts.runs(Phase::Baseline) {
            let expected = dataset::digest(source.as_ref()).await?;
            let store = env.store("baseline").await?;
            let backup = baseline::backup(source.as_ref(), store.as_ref()).await?;
            let fresh = env.engine("baseline-restore").await?;
            let restore = baseline::restore(store.as_ref(), fresh.as_ref()).await?;
            tito::check_same("baseline", expected, dataset::digest(fresh.as_ref()).await?)?;
            env.drop_engine(fresh).await;
            report.baseline = Some(BaselineFigures { backup, restore });
        }
        // The peers phase reuses this measurement as Tito's side of its rows.
        if opts.runs(Phase::Snapshot) || opts.runs(Phase::Peers) {
            let expected = dataset::digest(source.as_ref()).await?;
            let store = env.store("snapshot").await?;
            let isolated = match (&opts.child, env.engine_file("source")) {
                (Some(cmd), Some(file)) => env.store_url("snapshot").map(|u| (cmd, file, u)),
                _ => None,
            };
            report.snapshot = Some(match isolated {
                Some((cmd, file, url)) => {
                    // The child opens the file: redb allows one opener at a time.
                    env.drop_engine(source.clone()).await;
                    tito::snapshot_restore_isolated(
                        env,
                        cmd,
                        opts.snapshot_level,
                        file,
                        url,
                        expected,
                    )
                    .await?
                }
                None => {
                    let fresh = env.engine("snapshot-restore").await?;
                    let r = tito::snapshot_restore(
                        source.clone(),
                        opts.snapshot_level,
                        expected,
                        store,
                        fresh.clone(),
                    )
                    .await;
                    env.drop_engine(fresh).await;
                    r?
                }
            });
        }
        env.drop_engine(source).await;
    }

    if opts.runs(Phase::Replay) {
        let store = env.store("replay").await?;
        let fresh = env.engine("replay-restore").await?;
        report.replay =
            Some(tito::replay(&dataset, opts.replay_records, store, fresh.clone()).await?);
        env.drop_engine(fresh).await;
    }

    if opts.runs(Phase::Ship) {
        let mut secs = [0.0; 2];
        for (i, (name, keys)) in [
            ("ship-small", opts.ship_small_keys),
            ("ship-large", opts.ship_large_keys),
        ]
        .into_iter()
        .enumerate()
        {
            let engine = env.engine(name).await?;
            let store = env.store(name).await?;
            let d = Dataset {
                keys: keys.max(1),
                ..dataset
            };
            secs[i] = tito::ship_time(&d, opts.ship_changes, engine.clone(), store).await?;
            env.drop_engine(engine).await;
        }
        report.ship = Some(Shipping {
            changes: opts.ship_changes,
            rounds: tito::SHIP_ROUNDS,
            small_keys: opts.ship_small_keys,
            large_keys: opts.ship_large_keys,
            small_secs: secs[0],
            large_secs: secs[1],
        });
    }

    if opts.runs(Phase::Rpo) {
        let engine = env.engine("rpo").await?;
        let store = env.store("rpo").await?;
        report.rpo = Some(
            rpo::measure(
                &dataset,
                engine.clone(),
                store,
                opts.rpo_rate,
                opts.rpo_secs,
                opts.rpo_interval_ms,
            )
            .await?,
        );
        env.drop_engine(engine).await;
    }

    if opts.runs(Phase::Capture) {
        let raw = env.engine("capture-raw").await?;
        let captured = env.engine("capture-db").await?;
        report.capture = Some(
            capture::measure(
                raw.clone(),
                captured.clone(),
                opts.capture_rounds,
                opts.capture_per_round,
            )
            .await?,
        );
        env.drop_engine(raw).await;
        env.drop_engine(captured).await;
    }

    if opts.runs(Phase::Load) {
        report.load = Some(load::measure(env, &dataset).await?);
    }

    if opts.runs(Phase::RestoreS3) {
        report.restore_s3 = Some(
            restore_s3::measure(
                env,
                &dataset,
                opts.restore_s3_segments,
                opts.s3_store.as_deref(),
            )
            .await?,
        );
    }

    if opts.runs(Phase::Compaction) {
        compaction::check_seconds(opts.compaction_seconds)?;
        report.compaction = Some(
            compaction::measure(
                env,
                &dataset,
                opts.compaction_seconds,
                opts.s3_store.as_deref(),
            )
            .await?,
        );
    }

    if opts.runs(Phase::Encryption) {
        report.encryption = Some(encryption::measure(env, &dataset, opts.snapshot_level).await?);
    }

    if opts.runs(Phase::Incremental) {
        report.incremental = Some(incremental::measure(env, &dataset, opts.snapshot_level).await?);
    }

    if opts.runs(Phase::Peers) {
        let tito = report.snapshot.as_ref().ok_or_else(|| {
            BenchError::Options("the peers phase needs the snapshot measurement".into())
        })?;
        report.peers = Some(peers::measure(env, &opts, &dataset, tito).await?);
    }

    if let Some(url) = etcd_url.filter(|_| opts.runs(Phase::Etcd)) {
        report.etcd = Some(
            etcd::measure(
                env,
                url,
                etcd::ClusterChoice {
                    private: opts.etcd_private,
                    compact: opts.etcd_compact,
                },
                &dataset,
                opts.snapshot_level,
                opts.capture_rounds,
                opts.capture_per_round,
            )
            .await?,
        );
    }

    if opts.runs(Phase::EtcdWatchRpo) {
        match etcd_url {
            Some(url) => {
                let store = env.store("etcd-watch-rpo").await?;
                report.etcd_watch_rpo = Some(
                    etcd_watch_rpo::measure(
                        url,
                        &dataset,
                        store,
                        opts.watch_rpo_rate,
                        opts.rpo_secs,
                        opts.rpo_interval_ms,
                    )
                    .await?,
                );
            }
            None => report.skipped.push(report::Skipped {
                phase: Phase::EtcdWatchRpo,
                target: report::watch_rpo_target(opts.watch_rpo_rate),
                reason: "skipped: no etcd cluster configured (run with \
                         --db etcd://host:port[,host:port...][/namespace])"
                    .into(),
            }),
        }
    }

    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.load_average[1] = machine::load_average();
    report.check_targets();
    Ok(report)
}
