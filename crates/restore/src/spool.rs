//! Where the loading side of a restore reads each object of the plan from, so that every
//! object is downloaded once.
//!
//! - Into a target that holds nothing to lose (new, empty), objects stream from the store
//!   straight into it: each is checked as it is loaded, and a failure half-way leaves the
//!   target marked as a restore in progress (refused until a restore completes it).
//! - Over an existing database (`force`), nothing may be modified before every object has
//!   checked out. The verify pass then writes each object it checked to a [`Spool`], a
//!   private temporary directory on local disk, and loading reads the spool, not the
//!   store. Memory stays bounded (objects are staged as they arrive, a few at a time); the
//!   directory holds the plan's compressed bytes and is removed on every exit path (it is
//!   a `TempDir`: dropped on success, error or panic).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tito_catalog::RestorePlan;
use tito_store::Store;

use crate::error::RestoreError;

/// A private local directory holding verified objects of one plan, by object key.
pub(crate) struct Spool {
    dir: tempfile::TempDir,
    /// The file of each object of the plan (named by position: keys hold '/').
    files: HashMap<String, PathBuf>,
}

impl Spool {
    /// A fresh spool for `plan`'s objects, in a new directory under `parent` (default: the
    /// system temp dir). The directory is readable by this user only.
    pub(crate) fn create(parent: Option<&Path>, plan: &RestorePlan) -> Result<Self, RestoreError> {
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix(".tito-restore-spool-");
            b
        };
        let dir = match parent {
            Some(p) => builder.tempdir_in(p),
            None => builder.tempdir(),
        }
        .map_err(|e| spool_err(parent.unwrap_or(&std::env::temp_dir()), e))?;
        let files = plan
            .objects()
            .into_iter()
            .enumerate()
            .map(|(i, (key, _))| (key, dir.path().join(format!("{i:08}"))))
            .collect();
        Ok(Spool { dir, files })
    }

    fn file(&self, key: &str) -> Result<&PathBuf, RestoreError> {
        self.files.get(key).ok_or_else(|| RestoreError::Spool {
            path: self.dir.path().display().to_string(),
            reason: format!("object {key} is not part of the plan"),
        })
    }

    /// Stage a verified object.
    pub(crate) async fn put(&self, key: &str, bytes: &Bytes) -> Result<(), RestoreError> {
        let path = self.file(key)?;
        tokio::fs::write(path, bytes)
            .await
            .map_err(|e| spool_err(path, e))
    }

    async fn get(&self, key: &str) -> Result<Bytes, RestoreError> {
        let path = self.file(key)?;
        tokio::fs::read(path)
            .await
            .map(Bytes::from)
            .map_err(|e| spool_err(path, e))
    }
}

fn spool_err(path: &Path, e: std::io::Error) -> RestoreError {
    RestoreError::Spool {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Where the loading side reads the plan's objects from.
#[derive(Clone)]
pub(crate) enum Objects {
    /// Straight from the store (a new target: one pass, checked while loading).
    Store(Arc<dyn Store>),
    /// From the spool the verify pass filled (an existing target replaced).
    Spool(Arc<Spool>),
}

impl Objects {
    /// The bytes of `key`; a missing object is a damaged backup.
    pub(crate) async fn get(&self, key: &str) -> Result<Bytes, RestoreError> {
        match self {
            Objects::Store(store) => crate::verify::fetch_from(store.as_ref(), key).await,
            Objects::Spool(spool) => spool.get(key).await,
        }
    }

    /// True when reading counts as downloading (not a local re-read of the spool).
    pub(crate) fn downloads(&self) -> bool {
        matches!(self, Objects::Store(_))
    }
}
