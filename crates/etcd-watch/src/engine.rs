//! The watched cluster: a connection to one endpoint at a time (another one after a
//! failure), and [`PinnedView`], a read-only view of the backed-up keys at one revision
//! that the snapshot reads through the engine crate's [`ReadView`] trait.

use std::sync::Mutex;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, GetOptions};
use tito_engine::{EngineError, KeyRange, KeyValue, ReadView};

use crate::config::WatchConfig;
use crate::error::WatchError;

/// The largest response decoded (etcd-client's default is 4 MiB; a page of large values
/// or one large txn's events can be more).
pub(crate) const MAX_DECODE: usize = 256 * 1024 * 1024;

/// A connection to the watched cluster, one endpoint at a time: [`Cluster::failed`] drops
/// it so the next [`Cluster::client`] connects to the next endpoint.
pub struct Cluster {
    config: WatchConfig,
    /// Index of the endpoint in use (or tried next) and its client.
    state: Mutex<(usize, Option<Client>)>,
}

impl Cluster {
    /// A cluster handle; nothing is connected until [`Cluster::client`].
    pub fn new(config: WatchConfig) -> Self {
        Cluster {
            config,
            state: Mutex::new((0, None)),
        }
    }

    /// The config.
    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// The endpoint in use (or tried next).
    pub fn endpoint(&self) -> String {
        let i = self.state.lock().expect("cluster lock").0;
        self.config.endpoints[i % self.config.endpoints.len()].clone()
    }

    /// A client connected to one endpoint: the one in use, or else the endpoints in turn
    /// starting with the next one, until one answers.
    pub async fn client(&self) -> Result<Client, WatchError> {
        if let Some(c) = self.state.lock().expect("cluster lock").1.clone() {
            return Ok(c);
        }
        let n = self.config.endpoints.len();
        let first = self.state.lock().expect("cluster lock").0;
        let mut last = String::new();
        for k in 0..n {
            let i = (first + k) % n;
            let ep = &self.config.endpoints[i];
            // require_leader: a member cut off from the leader cancels the watch instead of
            // going silent, so the backup moves to another endpoint.
            let opts = ConnectOptions::new()
                .with_require_leader(true)
                .with_connect_timeout(self.config.connect_timeout)
                // etcd answers pings more often than every 5 s (its default
                // --grpc-keepalive-min-time) with GOAWAY, which would break the watch.
                .with_keep_alive(
                    std::time::Duration::from_secs(10),
                    std::time::Duration::from_secs(5),
                );
            let attempt = async {
                let mut c = Client::connect([ep.as_str()], Some(opts)).await?;
                // A member that accepts connections but has no quorum cannot serve
                // linearizable reads: check it answers one.
                c.get(
                    vec![0u8],
                    Some(GetOptions::new().with_limit(1).with_keys_only()),
                )
                .await?;
                Ok::<_, etcd_client::Error>(c)
            };
            match tokio::time::timeout(self.config.request_timeout, attempt).await {
                Ok(Ok(c)) => {
                    *self.state.lock().expect("cluster lock") = (i, Some(c.clone()));
                    tracing::debug!(endpoint = %ep, "connected to etcd");
                    return Ok(c);
                }
                Ok(Err(e)) => last = format!("{ep}: {e}"),
                Err(_) => {
                    last = format!("{ep}: no answer within {:?}", self.config.request_timeout)
                }
            }
        }
        self.state.lock().expect("cluster lock").0 = (first + 1) % n;
        Err(WatchError::Unreachable {
            endpoints: self.config.endpoints.join(","),
            reason: last,
        })
    }

    /// The endpoint in use failed: drop its client, so the next [`Cluster::client`] tries
    /// the next endpoint first.
    pub fn failed(&self) {
        let mut s = self.state.lock().expect("cluster lock");
        if s.1.take().is_some() {
            s.0 = (s.0 + 1) % self.config.endpoints.len();
        }
    }

    /// The cluster's current revision and its cluster id (a linearizable read).
    pub async fn revision(&self) -> Result<(u64, u64), WatchError> {
        let mut c = self.client().await?;
        let get = c.get(
            vec![0u8],
            Some(GetOptions::new().with_limit(1).with_keys_only()),
        );
        let resp = match tokio::time::timeout(self.config.request_timeout, get).await {
            Ok(r) => r.map_err(|e| WatchError::etcd("reading the revision", e))?,
            Err(_) => {
                return Err(WatchError::WatchLost(format!(
                    "{} did not answer within {:?}",
                    self.endpoint(),
                    self.config.request_timeout
                )));
            }
        };
        let h = resp
            .header()
            .ok_or_else(|| WatchError::WatchLost("a response without a header".into()))?;
        Ok((h.revision() as u64, h.cluster_id()))
    }

