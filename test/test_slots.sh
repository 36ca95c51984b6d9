#!/usr/bin/env bash
# test_slots.sh — ./server --parallel N on the default model, as concurrent
# clients see it: each request's text (and its log-probabilities) is
# bit-identical whether it runs alone or beside 1, 3 or 7 others (streams,
# n: 2, a grammar, logprobs, streamed structured output, a stream past the
# context that shifts it, among them); prompt caching across slots
# (a follow-up finds its slot, cache_prompt:false misses, a partial prefix
# reuses its part, cached and uncached text equal); a client leaving
# mid-prompt frees its slot while another stream goes on; the queue holds
# requests while every slot is busy; /slots and /metrics report each slot;
# the official `openai` npm client, four at once, against --parallel 4.
# Not a benchmark (tools/bench-slots is): nothing here is timed. A pause per
# forward pass (--token-delay) only makes requests long enough to overlap;
# the log says how many slots each one's passes held, and that is checked.
# Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh" test_slots "$@"
MODEL=models/tinystories-edge.q4.bin

if ! command -v curl >/dev/null || ! command -v node >/dev/null; then
    echo "SKIP: test_slots needs curl and node: not installed"
    summary
fi

SERVER_THREADS=2   # start_server's (test/lib.sh): the slots run side by side on two threads
post() { curl -s -o "$T/body" -w '%{http_code}' --data-binary "$2" "$URL$1"; }
jcheck() {
    if node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.exit(eval(process.argv[2]) ? 0 : 1)' "$2" "$3" 2>/dev/null
    then ok; else fail "$1: $3 does not hold for $(head -c 400 "$2")"; fi
}
jget() { node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(String(eval(process.argv[2])))' "$1" "$2"; }

# fire.js URL OUT REQUEST...: the requests (each "PATH JSON") sent at once;
# OUT.i gets request i's text as the client reads it: streamed events
# joined, or the answer without its timings, ids and cache counts (those
# differ from run to run; the text, tokens and log-probabilities must not)
cat >"$T/fire.js" <<'EOF'
const [url, out, ...requests] = process.argv.slice(2);
const fs = require('fs');
const canonical = (j) => JSON.stringify(j, (key, value) =>
    ['timings', 'id', 'created', 'tokens_cached', 'usage', 'system_fingerprint'].includes(key) ? undefined : value);
async function one(request, i) {
    const space = request.indexOf(' '), path = request.slice(0, space), body = request.slice(space + 1);
    const response = await fetch(url + path, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    const raw = await response.text();
    if (response.status !== 200) throw new Error(`request ${i}: HTTP ${response.status}: ${raw.slice(0, 200)}`);
    if (!JSON.parse(body).stream) { fs.writeFileSync(`${out}.${i}`, canonical(JSON.parse(raw))); return; }
    const events = raw.split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice(6)));
    fs.writeFileSync(`${out}.${i}`, events.map(canonical).join('\n'));
}
Promise.all(requests.map(one)).catch((e) => { console.error(e.message); process.exit(1); });
EOF
fire() { node "$T/fire.js" "$URL" "$@" 2>"$T/fire.err" || fail "requests failed: $(cat "$T/fire.err")"; }
# most_slots N: the most slots any of the last N jobs shared a forward pass with (its own included)
most_slots() { grep 'server: job' "$T/$LOG.log" | tail -"$1" | grep -o 'up to [0-9]* slots' | grep -o '[0-9]*' | sort -n | tail -1; }

# ---- bad --parallel: one clear message, a non-zero exit
expect_error "--parallel 0" "--parallel expects a whole number from 1 to 16, got '0'" "$BIN"/server "$MODEL" --parallel 0
expect_error "--parallel 17" "--parallel expects a whole number from 1 to 16, got '17'" "$BIN"/server "$MODEL" --parallel 17

# ---- the same text alone and beside 1, 3 and 7 others, 8 slots
LOG=parallel
start_server parallel --parallel 8 --ctx 256 --token-delay 15
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/props"); jcheck "/props: 8 slots" "$T/body" 'j.total_slots === 8'
if grep -q '^server: 8 slots of 256 positions (--parallel)' "$T/parallel.log"; then ok; else fail "the start does not log the slots: $(cat "$T/parallel.log")"; fi
requests=(
    '/completion {"prompt":"Once upon a time","n_predict":40,"seed":1,"temperature":0.8}'
    '/completion {"prompt":"The little dog","n_predict":40,"seed":2,"temperature":0.9,"stream":true}'
    '/completion {"prompt":"Lily and Tom went to the park","n_predict":40,"seed":3,"n_probs":3}'
    '/v1/chat/completions {"messages":[{"role":"user","content":"A cat"}],"max_tokens":120,"seed":4,"stream":true,"response_format":{"type":"json_schema","json_schema":{"name":"pet","schema":{"type":"object","properties":{"name":{"enum":["Kit","Tom"]},"age":{"type":"integer"}},"required":["name","age"]}}}}'
    '/completion {"prompt":"One day, a bird","n_predict":30,"seed":5,"n":2,"temperature":1.0}'
    '/completion {"prompt":"The sun","n_predict":40,"seed":6,"grammar":"root ::= [a-z ]+ \".\""}'
    '/v1/completions {"prompt":"Once there was a girl","max_tokens":40,"seed":7,"logprobs":2}'
    '/completion {"prompt":"Ben had a red ball","n_predict":280,"n_keep":4,"ignore_eos":true,"seed":8,"temperature":0.8,"stream":true}'
)
for i in "${!requests[@]}"; do
    fire "$T/alone.$i" "${requests[$i]}"
    mv "$T/alone.$i.0" "$T/alone.$i" 2>/dev/null
