//! What the bench's tests share: where the etcd test cluster is, and what a run left on it.

const HOW: &str = "no etcd test cluster: run scripts/start-etcd.sh (it writes target/etcd.env), \
                   or set TITO_TEST_ETCD_URL=etcd://host:port,...";

/// The test cluster's URL (namespace and limits included).
pub fn cluster_url() -> String {
    if let Ok(url) = std::env::var("TITO_TEST_ETCD_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/etcd.env");
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{HOW}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "TITO_TEST_ETCD_URL")
        .map(|(_, v)| v.trim().trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("{HOW}"))
}

/// Keys left under `prefix` on the cluster at `endpoints` (`host:port`).
#[allow(dead_code)]
pub async fn keys_left(endpoints: &[String], prefix: &str) -> i64 {
    let mut client = etcd_client::Client::connect(
        endpoints
            .iter()
            .map(|h| format!("http://{h}"))
            .collect::<Vec<_>>(),
        None,
    )
    .await
    .expect("connect");
    client
        .get(
            prefix.as_bytes(),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .expect("count the run's keys")
        .count()
}
