#!/usr/bin/env bash
# test_cli.sh — the programs as a user runs them: golden outputs byte for byte,
# determinism across thread counts and seeds, and the bad-input catalogue
# (each case: one clear message on stderr, a non-zero exit, no crash, no
# partial output). Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh" test_cli "$@"

# ---- golden outputs of llama2.c's run.c on the real stories260K
if [ -f "$M/stories260K.bin" ]; then
    G=$M/golden
    "$BIN"/export -q --fp32 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.f32.bin"
    "$BIN"/export -q --int4 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.q4.bin"
    for model in "$M/stories260K.bin -z $M/tok512.bin" "$T/s.f32.bin"; do
        "$BIN"/run $model -t 0 -n 200 >"$T/g1" 2>/dev/null;                           same "run golden t0" "$T/g1" "$G/stories260K.t0.n200.txt"
        "$BIN"/run $model -t 0 -n 200 -i "The cat" >"$T/g2" 2>/dev/null;              same "run golden the-cat" "$T/g2" "$G/stories260K.t0.n200.the-cat.txt"
        "$BIN"/run $model -t 1.0 -p 0.9 -s 42 -n 200 -i "Once upon a time" >"$T/g3" 2>/dev/null
        same "run golden seeded sampling" "$T/g3" "$G/stories260K.t1.p0.9.s42.n200.txt"
    done
    # runq: the same text whatever the thread count, the same sample for the same seed
    for threads in 1 2 3 4; do "$BIN"/runq "$T/s.q4.bin" -t 0 -n 200 -T $threads >"$T/q$threads" 2>/dev/null; done
    same "runq -T1 vs -T2" "$T/q1" "$T/q2"; same "runq -T1 vs -T3" "$T/q1" "$T/q3"; same "runq -T1 vs -T4" "$T/q1" "$T/q4"
    "$BIN"/runq "$T/s.q4.bin" -s 7 -n 100 -i "Once" >"$T/s1" 2>/dev/null; "$BIN"/runq "$T/s.q4.bin" -s 7 -n 100 -i "Once" -T 1 >"$T/s2" 2>/dev/null
    same "runq seeded sampling is reproducible" "$T/s1" "$T/s2"
    if grep -q "Once upon a time" "$T/q1"; then ok; else fail "runq int4 greedy text does not start like a story: $(head -c 80 "$T/q1")"; fi
    # a llama2.c checkpoint with a separate classifier (negative vocab_size): stories260K's
    # own embedding table appended as the classifier must give the golden text exactly
    { head -c 20 "$M/stories260K.bin"; printf '\x00\xfe\xff\xff'; tail -c +25 "$M/stories260K.bin"
      tail -c +29 "$M/stories260K.bin" | head -c $((512 * 64 * 4)); } >"$T/untied.bin"
    "$BIN"/run "$T/untied.bin" -z "$M/tok512.bin" -t 0 -n 200 >"$T/u1" 2>/dev/null; same "run: llama2.c file with a separate classifier" "$T/u1" "$G/stories260K.t0.n200.txt"
    "$BIN"/export -q --fp32 -z "$M/tok512.bin" "$T/untied.bin" "$T/untied.f32.bin"
    "$BIN"/run "$T/untied.f32.bin" -t 0 -n 200 >"$T/u2" 2>/dev/null; same "export of a separate classifier, fp32" "$T/u2" "$G/stories260K.t0.n200.txt"
    "$BIN"/export -q --int4 -z "$M/tok512.bin" "$T/untied.bin" "$T/untied.q4.bin"
    "$BIN"/runq "$T/untied.q4.bin" -t 0 -n 200 -T 1 >"$T/u3" 2>/dev/null; same "export of a separate classifier, int4" "$T/u3" "$T/q1"
    expect_error "runq on a llama2.c file names the export command" "llama2.c checkpoint; convert it first: ./export -z tokenizer.bin" "$BIN"/runq "$M/stories260K.bin"
    expect_error "runq on a GGUF file names the export command" "is a GGUF file; convert it first: ./export .*stories260K.gguf model.q4.bin" "$BIN"/runq "$M/stories260K.gguf"
    expect_error "run on a GGUF file names the export command" "is a GGUF file; convert it first: ./export --fp32 .*stories260K.gguf" "$BIN"/run "$M/stories260K.gguf"
    expect_error "tokenizer of another vocabulary" "vocabulary" "$BIN"/runq "$T/s.q4.bin" -z tokenizer.bin
