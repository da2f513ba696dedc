//! `az://container/prefix`: an Azure Blob Storage store, a [`CloudStore`] over
//! `object_store`'s `MicrosoftAzure`.
//!
//! Credentials come from the usual environment variables (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, a service principal's
//! `AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/`AZURE_TENANT_ID`, ...). The Azurite emulator is
//! reached with `AZURE_STORAGE_USE_EMULATOR=true` or the URL query `?use_emulator=true`
//! (its well-known development account; `AZURITE_BLOB_STORAGE_URL` moves it off
//! `http://127.0.0.1:10000`). Secrets never appear in [`describe`](crate::Store::describe),
//! logs or errors.
//!
//! `put_if_absent` is a PUT with `If-None-Match: *`, which Azure honours.

use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;

use crate::cloud::{CloudStore, client_retries};
use crate::error::{Result, StoreError};

/// Where an Azure store lives and how to reach it. Unset fields come from `AZURE_*` variables.
#[derive(Clone, Debug, Default)]
pub struct AzureConfig {
    /// Container name.
    pub container: String,
    /// Key prefix inside the container (no leading or trailing '/'); empty for all of it.
    pub prefix: String,
    /// Use the Azurite emulator (at `AZURITE_BLOB_STORAGE_URL`, default
    /// `http://127.0.0.1:10000`) and its development account; else
    /// `AZURE_STORAGE_USE_EMULATOR`.
    pub use_emulator: Option<bool>,
}

impl AzureConfig {
    /// Builds the store (reading the `AZURE_*` environment for what is unset).
    pub fn build(self) -> Result<CloudStore> {
        if self.container.is_empty() {
            return Err(StoreError::Config(
                "Azure store needs a container name".into(),
            ));
        }
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_container_name(&self.container)
            .with_retry(client_retries());
        if let Some(emulator) = self.use_emulator {
            b = b.with_use_emulator(emulator);
        }
        let inner = b.build().map_err(|e| {
            StoreError::Config(format!(
                "cannot configure Azure container {:?}: {e}",
                self.container
            ))
        })?;
        let description = format!("az://{}/{}", self.container, self.prefix.trim_matches('/'));
        CloudStore::new(Arc::new(inner), &self.prefix, description)
    }
}
