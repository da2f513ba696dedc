//! The error type of change capture.

use thiserror::Error;
use tito_engine::{EngineError, Retryable};
use tito_format::record::RecordError;

/// Errors of Tito transactions, the log reader and the meta helpers.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The engine failed (conflicts are retried by [`crate::Db::transaction`]).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A user operation named a key under the reserved prefix.
    #[error(
        "key \"{key}\" is under the reserved prefix \"{prefix}\": user transactions may not {op} it"
    )]
    ReservedKey {
        /// The key, escaped.
        key: String,
        /// The reserved prefix, escaped.
        prefix: String,
        /// What was attempted (`read`, `write`, `delete`).
        op: &'static str,
    },
    /// A user range delete overlaps the reserved prefix.
    #[error(
        "range [\"{start}\", {end}) overlaps the reserved prefix \"{prefix}\": user transactions may not delete it"
    )]
    ReservedRange {
        /// Range start, escaped.
        start: String,
        /// Range end, escaped and quoted, or `∞`.
        end: String,
        /// The reserved prefix, escaped.
        prefix: String,
    },
    /// A queue-subspace operation named a key outside the queue subspace.
    #[error("key \"{key}\" is outside the queue subspace \"{prefix}\"")]
    NotQueueKey {
        /// The key (or range start), escaped.
        key: String,
        /// The queue prefix, escaped.
        prefix: String,
    },
    /// A log entry in the engine could not be decoded.
    #[error("corrupt log record (engine key \"{key}\"): {source}")]
    CorruptRecord {
        /// The engine key, escaped.
        key: String,
        /// What is wrong.
        #[source]
        source: RecordError,
    },
    /// A compressed log entry in the engine could not be unpacked (its checksum does not
    /// match, or it does not decompress).
    #[error("corrupt compressed log record at LSN {lsn} (engine key \"{key}\"): {problem}")]
    CorruptStoredBody {
        /// The record's LSN.
        lsn: u64,
        /// The engine key, escaped.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A log key does not have the `LOG_PREFIX be_u64(lsn)` shape.
    #[error("malformed log key \"{key}\": expected the log prefix followed by an 8-byte LSN")]
    BadLogKey {
        /// The key, escaped.
        key: String,
    },
    /// A record to replay touches a key outside the backed-up keyspace.
    #[error("log record {lsn}, mutation #{index}: key \"{key}\" is outside the backed-up keyspace")]
    NotBackedUp {
        /// The record's LSN.
        lsn: u64,
        /// Index of the mutation.
        index: usize,
        /// The key (or range start), escaped.
        key: String,
    },
    /// A restore into this database started and did not finish: its contents are partial.
    #[error(
        "this database holds an unfinished restore (it was interrupted): its contents are partial. \
         Run the restore again with --force to replace them"
    )]
    RestoreInProgress,
    /// A meta value could not be decoded.
    #[error("corrupt meta value \"{key}\": {problem}")]
    CorruptMeta {
        /// The meta key, escaped.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl Retryable for CaptureError {
    fn is_conflict(&self) -> bool {
        matches!(self, CaptureError::Engine(e) if e.is_conflict())
    }
}

/// Result alias of this crate.
pub type Result<T, E = CaptureError> = std::result::Result<T, E>;
