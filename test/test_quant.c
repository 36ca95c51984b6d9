// test_quant.c — fp16 conversion, int4 weight and int8 activation
// quantization, the int4 x int8 matmul against fp32 on odd shapes, and every
// SIMD kernel set this CPU runs against the scalar reference.
#define TESTING
#include "../export.c"
#include "check.h"

static uint64_t rng = 12345;
static float uniform(float lo, float hi) {   // splitmix64-based, reproducible
    return lo + (hi - lo) * (float)(splitmix64(&rng) >> 40) / 16777216.0f;
}

static void test_fp16(void) {
    int mismatches = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_fp32((uint16_t)h);
        if (isnan(f)) continue;
        if (fp32_to_fp16(f) != h) mismatches++;
    }
    CHECK(mismatches == 0, "fp16 -> fp32 -> fp16 is not the identity for %d values", mismatches);
    CHECK(fp16_to_fp32(0x3C00) == 1.0f && fp16_to_fp32(0xC000) == -2.0f && fp16_to_fp32(0x0001) == 5.9604644775390625e-8f,
          "fp16 decode of 1, -2, smallest subnormal");
    CHECK(fp32_to_fp16(1.0f + 1.0f / 2048) == 0x3C00, "a tie rounds to even (down), got 0x%04x", fp32_to_fp16(1.0f + 1.0f / 2048));
    CHECK(fp32_to_fp16(1.0f + 3.0f / 2048) == 0x3C02, "a tie rounds to even (up), got 0x%04x", fp32_to_fp16(1.0f + 3.0f / 2048));
    CHECK(fp32_to_fp16(1e6f) == 0x7C00 && fp32_to_fp16(-1e6f) == 0xFC00, "overflow gives infinity");
}

// The scheme's promise: a weight inside the range the scale covers comes back
// within half a step (scale/2); the search may clip a rare extreme, but only
// when that lowers the group's squared error, so every group's error is at
// most that of ggml's Q4_0 scale (extreme / -8).
static void test_q4_round_trip(void) {
    int lengths[] = { 1, 7, 31, 32, 33, 64, 100, 172, 257, 4103 };
    int group_sizes[] = { 32, 64, 128 };
    for (size_t g = 0; g < 3; g++) for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        int n = lengths[li], group = group_sizes[g], padded = (int)round_up((size_t)n, (size_t)group);
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        uint8_t *nibbles = malloc((size_t)padded / 2);
        uint16_t *scales = malloc(sizeof(uint16_t) * (padded / group));
        for (int i = 0; i < n; i++) x[i] = uniform(-1, 1) * (i % 17 == 0 ? 8.0f : 1.0f);
        quantize_row_q4(x, n, padded, group, nibbles, scales);
        Tensor t = { .type = TYPE_Q4, .rows = 1, .cols = n, .cols_padded = padded, .group_size = group,
                     .nibbles = nibbles, .scales = scales };
        dequantize_row_q4(y, &t, 0);
        int bad = 0, worse_than_q4_0 = 0;
        for (int i = 0; i < n; i++) {
            float scale = fp16_to_fp32(scales[i / group]);
            float position = x[i] / scale;   // in steps; the range is [-8, 7]
            if (position >= -8.5f && position <= 7.5f && fabsf(x[i] - y[i]) > 0.5001f * fabsf(scale) + 1e-7f) bad++;
        }
        for (int start = 0; start < n; start += group) {
            int count = n - start < group ? n - start : group;
            float extreme = 0, error = 0;
            for (int i = start; i < start + count; i++) {
                if (fabsf(x[i]) > fabsf(extreme)) extreme = x[i];
                error += (x[i] - y[i]) * (x[i] - y[i]);
            }
            float q4_0 = q4_group_error(x + start, count, fp16_to_fp32(fp32_to_fp16(extreme / -8.0f)));
            if (error > q4_0 * 1.0001f + 1e-12f) worse_than_q4_0++;
        }
        int padding_ok = 1;   // padded weights are zero: nibble 8
        for (int i = n; i < padded; i++) {
            uint8_t byte = nibbles[(i / 32) * 16 + (i % 16)];
            padding_ok &= ((i % 32) < 16 ? (byte & 15) : (byte >> 4)) == 8;
        }
        CHECK(bad == 0, "q4 round trip n=%d group=%d: %d in-range weights beyond half a step", n, group, bad);
        CHECK(worse_than_q4_0 == 0, "q4 n=%d group=%d: %d groups with more error than the Q4_0 scale", n, group, worse_than_q4_0);
        CHECK(padding_ok, "q4 padding n=%d group=%d is not zero", n, group);
        free(x); free(y); free(nibbles); free(scales);
    }
    // an all-zero group has scale 0 and dequantizes to exact zeros
    float zeros[32] = { 0 }, back[32];
    uint8_t nibbles[16];
    uint16_t scale;
    quantize_row_q4(zeros, 32, 32, 32, nibbles, &scale);
    Tensor t = { .type = TYPE_Q4, .rows = 1, .cols = 32, .cols_padded = 32, .group_size = 32, .nibbles = nibbles, .scales = &scale };
    dequantize_row_q4(back, &t, 0);
    int all_zero = 1;
    for (int i = 0; i < 32; i++) all_zero &= back[i] == 0.0f;
    CHECK(all_zero, "an all-zero group does not come back as zeros");
}

