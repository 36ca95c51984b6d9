#!/usr/bin/env bash
# test_default_model.sh — the default model (models/tinystories-edge) as a
# user meets it: the story `make run` tells (runq int4, and run on the fp32
# original), and its replies in runq's chat mode to the 20 requests of
# test/data/chat-requests.tsv, none of which tools/train-default-model
# gives it in training (their things are the stories' own: a dog, a cat). Readable means: at least 85 % of the words are
# dictionary words (tools/wordcheck, Debian's wamerican list); the replies
# must also be long enough, mention the subject asked for in at least 14 of
# the 20, and end their turn by themselves in at least 14. A random-weight
# model of the same shape runs the same check and must fail it.
# Prints the shares; ends with "N passed, N failed".
#   MODEL=other.q4.bin test/test_default_model.sh    the same check on another model
. "$(dirname "$0")/lib.sh" test_default_model "$@"
MODEL=${MODEL:-models/tinystories-edge.q4.bin}
FP32=${FP32:-models/tinystories-edge.f32.bin}
REQUESTS=test/data/chat-requests.tsv
MIN_KNOWN=0.85 MIN_WORDS=1000 MIN_MENTIONS=14 MIN_ENDED=14
MIN_STORY_WORDS=60   # a story, not a line: the model ends its stories itself, at 88-129 words at seeds 1-8 and 42

# ---- the dictionary: the system's wamerican list (installed here once when run as root, like the other
# suites' packages), else Debian's package unpacked in the scratch directory (no root needed)
words=/usr/share/dict/american-english
if [ ! -r "$words" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test_default_model: installing wamerican with apt-get" >&2
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wamerican \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wamerican; }; } \
        >"$T/apt.log" 2>&1 || tail -5 "$T/apt.log" >&2
fi
if [ ! -r "$words" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    (cd "$T" && apt-get download -q wamerican >"$T/apt.log" 2>&1) && dpkg-deb -x "$T"/wamerican_*.deb "$T/root" \
        && words=$T/root/usr/share/dict/american-english
fi
if [ ! -r "$words" ]; then
    echo "SKIP: no wamerican word list (not installed, and apt-get download wamerican failed: offline?): the default model's text was not checked"
    summary
fi
known() { tools/wordcheck "$words" "$1" | sed 's/known=\([0-9.]*\) .*/\1/'; }
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# ---- make run's story (its flags), from the int4 model and from run on the fp32 original
for engine in "$BIN/runq $MODEL" "$BIN/run $FP32"; do
    $engine -i "Once upon a time" -n 256 -t 0.8 -s 42 >"$T/story.txt" 2>/dev/null
    share=$(known "$T/story.txt") n_words=$(wc -w <"$T/story.txt")
    echo "  make run's story via ${engine%% *}: $n_words words, $share dictionary words"
    [[ "$(head -c 16 "$T/story.txt")" == "Once upon a time" ]] && [ "$n_words" -ge $MIN_STORY_WORDS ] && at_least "$share" $MIN_KNOWN && ok \
        || fail "make run's story via ${engine%% *} is not a readable story: $(head -c 300 "$T/story.txt")"
done

# ---- chat: each request alone, sampled as the chat page does by default (seeded: the same text on every CPU).
# A reply passes as a story when the 20 replies together are at least 85 % dictionary words, average 50
# words or more (letter soup scores well on the share: the dictionary holds every single letter), mention
# the subject asked for in at least 14 and end their turn by themselves (not at the context's end) in 14.
# chat_check MODEL DIR: each reply into DIR/N.txt; prints "known words mentions ended pass|fail"
chat_check() {
    local model=$1 dir=$2 n=0 mentions=0 ended=0 subject request
    mkdir -p "$dir"
    while IFS=$'\t' read -r subject request; do
        n=$((n + 1))
        "$BIN"/runq "$model" -m chat -y "" -i "$request" -t 0.8 -s "$n" </dev/null >"$dir/$n.out" 2>"$dir/$n.err"
        # runq prints "Assistant: " and the reply, then the next "User: " prompt
        sed '1s/^Assistant: *//; /^User: $/,$d' "$dir/$n.out" >"$dir/$n.txt"
        grep -Eiqw "${subject}s?" "$dir/$n.txt" && mentions=$((mentions + 1))
        grep -q "context full" "$dir/$n.err" || ended=$((ended + 1))
    done <"$REQUESTS"
    cat "$dir"/[0-9]*.txt >"$dir/all.txt"
    local share n_words verdict=fail
    share=$(known "$dir/all.txt") n_words=$(tools/wordcheck "$words" "$dir/all.txt" | sed 's/.*words=//')
    at_least "$share" $MIN_KNOWN && [ "$n_words" -ge $MIN_WORDS ] && [ "$mentions" -ge $MIN_MENTIONS ] \
        && [ "$ended" -ge $MIN_ENDED ] && verdict=pass
    echo "$share $n_words $mentions $ended $verdict"
}
[ "$(wc -l <"$REQUESTS")" -eq 20 ] && ok || fail "$REQUESTS should hold 20 requests"
read -r share n_words mentions ended verdict <<<"$(chat_check "$MODEL" "$T/chat")"
echo "  chat: 20 replies, $n_words words, $share dictionary words; the subject mentioned in $mentions, the turn ended in $ended"
[ "$verdict" = pass ] && ok || fail "the chat replies are no stories on request: $share dictionary words (at least $MIN_KNOWN), \
$n_words words (at least $MIN_WORDS), $mentions mentions (at least $MIN_MENTIONS), $ended ended (at least $MIN_ENDED): $(head -c 300 "$T/chat/1.txt")"

# ---- the same check on random weights of the same shape (export's synthetic tokenizer) fails
"$BIN"/export -q --random dim=64,ffn=172,layers=5,heads=8,kv_heads=4,vocab=512,seq_len=512 "$T/random.q4.bin"
read -r share n_words mentions ended verdict <<<"$(chat_check "$T/random.q4.bin" "$T/random")"
echo "  control, random weights: $n_words words, $share dictionary words; the subject mentioned in $mentions, the turn ended in $ended"
[ "$verdict" = fail ] && ok || fail "a random-weight model passes the chat check: the check cannot fail"
summary
