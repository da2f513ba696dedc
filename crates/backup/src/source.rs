//! Shipping records that do not come from a Tito database's capture log.
//!
//! [`BackupService`](crate::BackupService) ships the capture log of a [`tito_capture::Db`].
//! A source Tito did not write (an etcd cluster followed by a watch, say) hands its records
//! to a [`LogShipper`] through the [`LogSource`] trait instead. Everything after that is the
//! same as for a database: the same segments ([`encode_segment`]), the same snapshots
//! ([`write_snapshot`]), the same writer claims in the store, and the position is where it
//! is for every shipper: the end of the store's log on the timeline ([`store_log_end`]), so
//! a restarted shipper resumes right after the last record that reached the store.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tito_format::layout::Writer;
use tito_format::record::LogRecord;

use crate::config::BackupConfig;
use crate::error::BackupError;
use crate::repository::Repository;
use crate::shipper::{ShipResult, encode_segment, store_log_end};
use crate::snapshot::{SnapshotOf, SnapshotOptions, SnapshotResult, write_snapshot};
use crate::stats::Stats;

/// Where a [`LogShipper`]'s records come from.
#[async_trait]
pub trait LogSource: Send + Sync {
    /// Records with LSNs after `after`, in LSN order and dense (each the previous plus
    /// one), at most `most` of them and about `max_bytes` of bodies (at least one record if
    /// any is ready). Empty when none is ready yet. The first record may start after
    /// `after + 1` only right after a snapshot that covers the missing LSNs (the shipper
    /// checks).
    async fn records_after(
        &self,
        after: u64,
        most: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, BackupError>;

    /// Every record through `lsn` is durable in the store: the source may forget them.
    async fn shipped_through(&self, lsn: u64) -> Result<(), BackupError>;
}

/// The shipper's view of the store's log: what it holds and the claim this shipper took.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    shipped: u64,
    snapshot: u64,
    epoch: Option<u64>,
}

/// Ships records of a [`LogSource`] into one timeline of a repository, and takes
/// snapshots of read views of the same source.
pub struct LogShipper {
    repo: Repository,
    timeline: u64,
    config: BackupConfig,
    owner: String,
    state: Mutex<State>,
    /// One shipping round at a time.
    turn: tokio::sync::Mutex<()>,
    /// One claim attempt at a time (a round and a snapshot may start together).
    claiming: tokio::sync::Mutex<()>,
    stats: Stats,
}

impl LogShipper {
    /// A shipper of `timeline` in `repo` (with a random token in its writer claim); its
    /// position is read from the store ([`store_log_end`]).
    pub async fn open(
        repo: Repository,
        timeline: u64,
        config: BackupConfig,
    ) -> Result<Self, BackupError> {
        let (shipped, snapshot) = store_log_end(&repo, timeline).await?;
        let shipper = LogShipper {
            repo,
            timeline,
            config,
            owner: format!("{:016x}", rand::random::<u64>()),
            state: Mutex::new(State {
                shipped,
                snapshot,
                epoch: None,
            }),
            turn: tokio::sync::Mutex::new(()),
            claiming: tokio::sync::Mutex::new(()),
            stats: Stats::default(),
        };
        shipper.stats.note_shipped(shipped);
        Ok(shipper)
    }

    /// The repository shipped into.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The timeline shipped on.
    pub fn timeline(&self) -> u64 {
        self.timeline
    }

    /// The config in use.
    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// The shipper's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Last LSN of the store's log (every record through it is durable there).
    pub fn shipped(&self) -> u64 {
        self.state.lock().expect("state lock").shipped
    }

    /// LSN of the newest complete snapshot on the timeline (0 if none).
    pub fn snapshot_lsn(&self) -> u64 {
        self.state.lock().expect("state lock").snapshot
    }

    /// Where restorable coverage ends: the later of [`Self::shipped`] and
    /// [`Self::snapshot_lsn`]. The next record to ship is this plus one.
    pub fn covered(&self) -> u64 {
        let s = self.state.lock().expect("state lock");
        s.shipped.max(s.snapshot)
    }

    /// Claim the timeline for this shipper (once): a retired timeline is refused, and a
    /// shipper that claims it later stops this one at its next segment.
    async fn ensure_claim(&self) -> Result<u64, BackupError> {
        let _claiming = self.claiming.lock().await;
        if let Some(epoch) = self.state.lock().expect("state lock").epoch {
            return Ok(epoch);
        }
        if let Some((_, Writer::RetiredBy(by))) = self.repo.claims(self.timeline).await?.last() {
            return Err(BackupError::TimelineRetired {
                timeline: self.timeline,
                by: *by,
            });
        }
        let epoch = self
            .repo
            .claim(self.timeline, &Writer::Shipper(self.owner.clone()))
            .await?;
        self.state.lock().expect("state lock").epoch = Some(epoch);
        Ok(epoch)
    }

