//! Tito for applications: one crate to open a database by URL, write in captured
//! transactions, publish and pull queue events, and back up continuously in-process.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tito::{BackupConfig, Tito, queue::{self, Event}};
//! let app = Tito::open("memory://").await?;             // or "app.redb", "etcd://host:2379"
//! let backup = app.start_backup("memory://", BackupConfig::default()).await?; // "s3://b/p"
//! app.transaction(|txn| async move {                     // data and its event: one commit
//!     txn.put(b"order:1".to_vec(), b"paid".to_vec())?;
//!     queue::publish(&txn, 4, Event::new("e1", "order:1", "paid", 0, 0))?;
//!     Ok::<_, tito::Error>(())
//! }).await?;
//! backup.sync().await?;                                  // durable in the store now
//! backup.restore_point("after-first-order").await?;      // restore with --to label:...
//! app.close().await?;                                    // ships what is committed, stops
//! # Ok::<_, tito::Error>(()) }).unwrap();
//! ```
//!
//! While a process holds an embedded (redb) database open through [`Tito`], the `tito`
//! CLI still works on it: `tito --db app.redb kv get ...`, `dump`, `status`,
//! `restore-point`, `backup`, `snapshot` are forwarded to that process over its
//! [`control`] socket. Restore with [`restore`] (or `tito restore`).
//!
//! Modules: [`url`] and [`open`] (databases and stores by URL), [`database`] ([`Tito`]),
//! [`backup`] ([`Backup`], the running backup's handle), [`lag`], [`control`], [`error`].
#![warn(missing_docs)]

pub mod backup;
pub mod control;
pub mod database;
pub mod error;
pub mod lag;
pub mod open;
pub mod url;

pub use backup::{Backup, BackupStatus};
pub use database::{OpenOptions, Tito};
pub use error::{Error, ErrorKind, Result};
pub use lag::{Lag, live_lag};
pub use open::Mode;

pub use tito_backup::{
    BackupConfig, BackupError, BackupResult, BackupService, Repository, ShipResult, SnapshotResult,
    StatsSnapshot,
};
pub use tito_capture::{CaptureError, Db, Txn};
pub use tito_engine::{Engine, EngineError, KeyRange};
pub use tito_format::RestorePoint;
pub use tito_store::{Keyring, Store, StoreError};

/// The queue (transactional outbox): publish inside a transaction, pull, ack, reschedule.
pub mod queue {
    pub use tito_queue::*;
}

/// Restore and verify (`tito_restore`): restore a backup into an empty database.
pub mod restore {
    pub use tito_restore::*;
}

/// Import backups written by the original backup module (`tito_legacy`): [`legacy::import`]
/// an old backup root from a store into a new database.
pub mod legacy {
    pub use tito_legacy::*;
}
