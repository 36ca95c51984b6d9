#!/usr/bin/env bash
# test_ppl.sh — tools/ppl, the quality measurement: on the real stories260K
# (../shared), fp32 against itself (KL exactly 0), int4 against fp32 (KL and
# perplexity in a sane band), perplexity = exp(mean NLL), windows that change
# nothing but their count; then its bad-input catalogue on random models.
# Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh" test_ppl "$@"
PPL=${BUILD:-build}/ppl   # make test-asan: build/asan/ppl
[ -x "$PPL" ] || { fail "$PPL is not built (make ppl)"; summary; }

# json_field FILE KEY: the value of a number field of ppl --json's one object
json_field() { grep -o "\"$2\": [^,}]*" "$1" | head -1 | sed 's/^[^:]*: //'; }

# holds NAME CONDITION FILE: the awk CONDITION holds over the fields of FILE,
# named as in the JSON (tokens, perplexity, mean_kl, ...)
holds() {
    local name=$1 condition=$2 file=$3 key values=()
    for key in tokens windows context mean_nll perplexity reference_mean_nll reference_perplexity mean_kl max_kl top1_agreement; do
        values+=(-v "$key=$(json_field "$file" "$key")")
    done
    if awk "${values[@]}" "BEGIN { exit !($condition) }"; then ok; else fail "$name: expected $condition; got $(cat "$file")"; fi
}

