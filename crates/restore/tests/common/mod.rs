//! Helpers shared by the restore integration tests.
#![allow(dead_code)]

pub mod pitr;

use std::collections::BTreeMap;
use std::sync::Arc;

use tito_backup::{BackupConfig, BackupService, Repository};
use tito_capture::{Db, scan_backed_up};
use tito_catalog::Target;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, RestoreError, RestoreOptions, RestoreResult, restore};
use tito_store::Store;
use tito_store::memory::MemoryStore;

/// The backed-up keyspace of an engine, as a map.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// A test's oracle: the keyspace of the model after every commit, by LSN (0 = empty).
pub struct Oracle {
    /// The keyspace now.
    pub model: State,
    /// The keyspace after each commit, by its LSN.
    pub states: BTreeMap<u64, State>,
}

impl Oracle {
    /// An empty database: nothing at LSN 0.
    pub fn new() -> Oracle {
        Oracle {
            model: State::new(),
            states: BTreeMap::from([(0, State::new())]),
        }
    }
}

impl Default for Oracle {
    fn default() -> Self {
        Self::new()
    }
}

/// Read the whole backed-up keyspace (user keys and queue state) of `engine`.
pub async fn state_of(engine: &dyn Engine) -> State {
    let view = engine.read_view().await.expect("read view");
    let mut out = State::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = scan_backed_up(view.as_ref(), after.as_deref(), 512)
            .await
            .expect("scan");
        let done = page.len() < 512;
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// Small segments and chunks so that tests exercise many objects.
pub fn small_config() -> BackupConfig {
    BackupConfig {
        segment_max_records: 7,
        segment_max_bytes: 4096,
        chunk_target_bytes: 2048,
        upload_concurrency: 3,
        ..BackupConfig::default()
    }
}

/// A memory database with a backup service on a memory store.
pub struct Fixture {
    pub engine: Arc<dyn Engine>,
    pub db: Db,
    pub store: Arc<dyn Store>,
    pub service: BackupService,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Self::with(
            Arc::new(MemoryEngine::new()),
            Arc::new(MemoryStore::new()),
            small_config(),
        )
        .await
    }

    pub async fn with(
        engine: Arc<dyn Engine>,
        store: Arc<dyn Store>,
        config: BackupConfig,
    ) -> Fixture {
        let db = Db::open(engine.clone()).await.expect("open db");
        let service = BackupService::new(db.clone(), store.clone(), config)
            .await
            .expect("backup service");
        Fixture {
            engine,
            db,
            store,
            service,
        }
    }

    pub async fn repo(&self) -> Repository {
        Repository::open(self.store.clone())
            .await
            .expect("open repository")
    }

    /// Commit puts of `pairs` in one transaction; returns its LSN.
    pub async fn put(&self, pairs: &[(&[u8], &[u8])]) -> u64 {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let (_, lsn) = self
            .db
            .transaction_lsn(|txn| {
                let pairs = pairs.clone();
                async move {
                    for (k, v) in pairs {
                        txn.put(k, v)?;
                    }
                    Ok::<_, tito_capture::CaptureError>(())
                }
            })
            .await
            .expect("commit");
        lsn.expect("a writing transaction has an LSN")
    }

    /// Restore into a fresh memory engine.
    pub async fn restore_to(&self, target: Target) -> Result<(RestoreResult, State), RestoreError> {
        restore_into_memory(&self.store, target).await
    }
}

/// Restore the repository in `store` into a fresh memory engine and read its state back.
pub async fn restore_into_memory(
    store: &Arc<dyn Store>,
    target: Target,
) -> Result<(RestoreResult, State), RestoreError> {
    restore_into(store, Arc::new(MemoryEngine::new()), target).await
}

/// Restore the repository in `store` into `engine` (empty) and read its state back.
///
/// Calls take turns through the ways a log reaches the target: merged into the snapshot
/// as it loads (an overlay), replayed into the engine after it, and an overlay too small
/// for the log, which falls back to replay.
pub async fn restore_into(
    store: &Arc<dyn Store>,
    engine: Arc<dyn Engine>,
    target: Target,
) -> Result<(RestoreResult, State), RestoreError> {
    static TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let repo = Repository::open(store.clone()).await?;
    let mut opts = RestoreOptions::new(target);
    opts.overlay_bytes = match TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 3 {
        0 => opts.overlay_bytes,
        1 => 0,
        _ => 300,
    };
    let result = restore(&repo, engine.clone(), &opts, &NoProgress).await?;
    Ok((result, state_of(engine.as_ref()).await))
}
