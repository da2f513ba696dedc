//! Where the engine connects and what limits it assumes: parsed from `etcd://` URLs.

use std::time::Duration;

use tito_engine::{EngineError, Result};

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// The namespace used when a URL names none.
pub const DEFAULT_NAMESPACE: &str = "tito";

/// How to reach an etcd cluster and which of its limits to respect.
///
/// The limits must match the server's flags (`--max-request-bytes`, `--max-txn-ops`);
/// they default to etcd's own defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client endpoints, `host:port` (an `http://` scheme is added when missing).
    pub endpoints: Vec<String>,
    /// Every key of the engine lives under this prefix, so several databases (or tests)
    /// can share one cluster. Ignored when [`EtcdConfig::raw`].
    pub namespace: Vec<u8>,
    /// Keys as the cluster's own applications see them: a user key is the etcd key itself
    /// and the engine's metadata lives above every key stored ([`crate::RAW_META_PREFIX`]).
    /// For restoring a watched cluster's backup into etcd (`etcd+watch://` as a database).
    pub raw: bool,
    /// The server's `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// The server's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Deadline of one request to the cluster.
    pub request_timeout: Duration,
    /// Deadline to establish a connection to one endpoint.
    pub connect_timeout: Duration,
}

impl EtcdConfig {
    /// A configuration with etcd's default limits.
    pub fn new(endpoints: Vec<String>, namespace: impl Into<Vec<u8>>) -> Self {
        EtcdConfig {
            endpoints,
            namespace: namespace.into(),
            raw: false,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// Parse `etcd://host:port[,host:port...][/namespace][?max_request_bytes=N&max_txn_ops=N]`.
    ///
    /// The namespace is the path without its leading slash (`tito` when absent); it may
    /// contain further slashes.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            EngineError::Open(format!("etcd URL {url:?} must start with etcd://"))
        })?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (hosts, namespace) = match rest.split_once('/') {
            Some((h, ns)) if !ns.is_empty() => (h, ns),
            Some((h, _)) => (h, DEFAULT_NAMESPACE),
            None => (rest, DEFAULT_NAMESPACE),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(EngineError::Open(format!(
                "etcd URL {url:?} names no host:port"
            )));
        }
        if let Some(bad) = endpoints.iter().find(|h| !h.contains(':')) {
            return Err(EngineError::Open(format!(
                "etcd URL {url:?}: endpoint {bad:?} must be host:port"
            )));
        }
        let mut config = EtcdConfig::new(endpoints, namespace.as_bytes().to_vec());
        config.apply_query(url, query.unwrap_or(""))?;
        Ok(config)
    }

    /// Apply a URL's query (`max_request_bytes=N&max_txn_ops=N&timeout_ms=N`, the part
    /// after `?`) to this configuration; `url` names the URL in errors.
    pub fn apply_query(&mut self, url: &str, query: &str) -> Result<()> {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                EngineError::Open(format!(
                    "etcd URL {url:?}: option {pair:?} must be name=value"
                ))
            })?;
            let number = || {
                value.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    EngineError::Open(format!(
                        "etcd URL {url:?}: option {name} needs a positive integer, got {value:?}"
                    ))
                })
            };
            match name {
                "max_request_bytes" => self.max_request_bytes = number()?,
                "max_txn_ops" => self.max_txn_ops = number()?,
                "timeout_ms" => self.request_timeout = Duration::from_millis(number()? as u64),
                _ => {
                    return Err(EngineError::Open(format!(
                        "etcd URL {url:?}: unknown option {name:?} (known: max_request_bytes, max_txn_ops, timeout_ms)"
                    )));
                }
            }
        }
        if self.max_txn_ops < 8 {
            return Err(EngineError::Open(format!(
                "etcd URL {url:?}: max_txn_ops must be at least 8"
            )));
        }
        Ok(())
    }

    /// A raw configuration ([`EtcdConfig::raw`]) with etcd's default limits.
    pub fn raw(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            raw: true,
            ..EtcdConfig::new(endpoints, Vec::new())
        }
    }

    /// Endpoints as URLs the client accepts.
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| endpoint_url(e)).collect()
    }
}

/// An endpoint as a URL the etcd client accepts (`http://` added when no scheme is given).
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_namespace_and_limits() {
        let c = EtcdConfig::from_url("etcd://a:1,b:2/x/y?max_request_bytes=100&max_txn_ops=64")
            .unwrap();
        assert_eq!(c.endpoints, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(c.namespace, b"x/y".to_vec());
        assert_eq!((c.max_request_bytes, c.max_txn_ops), (100, 64));
        let d = EtcdConfig::from_url("etcd://h:1").unwrap();
        assert_eq!(d.namespace, b"tito".to_vec());
        assert_eq!(d.max_txn_ops, DEFAULT_MAX_TXN_OPS);
        assert_eq!(d.endpoint_urls(), vec!["http://h:1".to_string()]);
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "redb:///x",
            "etcd://",
            "etcd://host",
            "etcd://h:1?x=1",
            "etcd://h:1?max_txn_ops=0",
        ] {
            assert!(EtcdConfig::from_url(url).is_err(), "{url}");
        }
    }
}
