#!/usr/bin/env bash
# test_arm.sh — the aarch64 build under qemu user-mode emulation. On a core
# without the dot-product extension (cortex-a72, Raspberry Pi 4: the `neon`
# kernels) and on one with every extension (max: `neon-dotprod` and
# `neon-i8mm`, smmla): test_quant holds every kernel set to the scalar
# reference bit for bit, runq picks the set the CPU supports (cortex-a76:
# sdot without i8mm, Raspberry Pi 5), and its greedy text is byte for byte x86's (the canonical
# arithmetic makes every CPU give the same tokens). Then the 32-bit ARM build
# (make cross-armv7, scalar kernels) under qemu-arm, the same way. Installs the
# cross compilers and qemu when missing (root and apt only). Ends with "test_arm: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_arm "$@"
CPUS="cortex-a72 max"   # Armv8.0 NEON only (Pi 4) / everything qemu has, dotprod and i8mm included
declare -A SETS=([cortex-a72]="scalar neon" [cortex-a76]="scalar neon neon-dotprod" [max]="scalar neon neon-dotprod neon-i8mm")

# ---- tools: gcc-aarch64-linux-gnu (+ the ARM libc headers it only recommends) and qemu-user
have_tools() { command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null &&
               [ -f /usr/aarch64-linux-gnu/include/stdio.h ]; }
if ! have_tools; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test_arm: installing gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user with apt-get"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
              gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; } >"$T/apt.log" 2>&1 || tail -5 "$T/apt.log"
    fi
    if ! have_tools; then
        echo "SKIP: ======== aarch64 tests did not run: no aarch64-linux-gnu-gcc / qemu-aarch64 (install as root:"
        echo "SKIP: apt-get install --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) ========"
        summary
    fi
fi
if make -s cross-aarch64 runq export >"$T/make.log" 2>&1; then ok; else fail "make cross-aarch64: $(tail -5 "$T/make.log")"; summary; fi

# does this qemu run smmla on -cpu max (qemu 6.1 and later do)? If not, the i8mm set goes untested: say so
cat >"$T/smmla.c" <<'EOF2'
#include <signal.h>
#include <unistd.h>
static void illegal(int signal_number) { (void)signal_number; _exit(3); }
int main(void) { signal(SIGILL, illegal); __asm__ volatile(".arch armv8.6-a\n smmla v0.4s, v1.16b, v2.16b" ::: "v0"); return 0; }
EOF2
aarch64-linux-gnu-gcc -static -o "$T/smmla" "$T/smmla.c" && ok || fail "cannot build the smmla probe"
if ! qemu-aarch64 -cpu max "$T/smmla"; then
    echo "SKIP: ======== qemu-aarch64 $(qemu-aarch64 --version | head -1 | awk '{print $3}') -cpu max has no i8mm (smmla): the neon-i8mm kernels are not tested ========"
    SETS[max]="scalar neon neon-dotprod"
fi

# a random model whose widths take every path: 4 blocks (dim 128, group 64), 8 + 4 + 2 blocks (FFN 424
# padded to 448), 1024 rows of 8-row tiles; a 9-token prompt; three threads split the tiles
./export -q --random "dim=128,ffn=424,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=48" --group-size 64 \
    -z tokenizer.bin "$T/r.q4.bin" || fail "export --random"

# ---- every kernel set against the scalar reference, on each CPU, and the set runq picks there
for cpu in $CPUS; do
    qemu-aarch64 -cpu "$cpu" build/aarch64/test_quant >"$T/tq" 2>&1; status=$?
    sed "s/^/  [$cpu] /" "$T/tq" | grep -E "kernels|passed|FAIL|SKIP"
    if [ $status -eq 0 ] && grep -Eq "^test_quant: [0-9]+ passed, 0 failed" "$T/tq"; then ok; else fail "test_quant under qemu -cpu $cpu (exit $status)"; fi
    # the thread pool's wake-ups under a weaker memory model than x86's (a lost one hangs: the watchdog fails it)
    qemu-aarch64 -cpu "$cpu" build/aarch64/test_pool 4000 >"$T/tp" 2>&1; status=$?
    if [ $status -eq 0 ] && grep -Eq "^test_pool: [0-9]+ passed, 0 failed" "$T/tp"; then ok; else fail "test_pool under qemu -cpu $cpu: $(tail -2 "$T/tp")"; fi
    compared=$(sed -n 's/^  kernels \(.*\) vs scalar: bit-identical on every case$/\1/p' "$T/tq" | tr '\n' ' ')
    [ "scalar $compared" = "${SETS[$cpu]} " ] && ok || fail "-cpu $cpu: test_quant proved [$compared], expected [${SETS[$cpu]#scalar }]"
    # an unknown RUNQ_KERNELS makes runq list the sets this CPU runs; with none forced it takes the last
    RUNQ_KERNELS=list qemu-aarch64 -cpu "$cpu" build/aarch64/runq "$T/r.q4.bin" -n 1 2>"$T/err" >/dev/null
    runs=$(sed -n 's/.*this build and CPU run: //p' "$T/err")
    echo "  [$cpu] runq can run: $runs (default: ${runs##* })"
    [ "$runs" = "${SETS[$cpu]}" ] && ok || fail "-cpu $cpu: runq runs [$runs], expected [${SETS[$cpu]}]: $(cat "$T/err")"
