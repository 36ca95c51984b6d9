/*
convert/gguf_read.h — a GGUF file (llama.cpp's format, v2 and v3) as a
Source: its metadata through a bounds-checked cursor, its tokenizer, and its
tensors dequantized exactly as llama.cpp's dequantize_row_* does (F32, F16,
BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants), Q4_0 blocks copied.

What it is not: a writer (convert/gguf_write.h), nor a reader of the IQ
quants, which are refused by name.

Include after: runq.c, json.h, convert/source.h, convert/tokenizers.h, convert/gguf_write.h.
*/

#ifndef EDGE_CONVERT_GGUF_READ_H
#define EDGE_CONVERT_GGUF_READ_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// ----------------------------------------------------------------------------
// Source: a GGUF file (llama.cpp's format, v2 and v3, architecture "llama"),
// read through a bounds-checked cursor. Tensors of every type in the table
// below are converted to floats (and quantized again for an int4 checkpoint);
// Q4_0 is runq's own int4 at group 32, so those blocks are copied as they are.

enum { GGML_TYPE_F16 = 1, GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q2_K = 10,
       GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13, GGML_TYPE_Q6_K = 14, GGML_TYPE_BF16 = 30 };
enum { GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12 };

// ggml's other block formats (ggml/src/ggml-common.h, llama.cpp). The K-quants
// pack 256 weights into a super-block: Q4_K and Q5_K as 8 sub-blocks of 32, each
// with a 6-bit scale and a 6-bit min (w = d*scale*q - dmin*min); Q2_K, Q3_K and
// Q6_K as 16 sub-blocks of 16, Q2_K with a 4-bit scale and min, Q3_K with a
// 6-bit scale less 32 (w = d*scale*(q - 4)), Q6_K with a signed 8-bit one
// (w = d*scale*(q - 32)).
#define QK_K 256
typedef struct { uint8_t scales[QK_K / 16], qs[QK_K / 4]; uint16_t d, dmin; } BlockQ2_K;           // block_q2_K
typedef struct { uint8_t hmask[QK_K / 8], qs[QK_K / 4], scales[12]; uint16_t d; } BlockQ3_K;        // block_q3_K
typedef struct { uint16_t d, m; uint8_t qs[16]; } BlockQ4_1;                        // block_q4_1
typedef struct { uint16_t d; uint8_t qh[4], qs[16]; } BlockQ5_0;                    // block_q5_0
typedef struct { uint16_t d, m; uint8_t qh[4], qs[16]; } BlockQ5_1;                 // block_q5_1
typedef struct { uint16_t d, dmin; uint8_t scales[12], qs[QK_K / 2]; } BlockQ4_K;   // block_q4_K
typedef struct { uint16_t d, dmin; uint8_t scales[12], qh[QK_K / 8], qs[QK_K / 2]; } BlockQ5_K;   // block_q5_K
typedef struct { uint8_t ql[QK_K / 2], qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } BlockQ6_K;   // block_q6_K
_Static_assert(sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24, "ggml's 32-weight blocks");
_Static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110, "ggml's 2- and 3-bit K-quant blocks");
_Static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210, "ggml's K-quant blocks");

// Each dequantizer turns one row of n_blocks blocks into floats with the very
// arithmetic (operation order, float rounding) of llama.cpp's dequantize_row_*
// in ggml/src/ggml-quants.c, so the floats are bit for bit llama.cpp's own (the
// test compares them with libggml's to_float). Blocks are copied out of the
// file first: in a mapped file they need not be aligned.

static void dequantize_f32(const uint8_t *row, int64_t n, float *out) { memcpy(out, row, (size_t)n * 4); }

static void dequantize_f16(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, row + 2 * i, 2); out[i] = fp16_to_fp32(h); }
}

static void dequantize_bf16(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, row + 2 * i, 2); out[i] = bf16_to_fp32(h); }
}

static void dequantize_q8_0(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += Q_BLOCK) {
        BlockQ8_0 b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d);
        for (int j = 0; j < Q_BLOCK; j++) out[j] = b.qs[j] * d;
    }
}

// Q4_0, Q4_1, Q5_0, Q5_1: weight j in the low nibble of qs[j], weight j + 16 in
// the high one; Q5's fifth bits are bit j and bit j + 16 of qh.
static void dequantize_q4_0(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += Q_BLOCK) {
        BlockQ4_0 b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d);
        for (int j = 0; j < 16; j++) { out[j] = ((b.qs[j] & 0x0F) - 8) * d; out[j + 16] = ((b.qs[j] >> 4) - 8) * d; }
    }
}

static void dequantize_q4_1(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += Q_BLOCK) {
        BlockQ4_1 b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
        for (int j = 0; j < 16; j++) { out[j] = (b.qs[j] & 0x0F) * d + m; out[j + 16] = (b.qs[j] >> 4) * d + m; }
    }
}

// bit j of Q5's 32 fifth bits, as the value 16 or 0
static int fifth_bit(const uint8_t qh[4], int j) { return (qh[j / 8] >> (j % 8) & 1) << 4; }

static void dequantize_q5_0(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += Q_BLOCK) {
        BlockQ5_0 b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d);
        for (int j = 0; j < 16; j++) {
            out[j] = ((b.qs[j] & 0x0F) + fifth_bit(b.qh, j) - 16) * d;
            out[j + 16] = ((b.qs[j] >> 4) + fifth_bit(b.qh, j + 16) - 16) * d;
        }
    }
}

static void dequantize_q5_1(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += Q_BLOCK) {
        BlockQ5_1 b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
        for (int j = 0; j < 16; j++) {
            out[j] = ((b.qs[j] & 0x0F) + fifth_bit(b.qh, j)) * d + m;
            out[j + 16] = ((b.qs[j] >> 4) + fifth_bit(b.qh, j + 16)) * d + m;
        }
    }
}

// Sub-block j's 6-bit scale and min in Q4_K's and Q5_K's 12 packed bytes
// (ggml's get_scale_min_k4): j < 4 in the low 6 bits of bytes j and j + 4;
// j >= 4 in a nibble of byte j + 4 plus the top 2 bits of byte j - 4 (scale)
// or byte j (min).
static void k_scale_min(int j, const uint8_t q[12], float *scale, float *min) {
    int s = j < 4 ? q[j] & 63 : (q[j + 4] & 0x0F) | (q[j - 4] >> 6) << 4;
    int m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    *scale = (float)s;
    *min = (float)m;
}

