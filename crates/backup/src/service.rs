//! The backup service: the noun that ties a database, a repository and a config together.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tito_capture::Db;
use tito_format::RestorePoint;
use tito_format::layout::{self, ObjectName};
use tito_store::Store;
use tokio::sync::watch;

use crate::config::BackupConfig;
use crate::error::BackupError;
use crate::lease::Lease;
use crate::now_ms;
use crate::repository::Repository;
use crate::shipper::{Position, ShipResult};
use crate::snapshot::SnapshotResult;
use crate::stats::Stats;

/// Continuous backup of one database into one repository.
///
/// Built from a database, a store and a config like the original `TitoBackupService`,
/// with the same verbs: [`BackupService::run_backup`], [`BackupService::ship_log`],
/// [`BackupService::snapshot`], plus [`BackupService::run_continuous`],
/// [`BackupService::restore_point`] and [`BackupService::release_lease`]. Restore lives in
/// `tito-restore`.
pub struct BackupService {
    pub(crate) db: Db,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) repo: Repository,
    pub(crate) config: BackupConfig,
    pub(crate) lease: Lease,
    pub(crate) position: Mutex<Option<Position>>,
    pub(crate) claim: Mutex<Option<crate::claim::Claim>>,
    pub(crate) stats: Stats,
    /// One shipping round at a time: a round started by `sync`/`restore_point` beside
    /// `run_continuous` must not read the same records and write overlapping segments.
    pub(crate) ship_turn: tokio::sync::Mutex<()>,
    /// Continuous mode: the level-1 window of the last compaction, and whether it finished.
    pub(crate) compacted: Mutex<Option<(u64, bool)>>,
    /// The keys shipped since the last snapshot: what the next one reads again.
    pub(crate) changes: crate::changes::Changes,
    /// One snapshot at a time (each is the base of the next).
    pub(crate) snapshot_turn: tokio::sync::Mutex<()>,
}

/// What one `run_backup` round did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupResult {
    /// The log shipping part.
    pub shipped: ShipResult,
    /// The snapshot, if one was due and taken.
    pub snapshot: Option<SnapshotResult>,
}

impl BackupService {
    /// A service for `db` backing up into `store`. Creates the repository on first use; a
    /// store holding another database's backups is refused.
    pub async fn new(
        db: Db,
        store: Arc<dyn Store>,
        config: BackupConfig,
    ) -> Result<Self, BackupError> {
        let database_id = tito_capture::meta::ensure_database_id(db.engine().as_ref()).await?;
        let repo = Repository::open_or_create(store.clone(), &database_id).await?;
        crate::branch::open_pending_branch(db.engine().as_ref(), &repo).await?;
        let lease = Lease::new(db.engine().clone(), config.lease_ttl);
        Ok(BackupService {
            db,
            store,
            repo,
            config,
            lease,
            position: Mutex::new(None),
            claim: Mutex::new(None),
            stats: Stats::default(),
            ship_turn: tokio::sync::Mutex::new(()),
            compacted: Mutex::new(None),
            changes: Default::default(),
            snapshot_turn: tokio::sync::Mutex::new(()),
        })
    }

    /// The repository written to.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The database backed up.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The service's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The config in use.
    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// One round: ship the log, then take a snapshot if one is due (or if the repository
    /// has none on this timeline yet, since nothing is restorable without one).
    pub async fn run_backup(&self) -> Result<BackupResult, BackupError> {
        self.round(None).await
    }

    /// A round whose shipping stops after `budget` (see [`BackupService::ship_log_within`]).
    /// The lease is renewed in the background all along, so a slow store call (an upload
    /// or a listing longer than the lease TTL) does not hand the database to a waiting
    /// shipper.
    async fn round(&self, budget: Option<Duration>) -> Result<BackupResult, BackupError> {
        self.keeping_lease(async {
            let shipped = match budget {
                Some(b) => self.ship_log_within(b).await?,
                None => self.ship_log().await?,
            };
            let snapshot = if self.snapshot_due().await? {
                Some(self.snapshot().await?)
            } else {
                None
            };
            Ok(BackupResult { shipped, snapshot })
        })
        .await
    }

