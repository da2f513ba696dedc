//! `file:///dir` (or a bare path): objects are files under a root directory.
//!
//! Durability: every write goes to a temporary file in the object's own directory, is
//! fsynced, renamed over the final name, and the directory is fsynced; new directories are
//! fsynced into their parents. A crash therefore never leaves a partial object under its
//! final name. Temporary files (`.tito-tmp-*`) are never listed; keys cannot name them.
//!
//! Limitation of a filesystem: key `a` and key `a/b` cannot both exist (`a` would have to
//! be a file and a directory); the second write fails with a permanent error naming it.
//! Empty directories left behind by deletes are not removed (removing them would race
//! with concurrent writers creating files in them).

mod fsutil;
mod upload;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio_util::io::ReaderStream;

use crate::error::{Result, StoreError};
use crate::key::{TMP_PREFIX, validate_key, validate_prefix};
use crate::range::{check_range, millis};
use crate::store::{ObjectMeta, Store, Upload};
use fsutil::{blocking, ensure_parent, fsync_dir, temp_path, write_temp};

/// Streamed reads use buffers of this size.
const STREAM_CHUNK: usize = 1 << 20;

/// A store in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// Set by [`LocalStore::temporary`]: the directory is removed with the last clone.
    _temp: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let cfg = |e: std::io::Error| {
            StoreError::Config(format!(
                "cannot use directory {} as a store: {e}",
                root.display()
            ))
        };
        std::fs::create_dir_all(root).map_err(cfg)?;
        let root = root.canonicalize().map_err(cfg)?;
        if !root.is_dir() {
            return Err(StoreError::Config(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(Self { root, _temp: None })
    }

    /// A store in a fresh temporary directory, deleted when the last clone is dropped.
    pub fn temporary() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tito-store-")
            .tempdir()
            .map_err(|e| StoreError::Config(format!("cannot create a temporary directory: {e}")))?;
        let mut store = Self::new(dir.path())?;
        store._temp = Some(std::sync::Arc::new(dir));
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Opens an object file for reading; a directory under the key counts as missing.
    fn open_file(key: &str, path: &Path) -> Result<(File, u64)> {
        let file = File::open(path).map_err(|e| StoreError::from_io(key, e))?;
        let meta = file.metadata().map_err(|e| StoreError::from_io(key, e))?;
        if !meta.is_file() {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        }
        Ok((file, meta.len()))
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let (root, key) = (self.root.clone(), key.to_string());
        blocking(move || {
            let dir = ensure_parent(&root, &path)?;
            let tmp = write_temp(&dir, &data)?;
            if let Err(e) = std::fs::rename(&tmp, &path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            fsync_dir(&dir)
        })
        .await
        .map_err(|e| StoreError::from_io_at(&key, e, &self.root))
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        let path = self.path(key)?;
        let (root, key) = (self.root.clone(), key.to_string());
        let created = blocking(move || {
            let dir = ensure_parent(&root, &path)?;
            let tmp = write_temp(&dir, &data)?;
            // link(2) fails if the name exists: an atomic create-only publish.
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => fsync_dir(&dir).map(|_| true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| StoreError::from_io_at(&key, e, &self.root))?;
        Ok(created)
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        let path = self.path(key)?;
        let (root, k) = (self.root.clone(), key.to_string());
        let (dir, tmp) = blocking(move || {
            let dir = ensure_parent(&root, &path)?;
            let tmp = temp_path(&dir);
            Ok((dir, tmp))
        })
        .await
        .map_err(|e| StoreError::from_io_at(&k, e, &self.root))?;
        let final_path = self.root.join(key);
        upload::LocalUpload::create(k, dir, tmp, final_path).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        let k = key.to_string();
        blocking_store(key, move || {
            let (mut file, size) = Self::open_file(&k, &path)?;
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf)
                .map_err(|e| StoreError::from_io(&k, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        let k = key.to_string();
        blocking_store(key, move || {
            let (mut file, size) = Self::open_file(&k, &path)?;
            check_range(&k, &range, size)?;
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            file.seek(SeekFrom::Start(range.start))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| StoreError::from_io(&k, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let path = self.path(key)?;
        let k = key.to_string();
        let (file, _) = blocking_store(key, move || Self::open_file(&k, &path)).await?;
        let k = key.to_string();
        let reader = ReaderStream::with_capacity(tokio::fs::File::from_std(file), STREAM_CHUNK);
        Ok(reader.map_err(move |e| StoreError::from_io(&k, e)).boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let k = key.to_string();
        blocking_store(key, move || {
            let meta = std::fs::metadata(&path).map_err(|e| StoreError::from_io(&k, e))?;
            if !meta.is_file() {
                return Err(StoreError::NotFound { key: k });
            }
            let modified = meta.modified().map(millis).unwrap_or(0);
            Ok(ObjectMeta {
                key: k,
                size: meta.len(),
                last_modified_ms: modified,
            })
        })
        .await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = validate_prefix(prefix) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        let fut = async move {
            let p = prefix.clone();
            let items = blocking_store(&prefix, move || list_sorted(&root, &p)).await;
            match items {
                Ok(items) => stream::iter(items.into_iter().map(Ok)).boxed(),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            }
        };
        stream::once(fut).flatten().boxed()
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let paths: Vec<(String, PathBuf)> = keys
            .iter()
            .map(|k| Ok((k.clone(), self.path(k)?)))
            .collect::<Result<_>>()?;
        let label = keys.first().cloned().unwrap_or_default();
        blocking_store(&label, move || {
            let mut dirs = std::collections::BTreeSet::new();
            for (k, p) in &paths {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::from_io(k, e)),
                }
                if let Some(d) = p.parent() {
                    dirs.insert((k.clone(), d.to_path_buf()));
                }
            }
            // Make the removals durable too, once per directory.
            let mut seen = std::collections::HashSet::new();
            for (k, d) in dirs {
                if seen.insert(d.clone()) {
                    fsync_dir(&d).map_err(|e| StoreError::from_io(&k, e))?;
                }
            }
            Ok(())
        })
        .await
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// Runs blocking filesystem work that returns store errors on the blocking pool.
async fn blocking_store<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Permanent {
            key: key.to_string(),
            source: Box::new(e),
        })?
}

/// Walks the directory that can hold keys with `prefix` and returns matches sorted by key.
fn list_sorted(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    // Only the directory named by the prefix's complete segments needs walking.
    let base_rel = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let base = if base_rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(base_rel)
    };
    let mut out = Vec::new();
    let mut stack = vec![(base, base_rel.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(StoreError::from_io(prefix, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::from_io(prefix, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(|e| StoreError::from_io(&key, e))?;
            if ft.is_dir() {
                // Descend only where keys under this directory can match the prefix.
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    stack.push((entry.path(), key));
                }
            } else if ft.is_file() && key.starts_with(prefix) {
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    // Deleted between readdir and stat: not part of the listing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::from_io(&key, e)),
                };
                let modified = meta.modified().map(millis).unwrap_or(0);
                out.push(ObjectMeta {
                    key,
                    size: meta.len(),
                    last_modified_ms: modified,
                });
            }
        }
    }
    out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}
