// test_quant.c — fp16 conversion, int4 weight and int8 activation
// quantization, and the int4 x int8 matmul against fp32, on odd shapes too.
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

static void test_q8_activations(void) {
    int n = 100, padded = 128;
    float x[100];
    for (int i = 0; i < n; i++) x[i] = uniform(-3, 3);
    QuantizedVector q = { malloc(padded), malloc(sizeof(float) * padded / 32), padded };
    quantize_row_q8(&q, x, n, padded);
    int bad = 0;
    for (int i = 0; i < padded; i++) {
        float back = q.values[i] * q.scales[i / 32];
        if (i < n ? fabsf(back - x[i]) > q.scales[i / 32] * 0.5001f : q.values[i] != 0) bad++;
    }
    CHECK(bad == 0, "int8 activations: %d values beyond half a step (or non-zero padding)", bad);
    free(q.values); free(q.scales);
}

// W (rows, cols) quantized to int4, x quantized to int8: the product must be
// close to the fp32 product with the dequantized W (only activation rounding
// differs) and, more loosely, to the product with the original W.
static void test_matmul(int rows, int cols, int group) {
    int padded = (int)round_up((size_t)cols, (size_t)group);
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * cols), *row = malloc(sizeof(float) * cols);
    uint8_t *nibbles = malloc((size_t)rows * padded / 2);
    uint16_t *scales = malloc(sizeof(uint16_t) * rows * (padded / group));
    for (int i = 0; i < rows * cols; i++) w[i] = uniform(-1, 1);
    for (int i = 0; i < cols; i++) x[i] = uniform(-2, 2);
    for (int r = 0; r < rows; r++)
        quantize_row_q4(w + (size_t)r * cols, cols, padded, group, nibbles + (size_t)r * padded / 2, scales + (size_t)r * (padded / group));
    Tensor t = { .type = TYPE_Q4, .rows = rows, .cols = cols, .cols_padded = padded, .group_size = group,
                 .nibbles = nibbles, .scales = scales };
    int capacity = (int)round_up((size_t)cols, 4096);
    QuantizedVector xq = { calloc(capacity, 1), calloc(capacity / 32, sizeof(float)), capacity };
    quantize_row_q8(&xq, x, cols, padded);
    float *out = malloc(sizeof(float) * rows);
    matmul_rows_q4(out, &t, &xq, 0, rows);
    double worst_dequant = 0, worst_original = 0, norm = 0;
    for (int r = 0; r < rows; r++) {
        dequantize_row_q4(row, &t, r);
        double exact_dequant = 0, exact_original = 0;
        for (int c = 0; c < cols; c++) {
            exact_dequant += (double)row[c] * x[c];
            exact_original += (double)w[(size_t)r * cols + c] * x[c];
        }
        worst_dequant = fmax(worst_dequant, fabs(out[r] - exact_dequant));
        worst_original = fmax(worst_original, fabs(out[r] - exact_original));
        norm = fmax(norm, fabs(exact_original));
    }
    // int8 rounding: each product is off by <= |w| * step/2, summed: about sqrt(cols) * 2/127 * 0.5
    double bound_dequant = 0.02 * sqrt((double)cols) + 1e-4;
    double bound_original = 0.2 * sqrt((double)cols) + 1e-3;
    CHECK(worst_dequant <= bound_dequant, "matmul %dx%d g%d vs dequantized fp32: error %.5f > %.5f", rows, cols, group,
          worst_dequant, bound_dequant);
    CHECK(worst_original <= bound_original, "matmul %dx%d g%d vs original fp32: error %.5f > %.5f (largest |y| %.3f)",
          rows, cols, group, worst_original, bound_original, norm);
    free(w); free(x); free(row); free(nibbles); free(scales); free(xq.values); free(xq.scales); free(out);
}

int main(void) {
    test_fp16();
    test_q4_round_trip();
    test_q8_activations();
    int shapes[][3] = { { 1, 32, 32 }, { 3, 33, 32 }, { 7, 172, 32 }, { 64, 172, 64 }, { 17, 288, 32 },
                        { 5, 1000, 128 }, { 9, 2048, 32 }, { 2, 5, 32 } };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) test_matmul(shapes[i][0], shapes[i][1], shapes[i][2]);
    return check_summary("test_quant");
}
