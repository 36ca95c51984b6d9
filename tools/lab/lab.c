/*
lab.c — the kernel-optimization lab: runq's int4 x int8 matrix-vector product
in numbered steps (steps.c), each checked against runq's scalar reference,
timed at TinyLlama and Llama-2-7B layer shapes, and swapped into runq's
forward pass to measure what it buys end to end. docs/LAB.md is the tutorial.

    make lab                       the solutions: check, time, table, build/lab.svg
    make lab-student               the same over exercises/steps.c, the bodies to write
    build/lab/lab --check          the correctness check alone (make test runs it)
    build/lab/lab [-T threads] [-s 0,1,3] [-r repeats] [-n tokens] [--svg FILE] [MODEL.q4.bin]

Steps (every one has the same signature, MatmulStep):
    0 reference      one row, one weight at a time
    1 unrolled       four rows at a time: each activation feeds four sums (ILP)
    2 threads        step 0 on n threads, created with pthreads on every call
    3 simd           AVX2 (x86) or NEON (AArch64) block dot products, one thread
    4 combined       threads + SIMD + four rows at a time
    5 runq           runq's own kernel for this CPU on runq's thread pool

The check holds every step to runq's matmul_q4_ref, the reference the project's
tests hold every kernel to (step 0 is the lab's plainer copy of it). Timing is
never part of a test. MODEL (end to end) is any int4 checkpoint; make lab uses
a seeded random TinyLlama-1.1B (export --random tinyllama-1.1b), cached in build/.

This file includes runq.c (TESTING drops its main), so runq's types, its
quantize_q8, kernels, thread pool and forward are all here, and export's
quantizer (convert/quantize.h) for quantize_row_q4.
*/
#define TESTING
#define PROGRAM_NAME "lab"
#pragma GCC diagnostic ignored "-Wunused-function"   // runq's generate, chat, tokenizer: unused here
#include "../../runq.c"
#include "../../convert/quantize.h"

#define MAX_LAB_THREADS 64

// What the threaded steps need: step 2 and 4 start n_threads pthreads per
// call; step 5 runs on runq's pool of n_threads and runq's kernels.
typedef struct {
    int n_threads;
    ThreadPool *pool;
    Kernels kernels;
} LabThreads;

// out (rows,) = W (rows, cols) . x (cols,), one token, x quantized by quantize_q8
typedef void (*MatmulStep)(float *out, const Tensor *w, const QuantizedActivations *x, const LabThreads *threads);
// the same for rows [row_begin, row_end) only: what a thread runs
typedef void (*RowsFn)(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end);

// The steps read a Q4 matrix row after row, quantize_row_q4's order: row r is
// cols_padded/2 bytes of nibbles, with one fp16 scale per group. (runq's files
// keep rows in tiles of eight, one row per SIMD lane: step 5 runs on those,
// and the lab keeps every matrix it multiplies in both orders: see "Both orders".)
static inline const uint8_t *row_nibbles(const Tensor *w, int row) {
    return w->nibbles + (size_t)row * (w->cols_padded / 2);
}

// the fp16 scale of row r's block b (its group's)
static inline uint16_t weight_scale_bits(const Tensor *w, int row, int block) {
    return w->scales[(size_t)row * (w->cols_padded / w->group_size) + block / (w->group_size / Q_BLOCK)];
}

static inline float weight_scale(const Tensor *w, int row, int block) {
    return fp16_to_fp32(weight_scale_bits(w, row, block));
}

// Step 2's unit of work: rows [row_begin, row_end) for one thread.
typedef struct {
    RowsFn rows;
    float *out;
    const Tensor *w;
    const QuantizedActivations *x;
    int row_begin, row_end;
} RowSlice;

#include "simd.h"
#ifdef LAB_STUDENT
#include "exercises/steps.c"
#define LAB_FLAVOUR "student (tools/lab/exercises/steps.c)"
#else
#include "steps.c"
#define LAB_FLAVOUR "solutions (tools/lab/steps.c)"
#endif

// ----------------------------------------------------------------------------
// The steps as MatmulSteps: the row functions of steps.c over the whole matrix.

static void matmul_step0(float *out, const Tensor *w, const QuantizedActivations *x, const LabThreads *threads) {
    (void)threads;
    rows_naive(out, w, x, 0, w->rows);
}

static void matmul_step1(float *out, const Tensor *w, const QuantizedActivations *x, const LabThreads *threads) {
    (void)threads;
    rows_unrolled(out, w, x, 0, w->rows);
}