else
    echo "SKIP: $M/stories260K.bin is absent: golden-output tests did not run"
fi

# ---- a small random model for everything else (no ../shared needed)
SMALL="dim=64,ffn=100,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=32"
"$BIN"/export -q --random "$SMALL" -z tokenizer.bin "$T/r.q4.bin" || fail "export --random"
"$BIN"/export -q --random "$SMALL" --fp32 -z tokenizer.bin "$T/r.f32.bin" || fail "export --random --fp32"
if "$BIN"/runq "$T/r.q4.bin" -n 16 -i "Hello" >"$T/out" 2>/dev/null && [ -s "$T/out" ]; then ok; else fail "runq on a random model"; fi
if "$BIN"/run "$T/r.f32.bin" -n 16 -i "Hello" >"$T/out" 2>/dev/null && [ -s "$T/out" ]; then ok; else fail "run on a random model"; fi
# the memory plan, and the int8 KV cache (-k q8): 2 layers x 16 positions x 32 wide x K and V is 4 KiB in
# fp16; int8 is half that and a 4-byte scale per head row (16 wide) more: 2.5 KiB
"$BIN"/runq "$T/r.q4.bin" -n 16 -i "Hello" -T 1 -s 7 >"$T/kv16" 2>"$T/kv16.err" \
    && "$BIN"/runq "$T/r.q4.bin" -n 16 -i "Hello" -T 1 -s 7 -k q8 >"$T/kv8" 2>"$T/kv8.err" && ok || fail "runq -k q8"
grep -q "KV cache 4.0 KiB (fp16, 16 positions)" "$T/kv16.err" && grep -q "KV cache 2.5 KiB (int8, 16 positions)" "$T/kv8.err" \
    && grep -q "memory: weights .* (mapped), .* activations .* total" "$T/kv8.err" && ok \
    || fail "the memory plan: $(head -1 "$T/kv16.err"); $(head -1 "$T/kv8.err")"
# chat takes the model's whole context when -n is not given (generate: 256 positions at most)
printf 'Hi\n' | "$BIN"/runq "$T/r.q4.bin" -m chat -y "" -t 0 >/dev/null 2>"$T/chat.err"
grep -q "KV cache .* (fp16, 32 positions)" "$T/chat.err" && ok || fail "runq -m chat takes the whole context: $(cat "$T/chat.err")"
# a model that records no template and whose vocabulary names none chats in llama2's, and says it guessed;
# a template named on the command line is no guess
grep -q "records no chat template .* a guess" "$T/chat.err" && ok || fail "runq -m chat does not say its template is a guess"
printf 'Hi\n' | "$BIN"/runq "$T/r.q4.bin" -m chat -y "" -t 0 --chat-template llama2 >/dev/null 2>"$T/named.err"
! grep -q "a guess" "$T/named.err" && ok || fail "runq -m chat --chat-template llama2 calls its template a guess"
# ... but no more KV cache than half the free memory: 1024 layers of 4 194 304 positions want 512 GiB
"$BIN"/export -q --random dim=32,ffn=32,layers=1024,heads=1,kv_heads=1,vocab=512,seq_len=4194304 "$T/long.q4.bin" 2>/dev/null
printf 'Hi\n' | "$BIN"/runq "$T/long.q4.bin" -m chat -y "" -t 0 -n 64 >/dev/null 2>"$T/long.err" \
    && ! grep -q "whole context" "$T/long.err" && ok || fail "runq -m chat -n 64: $(cat "$T/long.err")"
if [ "$BIN" = . ]; then   # (under the sanitizers, a cache of half the memory is not worth mapping)
    printf '' | "$BIN"/runq "$T/long.q4.bin" -m chat -y "" -t 0 >/dev/null 2>"$T/long.err"
    grep -q "chat: the whole context (4194304 positions) needs a 512.0 GiB KV cache and .* is free; using [0-9]* positions" \
        "$T/long.err" && ok || fail "runq -m chat caps its KV cache by the free memory: $(cat "$T/long.err")"
