#!/usr/bin/env bash
# test_train.sh — the trainer as a user runs it: learn a tokenizer, pretrain,
# export to int4, generate with runq; distill; train on conversations and
# answer in runq's chat; LoRA-tune and merge with export --lora; and train's
# bad-input catalogue (one clear message, a non-zero exit, no output left
# behind). Fast: tiny models, a few steps.
. "$(dirname "$0")/lib.sh" test_train "$@"
TRAIN=${TRAIN:-${BUILD:-build}/train}

# a small corpus: short stories made of a few sentences, blank lines between them
for i in $(seq 1 300); do
    echo "Once upon a time there was a little cat named Tom. Tom liked to play in the sun with his ball."
    echo "One day the ball rolled away and Tom ran after it. He found it under a big tree and he was happy."
    echo
done >"$T/corpus.txt"
SHAPE=dim=32,ffn=64,layers=2,heads=4,kv_heads=2,seq_len=64
FAST="--steps 40 --batch 4 --context 32 --warmup 5 --lr 3e-3 --eval-every 20 --eval-windows 2 -q"
BAD="--context 32 -q"

# ---- tokenizer -> pretrain -> export -> runq
if $TRAIN tokenizer "$T/corpus.txt" -o "$T/tok.bin" --vocab 300 -q; then ok; else fail "train tokenizer"; fi
if $TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape $SHAPE $FAST --steps 200 -o "$T/m.bin"; then ok; else fail "train pretrain"; fi
[ -s "$T/m.bin.csv" ] && [ -s "$T/m.bin.svg" ] && ok || fail "pretrain wrote no loss curve (CSV and SVG)"
first=$(awk -F, 'NR == 2 { print $4 }' "$T/m.bin.csv"); last=$(awk -F, '$4 != "" { v = $4 } END { print v }' "$T/m.bin.csv")
if awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a / 2) }'; then ok; else fail "validation loss did not halve: $first -> $last"; fi
$TRAIN plot "$T/m.bin.csv" -o "$T/replot.svg" && [ "$(grep -o ',' "$T/replot.svg" | wc -l)" -gt 200 ] && ok \
    || fail "train plot did not redraw the 200-step curve"
expect_error "plot of a file without a curve" "no loss curve" $TRAIN plot "$T/corpus.txt" -o "$T/x.svg"
"$BIN"/export -q --int4 "$T/m.bin" "$T/m.q4.bin" && ok || fail "export of the trained model"
out=$("$BIN"/runq "$T/m.q4.bin" -t 0 -n 24 -i "Once upon" 2>/dev/null)
case "$out" in "Once upon"*" "*) ok ;; *) fail "runq on the trained model: '$out'" ;; esac
"$BIN"/run "$T/m.bin" -t 0 -n 24 -i "Once upon" >"$T/run.txt" 2>/dev/null && ok || fail "run (fp32) on the trained model"

# ---- distill: a student of another shape from the model above as teacher
if $TRAIN distill "$T/corpus.txt" --teacher "$T/m.bin" --shape dim=16,ffn=32,layers=1,heads=2,kv_heads=1,seq_len=64 \
    $FAST -o "$T/student.bin"; then ok; else fail "train distill"; fi

# ---- LoRA on the int4 model (QLoRA), merged by export --lora, run by runq
if $TRAIN lora "$T/corpus.txt" --base "$T/m.q4.bin" --rank 4 --targets wq,wv,w2 $FAST -o "$T/adapter"; then ok; else fail "train lora"; fi
[ -s "$T/adapter/adapter_config.json" ] && [ -s "$T/adapter/adapter_model.safetensors" ] && ok || fail "lora wrote no PEFT adapter"
"$BIN"/export -q --int4 --lora "$T/adapter" "$T/m.q4.bin" "$T/merged.q4.bin" && ok || fail "export --lora of train's adapter"

