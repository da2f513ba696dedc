//! Running the snapshot and the restore each in a process of its own, so that each peak
//! memory figure belongs to that work alone: in one process, a phase's peak can hide in
//! memory an earlier phase left resident (allocator free lists, an engine's cache).
//!
//! The parent starts [`ChildCommand`] with a [`ChildSpec`] as its last argument (JSON);
//! the program hands that argument to [`child_main`] and prints the returned
//! [`ChildReport`] as one JSON line on stdout. The `tito` CLI does this as
//! `tito bench --child SPEC`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tito_backup::{BackupConfig, BackupService, Repository};
use tito_capture::Db;
use tito_engine::Engine;
use tito_engine::redb::RedbEngine;

use crate::error::{BenchError, Ctx, Result, store_err};
use crate::memory::{PeakMemory, status_kib};
use crate::report::Timed;

/// How to start this program again in child mode: `program args... SPEC`.
#[derive(Clone, Debug)]
pub struct ChildCommand {
    /// The executable (usually `std::env::current_exe()`).
    pub program: PathBuf,
    /// Arguments before the spec (for `tito`: `["bench", "--child"]`).
    pub args: Vec<String>,
}

/// The work one child does.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum ChildSpec {
    /// `BackupService::snapshot` of the redb file `engine` into the store at `store`.
    Snapshot {
        /// The source database file (it must exist and not be open elsewhere).
        engine: PathBuf,
        /// Store URL.
        store: String,
        /// redb page cache in bytes (`None`: the engine's default).
        cache_bytes: Option<usize>,
        /// zstd level of the chunks (`None`: `BackupConfig`'s default).
        level: Option<i32>,
    },
    /// `tito_restore::restore` of the latest point of `store` into a new redb file.
    Restore {
        /// The target database file (created; it must not exist).
        engine: PathBuf,
        /// Store URL.
        store: String,
        /// redb page cache in bytes (`None`: the engine's default).
        cache_bytes: Option<usize>,
    },
}

/// What a child measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildReport {
    /// Pairs handled, raw bytes, wall time of the work (not of process start).
    pub pairs: u64,
    /// Raw key + value bytes of the dataset.
    pub raw_bytes: u64,
    /// Seconds of the work.
    pub secs: f64,
    /// Bytes uploaded (snapshot) or downloaded (restore).
    pub bytes: u64,
    /// Chunks written (snapshot) or loaded (restore).
    pub chunks: u64,
    /// The child's resident memory at start and its peak (the whole process's).
    pub memory: Option<PeakMemory>,
    /// CPU seconds (user + system, all threads) the work took: less disturbed than wall
    /// time by other load on a shared machine.
    #[serde(default)]
    pub cpu_secs: Option<f64>,
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_now() -> Option<f64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(u.ru_utime) + secs(u.ru_stime))
}

impl ChildReport {
    /// The work as a [`Timed`].
    pub fn timed(&self) -> Timed {
        Timed {
            pairs: self.pairs,
            bytes: self.raw_bytes,
            secs: self.secs,
        }
    }
}

const PHASE: &str = "child";

/// The backup settings of Tito's snapshot: the defaults, with `level` if given.
pub(crate) fn snapshot_config(level: Option<i32>) -> BackupConfig {
    let mut config = BackupConfig::default();
    if let Some(l) = level {
        config.compression_level = l;
    }
    config
}

async fn open(engine: &PathBuf, cache_bytes: Option<usize>) -> Result<Arc<dyn Engine>> {
    let e = match cache_bytes {
        Some(c) => RedbEngine::open_with_cache(engine, c).await,
        None => RedbEngine::open(engine).await,
    };
    Ok(Arc::new(e.ctx(PHASE)?))
}

async fn store(url: &str) -> Result<Arc<dyn tito_store::Store>> {
    tito_store::open(url)
        .await
        .map_err(store_err(PHASE, url.to_string()))
}

/// Do the work `spec` (JSON) names in this process and measure it.
pub async fn child_main(spec: &str) -> Result<ChildReport> {
    let spec: ChildSpec = serde_json::from_str(spec).map_err(|source| BenchError::Json {
        phase: PHASE,
        object: "child spec".into(),
        source,
    })?;
    let start_rss = status_kib("VmRSS:").unwrap_or(0) * 1024;
    let cpu_start = cpu_now();
    let mut report = match spec {
        ChildSpec::Snapshot {
            engine,
            store: url,
            cache_bytes,
            level,
        } => {
            let source = open(&engine, cache_bytes).await?;
            let db = Db::open(source.clone()).await.ctx(PHASE)?;
            let service = BackupService::new(db, store(&url).await?, snapshot_config(level))
                .await
                .ctx(PHASE)?;
            let snap = service.snapshot().await.ctx(PHASE)?;
            drop(service);
            source.close().await.ctx(PHASE)?;
            ChildReport {
                pairs: snap.pairs,
                raw_bytes: snap.raw_bytes,
                secs: Duration::from_millis(snap.elapsed_ms).as_secs_f64(),
                bytes: snap.bytes,
                chunks: snap.chunks,
                memory: None,
                cpu_secs: None,
            }
        }
        ChildSpec::Restore {
            engine,
            store: url,
            cache_bytes,
        } => {
            if engine.exists() {
                return Err(BenchError::Options(format!(
                    "restore target {} exists",
                    engine.display()
                )));
            }
            let target = open(&engine, cache_bytes).await?;
            let repo = Repository::open(store(&url).await?).await.ctx(PHASE)?;
            let (restored, took) = crate::tito::restore_latest(
                &repo,
                target.clone(),
                &tito_restore::NoProgress,
                PHASE,
            )
            .await?;
            let secs = took.as_secs_f64();
            target.close().await.ctx(PHASE)?;
            ChildReport {
                pairs: restored.state_entries_restored,
                raw_bytes: 0,
                secs,
                bytes: restored.bytes_downloaded,
                chunks: restored.plan.snapshot.chunks.len() as u64,
                memory: None,
                cpu_secs: None,
            }
        }
    };
    report.cpu_secs = cpu_start.zip(cpu_now()).map(|(a, b)| b - a);
    report.memory = status_kib("VmHWM:").map(|peak| PeakMemory {
        start_rss,
        peak_rss: peak * 1024,
        reset: true,
        isolated: true,
    });
    Ok(report)
}

/// Run `spec` in a child started by `cmd` and return what it measured.
pub(crate) async fn run(cmd: &ChildCommand, spec: &ChildSpec) -> Result<ChildReport> {
    let json = serde_json::to_string(spec).map_err(|source| BenchError::Json {
        phase: PHASE,
        object: "child spec".into(),
        source,
    })?;
    let program = cmd.program.clone();
    let args = cmd.args.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(&args)
            .arg(&json)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .map_err(|e| BenchError::Task {
        phase: PHASE,
        detail: e.to_string(),
    })?
    .map_err(crate::error::io_err(
        PHASE,
        cmd.program.display().to_string(),
    ))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(BenchError::Child {
            detail: format!(
                "{} exited with {}: {}",
                cmd.program.display(),
                output.status,
                stderr.trim()
            ),
        });
    }
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let line = line.ok_or_else(|| BenchError::Child {
        detail: "the child printed no report".into(),
    })?;
    serde_json::from_str(line).map_err(|source| BenchError::Json {
        phase: PHASE,
        object: "child report".into(),
        source,
    })
}
