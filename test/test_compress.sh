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
# 3.5 bits a weight in the layers against int4's 4.5 (the 172-wide FFN pads to 192 in both)
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
# a version 3 file that says it holds q4s is refused by name, and an old reader refuses version 4 by its number
cp "$T/s.q4s.bin" "$T/v3.bin" && printf '\x03' | dd of="$T/v3.bin" bs=1 seek=4 conv=notrunc status=none
expect_error "a version 3 file holding q4s" "tensor 'layers.0.wq' is q4s, which version 3 files cannot hold \(version 4 and later\)" \
    "$BIN"/runq "$T/v3.bin" -n 2
cp "$T/s.q4s.bin" "$T/v5.bin" && printf '\x05' | dd of="$T/v5.bin" bs=1 seek=4 conv=notrunc status=none
expect_error "version 5" "checkpoint version 5, this runq reads versions 1 to 4" "$BIN"/runq "$T/v5.bin" -n 2
expect_error "--tensor-type with an unknown type names q4s" "the type must be q8, q4, q3, q2 \(or 8, 4, 3, 2\) or q4s" \
    "$BIN"/export --tensor-type w1=q5 "$DEFAULT.f32.bin" "$T/never.bin"
[ ! -e "$T/never.bin" ] && ok || fail "a refused export left a file"

summary
