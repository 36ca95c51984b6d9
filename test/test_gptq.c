// test_gptq.c — convert/gptq.h against a float64 reference of the same
// algorithms written the textbook way (the paper's OBS form: an explicit
// inverse Hessian, downdated one column at a time, every update applied at
// once; no Cholesky, no lazy batches): GPTQ's levels and loss, SparseGPT's
// masks and loss, Wanda's masks; the Hessian and the inverse's factor; masks
// that keep exactly two of every four; the same file for any thread count.
#define TESTING
#include "../export.c"
#include "check.h"

static uint64_t rng = 2024;
static double uniform(double lo, double hi) { return lo + (hi - lo) * (double)(splitmix64(&rng) >> 11) / 9007199254740992.0; }

enum { ROWS = 24, COLS = 160, TOKENS = 300, GROUP = 32 };

// Inputs as a model's are: correlated channels, a few busy ones, one never used.
static void make_inputs(float *x, int n, int cols) {
    for (int t = 0; t < n; t++) {
        double common = uniform(-1, 1);
        for (int c = 0; c < cols; c++) {
            double v = uniform(-1, 1) + 0.8 * common * (c % 3 == 0) + 0.5 * (c > 0 ? x[(size_t)t * cols + c - 1] : 0);
            x[(size_t)t * cols + c] = (float)(c % 17 == 5 ? 6 * v : c == 11 ? 0 : v);
        }
    }
}

static void make_weights(float *w, int rows, int cols) {
    for (int i = 0; i < rows * cols; i++) w[i] = (float)((uniform(-1, 1) + uniform(-1, 1)) * (i % 41 == 0 ? 3 : 1));
}

// ---- the reference, in double

// H = X^T X / n
static void reference_hessian(const float *x, int n, int cols, double *h) {
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double sum = 0;
            for (int t = 0; t < n; t++) sum += (double)x[(size_t)t * cols + i] * x[(size_t)t * cols + j];
            h[(size_t)i * cols + j] = sum / n;
        }
}

// The OBS rows: after columns 0..i-1 are removed from H^-1 (each removal
// Hinv -= Hinv[:, i] Hinv[i, :] / Hinv[i][i]), row i of what is left. GPTQ's
// update of column j by column i's error is err / R[i][i] * R[i][j].
static void reference_obs_rows(const double *h_damped, int n, double *rows) {
    double *a = calloc((size_t)n * 2 * n, sizeof(double));   // Gauss-Jordan on [H | I]
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) a[(size_t)i * 2 * n + j] = h_damped[(size_t)i * n + j];
        a[(size_t)i * 2 * n + n + i] = 1;
    }
    for (int p = 0; p < n; p++) {   // H is positive definite: no pivoting needed
        double pivot = a[(size_t)p * 2 * n + p];
        for (int j = 0; j < 2 * n; j++) a[(size_t)p * 2 * n + j] /= pivot;
        for (int i = 0; i < n; i++) {
            if (i == p) continue;
            double f = a[(size_t)i * 2 * n + p];
            for (int j = 0; j < 2 * n; j++) a[(size_t)i * 2 * n + j] -= f * a[(size_t)p * 2 * n + j];
        }
    }
    double *hinv = calloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) hinv[(size_t)i * n + j] = a[(size_t)i * 2 * n + n + j];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) rows[(size_t)i * n + j] = j >= i ? hinv[(size_t)i * n + j] : 0;
        double d = hinv[(size_t)i * n + i];
        for (int r = i + 1; r < n; r++)
            for (int c = i + 1; c < n; c++) hinv[(size_t)r * n + c] -= hinv[(size_t)r * n + i] * hinv[(size_t)i * n + c] / d;
    }
    free(a);
    free(hinv);
}

// H + damp on the diagonal, dead columns as gptq.h treats them; w's dead columns zeroed.
static void reference_damped(const double *h, int n, float *w, int rows, double *out) {
    double mean = 0;
    for (int c = 0; c < n; c++) mean += h[(size_t)c * n + c];
    mean /= n;
    memcpy(out, h, sizeof(double) * n * n);
    for (int c = 0; c < n; c++) {
        if (out[(size_t)c * n + c] == 0) {
            out[(size_t)c * n + c] = 1;
            for (int r = 0; r < rows; r++) w[(size_t)r * n + c] = 0;
        }
        out[(size_t)c * n + c] += GPTQ_DAMP * mean;
    }
}

