#!/usr/bin/env python3
"""compare_logits.py — the measurements test/test_families.sh makes, and the
files it alters. Logits files are build/logits' raw float32 (n_tokens, vocab)
or reference_forward.py's .npy.

    compare_logits.py family HF_DIR
        HF_DIR.ref.npy (the reference) against HF_DIR.f32.out (run.c on the fp32
        export), HF_DIR.q4.out (runq on the int4 export) and HF_DIR.deq.out
        (run.c on those int4 weights); one line: fp32's largest relative error
        at any position (max |diff| / max |logit| of that position), max
        |logit|, mean KL and top-1 agreement of int4 against deq, the same
        against the reference, mean KL of HF_DIR.kv8.out (runq's int8 KV
        cache) against HF_DIR.q4.out, and rope_freqs (below)
    compare_logits.py against HF_DIR|VOCAB_SIZE EXPECTED GOT...
        each GOT's logits against EXPECTED's (a .npy reference or a logits
        file), a line each: "largest relative error at any position, mean KL,
        top-1 agreement"
    compare_logits.py llama HF_DIR N_PROMPT ID...
        llama.cpp's logits (HF_DIR.llama.out) against run.c's (HF_DIR.f32.out),
        and how many of the ids (llama.cpp's greedy continuation of the first
        N_PROMPT tokens) are the argmax of HF_DIR.teacher.out (run.c's logits
        of the prompt and the ids) after the token before each: "largest
        relative error, top-1 agreement, ids agreeing"
    compare_logits.py rope-freqs CHECKPOINT HF_DIR
        "absent" (no rope_scaling, no tensor), or the largest relative error of
        the checkpoint's rope_freqs against the reference's inv_freq ratio and,
        for llama3 scaling, how many fall in each band (kept, blended, divided
        by factor)
    compare_logits.py cut-tensor HF_DIR OUT_DIR NAME ROWS
        a copy of the model whose tensor NAME keeps its first ROWS rows
    compare_logits.py rope-scaling HF_DIR OUT_DIR JSON
        a copy of the model whose config.json has rope_scaling = JSON
    compare_logits.py set-config HF_DIR OUT_DIR KEY JSON
        a copy of the model whose config.json has KEY = JSON
    compare_logits.py set-rope-freq CHECKPOINT VALUE
        rope_freqs[0] = VALUE, in place
    compare_logits.py seq-len CHECKPOINT
        the header's seq_len (the longest context runq allows)
    compare_logits.py layer-kinds CHECKPOINT
        a version 4 checkpoint's layer_kind table (LAYER_* bits), one number a layer
It is not a reference: it only compares logits others computed.
"""
import json
import os
import shutil
import struct
import sys


def logits(path, vocab):
    if path.endswith(".npy"):
        return np.load(path)
    return np.fromfile(path, "<f4").reshape(-1, vocab).astype(np.float64)


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def kl(p, q):
    """mean KL(P || Q) over the positions, and how often the argmaxes agree"""
    p, q = log_softmax(p), log_softmax(q)
    return (np.exp(p) * (p - q)).sum(axis=1).mean(), (p.argmax(axis=1) == q.argmax(axis=1)).mean()


def checkpoint_tensor(path, wanted):
    """(offset, values) of an F32 tensor of an Edge LLM checkpoint (runq.c's
    format: 64-byte header, from version 4 64 bytes of settings, ffn widths
    and from version 4 layer kinds, the 96-byte entries of the tensor table at
    the next multiple of 64), or (None, None)"""
    data = open(path, "rb").read()
    version, n_layers = np.frombuffer(data, "<u4", 1, 4)[0], int(np.frombuffer(data, "<i4", 1, 12)[0])
    n_tensors = np.frombuffer(data, "<u4", 1, 56)[0]
    tables = 64 + 8 * n_layers if version >= 4 else 4 * n_layers
    table = (64 + tables + 63) // 64 * 64
    for i in range(n_tensors):
        entry = data[table + 96 * i: table + 96 * (i + 1)]
        if entry[:64].rstrip(b"\0").decode() == wanted:
            kind, _, rows, cols = np.frombuffer(entry, "<u4", 4, 64)
            offset = int(np.frombuffer(entry, "<u8", 1, 80)[0])
            assert kind == 0, f"{wanted} has type {kind}, not F32"
            return offset, np.frombuffer(data, "<f4", int(rows * cols), offset)
    return None, None