    /// A view of the backed-up keys at the cluster's current revision.
    pub async fn view(&self) -> Result<PinnedView, WatchError> {
        let (revision, _) = self.revision().await?;
        Ok(PinnedView {
            client: self.client().await?,
            revision,
            ranges: self.config.ranges(),
            timeout: self.config.request_timeout,
            page: self.config.page.max(1),
        })
    }
}

/// A read-only view of the backed-up keys (the prefix) at one etcd revision: every read
/// is a range read pinned to that revision, so a paginated scan is one consistent state
/// while writers go on. A compaction past the revision makes reads fail (`compacted`).
pub struct PinnedView {
    client: Client,
    revision: u64,
    /// The backed-up keys ([`WatchConfig::ranges`]), sorted and disjoint.
    ranges: Vec<KeyRange>,
    timeout: std::time::Duration,
    page: usize,
}

impl PinnedView {
    /// The revision read.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Up to `limit` pairs of `range` within the backed-up ranges (none for a limit of 0,
    /// as every engine's scan), in key order. Fewer than `limit` only at the end of the
    /// range.
    async fn range(&self, range: &KeyRange, limit: usize) -> tito_engine::Result<Vec<KeyValue>> {
        let mut out: Vec<KeyValue> = Vec::new();
        for kept in &self.ranges {
            if out.len() >= limit {
                break;
            }
            if let Some(r) = intersect(range, kept) {
                self.range_within(r, limit, &mut out).await?;
            }
        }
        Ok(out)
    }

    /// Pairs of `r` into `out` until it holds `limit`, read in pages of at most `page`
    /// pairs (each a range read pinned to the revision), so a response stays small
    /// whatever `limit` is.
    async fn range_within(
        &self,
        mut r: KeyRange,
        limit: usize,
        out: &mut Vec<KeyValue>,
    ) -> tito_engine::Result<()> {
        loop {
            let want = (limit - out.len()).min(self.page);
            // etcd has no empty key: [0] is the least key, and a range end of [0] means
            // "to the end of the keyspace".
            let start = if r.start.is_empty() {
                vec![0u8]
            } else {
                r.start.clone()
            };
            let end = r.end.clone().unwrap_or_else(|| vec![0u8]);
            let opts = GetOptions::new()
                .with_range(end)
                .with_revision(self.revision as i64)
                .with_limit(want as i64);
            let mut client = self
                .client
                .kv_client()
                .max_decoding_message_size(MAX_DECODE);
            let resp = tokio::time::timeout(self.timeout, client.get(start, Some(opts)))
                .await
                .map_err(|_| EngineError::Backend("etcd range read timed out".into()))?
                .map_err(|e| {
                    EngineError::Backend(format!(
                        "etcd range read at revision {}: {e}",
                        self.revision
                    ))
                })?;
            let more = resp.more();
            out.extend(
                resp.kvs()
                    .iter()
                    .map(|kv| (kv.key().to_vec(), kv.value().to_vec())),
            );
            let full = out.len() >= limit;
            match out.last() {
                Some((last, _)) if more && !full => r = r.after(last),
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl ReadView for PinnedView {
    fn version(&self) -> u64 {
        self.revision
    }

    /// 16 MiB: every range read walks etcd's index over the rest of its range.
    fn scan_page_bytes(&self) -> usize {
        16 << 20
    }

    async fn get(&self, key: &[u8]) -> tito_engine::Result<Option<Vec<u8>>> {
        if !self.ranges.iter().any(|r| r.contains(key)) || key.is_empty() {
            return Ok(None);
        }
        let mut end = key.to_vec();
        end.push(0);
        let kv = self.range(&KeyRange::new(key.to_vec(), end), 1).await?;
        Ok(kv.into_iter().next().map(|(_, v)| v))
    }

    async fn scan(&self, range: &KeyRange, limit: usize) -> tito_engine::Result<Vec<KeyValue>> {
        self.range(range, limit).await
    }
}

/// The keys in both ranges.
pub(crate) fn intersect(a: &KeyRange, b: &KeyRange) -> Option<KeyRange> {
    let start = a.start.as_slice().max(b.start.as_slice()).to_vec();
    let end = match (&a.end, &b.end) {
        (Some(x), Some(y)) => Some(x.min(y).clone()),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    };
    let r = KeyRange { start, end };
    (!r.is_empty()).then_some(r)
}
