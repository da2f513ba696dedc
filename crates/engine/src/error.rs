use thiserror::Error;

/// Errors an engine reports. Backends map their native errors onto these kinds so
/// that callers (the retry helper, the backup shipper) can act on the kind.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Another transaction committed a conflicting change; retrying may succeed.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// The commit was sent but its outcome is unknown (connection lost, timeout).
    /// The transaction may or may not have been applied; it must not be blindly re-run.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(String),
    /// The transaction exceeds a limit of the engine (size, operation count).
    /// Nothing was written.
    #[error("transaction too large: {0}")]
    TooLarge(String),
    /// The transaction was already committed or rolled back.
    #[error("transaction already finished")]
    Finished,
    /// The caller broke a documented rule of the API (for example two stamped puts).
    #[error("invalid use of the engine API: {0}")]
    Invalid(String),
    /// The engine could not be opened or reached (bad path, URL, unreachable server).
    #[error("cannot open engine: {0}")]
    Open(String),
    /// Stored data could not be decoded.
    #[error("corrupt engine data: {0}")]
    Corrupt(String),
    /// Any other backend failure (I/O, server error). Not retried by the helper.
    #[error("engine backend error: {0}")]
    Backend(String),
}

impl EngineError {
    /// True for errors after which re-running the whole transaction may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, EngineError::Conflict(_))
    }
}

/// Result alias for engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