static void matmul_step2(float *out, const Tensor *w, const QuantizedActivations *x, const LabThreads *threads) {
    rows_on_threads(rows_naive, out, w, x, threads->n_threads);
}

static void matmul_step3(float *out, const Tensor *w, const QuantizedActivations *x, const LabThreads *threads) {
    (void)threads;
    rows_simd(out, w, x, 0, w->rows);
}

static void matmul_step4(float *out, const Tensor *w, const QuantizedActivations *x, const LabThreads *threads) {
    rows_on_threads(rows_simd_unrolled, out, w, x, threads->n_threads);
}

// ----------------------------------------------------------------------------
// Step 5: what runq itself does: the kernel set select_kernels picks for this
// CPU (AVX2, or NEON/sdot) on runq's own weight order, tiles of eight rows
// with a row per SIMD lane (so no horizontal sums), run through matmul_task
// on a pool whose threads were created once.

static const Tensor *in_tiles(const Tensor *w);

static void matmul_step5(float *out, const Tensor *w, const QuantizedActivations *x, const LabThreads *threads) {
    MatmulTask task = { .count = 1, .out = { out }, .w = { in_tiles(w) }, .x = x, .n_tokens = 1, .kernels = &threads->kernels };
    run_matmul_task(threads->pool, &task);
}

typedef struct {
    const char *name;
    MatmulStep run;
    int uses_simd;      // skipped (loudly) on an x86 CPU without AVX2
} Step;

#define N_STEPS 6
static const Step STEPS[N_STEPS] = {
    { "reference", matmul_step0, 0 },
    { "unrolled", matmul_step1, 0 },
    { "threads", matmul_step2, 0 },
    { "simd " LAB_SIMD, matmul_step3, 1 },
    { "combined", matmul_step4, 1 },
    { "runq", matmul_step5, 0 },
};

// ----------------------------------------------------------------------------
// Both orders: every Q4 matrix the lab multiplies, row after row (for steps
// 0-4) and in runq's tiles (for step 5), paired here so either finds the other.

#define MAX_MATRIX_PAIRS 4096
typedef struct { Tensor rows, tiles; } MatrixPair;   // the lab allocated the one its caller did not give
static MatrixPair matrix_pairs[MAX_MATRIX_PAIRS];
static int n_matrix_pairs;

// w's data in the other order (allocated); registers the pair.
static Tensor reorder_q4(const Tensor *w) {
    Tensor other = *w;
    other.q4_tiled = !w->q4_tiled;
    size_t row_bytes = (size_t)w->cols_padded / 2, row_scales = (size_t)(w->cols_padded / w->group_size);
    size_t tiled_rows = round_up((size_t)w->rows, Q4_TILE_ROWS);
    uint8_t *nibbles = xcalloc(tiled_rows * row_bytes, 1, "lab weights");
    uint16_t *scales = xcalloc(tiled_rows * row_scales, sizeof(uint16_t), "lab scales");
    if (w->q4_tiled) {
        for (int r = 0; r < w->rows; r++) read_row_codes(w, r, nibbles + r * row_bytes, scales + r * row_scales);
    } else {
        tile_q4_rows(w->nibbles, w->scales, 0, w->rows, w->cols_padded, w->group_size, nibbles, scales);
    }
    other.nibbles = nibbles;
    other.scales = scales;
    if (n_matrix_pairs == MAX_MATRIX_PAIRS) die("the lab pairs at most %d matrices", MAX_MATRIX_PAIRS);
    matrix_pairs[n_matrix_pairs++] = w->q4_tiled ? (MatrixPair){ other, *w } : (MatrixPair){ *w, other };
    return other;
}

// Forgets w's pair, freeing the copy reorder_q4 made (and w's own data when
// free_given: a problem's row-order matrix).
static void forget_pair(const Tensor *w, int free_given) {
    for (int i = 0; i < n_matrix_pairs; i++) {
        MatrixPair *p = &matrix_pairs[i];
        if (p->rows.nibbles != w->nibbles && p->tiles.nibbles != w->nibbles) continue;
        const Tensor *copy = p->rows.nibbles == w->nibbles ? &p->tiles : &p->rows;
        free((void *)copy->nibbles); free((void *)copy->scales);
        if (free_given) { free((void *)w->nibbles); free((void *)w->scales); }
        *p = matrix_pairs[--n_matrix_pairs];
        return;
    }
}