static QuantizedActivations new_activations(int stride) {
    QuantizedActivations q = { calloc((size_t)MAX_BATCH * stride, 1), calloc((size_t)MAX_BATCH * stride / 32, sizeof(float)),
                               calloc((size_t)MAX_BATCH * stride / 32, sizeof(int32_t)), stride };
    return q;
}

static void test_q8_activations(void) {
    int n = 100, padded = 128;
    float x[2 * 100];
    for (int i = 0; i < 2 * n; i++) x[i] = uniform(-3, 3);
    QuantizedActivations q = new_activations(256);
    quantize_q8(&q, x, n, n, padded, 2);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < padded; i++) {
            int8_t v = q.values[t * q.stride + i];
            float step = q.scales[t * (q.stride / 32) + i / 32];
            if (i < n ? fabsf(v * step - x[t * n + i]) > step * 0.5001f : v != 0) bad++;
        }
    CHECK(bad == 0, "int8 activations: %d values beyond half a step (or non-zero padding)", bad);
    free(q.values); free(q.scales); free(q.sums);
}

typedef struct {
    Tensor t;                 // tiled, as export writes it
    float *w;                 // (rows, cols) the original weights
    uint8_t *rows_nibbles;    // the same Q4 data row after row (quantize_row_q4's order)
    uint16_t *rows_scales;
} Matrix;

// fill: 0 random, 1 all nibbles 0 (q = -8), 2 all nibbles 15 (q = +7), 3 zero scales, 4 alternating extremes
static Matrix make_matrix(int rows, int cols, int group, int fill) {
    Matrix m;
    int padded = (int)round_up((size_t)cols, (size_t)group);
    m.w = malloc(sizeof(float) * rows * cols);
    uint8_t *nibbles = malloc((size_t)rows * padded / 2);
    uint16_t *scales = malloc(sizeof(uint16_t) * rows * (padded / group));
    for (int i = 0; i < rows * cols; i++) m.w[i] = uniform(-1, 1);
    for (int r = 0; r < rows; r++)
        quantize_row_q4(m.w + (size_t)r * cols, cols, padded, group, nibbles + (size_t)r * padded / 2, scales + (size_t)r * (padded / group));
    if (fill == 1 || fill == 2) memset(nibbles, fill == 1 ? 0x00 : 0xFF, (size_t)rows * padded / 2);
    if (fill == 3) memset(scales, 0, sizeof(uint16_t) * rows * (padded / group));
    if (fill == 4) for (size_t i = 0; i < (size_t)rows * padded / 2; i++) nibbles[i] = i % 2 ? 0x0F : 0xF0;
    size_t rows_stored = round_up((size_t)rows, Q4_TILE_ROWS);   // the file's order: tiles of eight rows
    uint8_t *tiled_nibbles = malloc(rows_stored * padded / 2);
    uint16_t *tiled_scales = malloc(sizeof(uint16_t) * rows_stored * (padded / group));
    tile_q4_rows(nibbles, scales, 0, rows, padded, group, tiled_nibbles, tiled_scales);
    m.t = (Tensor){ .type = TYPE_Q4, .rows = rows, .cols = cols, .cols_padded = padded, .group_size = group,
                    .q4_tiled = 1, .nibbles = tiled_nibbles, .scales = tiled_scales };
    m.rows_nibbles = nibbles;
    m.rows_scales = scales;
    return m;
}

