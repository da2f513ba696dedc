//! Continuous backup running next to writes, Tito against SQLite + Litestream: write
//! throughput with and without the backup, and RPO lag at a paced rate (issue 14).
//!
//! Every run starts from a fresh database holding the first 10,000 pairs of the
//! dataset (the RPO phase's keyspace) and writes the RPO phase's workload: one put per
//! transaction of a pair of the dataset's shape (a random key of those, its value at the
//! next version), from **one writer** in the bench's process for both systems:
//! - Tito: a redb engine (`Durability::Immediate`: every commit fsynced) under
//!   [`tito_capture::Db`], continuous mode shipping in the same process to the run's store
//!   (a local directory by default) every `--rpo-interval-ms`;
//! - SQLite: the `rusqlite` crate (SQLite compiled in, `bundled`) on the same
//!   `kv (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID` table as the full-backup rows,
//!   WAL mode with `synchronous=FULL` (every commit's WAL frames fsynced, the same
//!   durability as redb's), one `INSERT OR REPLACE` per transaction; `litestream
//!   replicate` runs as a sidecar process with a file replica, its `monitor-interval` and
//!   `sync-interval` both set to Tito's shipping interval.
//!
//! **Write throughput**: unpaced commits for `--rpo-secs` seconds, four runs in turn:
//! redb alone (raw engine transactions, no capture), Tito with continuous backup, SQLite
//! alone, SQLite with Litestream. Each system's overhead is its rate with backup over its
//! rate alone; the ratio is Tito's rate with backup over SQLite's with Litestream (above 1,
//! Tito wrote more).
//!
//! **RPO lag**: a paced writer at `--rpo-rate` transactions per second for `--rpo-secs`
//! seconds; every 20 ms a sample of the lag = commit time of the newest committed
//! transaction − commit time of the newest transaction in the replica (0 when the replica
//! has everything): the window of commits a crash at that instant would lose. Tito's side
//! is the RPO phase's own measurement ([`crate::rpo::measure`], whose shipped LSN and its
//! commit time come from the service's stats). Litestream's replica is read back the only
//! way that tells which transactions it really holds:
//! 1. each transaction's value starts with its sequence number (8 bytes, big-endian, in
//!    place of the value's first 8 bytes, so its length is the dataset's; the preloaded
//!    rows carry 0), and the writer keeps every sequence number's commit time;
//! 2. at each sample, after reading the newest committed sequence number, the replica
//!    directory is listed; when its files changed since the last sample, every file is
//!    hard-linked into a directory of its own — a copy of the replica exactly as it was
//!    (Litestream's file replica writes `NAME.tmp` and renames it, so a listed `.ltx`
//!    file is complete and never rewritten; `.tmp` files are left out);
//! 3. after the run, each such copy is restored with `litestream restore -o DB
//!    file://COPY`, and the largest sequence number in the restored table is what the
//!    replica held at those samples.
//!
//! Restoring after the run keeps the restores' work off the writer's machine time; a last
//! copy, taken once the writer stopped and Litestream had time to catch up, must restore
//! every committed transaction, which checks the method end to end.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tito_backup::now_ms;
use tito_capture::Db;

use super::litestream::yaml_str;
use super::{PHASE, mismatch};
use crate::dataset::{Dataset, Rng};
use crate::env::BenchEnv;
use crate::error::{BenchError, Ctx, Result, io_err};
use crate::rpo::{self, Continuous, RPO_KEYS, Rpo, SAMPLE_EVERY, percentile};

/// Rows per transaction while preloading a SQLite database.
const PRELOAD_BATCH: u64 = 100_000;
/// How long Litestream may take to write its first replica file, or to catch up at the end.
const LITESTREAM_WAIT: Duration = Duration::from_secs(60);

/// Rate, duration and shipping interval of the runs (the RPO phase's options).
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Transactions per second of the paced (RPO) writer.
    pub rate: u64,
    /// Seconds each run writes.
    pub secs: u64,
    /// Tito's shipping interval and Litestream's monitor and sync intervals (ms).
    pub interval_ms: u64,
}

