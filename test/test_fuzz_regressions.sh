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

# Bugs a plain replay cannot show (undefined behaviour the plain build lives
# through, a bad value accepted): export on the input must refuse it, saying why.
# A fuzz_hf input is the lengths of the first three files (2 bytes each), then
# config.json, model.safetensors, tokenizer.json, tokenizer_config.json (an empty one absent).
unpack_hf() {
    local lengths at=7 i=0 name
    read -r -a lengths < <(od -An -tu2 -N6 "$1")
    mkdir -p "$2"
    for name in config.json model.safetensors tokenizer.json tokenizer_config.json; do
        if [ $i -lt 3 ]; then tail -c +$at "$1" | head -c "${lengths[$i]}" >"$2/$name"; at=$((at + lengths[i]))
        else tail -c +$at "$1" >"$2/$name"; fi
        [ -s "$2/$name" ] || rm "$2/$name"
        i=$((i + 1))
    done
}
unpack_hf test/fuzz/regressions/hf/hidden-size-past-int32 "$T/wide"
expect_error "hidden_size 2^32 + 8 (was read as 8)" "hidden_size' should be a whole number of at most" "$BIN"/export -q "$T/wide" "$T/x.bin"
unpack_hf test/fuzz/regressions/hf/nan-shape "$T/nan"
expect_error "a safetensors shape of -nan (cast to an integer: undefined)" "invalid JSON at byte [0-9]+ in model.norm.weight.shape\[0\]: bad number" \
    "$BIN"/export -q "$T/nan" "$T/x.bin"
summary