done
# a Cortex-A76 (Raspberry Pi 5, RK3588) has sdot but not i8mm: runq must not pick neon-i8mm there
RUNQ_KERNELS=list qemu-aarch64 -cpu cortex-a76 build/aarch64/runq "$T/r.q4.bin" -n 1 2>"$T/err" >/dev/null
runs=$(sed -n 's/.*this build and CPU run: //p' "$T/err")
echo "  [cortex-a76] runq can run: $runs (default: ${runs##* })"
[ "$runs" = "${SETS[cortex-a76]}" ] && ok || fail "-cpu cortex-a76: runq runs [$runs], expected [${SETS[cortex-a76]}]: $(cat "$T/err")"

# ---- greedy generation: x86 (its fastest kernels) = aarch64 on both CPUs, default kernels and scalar
# generate NAME MODEL ARGS...: x86's text, then each CPU's, all byte-identical
generate() {
    local name=$1; shift
    ./runq "$@" >"$T/x86" 2>/dev/null && [ -s "$T/x86" ] && ok || fail "$name: x86 runq gave no text"
    for cpu in $CPUS; do
        for kernels in default scalar; do
            if [ $kernels = default ]; then qemu-aarch64 -cpu "$cpu" build/aarch64/runq "$@" >"$T/arm" 2>"$T/err"
            else RUNQ_KERNELS=$kernels qemu-aarch64 -cpu "$cpu" build/aarch64/runq "$@" >"$T/arm" 2>"$T/err"; fi
            same "$name: aarch64 -cpu $cpu ($kernels kernels) vs x86" "$T/x86" "$T/arm"
        done
    done
}
if [ -f "$M/stories260K.bin" ]; then
    ./export -q --int4 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.q4.bin" || fail "export stories260K"
    generate "stories260K" "$T/s.q4.bin" -t 0 -n 200 -i "The cat"
    echo "  stories260K -t 0 -n 200 -i \"The cat\": $(head -c 60 "$T/x86" | tr '\n' ' ')..."
else
    echo "SKIP: ======== $M/stories260K.bin is absent: no real-model generation on aarch64 ========"
fi
generate "random model" "$T/r.q4.bin" -t 0 -n 40 -T 3 -i "Once upon a time there was a little"
# every weight type in one model: int8, int3, int2 and 2:4 sparse int4 beside int4, groups 32 to 128
./export -q --random "dim=128,ffn=424,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=48" --group-size 64 \
    --tensor-type wq=q8,wk=q3/32,wv=q2,wo=q4s/32,w1=q3/128,w2=q8,w3=q2/32,layers.1.w1=q4s/128,tok_embeddings=q3 \
    -z tokenizer.bin "$T/r.mixed.bin" || fail "export --random --tensor-type"
generate "random model, int8/int4/int3/int2/q4s" "$T/r.mixed.bin" -t 0 -n 40 -T 3 -i "Once upon a time there was a little"
# int2 everywhere, the classifier too: every product on the NEON table lookups (repacked at load), x86's text
./export -q --random "dim=128,ffn=424,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=48" --bits 2 -z tokenizer.bin "$T/r.q2.bin" \
    || fail "export --random --bits 2"
generate "random model, int2 (table lookups)" "$T/r.q2.bin" -t 0 -n 40 -T 3 -i "Once upon a time there was a little"
grep -q "repacked for table lookups" "$T/err" && ok || fail "aarch64 runq did not repack the int2 model for table lookups: $(head -2 "$T/err")"

# ---- 32-bit ARM (make cross-armv7: scalar kernels) under qemu-arm: x86's text, byte for byte;
# a checkpoint too big for a 32-bit off_t is refused with a message
if make -s cross-armv7 >"$T/make7.log" 2>&1 && command -v qemu-arm >/dev/null; then
    ok
    # armv7 NAME MODEL ARGS...: the same text as x86's
    armv7() {
        local name=$1; shift
        ./runq "$@" >"$T/x86" 2>/dev/null
        qemu-arm build/armv7/runq "$@" >"$T/arm7" 2>"$T/err"
        [ -s "$T/arm7" ] && same "$name: armv7 vs x86" "$T/x86" "$T/arm7" || fail "$name: armv7 runq gave no text: $(cat "$T/err")"
    }
    armv7 "random model" "$T/r.q4.bin" -t 0 -n 40 -T 3 -i "Once upon a time there was a little"
    [ -f "$T/s.q4.bin" ] && armv7 "stories260K" "$T/s.q4.bin" -t 0 -n 200 -i "The cat"
    cp "$T/r.q4.bin" "$T/big.q4.bin" && truncate -s 3G "$T/big.q4.bin"
    expect_error "armv7: a 3 GB checkpoint" "cannot stat .*too large" qemu-arm build/armv7/runq "$T/big.q4.bin" -n 2
else
    echo "SKIP: ======== armv7 tests did not run: make cross-armv7 failed or no qemu-arm: $(tail -2 "$T/make7.log") ========"
fi

summary
