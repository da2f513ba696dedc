//! Finding the test cluster: `TITO_TEST_ETCD` (endpoints, comma-separated) or the
//! `target/etcd.env` file written by `scripts/start-etcd.sh`.
#![allow(dead_code)]

use std::sync::Arc;

use tito_engine::Engine;
use tito_engine_etcd::{EtcdConfig, EtcdEngine};

const HOW: &str = "no etcd test cluster: run scripts/start-etcd.sh (it writes target/etcd.env), \
                   or set TITO_TEST_ETCD=host:port,host:port,...";

fn env_file() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/etcd.env");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('\'').to_string(),
            )
        })
        .collect()
}

fn setting(name: &str, file: &[(String, String)]) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| file.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

/// The test cluster's configuration with a fresh random namespace. Panics (failing the
/// test) when no cluster is configured.
pub fn config() -> EtcdConfig {
    let file = env_file();
    let endpoints = setting("TITO_TEST_ETCD", &file).unwrap_or_else(|| panic!("{HOW}"));
    let namespace = format!("tito-test/{:016x}", rand::random::<u64>());
    let mut config = EtcdConfig::new(
        endpoints.split(',').map(str::to_string).collect(),
        namespace,
    );
    if let Some(n) = setting("TITO_TEST_ETCD_MAX_REQUEST_BYTES", &file) {
        config.max_request_bytes = n.parse().expect("TITO_TEST_ETCD_MAX_REQUEST_BYTES");
    }
    if let Some(n) = setting("TITO_TEST_ETCD_MAX_TXN_OPS", &file) {
        config.max_txn_ops = n.parse().expect("TITO_TEST_ETCD_MAX_TXN_OPS");
    }
    config
}

/// A fresh, empty engine on the test cluster.
pub async fn engine_with(config: EtcdConfig) -> EtcdEngine {
    EtcdEngine::with_config(config.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the etcd test cluster at {:?}: {e}; {HOW}",
                config.endpoints
            )
        })
}

/// A fresh, empty engine on the test cluster.
pub async fn engine() -> Arc<dyn Engine> {
    Arc::new(engine_with(config()).await)
}
