//! The machine's limits on the dataset's bytes: `zstd -1` (in-process and the `zstd`
//! binary), a raw sequential write + fsync and read of a dump file, and the engine's own
//! bulk load into a fresh engine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tito_engine::Engine;

use crate::dataset::Dataset;
use crate::error::{Ctx, Result, io_err};
use crate::report::Timed;

const PHASE: &str = "limits";
/// Pairs per `bulk_load` call: large batches, the engine's best case.
pub const BULK_BATCH: u64 = 100_000;

/// Compression of the dump by `zstd -1`.
#[derive(Clone, Debug, Serialize)]
pub struct Compression {
    /// Input bytes (the dump) and the wall time.
    pub timed: Timed,
    /// Compressed bytes.
    pub out_bytes: u64,
}

/// What the machine does with the dataset's bytes.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// Bytes of the dump file (4-byte lengths + key + value per pair).
    pub dump_bytes: u64,
    /// `zstd::bulk::compress(level 1)` over the dump in memory, one thread.
    pub zstd_lib: Compression,
    /// `zstd -1 -c dump > /dev/null`, `None` when the binary is missing.
    pub zstd_cli: Option<Compression>,
    /// Writing the dump sequentially and fsyncing it.
    pub disk_write: Timed,
    /// Reading the dump back after asking the kernel to drop it from the page cache.
    pub disk_read: Timed,
    /// Whether the page cache was dropped before the read (otherwise it measures memory).
    pub read_uncached: bool,
    /// `Engine::bulk_load` of every pair in batches of [`BULK_BATCH`] into a fresh engine
    /// (only the bulk_load calls are timed).
    pub bulk_load: Timed,
}

/// The dump format: per pair, key length and value length (u32 BE) then both.
pub fn dump(dataset: &Dataset) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..dataset.keys {
        let (k, v) = (Dataset::key(i), dataset.value(i, 0));
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(&k);
        out.extend_from_slice(&v);
    }
    out
}

/// Measure everything; `fresh` is an empty engine of the configured kind.
pub async fn measure(dataset: &Dataset, dir: &Path, fresh: &dyn Engine) -> Result<Limits> {
    let bytes = dump(dataset);
    let n = dataset.keys;
    let size = bytes.len() as u64;

    let started = Instant::now();
    let compressed = zstd::bulk::compress(&bytes, 1).map_err(io_err(PHASE, "zstd (in-process)"))?;
    let zstd_lib = Compression {
        timed: Timed::new(n, size, started.elapsed()),
        out_bytes: compressed.len() as u64,
    };
    drop(compressed);

    let path = dir.join(format!("tito-bench-dump-{}.bin", std::process::id()));
    let outcome = disk_and_cli(&bytes, &path, n).await;
    let _ = std::fs::remove_file(&path);
    let (disk_write, disk_read, read_uncached, zstd_cli) = outcome?;
    drop(bytes);

    let mut load_time = Duration::ZERO;
    let mut start = 0;
    while start < n {
        let end = (start + BULK_BATCH).min(n);
        let batch = dataset.pairs(start, end);
        let t = Instant::now();
        fresh.bulk_load(batch).await.ctx(PHASE)?;
        load_time += t.elapsed();
        start = end;
    }
    Ok(Limits {
        dump_bytes: size,
        zstd_lib,
        zstd_cli,
        disk_write,
        disk_read,
        read_uncached,
        bulk_load: Timed::new(n, dataset.raw_bytes(), load_time),
    })
}

type DiskFigures = (Timed, Timed, bool, Option<Compression>);

/// Disk write + fsync, uncached read, and the `zstd` binary over the file.
async fn disk_and_cli(bytes: &[u8], path: &PathBuf, n: u64) -> Result<DiskFigures> {
    let shown = path.display().to_string();
    let size = bytes.len() as u64;
    let started = Instant::now();
    let mut f = std::fs::File::create(path).map_err(io_err(PHASE, shown.clone()))?;
    f.write_all(bytes).map_err(io_err(PHASE, shown.clone()))?;
    f.sync_all().map_err(io_err(PHASE, shown.clone()))?;
    let write = Timed::new(n, size, started.elapsed());
    let uncached = drop_cache(&f);
    drop(f);

    let started = Instant::now();
    let mut back = Vec::with_capacity(bytes.len());
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut back))
        .map_err(io_err(PHASE, shown.clone()))?;
    let read = Timed::new(n, back.len() as u64, started.elapsed());
    drop(back);

    Ok((write, read, uncached, zstd_binary(path, n, size)?))
}

/// Ask the kernel to evict the (clean, fsynced) file from the page cache.
fn drop_cache(f: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads the descriptor, which `f` keeps open for the call.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) == 0 }
}

/// `zstd -1` over the file, output counted through a pipe; `None` without the binary.
fn zstd_binary(path: &Path, n: u64, size: u64) -> Result<Option<Compression>> {
    let started = Instant::now();
    let child = std::process::Command::new("zstd")
        .args(["-1", "-q", "-c", "-T1"])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(PHASE, "zstd binary")(e)),
    };
    let mut out_bytes = 0u64;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let got = out.read(&mut buf).map_err(io_err(PHASE, "zstd binary"))?;
            if got == 0 {
                break;
            }
            out_bytes += got as u64;
        }
    }
    let status = child.wait().map_err(io_err(PHASE, "zstd binary"))?;
    if !status.success() {
        return Err(io_err(PHASE, "zstd binary")(std::io::Error::other(
            format!("zstd exited with {status}"),
        )));
    }
    Ok(Some(Compression {
        timed: Timed::new(n, size, started.elapsed()),
        out_bytes,
    }))
}
