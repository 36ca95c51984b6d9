#!/usr/bin/env bash
# test_get_model.sh — tools/get-model against a fake Hugging Face Hub on
# loopback (test/fake_hf.py), no internet: a tiny TinyLlama-shaped repository
# (test/write_hf_family.py, plus a tokenizer.json written here) downloaded,
# cached, checked and exported; sharded weights and a paged listing; a
# connection cut halfway and resumed; gated models with and without a token;
# 404s; no network; a corrupt download; a family export refuses (before any
# weight comes); GGUF repositories; the disk-space refusal (through the
# script's EDGE_LLM_FREE_BYTES test hook); no half-written model after a
# failure. Each error: one line on stderr, exit 1.
# Needs python3 with numpy for write_hf_family.py (else skips loudly).
# Ends with "test_get_model: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_get_model "$@"
ROOT=$PWD
GET=$ROOT/tools/get-model

PY=$(python_with numpy python3-numpy)
if [ -z "$PY" ]; then
    echo "SKIP: ======== get-model not tested: write_hf_family.py needs python3 with numpy"
    echo "SKIP: (install as root: apt-get install python3-numpy) ========"
    summary
fi
export PYTHONDONTWRITEBYTECODE=1

# ---- what the repositories hold (standard library only)
fixture() {
    "$PY" - "$@" <<'EOF'
import json, os, struct, sys

def tokenizer(directory):
    """tokenizer.json (SentencePiece-style BPE with byte fallback) and
    tokenizer_config.json for the pieces write_hf_family.py's tokenizer.bin has"""
    vocab_size = json.load(open(os.path.join(directory, "config.json")))["vocab_size"]
    letters = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(256)] + letters
    pairs = [(a, b) for a in letters for b in letters][:vocab_size - len(pieces)]
    pieces += [a + b for a, b in pairs]
    added = [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, p in enumerate(pieces[:3])]
    tok = {"version": "1.0", "added_tokens": added,
           "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                              {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
           "pre_tokenizer": None, "decoder": {"type": "Sequence", "decoders": []},
           "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>",
                     "vocab": {p: i for i, p in enumerate(pieces)}, "merges": [a + " " + b for a, b in pairs]}}
    json.dump(tok, open(os.path.join(directory, "tokenizer.json"), "w"), ensure_ascii=False)
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "chat_template":
               "{% for m in messages %}[INST] <<SYS>> {{ m['content'] }} [/INST]{% endfor %}"},
              open(os.path.join(directory, "tokenizer_config.json"), "w"))
    json.dump({"bos_token_id": 1, "eos_token_id": 2}, open(os.path.join(directory, "generation_config.json"), "w"))

