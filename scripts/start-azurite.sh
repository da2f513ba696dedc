#!/usr/bin/env bash
# Starts Azurite, the Azure Blob Storage emulator (npm package azurite), on 127.0.0.1 for
# the tests, creates the test container, and writes the variables the tests read to
# target/azure.env.
#
# Usage: scripts/start-azurite.sh          (idempotent: reuses a server already answering)
#   TITO_AZURE_PORT      blob port to use (default 19910)
#   TITO_AZURE_CONTAINER container to create (default tito-test)
# Then:  set -a; . target/azure.env; set +a; cargo test -p tito-store --test azure
# Stop:  kill "$(cat target/azurite.pid)"
#
# Azurite keeps blobs in memory here (--inMemoryPersistence) and sends no telemetry
# (--disableTelemetry: without a network it crashes on the failed lookup). It answers to
# the well-known development account (devstoreaccount1), which object_store uses with
# AZURE_STORAGE_USE_EMULATOR=true, and honours If-None-Match: * (create-only puts).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PORT="${TITO_AZURE_PORT:-19910}"
CONTAINER="${TITO_AZURE_CONTAINER:-tito-test}"
ENDPOINT="http://127.0.0.1:${PORT}"
mkdir -p target
LOG=target/azurite.log
PIDFILE=target/azurite.pid
PREFIX=target/azurite-npm
BIN="$PREFIX/node_modules/.bin/azurite-blob"

answers() { http_answers "$ENDPOINT/devstoreaccount1?comp=list"; }

if answers; then
    echo "Azurite already answering at $ENDPOINT: reusing it" >&2
else
    if ! command -v npm >/dev/null 2>&1; then
        echo "installing nodejs and npm (apt)" >&2
        apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    fi
    if [ ! -x "$BIN" ]; then
        echo "installing azurite into $PREFIX (npm)" >&2
        npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error 'azurite@^3.35' >&2
    fi
    start_server "Azurite" "$BIN" --blobHost 127.0.0.1 --blobPort "$PORT" --inMemoryPersistence \
        --skipApiVersionCheck --disableTelemetry --silent
fi

# Create the container with a Shared Key request of the development account (Azurite
# accepts nothing unsigned); an existing container (409) is fine.
python3 - "$ENDPOINT" "$CONTAINER" <<'PY'
import base64, hashlib, hmac, sys, urllib.request, urllib.error
from email.utils import formatdate
endpoint, container = sys.argv[1], sys.argv[2]
account = "devstoreaccount1"
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date, version = formatdate(usegmt=True), "2021-08-06"
path = f"/{account}/{container}"
ctype = "application/octet-stream"  # urllib would add a form type to a body otherwise
to_sign = "\n".join(["PUT", "", "", "", "", ctype, "", "", "", "", "", "",
                     f"x-ms-date:{date}", f"x-ms-version:{version}",
                     f"/{account}{path}", "restype:container"])
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{endpoint}{path}?restype=container", method="PUT", data=b"",
                             headers={"x-ms-date": date, "x-ms-version": version,
                                      "Content-Type": ctype,
                                      "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:
        sys.exit(f"cannot create container {container}: HTTP {e.code} {e.read()[:300]!r}")
PY

cat >target/azure.env <<ENV
TITO_TEST_AZURE_CONTAINER=${CONTAINER}
AZURE_STORAGE_USE_EMULATOR=true
AZURITE_BLOB_STORAGE_URL=${ENDPOINT}
ENV
echo "Azurite ready; variables (also in target/azure.env):" >&2
cat target/azure.env
