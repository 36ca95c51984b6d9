#!/usr/bin/env bash
# test_kquant.sh — export reading GGUF files llama.cpp quantized (Q4_K_M,
# Q4_K_S, Q5_K_M, Q6_K, Q3_K_M, Q2_K, Q4_1, Q5_0, Q5_1, Q8_0), against
# llama.cpp itself:
#   - without llama.cpp: refusals of tensors export cannot read (K-quant rows
#     not a whole number of 256-weight blocks, a type it does not read);
#   - with node-llama-cpp's prebuilt libraries (tools/llamacpp/node_modules,
#     installed as tools/bench-vs-llamacpp installs them; offline the rest
#     skips loudly): a random model (dim 256, FFN 768, so K-quants apply to
#     every matrix) written as an f32 GGUF, quantized by llama_model_quantize
#     (tools/llamacpp/quantize.c); the types it chose are checked to include the
#     ones under test; export's f32 GGUF of each file holds, tensor for tensor,
#     the very floats ggml's to_float gives (bit for bit); the int4 checkpoint
#     exported from Q4_K_M and Q6_K runs, its next-token distributions close to
#     the f32 model's (build/ppl's mean KL, at most twice that of the int4
#     checkpoint made from the f32 weights directly); a truncated Q4_K_M file
#     is refused.
# test_gguf.c checks the committed test/data/ggml-blocks.gguf (made by the same
# tool) without llama.cpp. Ends with "test_kquant: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_kquant "$@"
PPL=${BUILD:-build}/ppl
SHAPE=dim=256,ffn=768,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=64

# set_tensor_type FILE TENSOR TYPE: the ggml type in TENSOR's info, in place
set_tensor_type() {
    python3 - "$@" <<'EOF'
import struct, sys
path, name, ggml_type = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
data = bytearray(open(path, "rb").read())
at = data.index(struct.pack("<Q", len(name)) + name + struct.pack("<I", 2)) + 8 + len(name)   # n_dims 2: an info, not a key
n_dims = struct.unpack_from("<I", data, at)[0]
struct.pack_into("<I", data, at + 4 + 8 * n_dims, ggml_type)
open(path, "wb").write(data)
EOF
}

# ---- refusals, on our own f32 GGUF with one tensor's type altered
"$BIN"/export -q --gguf-f32 --random dim=64,ffn=256,layers=1,heads=4,vocab=32000,seq_len=32 -z tokenizer.bin "$T/small.gguf" \
    || fail "export --gguf-f32 --random"
if command -v python3 >/dev/null; then
    cp "$T/small.gguf" "$T/q4k-cols.gguf" && set_tensor_type "$T/q4k-cols.gguf" blk.0.attn_q.weight 12
    expect_error "Q4_K rows of 64 weights" "blk.0.attn_q.weight is Q4_K, whose blocks hold 256 weights along a row, but its rows have 64" \
        "$BIN"/export -q "$T/q4k-cols.gguf" "$T/x.bin"
    cp "$T/small.gguf" "$T/iq4xs.gguf" && set_tensor_type "$T/iq4xs.gguf" blk.0.ffn_down.weight 23
    expect_error "an IQ4_XS tensor" "blk.0.ffn_down.weight has ggml type 23 \(IQ4_XS\): export reads .*Q4_K, Q5_K and Q6_K" \
        "$BIN"/export -q "$T/iq4xs.gguf" "$T/x.bin"
else
    echo "SKIP: no python3 to alter a GGUF tensor type: the K-quant refusals are not tested"
fi
[ ! -e "$T/x.bin" ] && ok || fail "a refused GGUF left an output file"

# ---- llama.cpp's quantizer and dequantizer: node-llama-cpp's prebuilt libraries
ROOT=$PWD
. tools/llamacpp/build.sh
if ! llamacpp_installed && command -v npm >/dev/null; then
    echo "test_kquant: installing node-llama-cpp into tools/llamacpp/node_modules (CPU binaries only, no builds)"
    NODE_LLAMA_CPP_SKIP_DOWNLOAD=true timeout 600 npm install --prefix "$LLAMACPP" --omit=optional --ignore-scripts \
        --no-audit --no-fund >"$T/npm.log" 2>&1 || tail -3 "$T/npm.log"
fi
if ! llamacpp_installed || ! command -v git >/dev/null; then
    echo "SKIP: ======== llama.cpp's prebuilt libraries are not installed (npm install --prefix tools/llamacpp failed"
    echo "SKIP: or npm/git are missing): K-quant GGUF files not checked against llama.cpp ========"
    summary
fi
quantize=build/llamacpp-quantize
llamacpp_build quantize "$T" || { fail "cannot build tools/llamacpp/quantize.c against node-llama-cpp's libraries"; summary; }

