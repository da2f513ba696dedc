//! Range checks shared by the backends, so they all agree on edge cases.

use std::ops::Range;

use crate::error::{Result, StoreError};

/// Accepts `start <= end <= size`; anything else is [`StoreError::InvalidRange`].
pub(crate) fn check_range(key: &str, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(StoreError::InvalidRange {
            key: key.to_string(),
            range: range.clone(),
            size,
        });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch for a system time (0 if before the epoch).
pub(crate) fn millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
