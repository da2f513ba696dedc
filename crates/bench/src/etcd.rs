//! The etcd phase: Tito on an etcd cluster, side by side with etcd's own tools on the
//! same data, in one run.
//!
//! Which cluster: the one `--db etcd://...` names, or, with `--etcd-private`, a private
//! cluster of [`PRIVATE_MEMBERS`](crate::etcd_private::PRIVATE_MEMBERS) members the phase starts in a temp dir (with the
//! URL's namespace and request limits; the URL's endpoints are not used) and stops at the
//! end, error or not ([`crate::etcd_private`]). The private cluster is the reproducible
//! figure: `etcdctl snapshot save` streams the member's whole bbolt file, so on a shared
//! cluster its time follows what earlier users left there (the test cluster of
//! `scripts/start-etcd.sh` is never compacted and grew by about 100 MiB of revisions per
//! bench run), not Tito.
//!
//! Every engine of the phase is a fresh namespace `<ns>/tito-bench-<pid>-<ms>/<name>`
//! under the URL's namespace `<ns>`, so the shared cluster is never wiped; the etcd
//! engine keeps each namespace's keys under `namespace ++ 0x00`, so these namespaces are
//! disjoint from `<ns>` itself and from each other. The whole `<ns>/tito-bench-<pid>-<ms>/`
//! prefix is deleted at the end, error or not.
//!
//! Steps, in order:
//! 1. load the dataset into `source` with [`Engine::bulk_load`] in the largest batches
//!    the engine's limits allow, [`LOAD_CONCURRENCY`] at a time (the engine's own best
//!    bulk load, timed);
//! 2. the cluster brought into the state an operator backs up, when the phase may: on a
//!    private cluster, or on the URL's with `--etcd-compact`, the history is compacted
//!    to the current revision (physically) and every member defragmented, one after the
//!    other. Both cost other clients of a shared cluster: compaction removes revisions
//!    their watchers or pinned reads may still need, and a member blocks while it
//!    defragments, so a shared cluster is left alone by default. The first member's
//!    database size (etcd's `dbSize`) is reported before this step and again right before
//!    `etcdctl` saves it ([`MemberDb`]);
//! 3. Tito's snapshot of `source` into a fresh store location (timed), then
//!    `etcdctl snapshot save` from the first endpoint (one member; timed): it saves that
//!    member's whole database, every namespace and every revision kept, so its bytes are
//!    reported and its rate is over its own bytes. The two alternate for
//!    [`SIDE_BY_SIDE_ROUNDS`] rounds and each side reports its median round (every round's
//!    seconds are kept in the figures);
//! 4. Tito's restore into the empty namespace `restore`, checked against the source's
//!    digest (timed: plan, verify, load);
//! 5. `etcdctl snapshot restore` (`etcdutl` when installed, as etcd 3.5+ wants) of the
//!    saved file into a new data directory in a temp dir (timed);
//! 6. commit throughput of Tito transactions with capture against raw engine
//!    transactions ([`crate::capture::measure`], the redb figure's method and txn shape)
//!    on two more fresh namespaces.
//!
//! The etcd tools' times are wall times of their processes (start and connection
//! included, as a person running them sees). On a compacted cluster (private, or
//! `--etcd-compact`) the report checks issue #16's target of Tito's snapshot at ≥ 0.5×
//! `etcdctl snapshot save`'s MiB/s; on a cluster left as it is, the ratio is shown but
//! not checked, as it measures the cluster's history more than either tool.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tito_backup::BackupService;
use tito_capture::Db;
use tito_engine::{Engine, EngineError, KeyValue};
use tito_engine_etcd::{EtcdConfig, EtcdEngine, endpoint_url};

use crate::capture::{self, CaptureOverhead};
use crate::child;
use crate::dataset::{Dataset, digest};
use crate::env::BenchEnv;
use crate::error::{BenchError, Ctx, Result, io_err};
use crate::etcd_private::PrivateCluster;
use crate::report::Timed;
use crate::tito::check_same;

