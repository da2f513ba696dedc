//! Errors of the backup service.

use thiserror::Error;
use tito_capture::CaptureError;
use tito_engine::{EngineError, Retryable};
use tito_format::FormatError;
use tito_store::StoreError;

/// What can go wrong backing up.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Change capture (log reading, meta keys) failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The backup store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object could not be encoded or decoded.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Another shipper holds the lease.
    #[error(
        "another backup shipper ({owner}) holds this database's lease for {expires_in_ms} ms more \
         (if it crashed, its lease expires then and the next backup takes over); stop it, or \
         wait for it with --wait-for-lease"
    )]
    LeaseHeld {
        /// The holder's id.
        owner: String,
        /// Time until the holder's lease expires unless renewed.
        expires_in_ms: u64,
    },
    /// The timeline this database would ship to was continued by a restore elsewhere.
    #[error(
        "timeline {timeline} of this database was continued by timeline {by} (a restore with \
         the same lineage replaced this database); this copy may not ship to it any more. \
         Restore it, or back it up into another store as a new database"
    )]
    TimelineRetired {
        /// The timeline this database is on.
        timeline: u64,
        /// The timeline that replaced it.
        by: u64,
    },
    /// Another database with the same id and timeline ships (or shipped) into this store.
    #[error(
        "another copy of this database (same database id, timeline {timeline}) ships to this \
         store: {reason}. Nothing was shipped or trimmed. A copied database file or machine \
         image must not back up into its source's store: restore it as a new database \
         (`tito restore` into a new target) or back it up into another store"
    )]
    Diverged {
        /// The timeline.
        timeline: u64,
        /// What shows it.
        reason: String,
    },
    /// Shared chunks a snapshot reused were deleted (by a prune running beside it) before
    /// its manifest was written; the manifest was removed again.
    #[error(
        "snapshot {manifest} reused {missing} shared chunk(s) that a prune running beside it \
         deleted; the snapshot was withdrawn (nothing is damaged): take it again"
    )]
    ChunksGone {
        /// The manifest withdrawn.
        manifest: String,
        /// Chunks missing.
        missing: usize,
    },
    /// We no longer hold the lease: a destructive step was refused (fencing).
    #[error("backup lease lost ({reason}); this shipper stopped without trimming the log")]
    LeaseLost {
        /// Why.
        reason: String,
    },
    /// The repository is encrypted and no key was given.
    #[error(
        "the backup repository at {store} is encrypted and no key was given: set \
         [encryption] key_file in the --config file or TITO_ENCRYPTION_KEY_FILE to its keyring"
    )]
    EncryptedRepository {
        /// The store URL.
        store: String,
    },
    /// A key was given for a repository that is not encrypted.
    #[error(
        "the backup repository at {store} is not encrypted, but an encryption key is \
         configured; nothing was written (an encrypted store never mixes with plain objects): \
         unset TITO_ENCRYPTION_KEY_FILE and [encryption] key_file for it, or use another store"
    )]
    UnencryptedRepository {
        /// The store URL.
        store: String,
    },
    /// The keyring does not hold the repository's key.
    #[error("wrong encryption key for the backup repository at {store}: {problem}")]
    WrongKey {
        /// The store URL.
        store: String,
        /// What does not match.
        problem: String,
    },
    /// The store holds no Tito repository.
    #[error(
        "no Tito backup repository at {store}: check the URL, or run `tito backup` to create one"
    )]
    NoRepository {
        /// The store URL.
        store: String,
    },
    /// The store holds another database's backups.
    #[error(
        "store {store} holds backups of database {found}, not of this database ({ours}); \
         use another store or prefix"
    )]
    ForeignRepository {
        /// The store URL.
        store: String,
        /// Database id in the repository config.
        found: String,
        /// This database's id.
        ours: String,
    },
    /// The log in the engine does not continue where the store's log ends.
    #[error(
        "log gap on timeline {timeline}: the store's log ends at LSN {shipped} but the oldest \
         record left in the database is LSN {oldest}; records {gap_from}..={gap_to} were lost \
         before shipping. Take a snapshot to start a new restorable range"
    )]
    LogGap {
        /// Timeline.
        timeline: u64,
        /// Last LSN in the store.
        shipped: u64,
        /// Oldest LSN in the engine.
        oldest: u64,
        /// First missing LSN.
        gap_from: u64,
        /// Last missing LSN.
        gap_to: u64,
    },
    /// A restore point label is not acceptable.
    #[error("invalid restore point name {name:?}: {reason}")]
    BadLabel {
        /// The label.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A restore point with this label exists already.
    #[error("restore point {name:?} already exists; labels are never reused")]
    LabelExists {
        /// The label.
        name: String,
    },
    /// A repository document could not be parsed.
    #[error("repository object {key} is not valid: {reason}")]
    BadDocument {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Compaction settings that cannot work.
    #[error("invalid compaction settings: {reason}")]
    BadCompaction {
        /// What is wrong.
        reason: String,
    },
    /// A segment to merge does not hold what its name says; nothing was deleted.
    #[error("cannot compact {key}: {reason}; nothing was deleted")]
    CompactionInput {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A background task failed unexpectedly.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Retryable for BackupError {
    fn is_conflict(&self) -> bool {
        match self {
            BackupError::Engine(e) => e.is_conflict(),
            BackupError::Capture(c) => c.is_conflict(),
            _ => false,
        }
    }
}
