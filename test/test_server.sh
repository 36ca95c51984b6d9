#!/usr/bin/env bash
# test_server.sh — ./server as clients use it, on the default model: every
# route and error code with curl, the framing of server-sent events, seeded
# determinism (and greedy text equal to runq's), a client leaving mid-stream,
# a full queue, slow and oversized requests, SIGTERM, a bounded load test
# (its figures printed), and the official `openai` npm package as a client
# (structured output validated by ajv over 50 seeds on the default and a
# random-weight model, a tool call round trip, logprobs against the model's
# own logits, n: 3); the samplers, the chat histories clients send, prompt
# caching, a conversation longer than the context, CORS and HEAD, the new
# routes; the page in headless Chromium (screenshots in build/page/); and the
# abuse cases of test/server_abuse.py: 64 slow sockets from one address,
# half-closed clients, abandoned prompts, megabyte bodies.
# Not a benchmark: the load test's figures are printed, never compared.
# Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh" test_server "$@"
MODEL=models/tinystories-edge.q4.bin

if ! command -v curl >/dev/null || ! command -v node >/dev/null; then
    echo "SKIP: test_server needs curl and node (JSON checks): not installed"
    summary
fi

# ---- helpers
# post PATH JSON: the body to $T/body, the status code to stdout
post() { curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$2" "$URL$1"; }
# expect_status NAME WANT GOT
expect_status() { if [ "$3" = "$2" ]; then ok; else fail "$1: HTTP $3, expected $2: $(head -c 300 "$T/body")"; fi; }
# jcheck NAME FILE EXPR: FILE is JSON and the JavaScript EXPR over it (j) holds
jcheck() {
    if node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.exit(eval(process.argv[2]) ? 0 : 1)' "$2" "$3" 2>/dev/null
    then ok; else fail "$1: $3 does not hold for $(head -c 400 "$2")"; fi
}
# jget FILE EXPR: print a value from a JSON file
jget() { node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(String(eval(process.argv[2])))' "$1" "$2"; }
# sse NAME FILE KIND: the stream is well-formed server-sent events of KIND
# (llama | completions | chat); prints the streamed text into $T/streamed
cat >"$T/sse.js" <<'EOF'
const [file, kind, out] = process.argv.slice(2);
const raw = require('fs').readFileSync(file, 'utf8');
const die = (why) => { console.error(why); process.exit(1); };
if (!raw.endsWith('\n\n')) die('the stream does not end with a blank line');
const events = raw.slice(0, -2).split('\n\n');
let text = '';
events.forEach((event, i) => {
    if (!event.startsWith('data: ') || event.includes('\n')) die(`event ${i} is not one data line: ${JSON.stringify(event)}`);
    const last = i === events.length - 1, payload = event.slice(6);
    if (kind !== 'llama' && last) { if (payload !== '[DONE]') die('no data: [DONE] at the end'); return; }
    const j = JSON.parse(payload);
    const final = kind === 'llama' ? last : i === events.length - 2;
    if (kind === 'llama') {
        if (j.stop !== final) die(`event ${i}: stop is ${j.stop}`);
        if (final && (typeof j.timings?.predicted_per_second !== 'number' || typeof j.tokens_predicted !== 'number')) die('final event lacks timings');
        text += j.content;
    } else {
        const choice = j.choices[0];
        if ((choice.finish_reason !== null) !== final) die(`event ${i}: finish_reason ${choice.finish_reason}`);
        if (kind === 'chat') {
            if (j.object !== 'chat.completion.chunk') die(`event ${i}: object ${j.object}`);
            if (i === 0 && choice.delta.role !== 'assistant') die('the first chunk does not name the role');
            text += choice.delta.content ?? '';
        } else {
            if (j.object !== 'text_completion') die(`event ${i}: object ${j.object}`);
            text += choice.text;
        }
    }
});
if (events.length < 3) die(`only ${events.length} events`);
require('fs').writeFileSync(out, text);
EOF
sse() { if node "$T/sse.js" "$2" "$3" "$T/streamed" 2>"$T/sse.err"; then ok; else fail "$1: $(cat "$T/sse.err")"; fi; }
# raw NAME WANT BYTES...: send raw bytes (printf format) on a fresh connection; the answer's status must be WANT
raw() {
    local name=$1 want=$2; shift 2
    local got
    got=$( { printf "$@"; sleep 0.2; } | curl -s --max-time 5 telnet://"${URL#http://}" 2>/dev/null | head -1 | tr -d '\r')
    if [[ "$got" == "HTTP/1.1 $want "* ]]; then ok; else fail "$name: answered '$got', expected $want"; fi
}

# ---- every route, on a plain server
start_server main --timeout 1500 --ctx 256   # the checks below count in a context of 256 (the model's is 512)
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/health"); expect_status "GET /health" 200 "$code"
jcheck "/health says ok" "$T/body" 'j.status === "ok"'
code=$(curl -s -o "$T/body" -w '%{http_code} %{content_type}' "$URL/"); expect_status "GET / (the chat page)" "200 text/html; charset=utf-8" "$code"
if grep -q '/v1/chat/completions' "$T/body" && grep -q 'getReader' "$T/body"; then ok; else fail "the page does not stream /v1/chat/completions"; fi
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/v1/models"); expect_status "GET /v1/models" 200 "$code"
jcheck "/v1/models lists the model" "$T/body" 'j.object === "list" && j.data.length === 1 && j.data[0].id === "tinystories-edge.q4.bin" && j.data[0].object === "model"'

code=$(post /tokenize '{"content":"Once upon a time"}'); expect_status "POST /tokenize" 200 "$code"
jcheck "/tokenize gives token ids" "$T/body" 'Array.isArray(j.tokens) && j.tokens.length >= 4 && j.tokens.every(Number.isInteger)'
tokens=$(jget "$T/body" 'JSON.stringify(j.tokens)')
code=$(post /tokenize '{"content":"Once","add_special":true}'); expect_status "POST /tokenize add_special" 200 "$code"
jcheck "/tokenize add_special puts BOS first" "$T/body" 'j.tokens[0] === 1'
code=$(post /detokenize "{\"tokens\":$tokens}"); expect_status "POST /detokenize" 200 "$code"
jcheck "/detokenize gives back the text" "$T/body" 'j.content === "Once upon a time"'

# /completion: fields, greedy text equal to runq's, seeds, top-k, stop words
code=$(post /completion '{"prompt":"Once upon a time","n_predict":24,"temperature":0}'); expect_status "POST /completion" 200 "$code"
jcheck "/completion fields" "$T/body" 'typeof j.content === "string" && j.stop === true && j.tokens_predicted > 0 && j.tokens_predicted <= 24
    && j.tokens_evaluated === 5 && ["prompt_n","prompt_ms","prompt_per_second","predicted_n","predicted_ms","predicted_per_second"].every(k => typeof j.timings[k] === "number")'
cp "$T/body" "$T/greedy.json"
greedy=$(jget "$T/greedy.json" j.content)
"$BIN"/runq "$MODEL" -t 0 -n 64 -i "Once upon a time" >"$T/runq.txt" 2>/dev/null
if [[ "$(cat "$T/runq.txt")" == "Once upon a time$greedy"* ]]; then ok; else fail "greedy /completion differs from runq -t 0: '$greedy' vs '$(cat "$T/runq.txt")'"; fi
post /completion "{\"prompt\":$(node -e 'console.log(JSON.stringify([1, ...JSON.parse(process.argv[1])]))' "$tokens"),\"n_predict\":24,\"temperature\":0}" >/dev/null
jcheck "a token-id prompt gives the string prompt's text" "$T/body" "j.content === $(jget "$T/greedy.json" 'JSON.stringify(j.content)')"
post /completion '{"prompt":"Once upon a time","n_predict":24,"temperature":1,"top_k":1,"seed":5}' >/dev/null
jcheck "top_k 1 samples the greedy text" "$T/body" "j.content === $(jget "$T/greedy.json" 'JSON.stringify(j.content)')"
for run in 1 2; do post /completion '{"prompt":"Once upon a time","n_predict":40,"temperature":1,"top_k":0,"top_p":1,"seed":42}' >/dev/null; cp "$T/body" "$T/seed42.$run"; done
jcheck "the same seed gives the same text" "$T/seed42.1" "j.content === $(jget "$T/seed42.2" 'JSON.stringify(j.content)')"
post /completion '{"prompt":"Once upon a time","n_predict":40,"temperature":1,"top_k":0,"top_p":1,"seed":43}' >/dev/null
jcheck "another seed gives another text" "$T/body" "j.content !== $(jget "$T/seed42.1" 'JSON.stringify(j.content)')"
word=$(awk '{print $3}' <<<"$greedy")
if [ -n "$word" ]; then
    post /completion "{\"prompt\":\"Once upon a time\",\"n_predict\":24,\"temperature\":0,\"stop\":[\"zzz\",\"$word\"]}" >/dev/null
    before=${greedy%%"$word"*}
    jcheck "a stop word ends the text before it" "$T/body" "j.content === $(node -e 'console.log(JSON.stringify(process.argv[1]))' "$before") && j.stop_type === 'word' && j.stopping_word === '$word'"
    curl -sN -o "$T/stream" --data-binary "{\"prompt\":\"Once upon a time\",\"n_predict\":24,\"temperature\":0,\"stop\":\"$word\",\"stream\":true}" "$URL/completion"
    sse "/completion stream with a stop word" "$T/stream" llama
    if [ "$(cat "$T/streamed")" = "$before" ]; then ok; else fail "streamed text with a stop word: '$(cat "$T/streamed")', expected '$before'"; fi
else
    fail "greedy text has no third word: '$greedy'"
fi
curl -sN -o "$T/stream" -D "$T/headers" --data-binary '{"prompt":"Once upon a time","n_predict":24,"temperature":0,"stream":true}' "$URL/completion"
if grep -qi '^content-type: text/event-stream' "$T/headers"; then ok; else fail "/completion stream: not text/event-stream: $(cat "$T/headers")"; fi
sse "/completion stream framing" "$T/stream" llama
if [ "$(cat "$T/streamed")" = "$greedy" ]; then ok; else fail "streamed text '$(cat "$T/streamed")' differs from '$greedy'"; fi

# OpenAI: /v1/completions and /v1/chat/completions, streaming and not
code=$(post /v1/completions '{"model":"any","prompt":"Once upon a time","max_tokens":24,"temperature":0,"logit_bias":{},"user":"x"}')
expect_status "POST /v1/completions (unknown fields ignored)" 200 "$code"
jcheck "/v1/completions fields" "$T/body" 'j.object === "text_completion" && j.choices[0].text === '"$(jget "$T/greedy.json" 'JSON.stringify(j.content)')"' && ["stop","length"].includes(j.choices[0].finish_reason) && j.usage.prompt_tokens === 5'
curl -sN -o "$T/stream" --data-binary '{"prompt":"Once upon a time","max_tokens":24,"temperature":0,"stream":true}' "$URL/v1/completions"
sse "/v1/completions stream framing" "$T/stream" completions
if [ "$(cat "$T/streamed")" = "$greedy" ]; then ok; else fail "/v1/completions streamed '$(cat "$T/streamed")', expected '$greedy'"; fi
chat='"messages":[{"role":"system","content":"Tell a story."},{"role":"user","content":"Once upon a time"},{"role":"assistant","content":"there was a cat."},{"role":"user","content":[{"type":"text","text":"More."}]}],"max_tokens":20,"seed":9'
code=$(post /v1/chat/completions "{$chat}"); expect_status "POST /v1/chat/completions" 200 "$code"
jcheck "/v1/chat/completions fields" "$T/body" 'j.object === "chat.completion" && j.choices[0].message.role === "assistant" && typeof j.choices[0].message.content === "string"
    && j.usage.total_tokens === j.usage.prompt_tokens + j.usage.completion_tokens && j.id.startsWith("chatcmpl-")'
reply=$(jget "$T/body" 'j.choices[0].message.content')
curl -sN -o "$T/stream" --data-binary "{$chat,\"stream\":true}" "$URL/v1/chat/completions"
sse "/v1/chat/completions stream framing" "$T/stream" chat
if [ "$(cat "$T/streamed")" = "$reply" ]; then ok; else fail "streamed chat differs from the same request unstreamed"; fi
# ---- every refusal: the right status, an error JSON, and the server still serves
for case in '400|{"prompt":"x","temperature":"hot"}|temperature' '400|{"prompt":"x","n_predict":1.5}|n_predict' \
            '400|{"prompt":"x","stream":"yes"}|stream' '400|{"prompt":"x","stop":[1]}|stop' '400|{"prompt":[1,99999]}|prompt' \
            '400|{"prompt":{}}|prompt' '400|[1,2]|object' '400|{"prompt":"x",}|JSON' '400|{"prompt":"\ud800"}|JSON' \
            '400|{"prompt":"x","top_p":2}|top_p' '400|{"prompt":"x","temperature":-1e999}|temperature'; do
    IFS='|' read -r want body what <<<"$case"
    code=$(post /completion "$body"); expect_status "/completion $body" "$want" "$code"
    jcheck "/completion $body names $what" "$T/body" "j.error.code === $want && j.error.message.includes('$what')"
done
long=$(head -c 3000 /dev/zero | tr '\0' 'a' | sed 's/a/a b /g')
code=$(post /completion "{\"prompt\":\"$long\"}"); expect_status "a prompt longer than the context" 400 "$code"
for body in '{"messages":"hi"}' '{"messages":[]}' '{"messages":[{"role":"tool","content":"x"}]}' \
            '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}' '{"messages":[{"role":"user"}]}' \
            '{"messages":[{"role":"user","content":"x"}],"max_tokens":"5"}' \
            '{"messages":[{"role":"user","content":"x"}],"grammar":"root ::= nothing"}' \
            '{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"string","pattern":"a+"}}}}' \
            '{"messages":[{"role":"user","content":"x"}],"samplers":["top_k","mirostat"]}' \
            '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}' \
            '{"messages":[{"role":"user","content":"x"}],"logit_bias":{"99999":1}}' \
            '{"messages":[{"role":"user","content":"x"}],"n":9}'; do
    code=$(post /v1/chat/completions "$body"); expect_status "/v1/chat/completions $body" 400 "$code"
done
code=$(post /tokenize '{"content":5}'); expect_status "/tokenize with a number" 400 "$code"
code=$(post /detokenize '{"tokens":[-1]}'); expect_status "/detokenize with a negative id" 400 "$code"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/nowhere"); expect_status "unknown route" 404 "$code"
code=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' "$URL/completion"); expect_status "GET /completion" 405 "$code"
if grep -qi '^allow: POST' "$T/headers"; then ok; else fail "405 without Allow: POST"; fi
code=$(curl -s -o "$T/body" -w '%{http_code}' -X POST "$URL/health" -d x); expect_status "POST /health" 405 "$code"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$T/big"
code=$(curl -s -o "$T/body" -w '%{http_code}' --data-binary @"$T/big" "$URL/completion"); expect_status "a body over 1 MB" 413 "$code"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "Expect:" --data-binary @"$T/big" "$URL/completion"); expect_status "a body over 1 MB sent at once" 413 "$code"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "X-Big: $(head -c 17000 /dev/zero | tr '\0' x)" "$URL/health"); expect_status "headers over 16 kB" 431 "$code"
flood=(); for i in $(seq 70); do flood+=(-H "X-$i: y"); done
code=$(curl -s -o "$T/body" -w '%{http_code}' "${flood[@]}" "$URL/health"); expect_status "70 headers" 431 "$code"
raw "garbage request line" 400 'GARBAGE\r\n\r\n'
raw "HTTP/2 request line" 400 'GET / HTTP/2.0\r\n\r\n'
raw "header without a colon" 400 'GET /health HTTP/1.1\r\nHost x\r\n\r\n'
raw "bad Content-Length" 400 'POST /tokenize HTTP/1.1\r\nContent-Length: -5\r\n\r\n'
raw "two Content-Lengths" 400 'POST /tokenize HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n'
raw "POST without Content-Length" 411 'POST /tokenize HTTP/1.1\r\n\r\n'
raw "chunked body" 411 'POST /tokenize HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'
raw "binary junk" 400 '\x01\x02\xff\xfe\r\n\r\n'
# slow clients: a request that stops halfway, one that trickles in (the timeout is 1.5 s)
got=$( { printf 'POST /tokenize HTTP/1.1\r\nContent-Length: 20\r\n\r\n{"con'; sleep 2; } | curl -s --max-time 5 telnet://"${URL#http://}" | head -1 | tr -d '\r')
if [[ "$got" == "HTTP/1.1 408 "* ]]; then ok; else fail "a stalled body: '$got', expected 408"; fi
got=$( { for c in G E T ' ' / h e a l t h; do printf '%s' "$c"; sleep 0.2; done; sleep 1; } | curl -s --max-time 6 telnet://"${URL#http://}" | head -1 | tr -d '\r')
if [[ "$got" == "HTTP/1.1 408 "* ]]; then ok; else fail "a trickling request: '$got', expected 408"; fi
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/health"); expect_status "healthy after the bad requests" 200 "$code"

# ---- load: 100 requests from 8 concurrent clients (completions, chats, streams); all complete and valid, memory flat
rss() { awk '/^VmRSS/ {print $2}' /proc/"$PID"/status; }
cat >"$T/one.sh" <<'EOF'
#!/usr/bin/env bash
# one load request: $1 index; writes $T/load/$1.{body,meta}
i=$1 url=$2 dir=$3
case $((i % 3)) in
0) path=/completion body='{"prompt":"Once upon a time","n_predict":32,"seed":'$i'}' ;;
1) path=/v1/chat/completions body='{"messages":[{"role":"user","content":"Hello"}],"max_tokens":32,"seed":'$i'}' ;;
2) path=/v1/chat/completions body='{"messages":[{"role":"user","content":"Hi"}],"max_tokens":32,"stream":true,"seed":'$i'}' ;;
esac
curl -sN --max-time 30 -o "$dir/$i.body" -w '%{http_code} %{time_total}\n' --data-binary "$body" "$url$path" >"$dir/$i.meta"
EOF
chmod +x "$T/one.sh"
mkdir -p "$T/load"
seq 1000 1015 | xargs -P 8 -I{} "$T/one.sh" {} "$URL" "$T/load"   # warm up: threads, arenas
rss_before=$(rss)
load_start=$(date +%s%N)
seq 0 99 | xargs -P 8 -I{} "$T/one.sh" {} "$URL" "$T/load"
load_ms=$(( ($(date +%s%N) - load_start) / 1000000 ))
rss_after=$(rss)
# every answer complete and valid, checked in one node process: a stream by sse.js's rules
cat >"$T/load.js" <<'EOF'
const fs = require('fs'), { execFileSync } = require('child_process');
const [dir, sse] = process.argv.slice(2);
let errors = 0;
for (let i = 0; i < 100; i++) {
    try {
        const [status] = fs.readFileSync(`${dir}/${i}.meta`, 'utf8').split(' ');
        if (status !== '200') throw new Error(`status ${status}`);
        const body = `${dir}/${i}.body`;
        if (i % 3 === 2) { execFileSync('node', [sse, body, 'chat', `${dir}/${i}.text`], { stdio: 'pipe' }); continue; }
        const j = JSON.parse(fs.readFileSync(body, 'utf8'));
        if (i % 3 === 0 && !(j.stop === true && j.tokens_predicted > 0)) throw new Error('incomplete /completion answer');
        if (i % 3 === 1 && j.choices[0].message.role !== 'assistant') throw new Error('incomplete chat answer');
    } catch (error) {
        errors++;
        console.error(`load request ${i}: ${String(error.message).slice(0, 200)}`);
    }
}
console.log(errors);
EOF
errors=$(node "$T/load.js" "$T/load" "$T/sse.js")
latencies=$(for i in $(seq 0 99); do awk '{print $2 * 1000}' "$T/load/$i.meta"; done | sort -n)
p50=$(sed -n 50p <<<"$latencies"); p99=$(sed -n 99p <<<"$latencies")
echo "load: requests=100 concurrency=8 errors=$errors p50_ms=$p50 p99_ms=$p99 wall_ms=$load_ms rss_before_kB=$rss_before rss_after_kB=$rss_after"
if [ "$errors" -eq 0 ]; then ok; else fail "load: $errors of 100 requests failed or were malformed"; fi
if [ -n "${ASAN_OPTIONS:-}" ]; then
    echo "SKIP: memory under AddressSanitizer grows by its quarantine of freed blocks: RSS not compared"
