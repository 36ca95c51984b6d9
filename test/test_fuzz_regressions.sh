#!/usr/bin/env bash
# test_fuzz_regressions.sh — every input that once crashed a fuzz target
# (test/fuzz/regressions/TARGET/), and every seed of its corpus
# (test/fuzz/corpus/TARGET/), through that target once more: built as a plain
# program (build/replay_TARGET: the target under test/fuzz/replay.c's main;
# make test-asan builds them with the sanitizers). Each must end normally: a
# rejected input is a normal end, a crash or a sanitizer report is not.
# Ends with "test_fuzz_regressions: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_fuzz_regressions "$@"
BUILD=${BUILD:-build}
export FUZZ_TOKENIZER=tokenizer.bin   # fuzz_encode's SentencePiece tokenizer
for replay in "$BUILD"/replay_*; do
    target=${replay##*/replay_}
    for input in test/fuzz/regressions/"$target"/* test/fuzz/corpus/"$target"/*; do
        [ -f "$input" ] || continue
        if "$replay" "$input" >"$T/out" 2>&1; then ok; else fail "fuzz_$target on $input (exit $?): $(tail -3 "$T/out")"; fi
    done
done
summary
