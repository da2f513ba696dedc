#!/usr/bin/env bash
# Installs the Debian packages the BUILD needs (servers the tests need are installed by
# their own start scripts). Idempotent: installs only what is missing.
#   protobuf-compiler: `protoc`, needed by etcd-client's build script (tonic/prost codegen).
set -euo pipefail

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)

if ((${#need[@]})); then
    echo "ci-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
