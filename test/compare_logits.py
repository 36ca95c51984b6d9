#!/usr/bin/env python3
"""compare_logits.py — the measurements test/test_families.sh makes, and the
files it alters. Logits files are build/logits' raw float32 (n_tokens, vocab)
or reference_forward.py's .npy.

    compare_logits.py family HF_DIR
        HF_DIR.ref.npy (the reference) against HF_DIR.f32.out (run.c on the fp32
        export), HF_DIR.q4.out (runq on the int4 export) and HF_DIR.deq.out
        (run.c on those int4 weights); one line: fp32 max |diff| / max |logit|,
        max |logit|, mean KL and top-1 agreement of int4 against deq, the same
        against the reference, and rope_freqs (below)
    compare_logits.py rope-freqs CHECKPOINT HF_DIR
        "absent" (no rope_scaling, no tensor), or the largest relative error of
        the checkpoint's rope_freqs against the reference's inv_freq ratio and
        how many fall in each band (kept, blended, divided by factor)
    compare_logits.py rope-scaling HF_DIR OUT_DIR JSON
        a copy of the model whose config.json has rope_scaling = JSON
    compare_logits.py set-config HF_DIR OUT_DIR KEY JSON
        a copy of the model whose config.json has KEY = JSON
    compare_logits.py set-rope-freq CHECKPOINT VALUE
        rope_freqs[0] = VALUE, in place
    compare_logits.py seq-len CHECKPOINT
        the header's seq_len (the longest context runq allows)
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
    """(offset, values) of an F32 tensor of an Edge LLM checkpoint (README's
    format: 64-byte header, ffn widths, the 96-byte entries of the tensor table
    at the next multiple of 64), or (None, None)"""
    data = open(path, "rb").read()
    n_layers, n_tensors = np.frombuffer(data, "<i4", 1, 12)[0], np.frombuffer(data, "<u4", 1, 56)[0]
    table = (64 + 4 * int(n_layers) + 63) // 64 * 64
    for i in range(n_tensors):
        entry = data[table + 96 * i: table + 96 * (i + 1)]
        if entry[:64].rstrip(b"\0").decode() == wanted:
            kind, _, rows, cols = np.frombuffer(entry, "<u4", 4, 64)
            offset = int(np.frombuffer(entry, "<u8", 1, 80)[0])
            assert kind == 0, f"{wanted} has type {kind}, not F32"
            return offset, np.frombuffer(data, "<f4", int(rows * cols), offset)
    return None, None


def rope_freqs(checkpoint, config):
    _, stored = checkpoint_tensor(checkpoint, "rope_freqs")
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type", "default")) == "default":
        return "absent" if stored is None else "present-without-rope_scaling"
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    expected = reference_forward.default_inv_freq(config, head_dim) / reference_forward.rope_inv_freq(config, head_dim)
    if stored is None or len(stored) != len(expected):
        return "missing"
    factor = scaling["factor"]
    bands = [(expected == 1).sum(), ((expected > 1) & (expected < factor)).sum(), (expected == factor).sum()]
    return f"{np.abs(stored / expected - 1).max():.3g} " + " ".join(map(str, bands))


def family(directory):
    config = json.load(open(os.path.join(directory, "config.json")))
    ref, fp32, int4, deq = (logits(f"{directory}.{kind}", config["vocab_size"])
                            for kind in ("ref.npy", "f32.out", "q4.out", "deq.out"))
    print("%.3g %.3g %.4f %.3f %.4f %.3f %s" % (np.abs(fp32 - ref).max() / np.abs(ref).max(), np.abs(ref).max(),
          *kl(deq, int4), *kl(ref, int4), rope_freqs(f"{directory}.f32.bin", config)))


def with_config(directory, out, key, value):
    shutil.copytree(directory, out)
    path = os.path.join(out, "config.json")
    config = json.load(open(path))
    config[key] = json.loads(value)
    json.dump(config, open(path, "w"))


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
    if mode in ("rope-scaling", "set-config", "seq-len"):   # need no numpy: saves its import
        if mode == "rope-scaling":
            with_config(args[0], args[1], "rope_scaling", args[2])
        elif mode == "set-config":
            with_config(*args)
        else:
            print(seq_len(*args))
        sys.exit()
    import numpy as np
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference_forward
    if mode == "family":
        family(*args)
    elif mode == "rope-freqs":
        print(rope_freqs(args[0], json.load(open(os.path.join(args[1], "config.json")))))
    elif mode == "set-rope-freq":
        set_rope_freq(*args)
    else:
        sys.exit(__doc__)
