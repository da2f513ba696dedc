//! The peers phase (`--phases peers`, issue 14): other databases' own backup tools on the
//! same generated dataset (`--keys` order rows), next to Tito's snapshot and restore of
//! the same rows on redb.
//!
//! Tito's side is not measured again here: the phase reuses the snapshot phase's figures
//! ([`crate::tito::SnapshotRestore`]; selecting `peers` runs that measurement too). Each
//! peer needs its tools on `PATH`; a peer whose tools are missing is skipped with a
//! message saying which tool is missing and how to install it
//! (`scripts/install-peers.sh`), and the rest of the run goes on.
//!
//! Peers:
//! - [`litestream`]: SQLite (`sqlite3` CLI) backed up by Litestream to a file replica;
//! - [`pgbackrest`]: a private PostgreSQL cluster backed up by pgBackRest (zstd).
//!
//! Every ratio is Tito's figure over the peer's (`tito / peer`): below 1, Tito took less
//! time or stored fewer bytes (for write throughput, above 1: Tito wrote more).
//!
//! With Litestream, the phase also measures write throughput with the backup running and
//! RPO lag at `--rpo-rate` for `--rpo-secs`, shipping every `--rpo-interval-ms`, for both
//! SQLite + Litestream and Tito ([`continuous`]).

pub mod continuous;
pub mod litestream;
pub mod pgbackrest;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dataset::Dataset;
use crate::env::BenchEnv;
use crate::error::{BenchError, Result, io_err};
use crate::options::BenchOptions;
use crate::tito::SnapshotRestore;

pub use litestream::LitestreamFigures;
pub use pgbackrest::PgBackRestFigures;

const PHASE: &str = "peers";

/// A peer the phase did not measure, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Skipped {
    /// The peer's name (`litestream`).
    pub peer: String,
    /// Why, as shown in the report: the missing tool and how to install it.
    pub reason: String,
}

/// Tito's figures for the same rows, taken from the snapshot phase.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TitoSide {
    /// Seconds of Tito's full snapshot of the dataset.
    pub snapshot_secs: f64,
    /// Seconds of Tito's restore into a fresh redb file (plan, verify, load).
    pub restore_secs: f64,
    /// Bytes the snapshot stored (chunks and manifest).
    pub snapshot_bytes: u64,
}

impl TitoSide {
    /// The figures of a snapshot phase's measurement.
    pub fn of(s: &SnapshotRestore) -> Self {
        TitoSide {
            snapshot_secs: s.snapshot.secs,
            restore_secs: s.restore.secs,
            snapshot_bytes: s.snapshot_bytes,
        }
    }
}

/// Tito over a peer for backup time, restore time and stored bytes.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Ratios {
    /// Tito's snapshot seconds / the peer's full backup seconds.
    pub backup_time: f64,
    /// Tito's restore seconds / the peer's restore seconds.
    pub restore_time: f64,
    /// Tito's snapshot bytes / the bytes the peer's backup stored.
    pub bytes: f64,
}

impl Ratios {
    /// Tito's figures over the peer's (`backup_secs`, `restore_secs`, `stored_bytes`).
    pub fn of(tito: &TitoSide, backup_secs: f64, restore_secs: f64, stored_bytes: u64) -> Self {
        Ratios {
            backup_time: tito.snapshot_secs / backup_secs.max(1e-12),
            restore_time: tito.restore_secs / restore_secs.max(1e-12),
            bytes: tito.snapshot_bytes as f64 / (stored_bytes as f64).max(1.0),
        }
    }
}

/// Everything the peers phase measured.
#[derive(Clone, Debug, Serialize)]
pub struct PeersFigures {
    /// Tito on redb, same rows (from the snapshot phase).
    pub tito: TitoSide,
    /// SQLite + Litestream, unless skipped.
    pub litestream: Option<LitestreamFigures>,
    /// PostgreSQL + pgBackRest, unless skipped.
    pub pgbackrest: Option<PgBackRestFigures>,
    /// Peers not measured, each with its reason.
    pub skipped: Vec<Skipped>,
}

/// Run every peer on `dataset`, next to Tito's `tito` figures of the same rows (the
/// continuous runs on `env`'s engines and stores, at `opts`' RPO rate, duration and
/// interval). A peer whose tools are missing is skipped (its message is also printed on
/// stderr); a peer whose tools are there but fail fails the phase.
pub async fn measure(
    env: &BenchEnv,
    opts: &BenchOptions,
    dataset: &Dataset,
    tito: &SnapshotRestore,
) -> Result<PeersFigures> {
    let tito = TitoSide::of(tito);
    let load = continuous::Load {
        rate: opts.rpo_rate,
        secs: opts.rpo_secs,
        interval_ms: opts.rpo_interval_ms,
    };
    let mut skipped = Vec::new();
    let litestream = match litestream::missing() {
        Some(reason) => {
            eprintln!("tito bench: peers: litestream skipped: {reason}");
            skipped.push(Skipped {
                peer: "litestream".into(),
                reason,
            });
            None
        }
        None => Some(litestream::measure(env, dataset, &tito, load).await?),
    };
    let pgbackrest = match pgbackrest::missing() {
        Some(reason) => {
            eprintln!("tito bench: peers: pgbackrest skipped: {reason}");
            skipped.push(Skipped {
                peer: "pgbackrest".into(),
                reason,
            });
            None
        }
        None => Some(pgbackrest::measure(dataset, &tito).await?),
    };
    Ok(PeersFigures {
        tito,
        litestream,
        pgbackrest,
        skipped,
    })
}

/// `name` as found on `PATH` (an executable file), like a shell would find it.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The first of `tools` missing from `PATH`, as a skip reason naming `installer`.
pub(crate) fn first_missing(tools: &[&str], installer: &str) -> Option<String> {
    tools.iter().find(|t| find_tool(t).is_none()).map(|t| {
        format!("`{t}` not found on PATH (install it with scripts/install-peers.sh: {installer})")
    })
}

/// Run `cmd` to completion off the async workers, stdin from `stdin` when given; its
/// stdout and wall time. A failure names the command and carries its stderr's last line.
pub(crate) async fn run_timed(
    mut cmd: Command,
    what: &str,
    stdin: Option<&Path>,
) -> Result<(Vec<u8>, Duration)> {
    let what = what.to_string();
    if let Some(path) = stdin {
        let f = File::open(path).map_err(io_err(PHASE, path.display().to_string()))?;
        cmd.stdin(Stdio::from(f));
    } else {
        cmd.stdin(Stdio::null());
    }
    let w = what.clone();
    let (out, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let out = cmd.output();
        (out, started.elapsed())
    })
    .await
    .map_err(|e| BenchError::Task {
        phase: PHASE,
        detail: e.to_string(),
    })?;
    let out = out.map_err(io_err(PHASE, w))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or("").to_string();
        return Err(io_err(PHASE, what)(std::io::Error::other(format!(
            "exited with {}: {last}",
            out.status
        ))));
    }
    Ok((out.stdout, took))
}

/// A peer's restored rows disagree with the dataset.
pub(crate) fn mismatch(detail: String) -> BenchError {
    BenchError::Mismatch {
        phase: PHASE,
        detail,
    }
}
