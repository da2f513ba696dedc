//! Errors of the etcd watch backup.

use thiserror::Error;
use tito_backup::BackupError;

/// What can go wrong backing up a watched etcd cluster.
#[derive(Debug, Error)]
pub enum WatchError {
    /// The URL is not `etcd+watch://host:port[,host:port...][/prefix]`.
    #[error("bad etcd+watch URL {url:?}: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// No endpoint of the cluster answered.
    #[error("cannot reach the etcd cluster at {endpoints}: {reason}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The last failure.
        reason: String,
    },
    /// A request to etcd failed.
    #[error("etcd request failed ({what}): {source}")]
    Etcd {
        /// The request.
        what: &'static str,
        /// etcd-client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// The revision needed was compacted away (`ErrCompacted`).
    #[error(
        "etcd revision {revision} was compacted away (the cluster is compacted through {compacted})"
    )]
    Compacted {
        /// The revision asked for.
        revision: u64,
        /// The cluster's compaction revision (0 if unknown).
        compacted: u64,
    },
    /// The watch broke off (a member went away, the stream ended): reconnect and resume.
    #[error("the etcd watch broke off: {0}")]
    WatchLost(String),
    /// Shipping or the store failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
}

impl WatchError {
    pub(crate) fn etcd(what: &'static str, source: etcd_client::Error) -> Self {
        if source.to_string().contains("compacted") {
            return WatchError::Compacted {
                revision: 0,
                compacted: 0,
            };
        }
        WatchError::Etcd { what, source }
    }
}