const PHASE: &str = "etcd";
/// Bulk-load txns in flight while loading the dataset: Tito's restore loads with the same
/// concurrency by default (`RestoreOptions::concurrency`).
pub const LOAD_CONCURRENCY: usize = 4;

/// Rounds of Tito's snapshot next to `etcdctl snapshot save`, alternating; each side's
/// figure is its median round, so one slow round (a busy core, a process start) does not
/// decide the ratio.
pub const SIDE_BY_SIDE_ROUNDS: usize = 3;

/// One run of an etcd tool (`etcdctl snapshot save`, `... restore`).
#[derive(Clone, Debug, Serialize)]
pub struct ToolRun {
    /// The command, as `etcdctl snapshot save`.
    pub tool: String,
    /// `pairs`: key revisions in the snapshot (its `totalKey`: every namespace, every
    /// revision kept); `bytes`: the snapshot file's bytes; `secs`: the process's wall time.
    pub timed: Timed,
    /// Bytes the tool left on disk: the snapshot file, or the new data directory (WAL
    /// preallocation included).
    pub written_bytes: u64,
}

/// Which cluster the phase measures and whether it may maintain it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterChoice {
    /// Start a private cluster of [`PRIVATE_MEMBERS`](crate::etcd_private::PRIVATE_MEMBERS) members instead of using the URL's
    /// endpoints (always compacted and defragmented).
    pub private: bool,
    /// Compact and defragment the URL's cluster before the side-by-side measurement.
    pub compact: bool,
}

/// The database of the member `etcdctl snapshot save` reads, as etcd reports it
/// (`dbSize`: the bbolt file's bytes, free pages included).
#[derive(Clone, Debug, Serialize)]
pub struct MemberDb {
    /// Bytes after the dataset was loaded, before any compaction or defragmentation.
    pub before_bytes: u64,
    /// Bytes right before `etcdctl snapshot save` (after compaction and
    /// defragmentation when they were done): what `etcdctl` streamed.
    pub after_bytes: u64,
    /// The revision the cluster was compacted to; `None` when it was not compacted.
    pub compacted_to: Option<i64>,
    /// Whether every member was defragmented after the compaction.
    pub defragmented: bool,
}

/// Ratios of the phase, each computed from the figures beside it in [`EtcdFigures`].
#[derive(Clone, Debug, Serialize)]
pub struct EtcdRatios {
    /// Commit throughput with capture / without (the capture measurement's median ratio).
    pub capture: f64,
    /// Tito snapshot MiB/s (dataset bytes) / `etcdctl snapshot save` MiB/s (file bytes).
    pub snapshot_vs_etcdctl_save: f64,
    /// Tito restore MiB/s (dataset bytes) / `etcdctl snapshot restore` MiB/s (file bytes).
    pub restore_vs_etcdctl_restore: f64,
    /// Tito restore MiB/s / the engine's bulk load MiB/s, both over the dataset's bytes.
    pub restore_vs_bulk_load: f64,
    /// Dataset bytes / bytes of the member database `etcdctl` saved: how much of what the
    /// etcd tools moved was this dataset.
    pub dataset_share_of_member_db: f64,
}

