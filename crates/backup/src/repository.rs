//! The backup repository: a store plus the documents that make it Tito's (config at the
//! root, timeline histories, restore points) and the loading of its catalog.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use tito_catalog::{Catalog, ObjectInfo};
use tito_format::layout::{self, ObjectName};
use tito_format::{Manifest, RepoConfig, RestorePoint, TimelineHistory};
use tito_store::{ObjectMeta, Store};

use crate::error::BackupError;
use crate::now_ms;

/// A Tito backup repository in a store.
#[derive(Clone, Debug)]
pub struct Repository {
    store: Arc<dyn Store>,
    config: RepoConfig,
}

impl Repository {
    /// Open the repository in `store`; fails with [`BackupError::NoRepository`] if the
    /// store holds none.
    pub async fn open(store: Arc<dyn Store>) -> Result<Self, BackupError> {
        match store.get(layout::REPO_CONFIG).await {
            Ok(bytes) => {
                let config = RepoConfig::decode(&bytes, layout::REPO_CONFIG)?;
                Ok(Repository { store, config })
            }
            Err(e) if e.is_not_found() => Err(BackupError::NoRepository {
                store: store.describe(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Open the repository of `database_id` in `store`, creating it if the store has none.
    /// A store holding another database's repository is refused.
    pub async fn open_or_create(
        store: Arc<dyn Store>,
        database_id: &str,
    ) -> Result<Self, BackupError> {
        let config = RepoConfig::new(database_id);
        let body = config.encode(layout::REPO_CONFIG)?;
        // Create-only, so two shippers racing on an empty store agree on one config.
        store
            .put_if_absent(layout::REPO_CONFIG, Bytes::from(body))
            .await?;
        let repo = Repository::open(store).await?;
        if repo.config.database_id != database_id {
            return Err(BackupError::ForeignRepository {
                store: repo.store.describe(),
                found: repo.config.database_id.clone(),
                ours: database_id.to_string(),
            });
        }
        Ok(repo)
    }

    /// The repository config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BackupError> {
        Ok(self.store.list(prefix).try_collect().await?)
    }

    /// The history document of `timeline`, if it has one (timeline 1 never does).
    pub async fn history(&self, timeline: u64) -> Result<Option<TimelineHistory>, BackupError> {
        let key = layout::timeline_history(timeline);
        match self.store.get(&key).await {
            Ok(bytes) => Ok(Some(TimelineHistory::decode(&bytes, &key)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The last LSN that precedes `timeline` (its branch point; 0 for a root timeline).
    pub async fn branch_lsn(&self, timeline: u64) -> Result<u64, BackupError> {
        Ok(self.history(timeline).await?.map_or(0, |h| h.branch_lsn))
    }

    /// Create the next free timeline, branching from `parent` after `branch_lsn`.
    pub async fn new_timeline(&self, parent: u64, branch_lsn: u64) -> Result<u64, BackupError> {
        let mut next = self.max_timeline().await?.max(parent) + 1;
        loop {
            let history = TimelineHistory {
                timeline: next,
                parent: Some(parent),
                branch_lsn,
                created_ms: now_ms(),
            };
            let key = layout::timeline_history(next);
            // Create-only: two restores at once get two different timelines.
            if self
                .store
                .put_if_absent(&key, Bytes::from(history.encode(&key)?))
                .await?
            {
                return Ok(next);
            }
            next += 1;
        }
    }

    async fn max_timeline(&self) -> Result<u64, BackupError> {
        let mut max = 1;
        for obj in self.list(layout::TIMELINES).await? {
            match layout::parse(&obj.key) {
                ObjectName::TimelineHistory { timeline }
                | ObjectName::Segment { timeline, .. }
                | ObjectName::SnapshotChunk { timeline, .. }
                | ObjectName::SnapshotManifest { timeline, .. } => max = max.max(timeline),
                _ => {}
            }
        }
        Ok(max)
    }

    /// Write a restore point; labels are never reused.
    pub async fn put_restore_point(&self, point: &RestorePoint) -> Result<(), BackupError> {
        tito_format::repo::validate_restore_point_name(&point.name).map_err(|e| {
            BackupError::BadLabel {
                name: point.name.clone(),
                reason: e.to_string(),
            }
        })?;
        let key = layout::restore_point(&point.name);
        if !self
            .store
            .put_if_absent(&key, Bytes::from(point.encode(&key)?))
            .await?
        {
            return Err(BackupError::LabelExists {
                name: point.name.clone(),
            });
        }
        Ok(())
    }

    /// Read a manifest.
    pub async fn manifest(&self, key: &str) -> Result<Manifest, BackupError> {
        let bytes = self.store.get(key).await?;
        Ok(Manifest::decode(&bytes, key)?)
    }

    /// List the whole repository, read its manifests, histories and restore points, and
    /// build the catalog. A document that cannot be read makes the load fail, naming it.
    pub async fn catalog(&self) -> Result<Catalog, BackupError> {
        let objects = self.list("").await?;
        let mut manifests = Vec::new();
        let mut histories = Vec::new();
        let mut points = Vec::new();
        for obj in &objects {
            match layout::parse(&obj.key) {
                ObjectName::SnapshotManifest { .. } => {
                    manifests.push(self.manifest(&obj.key).await?)
                }
                ObjectName::TimelineHistory { timeline } => {
                    if let Some(h) = self.history(timeline).await? {
                        histories.push(h);
                    }
                }
                ObjectName::RestorePoint { .. } => {
                    let bytes = self.store.get(&obj.key).await?;
                    points.push(RestorePoint::decode(&bytes, &obj.key)?);
                }
                _ => {}
            }
        }
        let objects = objects
            .into_iter()
            .map(|o| ObjectInfo {
                key: o.key,
                size: o.size,
                last_modified_ms: o.last_modified_ms,
            })
            .collect();
        Ok(Catalog::build(objects, manifests, histories, points))
    }
}
