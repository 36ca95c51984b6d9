#!/usr/bin/env bash
# test_families.sh — each model family export reads, on a tiny synthetic
# Hugging Face directory in that family's conventions (test/write_hf_family.py:
# Llama 2, TinyLlama, Mistral, Llama 3.2 with its rope_scaling, SmolLM2),
# against an independent numpy implementation of transformers' forward pass
# (test/reference_forward.py, on Hugging Face's own row order and RoPE):
#   - run.c on the fp32 export: every position's logits within 1e-4 of the
#     logit scale (float32 against float64 arithmetic);
#   - runq on the int4 export: close to run.c on the very same int4 weights
#     (the runtime's own error), and loosely to the reference (what int4
#     costs; a bound per family, about twice what it measures);
#   - GGUF round trips give the same logits bit for bit;
#   - the rope_freqs tensor holds llama.cpp's rope_factors, and the
#     rope_scaling kinds runq does not compute are refused.
# Needs numpy (Debian's python3-numpy: installed as root when missing, like
# test_arm's packages; else the suite skips loudly).
# Ends with "test_families: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_families "$@"
LOGITS=${BUILD:-build}/logits
TRAIN=${BUILD:-build}/train
# 24 tokens, so RoPE turns through many positions; ids below every family's vocabulary
TOKENS="1 17 250 33 4 99 120 7 7 7 64 200 5 281 42 13 8 101 150 3 77 29 260 11"
# family:bound on the mean KL(reference || int4); measured 0.065-0.077 untied, 0.22-0.25 tied
FAMILIES="llama2:0.15 tinyllama:0.15 mistral:0.15 llama3.2:0.45 smollm2:0.5"

# ---- numpy, for the reference
PY=$(python_with numpy python3-numpy)
if [ -z "$PY" ]; then
    echo "SKIP: ======== model families not compared with the reference: no python3 with numpy"
    echo "SKIP: (install as root: apt-get install python3-numpy) ========"
    summary
fi

export PYTHONDONTWRITEBYTECODE=1   # compare_logits.py imports reference_forward.py: no __pycache__ in test/
compare() { "$PY" test/compare_logits.py "$@"; }
# below NAME VALUE BOUND: VALUE < BOUND; at_least NAME VALUE BOUND: VALUE >= BOUND
below() { if awk -v v="$2" -v b="$3" 'BEGIN { exit !(v < b) }'; then ok; else fail "$1: $2, expected below $3"; fi; }
at_least() { if awk -v v="$2" -v b="$3" 'BEGIN { exit !(v >= b) }'; then ok; else fail "$1: $2, expected at least $3"; fi; }
# same_logits NAME A B: bit-identical logits
same_logits() { if cmp -s "$2" "$3"; then ok; else fail "$1: the logits differ"; fi; }

