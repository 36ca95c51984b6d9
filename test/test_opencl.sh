#!/usr/bin/env bash
# test_opencl.sh — runq's OpenCL backend (make runq USE_OPENCL=1) on pocl's
# CPU device: build/test_opencl holds the kernel and whole models to the CPU
# path bit for bit; here the OpenCL runq must print the CPU's greedy text byte
# for byte, say which backend it uses, and meet a missing driver or a wrong
# device with one clear message (a fallback to the CPU, or an error exit when
# OpenCL was demanded), never a crash. Installs pocl-opencl-icd,
# ocl-icd-opencl-dev and opencl-headers when missing (root and apt only);
# skips loudly when they cannot be had. Ends with "test_opencl: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_opencl "$@"

have_opencl() { [ -f /usr/include/CL/cl.h ] && compgen -G "/etc/OpenCL/vendors/*.icd" >/dev/null &&
                { compgen -G "/usr/lib/*/libOpenCL.so" || compgen -G "/usr/lib*/libOpenCL.so"; } >/dev/null; }
if ! have_opencl; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test_opencl: installing pocl-opencl-icd ocl-icd-opencl-dev opencl-headers with apt-get"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
              pocl-opencl-icd ocl-icd-opencl-dev opencl-headers; } >"$T/apt.log" 2>&1 || tail -5 "$T/apt.log"
    fi
    if ! have_opencl; then
        echo "SKIP: ======== OpenCL tests did not run: no OpenCL headers, libOpenCL or driver (install as root:"
        echo "SKIP: apt-get install --no-install-recommends pocl-opencl-icd ocl-icd-opencl-dev opencl-headers) ========"
        summary
    fi
fi
if make -s build/runq-opencl build/test_opencl runq export >"$T/make.log" 2>&1; then ok; else fail "make: $(tail -5 "$T/make.log")"; summary; fi
OCL=build/runq-opencl
make -n runq USE_OPENCL=1 | grep -q -- "-DUSE_OPENCL .*-lOpenCL" && ok || fail "make -n runq USE_OPENCL=1 does not build with OpenCL"

# a random model with grouped-query attention, FFN padding (424 -> 448) and a
# 32000-token classifier; stories260K when ../shared has it
./export -q --random "dim=128,ffn=424,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=80" --group-size 64 \
    -z tokenizer.bin "$T/r.q4.bin" || fail "export --random"
models=("$T/r.q4.bin")
# the backend multiplies Q4 only: a model mixing in int8, int3 and int2 runs those on the CPU kernels
./export -q --random "dim=128,ffn=424,layers=2,heads=4,kv_heads=2,vocab=32000,seq_len=80" --group-size 64 \
    --tensor-type wk=q8,wv=q3,w2=q2,layers.1.w1=q8/128 -z tokenizer.bin "$T/r.mixed.bin" && models+=("$T/r.mixed.bin") \
    || fail "export --random --tensor-type"
if [ -f "$M/stories260K.bin" ]; then
    ./export -q --int4 -z "$M/tok512.bin" "$M/stories260K.bin" "$T/s.q4.bin" && models+=("$T/s.q4.bin") || fail "export stories260K"
else
    echo "SKIP: $M/stories260K.bin is absent: the OpenCL runq is compared on the random model only (LOUDLY)"
fi

# ---- the kernel and whole models against the CPU path (build/test_opencl)
build/test_opencl "${models[@]}" >"$T/unit" 2>"$T/unit.err"; status=$?
grep -E "^  " "$T/unit"
if [ $status -eq 0 ] && grep -Eq "^test_opencl: [0-9]+ passed, 0 failed" "$T/unit"; then ok
else fail "build/test_opencl (exit $status): $(tail -1 "$T/unit")"; grep FAIL "$T/unit.err" | head -5 >&2; fi