# ---- the same adapter kept apart: export --adapter, runq --lora. Its reference is run.c on the int4
# base dequantized with the adapter merged in fp32: only runq's int8 activations and fp16 KV differ
LOGITS=${BUILD:-build}/logits
TOKENS="1 5 9 40 7 3 12 60 2 33 8 17"
"$BIN"/export -q --adapter "$T/adapter" "$T/m.q4.bin" "$T/adapter.bin" && ok || fail "export --adapter"
"$BIN"/export -q --fp32 "$T/m.q4.bin" "$T/deq.bin" && "$BIN"/export -q --fp32 --lora "$T/adapter" "$T/deq.bin" "$T/deq-merged.bin" \
    && $LOGITS "$T/deq-merged.bin" "$T/ref.out" $TOKENS && $LOGITS --lora "$T/adapter.bin" "$T/m.q4.bin" "$T/lora.out" $TOKENS \
    && $LOGITS "$T/m.q4.bin" "$T/base.out" $TOKENS && ok || fail "logits with the adapter"
# kl A B: mean KL(softmax A || softmax B) over the rows of two logits files (vocab from the tokenizer: 300)
kl() { python3 -c '
import array, math, sys
def rows(path):
    a = array.array("f"); a.frombytes(open(path, "rb").read()); return [a[i:i + 300] for i in range(0, len(a), 300)]
def logp(r):
    m = max(r); s = math.log(sum(math.exp(x - m) for x in r)); return [x - m - s for x in r]
total = 0
pairs = list(zip(rows(sys.argv[1]), rows(sys.argv[2])))
for p, q in pairs:
    lp, lq = logp(p), logp(q); total += sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))
print(total / len(pairs))' "$1" "$2"; }
with_lora=$(kl "$T/ref.out" "$T/lora.out"); without=$(kl "$T/ref.out" "$T/base.out")
if awk -v a="$with_lora" -v b="$without" 'BEGIN { exit !(a < 0.002 && b > 20 * a) }'; then ok
else fail "runq --lora should match the merged reference (KL $with_lora, below 0.002) far better than the base alone (KL $without)"; fi
echo "  runq --lora against run.c on the merged weights: mean KL $with_lora (the base alone: $without)"
"$BIN"/runq "$T/m.q4.bin" --lora "$T/adapter.bin" -t 0 -n 16 -i "Once" >/dev/null 2>&1 && ok || fail "runq --lora"
expect_error "an adapter run as a model" "is a LoRA adapter, not a model" "$BIN"/runq "$T/adapter.bin"
expect_error "a model given as the adapter" "is a model, not a LoRA adapter" "$BIN"/runq "$T/m.q4.bin" --lora "$T/m.q4.bin"
"$BIN"/export -q --int4 "$T/student.bin" "$T/student.q4.bin" || fail "export of the student"
expect_error "an adapter for another shape" "adapter for another shape" "$BIN"/runq "$T/student.q4.bin" --lora "$T/adapter.bin"
expect_error "export --adapter with --lora" "writes an adapter file alone" "$BIN"/export -q --adapter "$T/adapter" --lora "$T/adapter" "$T/m.q4.bin" "$T/x.bin"
"$BIN"/runq "$T/merged.q4.bin" -t 0 -n 16 -i "Once" >/dev/null 2>&1 && ok || fail "runq on the merged model"

# ---- conversations (a .jsonl corpus): the model learns to answer two requests, each with its own
# reply, in the llama2 template it records (runq's chat renders the requests as train did), and
# ends each reply with the end-of-turn token; requests are only read, so from BOS it never writes one
for i in $(seq 1 150); do
    echo '{"messages": [{"role": "user", "content": "Tell me about the cat."}, {"role": "assistant", "content": "The cat sat in the sun."}]}'
    echo '{"messages": [{"role": "user", "content": "Tell me about the ball."}, {"role": "assistant", "content": "The ball rolled under a tree."}]}'
