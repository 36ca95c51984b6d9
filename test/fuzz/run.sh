#!/usr/bin/env bash
# run.sh — make fuzz: each target in turn (one process, one core: the
# machine is shared) for FUZZ_SECONDS, from its seed corpus
# test/fuzz/corpus/TARGET plus what earlier runs found (build/fuzz/corpus/TARGET,
# kept between runs). Prints per target the executions and whether it crashed;
# a crashing input is saved as build/fuzz/crashes/TARGET-crash-*: fix the bug,
# then copy the input into test/fuzz/regressions/TARGET/ (make test replays it).
#   test/fuzz/run.sh TARGET...       (FUZZ_SECONDS, default 60)
# It is not part of make test (which only replays the corpora): fuzzing takes
# minutes.
set -u
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
mkdir -p build/fuzz/crashes
crashed=0
for target in "$@"; do
    mkdir -p "build/fuzz/corpus/$target"
    log=build/fuzz/$target.log
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: one that needs 2 GB a memory bug
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "build/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="build/fuzz/crashes/$target-" "build/fuzz/corpus/$target" "test/fuzz/corpus/$target" >"$log" 2>&1
    status=$?
    runs=$(grep -Eo '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$')
    corpus=$(ls "build/fuzz/corpus/$target" | wc -l)
    if [ $status -eq 0 ]; then
        printf '%-22s %10s executions in %s s, no crash (corpus %s inputs)\n' "fuzz_$target" "${runs:-?}" "$seconds" "$corpus"
    else
        crashed=$((crashed + 1))
        artifact=$(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //')
        printf '%-22s %10s executions, CRASHED: %s (log %s)\n' "fuzz_$target" "${runs:-?}" "${artifact:-see log}" "$log"
        grep -m3 -E 'ERROR|runtime error|SUMMARY' "$log" | sed 's/^/    /'
    fi
done
[ $crashed -eq 0 ]
