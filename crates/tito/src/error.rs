//! The library's error and the classes of failure the `tito` CLI turns into exit codes.

use serde::{Deserialize, Serialize};
use tito_backup::BackupError;
use tito_capture::CaptureError;
use tito_engine::EngineError;
use tito_queue::QueueError;
use tito_store::StoreError;

use crate::open::OpenError;

/// What kind of failure an error is: the CLI's exit codes are one per kind, and the control
/// protocol carries the kind so a command forwarded to a database holder exits as it would
/// have locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A bug, or an error not classified below.
    Failure,
    /// Bad usage (a malformed URL, label, key); nothing was touched.
    Usage,
    /// Something asked for does not exist.
    NotFound,
    /// Refused to protect data (lease held, foreign repository, reused label).
    Refused,
    /// Damaged data or backup.
    Integrity,
    /// An engine or store could not be reached or failed.
    Unavailable,
}

impl ErrorKind {
    /// The kind of an engine error.
    pub fn of_engine(e: &EngineError) -> ErrorKind {
        match e {
            EngineError::Open(_) | EngineError::Backend(_) | EngineError::CommitUnknown(_) => {
                ErrorKind::Unavailable
            }
            EngineError::Corrupt(_) => ErrorKind::Integrity,
            EngineError::Conflict(_)
            | EngineError::TooLarge(_)
            | EngineError::Finished
            | EngineError::Invalid(_) => ErrorKind::Failure,
        }
    }

    /// The kind of a store error.
    pub fn of_store(e: &StoreError) -> ErrorKind {
        match e {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::Config(_) | StoreError::KeyMissing { .. } => ErrorKind::Usage,
            StoreError::Corrupt { .. } => ErrorKind::Integrity,
            StoreError::Transient { .. } | StoreError::Permanent { .. } => ErrorKind::Unavailable,
            StoreError::AlreadyExists { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::InvalidRange { .. } => ErrorKind::Failure,
        }
    }

    /// The kind of a change-capture error.
    pub fn of_capture(e: &CaptureError) -> ErrorKind {
        match e {
            CaptureError::Engine(e) => ErrorKind::of_engine(e),
            CaptureError::ReservedKey { .. }
            | CaptureError::ReservedRange { .. }
            | CaptureError::NotQueueKey { .. } => ErrorKind::Usage,
            CaptureError::CorruptRecord { .. }
            | CaptureError::CorruptStoredBody { .. }
            | CaptureError::BadLogKey { .. }
            | CaptureError::CorruptMeta { .. } => ErrorKind::Integrity,
            CaptureError::NotBackedUp { .. } => ErrorKind::Failure,
            // A half-restored database: refuse to use it until a forced restore replaces it.
            CaptureError::RestoreInProgress => ErrorKind::Refused,
        }
    }

    /// The kind of a backup error.
    pub fn of_backup(e: &BackupError) -> ErrorKind {
        match e {
            BackupError::Engine(e) => ErrorKind::of_engine(e),
            BackupError::Capture(e) => ErrorKind::of_capture(e),
            BackupError::Store(e) => ErrorKind::of_store(e),
            BackupError::Format(_)
            | BackupError::LogGap { .. }
            | BackupError::BadDocument { .. }
            | BackupError::CompactionInput { .. } => ErrorKind::Integrity,
            BackupError::LeaseHeld { .. }
            | BackupError::LeaseLost { .. }
            | BackupError::TimelineRetired { .. }
            | BackupError::Diverged { .. }
            | BackupError::ForeignRepository { .. }
            | BackupError::LabelExists { .. }
            | BackupError::ChunksGone { .. } => ErrorKind::Refused,
            BackupError::NoRepository { .. } => ErrorKind::NotFound,
            BackupError::BadLabel { .. }
            | BackupError::BadCompaction { .. }
            | BackupError::EncryptedRepository { .. }
            | BackupError::UnencryptedRepository { .. }
            | BackupError::WrongKey { .. } => ErrorKind::Usage,
            _ => ErrorKind::Failure,
        }
    }

    /// The kind of an open error.
    pub fn of_open(e: &OpenError) -> ErrorKind {
        match e {
            OpenError::Url(_)
            | OpenError::NotUtf8(_)
            | OpenError::Key(_)
            | OpenError::WatchPrefix(..) => ErrorKind::Usage,
            OpenError::NoDatabase(_) | OpenError::NoDirectory { .. } | OpenError::NoStore(_) => {
                ErrorKind::NotFound
            }
            OpenError::Engine(e) => ErrorKind::of_engine(e),
            OpenError::Store(e) => ErrorKind::of_store(e),
        }
    }
}

/// An error of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening the database or the store failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A captured transaction failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The backup failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The backup was already stopped, or its task ended.
    #[error("the backup is not running: {0}")]
    BackupStopped(String),
    /// The control socket failed (I/O or protocol).
    #[error("control socket {path}: {message}")]
    Control {
        /// The socket.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A command forwarded to the process holding the database failed there.
    #[error("{message}")]
    Remote {
        /// Its kind, as the holder classified it.
        kind: ErrorKind,
        /// Its message, with its causes.
        message: String,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Open(e) => ErrorKind::of_open(e),
            Error::Engine(e) => ErrorKind::of_engine(e),
            Error::Capture(e) => ErrorKind::of_capture(e),
            Error::Queue(_) | Error::BackupStopped(_) => ErrorKind::Failure,
            Error::Backup(e) => ErrorKind::of_backup(e),
            Error::Control { .. } => ErrorKind::Unavailable,
            Error::Remote { kind, .. } => *kind,
        }
    }
}

