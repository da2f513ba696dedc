//! `memory://`: an in-process store for tests. Nothing is durable past the process.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Result, StoreError};
use crate::key::{validate_key, validate_prefix};
use crate::range::{check_range, millis};
use crate::store::{ObjectMeta, Store, Upload};

/// Streamed reads hand out chunks of at most this many bytes.
const STREAM_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Entry {
    data: Bytes,
    modified_ms: u64,
}

type Map = Arc<Mutex<BTreeMap<String, Entry>>>;

/// An in-memory store: a sorted map behind a mutex. Clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Map,
}

impl MemoryStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        lock(&self.objects)
    }

    fn entry(&self, key: &str) -> Result<Entry> {
        validate_key(key)?;
        self.map()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }
}

// A poisoned lock only means another thread panicked mid-operation; the map itself is
// always consistent (every mutation is a single insert/remove).
fn lock(m: &Map) -> MutexGuard<'_, BTreeMap<String, Entry>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    millis(std::time::SystemTime::now())
}

#[async_trait]
impl Store for MemoryStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        validate_key(key)?;
        self.map().insert(
            key.to_string(),
            Entry {
                data,
                modified_ms: now_ms(),
            },
        );
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        validate_key(key)?;
        let mut map = self.map();
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(
            key.to_string(),
            Entry {
                data,
                modified_ms: now_ms(),
            },
        );
        Ok(true)
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        validate_key(key)?;
        Ok(Box::new(MemoryUpload {
            objects: self.objects.clone(),
            key: key.to_string(),
            buf: BytesMut::new(),
        }))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        Ok(self.entry(key)?.data)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let data = self.entry(key)?.data;
        check_range(key, &range, data.len() as u64)?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let data = self.entry(key)?.data;
        let chunks = (0..data.len())
            .step_by(STREAM_CHUNK)
            .map(move |start| Ok(data.slice(start..(start + STREAM_CHUNK).min(data.len()))));
        Ok(stream::iter(chunks.collect::<Vec<_>>()).boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let e = self.entry(key)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: e.data.len() as u64,
            last_modified_ms: e.modified_ms,
        })
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = validate_prefix(prefix) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let items: Vec<Result<ObjectMeta>> = self
            .map()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| {
                Ok(ObjectMeta {
                    key: k.clone(),
                    size: e.data.len() as u64,
                    last_modified_ms: e.modified_ms,
                })
            })
            .collect();
        stream::iter(items).boxed()
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for k in keys {
            validate_key(k)?;
        }
        let mut map = self.map();
        for k in keys {
            map.remove(k);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "memory://".to_string()
    }
}

struct MemoryUpload {
    objects: Map,
    key: String,
    buf: BytesMut,
}

#[async_trait]
impl Upload for MemoryUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        let entry = Entry {
            data: self.buf.freeze(),
            modified_ms: now_ms(),
        };
        lock(&self.objects).insert(self.key, entry);
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
