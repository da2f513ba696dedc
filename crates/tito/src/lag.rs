//! What is committed in a database but not shipped yet.

use serde::{Deserialize, Serialize};
use tito_capture::{CaptureError, Db};

/// What is committed in the database but not shipped yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// Unshipped log records still in the database.
    pub records: u64,
    /// Oldest unshipped LSN (0 if none).
    pub oldest_lsn: u64,
    /// Newest LSN in the log (0 if none).
    pub newest_lsn: u64,
    /// Commit time of the oldest unshipped record (ms, 0 if none).
    pub oldest_time_ms: u64,
    /// Age of the oldest unshipped record in ms (0 if none).
    pub age_ms: u64,
}

/// The live lag of `db`: every record still in its log is unshipped (the shipper trims
/// what is durable in the store).
pub async fn live_lag(db: &Db) -> Result<Lag, CaptureError> {
    let Some(bounds) = db.log_bounds().await? else {
        return Ok(Lag::default());
    };
    let oldest = db
        .read_log(bounds.oldest.saturating_sub(1), 1, usize::MAX)
        .await?;
    let oldest_time_ms = oldest.first().map_or(0, |r| r.time_ms);
    Ok(Lag {
        records: bounds.max_count(),
        oldest_lsn: bounds.oldest,
        newest_lsn: bounds.newest,
        oldest_time_ms,
        age_ms: tito_backup::now_ms().saturating_sub(oldest_time_ms),
    })
}
