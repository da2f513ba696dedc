//! [`open`]: a store from a URL, wrapped in a [`RetryStore`].

use std::sync::Arc;

use crate::azure::AzureConfig;
use crate::error::{Result, StoreError};
use crate::gcs::GcsConfig;
use crate::local::LocalStore;
use crate::memory::MemoryStore;
use crate::retry::{RetryPolicy, RetryStore};
use crate::s3::S3Config;
use crate::store::Store;

/// The store URL forms, for error messages.
pub const URL_FORMS: &str = "file:///absolute/dir, a bare directory path, \
                     s3://bucket[/prefix][?endpoint=URL&region=R&allow_http=true], \
                     gs://bucket[/prefix][?endpoint=URL], \
                     az://container[/prefix][?use_emulator=true] or memory://";

/// Opens a store: `file:///dir`, a bare path, `s3://bucket/prefix`, `gs://bucket/prefix`,
/// `az://container/prefix`, or `memory://` (a new empty in-memory store each call).
///
/// Credentials and defaults come from the environment (`AWS_*`, `GOOGLE_*` and
/// `STORAGE_EMULATOR_HOST`, `AZURE_*` and `AZURITE_BLOB_STORAGE_URL`); the query may set an
/// S3 `endpoint`, `region` and `allow_http`, a GCS `endpoint`, and Azure's `use_emulator`.
///
/// Every store is wrapped in a [`RetryStore`] with the default [`RetryPolicy`]: transient
/// failures (network errors, 5xx, timeouts) are retried with bounded, jittered
/// backoff, and a create-only put whose acknowledgement was lost is recognised.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, RetryPolicy::default()).await
}

/// [`open`] with another retry policy.
pub async fn open_with(url: &str, policy: RetryPolicy) -> Result<Arc<dyn Store>> {
    let store = open_backend(url).await?;
    Ok(Arc::new(RetryStore::new(store, policy)))
}

/// The backend a URL names, without the retrying wrapper.
pub async fn open_backend(url: &str) -> Result<Arc<dyn Store>> {
    let bad = |why: &str| {
        StoreError::Config(format!(
            "bad store URL {url:?}: {why}; expected {URL_FORMS}"
        ))
    };
    if url.is_empty() {
        return Err(bad("empty"));
    }
    if !url.contains("://") {
        return Ok(Arc::new(LocalStore::new(url)?));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "memory" => {
            if parsed.host_str().is_some_and(|h| !h.is_empty()) || parsed.path().len() > 1 {
                return Err(bad("memory:// takes no path"));
            }
            Ok(Arc::new(MemoryStore::new()))
        }
        "file" => {
            if parsed
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(bad("file URLs must be local (file:///dir)"));
            }
            let path = parsed
                .to_file_path()
                .map_err(|_| bad("not a local directory path"))?;
            Ok(Arc::new(LocalStore::new(path)?))
        }
        "s3" | "gs" | "az" => {
            let bucket = parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    bad(if parsed.scheme() == "az" {
                        "missing container"
                    } else {
                        "missing bucket"
                    })
                })?
                .to_string();
            let prefix = parsed.path().trim_matches('/').to_string();
            let query: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let flag = |v: &str| v == "true" || v == "1";
            let unknown = |k: &str| Err(bad(&format!("unknown option {k:?}")));
            let store = match parsed.scheme() {
                "s3" => {
                    let mut cfg = S3Config {
                        bucket,
                        prefix,
                        ..Default::default()
                    };
                    for (k, v) in query {
                        match k.as_str() {
                            "endpoint" => cfg.endpoint = Some(v),
                            "region" => cfg.region = Some(v),
                            "allow_http" => cfg.allow_http = Some(flag(&v)),
                            other => return unknown(other),
                        }
                    }
                    cfg.build()?
                }
                "gs" => {
                    let mut cfg = GcsConfig {
                        bucket,
                        prefix,
                        ..Default::default()
                    };
                    for (k, v) in query {
                        match k.as_str() {
                            "endpoint" => cfg.endpoint = Some(v),
                            other => return unknown(other),
                        }
                    }
                    cfg.build()?
                }
                _ => {
                    let mut cfg = AzureConfig {
                        container: bucket,
                        prefix,
                        ..Default::default()
                    };
                    for (k, v) in query {
                        match k.as_str() {
                            "use_emulator" => cfg.use_emulator = Some(flag(&v)),
                            other => return unknown(other),
                        }
                    }
                    cfg.build()?
                }
            };
            Ok(Arc::new(store))
        }
        other => Err(bad(&format!("unsupported scheme {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_each_form_and_rejects_bad_urls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = open(dir.path().to_str().expect("utf8"))
            .await
            .expect("bare path");
        assert!(bare.describe().starts_with("file://"));
        let url = format!("file://{}", dir.path().display());
        assert!(open(&url).await.is_ok());
        assert_eq!(
            open("memory://").await.expect("memory").describe(),
            "memory://"
        );
        let s3 = open("s3://bkt/some/prefix?endpoint=http://127.0.0.1:1&region=eu-west-1")
            .await
            .expect("s3");
        assert_eq!(
            s3.describe(),
            "s3://bkt/some/prefix?endpoint=http://127.0.0.1:1"
        );
        let gs = open("gs://bkt/p?endpoint=http://127.0.0.1:1")
            .await
            .expect("gs");
        assert_eq!(gs.describe(), "gs://bkt/p?endpoint=http://127.0.0.1:1");
        let az = open("az://ctr/a/b?use_emulator=true").await.expect("az");
        assert_eq!(az.describe(), "az://ctr/a/b");
        for bad in [
            "",
            "ftp://x/y",
            "s3:///nobucket",
            "s3://b/p?bogus=1",
            "gs:///nobucket",
            "gs://b/p?region=x",
            "az:///nocontainer",
            "az://c/p?endpoint=x",
            "memory://x",
            "file://remote/x",
        ] {
            let err = open(bad).await.expect_err(bad).to_string();
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains("s3://bucket"),
                "{err}"
            );
        }
    }
}
