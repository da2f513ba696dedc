//! `s3://bucket/prefix`: an S3-compatible store built on `object_store`'s `AmazonS3`.
//!
//! Configuration comes from the usual environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), overridden by [`S3Config`] fields or by the
//! URL query (`s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1`).
//! Requests use path-style addressing when an endpoint is given (what self-hosted
//! S3-compatible servers expect); plain HTTP is allowed automatically for loopback
//! endpoints. Secrets never appear in [`Store::describe`], logs or errors.
//!
//! `put_if_absent` is a conditional PUT with `If-None-Match: *` (AWS S3 since 2024, MinIO,
//! R2, moto). A server that ignores the header silently overwrites instead: there the
//! create-only guarantee degrades to last-writer-wins, which is why [`Store::put_if_absent`]
//! callers should write content-addressed or otherwise idempotent objects.

mod errors;
mod upload;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
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

/// Where an S3 store lives and how to reach it. Unset fields come from `AWS_*` variables.
#[derive(Clone, Default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing '/'); empty for the whole bucket.
    pub prefix: String,
    /// Endpoint URL override (e.g. `http://127.0.0.1:9000`); else `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Region override; else `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain HTTP; defaults to true for loopback endpoints, else `AWS_ALLOW_HTTP`.
    pub allow_http: Option<bool>,
    /// Access key id override; else `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret access key override; else `AWS_SECRET_ACCESS_KEY`. Never printed.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A store in an S3 bucket under a prefix.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<AmazonS3>,
    bucket: String,
    /// Root prefix, without trailing '/'; empty for the bucket root.
    prefix: String,
    endpoint: Option<String>,
}

// Hand-written so the client (and its credentials) never reach a log.
impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("S3Store").field(&self.describe()).finish()
    }
}

fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.strip_prefix("http://").unwrap_or("");
    ["127.", "localhost", "[::1]"]
        .iter()
        .any(|p| rest.starts_with(p))
}

impl S3Store {
    /// Builds a store from a config (and the `AWS_*` environment).
    pub fn new(cfg: S3Config) -> Result<Self> {
        if cfg.bucket.is_empty() {
            return Err(StoreError::Config("S3 store needs a bucket name".into()));
        }
        let prefix = cfg.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            validate_key(&prefix).map_err(|e| StoreError::Config(format!("bad S3 prefix: {e}")))?;
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
        let endpoint = cfg.endpoint.clone().or_else(|| {
            std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .or_else(|| std::env::var("AWS_ENDPOINT").ok())
        });
        if let Some(ep) = &endpoint {
            b = b.with_endpoint(ep).with_virtual_hosted_style_request(false);
            if cfg.allow_http.is_none() && is_loopback(ep) {
                b = b.with_allow_http(true);
            }
        }
        if let Some(id) = &cfg.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &cfg.secret_access_key {
            b = b.with_secret_access_key(secret);
        }
        if let Some(allow) = cfg.allow_http {
            b = b.with_allow_http(allow);
        }
        let region = cfg.region.clone().or_else(|| {
            std::env::var("AWS_REGION")
                .ok()
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        });
        b = b.with_region(region.unwrap_or_else(|| "us-east-1".into()));
        // object_store retries 5xx/timeouts itself; keep that short and let RetryStore
        // (with the caller's policy) handle longer outages.
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        b = b.with_retry(retry);
        let inner = b.build().map_err(|e| {
            StoreError::Config(format!("cannot configure S3 bucket {:?}: {e}", cfg.bucket))
        })?;
        Ok(Self {
            inner: Arc::new(inner),
            bucket: cfg.bucket,
            prefix,
            endpoint,
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
impl Store for S3Store {
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
        upload::S3Upload::start(self.inner.clone(), key.to_string(), path).await
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
        // filter by the full string prefix. S3 returns keys in byte order, page by page.
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
        let mut s = format!("s3://{}/{}", self.bucket, self.prefix);
        if let Some(ep) = &self.endpoint {
            s.push_str(&format!("?endpoint={ep}"));
        }
        s
    }
}
