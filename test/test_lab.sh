#!/usr/bin/env bash
# test_lab.sh — the kernel-optimization lab (tools/lab): every step, solutions
# built, holds to runq's reference at small shapes (1 and 3 threads); the
# student build, bodies unwritten, fails with a message naming each step (not
# a crash); bad arguments get one clear message. Then the aarch64 builds under
# qemu: plain NEON on a Cortex-A72 and NEON with sdot on a core that has it
# (skipped with ARM=0, or loudly when the cross tools are missing: test_arm.sh
# installs them). Correctness only: timing is `make lab`'s, never a test's.
# Ends with "test_lab: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_lab "$@"

if make -s build/lab/lab build/lab/lab-student >"$T/make.log" 2>&1; then ok; else fail "make lab binaries: $(tail -5 "$T/make.log")"; summary; fi

# ---- the solutions: every step against the reference
build/lab/lab --check >"$T/out" 2>&1; status=$?
sed 's/^/  /' "$T/out"
[ $status -eq 0 ] && grep -q "^lab: 6 passed, 0 failed" "$T/out" && ok || fail "lab --check (exit $status)"

# ---- the exercises as shipped: steps 0-4 unwritten, step 5 (runq's) passes
build/lab/lab-student --check >"$T/out" 2>"$T/err"; status=$?
if [ $status -eq 1 ]; then ok; else fail "lab-student --check: exit $status, expected 1: $(cat "$T/err")"; fi
for step in 0 1 2 3 4; do
    grep -q "^FAIL: step $step (.*) is not written yet.*exercises/steps.c" "$T/err" && ok ||
        fail "lab-student: no 'not written yet' message for step $step: $(cat "$T/err")"
done
grep -q "^lab: 1 passed, 5 failed" "$T/out" && ok || fail "lab-student: expected step 5 alone to pass: $(cat "$T/out")"
build/lab/lab-student --check -s 5 >/dev/null 2>&1 && ok || fail "lab-student -s 5: the steps not chosen still ran"

# ---- bad arguments
expect_error "unknown step" "-s expects steps 0-5" build/lab/lab -s 0,9
expect_error "zero threads" "-T expects a whole number from 1" build/lab/lab -T 0
expect_error "missing model" "nothing-here.bin" build/lab/lab -s 5 -n 2 "$T/nothing-here.bin"

# ---- aarch64 under qemu
have_arm() { command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null &&
             [ -f /usr/aarch64-linux-gnu/include/stdio.h ]; }
if [ "${ARM:-1}" != 1 ]; then
    echo "  (ARM=0: the aarch64 lab is not checked here)"
elif ! have_arm; then
    echo "SKIP: ======== the aarch64 lab did not run: no aarch64-linux-gnu-gcc / qemu-aarch64 (test_arm.sh installs them) ========"
else
    if make -s cross-aarch64-lab >"$T/make.log" 2>&1; then ok; else fail "make cross-aarch64-lab: $(tail -5 "$T/make.log")"; summary; fi
    # check_arm CPU BINARY SIMD: the build's SIMD step is SIMD and every step passes
    check_arm() {
        qemu-aarch64 -cpu "$1" "$2" --check >"$T/arm" 2>&1; local status=$?
        sed "s/^/  [$1 $(basename "$2")] /" "$T/arm" | grep -E "SIMD|passed|FAIL"
        [ $status -eq 0 ] && grep -q "SIMD: $3;" "$T/arm" && grep -q "^lab: 6 passed, 0 failed" "$T/arm" && ok ||
            fail "$2 --check under qemu -cpu $1 (exit $status)"
    }
    check_arm cortex-a72 build/aarch64/lab neon
    check_arm max build/aarch64/lab-dotprod neon-sdot
    # the sdot build on a core without sdot: a clear refusal, not an illegal instruction
    expect_error "sdot build on a Cortex-A72" "lacks it" qemu-aarch64 -cpu cortex-a72 build/aarch64/lab-dotprod --check
fi

summary
