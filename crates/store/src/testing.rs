//! Test support: the settings of the test servers that `scripts/start-s3.sh` and
//! `scripts/start-azurite.sh` start, shared by every crate whose tests talk to them.

use std::collections::HashMap;

use crate::azure::AzureConfig;
use crate::s3::S3Config;

/// The variables `keys`, each from the environment, else from the file `target/<file>` that
/// a start script writes.
fn vars(file: &str, keys: &[&str]) -> HashMap<String, String> {
    let path = format!("{}/../../target/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut vars: HashMap<String, String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .collect();
    for k in keys {
        if let Ok(v) = std::env::var(k) {
            vars.insert(k.to_string(), v);
        }
    }
    vars
}

const HOWTO: &str = "TITO_TEST_S3_ENDPOINT is not set and target/s3.env is missing: \
                     run scripts/start-s3.sh (it starts a local S3 server and writes target/s3.env)";

/// Where the S3 test server is: each setting from the environment (`TITO_TEST_S3_ENDPOINT`,
/// `TITO_TEST_S3_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`), else
/// from the file `target/s3.env` that `scripts/start-s3.sh` writes.
#[derive(Clone, Debug)]
pub struct S3TestServer {
    /// The bucket root, credentials only as set.
    root: S3Config,
}

impl S3TestServer {
    /// Read the settings. Panics, saying how to start the server, when there are none: the
    /// tests that need it fail rather than pass without it.
    pub fn settings() -> Self {
        let mut vars = vars(
            "s3.env",
            &[
                "TITO_TEST_S3_ENDPOINT",
                "TITO_TEST_S3_BUCKET",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_REGION",
            ],
        );
        let endpoint = vars.remove("TITO_TEST_S3_ENDPOINT");
        assert!(endpoint.is_some(), "{HOWTO}");
        let root = S3Config {
            bucket: vars
                .remove("TITO_TEST_S3_BUCKET")
                .unwrap_or_else(|| "tito-test".into()),
            prefix: String::new(),
            endpoint,
            region: vars.remove("AWS_REGION"),
            allow_http: Some(true),
            access_key_id: vars.remove("AWS_ACCESS_KEY_ID"),
            secret_access_key: vars.remove("AWS_SECRET_ACCESS_KEY"),
        };
        S3TestServer { root }
    }

    /// The test bucket.
    pub fn bucket(&self) -> &str {
        &self.root.bucket
    }

    /// The config of a store under `prefix` of the test bucket (credentials `testing`, what
    /// the test server accepts, where none are set).
    pub fn config(&self, prefix: &str) -> S3Config {
        let r = &self.root;
        let or_testing = |v: &Option<String>| Some(v.clone().unwrap_or_else(|| "testing".into()));
        S3Config {
            prefix: prefix.to_string(),
            access_key_id: or_testing(&r.access_key_id),
            secret_access_key: or_testing(&r.secret_access_key),
            ..r.clone()
        }
    }

    /// The `AWS_*` environment variables that point a process opening `s3://` URLs (such
    /// as `tito`) at the server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        let r = &self.root;
        [
            ("AWS_ENDPOINT_URL", &r.endpoint),
            ("AWS_ALLOW_HTTP", &Some("true".to_string())),
            ("AWS_ACCESS_KEY_ID", &r.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &r.secret_access_key),
            ("AWS_REGION", &r.region),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.clone()?)))
        .collect()
    }
}

/// Where the Azurite emulator of the tests is (`scripts/start-azurite.sh`):
/// `AZURITE_BLOB_STORAGE_URL` and `TITO_TEST_AZURE_CONTAINER` from the environment, else
/// from `target/azure.env`.
#[derive(Clone, Debug)]
pub struct AzureTestServer {
    url: String,
    container: String,
}

impl AzureTestServer {
    /// Read the settings. Panics, saying how to start the emulator, when there are none.
    pub fn settings() -> Self {
        let mut v = vars(
            "azure.env",
            &["AZURITE_BLOB_STORAGE_URL", "TITO_TEST_AZURE_CONTAINER"],
        );
        let url = v.remove("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|| {
            panic!(
                "AZURITE_BLOB_STORAGE_URL is not set and target/azure.env is missing: run \
                 scripts/start-azurite.sh (it starts Azurite and writes target/azure.env)"
            )
        });
        let container = v
            .remove("TITO_TEST_AZURE_CONTAINER")
            .unwrap_or_else(|| "tito-test".into());
        AzureTestServer { url, container }
    }

    /// The config of a store under `prefix` of the test container. object_store finds the
    /// emulator through `AZURITE_BLOB_STORAGE_URL` only: a test process must have it in its
    /// environment (scripts/test.sh exports target/azure.env) unless Azurite is on its
    /// default port.
    pub fn config(&self, prefix: &str) -> AzureConfig {
        AzureConfig {
            container: self.container.clone(),
            prefix: prefix.to_string(),
            use_emulator: Some(true),
        }
    }

    /// The `az://` URL of a store under `prefix` of the test container.
    pub fn url(&self, prefix: &str) -> String {
        format!("az://{}/{prefix}?use_emulator=true", self.container)
    }

    /// The environment a process (such as `tito`) needs to reach the emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURITE_BLOB_STORAGE_URL", self.url.clone()),
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
        ]
    }
}
