//! Stable exit codes, documented in README.md. Scripts may rely on them.
//!
//! Every library error is mapped here to one code and one line of text that names the
//! problem and says what to do; `main` prints that line on stderr and exits with the code.

use std::fmt;

use tito_backup::BackupError;
use tito_capture::CaptureError;
use tito_catalog::PlanError;
use tito_engine::EngineError;
use tito_queue::QueueError;
use tito_restore::RestoreError;
use tito_store::StoreError;

/// Everything went well.
pub const OK: i32 = 0;
/// An unexpected failure (a bug, or an error not classified below).
pub const FAILURE: i32 = 1;
/// Bad usage: a malformed flag, URL, time or label, or a missing setting. Nothing was touched.
pub const USAGE: i32 = 2;
/// Something asked for does not exist: no repository, no snapshot before the target,
/// an unknown label, a key that is absent (`kv get`).
pub const NOT_FOUND: i32 = 3;
/// Refused to protect data: a non-empty restore target without `--force`, a store holding
/// another database's backups, a shipper lease held by another process.
pub const REFUSED: i32 = 4;
/// The backup is damaged: a missing, truncated or altered object, or a gap in the log.
pub const INTEGRITY: i32 = 5;
/// An engine or store could not be reached or failed (I/O, network).
pub const UNAVAILABLE: i32 = 6;
/// A check did not pass: `verify` found problems, or `demo` could not prove its result.
pub const CHECK_FAILED: i32 = 7;

/// A failure of a command: the exit code and the one line printed on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// One of the exit codes of this module.
    pub code: i32,
    /// What went wrong and what to do, on one line.
    pub message: String,
}

/// Result alias of the commands.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: one_line(&message.into()),
        }
    }

    /// Bad usage ([`USAGE`]).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(USAGE, message)
    }

    /// Something asked for does not exist ([`NOT_FOUND`]).
    pub fn not_found(message: impl Into<String>) -> Self {
        CliError::new(NOT_FOUND, message)
    }

    /// A failed write of a command's output. The reader going away (`tito dump | head`)
    /// ends the command quietly with [`OK`], as it ends `cat`; anything else (a full disk
    /// behind a redirect) is [`UNAVAILABLE`].
    pub fn stdout(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return CliError {
                code: OK,
                message: String::new(),
            };
        }
        CliError::new(UNAVAILABLE, format!("cannot write to stdout: {e}"))
    }

    /// Whether this ends the command without a message ([`CliError::stdout`] of a closed pipe).
    pub fn is_quiet(&self) -> bool {
        self.code == OK
    }

    /// Prefix the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Multi-line library messages are folded so the error stays one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub use tito::error::chain;

/// The exit code of an error kind (the library classifies, the CLI numbers).
pub fn kind_code(kind: tito::ErrorKind) -> i32 {
    use tito::ErrorKind as K;
    match kind {
        K::Failure => FAILURE,
        K::Usage => USAGE,
        K::NotFound => NOT_FOUND,
        K::Refused => REFUSED,
        K::Integrity => INTEGRITY,
        K::Unavailable => UNAVAILABLE,
    }
}

/// The exit code of an engine error.
pub fn engine_code(e: &EngineError) -> i32 {
    kind_code(tito::ErrorKind::of_engine(e))
}

/// The exit code of a store error.
pub fn store_code(e: &StoreError) -> i32 {
    kind_code(tito::ErrorKind::of_store(e))
}

/// The exit code of a change-capture error.
pub fn capture_code(e: &CaptureError) -> i32 {
    kind_code(tito::ErrorKind::of_capture(e))
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        let hint = tito::error::engine_hint(&e);
        CliError::new(engine_code(&e), format!("{}{hint}", chain(&e)))
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let hint = tito::error::store_hint(&e);
        CliError::new(store_code(&e), format!("{}{hint}", chain(&e)))
    }
}

