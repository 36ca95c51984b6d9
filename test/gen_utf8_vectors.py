#!/usr/bin/env python3
"""gen_utf8_vectors.py — test/data/utf8.vectors: byte strings and what a
strict UTF-8 printer makes of them, by Python's own decoder (errors='replace'
substitutes U+FFFD for each maximal subpart, the Unicode standard's practice).

Each line: the input bytes in hex, a tab, the expected output bytes in hex.
Rows: every boundary of the standard's Table 3-7 (each byte's lowest and
highest allowed value, and one past each), each ill-formed class (overlong
forms, surrogates, above U+10FFFF, lone continuation bytes, truncations),
then seeded random strings drawn from the bytes that matter.

    python3 test/gen_utf8_vectors.py > test/data/utf8.vectors
It is not run by make test: its output is committed.
"""
import random

# (first byte range, second byte range): Table 3-7
ROWS = [((0xC2, 0xDF), (0x80, 0xBF), 2), ((0xE0, 0xE0), (0xA0, 0xBF), 3), ((0xE1, 0xEC), (0x80, 0xBF), 3),
        ((0xED, 0xED), (0x80, 0x9F), 3), ((0xEE, 0xEF), (0x80, 0xBF), 3), ((0xF0, 0xF0), (0x90, 0xBF), 4),
        ((0xF1, 0xF3), (0x80, 0xBF), 4), ((0xF4, 0xF4), (0x80, 0x8F), 4)]


def expected(data):
    return data.decode('utf-8', errors='replace').encode('utf-8')


def vectors():
    out = [b'', b'a', bytes(range(0x20, 0x7F)), b'\x7f', b'\x80', b'\xbf', b'\xc0\x80', b'\xc1\xbf', b'\xf5\x80\x80\x80',
           b'\xff', b'\xfe', bytes.fromhex('61F18080E180C262806380BF64'),   # the standard's own example
           bytes.fromhex('E0888F'), bytes.fromhex('EDA080'), bytes.fromhex('EDBFBF'), bytes.fromhex('F08F8080'),
           bytes.fromhex('F4908080'), bytes.fromhex('F48FBFBF'), bytes.fromhex('EFBFBD')]
    for (lead_lo, lead_hi), (second_lo, second_hi), length in ROWS:
        for lead in {lead_lo, lead_hi}:
            for second in (second_lo - 1, second_lo, second_hi, second_hi + 1):
                for rest in (0x7F, 0x80, 0xBF, 0xC0):
                    full = bytes([lead, second & 0xFF] + [rest] * (length - 2))
                    out.append(full + b'z')
                    out.append(full[:-1])                     # cut before its last byte, at the end
                    out.append(full[:-1] + b'z')              # cut, then more text
    rng = random.Random(2026)
    alphabet = [0x00, 0x0A, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC,
                0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    for _ in range(2000):
        out.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
    return out


for data in vectors():
    print(f'{data.hex()}\t{expected(data).hex()}')
