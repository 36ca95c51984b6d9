// test_quant.c — fp16 conversion, weight (int8, int4, int3, int2, 2:4 sparse
// int4) and int8 activation quantization, each type's matmul against fp32 on
// odd shapes, and every SIMD kernel set this CPU runs against the scalar
// reference, type by type.
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

static const uint32_t weight_types[] = { TYPE_Q8, TYPE_Q4, TYPE_Q3, TYPE_Q2 };   // the dense ones
#define N_WEIGHT_TYPES 4
static const uint32_t kernel_types[] = { TYPE_Q8, TYPE_Q4, TYPE_Q3, TYPE_Q2, TYPE_Q4S };   // every type a kernel runs
#define N_KERNEL_TYPES 5

static size_t code_bytes(uint32_t type, int rows, int padded) { return (size_t)rows * row_code_bytes(quant_layout(type), (uint64_t)padded); }

// search_scale's twin, one candidate at a time: a group's squared error at
// a scale, each weight's weighted by importance[i] (NULL: 1).
static float group_error(const QuantLayout *layout, const float *x, const float *importance, int n, float scale) {
    float inverse = scale != 0.0f ? 1.0f / scale : 0.0f, error = 0.0f;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * (float)quant_level(layout, x[i], inverse);
        error += importance ? importance[i] * diff * diff : diff * diff;
    }
    return error;
}

static uint16_t search_scale_one_at_a_time(const QuantLayout *layout, const float *x, const float *importance, int count) {
    float extreme = 0.0f;
    for (int i = 0; i < count; i++)
        if (fabsf(x[i]) > fabsf(extreme)) extreme = x[i];
    float lo = (float)layout->lo;
    uint16_t best = fp32_to_fp16(extreme / lo);
    float best_error = group_error(layout, x, importance, count, fp16_to_fp32(best));
    for (int step = -12; step <= 6 && extreme != 0.0f; step++) {
        uint16_t candidate = fp32_to_fp16(extreme / (lo * (1.0f + (float)step / 32.0f)));
        float error = group_error(layout, x, importance, count, fp16_to_fp32(candidate));
        if (error < best_error) { best_error = error; best = candidate; }
    }
    return best;
}

// The vectorized search picks the scale the one-at-a-time search does, on
// groups of every length and scale of magnitude: fp16's subnormals and
// overflow, zeros, one weight alone, ties of equal magnitude, and random
// importance.
static void test_search_scale_twin(uint32_t type) {
    const QuantLayout *layout = quant_layout(type);
    static const float magnitudes[] = { 1.0f, 1e-9f, 3e-8f, 1e-5f, 0.02f, 300.0f, 70000.0f, 1e6f };
    float x[256], importance[256];
    int mismatches = 0, groups = 0;
    for (int trial = 0; trial < 3000; trial++) {
        int count = trial % 7 == 0 ? 1 + trial % 5 : (int)(uniform(1, 257));
        if (count > 256) count = 256;
        float magnitude = magnitudes[trial % 8];
        for (int i = 0; i < count; i++) {
            x[i] = magnitude * (uniform(-1, 1) + uniform(-1, 1)) * (i % 11 == 3 ? 5.0f : 1.0f);
            if (trial % 13 == 1) x[i] = 0.0f;
            if (trial % 17 == 2) x[i] = i % 2 ? magnitude : -magnitude;   // ties of equal magnitude
            importance[i] = uniform(0, 1) < 0.1f ? 40.0f : uniform(0.0f, 2.0f);
        }
        for (int weighted = 0; weighted < 2; weighted++, groups++) {
            const float *w = weighted ? importance : NULL;
            mismatches += search_scale(layout, x, w, count) != search_scale_one_at_a_time(layout, x, w, count);
        }
    }
    CHECK(mismatches == 0, "%s: the vectorized scale search differs from the one-at-a-time one in %d of %d groups",
          layout->name, mismatches, groups);
}

// The scheme's promise, for every type: a weight inside the range the scale
// covers comes back within half a step (scale/2); the search may clip a rare
// extreme, but only when that lowers the group's squared error, so every
// group's error is at most that of ggml's Q4_0-style scale (extreme / lo).
static void test_round_trip(uint32_t type) {
    const QuantLayout *layout = quant_layout(type);
    int lengths[] = { 1, 7, 31, 32, 33, 64, 100, 172, 257, 4103 };
    int group_sizes[] = { 32, 64, 128, 256 };
    for (size_t g = 0; g < 4; g++) for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        int n = lengths[li], group = group_sizes[g], padded = (int)round_up((size_t)n, (size_t)group);
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        uint8_t *codes = malloc(code_bytes(type, 1, padded));
        uint16_t *scales = malloc(sizeof(uint16_t) * (padded / group));
        for (int i = 0; i < n; i++) x[i] = uniform(-1, 1) * (i % 17 == 0 ? 8.0f : 1.0f);
        quantize_row(type, x, NULL, n, padded, group, codes, scales);
        Tensor t = { .type = (int)type, .rows = 1, .cols = n, .cols_padded = padded, .group_size = group,
                     .codes = codes, .scales = scales };
        dequantize_row(y, &t, 0);
        int bad = 0, worse_than_extreme = 0;
        for (int i = 0; i < n; i++) {
            float scale = fp16_to_fp32(scales[i / group]);
            float position = x[i] / scale;   // in steps; the range is [lo, hi]
            if (position >= layout->lo - 0.5f && position <= layout->hi + 0.5f && fabsf(x[i] - y[i]) > 0.5001f * fabsf(scale) + 1e-7f) bad++;
        }
        for (int start = 0; start < n; start += group) {
            int count = n - start < group ? n - start : group;
            float extreme = 0, error = 0;
            for (int i = start; i < start + count; i++) {
                if (fabsf(x[i]) > fabsf(extreme)) extreme = x[i];
                error += (x[i] - y[i]) * (x[i] - y[i]);
            }
            float plain = group_error(layout, x + start, NULL, count, fp16_to_fp32(fp32_to_fp16(extreme / (float)layout->lo)));
            if (error > plain * 1.0001f + 1e-12f) worse_than_extreme++;
        }
        int padding_ok = 1;   // padded weights are zero: level 0
        for (int i = n; i < padded; i++) padding_ok &= layout->level(codes + (size_t)(i / 32) * layout->block_bytes, i % 32) == 0;
        CHECK(bad == 0, "%s round trip n=%d group=%d: %d in-range weights beyond half a step", layout->name, n, group, bad);
        CHECK(worse_than_extreme == 0, "%s n=%d group=%d: %d groups with more error than the extreme/lo scale", layout->name,
              n, group, worse_than_extreme);
        CHECK(padding_ok, "%s padding n=%d group=%d is not zero", layout->name, n, group);
        free(x); free(y); free(codes); free(scales);
    }
    // an all-zero group has scale 0 and dequantizes to exact zeros
    float zeros[32] = { 0 }, back[32];
    uint8_t codes[32];
    uint16_t scale;
    quantize_row(type, zeros, NULL, 32, 32, 32, codes, &scale);
    Tensor t = { .type = (int)type, .rows = 1, .cols = 32, .cols_padded = 32, .group_size = 32, .codes = codes, .scales = &scale };
    dequantize_row(back, &t, 0);
    int all_zero = 1;
    for (int i = 0; i < 32; i++) all_zero &= back[i] == 0.0f;
    CHECK(all_zero, "%s: an all-zero group does not come back as zeros", layout->name);
    // every level at every position survives put_level -> level, and touches no other weight
    uint8_t block[32], empty[32] = { 0 };
    int layout_ok = 1;
    for (int level = layout->lo; level <= layout->hi; level++)
        for (int j = 0; j < 32; j++) {
            memset(block, 0, sizeof block);
            layout->put_level(block, j, level);
            for (int k = 0; k < 32; k++) layout_ok &= layout->level(block, k) == (k == j ? level : layout->level(empty, k));
        }
    CHECK(layout_ok, "%s: put_level and level disagree", layout->name);
}