/// The message of `e` followed by its sources, deduplicated (transparent wrappers repeat).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// What to do about an engine error, for a person at the `tito` CLI (empty if nothing
/// helps), as `"; ..."` to append to its message.
pub fn engine_hint(e: &EngineError) -> &'static str {
    match e {
        EngineError::Open(_) => "; check the --db URL and that the database is reachable",
        EngineError::Conflict(_) => "; another writer changed the same keys, try again",
        EngineError::CommitUnknown(_) => {
            "; check the database before retrying: the write may have been applied"
        }
        _ => "",
    }
}

/// What to do about a store error (see [`engine_hint`]).
pub fn store_hint(e: &StoreError) -> &'static str {
    match e {
        StoreError::Transient { .. } | StoreError::Permanent { .. } => {
            "; check the --store URL, credentials and that the store is reachable"
        }
        _ => "",
    }
}

/// What to do about a backup error whose message is `message` (see [`engine_hint`]).
pub fn backup_hint(e: &BackupError, message: &str) -> &'static str {
    match (e, ErrorKind::of_backup(e)) {
        // A full disk says where it is and what to do.
        _ if message.contains("is full (") => "",
        (BackupError::ForeignRepository { .. }, _) | (BackupError::NoRepository { .. }, _) => "",
        (_, ErrorKind::Integrity) => "; run `tito verify` to see what is damaged",
        (_, ErrorKind::Unavailable) => {
            "; check the URLs and that the database and store are reachable"
        }
        _ => "",
    }
}

/// The one line the `tito` CLI prints for `e`: its message with its causes and, where one
/// helps, what to do. The control socket answers a forwarded command's failure with this
/// line, so the command fails with the same words beside a holder as without one.
pub fn cli_message(e: &Error) -> String {
    match e {
        Error::Engine(e) | Error::Capture(CaptureError::Engine(e)) => {
            format!("{}{}", chain(e), engine_hint(e))
        }
        Error::Backup(e) => {
            let message = chain(e);
            let hint = backup_hint(e, &message);
            format!("{message}{hint}")
        }
        Error::Remote { message, .. } => message.clone(),
        Error::Control { .. } => {
            format!("{e}; the process holding the database did not answer")
        }
        e => chain(e),
    }
}

/// Result alias of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl tito_engine::Retryable for Error {
    fn is_conflict(&self) -> bool {
        match self {
            Error::Engine(e) => e.is_conflict(),
            Error::Capture(e) => e.is_conflict(),
            Error::Queue(e) => e.is_conflict(),
            _ => false,
        }
    }
}
