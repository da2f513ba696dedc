//! Repository-level documents: the config at the root, timeline histories, restore points.

use serde::{Deserialize, Serialize};

/// The repository config (`tito.repo`), written once when a repository is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Repository format version.
    pub format_version: u32,
    /// Unique id of this repository.
    pub repository_id: String,
    /// Id of the database whose backups this repository holds; another database is refused.
    pub database_id: String,
    /// Compression of segments and chunks (`zstd`).
    pub compression: String,
    /// Creation time (ms since the epoch).
    pub created_ms: u64,
}

/// Where a timeline branched off (`timelines/<tl>/TIMELINE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineHistory {
    /// This timeline.
    pub timeline: u64,
    /// The timeline it was restored from, if any.
    pub parent: Option<u64>,
    /// The last LSN of the parent included in this timeline's starting state.
    pub branch_lsn: u64,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
}

/// A named restore point (`restore-points/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// Its label.
    pub name: String,
    /// Timeline of the labelled position.
    pub timeline: u64,
    /// The labelled LSN: restore to this point replays through it.
    pub lsn: u64,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
}