/// One unpaced write run.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct WriteRun {
    /// Transactions committed.
    pub commits: u64,
    /// Seconds the writer ran.
    pub secs: f64,
    /// Commits per second.
    pub tx_per_s: f64,
}

impl WriteRun {
    fn new(commits: u64, took: Duration) -> Self {
        let secs = took.as_secs_f64();
        WriteRun {
            commits,
            secs,
            tx_per_s: commits as f64 / secs.max(1e-9),
        }
    }
}

/// Write throughput of both systems, with and without their backup running.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// Raw redb transactions, no capture, no backup.
    pub redb_alone: WriteRun,
    /// Tito transactions on redb with continuous backup shipping in process.
    pub tito_backup: WriteRun,
    /// SQLite alone (WAL, `synchronous=FULL`).
    pub sqlite_alone: WriteRun,
    /// SQLite with `litestream replicate` running as a sidecar.
    pub sqlite_litestream: WriteRun,
    /// Tito with backup over SQLite with Litestream, in tx/s (above 1: Tito wrote more).
    pub ratio: f64,
}

/// Litestream's RPO lag, measured as described in the module doc.
#[derive(Clone, Debug, Serialize)]
pub struct LitestreamLag {
    /// Transactions per second asked for.
    pub target_rate: u64,
    /// Transactions per second committed.
    pub achieved_rate: f64,
    /// Transactions committed.
    pub commits: u64,
    /// Seconds the writer ran.
    pub duration_secs: u64,
    /// Litestream's monitor and sync intervals (ms).
    pub interval_ms: u64,
    /// Lag samples taken.
    pub samples: usize,
    /// Distinct replica states copied and restored (the last, caught-up one included).
    pub restores: usize,
    /// Median lag (ms).
    pub p50_ms: u64,
    /// 99th percentile lag (ms).
    pub p99_ms: u64,
    /// Largest lag seen (ms).
    pub max_ms: u64,
}

/// Tito's lag over Litestream's (below 1, Tito's window of losable commits is shorter).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct LagRatios {
    /// Median over median.
    pub p50: f64,
    /// 99th percentile over 99th percentile.
    pub p99: f64,
    /// Largest over largest.
    pub max: f64,
}

impl LagRatios {
    /// Tito's `tito` lags over Litestream's `lite` (a 0 ms denominator counts as 1 ms).
    pub fn of(tito: &Rpo, lite: &LitestreamLag) -> Self {
        let r = |t: u64, l: u64| t as f64 / (l.max(1)) as f64;
        LagRatios {
            p50: r(tito.p50_ms, lite.p50_ms),
            p99: r(tito.p99_ms, lite.p99_ms),
            max: r(tito.max_ms, lite.max_ms),
        }
    }
}

/// Everything this module measured.
#[derive(Clone, Debug, Serialize)]
pub struct ContinuousFigures {
    /// Writers, interval and table as described in the module doc.
    pub throughput: Throughput,
    /// Tito's RPO lag (the RPO phase's measurement, on a fresh engine and store).
    pub tito_lag: Rpo,
    /// Litestream's RPO lag at the same rate, duration and interval.
    pub litestream_lag: LitestreamLag,
    /// Tito's lag over Litestream's.
    pub lag_ratios: LagRatios,
}

