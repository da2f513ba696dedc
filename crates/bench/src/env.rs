//! Where a run puts its engines and repositories: fresh engines of the configured kind and
//! one fresh store location per phase, all removed at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_engine::redb::RedbEngine;
use tito_store::Store;

use crate::error::{BenchError, Ctx, Result, io_err, store_err};

/// How fresh engines are made.
#[derive(Debug)]
enum EngineKind {
    Memory,
    /// redb files `<dir>/<stem>-<name>.redb`; the source is `source` when given.
    Redb {
        dir: PathBuf,
        stem: String,
        source: Option<PathBuf>,
    },
}

/// How per-phase stores are made.
#[derive(Debug)]
enum StoreKind {
    Memory,
    /// A base URL (`file://`, `s3://`) under which each phase gets a sub-prefix.
    Url(url::Url),
}

/// The run's engines, stores and scratch directory.
#[derive(Debug)]
pub struct BenchEnv {
    engine: EngineKind,
    cache_bytes: Option<usize>,
    store: StoreKind,
    run_id: String,
    scratch: tempfile::TempDir,
    created_files: std::sync::Mutex<Vec<PathBuf>>,
    created_stores: std::sync::Mutex<Vec<Arc<dyn Store>>>,
}

impl BenchEnv {
    /// Set up from the engine and store URLs of the options (defaults: temp dirs);
    /// `cache_bytes` is the page cache of redb engines (`None`: the engine's default).
    pub fn new(
        engine_url: Option<&str>,
        store_url: Option<&str>,
        cache_bytes: Option<usize>,
    ) -> Result<Self> {
        let scratch = tempfile::Builder::new()
            .prefix("tito-bench-")
            .tempdir()
            .map_err(io_err("setup", "temp dir"))?;
        let engine = match engine_url {
            None => EngineKind::Redb {
                dir: scratch.path().to_path_buf(),
                stem: "engine".into(),
                source: None,
            },
            Some("memory://") | Some("memory:") => EngineKind::Memory,
            Some(url) => {
                let path = match url.strip_prefix("redb://") {
                    Some(p) if p.starts_with('/') => PathBuf::from(p),
                    Some(_) => {
                        return Err(BenchError::Options(format!(
                            "engine {url:?}: a redb URL needs an absolute path (redb:///abs/file)"
                        )));
                    }
                    None if url.contains("://") => {
                        return Err(BenchError::Options(format!(
                            "engine {url:?}: the bench creates fresh engines of the same kind, \
                             so it supports memory:// and redb files only"
                        )));
                    }
                    None => PathBuf::from(url),
                };
                if path.exists() {
                    return Err(BenchError::Options(format!(
                        "engine file {} exists; the bench needs a path it can create and delete",
                        path.display()
                    )));
                }
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf();
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "engine".into());
                EngineKind::Redb {
                    dir,
                    stem,
                    source: Some(path),
                }
            }
        };
        let store = match store_url {
            Some("memory://") => StoreKind::Memory,
            Some(u) if u.contains("://") => StoreKind::Url(
                url::Url::parse(u)
                    .map_err(|e| BenchError::Options(format!("store URL {u:?}: {e}")))?,
            ),
            Some(dir) => StoreKind::Url(dir_url(Path::new(dir))?),
            None => StoreKind::Url(dir_url(&scratch.path().join("store"))?),
        };
        let run_id = format!(
            "tito-bench-{}-{}",
            std::process::id(),
            tito_backup::now_ms()
        );
        Ok(BenchEnv {
            engine,
            cache_bytes,
            store,
            run_id,
            scratch,
            created_files: Default::default(),
            created_stores: Default::default(),
        })
    }

    /// The engine kind, for the report (`redb` or `memory`).
    pub fn engine_kind(&self) -> &'static str {
        match self.engine {
            EngineKind::Memory => "memory",
            EngineKind::Redb { .. } => "redb",
        }
    }

    /// Where repositories go, for the report.
    pub fn store_description(&self) -> String {
        match &self.store {
            StoreKind::Memory => "memory://".into(),
            StoreKind::Url(u) => format!("{}/{}", u.as_str().trim_end_matches('/'), self.run_id),
        }
    }

    /// A scratch directory on the same filesystem as the engine files when they are redb,
    /// for the raw dump file (so the disk measured is the engine's disk).
    pub fn dump_dir(&self) -> PathBuf {
        match &self.engine {
            EngineKind::Redb { dir, .. } => dir.clone(),
            EngineKind::Memory => self.scratch.path().to_path_buf(),
        }
    }

    /// The redb page cache in bytes the run asked for (`None`: the engine's default).
    pub fn cache_bytes(&self) -> Option<usize> {
        self.cache_bytes
    }

    /// The file of the engine named `name` (`None` for the memory engine); the name
    /// `source` is the user's engine URL when one was given.
    pub fn engine_file(&self, name: &str) -> Option<PathBuf> {
        match &self.engine {
            EngineKind::Memory => None,
            EngineKind::Redb { dir, stem, source } => Some(match source {
                Some(p) if name == "source" => p.clone(),
                _ => dir.join(format!("{stem}-{}-{name}.redb", self.run_id)),
            }),
        }
    }

    /// A fresh, empty engine named `name`.
    pub async fn engine(&self, name: &str) -> Result<Arc<dyn Engine>> {
        match self.fresh_file(name) {
            None => Ok(Arc::new(MemoryEngine::new())),
            Some(path) => self.reopen(&path).await,
        }
    }

    /// Make way for a fresh engine file named `name` (removed now and at the end); `None`
    /// for the memory engine.
    pub fn fresh_file(&self, name: &str) -> Option<PathBuf> {
        let path = self.engine_file(name)?;
        let _ = std::fs::remove_file(&path);
        self.created_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.clone());
        Some(path)
    }

    /// Open the redb file at `path` with the run's cache size.
    pub async fn reopen(&self, path: &Path) -> Result<Arc<dyn Engine>> {
        let engine = match self.cache_bytes {
            Some(c) => RedbEngine::open_with_cache(path, c).await,
            None => RedbEngine::open(path).await,
        };
        Ok(Arc::new(engine.ctx("setup")?))
    }

    /// The URL of `phase`'s store location, `None` for `memory://` (which another
    /// process cannot reach).
    pub fn store_url(&self, phase: &str) -> Option<String> {
        match &self.store {
            StoreKind::Memory => None,
            StoreKind::Url(base) => {
                let mut u = base.clone();
                let path = format!(
                    "{}/{}/{phase}",
                    base.path().trim_end_matches('/'),
                    self.run_id
                );
                u.set_path(&path);
                Some(u.to_string())
            }
        }
    }

    /// A fresh, empty store location for `phase`.
    pub async fn store(&self, phase: &str) -> Result<Arc<dyn Store>> {
        let url = self
            .store_url(phase)
            .unwrap_or_else(|| "memory://".to_string());
        let store = tito_store::open(&url)
            .await
            .map_err(store_err("setup", url.clone()))?;
        self.created_stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(store.clone());
        Ok(store)
    }

    /// Close an engine and delete its file (engines named like the source too).
    pub async fn drop_engine(&self, engine: Arc<dyn Engine>) {
        let _ = engine.close().await;
        drop(engine);
    }

    /// Delete every object and engine file this run created. Best effort: a failure to
    /// clean up does not turn a finished measurement into an error.
    pub async fn cleanup(&self) {
        let stores = std::mem::take(
            &mut *self
                .created_stores
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for store in stores {
            let _ = empty_store(store.as_ref()).await;
        }
        let files =
            std::mem::take(&mut *self.created_files.lock().unwrap_or_else(|e| e.into_inner()));
        for f in files {
            let _ = std::fs::remove_file(f);
        }
        if let StoreKind::Url(u) = &self.store {
            if let Ok(dir) = u.to_file_path() {
                let _ = std::fs::remove_dir_all(dir.join(&self.run_id));
            }
        }
    }
}

/// Delete every object of `store`.
pub(crate) async fn empty_store(store: &dyn Store) -> Result<()> {
    let keys: Vec<String> = store
        .list("")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .map_err(store_err("cleanup", store.describe()))?;
    for batch in keys.chunks(1000) {
        store
            .delete_many(batch)
            .await
            .map_err(store_err("cleanup", store.describe()))?;
    }
    Ok(())
}

/// `file://` URL of a directory (made absolute).
fn dir_url(dir: &Path) -> Result<url::Url> {
    let abs = std::path::absolute(dir).map_err(io_err("setup", dir.display().to_string()))?;
    url::Url::from_directory_path(&abs).map_err(|_| {
        BenchError::Options(format!("store dir {} is not a valid path", abs.display()))
    })
}

/// Bytes of every file under `dir` (what a tool wrote there), for `phase`'s errors.
pub(crate) fn dir_bytes(phase: &'static str, dir: &Path) -> crate::error::Result<u64> {
    let err = |p: &Path| crate::error::io_err(phase, p.display().to_string());
    let mut total = 0;
    let mut todo: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).map_err(err(&d))? {
            let entry = entry.map_err(err(&d))?;
            let meta = entry.metadata().map_err(err(&entry.path()))?;
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
