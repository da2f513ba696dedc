//! The engine keyspace as Tito lays it out.
//!
//! ```text
//! <user key>                      any key not starting with RESERVED
//! RESERVED "log/" be_u64(lsn)     change log record (stamped put; value: be_u64(time_ms) ++ record)
//! RESERVED "q/" ...               queue state (pending events): backed up and captured like user keys
//! RESERVED "meta/" ...            database id, timeline, backup lease: never backed up
//! ```
//!
//! The *backed-up keyspace* is every user key plus the queue subspace.

use tito_engine::KeyRange;

/// The reserved prefix: user writes under it are rejected.
pub const RESERVED: &[u8] = b"\xfftito\x00";

/// Prefix of log records; the engine appends the big-endian LSN.
pub const LOG_PREFIX: &[u8] = b"\xfftito\x00log/";

/// Prefix of queue state.
pub const QUEUE_PREFIX: &[u8] = b"\xfftito\x00q/";

/// Prefix of metadata that is never backed up.
pub const META_PREFIX: &[u8] = b"\xfftito\x00meta/";

/// True if `key` is under the reserved prefix.
pub fn is_reserved(key: &[u8]) -> bool {
    key.starts_with(RESERVED)
}

/// True if `key` belongs to the backed-up keyspace (user keys and queue state).
pub fn is_backed_up(key: &[u8]) -> bool {
    !is_reserved(key) || key.starts_with(QUEUE_PREFIX)
}

/// The key ranges that together make up the backed-up keyspace, in key order.
pub fn backed_up_ranges() -> Vec<KeyRange> {
    vec![
        KeyRange::new(Vec::new(), RESERVED.to_vec()),
        KeyRange::prefix(QUEUE_PREFIX),
        KeyRange { start: tito_engine::KeyRange::prefix(RESERVED).end.expect("finite"), end: None },
    ]
}

/// The engine key of the log record with `lsn`.
pub fn log_key(lsn: u64) -> Vec<u8> {
    let mut k = LOG_PREFIX.to_vec();
    k.extend_from_slice(&lsn.to_be_bytes());
    k
}