    /// Run `work` while renewing the lease we hold every third of its TTL. Renewal only
    /// extends a lease this shipper still owns, so it never undoes a takeover; the work's
    /// destructive steps re-check the lease in their own transactions (fencing).
    pub(crate) async fn keeping_lease<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, BackupError>>,
    ) -> Result<T, BackupError> {
        let every = (self.config.lease_ttl / 3).max(Duration::from_millis(1));
        let keepalive = async {
            loop {
                tokio::time::sleep(every).await;
                // A lost lease is found by the next trim, which is fenced.
                if let Err(e) = self.lease.renew().await {
                    tracing::warn!(error = %e, "could not renew the backup lease");
                    return;
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            r = &mut work => r,
            // Renewal gave up: finish the work without it.
            () = keepalive => work.await,
        }
    }

    /// Ship every `ship_interval`, snapshot when due, until `shutdown` turns true (or its
    /// sender is dropped). Each round ships at most what was committed when it began and
    /// stops after `max_round_duration`, so snapshots and lease renewal keep their schedule
    /// under sustained writes; a round that left a backlog is followed at once by the next.
    /// Errors of one round are logged and counted; the next round retries. Losing the lease
    /// ends the run with that error. At exit, ships what was committed until the stop and
    /// releases the lease (whatever the outcome; the release is fenced).
    pub async fn run_continuous(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), BackupError> {
        self.hold_lease().await?;
        let run = self.continuous_rounds(&mut shutdown).await;
        let released = self.release_lease().await;
        run.and(released)
    }

    async fn continuous_rounds(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), BackupError> {
        let mut stop = *shutdown.borrow();
        while !stop {
            let round = self.round(self.config.max_round_duration).await;
            self.stats.record_round(round.is_ok());
            if round.is_ok() {
                self.compact_if_due().await;
            }
            let backlog = match round {
                Ok(r) => {
                    if r.shipped.records > 0 {
                        tracing::debug!(records = r.shipped.records, "round shipped");
                    }
                    !r.shipped.complete
                }
                // Losing the lease is final: another shipper owns this database now.
                Err(e @ (BackupError::LeaseLost { .. } | BackupError::LeaseHeld { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    self.stats.note_error(&e);
                    tracing::warn!(error = %e, "backup round failed; retrying next round");
                    false
                }
            };
            stop = *shutdown.borrow_and_update();
            if !stop && !backlog {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.ship_interval) => {}
                    // A dropped sender can never ask for a stop: take it as one rather
                    // than spin on an always-ready `changed()`.
                    changed = shutdown.changed() => stop = changed.is_err(),
                }
                stop = stop || *shutdown.borrow();
            }
        }
        // Ship what was committed until the stop so a clean shutdown loses nothing.
        self.ship_log().await?;
        Ok(())
    }

    /// Compact this database's timeline now (the continuous mode does it after its rounds),
    /// within the configured budget; without a compaction config, with the defaults.
    pub async fn compact(
        &self,
        dry_run: bool,
    ) -> Result<crate::compactor::CompactResult, BackupError> {
        let config = self.config.compaction.clone().unwrap_or_default();
        let timeline = self.db.timeline().await?;
        crate::compactor::compact_timelines(&self.repo, Some(timeline), &config, dry_run, &()).await
    }

    /// Continuous mode: compact once per level-1 window of wall-clock time (a window can only
    /// close once the clock passed it), and again next round while a backlog is left. A failed
    /// compaction is logged and retried next round; shipping goes on regardless.
    async fn compact_if_due(&self) {
        let Some(config) = self.config.compaction.as_ref() else {
            return;
        };
        let Some(&window_ms) = config.policy.windows_ms.first() else {
            return;
        };
        let window = now_ms() / window_ms.max(1);
        let last = *self.compacted.lock().expect("compacted lock");
        if last.is_some_and(|(w, complete)| w == window && complete) {
            return;
        }
        let outcome = match self.db.timeline().await {
            Ok(tl) => {
                crate::compactor::compact_timelines(&self.repo, Some(tl), config, false, &()).await
            }
            Err(e) => Err(e.into()),
        };
        let complete = match outcome {
            Ok(r) => {
                if r.written > 0 || r.deleted > 0 {
                    tracing::debug!(
                        written = r.written,
                        deleted = r.deleted,
                        "compacted the log"
                    );
                }
                r.complete
            }
            Err(e) => {
                self.stats.note_error(&e);
                tracing::warn!(error = %e, "log compaction failed; retrying next round");
                false
            }
        };
        *self.compacted.lock().expect("compacted lock") = Some((window, complete));
    }

    /// Give up the shipper lease if this service holds it, so another shipper (or the next
    /// one-shot command) can start at once. Fenced: if our lease expired and another
    /// shipper took it over, its lease is left alone. Call it when done with a service that
    /// shipped; [`BackupService::run_continuous`] calls it at exit.
    pub async fn release_lease(&self) -> Result<(), BackupError> {
        self.lease.release().await
    }

    /// This service's handle on the shipper lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Label the current log position `name`: ships the log first so the point is in the
    /// store, then writes the label. Returns the labelled point.
    pub async fn restore_point(&self, name: &str) -> Result<RestorePoint, BackupError> {
        tito_format::repo::validate_restore_point_name(name).map_err(|e| {
            BackupError::BadLabel {
                name: name.to_string(),
                reason: e.to_string(),
            }
        })?;
        let lsn = self.db.engine().read_view().await?.version();
        let shipped = self.ship_log().await?;
        // A label must be restorable: a timeline without any snapshot yet gets one (as the
        // first backup round takes), since its log alone may not reach back to a base.
        if self.newest_snapshot_ms(shipped.timeline).await? == 0 {
            self.snapshot().await?;
        }
        let point = RestorePoint {
            name: name.to_string(),
            timeline: shipped.timeline,
            lsn: lsn.max(self.branch_floor(shipped.timeline).await?),
            created_ms: now_ms(),
        };
        self.repo.put_restore_point(&point).await?;
        Ok(point)
    }

    async fn branch_floor(&self, timeline: u64) -> Result<u64, BackupError> {
        self.repo.branch_lsn(timeline).await
    }

    pub(crate) async fn hold_lease(&self) -> Result<(), BackupError> {
        if self.config.wait_for_lease {
            self.lease.acquire_waiting().await?;
        } else {
            self.lease.acquire().await?;
        }
        Ok(())
    }

    async fn snapshot_due(&self) -> Result<bool, BackupError> {
        let timeline = self.db.timeline().await?;
        let newest = self.newest_snapshot_ms(timeline).await?;
        if newest == 0 {
            return Ok(true);
        }
        if let Some(n) = self.config.snapshot_every_records {
            // Log volume since the newest snapshot, from the store's positions: it adds up
            // across bounded rounds and survives a restart of the service.
            let pos = self.position(timeline).await?;
            if pos.shipped.saturating_sub(pos.snapshot) >= n {
                return Ok(true);
            }
        }
        if let Some(every) = self.config.snapshot_every {
            if now_ms().saturating_sub(newest) >= every.as_millis() as u64 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Finish time of the newest complete snapshot on `timeline` (0 if none): listed once,
    /// then kept in the stats.
    async fn newest_snapshot_ms(&self, timeline: u64) -> Result<u64, BackupError> {
        let cached = self.stats.snapshot().last_snapshot_ms;
        if cached > 0 {
            return Ok(cached);
        }
        let mut newest = 0;
        for obj in self.repo.list(&layout::snapshots_prefix(timeline)).await? {
            if let ObjectName::SnapshotManifest { .. } = layout::parse(&obj.key) {
                newest = newest.max(obj.last_modified_ms.max(1));
            }
        }
        self.stats.note_snapshot_time(newest);
        Ok(newest)
    }

    pub(crate) fn note_snapshot(&self, timeline: u64, lsn: u64) {
        let mut pos = self.position.lock().expect("position lock");
        if let Some(p) = pos.as_mut() {
            if p.timeline == timeline {
                p.snapshot = p.snapshot.max(lsn);
            }
        }
    }
}
