#!/usr/bin/env python3
"""reference_forward.py — an independent reference for the forward pass of
every family export reads: the logits Hugging Face transformers computes
(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
Gemma2ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM, SmolLM3ForCausalLM)
for a list of token ids, from a Hugging Face model directory, in numpy and
float64.

    test/reference_forward.py MODEL_DIR TOKEN... [--out logits.npy|logits.bin]

Prints one line of logits per position, or writes them: .npy (float64) or
.bin (raw little-endian float32, (n_tokens, vocab_size)).

It shares nothing with export.c, run.c or runq.c: it parses config.json and
model.safetensors itself (8-byte header length, JSON header, raw data; F32,
F16, BF16) and follows transformers' modeling code on Hugging Face's own
tensors and row order, the whole sequence in one pass (as a prompt is):
  - RoPE by rotate_half over the first rotary dims of each head
    (partial_rotary_factor), cos and sin times the rope init's attention
    scaling; inv_freq as modeling_rope_utils computes it for rope_scaling
    default, linear, llama3 and longrope (short or long factors chosen by the
    sequence's length against original_max_position_embeddings);
  - keys and values repeated for grouped-query attention (repeat_kv), scores
    times 1/sqrt(head_dim) (Gemma: query_pre_attn_scalar**-0.5), Gemma 2's
    tanh soft cap, the causal mask and the sliding-window mask (a query at i
    sees keys j with i - window < j <= i) on the layers whose type is
    sliding_attention (layer_types, or each family's default pattern);
  - RMSNorm (Gemma's multiplies by 1 + w), Qwen 2's q/k/v biases, Qwen 3's
    and Gemma 3's q_norm/k_norm per head before RoPE, Gemma's norms after
    attention and the MLP, Gemma 3's local RoPE base on its sliding layers,
    SmolLM3's layers without RoPE (no_rope_layers);
  - SwiGLU, or GeGLU with gelu_pytorch_tanh; Phi-3's fused qkv_proj and
    gate_up_proj; embeddings times sqrt(hidden) held in the model's dtype
    (Gemma); a tied or untied lm_head, Gemma 2's final soft cap.
It is not fast, and not a model runner for users: a test's witness.
"""
import json
import math
import os
import struct
import sys

import numpy as np

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "smollm3")


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
    if config.get("model_type") not in FAMILIES:
        raise ValueError(f"model_type {config.get('model_type')}: this reference computes {', '.join(FAMILIES)}")
    return config, read_safetensors(os.path.join(directory, "model.safetensors"))


# ---- RoPE frequencies (transformers' modeling_rope_utils)

def head_dim_of(config):
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def rotary_dim_of(config):
    return int(head_dim_of(config) * config.get("partial_rotary_factor", 1.0))


def default_inv_freq(base, dim):
    return 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def llama3_inv_freq(scaling, inv_freq):
    """_compute_llama3_parameters: low frequencies slowed down by factor, high
    ones kept, the band between blended smoothly."""
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


def longrope_inv_freq(config, scaling, base, dim, seq_len):
    """_compute_longrope_parameters: ext_factors long past the original
    length, else short; the attention factor from max/original."""
    original = scaling.get("original_max_position_embeddings") or config["original_max_position_embeddings"]
    factor = scaling.get("factor") or config["max_position_embeddings"] / original
    attention = scaling.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    ext_factors = np.array(scaling["long_factor"] if seq_len > original else scaling["short_factor"], dtype=np.float64)
    return 1.0 / (ext_factors * base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)), attention