// Q2_K and Q3_K: weight w's low 2 bits lie in byte 32*(w/128) + w%32 of qs, at
// bit 2*((w%128)/32); Q3_K's third bit (set means +0, clear means -4) is bit
// w/32 of hmask[w%32]. Its 16 sub-block scales are 6-bit: the low nibble of
// byte s (s < 8) or the high nibble of byte s - 8, and 2 bits of byte 8 + s%4
// at bit 2*(s/4) (the unpacking in ggml's dequantize_row_q3_K).
static int two_bits(const uint8_t qs[QK_K / 4], int w) { return qs[32 * (w / 128) + w % 32] >> (2 * (w % 128 / 32)) & 3; }

static void dequantize_q2_k(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += QK_K) {
        BlockQ2_K b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
        for (int w = 0; w < QK_K; w++) {
            int sc = b.scales[w / 16];
            float ds = d * (sc & 0x0F), ms = dmin * (sc >> 4);
            out[w] = ds * two_bits(b.qs, w) - ms;
        }
    }
}

static int q3_k_scale(const uint8_t scales[12], int s) {
    int low = s < 8 ? scales[s] & 0x0F : scales[s - 8] >> 4;
    return (low | (scales[8 + s % 4] >> (2 * (s / 4)) & 3) << 4) - 32;
}

static void dequantize_q3_k(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += QK_K) {
        BlockQ3_K b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d);
        for (int w = 0; w < QK_K; w++) {
            float ds = d * q3_k_scale(b.scales, w / 16);
            out[w] = ds * (two_bits(b.qs, w) - (b.hmask[w % 32] >> (w / 32) & 1 ? 0 : 4));
        }
    }
}

// One Q4_K or Q5_K super-block: each 64 weights are 32 bytes of qs, the low
// nibbles the first sub-block, the high ones the next; Q5_K's fifth bit of
// weight l of sub-block s is bit s of qh[l] (qh is NULL for Q4_K).
static void dequantize_k_super_block(uint16_t d_half, uint16_t dmin_half, const uint8_t scales[12], const uint8_t *qs,
                                     const uint8_t *qh, float *out) {
    float d = fp16_to_fp32(d_half), dmin = fp16_to_fp32(dmin_half), scale, min;
    for (int s = 0; s < 8; s++) {
        k_scale_min(s, scales, &scale, &min);
        float ds = d * scale, ms = dmin * min;
        const uint8_t *q = qs + 32 * (s / 2);
        for (int l = 0; l < 32; l++) {
            int low = s % 2 ? q[l] >> 4 : q[l] & 0x0F;
            *out++ = ds * (low + (qh && (qh[l] >> s) & 1 ? 16 : 0)) - ms;
        }
    }
}

static void dequantize_q4_k(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += QK_K) {
        BlockQ4_K b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        dequantize_k_super_block(b.d, b.dmin, b.scales, b.qs, NULL, out);
    }
}

static void dequantize_q5_k(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++, out += QK_K) {
        BlockQ5_K b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        dequantize_k_super_block(b.d, b.dmin, b.scales, b.qs, b.qh, out);
    }
}

// Q6_K: each half of the super-block (128 weights) takes 64 bytes of ql (low
// 4 bits) and 32 of qh (top 2 bits); weight l + 32k of the half (k = 0..3) has
// its low bits in ql[l] (k even) or ql[l + 32] (k odd), low nibble for k < 2,
// and its top bits at bit 2k of qh[l]; its scale is scales[l / 16 + 2k].
static void dequantize_q6_k(const uint8_t *row, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        BlockQ6_K b;
        memcpy(&b, row + i * sizeof b, sizeof b);
        float d = fp16_to_fp32(b.d);
        for (int half = 0; half < 2; half++, out += 128) {
            const uint8_t *ql = b.ql + 64 * half, *qh = b.qh + 32 * half;
            const int8_t *sc = b.scales + 8 * half;
            for (int l = 0; l < 32; l++)
                for (int k = 0; k < 4; k++) {
                    int low = k < 2 ? ql[l + 32 * (k % 2)] & 0x0F : ql[l + 32 * (k % 2)] >> 4;
                    int q = (low | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
                    out[l + 32 * k] = d * sc[l / 16 + 2 * k] * q;
                }
        }
    }
}

typedef struct {
    uint32_t type;
    const char *name;
    int block_weights, block_bytes;
    void (*dequantize_row)(const uint8_t *row, int64_t n_blocks, float *out);
} GgmlFormat;

static const GgmlFormat ggml_formats[] = {
    { GGML_TYPE_F32, "F32", 1, 4, dequantize_f32 },
    { GGML_TYPE_F16, "F16", 1, 2, dequantize_f16 },
    { GGML_TYPE_BF16, "BF16", 1, 2, dequantize_bf16 },
    { GGML_TYPE_Q8_0, "Q8_0", Q_BLOCK, sizeof(BlockQ8_0), dequantize_q8_0 },
    { GGML_TYPE_Q4_0, "Q4_0", Q_BLOCK, sizeof(BlockQ4_0), dequantize_q4_0 },
    { GGML_TYPE_Q4_1, "Q4_1", Q_BLOCK, sizeof(BlockQ4_1), dequantize_q4_1 },
    { GGML_TYPE_Q5_0, "Q5_0", Q_BLOCK, sizeof(BlockQ5_0), dequantize_q5_0 },
    { GGML_TYPE_Q5_1, "Q5_1", Q_BLOCK, sizeof(BlockQ5_1), dequantize_q5_1 },
    { GGML_TYPE_Q2_K, "Q2_K", QK_K, sizeof(BlockQ2_K), dequantize_q2_k },
    { GGML_TYPE_Q3_K, "Q3_K", QK_K, sizeof(BlockQ3_K), dequantize_q3_k },
    { GGML_TYPE_Q4_K, "Q4_K", QK_K, sizeof(BlockQ4_K), dequantize_q4_k },
    { GGML_TYPE_Q5_K, "Q5_K", QK_K, sizeof(BlockQ5_K), dequantize_q5_k },
    { GGML_TYPE_Q6_K, "Q6_K", QK_K, sizeof(BlockQ6_K), dequantize_q6_k },
};
#define GGML_FORMATS_READ "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K"

