#!/usr/bin/env python3
"""blocks.py CHECKPOINT — the int4 blocks (32 weights of a row) one token
multiplies in a prefill and in a decode step: every layer matrix, and the
classifier too when decoding (a prompt's classifier runs once, after its last
token). Reads the tensor table as runq.c's format comment lays it out.
Prints "PREFILL_BLOCKS DECODE_BLOCKS"."""
import struct, sys

with open(sys.argv[1], "rb") as f:
    data = f.read()
magic, version, dim, n_layers = struct.unpack_from("<IIii", data, 0)
flags, = struct.unpack_from("<I", data, 44)
n_tensors, = struct.unpack_from("<I", data, 56)
table = (64 + 4 * n_layers + 63) // 64 * 64
layers = classifier = 0
for i in range(n_tensors):
    name, kind, group, rows, cols = struct.unpack_from("<64sIIII", data, table + 96 * i)
    name = name.rstrip(b"\0").decode()
    if kind != 2: continue   # Q4 only: the matrices these runs multiply
    blocks = rows * ((cols + group - 1) // group * group) // 32
    if name.startswith("layers."): layers += blocks
    elif name == "output" or (name == "tok_embeddings" and flags & 1): classifier += blocks
print(layers, layers + classifier)
