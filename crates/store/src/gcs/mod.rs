//! `gs://bucket/prefix`: a Google Cloud Storage store, a [`CloudStore`] over `object_store`'s
//! `GoogleCloudStorage`.
//!
//! Credentials come from the usual environment variables (`GOOGLE_SERVICE_ACCOUNT` or
//! `GOOGLE_APPLICATION_CREDENTIALS`: a path to a service account key file;
//! `GOOGLE_SERVICE_ACCOUNT_KEY`: the key itself), else application default credentials or
//! the instance's metadata server. An emulator (fake-gcs-server) is reached through
//! `STORAGE_EMULATOR_HOST` (the variable Google's own clients read) or the URL query
//! `?endpoint=http://127.0.0.1:4443`; a loopback endpoint is used without credentials, as
//! emulators expect. Secrets never appear in [`describe`](crate::Store::describe), logs or
//! errors.
//!
//! `put_if_absent` is an upload with `ifGenerationMatch=0`: GCS creates the object only if
//! no live generation exists.

use std::sync::Arc;

use object_store::gcp::GoogleCloudStorageBuilder;

use crate::cloud::{CloudStore, client_retries, is_loopback};
use crate::error::{Result, StoreError};

/// Where a GCS store lives and how to reach it. Unset fields come from `GOOGLE_*` variables.
#[derive(Clone, Debug, Default)]
pub struct GcsConfig {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing '/'); empty for the whole bucket.
    pub prefix: String,
    /// Base URL of the JSON API (an emulator, e.g. `http://127.0.0.1:4443`); else
    /// `STORAGE_EMULATOR_HOST`, else Google's.
    pub endpoint: Option<String>,
}

impl GcsConfig {
    /// Builds the store (reading the `GOOGLE_*` environment for what is unset).
    pub fn build(self) -> Result<CloudStore> {
        if self.bucket.is_empty() {
            return Err(StoreError::Config("GCS store needs a bucket name".into()));
        }
        let endpoint = self.endpoint.clone().or_else(|| {
            std::env::var("STORAGE_EMULATOR_HOST")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| {
                    if v.contains("://") {
                        v
                    } else {
                        format!("http://{v}")
                    }
                })
        });
        let b = match &endpoint {
            // Emulators take no credentials and have no metadata server to ask: a key that
            // says so (object_store's documented emulator form), and nothing from GOOGLE_*.
            Some(ep) if is_loopback(ep) => {
                let key = serde_json::json!({
                    "private_key": "",
                    "private_key_id": "",
                    "client_email": "",
                    "disable_oauth": true,
                    "gcs_base_url": ep.trim_end_matches('/'),
                });
                GoogleCloudStorageBuilder::new()
                    .with_service_account_key(key.to_string())
                    .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            }
            Some(ep) => {
                GoogleCloudStorageBuilder::from_env().with_base_url(ep.trim_end_matches('/'))
            }
            None => GoogleCloudStorageBuilder::from_env(),
        };
        let b = b
            .with_bucket_name(&self.bucket)
            .with_retry(client_retries());
        let inner = b.build().map_err(|e| {
            StoreError::Config(format!(
                "cannot configure GCS bucket {:?}: {e}",
                self.bucket
            ))
        })?;
        let mut description = format!("gs://{}/{}", self.bucket, self.prefix.trim_matches('/'));
        if let Some(ep) = &endpoint {
            description.push_str(&format!("?endpoint={ep}"));
        }
        CloudStore::new(Arc::new(inner), &self.prefix, description)
    }
}