// GPTQ and SparseGPT the textbook way: column by column, all updates at once.
// prune: 0 none, 1 a share per block of GPTQ_BLOCK columns, 2 two of four.
// quantized: round kept weights (joint), else keep them fp32. levels (rows,
// cols) out; w updated to the result.
static void reference_loop(float *w_in, int rows, int cols, const double *obs, const float *importance, int prune,
                           double fraction, int quantized, int *levels, uint8_t *pruned) {
    const QuantLayout *layout = quant_layout(TYPE_Q4);
    double *w = malloc(sizeof(double) * rows * cols);
    for (int i = 0; i < rows * cols; i++) w[i] = w_in[i];
    float *scale = calloc(rows, sizeof(float));
    memset(pruned, 0, (size_t)rows * cols);
    for (int i = 0; i < cols; i++) {
        double d = obs[(size_t)i * cols + i];   // R_ii = U_ii^2
        if (prune == 1 && i % GPTQ_BLOCK == 0) {   // the block's least w^2 / U_cc^2 among all rows, ties by index
            int end = i + GPTQ_BLOCK < cols ? i + GPTQ_BLOCK : cols, width = end - i, count = rows * width;
            int k = (int)llround(count * fraction);
            double *score = malloc(sizeof(double) * count);
            for (int r = 0; r < rows; r++)
                for (int c = i; c < end; c++) score[r * width + c - i] = w[(size_t)r * cols + c] * w[(size_t)r * cols + c] / obs[(size_t)c * cols + c];
            for (int picked = 0; picked < k; picked++) {
                int least = -1;
                for (int e = 0; e < count; e++)
                    if (!pruned[(size_t)(e / width) * cols + i + e % width] && (least < 0 || score[e] < score[least])) least = e;
                pruned[(size_t)(least / width) * cols + i + least % width] = 1;
            }
            free(score);
        }
        for (int r = 0; r < rows; r++) {
            double *row = w + (size_t)r * cols;
            if (quantized && i % GROUP == 0) {   // the group's scale, from its weights now, the pruned ones left out
                float group[GROUP], inverse_d2[GROUP];
                for (int c = 0; c < GROUP; c++) {
                    group[c] = pruned[(size_t)r * cols + i + c] ? 0.0f : (float)row[i + c];
                    inverse_d2[c] = (float)(1.0 / obs[(size_t)(i + c) * cols + i + c]);
                }
                if (prune == 2) keep_2_of_4(group, inverse_d2, GROUP);   // the quads' choices expected
                scale[r] = fp16_to_fp32(search_scale(layout, group, importance + i, GROUP));
            }
            if (prune == 2 && i % 4 == 0) {   // the two of least w^2 / U_cc^2 of these four (ties: the later one first)
                for (int dropped = 0; dropped < 2; dropped++) {
                    int least = -1;
                    for (int c = i + 3; c >= i; c--) {
                        double s = row[c] * row[c] / obs[(size_t)c * cols + c];
                        if (!pruned[(size_t)r * cols + c] && (least < 0 || s < row[least] * row[least] / obs[(size_t)least * cols + least])) least = c;
                    }
                    pruned[(size_t)r * cols + least] = 1;
                }
            }
            double q = row[i];
            int level = 0;
            if (pruned[(size_t)r * cols + i]) q = 0;
            else if (quantized) {
                level = quant_level(layout, (float)row[i], scale[r] != 0 ? 1.0f / scale[r] : 0.0f);
                q = (double)scale[r] * level;
            }
            levels[(size_t)r * cols + i] = level;
            double error = (row[i] - q) / d;
            for (int j = i + 1; j < cols; j++) row[j] -= error * obs[(size_t)i * cols + j];
            row[i] = q;
        }
    }
    for (int i = 0; i < rows * cols; i++) w_in[i] = (float)w[i];
    free(w);
    free(scale);
}

// sum over rows of (w - q)^T H (w - q): the output error the text sees.
static double output_error(const float *w, const float *q, int rows, int cols, const double *h) {
    double total = 0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++) {
            double di = (double)w[(size_t)r * cols + i] - q[(size_t)r * cols + i];
            for (int j = 0; j < cols; j++) total += di * h[(size_t)i * cols + j] * ((double)w[(size_t)r * cols + j] - q[(size_t)r * cols + j]);
        }
    return total;
}

