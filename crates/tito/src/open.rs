//! Opening engines and stores by URL (see [`crate::url`] for the forms), the one place the
//! library and the `tito` CLI do it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tito_engine::{Engine, EngineError};
use tito_store::{EncryptStore, Keyring, KeyringError, Store, StoreError};

use crate::url::{EngineUrl, StoreUrl, UrlError, parse_engine_url, parse_store_url};

/// Whether opening may create what it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A missing database file or store directory is an error, and nothing is created.
    Existing,
    /// A missing database file or store directory is created.
    Create,
}

/// Why a database or store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is malformed (nothing was touched).
    #[error(transparent)]
    Url(#[from] UrlError),
    /// [`Mode::Existing`] and the database file does not exist.
    #[error("database file {} does not exist", .0.display())]
    NoDatabase(PathBuf),
    /// The directory a database file would go in does not exist.
    #[error("directory {} of database {url} does not exist; create it first", .dir.display())]
    NoDirectory {
        /// The missing directory.
        dir: PathBuf,
        /// The database URL.
        url: String,
    },
    /// [`Mode::Existing`] and the store directory does not exist.
    #[error("backup store directory {} does not exist", .0.display())]
    NoStore(PathBuf),
    /// A path that is not UTF-8.
    #[error("database path {} is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    /// The engine failed to open (for redb, "already open" means another process holds
    /// it: see [`OpenError::is_locked`]).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The encryption keyring could not be read.
    #[error(transparent)]
    Key(#[from] KeyringError),
    /// An `etcd+watch://` URL with a key prefix names the keys a watch backs up; as a
    /// database (a restore target) the cluster is named whole, its keys raw.
    #[error(
        "{0} names a key prefix that Tito backs up by watching it (tito backup --db {0}); as a database (a restore target, dump) name the whole cluster without the prefix, etcd+watch://{1}: restored keys keep their prefix"
    )]
    WatchPrefix(String, String),
}

impl OpenError {
    /// True if a redb file is held open by another process (its file lock is taken).
    pub fn is_locked(&self) -> bool {
        matches!(self, OpenError::Engine(EngineError::Open(m)) if is_lock_message(m))
    }
}

/// redb's message when another process holds the file lock.
pub(crate) fn is_lock_message(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("already open") || m.contains("cannot acquire lock")
}

/// The redb file a database URL names, if it names one.
pub fn redb_path(url: &str) -> Option<PathBuf> {
    match parse_engine_url(url) {
        Ok(EngineUrl::Redb(p)) => Some(p),
        _ => None,
    }
}

/// Open the engine at `url` (`memory://`, a redb path or `redb:///abs`, `etcd://...`).
/// With [`Mode::Existing`], a redb file that does not exist is an error and is not created.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tito::open::{Mode, open_engine};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.redb");
/// let url = path.to_str().unwrap();
/// assert!(open_engine(url, Mode::Existing).await.is_err()); // nothing created
/// assert!(!path.exists());
/// let engine = open_engine(url, Mode::Create).await.unwrap();
/// engine.close().await.unwrap();
/// # });
/// ```
pub async fn open_engine(url: &str, mode: Mode) -> Result<Arc<dyn Engine>, OpenError> {
    match parse_engine_url(url)? {
        EngineUrl::Memory => Ok(tito_engine::open("memory://").await?),
        EngineUrl::Redb(path) => {
            if mode == Mode::Existing && !path.exists() {
                return Err(OpenError::NoDatabase(path));
            }
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent.filter(|p| !p.is_dir()) {
                return Err(OpenError::NoDirectory {
                    dir: parent.to_path_buf(),
                    url: url.to_string(),
                });
            }
            let p = path
                .to_str()
                .ok_or_else(|| OpenError::NotUtf8(path.clone()))?;
            Ok(tito_engine::open(p).await?)
        }
        EngineUrl::Etcd(url) => Ok(Arc::new(tito_engine_etcd::open(&url).await?)),
        EngineUrl::EtcdWatch(url) => {
            let config = tito_etcd_watch::WatchConfig::from_url(&url)
                .map_err(|e| EngineError::Open(e.to_string()))?;
            if !config.prefix.is_empty() {
                let hosts = config.endpoints.join(",");
                return Err(OpenError::WatchPrefix(url, hosts));
            }
            Ok(Arc::new(
                tito_engine_etcd::EtcdEngine::with_config(config.database).await?,
            ))
        }
    }
}

/// The local directory a store URL names, if it is a well-formed local store URL.
pub fn local_store_dir(url: &str) -> Option<PathBuf> {
    match parse_store_url(url) {
        Ok(StoreUrl::Local(p)) => Some(p),
        _ => None,
    }
}

/// Open the store at `url` (a directory path or `file:///abs`, `s3://bucket/prefix`,
/// `memory://`). With [`Mode::Existing`], a local directory that does not exist is an
/// error and is not created.
///
/// When [`KEY_FILE_ENV`] names a keyring file, the store encrypts every object it writes
/// and authenticates every object it reads ([`open_store_keyed`]).
pub async fn open_store(url: &str, mode: Mode) -> Result<Arc<dyn Store>, OpenError> {
    open_store_keyed(url, mode, key_file_from_env().as_deref()).await
}

/// The environment variable naming the encryption keyring file.
pub const KEY_FILE_ENV: &str = "TITO_ENCRYPTION_KEY_FILE";