fi
# runq and run print well-formed UTF-8 whatever bytes the model emits (U+FFFD for each maximal subpart)
python3 test/ill_formed_tokenizer.py "$T/ill.tok"
"$BIN"/export -q --random dim=64,ffn=128,layers=2,heads=4,kv_heads=4,vocab=48,seq_len=256 -z "$T/ill.tok" "$T/ill.q4.bin"
"$BIN"/export -q --fp32 "$T/ill.q4.bin" "$T/ill.f32.bin"
for program in runq run; do
    model=$T/ill.q4.bin; [ $program = run ] && model=$T/ill.f32.bin
    for seed in 1 2 3; do "$BIN"/$program "$model" -n 120 -t 2 -s $seed -i "ab" 2>/dev/null; done >"$T/ill.$program.out"
    if python3 -c 'import sys; sys.stdin.buffer.read().decode("utf-8")' <"$T/ill.$program.out" && grep -q $'\xef\xbf\xbd' "$T/ill.$program.out"
    then ok; else fail "$program prints ill-formed UTF-8 (or the test saw none): $(head -c 100 "$T/ill.$program.out" | od -c | head -3)"; fi
done
# export --random says its tokenizer is synthetic; --check-config reads config.json alone
"$BIN"/export --random "$SMALL" "$T/synthetic.q4.bin" 2>"$T/synthetic.err"
grep -q "synthetic tokenizer .*<unused_" "$T/synthetic.err" && ok || fail "export --random names its synthetic tokenizer: $(cat "$T/synthetic.err")"
mkdir -p "$T/hf" && echo '{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "vocab_size": 100, "intermediate_size": 128}' >"$T/hf/config.json"
"$BIN"/export --check-config "$T/hf" >"$T/check.out" && grep -q "export converts it: dim 64, 2 layers" "$T/check.out" && ok \
    || fail "export --check-config on a llama config: $(cat "$T/check.out")"
echo '{"model_type": "gpt2"}' >"$T/hf/config.json"
expect_error "export --check-config on an unknown family" "model_type gpt2 is not supported" "$BIN"/export --check-config "$T/hf/config.json"
expect_error "runq -k q4" "-k expects f16 or q8" "$BIN"/runq "$T/r.q4.bin" -k q4
for tool in "$BIN/run" "$BIN/runq"; do
    if echo "" | $tool "$T/r.$([ "$tool" = "$BIN/run" ] && echo f32 || echo q4).bin" -m chat -i "Hi" -n 32 >"$T/out" 2>"$T/err"; then ok; else fail "$tool -m chat"; fi
    model="$T/r.$([ "$tool" = "$BIN/run" ] && echo f32 || echo q4).bin"
    if printf 'Again\n' | $tool "$model" -m chat -i "Hi" -y "Be brief." -n 32 --chat-template zephyr >"$T/out" 2>"$T/err"; then ok
    else fail "$tool -m chat --chat-template zephyr: $(cat "$T/err")"; fi
    expect_error "$tool: unknown chat template" "unknown chat template 'nope'" $tool "$model" -m chat -i "Hi" --chat-template nope
    expect_error "$tool: a template whose end-of-turn token the vocabulary lacks" "no special token" \
        $tool "$model" -m chat -i "Hi" --chat-template llama3
done

