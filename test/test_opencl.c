// test_opencl.c — the OpenCL matmul backend (runq.c under USE_OPENCL) against
// the CPU path, on whatever device RUNQ_OPENCL_DEVICE picks (pocl's CPU device
// in make test):
//   - the kernel alone against matmul_q4_ref: odd shapes, every group size,
//     1..MAX_BATCH tokens, three products sharing one input;
//   - whole models: logits while decoding, and the last logits and the KV
//     cache after a prompt prefilled in batches, against the CPU backend;
//   - a kernel that does not compile, or a checkpoint too big for the device,
//     gives a message, not a crash.
// The tolerance is zero: the kernel computes runq's canonical arithmetic
// (exact integer block sums, then scale products and adds in a fixed order,
// never fused), and OpenCL requires correctly rounded float + and * and an
// exact half -> float, so a conforming device gives the same bits. The
// largest difference is printed when they differ.
//
//     build/test_opencl MODEL.q4.bin...
#define TESTING
#define PROGRAM_NAME "test_opencl"
#ifndef USE_OPENCL
#define USE_OPENCL
#endif
#include "../runq.c"
#include "../convert/quantize.h"
#include "check.h"

static uint64_t rng = 2026;
static float uniform(float lo, float hi) {   // xorshift64*, reproducible
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return lo + (hi - lo) * (float)((rng * 2685821657736338717ull) >> 40) / 16777216.0f;
}

// How far got is from want: 0 when every float is bit-identical.
static double difference(const float *got, const float *want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) worst = fmax(worst, fmax(fabs(got[i] - want[i]), 1e-30));
    return worst;
}

// ---- the kernel alone: matrices laid out as in a checkpoint, in a fake "file"

#define FAKE_FILE_BYTES (4u << 20)

typedef struct {
    uint8_t *data;
    size_t used;
} FakeFile;

// A random int4 matrix appended at a 64-byte aligned offset, nibbles then
// scales, tiled as export writes it. fill 1: a few rows of extreme weights.
static Tensor append_matrix(FakeFile *f, int rows, int cols, int group, int fill) {
    int padded = (int)round_up((size_t)cols, (size_t)group);
    size_t tiled_rows = round_up((size_t)rows, Q4_TILE_ROWS);
    size_t nibble_bytes = tiled_rows * padded / 2, scale_bytes = tiled_rows * (padded / group) * sizeof(uint16_t);
    size_t at = round_up(f->used, TENSOR_ALIGNMENT);
    if (at + nibble_bytes + scale_bytes > FAKE_FILE_BYTES) die("test_opencl: the fake file is too small");
    Tensor w = { .name = "fake", .type = TYPE_Q4, .rows = rows, .cols = cols, .cols_padded = padded, .group_size = group,
                 .q4_tiled = 1, .nibbles = f->data + at, .scales = (const uint16_t *)(f->data + at + nibble_bytes) };
    float *row = malloc(sizeof(float) * cols);
    uint8_t *nibbles = malloc((size_t)rows * padded / 2);
    uint16_t *scales = malloc(sizeof(uint16_t) * (size_t)rows * (padded / group));
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) row[c] = uniform(-1, 1) * (fill && r % 5 == 0 && c % 7 == 0 ? 100.0f : 1.0f);
        quantize_row_q4(row, cols, padded, group, nibbles + (size_t)r * padded / 2, scales + (size_t)r * (padded / group));
    }
    tile_q4_rows(nibbles, scales, 0, rows, padded, group, (uint8_t *)w.nibbles, (uint16_t *)w.scales);
    free(row);
    free(nibbles);
    free(scales);
    f->used = at + nibble_bytes + scale_bytes;
    return w;
}

static QuantizedActivations new_activations(int stride) {
    QuantizedActivations q = { .stride = stride };
    q.values = xcalloc((size_t)MAX_BATCH * stride, 1, "activations");
    q.scales = xcalloc((size_t)MAX_BATCH * stride / Q_BLOCK, sizeof(float), "activation scales");
    q.sums = xcalloc((size_t)MAX_BATCH * stride / Q_BLOCK, sizeof(int32_t), "activation sums");
    return q;
}

static void free_activations(QuantizedActivations *q) { free(q->values); free(q->scales); free(q->sums); }