done >"$T/chats.jsonl"
if $TRAIN pretrain "$T/chats.jsonl" -z "$T/tok.bin" --chat-template llama2 --shape $SHAPE $FAST --steps 300 -o "$T/chat.bin"; then ok
else fail "train pretrain on conversations"; fi
[ "$(od -A n -t u4 -j 60 -N 4 "$T/chat.bin" | tr -d ' ')" = 1 ] && ok || fail "the trained model does not record the llama2 chat template"
"$BIN"/export -q --int4 "$T/chat.bin" "$T/chat.q4.bin"
for subject in "cat:The cat sat in the sun." "ball:The ball rolled under a tree."; do
    reply=$("$BIN"/runq "$T/chat.q4.bin" -m chat -y "" -i "Tell me about the ${subject%%:*}." -t 0 </dev/null 2>/dev/null | head -1)
    # a Llama 2 reply starts with a word's space, after [/INST]: "Assistant:  The"
    [ "$reply" = "Assistant:  ${subject#*:}" ] && ok || fail "the chat model's reply to the ${subject%%:*} request: '$reply'"
done
from_bos=$("$BIN"/runq "$T/chat.q4.bin" -t 0 -n 12 2>/dev/null)
case "$from_bos" in *"[INST]"*|*"Tell me"*) fail "a model that only read requests writes one: '$from_bos'" ;; *) ok ;; esac
printf '%s\n' '{"messages": [{"role": "user", "content": "Hi"}]}' >"$T/no-reply.jsonl"
printf '%s\n' '{"messages": [{"role": "assistant", "content": "Hi"}]}' >"$T/reply-first.jsonl"
printf '%s\n' '{"text": "fine"}' '{"text": ' >"$T/broken.jsonl"
printf '%s\n' '{"story": "Once"}' >"$T/no-text.jsonl"
expect_error "conversations without a chat template" "give --chat-template NAME" \
    $TRAIN pretrain "$T/chats.jsonl" -z "$T/tok.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "a conversation ending on the user" "no-reply.jsonl:1: the conversation ends with the user's message" \
    $TRAIN pretrain "$T/no-reply.jsonl" -z "$T/tok.bin" --chat-template llama2 --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "a reply before any request" "reply-first.jsonl:1: messages\[0\]: role 'assistant' out of turn" \
    $TRAIN pretrain "$T/reply-first.jsonl" -z "$T/tok.bin" --chat-template llama2 --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "a line of broken JSON" "broken.jsonl:2: invalid JSON" \
    $TRAIN pretrain "$T/broken.jsonl" -z "$T/tok.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "a line that is neither text nor messages" "no-text.jsonl:1: a line must be an object with" \
    $TRAIN pretrain "$T/no-text.jsonl" -z "$T/tok.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "an unknown chat template" "unknown chat template 'nope'" \
    $TRAIN pretrain "$T/chats.jsonl" -z "$T/tok.bin" --chat-template nope --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "--plain-teacher without conversations" "--plain-teacher is for conversations" \
    $TRAIN distill "$T/corpus.txt" --teacher "$T/m.bin" --plain-teacher --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "--plain-teacher in pretrain" "--plain-teacher is for distill" \
    $TRAIN pretrain "$T/chats.jsonl" -z "$T/tok.bin" --chat-template llama2 --plain-teacher --shape $SHAPE $BAD -o "$T/x.bin"

# ---- resume: a run stopped at step 20 and resumed ends where a straight run does
$TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape $SHAPE $FAST -o "$T/straight.bin"
$TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape $SHAPE $FAST -o "$T/resumed.bin" --state "$T/run.state" --stop-at 20
[ ! -e "$T/resumed.bin" ] && ok || fail "a stopped run wrote its final model"
$TRAIN pretrain "$T/corpus.txt" --resume "$T/run.state" -o "$T/resumed.bin" -q -T 1
same "resumed run" "$T/straight.bin" "$T/resumed.bin"

# ---- ShortGPT: influence ranks the layers, export --drop-layers removes them
$TRAIN influence "$T/corpus.txt" --init "$T/m.bin" --context 32 --eval-windows 4 >"$T/influence.txt" 2>/dev/null
[ "$(grep -c '^  layer ' "$T/influence.txt")" -eq 2 ] && grep -Eq '^export --drop-layers [01]$' "$T/influence.txt" && ok \
    || fail "train influence: $(cat "$T/influence.txt")"