elif [ "$rss_after" -le $((rss_before + 2048)) ]; then ok; else fail "load: RSS grew from $rss_before kB to $rss_after kB"; fi
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/health"); expect_status "healthy after the load" 200 "$code"

# ---- the official openai npm package as a client (project-local in tools/js)
if { [ ! -d tools/js/node_modules/openai ] || [ ! -d tools/js/node_modules/ajv ]; } && command -v npm >/dev/null; then
    npm ci --prefix tools/js --no-audit --no-fund >/dev/null 2>&1
fi
if [ -d tools/js/node_modules/openai ]; then
    if node tools/js/server-client.mjs "$URL/v1" >"$T/openai.out" 2>&1; then ok; else fail "openai client: $(grep -v '^ok' "$T/openai.out" | head -5)"; fi
    if [ "$(grep -c '^ok:' "$T/openai.out")" -ge 7 ]; then ok; else fail "openai client ran $(grep -c '^ok:' "$T/openai.out") checks, expected 7"; fi
else
    echo "SKIP: the openai npm package is not installed in tools/js (offline?): the real-client test did not run"
fi
# structured output over 50 seeds (ajv validates), json_object, logprobs against build/logits, n: 3
if [ -d tools/js/node_modules/openai ] && [ -d tools/js/node_modules/ajv ] && [ -x "${BUILD:-build}/logits" ]; then
    if node tools/js/server-features.mjs "$URL/v1" default "$MODEL" "${BUILD:-build}/logits" >"$T/features.out" 2>&1; then ok
    else fail "openai client, features: $(grep -v '^ok' "$T/features.out" | head -5)"; fi
    grep -c '^ok:' "$T/features.out" | grep -qx 14 && ok || fail "openai client, features: $(grep -c '^ok:' "$T/features.out") checks passed, expected 14"
