//! Streaming upload for the local backend: a temp file renamed into place on finish.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::fsutil::fsync_dir;
use crate::error::{Result, StoreError};
use crate::store::Upload;

/// An upload in progress: bytes go to `tmp`; `finish` fsyncs and renames it to `path`.
pub(super) struct LocalUpload {
    key: String,
    dir: PathBuf,
    tmp: PathBuf,
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl LocalUpload {
    pub(super) async fn create(
        key: String,
        dir: PathBuf,
        tmp: PathBuf,
        path: PathBuf,
    ) -> Result<Box<dyn Upload>> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(|e| StoreError::from_io_at(&key, e, &dir))?;
        Ok(Box::new(LocalUpload {
            key,
            dir,
            tmp,
            path,
            file: Some(file),
        }))
    }

    fn err(&self, e: std::io::Error) -> StoreError {
        StoreError::from_io_at(&self.key, e, &self.dir)
    }
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Permanent {
                key: self.key.clone(),
                source: "upload already finished".into(),
            });
        };
        let r = file.write_all(&data).await;
        r.map_err(|e| self.err(e))
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        let Some(mut file) = self.file.take() else {
            return Err(StoreError::Permanent {
                key: self.key.clone(),
                source: "upload already finished".into(),
            });
        };
        let r = async {
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&self.tmp, &self.path).await?;
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || fsync_dir(&dir))
                .await
                .map_err(std::io::Error::other)?
        }
        .await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&self.tmp).await;
        }
        r.map_err(|e| self.err(e))
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.file.take();
        match tokio::fs::remove_file(&self.tmp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Never finished: remove the temp file (after a successful rename it is gone).
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