# ---- every family: write, export, run, compare
for entry in $FAMILIES; do
    family=${entry%%:*} int4_bound=${entry#*:}
    dir=$T/$family   # the Hugging Face directory; $dir.* are made from it
    "$PY" test/write_hf_family.py "$family" "$dir" || { fail "$family: write_hf_family.py"; continue; }
    "$BIN"/export -q --fp32 -z "$dir/tokenizer.bin" "$dir" "$dir.f32.bin" \
        && "$BIN"/export -q --int4 -z "$dir/tokenizer.bin" "$dir" "$dir.q4.bin" \
        && "$BIN"/export -q --fp32 "$dir.q4.bin" "$dir.deq.bin" && ok || { fail "$family: export"; continue; }
    "$PY" test/reference_forward.py "$dir" $TOKENS --out "$dir.ref.npy" && ok || { fail "$family: reference_forward.py"; continue; }
    for model in f32 q4 deq; do
        $LOGITS "$dir.$model.bin" "$dir.$model.out" $TOKENS && ok || fail "$family: logits of $dir.$model.bin"
    done

    read -r fp32_diff scale runtime_kl runtime_top1 int4_kl int4_top1 rope rope_bands <<<"$(compare family "$dir")"
    below "$family: run.c (fp32) against the reference, max |diff| / max |logit|" "$fp32_diff" 1e-4
    below "$family: runq against run.c on the same int4 weights, mean KL" "$runtime_kl" 0.005
    at_least "$family: runq against run.c on the same int4 weights, top-1 agreement" "$runtime_top1" 0.85
    below "$family: int4 against the reference, mean KL" "$int4_kl" "$int4_bound"
    echo "  $family: fp32 max |diff| $fp32_diff of logits up to $scale; int4 mean KL $int4_kl (top-1 $int4_top1)" \
         "vs reference, $runtime_kl (top-1 $runtime_top1) vs run.c on its weights; rope_freqs $rope${rope_bands:+ (kept/blended/divided: $rope_bands)}"
    if [ "$rope" = absent ]; then ok
    elif [ -z "$rope_bands" ]; then fail "$family: rope_freqs $rope"
    else
        below "$family: rope_freqs against the reference's inv_freq ratio" "$rope" 1e-6
        read -r kept blended divided <<<"$rope_bands"
        [ "$kept" -gt 0 ] && [ "$blended" -gt 0 ] && [ "$divided" -gt 0 ] && ok \
            || fail "$family: the frequencies do not fall in all three rope_scaling bands: $rope_bands"
    fi

    # GGUF and back: the same weights, rope_freqs.weight included
    "$BIN"/export -q --gguf-f32 -z "$dir/tokenizer.bin" "$dir" "$dir.gguf" \
        && "$BIN"/export -q --fp32 "$dir.gguf" "$dir.gguf.f32.bin" && $LOGITS "$dir.gguf.f32.bin" "$dir.gguf.out" $TOKENS \
        && same_logits "$family: Hugging Face -> GGUF f32 -> fp32" "$dir.f32.out" "$dir.gguf.out" \
        || fail "$family: GGUF f32 round trip"
done

# ---- Llama 3.2's int4 weights through GGUF Q4_0 and back: the same blocks, the same rope_freqs
dir=$T/llama3.2
"$BIN"/export -q --gguf-q4_0 "$dir.q4.bin" "$dir.q4_0.gguf" && "$BIN"/export -q --int4 "$dir.q4_0.gguf" "$dir.gguf.q4.bin" \
    && $LOGITS "$dir.gguf.q4.bin" "$dir.gguf.q4.out" $TOKENS \
    && same_logits "llama3.2: int4 -> GGUF Q4_0 -> int4" "$dir.q4.out" "$dir.gguf.q4.out" || fail "llama3.2: GGUF Q4_0 round trip"

# ---- Mistral 7B v0.1's sliding_window: the context capped there, where full
# attention is exact (the same logits as without a window); a bad window refused
mistral=$T/mistral
compare set-config "$mistral" "$T/mistral-window" sliding_window 16
"$BIN"/export -q --int4 -z "$mistral/tokenizer.bin" "$T/mistral-window" "$T/window.q4.bin" 2>"$T/window.err" \
    && grep -q "capped at 16 positions" "$T/window.err" && [ "$(compare seq-len "$T/window.q4.bin")" = 16 ] && ok \
    || fail "mistral: sliding_window 16 should cap the context at 16: $(cat "$T/window.err")"
compare set-config "$mistral" "$T/mistral-wide-window" sliding_window 4096
"$BIN"/export -q --int4 -z "$mistral/tokenizer.bin" "$T/mistral-wide-window" "$T/wide.q4.bin" 2>/dev/null \
    && $LOGITS "$T/wide.q4.bin" "$T/wide.out" $TOKENS && same_logits "mistral: a window wider than the tokens" "$mistral.q4.out" "$T/wide.out" \
    || fail "mistral: export with sliding_window 4096"
compare set-config "$mistral" "$T/mistral-no-window" sliding_window 0
expect_error "sliding_window 0" "sliding_window must be positive" "$BIN"/export -q "$T/mistral-no-window" "$T/x.bin"

# ---- rope_scaling export does not compute, and bad values: refused, naming what
for kind in linear dynamic yarn longrope; do
    compare rope-scaling "$dir" "$T/rope-$kind" "{\"rope_type\": \"$kind\", \"factor\": 4.0}"
    expect_error "rope_scaling $kind" "rope_scaling of type '$kind' is not supported" "$BIN"/export -q "$T/rope-$kind" "$T/x.bin"
done
compare rope-scaling "$dir" "$T/rope-old-key" '{"type": "yarn", "factor": 4.0}'
expect_error "rope_scaling named by the older key 'type'" "type 'yarn'" "$BIN"/export -q "$T/rope-old-key" "$T/x.bin"
compare rope-scaling "$dir" "$T/rope-bands" \
    '{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}'
expect_error "llama3 rope_scaling with high_freq_factor below low_freq_factor" "low_freq_factor < high_freq_factor" \
    "$BIN"/export -q "$T/rope-bands" "$T/x.bin"
[ ! -e "$T/x.bin" ] && ok || fail "a refused export left $T/x.bin behind"
compare rope-scaling "$dir" "$T/rope-default" '{"rope_type": "default"}'
"$BIN"/export -q --fp32 -z "$dir/tokenizer.bin" "$T/rope-default" "$T/default.bin" \
    && [ "$(compare rope-freqs "$T/default.bin" "$T/rope-default")" = absent ] && ok \
    || fail "rope_type 'default' (plain RoPE) should export without rope_freqs"

# ---- run and runq refuse a rope_freqs divisor that is not positive
cp "$dir.f32.bin" "$T/bad.f32.bin" && compare set-rope-freq "$T/bad.f32.bin" -1
expect_error "run: negative rope_freqs" "rope_freqs\[0\] is -1" "$BIN"/run "$T/bad.f32.bin" -n 4
cp "$dir.q4.bin" "$T/bad.q4.bin" && compare set-rope-freq "$T/bad.q4.bin" 0
expect_error "runq: zero rope_freqs" "rope_freqs\[0\] is 0" "$BIN"/runq "$T/bad.q4.bin" -n 4

# ---- the trainer cannot train RoPE scaling, and says so
for i in $(seq 1 50); do echo "Once upon a time there was a cat."; done >"$T/corpus.txt"
expect_error "train on a model with rope_freqs" "rope_freqs" "$TRAIN" pretrain "$T/corpus.txt" --init "$dir.f32.bin" -o "$T/t.bin" -q

summary
