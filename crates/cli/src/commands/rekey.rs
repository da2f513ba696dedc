//! `tito rekey`: re-encrypt every object of the store that is not sealed with the
//! keyring's newest key, then record in the repository config that only that key is needed.
//!
//! Crash-safe: each object is streamed through and replaced in one atomic upload with the
//! same plaintext, so a kill at any moment leaves every object readable with the keyring
//! (old or new key); running it again carries on, skipping what is already done.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use tito_backup::Repository;
use tito_format::layout;
use tito_store::{EncryptStore, Keyring, Store};

use crate::config::Settings;
use crate::exit::{CliError, Result};
use crate::open::{Mode, key_file, store_error};
use crate::progress::Reporter;

/// Objects re-encrypted at once.
const CONCURRENCY: usize = 8;

/// `tito rekey`.
pub async fn run(settings: &Settings, json: bool) -> Result<()> {
    let path = key_file().ok_or_else(|| {
        CliError::usage(
            "tito rekey needs the keyring: set TITO_ENCRYPTION_KEY_FILE or [encryption] key_file in the --config file",
        )
    })?;
    let keyring = Keyring::load(&path).map_err(super::key::keyring_error)?;
    let url = settings.store()?;
    let raw = tito::open::open_store_keyed(url, Mode::Existing, None)
        .await
        .map_err(store_error)?;
    let store = EncryptStore::new(raw, keyring, [layout::REPO_CONFIG.to_string()]);
    let newest = store.keyring().write_key().id().to_string();
    let mut repo = Repository::open(Arc::new(store.clone()) as Arc<dyn Store>)
        .await
        .map_err(|e| super::s3_hint(url, e.into()))?;
    let objects: Vec<String> = store
        .list("")
        .map_ok(|m| m.key)
        .try_filter(|k| futures::future::ready(k != layout::REPO_CONFIG))
        .try_collect()
        .await?;
    let progress = Reporter::new();
    progress.phase("rekey", objects.len() as u64);
    let resealed = AtomicU64::new(0);
    let result = futures::stream::iter(objects.iter())
        .map(|key| {
            let (store, resealed, progress) = (&store, &resealed, &progress);
            async move {
                match store.reseal(key).await {
                    Ok(true) => {
                        resealed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    // Deleted by a prune since the listing: nothing to move.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
                progress.advance(1);
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await;
    if let Err(e) = result {
        progress.abandon();
        let done = resealed.load(Ordering::Relaxed);
        let e: CliError = e.into();
        return Err(CliError::new(
            e.code,
            format!(
                "{}; {done} objects were re-encrypted before it, every object is still readable with this keyring, and running tito rekey again carries on",
                e.message
            ),
        ));
    }
    progress.finish();
    repo.record_key_ids(vec![newest.clone()]).await?;
    let n = resealed.load(Ordering::Relaxed);
    if json {
        crate::outln!(
            "{}",
            serde_json::json!({ "objects": objects.len(), "reencrypted": n, "key_id": newest })
        )?;
    } else {
        crate::outln!(
            "re-encrypted {n} of {} objects with key {newest}; the repository now needs only that key",
            objects.len()
        )?;
    }
    Ok(())
}
