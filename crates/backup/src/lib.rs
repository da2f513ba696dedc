//! The backup service: ships the change log to a store in segments, takes consistent
//! snapshots, holds a lease so one shipper runs per database, labels restore points,
//! compacts the log (merging small segments into larger ones), and prunes what the
//! retention policy no longer needs.
#![warn(missing_docs)]

pub mod branch;
pub mod changes;
mod claim;
pub mod compactor;
pub mod config;
pub mod error;
pub mod lease;
pub mod prune;
pub mod repository;
pub mod service;
pub mod shipper;
pub mod snapshot;
pub mod source;
pub mod stats;

pub use branch::{PendingBranch, pending_branch_key};
pub use changes::Reuse;
pub use compactor::{
    CompactProgress, CompactResult, CompactionConfig, compact_repository, compact_timelines,
};
pub use config::BackupConfig;
pub use error::BackupError;
pub use lease::{Lease, LeaseState};
pub use prune::{PruneResult, prune_repository, prune_repository_at};
pub use repository::Repository;
pub use service::{BackupResult, BackupService};
pub use shipper::{ShipResult, encode_segment, store_log_end};
pub use snapshot::{SnapshotOf, SnapshotOptions, SnapshotResult, write_snapshot};
pub use source::{LogShipper, LogSource};
pub use stats::{Stats, StatsSnapshot};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