// Fewer bits, more error: the RMS reconstruction error of the same weights
// (bell-shaped, with outliers, as trained weights are) is strictly ordered
// int8 < int4 < int3 < int2 at every group size, and a larger group costs error.
static void test_error_order(void) {
    int n = 4096, group_sizes[] = { 32, 64, 128, 256 };
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    uint8_t *codes = malloc((size_t)n);
    uint16_t *scales = malloc(sizeof(uint16_t) * n / 32);
    for (int i = 0; i < n; i++) x[i] = (uniform(-1, 1) + uniform(-1, 1) + uniform(-1, 1)) * (i % 97 == 0 ? 4.0f : 1.0f);
    double rms[N_WEIGHT_TYPES][4];
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++)
        for (int g = 0; g < 4; g++) {
            quantize_row(weight_types[ti], x, NULL, n, n, group_sizes[g], codes, scales);
            Tensor t = { .type = (int)weight_types[ti], .rows = 1, .cols = n, .cols_padded = n, .group_size = group_sizes[g],
                         .codes = codes, .scales = scales };
            dequantize_row(y, &t, 0);
            double sum = 0;
            for (int i = 0; i < n; i++) sum += (double)(x[i] - y[i]) * (x[i] - y[i]);
            rms[ti][g] = sqrt(sum / n);
        }
    for (int g = 0; g < 4; g++) {
        CHECK(rms[0][g] > 0 && rms[0][g] < rms[1][g] && rms[1][g] < rms[2][g] && rms[2][g] < rms[3][g],
              "group %d: RMS error not ordered int8 < int4 < int3 < int2: %g %g %g %g", group_sizes[g], rms[0][g], rms[1][g],
              rms[2][g], rms[3][g]);
        for (int ti = 0; ti < N_WEIGHT_TYPES && g > 0; ti++)
            CHECK(rms[ti][g] > rms[ti][g - 1], "%s: group %d has less error than group %d", quant_layout(weight_types[ti])->name,
                  group_sizes[g], group_sizes[g - 1]);
    }
    printf("  RMS reconstruction error at group 32 (int8, int4, int3, int2): %.5f %.5f %.5f %.5f\n", rms[0][0], rms[1][0],
           rms[2][0], rms[3][0]);
    free(x); free(y); free(codes); free(scales);
}

// Calibrated rounding (export --calib): given each weight's importance (its
// input channel's mean x^2), the scale search minimises the weighted error.
// For every type: importances all 1 give the unweighted codes bit for bit; on
// a row whose importance is concentrated on a few busy channels, as
// activations are, every group's weighted error is at most the unweighted
// choice's, their sum strictly less, and the busy channels' own error falls.
static void test_importance(uint32_t type) {
    const QuantLayout *layout = quant_layout(type);
    enum { N = 4096, GROUP = 32 };
    static float x[N], importance[N], ones[N], plain[N], weighted[N];
    static uint8_t codes[3][N];
    static uint16_t scales[3][N / GROUP];
    for (int i = 0; i < N; i++) {
        x[i] = (uniform(-1, 1) + uniform(-1, 1) + uniform(-1, 1)) * (i % 97 == 0 ? 4.0f : 1.0f);
        importance[i] = i % 13 == 0 ? 50.0f : uniform(0.1f, 1.0f);
        ones[i] = 1.0f;
    }
    const float *weights[3] = { NULL, ones, importance };
    for (int k = 0; k < 3; k++) quantize_row(type, x, weights[k], N, N, GROUP, codes[k], scales[k]);
    CHECK(memcmp(codes[0], codes[1], row_code_bytes(layout, N)) == 0 && memcmp(scales[0], scales[1], sizeof scales[0]) == 0,
          "%s: importances all 1 round differently from none", layout->name);
    Tensor t = { .type = (int)type, .rows = 1, .cols = N, .cols_padded = N, .group_size = GROUP };
    t.codes = codes[0], t.scales = scales[0];
    dequantize_row(plain, &t, 0);
    t.codes = codes[2], t.scales = scales[2];
    dequantize_row(weighted, &t, 0);
    double total_plain = 0, total_weighted = 0, busy_plain = 0, busy_weighted = 0;
    int worse = 0;
    for (int g = 0; g < N / GROUP; g++) {
        double e_plain = 0, e_weighted = 0;
        for (int i = g * GROUP; i < (g + 1) * GROUP; i++) {
            double dp = x[i] - plain[i], dw = x[i] - weighted[i];
            e_plain += importance[i] * dp * dp;
            e_weighted += importance[i] * dw * dw;
            if (i % 13 == 0) { busy_plain += dp * dp; busy_weighted += dw * dw; }
        }
        worse += e_weighted > e_plain * (1 + 1e-5);
        total_plain += e_plain;
        total_weighted += e_weighted;
    }
    CHECK(worse == 0, "%s: %d groups with more weighted error than the unweighted search's", layout->name, worse);
    CHECK(total_weighted < total_plain, "%s: weighted error %.6g, unweighted search's %.6g", layout->name, total_weighted, total_plain);
    CHECK(busy_weighted < busy_plain, "%s: the busy channels' error %.6g, unweighted %.6g", layout->name, busy_weighted, busy_plain);
    printf("  %s importance-weighted error: %.1f %% below the unweighted search's (busy channels' error %.1f %% below)\n",
           layout->name, 100 * (1 - total_weighted / total_plain), 100 * (1 - busy_weighted / busy_plain));
}

