//! Prune: apply the retention planner to the repository and delete exactly what it selected.
//!
//! The planner (tito-catalog) never selects a segment a kept snapshot needs to reach a point
//! it must serve, nor any object of a snapshot still being written (no manifest yet and
//! younger than the grace period), nor a shared chunk (`chunks/`) a kept manifest
//! references or younger than the grace period (a snapshot uploads its new chunks before
//! its manifest). Prune adds one thing to that decision: shared chunks go last, after a
//! fresh listing of the manifests, keeping any that a snapshot finished since the plan
//! references (it reused them without an upload, so their age says nothing).

use std::time::Duration;

use serde::Serialize;
use tito_catalog::{LostRestorePoint, RetentionPolicy, plan_retention, referenced_shared_chunks};
use tito_format::layout::{self, ObjectName};

use crate::error::BackupError;
use crate::now_ms;
use crate::service::BackupService;

/// Snapshots without a manifest younger than this are assumed to be still in progress.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What a prune did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneResult {
    /// Object keys deleted (or to delete).
    pub deleted: Vec<String>,
    /// Their total size in bytes.
    pub bytes_freed: u64,
    /// Complete snapshots kept.
    pub kept_snapshots: usize,
    /// LSN of the oldest kept snapshot: every point from it on stays restorable.
    pub oldest_kept_lsn: Option<u64>,
    /// Why each kept snapshot is kept, one line each.
    pub reasons: Vec<String>,
    /// Restore points restorable before and not after (the policy's rules let their base
    /// snapshot go).
    pub lost_restore_points: Vec<LostRestorePoint>,
    /// True if nothing was deleted because this was a dry run.
    pub dry_run: bool,
}

impl BackupService {
    /// Delete what `policy` no longer needs. With `dry_run`, only report it.
    pub async fn prune(
        &self,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<PruneResult, BackupError> {
        prune_repository(&self.repo, policy, DEFAULT_GRACE, dry_run).await
    }
}

/// Prune any repository (the CLI prunes without a live database).
pub async fn prune_repository(
    repo: &crate::Repository,
    policy: &RetentionPolicy,
    grace: Duration,
    dry_run: bool,
) -> Result<PruneResult, BackupError> {
    prune_repository_at(repo, policy, now_ms(), grace, dry_run).await
}

/// [`prune_repository`] as of `now_ms` (ms since the epoch): the PITR window and the grace
/// period are measured back from it. For tests and tools that replay a prune at a chosen time.
pub async fn prune_repository_at(
    repo: &crate::Repository,
    policy: &RetentionPolicy,
    now_ms: u64,
    grace: Duration,
    dry_run: bool,
) -> Result<PruneResult, BackupError> {
    let catalog = repo.catalog().await?;
    let plan = plan_retention(&catalog, policy, now_ms, grace.as_millis() as u64);
    let mut result = PruneResult {
        bytes_freed: plan.bytes_freed(),
        deleted: plan.delete.clone(),
        kept_snapshots: plan.kept_snapshots(),
        oldest_kept_lsn: plan.oldest_kept_lsn(),
        reasons: plan.reasons.clone(),
        lost_restore_points: plan.lost_restore_points.clone(),
        dry_run,
    };
    if !dry_run && !plan.delete.is_empty() {
        let (shared, rest): (Vec<String>, Vec<String>) = plan
            .delete
            .iter()
            .cloned()
            .partition(|k| matches!(layout::parse(k), ObjectName::SharedChunk { .. }));
        // Bounded batches keep each request within the stores' limits.
        for batch in rest.chunks(1000) {
            repo.store().delete_many(batch).await?;
        }
        if !shared.is_empty() {
            // A snapshot that finished since the plan's listing may reference chunks the
            // plan found unreferenced: it reused them from a manifest deleted above.
            let fresh = referenced_shared_chunks(&repo.catalog().await?);
            let (keep, shared): (Vec<String>, Vec<String>) =
                shared.into_iter().partition(|k| fresh.contains(k));
            if !keep.is_empty() {
                let sizes: std::collections::BTreeMap<&str, u64> = catalog
                    .objects
                    .iter()
                    .map(|o| (o.key.as_str(), o.size))
                    .collect();
                result.bytes_freed -= keep
                    .iter()
                    .map(|k| sizes.get(k.as_str()).copied().unwrap_or(0))
                    .sum::<u64>();
                result.deleted.retain(|k| !keep.contains(k));
            }
            for batch in shared.chunks(1000) {
                repo.store().delete_many(batch).await?;
            }
        }
        tracing::info!(
            objects = result.deleted.len(),
            bytes = result.bytes_freed,
            "pruned"
        );
    }
    Ok(result)
}