// Inputs with every kind of block: ordinary, large, all zero (scale 0), one spike.
static void make_inputs(float *x, int n_tokens, int cols) {
    for (int t = 0; t < n_tokens; t++)
        for (int c = 0; c < cols; c++) {
            float v = uniform(-1, 1);
            if (t % 3 == 1) v *= 300.0f;
            if (t % 4 == 2 && c < 64) v = 0.0f;
            if (c == 33) v = 1e4f;
            x[(size_t)t * cols + c] = v;
        }
}

static void test_kernel_against_reference(void) {
    int shapes[][3] = { { 1, 32, 32 }, { 37, 200, 64 }, { 130, 1000, 128 }, { 5, 2048, 256 }, { 64, 96, 32 }, { 3, 288, 32 } };
    enum { N_SHAPES = sizeof shapes / sizeof *shapes, WIDEST = 2048 };
    FakeFile file = { aligned_alloc(4096, FAKE_FILE_BYTES), 0 };
    Tensor w[N_SHAPES][3];
    for (int s = 0; s < N_SHAPES; s++)
        for (int m = 0; m < 3; m++)   // three products of one input, of different heights (q, k, v)
            w[s][m] = append_matrix(&file, shapes[s][0] + 3 * m, shapes[s][1], shapes[s][2], s % 2);

    Transformer fake;   // what opencl_init reads: the mapped file and the activations' width
    memset(&fake, 0, sizeof fake);
    fake.file_data = file.data;
    fake.file_size = file.used;
    fake.state.xq = new_activations(WIDEST);
    char message[512];
    void *cl = opencl_init(&fake, message, sizeof message);
    CHECK(cl != NULL, "opencl_init on a fake checkpoint: %s", message);
    if (!cl) { free_activations(&fake.state.xq); free(file.data); return; }

    QuantizedActivations reference_xq = new_activations(WIDEST);
    float *x = malloc(sizeof(float) * MAX_BATCH * WIDEST);
    int token_counts[] = { 1, 2, 7, MAX_BATCH };
    for (int s = 0; s < N_SHAPES; s++)
        for (size_t k = 0; k < sizeof token_counts / sizeof *token_counts; k++) {
            int n_tokens = token_counts[k], cols = shapes[s][1];
            make_inputs(x, n_tokens, cols);
            float *got[3], *want[3];
            const Tensor *group[3] = { &w[s][0], &w[s][1], &w[s][2] };
            for (int m = 0; m < 3; m++) {
                got[m] = calloc((size_t)n_tokens * group[m]->rows, sizeof(float));
                want[m] = calloc((size_t)n_tokens * group[m]->rows, sizeof(float));
            }
            opencl_matmul(cl, &fake, 3, got, group, x, cols, n_tokens);
            quantize_q8(&reference_xq, x, cols, cols, group[0]->cols_padded, n_tokens);
            for (int m = 0; m < 3; m++) {
                matmul_q4_ref(want[m], group[m]->rows, group[m], 0, group[m]->rows, &reference_xq, n_tokens);
                double off = difference(got[m], want[m], (size_t)n_tokens * group[m]->rows);
                CHECK(off == 0, "opencl matmul %dx%d group %d, %d tokens, product %d of 3: off the reference by up to %g",
                      group[m]->rows, cols, shapes[s][2], n_tokens, m, off);
                free(got[m]); free(want[m]);
            }
        }
    opencl_free(cl);
    free(x);
    free_activations(&reference_xq);
    free_activations(&fake.state.xq);
    free(file.data);
}

// ---- whole models: the OpenCL backend against the CPU's

static void build_on(Transformer *t, const char *backend, const char *path, int cache_len) {
    setenv("RUNQ_BACKEND", backend, 1);   // select_backend dies if it cannot run: a clear failure
    build_transformer(t, path, cache_len, 2);
    unsetenv("RUNQ_BACKEND");
}

static int token_at(int i, int vocab_size) { return (i * 7919 + 1) % vocab_size; }

