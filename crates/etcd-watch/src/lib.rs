//! Continuous backup of an etcd cluster (or key prefix) that Tito did not write, selected
//! by `etcd+watch://host:port[,host:port...][/prefix]`.
//!
//! A consistent snapshot at one revision (range reads pinned to it, paginated), then a
//! watch from the next revision. Every etcd revision becomes exactly one log record whose
//! LSN is the revision, so restoring `lsn:N` (or `rev:N`) gives the prefix as
//! `etcdctl get --prefix --rev=N` shows it. Revisions touching only other keys are empty
//! records. Shipping, segments, snapshots, catalog, retention and verify are the backup
//! crate's.
//!
//! Leases: values of keys attached to a lease are backed up like any other; lease ids and
//! TTLs are not (a restored key has no lease).
//!
//! Restoring into etcd: [`WatchConfig::database`] is the cluster as a database with raw
//! keys (the `tito-engine-etcd` engine's raw layout), so a backup restored into a new
//! cluster gives applications their keys back. What such a restore keeps there for Tito
//! is left out of a watch backup ([`WatchConfig::ranges`]).
//!
//! - [`config`]: URL parsing ([`WatchConfig`]);
//! - [`engine`]: the connection ([`Cluster`]) and the read view pinned at a revision
//!   ([`PinnedView`]);
//! - [`follow`]: the watch, revisions grouped into records ([`WatchSource`]);
//! - [`backup`]: [`WatchBackup`], snapshot then follow, shipped by
//!   [`tito_backup::LogShipper`].
#![warn(missing_docs)]

pub mod backup;
pub mod config;
pub mod engine;
pub mod error;
pub mod follow;

pub use backup::{Gap, WatchBackup, WatchRound};
pub use config::{SCHEME, WatchConfig};
pub use engine::{Cluster, PinnedView};
pub use error::WatchError;
pub use follow::{Unshipped, WatchSource};
