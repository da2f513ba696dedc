//! The connection and settings every transaction and view of one engine shares, with
//! reads that ride out member failures.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Error, GetOptions, GetResponse, KvClient, Txn, TxnResponse};
use tito_engine::{EngineError, Limits, Result, Stamp};

use crate::config::EtcdConfig;
use crate::errors::{Kind, classify};
use crate::layout::Layout;

/// Largest gRPC message the client decodes (large values and pages of them).
const MAX_DECODE: usize = 256 * 1024 * 1024;
/// How long an idempotent request is retried across member failures and elections.
const READ_RETRY_FOR: Duration = Duration::from_secs(15);
/// Request bytes kept aside for the txn's own operations and encoding overhead.
const RESERVED_BYTES: usize = 64 * 1024;
/// Operations kept aside for the stamp counter and the delete epoch.
pub(crate) const RESERVED_OPS: usize = 2;

/// State shared by an engine and its transactions.
pub(crate) struct Shared {
    pub client: Client,
    pub kv: KvClient,
    pub layout: Layout,
    pub config: EtcdConfig,
    closed: AtomicBool,
    /// The newest stamp counter this engine has seen (read, written, or returned by a
    /// failed commit). Stamped commits are guarded by a compare on its modification
    /// revision instead of reading the counter first: a stale value only makes the
    /// compare fail, and the failed txn returns the fresh counter.
    last_counter: Mutex<Option<Counter>>,
}

/// The stamp counter as stored, with the revision that last wrote it (0: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counter {
    pub version: u64,
    pub time_ms: u64,
    pub mod_revision: i64,
}

impl Counter {
    pub fn decode(kv: Option<&etcd_client::KeyValue>) -> Result<Counter> {
        let Some(kv) = kv else {
            return Ok(Counter::default());
        };
        let v = kv.value();
        if v.len() != 16 {
            return Err(EngineError::Corrupt(format!(
                "etcd stamp counter {:?} holds {} bytes, expected 16",
                String::from_utf8_lossy(kv.key()),
                v.len()
            )));
        }
        let mut version = [0u8; 8];
        let mut time = [0u8; 8];
        version.copy_from_slice(&v[..8]);
        time.copy_from_slice(&v[8..]);
        Ok(Counter {
            version: u64::from_be_bytes(version),
            time_ms: u64::from_be_bytes(time),
            mod_revision: kv.mod_revision(),
        })
    }

    pub fn encode(version: u64, time_ms: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&time_ms.to_be_bytes());
        v
    }

    /// The stamp the next stamped commit takes after this counter.
    pub fn next_stamp(&self) -> Stamp {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Stamp {
            version: self.version + 1,
            time_ms: now.max(self.time_ms),
        }
    }
}

impl Shared {
    pub async fn connect(config: EtcdConfig) -> Result<Shared> {
        let options = etcd_client::ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(config.endpoint_urls(), Some(options))
            .await
            .map_err(|e| EngineError::Open(format!("etcd at {:?}: {e}", config.endpoints)))?;
        let kv = client.kv_client().max_decoding_message_size(MAX_DECODE);
        let layout = if config.raw {
            Layout::raw()
        } else {
            Layout::new(&config.namespace)
        };
        let shared = Shared {
            client,
            kv,
            layout,
            config,
            closed: AtomicBool::new(false),
            last_counter: Mutex::new(None),
        };
        // Fail at open, not at first use, when no endpoint answers.
        let probe_for = shared.config.connect_timeout * 2;
        shared
            .get_retrying("probe", shared.layout.counter.clone(), None, probe_for)
            .await
            .map_err(|e| {
                EngineError::Open(format!("etcd at {:?}: {e}", shared.config.endpoints))
            })?;
        Ok(shared)
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Backend("etcd engine is closed".into()));
        }
        Ok(())
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Limits offered to callers: the server's, less what the engine reserves.
    pub fn limits(&self) -> Limits {
        let per_op = self.layout.overhead() * 2 + 32;
        let reserve = RESERVED_BYTES + self.config.max_txn_ops * per_op;
        Limits {
            max_txn_bytes: self.config.max_request_bytes.saturating_sub(reserve),
            max_txn_ops: self.config.max_txn_ops - RESERVED_OPS,
        }
    }

    /// A range read, retried across transient failures (reads are idempotent).
    /// Compaction errors are returned as they are for the caller to interpret.
    pub async fn get(
        &self,
        what: &str,
        key: Vec<u8>,
        options: Option<GetOptions>,
    ) -> std::result::Result<GetResponse, Error> {
        self.get_retrying(what, key, options, READ_RETRY_FOR).await
    }

    /// [`Shared::get`], retrying transient failures for at most `retry_for`.
    pub async fn get_retrying(
        &self,
        what: &str,
        key: Vec<u8>,
        options: Option<GetOptions>,
        retry_for: Duration,
    ) -> std::result::Result<GetResponse, Error> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            match self.kv.clone().get(key.clone(), options.clone()).await {
                Ok(r) => return Ok(r),
                Err(e)
                    if matches!(classify(&e), Kind::Transient | Kind::NotSent)
                        && started.elapsed() < retry_for =>
                {
                    tracing::debug!(what, error = %e, "etcd read failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A txn request. A commit must not be blindly re-sent, so it is sent again only
    /// while no connection to the endpoint tried could be made (nothing was sent): with a
    /// member down, the client's next pick is likely another, live, endpoint.
    pub async fn txn(&self, txn: Txn) -> std::result::Result<TxnResponse, Error> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            match self.kv.clone().txn(txn.clone()).await {
                Err(e) if classify(&e) == Kind::NotSent && started.elapsed() < READ_RETRY_FOR => {
                    tracing::debug!(error = %e, "etcd endpoint unreachable, txn not sent; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// A txn that only reads or is safe to repeat, retried across transient failures.
    pub async fn txn_idempotent(
        &self,
        what: &str,
        txn: Txn,
    ) -> std::result::Result<TxnResponse, Error> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            match self.kv.clone().txn(txn.clone()).await {
                Ok(r) => return Ok(r),
                Err(e)
                    if matches!(classify(&e), Kind::Transient | Kind::NotSent)
                        && started.elapsed() < READ_RETRY_FOR =>
                {
                    tracing::debug!(what, error = %e, "etcd request failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The stamp counter at the latest revision and that revision.
    pub async fn read_counter(&self) -> Result<(Counter, i64)> {
        let resp = self
            .get("stamp counter read", self.layout.counter.clone(), None)
            .await
            .map_err(|e| crate::errors::read_error("stamp counter read", e))?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let counter = Counter::decode(resp.kvs().first())?;
        self.remember_counter(counter);
        Ok((counter, rev))
    }

    /// The last counter seen, or the current one read from the cluster when none was.
    pub async fn known_counter(&self) -> Result<Counter> {
        let cached = *self.lock_counter();
        match cached {
            Some(c) => Ok(c),
            None => Ok(self.read_counter().await?.0),
        }
    }

    /// Record a counter seen in the cluster, unless a newer one is already known
    /// (concurrent commits may report theirs out of order).
    pub fn remember_counter(&self, counter: Counter) {
        let mut last = self.lock_counter();
        if last.is_none_or(|l| l.mod_revision < counter.mod_revision) {
            *last = Some(counter);
        }
    }

    fn lock_counter(&self) -> std::sync::MutexGuard<'_, Option<Counter>> {
        // The value is only a hint checked by every commit: a poisoned one is still usable.
        self.last_counter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