/// The keyring file [`KEY_FILE_ENV`] names, if set and not empty.
pub fn key_file_from_env() -> Option<PathBuf> {
    std::env::var_os(KEY_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// [`open_store`] with the keyring file given (`None`: no encryption). The keyring is read
/// before the store is opened, so a missing or malformed key file touches nothing.
pub async fn open_store_keyed(
    url: &str,
    mode: Mode,
    key_file: Option<&Path>,
) -> Result<Arc<dyn Store>, OpenError> {
    let keyring = key_file.map(Keyring::load).transpose()?;
    if let StoreUrl::Local(dir) = parse_store_url(url)? {
        if mode == Mode::Existing && !dir.exists() {
            return Err(OpenError::NoStore(dir));
        }
    }
    let store = tito_store::open(url).await?;
    Ok(match keyring {
        Some(k) => encrypted(store, k),
        None => store,
    })
}

/// `store` with every object but the repository config encrypted with `keyring` (the
/// wrapper sits outside the store's retrying layer).
pub fn encrypted(store: Arc<dyn Store>, keyring: Keyring) -> Arc<dyn Store> {
    Arc::new(EncryptStore::new(
        store,
        keyring,
        [tito_format::layout::REPO_CONFIG.to_string()],
    ))
}

/// `url` with a relative local path made absolute, so another process (a database holder
/// with another working directory) opens the same store. Other URLs are returned as is.
pub fn absolute_store_url(url: &str) -> String {
    match parse_store_url(url) {
        Ok(StoreUrl::Local(p)) => absolute(&p).to_string_lossy().into_owned(),
        _ => url.to_string(),
    }
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[tokio::test]
    async fn a_watched_prefix_is_not_a_database_but_its_cluster_is() {
        let e = open_engine("etcd+watch://127.0.0.1:1/app/", Mode::Create)
            .await
            .err()
            .expect("refused");
        assert!(matches!(e, OpenError::WatchPrefix(..)), "{e}");
        assert_eq!(ErrorKind::of_open(&e), ErrorKind::Usage);
        assert!(e.to_string().contains("etcd+watch://127.0.0.1:1:"), "{e}");
        // Without the prefix it is the cluster, raw: nothing answers on port 1.
        let e = open_engine("etcd+watch://127.0.0.1:1", Mode::Create)
            .await
            .err()
            .expect("unreachable");
        assert!(matches!(e, OpenError::Engine(EngineError::Open(_))), "{e}");
    }

    #[tokio::test]
    async fn existing_mode_creates_nothing_and_typos_are_url_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("no.redb");
        let e = open_engine(db.to_str().expect("utf8"), Mode::Existing)
            .await
            .err()
            .expect("missing db");
        assert!(matches!(e, OpenError::NoDatabase(_)), "{e}");
        assert!(!db.exists());
        let store = dir.path().join("nostore");
        let e = open_store(store.to_str().expect("utf8"), Mode::Existing)
            .await
            .expect_err("missing store");
        assert!(matches!(e, OpenError::NoStore(_)), "{e}");
        assert!(!store.exists());
        for typo in ["s3:/b/x", "s3:b", "file:/x", "https://h/b"] {
            let e = open_store(typo, Mode::Create).await.expect_err(typo);
            assert!(matches!(e, OpenError::Url(_)), "{typo}: {e}");
        }
        let e = open_engine("redb:/x", Mode::Create)
            .await
            .err()
            .expect("typo");
        assert!(matches!(e, OpenError::Url(_)), "{e}");
    }

    #[tokio::test]
    async fn a_keyring_makes_an_encrypting_store_and_a_bad_one_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k.key");
        let ring = Keyring::generate();
        ring.create_file(&key).expect("key file");
        let url = dir.path().join("store");
        let url = url.to_str().expect("utf8");
        let store = open_store_keyed(url, Mode::Create, Some(&key))
            .await
            .expect("keyed");
        let enc = store.encryption().expect("encrypting");
        assert_eq!(enc.write_key_id, ring.write_key().id().to_string());
        store
            .put("a", bytes::Bytes::from_static(b"plain text"))
            .await
            .expect("put");
        let raw = std::fs::read(dir.path().join("store/a")).expect("raw");
        assert_eq!(&raw[..4], b"TENC");
        store
            .put(
                tito_format::layout::REPO_CONFIG,
                bytes::Bytes::from_static(b"cfg"),
            )
            .await
            .expect("config");
        assert_eq!(
            std::fs::read(dir.path().join("store/tito.repo")).expect("cfg"),
            b"cfg"
        );
        let plain = open_store_keyed(url, Mode::Existing, None)
            .await
            .expect("plain");
        assert!(plain.encryption().is_none());
        let other = dir.path().join("other");
        let e = open_store_keyed(
            other.to_str().expect("utf8"),
            Mode::Create,
            Some(&dir.path().join("absent.key")),
        )
        .await
        .expect_err("missing key file");
        assert!(matches!(e, OpenError::Key(_)), "{e}");
        assert_eq!(ErrorKind::of_open(&e), ErrorKind::Usage);
        assert!(!other.exists(), "nothing created before the key is read");
    }

    #[tokio::test]
    async fn a_second_open_of_a_redb_file_is_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("a.redb");
        let url = db.to_str().expect("utf8");
        let first = open_engine(url, Mode::Create).await.expect("first");
        let e = open_engine(url, Mode::Existing)
            .await
            .err()
            .expect("second");
        assert!(e.is_locked(), "{e}");
        first.close().await.expect("close");
    }
}