static void test_decode(const char *path) {
    Transformer cpu, gpu;
    build_on(&cpu, "cpu", path, 0);
    int n = cpu.config.seq_len < 40 ? cpu.config.seq_len : 40, vocab = cpu.config.vocab_size;
    build_on(&gpu, "opencl", path, n);
    CHECK(cpu.backend == NULL && gpu.backend == &backend_opencl, "RUNQ_BACKEND picks the backend");
    double worst = 0;
    for (int pos = 0; pos < n; pos++) {
        float *want = forward(&cpu, token_at(pos, vocab), pos);
        float *got = forward(&gpu, token_at(pos, vocab), pos);
        worst = fmax(worst, difference(got, want, (size_t)vocab));
    }
    CHECK(worst == 0, "%s: decoding %d tokens, opencl logits off the CPU's by up to %g", path, n, worst);
    printf("  %s: decode, %d positions: opencl logits = CPU logits (max |diff| %g)\n", path, n, worst);
    free_transformer(&cpu);
    free_transformer(&gpu);
}

// A prompt longer than MAX_BATCH: two batches, the second a partial one.
static void test_prefill(const char *path) {
    Transformer cpu, gpu;
    build_on(&cpu, "cpu", path, 0);
    int n = cpu.config.seq_len < MAX_BATCH + 9 ? cpu.config.seq_len : MAX_BATCH + 9, vocab = cpu.config.vocab_size;
    free_transformer(&cpu);
    build_on(&cpu, "cpu", path, n);
    build_on(&gpu, "opencl", path, n);
    int *tokens = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) tokens[i] = token_at(i, vocab);
    double logits_off = difference(forward_tokens(&gpu, tokens, n, 0), forward_tokens(&cpu, tokens, n, 0), (size_t)vocab);
    size_t cache = (size_t)cpu.config.n_layers * n * cpu.config.n_kv_heads * cpu.config.head_dim * sizeof(uint16_t);
    CHECK(logits_off == 0, "%s: a %d-token prompt, opencl last logits off the CPU's by up to %g", path, n, logits_off);
    CHECK(memcmp(gpu.state.key_cache, cpu.state.key_cache, cache) == 0 &&
          memcmp(gpu.state.value_cache, cpu.state.value_cache, cache) == 0,
          "%s: a %d-token prompt, the KV cache of the opencl run differs from the CPU's", path, n);
    printf("  %s: prefill, %d tokens: opencl logits and KV cache = CPU's (max |diff| %g)\n", path, n, logits_off);
    free(tokens);
    free_transformer(&cpu);
    free_transformer(&gpu);
}

// ---- failure: a kernel that does not compile

static void test_build_failure(void) {
    cl_device_id devices[OPENCL_MAX_DEVICES];
    if (opencl_devices(devices) == 0) { CHECK(0, "no OpenCL device to compile on"); return; }
    cl_int err;
    cl_context context = clCreateContext(NULL, 1, &devices[0], NULL, NULL, &err);
    CHECK(err == CL_SUCCESS, "clCreateContext: %d", err);
    if (err != CL_SUCCESS) return;
    char message[512] = "";
    cl_program program = opencl_build(context, devices[0], "__kernel void broken(__global float *x) { x[0] = y; }\n",
                                      message, sizeof message);
    CHECK(program == NULL && strstr(message, "does not build") && strlen(message) > strlen("the kernel does not build"),
          "a kernel with an error: NULL and the build log's first line, got %s \"%s\"", program ? "a program" : "NULL", message);
    printf("  a broken kernel: \"%s\"\n", message);
    program = opencl_build(context, devices[0], opencl_source, message, sizeof message);
    CHECK(program != NULL, "runq's kernel builds: %s", message);
    if (program) clReleaseProgram(program);
    clReleaseContext(context);
}

// A checkpoint bigger than the device's largest buffer: a message, no buffer tried.
static void test_checkpoint_too_big(void) {
    Transformer huge;
    memset(&huge, 0, sizeof huge);
    static const uint8_t byte;
    huge.file_data = &byte;
    huge.file_size = (size_t)1 << 62;   // never read: init refuses before wrapping it
    huge.state.xq.stride = MAX_GROUP_SIZE;
    char message[512] = "";
    void *cl = opencl_init(&huge, message, sizeof message);
    CHECK(cl == NULL && strstr(message, "exceed the device's largest buffer"),
          "a 4 EiB checkpoint: NULL and why, got %s \"%s\"", cl ? "a backend" : "NULL", message);
    if (cl) opencl_free(cl);
}

int main(int argc, char **argv) {
    test_build_failure();
    test_checkpoint_too_big();
    test_kernel_against_reference();
    for (int i = 1; i < argc; i++) {
        test_decode(argv[i]);
        test_prefill(argv[i]);
    }
    return check_summary("test_opencl");
}
