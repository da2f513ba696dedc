use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::{CommitInfo, Engine, EngineError, Tx};

/// How [`transaction`] retries conflicting transactions.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each retry (with jitter) up to `max_delay`.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        let capped = exp.min(self.max_delay);
        // Full jitter keeps contending retries from marching in lock step.
        let nanos = capped.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            rand::random::<u64>() % nanos + 1
        })
    }
}

/// Errors the retry helper can inspect: is this a conflict worth retrying?
pub trait Retryable {
    /// True if re-running the transaction from the start may succeed.
    fn is_conflict(&self) -> bool;
}

impl Retryable for EngineError {
    fn is_conflict(&self) -> bool {
        EngineError::is_conflict(self)
    }
}

/// A transaction handle the retry helper can finish.
#[async_trait]
pub trait Finish: Clone + Send + Sync {
    /// Commit the transaction.
    async fn commit(&self) -> Result<CommitInfo, EngineError>;
    /// Roll the transaction back.
    async fn rollback(&self) -> Result<(), EngineError>;
}

#[async_trait]
impl Finish for Tx {
    async fn commit(&self) -> Result<CommitInfo, EngineError> {
        crate::Transaction::commit(self.as_ref()).await
    }
    async fn rollback(&self) -> Result<(), EngineError> {
        crate::Transaction::rollback(self.as_ref()).await
    }
}

/// Run `f` in a transaction of `engine` and commit it, retrying on conflict.
///
/// See [`run_transaction`] for the rules.
pub async fn transaction<T, E, F, Fut>(engine: &dyn Engine, f: F) -> Result<T, E>
where
    F: FnMut(Tx) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<EngineError> + Retryable,
{
    run_transaction(&RetryPolicy::default(), || engine.begin(), f)
        .await
        .map(|(value, _)| value)
}

/// Begin a transaction with `begin`, run `f` on it and commit.
///
/// - A conflict (from `f` or from the commit) rolls back and re-runs `f` on a fresh
///   transaction, up to `policy.max_attempts` attempts, with jittered backoff.
/// - Any other error from `f` rolls back and is returned.
/// - [`EngineError::CommitUnknown`] is returned as is: the commit may have been applied,
///   so re-running `f` could apply it twice. The caller must find out.
pub async fn run_transaction<X, T, E, B, BFut, F, Fut>(
    policy: &RetryPolicy,
    mut begin: B,
    mut f: F,
) -> Result<(T, CommitInfo), E>
where
    X: Finish,
    B: FnMut() -> BFut,
    BFut: Future<Output = Result<X, EngineError>>,
    F: FnMut(X) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<EngineError> + Retryable,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = begin().await?;
        let outcome = match f(tx.clone()).await {
            Ok(value) => match tx.commit().await {
                Ok(info) => return Ok((value, info)),
                Err(e) => E::from(e),
            },
            Err(e) => {
                let _ = tx.rollback().await;
                e
            }
        };
        if !outcome.is_conflict() || attempt >= policy.max_attempts {
            return Err(outcome);
        }
        tracing::debug!(attempt, "transaction conflict, retrying");
        tokio::time::sleep(policy.delay(attempt)).await;
    }
}
