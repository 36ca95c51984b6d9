# Edge LLM — each target says why it exists. CC and CFLAGS can be overridden:
#   make CC=clang        make CFLAGS="-O2 -g"

CC ?= cc
CFLAGS ?= -O3 -Wall -Wextra
# No fused multiply-add contraction: run.c's float arithmetic then matches
# llama2.c's run.c (and the golden outputs), and runq's scalar kernels the
# canonical arithmetic its SIMD kernels compute, on every CPU.
EXACT = -ffp-contract=off
TEST_FLAGS = -O2 -g -Wall -Wno-unused-function -Wno-format-truncation $(EXACT)
SHARED ?= ../shared
# the fuzz targets (test/fuzz/fuzz_NAME.c); make test replays their regression inputs
FUZZ_TARGETS = checkpoint tokenizer_blob tokenizer_json encode json safetensors gguf peft legacy http hf adapter export_checkpoint hf_sharded
REPLAYS = $(FUZZ_TARGETS:%=build/replay_%)

.PHONY: all run test test-asan debug clean reference

# the three programs: the product, the oracle, the converter; and the HTTP server
all: runq reference export server

# the int4 runtime (libc, libm, pthreads only). make runq USE_OPENCL=1: the
# same file with its matmuls offloaded to an OpenCL device (README "OpenCL");
# build/runq.flags remembers the choice, so switching it rebuilds runq
ifeq ($(USE_OPENCL),1)
OPENCL_FLAGS = -DUSE_OPENCL
OPENCL_LIBS = -lOpenCL
endif
runq: runq.c build/runq.flags
	$(CC) $(CFLAGS) $(EXACT) $(OPENCL_FLAGS) -o $@ runq.c -lm -lpthread $(OPENCL_LIBS)
build/runq.flags: FORCE | build
	@echo '$(OPENCL_FLAGS)' | cmp -s - $@ || echo '$(OPENCL_FLAGS)' >$@
.PHONY: FORCE
FORCE:
# the OpenCL build beside the plain one, and its test (test/test_opencl.sh
# builds both after installing pocl and the OpenCL headers when missing)
build/runq-opencl: runq.c | build
	$(CC) $(CFLAGS) $(EXACT) -DUSE_OPENCL -o $@ runq.c -lm -lpthread -lOpenCL
build/test_opencl: test/test_opencl.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -DUSE_OPENCL -o $@ test/test_opencl.c -lm -lpthread -lOpenCL

# the fp32 reference runtime, ./run (built under build/ because `make run` is the demo)
reference: build/run
	@cp -p build/run run
build/run: run.c | build
	$(CC) $(CFLAGS) $(EXACT) -o $@ run.c -lm

# the converter and quantizer (includes runq.c for the format)
export: export.c runq.c
	$(CC) $(CFLAGS) $(EXACT) -o $@ export.c -lm -lpthread

# the HTTP server: llama.cpp's /completion and the OpenAI API over runq's runtime
# (includes export.c for the JSON parser, and runq.c; sockets and pthreads only)
server: server.c export.c runq.c
	$(CC) $(CFLAGS) $(EXACT) -o $@ server.c -lm -lpthread

# debug builds: no optimisation, AddressSanitizer and UBSan, for gdb and bug hunts
debug: | build
	$(CC) -O0 -g -fsanitize=address,undefined -Wall -Wextra $(EXACT) -o build/runq-debug runq.c -lm -lpthread
	$(CC) -O0 -g -fsanitize=address,undefined -Wall -Wextra $(EXACT) -o build/run-debug run.c -lm
	$(CC) -O0 -g -fsanitize=address,undefined -Wall -Wextra $(EXACT) -o build/export-debug export.c -lm -lpthread

# the demo: the project's default model, models/tinystories-edge (distilled
# from stories260K with tools/train.c; README "Training"), telling a story
DEFAULT_MODEL = models/tinystories-edge.q4.bin
run: all
	./runq $(DEFAULT_MODEL) -i "Once upon a time" -n 256 -t 0.8 -s 42

# every test; .ci/run calls exactly this
test: all build/test_quant build/test_tokenizer build/test_model build/test_pool build/test_gguf build/ppl build/test_lora build/train build/test_train build/test_bpe $(REPLAYS) build/logits
	@SHARED=$(SHARED) test/run_tests.sh

build/test_quant: test/test_quant.c export.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_quant.c -lm -lpthread
build/test_tokenizer: test/test_tokenizer.c export.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_tokenizer.c -lm -lpthread
build/test_pool: test/test_pool.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_pool.c -lm -lpthread
build/test_gguf: test/test_gguf.c export.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_gguf.c -lm -lpthread
build/test_bpe: test/test_bpe.c tools/bpe.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_bpe.c -lm -lpthread
build/test_lora: test/test_lora.c export.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_lora.c -lm -lpthread
build/oracle.o: test/oracle.c test/oracle.h run.c | build
	$(CC) $(TEST_FLAGS) -c -o $@ test/oracle.c