typedef struct {
    float x[TOKENS * COLS], w[ROWS * COLS], importance[COLS];
    float w_live[ROWS * COLS];   // w with its dead column zeroed (what both loops start from)
    double h[COLS * COLS], damped[COLS * COLS], obs[COLS * COLS];
} Case;

static Case *make_case(void) {
    Case *c = calloc(1, sizeof *c);
    make_inputs(c->x, TOKENS, COLS);
    make_weights(c->w, ROWS, COLS);
    reference_hessian(c->x, TOKENS, COLS, c->h);
    for (int i = 0; i < COLS; i++) c->importance[i] = (float)c->h[(size_t)i * COLS + i];
    memcpy(c->w_live, c->w, sizeof c->w_live);
    reference_damped(c->h, COLS, c->w_live, ROWS, c->damped);
    reference_obs_rows(c->damped, COLS, c->obs);
    return c;
}

// export's code: the matrix rounded with job on a pool of n_threads.
static void run_export(const Case *c, const MatrixJob *job, int n_threads, float *w, uint8_t *codes, uint16_t *scales) {
    ThreadPool *pool = pool_create(n_threads);
    InverseHessian ih = { 0 };
    if (needs_inverse_hessian(job)) ih = invert_hessian(pool, input_hessian(pool, c->x, TOKENS, COLS), COLS, "test");
    memcpy(w, c->w, sizeof c->w);
    round_matrix(pool, w, ROWS, COLS, ih.u ? &ih : NULL, c->importance, job, codes, scales);
    free_inverse_hessian(&ih);
    pool_free(pool);
}

static void test_hessian_and_factor(const Case *c) {
    ThreadPool *pool = pool_create(3);
    double *h = input_hessian(pool, c->x, TOKENS, COLS), worst = 0;
    for (int i = 0; i < COLS; i++)   // relative to the entry's scale, sqrt(H_ii H_jj)
        for (int j = 0; j < COLS; j++)
            worst = fmax(worst, fabs(h[i * COLS + j] - c->h[i * COLS + j]) / (sqrt(c->h[i * COLS + i] * c->h[j * COLS + j]) + 1e-30));
    CHECK(worst < 1e-5, "the Hessian differs from float64's by %g (relative)", worst);
    double *exact = malloc(sizeof c->h);   // the factor of the float64 H, held to the float64 OBS rows
    memcpy(exact, c->h, sizeof c->h);
    InverseHessian ih = invert_hessian(pool, exact, COLS, "test");   // takes exact
    free(h);
    const float *u = ih.u;
    CHECK(ih.dead[11] && !ih.dead[10], "the column no input reaches is dead, and only it");
    // U upper with U^T U = H^-1: (U^T U) H = I; and its rows are the OBS rows over sqrt(R_ii)
    double off = 0, rows_off = 0;
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++) {
            double sum = 0;
            for (int k = 0; k < COLS; k++) {
                double uu = 0;
                for (int m = 0; m <= (i < k ? i : k); m++) uu += (double)u[(size_t)m * COLS + i] * u[(size_t)m * COLS + k];
                sum += uu * c->damped[(size_t)k * COLS + j];
            }
            off = fmax(off, fabs(sum - (i == j)));
            if (j >= i) rows_off = fmax(rows_off, fabs(u[(size_t)i * COLS + j] - c->obs[(size_t)i * COLS + j] / sqrt(c->obs[(size_t)i * COLS + i]))
                                                  / sqrt(c->obs[(size_t)i * COLS + i]));
            if (j < i) off = fmax(off, fabs(u[(size_t)i * COLS + j]));   // upper: zeros below the diagonal
        }
    CHECK(off < 1e-4, "U^T U H is I within %g", off);
    CHECK(rows_off < 1e-4, "U's rows are the OBS rows / sqrt(R_ii) within %g", rows_off);
    printf("  Hessian within %.1e of float64; U^T U H = I within %.1e; U = OBS rows within %.1e\n", worst, off, rows_off);
    free_inverse_hessian(&ih);
    pool_free(pool);
}