else
    echo "SKIP: tools/js/node_modules (openai, ajv) or ${BUILD:-build}/logits missing: structured output, logprobs and n were not tested with the openai client"
fi

# ---- the samplers, each with llama.cpp's meaning
greedy_text=$(jget "$T/greedy.json" 'JSON.stringify(j.content)')
post /completion '{"prompt":"Once upon a time","max_tokens":24,"temperature":0}' >/dev/null
jcheck "max_tokens is n_predict's alias on /completion" "$T/body" "j.content === $greedy_text && j.tokens_predicted === 24"
post /completion '{"prompt":"Once upon a time","n_predict":24,"temperature":1,"min_p":1,"seed":3}' >/dev/null
jcheck "min_p 1 keeps only the most likely token: the greedy text" "$T/body" "j.content === $greedy_text"
post /completion '{"prompt":"Once upon a time","n_predict":24,"temperature":1,"top_k":-1,"top_p":1,"min_p":0,"seed":3}' >/dev/null
cp "$T/body" "$T/untruncated.json"
post /completion '{"prompt":"Once upon a time","n_predict":24,"temperature":1,"top_k":0,"top_p":1,"min_p":0,"seed":3}' >/dev/null
jcheck "top_k -1 is off, as 0 is" "$T/body" "j.content === $(jget "$T/untruncated.json" 'JSON.stringify(j.content)') && j.content.length > 0"
post /completion '{"prompt":"Once upon a time","n_predict":24,"temperature":0,"samplers":["temperature","top_k"],"top_k":1}' >/dev/null
jcheck "samplers in another order are accepted" "$T/body" "j.content === $greedy_text"
first=$(curl -s "$URL/completion" -d '{"prompt":"Once upon a time","n_predict":1,"temperature":0,"n_probs":1}' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).completion_probabilities[0].id))')
post /completion "{\"prompt\":\"Once upon a time\",\"n_predict\":1,\"temperature\":0,\"logit_bias\":[[$first,false]],\"n_probs\":1}" >/dev/null
jcheck "logit_bias false bans the greedy token" "$T/body" "j.completion_probabilities[0].id !== $first"
post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":6,\"temperature\":1,\"seed\":4,\"logit_bias\":{\"$first\":100}}" >/dev/null
piece=$(curl -s "$URL/detokenize" -d "{\"tokens\":[$first,$first]}" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.stringify(JSON.parse(s).content)))')
jcheck "logit_bias +100 makes one token every token (OpenAI's object form)" "$T/body" "j.choices[0].text.startsWith($piece)"
post /completion '{"prompt":"Once upon a time","n_predict":40,"temperature":0,"repeat_penalty":1}' >/dev/null
jcheck "repeat_penalty 1 changes nothing" "$T/body" "j.content.startsWith($greedy_text)"
cp "$T/body" "$T/plain40.json"
post /completion '{"prompt":"Once upon a time","n_predict":40,"temperature":0,"repeat_penalty":1.5,"frequency_penalty":1,"presence_penalty":1,"repeat_last_n":-1}' >/dev/null
jcheck "penalties change the greedy text" "$T/body" "j.content !== $(jget "$T/plain40.json" 'JSON.stringify(j.content)')"
post /completion '{"prompt":"Once","n_predict":200,"temperature":0,"ignore_eos":true}' >/dev/null
jcheck "ignore_eos goes on to n_predict" "$T/body" 'j.tokens_predicted === 200 && j.stop_type === "limit"'
post /completion '{"prompt":"The cat","n_predict":30,"grammar":"root ::= (\"yes\" | \"no\") \", \" [a-z]{3,6} \".\""}' >/dev/null
jcheck "a GBNF grammar shapes /completion's text" "$T/body" '/^(yes|no), [a-z]{3,6}\.$/.test(j.content) && j.stop_type === "eos"'
post /completion '{"prompt":"x","grammar":"root ::= [a-"}' >/dev/null
jcheck "a broken grammar is a 400 naming it" "$T/body" "j.error.code === 400 && j.error.message.includes('grammar')"
post /completion '{"prompt":"The cat","n_predict":60,"json_schema":{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4}}' >/dev/null
jcheck "json_schema on /completion" "$T/body" 'Array.isArray(JSON.parse(j.content)) && JSON.parse(j.content).length >= 2 && JSON.parse(j.content).every(Number.isInteger)'
curl -sN -o "$T/stream" --data-binary '{"prompt":"Once upon a time","n_predict":8,"temperature":0,"n_probs":3,"stream":true}' "$URL/completion"
node -e 'const events=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n\n").map(e=>JSON.parse(e.slice(6)));
  const probs=events.flatMap(e=>e.completion_probabilities??[]); process.exit(probs.length===8 && probs.every(p=>p.top_logprobs.length===3)?0:1)' "$T/stream" \
    && ok || fail "n_probs streamed: $(head -c 300 "$T/stream")"