// ggml's name of a type export does not read, for the message refusing it
static const char *ggml_type_label(uint32_t type) {
    static const char *const names[] = { [9] = "Q8_1", [15] = "Q8_K", [16] = "IQ2_XXS",
        [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
        [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M", [34] = "TQ1_0", [35] = "TQ2_0",
        [39] = "MXFP4", [40] = "NVFP4" };
    return type < sizeof names / sizeof names[0] && names[type] ? names[type] : "unknown";
}

static const GgmlFormat *ggml_format(uint32_t type) {
    for (size_t i = 0; i < sizeof ggml_formats / sizeof ggml_formats[0]; i++)
        if (ggml_formats[i].type == type) return &ggml_formats[i];
    return NULL;   // a type export does not read
}

typedef struct {
    const uint8_t *data;
    size_t size, at;
    const char *path;
} GgufCursor;

static void gguf_need(GgufCursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->at)
        die("%s: GGUF truncated: %s needs %llu bytes at offset %zu of %zu", c->path, what, (unsigned long long)n, c->at, c->size);
}

static uint64_t gguf_read_uint(GgufCursor *c, int bytes, const char *what) {
    gguf_need(c, (uint64_t)bytes, what);
    uint64_t v = 0;
    memcpy(&v, c->data + c->at, (size_t)bytes);   // little-endian host
    c->at += (size_t)bytes;
    return v;
}

// A string as a pointer into the file and its length.
static const char *gguf_read_string(GgufCursor *c, uint64_t *length, const char *what) {
    *length = gguf_read_uint(c, 8, what);
    gguf_need(c, *length, what);
    const char *s = (const char *)c->data + c->at;
    c->at += (size_t)*length;
    return s;
}

static int gguf_scalar_size(uint32_t type) {
    switch (type) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

static void gguf_skip_value(GgufCursor *c, uint32_t type, int depth) {
    uint64_t length;
    if (type == GGUF_STRING) { gguf_read_string(c, &length, "a string value"); return; }
    if (type == GGUF_ARRAY && depth == 0) {
        uint32_t element = (uint32_t)gguf_read_uint(c, 4, "an array type");
        uint64_t count = gguf_read_uint(c, 8, "an array length");
        if (gguf_scalar_size(element)) {
            if (count > (c->size - c->at) / (uint64_t)gguf_scalar_size(element)) gguf_need(c, UINT64_MAX, "an array");
            c->at += (size_t)count * (size_t)gguf_scalar_size(element);
        } else {
            for (uint64_t i = 0; i < count; i++) gguf_skip_value(c, element, depth + 1);
        }
        return;
    }
    if (!gguf_scalar_size(type)) die("%s: GGUF value of unknown type %u at offset %zu", c->path, type, c->at);
    gguf_read_uint(c, gguf_scalar_size(type), "a value");
}

// A whole number or a real of any GGUF scalar type.
static double gguf_read_number(GgufCursor *c, uint32_t type, const char *key) {
    uint64_t bits = gguf_read_uint(c, gguf_scalar_size(type) ? gguf_scalar_size(type) : 0, key);
    switch (type) {
    case GGUF_I8: return (int8_t)bits;
    case GGUF_I16: return (int16_t)bits;
    case GGUF_I32: return (int32_t)bits;
    case GGUF_I64: return (double)(int64_t)bits;
    case GGUF_F32: { float f; uint32_t b = (uint32_t)bits; memcpy(&f, &b, 4); return f; }
    case GGUF_F64: { double d; memcpy(&d, &bits, 8); return d; }
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: case GGUF_BOOL: return (double)bits;
    default: die("%s: key %s should be a number", c->path, key); return 0;
    }
}

// A metadata number bound for an int field: refused unless it is a 32-bit
// integer (casting 3e9 or NaN to int is undefined behaviour, not an error).
static int32_t gguf_int32(const GgufCursor *c, double v, const char *key) {
    if (!(v >= INT32_MIN && v <= INT32_MAX)) die("%s: %s is %g, not a 32-bit integer", c->path, key, v);
    return (int32_t)v;
}

static int32_t gguf_read_int32(GgufCursor *c, uint32_t type, const char *key) {
    return gguf_int32(c, gguf_read_number(c, type, key), key);
}

typedef struct {
    char *name;
    uint32_t type;           // ggml type
    int64_t rows, cols;      // ne[1], ne[0]
    uint64_t offset;         // into the data section, as the tensor table gives it
    const uint8_t *data;
} GgufSourceTensor;

typedef struct {
    const uint8_t *data;
    size_t size;
    GgufSourceTensor *tensors;
    int count;
} GgufModel;

// Where the tokenizer arrays lie in the file (read after the other keys).
typedef struct {
    size_t tokens_at, scores_at, types_at, merges_at;   // 0 when absent
    uint64_t n_tokens, n_scores, n_types, n_merges;
    uint32_t types_element;
    char model[32];
    char pre[32];            // tokenizer.ggml.pre: a byte-level tokenizer's split rule
    uint32_t flags;          // TOKENIZER_NO_BOS, TOKENIZER_NO_DUMMY_PREFIX from add_bos_token, add_space_prefix false
} GgufTokenizerKeys;

// Bytes of one row of cols weights (a whole number of blocks: open_gguf checks).
static size_t ggml_row_bytes(const GgmlFormat *format, int64_t cols) {
    return (size_t)(cols / format->block_weights) * (size_t)format->block_bytes;
}

static const GgufSourceTensor *gguf_named(const GgufModel *m, const char *name) {
    for (int i = 0; i < m->count; i++) if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

// Where a planned tensor lies in the GGUF: its tensor (NULL if absent), the
// first of its rows there (Phi-3's fused ffn_up holds gate then up rows; its
// attn_qkv, when the file fuses them, q, k and v rows), the rows the stored
// tensor must have, and whether it is in rotate-half order (gguf_write.h:
// llama.cpp's NEOX architectures).
typedef struct {
    char name[TENSOR_NAME_LEN];
    const GgufSourceTensor *tensor;
    int64_t first_row, rows;
    int neox;
} GgufPart;

static GgufPart gguf_part(const Source *src, const PlannedTensor *t) {
    const GgufModel *m = src->impl;
    const FileHeader *h = &src->header;
    GgufPart part = { .first_row = 0, .rows = t->entry.rows };
    gguf_tensor_name(src, t, part.name, sizeof part.name);
    part.neox = neox_architecture(src->settings.architecture) && (permuted_rows(t->kind) || permuted_columns(t->kind));
    if (src->settings.architecture == ARCH_PHI3 && t->layer >= 0) {
        int64_t q_dim = (int64_t)h->n_heads * h->head_dim, kv_dim = (int64_t)h->n_kv_heads * h->head_dim;
        char fused[TENSOR_NAME_LEN];
        snprintf(fused, sizeof fused, "blk.%d.attn_qkv.weight", t->layer);
        if (t->kind == K_W1 || t->kind == K_W3) {
            part.rows = 2 * (int64_t)src->ffn_dim[t->layer];
            part.first_row = t->kind == K_W1 ? 0 : src->ffn_dim[t->layer];
        } else if ((t->kind == K_WQ || t->kind == K_WK || t->kind == K_WV) && gguf_named(m, fused)) {
            snprintf(part.name, sizeof part.name, "%s", fused);
            part.rows = q_dim + 2 * kv_dim;
            part.first_row = t->kind == K_WQ ? 0 : t->kind == K_WK ? q_dim : q_dim + kv_dim;
        }
    }
    part.tensor = gguf_named(m, part.name);
    return part;
}

static void gguf_check_tensor(const Source *src, const PlannedTensor *t) {
    GgufPart part = gguf_part(src, t);
    const GgufSourceTensor *g = part.tensor;
    if (!g) die("tensor %s is missing from the GGUF file", part.name);
    if (!ggml_format(g->type))
        die("tensor %s has ggml type %u (%s): export reads " GGML_FORMATS_READ, part.name, g->type, ggml_type_label(g->type));
    if (g->rows != part.rows || g->cols != t->entry.cols)
        die("tensor %s is (%lld, %lld) but the metadata implies (%lld, %u)%s", part.name, (long long)g->rows,
            (long long)g->cols, (long long)part.rows, t->entry.cols,
            part.rows != t->entry.rows ? " (a fused tensor: its parts' rows one after another)" : "");
}

// Our row r's row in the stored tensor.
static int64_t gguf_row(const Source *src, const GgufPart *part, int kind, int r) {
    return part->first_row + (part->neox && permuted_rows(kind) ? rotate_half_index(r, src->header.head_dim, source_rotary_dim(src)) : r);
}

static void gguf_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    GgufPart part = gguf_part(src, t);
    const GgufSourceTensor *g = part.tensor;
    const GgmlFormat *format = ggml_format(g->type);
    size_t row_bytes = ggml_row_bytes(format, g->cols);
    float *row = part.neox && permuted_columns(t->kind) ? xcalloc((size_t)g->cols, sizeof(float), "row") : NULL;
    for (int r = begin; r < end; r++) {
        float *dst = out + (size_t)(r - begin) * g->cols;
        format->dequantize_row(g->data + (size_t)gguf_row(src, &part, t->kind, r) * row_bytes, g->cols / format->block_weights,
                               row ? row : dst);
        for (int64_t c = 0; row && c < g->cols; c++) dst[c] = row[rotate_half_index(c, src->header.head_dim, source_rotary_dim(src))];
    }
    free(row);
}

// Q4_0 blocks are runq's int4 at group 32: the same scale, the same nibbles.
static int gguf_read_codes(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                           uint8_t *nibbles, uint16_t *scales) {
    GgufPart part = gguf_part(src, t);
    const GgufSourceTensor *g = part.tensor;
    if (g->type != GGML_TYPE_Q4_0 || type != TYPE_Q4 || group_size != Q_BLOCK) return 0;
    int blocks = (int)(g->cols / Q_BLOCK);
    for (int r = begin; r < end; r++)
        for (int b = 0; b < blocks; b++) {
            BlockQ4_0 block;
            memcpy(&block, g->data + ((size_t)gguf_row(src, &part, t->kind, r) * blocks + b) * sizeof block, sizeof block);
            size_t at = (size_t)(r - begin) * blocks + b;
            scales[at] = block.d;
            memcpy(nibbles + at * (Q_BLOCK / 2), block.qs, Q_BLOCK / 2);
        }
    return 1;
}

// tokenizer.ggml.* of model "gpt2" with a pre-tokenizer runq knows: a
// byte-level vocabulary (any token not typed normal is special) and its merges.
static void gguf_byte_level_tokenizer(Source *src, const GgufModel *m, const GgufTokenizerKeys *k, const char *path) {
    uint32_t split_rule = gguf_split_rule(k->pre);
    if (!split_rule)
        die("%s: tokenizer.ggml.pre is '%s': of byte-level tokenizers only Llama 3's ('llama-bpe'), GPT-2's ('gpt-2'), "
            "SmolLM's ('smollm'), Qwen's ('qwen2') and GPT-4o's ('gpt-4o') are read", path, k->pre[0] ? k->pre : "(missing)");
    if (!k->merges_at || k->n_merges > INT_MAX) die("%s: a byte-level tokenizer needs tokenizer.ggml.merges", path);
    GgufCursor tokens = { m->data, m->size, k->tokens_at, path }, types = tokens, merges = tokens;
    types.at = k->types_at;
    merges.at = k->merges_at;
    ByteLevelVocab v = new_byte_level_vocab(src->header.vocab_size, (int)k->n_merges, split_rule);
    for (int id = 0; id < v.vocab_size; id++) {
        uint64_t length;
        const char *text = gguf_read_string(&tokens, &length, "a token");
        v.spelled[id] = xcalloc(length + 1, 1, "token");
        memcpy(v.spelled[id], text, length);
        int type = k->types_at ? gguf_read_int32(&types, k->types_element, "tokenizer.ggml.token_type") : GGUF_TOKEN_NORMAL;
        v.special[id] = type != GGUF_TOKEN_NORMAL;
    }
    for (int rank = 0; rank < v.n_merges; rank++) {
        uint64_t length;
        const char *text = gguf_read_string(&merges, &length, "a merge");
        v.merges[rank] = xcalloc(length + 1, 1, "merge");
        memcpy(v.merges[rank], text, length);
    }
    const char *refusal = byte_level_blob(&v, path, &src->tokenizer, &src->tokenizer_size);
    if (refusal) die("%s: %s", path, refusal);
    free_byte_level_vocab(&v);
}

// tokenizer.ggml.* of model "llama" (SentencePiece) -> llama2.c's layout, or
// of model "gpt2" (byte-level, Llama 3's) -> a byte-level blob.
// Control, unknown, unused and byte pieces score -inf: text never merges into them.
static void gguf_tokenizer(Source *src, const GgufModel *m, const GgufTokenizerKeys *k, const char *path) {
    if (!k->tokens_at) return;
    if (strcmp(k->model, "llama") != 0 && strcmp(k->model, "gpt2") != 0)
        die("%s: tokenizer.ggml.model is '%s': only SentencePiece ('llama') and Llama 3's byte-level ('gpt2') "
            "tokenizers are read; pass -z", path, k->model);
    if ((int64_t)k->n_tokens != src->header.vocab_size || (k->scores_at && k->n_scores != k->n_tokens)
        || (k->types_at && k->n_types != k->n_tokens))
        die("%s: the tokenizer arrays do not all have the vocabulary's %d entries", path, src->header.vocab_size);
    if (strcmp(k->model, "gpt2") == 0) {
        gguf_byte_level_tokenizer(src, m, k, path);
        return;
    }
    GgufCursor tokens = { m->data, m->size, k->tokens_at, path }, scores = tokens, types = tokens;
    scores.at = k->scores_at;
    types.at = k->types_at;
    Buffer b = { 0 };
    int32_t max_length = 1;
    tokenizer_start(&b, TOKENIZER_SENTENCEPIECE, 0);
    for (uint64_t i = 0; i < k->n_tokens; i++) {
        uint64_t length;
        const char *text = gguf_read_string(&tokens, &length, "a token");
        if (length > 1024) die("%s: token %llu is %llu bytes long", path, (unsigned long long)i, (unsigned long long)length);
        char *piece = xcalloc(length + 1, 1, "piece");
        memcpy(piece, text, length);
        length = replace_sentencepiece_spaces(piece, length);
        float score = k->scores_at ? (float)gguf_read_number(&scores, GGUF_F32, "tokenizer.ggml.scores") : 0.0f;
        int type = k->types_at ? gguf_read_int32(&types, k->types_element, "tokenizer.ggml.token_type") : GGUF_TOKEN_NORMAL;
        if (type != GGUF_TOKEN_NORMAL && type != 4 /* user-defined */) score = -INFINITY;
        tokenizer_put_piece(&b, score, piece, length);
        if ((int32_t)length > max_length) max_length = (int32_t)length;
        free(piece);
    }
    tokenizer_finish(&b, max_length);
    src->tokenizer = b.data;
    src->tokenizer_size = b.size;
}

static void gguf_close(Source *src) {
    GgufModel *m = src->impl;
    for (int i = 0; i < m->count; i++) free(m->tensors[i].name);
    free(m->tensors);
    munmap((void *)m->data, m->size);
    free(m);
}

// The architecture's keys beyond Llama's that export reads (each
// "<architecture>.<suffix>"); NAN or -1 where the file has none.
typedef struct {
    double rope_scaling_factor, rope_attention_factor, rope_base_local, attention_softcap, final_softcap, embedding_scale;
    int64_t rotary_dims, sliding_window, original_context, sliding_period;
    uint32_t *sliding_layers;   // sliding_window_pattern as one flag per layer, or NULL
    char rope_scaling_type[32];
} GgufArchitectureKeys;

// general.architecture, wherever it lies among the keys (c is a copy).
static int gguf_architecture(GgufCursor c, uint64_t n_keys) {
    for (uint64_t i = 0; i < n_keys; i++) {
        uint64_t key_length, length;
        const char *key = gguf_read_string(&c, &key_length, "a metadata key");
        uint32_t type = (uint32_t)gguf_read_uint(&c, 4, "a value type");
        if (type != GGUF_STRING || key_length != 20 || memcmp(key, "general.architecture", 20) != 0) {
            gguf_skip_value(&c, type, 0);
            continue;
        }
        const char *text = gguf_read_string(&c, &length, key);
        for (int a = 0; a < N_ARCHITECTURES; a++)
            if (strlen(architecture_names[a]) == length && memcmp(text, architecture_names[a], length) == 0) return a;
        char known[128] = "";
        for (int a = 0; a < N_ARCHITECTURES; a++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", a ? ", " : "", architecture_names[a]);
        die("%s: general.architecture is '%.*s'; export reads %s GGUF files", c.path, (int)(length < 64 ? length : 64), text, known);
    }
    die("%s: general.architecture is '(missing)'; a GGUF names its model's architecture", c.path);
    return -1;
}

// The metadata keys export uses; everything else is skipped.
static void gguf_read_metadata(GgufCursor *c, uint64_t n_keys, Source *src, GgufTokenizerKeys *tok, GgufArchitectureKeys *arch,
                               uint64_t *alignment) {
    FileHeader *h = &src->header;
    double ffn = 0;
    src->settings.architecture = (uint32_t)gguf_architecture(*c, n_keys);
    const char *prefix = architecture_names[src->settings.architecture];
    size_t prefix_length = strlen(prefix);
    h->rope_theta = 10000.0f;
    h->norm_eps = 1e-5f;
    h->bos_id = 1;
    h->eos_id = 2;
    for (uint64_t i = 0; i < n_keys; i++) {
        uint64_t key_length;
        const char *key_text = gguf_read_string(c, &key_length, "a metadata key");
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(key_length < 127 ? key_length : 127), key_text);
        // the architecture's own keys, by what follows "<architecture>."
        const char *own = strncmp(key, prefix, prefix_length) == 0 && key[prefix_length] == '.' ? key + prefix_length + 1 : "";
        uint32_t type = (uint32_t)gguf_read_uint(c, 4, "a value type");
        if (type == GGUF_STRING && (strcmp(key, "tokenizer.ggml.model") == 0 || strcmp(key, "tokenizer.ggml.pre") == 0
                                    || strcmp(own, "rope.scaling.type") == 0)) {
            uint64_t length;
            const char *text = gguf_read_string(c, &length, key);
            char *out = own[0] ? arch->rope_scaling_type : key[15] == 'm' ? tok->model : tok->pre;
            snprintf(out, 32, "%.*s", (int)(length < 31 ? length : 31), text);
        } else if (type == GGUF_BOOL && (strcmp(key, "tokenizer.ggml.add_bos_token") == 0
                                         || strcmp(key, "tokenizer.ggml.add_space_prefix") == 0)) {
            if (gguf_read_uint(c, 1, key) == 0) tok->flags |= key[19] == 'b' ? TOKENIZER_NO_BOS : TOKENIZER_NO_DUMMY_PREFIX;
        } else if (type == GGUF_STRING && strcmp(key, "tokenizer.chat_template") == 0) {
            uint64_t length;
            const char *text = gguf_read_string(c, &length, key);
            char *jinja = xcalloc(length + 1, 1, key);
            memcpy(jinja, text, length);
            h->chat_template = chat_template_of_jinja(jinja);
            free(jinja);
        } else if (type == GGUF_ARRAY && strncmp(key, "tokenizer.ggml.", 15) == 0
                   && (strcmp(key + 15, "tokens") == 0 || strcmp(key + 15, "scores") == 0 || strcmp(key + 15, "token_type") == 0
                       || strcmp(key + 15, "merges") == 0)) {
            uint32_t element = (uint32_t)gguf_read_uint(c, 4, key);
            uint64_t count = gguf_read_uint(c, 8, key);
            size_t start = c->at;
            c->at -= 12;   // skip the whole array, then remember where its items begin
            gguf_skip_value(c, GGUF_ARRAY, 0);
            if (strcmp(key + 15, "tokens") == 0) {
                if (element != GGUF_STRING) die("%s: %s is not a list of strings", c->path, key);
                tok->tokens_at = start;
                tok->n_tokens = count;
            } else if (strcmp(key + 15, "merges") == 0) {
                if (element != GGUF_STRING) die("%s: %s is not a list of strings", c->path, key);
                tok->merges_at = start;
                tok->n_merges = count;
            } else if (strcmp(key + 15, "scores") == 0) {
                if (element != GGUF_F32) die("%s: %s is not a list of f32", c->path, key);
                tok->scores_at = start;
                tok->n_scores = count;
            } else {
                if (!gguf_scalar_size(element) || element == GGUF_F32) die("%s: %s is not a list of integers", c->path, key);
                tok->types_at = start;
                tok->n_types = count;
                tok->types_element = element;
            }
        } else if (type == GGUF_ARRAY && (strcmp(own, "feed_forward_length") == 0 || strcmp(own, "attention.sliding_window_pattern") == 0)) {
            uint32_t element = (uint32_t)gguf_read_uint(c, 4, key);
            uint64_t count = gguf_read_uint(c, 8, key);
            if (!gguf_scalar_size(element) || count > 4096) die("%s: %s is not a list of numbers", c->path, key);
            int *widths = own[0] == 'f' ? xcalloc(count, sizeof(int), "ffn table") : NULL;
            uint32_t *sliding = widths ? NULL : xcalloc(count, sizeof(uint32_t), "sliding layers");
            for (uint64_t l = 0; l < count; l++) {
                int32_t v = gguf_read_int32(c, element, key);
                if (widths) widths[l] = v; else sliding[l] = v != 0;
            }
            if (widths) {
                free(src->ffn_dim);
                src->ffn_dim = widths;
                ffn = -(double)count;   // per-layer widths given
            } else {
                free(arch->sliding_layers);
                arch->sliding_layers = sliding;
                arch->sliding_period = -(int64_t)count;   // per-layer flags given
            }
        } else if (type != GGUF_ARRAY && type != GGUF_STRING && gguf_scalar_size(type)) {
            double v = gguf_read_number(c, type, key);
            if (strcmp(own, "embedding_length") == 0) h->dim = gguf_int32(c, v, key);
            else if (strcmp(own, "block_count") == 0) h->n_layers = gguf_int32(c, v, key);
            else if (strcmp(own, "feed_forward_length") == 0) ffn = gguf_int32(c, v, key);
            else if (strcmp(own, "attention.head_count") == 0) h->n_heads = gguf_int32(c, v, key);
            else if (strcmp(own, "attention.head_count_kv") == 0) h->n_kv_heads = gguf_int32(c, v, key);
            else if (strcmp(own, "attention.key_length") == 0) h->head_dim = gguf_int32(c, v, key);
            else if (strcmp(own, "context_length") == 0) h->seq_len = gguf_int32(c, v, key);
            else if (strcmp(own, "rope.freq_base") == 0) h->rope_theta = (float)v;
            else if (strcmp(own, "attention.layer_norm_rms_epsilon") == 0) h->norm_eps = (float)v;
            else if (strcmp(own, "rope.dimension_count") == 0) arch->rotary_dims = gguf_int32(c, v, key);
            else if (strcmp(own, "rope.freq_base_swa") == 0) arch->rope_base_local = v;
            else if (strcmp(own, "rope.scaling.factor") == 0) arch->rope_scaling_factor = v;
            else if (strcmp(own, "rope.scaling.attn_factor") == 0) arch->rope_attention_factor = v;
            else if (strcmp(own, "rope.scaling.original_context_length") == 0) arch->original_context = gguf_int32(c, v, key);
            else if (strcmp(own, "attention.sliding_window") == 0) arch->sliding_window = gguf_int32(c, v, key);
            else if (strcmp(own, "attention.sliding_window_pattern") == 0) arch->sliding_period = gguf_int32(c, v, key);
            else if (strcmp(own, "attn_logit_softcapping") == 0) arch->attention_softcap = v;
            else if (strcmp(own, "final_logit_softcapping") == 0) arch->final_softcap = v;
            else if (strcmp(own, "embedding_scale") == 0) arch->embedding_scale = v;
            else if (strcmp(key, "tokenizer.ggml.bos_token_id") == 0) h->bos_id = gguf_int32(c, v, key);
            else if (strcmp(key, "tokenizer.ggml.eos_token_id") == 0) h->eos_id = gguf_int32(c, v, key);
            else if (strcmp(key, "general.alignment") == 0) *alignment = (uint64_t)gguf_int32(c, v, key);   // open_gguf checks its value
        } else {
            gguf_skip_value(c, type, 0);
        }
    }
    if (h->n_kv_heads == 0) h->n_kv_heads = h->n_heads;
    if (h->head_dim == 0 && h->n_heads > 0) h->head_dim = h->dim / h->n_heads;
    if (tok->n_tokens) h->vocab_size = (int32_t)tok->n_tokens;
    if (h->n_layers <= 0 || h->n_layers > 1024)   // runq's limit; and the FFN table is allocated from it
        die("%s: %s.block_count is %d; export reads 1 to 1024 layers", c->path, prefix, h->n_layers);
    if (ffn > 0) {
        free(src->ffn_dim);   // a list given before the number is replaced
        src->ffn_dim = xcalloc((size_t)h->n_layers, sizeof(int), "ffn table");
        for (int l = 0; l < h->n_layers; l++) src->ffn_dim[l] = (int)ffn;
    } else if (ffn == 0 || -ffn != h->n_layers || !src->ffn_dim) {   // a negative number is no list of widths
        die("%s: %s.feed_forward_length is missing or does not list every layer", c->path, prefix);
    }
}

// An f32 vector of half numbers, each a positive finite RoPE divisor, copied
// (rope_freqs.weight: Llama 3.1's; rope_factors_short/_long: LongRoPE's), or NULL if absent.
static float *gguf_divisors(const GgufModel *m, const char *name, int half, const char *path) {
    const GgufSourceTensor *g = gguf_named(m, name);
    if (!g) return NULL;
    if (g->type != GGML_TYPE_F32 || g->rows != 1 || g->cols != half)
        die("%s: %s should be %d f32 values (rotated dims / 2); it is (%lld, %lld) of ggml type %u", path, name, half,
            (long long)g->rows, (long long)g->cols, g->type);
    float *divisors = xcalloc((size_t)half, sizeof(float), name);
    memcpy(divisors, g->data, sizeof(float) * (size_t)half);
    for (int j = 0; j < half; j++)
        if (!(divisors[j] > 0) || !isfinite(divisors[j]))
            die("%s: %s[%d] is %g; RoPE frequency divisors must be positive and finite", path, name, j, divisors[j]);
    return divisors;
}

// The sliding layers as llama.cpp derives them: one flag per layer, or every
// period layers all but the last (Gemma 2's default 2, Gemma 3's 6).
static void gguf_sliding_layers(Source *src, const GgufArchitectureKeys *k, int default_period, const char *path) {
    int n = src->header.n_layers;
    if (k->sliding_period < 0 && -k->sliding_period != n)
        die("%s: attention.sliding_window_pattern lists %lld layers of %d", path, (long long)-k->sliding_period, n);
    int64_t period = k->sliding_period > 0 ? k->sliding_period : default_period;
    for (int l = 0; l < n; l++)
        if (k->sliding_layers ? k->sliding_layers[l] : period == 0 || l % period < period - 1) set_layer_kind(src, l, LAYER_SLIDING);
}

// What the architecture computes beyond Llama, as llama.cpp's loader reads it
// (gguf_write.h writes the same keys), into the Source's settings.
static void gguf_architecture_settings(Source *src, const GgufModel *m, const GgufArchitectureKeys *k, const char *path) {
    FileHeader *h = &src->header;
    ModelSettings *s = &src->settings;
    uint32_t a = s->architecture;
    int64_t rotary = k->rotary_dims >= 0 ? k->rotary_dims : h->head_dim;
    if (rotary < 2 || rotary > h->head_dim || rotary % 2)
        die("%s: rope.dimension_count is %lld; it should be even, from 2 to head_dim %d", path, (long long)rotary, h->head_dim);
    if (rotary != h->head_dim) {
        if (a != ARCH_PHI3) die("%s: rope.dimension_count %lld of head_dim %d: only phi3 turns part of each head", path,
                                (long long)rotary, h->head_dim);
        s->rotary_dim = (int32_t)rotary;
    }
    int half = source_rotary_dim(src) / 2;
    if (a == ARCH_LLAMA) {
        if (!isnan(k->rope_scaling_factor) && k->rope_scaling_factor != 1.0)
            die("%s: RoPE scaling (llama.rope.scaling.factor = %g) is not supported yet", path, k->rope_scaling_factor);
        src->rope_freqs = gguf_divisors(m, "rope_freqs.weight", half, path);
    }
    if (a == ARCH_QWEN2) {
        char bias[TENSOR_NAME_LEN];
        snprintf(bias, sizeof bias, "blk.0.attn_q.bias");
        if (gguf_named(m, bias)) h->flags |= FLAG_QKV_BIAS;
    }
    if (a == ARCH_QWEN3 || a == ARCH_GEMMA3) h->flags |= FLAG_QK_NORM;
    if (a == ARCH_GEMMA2 || a == ARCH_GEMMA3) {
        h->flags |= FLAG_POST_NORMS;
        if (a == ARCH_GEMMA2) h->flags |= FLAG_TIED_CLASSIFIER;   // llama.cpp's gemma2 reads no output tensor
        s->activation = ACTIVATION_GELU_TANH;
        s->embedding_scale = (float)(isnan(k->embedding_scale) ? sqrtf((float)h->dim) : k->embedding_scale);
        s->final_softcap = (float)(isnan(k->final_softcap) ? (a == ARCH_GEMMA2 ? 30.0 : 0.0) : k->final_softcap);
        if (a == ARCH_GEMMA2) s->attention_softcap = (float)(isnan(k->attention_softcap) ? 50.0 : k->attention_softcap);
        int64_t window = k->sliding_window >= 0 ? k->sliding_window : a == ARCH_GEMMA2 ? 4096 : 0;
        if (window > 0) {
            s->sliding_window = (int32_t)window;
            gguf_sliding_layers(src, k, a == ARCH_GEMMA2 ? 2 : 6, path);
        }
    }
    if (a == ARCH_GEMMA3 && s->sliding_window) {   // local layers turn with rope.freq_base_swa, unscaled
        s->rope_theta_local = (float)(isnan(k->rope_base_local) ? 10000.0 : k->rope_base_local);
        for (int l = 0; l < h->n_layers; l++)
            if (source_layer_kind(src, l) & LAYER_SLIDING) set_layer_kind(src, l, LAYER_LOCAL_ROPE);
    }
    if (a == ARCH_GEMMA3 && strcmp(k->rope_scaling_type, "linear") == 0 && !isnan(k->rope_scaling_factor)
        && k->rope_scaling_factor != 1.0) {
        if (!(k->rope_scaling_factor > 0)) die("%s: rope.scaling.factor %g should be positive", path, k->rope_scaling_factor);
        src->rope_freqs = xcalloc((size_t)half, sizeof(float), "rope_freqs");
        for (int i = 0; i < half; i++) src->rope_freqs[i] = (float)k->rope_scaling_factor;
    }
    if (a == ARCH_PHI3) {
        if (k->sliding_window > 0 && k->sliding_window < h->seq_len) {
            s->sliding_window = (int32_t)k->sliding_window;
            for (int l = 0; l < h->n_layers; l++) set_layer_kind(src, l, LAYER_SLIDING);
        }
        src->rope_freqs = gguf_divisors(m, "rope_factors_short.weight", half, path);
        src->rope_freqs_long = gguf_divisors(m, "rope_factors_long.weight", half, path);
        if (!src->rope_freqs != !src->rope_freqs_long || (src->rope_freqs_long && k->original_context <= 0))
            die("%s: LongRoPE needs rope_factors_short, rope_factors_long and rope.scaling.original_context_length", path);
        if (src->rope_freqs_long) {
            s->rope_long_after = (int32_t)k->original_context;
            s->rope_attention_factor = (float)(isnan(k->rope_attention_factor) ? 1.0 : k->rope_attention_factor);
        }
    }
    if (a == ARCH_SMOLLM3)   // llama.cpp leaves RoPE out of every fourth layer
        for (int l = 0; l < h->n_layers; l++)
            if ((l + 1) % 4 == 0) set_layer_kind(src, l, LAYER_NO_ROPE);
}

static void open_gguf(Source *src, const char *path) {
    GgufModel *m = xcalloc(1, sizeof *m, "model");
    m->data = map_file(path, &m->size);
    GgufCursor c = { m->data, m->size, 0, path };
    if (gguf_read_uint(&c, 4, "the magic") != GGUF_MAGIC_U32) die("%s: not a GGUF file", path);
    uint32_t version = (uint32_t)gguf_read_uint(&c, 4, "the version");
    if (version != 2 && version != 3) die("%s: GGUF version %u; export reads versions 2 and 3", path, version);
    uint64_t n_tensors = gguf_read_uint(&c, 8, "the tensor count"), n_keys = gguf_read_uint(&c, 8, "the key count");
    if (n_tensors > 1u << 20 || n_keys > 1u << 20) die("%s: GGUF header claims %llu tensors and %llu keys", path,
                                                      (unsigned long long)n_tensors, (unsigned long long)n_keys);
    GgufTokenizerKeys tok = { 0 };
    GgufArchitectureKeys arch = { .rope_scaling_factor = NAN, .rope_attention_factor = NAN, .rope_base_local = NAN,
                                  .attention_softcap = NAN, .final_softcap = NAN, .embedding_scale = NAN,
                                  .rotary_dims = -1, .sliding_window = -1, .original_context = -1 };
    uint64_t alignment = GGUF_ALIGNMENT;
    gguf_read_metadata(&c, n_keys, src, &tok, &arch, &alignment);
    check_header(&src->header, path);
    if (alignment == 0 || alignment > 1u << 16 || (alignment & (alignment - 1))) die("%s: general.alignment %llu", path,
                                                                                    (unsigned long long)alignment);
    m->tensors = xcalloc((size_t)n_tensors + 1, sizeof(GgufSourceTensor), "tensor table");
    for (uint64_t i = 0; i < n_tensors; i++) {
        GgufSourceTensor *g = &m->tensors[m->count++];
        uint64_t length;
        const char *name = gguf_read_string(&c, &length, "a tensor name");
        g->name = xcalloc(length + 1, 1, "tensor name");
        memcpy(g->name, name, length);
        uint32_t n_dims = (uint32_t)gguf_read_uint(&c, 4, "a tensor's dimension count");
        if (n_dims < 1 || n_dims > 4) die("%s: tensor %s has %u dimensions", path, g->name, n_dims);
        g->cols = (int64_t)gguf_read_uint(&c, 8, "a dimension");
        g->rows = n_dims > 1 ? (int64_t)gguf_read_uint(&c, 8, "a dimension") : 1;
        for (uint32_t d = 2; d < n_dims; d++)
            if (gguf_read_uint(&c, 8, "a dimension") != 1) die("%s: tensor %s has more than 2 dimensions", path, g->name);
        if (g->cols <= 0 || g->rows <= 0 || g->cols > INT32_MAX || g->rows > INT32_MAX)
            die("%s: tensor %s has shape (%lld, %lld)", path, g->name, (long long)g->rows, (long long)g->cols);
        g->type = (uint32_t)gguf_read_uint(&c, 4, "a tensor type");
        g->offset = gguf_read_uint(&c, 8, "a tensor offset");
    }
    size_t data_start = (size_t)round_up(c.at, (size_t)alignment);
    if (data_start > m->size) die("%s: GGUF truncated before its tensor data", path);
    for (int i = 0; i < m->count; i++) {
        GgufSourceTensor *g = &m->tensors[i];
        const GgmlFormat *format = ggml_format(g->type);   // other types are refused if a tensor export needs has one
        if (format && g->cols % format->block_weights)
            die("%s: tensor %s is %s, whose blocks hold %d weights along a row, but its rows have %lld weights", path,
                g->name, format->name, format->block_weights, (long long)g->cols);
        size_t row_bytes = format ? ggml_row_bytes(format, g->cols) : 0;
        if (g->offset > m->size - data_start || row_bytes > (m->size - data_start - g->offset) / (size_t)g->rows)
            die("%s: tensor %s lies past the end of the file (truncated?)", path, g->name);
        g->data = m->data + data_start + g->offset;
    }
    gguf_architecture_settings(src, m, &arch, path);
    free(arch.sliding_layers);
    src->impl = m;
    src->read_rows = gguf_read_rows;
    src->read_codes = gguf_read_codes;
    src->check_tensor = gguf_check_tensor;
    src->close = gguf_close;
    src->description = "GGUF file";
    int has_output = 0;
    for (int i = 0; i < m->count; i++) has_output |= strcmp(m->tensors[i].name, "output.weight") == 0;
    if (!has_output) src->header.flags |= FLAG_TIED_CLASSIFIER;
    if (src->header.vocab_size <= 0)
        for (int i = 0; i < m->count; i++)
            if (strcmp(m->tensors[i].name, "token_embd.weight") == 0) src->header.vocab_size = (int32_t)m->tensors[i].rows;
    gguf_tokenizer(src, m, &tok, path);
    uint32_t kind_flags = strcmp(tok.model, "gpt2") == 0 ? TOKENIZER_NO_BOS : TOKENIZER_NO_BOS | TOKENIZER_NO_DUMMY_PREFIX;
    if (src->tokenizer && (tok.flags & kind_flags)) tokenizer_add_flags(src, tok.flags & kind_flags);
    source_add_input(src, path);
}

#pragma GCC diagnostic pop
#endif
