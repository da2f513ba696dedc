//! Log shipping: move committed log records from the engine into segments in the store.
//!
//! The order of steps is what makes a crash at any point safe:
//! 1. find where the store's log ends on this timeline (a listing, cached afterwards);
//! 2. read records after that point, write them as one segment named by its LSN range;
//! 3. only once the segment upload returned (durable), delete the shipped records from the
//!    engine, in a transaction that also checks our lease (fencing).
//!
//! A round ends at the newest record present when it starts (and, in continuous mode, after
//! a time budget), so it ends under sustained writes; the next round picks up from there.
//!
//! A crash before 3 leaves the records in the engine; the next run sees the segment in the
//! listing, trims them, and goes on after it. Nothing is shipped twice into overlapping
//! objects and nothing is trimmed before it is durable.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tito_capture::keys;
use tito_format::layout::{self, ObjectName};
use tito_format::{RawRecord, SegmentWriter};

use crate::error::BackupError;
use crate::service::BackupService;

/// What one shipping round did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Where the round was to end: the newest LSN present in the database's log when it
    /// started (records committed later are left to the next round).
    pub end_lsn: u64,
    /// True if the round shipped everything up to `end_lsn`; false if it stopped early
    /// because its time budget ran out (see [`BackupService::ship_log_within`]).
    pub complete: bool,
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
    /// Ship every record committed before the call, in segments, trimming each segment's
    /// records from the engine once it is durable. Holds the shipper lease and renews it
    /// with every trim.
    ///
    /// The round ends at the newest record present when it starts: records committed while
    /// it runs are left to the next round, so it returns under sustained writes. Every
    /// record committed before the call is in the store when it returns
    /// (`shipped_lsn` is at least the LSN of the last commit before the call).
    pub async fn ship_log(&self) -> Result<ShipResult, BackupError> {
        self.ship_round(None).await
    }

    /// [`BackupService::ship_log`], also stopping after the first segment that ends once
    /// `budget` has passed since the start (at least one segment is shipped per call, so a
    /// backlog always drains). `complete` in the result tells whether the round reached its
    /// end.
    pub async fn ship_log_within(&self, budget: Duration) -> Result<ShipResult, BackupError> {
        self.ship_round(Some(budget)).await
    }

    async fn ship_round(&self, budget: Option<Duration>) -> Result<ShipResult, BackupError> {
        let started = Instant::now();
        let _turn = self.ship_turn.lock().await;
        self.hold_lease().await?;
        let timeline = self.db.timeline().await?;
        let mut pos = self.position(timeline).await?;
        // Before anything is trimmed or shipped: the timeline must be ours to write.
        self.ensure_claim(timeline, pos.shipped).await?;
        // Records at or before the position are durable in the store already (a crash may
        // have come between upload and trim; the claim checked they are this database's):
        // trim them before reading on.
        self.trim_through(pos.shipped).await?;
        // Read once: the newest record now present is where this round ends.
        let bounds = self.db.log_bounds().await?;
        if let Some(bounds) = bounds {
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
        let end = bounds.map_or(pos.shipped, |b| b.newest.max(pos.shipped));

        let mut result = ShipResult {
            timeline,
            shipped_lsn: pos.shipped,
            end_lsn: end,
            complete: pos.shipped >= end,
            ..Default::default()
        };
        while pos.shipped < end {
            // No more than the round's end can hold: LSNs after `pos.shipped` up to `end`
            // number at most `end - pos.shipped`.
            let most = (end - pos.shipped).min(self.config.segment_max_records.max(1) as u64);
            let mut records = self
                .db
                .read_log(pos.shipped, most as usize, self.config.segment_max_bytes)
                .await?;
            records.retain(|r| r.lsn <= end);
            if records.is_empty() {
                // Nothing left up to `end` (only another shipper's trim could do this, and
                // the lease fences that): the round is over.
                break;
            }
            let (summary, key, bytes) =
                encode_segment(timeline, self.config.compression_level, &records)?;
            let size = bytes.len() as u64;
            if result.segments == 0 {
                // A claim taken before this round (by a copy, or a retirement) stops it
                // before it writes anything.
                self.check_claim(timeline).await?;
            }
            self.store.put(&key, Bytes::from(bytes)).await?;
            // Noted before they are trimmed: the next snapshot reads again only the chunks
            // these keys fall in.
            self.changes.observe(timeline, &records);
            // Another copy of this database may have claimed the timeline meanwhile: then
            // stop before trimming (our records stay in the engine, nothing is lost).
            self.check_claim(timeline).await?;
            pos.shipped = summary.last;
            self.set_position(pos);
            // Counted once durable, even if the trim below fails: the next round starts
            // after this segment and never ships these records again.
            self.stats
                .record_ship(summary.count, size, summary.last, summary.t1);
            // Trimming re-checks and renews the lease: a round of many segments stays
            // within its lease, and a fenced shipper stops here.
            self.trim_through(pos.shipped).await?;
            result.records += summary.count;
            result.segments += 1;
            result.bytes += size;
            result.shipped_lsn = pos.shipped;
            tracing::debug!(segment = %key, records = summary.count, "shipped");
            if budget.is_some_and(|b| started.elapsed() >= b) {
                break;
            }
        }
        result.complete = pos.shipped >= end;
        Ok(result)
    }

    /// Delete log records `..= lsn` from the engine, checking and renewing the lease in the
    /// same transaction.
    pub(crate) async fn trim_through(&self, lsn: u64) -> Result<(), BackupError> {
        if lsn == 0 {
            return Ok(());
        }
        let lease = self.lease.clone();
        tito_engine::transaction(self.db.engine().as_ref(), |tx| {
            let lease = lease.clone();
            async move {
                lease.renew_in(tx.as_ref()).await?;
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
        let (shipped, snapshot) = store_log_end(&self.repo, timeline).await?;
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

/// Encode `records` (dense LSNs, non-decreasing commit times) as one log segment of
/// `timeline` at zstd `level`: its summary, its object name and its bytes.
pub fn encode_segment(
    timeline: u64,
    level: i32,
    records: &[tito_format::record::LogRecord],
) -> Result<(tito_format::SegmentSummary, String, Vec<u8>), BackupError> {
    let mut writer = SegmentWriter::new(Vec::new(), timeline).with_level(level);
    for rec in records {
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
    Ok((summary, key, bytes))
}

/// Where the store's log on `timeline` ends, from a listing: `(shipped, snapshot)`, the
/// last LSN of its segments (or the timeline's branch point) and the LSN of its newest
/// complete snapshot (0 if none). This is where a shipper's position is stored: a
/// restarted shipper resumes after `shipped`.
pub async fn store_log_end(
    repo: &crate::Repository,
    timeline: u64,
) -> Result<(u64, u64), BackupError> {
    let mut shipped = repo.branch_lsn(timeline).await?;
    let mut snapshot = 0;
    let objects = repo.list(&layout::timeline_prefix(timeline)).await?;
    for obj in &objects {
        match layout::parse(&obj.key) {
            ObjectName::Segment { last, .. } => shipped = shipped.max(last),
            ObjectName::SnapshotManifest { lsn, .. } => snapshot = snapshot.max(lsn),
            _ => {}
        }
    }
    Ok((shipped, snapshot))
}