# ---- the chat histories OpenAI clients send, and the model's text apart from the template
for history in '[{"role":"assistant","content":"Hello! What story?"},{"role":"user","content":"A cat"}]' \
               '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},{"role":"assistant","content":"What story?"},{"role":"user","content":"A cat"}]' \
               '[{"role":"user","content":"Weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}]' \
               '[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}]'; do
    code=$(post /v1/chat/completions "{\"messages\":$history,\"max_tokens\":8,\"n_predict\":4}"); expect_status "a chat history: $history" 200 "$code"
    jcheck "n_predict is max_tokens' alias on chat" "$T/body" 'j.usage.completion_tokens <= 4'
done
post /apply-template '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},{"role":"user","content":"A cat"}]}' >/dev/null
jcheck "/apply-template renders the conversation as the template does" "$T/body" 'j.prompt.includes("Hi") && j.prompt.includes("Hello.") && j.prompt.includes("A cat")'

# ---- prompt caching: a follow-up reuses the conversation's prefix; the text is the same without the cache
turn1='[{"role":"user","content":"Tell me a story about a dog"}]'
post /v1/chat/completions "{\"messages\":$turn1,\"max_tokens\":30,\"temperature\":0}" >/dev/null
reply1=$(jget "$T/body" 'JSON.stringify(j.choices[0].message.content)')
n1=$(jget "$T/body" 'j.usage.prompt_tokens')
turn2="[{\"role\":\"user\",\"content\":\"Tell me a story about a dog\"},{\"role\":\"assistant\",\"content\":$reply1},{\"role\":\"user\",\"content\":\"And the cat?\"}]"
post /v1/chat/completions "{\"messages\":$turn2,\"max_tokens\":20,\"temperature\":0}" >/dev/null
cp "$T/body" "$T/cached.json"
jcheck "a follow-up turn reuses the cached prefix" "$T/cached.json" "j.usage.prompt_tokens_details.cached_tokens >= $n1"
post /v1/chat/completions "{\"messages\":$turn2,\"max_tokens\":20,\"temperature\":0,\"cache_prompt\":false}" >/dev/null
jcheck "cache_prompt false reuses nothing" "$T/body" 'j.usage.prompt_tokens_details.cached_tokens === 0'
jcheck "... and gives the same text as the cached run" "$T/body" "j.choices[0].message.content === $(jget "$T/cached.json" 'JSON.stringify(j.choices[0].message.content)')"
post /completion '{"prompt":"Once upon a time there was a big red ball","n_predict":4,"temperature":0}' >/dev/null
post /completion '{"prompt":"Once upon a time there was a small dog","n_predict":4,"temperature":0}' >/dev/null
common=$(node -e 'const a=process.argv[1].split(","),b=process.argv[2].split(",");let k=0;while(k<a.length&&a[k]===b[k])k++;console.log(k)' \
    "$(curl -s "$URL/tokenize" -d '{"content":"Once upon a time there was a big red ball","add_special":true}' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).tokens.join()))')" \
    "$(curl -s "$URL/tokenize" -d '{"content":"Once upon a time there was a small dog","add_special":true}' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).tokens.join()))')")
