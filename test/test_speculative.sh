#!/usr/bin/env bash
# test_speculative.sh — runq's speculative decoding (--lookup N, --draft FILE):
#   - at temperature 0 the text is plain decoding's, byte for byte, on the
#     default model and on stories260K exported by ./export, over several
#     prompts, -n, draft lengths and drafts (int2, layers dropped, the model
#     itself), threads and KV cache types; the stats line's decode_tokens too;
#   - drafts are used: the model as its own draft is always accepted, and
#     --lookup takes more than one token a pass where the text repeats;
#   - with sampling, a seed reproduces its text, and build/speculative_stats
#     holds the first two tokens' counts to the exact distribution (and
#     catches two wrong acceptance rules);
#   - bad input: one clear message and a non-zero exit.
# Speed is tools/bench-speculative's, never a test's. Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh" test_speculative "$@"
STATS=${BUILD:-build}/speculative_stats
[ -x "$STATS" ] || make -s "$STATS" >/dev/null || fail "cannot build $STATS"

DEFAULT=models/tinystories-edge
"$BIN"/export -q --drop-layers 2,3 $DEFAULT.f32.bin "$T/d.drop.bin"
"$BIN"/export -q --bits 2 $DEFAULT.f32.bin "$T/d.q2.bin"
models=("$DEFAULT.q4.bin:$T/d.drop.bin:$T/d.q2.bin")
if [ -f "$M/stories260K.bin" ]; then
    "$BIN"/export -q -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.q4.bin"
    "$BIN"/export -q --drop-layers 2,3 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.drop.bin"
    "$BIN"/export -q --bits 2 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.q2.bin"
    models+=("$T/s.q4.bin:$T/s.drop.bin:$T/s.q2.bin")
else
    echo "SKIP: $M/stories260K.bin is absent: speculative decoding tested on the default model only (LOUDLY)"
fi

# decode_tokens of runq's stats line (stderr in $1)
decode_tokens() { sed -n 's/^stats:.* decode_tokens=\([0-9]*\).*/\1/p' "$1"; }

# ---- temperature 0: the same text and the same token count as plain decoding
story="Lily went to the park. She saw a big red ball. She played with the ball all day."
for entry in "${models[@]}"; do
    IFS=: read -r model drop q2 <<<"$entry"
    name=$(basename "$model")
    for prompt in "Once upon a time" "The cat" "$story $story Lily went"; do
        for n in 60 256; do
            "$BIN"/runq "$model" -t 0 -n $n -i "$prompt" >"$T/plain" 2>"$T/plain.err"
            for flags in "--lookup 1" "--lookup 4" "--lookup 63" "--draft $drop" "--draft $q2 --draft-max 3" "--draft $model"; do
                # shellcheck disable=SC2086
                "$BIN"/runq "$model" -t 0 -n $n -i "$prompt" $flags >"$T/spec" 2>"$T/spec.err"
                same "$name -n $n '${prompt:0:16}' ${flags/$T\//}: greedy text" "$T/plain" "$T/spec"
                [ "$(decode_tokens "$T/plain.err")" = "$(decode_tokens "$T/spec.err")" ] && ok ||
                    fail "$name -n $n ${flags/$T\//}: decode_tokens $(decode_tokens "$T/spec.err"), plain $(decode_tokens "$T/plain.err")"
            done
        done
    done
    # past EOS to the last position, two threads, an int8 KV cache
    "$BIN"/runq "$model" -t 0 -n 200 --ignore-eos -T 2 -k q8 >"$T/plain" 2>/dev/null
    "$BIN"/runq "$model" -t 0 -n 200 --ignore-eos -T 2 -k q8 --lookup 8 >"$T/spec" 2>/dev/null
    same "$name --ignore-eos -T 2 -k q8 --lookup 8" "$T/plain" "$T/spec"
    "$BIN"/runq "$model" -t 0 -n 200 --ignore-eos -T 2 -k q8 --draft "$drop" >"$T/spec" 2>/dev/null
    same "$name --ignore-eos -T 2 -k q8 --draft (layers dropped)" "$T/plain" "$T/spec"

    # the model as its own draft: every drafted token accepted, at -t 0 and sampling
    # (an empty prompt is BOS alone: 120 tokens to emit, 20 passes of 5 drafted + 1)
    for t in 0 1; do
        "$BIN"/runq "$model" -t $t -s 5 -n 121 --ignore-eos --draft "$model" --draft-max 5 >/dev/null 2>"$T/err"
        if grep -q "^speculative: 6.00 tokens/pass, 100 % accepted" "$T/err"; then ok
        else fail "$name as its own draft (-t $t): expected 6.00 tokens/pass, 100 % accepted: $(grep '^speculative' "$T/err")"; fi
    done
    # sampling: a seed gives the same text again
    for flags in "--lookup 6" "--draft $drop"; do
        # shellcheck disable=SC2086
        "$BIN"/runq "$model" -t 0.9 -p 0.9 -s 11 -n 150 $flags >"$T/s1" 2>/dev/null
        # shellcheck disable=SC2086
        "$BIN"/runq "$model" -t 0.9 -p 0.9 -s 11 -n 150 -T 2 $flags >"$T/s2" 2>/dev/null
        same "$name seeded sampling ${flags/$T\//} is reproducible" "$T/s1" "$T/s2"
    done