// Q4S's block, as the format says: slot k's level in byte 4(k/8) + k%4 (low
// nibble for even k/4), its position in bits 2(k/4) of byte 8 + k%4; every
// level at every position of an empty block survives put_level -> level and
// touches no other weight; two per quad do too; slots that point at the same
// weight add up (as the kernels compute them).
static void test_q4s_layout(void) {
    const QuantLayout *layout = quant_layout(TYPE_Q4S);
    uint8_t block[12];
    int ok = 1;
    for (int level = layout->lo; level <= layout->hi; level++)
        for (int j = 0; j < 32; j++) {
            memset(block, 0, sizeof block);
            layout->put_level(block, j, level);
            for (int k = 0; k < 32; k++) ok &= layout->level(block, k) == (k == j ? level : 0);
        }
    CHECK(ok, "q4s: put_level and level disagree on one weight");
    ok = 1;
    for (int j = 0; j < 32; j++)
        for (int other = 4 * (j / 4); other < 4 * (j / 4) + 4; other++) {
            if (other == j) continue;
            memset(block, 0, sizeof block);
            layout->put_level(block, j, -8 + j % 16);
            layout->put_level(block, other, 7 - other % 15);
            for (int k = 0; k < 32; k++)
                ok &= layout->level(block, k) == (k == j ? -8 + j % 16 : k == other ? 7 - other % 15 : 0);
        }
    CHECK(ok, "q4s: two weights of a quad do not come back");
    memset(block, 0, sizeof block);   // slot 5 (quad 2, its second slot): level -3 at position 2
    block[4 * (5 / 8) + 5 % 4] = (uint8_t)((-3 & 0xF) << 4);
    block[8 + 5 % 4] = (uint8_t)(2 << 2);
    CHECK(layout->level(block, 4 * 2 + 2) == -3 && q4s_slot_weight(block, 5) == 10,
          "q4s: slot 5 at the documented bits reads level %d at weight %d", layout->level(block, 10), q4s_slot_weight(block, 5));
    block[4 * (4 / 8) + 4 % 4] = (uint8_t)(5 << 4);   // slot 4 (quad 2, first): level 5, position 2 too
    block[8 + 4 % 4] = (uint8_t)(2 << 2);
    CHECK(layout->level(block, 10) == 2, "q4s: two slots on one weight give %d, expected 5 - 3", layout->level(block, 10));
}

// keep_2_of_4 (Q4S's rounding, and Wanda's 2:4 mask with export --calib):
// exactly two of every four weights survive, those of the largest w^2 x
// importance, unchanged; ties keep the lower index; a short last quad keeps
// at most two; and quantize_row writes no other non-zero weight.
static void test_keep_2_of_4(void) {
    enum { N = 4099 };
    static float x[N], kept[N], importance[N], back[N];
    for (int i = 0; i < N; i++) {
        x[i] = uniform(-1, 1);
        importance[i] = i % 7 == 0 ? 100.0f : uniform(0, 1);
        if (i % 97 == 5) x[i] = x[i - 1];   // ties
    }
    int bad_count = 0, bad_choice = 0;
    for (int weighted = 0; weighted < 2; weighted++) {
        memcpy(kept, x, sizeof x);
        keep_2_of_4(kept, weighted ? importance : NULL, N);
        for (int quad = 0; quad < N; quad += 4) {
            int count = N - quad < 4 ? N - quad : 4, nonzero = 0;
            for (int i = quad; i < quad + count; i++) {
                nonzero += kept[i] != 0;
                if (kept[i] != 0 && kept[i] != x[i]) bad_choice++;
                // a dropped weight scores at most as much as each kept one (less than one of a lower index)
                for (int j = quad; j < quad + count && kept[i] == 0; j++) {
                    float si = x[i] * x[i] * (weighted ? importance[i] : 1), sj = x[j] * x[j] * (weighted ? importance[j] : 1);
                    if (kept[j] != 0 && (si > sj || (si == sj && i < j))) bad_choice++;
                }
            }
            bad_count += nonzero != (count < 2 ? count : 2);
        }
    }
    CHECK(bad_count == 0, "keep_2_of_4: %d quads do not keep exactly two", bad_count);
    CHECK(bad_choice == 0, "keep_2_of_4: %d weights kept or dropped against their scores", bad_choice);
    uint8_t codes[N / 32 * 12 + 12];
    uint16_t scales[N / 32 + 1];
    int padded = (int)round_up(N, 32), stray = 0;
    quantize_row(TYPE_Q4S, x, importance, N, padded, 32, codes, scales);
    Tensor t = { .type = TYPE_Q4S, .rows = 1, .cols = N, .cols_padded = padded, .group_size = 32, .codes = codes, .scales = scales };
    dequantize_row(back, &t, 0);
    memcpy(kept, x, sizeof x);
    keep_2_of_4(kept, importance, N);
    for (int i = 0; i < N; i++) stray += kept[i] == 0 && back[i] != 0;
    CHECK(stray == 0, "q4s quantize_row: %d pruned weights came back non-zero", stray);
}

static QuantizedActivations new_activations(int stride);
static void free_activations(QuantizedActivations *q);
static void make_inputs(QuantizedActivations *q, float *x, int n_tokens, int cols, int padded, int fill);

// q4s is int4 with zeros, to the bit: the same levels and scales written as
// q4 (the pruned weights at level 0) give every kernel set's q4 product
// exactly its q4s product, so pruning loses nothing to the sparse kernels.
static void test_q4s_is_q4_with_zeros(const Kernels *sets, int n_sets) {
    enum { ROWS = 19, COLS = 288, GROUP = 32 };
    static float w[ROWS * COLS], x[3 * COLS], out_s[3 * ROWS], out_d[3 * ROWS];
    static uint8_t s_codes[ROWS * COLS], d_codes[ROWS * COLS], tiled_s[24 * COLS], tiled_d[24 * COLS];
    static uint16_t scales[ROWS * COLS / GROUP], tiled_scales_s[24 * COLS / GROUP], tiled_scales_d[24 * COLS / GROUP];
    for (int i = 0; i < ROWS * COLS; i++) w[i] = uniform(-1, 1);
    const QuantLayout *q4 = quant_layout(TYPE_Q4), *q4s = quant_layout(TYPE_Q4S);
    memset(d_codes, 0, sizeof d_codes);
    for (int r = 0; r < ROWS; r++) {
        quantize_row(TYPE_Q4S, w + r * COLS, NULL, COLS, COLS, GROUP, s_codes + r * (COLS / 32 * 12), scales + r * (COLS / GROUP));
        for (int i = 0; i < COLS; i++)
            q4->put_level(d_codes + r * (COLS / 2) + (i / 32) * 16, i % 32, q4s->level(s_codes + r * (COLS / 32 * 12) + (i / 32) * 12, i % 32));
    }
    tile_rows(TYPE_Q4S, s_codes, scales, 0, ROWS, COLS, GROUP, tiled_s, tiled_scales_s);
    tile_rows(TYPE_Q4, d_codes, scales, 0, ROWS, COLS, GROUP, tiled_d, tiled_scales_d);
    Tensor sparse = { .type = TYPE_Q4S, .rows = ROWS, .cols = COLS, .cols_padded = COLS, .group_size = GROUP, .q4_tiled = 1,
                      .codes = tiled_s, .scales = tiled_scales_s };
    Tensor dense = sparse;
    dense.type = TYPE_Q4, dense.codes = tiled_d, dense.scales = tiled_scales_d;
    QuantizedActivations xq = new_activations(512);
    make_inputs(&xq, x, 3, COLS, COLS, 0);
    for (int k = 0; k < n_sets; k++) {
        sets[k].matmul[TYPE_Q4S](out_s, ROWS, &sparse, 0, ROWS, &xq, 3);
        sets[k].matmul[TYPE_Q4](out_d, ROWS, &dense, 0, ROWS, &xq, 3);
        CHECK(memcmp(out_s, out_d, sizeof out_s) == 0, "%s: q4s's product is not q4's with zeros, bit for bit", sets[k].name);
    }
    free_activations(&xq);
}