static void dequantize_all(const uint8_t *codes, const uint16_t *scales, int type, float *out) {
    Tensor t = { .type = type, .rows = ROWS, .cols = COLS, .cols_padded = COLS, .group_size = GROUP, .codes = codes, .scales = scales };
    for (int r = 0; r < ROWS; r++) dequantize_row(out + (size_t)r * COLS, &t, r);
}

// GPTQ at int4: the levels of the float64 reference but for a few flips at
// rounding ties, the same output error, well below calibrated rounding's;
// int3, int2 and int8 below calibrated rounding too.
static void test_gptq(const Case *c) {
    static int levels[ROWS * COLS];
    static uint8_t pruned[ROWS * COLS], codes[ROWS * COLS];
    static uint16_t scales[ROWS * COLS / GROUP];
    static float ref_w[ROWS * COLS], w[ROWS * COLS], q[ROWS * COLS];
    memcpy(ref_w, c->w_live, sizeof ref_w);
    reference_loop(ref_w, ROWS, COLS, c->obs, c->importance, 0, 0, 1, levels, pruned);
    MatrixJob job = { TYPE_Q4, GROUP, 1, { PRUNE_NONE, 0, 0 } };
    run_export(c, &job, 3, w, codes, scales);
    dequantize_all(codes, scales, TYPE_Q4, q);
    int flips = 0, w_mismatch = 0;
    Tensor t = { .type = TYPE_Q4, .rows = ROWS, .cols = COLS, .cols_padded = COLS, .group_size = GROUP, .codes = codes, .scales = scales };
    uint8_t gathered[16];
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < COLS; i++) {
            flips += level_q4(row_block(&t, r, i / 32, gathered), i % 32) != levels[(size_t)r * COLS + i];
            w_mismatch += w[(size_t)r * COLS + i] != q[(size_t)r * COLS + i];
        }
    double e_ref = output_error(c->w, ref_w, ROWS, COLS, c->h), e_gptq = output_error(c->w, q, ROWS, COLS, c->h);
    CHECK(flips <= ROWS * COLS / 200, "GPTQ int4: %d of %d levels differ from the float64 reference's", flips, ROWS * COLS);
    CHECK(fabs(e_gptq - e_ref) <= 1e-3 * e_ref, "GPTQ int4 output error %.6g, the float64 reference's %.6g", e_gptq, e_ref);
    CHECK(w_mismatch == 0, "GPTQ: the weights it returns are not its codes dequantized (%d differ)", w_mismatch);
    printf("  GPTQ int4 against float64: %d of %d levels differ, output error %.6g against %.6g\n", flips, ROWS * COLS, e_gptq, e_ref);
    static const uint32_t types[] = { TYPE_Q8, TYPE_Q4, TYPE_Q3, TYPE_Q2 };
    for (int k = 0; k < 4; k++) {
        MatrixJob gptq = { (int)types[k], GROUP, 1, { PRUNE_NONE, 0, 0 } };
        run_export(c, &gptq, 2, w, codes, scales);
        dequantize_all(codes, scales, (int)types[k], q);
        double e_g = output_error(c->w, q, ROWS, COLS, c->h);
        for (int r = 0; r < ROWS; r++)
            quantize_row(types[k], c->w + (size_t)r * COLS, c->importance, COLS, COLS, GROUP,
                         codes + (size_t)r * row_code_bytes(quant_layout(types[k]), COLS), scales + (size_t)r * (COLS / GROUP));
        dequantize_all(codes, scales, (int)types[k], q);
        double e_rtn = output_error(c->w, q, ROWS, COLS, c->h);
        CHECK(e_g < 0.9 * e_rtn, "%s: GPTQ's output error %.6g is not below calibrated rounding's %.6g", quant_layout(types[k])->name,
              e_g, e_rtn);
        printf("  %s output error: GPTQ %.5g, calibrated rounding %.5g (%.0f %% less)\n", quant_layout(types[k])->name, e_g, e_rtn,
               100 * (1 - e_g / e_rtn));
    }
}