/// Run every measurement of the module doc; `scratch` holds the SQLite databases and
/// replicas.
pub async fn measure(
    env: &BenchEnv,
    dataset: &Dataset,
    load: Load,
    scratch: &Path,
) -> Result<ContinuousFigures> {
    let small = Dataset {
        keys: dataset.keys.min(RPO_KEYS),
        ..*dataset
    };
    let secs = Duration::from_secs(load.secs.max(1));

    let redb_alone = tito_writes(env, small, secs, None).await?;
    let tito_backup = tito_writes(env, small, secs, Some(load.interval_ms)).await?;
    let dir = scratch.to_path_buf();
    let sqlite = blocking(move || {
        let alone = sqlite_writes(&dir.join("alone"), small, secs, None)?;
        let with = sqlite_writes(&dir.join("litestream"), small, secs, Some(load.interval_ms))?;
        Ok((alone, with))
    })
    .await?;
    let (sqlite_alone, sqlite_litestream) = sqlite;
    let throughput = Throughput {
        redb_alone,
        tito_backup,
        sqlite_alone,
        sqlite_litestream,
        ratio: tito_backup.tx_per_s / sqlite_litestream.tx_per_s.max(1e-9),
    };

    let engine = env.engine("peers-rpo").await?;
    let store = env.store("peers-rpo").await?;
    let tito_lag = rpo::measure(
        dataset,
        engine.clone(),
        store,
        load.rate,
        load.secs,
        load.interval_ms,
    )
    .await?;
    env.drop_engine(engine).await;
    let dir = scratch.join("rpo");
    let litestream_lag = blocking(move || litestream_lag(&dir, small, load)).await?;
    let lag_ratios = LagRatios::of(&tito_lag, &litestream_lag);
    Ok(ContinuousFigures {
        throughput,
        tito_lag,
        litestream_lag,
        lag_ratios,
    })
}

/// The report's rows for `c`: throughput with and without backup for each system, then
/// each system's RPO lag, Tito's after Litestream's with Tito / Litestream.
pub fn rows(c: &ContinuousFigures) -> Vec<[String; 3]> {
    let t = &c.throughput;
    let (tl, ll, r) = (&c.tito_lag, &c.litestream_lag, &c.lag_ratios);
    let change = |with: &WriteRun, alone: &WriteRun| {
        (with.tx_per_s / alone.tx_per_s.max(1e-9) - 1.0) * 100.0
    };
    let lag = |p50: u64, p99: u64, max: u64| format!("p50 {p50} / p99 {p99} / max {max} ms");
    vec![
        [
            "Litestream write throughput (backup running)".into(),
            format!("{:.0} tx/s", t.sqlite_litestream.tx_per_s),
            format!(
                "1 put per txn, 1 writer in process (rusqlite; WAL, synchronous=FULL), \
                 litestream replicate as a sidecar (monitor + sync every {} ms), {:.1} s; \
                 SQLite alone {:.0} tx/s ({:+.1}%)",
                ll.interval_ms,
                t.sqlite_litestream.secs,
                t.sqlite_alone.tx_per_s,
                change(&t.sqlite_litestream, &t.sqlite_alone)
            ),
        ],
        [
            "Tito write throughput (backup running)".into(),
            format!("{:.0} tx/s", t.tito_backup.tx_per_s),
            format!(
                "same puts, 1 writer, redb, continuous backup in process (every {} ms), \
                 {:.1} s; redb alone {:.0} tx/s ({:+.1}%); Tito / Litestream {:.2}× \
                 (above 1: Tito wrote more)",
                tl.interval_ms,
                t.tito_backup.secs,
                t.redb_alone.tx_per_s,
                change(&t.tito_backup, &t.redb_alone),
                t.ratio
            ),
        ],
        [
            format!("Litestream RPO lag at {} tx/s", ll.target_rate),
            lag(ll.p50_ms, ll.p99_ms, ll.max_ms),
            format!(
                "{:.0} tx/s achieved, 1 writer, {} s; {} samples every {} ms; replica \
                 copies restored with litestream restore: {}",
                ll.achieved_rate,
                ll.duration_secs,
                ll.samples,
                SAMPLE_EVERY.as_millis(),
                ll.restores
            ),
        ],
        [
            format!("Tito RPO lag at {} tx/s (same method)", tl.target_rate),
            lag(tl.p50_ms, tl.p99_ms, tl.max_ms),
            format!(
                "{:.0} tx/s achieved, {} s; {} samples; {} segments shipped; Tito / \
                 Litestream p50 {:.2}×, p99 {:.2}×, max {:.2}×",
                tl.achieved_rate, tl.duration_secs, tl.samples, tl.segments, r.p50, r.p99, r.max
            ),
        ],
    ]
}

