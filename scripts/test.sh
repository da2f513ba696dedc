#!/usr/bin/env bash
# The test command: starts the servers the tests need (an S3-compatible server, the Azure
# Blob Storage emulator Azurite and a 3-node etcd cluster on 127.0.0.1, each reused when
# already running), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ci-deps.sh
scripts/start-s3.sh
scripts/start-azurite.sh
scripts/start-etcd.sh
set -a
# shellcheck disable=SC1091
. target/s3.env
# shellcheck disable=SC1091
. target/azure.env
# shellcheck disable=SC1091
. target/etcd.env
set +a

# Property tests draw their cases from one seed per commit: a run is reproducible (the same
# commit draws the same cases here and in CI), and every new commit explores new cases.
# Set PROPTEST_RNG_SEED yourself to replay another run, or to any number to explore.
if [ -z "${PROPTEST_RNG_SEED:-}" ]; then
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo 0)
    PROPTEST_RNG_SEED=$((16#${commit}))
    export PROPTEST_RNG_SEED
fi
echo "== property tests seeded with PROPTEST_RNG_SEED=$PROPTEST_RNG_SEED"

cargo test --workspace --locked "$@"
