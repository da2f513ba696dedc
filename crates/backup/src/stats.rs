//! Counters of the backup service, read by `tito status` and the Prometheus endpoint.

use std::sync::Mutex;

use serde::Serialize;

use crate::now_ms;
use crate::snapshot::SnapshotResult;

/// A point-in-time copy of the service's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Last LSN known durable in the store.
    pub shipped_lsn: u64,
    /// Commit time of that record (ms).
    pub shipped_time_ms: u64,
    /// Records shipped since start.
    pub records_shipped: u64,
    /// Bytes uploaded since start (segments, chunks, manifests).
    pub bytes_uploaded: u64,
    /// Segments written since start.
    pub segments: u64,
    /// Snapshots taken since start.
    pub snapshots: u64,
    /// When the newest snapshot finished (ms), 0 if none since start.
    pub last_snapshot_ms: u64,
    /// Records shipped since the newest snapshot.
    pub records_since_snapshot: u64,
    /// Failed rounds since start.
    pub errors: u64,
    /// When the last round (successful or not) ended (ms).
    pub last_round_ms: u64,
    /// The error of the newest failed round, cleared by the next successful one.
    pub last_error: Option<String>,
}

/// Shared counters.
#[derive(Debug, Default)]
pub struct Stats(Mutex<StatsSnapshot>);

impl Stats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.0.lock().expect("stats lock").clone()
    }

    pub(crate) fn record_ship(&self, records: u64, bytes: u64, last_lsn: u64, last_time_ms: u64) {
        let mut s = self.0.lock().expect("stats lock");
        s.records_shipped += records;
        s.records_since_snapshot += records;
        s.bytes_uploaded += bytes;
        s.segments += 1;
        s.shipped_lsn = last_lsn;
        s.shipped_time_ms = last_time_ms;
    }

    pub(crate) fn record_snapshot(&self, r: &SnapshotResult) {
        let mut s = self.0.lock().expect("stats lock");
        s.snapshots += 1;
        s.bytes_uploaded += r.bytes;
        s.last_snapshot_ms = now_ms();
        s.records_since_snapshot = 0;
    }

    pub(crate) fn note_shipped(&self, lsn: u64) {
        let mut s = self.0.lock().expect("stats lock");
        s.shipped_lsn = s.shipped_lsn.max(lsn);
    }

    pub(crate) fn note_snapshot_time(&self, ms: u64) {
        let mut s = self.0.lock().expect("stats lock");
        s.last_snapshot_ms = s.last_snapshot_ms.max(ms);
    }

    pub(crate) fn note_error(&self, e: &dyn std::error::Error) {
        self.0.lock().expect("stats lock").last_error = Some(e.to_string());
    }

    pub(crate) fn record_round(&self, ok: bool) {
        let mut s = self.0.lock().expect("stats lock");
        if !ok {
            s.errors += 1;
        } else {
            s.last_error = None;
        }
        s.last_round_ms = now_ms();
    }
}