static void free_matrix(Matrix *m) {
    free(m->w); free((void *)m->t.nibbles); free((void *)m->t.scales); free(m->rows_nibbles); free(m->rows_scales);
}

// The tiled order holds the same weights as the row order: every row
// dequantizes alike through either, and tile t's block b starts with row 8t's
// bytes 0..3 and has row 8t+j's bytes 4d..4d+3 at 32d + 4j (the format).
static void test_tile_layout(int rows, int cols, int group) {
    Matrix m = make_matrix(rows, cols, group, 0);
    Tensor by_rows = m.t;
    by_rows.q4_tiled = 0;
    by_rows.nibbles = m.rows_nibbles;
    by_rows.scales = m.rows_scales;
    float *a = malloc(sizeof(float) * cols), *b = malloc(sizeof(float) * cols);
    int same = 1, n_blocks = m.t.cols_padded / Q_BLOCK;
    for (int r = 0; r < rows; r++) {
        dequantize_row_q4(a, &m.t, r);
        dequantize_row_q4(b, &by_rows, r);
        same &= memcmp(a, b, sizeof(float) * cols) == 0;
        for (int blk = 0; blk < n_blocks; blk++)
            for (int p = 0; p < Q_BLOCK / 2; p++) {
                size_t at = ((size_t)(r / 8) * n_blocks + blk) * 128 + 32 * (p / 4) + 4 * (r % 8) + p % 4;
                same &= m.t.nibbles[at] == m.rows_nibbles[((size_t)r * n_blocks + blk) * 16 + p];
            }
    }
    CHECK(same, "tiled Q4 %dx%d g%d: not the row order's weights in the documented places", rows, cols, group);
    free_matrix(&m); free(a); free(b);
}

// x: 0 random, 1 all +127 after quantization, 2 all -127, 3 zeros
static void make_inputs(QuantizedActivations *q, float *x, int n_tokens, int cols, int padded, int fill) {
    for (int i = 0; i < n_tokens * cols; i++) x[i] = fill == 0 ? uniform(-2, 2) : fill == 1 ? 1.0f : fill == 2 ? -1.0f : 0.0f;
    quantize_q8(q, x, cols, cols, padded, n_tokens);
}

