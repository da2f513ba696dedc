//! Where the watched cluster is and which keys are backed up: parsed from
//! `etcd+watch://host:port[,host:port...][/prefix]` URLs.
//!
//! The prefix is everything after the first `/` following the endpoints, percent-decoded
//! (`%2F` is `/`, `%25` is `%`), so `etcd+watch://h:2379/app/` backs up the keys starting
//! with `app/` and `etcd+watch://h:2379//registry/` those starting with `/registry/`. No
//! prefix backs up the whole keyspace. Keys are backed up whole, prefix included.
//!
//! A query gives the cluster's limits (`?max_request_bytes=N&max_txn_ops=N&timeout_ms=N`,
//! as for `etcd://`): they matter when the cluster is restored into, as a database with
//! raw keys ([`WatchConfig::database`]).

use std::time::Duration;

use tito_engine::KeyRange;
use tito_engine_etcd::EtcdConfig;

use crate::error::WatchError;

/// The URL scheme of a watched etcd cluster.
pub const SCHEME: &str = "etcd+watch";

/// How to reach the watched cluster and what to back up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// Client endpoints (`host:port`), tried in turn.
    pub endpoints: Vec<String>,
    /// Only keys starting with this are backed up (empty: every key).
    pub prefix: Vec<u8>,
    /// Deadline to connect to one endpoint.
    pub connect_timeout: Duration,
    /// Deadline of one request (a snapshot page, say).
    pub request_timeout: Duration,
    /// Most pairs per range read of a snapshot (a page; a scan reads as many pages as it
    /// needs). Large: each range read walks etcd's index over the rest of its range, so
    /// few large reads cost much less than many small ones; the snapshot sizes its scans
    /// by bytes.
    pub page: usize,
    /// The same cluster as a database with raw keys (the URL's limits), for restoring a
    /// backup into it: applications get their keys back as they were.
    pub database: EtcdConfig,
}

impl WatchConfig {
    /// A config for `endpoints` and `prefix` with default timeouts and page size.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<Vec<u8>>) -> Self {
        WatchConfig {
            database: EtcdConfig::raw(endpoints.clone()),
            endpoints,
            prefix: prefix.into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            page: 16_384,
        }
    }

    /// Parse an `etcd+watch://` URL.
    ///
    /// ```
    /// use tito_etcd_watch::WatchConfig;
    /// let c = WatchConfig::from_url("etcd+watch://127.0.0.1:2379,127.0.0.1:2380/app/").unwrap();
    /// assert_eq!(c.endpoints, ["127.0.0.1:2379", "127.0.0.1:2380"]);
    /// assert_eq!(c.prefix, b"app/");
    /// assert_eq!(WatchConfig::from_url("etcd+watch://h:1//reg").unwrap().prefix, b"/reg");
    /// assert!(WatchConfig::from_url("etcd+watch://").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, WatchError> {
        let bad = |why: &str| WatchError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| bad("it must start with etcd+watch://"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        if hosts.is_empty() {
            return Err(bad(
                "it names no endpoint (etcd+watch://host:port[,host:port...])",
            ));
        }
        let mut endpoints = Vec::new();
        for ep in hosts.split(',') {
            let ep = ep.trim();
            let Some((host, port)) = ep.rsplit_once(':') else {
                return Err(bad(&format!("endpoint {ep:?} has no port (host:port)")));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad(&format!("endpoint {ep:?} is not host:port")));
            }
            endpoints.push(ep.to_string());
        }
        let prefix = percent_decode(prefix).ok_or_else(|| bad("bad %-escape in the prefix"))?;
        let mut config = WatchConfig::new(endpoints, prefix);
        config
            .database
            .apply_query(url, query)
            .map_err(|e| bad(&e.to_string()))?;
        if query.contains("timeout_ms=") {
            config.request_timeout = config.database.request_timeout;
        }
        Ok(config)
    }

    /// The keys of the prefix.
    pub fn range(&self) -> KeyRange {
        KeyRange::prefix(&self.prefix)
    }

    /// The keys backed up, as sorted disjoint ranges: the prefix, less the keys a restore
    /// into etcd leaves beside the applications' ones (Tito's reserved keys, `ff "tito" 00
    /// ...`, and the raw engine's metadata from [`tito_engine_etcd::RAW_META_PREFIX`] on),
    /// so backing up a cluster that was restored into never takes Tito's own keys for data.
    pub fn ranges(&self) -> Vec<KeyRange> {
        let reserved = tito_capture::keys::reserved_range();
        let kept = [
            KeyRange {
                start: Vec::new(),
                end: Some(reserved.start),
            },
            KeyRange {
                start: reserved.end.expect("the reserved range is bounded"),
                end: Some(tito_engine_etcd::RAW_META_PREFIX.to_vec()),
            },
        ];
        let prefix = self.range();
        kept.iter()
            .filter_map(|k| crate::engine::intersect(k, &prefix))
            .collect()
    }

    /// A short description for messages and the repository's database id.
    pub fn describe(&self) -> String {
        format!(
            "{SCHEME}://{}/{}",
            self.endpoints.join(","),
            String::from_utf8_lossy(&self.prefix)
        )
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = WatchConfig::from_url("etcd+watch://a:1,b:2").unwrap();
        assert_eq!(c.endpoints, ["a:1", "b:2"]);
        assert!(c.prefix.is_empty());
        assert_eq!(
            WatchConfig::from_url("etcd+watch://a:1/x%2Fy%25")
                .unwrap()
                .prefix,
            b"x/y%"
        );
        let q = WatchConfig::from_url("etcd+watch://a:1?max_txn_ops=4096&timeout_ms=100").unwrap();
        assert!(q.prefix.is_empty() && q.database.raw);
        assert_eq!(q.database.max_txn_ops, 4096);
        assert_eq!(q.request_timeout, Duration::from_millis(100));
    }

    #[test]
    fn tito_keys_left_in_a_restored_cluster_are_not_backed_up() {
        trait BacksUp {
            fn backs_up(&self, key: &[u8]) -> bool;
        }
        impl BacksUp for WatchConfig {
            fn backs_up(&self, key: &[u8]) -> bool {
                self.ranges().iter().any(|r| r.contains(key))
            }
        }
        let all = WatchConfig::from_url("etcd+watch://a:1").unwrap();
        assert!(all.backs_up(b"app/x") && all.backs_up(b"\xff") && all.backs_up(b"\xff\xff"));
        assert!(!all.backs_up(b"\xfftito\x00meta/database_id"));
        assert!(!all.backs_up(tito_engine_etcd::RAW_META_PREFIX));
        assert!(all.backs_up(b"\xfftito\x01"));
        assert_eq!(all.ranges().len(), 2);
        let app = WatchConfig::from_url("etcd+watch://a:1/app/").unwrap();
        assert_eq!(app.ranges(), vec![KeyRange::prefix(b"app/")]);
        assert!(!app.backs_up(b"apq"));
        for bad in [
            "etcd://a:1",
            "etcd+watch://",
            "etcd+watch:///p",
            "etcd+watch://a",
            "etcd+watch://a:x",
            "etcd+watch://a:1/p?x=1",
            "etcd+watch://a:1?max_txn_ops=0",
            "etcd+watch://a:1/%zz",
        ] {
            assert!(WatchConfig::from_url(bad).is_err(), "{bad}");
        }
    }
}