// SparseGPT (pruning alone, fp32 kept weights, and joint with int4): the
// reference's masks but for a few near-ties, its output error; half of each
// block's weights exactly (or two of every four); far less error than the
// same mask without the updates.
static void test_sparsegpt(const Case *c, int two_of_four, int quantized) {
    static int levels[ROWS * COLS];
    static uint8_t pruned[ROWS * COLS], codes[ROWS * COLS];
    static uint16_t scales[ROWS * COLS / GROUP];
    static float ref_w[ROWS * COLS], w[ROWS * COLS], q[ROWS * COLS];
    memcpy(ref_w, c->w_live, sizeof ref_w);
    reference_loop(ref_w, ROWS, COLS, c->obs, c->importance, two_of_four ? 2 : 1, 0.5, quantized, levels, pruned);
    MatrixJob job = { quantized ? TYPE_Q4 : TYPE_F32, GROUP, quantized, { PRUNE_SPARSEGPT, two_of_four, 0.5 } };
    run_export(c, &job, 3, w, codes, scales);
    if (quantized) dequantize_all(codes, scales, TYPE_Q4, q);
    else memcpy(q, w, sizeof q);
    int disagree = 0, zeros = 0, bad_quads = 0;
    for (int i = 0; i < ROWS * COLS; i++) {   // zero: pruned, or a kept weight rounded to level 0
        disagree += (q[i] == 0) != (pruned[i] || (quantized && levels[i] == 0));
        zeros += q[i] == 0;
    }
    for (int r = 0; r < ROWS && two_of_four; r++)
        for (int quad = 0; quad < COLS; quad += 4) {
            int nonzero = 0;
            for (int i = quad; i < quad + 4; i++) nonzero += q[(size_t)r * COLS + i] != 0;
            bad_quads += nonzero > 2;
        }
    // the mask's own error without SparseGPT's updates: the pruned weights simply zeroed
    static float masked[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) masked[i] = q[i] == 0 ? 0 : c->w[i];
    double e_ref = output_error(c->w, ref_w, ROWS, COLS, c->h), e = output_error(c->w, q, ROWS, COLS, c->h);
    double e_masked = output_error(c->w, masked, ROWS, COLS, c->h);
    const char *what = two_of_four ? (quantized ? "SparseGPT 2:4 + GPTQ int4" : "SparseGPT 2:4") : (quantized ? "SparseGPT 50 % + GPTQ int4" : "SparseGPT 50 %");
    CHECK(disagree <= ROWS * COLS / 200, "%s: %d weights pruned differently from the float64 reference", what, disagree);
    CHECK(fabs(e - e_ref) <= 1e-3 * e_ref, "%s: output error %.6g, the float64 reference's %.6g", what, e, e_ref);
    CHECK(two_of_four ? bad_quads == 0 : zeros >= ROWS * COLS / 2, "%s: %d quads keep more than two; %d zeros of %d", what,
          bad_quads, zeros, ROWS * COLS);
    CHECK(quantized || e < 0.7 * e_masked, "%s: error %.6g, not well below the mask alone's %.6g", what, e, e_masked);
    printf("  %s against float64: %d weights pruned differently, output error %.6g against %.6g (the mask without updates: %.6g)\n",
           what, disagree, e, e_ref, e_masked);
}

// Wanda: no update; each row's weights of least |w| * ||x|| go, exactly the
// row's half (or two of every four), and the rest are untouched.
static void test_wanda(const Case *c, int two_of_four) {
    static float w[ROWS * COLS];
    MatrixJob job = { TYPE_F32, GROUP, 0, { PRUNE_WANDA, two_of_four, 0.5 } };
    run_export(c, &job, 2, w, NULL, NULL);
    int changed = 0, wrong_count = 0, wrong_choice = 0;
    for (int r = 0; r < ROWS; r++) {
        const float *a = c->w + (size_t)r * COLS, *b = w + (size_t)r * COLS;
        int zeros = 0;
        for (int i = 0; i < COLS; i++) { changed += b[i] != 0 && b[i] != a[i]; zeros += b[i] == 0; }
        int span = two_of_four ? 4 : COLS;
        for (int start = 0; start < COLS; start += span) {
            int pruned_here = 0;
            for (int i = start; i < start + span; i++) {
                pruned_here += b[i] == 0;
                for (int j = start; j < start + span; j++)   // a pruned weight scores no more than a kept one
                    if (b[i] == 0 && b[j] != 0 && a[i] * a[i] * c->importance[i] > a[j] * a[j] * c->importance[j]) wrong_choice++;
            }
            if (two_of_four && pruned_here != 2) wrong_count++;
        }
        if (!two_of_four && zeros != COLS / 2) wrong_count++;
    }
    CHECK(changed == 0, "Wanda changed %d kept weights", changed);
    CHECK(wrong_count == 0, "Wanda %s: %d rows or quads not pruned by exactly the share", two_of_four ? "2:4" : "50 %", wrong_count);
    CHECK(wrong_choice == 0, "Wanda: %d pruned weights score more than a kept one", wrong_choice);
}