// W (rows, cols) quantized to int4, x quantized to int8: the reference product
// must be close to the fp32 product with the dequantized W (only activation
// rounding differs) and, more loosely, to the product with the original W.
static void test_matmul_reference(int rows, int cols, int group) {
    Matrix m = make_matrix(rows, cols, group, 0);
    float *x = malloc(sizeof(float) * cols), *row = malloc(sizeof(float) * cols), *out = malloc(sizeof(float) * rows);
    QuantizedActivations xq = new_activations((int)round_up((size_t)cols, MAX_GROUP_SIZE));
    make_inputs(&xq, x, 1, cols, m.t.cols_padded, 0);
    matmul_q4_ref(out, rows, &m.t, 0, rows, &xq, 1);
    double worst_dequant = 0, worst_original = 0;
    for (int r = 0; r < rows; r++) {
        dequantize_row_q4(row, &m.t, r);
        double exact_dequant = 0, exact_original = 0;
        for (int c = 0; c < cols; c++) {
            exact_dequant += (double)row[c] * x[c];
            exact_original += (double)m.w[(size_t)r * cols + c] * x[c];
        }
        worst_dequant = fmax(worst_dequant, fabs(out[r] - exact_dequant));
        worst_original = fmax(worst_original, fabs(out[r] - exact_original));
    }
    // int8 rounding: each product is off by <= |w| * step/2, summed: about sqrt(cols) * 2/127 * 0.5
    double bound_dequant = 0.02 * sqrt((double)cols) + 1e-4, bound_original = 0.2 * sqrt((double)cols) + 1e-3;
    CHECK(worst_dequant <= bound_dequant, "matmul %dx%d g%d vs dequantized fp32: error %.5f > %.5f", rows, cols, group,
          worst_dequant, bound_dequant);
    CHECK(worst_original <= bound_original, "matmul %dx%d g%d vs original fp32: error %.5f > %.5f", rows, cols, group,
          worst_original, bound_original);
    free_matrix(&m); free(x); free(row); free(out); free(xq.values); free(xq.scales); free(xq.sums);
}

