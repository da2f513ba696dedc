//! The backup repository: a store plus the documents that make it Tito's (config at the
//! root, timeline histories, restore points) and the loading of its catalog.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use tito_catalog::{Catalog, ObjectInfo};
use tito_format::layout::{self, ObjectName, Writer};
use tito_format::{Manifest, RepoConfig, RepoEncryption, RestorePoint, TimelineHistory};
use tito_store::{ObjectMeta, Store};

use crate::error::BackupError;
use crate::now_ms;

/// Refuse a store whose encryption does not match the repository's config.
fn check_encryption(store: &Arc<dyn Store>, config: &RepoConfig) -> Result<(), BackupError> {
    let describe = || store.describe();
    match (&config.encryption, store.encryption()) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(BackupError::EncryptedRepository { store: describe() }),
        (None, Some(_)) => Err(BackupError::UnencryptedRepository { store: describe() }),
        (Some(recorded), Some(ours)) => {
            if recorded.scheme != ours.scheme {
                return Err(BackupError::WrongKey {
                    store: describe(),
                    problem: format!(
                        "the repository uses scheme {}, this build writes {}",
                        recorded.scheme, ours.scheme
                    ),
                });
            }
            if !recorded.key_ids.iter().any(|id| ours.key_ids.contains(id)) {
                return Err(BackupError::WrongKey {
                    store: describe(),
                    problem: format!(
                        "its objects are sealed with key {}, but the keyring holds {}",
                        recorded.key_ids.join(", "),
                        ours.key_ids.join(", ")
                    ),
                });
            }
            Ok(())
        }
    }
}

/// A Tito backup repository in a store.
#[derive(Clone, Debug)]
pub struct Repository {
    store: Arc<dyn Store>,
    config: RepoConfig,
}

impl Repository {
    /// Open the repository in `store`; fails with [`BackupError::NoRepository`] if the
    /// store holds none. An encrypted repository needs a store that encrypts with a key it
    /// names ([`Store::encryption`]), an unencrypted one a store that does not: anything
    /// else is refused here, before anything is read or written beyond the config.
    pub async fn open(store: Arc<dyn Store>) -> Result<Self, BackupError> {
        match store.get(layout::REPO_CONFIG).await {
            Ok(bytes) => {
                let config = RepoConfig::decode(&bytes, layout::REPO_CONFIG)?;
                check_encryption(&store, &config)?;
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
        let config = match store.encryption() {
            Some(e) => RepoConfig::new_encrypted(
                database_id,
                RepoEncryption {
                    scheme: e.scheme,
                    key_ids: vec![e.write_key_id],
                },
            ),
            None => RepoConfig::new(database_id),
        };
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

    /// Record that the repository's objects are now all sealed with `key_ids` (after
    /// `tito rekey`): the config is rewritten in one atomic put, keeping everything else.
    pub async fn record_key_ids(&mut self, key_ids: Vec<String>) -> Result<(), BackupError> {
        let mut config = self.config.clone();
        match config.encryption.as_mut() {
            Some(e) if e.key_ids != key_ids => e.key_ids = key_ids,
            _ => return Ok(()),
        }
        let body = config.encode(layout::REPO_CONFIG)?;
        self.store
            .put(layout::REPO_CONFIG, Bytes::from(body))
            .await?;
        self.config = config;
        Ok(())
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

    /// Open the timeline a restore asked for: branching from `parent` after `branch_lsn`,
    /// or a new root timeline whose log starts after `branch_lsn` (`parent: None`, a
    /// restored copy that became a database of its own). The next free number is taken
    /// (timeline 1 in an empty repository). A timeline already opened for `branch_id` (a
    /// backup interrupted after opening it) is returned instead of opening another.
    pub async fn new_timeline(
        &self,
        parent: Option<u64>,
        branch_lsn: u64,
        branch_time_ms: u64,
        branch_id: &str,
    ) -> Result<u64, BackupError> {
        let mut max = 0;
        for obj in self.list(layout::TIMELINES).await? {
            match layout::parse(&obj.key) {
                ObjectName::TimelineHistory { timeline } => {
                    max = max.max(timeline);
                    if !branch_id.is_empty() {
                        if let Some(h) = self.history(timeline).await? {
                            if h.branch_id == branch_id {
                                return Ok(timeline);
                            }
                        }
                    }
                }
                ObjectName::Segment { timeline, .. }
                | ObjectName::SnapshotChunk { timeline, .. }
                | ObjectName::SnapshotManifest { timeline, .. }
                | ObjectName::WriterClaim { timeline, .. } => max = max.max(timeline),
                _ => {}
            }
        }
        let mut next = max.max(parent.unwrap_or(0)) + 1;
        loop {
            let history = TimelineHistory {
                timeline: next,
                parent,
                branch_lsn,
                branch_time_ms,
                branch_id: branch_id.to_string(),
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

    /// The writer claims of `timeline`, oldest first: `(epoch, writer)`.
    pub async fn claims(&self, timeline: u64) -> Result<Vec<(u64, Writer)>, BackupError> {
        let mut claims: Vec<(u64, Writer)> = self
            .list(&layout::writers_prefix(timeline))
            .await?
            .into_iter()
            .filter_map(|o| match layout::parse(&o.key) {
                ObjectName::WriterClaim { epoch, writer, .. } => Some((epoch, writer)),
                _ => None,
            })
            .collect();
        claims.sort_by_key(|(epoch, _)| *epoch);
        Ok(claims)
    }

    /// Claim `timeline` for `writer` with an epoch above every claim there (create-only,
    /// so two claimants never share an epoch). Returns the epoch.
    pub async fn claim(&self, timeline: u64, writer: &Writer) -> Result<u64, BackupError> {
        let mut epoch = self
            .claims(timeline)
            .await?
            .last()
            .map_or(1, |(e, _)| e + 1);
        loop {
            let key = layout::writer_claim(timeline, epoch, writer);
            // The name says everything; the body is for people reading the bucket.
            let body = serde_json::json!({ "created_ms": now_ms(), "pid": std::process::id() });
            if self
                .store
                .put_if_absent(&key, Bytes::from(body.to_string()))
                .await?
            {
                return Ok(epoch);
            }
            epoch += 1;
        }
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
