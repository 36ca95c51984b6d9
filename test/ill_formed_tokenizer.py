#!/usr/bin/env python3
"""ill_formed_tokenizer.py OUT — a tokenizer.bin (llama2.c's layout) whose
pieces are ill-formed UTF-8 of every class (overlong forms, a UTF-16
surrogate, a code point above U+10FFFF, stray bytes) and parts of
well-formed characters, beside a few letters. A random-weight model with it
emits every kind of byte sequence a model's byte-fallback pieces can: the
UTF-8 tests of runq, run and the server feed on it. Standard library only."""
import struct
import sys

SPECIALS = [b'<unk>', b'<s>', b'</s>']                      # ids 0-2: never matched, never merged
ILL_FORMED = [b'\xe0\x88\x8f', b'\xed\xa0\x80', b'\xf0\x8f\x80\x80', b'\xf4\x90\x80\x80', b'\xc0\xaf', b'\xff', b'\x80']
PARTS = [b'\xe0', b'\x88\x8f', b'\xed', b'\xa0\x80', b'\xf4', b'\xc3', b'\xa9', b'\xf0\x9f', b'\x98\x80']
pieces = SPECIALS + ILL_FORMED + PARTS + [bytes([c]) for c in b'abcdefghijklmnopqrstuvwxyz .,']
blob = struct.pack('<i', max(map(len, pieces)))
for i, piece in enumerate(pieces):
    blob += struct.pack('<fi', float('-inf') if i < len(SPECIALS) else 0.0, len(piece)) + piece
open(sys.argv[1], 'wb').write(blob)
