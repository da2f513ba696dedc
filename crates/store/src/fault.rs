//! [`FaultStore`]: a wrapper that injects failures on chosen calls, for fault tests.
//!
//! Every call through the wrapper (each `Store` method, plus `Upload::finish`) gets a
//! number, starting at 1, shared by all clones of the [`FaultPlan`]. The plan can fail one
//! call, "crash" the store from a call on (every later call fails), lose the
//! acknowledgement of a write (the write happens, then an error is reported), make a call
//! slow, or damage the body a call reads or writes (truncated or altered bytes, reported
//! as a success, as a faulty disk or proxy would).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Result, StoreError};
use crate::store::{ObjectMeta, Store, Upload};

/// What an injected fault looks like to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with a retryable [`StoreError::Transient`] without doing anything.
    Transient,
    /// Fail with a [`StoreError::Permanent`] without doing anything.
    Permanent,
    /// Do the call (for writes: the object is stored), then report a transient error, as
    /// when a response is lost. For reads, the same as `Transient`.
    LostAck,
    /// Wait this long, then do the call normally (a slow store; a caller with a timeout
    /// sees a timeout).
    Delay(Duration),
    /// The body read (`get`, `get_range`, `get_stream`) or written (`put`,
    /// `put_if_absent`) loses its second half (an empty body stays empty); the call
    /// reports success. Other calls run normally.
    Truncate,
    /// One bit of the body read or written is flipped (an empty body becomes one zero
    /// byte); the call reports success. Other calls run normally.
    Alter,
}

impl Fault {
    /// True for the faults that damage a body rather than fail or slow a call.
    pub fn damages_body(self) -> bool {
        matches!(self, Fault::Truncate | Fault::Alter)
    }

    /// `body` damaged as this fault says (unchanged for other faults).
    pub fn damage(self, body: Bytes) -> Bytes {
        match self {
            Fault::Truncate => body.slice(..body.len() / 2),
            Fault::Alter if body.is_empty() => Bytes::from_static(&[0]),
            Fault::Alter => {
                let mut v = body.to_vec();
                let i = v.len() / 2;
                v[i] ^= 0x01;
                Bytes::from(v)
            }
            _ => body,
        }
    }
}

/// One call seen by a [`FaultStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Call number, from 1.
    pub n: u64,
    /// Operation name (`put`, `get`, `list`, `upload_finish`, ...).
    pub op: &'static str,
    /// Key or prefix (first key for `delete_many`).
    pub key: String,
    /// The fault injected into this call, if any.
    pub fault: Option<Fault>,
}

#[derive(Debug, Default)]
struct PlanState {
    calls: u64,
    faults: BTreeMap<u64, Fault>,
    crash_from: Option<u64>,
    log: Vec<CallRecord>,
}

/// A shared, cloneable fault plan. Clones see and change the same plan and counter.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan(Arc<Mutex<PlanState>>);

impl FaultPlan {
    /// A plan with no faults.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, PlanState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Injects `fault` into call number `n` (1-based).
    pub fn fail_call(&self, n: u64, fault: Fault) -> &Self {
        self.state().faults.insert(n, fault);
        self
    }

    /// Every call numbered `n` or later fails with a permanent "crashed" error.
    pub fn crash_from(&self, n: u64) -> &Self {
        self.state().crash_from = Some(n);
        self
    }

    /// Removes all planned faults and the crash; the counter keeps going.
    pub fn heal(&self) -> &Self {
        let mut s = self.state();
        s.faults.clear();
        s.crash_from = None;
        self
    }

    /// Number of calls so far.
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// Every call so far, in order.
    pub fn history(&self) -> Vec<CallRecord> {
        self.state().log.clone()
    }

    /// Counts a call and decides its fate.
    fn enter(&self, op: &'static str, key: &str) -> Option<Fault> {
        let mut s = self.state();
        s.calls += 1;
        let n = s.calls;
        let fault = if s.crash_from.is_some_and(|c| n >= c) {
            Some(Fault::Permanent)
        } else {
            s.faults.get(&n).copied()
        };
        s.log.push(CallRecord {
            n,
            op,
            key: key.to_string(),
            fault,
        });
        fault
    }
}

fn injected(key: &str, fault: Fault, op: &str) -> StoreError {
    let source = format!("injected fault ({fault:?}) on {op}").into();
    match fault {
        Fault::Permanent => StoreError::Permanent {
            key: key.to_string(),
            source,
        },
        _ => StoreError::Transient {
            key: key.to_string(),
            source,
        },
    }
}

/// A store wrapper that fails calls according to a [`FaultPlan`].
#[derive(Debug, Clone)]
pub struct FaultStore {
    inner: Arc<dyn Store>,
    plan: FaultPlan,
}

impl FaultStore {
    /// Wraps `inner`; keep a clone of `plan` to steer it.
    pub fn new(inner: Arc<dyn Store>, plan: FaultPlan) -> Self {
        Self { inner, plan }
    }

