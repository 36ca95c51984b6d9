#!/usr/bin/env python3
"""mca.py — tools/arm-proxy's arithmetic: from block profiles (tb_profile.c)
of two runs of one program that differ by N tokens, the instructions per
token (exact: the difference of the counts) and an estimate of the cycles per
token and per int4 block on a modelled core (each hot block's instructions
through llvm-mca, times how many more times it ran). Not a simulator: see
docs/SPEED.md ("ARM: a proxy without a board") for what this can and cannot
predict.

    mca.py --base A.prof --more B.prof --tokens N --blocks BLOCKS \
           --kernels REGEX --mcpu cortex-a76 [--mcpu neoverse-n1 ...]

prints one JSON object: instructions per token (all, and in the functions
matching REGEX: the int4 matmul kernels), cycles per token and cycles per
block (BLOCKS int4 blocks of 32 weights x one token were computed by those
kernels over the N tokens) for each -mcpu.
"""
import argparse, json, re, subprocess, sys
from collections import defaultdict

LLVM_MC, LLVM_MCA = "llvm-mc-19", "llvm-mca-19"
# every extension the profiled programs may use; the cycle model comes from -mcpu alone
FEATURES = "+v8.6a,+dotprod,+i8mm,+fullfp16,+lse,+rcpc,+crc,+bf16"
COVER = 0.995   # blocks covering this share of the extra instructions go through llvm-mca


def read_profile(path):
    blocks = {}
    with open(path) as f:
        for line in f:
            vaddr, n_insns, runs, symbol, code = line.split()
            blocks[(vaddr, int(n_insns))] = (symbol, int(runs), code)
    return blocks


def disassemble(code):
    """A block's bytes -> its instructions as llvm-mc prints them (branches keep pc-relative offsets)."""
    data = " ".join("0x" + code[i:i + 2] for i in range(0, len(code), 2))
    out = subprocess.run([LLVM_MC, "--disassemble", "-triple=aarch64", "-mattr=" + FEATURES],
                         input=data, capture_output=True, text=True).stdout
    return [l.strip() for l in out.splitlines() if l.strip() and not l.strip().startswith(".")]


def disassemble_all(codes):
    """Many blocks in one llvm-mc run (every AArch64 instruction is 4 bytes); block by block if any
    encoding is refused, so that the lines still match their blocks."""
    lines = disassemble("".join(codes))
    if len(lines) * 8 != sum(len(c) for c in codes): return [disassemble(c) for c in codes]
    bodies, at = [], 0
    for c in codes:
        bodies.append(lines[at:at + len(c) // 8])
        at += len(c) // 8
    return bodies


def cycles_per_run(bodies, mcpu):
    """llvm-mca's steady state of each block looped on itself: total cycles / iterations, per region."""
    source = []
    for i, body in enumerate(bodies):
        source += ["# LLVM-MCA-BEGIN b%d" % i] + body + ["# LLVM-MCA-END"]
    out = subprocess.run([LLVM_MCA, "-mtriple=aarch64", "-mcpu=" + mcpu, "-mattr=" + FEATURES, "-iterations=100",
                          "-summary-view", "-resource-pressure=0", "-instruction-info=0"],
                         input="\n".join(source) + "\n", capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("llvm-mca -mcpu=%s failed: %s" % (mcpu, out.stderr[-500:]))
    cycles = {}
    region = None
    for line in out.stdout.splitlines():
        m = re.match(r"\[\d+\] Code Region - b(\d+)", line)
        if m: region = int(m.group(1))
        m = re.match(r"Iterations:\s+(\d+)", line)
        if m: iterations = int(m.group(1))
        m = re.match(r"Total Cycles:\s+(\d+)", line)
        if m and region is not None: cycles[region] = int(m.group(1)) / iterations
    return [cycles[i] for i in range(len(bodies))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--more", required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--blocks", type=float, required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--mcpu", action="append", default=[])
    a = ap.parse_args()
    base, more = read_profile(a.base), read_profile(a.more)
    kernel = re.compile(a.kernels)
    extra = {}   # block -> (symbol, extra runs, code)
    for key in set(base) | set(more):
        symbol, runs, code = more.get(key, base.get(key))
        runs = more.get(key, (0, 0))[1] - base.get(key, (0, 0))[1]
        if runs: extra[key] = (symbol, runs, code)
    insns = sum(runs * key[1] for key, (_, runs, _) in extra.items())
    kernel_insns = sum(runs * key[1] for key, (s, runs, _) in extra.items() if kernel.search(s))
    by_symbol = defaultdict(int)
    for key, (s, runs, _) in extra.items(): by_symbol[s] += runs * key[1]
    # the hot blocks, most extra instructions first, until COVER of them
    hot, covered = [], 0
    for key, (s, runs, code) in sorted(extra.items(), key=lambda kv: -abs(kv[1][1] * kv[0][1])):
        if covered >= COVER * abs(insns) and hot: break
        hot.append((key, s, runs, code))
        covered += abs(runs * key[1])
    bodies = disassemble_all([code for _, _, _, code in hot])
    result = {"tokens": a.tokens, "insns_per_token": insns / a.tokens, "kernel_insns_per_token": kernel_insns / a.tokens,
              "blocks_per_token": a.blocks / a.tokens, "mca_covered": covered / insns if insns else 0,
              "top_functions": [[s, n / a.tokens] for s, n in sorted(by_symbol.items(), key=lambda kv: -kv[1])[:8]],
              "cycles": {}}
    for mcpu in a.mcpu:
        per_run = cycles_per_run(bodies, mcpu)
        total = sum(c * runs for c, (_, _, runs, _) in zip(per_run, hot))
        kernels = sum(c * runs for c, (_, s, runs, _) in zip(per_run, hot) if kernel.search(s))
        # the uncovered remainder (< 0.5 %) at the covered blocks' cycles per instruction
        total *= insns / covered if covered else 1
        result["cycles"][mcpu] = {"per_token": total / a.tokens, "kernel_per_block": kernels / a.blocks if a.blocks else 0}
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