# ---- bad input: the catalogue
Q=$T/r.q4.bin
size=$(stat -c %s "$Q")
expect_error "missing model" "cannot open" "$BIN"/runq "$T/nope.bin"
expect_error "a directory as model names the export command" "is a directory; a Hugging Face model directory converts with ./export" "$BIN"/runq "$T"
expect_error "run: a directory as model names the export command" "is a directory; .* ./export --fp32" "$BIN"/run "$T"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{}}' >"$T/model.safetensors"
head -c 100 /dev/zero >>"$T/model.safetensors"
expect_error "runq on a safetensors file names the export command" "is a safetensors file; convert the Hugging Face directory" "$BIN"/runq "$T/model.safetensors"
expect_error "run on a safetensors file names the export command" "is a safetensors file; .*--fp32" "$BIN"/run "$T/model.safetensors"
: >"$T/empty.bin"; expect_error "empty model" "empty" "$BIN"/runq "$T/empty.bin"
head -c 40 "$Q" >"$T/t1.bin";  expect_error "truncated in the header" "truncated" "$BIN"/runq "$T/t1.bin"
head -c 200 "$Q" >"$T/t2.bin"; expect_error "truncated in the tensor table" "truncated" "$BIN"/runq "$T/t2.bin"
head -c $((size / 2)) "$Q" >"$T/t3.bin"; expect_error "truncated in the data" "truncated|past the end" "$BIN"/runq "$T/t3.bin"
head -c $((size - 1)) "$Q" >"$T/t4.bin"; expect_error "one byte short" "truncated|past the end" "$BIN"/runq "$T/t4.bin"
head -c 4096 /dev/urandom >"$T/noise.bin"; printf 'XXXX' | dd of="$T/noise.bin" conv=notrunc status=none
expect_error "foreign file" "not an Edge LLM checkpoint" "$BIN"/runq "$T/noise.bin"
patch() { cp "$Q" "$T/p.bin"; printf "$2" | dd of="$T/p.bin" bs=1 seek=$1 conv=notrunc status=none; }
patch 4 '\x05\x00\x00\x00';  expect_error "future version" "version 5, this runq reads versions 1 to 4" "$BIN"/runq "$T/p.bin"
# version 2 kept int4 rows one after another: with every width a multiple of the 8-row tile
# the sizes agree, so only the version says the order is old
"$BIN"/export -q --random "dim=64,ffn=192,layers=1,heads=4,kv_heads=4,vocab=512,seq_len=32" "$T/v2.bin" || fail "export v2 shape"
printf '\x02\x00\x00\x00' | dd of="$T/v2.bin" bs=1 seek=4 conv=notrunc status=none
expect_error "int4 rows in the old order" "re-export it" "$BIN"/runq "$T/v2.bin"
# a real version 1 file (test/data/tiny-v1.q4.bin: the fuzz seed tiny.q4.bin as export wrote it before
# the tiles) re-exports to exactly what export writes today, and runs
"$BIN"/export -q test/data/tiny-v1.q4.bin "$T/v3.bin" || fail "export of a version 1 int4 file"
if cmp -s "$T/v3.bin" test/fuzz/corpus/checkpoint/tiny.q4.bin && "$BIN"/runq "$T/v3.bin" -n 8 >/dev/null 2>&1; then ok
else fail "a version 1 file re-exported is not today's tiny.q4.bin, or does not run"; fi
patch 8 '\xff\xff\xff\x7f';  expect_error "dim overflow" "out-of-range" "$BIN"/runq "$T/p.bin"
patch 24 '\x00\x00\x00\x00'; expect_error "zero vocabulary" "out-of-range" "$BIN"/runq "$T/p.bin"
patch 16 '\x03\x00\x00\x00'; expect_error "heads not a multiple of kv heads" "multiple" "$BIN"/runq "$T/p.bin"
# tensor 0's offset (table at 128 = 64 + 2 layers * 4, padded; + name 64 + 4 * 4) pushed past the end of the file
patch 208 '\x00\x00\x00\x00\x00\x00\x00\x10'; expect_error "tensor offset past EOF" "past the end|aligned" "$BIN"/runq "$T/p.bin"
patch 216 '\xff\xff\xff\xff\xff\xff\xff\xff'; expect_error "tensor size overflow" "claims" "$BIN"/runq "$T/p.bin"
"$BIN"/export -q --random "$SMALL" "$T/notok.bin" 2>/dev/null
"$BIN"/export -q --random "$SMALL" --seed 1 -z tokenizer.bin "$T/tok.bin"
printf 'garbage' >"$T/bad-tokenizer.bin"
expect_error "corrupt tokenizer" "tokenizer" "$BIN"/runq "$Q" -z "$T/bad-tokenizer.bin"
expect_error "missing tokenizer file" "cannot open" "$BIN"/runq "$Q" -z "$T/none.bin"
expect_error "a directory as the tokenizer" "is not a regular file" "$BIN"/runq "$Q" -z "$T"
long=$(printf 'word %.0s' $(seq 1 100))
expect_error "prompt longer than the context" "prompt is [0-9]+ tokens" "$BIN"/runq "$Q" -i "$long"
expect_error "prompt longer than -n" "prompt is [0-9]+ tokens" "$BIN"/runq "$Q" -i "one two three four" -n 3
expect_error "-n beyond the context" "beyond the model's context" "$BIN"/runq "$Q" -n 33
expect_error "-n 0" "-n expects" "$BIN"/runq "$Q" -n 0
expect_error "-n negative" "-n expects" "$BIN"/runq "$Q" -n -5
expect_error "-n huge" "-n expects" "$BIN"/runq "$Q" -n 99999999999999
expect_error "-t not a number" "-t expects" "$BIN"/runq "$Q" -t abc
expect_error "-p above 1" "-p expects" "$BIN"/runq "$Q" -p 2
expect_error "-T 0" "-T expects" "$BIN"/runq "$Q" -T 0
expect_error "unknown mode" "unknown mode" "$BIN"/runq "$Q" -m dance
expect_error "flag without value" "needs a value" "$BIN"/runq "$Q" -n
expect_error "run: -n beyond the context" "beyond the model's context" "$BIN"/run "$T/r.f32.bin" -n 33
expect_error "run on an int4 file" "use ./runq" "$BIN"/run "$Q"
expect_error "runq on an fp32 file" "use ./run" "$BIN"/runq "$T/r.f32.bin"

