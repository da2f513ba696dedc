//! [`WatchBackup`]: a snapshot of the watched keys at one revision, then a watch from the
//! next revision, shipped through the backup crate's [`LogShipper`].
//!
//! - **Position**: the end of the store's log (the shipper's position, read from the
//!   store's listing), so a restarted backup resumes from the next revision.
//! - **Compaction**: a watch whose start revision was compacted away cannot deliver the
//!   revisions missing: they become a gap in the store's coverage (the catalog shows it;
//!   [`WatchBackup::gaps`] lists those of this run) and a new snapshot is taken at once,
//!   from which coverage goes on. Nothing is lost silently.
//! - **Failures**: a broken watch (a member killed, a leader change) is resumed on another
//!   endpoint after the last revision received.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tito_backup::{
    BackupConfig, BackupError, LogShipper, Repository, ShipResult, SnapshotResult, Stats,
};
use tito_store::Store;
use tokio::sync::watch;

use crate::config::WatchConfig;
use crate::engine::Cluster;
use crate::error::WatchError;
use crate::follow::{Ended, WatchSource, follow};

/// The engine kind recorded in snapshot manifests.
pub const ENGINE_KIND: &str = "etcd-watch";

/// Records buffered between the watch and the shipper at most (the watch waits beyond).
const BUFFER_RECORDS: usize = 200_000;

/// Key and value bytes buffered between the watch and the shipper, about, at most.
const BUFFER_BYTES: usize = 64 << 20;

/// Pause before reconnecting after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// The timeline a watched cluster's backups use (restoring into etcd, which would open
/// another, is not supported).
pub const TIMELINE: u64 = 1;

/// LSNs the store's log is missing, `from..=to`: records a compaction took before the
/// watch could deliver them. The snapshot at `to` bridges the gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// First missing LSN (revision).
    pub from: u64,
    /// Last missing LSN: the new snapshot's revision.
    pub to: u64,
}

/// What one [`WatchBackup::run_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRound {
    /// The shipping part (totals of the round).
    pub shipped: ShipResult,
    /// Snapshots taken (the first one, or after a compaction).
    pub snapshots: Vec<SnapshotResult>,
    /// Gaps found.
    pub gaps: Vec<Gap>,
}

/// Continuous backup of an etcd cluster (or key prefix) Tito did not write.
pub struct WatchBackup {
    cluster: Cluster,
    shipper: LogShipper,
    source: WatchSource,
    gaps: Mutex<Vec<Gap>>,
    snapshots: Mutex<Vec<SnapshotResult>>,
    last_snapshot: Mutex<Option<Instant>>,
}

impl WatchBackup {
    /// Connect to the cluster and open (or create) its repository in `store`. The
    /// repository's database id names the cluster (its id) and the prefix, so another
    /// cluster's or prefix's backups in the same store are refused.
    pub async fn open(
        config: WatchConfig,
        store: Arc<dyn Store>,
        backup: BackupConfig,
    ) -> Result<Self, WatchError> {
        let cluster = Cluster::new(config);
        let mut tries = cluster.config().endpoints.len();
        let (_, cluster_id) = loop {
            match cluster.revision().await {
                Ok(r) => break r,
                Err(e) if tries > 1 => {
                    tries -= 1;
                    tracing::debug!(error = %e, "trying the next endpoint");
                    cluster.failed();
                }
                Err(e) => return Err(e),
            }
        };
        let database_id = database_id(cluster_id, &cluster.config().prefix);
        let repo = Repository::open_or_create(store, &database_id).await?;
        let shipper = LogShipper::open(repo, TIMELINE, backup).await?;
        Ok(WatchBackup {
            cluster,
            shipper,
            source: WatchSource::new(BUFFER_RECORDS, BUFFER_BYTES),
            gaps: Mutex::new(Vec::new()),
            snapshots: Mutex::new(Vec::new()),
            last_snapshot: Mutex::new(None),
        })
    }

    /// The shipper (position, repository, config).
    pub fn shipper(&self) -> &LogShipper {
        &self.shipper
    }

    /// The shipper's counters.
    pub fn stats(&self) -> &Stats {
        self.shipper.stats()
    }

    /// Revisions received from the watch and not yet shipped: the backup's lag.
    pub fn unshipped(&self) -> crate::Unshipped {
        self.source.unshipped()
    }

    /// The endpoint the backup reads from now.
    pub fn endpoint(&self) -> String {
        self.cluster.endpoint()
    }

    /// Gaps found by this backup so far.
    pub fn gaps(&self) -> Vec<Gap> {
        self.gaps.lock().expect("gaps lock").clone()
    }

