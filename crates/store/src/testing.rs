//! Test support: the settings of the S3 test server that `scripts/start-s3.sh` starts, shared
//! by every crate whose tests talk to it.

use std::collections::HashMap;

use crate::s3::S3Config;

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
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/s3.env");
        let mut vars: HashMap<String, String> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for k in [
            "TITO_TEST_S3_ENDPOINT",
            "TITO_TEST_S3_BUCKET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ] {
            if let Ok(v) = std::env::var(k) {
                vars.insert(k.to_string(), v);
            }
        }
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
