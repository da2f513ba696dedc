//! PostgreSQL backed up by pgBackRest, on the bench's dataset.
//!
//! A private cluster in a temp dir: `initdb`, then `pg_ctl start` on a Unix socket in
//! that dir only (no TCP listener) with WAL archiving to pgBackRest; as root every
//! PostgreSQL and pgBackRest command runs as the `postgres` user (`runuser`), which owns
//! the temp dir. The repository is a directory with `compress-type=zst` and `process-max`
//! = the machine's cores.
//!
//! Steps, in order:
//! 1. the dataset as one `COPY kv FROM STDIN` script (table `kv (key TEXT PRIMARY KEY,
//!    value BYTEA)`, hex bytea), loaded with `psql` (timed, for information);
//! 2. `pgbackrest stanza-create` (not timed), then `pgbackrest backup --type=full
//!    --start-fast`: the full backup (process wall time);
//! 3. bytes of every file in the repository (backup and the WAL archived for it);
//! 4. the source server stopped; `pgbackrest restore` into a new data directory, then
//!    `pg_ctl start` and `SELECT 1` polled until it answers: the restore time (recovery
//!    of the archived WAL included, as a person waiting for the database sees);
//! 5. the restored table's row count and key + value bytes, checked against the dataset.
//!
//! Every server the peer starts is stopped before it returns, error or not.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{PHASE, Ratios, TitoSide, first_missing, mismatch, run_timed};
use crate::dataset::Dataset;
use crate::env::dir_bytes;
use crate::error::{Result, io_err};
use crate::report::Timed;

/// Pairs generated at a time while writing the COPY script.
const GEN_BATCH: u64 = 50_000;
/// The user PostgreSQL runs as when this process is root.
const PG_USER: &str = "postgres";
/// How long the restored server may take to answer `SELECT 1`.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// What the pgBackRest peer measured.
#[derive(Clone, Debug, Serialize)]
pub struct PgBackRestFigures {
    /// `pgbackrest version`.
    pub version: String,
    /// `postgres --version`.
    pub postgres_version: String,
    /// `process-max` of the backup and restore (the machine's cores).
    pub process_max: usize,
    /// Loading the COPY script with `psql` (not a backup figure; for information).
    pub load: Timed,
    /// `pgbackrest backup --type=full --start-fast`: dataset pairs and raw bytes, wall time.
    pub backup: Timed,
    /// Bytes of every file in the repository after the backup (zstd).
    pub repo_bytes: u64,
    /// `pgbackrest restore` + `pg_ctl start` until `SELECT 1` answers.
    pub restore: Timed,
    /// Of `restore`, the seconds of `pgbackrest restore` alone.
    pub restore_files_secs: f64,
    /// Rows in the restored table.
    pub restored_rows: u64,
    /// Key + value bytes in the restored table.
    pub restored_bytes: u64,
    /// Tito over pgBackRest (see [`Ratios`]).
    pub ratios: Ratios,
}

/// Why the peer cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    let mut tools = vec!["initdb", "pg_ctl", "postgres", "psql", "pgbackrest"];
    if is_root() {
        tools.push("runuser");
    }
    first_missing(&tools, "apt-get install postgresql pgbackrest").or_else(|| {
        (is_root() && !user_exists(PG_USER))
            .then(|| format!("running as root and there is no {PG_USER:?} user to run PostgreSQL"))
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A command of PostgreSQL or pgBackRest, as the `postgres` user when this is root.
fn pg(tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_USER, "--", tool]);
        c
    } else {
        Command::new(tool)
    }
}

/// The cluster's places.
struct Cluster {
    dir: PathBuf,
    port: u16,
    config: PathBuf,
}

impl Cluster {
    fn psql(&self, sql: Option<&str>) -> Command {
        let mut c = pg("psql");
        c.arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                PG_USER,
                "-d",
                "postgres",
            ])
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"]);
        if let Some(sql) = sql {
            c.args(["-c", sql]);
        }
        c
    }

    fn pgbackrest(&self, command: &str) -> Command {
        let mut c = pg("pgbackrest");
        c.arg(format!("--config={}", self.config.display()))
            .arg("--stanza=bench")
            .arg(command);
        c
    }
}

