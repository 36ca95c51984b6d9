# Edge LLM — each target says why it exists. CC and CFLAGS can be overridden:
#   make CC=clang        make CFLAGS="-O2 -g"

CC ?= cc
CFLAGS ?= -O3 -Wall -Wextra
# No fused multiply-add contraction: run.c's float arithmetic then matches
# llama2.c's run.c (and the golden outputs), and runq's scalar kernels the
# canonical arithmetic its SIMD kernels compute, on every CPU.
EXACT = -ffp-contract=off
# Every build writes what it included (runq.c, the headers) into a .d file
# beside it under build/, so a changed header rebuilds exactly its includers.
DEPS = -MMD -MP
LIBS = -lm -lpthread
TEST_FLAGS = -O2 -g -Wall -Wno-unused-function -Wno-format-truncation $(EXACT)
SHARED ?= ../shared
# the fuzz targets (test/fuzz/fuzz_NAME.c); make test replays their regression inputs
FUZZ_TARGETS = checkpoint tokenizer_blob tokenizer_json encode json safetensors gguf peft legacy http hf adapter export_checkpoint hf_sharded
# the C test programs (test/NAME.c), each built into build/ and, for make test-asan, build/asan/
C_TESTS = test_quant test_gptq test_pool test_bpe test_tokenizer test_model test_gguf test_lora test_train test_grammar logits speculative_stats
# the tools the tests run (tools/NAME.c)
TEST_TOOLS = ppl train tokens

.PHONY: all run test test-asan debug clean reference FORCE

# the three programs: the product, the oracle, the converter; and the HTTP server
all: runq reference export server

# the int4 runtime (libc, libm, pthreads only). make runq USE_OPENCL=1: the
# same file with its matmuls offloaded to an OpenCL device (docs/OPENCL.md);
# build/runq.flags remembers the choice, so switching it rebuilds runq
ifeq ($(USE_OPENCL),1)
OPENCL_FLAGS = -DUSE_OPENCL
OPENCL_LIBS = -lOpenCL
endif
runq: runq.c build/runq.flags | build
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -MF build/runq.d $(OPENCL_FLAGS) -o $@ runq.c $(LIBS) $(OPENCL_LIBS)
build/runq.flags: FORCE | build
	@echo '$(OPENCL_FLAGS)' | cmp -s - $@ || echo '$(OPENCL_FLAGS)' >$@
FORCE:
# the OpenCL build beside the plain one, and its test (test/test_opencl.sh
# builds both after installing pocl and the OpenCL headers when missing)
build/runq-opencl: runq.c | build
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -DUSE_OPENCL -o $@ runq.c $(LIBS) -lOpenCL
build/test_opencl: test/test_opencl.c | build
	$(CC) $(TEST_FLAGS) $(DEPS) -DUSE_OPENCL -o $@ test/test_opencl.c $(LIBS) -lOpenCL

# the fp32 reference runtime, ./run (built under build/ because `make run` is the demo)
reference: build/run
	@cp -p build/run run
build/run: run.c | build
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -o $@ run.c -lm

# the converter and quantizer (runq.c for the format, json.h, convert/*.h)
export: export.c | build
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -MF build/export.d -o $@ export.c $(LIBS)

# the HTTP server: llama.cpp's /completion and the OpenAI API over runq's
# runtime (runq.c and json.h; sockets and pthreads only)
server: server.c | build
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -MF build/server.d -o $@ server.c $(LIBS)

# debug builds: no optimisation, AddressSanitizer and UBSan, for gdb and bug hunts
debug: | build
	$(CC) -O0 -g -fsanitize=address,undefined -Wall -Wextra $(EXACT) -o build/runq-debug runq.c $(LIBS)
	$(CC) -O0 -g -fsanitize=address,undefined -Wall -Wextra $(EXACT) -o build/run-debug run.c -lm
	$(CC) -O0 -g -fsanitize=address,undefined -Wall -Wextra $(EXACT) -o build/export-debug export.c $(LIBS)

# the demo: the project's default model, models/tinystories-edge (distilled
# from stories260K with tools/train.c; docs/TRAINING.md), telling a story.
# It answers in its chat template too: ./runq $(DEFAULT_MODEL) -m chat
DEFAULT_MODEL = models/tinystories-edge.q4.bin
run: all
	./runq $(DEFAULT_MODEL) -i "Once upon a time" -n 256 -t 0.8 -s 42

# every test; .ci/run calls exactly this
test: all $(C_TESTS:%=build/%) $(TEST_TOOLS:%=build/%) $(FUZZ_TARGETS:%=build/replay_%)
	@SHARED=$(SHARED) test/run_tests.sh