static QuantizedActivations new_activations(int stride) {
    QuantizedActivations q = { calloc((size_t)MAX_BATCH * stride, 1), calloc((size_t)MAX_BATCH * stride / 32, sizeof(float)),
                               calloc((size_t)MAX_BATCH * stride / 32, sizeof(int32_t)), stride,
                               calloc((size_t)MAX_BATCH, lut_table_bytes(stride)) };
    return q;
}

static void free_activations(QuantizedActivations *q) {
    free(q->values); free(q->scales); free(q->sums); free(q->tables);
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
    free_activations(&q);
}

typedef struct {
    Tensor t;                 // as export writes it (Q4, Q4S: tiled)
    float *w;                 // (rows, cols) the original weights (Q4S: 2:4 pruned)
    uint8_t *rows_codes;      // Q4, Q4S: the same data row after row (quantize_row's order); else NULL
    uint16_t *rows_scales;
} Matrix;

// fill: 0 random, 1 every level lo, 2 every level hi, 3 zero scales, 4 alternating extremes, 5 random codes
// (Q4S: two weights of each quad, shifting with the row, at those levels)
static Matrix make_matrix(uint32_t type, int rows, int cols, int group, int fill) {
    const QuantLayout *layout = quant_layout(type);
    Matrix m;
    int padded = (int)round_up((size_t)cols, (size_t)group);
    size_t row_bytes = code_bytes(type, 1, padded);
    m.w = malloc(sizeof(float) * rows * cols);
    uint8_t *codes = malloc((size_t)rows * row_bytes);
    uint16_t *scales = malloc(sizeof(uint16_t) * rows * (padded / group));
    for (int i = 0; i < rows * cols; i++) m.w[i] = uniform(-1, 1);
    for (int r = 0; r < rows && type == TYPE_Q4S; r++) keep_2_of_4(m.w + (size_t)r * cols, NULL, cols);
    for (int r = 0; r < rows; r++)
        quantize_row(type, m.w + (size_t)r * cols, NULL, cols, padded, group, codes + (size_t)r * row_bytes, scales + (size_t)r * (padded / group));
    if (fill == 1 || fill == 2 || fill == 4) {
        memset(codes, 0, (size_t)rows * row_bytes);
        for (size_t i = 0; i < (size_t)rows * padded; i++) {
            int level = fill == 1 ? layout->lo : fill == 2 ? layout->hi : i % 2 ? layout->lo : layout->hi;
            size_t row = i / padded, in_quad = i % 4;
            if (type == TYPE_Q4S && in_quad != row % 4 && in_quad != (row + 1 + row / 4) % 4) continue;
            layout->put_level(codes + (i / 32) * layout->block_bytes, (int)(i % 32), level);
        }
    }
    if (fill == 3) memset(scales, 0, sizeof(uint16_t) * rows * (padded / group));
    if (fill == 5) for (size_t i = 0; i < (size_t)rows * row_bytes; i++) codes[i] = (uint8_t)splitmix64(&rng);
    m.t = (Tensor){ .type = (int)type, .rows = rows, .cols = cols, .cols_padded = padded, .group_size = group,
                    .codes = codes, .scales = scales };
    m.rows_codes = NULL;
    m.rows_scales = NULL;
    if (tiled_type(type, CHECKPOINT_VERSION)) {   // the file's order: tiles of eight rows
        size_t stored = round_up((size_t)rows, Q4_TILE_ROWS);
        uint8_t *tiled_codes = malloc(stored * row_bytes);
        uint16_t *tiled_scales = malloc(sizeof(uint16_t) * stored * (padded / group));
        tile_rows(type, codes, scales, 0, rows, padded, group, tiled_codes, tiled_scales);
        m.t.q4_tiled = 1;
        m.t.codes = tiled_codes;
        m.t.scales = tiled_scales;
        m.rows_codes = codes;
        m.rows_scales = scales;
    }
    return m;
}

static void free_matrix(Matrix *m) {
    free(m->w); free((void *)m->t.codes); free((void *)m->t.scales); free(m->rows_codes); free(m->rows_scales);
}

// The tiled order holds the same weights as the row order: every row
// dequantizes alike through either, and tile t's block b starts with row 8t's
// bytes 0..3 and has row 8t+j's bytes 4d..4d+3 at 32d + 4j (the format).
static void test_tile_layout(uint32_t type, int rows, int cols, int group) {
    Matrix m = make_matrix(type, rows, cols, group, 0);
    Tensor by_rows = m.t;
    by_rows.q4_tiled = 0;
    by_rows.codes = m.rows_codes;
    by_rows.scales = m.rows_scales;
    float *a = malloc(sizeof(float) * cols), *b = malloc(sizeof(float) * cols);
    int same = 1, n_blocks = m.t.cols_padded / Q_BLOCK, block_bytes = quant_layout(type)->block_bytes;
    for (int r = 0; r < rows; r++) {
        dequantize_row(a, &m.t, r);
        dequantize_row(b, &by_rows, r);
        same &= memcmp(a, b, sizeof(float) * cols) == 0;
        for (int blk = 0; blk < n_blocks; blk++)
            for (int p = 0; p < block_bytes; p++) {
                size_t at = ((size_t)(r / 8) * n_blocks + blk) * 8 * block_bytes + 32 * (p / 4) + 4 * (r % 8) + p % 4;
                same &= m.t.codes[at] == m.rows_codes[((size_t)r * n_blocks + blk) * block_bytes + p];
            }
    }
    CHECK(same, "tiled %s %dx%d g%d: not the row order's weights in the documented places", quant_layout(type)->name,
          rows, cols, group);
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
static void test_matmul_reference(uint32_t type, int rows, int cols, int group) {
    Matrix m = make_matrix(type, rows, cols, group, 0);
    float *x = malloc(sizeof(float) * cols), *row = malloc(sizeof(float) * cols), *out = malloc(sizeof(float) * rows);
    QuantizedActivations xq = new_activations((int)round_up((size_t)cols, MAX_GROUP_SIZE));
    make_inputs(&xq, x, 1, cols, m.t.cols_padded, 0);
    kernels_scalar.matmul[type](out, rows, &m.t, 0, rows, &xq, 1);
    double worst_dequant = 0, worst_original = 0;
    for (int r = 0; r < rows; r++) {
        dequantize_row(row, &m.t, r);
        double exact_dequant = 0, exact_original = 0;
        for (int c = 0; c < cols; c++) {
            exact_dequant += (double)row[c] * x[c];
            exact_original += (double)m.w[(size_t)r * cols + c] * x[c];
        }
        worst_dequant = fmax(worst_dequant, fabs(out[r] - exact_dequant));
        worst_original = fmax(worst_original, fabs(out[r] - exact_original));
    }
    // int8 rounding: each product is off by <= |w| * step/2, summed: about sqrt(cols) * 2/127 * 0.5
    // (the original's bound grows with the type's step: int2's is 1/4 of the range, int4's 1/16)
    double step = 2.0 / (quant_layout(type)->hi - quant_layout(type)->lo);
    double bound_dequant = 0.02 * sqrt((double)cols) + 1e-4, bound_original = 1.6 * step * sqrt((double)cols) + 1e-3;
    const char *name = quant_layout(type)->name;
    CHECK(worst_dequant <= bound_dequant, "%s matmul %dx%d g%d vs dequantized fp32: error %.5f > %.5f", name, rows, cols,
          group, worst_dequant, bound_dequant);
    CHECK(worst_original <= bound_original, "%s matmul %dx%d g%d vs original fp32: error %.5f > %.5f", name, rows, cols,
          group, worst_original, bound_original);
    free_matrix(&m); free(x); free(row); free(out); free_activations(&xq);
}

// Each SIMD kernel set against the scalar one, which it must equal bit for
// bit (they share one canonical arithmetic): random and adversarial weights
// and inputs, odd widths, 1..9 tokens; and a token's result must not depend
// on how many tokens share the call (prefill and decode agree bit for bit).
// Returns how far off the worst result is (0: bit-identical everywhere).
static double test_matmul_against_reference(uint32_t type, const Kernels *k, const Kernels *ref) {
    int shapes[][3] = { { 5, 32, 32 }, { 7, 172, 32 }, { 9, 288, 64 }, { 19, 1000, 128 }, { 4, 2048, 32 }, { 2, 64, 256 },
                        { 3, 480, 32 }, { 2, 736, 32 }, { 24, 320, 32 } };   // 15 and 23 blocks: every tail length of 8 and of 4
    int worst_fill = -1;
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int wfill = 0; wfill <= 5; wfill++)
            for (int xfill = 0; xfill <= 3; xfill++) {
                int rows = shapes[s][0], cols = shapes[s][1], group = shapes[s][2], n_tokens = 1 + (int)(s + wfill + xfill) % 9;
                Matrix m = make_matrix(type, rows, cols, group, wfill);
                QuantizedActivations xq = new_activations((int)round_up((size_t)cols, MAX_GROUP_SIZE));
                float *x = malloc(sizeof(float) * cols * n_tokens);
                float *want = calloc((size_t)rows * n_tokens, sizeof(float)), *got = calloc((size_t)rows * n_tokens, sizeof(float));
                float *alone = calloc((size_t)rows, sizeof(float));
                make_inputs(&xq, x, n_tokens, cols, m.t.cols_padded, xfill);
                ref->matmul[type](want, rows, &m.t, 0, rows, &xq, n_tokens);
                int split = rows > Q4_TILE_ROWS ? Q4_TILE_ROWS : rows;   // a split (by whole tiles) must not matter
                k->matmul[type](got, rows, &m.t, split, rows, &xq, n_tokens);
                k->matmul[type](got, rows, &m.t, 0, split, &xq, n_tokens);
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
                k->matmul[type](alone, 1, &m.t, 0, rows, &last, 1);
                CHECK(memcmp(alone, got + (size_t)(n_tokens - 1) * rows, sizeof(float) * rows) == 0,
                      "%s %s: token %d's result changes when computed alone (shape %dx%d, fill %d/%d)", k->name,
                      quant_layout(type)->name, n_tokens - 1, rows, cols, wfill, xfill);
                free_matrix(&m); free(x); free(want); free(got); free(alone); free_activations(&xq);
            }
    CHECK(worst == 0, "%s matmul %s is not bit-identical to %s: off by up to %g (weights fill %d, inputs fill %d)",
          k->name, quant_layout(type)->name, ref->name, worst, worst_fill / 10, worst_fill % 10);
    return worst;
}