/// Everything the etcd phase measured.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdFigures {
    /// Client endpoints of the cluster.
    pub endpoints: Vec<String>,
    /// Whether the cluster was a private one the phase started (and stopped).
    pub private: bool,
    /// The member database `etcdctl` saved, before and after compaction and
    /// defragmentation.
    pub member_db: MemberDb,
    /// The member `etcdctl snapshot save` read from.
    pub member: String,
    /// etcd's version as that member reports it.
    pub server_version: String,
    /// The prefix under which the phase's namespaces lived (deleted at the end).
    pub namespace: String,
    /// `Engine::bulk_load` of the dataset into an empty namespace, batches of at most
    /// `load_batch_pairs`, [`LOAD_CONCURRENCY`] in flight.
    pub bulk_load: Timed,
    /// Pairs per bulk-load txn (the engine's limits decide).
    pub load_batch_pairs: u64,
    /// Tito's snapshot of the dataset: the round of median time.
    pub snapshot: Timed,
    /// Rounds of the side-by-side measurement: a Tito snapshot, then an `etcdctl
    /// snapshot save`, [`SIDE_BY_SIDE_ROUNDS`] times.
    pub rounds: usize,
    /// Seconds of each round's Tito snapshot, in order.
    pub snapshot_secs: Vec<f64>,
    /// Seconds of each round's `etcdctl snapshot save`, in order.
    pub etcdctl_save_secs: Vec<f64>,
    /// Bytes the snapshot stored (chunks and manifest).
    pub snapshot_bytes: u64,
    /// Chunks written.
    pub chunks: u64,
    /// zstd level of the chunks.
    pub level: i32,
    /// Tito's restore into an empty namespace (plan, verify, load), checked exact.
    pub restore: Timed,
    /// `etcdctl snapshot save` of one member: the round of median time.
    pub etcdctl_save: ToolRun,
    /// `etcdctl snapshot restore` (or `etcdutl`) of that file into a new data directory.
    pub etcdctl_restore: ToolRun,
    /// Commit throughput with capture vs raw engine transactions.
    pub capture: CaptureOverhead,
    /// Ratios of the figures above.
    pub ratios: EtcdRatios,
}

impl EtcdRatios {
    /// The ratios of `f`'s figures (its own `ratios` field is not read).
    pub fn of(f: &EtcdFigures) -> Self {
        let over = |a: f64, b: f64| a / b.max(1e-12);
        EtcdRatios {
            capture: f.capture.ratio,
            snapshot_vs_etcdctl_save: over(
                f.snapshot.mib_per_s(),
                f.etcdctl_save.timed.mib_per_s(),
            ),
            restore_vs_etcdctl_restore: over(
                f.restore.mib_per_s(),
                f.etcdctl_restore.timed.mib_per_s(),
            ),
            restore_vs_bulk_load: over(f.restore.mib_per_s(), f.bulk_load.mib_per_s()),
            dataset_share_of_member_db: over(
                f.snapshot.bytes as f64,
                f.etcdctl_save.timed.bytes as f64,
            ),
        }
    }
}

/// Parse an `etcd://` engine URL, as a usage error when it is malformed.
pub fn config(url: &str) -> Result<EtcdConfig> {
    EtcdConfig::from_url(url).map_err(|e| BenchError::Options(format!("engine {url:?}: {e}")))
}

