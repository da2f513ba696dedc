//! Reading and trimming the change log (for the backup shipper).
//!
//! The log is read through engine read views and raw transactions, never through the
//! user API. LSNs are dense (each record's LSN is the previous plus one) except for the
//! jump [`tito_engine::Engine::advance_version`] makes after a restore and for records
//! already trimmed.

use tito_engine::{Engine, KeyRange, transaction};
use tito_format::record::LogRecord;

use crate::keys::{self, display_key};
use crate::{CaptureError, Result};

/// Records (or keys) read from the engine per page.
const PAGE: usize = 256;
/// Log keys deleted per trim transaction.
const TRIM_BATCH: usize = 1000;

/// The LSNs present in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    /// Oldest LSN present.
    pub oldest: u64,
    /// Newest LSN present.
    pub newest: u64,
}

impl LogBounds {
    /// Upper bound of the number of records present (exact while LSNs are dense).
    pub fn max_count(&self) -> u64 {
        self.newest - self.oldest + 1
    }
}

/// Decode one log entry from its engine key and value.
pub fn decode_log_entry(key: &[u8], value: &[u8]) -> Result<LogRecord> {
    let lsn = keys::log_key_lsn(key).ok_or_else(|| CaptureError::BadLogKey {
        key: display_key(key),
    })?;
    LogRecord::from_stamped(lsn, value).map_err(|source| CaptureError::CorruptRecord {
        key: display_key(key),
        source,
    })
}

/// Records with an LSN greater than `after`, in LSN order: at most `max_records`, and
/// stopping once their engine values total `max_bytes` or more (at least one record is
/// returned if any exists, however large). All come from one consistent read view.
pub async fn read_log(
    engine: &dyn Engine,
    after: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<Vec<LogRecord>> {
    let view = engine.read_view().await?;
    let mut range = keys::log_range_after(after);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while out.len() < max_records && bytes < max_bytes {
        let page = view.scan(&range, PAGE.min(max_records - out.len())).await?;
        let full = page.len() == PAGE.min(max_records - out.len());
        let Some(last) = page.last().map(|(k, _)| k.clone()) else {
            break;
        };
        for (k, v) in &page {
            out.push(decode_log_entry(k, v)?);
            bytes = bytes.saturating_add(k.len() + v.len());
            if bytes >= max_bytes {
                break;
            }
        }
        if !full {
            break;
        }
        range = range.after(&last);
    }
    Ok(out)
}

/// Delete every log record with an LSN of at most `through_lsn` that exists when the
/// call starts, in transactions of at most 1000 keys. Returns how many were deleted.
/// Records are immutable once written, so deleting them is a blind write that conflicts
/// with no writer.
pub async fn trim_log(engine: &dyn Engine, through_lsn: u64) -> Result<u64> {
    let view = engine.read_view().await?;
    let full = keys::log_range_through(through_lsn);
    let mut range = full.clone();
    let mut deleted = 0u64;
    loop {
        let page = view.scan(&range, TRIM_BATCH).await?;
        let Some((last, _)) = page.last() else { break };
        let batch = KeyRange {
            start: range.start.clone(),
            end: Some(full.after(last).start),
        };
        transaction(engine, |tx| {
            let batch = batch.clone();
            async move { Ok::<_, CaptureError>(tx.delete_range(&batch)?) }
        })
        .await?;
        deleted += page.len() as u64;
        if page.len() < TRIM_BATCH {
            break;
        }
        range = range.after(last);
    }
    Ok(deleted)
}

/// The oldest and newest LSNs present, or `None` if the log is empty.
pub async fn log_bounds(engine: &dyn Engine) -> Result<Option<LogBounds>> {
    transaction(engine, |tx| async move {
        let range = keys::log_range();
        let first = tx.scan(&range, 1).await?;
        let last = tx.scan_reverse(&range, 1).await?;
        let lsn = |kv: Option<&(Vec<u8>, Vec<u8>)>| -> Result<Option<u64>> {
            kv.map(|(k, _)| {
                keys::log_key_lsn(k).ok_or_else(|| CaptureError::BadLogKey {
                    key: display_key(k),
                })
            })
            .transpose()
        };
        Ok::<_, CaptureError>(match (lsn(first.first())?, lsn(last.first())?) {
            (Some(oldest), Some(newest)) => Some(LogBounds { oldest, newest }),
            _ => None,
        })
    })
    .await
}