static const MatrixPair *find_pair(const Tensor *w) {
    for (int i = 0; i < n_matrix_pairs; i++)
        if (matrix_pairs[i].rows.nibbles == w->nibbles || matrix_pairs[i].tiles.nibbles == w->nibbles) return &matrix_pairs[i];
    die("the lab has no copy of matrix %s in the other order", w->name);
    return NULL;
}

static const Tensor *in_tiles(const Tensor *w) { return w->q4_tiled ? w : &find_pair(w)->tiles; }
static const Tensor *in_rows(const Tensor *w) { return w->q4_tiled ? &find_pair(w)->rows : w; }

// A model's matrices (runq's tiles, mapped) get row-order copies for steps 0-4.
static void pair_model_matrices(Transformer *t, int forget) {
    for (int l = 0; l < t->config.n_layers; l++) {
        Tensor *m[N_PROJECTIONS];
        layer_projections(&t->weights.layers[l], m);
        for (int i = 0; i < N_PROJECTIONS; i++) forget ? forget_pair(m[i], 0) : (void)reorder_q4(m[i]);
    }
    forget ? forget_pair(&t->weights.output, 0) : (void)reorder_q4(&t->weights.output);
}

// ----------------------------------------------------------------------------
// Test data: a Q4 matrix and one token's int8 activations, from a seeded generator.

typedef struct {
    Tensor w;
    QuantizedActivations x;
} Problem;

static float random_uniform(unsigned long long *state) { return random_f32(state) * 2.0f - 1.0f; }

// How a problem's numbers are made:
typedef enum {
    // runq's quantize_row_q4 from random floats (slow: the check's small shapes)
    PROBLEM_REALISTIC,
    // random nibbles and int8 activations, every scale 0.5 or 1: each block's
    // term is a multiple of 1/4 below 2^15 and up to 64 blocks sum below 2^21,
    // so every float operation is exact in any order and every step must equal
    // the reference bit for bit: an integer slip of one is caught
    PROBLEM_EXACT,
    // random nibbles and scales (the timings' big shapes: only the bytes' count matters)
    PROBLEM_RANDOM,
} ProblemKind;

static Problem make_problem(int rows, int cols, int group_size, ProblemKind kind, unsigned long long seed) {
    Problem p = { 0 };
    int cols_padded = (cols + group_size - 1) / group_size * group_size;
    size_t row_bytes = (size_t)cols_padded / 2, row_scales = (size_t)(cols_padded / group_size);
    uint8_t *nibbles = xcalloc((size_t)rows * row_bytes, 1, "lab weights");
    uint16_t *scales = xcalloc((size_t)rows * row_scales, sizeof(uint16_t), "lab scales");
    float *row = xcalloc((size_t)cols, sizeof(float), "lab row");
    for (int r = 0; r < rows; r++) {
        if (kind == PROBLEM_REALISTIC) {
            for (int i = 0; i < cols; i++) row[i] = random_uniform(&seed) * (1.0f + (float)(r % 5));
            quantize_row_q4(row, cols, cols_padded, group_size, nibbles + r * row_bytes, scales + r * row_scales);
            continue;
        }
        for (size_t i = 0; i < row_bytes; i++) nibbles[r * row_bytes + i] = (uint8_t)random_u32(&seed);
        for (size_t g = 0; g < row_scales; g++)
            scales[r * row_scales + g] = fp32_to_fp16(kind == PROBLEM_EXACT ? (random_u32(&seed) & 1 ? 1.0f : 0.5f)
                                                                           : 0.01f + 0.01f * random_f32(&seed));
    }
    p.w = (Tensor){ .name = "lab", .type = TYPE_Q4, .rows = rows, .cols = cols, .cols_padded = cols_padded,
                    .group_size = group_size, .nibbles = nibbles, .scales = scales };
    reorder_q4(&p.w);
    p.x.stride = cols_padded;
    p.x.values = xcalloc((size_t)cols_padded, 1, "lab activations");
    p.x.scales = xcalloc((size_t)cols_padded / Q_BLOCK, sizeof(float), "lab activation scales");
    p.x.sums = xcalloc((size_t)cols_padded / Q_BLOCK, sizeof(int32_t), "lab activation sums");
    if (kind == PROBLEM_EXACT) {
        for (int block = 0; block < cols_padded / Q_BLOCK; block++) {
            p.x.scales[block] = random_u32(&seed) & 1 ? 1.0f : 0.5f;
            for (int j = 0; j < Q_BLOCK; j++) {
                int8_t v = (int8_t)((int)(random_u32(&seed) % 255) - 127);   // quantize_q8's range, -127..127
                p.x.values[block * Q_BLOCK + j] = v;
                p.x.sums[block] += v;
            }
        }
    } else {
        for (int i = 0; i < cols; i++) row[i] = random_uniform(&seed) * (i % 7 == 0 ? 4.0f : 1.0f);
        quantize_q8(&p.x, row, cols, cols, cols_padded, 1);
    }
    free(row);
    return p;
}