# ---- export: never overwrites its input, never leaves a half file
cp "$T/r.f32.bin" "$T/in.bin"; before=$(sha256sum <"$T/in.bin")
expect_error "export onto its own input" "never overwrites" "$BIN"/export -q --int4 "$T/in.bin" "$T/in.bin"
[ "$(sha256sum <"$T/in.bin")" = "$before" ] && ok || fail "export changed its input"
expect_error "export of a truncated llama2.c file" "truncated|not a llama2.c" "$BIN"/export -q "$T/t4.bin" "$T/x.bin"
expect_error "export: unknown shape" "unknown shape" "$BIN"/export -q --random nosuchmodel "$T/x.bin"
expect_error "export: HF dir without config.json" "config.json" "$BIN"/export -q "$T" "$T/x.bin"
expect_error "export: tokenizer of another vocabulary" "vocabulary" "$BIN"/export -q --random "$SMALL" -z "$M/tok512.bin" "$T/x.bin"
expect_error "export: unwritable output" "cannot create" "$BIN"/export -q --random "$SMALL" "/proc/edge-llm-test/x.bin"
mkfifo "$T/pipe"   # a device or a pipe would be replaced by the renamed file (never try /dev/null here)
expect_error "export onto a pipe" "not a regular file" "$BIN"/export -q --random "$SMALL" "$T/pipe"
[ -p "$T/pipe" ] && ok || fail "export replaced the pipe $T/pipe with a file"
expect_error "export: bad group size" "group-size" "$BIN"/export -q --group-size 48 --random "$SMALL" "$T/x.bin"
# weight types: bad --bits, --recipe, --tensor-type; each one message, nothing written
expect_error "export --bits 5" "--bits must be 8, 4, 3 or 2" "$BIN"/export -q --bits 5 --random "$SMALL" "$T/x.bin"
expect_error "export --recipe unknown" "not a recipe; there are: q4-mixed" "$BIN"/export -q --recipe q5-mixed --random "$SMALL" "$T/x.bin"
expect_error "export --tensor-type: no such tensor" "names 'w9', which is no matrix" \
    "$BIN"/export -q --tensor-type w2=q8,w9=q8 --random "$SMALL" "$T/x.bin"
expect_error "export --tensor-type: no such layer" "names 'layers.7.wv'" "$BIN"/export -q --tensor-type layers.7.wv=8 --random "$SMALL" "$T/x.bin"
expect_error "export --tensor-type: unknown type" "type must be q8, q4, q3, q2 .or 8, 4, 3, 2. or q4s" "$BIN"/export -q --tensor-type w2=q5 --random "$SMALL" "$T/x.bin"
expect_error "export --tensor-type: bad group size" "group size must be" "$BIN"/export -q --tensor-type w2=q8/48 --random "$SMALL" "$T/x.bin"
expect_error "export --tensor-type: no type" "is not NAME=TYPE" "$BIN"/export -q --tensor-type w2 --random "$SMALL" "$T/x.bin"
expect_error "export --bits with GGUF" "not with --fp32" "$BIN"/export -q --bits 3 --gguf-q4_0 --random "$SMALL" "$T/x.bin"
expect_error "export --bits with --recipe" "give one" "$BIN"/export -q --bits 3 --recipe q4-mixed --random "$SMALL" "$T/x.bin"
[ -z "$(ls "$T" | grep '^x.bin')" ] && ok || fail "a refused type choice left $(ls "$T" | grep '^x.bin')"
# the low-bit types need version 3: a reader of version 2 would not know them, and a
# version-2 file claiming one is refused; a runq checkpoint re-exported to its own type is copied
"$BIN"/export -q --bits 3 -z tokenizer.bin --random "$SMALL" "$T/r.q3.bin" || fail "export --bits 3"
[ "$(od -An -tu4 -j 4 -N4 "$T/r.q3.bin" | tr -d ' ')" = 3 ] && ok || fail "an int3 export is not version 3"
[ "$(od -An -tu4 -j 4 -N4 "$Q" | tr -d ' ')" = 3 ] && ok || fail "an int4 export (rows in tiles) is not version 3"
[ "$(od -An -tu4 -j 4 -N4 "$T/r.f32.bin" | tr -d ' ')" = 1 ] && ok || fail "an fp32 export is no longer version 1"
cp "$T/r.q3.bin" "$T/v2.bin"; printf '\x02' | dd of="$T/v2.bin" bs=1 seek=4 conv=notrunc status=none
expect_error "int3 in a version 2 file" "is q3, which version 2 files cannot hold" "$BIN"/runq "$T/v2.bin"
"$BIN"/export -q --bits 3 "$T/r.q3.bin" "$T/r.q3-again.bin" && same "int3 re-exported as int3 (codes copied)" "$T/r.q3.bin" "$T/r.q3-again.bin"
"$BIN"/export -q --bits 2 "$T/r.q3.bin" "$T/r.q2.bin" && "$BIN"/runq "$T/r.q2.bin" -n 8 -i "Hello" >/dev/null 2>&1 \
    && ok || fail "int3 re-exported as int2 (dequantized, quantized again) does not run"
