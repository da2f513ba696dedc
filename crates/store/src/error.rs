//! The store error type: every variant names the object key (or URL) it is about.

use std::ops::Range;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Errors reported by a [`crate::Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key:?} not found")]
    NotFound {
        /// The key that was looked up.
        key: String,
    },
    /// A create-only write found an object already there.
    #[error("object {key:?} already exists")]
    AlreadyExists {
        /// The key that was written.
        key: String,
    },
    /// The key is not acceptable (escapes the root, empty segment, NUL, ...).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A byte range outside the object, or reversed.
    #[error("invalid range {}..{} for object {key:?} of {size} bytes", range.start, range.end)]
    InvalidRange {
        /// The object key.
        key: String,
        /// The requested range.
        range: Range<u64>,
        /// The object's size.
        size: u64,
    },
    /// A failure that may go away when retried (5xx, timeout, connection reset).
    #[error("transient failure on object {key:?}: {source}")]
    Transient {
        /// The object key (or prefix for listings).
        key: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// A failure that retrying will not fix (4xx, permission, corrupt local file...).
    #[error("permanent failure on object {key:?}: {source}")]
    Permanent {
        /// The object key (or prefix for listings).
        key: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The object failed authentication or is not a well-formed encrypted object: it was
    /// altered, truncated, reordered, stored under another name, or written unencrypted.
    #[error("object {key:?} is damaged: {reason}")]
    Corrupt {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The object was encrypted with a key the keyring does not hold.
    #[error(
        "object {key:?} is encrypted with key {key_id}, which the keyring does not hold; \
         give the keyring that has it ([encryption] key_file or TITO_ENCRYPTION_KEY_FILE)"
    )]
    KeyMissing {
        /// The object key.
        key: String,
        /// The id of the key it needs.
        key_id: String,
    },
    /// The store could not be configured (bad URL, missing credentials, ...).
    #[error("store configuration error: {0}")]
    Config(String),
}

impl StoreError {
    /// True for errors a retry may fix.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }

    /// True when the object was missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// [`StoreError::from_io`] for an error while writing under `place`: a full disk (or
    /// quota) is a permanent failure whose message names the directory whose disk is full.
    pub fn from_io_at(key: &str, err: std::io::Error, place: &std::path::Path) -> StoreError {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let full = matches!(
            err.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) || matches!(err.raw_os_error(), Some(ENOSPC | EDQUOT));
        if !full {
            return StoreError::from_io(key, err);
        }
        StoreError::Permanent {
            key: key.to_string(),
            source: format!(
                "the disk holding {} is full ({err}); free space there and run again",
                place.display()
            )
            .into(),
        }
    }

    /// Wraps an I/O error, classifying it as transient or permanent.
    pub fn from_io(key: &str, err: std::io::Error) -> StoreError {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::NotFound => StoreError::NotFound {
                key: key.to_string(),
            },
            K::AlreadyExists => StoreError::AlreadyExists {
                key: key.to_string(),
            },
            K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe => StoreError::Transient {
                key: key.to_string(),
                source: Box::new(err),
            },
            _ => StoreError::Permanent {
                key: key.to_string(),
                source: Box::new(err),
            },
        }
    }
}
