#!/usr/bin/env bash
# test_compress.sh — export's compression as a user runs it: the 2:4 sparse
# int4 type (q4s) written, versioned and run. Ends with "N passed, N failed".
# (GPTQ's and SparseGPT's arithmetic is test_gptq's; each kernel's, test_quant's.)
. "$(dirname "$0")/lib.sh" test_compress "$@"
DEFAULT=models/tinystories-edge
# version NAME FILE EXPECTED: the checkpoint's version field
version() { local v; v=$(od -A n -t u4 -j 4 -N 4 "$2" | tr -d ' '); [ "$v" = "$3" ] && ok || fail "$1: version $v, expected $3"; }

# ---- q4s: only a file holding it is version 4; a plain int4 export keeps its bytes
"$BIN"/export -q --int4 "$DEFAULT.f32.bin" "$T/plain.q4.bin" || fail "export --int4 the default model"
same "a plain int4 export is the committed default model, byte for byte" "$T/plain.q4.bin" "$DEFAULT.q4.bin"
version "plain int4" "$T/plain.q4.bin" 3
ALL_Q4S=wq=q4s,wk=q4s,wv=q4s,wo=q4s,w1=q4s,w2=q4s,w3=q4s
"$BIN"/export -q --tensor-type $ALL_Q4S "$DEFAULT.f32.bin" "$T/s.q4s.bin" || fail "export --tensor-type ...=q4s"
version "2:4 sparse" "$T/s.q4s.bin" 4
# 3.25 bits a weight in the layers (q4s's group of 64 when none is named) against int4's 4.5
[ "$(stat -c %s "$T/s.q4s.bin")" -lt "$(stat -c %s "$T/plain.q4.bin")" ] && ok || fail "the q4s file is not smaller than int4's"
# the same text on every kernel set and thread count (test_quant holds the kernels bit for bit)
"$BIN"/runq "$T/s.q4s.bin" -t 0 -n 120 -T 1 -i "Once upon a time" >"$T/g1" 2>/dev/null && [ -s "$T/g1" ] && ok \
    || fail "runq on a q4s model gave no text"
"$BIN"/runq "$T/s.q4s.bin" -t 0 -n 120 -T 3 -i "Once upon a time" >"$T/g3" 2>/dev/null
RUNQ_KERNELS=scalar "$BIN"/runq "$T/s.q4s.bin" -t 0 -n 120 -T 2 -i "Once upon a time" >"$T/gs" 2>/dev/null
same "q4s: -T 1 and -T 3" "$T/g1" "$T/g3"
same "q4s: the scalar kernels and the fastest" "$T/g1" "$T/gs"
grep -q "Once upon a time" "$T/g1" && ok || fail "q4s greedy text: $(head -c 80 "$T/g1")"
# re-exported: its blocks copied exactly; to int4 and fp32 through the dequantized weights
"$BIN"/export -q --tensor-type $ALL_Q4S "$T/s.q4s.bin" "$T/again.q4s.bin"
same "a q4s re-export copies its blocks" "$T/s.q4s.bin" "$T/again.q4s.bin"
"$BIN"/export -q --fp32 "$T/s.q4s.bin" "$T/s.f32.bin" && ok || fail "export --fp32 of a q4s file"
# a version 3 file that says it holds q4s is refused by name (the plain int4 export, version 3, with
# layers.0.wq's type set to q4s's 6), and an old reader refuses version 4 by its number
cp "$T/plain.q4.bin" "$T/v3.bin"
at=$(grep -obaF 'layers.0.wq' "$T/v3.bin" | head -1 | cut -d: -f1)   # the entry's name; its type follows 64 bytes on
printf '\x06' | dd of="$T/v3.bin" bs=1 seek=$((at + 64)) conv=notrunc status=none
expect_error "a version 3 file holding q4s" "tensor 'layers.0.wq' is q4s, which version 3 files cannot hold \(version 4 and later\)" \
    "$BIN"/runq "$T/v3.bin" -n 2