def rope_inv_freq(config, seq_len, local=False):
    """(inv_freq, attention scaling) of the global layers, or of Gemma 3's
    local ones (rope_local_base_freq, never scaled)."""
    dim = rotary_dim_of(config)
    if local:
        return default_inv_freq(config.get("rope_local_base_freq", 10000.0), dim), 1.0
    base = config.get("rope_theta", 10000.0)
    scaling = config.get("rope_scaling")
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    inv_freq = default_inv_freq(base, dim)
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / scaling["factor"], 1.0
    if kind == "llama3":
        return llama3_inv_freq(scaling, inv_freq), 1.0
    if kind in ("longrope", "su"):
        return longrope_inv_freq(config, scaling, base, dim, seq_len)
    raise ValueError(f"rope_scaling type {kind} is not computed here")


# ---- which layers slide, turn locally, or not at all

def layer_types(config):
    """Each layer's "sliding_attention" or "full_attention", as each family's
    configuration class derives it when config.json does not list them."""
    n, kind = config["num_hidden_layers"], config["model_type"]
    if config.get("layer_types"):
        return config["layer_types"]
    window = config.get("sliding_window")
    if kind == "gemma2":
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    if kind == "gemma3_text":
        pattern = config.get("sliding_window_pattern", 6)
        return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
    if kind in ("qwen2", "qwen3"):
        slides = config.get("use_sliding_window") and window is not None
        return ["sliding_attention" if slides and i >= config.get("max_window_layers", 0) else "full_attention"
                for i in range(n)]
    if kind == "smollm3":
        slides = config.get("use_sliding_window") and window is not None
        return ["sliding_attention" if slides and not uses_rope(config, i) else "full_attention" for i in range(n)]
    # Mistral (v0.1) and Phi-3 pass their sliding_window to every layer's attention
    return ["sliding_attention" if window is not None else "full_attention"] * n


def uses_rope(config, layer):
    if config["model_type"] != "smollm3":
        return True
    if config.get("no_rope_layers") is not None:
        return bool(config["no_rope_layers"][layer])
    return (layer + 1) % config.get("no_rope_layer_interval", 4) != 0


def window_of(config, layer_type):
    if layer_type != "sliding_attention":
        return None
    if config["model_type"] in ("gemma2", "gemma3_text"):
        return config.get("sliding_window", 4096)
    return config.get("sliding_window")


# ---- the network

def rms_norm(x, weight, eps, gemma=False):
    return (1.0 + weight if gemma else weight) * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x, cos, sin):
    """rotate_half RoPE on the first cos.shape[-1] dims of each head; the rest pass (Phi-3's partial rotary)"""
    rot = cos.shape[-1]
    turned = x[..., :rot] * cos + rotate_half(x[..., :rot]) * sin
    return np.concatenate([turned, x[..., rot:]], axis=-1)


def silu(x):
    return x / (1 + np.exp(-x))


def gelu_tanh(x):   # gelu_pytorch_tanh
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softcap(x, cap):
    return np.tanh(x / cap) * cap if cap else x


def in_dtype(value, config):
    """A Python float held in the model's dtype (Gemma's embedding normalizer)."""
    dtype = config.get("torch_dtype") or config.get("dtype") or "float32"
    if dtype == "float16":
        return float(np.float16(value))
    if dtype == "bfloat16":
        bits = int(np.array(value, dtype=np.float32).view(np.uint32))
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000   # round to nearest even
        return float(np.array(bits, dtype=np.uint32).view(np.float32))
    return float(np.float32(value))