/// Run the phase against the cluster of `url` (or a private one, as `cluster` says) on
/// `dataset`; `level` is the zstd level of Tito's chunks and `rounds` × `per_round` the
/// capture measurement's size. Everything the phase wrote to the cluster is deleted
/// before it returns, and a private cluster is stopped, error or not.
pub async fn measure(
    env: &BenchEnv,
    url: &str,
    cluster: ClusterChoice,
    dataset: &Dataset,
    level: Option<i32>,
    rounds: usize,
    per_round: usize,
) -> Result<EtcdFigures> {
    let mut base = config(url)?;
    let private = if cluster.private {
        let c = PrivateCluster::start(PHASE, base.max_request_bytes, base.max_txn_ops).await?;
        base.endpoints = c.endpoints.clone();
        Some(c)
    } else {
        None
    };
    let mut prefix = base.namespace.clone();
    prefix.extend_from_slice(
        format!(
            "/tito-bench-{}-{}/",
            std::process::id(),
            tito_backup::now_ms()
        )
        .as_bytes(),
    );
    let client = etcd_client::Client::connect(base.endpoint_urls(), None)
        .await
        .map_err(etcd_err("connect"))?;
    let run = Run {
        env,
        base,
        prefix,
        private: private.is_some(),
        compact: cluster.compact || private.is_some(),
        engines: Default::default(),
    };
    let outcome = run.measure(dataset, level, rounds, per_round).await;
    run.close_engines().await;
    // Delete the run's namespaces even after a failure; a failed delete fails the run
    // only when the measurement itself succeeded (it left data on a shared cluster).
    let deleted = client
        .clone()
        .delete(
            run.prefix.clone(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .map_err(etcd_err("deleting the bench namespaces"));
    drop(client);
    // Stopped only now: the namespaces were deleted from it above.
    drop(private);
    let figures = outcome?;
    deleted?;
    Ok(figures)
}

/// One run of the phase: where its namespaces live and the engines opened so far.
struct Run<'a> {
    env: &'a BenchEnv,
    base: EtcdConfig,
    prefix: Vec<u8>,
    /// The cluster is a private one.
    private: bool,
    /// Compact and defragment before the side-by-side measurement.
    compact: bool,
    engines: std::sync::Mutex<Vec<EtcdEngine>>,
}

impl Run<'_> {
    /// A fresh, empty namespace `prefix ++ name`.
    async fn engine(&self, name: &str) -> Result<Arc<dyn Engine>> {
        let mut config = self.base.clone();
        config.namespace = [self.prefix.as_slice(), name.as_bytes()].concat();
        let engine = EtcdEngine::with_config(config).await.ctx(PHASE)?;
        self.engines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(engine.clone());
        Ok(Arc::new(engine))
    }

    async fn close_engines(&self) {
        let engines = std::mem::take(&mut *self.engines.lock().unwrap_or_else(|e| e.into_inner()));
        for e in engines {
            let _ = e.close().await;
        }
    }

    async fn measure(
        &self,
        dataset: &Dataset,
        level: Option<i32>,
        rounds: usize,
        per_round: usize,
    ) -> Result<EtcdFigures> {
        let raw_bytes = dataset.raw_bytes();
        let source = self.engine("source").await?;
        let (bulk_load, load_batch_pairs) = bulk_load(dataset, source.clone(), raw_bytes).await?;
        let expected = digest(source.as_ref()).await?;

        let member = self.base.endpoints[0].clone();
        let before_bytes = db_size(&member).await?;
        let compacted_to = if self.compact {
            Some(compact_and_defragment(&self.base.endpoints).await?)
        } else {
            None
        };

        let config = child::snapshot_config(level);
        let level = config.compression_level;
        let server_version = server_version(&member).await?;
        let scratch = tempfile::Builder::new()
            .prefix("tito-bench-etcd-")
            .tempdir()
            .map_err(io_err(PHASE, "temp dir"))?;
        let file = scratch.path().join("member.db");
        let member_db = MemberDb {
            before_bytes,
            after_bytes: db_size(&member).await?,
            compacted_to,
            defragmented: compacted_to.is_some(),
        };
        // Alternating rounds, each snapshot into a store of its own (a second snapshot
        // into the same store would reuse the first one's chunks).
        let mut snapshots = Vec::with_capacity(SIDE_BY_SIDE_ROUNDS);
        let mut saves = Vec::with_capacity(SIDE_BY_SIDE_ROUNDS);
        let mut service = None;
        for round in 0..SIDE_BY_SIDE_ROUNDS {
            // The previous round's service goes before the next one opens the source.
            drop(service.take());
            let store = self.env.store(&format!("etcd-snapshot-{round}")).await?;
            let db = Db::open(source.clone()).await.ctx(PHASE)?;
            let s = BackupService::new(db, store, config.clone())
                .await
                .ctx(PHASE)?;
            let started = Instant::now();
            let snap = s.snapshot().await.ctx(PHASE)?;
            snapshots.push((Timed::new(snap.pairs, raw_bytes, started.elapsed()), snap));
            service = Some(s);
            let _ = std::fs::remove_file(&file);
            saves.push(etcdctl_save(&member, &file, dataset.keys).await?);
        }
        let service = service.expect("at least one round");
        let snapshot_secs: Vec<f64> = snapshots.iter().map(|(t, _)| t.secs).collect();
        let etcdctl_save_secs: Vec<f64> = saves.iter().map(|t| t.timed.secs).collect();
        let (snapshot, snap) = snapshots.swap_remove(median_index(&snapshot_secs));
        let etcdctl_save = saves.swap_remove(median_index(&etcdctl_save_secs));

        let fresh = self.engine("restore").await?;
        let (restored, took) = crate::tito::restore_latest(
            service.repository(),
            fresh.clone(),
            &tito_restore::NoProgress,
            PHASE,
        )
        .await?;
        let restore = Timed::new(restored.state_entries_restored, raw_bytes, took);
        check_same(PHASE, expected, digest(fresh.as_ref()).await?)?;
        drop(service);

        let etcdctl_restore = etcd_restore(
            &file,
            etcdctl_save.timed.pairs,
            &scratch.path().join("restored"),
        )
        .await?;
        drop(scratch);

        let raw = self.engine("capture-raw").await?;
        let captured = self.engine("capture-db").await?;
        let capture = capture::measure(raw, captured, rounds, per_round).await?;

        let mut figures = EtcdFigures {
            endpoints: self.base.endpoints.clone(),
            private: self.private,
            member_db,
            member,
            server_version,
            namespace: String::from_utf8_lossy(&self.prefix).into_owned(),
            bulk_load,
            load_batch_pairs,
            snapshot,
            rounds: SIDE_BY_SIDE_ROUNDS,
            snapshot_secs,
            etcdctl_save_secs,
            snapshot_bytes: snap.bytes,
            chunks: snap.chunks,
            level,
            restore,
            etcdctl_save,
            etcdctl_restore,
            capture,
            ratios: EtcdRatios {
                capture: 0.0,
                snapshot_vs_etcdctl_save: 0.0,
                restore_vs_etcdctl_restore: 0.0,
                restore_vs_bulk_load: 0.0,
                dataset_share_of_member_db: 0.0,
            },
        };
        figures.ratios = EtcdRatios::of(&figures);
        Ok(figures)
    }
}