static void free_problem(Problem *p) {
    forget_pair(&p->w, 1);
    free(p->x.values); free(p->x.scales); free(p->x.sums);
}

// ----------------------------------------------------------------------------
// The check. Each block's integer dot is exact, so a step can differ from the
// reference only in how it rounds the float products and orders the float sum
// over blocks (and, for SIMD steps, over lanes). Summing terms t_i in any
// order along a chain of d additions is off by at most d * u * sum|t_i|
// (u = 2^-24, the float unit roundoff; Higham, Accuracy and Stability, 4.2),
// and sum|t_i| is at most M = sum over blocks |wscale * xscale| * sum_j |w_j x_j|
// however a block is split into lanes. The reference's chain is at most
// n_blocks long, a step's at most n_blocks plus a few lane folds, and each
// product of three factors rounds twice: so |step - reference| <=
// (2 * n_blocks + 16) * u * M. A wrong index or a lost block is off by a whole
// term, orders of magnitude more; a correct step is usually off by far less.

static double row_magnitude(const Tensor *w, int row, const QuantizedActivations *x) {
    const uint8_t *nibbles = row_nibbles(w, row);
    double total = 0.0;
    for (int block = 0; block < w->cols_padded / Q_BLOCK; block++) {
        int64_t block_sum = 0;
        for (int j = 0; j < Q_BLOCK / 2; j++) {
            uint8_t byte = nibbles[block * (Q_BLOCK / 2) + j];
            block_sum += abs((byte & 0x0F) - 8) * abs(x->values[block * Q_BLOCK + j]);
            block_sum += abs((byte >> 4) - 8) * abs(x->values[block * Q_BLOCK + j + Q_BLOCK / 2]);
        }
        total += fabs((double)weight_scale(w, row, block) * x->scales[block]) * (double)block_sum;
    }
    return total;
}

static double allowed_error(const Tensor *w, int row, const QuantizedActivations *x, ProblemKind kind) {
    if (kind == PROBLEM_EXACT) return 0.0;
    return (2.0 * (w->cols_padded / Q_BLOCK) + 16.0) * 0x1p-24 * row_magnitude(w, row, x);
}

typedef enum { STEP_OK, STEP_WRONG, STEP_NOT_WRITTEN } CheckResult;

// One step on one problem against runq's reference. out starts as NaN: a step
// that leaves every value untouched has not been written yet.
static CheckResult check_step(int step, const Problem *p, ProblemKind kind, const LabThreads *threads, const char *shape) {
    int rows = p->w.rows;
    float *want = xcalloc((size_t)rows, sizeof(float), "lab reference");
    float *got = xcalloc((size_t)rows, sizeof(float), "lab output");
    matmul_q4_ref(want, rows, &p->w, 0, rows, &p->x, 1);
    for (int r = 0; r < rows; r++) got[r] = NAN;
    STEPS[step].run(got, &p->w, &p->x, threads);
    int untouched = 0, first_wrong = -1;
    for (int r = 0; r < rows; r++) {
        if (isnan(got[r])) untouched++;
        if (first_wrong < 0 && !(fabs((double)got[r] - want[r]) <= allowed_error(&p->w, r, &p->x, kind))) first_wrong = r;
    }
    CheckResult result = untouched == rows ? STEP_NOT_WRITTEN : first_wrong >= 0 ? STEP_WRONG : STEP_OK;
    fflush(stdout);
    if (result == STEP_WRONG)
        fprintf(stderr, "FAIL: step %d (%s) is wrong at %s, %d threads: row %d is %.9g, the reference says %.9g "
                "(allowed error %.3g)\n", step, STEPS[step].name, shape, threads->n_threads, first_wrong,
                got[first_wrong], want[first_wrong], allowed_error(&p->w, first_wrong, &p->x, kind));
    free(want); free(got);
    return result;
}

static int simd_skipped(int step) {
    return STEPS[step].uses_simd && !lab_simd_runs();
}

