//! A full backup disk without mounting one: a store whose writes fail with ENOSPC while
//! "full" (the fallback of `crates/cli/tests/disk_full.rs`, which uses a real tmpfs where
//! it may mount one). Shipping fails with an error naming the full disk, the log keeps
//! every unshipped record (nothing trimmed), and once there is room shipping goes on and
//! the repository restores exactly.

mod common;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use common::{Fixture, restore_into_memory, small_config, state_of};
use futures::stream::BoxStream;
use tito_catalog::Target;
use tito_engine::memory::MemoryEngine;
use tito_store::{MemoryStore, ObjectMeta, Result, Store, StoreError, Upload};

const DISK: &str = "/backups/on/a/full/disk";

/// A memory store whose writes fail as a full local disk's would while `full` is set.
#[derive(Debug)]
struct FullDisk {
    inner: Arc<dyn Store>,
    full: AtomicBool,
}

impl FullDisk {
    fn check(&self, key: &str) -> Result<()> {
        if self.full.load(Ordering::SeqCst) {
            let enospc = std::io::Error::from_raw_os_error(28);
            return Err(StoreError::from_io_at(key, enospc, DISK.as_ref()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FullDisk {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.check(key)?;
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        self.check(key)?;
        self.inner.put_if_absent(key, data).await
    }
    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.check(key)?;
        self.inner.put_multipart(key).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        format!("full-disk+{}", self.inner.describe())
    }
}

#[tokio::test]
async fn a_full_backup_disk_loses_nothing_and_shipping_resumes() {
    let disk = Arc::new(FullDisk {
        inner: Arc::new(MemoryStore::new()),
        full: AtomicBool::new(false),
    });
    let fx = Fixture::with(Arc::new(MemoryEngine::new()), disk.clone(), small_config()).await;
    for i in 0..20u8 {
        fx.put(&[(&[b'a', i], &[i; 100])]).await;
    }
    fx.service.run_backup().await.expect("first backup");
    let shipped = fx.db.log_bounds().await.expect("bounds");

    disk.full.store(true, Ordering::SeqCst);
    for i in 0..20u8 {
        fx.put(&[(&[b'b', i], &[i; 100])]).await;
    }
    let newest = fx
        .db
        .log_bounds()
        .await
        .expect("bounds")
        .expect("log")
        .newest;
    for _ in 0..3 {
        let err = fx.service.ship_log().await.expect_err("the disk is full");
        let text = err.to_string();
        assert!(text.contains(DISK) && text.contains("full"), "{text}");
        let err = fx.service.snapshot().await.expect_err("the disk is full");
        assert!(err.to_string().contains(DISK), "{err}");
        // Nothing unshipped was trimmed.
        let bounds = fx.db.log_bounds().await.expect("bounds").expect("log kept");
        assert_eq!(bounds.newest, newest);
        assert!(
            shipped.is_none_or(|s| bounds.oldest <= s.newest + 1),
            "{bounds:?} after {shipped:?}"
        );
    }

    disk.full.store(false, Ordering::SeqCst);
    fx.service.run_backup().await.expect("backup with room");
    let (_, restored) = restore_into_memory(&fx.store, Target::Latest)
        .await
        .expect("restore");
    assert_eq!(restored, state_of(fx.engine.as_ref()).await);
}
