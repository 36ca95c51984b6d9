#!/usr/bin/env bash
# test_server.sh — ./server as clients use it, on the default model: every
# route and error code with curl, the framing of server-sent events, seeded
# determinism (and greedy text equal to runq's), a client leaving mid-stream,
# a full queue, slow and oversized requests, SIGTERM, a bounded load test
# (its figures printed), and the official `openai` npm package as a client.
# Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh" test_server "$@"
MODEL=models/tinystories-edge.q4.bin

if ! command -v curl >/dev/null || ! command -v node >/dev/null; then
    echo "SKIP: test_server needs curl and node (JSON checks): not installed"
    summary
fi

# ---- helpers
# start_server NAME [flags]: the server on a free port, its stderr in $T/NAME.log; sets PID, URL
start_server() {
    local name=$1; shift
    "$BIN"/server "$MODEL" --port 0 -T 1 "$@" 2>"$T/$name.log" &
    PID=$!
    local port=""
    for _ in $(seq 200); do
        port=$(grep -o '127\.0\.0\.1:[0-9]*' "$T/$name.log" 2>/dev/null | head -1 | cut -d: -f2)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { fail "$name: server did not start: $(cat "$T/$name.log")"; summary; }
    URL=http://127.0.0.1:$port
}
# stop_server NAME: SIGTERM, and it must exit 0 within 5 s
stop_server() {
    kill -TERM "$PID"
    local status
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$PID" 2>/dev/null; then fail "$1: still running 5 s after SIGTERM"; kill -KILL "$PID"; fi
    wait "$PID"; status=$?
    if [ $status -eq 0 ]; then ok; else fail "$1: exit status $status after SIGTERM: $(tail -3 "$T/$1.log")"; fi
}
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
start_server main --timeout 1500
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
            '{"messages":[{"role":"user","content":"x"}],"max_tokens":"5"}'; do
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
if [ ! -d tools/js/node_modules/openai ] && command -v npm >/dev/null; then
    npm ci --prefix tools/js --no-audit --no-fund >/dev/null 2>&1
fi
if [ -d tools/js/node_modules/openai ]; then
    if node tools/js/server-client.mjs "$URL/v1" >"$T/openai.out" 2>&1; then ok; else fail "openai client: $(grep -v '^ok' "$T/openai.out" | head -5)"; fi
    if [ "$(grep -c '^ok:' "$T/openai.out")" -ge 7 ]; then ok; else fail "openai client ran $(grep -c '^ok:' "$T/openai.out") checks, expected 7"; fi
else
    echo "SKIP: the openai npm package is not installed in tools/js (offline?): the real-client test did not run"
fi
stop_server main
if grep -q "server: stopped" "$T/main.log"; then ok; else fail "no clean stop in the log: $(tail -3 "$T/main.log")"; fi

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
start_server slow --queue 1 --token-delay 40
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
# the chat page in headless Chromium (Debian's chromium, installed here once when run as root):
# a prompt typed and sent, the reply seen growing token by token, ending as the API's answer
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the page test (once; about a minute)"
    apt-get install -y --no-install-recommends chromium >"$T/apt.log" 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >"$T/apt.log" 2>&1; }
fi
if command -v chromium >/dev/null; then
    if node --experimental-websocket test/server_page.mjs "$URL/" "$(command -v chromium)" "$T/chromium" >"$T/page.json" 2>"$T/page.err"; then ok
    else fail "the chat page in Chromium: $(cat "$T/page.json" "$T/page.err" | head -c 600)"; fi
    post /v1/chat/completions '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0}' >/dev/null
    jcheck "the page shows the reply the API gives" "$T/page.json" "j.text === $(jget "$T/body" 'JSON.stringify(j.choices[0].message.content)') && j.text.length > 0"
    jcheck "the page shows tokens as they arrive" "$T/page.json" 'j.lengths.length >= 5'
else
    echo "SKIP: chromium is not installed (and could not be: not root, or offline): the chat page was not tested in a browser"
fi
# SIGTERM in the middle of a generation: the stream ends, the server exits 0
curl -sN --max-time 10 --data-binary '{"prompt":"Once","n_predict":200,"stream":true}' "$URL/completion" >"$T/term" 2>/dev/null & client=$!
sleep 0.4
stop_server slow
wait $client
if grep -q '^data: ' "$T/term"; then ok; else fail "no tokens before SIGTERM"; fi
if [ "$(grep -c '^data: ' "$T/term")" -lt 100 ]; then ok; else fail "SIGTERM did not stop the generation"; fi
if grep '^data: ' "$T/term" | tail -1 | grep -q '"stop":true,"stop_type":"abort"'; then ok; else fail "the stream cut by SIGTERM lacks its final event: $(tail -c 300 "$T/term")"; fi

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
