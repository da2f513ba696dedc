//! Fault injection: [`FaultEngine`] wraps any engine and fails chosen calls.
//!
//! Every call made through the wrapper (engine, transaction and read view methods
//! alike) gets a number, starting at 1, from the shared [`FaultPlan`]. A test first
//! runs a scenario to count its calls ([`FaultPlan::calls`]), then re-runs it once
//! per call number with a fault injected there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::{
    BoxView, CommitInfo, Engine, EngineError, KeyRange, KeyValue, Limits, ReadView, Result,
    Transaction, Tx,
};

/// Builds the error an injected failure reports.
pub type ErrorFn = Arc<dyn Fn() -> EngineError + Send + Sync>;

/// What happens at one call.
#[derive(Clone)]
pub enum Fault {
    /// The call fails with this error without reaching the engine.
    Fail(ErrorFn),
    /// The process "dies": this call and every later one fail without reaching the engine.
    Crash,
    /// For a commit: apply it, then report [`EngineError::CommitUnknown`]. Any other
    /// call fails as with [`Fault::Fail`] with a backend error.
    CommitThenUnknown,
    /// For a commit: apply it, then crash (the caller sees `CommitUnknown`, every
    /// later call fails). Any other call crashes before reaching the engine.
    CommitThenCrash,
}

#[derive(Default)]
struct PlanState {
    calls: u64,
    faults: HashMap<u64, Fault>,
    crashed_at: Option<u64>,
}

/// The shared, cloneable schedule of faults and the call counter.
#[derive(Clone, Default)]
pub struct FaultPlan {
    state: Arc<Mutex<PlanState>>,
}

/// What a call should do, decided when it is counted.
enum Decision {
    Proceed,
    Fail(EngineError),
    ApplyThenUnknown { crash: bool },
}

impl FaultPlan {
    /// A plan with no faults.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PlanState> {
        // A panicking test thread must not hide the counter from the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of calls made so far.
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// True once a crash fault fired.
    pub fn crashed(&self) -> bool {
        self.state().crashed_at.is_some()
    }

    /// Forget all faults, the crash and the count.
    pub fn reset(&self) {
        *self.state() = PlanState::default();
    }

    /// Inject `fault` at call number `call` (1-based).
    pub fn inject(&self, call: u64, fault: Fault) {
        self.state().faults.insert(call, fault);
    }

    /// Fail call number `call` with the error `make` builds.
    pub fn fail_at(&self, call: u64, make: impl Fn() -> EngineError + Send + Sync + 'static) {
        self.inject(call, Fault::Fail(Arc::new(make)));
    }

    /// Crash at call number `call`: it and every later call fail.
    pub fn crash_at(&self, call: u64) {
        self.inject(call, Fault::Crash);
    }

    /// If call number `call` is a commit, apply it and report `CommitUnknown`.
    pub fn commit_unknown_at(&self, call: u64) {
        self.inject(call, Fault::CommitThenUnknown);
    }

    /// If call number `call` is a commit, apply it, report `CommitUnknown` and crash.
    pub fn commit_then_crash_at(&self, call: u64) {
        self.inject(call, Fault::CommitThenCrash);
    }

    /// Count one call named `op` and decide its fate.
    fn enter(&self, op: &str, is_commit: bool) -> Decision {
        let mut st = self.state();
        st.calls += 1;
        let n = st.calls;
        if let Some(at) = st.crashed_at {
            return Decision::Fail(crashed(op, at));
        }
        match st.faults.get(&n).cloned() {
            None => Decision::Proceed,
            Some(Fault::Fail(make)) => Decision::Fail(make()),
            Some(Fault::Crash) => {
                st.crashed_at = Some(n);
                Decision::Fail(crashed(op, n))
            }
            Some(Fault::CommitThenUnknown) if is_commit => {
                Decision::ApplyThenUnknown { crash: false }
            }
            Some(Fault::CommitThenUnknown) => Decision::Fail(EngineError::Backend(format!(
                "injected failure of {op} (call #{n})"
            ))),
            Some(Fault::CommitThenCrash) => {
                st.crashed_at = Some(n);
                if is_commit {
                    Decision::ApplyThenUnknown { crash: true }
                } else {
                    Decision::Fail(crashed(op, n))
                }
            }
        }
    }

    /// Gate a non-commit call.
    fn check(&self, op: &str) -> Result<()> {
        match self.enter(op, false) {
            Decision::Proceed | Decision::ApplyThenUnknown { .. } => Ok(()),
            Decision::Fail(e) => Err(e),
        }
    }
}

