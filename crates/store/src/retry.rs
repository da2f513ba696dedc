//! [`RetryStore`]: retries transient failures with jittered exponential backoff.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Result;
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
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
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
/// it yielded when a transient error interrupts it. Bytes already streamed by
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

    async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
        T: Send,
    {
        retry_loop(&self.policy, &mut op).await
    }
}

async fn retry_loop<T, F, Fut>(policy: &RetryPolicy, op: &mut F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < policy.max_attempts.max(1) => {
                tracing::debug!(error = %e, attempt, "transient store error, retrying");
                tokio::time::sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[async_trait]
impl Store for RetryStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.run(|| self.inner.put(key, data.clone())).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        let attempts = AtomicU32::new(0);
        let created = self
            .run(|| {
                attempts.fetch_add(1, Ordering::Relaxed);
                self.inner.put_if_absent(key, data.clone())
            })
            .await?;
        if !created && attempts.load(Ordering::Relaxed) > 1 {
            // A retry that finds an object may be finding our own earlier attempt whose
            // acknowledgement was lost: identical content counts as created by us.
            let existing = self.run(|| self.inner.get(key)).await?;
            return Ok(existing == data);
        }
        Ok(created)
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.run(|| self.inner.put_multipart(key)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.run(|| self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.run(|| self.inner.get_range(key, range.clone())).await
    }

    async fn get_stream(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.run(|| self.inner.get_stream(key)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.run(|| self.inner.head(key)).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        let state = ListState {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            prefix: prefix.to_string(),
            last: None,
            attempt: 1,
            current: None,
            done: false,
        };
        stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                let cur = st.current.get_or_insert_with(|| st.inner.list(&st.prefix));
                match cur.next().await {
                    None => return None,
                    Some(Ok(m)) => {
                        // After a restart, skip what was already yielded.
                        if st.last.as_ref().is_some_and(|l| m.key <= *l) {
                            continue;
                        }
                        st.last = Some(m.key.clone());
                        return Some((Ok(m), st));
                    }
                    Some(Err(e)) if e.is_transient() && st.attempt < st.policy.max_attempts => {
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
        self.run(|| self.inner.delete_many(keys)).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

struct ListState {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
    prefix: String,
    last: Option<String>,
    attempt: u32,
    current: Option<BoxStream<'static, Result<ObjectMeta>>>,
    done: bool,
}
