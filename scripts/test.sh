#!/usr/bin/env bash
# The test command: starts the servers the tests need (an S3-compatible server and a
# 3-node etcd cluster on 127.0.0.1, both reused when already running), then runs every
# test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ci-deps.sh
scripts/start-s3.sh
scripts/start-etcd.sh
set -a
# shellcheck disable=SC1091
. target/s3.env
# shellcheck disable=SC1091
. target/etcd.env
set +a

cargo test --workspace --locked "$@"
