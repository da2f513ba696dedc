//! Multipart uploads of the object-store backends (S3, GCS, Azure).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::errors::map_err;
use crate::error::{Result, StoreError};
use crate::store::Upload;

/// `put` switches to a multipart upload above this size.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of each uploaded part (S3 and GCS require at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once: bounds memory to about `PART_SIZE * (MAX_IN_FLIGHT + 1)`.
const MAX_IN_FLIGHT: usize = 4;

/// A multipart upload; the object appears when `finish` completes it.
pub(super) struct CloudUpload {
    store: Arc<dyn ObjectStore>,
    key: String,
    path: Path,
    writer: Option<WriteMultipart>,
    written: u64,
}

impl CloudUpload {
    pub(super) async fn start(
        store: Arc<dyn ObjectStore>,
        key: String,
        path: Path,
    ) -> Result<Box<dyn Upload>> {
        let up = store
            .put_multipart(&path)
            .await
            .map_err(|e| map_err(&key, e))?;
        let writer = Some(WriteMultipart::new_with_chunk_size(up, PART_SIZE));
        Ok(Box::new(CloudUpload {
            store,
            key,
            path,
            writer,
            written: 0,
        }))
    }

    fn writer(&mut self) -> Result<&mut WriteMultipart> {
        let key = self.key.clone();
        self.writer.as_mut().ok_or_else(|| StoreError::Permanent {
            key,
            source: "upload already finished".into(),
        })
    }
}

#[async_trait]
impl Upload for CloudUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.written += data.len() as u64;
        let key = self.key.clone();
        let w = self.writer()?;
        // Back-pressure: wait for a slot before buffering more than one more part.
        w.wait_for_capacity(MAX_IN_FLIGHT)
            .await
            .map_err(|e| map_err(&key, e))?;
        w.put(data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        let key = self.key.clone();
        let w = self.writer.take().ok_or_else(|| StoreError::Permanent {
            key: key.clone(),
            source: "upload already finished".into(),
        })?;
        if self.written == 0 {
            // S3 and GCS reject a multipart upload with no parts: write the empty object directly.
            w.abort().await.map_err(|e| map_err(&key, e))?;
            self.store
                .put(&self.path, PutPayload::new())
                .await
                .map_err(|e| map_err(&key, e))?;
            return Ok(());
        }
        w.finish().await.map_err(|e| map_err(&key, e))?;
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        match self.writer.take() {
            Some(w) => w.abort().await.map_err(|e| map_err(&self.key, e)),
            None => Ok(()),
        }
    }
}