// Every selected step at shapes that take every path: rows not a multiple of
// four (the unrolled tails) and fewer rows than threads, one block and many,
// groups of 32..256, cols padded up to a group; exact and realistic numbers;
// 1 and 3 threads. The widest shape comes first: a step that writes nothing
// there has not been written. Prints "lab: N passed, N failed"; returns N failed.
static int check_steps(const int *selected) {
    static const int SHAPES[][3] = {   // rows, cols (at most 2048: PROBLEM_EXACT), group size
        { 70, 2048, 128 }, { 1, 32, 32 }, { 3, 64, 32 }, { 7, 96, 32 }, { 37, 320, 64 }, { 64, 200, 64 }, { 13, 1024, 256 },
    };
    int passed = 0, failed = 0;
    for (int step = 0; step < N_STEPS; step++) {
        if (!selected[step]) continue;
        if (simd_skipped(step)) {
            printf("SKIP: ======== step %d (%s): this CPU lacks AVX2 ========\n", step, STEPS[step].name);
            continue;
        }
        CheckResult result = STEP_OK;
        for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0] && result == STEP_OK; s++)
            for (ProblemKind kind = PROBLEM_REALISTIC; kind <= PROBLEM_EXACT && result == STEP_OK; kind++) {
                Problem p = make_problem(SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], kind, 1000 + s);
                char shape[96];
                snprintf(shape, sizeof shape, "%dx%d (group %d, %s numbers)", SHAPES[s][0], SHAPES[s][1], SHAPES[s][2],
                         kind == PROBLEM_EXACT ? "exact" : "realistic");
                for (int n_threads = 1; n_threads <= 3 && result == STEP_OK; n_threads += 2) {
                    LabThreads threads = { n_threads, pool_create(n_threads), select_kernels() };
                    result = check_step(step, &p, kind, &threads, shape);
                    pool_free(threads.pool);
                }
                free_problem(&p);
            }
        if (result == STEP_NOT_WRITTEN)
            fprintf(stderr, "FAIL: step %d (%s) is not written yet: it left its output untouched. "
                    "Write its body in tools/lab/exercises/steps.c.\n", step, STEPS[step].name);
        if (result == STEP_OK) { passed++; printf("  step %d (%s): matches the reference\n", step, STEPS[step].name); }
        else failed++;
    }
    printf("lab: %d passed, %d failed\n", passed, failed);
    return failed;
}

// ----------------------------------------------------------------------------
// Timing the matmuls: medians of several calls (the machine may be shared).

typedef struct { int rows, cols; const char *label; } Shape;
static const Shape BENCH_SHAPES[] = {
    { 2048, 2048, "TinyLlama q/o 2048x2048" }, { 5632, 2048, "TinyLlama FFN 5632x2048" },
    { 4096, 4096, "7B q/o 4096x4096" }, { 11008, 4096, "7B FFN 11008x4096" },
};
#define N_SHAPES (int)(sizeof BENCH_SHAPES / sizeof BENCH_SHAPES[0])
#define HEADLINE_SHAPE 1   // GOP/s and speedup: TinyLlama's FFN, the end-to-end model's widest matrix