# A C test is one file that includes what it tests (runq.c, export.c, a
# tool); those comparing with run.c link it through build/oracle.o.
build/%: test/%.c | build
	$(CC) $(TEST_FLAGS) $(DEPS) -o $@ $< $(filter %.o,$^) $(LIBS)
build/oracle.o: test/oracle.c | build
	$(CC) $(TEST_FLAGS) $(DEPS) -c -o $@ $<
ORACLE_USERS = test_model test_train logits ppl
$(ORACLE_USERS:%=build/%): build/oracle.o

# the whole suite again under AddressSanitizer, UndefinedBehaviorSanitizer and
# LeakSanitizer, every program and test rebuilt so (the qemu suite aside: it
# tests the cross build, not memory); .ci/run runs it after `make test`
SANITIZE = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined $(EXACT) \
	-Wno-unused-function -Wno-format-truncation
ASAN = build/asan
test-asan: $(ASAN)/runq $(ASAN)/run $(ASAN)/export $(ASAN)/server $(C_TESTS:%=$(ASAN)/%) $(TEST_TOOLS:%=$(ASAN)/%) \
		$(FUZZ_TARGETS:%=$(ASAN)/replay_%)
	@BIN=$(ASAN) BUILD=$(ASAN) ARM=0 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 SHARED=$(SHARED) \
		test/run_tests.sh
# the same sources as the plain builds, under the sanitizers
$(ASAN)/%: %.c | $(ASAN)
	$(CC) $(SANITIZE) $(DEPS) -o $@ $< $(LIBS)
$(ASAN)/%: test/%.c | $(ASAN)
	$(CC) $(SANITIZE) $(DEPS) -o $@ $< $(filter %.o,$^) $(LIBS)
$(ASAN)/%: tools/%.c | $(ASAN)
	$(CC) $(SANITIZE) $(DEPS) -o $@ $< $(filter %.o,$^) $(LIBS)
$(ASAN)/oracle.o: test/oracle.c | $(ASAN)
	$(CC) $(SANITIZE) $(DEPS) -c -o $@ $<
$(ORACLE_USERS:%=$(ASAN)/%): $(ASAN)/oracle.o
$(ASAN):
	mkdir -p $(ASAN)

# fuzzing (test/fuzz/, docs/TESTING.md): a libFuzzer target per parser of
# untrusted input, under AddressSanitizer and UBSan (any UB aborts). Needs
# clang and its fuzzer runtime: installed with apt-get when missing (root only).
#   make fuzz FUZZ_SECONDS=600    each target in turn, N seconds each (default 60)
#   make fuzz-build               just the targets, in build/fuzz/
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-Wall -Wextra -Wno-unused-function $(EXACT)
.PHONY: fuzz fuzz-build fuzz-tools
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) test/fuzz/run.sh $(FUZZ_TARGETS)
fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
build/fuzz/fuzz_%: test/fuzz/fuzz_%.c | fuzz-tools build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $(DEPS) -o $@ $< $(LIBS)
fuzz-tools:
	@test/fuzz/tools.sh $(FUZZ_CC)
build/fuzz:
	mkdir -p build/fuzz
# the regression inputs and seed corpora replayed by make test
# (test/test_fuzz_regressions.sh): the same targets under a plain main, test/fuzz/replay.c
build/replay_%: test/fuzz/fuzz_%.c test/fuzz/replay.c | build
	$(CC) $(TEST_FLAGS) $(DEPS) -o $@ $< test/fuzz/replay.c $(LIBS)
$(ASAN)/replay_%: test/fuzz/fuzz_%.c test/fuzz/replay.c | $(ASAN)
	$(CC) $(SANITIZE) $(DEPS) -o $@ $< test/fuzz/replay.c $(LIBS)

# aarch64 (Raspberry Pi 4/5, RK3588) cross builds, which test/test_arm.sh runs
# under qemu-aarch64: static, so qemu needs no ARM libraries; one binary picks
# the neon or neon-dotprod kernels at run time.
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_FLAGS = -O3 $(EXACT) -static
.PHONY: cross-aarch64
cross-aarch64: build/aarch64/runq build/aarch64/test_quant build/aarch64/test_pool
build/aarch64/runq: runq.c | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) $(DEPS) -Wall -Wextra -o $@ runq.c $(LIBS)
build/aarch64/%: test/%.c | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) $(DEPS) -Wall -Wno-unused-function -Wno-format-truncation -o $@ $< $(LIBS)
build/aarch64:
	mkdir -p build/aarch64