// GPTQ into 2:4 sparse int4 (q4s): two of every four kept (Wanda's choice,
// as q4s makes without --prune), and its output error below q4s's plain rounding.
static void test_gptq_q4s(const Case *c) {
    static uint8_t codes[ROWS * COLS];
    static uint16_t scales[ROWS * COLS / GROUP];
    static float w[ROWS * COLS], q[ROWS * COLS];
    MatrixJob job = { TYPE_Q4S, GROUP, 1, { PRUNE_NONE, 0, 0 } };
    run_export(c, &job, 3, w, codes, scales);
    dequantize_all(codes, scales, TYPE_Q4S, q);
    int bad = 0;
    for (int r = 0; r < ROWS; r++)
        for (int quad = 0; quad < COLS; quad += 4) {
            int nonzero = 0;
            for (int i = quad; i < quad + 4; i++) nonzero += q[(size_t)r * COLS + i] != 0;
            bad += nonzero > 2;
        }
    double e_g = output_error(c->w, q, ROWS, COLS, c->h);
    for (int r = 0; r < ROWS; r++)
        quantize_row(TYPE_Q4S, c->w + (size_t)r * COLS, c->importance, COLS, COLS, GROUP, codes + (size_t)r * (COLS / 32 * 12),
                     scales + (size_t)r * (COLS / GROUP));
    dequantize_all(codes, scales, TYPE_Q4S, q);
    double e_rtn = output_error(c->w, q, ROWS, COLS, c->h);
    CHECK(bad == 0, "GPTQ q4s: %d quads keep more than two weights", bad);
    CHECK(e_g < 0.8 * e_rtn, "GPTQ q4s output error %.6g, plain q4s rounding's %.6g", e_g, e_rtn);
}

// The same codes for 1, 2 and 5 threads.
static void test_threads(const Case *c) {
    static uint8_t codes[3][ROWS * COLS];
    static uint16_t scales[3][ROWS * COLS / GROUP];
    static float w[3][ROWS * COLS];
    const int threads[3] = { 1, 2, 5 };
    MatrixJob jobs[2] = { { TYPE_Q3, GROUP, 1, { PRUNE_NONE, 0, 0 } }, { TYPE_Q4, 64, 1, { PRUNE_SPARSEGPT, 0, 0.5 } } };
    for (int j = 0; j < 2; j++) {
        for (int k = 0; k < 3; k++) run_export(c, &jobs[j], threads[k], w[k], codes[k], scales[k]);
        for (int k = 1; k < 3; k++)
            CHECK(memcmp(codes[0], codes[k], sizeof codes[0]) == 0 && memcmp(scales[0], scales[k], sizeof scales[0]) == 0
                  && memcmp(w[0], w[k], sizeof w[0]) == 0, "job %d: %d threads round differently from 1", j, threads[k]);
    }
}