/// `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BenchError::Task {
            phase: PHASE,
            detail: e.to_string(),
        })?
}

/// Unpaced single-writer commits for `secs` on a fresh redb engine holding `small`: raw
/// engine transactions when `backup` is `None`, else Tito transactions with continuous
/// mode shipping every `backup` ms to a fresh store.
async fn tito_writes(
    env: &BenchEnv,
    small: Dataset,
    secs: Duration,
    backup: Option<u64>,
) -> Result<WriteRun> {
    let name = if backup.is_some() {
        "peers-tito-writes"
    } else {
        "peers-redb-writes"
    };
    let engine = env.engine(name).await?;
    small.load(engine.as_ref(), 100_000).await?;
    let mut rng = Rng::new(small.seed ^ 0x7270_6f00);
    let run = match backup {
        None => {
            let started = Instant::now();
            let mut n = 0u64;
            while started.elapsed() < secs {
                let i = rng.below(small.keys);
                let tx = engine.begin().await.ctx(PHASE)?;
                tx.put(Dataset::key(i), small.value(i, n + 1)).ctx(PHASE)?;
                tx.commit().await.ctx(PHASE)?;
                n += 1;
            }
            WriteRun::new(n, started.elapsed())
        }
        Some(interval_ms) => {
            let db = Db::open(engine.clone()).await.ctx(PHASE)?;
            let store = env.store(name).await?;
            let continuous = Continuous::start(db.clone(), store, interval_ms, PHASE).await?;
            let written = tito_loop(&db, small, &mut rng, secs).await;
            let shipped = continuous.stop(PHASE).await;
            let run = written?;
            shipped?;
            run
        }
    };
    env.drop_engine(engine).await;
    Ok(run)
}

/// Tito transactions of one put each, for `secs`.
async fn tito_loop(db: &Db, small: Dataset, rng: &mut Rng, secs: Duration) -> Result<WriteRun> {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < secs {
        let i = rng.below(small.keys);
        let (key, value) = (Dataset::key(i), small.value(i, n + 1));
        db.transaction(|txn| {
            let (key, value) = (key.clone(), value.clone());
            async move { txn.put(key, value) }
        })
        .await
        .ctx(PHASE)?;
        n += 1;
    }
    Ok(WriteRun::new(n, started.elapsed()))
}

/// A SQLite error as the phase's I/O error on `what`.
fn sql_err(what: &str) -> impl FnOnce(rusqlite::Error) -> BenchError + '_ {
    move |e| io_err(PHASE, what)(std::io::Error::other(e))
}

/// A fresh SQLite database at `dir/db.sqlite` in WAL mode with `synchronous=FULL`, holding
/// `small`'s pairs (each value's first 8 bytes zeroed when `tagged`).
fn sqlite_fresh(dir: &Path, small: Dataset, tagged: bool) -> Result<(PathBuf, Connection)> {
    std::fs::create_dir_all(dir).map_err(io_err(PHASE, dir.display().to_string()))?;
    let path = dir.join("db.sqlite");
    let err = sql_err("sqlite setup");
    let conn = Connection::open(&path).map_err(sql_err("sqlite open"))?;
    let setup = || -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;")?;
        let mut start = 0;
        while start < small.keys {
            let end = (start + PRELOAD_BATCH).min(small.keys);
            conn.execute_batch("BEGIN")?;
            {
                let mut insert = conn.prepare_cached("INSERT INTO kv VALUES (?1, ?2)")?;
                for (key, mut value) in small.pairs(start, end) {
                    if tagged {
                        tag(&mut value, 0);
                    }
                    insert.execute(params![key_str(&key), value])?;
                }
            }
            conn.execute_batch("COMMIT")?;
            start = end;
        }
        Ok(())
    };
    setup().map_err(err)?;
    Ok((path, conn))
}