# ---- the real stories260K on the golden texts
if [ -f "$M/stories260K.bin" ] && [ -f "$M/tok512.bin" ]; then
    "$BIN"/export -q --int4 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.q4.bin"
    "$BIN"/export -q --fp32 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.f32.bin"
    cat "$M"/golden/*.txt >"$T/golden.txt"
    LEGACY=("$M/stories260K.bin" -z "$M/tok512.bin")

    # (a) fp32 against itself: the llama2.c file, its fp32 export (embedded tokenizer), and each against the other
    "$PPL" --json --reference "$M/stories260K.bin" "${LEGACY[@]}" "$T/golden.txt" >"$T/self.json"
    "$PPL" --json --reference "$T/s.f32.bin" "$T/s.f32.bin" "$T/golden.txt" >"$T/export-self.json"
    "$PPL" --json --reference "$T/s.f32.bin" "${LEGACY[@]}" "$T/golden.txt" >"$T/cross.json"
    for run in self export-self cross; do
        holds "fp32 vs itself ($run): KL exactly 0, top-1 100 %, equal perplexities" \
            "mean_kl == 0 && max_kl == 0 && top1_agreement == 100 && perplexity == reference_perplexity && tokens > 500" "$T/$run.json"
    done
    same "fp32 perplexity: llama2.c file vs its export" <(json_field "$T/self.json" perplexity) <(json_field "$T/cross.json" perplexity)

    # (b) int4 against fp32: the cost of quantization, in a band around what it measures
    # (mean KL 0.099, top-1 81 %, perplexity 3.05 vs 2.66: +15 %)
    "$PPL" --json --reference "$M/stories260K.bin" -z "$M/tok512.bin" "$T/s.q4.bin" "$T/golden.txt" >"$T/int4.json"
    holds "int4 vs fp32: 0 < mean KL < 0.15, top-1 > 80 %" "mean_kl > 0 && mean_kl < 0.15 && max_kl >= mean_kl && top1_agreement > 80" "$T/int4.json"
    holds "int4 vs fp32: perplexity within 20 % of fp32's" "perplexity > reference_perplexity * 0.8 && perplexity < reference_perplexity * 1.2" "$T/int4.json"
    holds "int4 vs fp32: the reference's figures are fp32's own" "reference_perplexity == $(json_field "$T/self.json" perplexity)" "$T/int4.json"

    # (b-types) every weight type end to end (export -> runq -> ppl): KL to fp32 strictly
    # ordered int8 < int4 < int3 < int2 (measured 0.0007, 0.099, 0.42, 3.6), and int8 close to fp32
    prev_kl=0 prev_name=none
    for bits in 8 4 3 2; do
        "$BIN"/export -q --bits $bits -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.b$bits.bin"
        "$PPL" --json --reference "$M/stories260K.bin" "$T/s.b$bits.bin" "$T/golden.txt" >"$T/b$bits.json"
        holds "int$bits vs fp32: mean KL above int$prev_name's ($prev_kl)" "mean_kl > $prev_kl && tokens > 500" "$T/b$bits.json"
        prev_kl=$(json_field "$T/b$bits.json" mean_kl) prev_name=$bits
    done
    same "--bits 4 is --int4" "$T/s.b4.bin" "$T/s.q4.bin"
    holds "int8 vs fp32: mean KL < 0.005, top-1 > 97 %" "mean_kl < 0.005 && top1_agreement > 97" "$T/b8.json"
    # each recipe runs end to end, between the plain types it mixes
    for recipe in q4-mixed:8:3 q3-mixed:4:2 q2-mixed:3:2; do
        IFS=: read -r name better worse <<<"$recipe"
        "$BIN"/export -q --recipe $name -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.$name.bin"
        "$PPL" --json --reference "$M/stories260K.bin" "$T/s.$name.bin" "$T/golden.txt" >"$T/$name.json"
        holds "$name vs fp32: mean KL between int$better's and int$worse's" \
            "mean_kl > $(json_field "$T/b$better.json" mean_kl) && mean_kl < $(json_field "$T/b$worse.json" mean_kl)" "$T/$name.json"
    done

    # (b-calib) calibrated rounding, on 24 stories sampled from the model (seeds the golden texts are not):
    # each step lowers int4's mean KL to fp32 on the golden texts (measured 0.0987 plain, 0.0941 with errors
    # weighted by activations, 0.0826 with AWQ too); the AWQ-scaled fp32 model computes what fp32 does
    tools/teacher-text "$M/stories260K.bin" "$M/tok512.bin" 24 "$T/calib.txt" 7000 2>/dev/null
    # paths relative to where the caller stands, not to the project the script moves into
    (root=$PWD models=$(realpath "$M") && cd "$T" \
        && "$root/tools/teacher-text" "$models/stories260K.bin" "$models/tok512.bin" 2 relative.txt 7000 2>/dev/null) \
        && cmp -s <(head -c 200 "$T/relative.txt") <(head -c 200 "$T/calib.txt") && ok \
        || fail "teacher-text OUT relative to the caller's directory: not written there, or not the same stories"
    "$BIN"/export -q --calib "$T/calib.txt" "$T/s.f32.bin" "$T/s.weighted.bin"
    "$BIN"/export -q --awq --calib "$T/calib.txt" "$T/s.f32.bin" "$T/s.awq.bin"
    "$BIN"/export -q --fp32 --awq --calib "$T/calib.txt" "$T/s.f32.bin" "$T/s.awq.f32.bin"
    for scheme in weighted awq awq.f32; do
        "$PPL" --json --reference "$T/s.f32.bin" "$T/s.$scheme.bin" "$T/golden.txt" >"$T/$scheme.json"
    done
    kl4=$(json_field "$T/int4.json" mean_kl)
    holds "--calib: mean KL below plain int4's ($kl4)" "mean_kl < $kl4" "$T/weighted.json"
    holds "--awq --calib: mean KL below --calib's and 0.9 of plain int4's" \
        "mean_kl < $(json_field "$T/weighted.json" mean_kl) && mean_kl < 0.9 * $kl4" "$T/awq.json"
    holds "--fp32 --awq: the scaled model computes what fp32 does (mean KL < 1e-9)" "mean_kl < 1e-9" "$T/awq.f32.json"
    cmp -s "$T/s.f32.bin" "$T/s.awq.f32.bin" && fail "--fp32 --awq wrote the weights unscaled" || ok
    echo "  int4 mean KL to fp32 on the golden texts: plain $kl4, --calib $(json_field "$T/weighted.json" mean_kl)," \
         "--awq --calib $(json_field "$T/awq.json" mean_kl)"
    # GGUF Q4_0 written with --calib holds the blocks --int4 --calib does (the same logits in runq)
    SHAPE=dim=64,ffn=128,layers=2,heads=4,kv_heads=2,vocab=512,seq_len=64
    RANDOM_MODEL=(--random $SHAPE -z "$M/tok512.bin" --calib "$T/calib.txt" --calib-context 64)
    "$BIN"/export -q "${RANDOM_MODEL[@]}" --gguf-q4_0 "$T/r.gguf" && "$BIN"/export -q --int4 "$T/r.gguf" "$T/r.back.bin" \
        && "$BIN"/export -q "${RANDOM_MODEL[@]}" "$T/r.calib.bin" \
        && ${BUILD:-build}/logits "$T/r.back.bin" "$T/gguf.logits" 1 5 9 40 \
        && ${BUILD:-build}/logits "$T/r.calib.bin" "$T/calib.logits" 1 5 9 40 || fail "--gguf-q4_0 --calib"
    same "--gguf-q4_0 --calib and --int4 --calib: the same logits" "$T/gguf.logits" "$T/calib.logits"

    # (b') the int8 KV cache (-k q8): KL to fp32 within 0.01 of the fp16 cache's
    # (measured 0.1011 against 0.0987), and not equal to it (the cache is in use)
    "$PPL" --json -k q8 --reference "$M/stories260K.bin" "$T/s.q4.bin" "$T/golden.txt" >"$T/kv8.json"
    kl16=$(json_field "$T/int4.json" mean_kl)
    holds "-k q8: mean KL near the fp16 cache's $kl16" "mean_kl != $kl16 && mean_kl < $kl16 + 0.01 && mean_kl > $kl16 - 0.01" "$T/kv8.json"
    expect_error "ppl -k on an fp32 model" "-k is for an int4 model" "$PPL" -k q8 "$T/s.f32.bin" "$T/golden.txt"

    # (b'') ROUGE-L of greedy continuations: 1 for a model against itself; int4 strays from fp32 somewhere
    "$PPL" --json --rouge 24 --rouge-windows 3 --reference "$T/s.f32.bin" "$T/s.f32.bin" "$T/golden.txt" >"$T/rouge-self.json"
    holds "--rouge: fp32 against itself continues identically" "$(json_field "$T/rouge-self.json" rouge_l_vs_reference) == 1" "$T/rouge-self.json"
    "$PPL" --json --rouge 24 --rouge-windows 3 --reference "$M/stories260K.bin" "$T/s.q4.bin" "$T/golden.txt" >"$T/rouge.json"
    rouge=$(json_field "$T/rouge.json" rouge_l_vs_reference); rouge_text=$(json_field "$T/rouge.json" rouge_l_vs_text)
    holds "--rouge: int4 against fp32 in (0.2, 1), against the text in (0, 1) ($rouge, $rouge_text)" \
        "$rouge > 0.2 && $rouge <= 1 && $rouge_text > 0 && $rouge_text < 1 && $(json_field "$T/rouge.json" rouge_windows) == 3" "$T/rouge.json"
    expect_error "--rouge without a reference" "give one" "$PPL" --rouge 8 "$T/s.q4.bin" "$T/golden.txt"

    # (c) perplexity = exp(mean NLL), for the model and the reference
    holds "perplexity = exp(mean NLL)" "perplexity / exp(mean_nll) - 1 < 1e-8 && exp(mean_nll) / perplexity - 1 < 1e-8" "$T/int4.json"
    holds "reference perplexity = exp(its mean NLL)" \
        "reference_perplexity / exp(reference_mean_nll) - 1 < 1e-8 && exp(reference_mean_nll) / reference_perplexity - 1 < 1e-8" "$T/int4.json"

    # (d) the window size changes the number of windows, not the tokens scored; --max-tokens cuts the text
    tokens=$(json_field "$T/int4.json" tokens)
    for window in 2 64 100 512; do
        "$PPL" --json -c $window --reference "$M/stories260K.bin" "$T/s.q4.bin" "$T/golden.txt" >"$T/c$window.json"
        holds "-c $window: the same $tokens tokens in ceil($tokens / $window) windows" \
            "tokens == $tokens && windows == int(($tokens + $window - 1) / $window) && context == $window" "$T/c$window.json"
    done
    holds "no window: the default is min(context, 256)" "context == 256 && windows == int(($tokens + 255) / 256)" "$T/int4.json"
    holds "-c 64 scores worse than -c 512 (less context per token)" "perplexity > $(json_field "$T/c512.json" perplexity)" "$T/c64.json"
    "$PPL" --json -c 64 --max-tokens 100 "$T/s.q4.bin" "$T/golden.txt" >"$T/max.json"
    holds "--max-tokens 100 -c 64: 100 tokens in 2 windows" "tokens == 100 && windows == 2" "$T/max.json"

    # int4 results are bit-identical for any thread count
    "$PPL" --json -T 1 "$T/s.q4.bin" "$T/golden.txt" >"$T/t1.json"
    "$PPL" --json -T 3 "$T/s.q4.bin" "$T/golden.txt" >"$T/t3.json"
    same "ppl -T 1 vs -T 3" "$T/t1.json" "$T/t3.json"

    # the table names what it measured
    "$PPL" --reference "$M/stories260K.bin" "$T/s.q4.bin" "$T/golden.txt" >"$T/table" 2>&1
    if grep -q "model (int4)" "$T/table" && grep -q "reference (fp32)" "$T/table" && grep -q "top-1 agreement" "$T/table"; then ok
    else fail "the table lacks its rows: $(cat "$T/table")"; fi

    # the same vocabulary size but another tokenizer: tok512 with its last piece's last byte changed
    cp "$M/tok512.bin" "$T/other512.bin"
    printf 'Q' | dd of="$T/other512.bin" bs=1 seek=$(($(stat -c %s "$T/other512.bin") - 1)) conv=notrunc status=none
    "$BIN"/export -q --fp32 -z "$T/other512.bin" "$M/stories260K.bin" "$T/other.f32.bin"
    expect_error "a reference with another tokenizer of the same size" "tokenizer mismatch: id 511" \
        "$PPL" --reference "$T/other.f32.bin" "$T/s.q4.bin" "$T/golden.txt"
    expect_error "a model with no tokenizer (llama2.c .bin) and no -z" "no embedded tokenizer: pass one with -z" \
        "$PPL" "$M/stories260K.bin" "$T/golden.txt"
    expect_error "-c beyond stories260K's context" "beyond the context .* \(512 positions\)" "$PPL" -c 513 "$T/s.q4.bin" "$T/golden.txt"
else
    echo "SKIP: $M/stories260K.bin or $M/tok512.bin is absent: ppl was not measured on a real model (LOUDLY)"
fi

# ---- bad input: one clear message, a non-zero exit
SMALL="dim=64,ffn=100,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=32"
"$BIN"/export -q --random "$SMALL" -z tokenizer.bin "$T/r.q4.bin" || fail "export --random"
"$BIN"/export -q --random "$SMALL" --fp32 -z tokenizer.bin "$T/r.f32.bin" || fail "export --random --fp32"
"$BIN"/export -q --random "${SMALL/vocab=32000/vocab=300}" --fp32 "$T/v300.f32.bin" || fail "export --random vocab=300"
printf 'Once upon a time, there was a little girl.\n' >"$T/text.txt"
: >"$T/empty.txt"
printf 'a' >"$T/one.txt"
R=$T/r.q4.bin
if "$PPL" --reference "$T/r.f32.bin" "$R" "$T/text.txt" >"$T/out" 2>"$T/err"; then ok; else fail "ppl on random models: $(cat "$T/err")"; fi
expect_error "missing model" "cannot open model" "$PPL" "$T/nope.bin" "$T/text.txt"
expect_error "missing text" "cannot open text" "$PPL" "$R" "$T/nope.txt"
expect_error "missing reference" "cannot open reference" "$PPL" --reference "$T/nope.bin" "$R" "$T/text.txt"
expect_error "missing tokenizer" "cannot open tokenizer" "$PPL" -z "$T/nope.bin" "$R" "$T/text.txt"
expect_error "a directory as text" "text .* is not a regular file" "$PPL" "$R" "$T"
expect_error "empty text" "gives 0 tokens; perplexity needs at least 2" "$PPL" "$R" "$T/empty.txt"
expect_error "a one-token text" "gives 1 token; perplexity needs at least 2" "$PPL" "$R" "$T/one.txt"
expect_error "vocabulary mismatch" "vocabulary mismatch: .* 32000 pieces, .* 300" "$PPL" --reference "$T/v300.f32.bin" "$R" "$T/text.txt"
expect_error "-c 1" "-c expects a whole number from 2" "$PPL" -c 1 "$R" "$T/text.txt"
expect_error "-c beyond the context" "-c 33 is beyond the context of .* \(32 positions\)" "$PPL" -c 33 "$R" "$T/text.txt"
expect_error "an int4 reference" "is int4: --reference takes an fp32 model" "$PPL" --reference "$R" "$T/r.f32.bin" "$T/text.txt"
expect_error "--max-tokens 0" "--max-tokens expects" "$PPL" --max-tokens 0 "$R" "$T/text.txt"
expect_error "an unknown flag" "unknown flag '--nope'" "$PPL" --nope "$R" "$T/text.txt"
expect_error "no text file" "needs MODEL and TEXT_FILE" "$PPL" "$R"
expect_error "a flag without its value" "needs a value" "$PPL" "$R" "$T/text.txt" -c
if "$PPL" --help | grep -q "non-overlapping windows"; then ok; else fail "ppl --help does not state the method"; fi

summary