"$BIN"/export -q --gguf-f32 --random "$SHAPE" -z tokenizer.bin "$T/m.f32.gguf" || fail "export --gguf-f32 --random $SHAPE"
# llama_ftype: the types each file must hold (besides what llama.cpp picks for the rest)
for entry in Q4_K_M:15:q4_K,q6_K Q4_K_S:14:q4_K,q5_K Q5_K_M:17:q5_K,q6_K Q6_K:18:q6_K Q3_K_M:12:q3_K,q4_K,q5_K \
             Q2_K:10:q2_K,q3_K Q4_1:3:q4_1 Q5_0:8:q5_0 Q5_1:9:q5_1 Q8_0:7:q8_0; do
    IFS=: read -r name ftype types <<<"$entry"
    gguf=$T/m.$name.gguf
    $quantize model "$T/m.f32.gguf" "$gguf" "$ftype" || { fail "$name: llama_model_quantize"; continue; }
    $quantize types "$gguf" >"$T/types" || fail "$name: cannot list its tensor types"
    for type in ${types//,/ }; do
        grep -q " $type\$" "$T/types" && ok || fail "$name: llama.cpp wrote no $type tensor: $(sort -k2 "$T/types" | uniq -f1 -c)"
    done
    # export's floats = llama.cpp's floats, every tensor
    if "$BIN"/export -q --gguf-f32 "$gguf" "$T/ours.$name.gguf" && $quantize compare "$gguf" "$T/ours.$name.gguf" >"$T/compare"; then
        ok
        echo "  $name: $(tr '\n' ';' <"$T/compare" | sed 's/;$//; s/;/; /g')"
    else
        fail "$name: export's dequantized weights differ from llama.cpp's: $(cat "$T/compare")"
    fi
done

# ---- the int4 checkpoints run, and their next-token distributions stay close to the f32 model's
# (build/ppl: mean KL(f32 || int4) and top-1 agreement on a short text). The K-quant paths quantize
# twice, so they may lose more than int4 made from the f32 weights directly: at most 2x its KL.
printf '%s' "Once upon a time, there was a little girl named Lily. She liked to play outside in the park with \
her friends. One day, she found a big red ball under a tree. \"Can I keep it?\" she asked her mom. Her mom smiled \
and said yes, and they went home happy." >"$T/text.txt"
kl_of() {   # kl_of NAME CHECKPOINT: "mean_kl top1_percent" of CHECKPOINT against the f32 model
    $PPL --reference "$T/f32.bin" "$2" "$T/text.txt" -c 64 >"$T/ppl.$1" 2>&1 || { fail "$1: build/ppl: $(tail -3 "$T/ppl.$1")"; return; }
    awk '/KL\(reference/ { kl = $(NF - 2); sub(",", "", kl) } /top-1 agreement/ { top1 = $3 } END { print kl, top1 }' "$T/ppl.$1"
}
"$BIN"/export -q --fp32 "$T/m.f32.gguf" "$T/f32.bin" || fail "export --fp32 from the f32 GGUF"
"$BIN"/export -q --int4 "$T/m.f32.gguf" "$T/direct.q4.bin" || fail "export --int4 from the f32 GGUF"
read -r direct_kl direct_top1 <<<"$(kl_of direct "$T/direct.q4.bin")"
echo "  int4 from f32 directly: mean KL ${direct_kl:-?} against the f32 model, top-1 agreement ${direct_top1:-?} %"
for name in Q4_K_M Q6_K; do
    "$BIN"/export -q --int4 "$T/m.$name.gguf" "$T/$name.q4.bin" || { fail "$name: export --int4"; continue; }
    if "$BIN"/runq "$T/$name.q4.bin" -n 16 -i "Once upon a time" >"$T/out" 2>/dev/null && [ -s "$T/out" ]; then ok
    else fail "$name: runq does not generate from the exported checkpoint"; fi
    read -r kl top1 <<<"$(kl_of "$name" "$T/$name.q4.bin")"
    echo "  int4 from $name: mean KL ${kl:-?} against the f32 model, top-1 agreement ${top1:-?} %"
    awk -v k="$kl" -v d="$direct_kl" 'BEGIN { exit !(k != "" && d != "" && k + 0 <= 2 * d) }' && ok \
        || fail "$name: mean KL ${kl:-?} against the f32 model; int4 from f32 directly gives ${direct_kl:-?}"
done

head -c $(( $(stat -c %s "$T/m.Q4_K_M.gguf") - 100 )) "$T/m.Q4_K_M.gguf" >"$T/cut.gguf"
expect_error "a truncated Q4_K_M file" "past the end of the file" "$BIN"/export -q "$T/cut.gguf" "$T/x.bin"
summary