/// A dataset key as the table's TEXT (keys are ASCII).
fn key_str(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Put `seq` in place of `value`'s first 8 bytes (big-endian, so blob order is seq order).
fn tag(value: &mut Vec<u8>, seq: u64) {
    if value.len() < 8 {
        value.resize(8, 0);
    }
    value[..8].copy_from_slice(&seq.to_be_bytes());
}

/// One SQLite transaction: one `INSERT OR REPLACE`.
fn sqlite_put(conn: &Connection, key: &[u8], value: &[u8]) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO kv VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![key_str(key), value]))
        .map(|_| ())
        .map_err(sql_err("sqlite insert"))
}

/// Unpaced single-writer SQLite commits for `secs` on a fresh database in `dir` holding
/// `small`, with Litestream replicating it when `litestream` gives its interval (ms).
fn sqlite_writes(
    dir: &Path,
    small: Dataset,
    secs: Duration,
    litestream: Option<u64>,
) -> Result<WriteRun> {
    let (path, conn) = sqlite_fresh(dir, small, false)?;
    let sidecar = match litestream {
        Some(ms) => Some(Sidecar::start(dir, &path, ms)?),
        None => None,
    };
    let mut rng = Rng::new(small.seed ^ 0x7270_6f00);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < secs {
        let i = rng.below(small.keys);
        sqlite_put(&conn, &Dataset::key(i), &small.value(i, n + 1))?;
        n += 1;
    }
    let run = WriteRun::new(n, started.elapsed());
    if let Some(s) = sidecar {
        s.stop()?;
    }
    Ok(run)
}

/// `litestream replicate` on one database with a file replica, as a child process.
struct Sidecar {
    child: Child,
    replica: PathBuf,
    log: PathBuf,
}