def rope_freqs(checkpoint, config):
    """The stored divisors against the reference's: inv_freq without scaling
    over inv_freq with it (for LongRoPE, the short factors of a short run)."""
    _, stored = checkpoint_tensor(checkpoint, "rope_freqs")
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return "absent" if stored is None else "present-without-rope_scaling"
    base, dim = config.get("rope_theta", 10000.0), reference_forward.rotary_dim_of(config)
    expected = reference_forward.default_inv_freq(base, dim) / reference_forward.rope_inv_freq(config, 1)[0]
    if stored is None or len(stored) != len(expected):
        return "missing"
    error = f"{np.abs(stored / expected - 1).max():.3g}"
    if kind != "llama3":
        return error
    factor = scaling["factor"]
    bands = [(expected == 1).sum(), ((expected > 1) & (expected < factor)).sum(), (expected == factor).sum()]
    return error + " " + " ".join(map(str, bands))


def relative_error(expected, got):
    """the largest over positions of max |diff| / max |expected logit| there"""
    return (np.abs(got - expected).max(axis=1) / np.abs(expected).max(axis=1)).max()


def family(directory):
    config = json.load(open(os.path.join(directory, "config.json")))
    ref, fp32, int4, deq = (logits(f"{directory}.{kind}", config["vocab_size"])
                            for kind in ("ref.npy", "f32.out", "q4.out", "deq.out"))
    kv8 = logits(f"{directory}.kv8.out", config["vocab_size"])
    print("%.3g %.3g %.4f %.3f %.4f %.3f %.5f %s" % (relative_error(ref, fp32), np.abs(ref).max(),
          *kl(deq, int4), *kl(ref, int4), kl(int4, kv8)[0], rope_freqs(f"{directory}.f32.bin", config)))


def against(directory, expected, *got):
    vocab = int(directory) if directory.isdigit() else json.load(open(os.path.join(directory, "config.json")))["vocab_size"]
    e = logits(expected, vocab)
    for path in got:
        g = logits(path, vocab)
        print("%.3g %.5f %.3f" % (relative_error(e, g), *kl(e, g)))


def llama(directory, n_prompt, ids):
    vocab = json.load(open(os.path.join(directory, "config.json")))["vocab_size"]
    ours, theirs, teacher = (logits(f"{directory}.{kind}.out", vocab) for kind in ("f32", "llama", "teacher"))
    agree = sum(int(teacher[int(n_prompt) - 1 + i].argmax()) == int(token) for i, token in enumerate(ids))
    print("%.3g %.3f %d" % (relative_error(ours, theirs), kl(ours, theirs)[1], agree))


def cut_tensor(directory, out, name, rows):
    """the safetensors rewritten with NAME's first ROWS rows (a fused tensor of the wrong size)"""
    shutil.copytree(directory, out)
    path = os.path.join(out, "model.safetensors")
    data = open(path, "rb").read()
    (size,) = struct.unpack("<Q", data[:8])
    header, payload = json.loads(data[8:8 + size]), data[8 + size:]
    blobs, offset = [], 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        blob = payload[begin:end]
        if key == name:
            blob = blob[:len(blob) // info["shape"][0] * int(rows)]
            info["shape"][0] = int(rows)
        info["data_offsets"] = [offset, offset + len(blob)]
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def with_config(directory, out, *pairs):
    """a copy of the model with config.json's KEY = JSON for each KEY JSON pair"""
    shutil.copytree(directory, out)
    path = os.path.join(out, "config.json")
    config = json.load(open(path))
    for key, value in zip(pairs[::2], pairs[1::2]):
        config[key] = json.loads(value)
    json.dump(config, open(path, "w"))


def layer_kinds(checkpoint):
    data = open(checkpoint, "rb").read()
    n_layers = struct.unpack_from("<i", data, 12)[0]
    print(" ".join(map(str, struct.unpack_from("<%dI" % n_layers, data, 128 + 4 * n_layers))))


def seq_len(checkpoint):
    with open(checkpoint, "rb") as f:
        return struct.unpack_from("<i", f.read(64), 32)[0]   # magic, version, then seven int32 fields


def set_rope_freq(checkpoint, value):
    offset, _ = checkpoint_tensor(checkpoint, "rope_freqs")
    with open(checkpoint, "r+b") as f:
        f.seek(offset)
        f.write(np.float32(float(value)).tobytes())


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode in ("rope-scaling", "set-config", "seq-len", "cut-tensor", "layer-kinds"):   # need no numpy: saves its import
        if mode == "rope-scaling":
            with_config(args[0], args[1], "rope_scaling", args[2])
        elif mode == "set-config":
            with_config(*args)
        elif mode == "cut-tensor":
            cut_tensor(*args)
        elif mode == "layer-kinds":
            layer_kinds(*args)
        else:
            print(seq_len(*args))
        sys.exit()
    import numpy as np
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference_forward
    if mode == "family":
        family(*args)
    elif mode == "against":
        against(*args)
    elif mode == "llama":
        llama(args[0], args[1], args[2:])
    elif mode == "rope-freqs":
        print(rope_freqs(args[0], json.load(open(os.path.join(args[1], "config.json")))))
    elif mode == "set-rope-freq":
        set_rope_freq(*args)
    else:
        sys.exit(__doc__)
