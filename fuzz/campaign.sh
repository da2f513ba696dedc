#!/usr/bin/env bash
# A fuzzing campaign: every target (or those named) one after another, each until it has
# had FUZZ_CPU_SECONDS of CPU (user + system, default 600) — on a shared machine wall time
# says little — in slices of FUZZ_SLICE_SECONDS wall time (default 120), at the lowest CPU
# priority (FUZZ_NICE, default 19), with libFuzzer's memory limits. Each slice goes on from
# the corpus the previous one grew. Logs go to fuzz/logs/<target>.<n>.log; crashes to
# fuzz/artifacts/<target>/. See README.md.
set -uo pipefail
cd "$(dirname "$0")"
budget=${FUZZ_CPU_SECONDS:-600}
slice=${FUZZ_SLICE_SECONDS:-120}
niceness=${FUZZ_NICE:-19}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame segment chunk manifest log_record documents)
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs -Z flags; the stable toolchain allows them so
flags=(-O --debug-assertions)
nice -n "$niceness" cargo fuzz build "${flags[@]}" || exit 1
mkdir -p logs
for t in "${targets[@]}"; do
    echo "== $t: until ${budget} CPU s"
    cpu=0 wall=0 n=0 total=0
    while [ "$cpu" -lt "$budget" ]; do
        n=$((n + 1))
        # Fork mode with -ignore_*: a crash is saved and the run goes on for its whole time.
        /usr/bin/time -f "%U %S %e" -o "logs/$t.$n.time" \
            nice -n "$niceness" cargo fuzz run "${flags[@]}" "$t" -- \
            -max_total_time="$slice" -rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10 \
            -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
            -print_final_stats=1 >"logs/$t.$n.log" 2>&1
        read -r u s e <"logs/$t.$n.time"
        cpu=$(awk -v c="$cpu" -v u="$u" -v s="$s" 'BEGIN { printf "%d", c + u + s }')
        wall=$(awk -v w="$wall" -v e="$e" 'BEGIN { printf "%d", w + e }')
        # Fork mode prints no final stats: the last `#N` status line counts the slice's runs.
        execs=$(grep -hoE '^#[0-9]+' "logs/$t.$n.log" | tail -1 | tr -d '#')
        total=$((${total:-0} + ${execs:-0}))
        echo "   slice $n: ${execs:-?} executions; ${cpu} CPU s, ${wall} wall s so far"
    done
    grep -hE '^#[0-9]+' "logs/$t.$n.log" | tail -1
    echo "$t: $n slices, ${total} executions, ${cpu} CPU s, ${wall} wall s" | tee "logs/$t.summary"
    ls "artifacts/$t" 2>/dev/null | sed 's/^/artifact: /'
done