// ---- The table-lookup kernels (runq.c, "Table lookup"): a Q2 or Q3 matrix
// repacked as prepare_tables does, each set's tables and its lookup product
// against the row reference on the file's layout, bit for bit: random and
// adversarial weights and inputs (every level of the type, both extremes),
// row counts that end inside a 64-row tile and that span several, widths
// that pad, 1..9 tokens, and a split of the rows at a tile boundary.

static void repack_matrix(Tensor *w) {
    size_t code_bytes = lut_codes_bytes(w);
    uint8_t *memory = calloc(1, code_bytes + lut_scales_bytes(w));
    RepackTask task = { w, memory, (uint16_t *)(memory + code_bytes) };
    for (int tile = 0; tile * LUT_TILE_ROWS < w->rows; tile++) repack_tile(&task, tile, 0);
    w->lut_codes = memory;
    w->lut_scales = task.scales;
}

// The repacked patterns name every weight's code: weight j of row r's block b,
// read back from lut_codes and lut_scales, is the level and scale the file holds.
static void test_lut_layout(uint32_t type, int rows, int cols, int group) {
    Matrix m = make_matrix(type, rows, cols, group, 0);
    repack_matrix(&m.t);
    const QuantLayout *layout = quant_layout(type);
    int n_blocks = m.t.cols_padded / Q_BLOCK, n_groups = m.t.cols_padded / group, bad = 0;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < n_blocks; b++) {
            const uint8_t *block = m.t.codes + ((size_t)r * n_blocks + b) * layout->block_bytes;
            for (int j = 0; j < Q_BLOCK; j++) {
                int code = 0;
                for (int k = 0; k < layout->bits; k++) {
                    uint8_t byte = m.t.lut_codes[lut_code_offset(n_blocks, layout->bits, r / LUT_TILE_ROWS, b, k, j / 8)
                                                 + r % LUT_TILE_ROWS];
                    code |= ((byte >> (j % 8)) & 1) << k;   // group 2p's pattern low, 2p+1's high: bit j % 8
                }
                bad += code + layout->lo != layout->level(block, j);
            }
            bad += m.t.lut_scales[((size_t)(r / LUT_TILE_ROWS) * n_groups + b * Q_BLOCK / group) * LUT_TILE_ROWS
                                  + LUT_SLOT(r % LUT_TILE_ROWS)] != m.t.scales[(size_t)r * n_groups + b * Q_BLOCK / group];
        }
    CHECK(bad == 0, "%s %dx%d g%d repacked for table lookups: %d codes or scales not where the layout says", layout->name,
          rows, cols, group, bad);
    free((void *)m.t.lut_codes);
    free_matrix(&m);
}

// A set's tables against the reference builder's, byte for byte, and the
// reference's entries against their definition (T_g[m] = sum of x_4g+i, bit i of m).
static void test_tables_against_reference(const Kernels *k, const Kernels *ref) {
    int cols = 1000, padded = 1024, n_tokens = 3, bad = 0;
    QuantizedActivations a = new_activations(padded), b = new_activations(padded);
    float *x = malloc(sizeof(float) * padded * n_tokens);
    for (int fill = 0; fill <= 2; fill++) {
        make_inputs(&a, x, n_tokens, cols, padded, fill);
        quantize_q8(&b, x, cols, cols, padded, n_tokens);   // the same values
        ref->build_tables(&a, padded, n_tokens);
        k->build_tables(&b, padded, n_tokens);
        bad += memcmp(a.tables, b.tables, lut_table_bytes(padded) * n_tokens) != 0;
        for (int t = 0; t < n_tokens; t++)
            for (int g = 0; g < padded / 4; g++)
                for (int mask = 0; mask < 16; mask++) {
                    int want = 0;
                    for (int i = 0; i < 4; i++) if (mask >> i & 1) want += a.values[(size_t)t * padded + 4 * g + i];
                    bad += lut_entry(a.tables + t * lut_table_bytes(padded), g, mask) != want;
                }
    }
    CHECK(bad == 0, "%s build_tables: %d tables differ from the reference's or from their definition", k->name, bad);
    free(x);
    free_activations(&a);
    free_activations(&b);
}

