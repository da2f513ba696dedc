//! Opening an engine from a URL.

use std::sync::Arc;

use crate::memory::MemoryEngine;
use crate::redb::RedbEngine;
use crate::{Engine, EngineError, Result};

/// URL schemes [`open`] understands.
pub const SUPPORTED_SCHEMES: &str =
    "memory://, redb:///absolute/path, or a bare filesystem path (redb)";

/// Open an engine from `url`:
/// - `memory://` — a new, empty in-memory engine;
/// - `redb:///abs/path` — the redb file at `/abs/path` (created if missing);
/// - a path without a scheme — a redb file.
///
/// Any other scheme fails with [`EngineError::Open`] naming the URL.
pub async fn open(url: &str) -> Result<Arc<dyn Engine>> {
    if url == "memory://" || url == "memory:" {
        return Ok(Arc::new(MemoryEngine::new()));
    }
    if let Some(path) = url.strip_prefix("redb://") {
        if !path.starts_with('/') {
            return Err(EngineError::Open(format!(
                "{url:?}: a redb URL needs an absolute path (redb:///abs/path)"
            )));
        }
        return Ok(Arc::new(RedbEngine::open(path).await?));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(EngineError::Open(format!(
            "{url:?}: unknown engine scheme {scheme:?}; supported: {SUPPORTED_SCHEMES}"
        )));
    }
    if url.is_empty() {
        return Err(EngineError::Open(format!(
            "empty engine URL; supported: {SUPPORTED_SCHEMES}"
        )));
    }
    Ok(Arc::new(RedbEngine::open(url).await?))
}
