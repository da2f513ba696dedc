#!/usr/bin/env bash
# Installs the Debian packages the BUILD needs (servers the tests need are installed by
# their own start scripts). Idempotent: installs only what is missing.
#   (none today: etcd-client's build script uses the protoc shipped by the
#   protoc-bin-vendored crate, through scripts/protoc and .cargo/config.toml)
set -euo pipefail

need=()

if ((${#need[@]})); then
    echo "ci-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