/// A started server, stopped (`-m immediate`) when dropped unless stopped before.
struct Server {
    data: Option<PathBuf>,
}

impl Server {
    async fn start(data: &Path, log: &Path) -> Result<Server> {
        let mut c = pg("pg_ctl");
        c.arg("-D")
            .arg(data)
            .arg("-l")
            .arg(log)
            .args(["-w", "start"]);
        run_timed(c, "pg_ctl start", None).await?;
        Ok(Server {
            data: Some(data.to_path_buf()),
        })
    }

    async fn stop(mut self) -> Result<()> {
        let data = self.data.take().expect("a server is stopped once");
        let mut c = pg("pg_ctl");
        c.arg("-D").arg(&data).args(["-w", "-m", "fast", "stop"]);
        run_timed(c, "pg_ctl stop", None).await.map(|_| ())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            let _ = pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-w", "-m", "immediate", "stop"])
                .output();
        }
    }
}

/// Run the peer on `dataset`, next to `tito`.
pub async fn measure(dataset: &Dataset, tito: &TitoSide) -> Result<PgBackRestFigures> {
    let scratch = tempfile::Builder::new()
        .prefix("tito-bench-pgbackrest-")
        .tempdir()
        .map_err(io_err(PHASE, "temp dir"))?;
    let dir = scratch.path().to_path_buf();
    let raw_bytes = dataset.raw_bytes();
    let process_max = std::thread::available_parallelism().map_or(1, |n| n.get());
    let version = text(pg("pgbackrest").arg("version"), "pgbackrest version").await?;
    let postgres_version = text(pg("postgres").arg("--version"), "postgres --version").await?;

    let port = free_port()?;
    let cluster = Cluster {
        config: dir.join("pgbackrest.conf"),
        dir: dir.clone(),
        port,
    };
    let data = dir.join("data");
    let repo = dir.join("repo");
    std::fs::write(
        &cluster.config,
        format!(
            "[global]\nrepo1-path={repo}\nrepo1-retention-full=1\ncompress-type=zst\n\
             process-max={process_max}\nlog-level-console=warn\nlog-level-file=off\n\
             lock-path={dir}/lock\nspool-path={dir}/spool\n\n[bench]\npg1-path={data}\n\
             pg1-port={port}\npg1-socket-path={dir}\n",
            repo = repo.display(),
            dir = dir.display(),
            data = data.display(),
        ),
    )
    .map_err(io_err(PHASE, cluster.config.display().to_string()))?;
    let sql = dir.join("load.sql");
    write_copy(dataset, &sql)?;
    if is_root() {
        let mut c = Command::new("chown");
        c.args(["-R", &format!("{PG_USER}:")]).arg(&dir);
        run_timed(c, "chown the cluster's temp dir", None).await?;
    }

    let mut c = pg("initdb");
    c.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", PG_USER, "--no-sync"]);
    run_timed(c, "initdb", None).await?;
    let conf = data.join("postgresql.conf");
    let mut extra = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(io_err(PHASE, conf.display().to_string()))?;
    write!(
        extra,
        "\nlisten_addresses = ''\nunix_socket_directories = '{dir}'\nport = {port}\n\
         wal_level = replica\narchive_mode = on\n\
         archive_command = 'pgbackrest --config={config} --stanza=bench archive-push %p'\n",
        dir = dir.display(),
        config = cluster.config.display(),
    )
    .map_err(io_err(PHASE, conf.display().to_string()))?;
    drop(extra);

    let source = Server::start(&data, &dir.join("source.log")).await?;
    let mut c = cluster.psql(None);
    c.arg("-f").arg(&sql);
    let (_, took) = run_timed(c, "psql -f load.sql", None).await?;
    let load = Timed::new(dataset.keys, raw_bytes, took);
    std::fs::remove_file(&sql).map_err(io_err(PHASE, sql.display().to_string()))?;
    run_timed(
        cluster.pgbackrest("stanza-create"),
        "pgbackrest stanza-create",
        None,
    )
    .await?;
    let mut c = cluster.pgbackrest("backup");
    c.args(["--type=full", "--start-fast"]);
    let (_, took) = run_timed(c, "pgbackrest backup --type=full", None).await?;
    let backup = Timed::new(dataset.keys, raw_bytes, took);
    let repo_bytes = dir_bytes(PHASE, &repo)?;
    source.stop().await?;

    let restored = dir.join("restored");
    std::fs::create_dir(&restored).map_err(io_err(PHASE, restored.display().to_string()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&restored, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(PHASE, restored.display().to_string()))?;
    }
    if is_root() {
        let mut c = Command::new("chown");
        c.arg(format!("{PG_USER}:")).arg(&restored);
        run_timed(c, "chown the restore dir", None).await?;
    }
    let started = Instant::now();
    let mut c = cluster.pgbackrest("restore");
    c.arg(format!("--pg1-path={}", restored.display()));
    let (_, files) = run_timed(c, "pgbackrest restore", None).await?;
    let server = Server::start(&restored, &dir.join("restored.log")).await?;
    wait_ready(&cluster).await?;
    let restore = Timed::new(dataset.keys, raw_bytes, started.elapsed());

    let counted = text(
        &mut cluster.psql(Some(
            "SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0) FROM kv",
        )),
        "psql SELECT count(*)",
    )
    .await;
    server.stop().await?;
    let counted = counted?;
    let mut parts = counted.split('|').map(|s| s.trim().parse::<u64>());
    let (restored_rows, restored_bytes) = match (parts.next(), parts.next()) {
        (Some(Ok(r)), Some(Ok(b))) => (r, b),
        _ => {
            return Err(mismatch(format!(
                "psql answered {counted:?} to the row count"
            )));
        }
    };
    if restored_rows != dataset.keys || restored_bytes != raw_bytes {
        return Err(mismatch(format!(
            "pgbackrest restored {restored_rows} rows of {restored_bytes} key + value bytes; \
             the dataset has {} rows of {raw_bytes} bytes",
            dataset.keys
        )));
    }
    let ratios = Ratios::of(tito, backup.secs, restore.secs, repo_bytes);
    Ok(PgBackRestFigures {
        version,
        postgres_version,
        process_max,
        load,
        backup,
        repo_bytes,
        restore,
        restore_files_secs: files.as_secs_f64(),
        restored_rows,
        restored_bytes,
        ratios,
    })
}