static void test_lut_against_reference(uint32_t type, const Kernels *k, const Kernels *ref) {
    int shapes[][3] = { { 5, 32, 32 }, { 7, 172, 32 }, { 64, 288, 64 }, { 65, 1000, 128 }, { 130, 2048, 32 }, { 2, 64, 256 },
                        { 191, 480, 32 }, { 64, 736, 32 }, { 24, 320, 32 } };
    int worst_fill = -1, checked = 0;
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int wfill = 0; wfill <= 5; wfill++)
            for (int xfill = 0; xfill <= 3; xfill++) {
                int rows = shapes[s][0], cols = shapes[s][1], group = shapes[s][2], n_tokens = 1 + (int)(s + wfill + xfill) % 9;
                Matrix m = make_matrix(type, rows, cols, group, wfill);
                Tensor repacked = m.t;
                repack_matrix(&repacked);
                QuantizedActivations xq = new_activations((int)round_up((size_t)cols, MAX_GROUP_SIZE));
                float *x = malloc(sizeof(float) * cols * n_tokens);
                float *want = calloc((size_t)rows * n_tokens, sizeof(float)), *got = calloc((size_t)rows * n_tokens, sizeof(float));
                make_inputs(&xq, x, n_tokens, cols, m.t.cols_padded, xfill);
                k->build_tables(&xq, m.t.cols_padded, n_tokens);
                ref->matmul[type](want, rows, &m.t, 0, rows, &xq, n_tokens);
                int split = rows > LUT_TILE_ROWS ? LUT_TILE_ROWS : rows;   // a split (by whole tiles) must not matter
                k->matmul_lut[type](got, rows, &repacked, split, rows, &xq, n_tokens);
                k->matmul_lut[type](got, rows, &repacked, 0, split, &xq, n_tokens);
                for (int i = 0; i < rows * n_tokens; i++) {
                    double error = fabs(got[i] - want[i]);
                    if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && error >= worst) {
                        worst = fmax(error, 1e-30); worst_fill = wfill * 10 + xfill;
                    }
                }
                checked += rows * n_tokens;
                free((void *)repacked.lut_codes);
                free_matrix(&m); free(x); free(want); free(got);
                free_activations(&xq);
            }
    CHECK(worst == 0, "%s table-lookup %s is not bit-identical to %s's row reference: off by up to %g (weights fill %d, "
          "inputs fill %d)", k->name, quant_layout(type)->name, ref->name, worst, worst_fill / 10, worst_fill % 10);
    printf("  table lookup %s %s vs %s rows: %d results %s\n", k->name, quant_layout(type)->name, ref->name, checked,
           worst == 0 ? "bit-identical" : "NOT bit-identical");
}

// A kernel set's activation quantization against the reference's, bit for
// bit: random rows, huge and tiny values, zeros and -0, NaN and infinities
// (which become 0), ties at half a step, widths that end inside a block.
static void test_quantize_against_reference(const Kernels *k, const Kernels *ref) {
    int widths[] = { 32, 64, 100, 288, 1000, 5 };
    int mismatches = 0;
    for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++)
        for (int fill = 0; fill <= 5; fill++) {
            int n = widths[wi], padded = (int)round_up((size_t)n, 64), n_tokens = 3;
            float *x = malloc(sizeof(float) * n * n_tokens);
            for (int i = 0; i < n * n_tokens; i++) {
                float v = uniform(-3, 3);
                if (fill == 1) v *= 1e30f;                                  // huge
                if (fill == 2) v *= 1e-40f;                                 // subnormal
                if (fill == 3 && i % 7 == 0) v = i % 2 ? NAN : -INFINITY;   // overflowed activations
                if (fill == 4) v = i % 3 == 0 ? 0.0f : i % 3 == 1 ? -0.0f : 127.0f;
                if (fill == 5)   // every block's max 127: its step is 1, and the rest fall on ties at half a step
                    v = (i % n) % 32 == 0 ? 127.0f : (float)((i % 200) - 100) + (i % 2 ? 0.5f : -0.5f);
                x[i] = v;
            }
            QuantizedActivations a = new_activations(256 * 4), b = new_activations(256 * 4);
            ref->quantize_q8(&a, x, n, n, padded, n_tokens);
            k->quantize_q8(&b, x, n, n, padded, n_tokens);
            for (int t = 0; t < n_tokens; t++) {
                size_t v_at = (size_t)t * a.stride, s_at = (size_t)t * (a.stride / 32);
                if (memcmp(a.values + v_at, b.values + v_at, (size_t)padded) != 0
                    || memcmp(a.scales + s_at, b.scales + s_at, sizeof(float) * (size_t)(padded / 32)) != 0
                    || memcmp(a.sums + s_at, b.sums + s_at, sizeof(int32_t) * (size_t)(padded / 32)) != 0) mismatches++;
            }
            free(x); free_activations(&a); free_activations(&b);
        }
    CHECK(mismatches == 0, "%s quantize_q8: %d token rows differ from %s's", k->name, mismatches, ref->name);
}

// A kernel set's fp32 -> fp16 (the KV cache's rows) against the reference's,
// bit for bit: random values over fp16's whole range, overflow to infinity,
// fp16 subnormals, underflow to zero, exact ties, infinities and NaNs with
// payloads, -0; lengths that leave a tail.
static void test_to_f16_against_reference(const Kernels *k, const Kernels *ref) {
    enum { N = 1027 };
    float x[N];
    for (int i = 0; i < N; i++) {
        float v = uniform(-1, 1) * powf(2.0f, uniform(-30, 17));   // 2^-30 .. 2^17: subnormals to overflow
        if (i % 11 == 0) v = (1.0f + (float)(i % 4) / 1024.0f + 1.0f / 2048.0f) * (i % 2 ? -1.0f : 1.0f);   // ties
        if (i % 13 == 0) v = 65519.0f + (float)(i % 3);   // the last finite fp16 and just past it
        if (i % 17 == 0) v = i % 2 ? INFINITY : -0.0f;
        if (i % 19 == 0) { uint32_t bits = 0x7FC00000u | ((uint32_t)i << 13); memcpy(&v, &bits, 4); }   // NaN, payload in fp16 reach
        if (i % 23 == 0) v = 5.96e-8f * (float)(i % 5);   // fp16's smallest subnormals
        x[i] = v;
    }
    uint16_t want[N], got[N];
    int mismatches = 0;
    for (int n = N - 8; n <= N; n++) {
        ref->to_f16(want, x, n);
        k->to_f16(got, x, n);
        mismatches += memcmp(want, got, sizeof(uint16_t) * (size_t)n) != 0;
    }
    CHECK(mismatches == 0, "%s to_f16: %d lengths differ from %s's", k->name, mismatches, ref->name);
}

