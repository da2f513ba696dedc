//! The hand-over from a restore to the restored database's first backup.
//!
//! A restore never writes to the backup repository. It leaves a *pending branch* in the
//! restored database's metadata: the timeline it was restored from and the last LSN
//! included, and the timeline it replaces, if any. The first backup service started on
//! that database opens a new timeline in the repository branching there, so the new
//! history never mixes with the old one, and retires the replaced timeline (see
//! `claim.rs`): a restore in place replaces the database's own timeline; a copy told to
//! continue the lineage replaces its source's. A restored copy that became a database of
//! its own (a new database id) has no parent: its first backup opens a new root timeline
//! whose log starts after the restored LSN, in whatever store it is backed up to.

use serde::{Deserialize, Serialize};
use tito_capture::keys;
use tito_engine::Engine;

use tito_format::layout::Writer;

use crate::error::BackupError;
use crate::repository::Repository;

/// What a restore leaves for the first backup of the restored database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingBranch {
    /// Timeline restored from; `None` for a copy that is a new database (its first
    /// timeline is a root).
    pub parent_timeline: Option<u64>,
    /// Last LSN of that timeline included in the restored state.
    pub branch_lsn: u64,
    /// Commit time of record `branch_lsn` (ms; 0 if unknown).
    #[serde(default)]
    pub branch_time_ms: u64,
    /// Random id of the restore, recorded in the new timeline's history so that a backup
    /// interrupted while opening it finds it again.
    #[serde(default)]
    pub id: String,
    /// The timeline this database replaces: retired once the new timeline is open.
    #[serde(default)]
    pub replaces: Option<u64>,
}

/// Meta key of the pending branch.
pub fn pending_branch_key() -> Vec<u8> {
    keys::meta_key("pending-branch")
}

/// If `engine` holds a pending branch, open the new timeline in `repo`, switch the database
/// to it and clear the pending branch. Returns the new timeline, if one was opened.
pub async fn open_pending_branch(
    engine: &dyn Engine,
    repo: &Repository,
) -> Result<Option<u64>, BackupError> {
    let view = engine.read_view().await?;
    let Some(bytes) = view.get(&pending_branch_key()).await? else {
        return Ok(None);
    };
    let branch: PendingBranch =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::BadDocument {
            key: "database metadata: pending-branch".into(),
            reason: e.to_string(),
        })?;
    let timeline = repo
        .new_timeline(
            branch.parent_timeline,
            branch.branch_lsn,
            branch.branch_time_ms,
            &branch.id,
        )
        .await?;
    if let Some(replaced) = branch.replaces.filter(|&r| r != timeline) {
        let retired = Writer::RetiredBy(timeline);
        let done = repo
            .claims(replaced)
            .await?
            .last()
            .is_some_and(|(_, w)| *w == retired);
        if !done {
            repo.claim(replaced, &retired).await?;
            tracing::info!(
                timeline = replaced,
                by = timeline,
                "retired the replaced timeline"
            );
        }
    }
    // One transaction switches the timeline and clears the branch: a crash leaves either
    // the old state (and an unused timeline in the repository) or the new one.
    let timeline_value = tito_capture::meta::encode_timeline(timeline);
    tito_engine::transaction(engine, |tx| {
        let timeline_value = timeline_value.clone();
        async move {
            tx.put(keys::META_TIMELINE.to_vec(), timeline_value)?;
            tx.delete(pending_branch_key())?;
            Ok::<_, BackupError>(())
        }
    })
    .await?;
    tracing::info!(
        timeline,
        parent = branch.parent_timeline,
        branch_lsn = branch.branch_lsn,
        "opened a new timeline"
    );
    Ok(Some(timeline))
}