# int2 and int3 run on the table-lookup kernels (repacked at load): the same text as the row kernels
# (RUNQ_LUT=0), at any thread count (pieces of 64-row tiles), with 130 rows (a tile and a bit) and a prompt batch
"$BIN"/export -q --bits 2 -z tokenizer.bin --random "dim=128,ffn=200,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=48" "$T/l.q2.bin"
"$BIN"/export -q --recipe q3-mixed -z tokenizer.bin --random "dim=130,ffn=200,layers=3,heads=5,kv_heads=5,vocab=32000,seq_len=48" "$T/l.q3.bin"
for model in l.q2 l.q3; do
    RUNQ_LUT=0 "$BIN"/runq "$T/$model.bin" -t 0 -n 40 -T 1 -i "Once upon a time there was" >"$T/$model.rows" 2>/dev/null
    "$BIN"/runq "$T/$model.bin" -t 0 -n 40 -T 1 -i "Once upon a time there was" >"$T/$model.lut1" 2>"$T/$model.err"
    "$BIN"/runq "$T/$model.bin" -t 0 -n 40 -T 3 -i "Once upon a time there was" >"$T/$model.lut3" 2>/dev/null
    grep -q "repacked for table lookups" "$T/$model.err" && ok || fail "$model: runq did not repack for the table lookups: $(head -2 "$T/$model.err")"
    same "$model: table lookups vs row kernels" "$T/$model.rows" "$T/$model.lut1"; same "$model: table lookups -T1 vs -T3" "$T/$model.lut1" "$T/$model.lut3"
done
# GGUF input: truncated (in the metadata, in the tensor data), a future version, a foreign architecture
"$BIN"/export -q --gguf-q4_0 --random "dim=64,ffn=96,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=32" -z tokenizer.bin "$T/g.gguf" || fail "export --gguf-q4_0"
head -c 3000 "$T/g.gguf" >"$T/g-meta.gguf"; expect_error "GGUF truncated in its metadata" "GGUF truncated" "$BIN"/export -q "$T/g-meta.gguf" "$T/x.bin"
head -c $(( $(stat -c %s "$T/g.gguf") - 100 )) "$T/g.gguf" >"$T/g-data.gguf"
expect_error "GGUF truncated in its tensor data" "past the end of the file" "$BIN"/export -q "$T/g-data.gguf" "$T/x.bin"
cp "$T/g.gguf" "$T/g-v9.gguf"; printf '\x09' | dd of="$T/g-v9.gguf" bs=1 seek=4 conv=notrunc status=none
expect_error "GGUF of a future version" "GGUF version 9" "$BIN"/export -q "$T/g-v9.gguf" "$T/x.bin"
sed 's/llama\.embedding_length/llamX.embedding_length/; 0,/general\.architecture\(.\{12\}\)llama/s//general.architecture\1gemma/' "$T/g.gguf" >"$T/g-arch.gguf"
expect_error "GGUF of another architecture" "architecture is 'gemma'" "$BIN"/export -q "$T/g-arch.gguf" "$T/x.bin"
[ ! -e "$T/x.bin" ] && ok || fail "a refused GGUF import left $T/x.bin"
# a file-size limit stops the write half way: an error, and nothing under the final name or left behind
(ulimit -f 64; "$BIN"/export -q --random stories15M "$T/big.bin" >/dev/null 2>"$T/err"); status=$?
if [ $status -ne 0 ] && [ ! -e "$T/big.bin" ] && [ -z "$(ls "$T" | grep 'big.bin.tmp')" ]; then ok
else fail "export under a file-size limit: status $status, leftovers: $(ls "$T" | grep big)"; fi
grep -q "cannot write" "$T/err" && ok || fail "export under a file-size limit says: $(cat "$T/err")"

