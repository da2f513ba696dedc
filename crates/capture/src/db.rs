//! The database handle: transactions with change capture, log access, metadata.

use std::future::Future;
use std::sync::Arc;

use tito_engine::{Engine, EngineError, RetryPolicy, Retryable, run_transaction};
use tito_format::record::LogRecord;

use crate::log::{self, LogBounds};
use crate::{CaptureError, Result, Txn, meta};

/// A Tito database over an engine. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct Db {
    engine: Arc<dyn Engine>,
    policy: RetryPolicy,
}

impl Db {
    /// Wrap `engine` without touching its metadata (restore uses this on a target it
    /// must first check is empty).
    pub fn new(engine: Arc<dyn Engine>) -> Db {
        Db {
            engine,
            policy: RetryPolicy::default(),
        }
    }

    /// Wrap `engine` and create its database id if it has none yet.
    /// Refuses a database an interrupted restore left partial.
    pub async fn open(engine: Arc<dyn Engine>) -> Result<Db> {
        if meta::restore_in_progress(engine.as_ref()).await? {
            return Err(CaptureError::RestoreInProgress);
        }
        meta::ensure_database_id(engine.as_ref()).await?;
        Ok(Db::new(engine))
    }

    /// Use `policy` for [`Db::transaction`] retries.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Db {
        self.policy = policy;
        self
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Start a transaction. Commit it with [`Txn::commit`].
    pub async fn begin(&self) -> Result<Txn> {
        Ok(Txn::new(self.engine.begin().await?))
    }

    /// Run `f` in a transaction and commit, retrying conflicts (see
    /// [`tito_engine::run_transaction`]: an unknown commit outcome is returned, never retried).
    pub async fn transaction<T, E, F, Fut>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<EngineError> + Retryable,
    {
        self.transaction_lsn(f).await.map(|(v, _)| v)
    }

    /// Like [`Db::transaction`], also returning the LSN of the commit's log record
    /// (`None` if the transaction made no mutation).
    pub async fn transaction_lsn<T, E, F, Fut>(&self, f: F) -> Result<(T, Option<u64>), E>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<EngineError> + Retryable,
    {
        let engine = &self.engine;
        let begin = || async move { engine.begin().await.map(Txn::new) };
        let (value, info) = run_transaction(&self.policy, begin, f).await?;
        Ok((value, info.stamp.map(|s| s.version)))
    }

    /// See [`log::read_log`].
    pub async fn read_log(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>> {
        log::read_log(self.engine.as_ref(), after, max_records, max_bytes).await
    }

    /// See [`log::trim_log`].
    pub async fn trim_log(&self, through_lsn: u64) -> Result<u64> {
        log::trim_log(self.engine.as_ref(), through_lsn).await
    }

    /// See [`log::log_bounds`].
    pub async fn log_bounds(&self) -> Result<Option<LogBounds>> {
        log::log_bounds(self.engine.as_ref()).await
    }

    /// The database id, if one was created (see [`Db::open`]).
    pub async fn database_id(&self) -> Result<Option<String>> {
        meta::database_id(self.engine.as_ref()).await
    }

    /// The current timeline.
    pub async fn timeline(&self) -> Result<u64> {
        meta::timeline(self.engine.as_ref()).await
    }

    /// Set the current timeline.
    pub async fn set_timeline(&self, timeline: u64) -> Result<()> {
        meta::set_timeline(self.engine.as_ref(), timeline).await
    }
}
