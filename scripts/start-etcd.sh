#!/usr/bin/env bash
# A 3-node etcd cluster on 127.0.0.1 for tests, left running in the background.
#
# Usage:
#   scripts/start-etcd.sh            start the cluster (reused when already healthy), wait for
#                                    health, print the endpoints, write target/etcd.env
#   scripts/start-etcd.sh status     print each member's pid and health, and the leader
#   scripts/start-etcd.sh leader     print the number (1-3) of the current leader
#   scripts/start-etcd.sh kill N     SIGKILL member N (1-3): a crash, data dir kept
#   scripts/start-etcd.sh stop N     SIGTERM member N
#   scripts/start-etcd.sh start N    (re)start member N on its existing data dir
#   scripts/start-etcd.sh stop       stop the whole cluster
#   scripts/start-etcd.sh reset      stop the cluster and delete its data
#
# Member N listens for clients on 127.0.0.1:$((BASE + 10*N)) and for peers on the next
# port (BASE defaults to 23700: clients 23710, 23720, 23730). Data, logs and pid files
# live in $TITO_ETCD_DIR (default /tmp/tito-etcd-BASE): keyed by the ports, not by the
# checkout, so every checkout on this machine drives the same cluster. Limits: --max-request-bytes 8 MiB and --max-txn-ops 4096 (etcd's
# defaults are 1.5 MiB and 128); target/etcd.env carries them so the engine's limits()
# match. No auto-compaction is configured: etcd compacts only when asked.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${TITO_ETCD_BASE_PORT:-23700}
MAX_REQUEST_BYTES=$((8 * 1024 * 1024))
MAX_TXN_OPS=4096
DIR=${TITO_ETCD_DIR:-${TMPDIR:-/tmp}/tito-etcd-$BASE}
ENV_FILE=$PWD/target/etcd.env
TOKEN=tito-test-cluster

client_port() { echo $((BASE + 10 * $1)); }
peer_port() { echo $((BASE + 10 * $1 + 1)); }
endpoint() { echo "127.0.0.1:$(client_port "$1")"; }
endpoints() { echo "$(endpoint 1),$(endpoint 2),$(endpoint 3)"; }
initial_cluster() {
    local n out=""
    for n in 1 2 3; do out+="${out:+,}n$n=http://127.0.0.1:$(peer_port "$n")"; done
    echo "$out"
}

install_etcd() {
    if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then return; fi
    echo "start-etcd: installing etcd-server and etcd-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq etcd-server etcd-client >/dev/null
}

pid_of() {
    local f=$DIR/n$1.pid
    [[ -f $f ]] || return 1
    local pid
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

healthy() { ETCDCTL_API=3 etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; }

start_member() {
    local n=$1 state=$2
    if pid_of "$n" >/dev/null; then echo "start-etcd: member $n already running"; return; fi
    mkdir -p "$DIR"
    # An existing data dir means the member rejoins; etcd ignores the initial flags then.
    [[ -d $DIR/n$n.data/member ]] && state=existing
    # setsid + nohup: the member must outlive this script and the shell that ran it.
    setsid nohup etcd \
        --name "n$n" \
        --data-dir "$DIR/n$n.data" \
        --listen-client-urls "http://127.0.0.1:$(client_port "$n")" \
        --advertise-client-urls "http://127.0.0.1:$(client_port "$n")" \
        --listen-peer-urls "http://127.0.0.1:$(peer_port "$n")" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$n")" \
        --initial-cluster "$(initial_cluster)" \
        --initial-cluster-token "$TOKEN" \
        --initial-cluster-state "$state" \
        --max-request-bytes "$MAX_REQUEST_BYTES" \
        --max-txn-ops "$MAX_TXN_OPS" \
        --heartbeat-interval 50 --election-timeout 500 \
        --logger zap --log-outputs "$DIR/n$n.log" \
        </dev/null >>"$DIR/n$n.out" 2>&1 &
    echo $! >"$DIR/n$n.pid"
    echo "start-etcd: member $n started (pid $!)"
}

wait_healthy() {
    local eps=$1 i
    for i in $(seq 1 150); do
        if healthy "$eps"; then return 0; fi
        sleep 0.2
    done
    echo "start-etcd: cluster at $eps not healthy after 30 s; logs in $DIR" >&2
    return 1
}

write_env() {
    mkdir -p "$(dirname "$ENV_FILE")"
    cat >"$ENV_FILE" <<ENV
TITO_TEST_ETCD='$(endpoints)'
TITO_TEST_ETCD_MAX_REQUEST_BYTES='$MAX_REQUEST_BYTES'
TITO_TEST_ETCD_MAX_TXN_OPS='$MAX_TXN_OPS'
TITO_TEST_ETCD_URL='etcd://$(endpoints)/tito?max_request_bytes=$MAX_REQUEST_BYTES&max_txn_ops=$MAX_TXN_OPS'
ENV
}

leader() {
    local n
    for n in 1 2 3; do
        pid_of "$n" >/dev/null || continue
        if ETCDCTL_API=3 etcdctl --endpoints="$(endpoint "$n")" --dial-timeout=1s endpoint status -w fields 2>/dev/null \
            | awk -F' : ' '/"MemberID"/ {m=$2} /"Leader"/ {l=$2} END {exit !(m != "" && m == l)}'; then
            echo "$n"
            return 0
        fi
    done
    return 1
}

member_arg() {
    [[ ${1:-} =~ ^[123]$ ]] || { echo "start-etcd: member number must be 1, 2 or 3" >&2; exit 2; }
}

cmd=${1:-up}
case $cmd in
up)
    install_etcd
    if ! pid_of 1 >/dev/null && ! pid_of 2 >/dev/null && ! pid_of 3 >/dev/null \
        && healthy "$(endpoints)"; then
        echo "start-etcd: an etcd not started from $DIR already listens on $(endpoints);" \
            "stop it or choose other ports with TITO_ETCD_BASE_PORT" >&2
        exit 1
    fi
    for n in 1 2 3; do start_member "$n" new; done
    wait_healthy "$(endpoints)"
    write_env
    echo "start-etcd: cluster healthy; endpoints $(endpoints) (written to $ENV_FILE)"
    ;;
status)
    for n in 1 2 3; do
        if pid=$(pid_of "$n"); then
            h=unhealthy; healthy "$(endpoint "$n")" && h=healthy
            echo "member $n: pid $pid, $(endpoint "$n"), $h"
        else
            echo "member $n: not running"
        fi
    done
    echo "leader: $(leader || echo none)"
    ;;
leader) leader ;;
kill | stop)
    if [[ -z ${2:-} && $cmd == stop ]]; then
        for n in 1 2 3; do
            if pid=$(pid_of "$n"); then kill "$pid"; fi
        done
        for n in 1 2 3; do while pid_of "$n" >/dev/null; do sleep 0.1; done; done
        echo "start-etcd: cluster stopped"
        exit 0
    fi
    member_arg "${2:-}"
    sig=TERM; [[ $cmd == kill ]] && sig=KILL
    if pid=$(pid_of "$2"); then
        kill -s "$sig" "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        echo "start-etcd: member $2 $([[ $cmd == kill ]] && echo killed || echo stopped) (pid $pid)"
    else
        echo "start-etcd: member $2 not running"
    fi
    ;;
start)
    member_arg "${2:-}"
    start_member "$2" existing
    wait_healthy "$(endpoint "$2")"
    ;;
reset)
    "$0" stop
    rm -rf "$DIR" "$ENV_FILE"
    echo "start-etcd: data removed"
    ;;
*)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