"$BIN"/export -q --int4 --drop-layers 0 "$T/m.bin" "$T/pruned.q4.bin" && "$BIN"/runq "$T/pruned.q4.bin" -n 8 -i "Once" >/dev/null 2>&1 \
    && ok || fail "export --drop-layers, then runq"
expect_error "drop a layer that is not there" "from 0 to 1" "$BIN"/export -q --drop-layers 2 "$T/m.bin" "$T/x.bin"
expect_error "drop a layer twice" "twice" "$BIN"/export -q --drop-layers 1,1 "$T/m.bin" "$T/x.bin"
expect_error "drop every layer" "all 2 layers" "$BIN"/export -q --drop-layers 0,1 "$T/m.bin" "$T/x.bin"
expect_error "influence without a model" "needs --init" $TRAIN influence "$T/corpus.txt"

# ---- export --drop-layers auto:N on the default model (5 layers): export ranks the layers itself, as
# train influence does (the same defaults: 16 windows of 256 tokens), drops the least influential, and
# the 4-layer result runs in runq and is scored by tools/ppl, worse than the whole model
D=models/tinystories-edge.f32.bin PPL=${BUILD:-build}/ppl
$TRAIN influence "$T/corpus.txt" --init $D >"$T/influence5.txt" 2>/dev/null
least=$(awk '/^  layer / { print $2; exit }' "$T/influence5.txt")
"$BIN"/export --int4 --drop-layers auto:1 --calib "$T/corpus.txt" $D "$T/auto.q4.bin" 2>"$T/auto.err" \
    && [ "$(grep -c '^  layer ' "$T/auto.err")" -eq 5 ] && grep -q "^export: --drop-layers auto:1 drops layers $least " "$T/auto.err" \
    && ok || fail "export --drop-layers auto:1 should drop layer $least, as train influence ranks: $(cat "$T/auto.err")"
[ "$(od -A n -t u4 -j 12 -N 4 "$T/auto.q4.bin" | tr -d ' ')" = 4 ] && ok || fail "auto:1 left a model without 4 layers"
"$BIN"/runq "$T/auto.q4.bin" -t 0 -n 16 -i "Once upon a time" >/dev/null 2>&1 && ok || fail "runq on the auto:1 model"
"$BIN"/export -q --int4 $D "$T/whole.q4.bin"
ppl_of() { "$PPL" --json --max-tokens 2048 "$1" "$T/corpus.txt" | grep -o '"perplexity": [0-9.]*' | cut -d' ' -f2; }
whole=$(ppl_of "$T/whole.q4.bin"); pruned=$(ppl_of "$T/auto.q4.bin")
awk -v a="$whole" -v b="$pruned" 'BEGIN { exit !(a > 1 && b > a) }' && ok \
    || fail "perplexity of the auto:1 model ($pruned) should be above the whole model's ($whole)"
echo "  export --drop-layers auto:1 drops layer $least; perplexity on the test text $whole -> $pruned"
"$BIN"/export -q --int4 --drop-layers auto:2 --calib "$T/corpus.txt" --calib-context 64 --calib-windows 2 $D "$T/auto2.q4.bin" \
    && [ "$(od -A n -t u4 -j 12 -N 4 "$T/auto2.q4.bin" | tr -d ' ')" = 3 ] && ok || fail "export --drop-layers auto:2"
head -c 100 "$T/corpus.txt" >"$T/short.txt"
expect_error "auto:N without a text" "give it with --calib" "$BIN"/export -q --drop-layers auto:1 $D "$T/x.bin"
expect_error "auto:N dropping every layer" "auto:N expects a whole number from 1 to 4, got '5'" \
    "$BIN"/export -q --drop-layers auto:5 --calib "$T/corpus.txt" $D "$T/x.bin"