// The softmax's exp_canonical against exp in double over its whole range
// (2 million points of [-87, 0]): within 2.5 ulp (libm's expf is within 1;
// ours measured 1.35), e^0 exactly 1, and inputs below -87 taken as -87.
static void test_exp_canonical(void) {
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f * (float)i / 2000000.0f;
        double want = exp((double)x);
        worst = fmax(worst, fabs(exp_canonical(x) - want) / want);
    }
    CHECK(worst <= 2.5 * 0x1p-24, "exp_canonical: worst relative error %.3g over [-87, 0], past 2.5 ulp", worst);
    CHECK(exp_canonical(0.0f) == 1.0f, "exp_canonical(0) = %.9g, not 1", exp_canonical(0.0f));
    CHECK(exp_canonical(-1000.0f) == exp_canonical(-87.0f), "exp_canonical(-1000) is not exp_canonical(-87)");
    printf("  exp_canonical: worst relative error %.3g (%.2f ulp) over [-87, 0]\n", worst, worst / 0x1p-24);
}

static void test_kernels_against_reference(const Kernels *k, const Kernels *ref) {
    double worst = 0;
    for (int ti = 0; ti < N_KERNEL_TYPES; ti++) worst = fmax(worst, test_matmul_against_reference(kernel_types[ti], k, ref));

    // attention: scores and mixes over 1..70 positions of odd and usual head widths, for 1 to 8
    // query heads of one KV head (the fp16 kernels take them together)
    int widths[] = { 1, 7, 8, 9, 33, 48, 64, 100, 128, 256 };
    enum { MAX_HEADS = 8, MAX_WIDTH = 256, MAX_POSITIONS = 70, SCORES_STRIDE = 73 };
    static float q[MAX_HEADS * MAX_WIDTH], weights[MAX_HEADS * SCORES_STRIDE], scores_ref[MAX_HEADS * SCORES_STRIDE],
        scores_k[MAX_HEADS * SCORES_STRIDE], mix_ref[MAX_HEADS * MAX_WIDTH], mix_k[MAX_HEADS * MAX_WIDTH];
    static uint16_t cache[MAX_POSITIONS * (MAX_WIDTH + 5)];
    static int8_t cache_q8[MAX_POSITIONS * (MAX_WIDTH + 5)];
    for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++) {
        int n = widths[wi], positions = 1 + (int)(wi * 9) % MAX_POSITIONS, stride = n + 5, heads = 1 + (int)(wi * 3) % MAX_HEADS;
        if (wi == 6) positions = MAX_POSITIONS;   // four blocks of sixteen and a tail
        for (int i = 0; i < heads * n; i++) q[i] = uniform(-1, 1);
        for (int i = 0; i < positions * stride; i++) cache[i] = fp32_to_fp16(uniform(-4, 4));
        for (int i = 0; i < heads * SCORES_STRIDE; i++) weights[i] = uniform(0, 1);
        memset(scores_ref, 0, sizeof scores_ref);
        memset(scores_k, 0, sizeof scores_k);
        ref->scores_f16(scores_ref, SCORES_STRIDE, q, heads, cache, stride, positions, n);
        k->scores_f16(scores_k, SCORES_STRIDE, q, heads, cache, stride, positions, n);
        CHECK(memcmp(scores_ref, scores_k, sizeof scores_ref) == 0,
              "%s scores_f16 (width %d, %d heads, %d positions) is not bit-identical to the reference", k->name, n, heads,
              positions);
        ref->mix_f16(mix_ref, weights, SCORES_STRIDE, heads, cache, stride, positions, n);
        k->mix_f16(mix_k, weights, SCORES_STRIDE, heads, cache, stride, positions, n);
        CHECK(memcmp(mix_ref, mix_k, sizeof(float) * heads * n) == 0,
              "%s mix_f16 (width %d, %d heads, %d positions) is not bit-identical to the reference", k->name, n, heads,
              positions);
        // the int8 cache (-k q8): one head, the full int8 range, a scale per row (3 apart, as heads are)
        float scales[MAX_POSITIONS * 3];
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
    // the softmax over 1..300 scores (every tail), of spreads from flat to past exp's lowest input
    float spreads[] = { 0.01f, 3, 30, 300 };
    static float softmax_ref_row[300], softmax_k_row[300];
    int softmax_mismatches = 0;
    for (int n = 1; n <= 300; n++) {
        float spread = spreads[n % 4];
        for (int i = 0; i < n; i++) softmax_ref_row[i] = softmax_k_row[i] = uniform(-spread, spread);
        ref->softmax(softmax_ref_row, n, 8.0f / (float)n);
        k->softmax(softmax_k_row, n, 8.0f / (float)n);
        softmax_mismatches += memcmp(softmax_ref_row, softmax_k_row, sizeof(float) * (size_t)n) != 0;
    }
    CHECK(softmax_mismatches == 0, "%s softmax: %d of 300 lengths are not bit-identical to the reference", k->name,
          softmax_mismatches);
    printf("  kernels %s vs %s: bit-identical on %s\n", k->name, ref->name, worst == 0 ? "every case" : "NOT every case");
}

// ---- export's type rules: a recipe or an override changes exactly the
// tensors it names. Each is written beside the plain export of its default
// type and both tensor tables are read back: the tensors whose type differs
// must be exactly the expected set, and every other tensor is byte-identical.

// The tensors whose type (and group size) differ between two checkpoints, as
// "name=type/group" lines; the others must hold the same bytes.
static void differing_tensors(const char *a_path, const char *b_path, char *out, size_t size) {
    Transformer a, b;
    open_checkpoint(&a, a_path);
    open_checkpoint(&b, b_path);
    const FileHeader *h = (const FileHeader *)a.file_data;
    const TensorEntry *ta = (const TensorEntry *)(a.file_data + tensor_table_offset(h->version, h->n_layers));
    const TensorEntry *tb = (const TensorEntry *)(b.file_data + tensor_table_offset(h->version, h->n_layers));
    out[0] = '\0';
    CHECK(h->n_tensors == ((const FileHeader *)b.file_data)->n_tensors, "%s and %s: tensor counts differ", a_path, b_path);
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        CHECK(strcmp(ta[i].name, tb[i].name) == 0, "tensor %u: %s against %s", i, ta[i].name, tb[i].name);
        if (ta[i].type != tb[i].type || ta[i].group_size != tb[i].group_size)
            snprintf(out + strlen(out), size - strlen(out), "%s=%s/%u ", tb[i].name,
                     quant_layout(tb[i].type) ? quant_layout(tb[i].type)->name : "?", tb[i].group_size);
        else
            CHECK(ta[i].nbytes == tb[i].nbytes && memcmp(a.file_data + ta[i].offset, b.file_data + tb[i].offset, ta[i].nbytes) == 0,
                  "%s: tensor %s has the same type in both but not the same bytes", b_path, ta[i].name);
    }
    free_transformer(&a);
    free_transformer(&b);
}

static void check_rules(Source *src, TypeRules *rules, const char *expected, const char *what) {
    char plain_path[] = "/tmp/edge-test-quant-plain.bin", typed_path[] = "/tmp/edge-test-quant-typed.bin", got[2048];
    write_checkpoint(src, plain_path, rules->type, rules->group_size, 1);
    write_checkpoint_with(src, typed_path, rules, 1);
    differing_tensors(plain_path, typed_path, got, sizeof got);
    CHECK(strcmp(got, expected) == 0, "%s changes\n    %s\n  expected\n    %s", what, got, expected);
    Transformer t;   // and runq runs it
    build_transformer(&t, typed_path, 8, 1);
    float *logits = forward(&t, 1, 0);
    int finite = 1;
    for (int i = 0; i < t.config.vocab_size; i++) finite &= isfinite(logits[i]) != 0;
    CHECK(finite, "%s: runq's logits are not finite", what);
    free_transformer(&t);
    unlink(plain_path);
    unlink(typed_path);
}