impl From<CaptureError> for CliError {
    fn from(e: CaptureError) -> Self {
        match e {
            CaptureError::Engine(e) => e.into(),
            e => CliError::new(capture_code(&e), chain(&e)),
        }
    }
}

impl From<QueueError> for CliError {
    fn from(e: QueueError) -> Self {
        CliError::new(FAILURE, chain(&e))
    }
}

/// The exit code of a backup error.
pub fn backup_code(e: &BackupError) -> i32 {
    kind_code(tito::ErrorKind::of_backup(e))
}

/// The exit code of a planning error.
pub fn plan_code(e: &PlanError) -> i32 {
    match e {
        PlanError::Gap { .. } => INTEGRITY,
        PlanError::Ambiguous { .. } => USAGE,
        _ => NOT_FOUND,
    }
}

/// The exit code of a restore or verify error.
pub fn restore_code(e: &RestoreError) -> i32 {
    if e.is_integrity() {
        return INTEGRITY;
    }
    match e {
        RestoreError::BadTarget { .. } => USAGE,
        RestoreError::Plan(p) => plan_code(p),
        RestoreError::TargetNotEmpty { .. } | RestoreError::Refused { .. } => REFUSED,
        RestoreError::Repository(b) => backup_code(b),
        // An object the plan names is gone: the backup is damaged.
        RestoreError::Store(s) if s.is_not_found() => INTEGRITY,
        RestoreError::Store(s) => store_code(s),
        RestoreError::Engine(e) => engine_code(e),
        RestoreError::Capture(c) => capture_code(c),
        _ => FAILURE,
    }
}

impl From<BackupError> for CliError {
    fn from(e: BackupError) -> Self {
        let message = chain(&e);
        let hint = tito::error::backup_hint(&e, &message);
        CliError::new(backup_code(&e), format!("{message}{hint}"))
    }
}

impl From<RestoreError> for CliError {
    fn from(e: RestoreError) -> Self {
        let code = restore_code(&e);
        let hint = match (&e, code) {
            (RestoreError::Plan(_), _) => "; run `tito status` to see what is restorable",
            (RestoreError::TargetNotEmpty { .. }, _) | (RestoreError::BadTarget { .. }, _) => "",
            (_, INTEGRITY) => {
                "; nothing was restored; run `tito verify` to list every damaged object"
            }
            _ => "",
        };
        CliError::new(code, format!("{}{hint}", chain(&e)))
    }
}

impl From<tito::Error> for CliError {
    fn from(e: tito::Error) -> Self {
        match e {
            tito::Error::Open(e) => {
                CliError::new(kind_code(tito::ErrorKind::of_open(&e)), chain(&e))
            }
            // The same line a holder sends for a forwarded command that failed there.
            e => CliError::new(kind_code(e.kind()), tito::error::cli_message(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_stable() {
        let all = [
            OK,
            FAILURE,
            USAGE,
            NOT_FOUND,
            REFUSED,
            INTEGRITY,
            UNAVAILABLE,
            CHECK_FAILED,
        ];
        assert_eq!(all, [0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn messages_are_one_line() {
        let e = CliError::usage("bad\n  thing\n");
        assert_eq!(e.message, "bad thing");
        assert_eq!(e.context("opening x").message, "opening x: bad thing");
    }

    #[test]
    fn library_errors_map_to_codes() {
        let e: CliError = EngineError::Open("nope".into()).into();
        assert_eq!(e.code, UNAVAILABLE);
        assert!(e.message.contains("--db"), "{}", e.message);
        let e: CliError = StoreError::Config("bad store URL".into()).into();
        assert_eq!(e.code, USAGE);
        let e: CliError = StoreError::NotFound { key: "k".into() }.into();
        assert_eq!(e.code, NOT_FOUND);
        let e: CliError = CaptureError::Engine(EngineError::Corrupt("x".into())).into();
        assert_eq!(e.code, INTEGRITY);
    }
}