typedef struct {
    double ms[N_SHAPES];
    double tok_s;          // 0: no model given
} StepResult;

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *values, int n) {
    qsort(values, (size_t)n, sizeof(double), compare_doubles);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Every selected step on one shape: a warm-up call each, then TIMING_ROUNDS
// rounds calling each step once, so a burst of load from the machine's other
// users falls on all the steps alike rather than on one; the median per step.
#define TIMING_ROUNDS 7

static void time_steps(const int *selected, const Problem *p, const LabThreads *threads, int shape, StepResult *results) {
    float *out = xcalloc((size_t)p->w.rows, sizeof(float), "lab output");
    double times[N_STEPS][TIMING_ROUNDS];
    for (int round = -1; round < TIMING_ROUNDS; round++)
        for (int step = 0; step < N_STEPS; step++) {
            if (!selected[step] || simd_skipped(step)) continue;
            double start = now_ms();
            STEPS[step].run(out, &p->w, &p->x, threads);
            if (round >= 0) times[step][round] = now_ms() - start;
        }
    for (int step = 0; step < N_STEPS; step++) {
        if (!selected[step] || simd_skipped(step)) continue;
        results[step].ms[shape] = median_of(times[step], TIMING_ROUNDS);
    }
    free(out);
}

// ----------------------------------------------------------------------------
// End to end: runq's forward pass with a step as Kernels.matmul[TYPE_Q4]. runq calls
// that pointer from its pool with a range of rows and a batch of tokens; the
// steps take a whole matrix and one token, so the steps run on a one-thread
// runq pool (the range is then every row) and the lab decodes one token per
// forward pass. runq's function pointer carries no context: the step to run
// is set here once per measurement.

static struct { int step; const LabThreads *threads; } adapter;

static void matmul_q4_adapter(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                              const QuantizedActivations *x, int n_tokens) {
    (void)out_stride;   // one token: out is its row
    if (row_begin != 0 || row_end != w->rows || n_tokens != 1)
        die("the lab's steps take every row of one token (a one-thread runq pool, decoding)");
    STEPS[adapter.step].run(out, in_rows(w), x, adapter.threads);
}

// Greedy decoding from BOS, one token per forward pass, up to max_tokens or
// about budget_ms (at least 2); tokens/s. (main has run one forward pass
// first, so the weights are in the page cache for every step alike.)
static double decode_tok_s(Transformer *t, int max_tokens, double budget_ms) {
    double start = now_ms(), elapsed = 0.0;
    int token = t->config.bos_id, n = 0;
    while (n < max_tokens && (n < 2 || elapsed < budget_ms)) {
        token = argmax(forward(t, token, n), t->config.vocab_size);
        n++;
        elapsed = now_ms() - start;
    }
    return n / (elapsed / 1000.0);
}

static double decode_with_step(Transformer *t, int step, const LabThreads *threads, int max_tokens, double budget_ms) {
    ThreadPool *runq_pool = t->pool;
    Kernels runq_kernels = t->kernels;
    if (step != 5) {   // step 5 is runq as it is
        adapter.step = step;
        adapter.threads = threads;
        t->kernels.matmul[TYPE_Q4] = matmul_q4_adapter;
        t->pool = pool_create(1);
    }
    double tok_s = decode_tok_s(t, max_tokens, budget_ms);
    if (step != 5) pool_free(t->pool);
    t->pool = runq_pool;
    t->kernels = runq_kernels;
    return tok_s;
}

// ----------------------------------------------------------------------------
// The results: a markdown table on stdout and an SVG bar chart.


static double gops(const StepResult *r) {
    const Shape *s = &BENCH_SHAPES[HEADLINE_SHAPE];
    return 2.0 * s->rows * s->cols / (r->ms[HEADLINE_SHAPE] * 1e6);
}

// The 1-minute load average (/proc/loadavg; -1 where there is none): on a
// shared machine it says how many other runnable threads the timings competed with.
static double load_average(void) {
    double load = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf", &load) != 1) load = -1.0; fclose(f); }
    return load;
}

static void print_table(const int *selected, const StepResult *results, int n_threads, int repeats, const char *model, double load_before) {
    const StepResult *base = selected[0] ? &results[0] : NULL;
    printf("\n| step | kernel |");
    for (int s = 0; s < N_SHAPES; s++) printf(" ms %dx%d |", BENCH_SHAPES[s].rows, BENCH_SHAPES[s].cols);
    printf(" GOP/s %dx%d | speedup |%s\n|---|---|", BENCH_SHAPES[HEADLINE_SHAPE].rows, BENCH_SHAPES[HEADLINE_SHAPE].cols,
           model ? " decode tok/s | decode speedup |" : "");
    for (int s = 0; s < N_SHAPES + 2 + (model ? 2 : 0); s++) printf("---:|");
    printf("\n");
    for (int step = 0; step < N_STEPS; step++) {
        if (!selected[step] || simd_skipped(step)) continue;
        const StepResult *r = &results[step];
        printf("| %d | %s |", step, STEPS[step].name);
        for (int s = 0; s < N_SHAPES; s++) printf(" %.2f |", r->ms[s]);
        printf(" %.2f |", gops(r));
        if (base) printf(" %.1fx |", base->ms[HEADLINE_SHAPE] / r->ms[HEADLINE_SHAPE]); else printf(" - |");
        if (model) {
            printf(" %.2f |", r->tok_s);
            if (base) printf(" %.1fx |", r->tok_s / base->tok_s); else printf(" - |");
        }
        printf("\n");
    }
    printf("\nthreads: %d (steps 2, 4, 5; the others run on one); ops = 2 x rows x cols per matmul; "
           "each figure the median of %d measurement%s", n_threads, repeats, repeats > 1 ? "s" : "");
    if (model) printf("; decode: %s, greedy after BOS", model);
    printf("\nload average before / after: %.2f / %.2f on %ld CPUs (a shared machine: other programs' threads compete)\n",
           load_before, load_average(), sysconf(_SC_NPROCESSORS_ONLN));
}

// One panel of horizontal bars, one per step: the value and its label.
static void svg_panel(FILE *f, double y, const char *title, const int *selected, const double *values, const char *unit) {
    double widest = 0.0;
    for (int step = 0; step < N_STEPS; step++) if (selected[step] && values[step] > widest) widest = values[step];
    fprintf(f, "<text x=\"10\" y=\"%.0f\" font-weight=\"bold\">%s</text>\n", y, title);
    y += 12;
    for (int step = 0; step < N_STEPS; step++) {
        if (!selected[step] || simd_skipped(step)) continue;
        double width = widest > 0 ? 420.0 * values[step] / widest : 0.0;
        fprintf(f, "<text x=\"10\" y=\"%.0f\">%d %s</text>\n", y + 14, step, STEPS[step].name);
        fprintf(f, "<rect x=\"170\" y=\"%.0f\" width=\"%.1f\" height=\"18\" fill=\"#%s\"/>\n", y, width < 1 ? 1 : width,
                step == 5 ? "c0504d" : "4f81bd");
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\">%.2f %s</text>\n", 176 + width, y + 14, values[step], unit);
        y += 24;
    }
}