# ---- the rest of the catalogue (docs/TESTING.md, "Bad input")
# truncated at each header boundary: in the header's fields, at its end, after the FFN
# table, at the tensor table, after its first entry, at its end (before any tensor data)
n_tensors=$(od -An -tu4 -j 56 -N4 "$Q" | tr -d ' ')
for cut in 4 8 36 63 64 72 128 224 $((128 + 96 * n_tensors)); do
    head -c $cut "$Q" >"$T/cut.bin"; expect_error "truncated to $cut bytes" "truncated" "$BIN"/runq "$T/cut.bin"
done
# damaged weights: tensor 0 (tok_embeddings, int4) has its type at byte 192 of the table (at 128),
# group size 196, rows 200, cols 204, offset 208; its fp16 scales follow rows * cols_padded/2 nibble
# bytes. Tensor 1 (layers.0.attention_norm, f32) has its offset at 304.
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
u64() { od -An -tu8 -j "$2" -N8 "$1" | tr -d ' '; }
group=$(u32 "$Q" 196) rows=$(u32 "$Q" 200) cols=$(u32 "$Q" 204)
scales=$(( $(u64 "$Q" 208) + rows * ((cols + group - 1) / group * group) / 2 ))
patch $scales '\xff\x7f'; expect_error "NaN weight scale" "tok_embeddings.*NaN or infinite scale" "$BIN"/runq "$T/p.bin"
patch $((scales + 2 * 7)) '\x00\x7c'; expect_error "infinite weight scale" "NaN or infinite scale" "$BIN"/runq "$T/p.bin"
patch 196 '\x60\x00\x00\x00'; expect_error "group size 96 (a multiple of 32, no power of two)" "group size 96, expected 32, 64, 128 or 256" "$BIN"/runq "$T/p.bin"
patch $(u64 "$Q" 304) '\x00\x00\xc0\x7f'; expect_error "NaN norm weight" "attention_norm.*NaN or infinite weight" "$BIN"/runq "$T/p.bin"
expect_error "export of a NaN-scaled checkpoint" "NaN or infinite" "$BIN"/export -q --fp32 "$T/p.bin" "$T/x.bin"
# prompts that are no error: each generates, exit 0 (no crash, no hang)
expect_generates() {
    local name=$1; shift
    if timeout 20 "$@" >"$T/out" 2>"$T/err" </dev/null; then ok; else fail "$name: exit $?: $(tail -2 "$T/err")"; fi
}
expect_generates "empty prompt" "$BIN"/runq "$Q" -i "" -n 8
expect_generates "prompt of only special tokens" "$BIN"/runq "$Q" -i "<s></s><unk><s>" -n 24
expect_generates "invalid UTF-8 prompt" "$BIN"/runq "$Q" -i $'\xff\xfe caf\xc3 \xc0\x80 \xed\xa0\x80 \xf4\x90\x80\x80' -n 31
expect_generates "prompt that fills the context" "$BIN"/runq "$Q" -i "$(printf 'a %.0s' $(seq 1 28))" -n 32
# extreme numeric flags
expect_error "-T huge" "-T expects" "$BIN"/runq "$Q" -T 100000
expect_error "-t infinite" "-t expects" "$BIN"/runq "$Q" -t 1e39
expect_error "-t NaN" "-t expects" "$BIN"/runq "$Q" -t nan
expect_error "-p negative" "-p expects" "$BIN"/runq "$Q" -p -0.5
expect_error "-s negative" "-s expects" "$BIN"/runq "$Q" -s -1
expect_error "-s past 64 bits" "-s expects" "$BIN"/runq "$Q" -s 99999999999999999999999
summary
