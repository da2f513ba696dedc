//! [`EtcdEngine`]: the [`Engine`] implementation over an etcd cluster.

use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use tito_engine::{BoxView, Engine, EngineError, KeyValue, Limits, Result, Tx};

use crate::buffer::WriteBuffer;
use crate::commit::{check_fits, write_ops};
use crate::config::EtcdConfig;
use crate::errors::{commit_error, read_error};
use crate::shared::{Counter, Shared};
use crate::txn::EtcdTx;
use crate::view::EtcdView;

/// An engine whose keys live in one namespace of an etcd cluster.
///
/// Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct EtcdEngine {
    shared: Arc<Shared>,
}

impl EtcdEngine {
    /// Connect to `endpoints` (`host:port`) and use the keys under `namespace`, with
    /// etcd's default limits. Fails with [`EngineError::Open`] if no endpoint answers.
    pub async fn connect(endpoints: &[String], namespace: impl Into<Vec<u8>>) -> Result<Self> {
        Self::with_config(EtcdConfig::new(endpoints.to_vec(), namespace)).await
    }

    /// Connect with a full configuration (limits matching the server's flags).
    pub async fn with_config(config: EtcdConfig) -> Result<Self> {
        Ok(EtcdEngine {
            shared: Arc::new(Shared::connect(config).await?),
        })
    }

    /// Open `etcd://host:port[,host:port...][/namespace][?max_request_bytes=N&max_txn_ops=N]`.
    pub async fn open(url: &str) -> Result<Self> {
        Self::with_config(EtcdConfig::from_url(url)?).await
    }

    /// The configuration in use.
    pub fn config(&self) -> &EtcdConfig {
        &self.shared.config
    }

    /// The stamp counter's current version (0 before the first stamped commit).
    pub async fn current_version(&self) -> Result<u64> {
        Ok(self.shared.read_counter().await?.0.version)
    }

    /// Compact the cluster's history up to `revision` (clamped to the current
    /// revision), but never past the revision of a live read view of this namespace (its
    /// pin). Returns the revision compacted to, or `None` if there was nothing to do.
    /// Compaction is cluster-wide: pins of other namespaces are not seen.
    pub async fn compact(&self, revision: i64) -> Result<Option<i64>> {
        let pins = self.shared.layout.pins.clone();
        let mut end = pins.clone();
        end.push(0xFF);
        let resp = self
            .shared
            .get(
                "pin listing",
                pins,
                Some(GetOptions::new().with_range(end).with_limit(1)),
            )
            .await
            .map_err(|e| read_error("pin listing", e))?;
        let current = resp.header().map_or(0, |h| h.revision());
        let oldest_pin = resp
            .kvs()
            .first()
            .and_then(|kv| <[u8; 8]>::try_from(kv.value()).ok().map(i64::from_be_bytes));
        let target = revision.min(current).min(oldest_pin.unwrap_or(i64::MAX));
        if target <= 0 {
            return Ok(None);
        }
        match self.shared.kv.clone().compact(target, None).await {
            Ok(_) => Ok(Some(target)),
            // Already compacted at or past the target: nothing left to do.
            Err(e) if crate::errors::classify(&e) == crate::errors::Kind::Compacted => Ok(None),
            Err(e) => Err(read_error("compaction", e)),
        }
    }
}

#[async_trait]
impl Engine for EtcdEngine {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    async fn begin(&self) -> Result<Tx> {
        self.shared.check_open()?;
        Ok(Arc::new(EtcdTx::new(self.shared.clone())))
    }

    async fn read_view(&self) -> Result<BoxView> {
        self.shared.check_open()?;
        Ok(Box::new(EtcdView::open(self.shared.clone()).await?))
    }

    async fn advance_version(&self, at_least: u64) -> Result<()> {
        self.set_counter("advance version", |current| {
            (current < at_least).then_some(at_least)
        })
        .await
    }

    async fn reset_version(&self, version: u64) -> Result<()> {
        self.set_counter("reset version", |current| {
            (current != version).then_some(version)
        })
        .await
    }

    /// One etcd txn of blind puts. It must fit [`Engine::limits`]; callers size their
    /// batches by it. A batch that does not fit gets [`EngineError::TooLarge`] and
    /// writes nothing.
    async fn bulk_load(&self, pairs: Vec<KeyValue>) -> Result<()> {
        self.shared.check_open()?;
        let mut buffer = WriteBuffer::default();
        for (k, v) in pairs {
            self.shared.layout.check(&k)?;
            buffer.put(k, v);
        }
        let writes = buffer.final_writes(None);
        if writes.ops() == 0 {
            return Ok(());
        }
        check_fits(&self.shared, &writes, "bulk load batch")?;
        let txn = Txn::new().and_then(write_ops(&self.shared, &writes));
        let resp = self
            .shared
            .txn(txn)
            .await
            .map_err(|e| commit_error("bulk load", e))?;
        if !resp.succeeded() {
            return Err(EngineError::Backend(
                "etcd bulk load txn without compares failed".into(),
            ));
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.shared.limits()
    }

    async fn close(&self) -> Result<()> {
        self.shared.close();
        Ok(())
    }
}

impl EtcdEngine {
    /// Replace the stamp counter with what `next` makes of its current version (`None`:
    /// leave it), guarded by the counter's revision so a concurrent stamped commit is
    /// never overwritten.
    async fn set_counter(&self, what: &str, next: impl Fn(u64) -> Option<u64>) -> Result<()> {
        self.shared.check_open()?;
        loop {
            let (counter, _) = self.shared.read_counter().await?;
            let Some(version) = next(counter.version) else {
                return Ok(());
            };
            let key = self.shared.layout.counter.clone();
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    counter.mod_revision,
                )])
                .and_then(vec![TxnOp::put(
                    key,
                    Counter::encode(version, counter.time_ms),
                    None,
                )]);
            // Idempotent: re-sending after an unknown outcome either applies once or
            // fails its compare, and the loop re-reads.
            let resp = self
                .shared
                .txn_idempotent(what, txn)
                .await
                .map_err(|e| commit_error(what, e))?;
            if resp.succeeded() {
                return Ok(());
            }
        }
    }
}
