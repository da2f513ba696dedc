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
//!
//! Meta keys in use: `RESERVED "meta/database_id"` (UTF-8, 32 lowercase hex digits),
//! `RESERVED "meta/timeline"` (`be_u64`); other components add theirs with [`meta_key`].

use tito_engine::KeyRange;

/// The reserved prefix: user writes under it are rejected.
pub const RESERVED: &[u8] = b"\xfftito\x00";

/// Prefix of log records; the engine appends the big-endian LSN.
pub const LOG_PREFIX: &[u8] = b"\xfftito\x00log/";

/// Prefix of queue state.
pub const QUEUE_PREFIX: &[u8] = b"\xfftito\x00q/";

/// Prefix of metadata that is never backed up.
pub const META_PREFIX: &[u8] = b"\xfftito\x00meta/";

/// Meta key of the database id.
pub const META_DATABASE_ID: &[u8] = b"\xfftito\x00meta/database_id";

/// Meta key of the current timeline.
pub const META_TIMELINE: &[u8] = b"\xfftito\x00meta/timeline";

/// Meta key present while a restore into this database is unfinished.
pub const META_RESTORE_IN_PROGRESS: &[u8] = b"\xfftito\x00meta/restore-in-progress";

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
        KeyRange {
            start: tito_engine::KeyRange::prefix(RESERVED).end.expect("finite"),
            end: None,
        },
    ]
}

/// The range of every reserved key.
pub fn reserved_range() -> KeyRange {
    KeyRange::prefix(RESERVED)
}

/// The key ranges a user may read and write: the keyspace minus [`reserved_range`].
pub fn user_ranges() -> [KeyRange; 2] {
    let reserved = reserved_range();
    [
        KeyRange::new(Vec::new(), RESERVED.to_vec()),
        KeyRange {
            start: reserved.end.unwrap_or_default(),
            end: None,
        },
    ]
}

/// The range of the queue subspace.
pub fn queue_range() -> KeyRange {
    KeyRange::prefix(QUEUE_PREFIX)
}

/// The engine key of the log record with `lsn`.
pub fn log_key(lsn: u64) -> Vec<u8> {
    let mut k = LOG_PREFIX.to_vec();
    k.extend_from_slice(&lsn.to_be_bytes());
    k
}

/// The LSN of a log key, or `None` if `key` is not a well-formed log key.
pub fn log_key_lsn(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(LOG_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The range of every log record.
pub fn log_range() -> KeyRange {
    KeyRange::prefix(LOG_PREFIX)
}

/// The range of the log records with an LSN greater than `lsn`.
pub fn log_range_after(lsn: u64) -> KeyRange {
    let all = log_range();
    match lsn.checked_add(1) {
        Some(next) => KeyRange {
            start: log_key(next),
            end: all.end,
        },
        None => all.after(&log_key(lsn)),
    }
}

/// The range of the log records with an LSN of at most `lsn`.
pub fn log_range_through(lsn: u64) -> KeyRange {
    let all = log_range();
    match lsn.checked_add(1) {
        Some(next) => KeyRange {
            start: all.start,
            end: Some(log_key(next)),
        },
        None => all,
    }
}

/// The meta key named `name`.
pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = META_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// The intersection of two ranges, or `None` if they share no key.
pub fn intersect(a: &KeyRange, b: &KeyRange) -> Option<KeyRange> {
    let start = a.start.as_slice().max(b.start.as_slice()).to_vec();
    let end = match (&a.end, &b.end) {
        (Some(x), Some(y)) => Some(x.min(y).clone()),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    };
    let r = KeyRange { start, end };
    (!r.is_empty()).then_some(r)
}

/// A key printed for error messages: printable ASCII as is, other bytes as `\xNN`.
pub fn display_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_lsn_and_parse_back() {
        assert!(log_key(1) < log_key(2));
        assert!(log_key(255) < log_key(256));
        assert_eq!(log_key_lsn(&log_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(log_key_lsn(b"\xfftito\x00log/short"), None);
        assert_eq!(log_key_lsn(b"user"), None);
        assert!(!log_range_after(5).contains(&log_key(5)));
        assert!(log_range_after(5).contains(&log_key(6)));
        assert!(!log_range_after(u64::MAX).contains(&log_key(u64::MAX)));
        assert!(log_range_through(5).contains(&log_key(5)));
        assert!(!log_range_through(5).contains(&log_key(6)));
        assert!(log_range_through(u64::MAX).contains(&log_key(u64::MAX)));
    }

    #[test]
    fn prefixes_nest_under_reserved() {
        for p in [
            LOG_PREFIX,
            QUEUE_PREFIX,
            META_PREFIX,
            META_DATABASE_ID,
            META_TIMELINE,
        ] {
            assert!(is_reserved(p));
        }
        assert!(is_backed_up(b"\xfftito\x00q/x"));
        assert!(!is_backed_up(&log_key(1)));
        assert!(!is_backed_up(META_TIMELINE));
        assert!(is_backed_up(b"\xfftito\x01"));
        assert!(is_backed_up(b"\xfftit"));
        for r in user_ranges() {
            assert!(!r.overlaps(&reserved_range()));
        }
        assert!(user_ranges()[1].contains(b"\xff\xff"));
    }

    #[test]
    fn intersections() {
        let a = KeyRange::new(b"b".to_vec(), b"d".to_vec());
        assert_eq!(
            intersect(&a, &KeyRange::from(b"c".to_vec())),
            Some(KeyRange::new(b"c".to_vec(), b"d".to_vec()))
        );
        assert_eq!(
            intersect(&a, &KeyRange::new(b"d".to_vec(), b"e".to_vec())),
            None
        );
        assert_eq!(
            intersect(&KeyRange::all(), &KeyRange::all()),
            Some(KeyRange::all())
        );
        assert_eq!(display_key(b"\xfftito\x00q/"), "\\xfftito\\x00q/");
    }
}