done
alone_most=$(most_slots 8)
[ "$alone_most" = 1 ] && ok || fail "requests sent one at a time shared passes: up to $alone_most slots"
for busy in 2 4 8; do
    fire "$T/together$busy" "${requests[@]:0:$busy}"
    most=$(most_slots "$busy")
    [ "$most" = "$busy" ] && ok || fail "$busy requests at once never shared one pass ($most slots at most): the test proves nothing"
    differ=""
    for ((i = 0; i < busy; i++)); do
        [ -s "$T/alone.$i" ] && cmp -s "$T/alone.$i" "$T/together$busy.$i" || differ="$differ $i"
    done
    first=${differ# }; first=${first%% *}
    [ -z "$differ" ] && ok || fail "with $busy slots busy, requests$differ differ from each alone: $(head -c 300 "$T/alone.$first") vs $(head -c 300 "$T/together$busy.$first")"
done
# the grammar held and logprobs came, so those requests were what they say
jcheck "the grammar's request answers lowercase words and a period" "$T/together8.5" '/^[a-z ]+\.$/.test(j.content)'
jcheck "the logprobs request has them" "$T/together8.6" 'j.choices[0].logprobs.tokens.length === 40'
node -e 'const events = require("fs").readFileSync(process.argv[1], "utf8").split("\n").map(JSON.parse);
    const text = events.map((e) => e.choices[0]?.delta?.content ?? "").join(""), j = JSON.parse(text);
    process.exit(["Kit", "Tom"].includes(j.name) && Number.isInteger(j.age) ? 0 : 1)' "$T/together8.3" 2>/dev/null && ok \
    || fail "the streamed structured output does not follow its schema: $(tail -c 300 "$T/together8.3")"
if [ "$(grep -c '"tokens_predicted"' "$T/together8.7")" -gt 0 ] && tail -1 "$T/together8.7" | grep -q '"tokens_predicted":280' \
   && [ "$(grep -c 'context shift' "$T/parallel.log")" -ge 2 ]; then ok
else fail "the stream past the context did not shift (alone and beside 7 others): $(tail -c 200 "$T/together8.7")"; fi
code=$(curl -s -o "$T/slots" -w '%{http_code}' "$URL/slots")
jcheck "/slots: 8 idle slots, each holding its last sequence" "$T/slots" 'j.length === 8 && j.every((s, i) => s.id === i && !s.is_processing && s.n_past > 0)'
curl -s -o "$T/metrics" "$URL/metrics"
if grep -q '^edge_llm:slots_total 8$' "$T/metrics" && [ "$(grep -c '^edge_llm:slot_busy{slot="[0-7]"} 0$' "$T/metrics")" = 8 ] \
   && [ "$(grep -Ec '^edge_llm:slot_kv_cache_tokens\{slot="[0-7]"\} [1-9]' "$T/metrics")" = 8 ]; then ok
else fail "/metrics lacks each slot's gauges: $(grep slot "$T/metrics")"; fi
stop_server parallel

# ---- prompt caching across two slots
LOG=cache
start_server cache --parallel 2 --ctx 256
story_a="Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her big red ball and her dog Max."
story_b="Tom was a boy who liked trucks. Every day he drove his toy truck around the garden, up the hill and down again, very fast."
fire "$T/first" "/completion {\"prompt\":\"$story_a\",\"n_predict\":8,\"seed\":1}" "/completion {\"prompt\":\"$story_b\",\"n_predict\":8,\"seed\":1}"
slot_of() { grep 'server: job' "$T/cache.log" | tail -1 | grep -o 'on slot [0-9]*' | grep -o '[0-9]*$'; }
post /tokenize "{\"content\":\"$story_a\",\"add_special\":true}" >/dev/null
n_a=$(jget "$T/body" 'j.tokens.length')
slot_a=$(grep 'server: job' "$T/cache.log" | grep "prompt $n_a tokens" | grep -o 'on slot [0-9]*' | grep -o '[0-9]*$')
post /completion "{\"prompt\":\"$story_a Max ran\",\"n_predict\":8,\"seed\":2}" >/dev/null
jcheck "a follow-up reuses its story's cache" "$T/body" "j.tokens_cached >= $n_a - 2 && j.tokens_cached < j.tokens_evaluated"
[ "$(slot_of)" = "$slot_a" ] && ok || fail "the follow-up went to slot $(slot_of), not its story's slot $slot_a"
post /completion "{\"prompt\":\"$story_b Then\",\"n_predict\":8,\"seed\":2}" >/dev/null
cp "$T/body" "$T/cached_b"
jcheck "the other story's follow-up reuses the other slot's cache" "$T/cached_b" "j.tokens_cached > 20"
[ "$(slot_of)" != "$slot_a" ] && ok || fail "the other story's follow-up went to slot $slot_a"
post /completion "{\"prompt\":\"$story_b Then\",\"n_predict\":8,\"seed\":2,\"cache_prompt\":false}" >/dev/null
jcheck "cache_prompt:false reuses nothing" "$T/body" 'j.tokens_cached === 0 && j.timings.cache_n === 0'
node -e 'const [a, b] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8"))); process.exit(a.content === b.content ? 0 : 1)' \
    "$T/cached_b" "$T/body" && ok || fail "cached and uncached text differ: $(head -c 200 "$T/cached_b") vs $(head -c 200 "$T/body")"
post /completion '{"prompt":"Once upon a time, there was a little boy who hated rain.","n_predict":4}' >/dev/null
jcheck "a partial prefix reuses its part only" "$T/body" 'j.tokens_cached > 3 && j.tokens_cached < 20'
post /completion '{"prompt":"Zebras","n_predict":4}' >/dev/null
jcheck "a prompt sharing nothing but BOS is a miss" "$T/body" 'j.tokens_cached <= 1'
stop_server cache

# ---- a client leaving mid-prompt frees its slot; the queue holds what every slot cannot take
LOG=leave
start_server leave --parallel 2 --queue 1 --token-delay 100
curl -sN --max-time 20 --data-binary '{"prompt":"Once","n_predict":40,"stream":true,"seed":3}' "$URL/completion" >"$T/stream" & streamer=$!
sleep 0.3
long_prompt=$(printf 'The dog ran to the park and played with a ball. %.0s' $(seq 14))
curl -s --max-time 0.35 --data-binary "{\"prompt\":\"$long_prompt\",\"n_predict\":4}" "$URL/completion" >/dev/null 2>&1
sleep 0.4
if grep 'client gone' "$T/leave.log" | grep -q '0 predicted'; then ok; else fail "the prompt whose client left was not stopped: $(grep job "$T/leave.log")"; fi
code=$(curl -s -o "$T/slots" -w '%{http_code}' "$URL/slots")
jcheck "its slot is free while the stream goes on" "$T/slots" 'j.filter((s) => s.is_processing).length === 1'
code=$(post /completion '{"prompt":"Once","n_predict":2}')
[ "$code" = 200 ] && ok || fail "the freed slot did not serve the next request: HTTP $code"
# both slots busy: one request waits in the queue, the next is refused
curl -s -o /dev/null --data-binary '{"prompt":"The","n_predict":20}' "$URL/completion" & second=$!
sleep 0.3
curl -s -o "$T/queued" --data-binary '{"prompt":"Once","n_predict":2}' "$URL/completion" & queued=$!
sleep 0.3
code=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' --data-binary '{"prompt":"Once","n_predict":2}' "$URL/completion")
[ "$code" = 503 ] && grep -qi '^retry-after: 1' "$T/headers" && ok || fail "every slot busy and the queue full: HTTP $code, expected 503"
wait $streamer $queued $second
jcheck "the queued request is served when a slot frees" "$T/queued" 'j.tokens_predicted === 2'
[ "$(grep -c '^data: ' "$T/stream")" = 41 ] && ok || fail "the running stream was disturbed: $(grep -c '^data: ' "$T/stream") events"
stop_server leave

# ---- the official openai client, four at once, against --parallel 4
if [ -d tools/js/node_modules/openai ]; then
    LOG=openai
    start_server openai --parallel 4 --token-delay 10
    pids=()
    for i in 1 2 3 4; do node tools/js/server-client.mjs "$URL/v1" >"$T/openai.$i" 2>&1 & pids+=($!); done
    for i in 1 2 3 4; do
        if wait "${pids[$((i - 1))]}"; then ok; else fail "openai client $i against --parallel 4: $(grep -v '^ok' "$T/openai.$i" | head -3)"; fi
    done
    most=$(most_slots 16)
    [ "${most:-0}" -ge 2 ] && ok || fail "the four clients never shared a pass"
    stop_server openai
else
    echo "SKIP: tools/js/node_modules/openai is absent (npm ci --prefix tools/js): the openai client test did not run"
fi

summary