jcheck "a partial prefix: exactly the common tokens are reused ($common)" "$T/body" "j.tokens_cached === $common && j.timings.prompt_n === j.tokens_evaluated - $common"

# ---- a conversation longer than the context (256 positions) keeps going: the oldest turns are dropped
history='[{"role":"system","content":"You tell stories."}'
for i in $(seq 12); do history+=",{\"role\":\"user\",\"content\":\"Tell me about the cat number $i and its red ball\"},{\"role\":\"assistant\",\"content\":\"The cat number $i played with a red ball in the garden all day long.\"}"; done
history+=',{"role":"user","content":"And the last cat?"}]'
post /apply-template "{\"messages\":$history}" >/dev/null
whole=$(curl -s "$URL/tokenize" -d "{\"content\":$(jget "$T/body" 'JSON.stringify(j.prompt)')}" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).tokens.length))')
code=$(post /v1/chat/completions "{\"messages\":$history,\"max_tokens\":16}"); expect_status "a conversation of $whole tokens in a 256-position context" 200 "$code"
jcheck "its oldest turns were dropped to fit" "$T/body" "$whole > 256 && j.usage.prompt_tokens + 16 <= 256 && j.choices[0].message.content.length > 0"
post /v1/chat/completions '{"messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":400,"ignore_eos":true}' >/dev/null
jcheck "a reply longer than the room left goes on past the context (a context shift)" "$T/body" 'j.usage.completion_tokens === 400 && j.choices[0].finish_reason === "length"'
post /completion '{"prompt":"Once upon a time","n_predict":300,"ignore_eos":true,"n_keep":4}' >/dev/null
jcheck "/completion with n_keep shifts the context too" "$T/body" 'j.tokens_predicted === 300'
post /completion '{"prompt":"Once upon a time","n_predict":300,"ignore_eos":true}' >/dev/null
jcheck "/completion without n_keep ends at a full context" "$T/body" 'j.tokens_predicted === 256 - 5 && j.stop_type === "limit"'

# ---- the routes clients read: /props, /slots, /metrics, embeddings; HEAD
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/props"); expect_status "GET /props" 200 "$code"
# the slots the server said it made at start (the memory plan's default: at most 4)
n_slots=$(grep -o 'server: [0-9]* slots\? of 256 positions' "$T/main.log" | grep -o '^server: [0-9]*' | grep -o '[0-9]*$')
jcheck "/props: context, model, template, the slots logged at start" "$T/body" "j.default_generation_settings.n_ctx === 256 && j.model_alias === \"tinystories-edge.q4.bin\" && j.chat_template === \"llama2\" && j.total_slots === ${n_slots:-0} && j.total_slots >= 1 && j.total_slots <= 4"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/slots"); expect_status "GET /slots" 200 "$code"
jcheck "/slots: every slot idle, their caches holding the last prompts" "$T/body" "j.length === ${n_slots:-0} && j.every(s => s.is_processing === false && s.id === j.indexOf(s)) && j.some(s => s.n_past > 0)"
code=$(curl -s -o "$T/metrics" -w '%{http_code} %{content_type}' "$URL/metrics"); expect_status "GET /metrics" "200 text/plain; version=0.0.4; charset=utf-8" "$code"
if grep -Eq '^llamacpp:prompt_tokens_total [1-9]' "$T/metrics" && grep -Eq '^llamacpp:tokens_predicted_total [1-9]' "$T/metrics" \
   && grep -q '^# TYPE llamacpp:requests_deferred gauge' "$T/metrics" && grep -Eq '^edge_llm:context_shifts_total [1-9]' "$T/metrics"; then ok