impl Sidecar {
    /// Start replicating `db` into `dir/replica` (monitor and sync every `interval_ms`)
    /// and wait for the replica's first file.
    fn start(dir: &Path, db: &Path, interval_ms: u64) -> Result<Self> {
        let replica = dir.join("replica");
        let config = dir.join("litestream.yml");
        let ms = interval_ms.max(1);
        std::fs::write(
            &config,
            format!(
                "dbs:\n  - path: {}\n    monitor-interval: {ms}ms\n    replicas:\n      \
                 - type: file\n        path: {}\n        sync-interval: {ms}ms\n",
                yaml_str(db),
                yaml_str(&replica)
            ),
        )
        .map_err(io_err(PHASE, config.display().to_string()))?;
        let log = dir.join("litestream.log");
        let out = std::fs::File::create(&log).map_err(io_err(PHASE, log.display().to_string()))?;
        let err = out
            .try_clone()
            .map_err(io_err(PHASE, log.display().to_string()))?;
        let child = Command::new("litestream")
            .args(["replicate", "-config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err(PHASE, "litestream replicate"))?;
        let mut sidecar = Sidecar {
            child,
            replica,
            log,
        };
        let from = Instant::now();
        while replica_files(&sidecar.replica).is_empty() {
            if let Some(status) = sidecar.child.try_wait().ok().flatten() {
                return Err(sidecar.failed(&format!("exited with {status}")));
            }
            if from.elapsed() > LITESTREAM_WAIT {
                return Err(sidecar.failed("wrote no replica file in 60 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(sidecar)
    }

    /// An error naming `what` happened and the log's last line.
    fn failed(&self, what: &str) -> BenchError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last = log.trim().lines().last().unwrap_or("").to_string();
        io_err(PHASE, "litestream replicate")(std::io::Error::other(format!("{what}: {last}")))
    }

    /// Stop the process; an error if it had died on its own.
    fn stop(mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().ok().flatten() {
            return Err(self.failed(&format!("exited during the run with {status}")));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Complete files under `replica` (relative paths; `.tmp` files left out), sorted.
fn replica_files(replica: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(root, &p, out),
                Ok(t) if t.is_file() && p.extension().is_none_or(|x| x != "tmp") => {
                    if let Ok(rel) = p.strip_prefix(root) {
                        out.insert(rel.to_path_buf());
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(replica, replica, &mut out);
    out
}

/// Hard-link `files` of `replica` into `copy`: the replica as it is now. A file gone
/// since it was listed (retention) is left out, as it would be from a listing now.
fn link_copy(replica: &Path, files: &BTreeSet<PathBuf>, copy: &Path) -> Result<()> {
    for rel in files {
        let to = copy.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(PHASE, parent.display().to_string()))?;
        }
        match std::fs::hard_link(replica.join(rel), &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(PHASE, to.display().to_string())(e)),
        }
    }
    Ok(())
}

/// Copies of a replica directory, one per distinct listing.
struct Copier {
    replica: PathBuf,
    copies: PathBuf,
    listed: Option<BTreeSet<PathBuf>>,
    count: usize,
}

impl Copier {
    /// The index of a copy of the replica as it is now: a new copy when its files changed
    /// since the last one, else the last one.
    fn take(&mut self) -> Result<usize> {
        let files = replica_files(&self.replica);
        if self.listed.as_ref() != Some(&files) || self.count == 0 {
            link_copy(&self.replica, &files, &self.path(self.count))?;
            self.count += 1;
            self.listed = Some(files);
        }
        Ok(self.count - 1)
    }

    /// Where copy `i` is.
    fn path(&self, i: usize) -> PathBuf {
        self.copies.join(i.to_string())
    }
}

/// The largest sequence number in the replica copy at `copy`, restored into `out`.
fn restored_seq(copy: &Path, out: &Path) -> Result<u64> {
    let status = Command::new("litestream")
        .arg("restore")
        .arg("-o")
        .arg(out)
        .arg(format!("file://{}", copy.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(io_err(PHASE, "litestream restore"))?;
    if !status.status.success() {
        let stderr = String::from_utf8_lossy(&status.stderr);
        let last = stderr.trim().lines().last().unwrap_or("").to_string();
        return Err(io_err(PHASE, "litestream restore")(std::io::Error::other(
            format!("exited with {}: {last}", status.status),
        )));
    }
    let conn = Connection::open(out).map_err(sql_err("sqlite open restored"))?;
    let max: Option<Vec<u8>> = conn
        .query_row("SELECT max(substr(value, 1, 8)) FROM kv", [], |r| r.get(0))
        .optional()
        .map_err(sql_err("sqlite max(seq)"))?
        .flatten();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", out.display()));
    }
    Ok(max
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Litestream's lag: the paced writer, the sampler and the restores of the module doc.
fn litestream_lag(dir: &Path, small: Dataset, load: Load) -> Result<LitestreamLag> {
    let (path, conn) = sqlite_fresh(dir, small, true)?;
    let sidecar = Sidecar::start(dir, &path, load.interval_ms)?;
    let rate = load.rate.max(1);
    let duration = Duration::from_secs(load.secs.max(1));
    let newest = Arc::new(AtomicU64::new(0));

    let start_ms = now_ms();
    let started = Instant::now();
    let writer = {
        let newest = newest.clone();
        std::thread::spawn(move || -> Result<Vec<u64>> {
            // times[seq] = commit time (ms) of transaction `seq`; seq 0 is the preload.
            let mut times = vec![start_ms];
            let mut rng = Rng::new(small.seed ^ 0x7270_6f00);
            let mut n = 0u64;
            loop {
                let due = Duration::from_secs_f64(n as f64 / rate as f64);
                if due >= duration {
                    return Ok(times);
                }
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                let seq = n + 1;
                let i = rng.below(small.keys);
                let mut value = small.value(i, seq);
                tag(&mut value, seq);
                sqlite_put(&conn, &Dataset::key(i), &value)?;
                times.push(now_ms());
                newest.store(seq, Ordering::Release);
                n += 1;
            }
        })
    };

    // (newest committed seq, index of the replica copy) per sample.
    let mut samples: Vec<(u64, usize)> = Vec::new();
    let mut copier = Copier {
        replica: sidecar.replica.clone(),
        copies: dir.join("copies"),
        listed: None,
        count: 0,
    };
    let mut next = started + SAMPLE_EVERY;
    while started.elapsed() < duration {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next += SAMPLE_EVERY;
        let seq = newest.load(Ordering::Acquire);
        samples.push((seq, copier.take()?));
    }
    let times = writer.join().map_err(|_| BenchError::Task {
        phase: PHASE,
        detail: "the SQLite writer panicked".into(),
    })??;
    let elapsed = started.elapsed().as_secs_f64();
    let commits = times.len() as u64 - 1;

    // Restore every copy; then wait for a copy holding every commit (the end-to-end check).
    let restored_db = dir.join("restored.db");
    let mut held = Vec::with_capacity(copier.count);
    for c in 0..copier.count {
        held.push(restored_seq(&copier.path(c), &restored_db)?);
    }
    let caught_up_from = Instant::now();
    loop {
        let before = copier.count;
        let last = copier.take()?;
        if last >= before {
            let seq = restored_seq(&copier.path(last), &restored_db)?;
            held.push(seq);
            if seq == commits {
                break;
            }
            if seq > commits {
                return Err(mismatch(format!(
                    "litestream's replica holds transaction {seq}; only {commits} were committed"
                )));
            }
        }
        if caught_up_from.elapsed() > LITESTREAM_WAIT {
            return Err(mismatch(format!(
                "litestream's replica holds {} of {commits} committed transactions 60 s \
                 after the writer stopped",
                held.last().copied().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(load.interval_ms.clamp(10, 500)));
    }
    sidecar.stop()?;
    if held.windows(2).any(|w| w[1] < w[0]) {
        return Err(mismatch(format!(
            "litestream's replica went back in time: restored sequence numbers {held:?}"
        )));
    }

    let mut lags: Vec<u64> = samples
        .iter()
        .map(|&(seq, copy)| {
            let in_replica = held[copy];
            if seq > in_replica {
                let t = |s: u64| times[s as usize];
                t(seq).saturating_sub(t(in_replica).max(start_ms))
            } else {
                0
            }
        })
        .collect();
    lags.sort_unstable();
    Ok(LitestreamLag {
        target_rate: load.rate,
        achieved_rate: commits as f64 / elapsed.max(1e-9),
        commits,
        duration_secs: load.secs.max(1),
        interval_ms: load.interval_ms,
        samples: lags.len(),
        restores: held.len(),
        p50_ms: percentile(&lags, 50.0),
        p99_ms: percentile(&lags, 99.0),
        max_ms: lags.last().copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::{replica_files, tag};

    #[test]
    fn tags_keep_the_length_and_order() {
        let mut a = vec![b'x'; 20];
        tag(&mut a, 258);
        assert_eq!(a.len(), 20);
        assert_eq!(&a[..8], &258u64.to_be_bytes());
        let mut b = vec![b'y'; 20];
        tag(&mut b, 3);
        assert!(b[..8] < a[..8]);
        let mut short = vec![1u8; 3];
        tag(&mut short, 1);
        assert_eq!(short.len(), 8);
    }

    #[test]
    fn listings_leave_out_tmp_files() {
        let dir = tempfile::tempdir().unwrap();
        let l0 = dir.path().join("ltx/0");
        std::fs::create_dir_all(&l0).unwrap();
        std::fs::write(l0.join("01-01.ltx"), b"a").unwrap();
        std::fs::write(l0.join("02-02.ltx.tmp"), b"b").unwrap();
        let files = replica_files(dir.path());
        assert_eq!(files.len(), 1);
        assert!(files.contains(std::path::Path::new("ltx/0/01-01.ltx")));
    }
}
