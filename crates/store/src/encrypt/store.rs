//! [`EncryptStore`]: a store wrapper that seals every object on the way in and opens and
//! authenticates it on the way out (envelope in [`super::envelope`]).

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};

use super::envelope::{
    CHUNK, HEADER_LEN, Header, ObjectCipher, SEALED_CHUNK, chunk_count, corrupt, plain_len,
    seal_all,
};
use super::keyring::{KeyId, Keyring};
use crate::error::{Result, StoreError};
use crate::range::check_range;
use crate::store::{Encryption, ObjectMeta, Store, Upload};

/// The scheme name recorded in repository configs for envelope version 1.
pub const SCHEME: &str = "xchacha20poly1305-64k-v1";

/// Bodies larger than this are sealed on a blocking thread, not on the async runtime.
const BLOCKING_OVER: usize = 256 * 1024;

/// Encrypts and authenticates every object of the store underneath, except the few keys
/// named plaintext (the repository config, which says the repository is encrypted).
///
/// Sizes in `head` and `list` are plaintext sizes; `get_range` reads and opens only the
/// chunks the range touches (plus the header). Damage of any kind is
/// [`StoreError::Corrupt`]; an object sealed with a key the keyring lacks is
/// [`StoreError::KeyMissing`].
#[derive(Clone)]
pub struct EncryptStore {
    inner: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    plaintext: Arc<BTreeSet<String>>,
}

impl std::fmt::Debug for EncryptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptStore")
            .field("inner", &self.inner)
            .field("key_ids", &self.keyring.ids())
            .finish_non_exhaustive()
    }
}

impl EncryptStore {
    /// Wraps `inner`; objects named in `plaintext` pass through unencrypted.
    pub fn new(
        inner: Arc<dyn Store>,
        keyring: Keyring,
        plaintext: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            inner,
            keyring: Arc::new(keyring),
            plaintext: Arc::new(plaintext.into_iter().collect()),
        }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The store underneath (sees ciphertext).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn is_plain(&self, key: &str) -> bool {
        self.plaintext.contains(key)
    }

    fn sealer(&self, key: &str) -> ObjectCipher {
        let k = self.keyring.write_key();
        ObjectCipher::new(Header::new(&k.id()), k.bytes(), key)
    }

    fn opener(&self, key: &str, head: &[u8]) -> Result<ObjectCipher> {
        let header = Header::parse(key, head)?;
        let id = header.key_id();
        let k = self
            .keyring
            .get(&id)
            .ok_or_else(|| StoreError::KeyMissing {
                key: key.to_string(),
                key_id: id.to_string(),
            })?;
        Ok(ObjectCipher::new(header, k.bytes(), key))
    }

    async fn seal(&self, key: &str, data: Bytes) -> Bytes {
        let cipher = self.sealer(key);
        if data.len() > BLOCKING_OVER {
            tokio::task::spawn_blocking(move || seal_all(&cipher, &data))
                .await
                .expect("sealing does not panic")
        } else {
            seal_all(&cipher, &data)
        }
    }

    async fn open_all(&self, key: &str, sealed: Bytes) -> Result<Bytes> {
        let cipher = self.opener(key, &sealed)?;
        if plain_len(sealed.len() as u64).is_none() {
            return Err(corrupt(
                key,
                format!("{} bytes is no envelope's size (truncated?)", sealed.len()),
            ));
        }
        let key = key.to_string();
        let body = sealed.slice(HEADER_LEN..);
        if body.len() > BLOCKING_OVER {
            tokio::task::spawn_blocking(move || cipher.open(&key, 0, true, &body))
                .await
                .expect("opening does not panic")
        } else {
            cipher.open(&key, 0, true, &body)
        }
    }

    /// The id of the key that sealed `key` (read from its header).
    pub async fn sealed_with(&self, key: &str) -> Result<KeyId> {
        let meta = self.inner.head(key).await?;
        if meta.size < HEADER_LEN as u64 {
            return Err(corrupt(key, "shorter than an envelope header"));
        }
        let head = self.inner.get_range(key, 0..HEADER_LEN as u64).await?;
        Ok(Header::parse(key, &head)?.key_id())
    }

