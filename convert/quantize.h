/*
convert/quantize.h — the writer's half of the checkpoint format: float rows
into a quantized type's codes and fp16 scales (the format is specified in
runq.c, "The checkpoint format"), the search for each group's scale, and the
reordering of int4 rows into tiles.

What it is not: part of the runtime. runq reads weights and never writes
them; export, the trainer and the tests quantize.

Include after: runq.c.
*/

#ifndef EDGE_CONVERT_QUANTIZE_H
#define EDGE_CONVERT_QUANTIZE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// The writer's half of the format (export.c uses it): x (n,) -> one row of a
// quantized type: n_padded/32 blocks of codes and n_padded/group_size fp16 scales
// (Q4S: first two of every four weights kept, keep_2_of_4 below).
//
// Each group's scale starts as its signed extreme / lo, the lowest level (the
// extreme lands on it and the levels cover [lo, hi] * scale, as in ggml's
// Q4_0); then scales a little smaller and larger are tried and the one with
// the least squared error is kept: clipping the rare extreme buys finer steps
// for the rest. (On stories260K this lowers the mean KL to fp32 - see the
// README.) Every type searches the same relative steps, lo * (1 + step/32):
// for Q4, -8 - step/4. A weight's level is the nearest one, clamped to [lo, hi].
//
// importance (n,), or NULL for all alike, weighs each weight's squared error:
// export --calib gives the mean x_c^2 of input channel c over a text, so the
// scale kept is the one that least changes the matrix's output on such
// inputs, sum_c (w_c - q_c)^2 x_c^2, rather than its weights (llama.cpp's
// imatrix does the same).
static int quant_level(const QuantLayout *layout, float x, float inverse) {
    int q = (int)lrintf(x * inverse);
    return q < layout->lo ? layout->lo : q > layout->hi ? layout->hi : q;
}

// The searched scale of one group of count weights, as stored (fp16): the
// candidates' errors are summed side by side, a weight at a time (each in
// group_error's order, so the same floats), which the compiler vectorizes
// across candidates. rintf by the 1.5 * 2^23 trick is lrintf's nearest-even
// for |v| < 2^22; v here is at most a few times lo.
#define SCALE_CANDIDATES 20   // extreme / lo, then the 19 steps -12..6
static uint16_t search_scale(const QuantLayout *layout, const float *x, const float *importance, int count) {
    float extreme = 0.0f;
    for (int i = 0; i < count; i++)
        if (fabsf(x[i]) > fabsf(extreme)) extreme = x[i];
    float lo = (float)layout->lo, hi = (float)layout->hi;
    if (extreme == 0.0f) return fp32_to_fp16(0.0f / lo);
    uint16_t candidates[SCALE_CANDIDATES];
    float scale[SCALE_CANDIDATES], inverse[SCALE_CANDIDATES], error[SCALE_CANDIDATES] = { 0 };
    for (int c = 0; c < SCALE_CANDIDATES; c++) {
        candidates[c] = fp32_to_fp16(c == 0 ? extreme / lo : extreme / (lo * (1.0f + (float)(c - 13) / 32.0f)));
        scale[c] = fp16_to_fp32(candidates[c]);
        inverse[c] = scale[c] != 0.0f ? 1.0f / scale[c] : 0.0f;
    }
    const float round_magic = 12582912.0f;   // 1.5 * 2^23
    for (int i = 0; i < count; i++) {
        float xi = x[i], weight = importance ? importance[i] : 1.0f;
        for (int c = 0; c < SCALE_CANDIDATES; c++) {
            float level = (xi * inverse[c] + round_magic) - round_magic;
            level = level < lo ? lo : level > hi ? hi : level;
            float diff = xi - scale[c] * level;
            error[c] += importance ? weight * diff * diff : diff * diff;
        }
    }
    int best = 0;
    for (int c = 1; c < SCALE_CANDIDATES; c++) if (error[c] < error[best]) best = c;
    return candidates[best];
}

// Q4S (2:4) keeps, of each four consecutive weights, the two with the largest
// w_c^2 * importance_c: Wanda's score |w| * ||x_c|| squared when importance is
// the mean x_c^2 (export --calib), magnitude without it; ties keep the lower
// index. The others become zero, and the two kept are rounded as Q4's levels.
// Weights already 2:4 sparse (SparseGPT's, GPTQ's) keep their non-zeros.
static void keep_2_of_4(float *x, const float *importance, int n) {
    for (int quad = 0; quad < n; quad += 4) {
        float score[4];
        int count = n - quad < 4 ? n - quad : 4;
        for (int i = 0; i < count; i++) score[i] = x[quad + i] * x[quad + i] * (importance ? importance[quad + i] : 1.0f);
        for (int dropped = 0; dropped < count - 2; dropped++) {   // drop the least, twice (the last one first on ties)
            int least = -1;
            for (int i = count - 1; i >= 0; i--)
                if (score[i] >= 0 && (least < 0 || score[i] < score[least])) least = i;
            x[quad + least] = 0.0f;
            score[least] = -1.0f;
        }
    }
}

