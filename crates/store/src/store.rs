//! The [`Store`] trait: the contract every backup store backend meets.

use std::fmt::Debug;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store's root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, milliseconds since the Unix epoch.
    pub last_modified_ms: u64,
}

/// How a store encrypts what it writes (see [`crate::EncryptStore`]); recorded in the
/// repository config, which never holds a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// The envelope scheme (e.g. `xchacha20poly1305-64k-v1`).
    pub scheme: String,
    /// The id of the key new objects are sealed with.
    pub write_key_id: String,
    /// The ids of every key the store can open objects with.
    pub key_ids: Vec<String>,
}

/// A streaming upload of one large object, opened by [`Store::put_multipart`].
///
/// Nothing is visible under the key until [`Upload::finish`] returns Ok; dropping the
/// upload or calling [`Upload::abort`] leaves no object behind (S3 may keep unreferenced
/// parts until a lifecycle rule removes them when an abort itself fails).
#[async_trait]
pub trait Upload: Send {
    /// Appends bytes to the object. May buffer up to one part (a few MiB).
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Makes the object visible, whole and durable, under its key.
    async fn finish(self: Box<Self>) -> Result<()>;
    /// Discards everything written so far.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// An object store holding a backup repository.
///
/// Keys are relative to the store's root (a directory, a bucket prefix), '/'-separated,
/// and validated by [`crate::validate_key`]: no key can name anything outside the root.
/// Every error names the object key it is about.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Writes `data` under `key`, replacing any previous object.
    ///
    /// Atomic: readers see the whole old object or the whole new one, never a part.
    /// Durable: once this returns Ok, the object survives a crash of this process or
    /// machine (local: file and directory fsynced; S3: acknowledged by the service).
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;

    /// Writes `data` under `key` only if no object is there. Returns true when this call
    /// created the object, false when one already existed (which is left untouched).
    ///
    /// Atomic on every backend here: local uses a hard link (fails if the name exists),
    /// memory a map entry, S3 a conditional `PUT` with `If-None-Match: *`. A server that
    /// ignores that header degrades to a plain overwrite; see the crate docs.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool>;

    /// Opens a streaming upload for a large object (uploaded in parts on S3). The object
    /// appears, atomically, when [`Upload::finish`] returns.
    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>>;

    /// Reads a whole object. Missing -> [`crate::StoreError::NotFound`].
    async fn get(&self, key: &str) -> Result<Bytes>;

    /// Reads bytes `range.start..range.end` of an object. The range must satisfy
    /// `start <= end <= size`, else [`crate::StoreError::InvalidRange`]; an empty range
    /// inside the object returns empty bytes (and still reports a missing object).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// Streams an object in chunks, holding a bounded amount of it in memory. A missing
    /// object fails here, before any stream is returned.
    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// Size and modification time of an object.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Every object whose key starts with `prefix` (a plain string prefix, not only whole
    /// segments), in lexicographic byte order of keys. Paginated underneath; yields all.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>>;

    /// Deletes the given objects; keys that do not exist are not an error.
    async fn delete_many(&self, keys: &[String]) -> Result<()>;

    /// A URL naming this store, without secrets (for logs and error messages).
    fn describe(&self) -> String;

    /// How this store encrypts objects, if it does (wrappers pass it through).
    fn encryption(&self) -> Option<Encryption> {
        None
    }

    /// The key that names shared snapshot chunks by a keyed content hash (FORMAT.md §7.3,
    /// §9), if this store encrypts: derived from the key new objects are sealed with, so
    /// who lacks the keyring cannot tell from a chunk's name what it holds. `None` for a
    /// store that does not encrypt (wrappers pass it through).
    fn chunk_naming_key(&self) -> Option<[u8; 32]> {
        None
    }
}