static void write_svg(const char *path, const int *selected, const StepResult *results, int n_threads, const char *model) {
    int shown = 0;
    double rate[N_STEPS] = { 0 }, tok_s[N_STEPS] = { 0 };
    for (int step = 0; step < N_STEPS; step++) {
        if (!selected[step] || simd_skipped(step)) continue;
        shown++;
        rate[step] = gops(&results[step]);
        tok_s[step] = results[step].tok_s;
    }
    double panel = 24.0 * shown + 30;
    char temp[4096];
    snprintf(temp, sizeof temp, "%s.tmp", path);
    FILE *f = fopen(temp, "w");
    if (!f) die("cannot write %s: %s", temp, strerror(errno));
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"13\">\n",
            panel * (model ? 2 : 1) + 40);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    char title[160];
    snprintf(title, sizeof title, "int4 x int8 matmul %dx%d, GOP/s (higher is better; %d threads)",
             BENCH_SHAPES[HEADLINE_SHAPE].rows, BENCH_SHAPES[HEADLINE_SHAPE].cols, n_threads);
    svg_panel(f, 20, title, selected, rate, "GOP/s");
    if (model) {
        const char *file = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
        snprintf(title, sizeof title, "runq decoding %.80s with that kernel, tokens/s", file);
        for (char *c = title; *c; c++) if (strchr("&<>\"'", *c)) *c = '?';   // keep the SVG well-formed
        svg_panel(f, 20 + panel, title, selected, tok_s, "tok/s");
    }
    fprintf(f, "<text x=\"10\" y=\"%.0f\" fill=\"#666\">make lab (tools/lab); step 0 = naive reference, 5 = runq's own kernel and pool</text>\n",
            panel * (model ? 2 : 1) + 30);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0 || rename(temp, path) != 0) die("cannot write %s: %s", path, strerror(errno));
}

// ----------------------------------------------------------------------------
// One measurement of every selected step: the matmuls at each shape, then
// decoding with each (t NULL: no model, no decoding).

static void measure(const int *selected, const LabThreads *threads, Transformer *t, int max_tokens, StepResult *results) {
    for (int s = 0; s < N_SHAPES; s++) {
        Problem p = make_problem(BENCH_SHAPES[s].rows, BENCH_SHAPES[s].cols, 32, PROBLEM_RANDOM, 7 + s);
        time_steps(selected, &p, threads, s, results);
        fprintf(stderr, "  timed %s\n", BENCH_SHAPES[s].label);
        free_problem(&p);
    }
    for (int step = 0; t && step < N_STEPS; step++) {
        if (!selected[step] || simd_skipped(step)) continue;
        results[step].tok_s = decode_with_step(t, step, threads, max_tokens, 4000.0);
        fprintf(stderr, "  decoded with step %d: %.2f tok/s\n", step, results[step].tok_s);
    }
}

// -r repeats: each figure is the median of that figure over the repeats
#define MAX_REPEATS 9

static void median_results(StepResult runs[][N_STEPS], int repeats, StepResult *results) {
    double values[MAX_REPEATS];
    for (int step = 0; step < N_STEPS; step++) {
        for (int s = 0; s < N_SHAPES; s++) {
            for (int r = 0; r < repeats; r++) values[r] = runs[r][step].ms[s];
            results[step].ms[s] = median_of(values, repeats);
        }
        for (int r = 0; r < repeats; r++) values[r] = runs[r][step].tok_s;
        results[step].tok_s = median_of(values, repeats);
    }
}