// Through export's walk (calibrate_source on a random model and a token
// stream): every decoder layer matrix of the written fp32 file keeps exactly
// two of every four weights (2:4), or exactly half of each row (Wanda 50 %)
// or of the matrix (SparseGPT 50 %); embeddings and norms are the plain
// export's; and with int4 and 2:4 the layers are written as q4s.
static void test_export_masks(void) {
    const char *shape = "dim=64,ffn=96,layers=2,heads=4,kv_heads=2,vocab=96,tied=1";
    int tokens[96];
    for (int i = 0; i < 96; i++) tokens[i] = (i * 37 + 11) % 96;
    TokenStream stream = { .tokens = tokens, .count = 96 };
    char plain_path[] = "/tmp/edge-test-gptq-plain.bin", pruned_path[] = "/tmp/edge-test-gptq-pruned.bin";
    Source src = { 0 };
    open_random(&src, shape, 5);
    write_checkpoint(&src, plain_path, TYPE_F32, 0, 1);
    free_source(&src);
    Transformer plain;
    open_checkpoint(&plain, plain_path);
    for (int method = PRUNE_WANDA; method <= PRUNE_SPARSEGPT; method++)
        for (int two_of_four = 0; two_of_four < 2; two_of_four++) {
            open_random(&src, shape, 5);
            TypeRules f32 = { .type = TYPE_F32 };
            CalibrationChoices choices = { .prune = { method, two_of_four, 0.5 } };
            calibrate_source(&src, &stream, 32, 3, "test tokens", &f32, &choices, 1);
            write_checkpoint(&src, pruned_path, TYPE_F32, 0, 1);
            free_source(&src);
            Transformer t;
            open_checkpoint(&t, pruned_path);
            int bad = 0, matrices = 0;
            for (int l = 0; l < t.config.n_layers; l++) {
                Tensor *m[7];
                layer_projections(&t.weights.layers[l], m);
                for (int k = 0; k < 7; k++, matrices++) {
                    int zeros = 0;
                    for (int r = 0; r < m[k]->rows; r++) {
                        int row_zeros = 0;
                        for (int quad = 0; quad < m[k]->cols; quad += 4) {
                            int quad_zeros = 0;
                            for (int i = quad; i < quad + 4; i++) quad_zeros += m[k]->data[(size_t)r * m[k]->cols + i] == 0.0f;
                            bad += two_of_four && quad_zeros != 2;
                            row_zeros += quad_zeros;
                        }
                        bad += !two_of_four && method == PRUNE_WANDA && row_zeros != m[k]->cols / 2;
                        zeros += row_zeros;
                    }
                    bad += zeros != m[k]->rows * m[k]->cols / 2;
                }
            }
            const Tensor *e = &t.weights.tok_embeddings, *pe = &plain.weights.tok_embeddings;
            int embeddings_kept = memcmp(e->data, pe->data, sizeof(float) * (size_t)e->rows * e->cols) == 0;
            CHECK(bad == 0 && matrices == 14, "%s %s: %d matrices, rows or quads not pruned exactly",
                  method == PRUNE_WANDA ? "Wanda" : "SparseGPT", two_of_four ? "2:4" : "50 %", bad);
            CHECK(embeddings_kept, "%s: the embeddings were changed", method == PRUNE_WANDA ? "Wanda" : "SparseGPT");
            free_transformer(&t);
        }
    open_random(&src, shape, 5);   // int4 and 2:4: the layers' matrices are q4s, the embeddings int4
    TypeRules int4 = { .type = TYPE_Q4, .group_size = 32, .sparse_int4 = 1 };
    CalibrationChoices choices = { .weighted = 1, .gptq = 1, .prune = { PRUNE_SPARSEGPT, 1, 0.5 } };
    calibrate_source(&src, &stream, 32, 3, "test tokens", &int4, &choices, 1);
    write_checkpoint_with(&src, pruned_path, &int4, 1);
    free_source(&src);
    Transformer t;
    open_checkpoint(&t, pruned_path);
    CHECK(t.weights.layers[1].w2.type == TYPE_Q4S && t.weights.layers[0].wq.type == TYPE_Q4S && t.weights.tok_embeddings.type == TYPE_Q4,
          "--sparsity 2:4 with int4: layers %d, embeddings %d", t.weights.layers[1].w2.type, t.weights.tok_embeddings.type);
    CHECK(t.weights.layers[1].w2.group_size == Q4S_DEFAULT_GROUP && t.weights.tok_embeddings.group_size == 32,
          "--sparsity 2:4 with int4's group of 32: q4s's group %d (want %d), the embeddings' %d", t.weights.layers[1].w2.group_size,
          Q4S_DEFAULT_GROUP, t.weights.tok_embeddings.group_size);
    free_transformer(&t);
    free_transformer(&plain);
    unlink(plain_path);
    unlink(pruned_path);
}

int main(void) {
    Case *c = make_case();
    test_export_masks();
    test_hessian_and_factor(c);
    test_gptq(c);
    for (int two_of_four = 0; two_of_four < 2; two_of_four++)
        for (int quantized = 0; quantized < 2; quantized++) test_sparsegpt(c, two_of_four, quantized);
    test_wanda(c, 0);
    test_wanda(c, 1);
    test_gptq_q4s(c);
    test_threads(c);
    free(c);
    return check_summary("test_gptq");
}
