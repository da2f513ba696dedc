//! The object-store backends' common half: a [`Store`] over any `object_store`
//! [`ObjectStore`] (S3, Google Cloud Storage, Azure Blob Storage) under a key prefix.
//!
//! Each backend folder (`s3/`, `gcs/`, `azure/`) only turns its config and the usual
//! environment variables into an `object_store` client; everything a [`Store`] promises is
//! implemented once, here: keys under the prefix, create-only puts as conditional requests
//! (`PutMode::Create`), multipart uploads above [`MULTIPART_THRESHOLD`], byte-ordered
//! listings filtered to a string prefix, bulk deletes, and the classification of errors into
//! transient and permanent ones.

mod errors;
mod upload;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::error::{Result, StoreError};
use crate::key::{validate_key, validate_prefix};
use crate::range::check_range;
use crate::store::{ObjectMeta, Store, Upload};
use errors::map_err;
pub use upload::{MULTIPART_THRESHOLD, PART_SIZE};

/// A store in an object-store bucket (or container) under a prefix.
#[derive(Clone)]
pub struct CloudStore {
    inner: Arc<dyn ObjectStore>,
    /// Root prefix, without trailing '/'; empty for the bucket root.
    prefix: String,
    /// What [`Store::describe`] says: the URL without credentials.
    description: String,
}

// Hand-written so the client (and its credentials) never reach a log.
impl std::fmt::Debug for CloudStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CloudStore")
            .field(&self.description)
            .finish()
    }
}

/// The retries `object_store` makes itself: few and short, so that [`crate::RetryStore`]
/// (with the caller's policy) handles longer outages.
pub(crate) fn client_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

/// True for `http://` endpoints on this machine (test servers, emulators).
pub(crate) fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.strip_prefix("http://").unwrap_or("");
    ["127.", "localhost", "[::1]"]
        .iter()
        .any(|p| rest.starts_with(p))
}

impl CloudStore {
    /// A store over `inner` under `prefix` (no leading or trailing '/'; empty for the whole
    /// bucket); `description` is what [`Store::describe`] returns and must hold no secret.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, description: String) -> Result<Self> {
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            validate_key(&prefix)
                .map_err(|e| StoreError::Config(format!("bad prefix {prefix:?}: {e}")))?;
        }
        Ok(Self {
            inner,
            prefix,
            description,
        })
    }

    fn path(&self, key: &str) -> Result<Path> {
        validate_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| StoreError::InvalidKey {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// Strips the root prefix from a listed path.
    fn rel_key(prefix: &str, p: &Path) -> String {
        let s = p.as_ref();
        if prefix.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(s)
                .to_string()
        }
    }

    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        let path = self.path(key)?;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.inner
            .put_opts(&path, PutPayload::from_bytes(data), opts)
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(())
    }
}

#[async_trait]
impl Store for CloudStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        if data.len() > MULTIPART_THRESHOLD {
            let mut up = self.put_multipart(key).await?;
            // Slices of `data` share its buffer: parts are uploaded without copying.
            let mut off = 0;
            while off < data.len() {
                let end = (off + PART_SIZE).min(data.len());
                if let Err(e) = up.write(data.slice(off..end)).await {
                    let _ = up.abort().await;
                    return Err(e);
                }
                off = end;
            }
            return up.finish().await;
        }
        self.put_opts(key, data, PutMode::Overwrite).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        match self.put_opts(key, data, PutMode::Create).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        let path = self.path(key)?;
        upload::CloudUpload::start(self.inner.clone(), key.to_string(), path).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        let r = self.inner.get(&path).await.map_err(|e| map_err(key, e))?;
        r.bytes().await.map_err(|e| map_err(key, e))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        if range.start >= range.end {
            // No HTTP range can express an empty read: check against the size instead.
            let size = self.head(key).await?.size;
            check_range(key, &range, size)?;
            return Ok(Bytes::new());
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let got = match self.inner.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(e) => {
                let err = map_err(key, e);
                if matches!(err, StoreError::NotFound { .. }) {
                    return Err(err);
                }
                // Out-of-bounds ranges come back as 416 or a range mismatch: report them
                // as InvalidRange with the real size.
                let size = self.head(key).await?.size;
                check_range(key, &range, size)?;
                return Err(err);
            }
        };
        let size = got.meta.size;
        check_range(key, &range, size)?;
        let bytes = got.bytes().await.map_err(|e| map_err(key, e))?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(StoreError::InvalidRange {
                key: key.to_string(),
                range,
                size,
            });
        }
        Ok(bytes)
    }

    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let path = self.path(key)?;
        let r = self.inner.get(&path).await.map_err(|e| map_err(key, e))?;
        let k = key.to_string();
        Ok(r.into_stream().map_err(move |e| map_err(&k, e)).boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let m = self.inner.head(&path).await.map_err(|e| map_err(key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: m.size,
            last_modified_ms: m.last_modified.timestamp_millis().max(0) as u64,
        })
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = validate_prefix(prefix) {
            return stream::once(async move { Err(e) }).boxed();
        }
        // object_store lists whole path segments: list the prefix's directory part, then
        // filter by the full string prefix. S3, GCS and Azure list keys in byte order, page
        // by page.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let full_dir = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, _) => dir.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{dir}", self.prefix),
        };
        let list_path = if full_dir.is_empty() {
            None
        } else {
            Some(Path::from_iter(full_dir.split('/')))
        };
        let root = self.prefix.clone();
        let want = prefix.to_string();
        let label = prefix.to_string();
        self.inner
            .list(list_path.as_ref())
            .map_err(move |e| map_err(&label, e))
            .try_filter_map(move |m| {
                let key = Self::rel_key(&root, &m.location);
                let hit = key.starts_with(&want).then(|| ObjectMeta {
                    key,
                    size: m.size,
                    last_modified_ms: m.last_modified.timestamp_millis().max(0) as u64,
                });
                futures::future::ready(Ok(hit))
            })
            .boxed()
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let paths: Vec<Path> = keys.iter().map(|k| self.path(k)).collect::<Result<_>>()?;
        let input = stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut out = self.inner.delete_stream(input);
        while let Some(r) = out.next().await {
            match r {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => {}
                // Bulk delete errors name the failing path in their message.
                Err(e) => return Err(map_err(keys.first().map_or("", |k| k.as_str()), e)),
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
