#!/usr/bin/env python3
"""write_hf_family.py — a tiny Hugging Face model directory in one family's
exact conventions (config.json keys, tensor names, shapes and dtype), with
seeded random weights, plus a llama2.c tokenizer.bin for export's -z.

    test/write_hf_family.py FAMILY DIR        FAMILY: one of FAMILIES below
    test/write_hf_family.py --list

The dimensions are small; what each family's real checkpoints vary in —
grouped-query ratio, tied or untied classifier, dtype, rope_theta, head_dim
given or implied, Llama 3.1's rope_scaling — is kept.
It is not a converter: real Hugging Face checkpoints come from Hugging Face.
"""
import json
import os
import struct
import sys

import numpy as np

# Each family: the config.json it writes (less the keys every Llama config has)
# and the dtype of its tensors.
FAMILIES = {
    # Llama 2: multi-head attention (kv = heads), untied classifier; F32 here.
    # FFN 172 is off the int4 group (padding path).
    "llama2": dict(dtype="F32", config=dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=172,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=300,
        max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-05, tie_word_embeddings=False,
        rope_scaling=None, bos_token_id=1, eos_token_id=2, torch_dtype="float32", pretraining_tp=1)),
    # TinyLlama: grouped-query attention 8:1 here (its real 32:4 is 8:1), untied, F16
    "tinyllama": dict(dtype="F16", config=dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=128, intermediate_size=352,
        num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=1, vocab_size=320,
        max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-05, tie_word_embeddings=False,
        rope_scaling=None, bos_token_id=1, eos_token_id=2, torch_dtype="float16")),
    # Mistral 7B v0.2/v0.3: model_type mistral, GQA 4:1, rope_theta 1e6, no sliding window, BF16
    "mistral": dict(dtype="BF16", config=dict(
        architectures=["MistralForCausalLM"], model_type="mistral", hidden_size=128, intermediate_size=448,
        num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, head_dim=16, vocab_size=320,
        max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-05, tie_word_embeddings=False,
        sliding_window=None, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")),
    # Llama 3.2: GQA 4:1, tied, rope_theta 500000, rope_scaling llama3 with
    # factor 32 (3.2's), head_dim given and wider than hidden/heads. With
    # head_dim 32 and original_max_position_embeddings 40 the wavelengths
    # 2 pi 500000^(2i/32) fall in all three bands: 6.3 < 40/4 (kept),
    # 14.3 and 32.5 between 40/4 and 40/1 (blended), 74 and up (divided by 32).
    "llama3.2": dict(dtype="BF16", config=dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=96, intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=32, vocab_size=384,
        max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-05, tie_word_embeddings=True,
        rope_scaling=dict(factor=32.0, high_freq_factor=4.0, low_freq_factor=1.0,
                          original_max_position_embeddings=40, rope_type="llama3"),
        bos_token_id=1, eos_token_id=[2, 3], torch_dtype="bfloat16", attention_bias=False, mlp_bias=False)),
    # SmolLM2: tied, GQA 3:1, rope_theta 100000, BF16
    "smollm2": dict(dtype="BF16", config=dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=96, intermediate_size=256,
        num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2, vocab_size=352,
        max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-05, tie_word_embeddings=True,
        rope_scaling=None, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")),
}


def to_bf16_bits(x):
    """float32 -> bfloat16 bits, rounded to nearest even (as torch rounds)"""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")


def encode(values, dtype):
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    return to_bf16_bits(values).tobytes()


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, values in tensors.items():
        blob = encode(values, dtype)
        header[name] = {"dtype": dtype, "shape": list(values.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)   # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def random_weights(config, seed):
    """Scaled so activations stay near 1 and logits spread over a few units:
    attention that is not uniform and distributions with a clear top token."""
    rng = np.random.default_rng(seed)
    dim, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or dim // heads

    def matrix(rows, cols, gain=1.0):
        return rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)

    def norm():
        return 1.0 + 0.2 * rng.standard_normal(dim)

    w = {"model.embed_tokens.weight": rng.standard_normal((vocab, dim))}
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = matrix(heads * head_dim, dim)
        w[p + "self_attn.k_proj.weight"] = matrix(kv_heads * head_dim, dim)
        w[p + "self_attn.v_proj.weight"] = matrix(kv_heads * head_dim, dim)
        w[p + "self_attn.o_proj.weight"] = matrix(dim, heads * head_dim)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = matrix(ffn, dim)
        w[p + "mlp.up_proj.weight"] = matrix(ffn, dim)
        w[p + "mlp.down_proj.weight"] = matrix(dim, ffn)
    w["model.norm.weight"] = norm()
    if not config["tie_word_embeddings"]:
        w["lm_head.weight"] = matrix(vocab, dim, 2.0)
    else:   # the embedding is the classifier too: keep its logits in the same range
        w["model.embed_tokens.weight"] *= 2.0 / np.sqrt(dim)
    return w


def write_tokenizer_bin(path, vocab_size):
    """llama2.c's tokenizer.bin: <unk> <s> </s>, the 256 byte pieces, then
    letters and letter pairs with falling scores, up to vocab_size pieces."""
    pieces = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)]
    letters = [bytes([c]) for c in b" abcdefghijklmnopqrstuvwxyz"]
    pieces += letters + [a + b for a in letters for b in letters]
    pieces = pieces[:vocab_size]
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p) for p in pieces)))
        for i, piece in enumerate(pieces):
            f.write(struct.pack("<fi", -float(i), len(piece)) + piece)


def main(argv):
    if argv == ["--list"]:
        print(" ".join(FAMILIES))
        return
    if len(argv) != 2 or argv[0] not in FAMILIES:
        sys.exit(f"usage: write_hf_family.py FAMILY DIR (FAMILY: {' '.join(FAMILIES)})")
    family, directory = FAMILIES[argv[0]], argv[1]
    os.makedirs(directory, exist_ok=True)
    config = dict(family["config"], hidden_act="silu", initializer_range=0.02, use_cache=True,
                  transformers_version="4.45.0")
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    seed = sum(argv[0].encode())
    write_safetensors(os.path.join(directory, "model.safetensors"), random_weights(config, seed), family["dtype"])
    write_tokenizer_bin(os.path.join(directory, "tokenizer.bin"), config["vocab_size"])


if __name__ == "__main__":
    main(sys.argv[1:])
