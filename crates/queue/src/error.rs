//! The error type of the queue.

use thiserror::Error;
use tito_capture::CaptureError;
use tito_engine::{EngineError, Retryable};

/// Errors of queue operations.
#[derive(Debug, Error)]
pub enum QueueError {
    /// The transaction or the engine failed (conflicts are retryable).
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A partition count of zero was given.
    #[error("the partition count must be at least 1")]
    ZeroPartitions,
    /// A queue key does not have the `QUEUE_PREFIX be_u32 be_u64 id` layout.
    #[error("malformed queue key \"{key}\": {problem}")]
    BadKey {
        /// The key, escaped.
        key: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A queue value could not be decoded.
    #[error("malformed value of queue key \"{key}\" at offset {offset}: {problem}")]
    BadValue {
        /// The key, escaped.
        key: String,
        /// Offset in the value where the problem was found.
        offset: usize,
        /// What is wrong.
        problem: String,
    },
}

impl From<EngineError> for QueueError {
    fn from(e: EngineError) -> Self {
        QueueError::Capture(e.into())
    }
}

impl Retryable for QueueError {
    fn is_conflict(&self) -> bool {
        matches!(self, QueueError::Capture(e) if e.is_conflict())
    }
}

/// Result alias of this crate.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