/// Index of the median of `secs` (the lower one of an even count); 0 when empty.
fn median_index(secs: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..secs.len()).collect();
    order.sort_by(|&a, &b| secs[a].total_cmp(&secs[b]));
    order
        .get(secs.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// Pairs per bulk-load txn: as many as the engine's limits allow for pairs of this
/// dataset (its values all have one size; keys too).
fn batch_pairs(dataset: &Dataset, engine: &dyn Engine) -> u64 {
    let limits = engine.limits();
    let pair = (Dataset::key(0).len() + dataset.value(0, 0).len()).max(1);
    let by_bytes = (limits.max_txn_bytes / pair).max(1);
    by_bytes.min(limits.max_txn_ops).max(1) as u64
}

/// Load `dataset` into the empty `engine`, [`LOAD_CONCURRENCY`] txns in flight; only the
/// loading is timed (the batches are generated before the clock starts).
async fn bulk_load(
    dataset: &Dataset,
    engine: Arc<dyn Engine>,
    raw_bytes: u64,
) -> Result<(Timed, u64)> {
    let per = batch_pairs(dataset, engine.as_ref());
    // Generated up front so the clock sees etcd alone; the dataset is modest by design.
    let batches: Vec<Vec<KeyValue>> = (0..dataset.keys.div_ceil(per))
        .map(|b| dataset.pairs(b * per, (b + 1) * per))
        .collect();
    let started = Instant::now();
    futures::stream::iter(batches.into_iter().map(|batch| {
        let engine = engine.clone();
        async move { engine.bulk_load(batch).await }
    }))
    .buffer_unordered(LOAD_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await
    .ctx(PHASE)?;
    Ok((Timed::new(dataset.keys, raw_bytes, started.elapsed()), per))
}

/// etcd's version as `member` reports it.
async fn server_version(member: &str) -> Result<String> {
    let mut client = etcd_client::Client::connect([endpoint_url(member)], None)
        .await
        .map_err(etcd_err("connect to the member"))?;
    let status = client.status().await.map_err(etcd_err("member status"))?;
    Ok(status.version().to_string())
}

/// The database size (`dbSize`) `member` reports.
async fn db_size(member: &str) -> Result<u64> {
    let mut client = etcd_client::Client::connect([endpoint_url(member)], None)
        .await
        .map_err(etcd_err("connect to the member"))?;
    let status = client.status().await.map_err(etcd_err("member status"))?;
    Ok(status.db_size().max(0) as u64)
}

/// Compact the cluster of `endpoints` to its current revision, waiting until the
/// compaction reached the backend (`physical`), then defragment each member in turn, as
/// an operator does before taking a backup. Returns the revision compacted to.
async fn compact_and_defragment(endpoints: &[String]) -> Result<i64> {
    let urls: Vec<String> = endpoints.iter().map(|e| endpoint_url(e)).collect();
    let mut client = etcd_client::Client::connect(urls, None)
        .await
        .map_err(etcd_err("connect"))?;
    let revision = client
        .get(
            "tito-bench-revision",
            Some(etcd_client::GetOptions::new().with_count_only()),
        )
        .await
        .map_err(etcd_err("current revision"))?
        .header()
        .map_or(0, |h| h.revision());
    if let Err(e) = client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
    {
        // Someone compacted at or past this revision already: nothing left to remove.
        if !e.to_string().contains("compacted") {
            return Err(etcd_err("compaction")(e));
        }
    }
    for endpoint in endpoints {
        let mut member = etcd_client::Client::connect([endpoint_url(endpoint)], None)
            .await
            .map_err(etcd_err("connect to the member"))?;
        member
            .defragment()
            .await
            .map_err(etcd_err("defragmenting a member"))?;
    }
    Ok(revision)
}

/// `etcdctl snapshot save` of `member` into `file`, timed; checks the snapshot holds at
/// least the dataset's `keys`.
async fn etcdctl_save(member: &str, file: &Path, keys: u64) -> Result<ToolRun> {
    let mut cmd = Command::new("etcdctl");
    cmd.args(["--endpoints", member, "snapshot", "save"])
        .arg(file);
    let secs = run_timed(cmd, "etcdctl snapshot save").await?;
    let bytes = file_len(file)?;
    let revisions = snapshot_keys(file).await?;
    if revisions < keys {
        return Err(BenchError::Mismatch {
            phase: PHASE,
            detail: format!(
                "etcdctl saved a snapshot of {revisions} key revisions, fewer than the dataset's {keys} keys"
            ),
        });
    }
    Ok(ToolRun {
        tool: "etcdctl snapshot save".into(),
        timed: Timed::new(revisions, bytes, secs),
        written_bytes: bytes,
    })
}

/// `snapshot restore` of `file` (holding `revisions` key revisions) into the new data
/// directory `dir`, timed.
async fn etcd_restore(file: &Path, revisions: u64, dir: &Path) -> Result<ToolRun> {
    let tool = snapshot_tool().await;
    let mut cmd = Command::new(tool);
    cmd.args(["snapshot", "restore"])
        .arg(file)
        .arg("--data-dir")
        .arg(dir);
    let name = format!("{tool} snapshot restore");
    let secs = run_timed(cmd, &name).await?;
    let written_bytes = crate::env::dir_bytes(PHASE, dir)?;
    let db = dir.join("member").join("snap").join("db");
    if file_len(&db)? == 0 {
        return Err(io_err(PHASE, db.display().to_string())(
            std::io::Error::other("the restored member database is empty"),
        ));
    }
    Ok(ToolRun {
        tool: name,
        timed: Timed::new(revisions, file_len(file)?, secs),
        written_bytes,
    })
}

/// The tool that reads snapshot files: `etcdutl` where installed (etcd 3.5 moved
/// `snapshot restore` and `status` there), `etcdctl` otherwise (Debian's etcd 3.4).
async fn snapshot_tool() -> &'static str {
    let found = tokio::task::spawn_blocking(|| {
        Command::new("etcdutl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .await
    .unwrap_or(false);
    if found { "etcdutl" } else { "etcdctl" }
}

/// Key revisions in a snapshot file (`snapshot status`'s `totalKey`).
async fn snapshot_keys(file: &Path) -> Result<u64> {
    let tool = snapshot_tool().await;
    let mut cmd = Command::new(tool);
    cmd.args(["snapshot", "status", "-w", "json"]).arg(file);
    let what = format!("{tool} snapshot status");
    let out = output(cmd, &what).await?;
    let status: serde_json::Value =
        serde_json::from_slice(&out).map_err(|source| BenchError::Json {
            phase: PHASE,
            object: what.clone(),
            source,
        })?;
    status["totalKey"].as_u64().ok_or_else(|| {
        io_err(PHASE, what)(std::io::Error::other(format!("no totalKey in {status}")))
    })
}

/// Run `cmd` to completion off the async workers; its wall time.
async fn run_timed(cmd: Command, what: &str) -> Result<Duration> {
    let started = Instant::now();
    output(cmd, what).await?;
    Ok(started.elapsed())
}

/// Run `cmd` (with `ETCDCTL_API=3`, which etcd 3.3 and older need) and return its stdout;
/// a failure names the command and carries its stderr.
async fn output(mut cmd: Command, what: &str) -> Result<Vec<u8>> {
    cmd.env("ETCDCTL_API", "3");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| BenchError::Task {
            phase: PHASE,
            detail: e.to_string(),
        })?
        .map_err(io_err(PHASE, what.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or("").to_string();
        return Err(io_err(PHASE, what.to_string())(std::io::Error::other(
            format!("exited with {}: {last}", out.status),
        )));
    }
    Ok(out.stdout)
}

fn file_len(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_err(PHASE, path.display().to_string()))
}

/// An etcd client error as an engine error of the phase.
fn etcd_err(what: &'static str) -> impl FnOnce(etcd_client::Error) -> BenchError {
    move |e| BenchError::Engine {
        phase: PHASE,
        source: EngineError::Backend(format!("etcd {what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compaction reaches the current revision (older revisions are gone), every member
    /// still answers after its defragmentation, and dropping the private cluster stops
    /// every member.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compact_and_defragment_removes_history_on_every_member() {
        let cluster = PrivateCluster::start("test", 1 << 20, 128)
            .await
            .expect("private cluster");
        let urls: Vec<String> = cluster.endpoints.iter().map(|e| endpoint_url(e)).collect();
        let mut client = etcd_client::Client::connect(urls, None)
            .await
            .expect("connect");
        let mut first = 0;
        for v in ["a", "b", "c"] {
            let put = client.put("k", v, None).await.expect("put");
            if first == 0 {
                first = put.header().expect("header").revision();
            }
        }
        let revision = compact_and_defragment(&cluster.endpoints)
            .await
            .expect("compact and defragment");
        assert!(revision >= first + 2, "{revision} vs first put at {first}");
        for endpoint in &cluster.endpoints {
            let mut member = etcd_client::Client::connect([endpoint_url(endpoint)], None)
                .await
                .expect("connect to the member");
            let old = member
                .get(
                    "k",
                    Some(etcd_client::GetOptions::new().with_revision(first)),
                )
                .await
                .expect_err("the first put's revision is compacted away");
            assert!(old.to_string().contains("compacted"), "{old}");
            let now = member.get("k", None).await.expect("current value");
            assert_eq!(now.kvs()[0].value(), b"c");
            assert!(db_size(endpoint).await.expect("db size") > 0);
        }
        // A second run finds nothing older to compact and still succeeds.
        assert!(compact_and_defragment(&cluster.endpoints).await.is_ok());
        let endpoints = cluster.endpoints.clone();
        drop(client);
        drop(cluster);
        for endpoint in &endpoints {
            assert!(
                std::net::TcpStream::connect(endpoint.as_str()).is_err(),
                "a member still listens on {endpoint}"
            );
        }
    }
}