static void test_type_rules(void) {
    // 9 layers: llama.cpp's use_more_bits picks layers 0 (first eighth), 7, 8 (last eighth), 3 and 6 (every third)
    Source src = { 0 };
    open_random(&src, "dim=64,ffn=96,layers=9,heads=4,kv_heads=2,vocab=96,tied=0", 7);
    synthetic_tokenizer(&src);
    TypeRules q4_mixed = { .type = TYPE_Q4, .group_size = 32, .recipe = find_recipe("q4-mixed") };
    check_rules(&src, &q4_mixed, "layers.0.wv=q8/32 layers.0.w2=q8/32 layers.3.wv=q8/32 layers.3.w2=q8/32 "
                "layers.6.wv=q8/32 layers.6.w2=q8/32 layers.7.wv=q8/32 layers.7.w2=q8/32 layers.8.wv=q8/32 "
                "layers.8.w2=q8/32 output=q8/32 ", "q4-mixed");
    TypeRules q3_mixed = { .type = TYPE_Q3, .group_size = 32, .recipe = find_recipe("q3-mixed") };
    check_rules(&src, &q3_mixed, "tok_embeddings=q4/32 layers.0.wv=q4/32 layers.0.w2=q4/32 layers.1.wv=q4/32 "
                "layers.2.wv=q4/32 layers.3.wv=q4/32 layers.3.w2=q4/32 layers.4.wv=q4/32 layers.5.wv=q4/32 "
                "layers.6.wv=q4/32 layers.6.w2=q4/32 layers.7.wv=q4/32 layers.7.w2=q4/32 layers.8.wv=q4/32 "
                "layers.8.w2=q4/32 output=q8/32 ", "q3-mixed");
    TypeRules q2_mixed = { .type = TYPE_Q2, .group_size = 64, .recipe = find_recipe("q2-mixed") };
    check_rules(&src, &q2_mixed, "tok_embeddings=q4/32 layers.0.wv=q3/32 layers.0.w2=q3/32 layers.1.wv=q3/32 "
                "layers.2.wv=q3/32 layers.3.wv=q3/32 layers.3.w2=q3/32 layers.4.wv=q3/32 layers.5.wv=q3/32 "
                "layers.6.wv=q3/32 layers.6.w2=q3/32 layers.7.wv=q3/32 layers.7.w2=q3/32 layers.8.wv=q3/32 "
                "layers.8.w2=q3/32 output=q4/32 ", "q2-mixed");
    TypeRules q2_g128 = { .type = TYPE_Q2, .group_size = 128, .recipe = find_recipe("q2-mixed") };   // --group-size 128
    check_rules(&src, &q2_g128, "tok_embeddings=q4/32 layers.0.wv=q3/32 layers.0.w2=q3/32 layers.1.wv=q3/32 "
                "layers.2.wv=q3/32 layers.3.wv=q3/32 layers.3.w2=q3/32 layers.4.wv=q3/32 layers.5.wv=q3/32 "
                "layers.6.wv=q3/32 layers.6.w2=q3/32 layers.7.wv=q3/32 layers.7.w2=q3/32 layers.8.wv=q3/32 "
                "layers.8.w2=q3/32 output=q4/32 ", "q2-mixed with --group-size 128");
    TypeRules overrides = { .type = TYPE_Q4, .group_size = 32 };
    parse_overrides(&overrides, "w2=q8,layers.4.wv=3/64,output=2,layers.4.w2=q4/128");
    check_rules(&src, &overrides, "layers.0.w2=q8/32 layers.1.w2=q8/32 layers.2.w2=q8/32 layers.3.w2=q8/32 "
                "layers.4.wv=q3/64 layers.4.w2=q4/128 layers.5.w2=q8/32 layers.6.w2=q8/32 layers.7.w2=q8/32 "
                "layers.8.w2=q8/32 output=q2/32 ", "--tensor-type (later overrides win)");
    free_source(&src);
    // a tied classifier: q4-mixed raises the embeddings, which are the classifier
    open_random(&src, "dim=64,ffn=96,layers=2,heads=4,kv_heads=2,vocab=96,tied=1", 7);
    synthetic_tokenizer(&src);
    TypeRules tied = { .type = TYPE_Q4, .group_size = 32, .recipe = find_recipe("q4-mixed") };
    check_rules(&src, &tied, "tok_embeddings=q8/32 layers.1.wv=q8/32 layers.1.w2=q8/32 ",   // of 2 layers: the last
                "q4-mixed, tied classifier");
    free_source(&src);
}

int main(void) {
    test_fp16();
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) test_round_trip(weight_types[ti]);
    test_error_order();
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) test_importance(weight_types[ti]);
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) test_search_scale_twin(weight_types[ti]);
    test_q8_activations();
    test_exp_canonical();
    test_type_rules();
    int shapes[][3] = { { 1, 32, 32 }, { 3, 33, 32 }, { 7, 172, 32 }, { 64, 172, 64 }, { 17, 288, 32 },
                        { 5, 1000, 128 }, { 9, 2048, 32 }, { 2, 5, 32 } };
    for (int ti = 0; ti < N_KERNEL_TYPES; ti++)
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
            test_matmul_reference(kernel_types[ti], shapes[i][0], shapes[i][1], shapes[i][2]);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        test_tile_layout(TYPE_Q4, shapes[i][0], shapes[i][1], shapes[i][2]);
        test_tile_layout(TYPE_Q4S, shapes[i][0], shapes[i][1], shapes[i][2]);
    }
    test_q4s_layout();
    test_keep_2_of_4();
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        test_lut_layout(TYPE_Q2, shapes[i][0], shapes[i][1], shapes[i][2]);
        test_lut_layout(TYPE_Q3, shapes[i][0], shapes[i][1], shapes[i][2]);
    }
    Kernels sets[MAX_KERNEL_SETS];
    int n_sets = runnable_kernels(sets);
    test_q4s_is_q4_with_zeros(sets, n_sets);
    for (int i = 0; i < n_sets; i++) {   // the scalar twin of the table lookups too
        if (!sets[i].build_tables) { SKIP("kernels %s: no table-lookup kernels", sets[i].name); continue; }
        test_tables_against_reference(&sets[i], &sets[0]);
        test_lut_against_reference(TYPE_Q2, &sets[i], &sets[0]);
        test_lut_against_reference(TYPE_Q3, &sets[i], &sets[0]);
    }
    for (int i = 1; i < n_sets; i++) {
        test_kernels_against_reference(&sets[i], &sets[0]);
        test_quantize_against_reference(&sets[i], &sets[0]);
        test_to_f16_against_reference(&sets[i], &sets[0]);
    }
    const char *lacking[MAX_KERNEL_SETS];
    int n_lacking = unrunnable_kernels(lacking);
    for (int i = 0; i < n_lacking; i++) SKIP("kernels %s: this CPU cannot run them, so they are not tested here", lacking[i]);
    if (n_sets == 1) SKIP("this CPU runs only the scalar kernels: no SIMD kernel tested here");
    return check_summary("test_quant");
}
