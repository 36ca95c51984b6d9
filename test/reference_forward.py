#!/usr/bin/env python3
"""reference_forward.py — an independent reference for the Llama forward pass:
the logits Hugging Face transformers' LlamaForCausalLM (and MistralForCausalLM,
the same network) computes for a list of token ids, from a Hugging Face model
directory, in numpy and float64.

    test/reference_forward.py MODEL_DIR TOKEN... [--out logits.npy|logits.bin]

Prints one line of logits per position, or writes them: .npy (float64) or
.bin (raw little-endian float32, (n_tokens, vocab_size)).

It shares nothing with export.c, run.c or runq.c: it parses config.json and
model.safetensors itself (8-byte header length, JSON header, raw data; F32,
F16, BF16) and follows transformers' modeling_llama.py on Hugging Face's own
row order: RoPE by rotate_half (the first half of each head against the
second), keys and values repeated for grouped-query attention (repeat_kv),
RMSNorm, SwiGLU, a tied or untied lm_head, and rope_scaling of type llama3
computed as modeling_rope_utils' _compute_llama3_parameters computes inv_freq.
It is not fast, and not a model runner for users: a test's witness.
"""
import json
import math
import os
import struct
import sys

import numpy as np


# ---- model.safetensors: u64 header size, JSON header, then the tensors' bytes

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    payload = memoryview(data)[8 + header_size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = payload[begin:end]
        if info["dtype"] == "F32":
            values = np.frombuffer(raw, dtype="<f4")
        elif info["dtype"] == "F16":
            values = np.frombuffer(raw, dtype="<f2")
        elif info["dtype"] == "BF16":   # the top half of a float32
            values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}")
        tensors[name] = values.astype(np.float64).reshape(info["shape"])
    return tensors


def load_model(directory):
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    if config.get("model_type") not in ("llama", "mistral"):
        raise ValueError(f"model_type {config.get('model_type')}: this reference computes llama and mistral")
    return config, read_safetensors(os.path.join(directory, "model.safetensors"))


# ---- RoPE frequencies (transformers' modeling_rope_utils)

def default_inv_freq(config, head_dim):
    base = config.get("rope_theta", 10000.0)
    return 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def llama3_inv_freq(config, head_dim):
    """_compute_llama3_parameters: low frequencies slowed down by factor, high
    ones kept, the band between blended smoothly."""
    scaling = config["rope_scaling"]
    inv_freq = default_inv_freq(config, head_dim)
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rope_inv_freq(config, head_dim):
    scaling = config.get("rope_scaling")
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return default_inv_freq(config, head_dim)
    if kind == "llama3":
        return llama3_inv_freq(config, head_dim)
    raise ValueError(f"rope_scaling type {kind} is not computed here")


# ---- the network (modeling_llama.py)

def rms_norm(x, weight, eps):
    return weight * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def silu(x):
    return x / (1 + np.exp(-x))


def forward(config, w, tokens):
    """Logits (len(tokens), vocab_size) for tokens at positions 0, 1, ..."""
    n_heads = config["num_attention_heads"]
    n_kv_heads = config.get("num_key_value_heads") or n_heads
    head_dim = config.get("head_dim") or config["hidden_size"] // n_heads
    eps = config.get("rms_norm_eps", 1e-6)
    if config.get("sliding_window") is not None and len(tokens) > config["sliding_window"]:
        raise ValueError("a sliding window shorter than the tokens is not computed here")
    n = len(tokens)

    angles = np.outer(np.arange(n, dtype=np.float64), rope_inv_freq(config, head_dim))
    emb = np.concatenate([angles, angles], axis=-1)          # (n, head_dim): HF's layout
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    causal = np.triu(np.full((n, n), -np.inf), k=1)

    h = w["model.embed_tokens.weight"][tokens]               # (n, dim)
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(n, n_heads, head_dim)
        k = (x @ w[p + "self_attn.k_proj.weight"].T).reshape(n, n_kv_heads, head_dim)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(n, n_kv_heads, head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, n_heads // n_kv_heads, axis=1)      # repeat_kv: head i reads KV head i // n_rep
        v = np.repeat(v, n_heads // n_kv_heads, axis=1)
        scores = np.einsum("ihd,jhd->hij", q, k) / math.sqrt(head_dim) + causal
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = scores / scores.sum(axis=-1, keepdims=True)
        attended = np.einsum("hij,jhd->ihd", weights, v).reshape(n, n_heads * head_dim)
        h = h + attended @ w[p + "self_attn.o_proj.weight"].T
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = x @ w[p + "mlp.gate_proj.weight"].T
        up = x @ w[p + "mlp.up_proj.weight"].T
        h = h + (silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    h = rms_norm(h, w["model.norm.weight"], eps)
    tied = config.get("tie_word_embeddings", False)
    classifier = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    return h @ classifier.T


def main(argv):
    args, out = list(argv), None
    if "--out" in args:
        at = args.index("--out")
        out = args[at + 1]
        del args[at:at + 2]
    if len(args) < 2:
        sys.exit("usage: reference_forward.py MODEL_DIR TOKEN... [--out logits.npy|logits.bin]")
    config, weights = load_model(args[0])
    logits = forward(config, weights, [int(t) for t in args[1:]])
    if out is None:
        for row in logits:
            print(" ".join(f"{v:.9g}" for v in row))
    elif out.endswith(".npy"):
        np.save(out, logits)
    else:
        logits.astype("<f4").tofile(out)


if __name__ == "__main__":
    main(sys.argv[1:])