else fail "/metrics lacks its counters: $(head -20 "$T/metrics")"; fi
code=$(post /v1/embeddings '{"input":["a cat","a cat","the moon"],"model":"x"}'); expect_status "POST /v1/embeddings" 200 "$code"
jcheck "embeddings: one unit vector per input, the same text the same vector" "$T/body" 'j.object === "list" && j.data.length === 3 && j.data[0].embedding.length === 64
    && Math.abs(Math.hypot(...j.data[0].embedding) - 1) < 1e-4 && JSON.stringify(j.data[0].embedding) === JSON.stringify(j.data[1].embedding)
    && JSON.stringify(j.data[0].embedding) !== JSON.stringify(j.data[2].embedding) && j.usage.prompt_tokens > 0'
code=$(post /embedding '{"content":"a cat"}'); expect_status "POST /embedding" 200 "$code"
code=$(post /v1/embeddings '{"input":[]}'); expect_status "embeddings of nothing" 400 "$code"
exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}" && printf 'HEAD /health HTTP/1.1\r\n\r\n' >&3 && timeout 5 cat <&3 >"$T/head" ; exec 3<&-
if head -1 "$T/head" | grep -q '^HTTP/1.1 200' && grep -qi '^content-length: [1-9]' "$T/head" && ! grep -q '{' "$T/head"; then ok
else fail "HEAD /health: a body, or no length: $(cat "$T/head")"; fi
if ! grep -qi '^access-control' "$T/head"; then ok; else fail "CORS headers without --cors-origin"; fi

stop_server main

if grep -q "server: stopped" "$T/main.log"; then ok; else fail "no clean stop in the log: $(tail -3 "$T/main.log")"; fi

# ---- the default model answers a request in its chat template, in its whole context (512): the API's
# greedy reply is runq -m chat's, and ends its turn (test_default_model.sh checks what the replies say)
start_server chat
request='Tell me a story about a little girl named Lily.'
code=$(post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"$request\"}],\"temperature\":0}")
expect_status "a story request" 200 "$code"
"$BIN"/runq "$MODEL" -m chat -y "" -i "$request" -t 0 </dev/null 2>/dev/null | sed '1s/^Assistant: //; /^User: $/,$d' >"$T/runq-chat.txt"
printf '%s\n' "$(jget "$T/body" 'j.choices[0].message.content')" >"$T/api-chat.txt"
same "the API's greedy chat reply and runq -m chat's" "$T/runq-chat.txt" "$T/api-chat.txt"
jcheck "the greedy reply ends its turn" "$T/body" 'j.choices[0].finish_reason === "stop" && j.choices[0].message.content.length > 200'
stop_server chat

# ---- --api-key: API routes need the key; the page and /health do not (this server keeps an int8 KV cache)
start_server keyed --api-key s3cret -k q8
if grep -q "memory: .*KV cache .* (int8, " "$T/keyed.log"; then ok; else fail "-k q8: the memory plan says $(grep memory "$T/keyed.log")"; fi
code=$(post /completion '{"n_predict":2}'); expect_status "no key" 401 "$code"
jcheck "401 is an error JSON" "$T/body" 'j.error.code === 401'
code=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Authorization: Bearer wrong' "$URL/v1/models"); expect_status "wrong key" 401 "$code"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Authorization: Bearer s3cret' "$URL/v1/models"); expect_status "the key" 200 "$code"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Authorization: Bearer s3cret' --data-binary '{"n_predict":2}' "$URL/completion"); expect_status "the key, /completion" 200 "$code"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/health"); expect_status "/health needs no key" 200 "$code"
if [ -d tools/js/node_modules/openai ]; then
    if node tools/js/server-client.mjs "$URL/v1" s3cret >"$T/openai.out" 2>&1; then ok; else fail "openai client with a key: $(grep -v '^ok' "$T/openai.out" | head -3)"; fi
fi
stop_server keyed

# ---- a slow board (40 ms a token): a client leaving mid-stream, a full queue, SIGTERM mid-generation
start_server slow --parallel 1 --queue 1 --token-delay 40
curl -sN --max-time 0.5 --data-binary '{"prompt":"Once","n_predict":200,"stream":true}' "$URL/completion" >"$T/cut" 2>/dev/null
if grep -q '^data: ' "$T/cut"; then ok; else fail "the cut stream sent nothing"; fi
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 2 "$URL/health"); expect_status "healthy after a client left mid-stream" 200 "$code"
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 5 --data-binary '{"prompt":"Once","n_predict":3}' "$URL/completion")
expect_status "the worker serves the next request" 200 "$code"
gone=$(grep 'client gone' "$T/slow.log" | grep -o '[0-9]* predicted' | cut -d' ' -f1)
if [ -n "$gone" ] && [ "$gone" -lt 50 ]; then ok; else fail "the generation did not stop when its client left: $(cat "$T/slow.log")"; fi
curl -s --max-time 0.5 --data-binary '{"prompt":"Once","n_predict":200,"temperature":0}' "$URL/completion" >/dev/null 2>&1
sleep 0.2
gone=$(grep 'client gone' "$T/slow.log" | tail -1 | grep -o '[0-9]* predicted' | cut -d' ' -f1)
if [ "$(grep -c 'client gone' "$T/slow.log")" = 2 ] && [ "$gone" -lt 50 ]; then ok; else fail "a non-streaming generation did not stop when its client left: $(tail -2 "$T/slow.log")"; fi
# the queue holds one: a running request and a queued one, then 503
curl -s -o /dev/null --data-binary '{"prompt":"Once","n_predict":40,"temperature":0}' "$URL/completion" & first=$!
sleep 0.3
curl -s -o "$T/queued" --data-binary '{"prompt":"Once","n_predict":5,"temperature":0}' "$URL/completion" & second=$!
sleep 0.3
code=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' --data-binary '{"prompt":"Once","n_predict":5}' "$URL/completion")
expect_status "a full queue" 503 "$code"
if grep -qi '^retry-after: 1' "$T/headers"; then ok; else fail "503 without Retry-After"; fi
wait $first $second
jcheck "the queued request is served after the running one" "$T/queued" 'j.stop === true && j.tokens_predicted > 0'
# SIGTERM in the middle of a generation: the stream ends, the server exits 0; a queued OpenAI stream is refused
curl -sN --max-time 10 --data-binary '{"prompt":"Once","n_predict":200,"stream":true}' "$URL/completion" >"$T/term" 2>/dev/null & client=$!
sleep 0.4
stop_server slow
wait $client
if grep -q '^data: ' "$T/term"; then ok; else fail "no tokens before SIGTERM"; fi
if [ "$(grep -c '^data: ' "$T/term")" -lt 100 ]; then ok; else fail "SIGTERM did not stop the generation"; fi
if grep '^data: ' "$T/term" | tail -1 | grep -q '"stop":true,"stop_type":"abort"'; then ok; else fail "the stream cut by SIGTERM lacks its final event: $(tail -c 300 "$T/term")"; fi

