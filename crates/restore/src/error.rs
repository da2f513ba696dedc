//! Errors of restore and verify.

use thiserror::Error;
use tito_backup::BackupError;
use tito_capture::CaptureError;
use tito_catalog::PlanError;
use tito_engine::EngineError;
use tito_format::FormatError;
use tito_store::StoreError;

/// What can go wrong restoring or verifying.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The target string could not be understood.
    #[error("invalid restore target {input:?}: {reason}")]
    BadTarget {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// No plan reaches the target (gap, no snapshot, unknown label...).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An object the plan needs is missing or damaged. Nothing was modified, except in a
    /// target that held nothing (objects stream into it as they are checked): that one is
    /// left marked as a restore in progress, refused until a restore completes it.
    #[error("backup object {key} failed verification: {reason}")]
    Damaged {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An object the plan needs is not in the store. A restore meets this when the object
    /// went away after it planned (compaction merged a segment into a larger one, prune
    /// removed a snapshot): it plans again from a fresh listing, and reports this only
    /// when the fresh catalog still needs the object. Same guarantees as
    /// [`RestoreError::Damaged`].
    #[error("backup object {key} failed verification: object is missing")]
    Missing {
        /// The object key.
        key: String,
    },
    /// The target database is not empty and `force` was not given. Nothing was modified.
    #[error(
        "the restore target is not empty (it holds key {sample}); restore into an empty database, \
         or pass --force to replace its contents"
    )]
    TargetNotEmpty {
        /// One key found, escaped.
        sample: String,
    },
    /// The restore would lose or mix data if it went on; nothing was modified (or, while
    /// re-partitioning, the restore is left partial and refused as such).
    #[error("restore refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// The log does not continue where expected while replaying.
    #[error("log segment {key}: expected LSN {expected} next but found {found}")]
    LogDiscontinuity {
        /// The segment.
        key: String,
        /// The LSN expected.
        expected: u64,
        /// The LSN found.
        found: u64,
    },
    /// The repository could not be read.
    #[error(transparent)]
    Repository(#[from] BackupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object could not be decoded.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The target engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Replaying a record failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The local directory staging verified objects (a forced restore over an existing
    /// database) could not be written or read. Nothing was modified, or the target is left
    /// refused as partial.
    #[error("cannot stage verified backup objects in {path}: {reason}")]
    Spool {
        /// The directory or file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A background task failed unexpectedly.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl RestoreError {
    /// True if the error means the backup itself is damaged (missing or altered objects,
    /// gaps), as opposed to bad input or an unreachable system.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            RestoreError::Damaged { .. }
                | RestoreError::Missing { .. }
                | RestoreError::LogDiscontinuity { .. }
                | RestoreError::Format(_)
        )
    }
}

impl tito_engine::Retryable for RestoreError {
    fn is_conflict(&self) -> bool {
        matches!(self, RestoreError::Engine(e) if e.is_conflict())
    }
}
