//! Opening engines and stores from URLs: the library (`tito::open`) parses and opens; this
//! module turns its errors into the CLI's one-line messages and exit codes.
//!
//! Engines: `memory://`, `redb:///abs/path`, a bare path (redb), `etcd://h:p[,h:p...][/ns]`.
//! Stores: `file:///abs/dir`, a bare directory path, `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`, `memory://`.

use std::path::Path;
use std::sync::Arc;

use tito::open::OpenError;
use tito_engine::Engine;
use tito_store::Store;

pub use tito::Mode;
pub use tito::url::EngineUrl;

use crate::exit::{self, CliError, Result};

/// A redb file that opening a target with [`Mode::Create`] is about to create. A command
/// that fails or only tries (a dry run) removes it again: it holds nothing of value.
pub struct CreatedFile(Option<std::path::PathBuf>);

impl CreatedFile {
    /// Note, before opening `url`, whether that creates a new redb file.
    pub fn before_open(url: &EngineUrl) -> Self {
        match url {
            EngineUrl::Redb(path) if !path.exists() => Self(Some(path.clone())),
            _ => Self(None),
        }
    }

    /// Remove the file, if this command created it; `command` names it in a warning.
    pub fn remove(self, command: &str) {
        if let Some(path) = self.0 {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove the target file created by this {command}");
            }
        }
    }
}

/// Parse an engine URL without opening anything.
pub fn parse_engine_url(url: &str) -> Result<EngineUrl> {
    tito::url::parse_engine_url(url).map_err(|e| CliError::usage(e.to_string()))
}

/// The CLI error for a failure to open the database at `url`.
pub fn engine_error(url: &str, e: OpenError) -> CliError {
    match e {
        OpenError::NoDatabase(path) => CliError::not_found(format!(
            "database file {} does not exist; check --db (only kv put, kv del, load, restore and demo create one)",
            path.display()
        )),
        OpenError::Engine(e) => CliError::from(e).context(format!("opening database {url}")),
        OpenError::Store(e) => store_error(OpenError::Store(e)),
        e => CliError::new(exit::kind_code(tito::ErrorKind::of_open(&e)), e.to_string()),
    }
}

/// The CLI error for a failure to open a store.
pub fn store_error(e: OpenError) -> CliError {
    match e {
        OpenError::NoStore(dir) => missing_store(&dir),
        OpenError::Store(e) => CliError::new(exit::store_code(&e), exit::chain(&e)),
        e => CliError::new(exit::kind_code(tito::ErrorKind::of_open(&e)), e.to_string()),
    }
}

/// Open the engine at `url`. With [`Mode::Existing`], a redb file that does not exist is
/// an error and is not created.
pub async fn open_engine(url: &str, mode: Mode) -> Result<Arc<dyn Engine>> {
    tito::open::open_engine(url, mode)
        .await
        .map_err(|e| engine_error(url, e))
}

/// The keyring file every store of this process is opened with, set once from the
/// settings ([`set_key_file`]) before any command runs.
static KEY_FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// Set the keyring file stores are opened with (the first call wins).
pub fn set_key_file(path: Option<std::path::PathBuf>) {
    let _ = KEY_FILE.set(path);
}

/// The keyring file stores are opened with: the one set, else `TITO_ENCRYPTION_KEY_FILE`.
pub fn key_file() -> Option<std::path::PathBuf> {
    match KEY_FILE.get() {
        Some(k) => k.clone(),
        None => tito::open::key_file_from_env(),
    }
}

/// Open the store at `url`. With [`Mode::Existing`], a local directory that does not exist
/// is an error and is not created. URL typos are refused before anything is created. With a
/// keyring file configured, the store encrypts and authenticates every object.
pub async fn open_store(url: &str, mode: Mode) -> Result<Arc<dyn Store>> {
    tito::open::open_store_keyed(url, mode, key_file().as_deref())
        .await
        .map_err(store_error)
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