    /// Re-seal `key` with the newest key if another key sealed it: the plaintext streams
    /// through (bounded memory) into an upload that replaces the object atomically, so a
    /// crash leaves the old object, still readable with the old key. Every chunk is
    /// authenticated on the way. Returns true if the object was rewritten.
    pub async fn reseal(&self, key: &str) -> Result<bool> {
        if self.is_plain(key) || self.sealed_with(key).await? == self.keyring.write_key().id() {
            return Ok(false);
        }
        let mut source = self.get_stream(key).await?;
        let mut up = self.put_multipart(key).await?;
        while let Some(piece) = source.next().await {
            match piece {
                Ok(p) => up.write(p).await?,
                Err(e) => {
                    let _ = up.abort().await;
                    return Err(e);
                }
            }
        }
        up.finish().await?;
        Ok(true)
    }
}

#[async_trait]
impl Store for EncryptStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        if self.is_plain(key) {
            return self.inner.put(key, data).await;
        }
        let sealed = self.seal(key, data).await;
        self.inner.put(key, sealed).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        if self.is_plain(key) {
            return self.inner.put_if_absent(key, data).await;
        }
        let sealed = self.seal(key, data).await;
        self.inner.put_if_absent(key, sealed).await
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        let inner = self.inner.put_multipart(key).await?;
        if self.is_plain(key) {
            return Ok(inner);
        }
        Ok(Box::new(SealingUpload {
            inner,
            cipher: self.sealer(key),
            pending: BytesMut::new(),
            next: 0,
            started: false,
        }))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let sealed = self.inner.get(key).await?;
        if self.is_plain(key) {
            return Ok(sealed);
        }
        self.open_all(key, sealed).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if self.is_plain(key) {
            return self.inner.get_range(key, range).await;
        }
        let sealed_size = self.inner.head(key).await?.size;
        let size = plain_len(sealed_size)
            .ok_or_else(|| corrupt(key, format!("{sealed_size} bytes is no envelope's size")))?;
        check_range(key, &range, size)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let (c, sc, h) = (CHUNK as u64, SEALED_CHUNK as u64, HEADER_LEN as u64);
        let (first, last) = (range.start / c, (range.end - 1) / c);
        let ends_object = last + 1 == chunk_count(size);
        let from = h + first * sc;
        let to = (h + (last + 1) * sc).min(sealed_size);
        let (head, body) = if first == 0 {
            let all = self.inner.get_range(key, 0..to).await?;
            (
                all.slice(..HEADER_LEN.min(all.len())),
                all.slice(HEADER_LEN.min(all.len())..),
            )
        } else {
            futures::try_join!(
                self.inner.get_range(key, 0..h),
                self.inner.get_range(key, from..to)
            )?
        };
        if body.len() as u64 != to - from {
            return Err(corrupt(key, "the object changed size while being read"));
        }
        let cipher = self.opener(key, &head)?;
        let plain = cipher.open(key, first, ends_object, &body)?;
        let skip = (range.start - first * c) as usize;
        Ok(plain.slice(skip..skip + (range.end - range.start) as usize))
    }

    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let inner = self.inner.get_stream(key).await?;
        if self.is_plain(key) {
            return Ok(inner);
        }
        Ok(open_stream(self.clone(), key.to_string(), inner))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let mut meta = self.inner.head(key).await?;
        if !self.is_plain(key) {
            meta.size = plain_len(meta.size).ok_or_else(|| {
                corrupt(key, format!("{} bytes is no envelope's size", meta.size))
            })?;
        }
        Ok(meta)
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        let plaintext = self.plaintext.clone();
        self.inner
            .list(prefix)
            .map(move |m| {
                m.map(|mut m| {
                    if !plaintext.contains(&m.key) {
                        // A size no envelope has is damage that reading reports; a listing
                        // still names the object so verify can.
                        m.size = plain_len(m.size).unwrap_or(0);
                    }
                    m
                })
            })
            .boxed()
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner.delete_many(keys).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn encryption(&self) -> Option<Encryption> {
        Some(Encryption {
            scheme: SCHEME.to_string(),
            write_key_id: self.keyring.write_key().id().to_string(),
            key_ids: self.keyring.ids().iter().map(|i| i.to_string()).collect(),
        })
    }

    fn chunk_naming_key(&self) -> Option<[u8; 32]> {
        Some(blake3::derive_key(
            CHUNK_NAMING_CONTEXT,
            self.keyring.write_key().bytes(),
        ))
    }
}