cp "$T/s.q4s.bin" "$T/v5.bin" && printf '\x05' | dd of="$T/v5.bin" bs=1 seek=4 conv=notrunc status=none
expect_error "version 5" "checkpoint version 5, this runq reads versions 1 to 4" "$BIN"/runq "$T/v5.bin" -n 2
expect_error "--tensor-type with an unknown type names q4s" "the type must be q8, q4, q3, q2 \(or 8, 4, 3, 2\) or q4s" \
    "$BIN"/export --tensor-type w1=q5 "$DEFAULT.f32.bin" "$T/never.bin"
[ ! -e "$T/never.bin" ] && ok || fail "a refused export left a file"

# ---- GPTQ, pruning and SmoothQuant through the command line, on the default model: a calibration text of
# 16 stories it samples (seeds 1-16) and an evaluation text of 8 others (seeds 101-108)
PPL=${BUILD:-build}/ppl   # make test-asan: build/asan/ppl
[ -x "$PPL" ] || { fail "$PPL is not built (make ppl)"; summary; }
sample() { for seed in $(seq "$1" "$2"); do "$BIN"/run "$DEFAULT.f32.bin" -s "$seed" -n 256 2>/dev/null | grep -v '^[[:space:]]*$'; echo; done; }
sample 1 16 >"$T/calib.txt"
sample 101 108 >"$T/eval.txt"
# kl NAME MODEL: its mean KL to the fp32 model on the evaluation text, into $T/NAME.kl
kl() { "$PPL" --json --reference "$DEFAULT.f32.bin" "$2" "$T/eval.txt" 2>/dev/null | grep -o '"mean_kl": [^,}]*' | sed 's/.*: //' >"$T/$1.kl"
       [ -s "$T/$1.kl" ] && ok || fail "ppl on $1"; }
below() { awk -v a="$(cat "$T/$1.kl")" -v b="$(cat "$T/$2.kl")" 'BEGIN { exit !(a < b) }' && ok || fail "$1's mean KL $(cat "$T/$1.kl") is not below $2's $(cat "$T/$2.kl")"; }
CAL=(--calib "$T/calib.txt" --calib-windows 6)
for bits in 4 3; do
    "$BIN"/export -q --bits $bits "${CAL[@]}" "$DEFAULT.f32.bin" "$T/calib$bits.bin" && kl calib$bits "$T/calib$bits.bin"
    "$BIN"/export -q --bits $bits --gptq "${CAL[@]}" "$DEFAULT.f32.bin" "$T/gptq$bits.bin" && kl gptq$bits "$T/gptq$bits.bin"
    below gptq$bits calib$bits   # the issue's figure: GPTQ below calibrated rounding at int4 and int3
done
"$BIN"/export -q --gptq --awq "${CAL[@]}" "$DEFAULT.f32.bin" "$T/gptq-awq.bin" && kl gptq-awq "$T/gptq-awq.bin"
below gptq-awq calib4
echo "  mean KL to fp32: int4 --calib $(cat "$T/calib4.kl"), --gptq $(cat "$T/gptq4.kl"), --gptq --awq $(cat "$T/gptq-awq.kl");" \
     "int3 --calib $(cat "$T/calib3.kl"), --gptq $(cat "$T/gptq3.kl")"
# SparseGPT's updates beat Wanda's mask alone, at 50 % and at 2:4 (pruned in fp32, then rounded to int4)
for sparsity in 0.5 2:4; do
    for method in wanda sparsegpt; do
        "$BIN"/export -q --prune $method --sparsity $sparsity "${CAL[@]}" "$DEFAULT.f32.bin" "$T/$method.bin" && kl "$method$sparsity" "$T/$method.bin"
    done
    below "sparsegpt$sparsity" "wanda$sparsity"