build/test_model: test/test_model.c build/oracle.o export.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_model.c build/oracle.o -lm -lpthread
# logits after each token of a list, from run.c or runq (test/test_families.sh)
build/logits: test/logits.c build/oracle.o runq.c test/oracle.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/logits.c build/oracle.o -lm -lpthread

# the whole suite again under AddressSanitizer, UndefinedBehaviorSanitizer and
# LeakSanitizer, every program and test rebuilt so (the qemu suite aside: it
# tests the cross build, not memory); .ci/run runs it after `make test`
SANITIZE = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined $(EXACT)
ASAN = build/asan
ASAN_TESTS = $(ASAN)/test_quant $(ASAN)/test_pool $(ASAN)/test_tokenizer $(ASAN)/test_model $(ASAN)/test_gguf $(ASAN)/test_lora $(ASAN)/test_bpe
test-asan: $(ASAN)/runq $(ASAN)/run $(ASAN)/export $(ASAN)/server $(ASAN_TESTS) $(ASAN)/ppl $(ASAN)/logits $(ASAN)/train $(ASAN)/test_train $(FUZZ_TARGETS:%=$(ASAN)/replay_%)
	@BIN=$(ASAN) BUILD=$(ASAN) ARM=0 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 SHARED=$(SHARED) \
		test/run_tests.sh
$(ASAN)/runq: runq.c | $(ASAN)
	$(CC) $(SANITIZE) -o $@ runq.c -lm -lpthread
$(ASAN)/run: run.c | $(ASAN)
	$(CC) $(SANITIZE) -o $@ run.c -lm
$(ASAN)/export: export.c runq.c | $(ASAN)
	$(CC) $(SANITIZE) -o $@ export.c -lm -lpthread
$(ASAN)/server: server.c export.c runq.c | $(ASAN)
	$(CC) $(SANITIZE) -o $@ server.c -lm -lpthread
$(ASAN)/oracle.o: test/oracle.c test/oracle.h run.c | $(ASAN)
	$(CC) $(SANITIZE) -Wno-unused-function -c -o $@ test/oracle.c
$(ASAN)/test_model: test/test_model.c $(ASAN)/oracle.o export.c runq.c test/check.h | $(ASAN)
	$(CC) $(SANITIZE) -Wno-unused-function -Wno-format-truncation -o $@ test/test_model.c $(ASAN)/oracle.o -lm -lpthread
$(ASAN)/train: tools/train.c tools/bpe.c export.c runq.c | $(ASAN)
	$(CC) $(SANITIZE) -o $@ tools/train.c -lm -lpthread
$(ASAN)/test_train: test/test_train.c tools/train.c tools/bpe.c $(ASAN)/oracle.o export.c runq.c test/check.h | $(ASAN)
	$(CC) $(SANITIZE) -Wno-unused-function -Wno-format-truncation -o $@ test/test_train.c $(ASAN)/oracle.o -lm -lpthread
$(ASAN)/ppl: tools/ppl.c $(ASAN)/oracle.o runq.c test/oracle.h | $(ASAN)
	$(CC) $(SANITIZE) -o $@ tools/ppl.c $(ASAN)/oracle.o -lm -lpthread
$(ASAN)/logits: test/logits.c $(ASAN)/oracle.o runq.c test/oracle.h | $(ASAN)
	$(CC) $(SANITIZE) -o $@ test/logits.c $(ASAN)/oracle.o -lm -lpthread
$(ASAN)/test_bpe: test/test_bpe.c tools/bpe.c runq.c test/check.h | $(ASAN)
	$(CC) $(SANITIZE) -Wno-unused-function -Wno-format-truncation -o $@ test/test_bpe.c -lm -lpthread
$(ASAN)/test_%: test/test_%.c export.c runq.c test/check.h | $(ASAN)
	$(CC) $(SANITIZE) -Wno-unused-function -Wno-format-truncation -o $@ $< -lm -lpthread
$(ASAN):
	mkdir -p $(ASAN)

# fuzzing (test/fuzz/, README "Fuzzing"): a libFuzzer target per parser of
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
build/fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h export.c runq.c | fuzz-tools build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< -lm -lpthread
fuzz-tools:
	@test/fuzz/tools.sh $(FUZZ_CC)
build/fuzz:
	mkdir -p build/fuzz
# the regression inputs and seed corpora replayed by make test
# (test/test_fuzz_regressions.sh): the same targets under a plain main, test/fuzz/replay.c
build/replay_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h test/fuzz/replay.c export.c runq.c | build
	$(CC) $(TEST_FLAGS) -o $@ $< test/fuzz/replay.c -lm -lpthread
$(ASAN)/replay_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h test/fuzz/replay.c export.c runq.c | $(ASAN)
	$(CC) $(SANITIZE) -Wno-unused-function -o $@ $< test/fuzz/replay.c -lm -lpthread