    /// Snapshots taken by this backup so far.
    pub fn snapshots(&self) -> Vec<SnapshotResult> {
        self.snapshots.lock().expect("snapshots lock").clone()
    }

    /// Take a snapshot at the cluster's current revision now (again at a newer one if a
    /// compaction overtakes it while it is read).
    pub async fn snapshot(&self) -> Result<SnapshotResult, WatchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = async {
                let view = self.cluster.view().await?;
                let r = self
                    .shipper
                    .snapshot(&view, tito_backup::now_ms(), ENGINE_KIND)
                    .await?;
                Ok::<_, WatchError>(r)
            }
            .await;
            match outcome {
                Ok(r) => {
                    tracing::info!(
                        revision = r.lsn,
                        pairs = r.pairs,
                        "snapshot of etcd written"
                    );
                    *self.last_snapshot.lock().expect("snapshot lock") = Some(Instant::now());
                    self.snapshots
                        .lock()
                        .expect("snapshots lock")
                        .push(r.clone());
                    return Ok(r);
                }
                Err(e) if attempt < 5 && retryable(&e) => {
                    tracing::warn!(error = %e, "snapshot failed; taking it again");
                    if !e.to_string().contains("compacted") {
                        self.cluster.failed();
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One round (for cron): a snapshot if the repository has none, then every revision
    /// up to the cluster's revision at the start, shipped.
    pub async fn run_once(&self) -> Result<WatchRound, WatchError> {
        // Never asked to stop: the round ends at `head`. (The sender must live: a dropped
        // sender reads as a stop.)
        let (_keep, stop) = watch::channel(false);
        let (head, _) = self.cluster.revision().await?;
        let before = self.stats().snapshot();
        let gaps_before = self.gaps().len();
        let snaps_before = self.snapshots().len();
        self.run(Some(head), stop).await?;
        let after = self.stats().snapshot();
        Ok(WatchRound {
            shipped: ShipResult {
                timeline: TIMELINE,
                records: after.records_shipped - before.records_shipped,
                segments: after.segments - before.segments,
                bytes: after.bytes_uploaded - before.bytes_uploaded,
                shipped_lsn: self.shipper.shipped(),
                end_lsn: head,
                complete: true,
            },
            snapshots: self.snapshots()[snaps_before..].to_vec(),
            gaps: self.gaps()[gaps_before..].to_vec(),
        })
    }

    /// Follow and ship every `ship_interval` until `shutdown` turns true (or its sender is
    /// dropped), then ship what was received.
    pub async fn run_continuous(&self, shutdown: watch::Receiver<bool>) -> Result<(), WatchError> {
        self.run(None, shutdown).await
    }

    async fn run(&self, until: Option<u64>, stop: watch::Receiver<bool>) -> Result<(), WatchError> {
        if self.shipper.covered() == 0 {
            self.snapshot().await?;
        }
        let shipped = self.shipper.shipped();
        // Resume right after the store's log; with no log yet, after the snapshot.
        let mut from = if shipped > 0 {
            shipped + 1
        } else {
            self.shipper.covered() + 1
        };
        self.source.reset(from - 1);
        let prefix = self.cluster.config().ranges();
        // A round (with `until`) gives up after this many failures in a row without
        // progress; continuous mode retries for ever, as the backup service does.
        let most_failures = 3 * self.cluster.config().endpoints.len();
        let mut failures = 0;
        loop {
            let (done_tx, done_rx) = watch::channel(false);
            let mut follow_stop = stop.clone();
            let (start, prefix, this) = (from, &prefix, self);
            let following = async move {
                let r = follow(
                    &this.cluster,
                    &this.source,
                    prefix,
                    start,
                    until,
                    &mut follow_stop,
                )
                .await;
                let _ = done_tx.send(true);
                r
            };
            let shipping = async {
                // Scheduled snapshots are taken beside shipping, not between its rounds. A
                // failure that ends shipping abandons a snapshot under way (it has no
                // manifest, so it does not exist for restore); otherwise it is finished.
                let ship = self.ship_loop(done_rx.clone());
                let snapshots = self.snapshot_loop(done_rx);
                tokio::pin!(ship, snapshots);
                tokio::select! {
                    shipped = &mut ship => {
                        if shipped.is_ok() {
                            snapshots.await;
                        }
                        shipped
                    }
                    () = &mut snapshots => ship.await,
                }
            };
            tokio::pin!(following, shipping);
            // A shipping failure that ends the backup (fenced by another shipper, say) stops
            // the watch too; otherwise shipping ends once the watch did, after a last round.
            let ended = tokio::select! {
                shipped = &mut shipping => {
                    shipped?;
                    following.await
                }
                ended = &mut following => {
                    shipping.await?;
                    ended
                }
            };
            match ended {
                Ok(Ended::Stopped | Ended::Reached) => return Ok(()),
                Ok(Ended::Compacted { compact_revision }) => {
                    let covered = self.shipper.covered();
                    if covered + 1 >= compact_revision {
                        // A snapshot already bridges what the compaction took.
                        from = covered + 1;
                    } else {
                        let snap = match self.snapshot().await {
                            Ok(snap) => snap,
                            Err(e) if until.is_none() && !fatal(&e) => {
                                // Watching again meets the compaction again: the snapshot
                                // is retried then.
                                tracing::warn!(error = %e, "snapshot after a compaction failed; retrying");
                                self.cluster.failed();
                                tokio::time::sleep(RECONNECT_PAUSE).await;
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        let gap = Gap {
                            from: self.shipper.shipped() + 1,
                            to: snap.lsn,
                        };
                        tracing::warn!(
                            from = gap.from,
                            to = gap.to,
                            compact_revision,
                            "etcd compacted revisions the watch had not delivered: they are a gap \
                             in the backup's coverage; a new snapshot at revision {} covers what \
                             follows",
                            snap.lsn
                        );
                        self.gaps.lock().expect("gaps lock").push(gap);
                        from = snap.lsn + 1;
                    }
                    self.source.reset(from - 1);
                }
                Err(e @ WatchError::Backup(_)) => return Err(e),
                Err(e) => {
                    let progressed = self.source.last() + 1 > from;
                    failures = if progressed { 1 } else { failures + 1 };
                    if until.is_some() && failures >= most_failures {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, endpoint = %self.cluster.endpoint(), "watch lost; resuming on another endpoint");
                    self.cluster.failed();
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    from = self.source.last() + 1;
                }
            }
            if *stop.borrow() {
                self.ship_all().await?;
                return Ok(());
            }
        }
    }

    /// Ship every `ship_interval` (and a snapshot when due) until `done` turns true, then
    /// once more.
    async fn ship_loop(&self, mut done: watch::Receiver<bool>) -> Result<(), WatchError> {
        let interval = self.shipper.config().ship_interval;
        loop {
            let finished = *done.borrow();
            if !finished {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = done.changed() => {}
                }
            }
            let finished = *done.borrow();
            match self.ship_all().await {
                Ok(()) => {}
                Err(e) if fatal(&e) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "shipping failed; retrying next round"),
            }
            if finished {
                return Ok(());
            }
        }
    }

    /// Take a snapshot whenever one is due (checked every ship interval) until `done`
    /// turns true. A failed snapshot is logged and taken again when next checked.
    async fn snapshot_loop(&self, mut done: watch::Receiver<bool>) {
        let interval = self.shipper.config().ship_interval;
        while !*done.borrow() {
            if self.snapshot_due() {
                if let Err(e) = self.snapshot().await {
                    tracing::warn!(error = %e, "scheduled snapshot failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = done.changed() => {}
            }
        }
    }

    async fn ship_all(&self) -> Result<(), WatchError> {
        let budget = self.shipper.config().max_round_duration;
        loop {
            let r = self.shipper.ship(&self.source, budget).await?;
            if r.complete {
                return Ok(());
            }
        }
    }

    fn snapshot_due(&self) -> bool {
        let config = self.shipper.config();
        if let Some(n) = config.snapshot_every_records {
            // Revisions since the newest snapshot, from the store's positions.
            if self
                .shipper
                .shipped()
                .saturating_sub(self.shipper.snapshot_lsn())
                >= n
            {
                return true;
            }
        }
        let Some(every) = config.snapshot_every else {
            return false;
        };
        self.last_snapshot
            .lock()
            .expect("snapshot lock")
            .is_none_or(|t| t.elapsed() >= every)
    }
}

/// The repository's database id for a cluster and prefix.
pub fn database_id(cluster_id: u64, prefix: &[u8]) -> String {
    let hex: String = prefix.iter().map(|b| format!("{b:02x}")).collect();
    format!("etcd-{cluster_id:016x}-{hex}")
}

fn retryable(e: &WatchError) -> bool {
    match e {
        WatchError::Backup(BackupError::Engine(_)) => true,
        WatchError::Backup(_) => false,
        _ => true,
    }
}

fn fatal(e: &WatchError) -> bool {
    matches!(
        e,
        WatchError::Backup(
            BackupError::Diverged { .. }
                | BackupError::TimelineRetired { .. }
                | BackupError::LogGap { .. }
        )
    )
}
