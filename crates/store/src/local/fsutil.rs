//! Small blocking filesystem helpers for the local backend: temp files and fsyncs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::key::TMP_PREFIX;

/// Runs blocking I/O on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Fsyncs a directory so renames, links and new entries in it survive a crash.
pub(super) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the object's parent directories (each new one fsynced into its parent) and
/// returns the parent directory.
pub(super) fn ensure_parent(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let parent = path.parent().unwrap_or(root).to_path_buf();
    if parent.is_dir() {
        return Ok(parent);
    }
    let rel = parent.strip_prefix(root).map_err(std::io::Error::other)?;
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let next = cur.join(comp);
        match std::fs::create_dir(&next) {
            Ok(()) => fsync_dir(&cur)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        cur = next;
    }
    Ok(parent)
}

/// A fresh temporary file name in `dir` (never a valid key, never listed).
pub(super) fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TMP_PREFIX}{:016x}", rand::random::<u64>()))
}

/// Writes `data` to a new temporary file in `dir`, fsynced; returns its path.
pub(super) fn write_temp(dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = temp_path(dir);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