    /// Fail unless this shipper's claim is still the newest on the timeline.
    async fn check_claim(&self, epoch: u64) -> Result<(), BackupError> {
        let timeline = self.timeline;
        match self.repo.claims(timeline).await?.last() {
            Some((e, _)) if *e == epoch => Ok(()),
            Some((_, Writer::RetiredBy(by))) => {
                Err(BackupError::TimelineRetired { timeline, by: *by })
            }
            Some((e, Writer::Shipper(token))) => Err(BackupError::Diverged {
                timeline,
                reason: format!(
                    "shipper {token} claimed the timeline (claim {e}) after this one (claim \
                     {epoch}); this shipper stopped"
                ),
            }),
            None => Err(BackupError::Diverged {
                timeline,
                reason: "this shipper's claim on the timeline is gone".into(),
            }),
        }
    }

    /// Ship what `source` has ready, in segments, stopping once it has none (or after the
    /// first segment that ends once `budget` has passed). A record that does not follow
    /// the store's log (and is not bridged by a snapshot) is [`BackupError::LogGap`].
    pub async fn ship(
        &self,
        source: &dyn LogSource,
        budget: Option<Duration>,
    ) -> Result<ShipResult, BackupError> {
        let started = Instant::now();
        let _turn = self.turn.lock().await;
        let epoch = self.ensure_claim().await?;
        let timeline = self.timeline;
        let mut result = ShipResult {
            timeline,
            shipped_lsn: self.shipped(),
            complete: true,
            ..Default::default()
        };
        loop {
            let State {
                shipped, snapshot, ..
            } = *self.state.lock().expect("state lock");
            let records = source
                .records_after(
                    shipped,
                    self.config.segment_max_records.max(1),
                    self.config.segment_max_bytes,
                )
                .await?;
            let Some(first) = records.first() else {
                break;
            };
            // Records must follow the store's log, or start right after a snapshot that
            // covers what is missing (the catalog then shows a gap that it bridges).
            if first.lsn <= shipped || (first.lsn > shipped + 1 && snapshot + 1 < first.lsn) {
                return Err(BackupError::LogGap {
                    timeline,
                    shipped,
                    oldest: first.lsn,
                    gap_from: shipped + 1,
                    gap_to: first.lsn.saturating_sub(1),
                });
            }
            let (summary, key, bytes) =
                encode_segment(timeline, self.config.compression_level, &records)?;
            let size = bytes.len() as u64;
            self.check_claim(epoch).await?;
            self.repo.store().put(&key, Bytes::from(bytes)).await?;
            self.state.lock().expect("state lock").shipped = summary.last;
            self.stats
                .record_ship(summary.count, size, summary.last, summary.t1);
            source.shipped_through(summary.last).await?;
            result.records += summary.count;
            result.segments += 1;
            result.bytes += size;
            result.shipped_lsn = summary.last;
            tracing::debug!(segment = %key, records = summary.count, "shipped");
            if budget.is_some_and(|b| started.elapsed() >= b) {
                result.complete = false;
                break;
            }
        }
        result.end_lsn = result.shipped_lsn;
        Ok(result)
    }

    /// Take a snapshot of `view` (a consistent view of the source at its
    /// [`tito_engine::ReadView::version`]), beside shipping rounds; records after it may
    /// follow at once, even if
    /// the store's log stops earlier (the catalog then shows the missing LSNs as a gap
    /// that this snapshot bridges).
    pub async fn snapshot(
        &self,
        view: &dyn tito_engine::ReadView,
        lsn_time_ms: u64,
        engine: &str,
    ) -> Result<SnapshotResult, BackupError> {
        // Not in turn with shipping: rounds go on while a snapshot is read.
        let epoch = self.ensure_claim().await?;
        self.check_claim(epoch).await?;
        let result = write_snapshot(
            &self.repo,
            &self.config,
            SnapshotOf {
                view,
                timeline: self.timeline,
                lsn_time_ms,
                engine,
                // Its view holds no log to close the gap between the shipped records and
                // the view, so every snapshot reads everything.
                reuse: None,
            },
            &SnapshotOptions::default(),
            &|_, _| {},
        )
        .await?;
        {
            let mut s = self.state.lock().expect("state lock");
            s.snapshot = s.snapshot.max(result.lsn);
        }
        self.stats.record_snapshot(&result);
        Ok(result)
    }
}
