# Shared by the scripts/start-*.sh scripts (sourced, not run).

# http_answers URL: whether anything answers HTTP at URL (an error status counts: the
# server is up).
http_answers() {
    python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

# start_server WHAT CMD...: start CMD in a session of its own (setsid + nohup: it outlives
# this script and its caller's process group), its output in $LOG and its pid in $PIDFILE,
# then wait up to 30 s until the caller's `answers` succeeds; otherwise show the log and
# exit 1.
start_server() {
    local what=$1
    shift
    echo "starting $1 on $ENDPOINT (log: $LOG)" >&2
    setsid nohup "$@" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 60); do
        answers && return 0
        sleep 0.5
    done
    echo "$what did not answer at $ENDPOINT within 30 s; log:" >&2
    tail -20 "$LOG" >&2 || true
    exit 1
}