# what some targets include besides fuzz.h
build/fuzz/fuzz_encode build/replay_encode $(ASAN)/replay_encode: test/fuzz/tokenizers.h
build/fuzz/fuzz_http build/replay_http $(ASAN)/replay_http: test/fuzz/tokenizers.h server.c

# aarch64 (Raspberry Pi 4/5, RK3588) cross builds, which test/test_arm.sh runs
# under qemu-aarch64: static, so qemu needs no ARM libraries; one binary picks
# the neon or neon-dotprod kernels at run time.
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_FLAGS = -O3 $(EXACT) -static
.PHONY: cross-aarch64
cross-aarch64: build/aarch64/runq build/aarch64/test_quant build/aarch64/test_pool
build/aarch64/runq: runq.c | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) -Wall -Wextra -o $@ runq.c -lm -lpthread
build/aarch64/test_quant: test/test_quant.c export.c runq.c test/check.h | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) -Wall -Wno-unused-function -Wno-format-truncation -o $@ test/test_quant.c -lm -lpthread
build/aarch64/test_pool: test/test_pool.c runq.c test/check.h | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) -Wall -Wno-unused-function -o $@ test/test_pool.c -lm -lpthread
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
	$(ARMV7_CC) -O3 $(EXACT) -static -Wall -Wextra -o $@ runq.c -lm -lpthread
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
LAB_SOURCES = tools/lab/lab.c tools/lab/simd.h runq.c
.PHONY: lab lab-student cross-aarch64-lab
lab: build/lab/lab $(LAB_MODEL)
	build/lab/lab -s $(LAB_STEPS) --svg build/lab.svg $(LAB_MODEL)
lab-student: build/lab/lab-student $(LAB_MODEL)
	build/lab/lab-student -s $(LAB_STEPS) $(LAB_MODEL)
build/lab/lab: $(LAB_SOURCES) tools/lab/steps.c | build/lab
	$(CC) $(CFLAGS) $(EXACT) -o $@ tools/lab/lab.c -lm -lpthread
build/lab/lab-student: $(LAB_SOURCES) tools/lab/exercises/steps.c | build/lab
	$(CC) $(CFLAGS) $(EXACT) -DLAB_STUDENT -o $@ tools/lab/lab.c -lm -lpthread
$(LAB_MODEL): export | build/lab   # made again by a new export (the format may have changed)
	./export -q --random tinyllama-1.1b $@
build/lab:
	mkdir -p build/lab
# the lab for aarch64 boards (test/test_lab.sh checks both under qemu): plain
# NEON (Cortex-A72: Raspberry Pi 4) and NEON with sdot (Cortex-A76: Pi 5, RK3588)
cross-aarch64-lab: build/aarch64/lab build/aarch64/lab-dotprod
build/aarch64/lab: $(LAB_SOURCES) tools/lab/steps.c | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) -Wall -Wextra -o $@ tools/lab/lab.c -lm -lpthread
build/aarch64/lab-dotprod: $(LAB_SOURCES) tools/lab/steps.c | build/aarch64
	$(AARCH64_CC) $(AARCH64_FLAGS) -march=armv8.2-a+dotprod -Wall -Wextra -o $@ tools/lab/lab.c -lm -lpthread

# benchmark helpers (tools/bench and tools/bench-vs-llamacpp also build them on demand)
build/bandwidth: tools/bandwidth.c | build
	$(CC) -O3 -Wall -Wextra -o $@ tools/bandwidth.c -lpthread
build/tokens: tools/tokens.c runq.c | build
	$(CC) $(CFLAGS) $(EXACT) -o $@ tools/tokens.c -lm -lpthread

# the trainer (tools/train.c: includes export.c and runq.c). A tool built for
# the machine it runs on: -march=native lets its vector loops use the whole
# vector unit; training needs no bit-exactness across machines.
.PHONY: train
train: build/train
build/train: tools/train.c tools/bpe.c export.c runq.c | build
	$(CC) -O3 -march=native -Wall -Wextra -o $@ tools/train.c -lm -lpthread
# its tests run the math in double (finite-difference gradient checks)
build/test_train: test/test_train.c tools/train.c tools/bpe.c build/oracle.o export.c runq.c test/check.h | build
	$(CC) $(TEST_FLAGS) -o $@ test/test_train.c build/oracle.o -lm -lpthread

# quality: perplexity, and KL divergence against the fp32 model (tools/ppl.c
# includes runq.c and links run.c through test/oracle.c)
.PHONY: ppl
ppl: build/ppl
build/ppl: tools/ppl.c build/oracle.o runq.c test/oracle.h | build
	$(CC) $(CFLAGS) $(EXACT) -o $@ tools/ppl.c build/oracle.o -lm -lpthread

build:
	mkdir -p build

clean:
	rm -rf build run runq export server