/// blake3 `derive_key` context of the chunk naming key (from the write key's bytes).
pub const CHUNK_NAMING_CONTEXT: &str = "tito chunk naming key v1";

/// Opens a sealed stream chunk by chunk: a sealed chunk is held until the next byte (or
/// the end) says whether it is the last, so memory stays at about one inner piece.
fn open_stream(
    store: EncryptStore,
    key: String,
    inner: BoxStream<'static, Result<Bytes>>,
) -> BoxStream<'static, Result<Bytes>> {
    struct St {
        store: EncryptStore,
        key: String,
        inner: BoxStream<'static, Result<Bytes>>,
        cipher: Option<ObjectCipher>,
        buf: BytesMut,
        next: u64,
        done: bool,
    }
    let st = St {
        store,
        key,
        inner,
        cipher: None,
        buf: BytesMut::new(),
        next: 0,
        done: false,
    };
    stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            match st.inner.next().await {
                Some(Ok(piece)) => {
                    st.buf.extend_from_slice(&piece);
                    if st.cipher.is_none() {
                        if st.buf.len() < HEADER_LEN {
                            continue;
                        }
                        match st.store.opener(&st.key, &st.buf) {
                            Ok(c) => st.cipher = Some(c),
                            Err(e) => {
                                st.done = true;
                                return Some((Err(e), st));
                            }
                        }
                        st.buf.advance(HEADER_LEN);
                    }
                    // Keep at least one byte back: the chunk it ends may be the last.
                    let whole = st.buf.len().saturating_sub(1) / SEALED_CHUNK;
                    if whole == 0 {
                        continue;
                    }
                    let sealed = st.buf.split_to(whole * SEALED_CHUNK);
                    let cipher = st.cipher.as_ref().expect("header read");
                    let r = cipher.open(&st.key, st.next, false, &sealed);
                    st.next += whole as u64;
                    if r.is_err() {
                        st.done = true;
                    }
                    return Some((r, st));
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    let Some(cipher) = st.cipher.as_ref() else {
                        return Some((
                            Err(corrupt(&st.key, "shorter than an envelope header")),
                            st,
                        ));
                    };
                    if st.buf.is_empty() || st.buf.len() > SEALED_CHUNK {
                        return Some((Err(corrupt(&st.key, "the object is truncated")), st));
                    }
                    let r = cipher.open(&st.key, st.next, true, &st.buf);
                    return Some((r, st));
                }
            }
        }
    })
    .boxed()
}

/// An upload that seals whole chunks as they fill, holding back the newest one until
/// `finish` says whether it is the last.
struct SealingUpload {
    inner: Box<dyn Upload>,
    cipher: ObjectCipher,
    pending: BytesMut,
    next: u64,
    started: bool,
}

impl SealingUpload {
    fn seal_ready(&mut self, finish: bool) -> Bytes {
        let mut out = BytesMut::new();
        if !self.started {
            out.extend_from_slice(self.cipher.header().as_bytes());
            self.started = true;
        }
        while self.pending.len() > CHUNK {
            let piece = self.pending.split_to(CHUNK);
            self.cipher.seal(self.next, false, &piece, &mut out);
            self.next += 1;
        }
        if finish {
            let piece = self.pending.split();
            self.cipher.seal(self.next, true, &piece, &mut out);
            self.next += 1;
        }
        out.freeze()
    }
}

#[async_trait]
impl Upload for SealingUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.pending.extend_from_slice(&data);
        if self.pending.len() <= CHUNK {
            return Ok(());
        }
        let out = self.seal_ready(false);
        self.inner.write(out).await
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        let out = self.seal_ready(true);
        self.inner.write(out).await?;
        self.inner.finish().await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}