# an OpenAI stream cut by SIGTERM ends with finish_reason "abort", not "stop"
start_server abort --token-delay 40
curl -sN --max-time 10 --data-binary '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":200,"stream":true}' "$URL/v1/chat/completions" >"$T/abort" 2>/dev/null & client=$!
sleep 0.5
stop_server abort
wait $client
if grep '^data: {' "$T/abort" | tail -1 | grep -q '"finish_reason":"abort"' && grep -q '^data: \[DONE\]' "$T/abort"; then ok
else fail "the stream cut by SIGTERM does not say abort: $(tail -c 300 "$T/abort")"; fi

# ---- CORS: --cors-origin names the pages that may call the API; a preflight is answered
start_server cors --cors-origin http://page.example:3000
code=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X OPTIONS -H 'Origin: http://page.example:3000' \
       -H 'Access-Control-Request-Method: POST' "$URL/v1/chat/completions"); expect_status "an OPTIONS preflight" 204 "$code"
if grep -qi '^access-control-allow-origin: http://page.example:3000' "$T/headers" && grep -qi '^access-control-allow-headers: .*authorization' "$T/headers"; then ok
else fail "the preflight lacks the CORS headers: $(cat "$T/headers")"; fi
curl -s -o "$T/body" -D "$T/headers" -H 'Origin: http://page.example:3000' --data-binary '{"prompt":"x","n_predict":2}' "$URL/completion"
grep -qi '^access-control-allow-origin: http://page.example:3000' "$T/headers" && ok || fail "a POST from the allowed origin lacks Access-Control-Allow-Origin"
curl -s -o "$T/body" -D "$T/headers" -H 'Origin: http://elsewhere.example' "$URL/health"
! grep -qi '^access-control-allow-origin' "$T/headers" && ok || fail "another origin was allowed: $(cat "$T/headers")"
stop_server cors

# ---- the page in headless Chromium (Debian's chromium, installed here once when run as root):
# a chat through three turns, a stop, an error that leaves the history usable, a new chat; a model
# without a chat template gets a completion box. Screenshots stay in build/page/.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the page test (once; about a minute)"
    apt-get install -y --no-install-recommends chromium >"$T/apt.log" 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >"$T/apt.log" 2>&1; }
fi
if command -v chromium >/dev/null; then
    mkdir -p build/page
    start_server page --chat-template zephyr --token-delay 30
    if node --experimental-websocket test/server_page.mjs chat "$URL/" "$(command -v chromium)" "$T/chromium" build/page >"$T/page.out" 2>&1; then ok
    else fail "the chat page in Chromium: $(grep -v '^ok' "$T/page.out" | head -c 600)"; fi
    grep -c '^ok:' "$T/page.out" | grep -qx 17 && ok || fail "the chat page: $(grep -c '^ok:' "$T/page.out") checks passed, expected 17"
    stop_server page
    # a random model with Llama 2's tokenizer records no chat template, and its vocabulary names none
    "$BIN"/export -q --random dim=64,ffn=128,layers=2,heads=4,kv_heads=4,vocab=32000,seq_len=1024 -z tokenizer.bin "$T/random.q4.bin"
    MODEL_SAVED=$MODEL MODEL=$T/random.q4.bin
    start_server completion-page
    MODEL=$MODEL_SAVED
    if node --experimental-websocket test/server_page.mjs completion "$URL/" "$(command -v chromium)" "$T/chromium2" build/page >"$T/page.out" 2>&1; then ok
    else fail "the completion page in Chromium: $(grep -v '^ok' "$T/page.out" | head -c 600)"; fi
    stop_server completion-page
else
    echo "SKIP: chromium is not installed (and could not be: not root, or offline): the page was not tested in a browser"
fi

# ---- not starvable, not bloatable (test/server_abuse.py, bounded, on loopback)
start_server abuse --head-timeout 2000
python3 test/server_abuse.py "${URL##*:}" starve 6 >"$T/abuse.out" 2>&1
python3 test/server_abuse.py "${URL##*:}" half-close >>"$T/abuse.out" 2>&1
if [ -n "${ASAN_OPTIONS:-}" ]; then
    echo "SKIP: memory under AddressSanitizer grows by its quarantine of freed blocks: megabyte bodies not measured"
else
    python3 test/server_abuse.py "${URL##*:}" memory "$PID" >>"$T/abuse.out" 2>&1
fi
grep '^memory:' "$T/abuse.out"
n_abuse_ok=$(grep -c '^ok:' "$T/abuse.out")
if ! grep -q '^FAIL' "$T/abuse.out" && [ "$n_abuse_ok" -ge 5 ]; then ok; else fail "abuse: $(grep -v '^ok' "$T/abuse.out" | head -5)"; fi
stop_server abuse

# ---- a random-weight model (1024 positions, Llama 2's 32000 pieces): the grammar alone keeps structured
# output and tool calls valid; abandoned long prompts stop at the next chunk
[ -f "$T/random.q4.bin" ] || "$BIN"/export -q --random dim=64,ffn=128,layers=2,heads=4,kv_heads=4,vocab=32000,seq_len=1024 -z tokenizer.bin "$T/random.q4.bin"
MODEL_SAVED=$MODEL MODEL=$T/random.q4.bin
start_server random
if [ -d tools/js/node_modules/openai ] && [ -d tools/js/node_modules/ajv ]; then
    if node tools/js/server-features.mjs "$URL/v1" random >"$T/features.out" 2>&1; then ok
    else fail "openai client on a random model: $(grep -v '^ok' "$T/features.out" | head -5)"; fi
    grep -c '^ok:' "$T/features.out" | grep -qx 7 && ok || fail "openai client on a random model: $(grep -c '^ok:' "$T/features.out") checks passed, expected 7"