expect_error "auto:0" "from 1 to 4, got '0'" "$BIN"/export -q --drop-layers auto:0 --calib "$T/corpus.txt" $D "$T/x.bin"
expect_error "auto: and no number" "from 1 to 4, got ''" "$BIN"/export -q --drop-layers auto: --calib "$T/corpus.txt" $D "$T/x.bin"
expect_error "auto:two" "got 'two'" "$BIN"/export -q --drop-layers auto:two --calib "$T/corpus.txt" $D "$T/x.bin"
expect_error "calibration text shorter than a window" "needs at least one window of 256" \
    "$BIN"/export -q --drop-layers auto:1 --calib "$T/short.txt" $D "$T/x.bin"
expect_error "calibration text missing" "cannot open $T/nothing.txt" \
    "$BIN"/export -q --drop-layers auto:1 --calib "$T/nothing.txt" $D "$T/x.bin"
expect_error "auto:N on a model without a tokenizer" "no tokenizer to read .* give its tokenizer.bin with -z" \
    "$BIN"/export -q --drop-layers auto:1 --calib "$T/corpus.txt" "$M/stories260K.bin" "$T/x.bin"
expect_error "--calib for an fp32 output" "this output has none to round" "$BIN"/export -q --fp32 --calib "$T/corpus.txt" $D "$T/x.bin"
expect_error "--calib for a GGUF f32 output" "this output has none to round" \
    "$BIN"/export -q --gguf-f32 --calib "$T/corpus.txt" $D "$T/x.bin"
expect_error "--awq without a text" "give it with --calib FILE" "$BIN"/export -q --awq $D "$T/x.bin"
expect_error "--calib with --adapter" "writes an adapter file alone" \
    "$BIN"/export -q --adapter "$T/adapter" --calib "$T/corpus.txt" "$T/m.q4.bin" "$T/x.bin"
expect_error "a calibration text shorter than a window" "calibrated rounding needs at least one window of 256" \
    "$BIN"/export -q --calib "$T/short.txt" $D "$T/x.bin"
expect_error "a directory as the calibration text" "$T is not a regular file" "$BIN"/export -q --calib "$T" $D "$T/x.bin"
expect_error "--calib on a model without a tokenizer" "no tokenizer to read" \
    "$BIN"/export -q --awq --calib "$T/corpus.txt" "$M/stories260K.bin" "$T/x.bin"
[ ! -e "$T/x.bin" ] && ok || fail "a refused export left $T/x.bin behind"

# ---- structured FFN pruning: half of each FFN (64 neurons) goes, the model still runs in int4
$TRAIN prune-ffn "$T/corpus.txt" --init "$T/m.bin" --keep 0.5 --context 32 --eval-windows 4 -o "$T/ffn.bin" 2>"$T/ffn.err" \
    && grep -q "FFN widths 128 -> 64 neurons over 2 layers" "$T/ffn.err" && ok || fail "train prune-ffn: $(cat "$T/ffn.err")"
"$BIN"/export -q --int4 "$T/ffn.bin" "$T/ffn.q4.bin" && "$BIN"/runq "$T/ffn.q4.bin" -n 8 -i "Once" >/dev/null 2>&1 \
    && ok || fail "export of the FFN-pruned model, then runq"
expect_error "prune-ffn without --keep" "needs --keep" $TRAIN prune-ffn "$T/corpus.txt" --init "$T/m.bin" -o "$T/x.bin"
expect_error "prune-ffn keeping nothing" "needs --keep" $TRAIN prune-ffn "$T/corpus.txt" --init "$T/m.bin" --keep 0 -o "$T/x.bin"
expect_error "prune-ffn without a model" "needs --init" $TRAIN prune-ffn "$T/corpus.txt" --keep 0.5 -o "$T/x.bin"
[ ! -e "$T/x.bin" ] && ok || fail "a refused prune-ffn left $T/x.bin behind"

# ---- export --awq: the AWQ-scaled fp32 model computes what the original does (run's text is unchanged);
# its int4, with the scales chosen for int4, runs. A re-export of an int4 file with --calib copies its blocks
# (they are rounded already) and says so
"$BIN"/export --fp32 --awq --calib "$T/corpus.txt" --calib-context 32 --calib-windows 4 "$T/m.bin" "$T/awq.bin" 2>"$T/awq.err" \
    && [ "$(grep -c '^  layer ' "$T/awq.err")" -eq 2 ] && ok || fail "export --fp32 --awq: $(cat "$T/awq.err")"
