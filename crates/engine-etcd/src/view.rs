//! Read views: paged reads pinned to one etcd revision, registered as a pin while alive.
//!
//! etcd keeps every revision until it is compacted, and compacts only when asked (or
//! when the server runs with `--auto-compaction-retention`, which then must exceed the
//! longest snapshot). While a view lives it holds a pin key (revision, under a lease
//! kept alive by a background task); [`crate::EtcdEngine::compact`] never compacts past
//! the oldest pin. If the revision is compacted anyway, reads fail with a clear error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{GetOptions, PutOptions};
use tito_engine::{EngineError, KeyRange, KeyValue, ReadView, Result};

use crate::errors::{Kind, classify};
use crate::shared::Shared;

/// Lease TTL of a pin: a crashed process's pins disappear after this.
const PIN_TTL_SECS: i64 = 30;

/// A consistent view of an etcd namespace at one revision.
pub(crate) struct EtcdView {
    shared: Arc<Shared>,
    revision: i64,
    version: u64,
    pin: Option<Pin>,
}

/// A registered pin: the lease holding the pin key and the task keeping it alive.
struct Pin {
    lease: i64,
    keeper: tokio::task::JoinHandle<()>,
}

impl EtcdView {
    pub async fn open(shared: Arc<Shared>) -> Result<EtcdView> {
        let (counter, revision) = shared.read_counter().await?;
        let pin = register_pin(&shared, revision).await;
        Ok(EtcdView {
            shared,
            revision,
            version: counter.version,
            pin,
        })
    }

    /// A range read at the view's revision. Serializable: the revision is committed, so any
    /// member that has applied it answers exactly what the leader would, without the
    /// quorum round trip of a linearizable read; a member still behind it ("future
    /// revision") is asked again linearizably.
    async fn read_at(
        &self,
        what: &str,
        key: Vec<u8>,
        options: GetOptions,
    ) -> std::result::Result<etcd_client::GetResponse, etcd_client::Error> {
        let options = options.with_revision(self.revision);
        match self
            .shared
            .get(what, key.clone(), Some(options.clone().with_serializable()))
            .await
        {
            Err(e) if e.to_string().contains("future revision") => {
                self.shared.get(what, key, Some(options)).await
            }
            other => other,
        }
    }

    fn read_error(&self, what: &str, e: etcd_client::Error) -> EngineError {
        if classify(&e) == Kind::Compacted {
            return EngineError::Backend(format!(
                "read view at etcd revision {}: {what}: the revision was compacted while the view was in use: {e}",
                self.revision
            ));
        }
        crate::errors::read_error(what, e)
    }
}

/// Register a pin for `revision`. Best effort: a view without a pin still works, it is
/// only unprotected from compaction through [`crate::EtcdEngine::compact`].
async fn register_pin(shared: &Arc<Shared>, revision: i64) -> Option<Pin> {
    let mut leases = shared.client.lease_client();
    let lease = match leases.grant(PIN_TTL_SECS, None).await {
        Ok(l) => l.id(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot register read view pin");
            return None;
        }
    };
    let mut key = shared.layout.pins.clone();
    key.extend_from_slice(&revision.to_be_bytes());
    key.extend_from_slice(&rand::random::<u64>().to_be_bytes());
    let put = shared
        .kv
        .clone()
        .put(
            key,
            revision.to_be_bytes().to_vec(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await;
    if let Err(e) = put {
        tracing::warn!(error = %e, "cannot register read view pin");
        let _ = leases.revoke(lease).await;
        return None;
    }
    let keeper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs((PIN_TTL_SECS / 3) as u64)).await;
            match leases.keep_alive(lease).await {
                Ok((mut keeper, mut stream)) => {
                    if keeper.keep_alive().await.is_ok() {
                        let _ = stream.message().await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "read view pin keep-alive failed"),
            }
        }
    });
    Some(Pin { lease, keeper })
}

impl Drop for EtcdView {
    fn drop(&mut self) {
        if let Some(pin) = self.pin.take() {
            pin.keeper.abort();
            let mut leases = self.shared.client.lease_client();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = leases.revoke(pin.lease).await;
                });
            }
        }
    }
}

#[async_trait]
impl ReadView for EtcdView {
    fn version(&self) -> u64 {
        self.version
    }

    /// 16 MiB: every range read walks etcd's index over the rest of its range.
    fn scan_page_bytes(&self) -> usize {
        16 << 20
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.shared.layout.holds(key) {
            return Ok(None); // no such key can be stored
        }
        let mut resp = self
            .read_at("view get", self.shared.layout.key(key), GetOptions::new())
            .await
            .map_err(|e| self.read_error("get", e))?;
        Ok(resp.take_kvs().pop().map(|kv| kv.into_key_value().1))
    }

    async fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        if limit == 0 || range.is_empty() {
            return Ok(Vec::new());
        }
        let layout = &self.shared.layout;
        let (start, end) = layout.range(range);
        let options = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let mut resp = self
            .read_at("view scan", start, options)
            .await
            .map_err(|e| self.read_error("scan", e))?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .map(|kv| {
                let (k, v) = kv.into_key_value();
                (layout.user_key(&k).to_vec(), v)
            })
            .collect())
    }
}
