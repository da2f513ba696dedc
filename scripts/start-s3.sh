#!/usr/bin/env bash
# Starts a real S3-compatible server (moto_server, from PyPI) on 127.0.0.1 for the tests,
# creates the test bucket, and writes the variables the tests read to target/s3.env.
#
# Usage: scripts/start-s3.sh            (idempotent: reuses a server already answering)
#   TITO_S3_PORT   port to use (default 19900)
#   TITO_S3_BUCKET bucket to create (default tito-test)
# Then:  set -a; . target/s3.env; set +a; cargo test -p tito-store
# Stop:  kill "$(cat target/s3-server.pid)"
#
# moto keeps objects in memory; it supports multipart uploads, ListObjectsV2 pagination
# and conditional PUT (If-None-Match: *), which put_if_absent uses.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PORT="${TITO_S3_PORT:-19900}"
BUCKET="${TITO_S3_BUCKET:-tito-test}"
ENDPOINT="http://127.0.0.1:${PORT}"
mkdir -p target
LOG=target/s3-server.log
PIDFILE=target/s3-server.pid
VENV=target/moto-venv

answers() { http_answers "$ENDPOINT/"; }

find_moto() {
    if [ -x "$VENV/bin/moto_server" ]; then
        echo "$VENV/bin/moto_server"
    elif command -v moto_server >/dev/null 2>&1 && moto_server --help >/dev/null 2>&1; then
        command -v moto_server
    fi
}

if answers; then
    echo "S3 server already answering at $ENDPOINT: reusing it" >&2
else
    if ! command -v python3 >/dev/null 2>&1; then
        echo "installing python3 (apt)" >&2
        apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
    fi
    MOTO="$(find_moto || true)"
    if [ -z "$MOTO" ]; then
        echo "installing moto[server] into $VENV (PyPI)" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1'
        MOTO="$VENV/bin/moto_server"
    fi
    start_server "S3 server" "$MOTO" -H 127.0.0.1 -p "$PORT"
fi

# Create the bucket (moto accepts unsigned requests; an existing bucket is fine).
python3 - "$ENDPOINT" "$BUCKET" <<'PY'
import sys, urllib.request, urllib.error
req = urllib.request.Request(f"{sys.argv[1]}/{sys.argv[2]}", method="PUT")
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:  # BucketAlreadyOwnedByYou / BucketAlreadyExists
        sys.exit(f"cannot create bucket {sys.argv[2]}: HTTP {e.code} {e.read()[:300]!r}")
PY

cat >target/s3.env <<ENV
TITO_TEST_S3_ENDPOINT=${ENDPOINT}
TITO_TEST_S3_BUCKET=${BUCKET}
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_REGION=us-east-1
AWS_ENDPOINT_URL=${ENDPOINT}
AWS_ALLOW_HTTP=true
ENV
echo "S3-compatible server ready; variables (also in target/s3.env):" >&2
cat target/s3.env