def projections(config, w, p):
    """q, k, v, gate, up weights of a layer, Phi-3's fused ones split."""
    if config["model_type"] != "phi3":
        return (w[p + "self_attn.q_proj.weight"], w[p + "self_attn.k_proj.weight"], w[p + "self_attn.v_proj.weight"],
                w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"])
    q_dim = config["num_attention_heads"] * head_dim_of(config)
    kv_dim = config.get("num_key_value_heads", config["num_attention_heads"]) * head_dim_of(config)
    qkv, gate_up = w[p + "self_attn.qkv_proj.weight"], w[p + "mlp.gate_up_proj.weight"]
    ffn = gate_up.shape[0] // 2
    return qkv[:q_dim], qkv[q_dim:q_dim + kv_dim], qkv[q_dim + kv_dim:], gate_up[:ffn], gate_up[ffn:]


def forward(config, w, tokens):
    """Logits (len(tokens), vocab_size) for tokens at positions 0, 1, ..."""
    kind = config["model_type"]
    gemma = kind in ("gemma2", "gemma3_text")
    n_heads = config["num_attention_heads"]
    n_kv_heads = config.get("num_key_value_heads") or n_heads
    head_dim = head_dim_of(config)
    eps = config.get("rms_norm_eps", 1e-6)
    scaling = config.get("query_pre_attn_scalar", 256) ** -0.5 if gemma else head_dim ** -0.5
    n = len(tokens)
    positions = np.arange(n, dtype=np.float64)

    def cos_sin(local):
        inv_freq, attention_scaling = rope_inv_freq(config, n, local)
        emb = np.concatenate([np.outer(positions, inv_freq)] * 2, axis=-1)   # (n, rotary_dim): HF's layout
        return (np.cos(emb) * attention_scaling)[:, None, :], (np.sin(emb) * attention_scaling)[:, None, :]

    rope_global = cos_sin(False)
    rope_local = cos_sin(True) if kind == "gemma3_text" else None
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    types = layer_types(config)

    h = w["model.embed_tokens.weight"][tokens]               # (n, dim)
    if gemma:
        h = h * in_dtype(config["hidden_size"] ** 0.5, config)
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        wq, wk, wv, w_gate, w_up = projections(config, w, p)
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps, gemma)
        q, k, v = x @ wq.T, x @ wk.T, x @ wv.T
        if kind == "qwen2":
            q = q + w[p + "self_attn.q_proj.bias"]
            k = k + w[p + "self_attn.k_proj.bias"]
            v = v + w[p + "self_attn.v_proj.bias"]
        q, k, v = q.reshape(n, n_heads, head_dim), k.reshape(n, n_kv_heads, head_dim), v.reshape(n, n_kv_heads, head_dim)
        if kind in ("qwen3", "gemma3_text"):
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps, gemma)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps, gemma)
        if uses_rope(config, layer):
            cos, sin = rope_local if rope_local and types[layer] == "sliding_attention" else rope_global
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = np.repeat(k, n_heads // n_kv_heads, axis=1)      # repeat_kv: head i reads KV head i // n_rep
        v = np.repeat(v, n_heads // n_kv_heads, axis=1)
        scores = softcap(np.einsum("ihd,jhd->hij", q, k) * scaling, config.get("attn_logit_softcapping"))
        window = window_of(config, types[layer])
        visible = (j <= i) & ((j > i - window) if window else True)
        scores = np.where(visible, scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = scores / scores.sum(axis=-1, keepdims=True)
        attended = np.einsum("hij,jhd->ihd", weights, v).reshape(n, n_heads * head_dim)
        out = attended @ w[p + "self_attn.o_proj.weight"].T
        if gemma:   # Gemma: post_attention_layernorm normalizes the attention's output
            out = rms_norm(out, w[p + "post_attention_layernorm.weight"], eps, gemma)
        h = h + out
        x = rms_norm(h, w[p + ("pre_feedforward_layernorm.weight" if gemma else "post_attention_layernorm.weight")],
                     eps, gemma)
        act = gelu_tanh if gemma else silu
        out = (act(x @ w_gate.T) * (x @ w_up.T)) @ w[p + "mlp.down_proj.weight"].T
        if gemma:
            out = rms_norm(out, w[p + "post_feedforward_layernorm.weight"], eps, gemma)
        h = h + out
    h = rms_norm(h, w["model.norm.weight"], eps, gemma)
    tied = config.get("tie_word_embeddings", gemma or kind == "smollm3")   # the configuration classes' defaults
    classifier = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    return softcap(h @ classifier.T, config.get("final_logit_softcapping"))


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
