//! [`Tito`]: a database opened by URL, with its optional in-process backup and, for an
//! embedded (redb) file, the control socket through which the `tito` CLI reaches it.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tito_backup::{BackupConfig, BackupService};
use tito_capture::Db;
use tito_store::Store;

use crate::backup::Backup;
use crate::control::server::ControlServer;
use crate::error::{Error, Result};
use crate::open::{Mode, absolute, absolute_store_url, open_engine, open_store, redb_path};

/// How [`Tito::open_with`] opens a database.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Whether a missing redb file is created ([`Mode::Create`], the default).
    pub mode: Mode,
    /// Serve the control socket beside a redb file (default true), so the `tito` CLI
    /// works on the database while this process holds it.
    pub control: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            mode: Mode::Create,
            control: true,
        }
    }
}

/// An open Tito database: captured transactions (it dereferences to [`Db`]), the queue
/// (through [`crate::queue`] on [`Tito::db`]), and continuous backup in-process.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.redb");
/// let app = tito::Tito::open(path.to_str().unwrap()).await?;
/// // While it is open, `tito --db app.redb ...` is answered by this process:
/// assert_eq!(app.control_socket(), Some(tito::control::socket_path(&path)));
/// assert!(tito::control::socket_path(&path).exists());
/// app.transaction(|txn| async move { txn.put(b"k".to_vec(), b"v".to_vec()) }).await?;
/// app.close().await?;
/// assert!(!tito::control::socket_path(&path).exists());
/// # Ok::<_, tito::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Tito {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) url: String,
    pub(crate) db: Db,
    pub(crate) file: Option<PathBuf>,
    pub(crate) backup: Mutex<Option<Backup>>,
    /// Held while a shipper of this process takes the lease and registers (starting the
    /// continuous backup) or runs one-shot (a verb through the control socket, served from
    /// the open on): they take turns instead of refusing each other's lease.
    pub(crate) shipper: tokio::sync::Mutex<()>,
    control: Mutex<Option<ControlServer>>,
}

impl Tito {
    /// Open (or create) the database at `url`: `memory://`, a redb path or
    /// `redb:///abs/path`, or `etcd://host:port[,...][/namespace]`.
    pub async fn open(url: &str) -> Result<Tito> {
        Tito::open_with(url, OpenOptions::default()).await
    }

    /// Open with `options`.
    pub async fn open_with(url: &str, options: OpenOptions) -> Result<Tito> {
        let engine = open_engine(url, options.mode).await?;
        let db = Db::open(engine).await?;
        let file = redb_path(url).map(|p| absolute(&p));
        let inner = Arc::new(Inner {
            url: url.to_string(),
            db,
            file: file.clone(),
            backup: Mutex::new(None),
            shipper: tokio::sync::Mutex::new(()),
            control: Mutex::new(None),
        });
        if let Some(file) = &file {
            // We hold the redb file lock, so a socket left beside it is stale.
            crate::control::remove_stale(file);
            if options.control {
                // Without its socket the database still works; only the CLI cannot reach
                // it (a read-only directory, a path too long for a Unix socket).
                match ControlServer::start(file, Arc::downgrade(&inner)).await {
                    Ok(server) => *inner.control.lock().expect("control lock") = Some(server),
                    Err(e) => tracing::warn!(error = %e, "not serving the control socket"),
                }
            }
        }
        Ok(Tito { inner })
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Tito {
        Tito { inner }
    }

    /// Wait for this process's shipper turn (see `Inner::shipper`).
    pub(crate) async fn shipper_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.shipper.lock().await
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The captured database: transactions, the log, metadata.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The control socket this process serves for the database, if it serves one.
    pub fn control_socket(&self) -> Option<PathBuf> {
        let control = self.inner.control.lock().expect("control lock");
        control.as_ref().map(|s| s.path().to_path_buf())
    }

    /// The redb file, for an embedded database (absolute).
    pub fn file(&self) -> Option<&std::path::Path> {
        self.inner.file.as_deref()
    }

    /// Start continuous backup to the store at `store_url` (a directory path,
    /// `file:///abs`, `s3://bucket/prefix`, `memory://`): ships every
    /// `config.ship_interval`, snapshots when due. One per database.
    pub async fn start_backup(&self, store_url: &str, config: BackupConfig) -> Result<Backup> {
        let store = open_store(store_url, Mode::Create).await?;
        self.start_backup_to(store, &absolute_store_url(store_url), config)
            .await
    }

    /// [`Tito::start_backup`] to an already opened store; `store_url` names it in status
    /// and lets a forwarded `tito backup --store URL` find this backup.
    pub async fn start_backup_to(
        &self,
        store: Arc<dyn Store>,
        store_url: &str,
        config: BackupConfig,
    ) -> Result<Backup> {
        let _turn = self.shipper_turn().await;
        if let Some(b) = self.backup().filter(Backup::is_running) {
            return Err(Error::BackupStopped(format!(
                "a backup to {} is already running in this process",
                b.store_url()
            )));
        }
        let service = BackupService::new(self.inner.db.clone(), store, config).await?;
        // Take the lease now so a second shipper is refused here, not later in the task
        // (unless asked to wait for it: the task waits).
        if !service.config().wait_for_lease {
            service.lease().acquire().await?;
        }
        let backup = Backup::start(Arc::new(service), store_url.to_string());
        *self.inner.backup.lock().expect("backup lock") = Some(backup.clone());
        Ok(backup)
    }

    /// The backup started in this process, if any.
    pub fn backup(&self) -> Option<Backup> {
        self.inner.backup.lock().expect("backup lock").clone()
    }

    /// Close: stop the backup gracefully (ships what is committed), stop serving the
    /// control socket (removing it), close the engine. Returns the backup's error, if any.
    pub async fn close(self) -> Result<()> {
        let backup = self.inner.backup.lock().expect("backup lock").take();
        let stopped = match backup {
            Some(b) => b.stop().await,
            None => Ok(()),
        };
        let server = self.inner.control.lock().expect("control lock").take();
        if let Some(server) = server {
            server.shutdown().await;
        }
        let closed = self.inner.db.engine().close().await;
        stopped?;
        Ok(closed?)
    }
}

impl Deref for Tito {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.inner.db
    }
}
