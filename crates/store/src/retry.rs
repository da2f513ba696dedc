//! [`RetryStore`]: retries transient failures with jittered exponential backoff, bounded
//! in attempts and in time, and abandons (as transient) a call that takes too long.
//! [`crate::open()`] wraps every store it opens in one.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Result, StoreError};
use crate::store::{ObjectMeta, Store, Upload};

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts per operation, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound on one delay.
    pub max_delay: Duration,
    /// No retry starts once this long has passed since the first attempt (the last
    /// error is returned instead).
    pub deadline: Duration,
    /// A single attempt taking longer than this is abandoned as a transient failure
    /// (`None`: no limit beyond the backend's own timeouts). Opening a stream counts;
    /// reading it does not.
    pub attempt_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
            attempt_timeout: Some(Duration::from_secs(300)),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): "full jitter" in
    /// `[d/2, d]` where `d = min(max_delay, base_delay * 2^(attempt-1))`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let d = exp.min(self.max_delay);
        let half = d / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// Wraps a store; transient errors are retried, everything else passes through at once.
///
/// Streams: `get_stream` retries opening the object; `list` resumes after the last key
/// it yielded when a transient error (or a page that takes longer than the attempt
/// timeout) interrupts it. Bytes already streamed by
/// `get_stream` are not re-read: a mid-stream error reaches the caller.
#[derive(Debug, Clone)]
pub struct RetryStore {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn Store>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn run<T, F, Fut>(&self, key: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
        T: Send,
    {
        retry_loop(&self.policy, key, &mut op).await
    }
}

/// One attempt, abandoned as transient after the policy's attempt timeout.
async fn attempt<T, Fut>(policy: &RetryPolicy, key: &str, fut: Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let Some(limit) = policy.attempt_timeout else {
        return fut.await;
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Transient {
            key: key.to_string(),
            source: format!("no answer within {limit:?}").into(),
        }),
    }
}

async fn retry_loop<T, F, Fut>(policy: &RetryPolicy, key: &str, op: &mut F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut n = 1;
    loop {
        match attempt(policy, key, op()).await {
            Err(e) if e.is_transient() && n < policy.max_attempts.max(1) => {
                let delay = policy.delay(n);
                if started.elapsed() + delay > policy.deadline {
                    tracing::warn!(error = %e, attempts = n, "transient store error, retry deadline reached");
                    return Err(e);
                }
                tracing::debug!(error = %e, attempt = n, "transient store error, retrying");
                tokio::time::sleep(delay).await;
                n += 1;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, attempts = n, "transient store error, giving up");
                return Err(e);
            }
            other => return other,
        }
    }
}

#[async_trait]
impl Store for RetryStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.run(key, || self.inner.put(key, data.clone())).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        let attempts = AtomicU32::new(0);
        let created = self
            .run(key, || {
                attempts.fetch_add(1, Ordering::Relaxed);
                self.inner.put_if_absent(key, data.clone())
            })
            .await?;
        if !created && attempts.load(Ordering::Relaxed) > 1 {
            // A retry that finds an object may be finding our own earlier attempt whose
            // acknowledgement was lost: identical content counts as created by us.
            let existing = self.run(key, || self.inner.get(key)).await?;
            return Ok(existing == data);
        }
        Ok(created)
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.run(key, || self.inner.put_multipart(key)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.run(key, || self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.run(key, || self.inner.get_range(key, range.clone()))
            .await
    }

    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.run(key, || self.inner.get_stream(key)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.run(key, || self.inner.head(key)).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        let state = ListState {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            prefix: prefix.to_string(),
            last: None,
            attempt: 1,
            started: Instant::now(),
            current: None,
            done: false,
        };
        stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                let cur = st.current.get_or_insert_with(|| st.inner.list(&st.prefix));
                // A listing that stalls is abandoned and resumed like a failed one.
                let next = match st.policy.attempt_timeout {
                    None => cur.next().await,
                    Some(limit) => match tokio::time::timeout(limit, cur.next()).await {
                        Ok(next) => next,
                        Err(_) => Some(Err(StoreError::Transient {
                            key: st.prefix.clone(),
                            source: format!("no answer within {limit:?}").into(),
                        })),
                    },
                };
                match next {
                    None => return None,
                    Some(Ok(m)) => {
                        // After a restart, skip what was already yielded.
                        if st.last.as_ref().is_some_and(|l| m.key <= *l) {
                            continue;
                        }
                        st.last = Some(m.key.clone());
                        return Some((Ok(m), st));
                    }
                    Some(Err(e))
                        if e.is_transient()
                            && st.attempt < st.policy.max_attempts
                            && st.started.elapsed() + st.policy.delay(st.attempt)
                                <= st.policy.deadline =>
                    {
                        tokio::time::sleep(st.policy.delay(st.attempt)).await;
                        st.attempt += 1;
                        st.current = None;
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        })
        .boxed()
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let first = keys.first().map_or("", |k| k.as_str());
        self.run(first, || self.inner.delete_many(keys)).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn encryption(&self) -> Option<crate::store::Encryption> {
        self.inner.encryption()
    }

    fn chunk_naming_key(&self) -> Option<[u8; 32]> {
        self.inner.chunk_naming_key()
    }
}

struct ListState {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
    prefix: String,
    last: Option<String>,
    attempt: u32,
    started: Instant,
    current: Option<BoxStream<'static, Result<ObjectMeta>>>,
    done: bool,
}
