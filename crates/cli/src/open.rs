//! Opening engines and stores from URLs, with errors that say which URL is wrong and why.
//!
//! Engines: `memory://`, `redb:///abs/path`, a bare path (redb), `etcd://h:p[,h:p...][/ns]`.
//! Stores: `file:///abs/dir`, a bare directory path, `s3://bucket/prefix`, `memory://`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tito_engine::Engine;
use tito_store::Store;

use crate::exit::{self, CliError, Result};

/// The engine URL forms, for error messages.
pub const ENGINE_FORMS: &str = "memory://, redb:///absolute/path, a bare file path (redb), or etcd://host:port[,host:port...][/namespace]";

/// Whether a command may create what it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read-only commands: a missing database file or store directory is an error, and
    /// nothing is created.
    Existing,
    /// Writing commands may create it.
    Create,
}

/// What an engine URL names.
#[derive(Debug, PartialEq, Eq)]
pub enum EngineUrl {
    /// A new in-memory engine.
    Memory,
    /// A redb file.
    Redb(PathBuf),
    /// An etcd cluster (the URL as given).
    Etcd(String),
}

/// Parse an engine URL without opening anything.
pub fn parse_engine_url(url: &str) -> Result<EngineUrl> {
    let bad = |why: &str| {
        CliError::usage(format!(
            "malformed database URL {url:?}: {why}; expected {ENGINE_FORMS}"
        ))
    };
    if url.is_empty() {
        return Err(bad("it is empty"));
    }
    if url == "memory://" || url == "memory:" {
        return Ok(EngineUrl::Memory);
    }
    if let Some(path) = url.strip_prefix("redb://") {
        if !path.starts_with('/') {
            return Err(bad("a redb URL needs an absolute path (redb:///abs/path)"));
        }
        return Ok(EngineUrl::Redb(PathBuf::from(path)));
    }
    if url.starts_with("etcd://") {
        tito_engine_etcd::EtcdConfig::from_url(url).map_err(|e| bad(&e.to_string()))?;
        return Ok(EngineUrl::Etcd(url.to_string()));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(bad(&format!("unknown scheme {scheme:?}")));
    }
    if url.contains(':') && !url.starts_with('/') && !url.starts_with('.') {
        // "redb:/x", "s3:x"...: a typo of a URL rather than a file name.
        return Err(bad("looks like a URL without \"://\""));
    }
    Ok(EngineUrl::Redb(PathBuf::from(url)))
}

/// Open the engine at `url`. With [`Mode::Existing`], a redb file that does not exist is
/// an error and is not created.
pub async fn open_engine(url: &str, mode: Mode) -> Result<Arc<dyn Engine>> {
    let what = |e: CliError| e.context(format!("opening database {url}"));
    match parse_engine_url(url)? {
        EngineUrl::Memory => Ok(tito_engine::open("memory://")
            .await
            .map_err(|e| what(e.into()))?),
        EngineUrl::Redb(path) => {
            if mode == Mode::Existing && !path.exists() {
                return Err(CliError::not_found(format!(
                    "database file {} does not exist; check --db (only kv put, restore and demo create one)",
                    path.display()
                )));
            }
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent.filter(|p| !p.is_dir()) {
                return Err(CliError::not_found(format!(
                    "directory {} of database {url} does not exist; create it first",
                    parent.display()
                )));
            }
            let path = path.to_str().ok_or_else(|| {
                CliError::usage(format!("database path {} is not UTF-8", path.display()))
            })?;
            Ok(tito_engine::open(path).await.map_err(|e| what(e.into()))?)
        }
        EngineUrl::Etcd(url) => {
            let engine = tito_engine_etcd::open(&url)
                .await
                .map_err(|e| what(e.into()))?;
            Ok(Arc::new(engine))
        }
    }
}

/// The local directory a store URL names, if it is a local store.
pub fn local_store_dir(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        return Some(PathBuf::from(path));
    }
    (!url.contains("://") && !url.is_empty()).then(|| PathBuf::from(url))
}

/// Open the store at `url`. With [`Mode::Existing`], a local directory that does not exist
/// is an error and is not created.
pub async fn open_store(url: &str, mode: Mode) -> Result<Arc<dyn Store>> {
    if mode == Mode::Existing {
        if let Some(dir) = local_store_dir(url).filter(|d| !d.exists()) {
            return Err(missing_store(&dir));
        }
    }
    tito_store::open(url).await.map_err(|e| {
        let code = exit::store_code(&e);
        let msg = exit::chain(&e);
        CliError::new(code, msg)
    })
}

fn missing_store(dir: &Path) -> CliError {
    CliError::not_found(format!(
        "backup store directory {} does not exist; check --store (tito backup creates it)",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_urls() {
        assert_eq!(
            parse_engine_url("memory://").expect("mem"),
            EngineUrl::Memory
        );
        assert_eq!(
            parse_engine_url("redb:///a/b.redb").expect("redb"),
            EngineUrl::Redb("/a/b.redb".into())
        );
        assert_eq!(
            parse_engine_url("data/app.redb").expect("bare"),
            EngineUrl::Redb("data/app.redb".into())
        );
        assert!(matches!(
            parse_engine_url("etcd://127.0.0.1:2379,127.0.0.1:2380/app").expect("etcd"),
            EngineUrl::Etcd(_)
        ));
        for bad in [
            "",
            "redb://rel",
            "ftp://x",
            "etcd://",
            "etcd://nohost",
            "redb:/x",
        ] {
            let e = parse_engine_url(bad).expect_err(bad);
            assert_eq!(e.code, exit::USAGE, "{bad}");
            assert!(
                e.message.contains("malformed database URL"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn local_store_dirs() {
        assert_eq!(local_store_dir("file:///x/y"), Some("/x/y".into()));
        assert_eq!(local_store_dir("backups"), Some("backups".into()));
        assert_eq!(local_store_dir("s3://b/p"), None);
        assert_eq!(local_store_dir("memory://"), None);
    }

    #[tokio::test]
    async fn existing_mode_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("no.redb");
        let e = open_engine(db.to_str().expect("utf8"), Mode::Existing)
            .await
            .err()
            .expect("missing db");
        assert_eq!(e.code, exit::NOT_FOUND);
        assert!(!db.exists());
        let store = dir.path().join("nostore");
        let e = open_store(store.to_str().expect("utf8"), Mode::Existing)
            .await
            .expect_err("missing store");
        assert_eq!(e.code, exit::NOT_FOUND);
        assert!(!store.exists());
        let e = open_store("ftp://x/y", Mode::Existing)
            .await
            .expect_err("bad");
        assert_eq!(e.code, exit::USAGE);
    }
}