done

# --lookup pays where the text repeats (the model's greedy text falls into a
# loop here): the stats line's figures, and more than one token a pass
"$BIN"/runq $DEFAULT.q4.bin -t 0 -n 256 -i "The cat sat on the mat. The cat sat on the mat. The cat" --lookup 8 \
    >/dev/null 2>"$T/err"
per_pass=$(sed -n 's/^stats:.* tokens_per_pass=\([0-9.]*\).*/\1/p' "$T/err")
if grep -Eq '^speculative: [0-9.]+ tokens/pass, [0-9]+ % accepted' "$T/err" &&
   awk -v v="${per_pass:-0}" 'BEGIN { exit !(v >= 1.5) }'; then ok
else fail "--lookup 8 on a repeating text: expected >= 1.5 tokens/pass in the stats line: $(grep -E '^(speculative|stats)' "$T/err")"; fi

# a draft of a shorter context drafts only within it: a prompt past its
# context leaves nothing drafted, the text still plain decoding's
if [ -f "$M/tok512.bin" ]; then
    "$BIN"/export -q --random dim=64,ffn=172,layers=2,heads=8,kv_heads=4,vocab=512,seq_len=64 -z "$M/tok512.bin" "$T/short.bin"
    long_prompt="$story $story $story $story"
    "$BIN"/runq $DEFAULT.q4.bin -t 0 -n 250 -i "$long_prompt" >"$T/plain" 2>/dev/null
    "$BIN"/runq $DEFAULT.q4.bin -t 0 -n 250 -i "$long_prompt" --draft "$T/short.bin" >"$T/spec" 2>"$T/err"
    same "a draft of 64 positions under a longer prompt" "$T/plain" "$T/spec"
    grep -q "^speculative: .* 0 drafted" "$T/err" && ok || fail "a prompt past the draft's context: expected 0 drafted: $(grep '^speculative' "$T/err")"
    "$BIN"/runq $DEFAULT.q4.bin -t 0 -n 200 >"$T/plain" 2>/dev/null
    "$BIN"/runq $DEFAULT.q4.bin -t 0 -n 200 --draft "$T/short.bin" >"$T/spec" 2>/dev/null
    same "a draft of 64 positions, -n 200" "$T/plain" "$T/spec"
fi

# ---- sampling keeps the model's distribution (and a wrong rule is caught)
if [ -f "$T/s.q4.bin" ]; then target=$T/s.q4.bin draft=$T/s.drop.bin; else target=$DEFAULT.q4.bin draft=$T/d.drop.bin; fi
trials=4000
[ "${BUILD:-build}" = build ] || trials=2000   # the sanitizers' build runs it about 3x slower
"$STATS" "$target" "$draft" $trials >"$T/stats" 2>&1
cat "$T/stats"
line=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$T/stats" | tail -1)
if [ -n "$line" ]; then passed=$((passed + ${line%% passed*})) f=${line#*, } failed=$((failed + ${f%% failed*}))
else fail "speculative_stats printed no count"; fi

# ---- bad input
q4=$DEFAULT.q4.bin
"$BIN"/export -q --random stories260K "$T/other-tokenizer.bin"
"$BIN"/export -q --random dim=64,ffn=172,layers=2,heads=8,kv_heads=4,vocab=600 "$T/vocab600.bin"
expect_error "a draft of another vocabulary size" "vocabulary of 600 tokens but .* has 512: a draft must share the model's vocabulary" \
    "$BIN"/runq $q4 --draft "$T/vocab600.bin"
expect_error "a draft with another tokenizer" "tokenizer is not .*: a draft must share the model's vocabulary" \
    "$BIN"/runq $q4 --draft "$T/other-tokenizer.bin"
expect_error "a draft that is not there" "cannot open $T/none.bin" "$BIN"/runq $q4 --draft "$T/none.bin"
expect_error "an fp32 draft" "is f32; runq runs quantized checkpoints" "$BIN"/runq $q4 --draft $DEFAULT.f32.bin
expect_error "--lookup 0" "--lookup expects a whole number from 1 to 63, got '0'" "$BIN"/runq $q4 --lookup 0
expect_error "--lookup past a batch" "--lookup expects a whole number from 1 to 63, got '64'" "$BIN"/runq $q4 --lookup 64
expect_error "--draft-max 0" "--draft-max expects a whole number from 1 to 63" "$BIN"/runq $q4 --draft $q4 --draft-max 0
expect_error "--draft-max without --draft" "--draft-max bounds --draft's drafts" "$BIN"/runq $q4 --draft-max 4
expect_error "--lookup with --draft" "--lookup and --draft are two kinds of draft: give one" "$BIN"/runq $q4 --lookup 2 --draft $q4
expect_error "speculative chat" "runs in generate mode only" "$BIN"/runq $q4 --lookup 2 -m chat
expect_error "--lookup without its number" "flag --lookup needs a value" "$BIN"/runq $q4 --lookup
summary
