//! `s3://bucket/prefix`: an S3-compatible store, a [`CloudStore`] over `object_store`'s `AmazonS3`.
//!
//! Configuration comes from the usual environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), overridden by [`S3Config`] fields or by the
//! URL query (`s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1`).
//! Requests use path-style addressing when an endpoint is given (what self-hosted
//! S3-compatible servers expect); plain HTTP is allowed automatically for loopback
//! endpoints. Secrets never appear in [`describe`](crate::Store::describe), logs or errors.
//!
//! `put_if_absent` is a conditional PUT with `If-None-Match: *` (AWS S3 since 2024, MinIO,
//! R2, moto). A server that ignores the header silently overwrites instead: there the
//! create-only guarantee degrades to last-writer-wins, which is why [`put_if_absent`](crate::Store::put_if_absent)
//! callers should write content-addressed or otherwise idempotent objects.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;

use crate::cloud::{CloudStore, client_retries, is_loopback};
use crate::error::{Result, StoreError};

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

impl S3Config {
    /// Builds the store (reading the `AWS_*` environment for what is unset).
    pub fn build(self) -> Result<CloudStore> {
        let cfg = self;
        if cfg.bucket.is_empty() {
            return Err(StoreError::Config("S3 store needs a bucket name".into()));
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
        b = b.with_retry(client_retries());
        let inner = b.build().map_err(|e| {
            StoreError::Config(format!("cannot configure S3 bucket {:?}: {e}", cfg.bucket))
        })?;
        let mut description = format!("s3://{}/{}", cfg.bucket, cfg.prefix.trim_matches('/'));
        if let Some(ep) = &endpoint {
            description.push_str(&format!("?endpoint={ep}"));
        }
        CloudStore::new(Arc::new(inner), &cfg.prefix, description)
    }
}