"$BIN"/run "$T/awq.bin" -t 0 -n 24 -i "Once upon" >"$T/awq-run.txt" 2>/dev/null && same "awq: fp32 text unchanged" "$T/run.txt" "$T/awq-run.txt"
"$BIN"/export -q --int4 --awq --calib "$T/corpus.txt" --calib-context 32 --calib-windows 4 "$T/m.bin" "$T/awq.q4.bin" \
    && "$BIN"/runq "$T/awq.q4.bin" -n 8 -i "Once" >/dev/null 2>&1 && ok || fail "export --int4 --awq, then runq"
"$BIN"/export --int4 --calib "$T/corpus.txt" --calib-context 32 "$T/m.q4.bin" "$T/again.q4.bin" 2>"$T/again.err" \
    && grep -q "were quantized in .* already and were copied" "$T/again.err" && ok || fail "--calib on an int4 input: $(cat "$T/again.err")"
same "--calib re-export of an int4 file" "$T/m.q4.bin" "$T/again.q4.bin"

# ---- bad input
: >"$T/empty.txt"
head -c 300 "$T/corpus.txt" >"$T/small.txt"
printf 'x\0y' >"$T/binary.txt"
expect_error "empty corpus" "empty" $TRAIN pretrain "$T/empty.txt" -z "$T/tok.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "corpus smaller than a window" "too small" $TRAIN pretrain "$T/small.txt" -z "$T/tok.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "binary corpus" "not text" $TRAIN pretrain "$T/binary.txt" -z "$T/tok.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "missing corpus" "cannot open" $TRAIN pretrain "$T/nothing.txt" -z "$T/tok.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "tokenizer from an empty corpus" "empty" $TRAIN tokenizer "$T/empty.txt" -o "$T/x.tok"
expect_error "unknown mode" "unknown mode" $TRAIN bake "$T/corpus.txt" -o "$T/x.bin"
expect_error "no output" "needs -o" $TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape $SHAPE
expect_error "new model without a tokenizer" "tokenizer" $TRAIN pretrain "$T/corpus.txt" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "bad shape" "shape|unknown" $TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape dim=banana $BAD -o "$T/x.bin"
expect_error "context beyond the model's" "longer than the model" $TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape $SHAPE --context 100 -q -o "$T/x.bin"
expect_error "bad learning rate" "--lr expects" $TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape $SHAPE --lr fast $BAD -o "$T/x.bin"
expect_error "distill without a teacher" "needs --teacher" $TRAIN distill "$T/corpus.txt" --shape $SHAPE $BAD -o "$T/x.bin"
$TRAIN tokenizer "$T/corpus.txt" -o "$T/tok2.bin" --vocab 290 -q
expect_error "teacher with another tokenizer" "teacher's tokenizer" \
    $TRAIN distill "$T/corpus.txt" --teacher "$T/m.bin" -z "$T/tok2.bin" --shape $SHAPE $BAD -o "$T/x.bin"
expect_error "lora without a base" "needs --base" $TRAIN lora "$T/corpus.txt" $BAD -o "$T/x"
expect_error "lora unknown projection" "unknown projection" $TRAIN lora "$T/corpus.txt" --base "$T/m.bin" --targets wq,wz $BAD -o "$T/x"
{ cat "$T/corpus.txt"; echo "The end."; } >"$T/other.txt"
expect_error "resume on another corpus" "another corpus" $TRAIN pretrain "$T/other.txt" --resume "$T/run.state" $BAD -o "$T/x.bin"
expect_error "resume from a non-state file" "not a train state" $TRAIN pretrain "$T/corpus.txt" --resume "$T/m.bin" $BAD -o "$T/x.bin"
expect_error "stop without a state" "needs --state" $TRAIN pretrain "$T/corpus.txt" -z "$T/tok.bin" --shape $SHAPE --stop-at 3 $BAD -o "$T/x.bin"
[ ! -e "$T/x.bin" ] && ok || fail "a failed run left $T/x.bin behind"
summary
