//! `tito snapshot`: take a snapshot now (incremental, or every chunk afresh with `--full`),
//! with progress, and print a summary.

use std::time::Duration;

use tito_backup::{BackupConfig, SnapshotOptions, SnapshotResult};

use crate::commands::{BackupOn, backup_on};
use crate::config::Settings;
use crate::exit::Result;
use crate::fmt;
use crate::held;
use crate::progress::Reporter;
use tito::control::protocol::{Reply, Request};

/// One line about a snapshot.
pub fn summary(s: &SnapshotResult) -> String {
    let elapsed = Duration::from_millis(s.elapsed_ms);
    format!(
        "snapshot {} of timeline {} at LSN {}: {} pairs, {} raw, {} uploaded, {} chunks ({} reused), in {} ({}, {})",
        s.id,
        s.timeline,
        s.lsn,
        s.pairs,
        fmt::bytes(s.raw_bytes),
        fmt::bytes(s.bytes),
        s.chunks,
        s.chunks_reused,
        fmt::duration(elapsed),
        fmt::rate(s.pairs, elapsed, "pairs"),
        fmt::byte_rate(s.raw_bytes, elapsed),
    )
}

/// `tito snapshot`; `full`: upload every chunk afresh (`--full`).
pub async fn run(settings: &Settings, full: bool) -> Result<()> {
    let config = BackupConfig {
        compression_level: settings.compression_level()?,
        ..BackupConfig::default()
    };
    let service = match backup_on(settings, config).await? {
        BackupOn::Local(service) => service,
        BackupOn::Remote(client, target) => {
            let request = if full {
                Request::SnapshotFull(target)
            } else {
                Request::Snapshot(target)
            };
            return match held::call(&client, request).await? {
                Reply::Snapshot(s) => {
                    crate::outln!("{}", summary(&s))?;
                    Ok(())
                }
                other => Err(held::unexpected(other)),
            };
        }
    };
    let progress = Reporter::new();
    progress.phase("snapshot", 0);
    let last = std::sync::atomic::AtomicU64::new(0);
    let result = service
        .snapshot_with_options(&SnapshotOptions { full }, &|pairs, _raw| {
            let before = last.swap(pairs, std::sync::atomic::Ordering::Relaxed);
            progress.advance(pairs.saturating_sub(before));
        })
        .await;
    match &result {
        Ok(_) => progress.finish(),
        Err(_) => progress.abandon(),
    }
    // A snapshot takes no lease today; releasing is fenced and costs one read, and keeps
    // this one-shot command from ever leaving a lease behind.
    let released = service.release_lease().await;
    crate::outln!("{}", summary(&result?))?;
    released?;
    Ok(())
}
