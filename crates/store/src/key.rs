//! Key validation shared by every backend, so no key can escape a store's root.

use crate::error::{Result, StoreError};

/// Longest accepted key, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Checks that `key` is a relative, '/'-separated key that cannot escape the root.
///
/// Rejected: empty keys, keys longer than [`MAX_KEY_LEN`], a leading '/', empty segments
/// (`a//b`, trailing '/'), `.` and `..` segments, NUL and other ASCII control characters,
/// backslashes, and segments starting with `.tito-tmp-` (reserved for temporary files).
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("absolute keys are not allowed (leading '/')");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    if key.contains('\\') {
        return bad("contains a backslash");
    }
    if key.chars().any(|c| c.is_control()) {
        return bad("contains a control character");
    }
    for seg in key.split('/') {
        match seg {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("'.' and '..' segments are not allowed"),
            s if s.starts_with(TMP_PREFIX) => {
                return bad("segment uses the reserved temp-file prefix");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty, or a key prefix (the last segment may be partial).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    // "a/b/" is a valid prefix: validate it with a placeholder last segment.
    let probe = if prefix.ends_with('/') {
        format!("{prefix}x")
    } else {
        prefix.to_string()
    };
    validate_key(&probe).map_err(|e| match e {
        StoreError::InvalidKey { reason, .. } => StoreError::InvalidKey {
            key: prefix.to_string(),
            reason,
        },
        other => other,
    })
}

/// Name prefix of temporary files written by the local backend; never a valid key segment.
pub(crate) const TMP_PREFIX: &str = ".tito-tmp-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escaping_and_malformed_keys() {
        for k in [
            "",
            "/abs",
            "../x",
            "a/../../x",
            "a/..",
            "./a",
            "a//b",
            "a/",
            "a\0b",
            "a\\b",
            "a\nb",
            "x/.tito-tmp-1",
        ] {
            assert!(
                matches!(validate_key(k), Err(StoreError::InvalidKey { .. })),
                "key {k:?} accepted"
            );
        }
        assert!(validate_key(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn accepts_unusual_valid_keys() {
        for k in [
            "a",
            "a/b/c",
            "sp ace",
            "ünï/cødé",
            "a..b",
            "..a",
            "a#1",
            "x=1&y=%20",
            "~!@$",
        ] {
            assert!(validate_key(k).is_ok(), "key {k:?} rejected");
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("a/b/").is_ok());
        assert!(validate_prefix("a/b/par").is_ok());
        assert!(validate_prefix("../").is_err());
    }
}
