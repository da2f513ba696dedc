//! Runs every command of README.md's tour, as written, with bash in a fresh temporary
//! directory and the `tito` under test first on the PATH.
//!
//! The tour is every ```sh block after the first one (the first holds the two top-level
//! commands: the demo, which `tests/cli.rs` and the demo's unit test run, and the test
//! command itself). The S3 part runs against the test S3 server, the Azure part against
//! Azurite: their settings come from the environment or from target/s3.env and
//! target/azure.env, which scripts/start-s3.sh and scripts/start-azurite.sh write. The only
//! rewrites made to the text are the URLs `s3://tito-test/shop` and `az://tito-test/shop`,
//! which get the test bucket (container) and a fresh prefix so that runs never share a
//! repository.

use std::path::Path;
use std::process::Command;

use tito_store::testing::{AzureTestServer, S3TestServer};

const TITO: &str = env!("CARGO_BIN_EXE_tito");
const README: &str = include_str!("../../../README.md");
const README_S3_URL: &str = "s3://tito-test/shop";
const README_AZURE_URL: &str = "az://tito-test/shop";

/// The ```sh blocks of the README, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn readme_tour_runs_as_written() {
    let blocks = sh_blocks(README);
    assert!(
        blocks.len() >= 6,
        "README lost its tour: {} sh blocks",
        blocks.len()
    );
    assert!(
        blocks[0].contains("-- demo"),
        "the first block is the demo and test commands"
    );
    let s3 = S3TestServer::settings();
    let url = format!("s3://{}/readme-{:016x}", s3.bucket(), rand::random::<u64>());
    let tour = blocks[1..].join("\n");
    assert!(
        tour.contains(README_S3_URL),
        "the README's S3 example moved: update this test"
    );
    let azure = AzureTestServer::settings();
    let azure_url = azure.url(&format!("readme-{:016x}", rand::random::<u64>()));
    assert!(
        tour.contains(README_AZURE_URL),
        "the README's Azure example moved: update this test"
    );
    let tour = tour
        .replace(README_S3_URL, &url)
        .replace(README_AZURE_URL, &azure_url);
    let script = format!("set -euo pipefail\n{tour}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bin_dir = Path::new(TITO).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("TITO_DB")
        .env_remove("TITO_STORE")
        .env_remove("TITO_CONFIG")
        .envs(s3.aws_env())
        .envs(azure.env());
    let out = cmd.output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README tour failed:\n{stdout}\n{stderr}"
    );

    // What the tour's comments promise.
    let lines: Vec<&str> = stdout.lines().collect();
    let pos = |l: &str| lines.iter().position(|x| *x == l);
    let oops = pos("oops").expect("restore to a time gives the state at that time");
    let hello = pos("hello").expect("restore to the label gives its state");
    assert!(oops < hello, "{stdout}");
    assert_eq!(
        lines.iter().filter(|l| **l == "paid").count(),
        2,
        "the S3 and the Azure copies hold the order: {stdout}"
    );
    assert!(
        stdout.contains("{\"key\":\"greeting\",\"value\":\"worse\"}"),
        "dump of latest: {stdout}"
    );
    assert!(stdout.contains("dry run"), "{stdout}");
    assert!(stdout.contains("no problems"), "verify: {stdout}");
    assert!(stdout.contains("restorable: from"), "status: {stdout}");
    assert!(dir.path().join("tito.toml").exists());
}