def shard(directory):
    """model.safetensors -> two shards and model.safetensors.index.json, as
    transformers' save_pretrained splits a model"""
    path = os.path.join(directory, "model.safetensors")
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header, base = json.loads(data[8:8 + n]), 8 + n
    names = [k for k in header if k != "__metadata__"]
    names.sort(key=lambda k: header[k]["data_offsets"][0])
    groups = [names[:len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        shard_name = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
        new_header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
        for k in group:
            start, end = header[k]["data_offsets"]
            blobs.append(data[base + start:base + end])
            new_header[k] = dict(header[k], data_offsets=[offset, offset + end - start])
            offset += end - start
            weight_map[k] = shard_name
        total += offset
        text = json.dumps(new_header).encode()
        text += b" " * (-len(text) % 8)
        open(os.path.join(directory, shard_name), "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(directory, "model.safetensors.index.json"), "w"), indent=2)
    os.remove(path)

def set_json(path, key, value):
    """one key of a JSON file (a.b for nested), value given as JSON"""
    root = json.load(open(path))
    *parents, last = key.split(".")
    node = root
    for k in parents:
        node = node[k]
    node[last] = json.loads(value)
    json.dump(root, open(path, "w"))

def gguf_architecture(path, arch):
    """general.architecture 'llama' -> another name of five letters"""
    data = open(path, "rb").read()
    key = b"general.architecture" + struct.pack("<IQ", 8, 5)
    assert len(arch) == 5 and data.count(key + b"llama") == 1
    open(path, "wb").write(data.replace(key + b"llama", key + arch.encode()))

def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()

command, args = sys.argv[1], sys.argv[2:]
{"tokenizer": tokenizer, "shard": shard, "set-json": set_json,
 "gguf-architecture": gguf_architecture, "free-port": free_port}[command](*args)
EOF
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- the Hub: HUB/OWNER/NAME/REVISION/FILE
HUB=$T/hub SRC=$T/tinyllama
"$PY" test/write_hf_family.py tinyllama "$SRC" >/dev/null && fixture tokenizer "$SRC" || { fail "write the model"; summary; }
rm "$SRC/tokenizer.bin"
echo "# a tiny model" >"$SRC/README.md"
repo() { mkdir -p "$HUB/test/$1/${2:-main}" && cp "$SRC"/* "$HUB/test/$1/${2:-main}/"; }
repo tiny; repo tiny v1; repo tiny v2; repo gated; repo flaky; repo corrupt; repo gpt2; repo badtok
repo tiny-sharded && fixture shard "$HUB/test/tiny-sharded/main"
fixture set-json "$HUB/test/gpt2/main/config.json" model_type '"gpt2"'
fixture set-json "$HUB/test/badtok/main/tokenizer.json" model.type '"Unigram"'
mkdir -p "$HUB/test/pytorch/main" && cp "$SRC/config.json" "$SRC/tokenizer.json" "$HUB/test/pytorch/main/" \
    && cp "$SRC/model.safetensors" "$HUB/test/pytorch/main/pytorch_model.bin"
"$BIN"/export -q "$SRC" "$T/direct.q4.bin" || fail "export the model directly"
G=$HUB/test/tiny-GGUF/main
mkdir -p "$G" "$HUB/test/gemma-GGUF/main" && cp "$SRC/README.md" "$G/"
"$BIN"/export -q --gguf-q4_0 "$T/direct.q4.bin" "$G/tiny.Q4_0.gguf" && "$BIN"/export -q --gguf-f32 "$SRC" "$G/tiny.F32.gguf" \
    && cp "$G/tiny.Q4_0.gguf" "$HUB/test/gemma-GGUF/main/gemma.Q4_0.gguf" \
    && fixture gguf-architecture "$HUB/test/gemma-GGUF/main/gemma.Q4_0.gguf" gemma || fail "make the GGUF files"
cat >"$T/control.json" <<'EOF'
{"tokens": {"test/gated": "secret"},
 "drop_once": ["test/flaky/main/model.safetensors"],
 "corrupt": ["test/corrupt/main/model.safetensors"],
 "page_size": {"test/tiny-sharded": 2}}
EOF

python3 test/fake_hf.py "$HUB" --control "$T/control.json" >"$T/hub.port" 2>"$T/hub.log" &
HUB_PID=$!
trap 'kill $HUB_PID 2>/dev/null; wait $HUB_PID 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 100); do [ -s "$T/hub.port" ] && break; sleep 0.05; done
[ -s "$T/hub.port" ] || { fail "fake_hf.py did not start: $(cat "$T/hub.log")"; summary; }
URL=http://127.0.0.1:$(cat "$T/hub.port")
export HF_ENDPOINT=$URL EDGE_LLM_CACHE=$T/cache
unset HF_TOKEN EDGE_LLM_FREE_BYTES
CACHE=$T/cache/test
# gets METHOD OWNER/NAME/REV/FILE: requests the Hub served for that file; ranges FILE: their Range headers
gets() { curl -s "$URL/_count/$1/$2"; }
ranges() { curl -s "$URL/_ranges/$1" | paste -sd' ' -; }
# refused NAME PATTERN COMMAND...: exit 1, one line on stderr, matching PATTERN
refused() {
    local name=$1 pattern=$2 status=0; shift 2
    "$@" >"$T/out" 2>"$T/err" </dev/null || status=$?
    if [ $status -ne 1 ]; then fail "$name: exit $status, expected 1: $(cat "$T/err")"
    elif [ "$(wc -l <"$T/err")" -ne 1 ]; then fail "$name: expected one line on stderr, got: $(cat "$T/err")"
    elif ! grep -Eq -- "$pattern" "$T/err"; then fail "$name: stderr lacks /$pattern/: $(cat "$T/err")"
    else ok; fi
}
# bad_usage NAME ARGS...: exit 2 and one line
bad_usage() {
    local name=$1 status=0; shift
    "$GET" "$@" >"$T/out" 2>"$T/err" </dev/null || status=$?
    [ $status -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && ok || fail "$name: exit $status (expected 2), stderr: $(cat "$T/err")"
}
# check NAME COMMAND...: the command succeeds
check() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then ok; else fail "$name: $(tail -3 "$T/err")"; fi; }
# runs NAME MODEL: runq on it exits 0 and prints text
runs() {
    if "$BIN"/runq "$2" -n 8 -t 0 >"$T/run.out" 2>"$T/run.err" && [ -s "$T/run.out" ]; then ok
    else fail "$1: runq $2 -n 8 -t 0: $(tail -2 "$T/run.err")"; fi
}

# ---- the command line
"$GET" --help >"$T/out" 2>&1 && grep -q "^Usage: tools/get-model REPO" "$T/out" && ok || fail "--help prints the usage, exit 0"
bad_usage "no repository"
bad_usage "--bits 5" test/tiny --bits 5
bad_usage "--bits and --recipe together" test/tiny --bits 4 --recipe q4-mixed
bad_usage "an unknown recipe" test/tiny --recipe q5-mixed
bad_usage "an unknown option" test/tiny --nope
bad_usage "a repository name without its owner" tiny
bad_usage "REPO:FILE that is not a .gguf" test/tiny:config.json
bad_usage "--out without a value" test/tiny --out

# ---- a full download and export, from another directory: NAME.q4.bin there
mkdir -p "$T/work"
(cd "$T/work" && "$GET" test/tiny) >"$T/get.out" 2>"$T/get.err" && ok || fail "get-model test/tiny: $(cat "$T/get.err")"
same "the checkpoint is the one export makes from the repository itself" "$T/work/tiny.q4.bin" "$T/direct.q4.bin"
runs "the downloaded model runs" "$T/work/tiny.q4.bin"
grep -q "runq .*tiny.q4.bin -i \"" "$T/get.out" && grep -q "runq .*tiny.q4.bin -m chat" "$T/get.out" \
    && grep -q "server .*tiny.q4.bin" "$T/get.out" && ok || fail "the runq and server commands are printed: $(cat "$T/get.out")"
[ "$(ls "$T/work")" = tiny.q4.bin ] && ok || fail "only the checkpoint is left in the directory: $(ls "$T/work")"
[ "$(sha "$CACHE/tiny/main/model.safetensors")" = "$(sha "$SRC/model.safetensors")" ] && ok \
    || fail "the cache holds the weights under CACHE/REPO/REVISION"
[ "$(cd "$CACHE/tiny/main" && ls | sort | paste -sd' ' -)" = \
  "config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json" ] && ok \
    || fail "exactly the files export needs are downloaded: $(ls "$CACHE/tiny/main")"
[ "$(gets GET test/tiny/main/README.md)" = 0 ] && ok || fail "README.md was downloaded"

# ---- the cache: a second call downloads nothing again
check "a second call" "$GET" test/tiny --out "$T/again.q4.bin"
[ "$(gets GET test/tiny/main/model.safetensors)" = 1 ] && [ "$(gets GET test/tiny/main/config.json)" = 1 ] && ok \
    || fail "the cache is reused: the weights were requested $(gets GET test/tiny/main/model.safetensors) times"
same "the second call's checkpoint" "$T/again.q4.bin" "$T/direct.q4.bin"
(cd "$T/work" && "$GET" test/tiny --bits 8 && "$GET" test/tiny --recipe q2-mixed) >/dev/null 2>"$T/err" \
    && [ -f "$T/work/tiny.q8.bin" ] && [ -f "$T/work/tiny.q2-mixed.bin" ] && ok \
    || fail "--bits 8 and --recipe q2-mixed name tiny.q8.bin and tiny.q2-mixed.bin: $(cat "$T/err"; ls "$T/work")"
runs "the --bits 8 model runs" "$T/work/tiny.q8.bin"
[ "$(gets GET test/tiny/main/model.safetensors)" = 1 ] && ok || fail "other bits come from the same cache"

# ---- sharded weights, listed over several pages
check "a sharded repository (paged listing)" "$GET" test/tiny-sharded --out "$T/sharded.q4.bin"
same "the shards give the same checkpoint as one file" "$T/sharded.q4.bin" "$T/direct.q4.bin"
[ "$(gets GET test/tiny-sharded/main/model-00001-of-00002.safetensors)" = 1 ] \
    && [ "$(gets GET test/tiny-sharded/main/model-00002-of-00002.safetensors)" = 1 ] && ok || fail "each shard downloaded once"

# ---- a connection cut halfway: resumed in the same run, and across runs
check "a download cut halfway" "$GET" test/flaky --out "$T/flaky.q4.bin"
same "the resumed download's checkpoint" "$T/flaky.q4.bin" "$T/direct.q4.bin"
[ "$(sha "$CACHE/flaky/main/model.safetensors")" = "$(sha "$SRC/model.safetensors")" ] && ok || fail "the resumed file's sha256"
[ "$(gets GET test/flaky/main/model.safetensors)" = 2 ] && [[ $(ranges test/flaky/main/model.safetensors) =~ ^bytes=[1-9][0-9]*-$ ]] \
    && ok || fail "the second request resumes with a Range: $(gets GET test/flaky/main/model.safetensors) requests, $(ranges test/flaky/main/model.safetensors)"
half=$(( $(wc -c <"$SRC/model.safetensors") / 2 ))
mkdir -p "$CACHE/tiny/v1" && head -c $half "$SRC/model.safetensors" >"$CACHE/tiny/v1/model.safetensors.part"
check "a .part left by an interrupted run" "$GET" test/tiny --revision v1 --out "$T/v1.q4.bin"
[ "$(ranges test/tiny/v1/model.safetensors)" = "bytes=$half-" ] && ok \
    || fail "the next run resumes from byte $half: $(ranges test/tiny/v1/model.safetensors)"
same "the checkpoint from a resumed .part" "$T/v1.q4.bin" "$T/direct.q4.bin"

# ---- gated: 401 without a token, 403 with a wrong one, success with HF_TOKEN
refused "a gated model without HF_TOKEN" "401.*set HF_TOKEN.*accept the licence" "$GET" test/gated --out "$T/gated.q4.bin"
refused "a gated model with a wrong token" "403.*HF_TOKEN has no access" env HF_TOKEN=wrong "$GET" test/gated --out "$T/gated.q4.bin"
refused "a token the Hub does not know (any repository)" "401.*HF_TOKEN is not a valid token" \
    env HF_TOKEN=invalid "$GET" test/tiny --out "$T/gated.q4.bin"
[ ! -e "$T/gated.q4.bin" ] && ok || fail "a refused download writes no checkpoint"
check "a gated model with HF_TOKEN" env HF_TOKEN=secret "$GET" test/gated --out "$T/gated.q4.bin"
runs "the gated model runs" "$T/gated.q4.bin"

# ---- not found, no network
refused "an unknown repository" "test/nope: no such repository at $URL" "$GET" test/nope --out "$T/x.bin"
refused "an unknown revision" "no revision 'nope'" "$GET" test/tiny --revision nope --out "$T/x.bin"
refused "a .gguf the repository does not have" "no file nope.gguf" "$GET" test/tiny-GGUF:nope.gguf --out "$T/x.bin"
closed=$(fixture free-port)
refused "no network (a closed port)" "cannot reach http://127.0.0.1:$closed \(cannot connect\)" \
    env HF_ENDPOINT="http://127.0.0.1:$closed" "$GET" test/tiny --out "$T/x.bin"
refused "a repository without safetensors" "no model.safetensors or model.safetensors.index.json" "$GET" test/pytorch --out "$T/x.bin"

# ---- a corrupt download: caught by its sha256, not kept
refused "a corrupt download" "model.safetensors is corrupt: sha256 [0-9a-f]{64}, expected $(sha "$SRC/model.safetensors")" \
    "$GET" test/corrupt --out "$T/corrupt.q4.bin"
[ ! -e "$CACHE/corrupt/main/model.safetensors" ] && [ ! -e "$CACHE/corrupt/main/model.safetensors.part" ] && ok \
    || fail "the corrupt file is left in the cache: $(ls "$CACHE/corrupt/main")"
[ ! -e "$T/corrupt.q4.bin" ] && ok || fail "a corrupt download writes no checkpoint"
sed -i 's/"corrupt": \[[^]]*\]/"corrupt": []/' "$T/control.json"
check "the next run, once the server is right" "$GET" test/corrupt --out "$T/corrupt.q4.bin"
[ "$(gets GET test/corrupt/main/model.safetensors)" = 2 ] && ok || fail "the corrupt file was downloaded again"

# ---- a family export does not convert: refused before a weight comes
refused "model_type gpt2" "model_type gpt2 is not supported \(llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3, smollm3\); export cannot convert it" \
    "$GET" test/gpt2 --out "$T/gpt2.q4.bin"
[ "$(gets GET test/gpt2/main/model.safetensors)" = 0 ] && [ "$(gets HEAD test/gpt2/main/model.safetensors)" = 0 ] && ok \
    || fail "gpt2's weights were requested $(gets GET test/gpt2/main/model.safetensors) times before the refusal"

# ---- GGUF repositories
check "REPO:FILE.gguf" "$GET" test/tiny-GGUF:tiny.Q4_0.gguf --out "$T/gguf.q4.bin"
[ "$(gets GET test/tiny-GGUF/main/tiny.F32.gguf)" = 0 ] && [ "$(ls "$CACHE/tiny-GGUF/main")" = tiny.Q4_0.gguf ] && ok \
    || fail "REPO:FILE downloads that one file: $(ls "$CACHE/tiny-GGUF/main")"
"$BIN"/runq "$T/gguf.q4.bin" -n 8 -t 0 -T 1 >"$T/gguf.txt" 2>/dev/null && "$BIN"/runq "$T/direct.q4.bin" -n 8 -t 0 -T 1 >"$T/direct.txt" 2>/dev/null \
    && [ -s "$T/gguf.txt" ] && same "the GGUF Q4_0 round trip writes the same text" "$T/gguf.txt" "$T/direct.txt" \
    || fail "runq on the GGUF export"
mkdir -p "$T/work2"
(cd "$T/work2" && "$GET" test/tiny-GGUF --gguf F32) >/dev/null 2>"$T/err" && [ -f "$T/work2/tiny.q4.bin" ] && ok \
    || fail "--gguf F32 picks tiny.F32.gguf and names the checkpoint tiny.q4.bin: $(cat "$T/err"; ls "$T/work2")"
runs "the model from GGUF F32 runs" "$T/work2/tiny.q4.bin"
refused "--gguf of a type the repository lacks" "no .gguf file of type Q5_K.*tiny.F32.gguf tiny.Q4_0.gguf" "$GET" test/tiny-GGUF --gguf Q5_K --out "$T/x.bin"
cp "$G/tiny.Q4_0.gguf" "$G/tiny-v2.q4_0.gguf"
refused "--gguf of a type two files have" "2 files of type Q4_0 \(tiny-v2.q4_0.gguf tiny.Q4_0.gguf\): name one as REPO:FILE.gguf" \
    "$GET" test/tiny-GGUF --gguf --out "$T/x.bin"
refused "a GGUF repository without --gguf" "it holds GGUF files .*use --gguf TYPE" "$GET" test/tiny-GGUF --out "$T/x.bin"
refused "a GGUF architecture export does not read" "architecture 'gemma'; export reads llama, qwen2, qwen3, gemma2, gemma3, phi3 and smollm3" "$GET" test/gemma-GGUF --gguf --out "$T/x.bin"
[ "$(ranges test/gemma-GGUF/main/gemma.Q4_0.gguf)" = "bytes=0-65535" ] && ok \
    || fail "only the GGUF's first 64 KiB are read before the refusal: $(ranges test/gemma-GGUF/main/gemma.Q4_0.gguf)"

# ---- no half-written model: export fails after the download; the old file stays
echo "an older model" >"$T/keep.q4.bin"
refused "export fails (a Unigram tokenizer.json)" "export failed: .*tokenizer.json.*BPE" "$GET" test/badtok --out "$T/keep.q4.bin"
[ "$(cat "$T/keep.q4.bin")" = "an older model" ] && ok || fail "a failed export replaced the file under the final name"
[ -z "$(ls "$T" | grep -E 'get-model|\.tmp\.')" ] && ok || fail "temporary files are left: $(ls "$T" | grep -E 'get-model|\.tmp\.')"

# ---- disk space (EDGE_LLM_FREE_BYTES: the script's test hook stands for the free space)
refused "no room for the download" "not enough disk space: the download needs" \
    env EDGE_LLM_FREE_BYTES=1000 "$GET" test/tiny --revision v2 --out "$T/space.q4.bin"
weights=$(wc -c <"$SRC/model.safetensors")
refused "room for the download but not the export" "not enough disk space: the export needs" \
    env EDGE_LLM_FREE_BYTES=$((weights + 10000)) "$GET" test/tiny --revision v2 --out "$T/space.q4.bin"
[ "$(gets GET test/tiny/v2/model.safetensors)" = 0 ] && [ ! -e "$T/space.q4.bin" ] && ok \
    || fail "the disk-space refusal comes before the weights and writes no checkpoint"

summary