fn crashed(op: &str, at: u64) -> EngineError {
    EngineError::Backend(format!("{op} failed: injected crash at call #{at}"))
}

/// An engine wrapper that counts calls and injects the faults of a [`FaultPlan`].
pub struct FaultEngine {
    inner: Arc<dyn Engine>,
    plan: FaultPlan,
}

impl FaultEngine {
    /// Wrap `inner`, following `plan`.
    pub fn new(inner: Arc<dyn Engine>, plan: FaultPlan) -> Self {
        FaultEngine { inner, plan }
    }

    /// The plan this wrapper follows.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// The wrapped engine (calls to it are not counted).
    pub fn inner(&self) -> &Arc<dyn Engine> {
        &self.inner
    }
}

#[async_trait]
impl Engine for FaultEngine {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn begin(&self) -> Result<Tx> {
        self.plan.check("begin")?;
        let inner = self.inner.begin().await?;
        Ok(Arc::new(FaultTx {
            inner,
            plan: self.plan.clone(),
        }))
    }

    async fn read_view(&self) -> Result<BoxView> {
        self.plan.check("read_view")?;
        let inner = self.inner.read_view().await?;
        Ok(Box::new(FaultView {
            inner,
            plan: self.plan.clone(),
        }))
    }

    async fn advance_version(&self, at_least: u64) -> Result<()> {
        self.plan.check("advance_version")?;
        self.inner.advance_version(at_least).await
    }

    async fn reset_version(&self, version: u64) -> Result<()> {
        self.plan.check("reset_version")?;
        self.inner.reset_version(version).await
    }

    fn process_exclusive(&self) -> bool {
        self.inner.process_exclusive()
    }

    async fn bulk_load(&self, pairs: Vec<KeyValue>) -> Result<()> {
        match self.plan.enter("bulk_load", true) {
            Decision::Proceed => self.inner.bulk_load(pairs).await,
            Decision::Fail(e) => Err(e),
            Decision::ApplyThenUnknown { .. } => {
                self.inner.bulk_load(pairs).await?;
                Err(EngineError::CommitUnknown(
                    "injected: bulk_load applied, outcome lost".into(),
                ))
            }
        }
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn close(&self) -> Result<()> {
        self.plan.check("close")?;
        self.inner.close().await
    }
}

/// A transaction of a [`FaultEngine`].
struct FaultTx {
    inner: Tx,
    plan: FaultPlan,
}

#[async_trait]
impl Transaction for FaultTx {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.plan.check("get")?;
        self.inner.get(key).await
    }

    async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.plan.check("batch_get")?;
        self.inner.batch_get(keys).await
    }

    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.plan.check("scan")?;
        self.inner.scan(range, limit).await
    }

    async fn scan_reverse(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.plan.check("scan_reverse")?;
        self.inner.scan_reverse(range, limit).await
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.plan.check("put")?;
        self.inner.put(key, value)
    }

    fn delete(&self, key: Vec<u8>) -> Result<()> {
        self.plan.check("delete")?;
        self.inner.delete(key)
    }

    fn delete_range(&self, range: &KeyRange) -> Result<()> {
        self.plan.check("delete_range")?;
        self.inner.delete_range(range)
    }

    fn put_stamped(&self, prefix: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.plan.check("put_stamped")?;
        self.inner.put_stamped(prefix, value)
    }

    async fn commit(&self) -> Result<CommitInfo> {
        match self.plan.enter("commit", true) {
            Decision::Proceed => self.inner.commit().await,
            Decision::Fail(e) => {
                // Nothing reached the engine: drop the buffered writes.
                let _ = self.inner.rollback().await;
                Err(e)
            }
            Decision::ApplyThenUnknown { crash } => {
                let applied = self.inner.commit().await;
                Err(EngineError::CommitUnknown(format!(
                    "injected: commit {} then lost its outcome{}",
                    if applied.is_ok() { "applied" } else { "failed" },
                    if crash { " (crash)" } else { "" }
                )))
            }
        }
    }

    async fn rollback(&self) -> Result<()> {
        self.plan.check("rollback")?;
        self.inner.rollback().await
    }
}

/// A read view of a [`FaultEngine`].
struct FaultView {
    inner: BoxView,
    plan: FaultPlan,
}

#[async_trait]
impl ReadView for FaultView {
    fn version(&self) -> u64 {
        self.inner.version()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.plan.check("view get")?;
        self.inner.get(key).await
    }

    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        self.plan.check("view scan")?;
        self.inner.scan(range, limit).await
    }

    fn scan_page_bytes(&self) -> usize {
        self.inner.scan_page_bytes()
    }
}
