//! The control socket: how the `tito` CLI works on an embedded database that a running
//! process holds (redb locks its file, so nobody else can open it).
//!
//! Every process holding a redb file through [`crate::Tito`] (an application, or
//! `tito backup --continuous`) serves a Unix socket beside it, `<file>.tito.sock`, mode
//! 0600, answering only peers with the file owner's uid (checked with `SO_PEERCRED`).
//! A command given `--db` on that file asks the holder instead, and prints the same output
//! with the same exit code. A socket left by a killed process is found stale (nobody
//! listens) and removed by the next process that takes the file's lock, which proves nobody
//! holds it. The protocol (JSON lines, versioned) is in [`protocol`] and docs/CONTROL.md;
//! Litestream's control socket is the model.

pub mod client;
pub mod protocol;
pub(crate) mod server;

use std::path::{Path, PathBuf};

pub use client::{Client, Probe};

/// The control socket of the redb file `file`: `<file>.tito.sock`.
pub fn socket_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".tito.sock");
    PathBuf::from(name)
}

/// Remove the socket beside `file` if it is one. Call only while holding the file's lock:
/// then no live process serves it.
pub fn remove_stale(file: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let path = socket_path(file);
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.file_type().is_socket() {
            tracing::info!(socket = %path.display(), "removing a stale control socket");
            let _ = std::fs::remove_file(&path);
        }
    }
}
