#!/usr/bin/env bash
# A fuzzing campaign: every target (or those named) one after another, each for
# FUZZ_SECONDS (default 600), at the lowest CPU priority, with libFuzzer's memory limits.
# Logs go to fuzz/logs/<target>.log; crashes to fuzz/artifacts/<target>/. See README.md.
set -uo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame segment chunk manifest log_record documents)
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs -Z flags; the stable toolchain allows them so
flags=(-O --debug-assertions)
nice -n 19 cargo fuzz build "${flags[@]}" || exit 1
mkdir -p logs
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    # Fork mode with -ignore_*: a crash is saved and the run goes on for its whole time.
    /usr/bin/time -f "cpu: %U s user %S s system, wall %e s" -o "logs/$t.time" \
        nice -n 19 cargo fuzz run "${flags[@]}" "$t" -- \
        -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10 \
        -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -print_final_stats=1 >"logs/$t.log" 2>&1
    echo "exit $?"
    grep -E '^#[0-9]+' "logs/$t.log" | tail -1
    cat "logs/$t.time"
    ls "artifacts/$t" 2>/dev/null | sed 's/^/artifact: /'

done