// Each SIMD kernel set against the scalar one, which it must equal bit for
// bit (they share one canonical arithmetic): random and adversarial weights
// and inputs, odd widths, 1..9 tokens; and a token's result must not depend
// on how many tokens share the call (prefill and decode agree bit for bit).
static void test_kernels_against_reference(const Kernels *k, const Kernels *ref) {
    int shapes[][3] = { { 5, 32, 32 }, { 7, 172, 32 }, { 9, 288, 64 }, { 19, 1000, 128 }, { 4, 2048, 32 }, { 2, 64, 256 },
                        { 24, 320, 32 } };
    int worst_fill = -1;
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int wfill = 0; wfill <= 4; wfill++)
            for (int xfill = 0; xfill <= 3; xfill++) {
                int rows = shapes[s][0], cols = shapes[s][1], group = shapes[s][2], n_tokens = 1 + (int)(s + wfill + xfill) % 9;
                Matrix m = make_matrix(rows, cols, group, wfill);
                QuantizedActivations xq = new_activations((int)round_up((size_t)cols, MAX_GROUP_SIZE));
                float *x = malloc(sizeof(float) * cols * n_tokens);
                float *want = calloc((size_t)rows * n_tokens, sizeof(float)), *got = calloc((size_t)rows * n_tokens, sizeof(float));
                float *alone = calloc((size_t)rows, sizeof(float));
                make_inputs(&xq, x, n_tokens, cols, m.t.cols_padded, xfill);
                ref->matmul_q4(want, rows, &m.t, 0, rows, &xq, n_tokens);
                int split = rows > Q4_TILE_ROWS ? Q4_TILE_ROWS : rows;   // a split (by whole tiles) must not matter
                k->matmul_q4(got, rows, &m.t, split, rows, &xq, n_tokens);
                k->matmul_q4(got, rows, &m.t, 0, split, &xq, n_tokens);
                for (int i = 0; i < rows * n_tokens; i++) {
                    double error = fabs(got[i] - want[i]);
                    if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && error >= worst) {
                        worst = fmax(error, 1e-30); worst_fill = wfill * 10 + xfill;
                    }
                }
                QuantizedActivations last = xq;   // the last token alone
                last.values += (size_t)(n_tokens - 1) * xq.stride;
                last.scales += (size_t)(n_tokens - 1) * (xq.stride / 32);
                last.sums += (size_t)(n_tokens - 1) * (xq.stride / 32);
                k->matmul_q4(alone, 1, &m.t, 0, rows, &last, 1);
                CHECK(memcmp(alone, got + (size_t)(n_tokens - 1) * rows, sizeof(float) * rows) == 0,
                      "%s: token %d's result changes when computed alone (shape %dx%d, fill %d/%d)", k->name, n_tokens - 1,
                      rows, cols, wfill, xfill);
                free_matrix(&m); free(x); free(want); free(got); free(alone); free(xq.values); free(xq.scales); free(xq.sums);
            }
    CHECK(worst == 0, "%s matmul_q4 is not bit-identical to %s: off by up to %g (weights fill %d, inputs fill %d)",
          k->name, ref->name, worst, worst_fill / 10, worst_fill % 10);

    // attention: scores and mixes over 1..70 positions of odd and usual head widths
    int widths[] = { 1, 7, 8, 9, 33, 48, 64, 100, 128 };
    for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++) {
        int n = widths[wi], positions = 1 + (int)(wi * 9) % 70, stride = n + 5;
        float q[128], weights[70], scores_ref[70], scores_k[70], mix_ref[128], mix_k[128];
        uint16_t cache[70 * 133];
        for (int i = 0; i < n; i++) q[i] = uniform(-1, 1);
        for (int i = 0; i < positions * stride; i++) cache[i] = fp32_to_fp16(uniform(-4, 4));
        for (int p = 0; p < positions; p++) weights[p] = uniform(0, 1);
        ref->scores_f16(scores_ref, q, cache, stride, positions, n);
        k->scores_f16(scores_k, q, cache, stride, positions, n);
        CHECK(memcmp(scores_ref, scores_k, sizeof(float) * positions) == 0,
              "%s scores_f16 (width %d, %d positions) is not bit-identical to the reference", k->name, n, positions);
        ref->mix_f16(mix_ref, weights, cache, stride, positions, n);
        k->mix_f16(mix_k, weights, cache, stride, positions, n);
        CHECK(memcmp(mix_ref, mix_k, sizeof(float) * n) == 0,
              "%s mix_f16 (width %d, %d positions) is not bit-identical to the reference", k->name, n, positions);
        // the int8 cache (-k q8): the same cases, the full int8 range, a scale per row (3 apart, as heads are)
        int8_t cache_q8[70 * 133];
        float scales[70 * 3];
        for (int i = 0; i < positions * stride; i++) cache_q8[i] = (int8_t)lrintf(uniform(-127, 127));
        for (int p = 0; p < positions * 3; p++) scales[p] = uniform(0, 0.05f);
        ref->scores_q8(scores_ref, q, cache_q8, scales, stride, 3, positions, n);
        k->scores_q8(scores_k, q, cache_q8, scales, stride, 3, positions, n);
        CHECK(memcmp(scores_ref, scores_k, sizeof(float) * positions) == 0,
              "%s scores_q8 (width %d, %d positions) is not bit-identical to the reference", k->name, n, positions);
        ref->mix_q8(mix_ref, weights, cache_q8, scales, stride, 3, positions, n);
        k->mix_q8(mix_k, weights, cache_q8, scales, stride, 3, positions, n);
        CHECK(memcmp(mix_ref, mix_k, sizeof(float) * n) == 0,
              "%s mix_q8 (width %d, %d positions) is not bit-identical to the reference", k->name, n, positions);
    }
    printf("  kernels %s vs %s: bit-identical on %s\n", k->name, ref->name, worst == 0 ? "every case" : "NOT every case");
}

int main(void) {
    test_fp16();
    test_q4_round_trip();
    test_q8_activations();
    int shapes[][3] = { { 1, 32, 32 }, { 3, 33, 32 }, { 7, 172, 32 }, { 64, 172, 64 }, { 17, 288, 32 },
                        { 5, 1000, 128 }, { 9, 2048, 32 }, { 2, 5, 32 } };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        test_matmul_reference(shapes[i][0], shapes[i][1], shapes[i][2]);
        test_tile_layout(shapes[i][0], shapes[i][1], shapes[i][2]);
    }
    Kernels sets[MAX_KERNEL_SETS];
    int n_sets = runnable_kernels(sets);
    for (int i = 1; i < n_sets; i++) test_kernels_against_reference(&sets[i], &sets[0]);
    if (n_sets == 1) SKIP("this CPU runs only the scalar kernels: no SIMD kernel tested here");
    return check_summary("test_quant");
}