# 32-bit ARM (armhf: Raspberry Pi OS 32-bit, Cortex-A7/A53/A72 in AArch32):
# runq with its scalar kernels (no AArch32 NEON kernels yet: docs/PORTING.md);
# static, run under qemu-arm by test/test_arm.sh. Installs the cross compiler
# with apt-get when missing (root only).
ARMV7_CC ?= arm-linux-gnueabihf-gcc
.PHONY: cross-armv7 armv7-tools
cross-armv7: build/armv7/runq
build/armv7/runq: runq.c | armv7-tools build/armv7
	$(ARMV7_CC) -O3 $(EXACT) -static $(DEPS) -Wall -Wextra -o $@ runq.c $(LIBS)
armv7-tools:
	@command -v $(ARMV7_CC) >/dev/null && [ -f /usr/arm-linux-gnueabihf/include/stdio.h ] || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo "cross-armv7: installing gcc-arm-linux-gnueabihf libc6-dev-armhf-cross with apt-get" && \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	      gcc-arm-linux-gnueabihf libc6-dev-armhf-cross; } >/dev/null 2>&1; } || \
	{ echo "cross-armv7: no $(ARMV7_CC); install as root: apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" >&2; exit 1; }
build/armv7:
	mkdir -p build/armv7

# the kernel-optimization lab (tools/lab, docs/LAB.md): the int4 x int8 matmul
# in numbered steps, each checked against runq's reference, then timed alone
# and inside runq's decoding of a random TinyLlama-1.1B (exported once, ~0.6 GB,
# cached in build/lab). Prints a markdown table and writes build/lab.svg.
#   make lab                      the solutions (tools/lab/steps.c)
#   make lab-student              the exercises (tools/lab/exercises/steps.c): fails
#                                 until their bodies are written; LAB_STEPS=0,1 picks steps
# Built like runq (-O3, no FMA contraction), for the machine it measures.
LAB_MODEL = build/lab/tinyllama-random.q4.bin
LAB_STEPS ?= 0,1,2,3,4,5
.PHONY: lab lab-student cross-aarch64-lab
lab: build/lab/lab $(LAB_MODEL)
	build/lab/lab -s $(LAB_STEPS) --svg build/lab.svg $(LAB_MODEL)
lab-student: build/lab/lab-student $(LAB_MODEL)
	build/lab/lab-student -s $(LAB_STEPS) $(LAB_MODEL)
build/lab/lab: tools/lab/lab.c | build/lab
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -o $@ tools/lab/lab.c $(LIBS)
build/lab/lab-student: tools/lab/lab.c | build/lab
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -DLAB_STUDENT -o $@ tools/lab/lab.c $(LIBS)
$(LAB_MODEL): export | build/lab   # made again by a new export (the format may have changed)
	./export -q --random tinyllama-1.1b $@
build/lab:
	mkdir -p build/lab
# the lab for aarch64 boards (test/test_lab.sh checks both under qemu): plain
# NEON (Cortex-A72: Raspberry Pi 4) and NEON with sdot (Cortex-A76: Pi 5, RK3588)
cross-aarch64-lab: build/aarch64/lab build/aarch64/lab-dotprod
build/aarch64/lab: tools/lab/lab.c | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) $(DEPS) -Wall -Wextra -o $@ tools/lab/lab.c $(LIBS)
build/aarch64/lab-dotprod: tools/lab/lab.c | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) $(DEPS) -march=armv8.2-a+dotprod -Wall -Wextra -o $@ tools/lab/lab.c $(LIBS)

# benchmark helpers (tools/bench and tools/bench-vs-llamacpp also build them on demand)
build/bandwidth: tools/bandwidth.c | build
	$(CC) -O3 -Wall -Wextra $(DEPS) -o $@ tools/bandwidth.c -lpthread
build/tokens: tools/tokens.c | build
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -o $@ tools/tokens.c $(LIBS)

# the trainer (tools/train.c: runq.c and export's convert/ headers). A tool
# built for the machine it runs on: -march=native lets its vector loops use the
# whole vector unit; training needs no bit-exactness across machines.
.PHONY: train
train: build/train
build/train: tools/train.c | build
	$(CC) -O3 -march=native -Wall -Wextra $(DEPS) -o $@ tools/train.c $(LIBS)

# quality: perplexity, and KL divergence against the fp32 model (tools/ppl.c
# includes runq.c and links run.c through build/oracle.o)
.PHONY: ppl
ppl: build/ppl
build/ppl: tools/ppl.c | build
	$(CC) $(CFLAGS) $(EXACT) $(DEPS) -o $@ tools/ppl.c $(filter %.o,$^) $(LIBS)

build:
	mkdir -p build

clean:
	rm -rf build run runq export server

# the headers and included .c files each build read (written by -MMD)
-include $(wildcard build/*.d build/*/*.d)
