//! Helpers shared by the backup service tests: a memory database and a store that can run
//! a hook after each segment upload (a writer that is always faster than the shipper, or
//! time passing for the lease).
#![allow(dead_code)]

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tito_backup::{BackupConfig, BackupService};
use tito_capture::{CaptureError, Db};
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_format::layout::{self, ObjectName};
use tito_store::memory::MemoryStore;
use tito_store::{ObjectMeta, Store, Upload};

/// Runs after every log segment the inner store accepted.
pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A memory store calling a hook after each segment upload, while armed.
pub struct HookStore {
    inner: MemoryStore,
    hook: Mutex<Option<Hook>>,
    armed: AtomicBool,
}

impl std::fmt::Debug for HookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookStore")
    }
}

impl HookStore {
    pub fn new() -> Arc<HookStore> {
        Arc::new(HookStore {
            inner: MemoryStore::new(),
            hook: Mutex::new(None),
            armed: AtomicBool::new(false),
        })
    }

    /// Call `hook` after every segment upload from now on.
    pub fn arm(&self, hook: Hook) {
        *self.hook.lock().unwrap() = Some(hook);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Stop calling the hook.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    async fn after_put(&self, key: &str) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        if let ObjectName::Segment { .. } = layout::parse(key) {
            let hook = self.hook.lock().unwrap().clone();
            if let Some(hook) = hook {
                hook().await;
            }
        }
    }
}

#[async_trait]
impl Store for HookStore {
    async fn put(&self, key: &str, data: Bytes) -> tito_store::Result<()> {
        self.inner.put(key, data).await?;
        self.after_put(key).await;
        Ok(())
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> tito_store::Result<bool> {
        self.inner.put_if_absent(key, data).await
    }
    async fn put_multipart(&self, key: &str) -> tito_store::Result<Box<dyn Upload>> {
        self.inner.put_multipart(key).await
    }
    async fn get(&self, key: &str) -> tito_store::Result<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> tito_store::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get_stream(
        &self,
        key: &str,
    ) -> tito_store::Result<BoxStream<'static, tito_store::Result<Bytes>>> {
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &str) -> tito_store::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, tito_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn delete_many(&self, keys: &[String]) -> tito_store::Result<()> {
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        "hook://".into()
    }
}

/// Small segments so that a round has many of them.
pub fn small_config() -> BackupConfig {
    BackupConfig {
        segment_max_records: 2,
        segment_max_bytes: 4096,
        chunk_target_bytes: 2048,
        upload_concurrency: 2,
        ..BackupConfig::default()
    }
}

/// A memory database.
pub async fn memory_db() -> (Arc<dyn Engine>, Db) {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let db = Db::open(engine.clone()).await.expect("open db");
    (engine, db)
}

/// A backup service of `db` into `store`.
pub async fn service(db: &Db, store: Arc<dyn Store>, config: BackupConfig) -> BackupService {
    BackupService::new(db.clone(), store, config)
        .await
        .expect("backup service")
}

/// Commit one transaction putting `key`; returns its LSN.
pub async fn commit(db: &Db, key: Vec<u8>) -> u64 {
    let (_, lsn) = db
        .transaction_lsn(|txn| {
            let key = key.clone();
            async move {
                txn.put(key, b"v".to_vec())?;
                Ok::<_, CaptureError>(())
            }
        })
        .await
        .expect("commit");
    lsn.expect("a writing transaction has an LSN")
}

/// A hook committing `per_segment` transactions after every segment upload. With as many
/// as a segment holds, the writer is always ahead of the shipper: the log is never empty
/// when the shipper looks again.
pub fn writer_hook(db: &Db, per_segment: usize) -> Hook {
    let db = db.clone();
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Arc::new(move || {
        let db = db.clone();
        let n = n.clone();
        Box::pin(async move {
            for _ in 0..per_segment {
                let i = n.fetch_add(1, Ordering::SeqCst);
                commit(&db, format!("during-{i:08}").into_bytes()).await;
            }
        })
    })
}

/// The newest LSN committed so far.
pub async fn version(engine: &dyn Engine) -> u64 {
    engine.read_view().await.expect("read view").version()
}
