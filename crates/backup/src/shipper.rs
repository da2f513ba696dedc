//! Log shipping: move committed log records from the engine into segments in the store.
//!
//! The order of steps is what makes a crash at any point safe:
//! 1. find where the store's log ends on this timeline (a listing, cached afterwards);
//! 2. read records after that point, write them as one segment named by its LSN range;
//! 3. only once the segment upload returned (durable), delete the shipped records from the
//!    engine, in a transaction that also checks our lease (fencing).
//!
//! A crash before 3 leaves the records in the engine; the next run sees the segment in the
//! listing, trims them, and goes on after it. Nothing is shipped twice into overlapping
//! objects and nothing is trimmed before it is durable.

use bytes::Bytes;
use tito_capture::keys;
use tito_format::layout::{self, ObjectName};
use tito_format::{RawRecord, SegmentWriter};

use crate::error::BackupError;
use crate::service::BackupService;

/// What one shipping round did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShipResult {
    /// Timeline shipped on.
    pub timeline: u64,
    /// Records shipped in this round.
    pub records: u64,
    /// Segments written.
    pub segments: u64,
    /// Compressed bytes uploaded.
    pub bytes: u64,
    /// The last LSN in the store after this round.
    pub shipped_lsn: u64,
}

/// Where the store's log ends on one timeline, and what else bounds the start of shipping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub timeline: u64,
    /// Every record up to this LSN is in the store's segments (or precedes the timeline).
    pub shipped: u64,
    /// LSN of the newest complete snapshot on the timeline (0 if none).
    pub snapshot: u64,
}

impl BackupService {
    /// Ship every committed record not yet in the store, in segments, then trim them
    /// from the engine. Holds (and renews) the shipper lease.
    pub async fn ship_log(&self) -> Result<ShipResult, BackupError> {
        self.hold_lease().await?;
        let timeline = self.db.timeline().await?;
        let mut pos = self.position(timeline).await?;
        // Records at or before the position are durable in the store already (a crash may
        // have come between upload and trim): trim them before reading on.
        self.trim_through(pos.shipped).await?;
        if let Some(bounds) = self.db.log_bounds().await? {
            if bounds.oldest > pos.shipped + 1 {
                // Records before `oldest` were removed without reaching this store. Only a
                // snapshot taken after them can restart restorable coverage.
                if pos.snapshot >= bounds.oldest - 1 {
                    pos.shipped = bounds.oldest - 1;
                    self.set_position(pos);
                } else {
                    return Err(BackupError::LogGap {
                        timeline,
                        shipped: pos.shipped,
                        oldest: bounds.oldest,
                        gap_from: pos.shipped + 1,
                        gap_to: bounds.oldest - 1,
                    });
                }
            }
        }

        let mut result = ShipResult {
            timeline,
            shipped_lsn: pos.shipped,
            ..Default::default()
        };
        loop {
            let records = self
                .db
                .read_log(
                    pos.shipped,
                    self.config.segment_max_records,
                    self.config.segment_max_bytes,
                )
                .await?;
            if records.is_empty() {
                break;
            }
            let mut writer =
                SegmentWriter::new(Vec::new(), timeline).with_level(self.config.compression_level);
            for rec in &records {
                let raw = RawRecord {
                    lsn: rec.lsn,
                    time_ms: rec.time_ms,
                    body: rec.encode_body(),
                };
                writer.push(&raw)?;
            }
            let (summary, bytes) = writer.finish_into_inner()?;
            let key = layout::segment(
                timeline,
                summary.first,
                summary.last,
                summary.t0,
                summary.t1,
            );
            let size = bytes.len() as u64;
            self.store.put(&key, Bytes::from(bytes)).await?;
            pos.shipped = summary.last;
            self.set_position(pos);
            self.trim_through(pos.shipped).await?;
            result.records += summary.count;
            result.segments += 1;
            result.bytes += size;
            result.shipped_lsn = pos.shipped;
            self.stats
                .record_ship(summary.count, size, summary.last, summary.t1);
            tracing::debug!(segment = %key, records = summary.count, "shipped");
        }
        Ok(result)
    }

    /// Delete log records `..= lsn` from the engine, checking the lease in the same transaction.
    pub(crate) async fn trim_through(&self, lsn: u64) -> Result<(), BackupError> {
        if lsn == 0 {
            return Ok(());
        }
        let lease = self.lease.clone();
        tito_engine::transaction(self.db.engine().as_ref(), |tx| {
            let lease = lease.clone();
            async move {
                lease.check_in(tx.as_ref()).await?;
                tx.delete_range(&keys::log_range_through(lsn))?;
                Ok::<_, BackupError>(())
            }
        })
        .await
    }

    /// The store's log end on `timeline`: cached, or found by listing the timeline.
    pub(crate) async fn position(&self, timeline: u64) -> Result<Position, BackupError> {
        if let Some(pos) = *self.position.lock().expect("position lock") {
            if pos.timeline == timeline {
                return Ok(pos);
            }
        }
        let mut shipped = self.repo.branch_lsn(timeline).await?;
        let mut snapshot = 0;
        let objects = self.repo.list(&layout::timeline_prefix(timeline)).await?;
        for obj in &objects {
            match layout::parse(&obj.key) {
                ObjectName::Segment { last, .. } => shipped = shipped.max(last),
                ObjectName::SnapshotManifest { lsn, .. } => snapshot = snapshot.max(lsn),
                _ => {}
            }
        }
        let pos = Position {
            timeline,
            shipped,
            snapshot,
        };
        self.set_position(pos);
        Ok(pos)
    }

    fn set_position(&self, pos: Position) {
        *self.position.lock().expect("position lock") = Some(pos);
    }
}