    /// The plan steering this store.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// For reads: fail before the call on an error fault, wait on a delay; returns the
    /// body damage to apply to what the call reads, if any.
    async fn check(&self, op: &'static str, key: &str) -> Result<Option<Fault>> {
        gate(self.plan.enter(op, key), op, key).await
    }

    /// For writes: `LostAck` runs the write, then reports failure; a delay waits first;
    /// `f` gets the body damage to apply, if any.
    async fn write<T, Fut>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(Option<Fault>) -> Fut,
    ) -> Result<T>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        match self.plan.enter(op, key) {
            Some(Fault::LostAck) => {
                f(None).await?;
                Err(injected(key, Fault::LostAck, op))
            }
            fault => {
                let damage = gate(fault, op, key).await?;
                f(damage).await
            }
        }
    }
}

/// Apply a fault that comes before the call: an error, or a wait. Body damage is returned
/// for the caller to apply.
async fn gate(fault: Option<Fault>, op: &'static str, key: &str) -> Result<Option<Fault>> {
    match fault {
        None => Ok(None),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(None)
        }
        Some(f) if f.damages_body() => Ok(Some(f)),
        Some(f) => Err(injected(key, f, op)),
    }
}

fn damaged(damage: Option<Fault>, body: Bytes) -> Bytes {
    damage.map_or(body.clone(), |f| f.damage(body))
}

#[async_trait]
impl Store for FaultStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.write("put", key, |d| self.inner.put(key, damaged(d, data)))
            .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        self.write("put_if_absent", key, |d| {
            self.inner.put_if_absent(key, damaged(d, data))
        })
        .await
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.check("put_multipart", key).await?;
        let inner = self.inner.put_multipart(key).await?;
        Ok(Box::new(FaultUpload {
            inner,
            plan: self.plan.clone(),
            key: key.to_string(),
        }))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let d = self.check("get", key).await?;
        Ok(damaged(d, self.inner.get(key).await?))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let d = self.check("get_range", key).await?;
        Ok(damaged(d, self.inner.get_range(key, range).await?))
    }

    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let d = self.check("get_stream", key).await?;
        let inner = self.inner.get_stream(key).await?;
        Ok(match d {
            None => inner,
            Some(f) => damaged_stream(inner, f),
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.check("head", key).await?;
        self.inner.head(key).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        let fault = self.plan.enter("list", prefix);
        let inner = self.inner.clone();
        let prefix = prefix.to_string();
        stream::once(async move {
            match gate(fault, "list", &prefix).await {
                Ok(_) => inner.list(&prefix),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let first = keys.first().map_or("", |k| k.as_str());
        self.write("delete_many", first, |_| self.inner.delete_many(keys))
            .await
    }

    fn describe(&self) -> String {
        format!("fault+{}", self.inner.describe())
    }

    fn encryption(&self) -> Option<crate::store::Encryption> {
        self.inner.encryption()
    }

    fn chunk_naming_key(&self) -> Option<[u8; 32]> {
        self.inner.chunk_naming_key()
    }
}

/// A stream of `inner`'s chunks damaged by `fault`: `Truncate` ends it after half of its
/// first chunk, `Alter` flips a bit of its first non-empty chunk.
fn damaged_stream(
    inner: BoxStream<'static, Result<Bytes>>,
    fault: Fault,
) -> BoxStream<'static, Result<Bytes>> {
    // State: the stream and whether its damage is still to come (`None`: ended).
    stream::unfold(
        (inner, Some(true)),
        move |(mut inner, pending)| async move {
            let pending = pending?;
            match inner.next().await? {
                Ok(chunk) if pending && fault == Fault::Truncate => {
                    Some((Ok(fault.damage(chunk)), (inner, None)))
                }
                Ok(chunk) if pending && !chunk.is_empty() => {
                    Some((Ok(fault.damage(chunk)), (inner, Some(false))))
                }
                Ok(chunk) => Some((Ok(chunk), (inner, Some(pending)))),
                Err(e) => Some((Err(e), (inner, None))),
            }
        },
    )
    .boxed()
}

/// An upload whose `finish` is a counted call of the plan.
struct FaultUpload {
    inner: Box<dyn Upload>,
    plan: FaultPlan,
    key: String,
}

#[async_trait]
impl Upload for FaultUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner.write(data).await
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        let FaultUpload { inner, plan, key } = *self;
        match plan.enter("upload_finish", &key) {
            None | Some(Fault::Truncate | Fault::Alter) => inner.finish().await,
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                inner.finish().await
            }
            Some(Fault::LostAck) => {
                inner.finish().await?;
                Err(injected(&key, Fault::LostAck, "upload_finish"))
            }
            Some(f) => {
                let _ = inner.abort().await;
                Err(injected(&key, f, "upload_finish"))
            }
        }
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}
