//! Errors of an import.

use thiserror::Error;
use tito_capture::CaptureError;
use tito_engine::{EngineError, Retryable};
use tito_queue::QueueError;
use tito_store::StoreError;

/// What can go wrong importing an old backup root.
#[derive(Debug, Error)]
pub enum LegacyError {
    /// Bad options (a time before 1970, a zero partition count...). Nothing was touched.
    #[error("{0}")]
    Usage(String),
    /// Nothing the original wrote is there, or nothing usable at or before the time asked.
    /// Nothing was touched.
    #[error("{0}")]
    NotFound(String),
    /// A marker is missing or unreadable. Nothing was touched.
    #[error("marker {key}: {reason}")]
    BadMarker {
        /// The marker object.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A chunk cannot be decoded (gzip, JSON, entry shape). Found by the check that runs
    /// before the target is touched.
    #[error("chunk {key} is malformed: {reason}")]
    Damaged {
        /// The chunk object.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The target holds data. Nothing was modified.
    #[error(
        "the import target is not empty (it holds key {sample}); import into a new or empty database"
    )]
    TargetNotEmpty {
        /// One key found, escaped.
        sample: String,
    },
    /// The target holds an unfinished restore or import. Nothing was modified.
    #[error(
        "the import target holds an unfinished restore or import (it was interrupted); delete it \
         (or replace it with `tito restore --force`) and import into a new database"
    )]
    TargetPartial,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The target engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A captured write failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// Enqueueing an event failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A background task failed unexpectedly.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Retryable for LegacyError {
    fn is_conflict(&self) -> bool {
        match self {
            LegacyError::Engine(e) => e.is_conflict(),
            LegacyError::Capture(e) => e.is_conflict(),
            LegacyError::Queue(e) => e.is_conflict(),
            _ => false,
        }
    }
}
