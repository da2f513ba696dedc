//! Errors of every reader, writer and document codec in this crate.
//!
//! Every variant names the object (its store key, or whatever name the caller gave) and
//! says what is wrong, so a message alone is enough to find the damaged object.

use std::io;

/// Result alias of this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// What can go wrong encoding, decoding or verifying an object.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading or writing the underlying stream failed.
    #[error("{object}: i/o error: {source}")]
    Io {
        /// The object.
        object: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The object ended before it was complete.
    #[error("{object}: truncated: object ends inside {what}")]
    Truncated {
        /// The object.
        object: String,
        /// Which part was cut off (e.g. `frame 3 payload`).
        what: String,
    },
    /// The object does not start with the expected magic bytes.
    #[error("{object}: not a {expected}: bad magic {found}")]
    BadMagic {
        /// The object.
        object: String,
        /// The kind of object expected.
        expected: &'static str,
        /// The bytes found, in hex.
        found: String,
    },
    /// The object's format version is not one this build can read.
    #[error("{object}: unsupported {kind} format version {version} (this build reads {supported})")]
    UnsupportedVersion {
        /// The object.
        object: String,
        /// The kind of object.
        kind: &'static str,
        /// The version found.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A part of the object failed its checksum.
    #[error("{object}: checksum mismatch in {part}")]
    Checksum {
        /// The object.
        object: String,
        /// Which part (e.g. `header`, `frame 2 payload`).
        part: String,
    },
    /// The whole-object checksum in the trailer does not match the bytes read.
    #[error(
        "{object}: object checksum mismatch: trailer says {expected}, content hashes to {actual}"
    )]
    ObjectChecksum {
        /// The object.
        object: String,
        /// Checksum stored in the object.
        expected: String,
        /// Checksum of the bytes read.
        actual: String,
    },
    /// The object's structure is inconsistent (bad lengths, bad tags, counts that disagree).
    #[error("{object}: corrupt: {problem}")]
    Corrupt {
        /// The object.
        object: String,
        /// What is inconsistent.
        problem: String,
    },
    /// Bytes follow the end of the object.
    #[error("{object}: unexpected bytes after the end of the object")]
    TrailingBytes {
        /// The object.
        object: String,
    },
    /// A log record's LSN is not the next one (LSNs are strictly increasing and dense).
    #[error("{object}: unexpected LSN {found}, expected {expected}")]
    UnexpectedLsn {
        /// The object.
        object: String,
        /// The LSN that should come next.
        expected: u64,
        /// The LSN found.
        found: u64,
    },
    /// A log record's commit time is before the previous record's.
    #[error(
        "{object}: commit time of LSN {lsn} goes backwards: {time_ms} ms after {previous_ms} ms"
    )]
    TimeWentBackwards {
        /// The object.
        object: String,
        /// The record's LSN.
        lsn: u64,
        /// Its commit time.
        time_ms: u64,
        /// The previous record's commit time.
        previous_ms: u64,
    },
    /// A key is not strictly greater than the previous one.
    #[error("{object}: key {key} (pair {index}) is not greater than the previous key {previous}")]
    KeyOrder {
        /// The object.
        object: String,
        /// Index of the pair in the object.
        index: u64,
        /// The key, in hex.
        key: String,
        /// The previous key, in hex.
        previous: String,
    },
    /// An entry is too large for the format (lengths are 32-bit).
    #[error("{object}: {what} of {len} bytes exceeds the format limit of {limit} bytes")]
    TooLarge {
        /// The object.
        object: String,
        /// What is too large.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A document (manifest, config, ...) breaks a rule of its format.
    #[error("{object}: invalid {kind}: {problem}")]
    Invalid {
        /// The object.
        object: String,
        /// The kind of document.
        kind: &'static str,
        /// The broken rule.
        problem: String,
    },
    /// A document's JSON does not parse.
    #[error("{object}: malformed {kind} JSON: {source}")]
    Json {
        /// The object.
        object: String,
        /// The kind of document.
        kind: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The repository holds another database's backups.
    #[error(
        "{object}: repository {repository_id} holds backups of database {found}, not of database {expected}; \
         use another location"
    )]
    WrongDatabase {
        /// The config object.
        object: String,
        /// The repository id.
        repository_id: String,
        /// Database id in the repository.
        found: String,
        /// Database id of the caller.
        expected: String,
    },
    /// A writer was used after an earlier call failed (its output is incomplete).
    #[error("{object}: writer already failed: {problem}")]
    WriterFailed {
        /// The object.
        object: String,
        /// The first failure.
        problem: String,
    },
}

impl FormatError {
    /// Map an i/o error: an unexpected end of input becomes [`FormatError::Truncated`].
    pub(crate) fn read(object: &str, what: impl FnOnce() -> String, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            FormatError::Truncated {
                object: object.to_string(),
                what: what(),
            }
        } else {
            FormatError::Io {
                object: object.to_string(),
                source,
            }
        }
    }

    /// A structural inconsistency.
    pub(crate) fn corrupt(object: &str, problem: impl Into<String>) -> Self {
        FormatError::Corrupt {
            object: object.to_string(),
            problem: problem.into(),
        }
    }
}

/// Lowercase hex of `bytes` (for messages and JSON).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Hex of a key for messages, shortened when long.
pub(crate) fn key_hex(key: &[u8]) -> String {
    const MAX: usize = 64;
    if key.len() <= MAX {
        hex(key)
    } else {
        format!("{}..({} bytes)", hex(&key[..MAX]), key.len())
    }
}