static void quantize_levels(uint32_t type, const float *x, const float *importance, int n, int n_padded, int group_size,
                            uint8_t *codes, uint16_t *scales);

static void quantize_row(uint32_t type, const float *x, const float *importance, int n, int n_padded, int group_size,
                         uint8_t *codes, uint16_t *scales) {
    if (type != TYPE_Q4S) { quantize_levels(type, x, importance, n, n_padded, group_size, codes, scales); return; }
    float *kept = xcalloc((size_t)n, sizeof(float), "a 2:4 row");
    memcpy(kept, x, (size_t)n * sizeof(float));
    keep_2_of_4(kept, importance, n);
    quantize_levels(type, kept, importance, n, n_padded, group_size, codes, scales);
    free(kept);
}

// Each group's scale searched, each weight's nearest level put in its block.
static void quantize_levels(uint32_t type, const float *x, const float *importance, int n, int n_padded, int group_size,
                            uint8_t *codes, uint16_t *scales) {
    const QuantLayout *layout = quant_layout(type);
    memset(codes, 0, row_code_bytes(layout, (uint64_t)n_padded));
    for (int group = 0; group < n_padded / group_size; group++) {
        int start = group * group_size, count = n - start < group_size ? n - start : group_size;
        if (count < 0) count = 0;
        scales[group] = search_scale(layout, x + start, importance ? importance + start : NULL, count);
        float scale = fp16_to_fp32(scales[group]);     // quantize against the scale actually stored
        float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        for (int i = start; i < start + group_size; i++) {
            int level = i < n ? quant_level(layout, x[i], inverse) : 0;   // padding is zero
            layout->put_level(codes + (size_t)(i / Q_BLOCK) * layout->block_bytes, i % Q_BLOCK, level);
        }
    }
}

static void quantize_row_q4(const float *x, int n, int n_padded, int group_size, uint8_t *nibbles, uint16_t *scales) {
    quantize_row(TYPE_Q4, x, NULL, n, n_padded, group_size, nibbles, scales);
}

// Row r of a quantized matrix row after row, as quantize_row writes it: its
// blocks' codes and its scales (export and the tests copy and compare rows
// so, whatever order the file keeps).
static void read_row_codes(const Tensor *w, int r, uint8_t *codes, uint16_t *scales) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    size_t block_bytes = (size_t)quant_layout((uint32_t)w->type)->block_bytes;
    uint8_t gathered[Q_BLOCK / 2];
    for (int b = 0; b < n_blocks; b++) memcpy(codes + b * block_bytes, row_block(w, r, b, gathered), block_bytes);
    for (int g = 0; g < n_groups; g++) scales[g] = w->scales[weight_scale_index(w, r, g)];
}

// Rows [begin, end) of a tiled type (Q4, Q4S) in the row-after-row order
// quantize_row writes -> the tiled order, into the tile-aligned buffers of
// rows begin..round_up(end, 8) (begin a multiple of 8; rows past end: weight 0).
static void tile_rows(uint32_t type, const uint8_t *row_codes, const uint16_t *row_scales, int begin, int end,
                      int cols_padded, int group_size, uint8_t *tile_codes, uint16_t *tile_scales) {
    Tensor tiled = { .type = (int)type, .rows = end - begin, .cols_padded = cols_padded, .group_size = group_size, .q4_tiled = 1 };
    int n_blocks = cols_padded / Q_BLOCK, n_groups = cols_padded / group_size, block_bytes = quant_layout(type)->block_bytes;
    size_t tiles = round_up((size_t)(end - begin), Q4_TILE_ROWS) / Q4_TILE_ROWS;
    memset(tile_codes, type == TYPE_Q4 ? 0x88 : 0, tiles * n_blocks * Q4_TILE_ROWS * block_bytes);   // Q4's nibble 8: weight 0
    memset(tile_scales, 0, tiles * n_groups * Q4_TILE_ROWS * sizeof(uint16_t));
    for (int r = 0; r < end - begin; r++) {
        for (int b = 0; b < n_blocks; b++)
            for (int p = 0; p < block_bytes; p++)
                tile_codes[code_byte_index(&tiled, r, b, p)] = row_codes[((size_t)r * n_blocks + b) * block_bytes + p];
        for (int g = 0; g < n_groups; g++) tile_scales[weight_scale_index(&tiled, r, g)] = row_scales[(size_t)r * n_groups + g];
    }
}

static void tile_q4_rows(const uint8_t *row_nibbles, const uint16_t *row_scales, int begin, int end, int cols_padded,
                         int group_size, uint8_t *tile_nibbles, uint16_t *tile_scales) {
    tile_rows(TYPE_Q4, row_nibbles, row_scales, begin, end, cols_padded, group_size, tile_nibbles, tile_scales);
}

#pragma GCC diagnostic pop
#endif