done
version "2:4 pruning writes q4s" "$T/sparsegpt.bin" 4
echo "  mean KL to fp32, int4: Wanda 50 % $(cat "$T/wanda0.5.kl"), SparseGPT 50 % $(cat "$T/sparsegpt0.5.kl"); 2:4 (q4s): Wanda" \
     "$(cat "$T/wanda2:4.kl"), SparseGPT $(cat "$T/sparsegpt2:4.kl")"
# folding SmoothQuant's scales into the norms leaves the fp32 model's function as it was
"$BIN"/export -q --fp32 --smooth 0.5 "${CAL[@]}" "$DEFAULT.f32.bin" "$T/smooth.f32.bin" && kl smooth.f32 "$T/smooth.f32.bin"
awk -v a="$(cat "$T/smooth.f32.kl")" 'BEGIN { exit !(a < 1e-9) }' && ok || fail "--fp32 --smooth: mean KL $(cat "$T/smooth.f32.kl"), expected < 1e-9"
cmp -s "$DEFAULT.f32.bin" "$T/smooth.f32.bin" && fail "--fp32 --smooth wrote the weights unscaled" || ok
# the options' bad-input catalogue: one message, no file
for bad in "--gptq|works on the activations of a text: give it with --calib" "--prune wanda|works on the activations of a text" \
           "--sparsity 2:4 --calib $T/calib.txt|--sparsity is the share --prune prunes" \
           "--prune magnitude --calib $T/calib.txt|the method must be wanda or sparsegpt" \
           "--prune wanda --sparsity 1 --calib $T/calib.txt|give the share pruned, above 0 and below 1" \
           "--smooth 0.5 --awq --calib $T/calib.txt|--smooth and --awq both scale" "--smooth 0 --calib $T/calib.txt|alpha must be above 0" \
           "--smooth 2 --calib $T/calib.txt|--smooth expects a number from 0 to 1" \
           "--gptq --fp32 --calib $T/calib.txt|an fp32 output has none" "--gptq --gguf-q8_0 --calib $T/calib.txt|not other GGUF types" \
           "--prune sparsegpt --gguf-q4_0 --calib $T/calib.txt|--prune writes runq checkpoints" \
           "--prune wanda --tensor-type w1=q4s --calib $T/calib.txt|q4s, which keeps two of every four weights; --sparsity 0.5"; do
    expect_error "export ${bad%%|*}" "${bad#*|}" "$BIN"/export ${bad%%|*} "$DEFAULT.f32.bin" "$T/never.bin"
done
[ ! -e "$T/never.bin" ] && ok || fail "a refused export left a file"

# ---- --gguf-q4_0 --gptq: llama.cpp's file holds GPTQ's very blocks (the same logits in runq); widths of 32
if [ -f "$M/tok512.bin" ]; then
    RANDOM_MODEL=(--random "dim=64,ffn=128,layers=2,heads=4,kv_heads=2,vocab=512,seq_len=64" -z "$M/tok512.bin" --gptq "${CAL[@]}" --calib-context 64)
    "$BIN"/export -q "${RANDOM_MODEL[@]}" --gguf-q4_0 "$T/r.gguf" && "$BIN"/export -q "$T/r.gguf" "$T/r.gguf.bin" \
        && "$BIN"/export -q "${RANDOM_MODEL[@]}" "$T/r.gptq.bin" && ${BUILD:-build}/logits "$T/r.gguf.bin" "$T/gguf.logits" 1 5 9 40 \
        && ${BUILD:-build}/logits "$T/r.gptq.bin" "$T/gptq.logits" 1 5 9 40 || fail "--gguf-q4_0 --gptq"
    same "--gguf-q4_0 --gptq and --int4 --gptq: the same logits" "$T/gguf.logits" "$T/gptq.logits"
else
    echo "SKIP: $M/tok512.bin is absent: --gguf-q4_0 --gptq did not run"
fi

summary