fi
stop_server random
# each family's own tool-call format, end to end: Llama 2's vocabulary with the special pieces of
# ChatML, Llama 3 and Mistral's [TOOL_CALLS] appended, under each chat template
python3 - tokenizer.bin "$T/families.tok" '<|im_start|>' '<|im_end|>' '<|start_header_id|>' '<|end_header_id|>' '<|eot_id|>' '[TOOL_CALLS]' <<'EOF'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
for piece in sys.argv[3:]:
    data += struct.pack("<fi", float("-inf"), len(piece)) + piece.encode()   # special: never matched from text
struct.pack_into("<i", data, 0, max(struct.unpack_from("<i", data, 0)[0], *(len(p) for p in sys.argv[3:])))
open(sys.argv[2], "wb").write(data)
EOF
"$BIN"/export -q --random dim=64,ffn=128,layers=2,heads=4,kv_heads=4,vocab=32006,seq_len=1024 -z "$T/families.tok" "$T/families.q4.bin"
MODEL=$T/families.q4.bin
for template in chatml llama3 llama2; do   # Hermes's <tool_call>, Llama 3's JSON, Mistral's [TOOL_CALLS]
    start_server "tools-$template" --chat-template "$template"
    if [ -d tools/js/node_modules/openai ] && node tools/js/server-features.mjs "$URL/v1" tools >"$T/tools.out" 2>&1 \
       && [ "$(grep -c '^ok:' "$T/tools.out")" = 5 ]; then ok
    else fail "tool calls in the $template format: $(grep -v '^ok' "$T/tools.out" | head -3)"; fi
    post /apply-template '{"messages":[{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","content":"ok"}],"tools":[{"type":"function","function":{"name":"f"}}]}' >/dev/null
    case $template in
    chatml) want='<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call><|im_end|>' ;;
    llama3) want='{"name": "f", "parameters": {"a": 1}}<|eot_id|><|start_header_id|> ipython<|end_header_id|>' ;;
    llama2) want='[TOOL_CALLS] [{"name": "f", "arguments": {"a": 1}}]' ;;
    esac
    jcheck "the $template template writes a call and its result back in its family's format" "$T/body" \
        "j.prompt.includes($(node -e 'console.log(JSON.stringify(process.argv[1].replace(/\\n/g, "\n")))' "$want"))"
    stop_server "tools-$template"
done
MODEL=$T/random.q4.bin
start_server abandon --token-delay 100
if python3 test/server_abuse.py "${URL##*:}" abandon 500 >"$T/abandon.out" 2>&1; then ok; else fail "$(cat "$T/abandon.out")"; fi
gone=$(grep -c 'client gone' "$T/abandon.log")
[ "$gone" -ge 2 ] && ok || fail "abandoned prompts did not stop early: $(grep job "$T/abandon.log")"
stop_server abandon
MODEL=$MODEL_SAVED

# ---- UTF-8: every body and every event decodes with a strict decoder, whatever bytes the model emits
cat >"$T/strict.js" <<'EOF'
// strict.js FILE...: each file decodes as UTF-8 with a fatal decoder, and so does each SSE event alone
const decoder = new TextDecoder('utf-8', { fatal: true });
for (const file of process.argv.slice(2)) {
    const bytes = require('fs').readFileSync(file);
    try { decoder.decode(bytes); } catch (e) { console.error(`${file}: not UTF-8: ${e.message}`); process.exit(1); }
    let start = 0;
    for (let i = 0; i + 1 < bytes.length; i++)
        if (bytes[i] === 10 && bytes[i + 1] === 10) {
            try { decoder.decode(bytes.subarray(start, i)); } catch (e) { console.error(`${file}: event at ${start}: ${e.message}`); process.exit(1); }
            start = i + 2;
        }
}
EOF
start_server utf8
# the reproduction of the report: the default model's reply once held E0 88 8F, an overlong form
post /v1/chat/completions '{"messages":[{"role":"user","content":"Describe a cat as JSON"}],"max_tokens":60,"seed":1}' >/dev/null
if node "$T/strict.js" "$T/body" && ! grep -q $'\xe0\x88\x8f' "$T/body"; then ok; else fail "the reply of the report is not strict UTF-8"; fi
# ill-formed UTF-8 in a request is refused, naming the field
printf '{"messages":[{"role":"user","content":"caf\xe0\x80\x80"}]}' >"$T/bad.json"
code=$(curl -s -o "$T/body" -w '%{http_code}' --data-binary @"$T/bad.json" "$URL/v1/chat/completions")
expect_status "ill-formed UTF-8 in a request" 400 "$code"
grep -q 'in messages\[0\].content: ill-formed UTF-8' "$T/body" && ok || fail "the 400 names the field: $(cat "$T/body")"
printf '{"prompt":"\xed\xa0\x80"}' >"$T/bad.json"
code=$(curl -s -o "$T/body" -w '%{http_code}' --data-binary @"$T/bad.json" "$URL/completion")
expect_status "a surrogate in a prompt" 400 "$code"
stop_server utf8
# a random-weight model whose pieces are ill-formed UTF-8 of every class (overlong, surrogate, above
# U+10FFFF, stray bytes) and parts of characters: its replies are all the bytes a model can emit
python3 test/ill_formed_tokenizer.py "$T/bytes.tok"
"$BIN"/export -q --random dim=64,ffn=128,layers=2,heads=4,kv_heads=4,vocab=48,seq_len=256 -z "$T/bytes.tok" "$T/bytes.q4.bin"
MODEL_SAVED=$MODEL MODEL=$T/bytes.q4.bin
start_server bytes
for seed in $(seq 1 12); do
    request() { curl -s -o "$T/u$seed.$1" -H 'Content-Type: application/json' "$URL$2" -d "$3"; }
    request a /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":40,"temperature":2,"seed":'$seed'}'
    request b /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":40,"temperature":2,"stream":true,"seed":'$seed'}'
    request c /completion '{"prompt":"x","n_predict":40,"temperature":2,"stream":true,"seed":'$seed'}'
done
if node "$T/strict.js" "$T"/u*.a "$T"/u*.b "$T"/u*.c; then ok; else fail "a reply of random bytes is not strict UTF-8"; fi
# ... and the property has teeth: those replies did hold ill-formed bytes, replaced
grep -q 'ufffd' "$T"/u*.a && ok || fail "no U+FFFD in 12 replies of random bytes: the test saw no ill-formed UTF-8"
stop_server bytes
MODEL=$MODEL_SAVED

# ---- bad command lines
expect_error "missing model file" "cannot open" "$BIN"/server "$T/none.bin"
expect_error "bad port" "--port" "$BIN"/server "$MODEL" --port 99999
expect_error "unknown flag" "unknown flag" "$BIN"/server "$MODEL" --bogus 1
expect_error "bad host" "IPv4" "$BIN"/server "$MODEL" --host nowhere
summary