/// Poll `SELECT 1` until the server answers.
async fn wait_ready(cluster: &Cluster) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match run_timed(cluster.psql(Some("SELECT 1")), "psql SELECT 1", None).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A command's trimmed stdout.
async fn text(cmd: &mut Command, what: &str) -> Result<String> {
    let cmd = std::mem::replace(cmd, Command::new("true"));
    let (out, _) = run_timed(cmd, what, None).await?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// A TCP port nothing listens on now (the server listens on a Unix socket only; the port
/// names its socket file, and a free one keeps clear of any server on this machine).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err(PHASE, "free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io_err(PHASE, "free port"))
}

/// The dataset as one psql script: the table, then `COPY ... FROM STDIN` in text format
/// with hex bytea values.
fn write_copy(dataset: &Dataset, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io_err(PHASE, path.display().to_string()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let werr = |e| io_err(PHASE, path.display().to_string())(e);
    w.write_all(b"CREATE TABLE kv (key TEXT PRIMARY KEY, value BYTEA);\nCOPY kv FROM STDIN;\n")
        .map_err(werr)?;
    let mut line = Vec::with_capacity(1 << 12);
    let mut start = 0;
    while start < dataset.keys {
        let end = (start + GEN_BATCH).min(dataset.keys);
        for (key, value) in dataset.pairs(start, end) {
            for b in key {
                if matches!(b, b'\\' | b'\t' | b'\n' | b'\r') {
                    line.push(b'\\');
                }
                line.push(b);
            }
            line.extend_from_slice(b"\t\\\\x");
            super::litestream::hex_into(&mut line, &value);
            line.push(b'\n');
            w.write_all(&line).map_err(werr)?;
            line.clear();
        }
        start = end;
    }
    w.write_all(b"\\.\n").map_err(werr)?;
    w.flush().map_err(werr)
}
