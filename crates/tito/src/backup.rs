//! Continuous backup in-process: [`Backup`] runs [`BackupService::run_continuous`] on a
//! task and is the handle an application keeps (status, restore points, sync, stop).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tito_backup::{BackupService, ShipResult, SnapshotResult, StatsSnapshot};
use tito_format::RestorePoint;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result, chain};
use crate::lag::{Lag, live_lag};

/// Where a running backup stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// The store it ships to (its URL).
    pub store: String,
    /// False once it stopped (asked to, or ended by an error such as a lost lease).
    pub running: bool,
    /// The service's counters: shipped LSN and time, records, bytes, snapshots, errors.
    pub stats: StatsSnapshot,
    /// Committed records not shipped yet, and the age of the oldest.
    pub lag: Lag,
    /// The newest error: of the failed round (cleared when a round succeeds) or the one
    /// that ended the backup.
    pub last_error: Option<String>,
}

/// A continuous backup running in this process, started by
/// [`Tito::start_backup`](crate::Tito::start_backup). Cloning gives another handle on the
/// same backup.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = tito::Tito::open("memory://").await?;
/// let backup = app.start_backup("memory://", tito::BackupConfig::default()).await?;
/// app.transaction(|txn| async move { txn.put(b"k".to_vec(), b"v".to_vec()) }).await?;
/// let shipped = backup.sync().await?;          // durable in the store now
/// assert_eq!(backup.status().await?.stats.shipped_lsn, shipped.shipped_lsn);
/// backup.restore_point("before-migration").await?;
/// backup.stop().await?;                        // ships what is committed, releases the lease
/// # Ok::<_, tito::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Backup {
    shared: Arc<Shared>,
}

struct Shared {
    service: Arc<BackupService>,
    store_url: String,
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<JoinHandle<Result<(), tito_backup::BackupError>>>>,
    /// Why the task ended, if it failed.
    ended: Arc<Mutex<Option<String>>>,
    done: watch::Receiver<bool>,
}

impl Backup {
    /// Start `run_continuous` of `service` on a task.
    pub(crate) fn start(service: Arc<BackupService>, store_url: String) -> Backup {
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let ended = Arc::new(Mutex::new(None));
        let task = {
            let service = service.clone();
            let ended = ended.clone();
            let mut stop_wait = stop_rx.clone();
            tokio::spawn(async move {
                let r = async {
                    if service.config().wait_for_lease {
                        // Waiting for another shipper's lease: a stop ends the wait (there
                        // is nothing this process may ship without the lease).
                        tokio::select! {
                            r = service.lease().acquire_waiting() => { r?; }
                            _ = stop_wait.wait_for(|s| *s) => return Ok(()),
                        }
                    }
                    service.run_continuous(stop_rx).await
                }
                .await;
                if let Err(e) = &r {
                    tracing::error!(error = %e, "continuous backup stopped");
                    *ended.lock().expect("ended lock") = Some(chain(e));
                }
                let _ = done_tx.send(true);
                r
            })
        };
        Backup {
            shared: Arc::new(Shared {
                service,
                store_url,
                stop,
                task: tokio::sync::Mutex::new(Some(task)),
                ended,
                done,
            }),
        }
    }

    /// The backup service underneath (for metrics, or verbs not wrapped here).
    pub fn service(&self) -> &Arc<BackupService> {
        &self.shared.service
    }

    /// The store URL it ships to.
    pub fn store_url(&self) -> &str {
        &self.shared.store_url
    }

    /// True while it runs.
    pub fn is_running(&self) -> bool {
        !*self.shared.done.borrow()
    }

    /// Where it stands: counters, lag, the newest error.
    pub async fn status(&self) -> Result<BackupStatus> {
        let stats = self.shared.service.stats().snapshot();
        let ended = self.shared.ended.lock().expect("ended lock").clone();
        Ok(BackupStatus {
            store: self.shared.store_url.clone(),
            running: self.is_running(),
            last_error: ended.or_else(|| stats.last_error.clone()),
            stats,
            lag: live_lag(self.shared.service.db()).await?,
        })
    }

    /// Ship now: returns once everything committed before the call is durable in the store.
    pub async fn sync(&self) -> Result<ShipResult> {
        self.check_running()?;
        Ok(self.shared.service.ship_log().await?)
    }

    /// Ship, then label the current position `name` (restore to it with `label:NAME`).
    pub async fn restore_point(&self, name: &str) -> Result<RestorePoint> {
        self.check_running()?;
        Ok(self.shared.service.restore_point(name).await?)
    }

    /// Take a full snapshot now.
    pub async fn snapshot(&self) -> Result<SnapshotResult> {
        self.check_running()?;
        Ok(self.shared.service.snapshot().await?)
    }

    /// Stop gracefully: ships what is committed, releases the lease, and returns the error
    /// that ended the backup, if one did. Stopping twice is a no-op.
    pub async fn stop(&self) -> Result<()> {
        let _ = self.shared.stop.send(true);
        let task = self.shared.task.lock().await.take();
        match task {
            None => Ok(()),
            Some(task) => match task.await {
                Ok(r) => Ok(r?),
                Err(e) => Err(Error::BackupStopped(format!("backup task failed: {e}"))),
            },
        }
    }

    /// Wait until the backup ends (by [`Backup::stop`] or an error).
    pub async fn stopped(&self) {
        let mut done = self.shared.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }

    fn check_running(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let why = self.shared.ended.lock().expect("ended lock").clone();
        Err(Error::BackupStopped(
            why.unwrap_or_else(|| "it was stopped".into()),
        ))
    }
}