// ----------------------------------------------------------------------------
// Command line

static void usage(void) {
    fprintf(stderr, "Usage: lab [--check] [-T threads] [-s steps] [-r repeats] [-n tokens] [--svg FILE] [MODEL.q4.bin]\n"
            "  --check     only check every step against the reference (what make test runs)\n"
            "  -T N        threads for steps 2, 4 and 5 (default: the online CPUs, at most %d)\n"
            "  -s LIST     steps to run, e.g. 0,1,3 (default: all, 0-5)\n"
            "  -r N        measure everything N times (at most %d), interleaved; report each figure's median\n"
            "  -n N        decode at most N tokens per step, end to end (default 16; about 4 s per step, at least 2 tokens)\n"
            "  --svg FILE  write the table as an SVG bar chart\n"
            "  MODEL       an int4 checkpoint to decode with each step's kernel (none: no end-to-end column)\n",
            MAX_LAB_THREADS, MAX_REPEATS);
    exit(EXIT_FAILURE);
}

static void parse_steps(const char *list, int *selected) {
    memset(selected, 0, sizeof(int) * N_STEPS);
    for (const char *p = list; *p; p++) {
        if (*p == ',') continue;
        if (*p < '0' || *p >= '0' + N_STEPS || (p[1] && p[1] != ',')) die("-s expects steps 0-%d separated by commas, got '%s'", N_STEPS - 1, list);
        selected[*p - '0'] = 1;
    }
}

int main(int argc, char **argv) {
    int check_only = 0, max_tokens = 16, repeats = 1, selected[N_STEPS] = { 1, 1, 1, 1, 1, 1 };
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = online < 1 ? 1 : online > MAX_LAB_THREADS ? MAX_LAB_THREADS : (int)online;
    const char *svg = NULL, *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--check") == 0) { check_only = 1; continue; }
        if (arg[0] != '-') { if (model) usage(); model = arg; continue; }
        if (!value) usage();
        if (strcmp(arg, "-T") == 0) n_threads = (int)parse_long("-T", value, 1, MAX_LAB_THREADS);
        else if (strcmp(arg, "-s") == 0) parse_steps(value, selected);
        else if (strcmp(arg, "-r") == 0) repeats = (int)parse_long("-r", value, 1, MAX_REPEATS);
        else if (strcmp(arg, "-n") == 0) max_tokens = (int)parse_long("-n", value, 2, 100000);
        else if (strcmp(arg, "--svg") == 0) svg = value;
        else usage();
        i++;
    }
#ifdef LAB_BUILD_NEEDS_SIMD
    if (!lab_simd_runs()) die("this build is for cores with %s, and this CPU lacks it: use a build without it", LAB_SIMD);
#endif
    printf("lab: %s; SIMD: %s; runq's kernels: %s\n", LAB_FLAVOUR, LAB_SIMD, select_kernels().name);
    if (check_steps(selected) > 0) {
        fprintf(stderr, "lab: a step does not match the reference (above): no timings for wrong answers\n");
        return EXIT_FAILURE;
    }
    if (check_only) return EXIT_SUCCESS;

    double load_before = load_average();
    Transformer t = { 0 };
    if (model) {   // a bad model fails now, not after the timings
        open_checkpoint(&t, model);
        prepare_run(&t, max_tokens, n_threads);
        if (max_tokens > t.state.cache_len) max_tokens = t.state.cache_len;   // the model's context, if shorter
        pair_model_matrices(&t, 0);
    }
    LabThreads threads = { n_threads, pool_create(n_threads), select_kernels() };
    StepResult runs[MAX_REPEATS][N_STEPS], results[N_STEPS];
    memset(runs, 0, sizeof runs);
    if (model) forward(&t, t.config.bos_id, 0);   // the weights into the page cache, once
    for (int repeat = 0; repeat < repeats; repeat++) measure(selected, &threads, model ? &t : NULL, max_tokens, runs[repeat]);
    median_results(runs, repeats, results);
    if (model) { pair_model_matrices(&t, 1); free_transformer(&t); }
    pool_free(threads.pool);
    print_table(selected, results, n_threads, repeats, model, load_before);
    if (svg) write_svg(svg, selected, results, n_threads, model);
    return EXIT_SUCCESS;
}
