//! Writer claims: one database writes each timeline of a store.
//!
//! The engine lease fences shippers of one database. Two *copies* of a database (a copied
//! file, a cloned machine image) have the same database id and timeline but separate
//! engines, so only the store can tell them apart. Each shipper claims the timeline in the
//! store before it trims or ships anything (`timelines/<tl>/writers/<epoch>-<token>.claim`,
//! create-only, a higher epoch than every claim there), and checks after every upload,
//! before trimming, that its claim is still the newest. A copy that starts shipping takes
//! the timeline over and the older shipper stops at its next segment, keeping its records
//! in its engine: nothing is trimmed that the store does not hold as this database wrote it.
//!
//! Before claiming, a shipper proves the store's log on the timeline is its own: the
//! store may not reach past this database's own commit counter, and records this database
//! still holds up to the store's end must equal the store's copies. A copy that has
//! diverged is refused there, before it ships or trims anything.
//!
//! A restore that replaces a database (in place, or a copy told to continue the lineage)
//! retires the timeline it replaces with a final claim, `retired-by-<tl>`: no shipper
//! writes a retired timeline again, and retention and restore planning treat it as history.

use futures::TryStreamExt;
use tito_format::SegmentReader;
use tito_format::layout::{self, ObjectName, Writer};

use crate::error::BackupError;
use crate::service::BackupService;

/// The claim this service holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub timeline: u64,
    pub epoch: u64,
}

impl BackupService {
    /// Claim `timeline` for this shipper unless it already holds the claim: refuse a
    /// retired timeline and a store whose log up to `shipped` is not this database's.
    pub(crate) async fn ensure_claim(
        &self,
        timeline: u64,
        shipped: u64,
    ) -> Result<(), BackupError> {
        let held = *self.claim.lock().expect("claim lock");
        if held.is_some_and(|c| c.timeline == timeline) {
            return Ok(());
        }
        if let Some((_, Writer::RetiredBy(by))) = self.repo.claims(timeline).await?.last() {
            return Err(BackupError::TimelineRetired { timeline, by: *by });
        }
        self.check_store_log_is_ours(timeline, shipped).await?;
        let token = Writer::Shipper(self.lease.owner().to_string());
        let epoch = self.repo.claim(timeline, &token).await?;
        tracing::debug!(timeline, epoch, "claimed the timeline for this shipper");
        *self.claim.lock().expect("claim lock") = Some(Claim { timeline, epoch });
        Ok(())
    }

    /// Fail unless this shipper's claim on `timeline` is still the newest.
    pub(crate) async fn check_claim(&self, timeline: u64) -> Result<(), BackupError> {
        let Some(held) = *self.claim.lock().expect("claim lock") else {
            return Ok(());
        };
        match self.repo.claims(timeline).await?.last() {
            Some((epoch, _)) if *epoch == held.epoch => Ok(()),
            Some((_, Writer::RetiredBy(by))) => {
                Err(BackupError::TimelineRetired { timeline, by: *by })
            }
            Some((epoch, Writer::Shipper(token))) => Err(BackupError::Diverged {
                timeline,
                reason: format!(
                    "shipper {token} claimed the timeline (claim {epoch}) after this one \
                     (claim {}); this shipper stopped before trimming",
                    held.epoch
                ),
            }),
            None => Err(BackupError::Diverged {
                timeline,
                reason: "this shipper's claim on the timeline is gone".into(),
            }),
        }
    }

    /// Prove that the store's log on `timeline`, which ends at `shipped`, was written by
    /// this database: it cannot reach past our own commits, and the records we still hold
    /// up to there must be the store's.
    async fn check_store_log_is_ours(
        &self,
        timeline: u64,
        shipped: u64,
    ) -> Result<(), BackupError> {
        let committed = self.db.engine().read_view().await?.version();
        if shipped > committed {
            return Err(BackupError::Diverged {
                timeline,
                reason: format!(
                    "the store's log reaches LSN {shipped}, but this database has committed \
                     only up to LSN {committed}"
                ),
            });
        }
        let Some(bounds) = self.db.log_bounds().await? else {
            return Ok(());
        };
        if bounds.oldest > shipped {
            return Ok(()); // every record we hold is after the store's end
        }
        let segments: Vec<(String, u64)> = self
            .store
            .list(&layout::log_prefix(timeline))
            .map_ok(|o| o.key)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .filter_map(|key| match layout::parse(&key) {
                ObjectName::Segment { first, last, .. }
                    if last >= bounds.oldest && first <= shipped =>
                {
                    Some((key, last))
                }
                _ => None,
            })
            .collect();
        let mut next = bounds.oldest;
        for (key, last) in segments {
            if last < next {
                continue; // covered by an earlier overlapping segment
            }
            let ours = self
                .db
                .read_log(next - 1, (last - next + 1) as usize, usize::MAX)
                .await?;
            let bytes = self.store.get(&key).await?;
            let theirs: Vec<tito_format::RawRecord> = SegmentReader::new(&bytes[..], key.clone())?
                .filter_map(|r| match r {
                    Ok(r) if r.lsn >= next => Some(Ok(r)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()?;
            for (mine, stored) in ours.iter().zip(theirs.iter()) {
                if mine.lsn != stored.lsn
                    || mine.time_ms != stored.time_ms
                    || mine.encode_body() != stored.body
                {
                    return Err(BackupError::Diverged {
                        timeline,
                        reason: format!(
                            "record {} in the store ({key}) differs from this database's \
                             record {}",
                            stored.lsn, mine.lsn
                        ),
                    });
                }
            }
            next = next.max(last.min(shipped) + 1);
        }
        Ok(())
    }
}