# ---- greedy text: OpenCL runq = CPU runq byte for byte, decode and a prompt prefilled in two batches
model=${models[-1]}
prompt="Once upon a time there was a little girl named Lily. She loved to play outside in the park with her friends.
One day she saw a big red ball and a small dog. The dog was sad because it could not find its home and mom."
for threads in 1 2; do
    ./runq "$model" -t 0 -n 200 -T $threads -i "$prompt" >"$T/cpu" 2>/dev/null
    $OCL "$model" -t 0 -n 200 -T $threads -i "$prompt" >"$T/ocl" 2>"$T/ocl.err"
    same "greedy text, opencl vs CPU, -T $threads" "$T/cpu" "$T/ocl"
done
prompt_tokens=$(sed -n 's/.*prompt_tokens=\([0-9]*\).*/\1/p' "$T/ocl.err")
[ "${prompt_tokens:-0}" -gt 64 ] && ok || fail "the prompt should fill more than one batch of 64, has ${prompt_tokens:-?} tokens"
grep -q "^runq: matmuls on opencl: " "$T/ocl.err" && ok || fail "runq does not say it runs on opencl: $(cat "$T/ocl.err")"

# ---- the CPU on demand, and without a driver: the CPU's text, one line saying so
RUNQ_BACKEND=cpu $OCL "$model" -t 0 -n 200 -T 2 -i "$prompt" >"$T/forced" 2>"$T/forced.err"
same "RUNQ_BACKEND=cpu in the OpenCL build" "$T/cpu" "$T/forced"
grep -q "matmuls on" "$T/forced.err" && fail "RUNQ_BACKEND=cpu still offloads: $(cat "$T/forced.err")" || ok
mkdir "$T/no-vendors"   # ocl-icd finds its drivers' .icd files here instead of /etc/OpenCL/vendors
OCL_ICD_VENDORS="$T/no-vendors" $OCL "$model" -t 0 -n 200 -T 2 -i "$prompt" >"$T/none" 2>"$T/none.err"; status=$?
[ $status -eq 0 ] && ok || fail "no OpenCL driver: exit $status, expected a fallback to the CPU: $(cat "$T/none.err")"
same "no OpenCL driver: the CPU's text" "$T/cpu" "$T/none"
grep -q "^runq: opencl: no OpenCL platform or device; using the CPU$" "$T/none.err" && ok \
    || fail "no OpenCL driver: no fallback message: $(cat "$T/none.err")"
echo "/nonexistent/libpocl.so" >"$T/no-vendors/broken.icd"   # a driver whose library is gone
OCL_ICD_VENDORS="$T/no-vendors" $OCL "$model" -t 0 -n 20 -T 1 >/dev/null 2>"$T/broken.err" \
    && grep -q "using the CPU" "$T/broken.err" && ok || fail "a broken driver: $(cat "$T/broken.err")"

# ---- clear errors: OpenCL demanded but absent, a device that does not exist, an unknown backend
OCL_ICD_VENDORS="$T/no-vendors" RUNQ_BACKEND=opencl expect_error "RUNQ_BACKEND=opencl without a driver" \
    "RUNQ_BACKEND=opencl cannot run: no OpenCL platform or device" $OCL "$model" -n 20
RUNQ_OPENCL_DEVICE=7 expect_error "RUNQ_OPENCL_DEVICE=7 on a machine with one device" \
    "RUNQ_OPENCL_DEVICE=7 is not a device index; this machine has 1 device\(s\): 0: " $OCL "$model" -n 20
RUNQ_OPENCL_DEVICE=gpu expect_error "RUNQ_OPENCL_DEVICE=gpu" "RUNQ_OPENCL_DEVICE=gpu is not a device index" $OCL "$model" -n 20
RUNQ_OPENCL_DEVICE=0 $OCL "$model" -t 0 -n 200 -T 2 -i "$prompt" >"$T/dev0" 2>/dev/null
same "RUNQ_OPENCL_DEVICE=0" "$T/cpu" "$T/dev0"
RUNQ_BACKEND=npu expect_error "RUNQ_BACKEND=npu" "RUNQ_BACKEND=npu is not available; this build runs: cpu opencl" $OCL "$model" -n 20
RUNQ_BACKEND=opencl expect_error "RUNQ_BACKEND=opencl in the plain build" \
    "RUNQ_BACKEND=opencl is not available; this build runs: cpu$" ./runq "$model" -n 20

summary
