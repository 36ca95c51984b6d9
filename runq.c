/*
runq.c — the Edge LLM int4 runtime: inference of Llama and its kin (Qwen
2/2.5/3, Gemma 2/3, Phi-3.5/4-mini, SmolLM3, described by the checkpoint's
settings) in one C file.

It memory-maps a group-quantized checkpoint written by export.c (int4 by
default; int8, int3, int2 or a mix per tensor) and uses the weights in place:
nothing is dequantized at load time, the embedding table included.
Activations are quantized to int8 in blocks of 32 on the fly, so the inner
loop of every matrix-vector product is an integer dot product.

What it is: the product. libc, libm and pthreads only; compiles alone:
    cc -O2 -ffp-contract=off -o runq runq.c -lm -lpthread
(-ffp-contract=off keeps the compiler from fusing multiply-adds, so every
CPU computes the same canonical arithmetic and prints the same text; without
it runq still works, with float results that differ in the last bits.)
What it is not: the reference (run.c is the fp32 oracle the tests compare
with), the converter (export.c writes checkpoints and holds the
quantizer) or the server (server.c includes this file).

Reading order (the order the data flows):
    checkpoint format -> errors -> fp16 -> model structs -> mapping the
    checkpoint -> weight x int8 kernels (scalar, AVX2, NEON; choosing them)
    -> thread pool -> matmul backends (OpenCL) -> math blocks -> forward
    -> building a Transformer (and a LoRA adapter) -> UTF-8 -> tokenizer
    -> chat templates -> sampler -> generate / chat -> command line
The part from UTF-8 to the command line is run.c's too, line for line.
*/

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF   // clang honours this; gcc needs -ffp-contract=off
#endif

// ----------------------------------------------------------------------------
// The checkpoint format (versions 1 to 4). All fields little-endian.
//
//   FileHeader                      64 bytes
//   ModelSettings                   64 bytes, version 4 on (below)
//   int32 ffn_dim[n_layers]         per-layer FFN width (structured pruning)
//   uint32 layer_kind[n_layers]     version 4 on: each layer's LAYER_* bits
//   zero padding                    to the next multiple of 64
//   TensorEntry[n_tensors]          96 bytes each
//   tensor data                     each tensor at a 64-byte aligned offset;
//                                   the file ends where the last tensor ends
//
// A matrix is (rows, cols) = (out features, in features), stored as one of
// the quantized types below (or f32 in an fp32 checkpoint, for ./run). A
// quantized matrix is its codes, blocks of 32 weights of a row, followed by
// its fp16 scales, one per group of group_size weights of a row. cols_padded
// rounds cols up to a whole group (32, 64, 128 or 256 weights); padding
// weights are zero. A weight is its group's scale times its signed level.
//
// Q4 (int4, 16 bytes a block, 4.5 bits a weight at group 32): byte p of a
// row's block holds weight p in its low nibble and weight p+16 in its high
// nibble, so one AND and one shift unpack it. A nibble q means level q - 8.
// The Q4 kernels work on eight rows at once, a row per SIMD lane, so the file
// keeps each tile of eight rows interleaved in the order they load it
// (rows_padded rounds rows up to a whole tile; padding rows have scale 0):
//   codes    (rows_padded/8, cols_padded/32, 128 bytes): tile t's block b is
//            four runs of 32 bytes; run d holds, for rows 8t..8t+7 in order,
//            bytes 4d..4d+3 of the row's block (weights 4d..4d+3 and their
//            +16 partners): four weights of a row per 32-bit lane;
//   scales   (rows_padded/8, cols_padded/group_size, 8) fp16, after the
//            codes: the tile's eight rows' scales for each group.
// Versions 1 and 2 stored Q4 rows one after another, like the other types:
// export still reads them, to re-export them.
// The other types keep rows one after another: (rows, cols_padded/32) blocks,
// then (rows, cols_padded/group_size) scales.
// Q8 (int8, 32 bytes a block, 8.5 bits): byte j is weight j's level, a signed
// int8 (-128..127).
// Q2 (int2, 8 bytes a block, 2.5 bits): a 2-bit plane; byte j holds weights
// j, j+8, j+16, j+24 in bits 0-1, 2-3, 4-5, 6-7, so one shift and one AND per
// run of 8 unpack it. A code c means level c - 2 (-2..1).
// Q3 (int3, 12 bytes a block, 3.5 bits): the Q2 plane of the low two bits
// (bytes 0-7), then a 1-bit plane of the high bit (bytes 8-11: weight j's in
// bit j%8 of byte 8 + j/8). A code c (0..7) means level c - 4 (-4..3).
// Q4S (2:4 sparse int4, 12 bytes a block, 3.5 bits): of every four
// consecutive weights (a quad) at most two are not zero, and only those two
// are stored: two int4 levels and a 4-bit position code per quad. A block's
// 32 weights are 8 quads and 16 slots; slot k (0..15) belongs to quad k/2 and
// holds a level (-8..7, a two's complement nibble: 0 is level 0) and its
// weight's position in the quad (0..3):
//   levels    bytes 0-7: slot k in byte 4*(k/8) + k%4, the low nibble when
//             (k/4) is even, the high nibble when odd;
//   positions bytes 8-11: slot k's in bits 2*(k/4)..2*(k/4)+1 of byte 8 + k%4.
// A weight's level is the sum of the levels of the slots that point at it (0
// when none does; export points a quad's two slots at different weights). The
// layout serves the kernels: four slots (k/4 = s) take one shift and one AND
// to unpack, and with the base 8*(s%2) + 4*((k%4)/2) a slot's position picks
// its activation from 16 (one shuffle gathers a step of four per row). Q4S
// rows are always in tiles of eight, as Q4's: tile t's block b is three runs
// of 32 bytes, run d holding bytes 4d..4d+3 of rows 8t..8t+7's blocks; scales
// as Q4's tiles.
//
// The tensors, by name (L: a layer's index; shapes are (rows, cols)):
//   tok_embeddings            (vocab_size, dim)        quantized; a row is dequantized per token
//   layers.L.attention_norm   (1, dim)                 f32, as every norm
//   layers.L.wq               (n_heads*head_dim, dim)  rows in interleaved-pair RoPE order
//   layers.L.wk, .wv          (n_kv_heads*head_dim, dim)   (wk: RoPE order too)
//   layers.L.wo               (dim, n_heads*head_dim)
//   layers.L.ffn_norm         (1, dim)
//   layers.L.w1, .w3          (ffn_dim[L], dim)        gate, up
//   layers.L.w2               (dim, ffn_dim[L])        down
//   norm                      (1, dim)
//   output                    (vocab_size, dim)        absent when FLAG_TIED_CLASSIFIER
//   rope_freqs                (1, rotary_dim/2)        f32, optional (below)
//   rope_freqs_long           (1, rotary_dim/2)        f32, LongRoPE only (below)
//   tokenizer                 (1, bytes)               BLOB (below)
// and, from version 4, in the layers of the models whose header flags say so:
//   layers.L.bq               (1, n_heads*head_dim)    FLAG_QKV_BIAS: added to wq's output (RoPE order)
//   layers.L.bk, .bv          (1, n_kv_heads*head_dim) added to wk's (RoPE order) and wv's output
//   layers.L.q_norm, .k_norm  (1, head_dim)            FLAG_QK_NORM: RMSNorm weights of each head of
//                                                      q and k, before RoPE (RoPE order)
//   layers.L.post_attention_norm, .post_ffn_norm
//                             (1, dim)                 FLAG_POST_NORMS: RMSNorm of the attention's and
//                                                      the FFN's output before it joins the stream
// An fp32 checkpoint (./run's) has the same tensors, every one f32. Every
// norm weight is the factor the normalized value is multiplied by (Gemma's
// RMSNorm multiplies by 1 + w: export stores 1 + w, as llama.cpp does).
//
// The tokenizer travels inside the file as the BLOB tensor "tokenizer", in
// llama2.c's tokenizer.bin layout (after an 8-byte prefix when it is
// byte-level BPE: see "Tokenizer"). A model with scaled RoPE carries the F32
// tensor "rope_freqs", (1, rotary_dim/2): a divisor for each RoPE frequency,
// computed by export from config.json's rope_scaling (Llama 3.1's bands,
// linear scaling's factor, LongRoPE's short factors). It applies to every
// layer that turns with rope_theta, not to LAYER_LOCAL_ROPE layers. LongRoPE
// (Phi-3.5, Phi-4-mini) adds "rope_freqs_long", its long factors: a run that
// holds more than rope_long_after positions turns every position with them
// instead (as llama.cpp chooses by its context size, and as Hugging Face's
// Phi-3 does once a sequence passes that length, recomputing its cache).
//
// ModelSettings (version 4) describe the math of the families beyond Llama:
// Qwen 2/2.5 and 3, Gemma 2 and 3, Phi-3.5/4-mini, SmolLM3, and Mistral's
// sliding window. A zero field means Llama's choice, so a Llama checkpoint is
// exactly one whose settings are all zero, and it is written as version 3.
// layer_kind[L] says how layer L attends: LAYER_SLIDING sees only the last
// sliding_window positions (its own included), LAYER_NO_ROPE turns nothing
// (SmolLM3), LAYER_LOCAL_ROPE turns with rope_theta_local and no rope_freqs
// (Gemma 3's local layers).
//
// Versions: a file is written with the lowest version that describes it, so
// older readers run every file they can: version 1 holds Q4 (row after row)
// and f32; 2 adds rope_freqs; 3 puts Q4 rows in tiles and adds Q8, Q3 and Q2;
// 4 adds ModelSettings, layer_kind, the flags QKV_BIAS, QK_NORM and
// POST_NORMS and their tensors, rope_freqs_long, and Q4S matrices. So a
// quantized Llama checkpoint is version 3 (4 when it holds Q4S: the settings
// are then zeros) and an fp32 one 1 or 2, and any other family's is version 4
// (a runq before 4 refuses it by its version, not halfway through).

#define CHECKPOINT_MAGIC 0x45474445u   // "EDGE"
#define CHECKPOINT_VERSION 4   // the newest read
#define VERSION_ROPE_FREQS 2   // the first version that may hold rope_freqs
#define VERSION_Q4_TILES 3     // the first with Q4 rows in tiles, and with Q8, Q3 and Q2 matrices
#define VERSION_SETTINGS 4     // the first with ModelSettings, layer_kind and the families beyond Llama
#define VERSION_Q4S 4          // the first with Q4S matrices (the same version: settings and Q4S came together)
#define Q4_TILE_ROWS 8                  // rows interleaved in a Q4 tile: one per SIMD lane
#define Q4_TILE_BLOCK_BYTES (Q4_TILE_ROWS * Q_BLOCK / 2)   // a tile's block of 32 weights per row
#define TENSOR_ALIGNMENT 64
#define TENSOR_NAME_LEN 64
#define Q_BLOCK 32                      // weights per block; activations per int8 block

enum TensorType { TYPE_F32 = 0, TYPE_F16 = 1, TYPE_Q4 = 2, TYPE_Q8 = 3, TYPE_Q3 = 4, TYPE_Q2 = 5, TYPE_Q4S = 6, TYPE_BLOB = 255 };
#define N_MATRIX_TYPES 7   // TensorType values below this index the per-type tables

// A quantized type's block of Q_BLOCK weights, as the comment above lays it
// out: level() reads weight j's level, put_level() writes it into a block
// that starts zeroed. The kernels read the same bytes their own fast way.
typedef struct {
    const char *name;        // as export's --bits and --tensor-type spell it, e.g. "q3"
    int bits;
    int block_bytes;
    int lo, hi;              // the levels: weights are scale * [lo, hi]
    int (*level)(const uint8_t *block, int j);
    void (*put_level)(uint8_t *block, int j, int level);
} QuantLayout;

static int level_q4(const uint8_t *block, int j) {
    uint8_t byte = block[j % (Q_BLOCK / 2)];
    return (j < Q_BLOCK / 2 ? byte & 0x0F : byte >> 4) - 8;
}
static void put_level_q4(uint8_t *block, int j, int level) {
    block[j % (Q_BLOCK / 2)] |= (uint8_t)((level + 8) << (j < Q_BLOCK / 2 ? 0 : 4));
}
// The byte minus 256 when its sign bit is set, spelled out: GCC 12, allowed
// VNNI (a VNNI kernel's target, or -march=native on Zen 5 or Alder Lake),
// vectorizes a dot product of (int8_t)byte into vpdpbusd and loses the sign.
static int level_q8(const uint8_t *block, int j) { return (int)block[j] - ((block[j] & 0x80) << 1); }
static void put_level_q8(uint8_t *block, int j, int level) { block[j] = (uint8_t)(int8_t)level; }
static int code_2bit(const uint8_t *plane, int j) { return (plane[j % 8] >> (2 * (j / 8))) & 3; }
static void put_code_2bit(uint8_t *plane, int j, int code) { plane[j % 8] |= (uint8_t)((code & 3) << (2 * (j / 8))); }
static int level_q2(const uint8_t *block, int j) { return code_2bit(block, j) - 2; }
static void put_level_q2(uint8_t *block, int j, int level) { put_code_2bit(block, j, level + 2); }
static int level_q3(const uint8_t *block, int j) { return (code_2bit(block, j) | ((block[8 + j / 8] >> (j % 8)) & 1) << 2) - 4; }
static void put_level_q3(uint8_t *block, int j, int level) {
    put_code_2bit(block, j, level + 4);
    block[8 + j / 8] |= (uint8_t)(((level + 4) >> 2) << (j % 8));
}

// Q4S: slot k's level (its nibble as two's complement) and its weight's index in the block.
static int q4s_slot_level(const uint8_t *block, int k) {
    uint8_t byte = block[4 * (k / 8) + k % 4];
    return (((k / 4) % 2 ? byte >> 4 : byte & 0x0F) ^ 8) - 8;
}
static int q4s_slot_weight(const uint8_t *block, int k) {
    return 4 * (k / 2) + ((block[8 + k % 4] >> (2 * (k / 4))) & 3);
}
static int level_q4s(const uint8_t *block, int j) {
    int level = 0;
    for (int k = 2 * (j / 4); k < 2 * (j / 4) + 2; k++)
        if (q4s_slot_weight(block, k) == j) level += q4s_slot_level(block, k);
    return level;
}
// A zero level needs no slot; a non-zero one takes its quad's first slot
// still at level 0 (a third non-zero weight in a quad is the writer's bug).
static void die(const char *fmt, ...);   // "Errors", below
static void put_level_q4s(uint8_t *block, int j, int level) {
    if (level == 0) return;
    int k = 2 * (j / 4);
    if (q4s_slot_level(block, k) != 0) k++;
    if (q4s_slot_level(block, k) != 0) die("internal error: a third non-zero weight in a 2:4 quad (weight %d)", j);
    block[4 * (k / 8) + k % 4] |= (uint8_t)((level & 0x0F) << ((k / 4) % 2 ? 4 : 0));
    block[8 + k % 4] |= (uint8_t)((j % 4) << (2 * (k / 4)));
}

static const QuantLayout quant_layouts[N_MATRIX_TYPES] = {
    [TYPE_Q8] = { "q8", 8, 32, -128, 127, level_q8, put_level_q8 },
    [TYPE_Q4] = { "q4", 4, 16, -8, 7, level_q4, put_level_q4 },
    [TYPE_Q3] = { "q3", 3, 12, -4, 3, level_q3, put_level_q3 },
    [TYPE_Q2] = { "q2", 2, 8, -2, 1, level_q2, put_level_q2 },
    [TYPE_Q4S] = { "q4s", 4, 12, -8, 7, level_q4s, put_level_q4s },
};

// The layout of a quantized type; NULL for f32, f16, blobs and unknown types.
static const QuantLayout *quant_layout(uint32_t type) {
    return type < N_MATRIX_TYPES && quant_layouts[type].name ? &quant_layouts[type] : NULL;
}
static int is_quantized(uint32_t type) { return quant_layout(type) != NULL; }

#define FLAG_TIED_CLASSIFIER 1u         // the classifier is tok_embeddings
#define FLAG_ADAPTER 2u                 // a LoRA adapter for a model of this header, not a model (runq --lora)
#define FLAG_QKV_BIAS 4u                // version 4 on: layers.L.bq, .bk, .bv (Qwen 2)
#define FLAG_QK_NORM 8u                 // version 4 on: layers.L.q_norm, .k_norm (Qwen 3, Gemma 3)
#define FLAG_POST_NORMS 16u             // version 4 on: layers.L.post_attention_norm, .post_ffn_norm (Gemma)
#define FLAGS_OF_VERSION_4 (FLAG_QKV_BIAS | FLAG_QK_NORM | FLAG_POST_NORMS)

typedef struct {
    uint32_t magic;
    uint32_t version;
    int32_t dim;          // residual stream width
    int32_t n_layers;
    int32_t n_heads;      // query heads
    int32_t n_kv_heads;   // key/value heads; fewer than n_heads means grouped-query attention
    int32_t head_dim;     // width of one head
    int32_t vocab_size;
    int32_t seq_len;      // longest context the model was trained for
    float rope_theta;
    float norm_eps;
    uint32_t flags;       // FLAG_*
    int32_t bos_id;
    int32_t eos_id;
    uint32_t n_tensors;
    uint32_t chat_template; // ChatTemplateId (see "Chat templates"); 0: not recorded
} FileHeader;

typedef struct {
    char name[TENSOR_NAME_LEN]; // NUL-padded, e.g. "layers.3.wq"
    uint32_t type;              // TensorType
    uint32_t group_size;        // quantized types: weights per scale (32, 64, 128 or 256); else 0
    uint32_t rows;
    uint32_t cols;
    uint64_t offset;            // from the start of the file, multiple of 64
    uint64_t nbytes;
} TensorEntry;

// The model families a checkpoint can hold, named as llama.cpp names their
// GGUF architectures: runq computes from the settings alone; export --gguf-*
// writes the architecture's keys and tensor layout.
enum Architecture { ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3, ARCH_GEMMA2, ARCH_GEMMA3, ARCH_PHI3, ARCH_SMOLLM3, N_ARCHITECTURES };
__attribute__((unused)) static const char *const architecture_names[N_ARCHITECTURES] = {
    "llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "smollm3" };

// The FFN's gate: silu(w1 x) * w3 x (SwiGLU), or gelu_tanh(w1 x) * w3 x (GeGLU: Gemma).
enum Activation { ACTIVATION_SILU, ACTIVATION_GELU_TANH, N_ACTIVATIONS };

#define LAYER_SLIDING 1u      // attends to the last sliding_window positions only
#define LAYER_NO_ROPE 2u      // q and k are not turned (SmolLM3's NoPE layers)
#define LAYER_LOCAL_ROPE 4u   // turned with rope_theta_local, without rope_freqs (Gemma 3's local layers)
#define LAYER_KINDS (LAYER_SLIDING | LAYER_NO_ROPE | LAYER_LOCAL_ROPE)

// Version 4: after FileHeader. Zero is Llama's value for every field.
typedef struct {
    uint32_t architecture;       // Architecture (0: llama)
    uint32_t activation;         // Activation (0: SwiGLU)
    float embedding_scale;       // each token's embedding row times this (Gemma: sqrt(dim) in the model's dtype); 0: 1
    float score_divisor;         // attention scores are q.k / this (Gemma: sqrt(query_pre_attn_scalar)); 0: sqrt(head_dim)
    float attention_softcap;     // scores become cap * tanh(score / cap) (Gemma 2); 0: none
    float final_softcap;         // the logits likewise (Gemma 2); 0: none
    int32_t sliding_window;      // positions a LAYER_SLIDING layer sees, its own included; 0: no layer slides
    int32_t rotary_dim;          // leading dims of each head RoPE turns (partial_rotary_factor); the rest pass; 0: head_dim
    float rope_theta_local;      // RoPE base of LAYER_LOCAL_ROPE layers (Gemma 3's rope_local_base_freq); 0: none
    float rope_attention_factor; // cos and sin times this on the rotated dims (LongRoPE's attention scaling); 0: 1
    int32_t rope_long_after;     // LongRoPE: a run of more positions uses rope_freqs_long; 0: no rope_freqs_long
    uint32_t reserved[5];        // zero
} ModelSettings;

_Static_assert(sizeof(FileHeader) == 64, "FileHeader is 64 bytes on disk");
_Static_assert(sizeof(ModelSettings) == 64, "ModelSettings is 64 bytes on disk");
_Static_assert(sizeof(TensorEntry) == 96, "TensorEntry is 96 bytes on disk");

static size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Where the per-layer tables start, and where the tensor table starts: 64-byte
// aligned after them, whatever the layer count.
static size_t layer_tables_offset(uint32_t version) {
    return sizeof(FileHeader) + (version >= VERSION_SETTINGS ? sizeof(ModelSettings) : 0);
}
static size_t tensor_table_offset(uint32_t version, int n_layers) {
    size_t per_layer = version >= VERSION_SETTINGS ? 2 * sizeof(int32_t) : sizeof(int32_t);   // ffn_dim (and layer_kind)
    return round_up(layer_tables_offset(version) + per_layer * (size_t)n_layers, TENSOR_ALIGNMENT);
}

// ----------------------------------------------------------------------------
// Errors: one clear message, a non-zero exit. (The programs that include
// this file name themselves through PROGRAM_NAME.)

#ifndef PROGRAM_NAME
#define PROGRAM_NAME "runq"
#endif

#ifdef FUZZING
// The fuzz harnesses (test/fuzz/) set die_jump: a rejected input is the
// outcome they expect, and exit would end the fuzzer, so die formats its
// message (the arguments are still read, as a real run would) and jumps back.
#include <setjmp.h>
static jmp_buf *die_jump;
#endif

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
#ifdef FUZZING
    if (die_jump) {
        char message[512];
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        longjmp(*die_jump, 1);
    }
#endif
    fputs(PROGRAM_NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FAILURE);
}

static void *xcalloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die("out of memory allocating %s (%zu x %zu bytes)", what, count, size);
    return p;
}


// ----------------------------------------------------------------------------
// fp16 <-> fp32, portable (no compiler half type needed)

static float fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);          // inf / nan
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;                                            // +-0
    } else {                                                    // subnormal: normalise
        exponent = 113;
        while (!(mantissa & 0x400)) { mantissa <<= 1; exponent--; }
        bits = sign | (exponent << 23) | ((mantissa & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t fp32_to_fp16(float f) {    // round to nearest even
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint32_t sign = (bits >> 16) & 0x8000;
    int32_t exponent = (int32_t)((bits >> 23) & 0xFF) - 127 + 15;
    uint32_t mantissa = bits & 0x7FFFFF;
    if (((bits >> 23) & 0xFF) == 0xFF) return (uint16_t)(sign | 0x7C00 | (mantissa ? 0x200 : 0));
    if (exponent >= 31) return (uint16_t)(sign | 0x7C00);
    if (exponent <= 0) {                                        // subnormal or zero
        if (exponent < -10) return (uint16_t)sign;
        mantissa |= 0x800000;
        int shift = 14 - exponent;
        uint32_t half = mantissa >> shift;
        uint32_t rest = mantissa & ((1u << shift) - 1), midpoint = 1u << (shift - 1);
        if (rest > midpoint || (rest == midpoint && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exponent << 10) | (mantissa >> 13);
    uint32_t rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++; // may carry into the exponent: correct
    return (uint16_t)half;
}

// ----------------------------------------------------------------------------
// Model structs

typedef struct {
    int dim;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int vocab_size;
    int seq_len;
    int *ffn_dim;         // (n_layers,) FFN width of each layer
    int max_ffn_dim;
    float rope_theta;
    float norm_eps;
    int bos_id;
    int eos_id;
    int tied_classifier;
    uint32_t chat_template;  // ChatTemplateId from the header, 0 if not recorded
    // the families beyond Llama (ModelSettings, with Llama's values where it says 0)
    uint32_t flags;          // FLAG_QKV_BIAS, FLAG_QK_NORM, FLAG_POST_NORMS
    int architecture;        // Architecture
    int activation;          // Activation
    float embedding_scale;   // 1 when the embeddings are not scaled
    float score_divisor;     // sqrt(head_dim) unless the model says otherwise
    float attention_softcap, final_softcap;   // 0: none
    int sliding_window;      // 0: none
    int rotary_dim;          // head_dim unless partial
    float rope_theta_local;  // for LAYER_LOCAL_ROPE layers
    float rope_attention_factor;   // 1 unless LongRoPE
    int rope_long_after;     // LongRoPE's switch; 0: none
    uint32_t *layer_kind;    // (n_layers,) LAYER_* bits
} Config;

// A weight matrix, pointing into the mapped file.
typedef struct {
    const char *name;
    int type;                // a quantized type (matrices) or TYPE_F32 (norm vectors; fp32 checkpoints)
    int rows, cols;          // (out, in)
    int cols_padded;         // cols rounded up to a whole group
    int group_size;
    int q4_tiled;            // rows in Q4's tiles of 8 (Q4 of version 3 on, Q4S always: see the format); else row after row
    union {                  // quantized: the type's codes, (rows, cols_padded/32) blocks (tiled Q4: see the format)
        const uint8_t *codes;
        const uint8_t *nibbles;   // the same pointer, as the Q4 kernels name it
    };
    const uint16_t *scales;  // quantized: (rows, cols_padded/group_size) fp16 (tiled Q4: see the format)
    const float *data;       // F32: (rows, cols)
    // Q2 and Q3 repacked at load into bit-planes for the table-lookup kernels
    // (see "Table lookup"), in memory this run allocated; NULL: not repacked
    const uint8_t *lut_codes;     // (rows_padded/32, cols_padded/32, bits, 4, 32) pattern bytes
    const uint16_t *lut_scales;   // (rows_padded/32, cols_padded/group_size, 32) fp16
    // a LoRA adapter applied at run time (runq --lora): W x + lora_b (lora_a x)
    int lora_rank;           // 0: none
    const float *lora_a;     // (lora_rank, cols)
    const float *lora_b;     // (rows, lora_rank), its scale folded in
} Tensor;

typedef struct {
    Tensor attention_norm;   // (dim,)
    Tensor wq;               // (n_heads*head_dim, dim)
    Tensor wk;               // (n_kv_heads*head_dim, dim)
    Tensor wv;               // (n_kv_heads*head_dim, dim)
    Tensor bq, bk, bv;       // (q_dim,), (kv_dim,), (kv_dim,) biases: FLAG_QKV_BIAS, else data NULL
    Tensor q_norm, k_norm;   // (head_dim,) per-head RMSNorm weights: FLAG_QK_NORM, else data NULL
    Tensor wo;               // (dim, n_heads*head_dim)
    Tensor post_attention_norm;   // (dim,) FLAG_POST_NORMS, else data NULL
    Tensor ffn_norm;         // (dim,)
    Tensor w1;               // (ffn_dim, dim)  gate
    Tensor w2;               // (dim, ffn_dim)  down
    Tensor w3;               // (ffn_dim, dim)  up
    Tensor post_ffn_norm;    // (dim,) FLAG_POST_NORMS, else data NULL
} LayerWeights;

typedef struct {
    Tensor tok_embeddings;   // (vocab_size, dim), Q4: rows are dequantized one token at a time
    LayerWeights *layers;    // (n_layers,)
    Tensor norm;             // (dim,) final RMSNorm
    Tensor output;           // (vocab_size, dim) classifier; tok_embeddings when tied
    const float *rope_freqs; // (rotary_dim/2,) divisors of the RoPE frequencies (scaled RoPE), NULL if none
    const float *rope_freqs_long;    // (rotary_dim/2,) LongRoPE's divisors for long runs, NULL if none
    const uint8_t *tokenizer_blob;   // embedded tokenizer, NULL if none
    size_t tokenizer_size;
} Weights;

// The angles RoPE turns the rotated pairs of each head by, for one base and
// one set of divisors: a model has one, or two when its local layers turn
// with their own base (Gemma 3). cos and sin carry rope_attention_factor.
typedef struct {
    float *freq;             // (rotary_dim/2,) theta^(-2i/rotary_dim), over the divisors when there are some
    float *cos;              // (MAX_BATCH, rotary_dim/2) at each token's position
    float *sin;              // (MAX_BATCH, rotary_dim/2)
} RopeTable;
enum { ROPE_GLOBAL, ROPE_LOCAL, N_ROPE_TABLES };

// int8 activations in blocks of Q_BLOCK, each with its own scale
// Prompt tokens per forward pass: every weight is read once per chunk of this many.
#define MAX_BATCH 64
#define MAX_GROUP_SIZE 256

// int8 activations of up to MAX_BATCH tokens, in blocks of Q_BLOCK with a scale each
typedef struct {
    int8_t *values;          // (MAX_BATCH, stride)
    float *scales;           // (MAX_BATCH, stride/Q_BLOCK)
    int32_t *sums;           // (MAX_BATCH, stride/Q_BLOCK) sum of each block's values (SIMD kernels use it)
    int stride;              // values per token: the widest input rounded up to MAX_GROUP_SIZE
    // the table-lookup kernels' tables (see "Table lookup"): each group of 4
    // values' 16 sums, (MAX_BATCH, stride/4, LUT_GROUP_BYTES); NULL when no
    // matrix of the run is repacked for them
    uint8_t *tables;
} QuantizedActivations;

// The activations of a batch of tokens: row i belongs to sequence row_seq[i]
// (whose KV cache it reads and writes) at position row_pos[i]. A prompt's
// chunk is one sequence at consecutive positions; a server's step mixes one
// token of every decoding sequence with a chunk of a prompt.
typedef struct {
    float *x;                // (MAX_BATCH, dim) residual stream
    float *xb;               // (MAX_BATCH, max(dim, q_dim)) normalised input / attention output
    float *xb2;              // (MAX_BATCH, dim) branch output
    float *hb;               // (MAX_BATCH, max_ffn_dim) gate, then gate*up
    float *hb2;              // (MAX_BATCH, max_ffn_dim) up
    float *q;                // (MAX_BATCH, q_dim)
    float *k, *v;            // (MAX_BATCH, kv_dim) before they go into the cache as fp16
    float *att;              // (n_threads, n_heads / n_kv_heads, cache_len) attention scores: a thread's rows, one per query head of a KV head
    RopeTable rope[N_ROPE_TABLES];   // global layers' and (Gemma 3) local layers' RoPE
    float *logits;           // (n_seqs, vocab_size) of the rows a pass asks for (at most one per sequence)
    int row_seq[MAX_BATCH];  // the batch's rows: each one's sequence (KV cache) ...
    int row_pos[MAX_BATCH];  // ... and position in it
    QuantizedActivations xq; // quantized copy of the current matmul input
    int kv_type;             // KvType: which of the two caches below this run keeps
    // One KV cache per sequence, one after the other: sequence q's layer l is
    // "cache layer" q * n_layers + l, so every index below reads as for one.
    uint16_t *key_cache;     // KV_F16: (n_seqs, n_layers, cache_len, kv_dim) fp16, half of fp32's memory
    uint16_t *value_cache;   // KV_F16: (n_seqs, n_layers, cache_len, kv_dim)
    int8_t *key_cache_q8;    // KV_Q8: (n_seqs, n_layers, cache_len, kv_dim) int8, a quarter of fp32's
    int8_t *value_cache_q8;  // KV_Q8: (n_seqs, n_layers, cache_len, kv_dim)
    float *key_scales;       // KV_Q8: (n_seqs, n_layers, cache_len, n_kv_heads) a head's row is scale * int8
    float *value_scales;     // KV_Q8: (n_seqs, n_layers, cache_len, n_kv_heads)
    int cache_len;           // positions each sequence's KV cache holds: what a run needs, not seq_len
    int n_seqs;              // sequences with a KV cache each: 1 for runq, the server's slots
    size_t kv_bytes, activation_bytes;   // what the two above take (the memory plan)
} RunState;

// The KV cache's element type: fp16 (the default), or int8 with a scale per
// head's row (-k q8: about half the memory again, at a small cost in accuracy
// that the README measures).
enum KvType { KV_F16, KV_Q8 };

// out[t * out_stride + r] = row r of W . token t's activations, rows [row_begin, row_end)
typedef void (*MatmulFn)(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                         const QuantizedActivations *x, int n_tokens);

// The kernels a run uses, chosen once from what the CPU can do. Every one has
// the scalar reference as its twin, and the tests hold it to that twin.
typedef void (*QuantizeFn)(QuantizedActivations *out, const float *x, int x_stride, int n, int n_padded, int n_tokens);

typedef struct {
    const char *name;
    // a product's input -> int8 blocks (quantize_q8 says how)
    QuantizeFn quantize_q8;
    // n floats -> fp16, round to nearest even (the fp16 KV cache's rows)
    void (*to_f16)(uint16_t *out, const float *x, int n);
    // by weight type (TensorType): each quantized type's matrix product; a
    // new type is a layout in quant_layouts and a kernel in each set's table
    MatmulFn matmul[N_MATRIX_TYPES];
    // attention over n_positions fp16 rows of the KV cache, rows stride apart, each n wide,
    // for n_heads query heads at once (head h: q + h * n, scores + h * scores_stride):
    // scores[p] = q . keys[p]
    void (*scores_f16)(float *scores, size_t scores_stride, const float *q, int n_heads, const uint16_t *keys,
                       size_t stride, int n_positions, int n);
    // out = sum of weights[p] * values[p], from zero, in position order (head h: out + h * n,
    // weights + h * weights_stride)
    void (*mix_f16)(float *out, const float *weights, size_t weights_stride, int n_heads, const uint16_t *values,
                    size_t stride, int n_positions, int n);
    // one head over int8 rows, row p standing for scales[p * scale_stride] * (its int8s)
    void (*scores_q8)(float *scores, const float *q, const int8_t *keys, const float *scales, size_t stride,
                      size_t scale_stride, int n_positions, int n);
    void (*mix_q8)(float *out, const float *weights, const int8_t *values, const float *scales, size_t stride,
                   size_t scale_stride, int n_positions, int n);
    // x (n) -> softmax(x / divisor), the canonical way (softmax_ref)
    void (*softmax)(float *x, int n, float divisor);
    // the table-lookup kernels of Q2 and Q3 (see "Table lookup"): tokens'
    // tables from their int8 values (n_padded of them), then the product of
    // a matrix repacked for them (rows in tiles of 32: row_begin a multiple of 32)
    void (*build_tables)(QuantizedActivations *x, int n_padded, int n_tokens);
    MatmulFn matmul_lut[N_MATRIX_TYPES];
} Kernels;

typedef struct ThreadPool ThreadPool;
typedef struct Backend Backend;

typedef struct {
    Config config;
    Weights weights;
    RunState state;
    Kernels kernels;
    int kv_type;                // KvType for prepare_run (open_checkpoint sets KV_F16)
    int n_seqs;                 // KV caches prepare_run allocates (0 or 1: one; the server: its slots)
    ThreadPool *pool;
    const Backend *backend;     // where the int4 matmuls run; NULL: the CPU kernels (see "Matmul backends")
    void *backend_state;        // the backend's device, queue and buffers
    const uint8_t *file_data;   // the whole checkpoint, mapped read-only
    size_t file_size;
    const char *path;
    const uint8_t *adapter_data;   // a LoRA adapter file (runq --lora), mapped; NULL if none
    size_t adapter_size;
    size_t repacked_bytes;      // the Q2/Q3 matrices repacked for the table-lookup kernels (their file pages let go)
} Transformer;

// A device the int4 matrix products can be offloaded to (an OpenCL GPU, an
// NPU), so a new one plugs in without touching the forward pass. The CPU
// kernels need no entry: Transformer.backend is NULL for them.
struct Backend {
    const char *name;        // as RUNQ_BACKEND names it
    // once, after prepare_run mapped the weights and sized the run state:
    // wrap or upload the weights; returns the backend's state, or NULL with
    // why not in message (on success, message names the device)
    void *(*init)(const Transformer *t, char *message, size_t message_size);
    uint32_t types;          // the weight types it multiplies, bit (1 << TensorType) each; the CPU does the rest
    // matmuls' contract: out_m (n_tokens, rows_m) = x W_m^T for count weights
    // sharing the input x (n_tokens, cols), rows x_stride apart
    void (*matmul)(void *state, Transformer *t, int count, float **out, const Tensor **w,
                   const float *x, int x_stride, int n_tokens);
    void (*free)(void *state);
};

// ----------------------------------------------------------------------------
// Mapping the checkpoint: validate every header field against the file size
// before any pointer into it is formed.

static const TensorEntry *find_tensor(const Transformer *t, const char *name) {
    const FileHeader *header = (const FileHeader *)t->file_data;
    const TensorEntry *table = (const TensorEntry *)(t->file_data + tensor_table_offset(header->version, header->n_layers));
    for (uint32_t i = 0; i < header->n_tensors; i++)
        if (strncmp(table[i].name, name, TENSOR_NAME_LEN) == 0) return &table[i];
    return NULL;
}

// The bytes of one row's codes of a quantized matrix, cols_padded wide.
static size_t row_code_bytes(const QuantLayout *layout, uint64_t cols_padded) {
    return (size_t)(cols_padded / Q_BLOCK * (uint64_t)layout->block_bytes);
}

// Whether a type's rows are in tiles of eight in a file of this version.
static int tiled_type(uint32_t type, uint32_t version) {
    return (type == TYPE_Q4 && version >= VERSION_Q4_TILES) || type == TYPE_Q4S;
}

// The oldest version that can hold a type.
static uint32_t type_version(uint32_t type) {
    return type == TYPE_Q4S ? VERSION_Q4S : is_quantized(type) && type != TYPE_Q4 ? VERSION_Q4_TILES : 1;
}

// version: the file's (Q4 rows are in tiles from VERSION_Q4_TILES on)
static size_t tensor_nbytes(uint32_t type, uint64_t rows, uint64_t cols, uint64_t group_size, uint32_t version) {
    const QuantLayout *layout = quant_layout(type);
    if (layout) {
        uint64_t padded = round_up(cols, group_size);
        if (tiled_type(type, version)) rows = round_up(rows, Q4_TILE_ROWS);
        return (size_t)(rows * row_code_bytes(layout, padded) + rows * (padded / group_size) * 2);
    }
    switch (type) {
    case TYPE_F32: return (size_t)(rows * cols * 4);
    case TYPE_F16: return (size_t)(rows * cols * 2);
    default: return (size_t)(rows * cols);   // BLOB: bytes
    }
}

// Where a matrix keeps row r's blocks and scales: rows one after another,
// except Q4's and Q4S's tiles (see the format). The kernels walk their own order; these
// serve the code that wants one row at a time.
static size_t rows_stored(const Tensor *w) {
    return w->q4_tiled ? round_up((size_t)w->rows, Q4_TILE_ROWS) : (size_t)w->rows;
}

// Byte p of row r's block b (for Q4: weights p and p + 16): a tile's block
// is runs of 32 bytes, run p/4 holding bytes 4(p/4)..4(p/4)+3 of its eight rows.
static size_t code_byte_index(const Tensor *w, int r, int b, int p) {
    int n_blocks = w->cols_padded / Q_BLOCK, block_bytes = quant_layout((uint32_t)w->type)->block_bytes;
    if (!w->q4_tiled) return ((size_t)r * n_blocks + b) * block_bytes + p;
    int lane = r % Q4_TILE_ROWS;
    return ((size_t)(r / Q4_TILE_ROWS) * n_blocks + b) * Q4_TILE_ROWS * block_bytes
         + (size_t)(p / 4) * (4 * Q4_TILE_ROWS) + 4 * lane + p % 4;
}

// Row r's scale for group g.
static size_t weight_scale_index(const Tensor *w, int r, int g) {
    int n_groups = w->cols_padded / w->group_size;
    if (!w->q4_tiled) return (size_t)r * n_groups + g;
    return ((size_t)(r / Q4_TILE_ROWS) * n_groups + g) * Q4_TILE_ROWS + r % Q4_TILE_ROWS;
}

// Row r's block b in its type's block layout: in the file, or for tiles
// gathered from the tile's runs into gathered (16 bytes: Q4's four runs, Q4S's three).
static const uint8_t *row_block(const Tensor *w, int r, int b, uint8_t gathered[Q_BLOCK / 2]) {
    if (!w->q4_tiled) return w->codes + code_byte_index(w, r, b, 0);
    const uint8_t *lane = w->codes + code_byte_index(w, r, b, 0);
    for (int d = 0; d < quant_layout((uint32_t)w->type)->block_bytes / 4; d++)
        memcpy(gathered + 4 * d, lane + 4 * Q4_TILE_ROWS * d, 4);
    return gathered;
}

// Row `row` of a quantized matrix back to floats (cols values): token
// embeddings, and export reading a checkpoint.
static void dequantize_row(float *out, const Tensor *w, int row) {
    const QuantLayout *layout = quant_layout((uint32_t)w->type);
    uint8_t gathered[Q_BLOCK / 2];
    for (int b = 0; b * Q_BLOCK < w->cols; b++) {
        const uint8_t *block = row_block(w, row, b, gathered);
        for (int i = b * Q_BLOCK; i < (b + 1) * Q_BLOCK && i < w->cols; i++)
            out[i] = fp16_to_fp32(w->scales[weight_scale_index(w, row, i / w->group_size)])
                   * (float)layout->level(block, i % Q_BLOCK);
    }
}

// A NaN or infinite weight scale or norm weight would turn every activation
// after it into NaN: refused at load, with the tensor named. The scales are
// 1/9 of an int4 file at group 32, read once here; f32 matrices (fp32
// checkpoints, which runq refuses) are checked by export as it reads them.
static void check_finite(const Transformer *t, const Tensor *w) {
    size_t bad = SIZE_MAX;
    if (is_quantized((uint32_t)w->type)) {
        int n_groups = w->cols_padded / w->group_size;
        for (int r = 0; r < w->rows && bad == SIZE_MAX; r++)
            for (int g = 0; g < n_groups; g++)   // fp16 exponent all ones: inf or NaN
                if ((w->scales[weight_scale_index(w, r, g)] & 0x7C00) == 0x7C00) { bad = (size_t)r; break; }
    } else if (w->rows == 1) {
        for (int i = 0; i < w->cols && bad == SIZE_MAX; i++)
            if (!isfinite(w->data[i])) bad = 0;
    }
    if (bad != SIZE_MAX)
        die("%s: tensor '%s' has a NaN or infinite %s in row %zu: the file is damaged", t->path, w->name,
            is_quantized((uint32_t)w->type) ? "scale" : "weight", bad);
}

static Tensor map_tensor(const Transformer *t, const char *name, int rows, int cols, int want_matrix) {
    const TensorEntry *e = find_tensor(t, name);
    if (!e) die("%s: tensor '%s' is missing", t->path, name);
    if ((int64_t)e->rows != rows || (int64_t)e->cols != cols)
        die("%s: tensor '%s' is (%u, %u) but the header implies (%d, %d)", t->path, name, e->rows, e->cols, rows, cols);
    Tensor tensor = { .name = e->name, .type = (int)e->type, .rows = rows, .cols = cols, .cols_padded = cols };
    const uint8_t *data = t->file_data + e->offset;
    if (want_matrix && is_quantized(e->type)) {
        tensor.group_size = (int)e->group_size;
        tensor.cols_padded = (int)round_up((size_t)cols, e->group_size);
        tensor.q4_tiled = tiled_type(e->type, ((const FileHeader *)t->file_data)->version);
        tensor.codes = data;
        tensor.scales = (const uint16_t *)(data + rows_stored(&tensor) * row_code_bytes(quant_layout(e->type), (uint64_t)tensor.cols_padded));
    } else {
        if (e->type != TYPE_F32) die("%s: tensor '%s' has type %u, expected f32 or a quantized type", t->path, name, e->type);
        tensor.data = (const float *)data;
    }
    check_finite(t, &tensor);
    return tensor;
}

static void check_tensor_table(const Transformer *t, const FileHeader *h, size_t table_offset) {
    const TensorEntry *table = (const TensorEntry *)(t->file_data + table_offset);
    uint64_t data_end = table_offset + sizeof(TensorEntry) * (uint64_t)h->n_tensors;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        const TensorEntry *e = &table[i];
        if (memchr(e->name, '\0', TENSOR_NAME_LEN) == NULL)
            die("%s: tensor %u has a name that is not NUL-terminated", t->path, i);
        if (e->type != TYPE_F32 && e->type != TYPE_F16 && e->type != TYPE_BLOB && !is_quantized(e->type))
            die("%s: tensor '%s' has unknown type %u", t->path, e->name, e->type);
        if (is_quantized(e->type) && h->version < type_version(e->type))
            die("%s: tensor '%s' is %s, which version %u files cannot hold (version %u and later)", t->path, e->name,
                quant_layout(e->type)->name, h->version, type_version(e->type));
        if (e->rows == 0 || e->cols == 0 || e->rows > INT32_MAX || e->cols > INT32_MAX)
            die("%s: tensor '%s' has shape (%u, %u)", t->path, e->name, e->rows, e->cols);
        // a power of two: the NEON kernels find a block's group with a shift
        if (is_quantized(e->type) && (e->group_size < Q_BLOCK || e->group_size > MAX_GROUP_SIZE || (e->group_size & (e->group_size - 1))))
            die("%s: tensor '%s' has group size %u, expected 32, 64, 128 or 256", t->path, e->name, e->group_size);
        size_t expected = tensor_nbytes(e->type, e->rows, e->cols, e->group_size, h->version);
        if (e->nbytes != expected)
            die("%s: tensor '%s' claims %llu bytes but its shape needs %zu", t->path, e->name,
                (unsigned long long)e->nbytes, expected);
        if (e->offset % TENSOR_ALIGNMENT != 0)
            die("%s: tensor '%s' is at offset %llu, not %d-byte aligned", t->path, e->name,
                (unsigned long long)e->offset, TENSOR_ALIGNMENT);
        if (e->offset > t->file_size || e->nbytes > t->file_size - e->offset)
            die("%s: tensor '%s' ends past the end of the file (offset %llu + %llu bytes > %zu): truncated?",
                t->path, e->name, (unsigned long long)e->offset, (unsigned long long)e->nbytes, t->file_size);
        if (e->offset + e->nbytes > data_end) data_end = e->offset + e->nbytes;
    }
    // the file ends where its last tensor ends: anything else is damage
    if (data_end != t->file_size)
        die("%s: the tensors end at byte %llu but the file has %zu bytes (truncated or appended to?)", t->path,
            (unsigned long long)data_end, t->file_size);
}

static int header_int_ok(int32_t v, int32_t max) { return v > 0 && v <= max; }

// The widths this runtime accepts: positive, and small enough that every
// product of them (q_dim, kv_dim, a matrix's rows * cols) fits its type.
static int header_dims_ok(const FileHeader *h) {
    return header_int_ok(h->dim, 1 << 16) && header_int_ok(h->n_layers, 1024) && header_int_ok(h->n_heads, 1024)
        && header_int_ok(h->n_kv_heads, 1024) && header_int_ok(h->head_dim, 4096) && header_int_ok(h->vocab_size, 1 << 22)
        && header_int_ok(h->seq_len, 1 << 22);
}

// A file that is no checkpoint: what it most likely is, and the command that converts it.
static void refuse_other_format(const Transformer *t) {
    const char *path = t->path;
    if (memcmp(t->file_data, "GGUF", 4) == 0)
        die("%s is a GGUF file; convert it first: ./export %s model.q4.bin", path, path);
    if (t->file_data[8] == '{')
        die("%s is a safetensors file; convert the Hugging Face directory that holds it: ./export DIR model.q4.bin", path);
    uint32_t magic = ((const FileHeader *)t->file_data)->magic;
    if (magic > 0 && magic < 65536)   // a llama2.c header starts with dim
        die("%s looks like a llama2.c checkpoint; convert it first: ./export -z tokenizer.bin %s model.q4.bin", path, path);
    die("%s: not an Edge LLM checkpoint (magic 0x%08x, not 0x%08x \"EDGE\")", path, magic, CHECKPOINT_MAGIC);
}

// A non-negative finite float of the settings, or death naming it.
static float setting_float(const Transformer *t, const char *name, float value) {
    if (!(value >= 0) || !isfinite(value)) die("%s: setting %s is %g; it must be finite and not negative", t->path, name, value);
    return value;
}

// ModelSettings (NULL, or zero fields: Llama's values) and layer_kind (NULL:
// all 0) into the Config, each checked against what the runtime computes.
static void read_settings(Transformer *t, const ModelSettings *m, const uint32_t *kinds) {
    static const ModelSettings llama;   // all zero: a file before version 4, a llama2.c model
    if (!m) m = &llama;
    Config *c = &t->config;
    if (m->architecture >= N_ARCHITECTURES) die("%s: architecture %u is unknown (0 to %d)", t->path, m->architecture, N_ARCHITECTURES - 1);
    if (m->activation >= N_ACTIVATIONS) die("%s: activation %u is unknown (0 SwiGLU, 1 GeGLU)", t->path, m->activation);
    c->architecture = (int)m->architecture;
    c->activation = (int)m->activation;
    c->embedding_scale = setting_float(t, "embedding_scale", m->embedding_scale);
    if (c->embedding_scale == 0) c->embedding_scale = 1.0f;
    c->score_divisor = setting_float(t, "score_divisor", m->score_divisor);
    if (c->score_divisor == 0) c->score_divisor = sqrtf((float)c->head_dim);
    c->attention_softcap = setting_float(t, "attention_softcap", m->attention_softcap);
    c->final_softcap = setting_float(t, "final_softcap", m->final_softcap);
    c->rope_theta_local = setting_float(t, "rope_theta_local", m->rope_theta_local);
    c->rope_attention_factor = setting_float(t, "rope_attention_factor", m->rope_attention_factor);
    if (c->rope_attention_factor == 0) c->rope_attention_factor = 1.0f;
    for (size_t i = 0; i < sizeof m->reserved / sizeof m->reserved[0]; i++)
        if (m->reserved[i]) die("%s: reserved setting %zu is %u, not 0: a newer format?", t->path, i, m->reserved[i]);
    if (m->sliding_window < 0 || m->rope_long_after < 0)
        die("%s: sliding_window %d and rope_long_after %d must not be negative", t->path, m->sliding_window, m->rope_long_after);
    c->sliding_window = m->sliding_window;
    c->rope_long_after = m->rope_long_after;
    c->rotary_dim = m->rotary_dim ? m->rotary_dim : c->head_dim;
    if (c->rotary_dim < 0 || c->rotary_dim > c->head_dim || c->rotary_dim % 2)
        die("%s: rotary_dim %d is not an even number of dims up to head_dim %d", t->path, m->rotary_dim, c->head_dim);
    c->layer_kind = xcalloc((size_t)c->n_layers, sizeof(uint32_t), "layer kinds");
    for (int l = 0; kinds && l < c->n_layers; l++) {
        c->layer_kind[l] = kinds[l];
        if (kinds[l] & ~LAYER_KINDS) die("%s: layer %d has kind 0x%x, of which only bits 0x%x are known", t->path, l, kinds[l], LAYER_KINDS);
        if ((kinds[l] & LAYER_SLIDING) && c->sliding_window == 0)
            die("%s: layer %d slides but the settings give no sliding_window", t->path, l);
        if ((kinds[l] & LAYER_LOCAL_ROPE) && !(c->rope_theta_local > 0))
            die("%s: layer %d turns with the local RoPE base but rope_theta_local is 0", t->path, l);
    }
}

static void read_config(Transformer *t) {
    if (t->file_size < sizeof(FileHeader))
        die("%s: %zu bytes is too small to be a checkpoint (truncated?)", t->path, t->file_size);
    const FileHeader *h = (const FileHeader *)t->file_data;
    if (h->magic != CHECKPOINT_MAGIC) refuse_other_format(t);
    if (h->version < 1 || h->version > CHECKPOINT_VERSION)
        die("%s: checkpoint version %u, this runq reads versions 1 to %d", t->path, h->version, CHECKPOINT_VERSION);
    if (!header_dims_ok(h) || h->n_tensors > 1u << 20)
        die("%s: header has out-of-range fields (dim %d, layers %d, heads %d/%d, head_dim %d, vocab %d, seq_len %d)",
            t->path, h->dim, h->n_layers, h->n_heads, h->n_kv_heads, h->head_dim, h->vocab_size, h->seq_len);
    if (h->n_heads % h->n_kv_heads != 0)
        die("%s: n_heads %d is not a multiple of n_kv_heads %d", t->path, h->n_heads, h->n_kv_heads);
    if (h->head_dim % 2 != 0) die("%s: head_dim %d is odd; RoPE rotates pairs", t->path, h->head_dim);
    if (!(h->rope_theta > 0) || !(h->norm_eps > 0) || !isfinite(h->rope_theta) || !isfinite(h->norm_eps))
        die("%s: header has rope_theta %g and norm_eps %g; both must be positive", t->path, h->rope_theta, h->norm_eps);
    if (h->bos_id < 0 || h->bos_id >= h->vocab_size || h->eos_id < 0 || h->eos_id >= h->vocab_size)
        die("%s: bos_id %d / eos_id %d outside the vocabulary of %d", t->path, h->bos_id, h->eos_id, h->vocab_size);
    if ((h->flags & FLAGS_OF_VERSION_4) && h->version < VERSION_SETTINGS)
        die("%s: flags 0x%x name tensors of version %d files, but the file is version %u", t->path, h->flags,
            VERSION_SETTINGS, h->version);

    size_t ffn_offset = layer_tables_offset(h->version);
    size_t table_offset = tensor_table_offset(h->version, h->n_layers);
    size_t data_offset = table_offset + sizeof(TensorEntry) * (size_t)h->n_tensors;
    if (data_offset > t->file_size) die("%s: the tensor table runs past the end of the file (truncated?)", t->path);
    check_tensor_table(t, h, table_offset);

    Config *c = &t->config;
    c->dim = h->dim;
    c->n_layers = h->n_layers;
    c->n_heads = h->n_heads;
    c->n_kv_heads = h->n_kv_heads;
    c->head_dim = h->head_dim;
    c->vocab_size = h->vocab_size;
    c->seq_len = h->seq_len;
    c->rope_theta = h->rope_theta;
    c->norm_eps = h->norm_eps;
    c->bos_id = h->bos_id;
    c->eos_id = h->eos_id;
    c->tied_classifier = (h->flags & FLAG_TIED_CLASSIFIER) != 0;
    c->flags = h->flags & FLAGS_OF_VERSION_4;
    c->chat_template = h->chat_template;
    c->ffn_dim = xcalloc((size_t)c->n_layers, sizeof(int), "ffn_dim table");
    const int32_t *ffn = (const int32_t *)(t->file_data + ffn_offset);
    c->max_ffn_dim = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (!header_int_ok(ffn[l], 1 << 20)) die("%s: layer %d has FFN width %d", t->path, l, ffn[l]);
        c->ffn_dim[l] = ffn[l];
        if (ffn[l] > c->max_ffn_dim) c->max_ffn_dim = ffn[l];
    }
    int v4 = h->version >= VERSION_SETTINGS;
    read_settings(t, v4 ? (const ModelSettings *)(t->file_data + sizeof(FileHeader)) : NULL,
                  v4 ? (const uint32_t *)(ffn + c->n_layers) : NULL);
}

// The optional rope_freqs tensor (scaled RoPE) and LongRoPE's rope_freqs_long:
// pair i of each head turns at theta^(-2i/rotary_dim) / divisors[i]. Each is
// a divisor, so it must be positive and finite.
static const float *map_rope_freqs(const Transformer *t, const char *name) {
    int half = t->config.rotary_dim / 2;
    const float *divisors = map_tensor(t, name, 1, half, 0).data;
    for (int i = 0; i < half; i++)
        if (!(divisors[i] > 0) || !isfinite(divisors[i]))
            die("%s: %s[%d] is %g; RoPE frequency divisors must be positive and finite", t->path, name, i, divisors[i]);
    return divisors;
}

// LongRoPE needs both sets of divisors and the length that switches them;
// no other model may have rope_freqs_long.
static void map_long_rope(const Transformer *t, Weights *w) {
    int has_long = find_tensor(t, "rope_freqs_long") != NULL;
    if (!has_long && t->config.rope_long_after == 0) return;
    if (!has_long || !w->rope_freqs || t->config.rope_long_after == 0)
        die("%s: LongRoPE needs rope_freqs, rope_freqs_long and rope_long_after; the file has %s, %s and %d", t->path,
            w->rope_freqs ? "rope_freqs" : "no rope_freqs", has_long ? "rope_freqs_long" : "no rope_freqs_long",
            t->config.rope_long_after);
    w->rope_freqs_long = map_rope_freqs(t, "rope_freqs_long");
}

static void map_weights(Transformer *t) {
    const Config *c = &t->config;
    Weights *w = &t->weights;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    char name[TENSOR_NAME_LEN];
    w->tok_embeddings = map_tensor(t, "tok_embeddings", c->vocab_size, c->dim, 1);
    w->layers = xcalloc((size_t)c->n_layers, sizeof(LayerWeights), "layer table");
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *lw = &w->layers[l];
        int ffn = c->ffn_dim[l];
#define LAYER_TENSOR(field, rows, cols, matrix) \
        (snprintf(name, sizeof name, "layers.%d." #field, l), lw->field = map_tensor(t, name, rows, cols, matrix))
        LAYER_TENSOR(attention_norm, 1, c->dim, 0);
        LAYER_TENSOR(wq, q_dim, c->dim, 1);
        LAYER_TENSOR(wk, kv_dim, c->dim, 1);
        LAYER_TENSOR(wv, kv_dim, c->dim, 1);
        if (c->flags & FLAG_QKV_BIAS) {
            LAYER_TENSOR(bq, 1, q_dim, 0);
            LAYER_TENSOR(bk, 1, kv_dim, 0);
            LAYER_TENSOR(bv, 1, kv_dim, 0);
        }
        if (c->flags & FLAG_QK_NORM) {
            LAYER_TENSOR(q_norm, 1, c->head_dim, 0);
            LAYER_TENSOR(k_norm, 1, c->head_dim, 0);
        }
        LAYER_TENSOR(wo, c->dim, q_dim, 1);
        if (c->flags & FLAG_POST_NORMS) {
            LAYER_TENSOR(post_attention_norm, 1, c->dim, 0);
            LAYER_TENSOR(post_ffn_norm, 1, c->dim, 0);
        }
        LAYER_TENSOR(ffn_norm, 1, c->dim, 0);
        LAYER_TENSOR(w1, ffn, c->dim, 1);
        LAYER_TENSOR(w2, c->dim, ffn, 1);
        LAYER_TENSOR(w3, ffn, c->dim, 1);
#undef LAYER_TENSOR
    }
    w->norm = map_tensor(t, "norm", 1, c->dim, 0);
    w->output = c->tied_classifier ? w->tok_embeddings : map_tensor(t, "output", c->vocab_size, c->dim, 1);
    if (find_tensor(t, "rope_freqs")) w->rope_freqs = map_rope_freqs(t, "rope_freqs");
    map_long_rope(t, w);
    const TensorEntry *tok = find_tensor(t, "tokenizer");
    if (tok) {
        w->tokenizer_blob = t->file_data + tok->offset;
        w->tokenizer_size = (size_t)tok->nbytes;
    }
}

// calloc, counting the bytes into *tally (the memory plan runq prints)
static void *state_alloc(size_t *tally, size_t count, size_t size, const char *what) {
    *tally += count * size;
    return xcalloc(count, size, what);
}

// The activations are all written by a prompt's first batch: their pages are
// faulted in here, at start, as llama.cpp's buffers are, not a 4 KiB fault at
// a time inside the prompt (on a small model, a share of the prefill perf
// shows plainly). A volatile write per page: a compiler may drop a memset of
// calloc's zeros. (The KV cache, sized for the whole run, is not:
// prefault_kv_rows.)
static void *activation_alloc(size_t *tally, size_t count, size_t size, const char *what) {
    volatile uint8_t *bytes = state_alloc(tally, count, size, what);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t at = 0; at < count * size; at += page) bytes[at] = 0;
    return (void *)bytes;
}

static void malloc_run_state(RunState *s, const Config *c, int cache_len, int n_threads, int kv_type, int n_seqs) {
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t dim = (size_t)c->dim, ffn = (size_t)c->max_ffn_dim, half_rotary = (size_t)c->rotary_dim / 2;
    size_t widest = dim > q_dim ? dim : q_dim;
    if (ffn > widest) widest = ffn;
    size_t cache = (size_t)n_seqs * c->n_layers * (size_t)cache_len * kv_dim;
    size_t *act = &s->activation_bytes, *kv = &s->kv_bytes;
    s->cache_len = cache_len;
    s->n_seqs = n_seqs;
    s->x = activation_alloc(act, MAX_BATCH * dim, sizeof(float), "activations");
    s->xb = activation_alloc(act, MAX_BATCH * (dim > q_dim ? dim : q_dim), sizeof(float), "activations");
    s->xb2 = activation_alloc(act, MAX_BATCH * dim, sizeof(float), "activations");
    s->hb = activation_alloc(act, MAX_BATCH * ffn, sizeof(float), "activations");
    s->hb2 = activation_alloc(act, MAX_BATCH * ffn, sizeof(float), "activations");
    s->q = activation_alloc(act, MAX_BATCH * q_dim, sizeof(float), "activations");
    s->k = activation_alloc(act, MAX_BATCH * kv_dim, sizeof(float), "activations");
    s->v = activation_alloc(act, MAX_BATCH * kv_dim, sizeof(float), "activations");
    s->att = activation_alloc(act, (size_t)n_threads * (c->n_heads / c->n_kv_heads) * cache_len, sizeof(float),
                              "attention scores");
    for (int table = 0; table < N_ROPE_TABLES; table++) {
        if (table == ROPE_LOCAL && !(c->rope_theta_local > 0)) continue;   // only Gemma 3 turns local layers apart
        s->rope[table].freq = activation_alloc(act, half_rotary, sizeof(float), "RoPE table");
        s->rope[table].cos = activation_alloc(act, MAX_BATCH * half_rotary, sizeof(float), "RoPE table");
        s->rope[table].sin = activation_alloc(act, MAX_BATCH * half_rotary, sizeof(float), "RoPE table");
    }
    s->logits = activation_alloc(act, (size_t)n_seqs * c->vocab_size, sizeof(float), "logits");
    s->xq.stride = (int)round_up(widest, MAX_GROUP_SIZE);
    s->xq.values = activation_alloc(act, MAX_BATCH * (size_t)s->xq.stride, 1, "quantized activations");
    s->xq.scales = activation_alloc(act, MAX_BATCH * (size_t)s->xq.stride / Q_BLOCK, sizeof(float), "quantized activations");
    s->xq.sums = activation_alloc(act, MAX_BATCH * (size_t)s->xq.stride / Q_BLOCK, sizeof(int32_t), "quantized activations");
    s->kv_type = kv_type;
    if (kv_type == KV_Q8) {
        size_t rows = (size_t)n_seqs * c->n_layers * (size_t)cache_len * (size_t)c->n_kv_heads;
        s->key_cache_q8 = state_alloc(kv, cache, 1, "KV cache");
        s->value_cache_q8 = state_alloc(kv, cache, 1, "KV cache");
        s->key_scales = state_alloc(kv, rows, sizeof(float), "KV cache");
        s->value_scales = state_alloc(kv, rows, sizeof(float), "KV cache");
    } else {
        s->key_cache = state_alloc(kv, cache, sizeof(uint16_t), "KV cache");
        s->value_cache = state_alloc(kv, cache, sizeof(uint16_t), "KV cache");
    }
}

// RoPE turns pair i of each head at theta^(-2i/rotary_dim) radians per
// position; a model with rope_freqs (scaled RoPE) divides that by
// rope_freqs[i].
static void rope_frequencies(float *freq, float theta, int rotary_dim, const float *divisors) {
    for (int i = 0; i < rotary_dim / 2; i++) {
        freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)rotary_dim);
        if (divisors) freq[i] /= divisors[i];
    }
}

// The global layers' frequencies (with LongRoPE's long divisors when the run
// holds more than rope_long_after positions) and the local layers' (Gemma 3).
static void choose_rope_frequencies(RunState *s, const Config *c, const Weights *w) {
    int long_run = w->rope_freqs_long && s->cache_len > c->rope_long_after;
    rope_frequencies(s->rope[ROPE_GLOBAL].freq, c->rope_theta, c->rotary_dim, long_run ? w->rope_freqs_long : w->rope_freqs);
    if (s->rope[ROPE_LOCAL].freq) rope_frequencies(s->rope[ROPE_LOCAL].freq, c->rope_theta_local, c->rotary_dim, NULL);
}

static void free_run_state(RunState *s) {
    free(s->x); free(s->xb); free(s->xb2); free(s->hb); free(s->hb2); free(s->q); free(s->k); free(s->v);
    for (int table = 0; table < N_ROPE_TABLES; table++) { free(s->rope[table].freq); free(s->rope[table].cos); free(s->rope[table].sin); }
    free(s->att); free(s->logits);
    free(s->xq.values); free(s->xq.scales); free(s->xq.sums); free(s->xq.tables); free(s->key_cache); free(s->value_cache);
    free(s->key_cache_q8); free(s->value_cache_q8); free(s->key_scales); free(s->value_scales);
}

// ----------------------------------------------------------------------------
// Kernels. The scalar versions here are the reference; every SIMD version
// computes the same canonical arithmetic, so it equals its reference bit for
// bit (the tests demand it), and runq gives the same tokens on every CPU:
//   - a block of 32 weight levels (int8, int4, int3 or int2) . 32 int8
//     activations is an exact int32;
//   - its term is (weight scale * activation scale) * (float)that int32;
//   - terms go into eight partial sums by block index mod 8, in block order;
//   - the eight partials are added in one fixed tree (reduce8).
// Products are never fused into FMAs here (build with -ffp-contract=off).
// Attention's dot products follow the same pattern by element index mod 8;
// its softmax takes e^x from exp_canonical (not libm's expf, which SIMD cannot
// reproduce) and sums by index mod 8 too; its weighted sums add positions in
// order.

// The fixed tree: the order AVX2's halving and NEON's pairwise adds produce.
static float reduce8(const float p[8]) {
    return ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
}

// e^x for the softmax's x <= 0 in basic operations alone, so that every SIMD
// set computes the same bits: x = n ln 2 + r with n = round(x log2 e), r
// taken off in two parts (Cody and Waite: n * 0.693359375 is exact), e^r from
// Cephes' expf polynomial (|r| <= ln 2 / 2, within about an ulp of e^r), then
// times 2^n built in the exponent bits. x below -87 is taken as -87: e^-87 is
// 1.6e-38, nothing beside the largest score's e^0 = 1 in the sum.
#define EXP_LOWEST -87.0f
#define EXP_ROUNDER 12582912.0f   // 1.5 * 2^23: adding it leaves no fraction bits (round to nearest)
#define EXP_LOG2E 1.44269504f
#define EXP_LN2_HIGH 0.693359375f
#define EXP_LN2_LOW -2.12194440e-4f
static const float exp_polynomial[6] = { 1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f };

// d = 2^k (a normal float whose inverse is normal too): x / d == x * (1 / d)
// exactly, so the SIMD softmaxes multiply (sqrt(64) = 8 is the usual divisor).
__attribute__((unused)) static int is_power_of_two(float d) {
    union { float value; uint32_t bits; } u = { d };
    uint32_t exponent = u.bits >> 23 & 0xFF;
    return (u.bits & 0x807FFFFF) == 0 && exponent > 1 && exponent < 253;
}

static float exp_canonical(float x) {
    x = EXP_LOWEST > x ? EXP_LOWEST : x;   // SIMD's max(lowest, x): a NaN stays NaN
    float n = (x * EXP_LOG2E + EXP_ROUNDER) - EXP_ROUNDER;
    float r = (x - n * EXP_LN2_HIGH) - n * EXP_LN2_LOW;
    float poly = exp_polynomial[0];
    for (int i = 1; i < 6; i++) poly = poly * r + exp_polynomial[i];
    float e_r = (poly * (r * r) + r) + 1.0f;
    union { uint32_t bits; float value; } two_to_n = { (uint32_t)((int32_t)n + 127) << 23 };
    return e_r * two_to_n.value;
}

// Token t's row of x, (n_tokens, x_stride), -> int8 blocks of Q_BLOCK with
// scale max|x|/127 (and each block's sum). n_padded >= n is a multiple of the
// group size; the tail is zero so padded weights contribute nothing.
static void to_f16_ref(uint16_t *out, const float *x, int n) {
    for (int i = 0; i < n; i++) out[i] = fp32_to_fp16(x[i]);
}

// One block: row[start..start+31], of which those below n are real.
static void quantize_block_q8(const float *row, int start, int n, int8_t *values, float *scale_out, int32_t *sum_out) {
    float amax = 0.0f;   // plain compares and rounding: fmaxf and lrintf are calls into libm
    for (int i = start; i < start + Q_BLOCK && i < n; i++) {
        float a = fabsf(row[i]);
        if (a > amax) amax = a;   // a NaN never wins
    }
    float scale = amax / 127.0f;
    float inverse = scale > 0 ? 1.0f / scale : 0.0f;
    *scale_out = scale;
    int32_t sum = 0;
    for (int i = start; i < start + Q_BLOCK; i++) {
        float v = i < n ? row[i] * inverse : 0.0f;
        if (!(fabsf(v) <= 127.5f)) v = 0.0f;   // NaN (activations that overflowed): 0, not an undefined cast
        values[i] = (int8_t)(v >= 0 ? (int)(v + 0.5f) : -(int)(0.5f - v));   // round half away from zero
        sum += values[i];
    }
    *sum_out = sum;
}

// A block all of whose 32 values are real: x[0..31] -> values[0..31].
typedef void (*QuantizeFullBlockFn)(const float *x, int8_t *values, float *scale, int32_t *sum);

// Every token's row, block by block: full blocks through full_block (a SIMD
// kernel's), the one reaching past n through the reference's.
static inline __attribute__((always_inline)) void quantize_q8_with(QuantizeFullBlockFn full_block,
        QuantizedActivations *out, const float *x, int x_stride, int n, int n_padded, int n_tokens) {
    for (int t = 0; t < n_tokens; t++) {
        const float *row = x + (size_t)t * x_stride;
        int8_t *values = out->values + (size_t)t * out->stride;
        float *scales = out->scales + (size_t)t * (out->stride / Q_BLOCK);
        int32_t *sums = out->sums + (size_t)t * (out->stride / Q_BLOCK);
        for (int block = 0; block < n_padded / Q_BLOCK; block++) {
            int start = block * Q_BLOCK;
            if (full_block && start + Q_BLOCK <= n) full_block(row + start, values + start, &scales[block], &sums[block]);
            else quantize_block_q8(row, start, n, values, &scales[block], &sums[block]);
        }
    }
}

static void quantize_q8(QuantizedActivations *out, const float *x, int x_stride, int n, int n_padded, int n_tokens) {
    quantize_q8_with(NULL, out, x, x_stride, n, n_padded, n_tokens);
}

// One block: the exact int32 of its 32 weight levels . 32 int8 activations.
// A constant level function (every caller below passes one) is inlined.
typedef int (*LevelFn)(const uint8_t *block, int j);
typedef int32_t (*BlockDotFn)(const uint8_t *block, const int8_t *x);
static inline __attribute__((always_inline)) int32_t block_dot_ref(LevelFn level, const uint8_t *block, const int8_t *x) {
    int32_t isum = 0;
    for (int j = 0; j < Q_BLOCK; j++) isum += level(block, j) * x[j];
    return isum;
}

// Row r of weights . one token's int8 activations.
static inline __attribute__((always_inline)) float vec_dot_ref(BlockDotFn block_dot, const Tensor *w, int r,
                                                               const int8_t *x, const float *x_scales) {
    float partial[8] = { 0 };
    uint8_t gathered[Q_BLOCK / 2];
    for (int block = 0; block < w->cols_padded / Q_BLOCK; block++) {
        int32_t isum = block_dot(row_block(w, r, block, gathered), x + block * Q_BLOCK);
        float scale = fp16_to_fp32(w->scales[weight_scale_index(w, r, block * Q_BLOCK / w->group_size)]) * x_scales[block];
        partial[block % 8] += scale * (float)isum;
    }
    return reduce8(partial);
}

static inline __attribute__((always_inline)) void matmul_ref_with(BlockDotFn block_dot, float *out, int out_stride,
        const Tensor *w, int row_begin, int row_end, const QuantizedActivations *x, int n_tokens) {
    for (int r = row_begin; r < row_end; r++)
        for (int t = 0; t < n_tokens; t++)
            out[(size_t)t * out_stride + r] = vec_dot_ref(block_dot, w, r, x->values + (size_t)t * x->stride,
                                                          x->scales + (size_t)t * (x->stride / Q_BLOCK));
}

// Q4S's block: only its 16 slots multiply, each by the activation it points at
// (the same int32 as its levels . x: a weight no slot points at is 0).
static int32_t block_dot_q4s_ref(const uint8_t *block, const int8_t *x) {
    int32_t isum = 0;
    for (int k = 0; k < Q_BLOCK / 2; k++) isum += q4s_slot_level(block, k) * x[q4s_slot_weight(block, k)];
    return isum;
}

// Each type's reference (and each type's exact block dot, which the SIMD
// kernels use for their last n_blocks % 8 blocks).
#define REFERENCE_KERNELS(type) \
    __attribute__((unused)) static int32_t block_dot_##type##_ref(const uint8_t *block, const int8_t *x) { \
        return block_dot_ref(level_##type, block, x); \
    } \
    REFERENCE_MATMUL(type)
#define REFERENCE_MATMUL(type) \
    static void matmul_##type##_ref(float *out, int out_stride, const Tensor *w, int row_begin, int row_end, \
                                    const QuantizedActivations *x, int n_tokens) { \
        matmul_ref_with(block_dot_##type##_ref, out, out_stride, w, row_begin, row_end, x, n_tokens); \
    }
REFERENCE_KERNELS(q4)
REFERENCE_KERNELS(q8)
REFERENCE_KERNELS(q3)
REFERENCE_KERNELS(q2)
REFERENCE_MATMUL(q4s)
#undef REFERENCE_KERNELS
#undef REFERENCE_MATMUL

// ---- Table lookup (T-MAC's method) for Q2 and Q3: products without
// multiplies. A weight's code c (level c + lo) is its bit-planes, c = sum of
// 2^k * bit k. Take the activations four at a time (a "group"): of the 16
// ways to pick some of x0..x3, the sum is a table T[m] = sum of x_i for the
// bits i set in m, made once per token and shared by every row. Four weights'
// plane k is a 4-bit pattern m, so their share of plane k's dot is T[m]: one
// lookup replaces four multiply-adds, and
//   block . x = sum over planes k, groups g of 2^k * T_g[pattern_kg] + lo * sum(x).
// The sums are exact integers (|T| <= 4 * 127 fits int16; a block's plane
// sums stay within int16 too: 7 * 8 * 508 = 28448 for Q3), so a block's dot is
// the same int32 the reference computes and the canonical arithmetic follows
// unchanged: every table-lookup kernel is bit-identical to the scalar
// reference (test_quant holds them to it).
//
// SIMD tables hold 16 bytes: pshufb (x86) and tbl (NEON) look up 16 to 64
// patterns at once, each 128-bit lane in its own 16-byte table. An int16
// table is two byte tables, its low bytes and its high bytes, each looked up
// with the same patterns and interleaved back into int16 lanes. The
// register's byte lanes are rows: matrices are repacked at load into tiles of
// LUT_TILE_ROWS = 64 rows (a 512-bit register's bytes, two 256-bit, four
// NEON) whose patterns for one group lie side by side, a byte per row:
//   lut_codes   tile, block b, plane k, pair p (groups 2p, 2p+1 of the
//               block): 64 bytes, byte i = row 64*tile + i's plane-k pattern
//               of group 2p in its low nibble, of group 2p+1 in its high one
//               (bit i of a pattern: weight 4g + i); padding rows are code 0;
//   lut_scales  tile, weight group: the 64 rows' fp16 scales (padding rows
//               0), row lane i in slot LUT_SLOT(i): rows 0-7, 16-23, 32-39,
//               48-55, then 8-15, 24-31, 40-47, 56-63, the order in which
//               interleaving a lookup's low and high bytes leaves them.
// The same bytes as the file's (2 or 3 bits a weight and the scales), in
// another order: prepare_run repacks and lets the file's pages go
// (prepare_tables), so a run's memory does not grow.
// A token's tables: for each group g, LUT_GROUP_BYTES = 32 bytes, the low
// bytes of T_g[0..15], then their high bytes (x86 broadcasts each 16 bytes
// to every 128-bit lane as it loads them).
#define LUT_TILE_ROWS 64
#define LUT_GROUP_BYTES 32
#define LUT_GROUPS_PER_BLOCK (Q_BLOCK / 4)
#define LUT_SLOT(i) ((((i) >> 3) & 1) * 32 + ((i) >> 4) * 8 + ((i) & 7))
#define LUT_PREFETCH_BLOCKS 8   // how far ahead the SIMD kernels ask for a tile's patterns

// Bytes of a token's tables (a row of QuantizedActivations.tables).
static size_t lut_table_bytes(int stride) { return (size_t)stride / 4 * LUT_GROUP_BYTES; }

// Group g's 16 sums T[m] of four int8 activations, m's bits choosing them.
static void group_sums(const int8_t *x, int16_t sums[16]) {
    sums[0] = 0;
    for (int i = 0; i < 4; i++)
        for (int m = 0; m < 1 << i; m++) sums[m | 1 << i] = (int16_t)(sums[m] + x[i]);
}

static void build_tables_ref(QuantizedActivations *x, int n_padded, int n_tokens) {
    for (int t = 0; t < n_tokens; t++) {
        const int8_t *values = x->values + (size_t)t * x->stride;
        uint8_t *tables = x->tables + (size_t)t * lut_table_bytes(x->stride);
        for (int g = 0; g < n_padded / 4; g++) {
            int16_t sums[16];
            group_sums(values + 4 * g, sums);
            for (int m = 0; m < 16; m++) {
                tables[(size_t)g * LUT_GROUP_BYTES + m] = (uint8_t)sums[m];
                tables[(size_t)g * LUT_GROUP_BYTES + 16 + m] = (uint8_t)((uint16_t)sums[m] >> 8);
            }
        }
    }
}

// Byte offset of tile `tile`'s block b, plane k, pair p in lut_codes.
static size_t lut_code_offset(int n_blocks, int planes, int tile, int b, int k, int p) {
    return ((((size_t)tile * n_blocks + b) * planes + k) * 4 + p) * LUT_TILE_ROWS;
}

// T_g[m] of token tables `tables`, as the int16 it holds.
static int lut_entry(const uint8_t *tables, int g, int m) {
    const uint8_t *low = tables + (size_t)g * LUT_GROUP_BYTES;
    return (int16_t)(uint16_t)(low[m] | low[16 + m] << 8);
}

// The scalar twin of the SIMD table-lookup kernels: the same lookups, a row
// at a time. Each block's integer is the reference's block dot; the float
// arithmetic after it is the canonical one.
static inline __attribute__((always_inline)) void matmul_lut_ref_with(const int planes, int lo, float *out, int out_stride,
        const Tensor *w, int row_begin, int row_end, const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, blocks_per_group = w->group_size / Q_BLOCK;
    int n_groups = w->cols_padded / w->group_size, x_blocks = x->stride / Q_BLOCK;
    for (int r = row_begin; r < row_end; r++) {
        int tile = r / LUT_TILE_ROWS, lane = r % LUT_TILE_ROWS;
        for (int t = 0; t < n_tokens; t++) {
            const uint8_t *tables = x->tables + (size_t)t * lut_table_bytes(x->stride);
            float partial[8] = { 0 };
            for (int b = 0; b < n_blocks; b++) {
                int32_t isum = 0;
                for (int k = 0; k < planes; k++)
                    for (int p = 0; p < 4; p++) {
                        uint8_t patterns = w->lut_codes[lut_code_offset(n_blocks, planes, tile, b, k, p) + lane];
                        int pair = lut_entry(tables, b * LUT_GROUPS_PER_BLOCK + 2 * p, patterns & 15)
                                 + lut_entry(tables, b * LUT_GROUPS_PER_BLOCK + 2 * p + 1, patterns >> 4);
                        isum += pair * (1 << k);
                    }
                isum += lo * x->sums[(size_t)t * x_blocks + b];
                uint16_t w_scale = w->lut_scales[((size_t)tile * n_groups + b / blocks_per_group) * LUT_TILE_ROWS + LUT_SLOT(lane)];
                float scale = fp16_to_fp32(w_scale) * x->scales[(size_t)t * x_blocks + b];
                partial[b % 8] += scale * (float)isum;
            }
            out[(size_t)t * out_stride + r] = reduce8(partial);
        }
    }
}

// A tile's rows, from the partial sums in slot order: reduce8's tree, then
// each row to its place (rows at or past row_end, padding, not written).
static inline void lut_store_tile(const float reduced[LUT_TILE_ROWS], float *out, int first_row, int row_end) {
    for (int i = 0; i < LUT_TILE_ROWS && first_row + i < row_end; i++) out[first_row + i] = reduced[LUT_SLOT(i)];
}

static void matmul_lut_q2_ref(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                              const QuantizedActivations *x, int n_tokens) {
    matmul_lut_ref_with(2, quant_layouts[TYPE_Q2].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}
static void matmul_lut_q3_ref(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                              const QuantizedActivations *x, int n_tokens) {
    matmul_lut_ref_with(3, quant_layouts[TYPE_Q3].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}

// A Q2 or Q3 block's pattern bytes, patterns[k * 4 + p] for plane k and
// pair p (groups 2p, 2p+1). Q2's plane byte i holds weights i, i+8, i+16,
// i+24 (2 bits each), so weight 4g + i' of group g = 2p + h is byte 4h + i''s
// bit pair p: the pattern byte of (k, p) is bit 2p + k of the 8 bytes, byte
// i's bit in bit i. That is the 8x8 bit matrix of the plane transposed (byte
// j of the result gathers bit j of every byte): three exchanges of bit blocks
// on one 64-bit word, 4x fewer instructions than gathering each byte. Q3's
// low two bits are a Q2 plane; its third plane is its 1-bit plane, weight
// j's bit in bit j of the 32-bit word: pair p's patterns are byte p of it.
static inline void lut_block_patterns(const uint8_t *block, int planes, uint8_t patterns[3 * 4]) {
    uint64_t x, t;
    memcpy(&x, block, sizeof x);
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;  x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull; x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull; x ^= t ^ (t << 28);
    for (int j = 0; j < 8; j++) patterns[(j & 1) * 4 + j / 2] = (uint8_t)(x >> 8 * j);   // bit 2p + k
    if (planes == 3) memcpy(patterns + 8, block + 8, 4);
}

// How the SIMD kernels of Q8, Q3 and Q2 walk a product (Q4 walks its tiles): rows
// [row_begin, row_end), tokens four at a time, ROW_TILE(o, codes, scales, t,
// TILE) for each row and tile with a constant TILE of 1 to 4, so the tile's
// accumulators stay in registers. codes, scales: the row's; o: its output
// for token t; blocks_per_group and n_blocks are in scope for ROW_TILE.
#define FOR_EACH_ROW_TILE(w, block_bytes, row_begin, row_end, n_tokens, out, out_stride, ROW_TILE) do { \
        int n_blocks = (w)->cols_padded / Q_BLOCK, blocks_per_group = (w)->group_size / Q_BLOCK; \
        size_t row_bytes = (size_t)n_blocks * (block_bytes); \
        size_t row_scales = (size_t)((w)->cols_padded / (w)->group_size); \
        for (int r = (row_begin); r < (row_end); r++) { \
            const uint8_t *codes = (w)->codes + r * row_bytes; \
            const uint16_t *scales = (w)->scales + r * row_scales; \
            for (int t = 0; t < (n_tokens); t += 4) { \
                float *o = (out) + (size_t)t * (out_stride) + r; \
                switch ((n_tokens) - t) { \
                case 1: ROW_TILE(o, codes, scales, t, 1); break; \
                case 2: ROW_TILE(o, codes, scales, t, 2); break; \
                case 3: ROW_TILE(o, codes, scales, t, 3); break; \
                default: ROW_TILE(o, codes, scales, t, 4); \
                } \
            } \
        } \
    } while (0)

// Attention over the fp16 cache takes a KV head's query heads together (head
// h's q at q + h * n, its scores or weights a row of scores_stride apart, its
// output at out + h * n), so that SIMD converts each key and value once.
static void scores_f16_ref(float *scores, size_t scores_stride, const float *q, int n_heads, const uint16_t *keys,
                           size_t stride, int n_positions, int n) {
    for (int h = 0; h < n_heads; h++)
        for (int p = 0; p < n_positions; p++) {
            const uint16_t *k = keys + (size_t)p * stride;
            float partial[8] = { 0 };
            for (int i = 0; i < n; i++) partial[i % 8] += q[(size_t)h * n + i] * fp16_to_fp32(k[i]);
            scores[h * scores_stride + p] = reduce8(partial);
        }
}

static void mix_f16_ref(float *out, const float *weights, size_t weights_stride, int n_heads, const uint16_t *values,
                        size_t stride, int n_positions, int n) {
    for (int h = 0; h < n_heads; h++) {
        float *o = out + (size_t)h * n;
        memset(o, 0, sizeof(float) * (size_t)n);
        for (int p = 0; p < n_positions; p++)
            for (int i = 0; i < n; i++) o[i] += weights[h * weights_stride + p] * fp16_to_fp32(values[(size_t)p * stride + i]);
    }
}

// Attention's softmax of x / divisor (the scores' scale): e^(x - largest) by
// exp_canonical, the sum in eight partials by index mod 8, each divided by it.
static void softmax_ref(float *x, int n, float divisor) {
    for (int i = 0; i < n; i++) x[i] /= divisor;
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    float partial[8] = { 0 };
    for (int i = 0; i < n; i++) {
        x[i] = exp_canonical(x[i] - max);
        partial[i % 8] += x[i];
    }
    float sum = reduce8(partial);
    for (int i = 0; i < n; i++) x[i] /= sum;
}

// int8 rows: the row's dot in eight partials as above, then times its scale;
// a value row enters the sum as (weight * scale) * int8.
static void scores_q8_ref(float *scores, const float *q, const int8_t *keys, const float *scales, size_t stride,
                          size_t scale_stride, int n_positions, int n) {
    for (int p = 0; p < n_positions; p++) {
        const int8_t *k = keys + (size_t)p * stride;
        float partial[8] = { 0 };
        for (int i = 0; i < n; i++) partial[i % 8] += q[i] * (float)k[i];
        scores[p] = reduce8(partial) * scales[(size_t)p * scale_stride];
    }
}

static void mix_q8_ref(float *out, const float *weights, const int8_t *values, const float *scales, size_t stride,
                       size_t scale_stride, int n_positions, int n) {
    memset(out, 0, sizeof(float) * (size_t)n);
    for (int p = 0; p < n_positions; p++) {
        float weight = weights[p] * scales[(size_t)p * scale_stride];
        for (int i = 0; i < n; i++) out[i] += weight * (float)values[(size_t)p * stride + i];
    }
}

static const Kernels kernels_scalar = {
    "scalar", quantize_q8, to_f16_ref, { [TYPE_Q8] = matmul_q8_ref, [TYPE_Q4] = matmul_q4_ref, [TYPE_Q3] = matmul_q3_ref, [TYPE_Q2] = matmul_q2_ref,
                                         [TYPE_Q4S] = matmul_q4s_ref },
    scores_f16_ref, mix_f16_ref, scores_q8_ref, mix_q8_ref, softmax_ref,
    build_tables_ref, { [TYPE_Q3] = matmul_lut_q3_ref, [TYPE_Q2] = matmul_lut_q2_ref } };

// ---- x86: AVX2 + F16C (Haswell and later, Zen), chosen at run time so one
// binary runs on any x86-64.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_AVX2_KERNELS 1
#define TARGET_AVX2 __attribute__((target("avx2,f16c")))

// CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c")
static int cpu_has_f16c(void) {
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && cpu_has_f16c();
}

// reduce8 without leaving the registers: adding the halves, then the pairs,
// then the last two is exactly its tree ((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7)).
TARGET_AVX2 static inline float reduce8_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- int4 matmul, a tile of eight rows at a time: lanes are rows (the file
// keeps each tile in this order, see the format). One maddubs of a tile's run
// against four activations broadcast to every 32-bit lane leaves each row's
// products in its own lanes, and a block's eight runs add up vertically: no
// horizontal reduction anywhere. Lane j of accumulator i is row j's partial
// sum i (blocks i mod 8), so each row gets the canonical arithmetic.

// A tile's block (128 bytes) -> q[k], k = 0..7: lane j holds weights
// 4k..4k+3 of row j as 0..15. Run d's low nibbles are weights 4d..4d+3 and
// its high nibbles 16+4d..16+4d+3: one AND, or one shift and one AND.
TARGET_AVX2 static inline void unpack_q4_tile_block_avx2(__m256i q[8], const uint8_t *block) {
    __m256i low = _mm256_set1_epi8(0x0F);
    for (int d = 0; d < 4; d++) {
        __m256i run = _mm256_loadu_si256((const __m256i *)(block + 4 * Q4_TILE_ROWS * d));
        q[d] = _mm256_and_si256(run, low);
        q[d + 4] = _mm256_and_si256(_mm256_srli_epi16(run, 4), low);
    }
}

// One block of the tile . one token's 32 activations -> row j's q . x in lane
// j (before the -8 offset). Step k pairs q[k] with activations 4k..4k+3; a
// maddubs lane holds two products (at most 2 * 15 * 127), the eight steps'
// sum at most 16 * 15 * 127 = 30480 fits int16, and madd joins a row's lanes.
TARGET_AVX2 static inline __m256i dot_q4_tile_block_avx2(const __m256i q[8], const int8_t *x) {
    __m256i step[8];
    for (int k = 0; k < 8; k++) {
        int32_t four;
        memcpy(&four, x + 4 * k, sizeof four);
        step[k] = _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(four));
    }
    __m256i sum = _mm256_add_epi16(_mm256_add_epi16(_mm256_add_epi16(step[0], step[1]), _mm256_add_epi16(step[2], step[3])),
                                   _mm256_add_epi16(_mm256_add_epi16(step[4], step[5]), _mm256_add_epi16(step[6], step[7])));
    return _mm256_madd_epi16(sum, _mm256_set1_epi16(1));
}

// Block b's term for the tile's rows and one token:
// (weight scale * activation scale) * (q - 8) . x, the offset exact from the
// block's sum: (q - 8) . x = q . x - 8 * sum(x).
TARGET_AVX2 static inline __m256 q4_tile_term_avx2(const __m256i q[8], __m256 w_scale, const int8_t *x_values,
                                                   const float *x_scales, const int32_t *x_sums, int b) {
    __m256i isum = _mm256_sub_epi32(dot_q4_tile_block_avx2(q, x_values + b * Q_BLOCK), _mm256_set1_epi32(8 * x_sums[b]));
    __m256 scale = _mm256_mul_ps(w_scale, _mm256_set1_ps(x_scales[b]));
    return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum));
}

// The tile's eight scales of block b as floats.
TARGET_AVX2 static inline __m256 q4_tile_scales_avx2(const uint16_t *tile_scales, int b, int blocks_per_group) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(tile_scales + (size_t)(b / blocks_per_group) * Q4_TILE_ROWS)));
}

// reduce8's tree, lane by lane: the tile's eight results.
TARGET_AVX2 static inline __m256 reduce8_lanes_avx2(const __m256 p[8]) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(p[0], p[4]), _mm256_add_ps(p[2], p[6])),
                         _mm256_add_ps(_mm256_add_ps(p[1], p[5]), _mm256_add_ps(p[3], p[7])));
}

// The first n_rows of a tile's results (the last tile may have fewer than eight).
TARGET_AVX2 static inline void store_tile_rows_avx2(float *out, __m256 rows, int n_rows) {
    if (n_rows == Q4_TILE_ROWS) { _mm256_storeu_ps(out, rows); return; }
    float all[Q4_TILE_ROWS];
    _mm256_storeu_ps(all, rows);
    memcpy(out, all, sizeof(float) * (size_t)n_rows);
}

// Decoding, one token: each block unpacked straight into its dot product.
// The constant i lets the compiler keep the eight accumulators in registers.
TARGET_AVX2 static __m256 q4_tile_decode_avx2(const uint8_t *nibbles, const uint16_t *scales, int n_blocks,
                                              int blocks_per_group, const QuantizedActivations *x) {
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b += 8)
        for (int i = 0; i < 8; i++) {
            if (b + i == n_blocks) break;
            __m256i q[8];
            unpack_q4_tile_block_avx2(q, nibbles + (size_t)(b + i) * Q4_TILE_BLOCK_BYTES);
            acc[i] = _mm256_add_ps(acc[i], q4_tile_term_avx2(q, q4_tile_scales_avx2(scales, b + i, blocks_per_group),
                                                             x->values, x->scales, x->sums, b + i));
        }
    return reduce8_lanes_avx2(acc);
}

// The prefill kernels spend long on each block for a big batch, little for
// two to eight tokens (a speculative pass, a few slots decoding together),
// where the hardware prefetcher alone left them waiting on the weights: the
// block PREFETCH_BLOCKS ahead is asked for early. (The decode kernels stream
// one tile and ran slower with it, measured by build/verify_cost; the
// AVX-512 ones ask further ahead, below.)
#define PREFETCH_BLOCKS 8
static inline void prefetch_q4_block(const uint8_t *nibbles, int b) {
    const char *block = (const char *)(nibbles + (size_t)(b + PREFETCH_BLOCKS) * Q4_TILE_BLOCK_BYTES);
    __builtin_prefetch(block);
    __builtin_prefetch(block + 64);
}

// Decoding reads a tile's weights once, in order. On a Zen 5 core the
// hardware prefetcher alone kept one decoding thread at about 21 GB/s;
// asking DECODE_PREFETCH_BYTES ahead (4 KB: 1 and 2 KB gained less, 8 KB as
// much) gave the AVX-512 kernels, at -T 2 on the TinyLlama shape, 10-15 %
// more decode for 2:4 sparse int4 and 3-4 % for int4.
#define DECODE_PREFETCH_BYTES 4096
static inline void prefetch_ahead(const uint8_t *weights) { __builtin_prefetch(weights + DECODE_PREFETCH_BYTES); }

// The prompt, n_tokens at once: each block of the tile is unpacked once and
// held in registers while every token of the batch passes, each token's
// eight partials waiting in acc. The eight maddubs of a token are added one
// after another into one int16 register (|sum| <= 8 * 2 * 15 * 127 = 30480
// whatever the order: exact), so the block's eight unpacked runs, the sum and
// a broadcast fit AVX2's sixteen registers.
TARGET_AVX2 static void q4_tile_prefill_avx2(float *out, int out_stride, int n_rows, const uint8_t *nibbles,
                                             const uint16_t *scales, int n_blocks, int blocks_per_group,
                                             const QuantizedActivations *x, int n_tokens) {
    int x_blocks = x->stride / Q_BLOCK;
    __m256 acc[MAX_BATCH][8];
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < 8; i++) acc[t][i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b++) {
        __m256i q[8];
        prefetch_q4_block(nibbles, b);
        unpack_q4_tile_block_avx2(q, nibbles + (size_t)b * Q4_TILE_BLOCK_BYTES);
        __m256 w_scale = q4_tile_scales_avx2(scales, b, blocks_per_group);
        for (int t = 0; t < n_tokens; t++) {
            size_t at = (size_t)t * x_blocks + b;
            const int8_t *values = x->values + (size_t)t * x->stride + b * Q_BLOCK;
            __m256i sum = _mm256_setzero_si256();
            for (int k = 0; k < 8; k++) {
                int32_t four;
                memcpy(&four, values + 4 * k, sizeof four);
                sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(four)));
            }
            __m256i isum = _mm256_sub_epi32(_mm256_madd_epi16(sum, _mm256_set1_epi16(1)), _mm256_set1_epi32(8 * x->sums[at]));
            __m256 scale = _mm256_mul_ps(w_scale, _mm256_set1_ps(x->scales[at]));
            acc[t][b % 8] = _mm256_add_ps(acc[t][b % 8], _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum)));
        }
    }
    for (int t = 0; t < n_tokens; t++) store_tile_rows_avx2(out + (size_t)t * out_stride, reduce8_lanes_avx2(acc[t]), n_rows);
}

// Rows [row_begin, row_end), row_begin on a tile's first row (matmul_task
// splits the rows by whole tiles).
TARGET_AVX2 static void matmul_q4_avx2(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                       const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int blocks_per_group = w->group_size / Q_BLOCK;
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        const uint8_t *nibbles = w->nibbles + (size_t)tile * n_blocks * Q4_TILE_BLOCK_BYTES;
        const uint16_t *scales = w->scales + (size_t)tile * n_groups * Q4_TILE_ROWS;
        if (n_tokens == 1)
            store_tile_rows_avx2(out + row, q4_tile_decode_avx2(nibbles, scales, n_blocks, blocks_per_group, x), n_rows);
        else
            q4_tile_prefill_avx2(out + row, out_stride, n_rows, nibbles, scales, n_blocks, blocks_per_group, x, n_tokens);
    }
}

// ---- 2:4 sparse int4 (Q4S), a tile of eight rows at a time as Q4's, lanes
// are rows. Step s (slots 4s..4s+3 of each row: quads 2s and 2s+1) gathers
// each row's four activations with one shuffle of the 16 activations of half
// s/2 (broadcast to both 128-bit halves), and one maddubs multiplies them by
// the four levels: four steps a block where Q4 takes eight. The levels are
// signed, so maddubs takes |level| and the activations with the level's sign
// (as Q8's kernel does; |sum| <= 8 * 8 * 127 fits int16).

typedef struct {
    __m256i magnitude[4];    // step s: |level| of each row's four slots
    __m256i level[4];        // their signed levels (for the activations' signs)
    __m256i control[4];      // which of the half's 16 activations each slot reads
} Q4sTileBlockAvx2;

// A tile's block (96 bytes: three runs) made ready for any token's activations.
TARGET_AVX2 static inline void unpack_q4s_tile_block_avx2(Q4sTileBlockAvx2 *out, const uint8_t *block) {
    __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8), three = _mm256_set1_epi8(3);
    for (int half = 0; half < 2; half++) {   // run 0: steps 0 (low nibbles) and 1 (high); run 1: steps 2 and 3
        __m256i run = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(block + 32 * half)), _mm256_set1_epi8((char)0x88));
        __m256i biased[2] = { _mm256_and_si256(run, low), _mm256_and_si256(_mm256_srli_epi16(run, 4), low) };
        for (int i = 0; i < 2; i++) {        // level + 8 -> level (two's complement nibbles xored with 8)
            out->level[2 * half + i] = _mm256_sub_epi8(biased[i], eight);
            out->magnitude[2 * half + i] = _mm256_abs_epi8(out->level[2 * half + i]);
        }
    }
    __m256i positions = _mm256_loadu_si256((const __m256i *)(block + 64));
    for (int s = 0; s < 4; s++) {            // base: 8 for the half's second eight, 4 for a step's second quad
        __m256i base = _mm256_set1_epi32(0x04040000 + (s % 2) * 0x08080808);
        out->control[s] = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi32(positions, 2 * s), three), base);
    }
}

// The tile's block . one token's 32 activations: row j's exact int32 in lane j.
TARGET_AVX2 static inline __m256i dot_q4s_tile_block_avx2(const Q4sTileBlockAvx2 *w, const int8_t *x) {
    __m256i halves[2] = { _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x)),
                          _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + 16))) };
    __m256i sum = _mm256_setzero_si256();
    for (int s = 0; s < 4; s++) {
        __m256i gathered = _mm256_shuffle_epi8(halves[s / 2], w->control[s]);
        sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(w->magnitude[s], _mm256_sign_epi8(gathered, w->level[s])));
    }
    return _mm256_madd_epi16(sum, _mm256_set1_epi16(1));
}

// Block b's term for the tile's rows and one token: (weight scale * activation scale) * int32.
TARGET_AVX2 static inline __m256 q4s_tile_term_avx2(const Q4sTileBlockAvx2 *w, __m256 w_scale, const int8_t *x_values,
                                                    const float *x_scales, int b) {
    __m256 scale = _mm256_mul_ps(w_scale, _mm256_set1_ps(x_scales[b]));
    return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(dot_q4s_tile_block_avx2(w, x_values + b * Q_BLOCK)));
}

TARGET_AVX2 static __m256 q4s_tile_decode_avx2(const uint8_t *codes, const uint16_t *scales, int n_blocks,
                                               int blocks_per_group, const QuantizedActivations *x) {
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b += 8)
        for (int i = 0; i < 8; i++) {
            if (b + i == n_blocks) break;
            Q4sTileBlockAvx2 w;
            unpack_q4s_tile_block_avx2(&w, codes + (size_t)(b + i) * 3 * 32);
            acc[i] = _mm256_add_ps(acc[i], q4s_tile_term_avx2(&w, q4_tile_scales_avx2(scales, b + i, blocks_per_group),
                                                              x->values, x->scales, b + i));
        }
    return reduce8_lanes_avx2(acc);
}

// The prompt: eight blocks unpacked once, then used by every token (as Q4's prefill).
TARGET_AVX2 static void q4s_tile_prefill_avx2(float *out, int out_stride, int n_rows, const uint8_t *codes,
                                              const uint16_t *scales, int n_blocks, int blocks_per_group,
                                              const QuantizedActivations *x, int n_tokens) {
    int x_blocks = x->stride / Q_BLOCK;
    __m256 acc[MAX_BATCH][8];
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < 8; i++) acc[t][i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b += 8) {
        int count = n_blocks - b < 8 ? n_blocks - b : 8;
        Q4sTileBlockAvx2 w[8];
        __m256 w_scales[8];
        for (int i = 0; i < count; i++) {
            unpack_q4s_tile_block_avx2(&w[i], codes + (size_t)(b + i) * 3 * 32);
            w_scales[i] = q4_tile_scales_avx2(scales, b + i, blocks_per_group);
        }
        for (int t = 0; t < n_tokens; t++) {
            const int8_t *values = x->values + (size_t)t * x->stride;
            const float *x_scales = x->scales + (size_t)t * x_blocks;
            for (int i = 0; i < count; i++)
                acc[t][i] = _mm256_add_ps(acc[t][i], q4s_tile_term_avx2(&w[i], w_scales[i], values, x_scales, b + i));
        }
    }
    for (int t = 0; t < n_tokens; t++) store_tile_rows_avx2(out + (size_t)t * out_stride, reduce8_lanes_avx2(acc[t]), n_rows);
}

TARGET_AVX2 static void matmul_q4s_avx2(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                        const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int blocks_per_group = w->group_size / Q_BLOCK;
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        const uint8_t *codes = w->codes + (size_t)tile * n_blocks * 3 * 32;
        const uint16_t *scales = w->scales + (size_t)tile * n_groups * Q4_TILE_ROWS;
        if (n_tokens == 1)
            store_tile_rows_avx2(out + row, q4s_tile_decode_avx2(codes, scales, n_blocks, blocks_per_group, x), n_rows);
        else
            q4s_tile_prefill_avx2(out + row, out_stride, n_rows, codes, scales, n_blocks, blocks_per_group, x, n_tokens);
    }
}

// One head's scores, a position at a time (the positions the blocks below leave).
TARGET_AVX2 static void scores_f16_head_avx2(float *scores, const float *q, const uint16_t *keys, size_t stride,
                                             int n_positions, int n) {
    for (int p = 0; p < n_positions; p++) {
        const uint16_t *k = keys + (size_t)p * stride;
        __m256 acc = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= n; i += 8)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)))));
        if (i == n) { scores[p] = reduce8_avx2(acc); continue; }
        float partial[8];
        _mm256_storeu_ps(partial, acc);
        for (; i < n; i++) partial[i % 8] += q[i] * _cvtsh_ss(k[i]);
        scores[p] = reduce8(partial);
    }
}

// Eight positions' partials (acc[m]: position m's eight) -> their eight
// scores in position order, reduce8's tree done across the registers: the
// 128-bit halves added (p_j + p_j+4), then elements two apart, then
// neighbours, then one permute back into position order.
TARGET_AVX2 static inline __m256 reduce8_eight_avx2(const __m256 acc[8]) {
    __m256 halves[4];   // halves[j]: position 2j's four sums in the low half, 2j+1's in the high
    for (int j = 0; j < 4; j++)
        halves[j] = _mm256_add_ps(_mm256_permute2f128_ps(acc[2 * j], acc[2 * j + 1], 0x20),
                                  _mm256_permute2f128_ps(acc[2 * j], acc[2 * j + 1], 0x31));
    __m256 pairs[2];    // pairs[j], half l: positions 4j + l and 4j + 2 + l, two sums each
    for (int j = 0; j < 2; j++)
        pairs[j] = _mm256_add_ps(_mm256_shuffle_ps(halves[2 * j], halves[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(halves[2 * j], halves[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 sums = _mm256_add_ps(_mm256_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm256_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));   // element 4l + e is position l + 2e
}

// Keys converted once per block of positions and reused by every head: a head
// dim of at most MAX_KEY_STEPS steps of eight fits the block's buffer.
#define MAX_KEY_STEPS 32

// Eight positions at a time: their keys converted into a buffer (a register
// per position and step of eight elements), then for each head eight
// accumulators, one per position, fed by one q register each step.
TARGET_AVX2 static void scores_f16_avx2(float *scores, size_t scores_stride, const float *q, int n_heads,
                                        const uint16_t *keys, size_t stride, int n_positions, int n) {
    int steps = n / 8, p = 0;
    if (n % 8 == 0 && steps <= MAX_KEY_STEPS)
        for (; p + 8 <= n_positions; p += 8) {
            __m256 converted[8 * MAX_KEY_STEPS];
            for (int m = 0; m < 8; m++)
                for (int step = 0; step < steps; step++)
                    converted[m * steps + step] =
                        _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(keys + (size_t)(p + m) * stride + 8 * step)));
            for (int h = 0; h < n_heads; h++) {
                __m256 acc[8];
                for (int m = 0; m < 8; m++) acc[m] = _mm256_setzero_ps();
                for (int step = 0; step < steps; step++) {
                    __m256 q_step = _mm256_loadu_ps(q + (size_t)h * n + 8 * step);
                    for (int m = 0; m < 8; m++) acc[m] = _mm256_add_ps(acc[m], _mm256_mul_ps(q_step, converted[m * steps + step]));
                }
                _mm256_storeu_ps(scores + h * scores_stride + p, reduce8_eight_avx2(acc));
            }
        }
    for (int h = 0; h < n_heads; h++)
        scores_f16_head_avx2(scores + h * scores_stride + p, q + (size_t)h * n, keys + (size_t)p * stride, stride,
                             n_positions - p, n);
}

// 32 outputs of HEADS heads at a time stay in registers across all positions;
// each value row's 32 are converted once for all of them.
TARGET_AVX2 static inline __attribute__((always_inline)) void mix_f16_heads_avx2(
        float *out, const float *weights, size_t weights_stride, const uint16_t *values, size_t stride, int n_positions,
        int n, const int HEADS) {
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 acc[2][4];
        for (int h = 0; h < HEADS; h++)
            for (int j = 0; j < 4; j++) acc[h][j] = _mm256_setzero_ps();
        for (int p = 0; p < n_positions; p++) {
            const uint16_t *v = values + (size_t)p * stride + i;
            __m256 value[4];
            for (int j = 0; j < 4; j++) value[j] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 8 * j)));
            for (int h = 0; h < HEADS; h++) {
                __m256 weight = _mm256_set1_ps(weights[h * weights_stride + p]);
                for (int j = 0; j < 4; j++) acc[h][j] = _mm256_add_ps(acc[h][j], _mm256_mul_ps(weight, value[j]));
            }
        }
        for (int h = 0; h < HEADS; h++)
            for (int j = 0; j < 4; j++) _mm256_storeu_ps(out + (size_t)h * n + i + 8 * j, acc[h][j]);
    }
    for (; i < n; i++)   // the last n % 32 outputs
        for (int h = 0; h < HEADS; h++) {
            float sum = 0.0f;
            for (int p = 0; p < n_positions; p++) sum += weights[h * weights_stride + p] * _cvtsh_ss(values[(size_t)p * stride + i]);
            out[(size_t)h * n + i] = sum;
        }
}

TARGET_AVX2 static void mix_f16_avx2(float *out, const float *weights, size_t weights_stride, int n_heads,
                                     const uint16_t *values, size_t stride, int n_positions, int n) {
    int h = 0;
    for (; h + 2 <= n_heads; h += 2)
        mix_f16_heads_avx2(out + (size_t)h * n, weights + h * weights_stride, weights_stride, values, stride, n_positions, n, 2);
    if (h < n_heads)
        mix_f16_heads_avx2(out + (size_t)h * n, weights + h * weights_stride, weights_stride, values, stride, n_positions, n, 1);
}

// exp_canonical on eight lanes, the same operations in the same order.
TARGET_AVX2 static inline __m256 exp_canonical_avx2(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(EXP_LOWEST), x);
    __m256 rounder = _mm256_set1_ps(EXP_ROUNDER);
    __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)), rounder), rounder);
    __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(EXP_LN2_HIGH))),
                             _mm256_mul_ps(n, _mm256_set1_ps(EXP_LN2_LOW)));
    __m256 poly = _mm256_set1_ps(exp_polynomial[0]);
    for (int i = 1; i < 6; i++) poly = _mm256_add_ps(_mm256_mul_ps(poly, r), _mm256_set1_ps(exp_polynomial[i]));
    __m256 e_r = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(poly, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0f));
    __m256i two_to_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e_r, _mm256_castsi256_ps(two_to_n));
}

// x /= divisor (times 1 / divisor when that is exact), and the largest x.
TARGET_AVX2 static float divide_max_avx2(float *x, int n, float divisor) {
    float max = x[0] / divisor;
    __m256 max8 = _mm256_set1_ps(max), by = _mm256_set1_ps(divisor), inverse = _mm256_set1_ps(1.0f / divisor);
    int exact_inverse = is_power_of_two(divisor), i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), scaled = exact_inverse ? _mm256_mul_ps(v, inverse) : _mm256_div_ps(v, by);
        _mm256_storeu_ps(x + i, scaled);
        max8 = _mm256_max_ps(scaled, max8);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, max8);
    for (int l = 0; l < 8; l++) if (lanes[l] > max) max = lanes[l];
    for (; i < n; i++) {
        x[i] /= divisor;
        if (x[i] > max) max = x[i];
    }
    return max;
}

TARGET_AVX2 static void divide_avx2(float *x, int n, float divisor) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(divisor)));
    for (; i < n; i++) x[i] /= divisor;
}

TARGET_AVX2 static void softmax_avx2(float *x, int n, float divisor) {
    float max = divide_max_avx2(x, n, divisor);
    __m256 sum8 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_canonical_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(max)));
        _mm256_storeu_ps(x + i, e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    float partial[8];
    _mm256_storeu_ps(partial, sum8);
    for (; i < n; i++) {
        x[i] = exp_canonical(x[i] - max);
        partial[i % 8] += x[i];
    }
    divide_avx2(x, n, reduce8(partial));
}

// Eight int8s as floats (exact).
TARGET_AVX2 static inline __m256 load_q8_avx2(const int8_t *v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)v)));
}

TARGET_AVX2 static void scores_q8_avx2(float *scores, const float *q, const int8_t *keys, const float *scales, size_t stride,
                                       size_t scale_stride, int n_positions, int n) {
    for (int p = 0; p < n_positions; p++) {
        const int8_t *k = keys + (size_t)p * stride;
        __m256 acc = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(q + i), load_q8_avx2(k + i)));
        float partial[8];
        _mm256_storeu_ps(partial, acc);
        for (; i < n; i++) partial[i % 8] += q[i] * (float)k[i];
        scores[p] = reduce8(partial) * scales[(size_t)p * scale_stride];
    }
}

TARGET_AVX2 static void mix_q8_avx2(float *out, const float *weights, const int8_t *values, const float *scales, size_t stride,
                                    size_t scale_stride, int n_positions, int n) {
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        for (int p = 0; p < n_positions; p++) {
            __m256 weight = _mm256_set1_ps(weights[p] * scales[(size_t)p * scale_stride]);
            const int8_t *v = values + (size_t)p * stride + i;
            for (int j = 0; j < 4; j++) acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(weight, load_q8_avx2(v + 8 * j)));
        }
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(out + i + 8 * j, acc[j]);
    }
    for (; i < n; i++) {   // the last n % 32 outputs
        float sum = 0.0f;
        for (int p = 0; p < n_positions; p++)
            sum += (weights[p] * scales[(size_t)p * scale_stride]) * (float)values[(size_t)p * stride + i];
        out[i] = sum;
    }
}

// Blocks b..b+7 of q . x -> one exact int32 per block, in block order.
// maddubs leaves 16 int16 pair sums per block; three rounds of 16-bit
// horizontal adds fold eight blocks into one vector (each lane then holds 16
// products, at most 16 * 15 * 127 = 30480: no overflow), with each block's
// low-half sum in the low 128 bits and its high-half sum in the high 128 bits;
// widening both halves and adding gives the eight block sums.
TARGET_AVX2 static inline __m256i fold_8_blocks_avx2(__m256i b0123, __m256i b4567) {
    __m256i folded = _mm256_hadd_epi16(b0123, b4567);
    return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(folded)),
                            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(folded, 1)));
}

TARGET_AVX2 static inline __m256i dot_8_blocks_avx2(const __m256i q[8], const int8_t *x) {
#define PAIRS(i) _mm256_maddubs_epi16(q[i], _mm256_loadu_si256((const __m256i *)(x + (i) * Q_BLOCK)))
    __m256i b0123 = _mm256_hadd_epi16(_mm256_hadd_epi16(PAIRS(0), PAIRS(1)), _mm256_hadd_epi16(PAIRS(2), PAIRS(3)));
    __m256i b4567 = _mm256_hadd_epi16(_mm256_hadd_epi16(PAIRS(4), PAIRS(5)), _mm256_hadd_epi16(PAIRS(6), PAIRS(7)));
#undef PAIRS
    return fold_8_blocks_avx2(b0123, b4567);
}

// ---- AVX2 for the other weight types: one row against up to four tokens,
// eight blocks per step, unpacked once for the tile (the prompt's GEMM; one
// token when decoding); each block's exact int32 in its lane, the scales and
// the eight partial sums of the canonical arithmetic; the tail blocks through the
// type's reference block dot (an exact integer: the same whoever computes it).

// Blocks b..b+7 made ready for any token's activations, and their eight
// int32 dots (levels . x) with one token's, in block order.
typedef void (*Unpack8Avx2)(const uint8_t *blocks, __m256i w[8]);
typedef __m256i (*Dot8Avx2)(const __m256i w[8], const int8_t *x, __m256i x_sums);

// 8 bytes of a 2-bit plane -> the block's 32 codes (0..3) in order: the plane
// broadcast to four 64-bit lanes, lane k shifted right by 2k, masked.
TARGET_AVX2 static inline __m256i unpack_2bit_avx2(const uint8_t *plane) {
    int64_t bytes;
    memcpy(&bytes, plane, sizeof bytes);
    __m256i shifted = _mm256_srlv_epi64(_mm256_set1_epi64x(bytes), _mm256_setr_epi64x(0, 2, 4, 6));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(3));
}

// Q3's 12 bytes -> codes 0..7: the 1-bit plane's bit j%8 of byte j/8 is
// spread to byte j (a shuffle, a mask, a compare) and becomes bit 2.
TARGET_AVX2 static inline __m256i unpack_q3_avx2(const uint8_t *block) {
    int32_t bits;
    memcpy(&bits, block + 8, sizeof bits);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(bits),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    __m256i mask = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask), _mm256_set1_epi8(4));
    return _mm256_or_si256(unpack_2bit_avx2(block), high);
}

TARGET_AVX2 static inline void unpack_8_q2_avx2(const uint8_t *blocks, __m256i w[8]) {
    for (int i = 0; i < 8; i++) w[i] = unpack_2bit_avx2(blocks + i * 8);
}
TARGET_AVX2 static inline void unpack_8_q3_avx2(const uint8_t *blocks, __m256i w[8]) {
    for (int i = 0; i < 8; i++) w[i] = unpack_q3_avx2(blocks + i * 12);
}
TARGET_AVX2 static inline void unpack_8_q8_avx2(const uint8_t *blocks, __m256i w[8]) {
    for (int i = 0; i < 8; i++) w[i] = _mm256_loadu_si256((const __m256i *)(blocks + i * 32));
}

// Unsigned codes c with level c + lo: (c + lo) . x = c . x + lo * sum(x), exact.
TARGET_AVX2 static inline __m256i dot_8_q2_avx2(const __m256i codes[8], const int8_t *x, __m256i x_sums) {
    return _mm256_add_epi32(dot_8_blocks_avx2(codes, x), _mm256_mullo_epi32(x_sums, _mm256_set1_epi32(quant_layouts[TYPE_Q2].lo)));
}
TARGET_AVX2 static inline __m256i dot_8_q3_avx2(const __m256i codes[8], const int8_t *x, __m256i x_sums) {
    return _mm256_add_epi32(dot_8_blocks_avx2(codes, x), _mm256_mullo_epi32(x_sums, _mm256_set1_epi32(quant_layouts[TYPE_Q3].lo)));
}

// int8 levels are signed, and maddubs wants one unsigned operand: |w| . (x
// with w's sign), whose pair sums stay within int16 (2 * 128 * 127; x is
// never -128, quantize_q8's range being -127..127). madd widens them to 8
// int32 per block; three rounds of hadd fold blocks 0-3 and 4-7 into one lane each.
TARGET_AVX2 static inline __m256i dot_block_q8_avx2(__m256i w, const int8_t *x) {
    __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x), w));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

TARGET_AVX2 static inline __m128i dot_4_q8_avx2(const __m256i w[4], const int8_t *x) {
    __m256i b01 = _mm256_hadd_epi32(dot_block_q8_avx2(w[0], x), dot_block_q8_avx2(w[1], x + Q_BLOCK));
    __m256i b23 = _mm256_hadd_epi32(dot_block_q8_avx2(w[2], x + 2 * Q_BLOCK), dot_block_q8_avx2(w[3], x + 3 * Q_BLOCK));
    __m256i b0123 = _mm256_hadd_epi32(b01, b23);   // each 128-bit half: one half of each block's sum
    return _mm_add_epi32(_mm256_castsi256_si128(b0123), _mm256_extracti128_si256(b0123, 1));
}

TARGET_AVX2 static inline __m256i dot_8_q8_avx2(const __m256i w[8], const int8_t *x, __m256i x_sums) {
    (void)x_sums;   // signed levels need no offset
    return _mm256_inserti128_si256(_mm256_castsi128_si256(dot_4_q8_avx2(w, x)), dot_4_q8_avx2(w + 4, x + 4 * Q_BLOCK), 1);
}

// Eight weight scales (fp16) for blocks b..b+7 (b a multiple of 8) as floats.
// Groups of 2, 4 or 8 blocks (64, 128, 256 weights) take 4, 2 or 1 scales,
// loaded exactly (the last row's scales end the file) and spread by a
// permute; other group sizes, which export never writes, one at a time.
TARGET_AVX2 static inline __m256 group_scales_avx2(const uint16_t *scales, int b, int blocks_per_group) {
    if (blocks_per_group == 1) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + b)));
    if (blocks_per_group == 2 || blocks_per_group == 4 || blocks_per_group == 8) {
        const uint16_t *first = scales + b / blocks_per_group;
        __m128i packed;   // straight into a register: a copy through memory would stall the load after it
        if (blocks_per_group == 2) { int64_t four; memcpy(&four, first, sizeof four); packed = _mm_cvtsi64_si128(four); }
        else if (blocks_per_group == 4) { int32_t two; memcpy(&two, first, sizeof two); packed = _mm_cvtsi32_si128(two); }
        else packed = _mm_cvtsi32_si128(first[0]);
        __m256i index = _mm256_srlv_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(__builtin_ctz((unsigned)blocks_per_group)));
        return _mm256_permutevar8x32_ps(_mm256_cvtph_ps(packed), index);
    }
    float f[8];
    for (int i = 0; i < 8; i++) f[i] = _cvtsh_ss(scales[(b + i) / blocks_per_group]);
    return _mm256_loadu_ps(f);
}

// A weight type as the AVX2 kernels see it.
typedef struct {
    Unpack8Avx2 unpack_8;
    Dot8Avx2 dot_8;
    BlockDotFn dot_1;        // the reference's exact block dot, for the tail
    int block_bytes;
} Avx2Blocks;

// A row's eight partials for one token after blocks 0..b-1 -> its result:
// the last n_blocks - b blocks (fewer than eight) one at a time through the
// type's exact block dot, then reduce8's tree.
TARGET_AVX2 static inline float finish_row_avx2(__m256 acc, BlockDotFn dot_1, int block_bytes, const uint8_t *codes,
                                                const uint16_t *scales, int blocks_per_group, int b, int n_blocks,
                                                const int8_t *x_values, const float *x_scales) {
    if (b == n_blocks) return reduce8_avx2(acc);
    float partial[8];
    _mm256_storeu_ps(partial, acc);
    for (int tail = b; tail < n_blocks; tail++) {
        float scale = _cvtsh_ss(scales[tail / blocks_per_group]) * x_scales[tail];
        partial[tail % 8] += scale * (float)dot_1(codes + tail * block_bytes, x_values + tail * Q_BLOCK);
    }
    return reduce8(partial);
}

// One row against TILE tokens from token on: the canonical arithmetic; a
// token's result never depends on TILE.
TARGET_AVX2 static inline __attribute__((always_inline)) void row_tile_avx2(
        Avx2Blocks type, float *out, int out_stride, const uint8_t *codes, const uint16_t *scales,
        int blocks_per_group, int n_blocks, const QuantizedActivations *x, int token, const int TILE) {
    int x_blocks = x->stride / Q_BLOCK;
    __m256 acc[4];
    for (int t = 0; t < TILE; t++) acc[t] = _mm256_setzero_ps();
    int b = 0;
    for (; b + 8 <= n_blocks; b += 8) {
        __m256i w[8];
        type.unpack_8(codes + b * type.block_bytes, w);
        __m256 w_scales = group_scales_avx2(scales, b, blocks_per_group);
        for (int t = 0; t < TILE; t++) {
            size_t tok = (size_t)(token + t);
            __m256i isum = type.dot_8(w, x->values + tok * x->stride + b * Q_BLOCK,
                                      _mm256_loadu_si256((const __m256i *)(x->sums + tok * x_blocks + b)));
            __m256 scale = _mm256_mul_ps(w_scales, _mm256_loadu_ps(x->scales + tok * x_blocks + b));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum)));
        }
    }
    for (int t = 0; t < TILE; t++) {
        size_t tok = (size_t)(token + t);
        out[(size_t)t * out_stride] = finish_row_avx2(acc[t], type.dot_1, type.block_bytes, codes, scales, blocks_per_group,
                                                      b, n_blocks, x->values + tok * x->stride, x->scales + tok * x_blocks);
    }
}

TARGET_AVX2 static inline __attribute__((always_inline)) void matmul_avx2_with(
        Avx2Blocks type, float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
        const QuantizedActivations *x, int n_tokens) {
#define ROW_TILE(o, codes, scales, t, TILE) \
    row_tile_avx2(type, o, out_stride, codes, scales, blocks_per_group, n_blocks, x, t, TILE)
    FOR_EACH_ROW_TILE(w, type.block_bytes, row_begin, row_end, n_tokens, out, out_stride, ROW_TILE);
#undef ROW_TILE
}

#define AVX2_KERNEL(type, BLOCK_BYTES) \
    TARGET_AVX2 static void matmul_##type##_avx2(float *out, int out_stride, const Tensor *w, int row_begin, int row_end, \
                                                 const QuantizedActivations *x, int n_tokens) { \
        Avx2Blocks blocks = { unpack_8_##type##_avx2, dot_8_##type##_avx2, block_dot_##type##_ref, BLOCK_BYTES }; \
        matmul_avx2_with(blocks, out, out_stride, w, row_begin, row_end, x, n_tokens); \
    }
AVX2_KERNEL(q8, 32)
AVX2_KERNEL(q3, 12)
AVX2_KERNEL(q2, 8)
#undef AVX2_KERNEL

// The eight int32 lanes' sum.
TARGET_AVX2 static inline int32_t sum_lanes_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// quantize_q8 eight floats at a time: the same max (a NaN never wins: maxps
// returns its second operand when either is NaN, and the running max is
// second), the same product by the inverse scale, the same rounding (|v| +
// 0.5 truncated, the sign put back: what the reference's two branches
// compute). Blocks that reach past n go through the reference's block.
TARGET_AVX2 static void quantize_full_block_q8_avx2(const float *x, int8_t *values, float *scale_out, int32_t *sum_out) {
    __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)), limit = _mm256_set1_ps(127.5f);
    __m256 half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps();
    __m256 v[4], amax8 = zero;
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax8 = _mm256_max_ps(_mm256_and_ps(v[i], abs_mask), amax8);
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    float amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    float scale = amax / 127.0f;
    float inverse = scale > 0 ? 1.0f / scale : 0.0f;
    *scale_out = scale;
    __m256i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 scaled = _mm256_mul_ps(v[i], _mm256_set1_ps(inverse));
        __m256 size = _mm256_and_ps(scaled, abs_mask);
        __m256 in_range = _mm256_cmp_ps(size, limit, _CMP_LE_OQ);   // false for NaN: 0
        __m256i magnitude = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_and_ps(size, in_range), half));
        __m256i negative = _mm256_castps_si256(_mm256_and_ps(_mm256_cmp_ps(scaled, zero, _CMP_LT_OQ), in_range));
        q[i] = _mm256_sub_epi32(_mm256_xor_si256(magnitude, negative), negative);
    }
    *sum_out = sum_lanes_avx2(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    // int32 -> int8 in order: the packs work per 128-bit lane, a permute restores the order
    __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)values, bytes);
}

TARGET_AVX2 static void quantize_q8_avx2(QuantizedActivations *out, const float *x, int x_stride, int n, int n_padded,
                                         int n_tokens) {
    quantize_q8_with(quantize_full_block_q8_avx2, out, x, x_stride, n, n_padded, n_tokens);
}

// F16C's conversion rounds to nearest even as fp32_to_fp16 does; only NaNs
// differ (F16C keeps payload bits, the reference only the sign), so eight
// floats holding a NaN go through the reference.
TARGET_AVX2 static void to_f16_avx2(uint16_t *out, const float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        if (!_mm256_testz_ps(nan, nan)) { to_f16_ref(out + i, x + i, 8); continue; }
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    to_f16_ref(out + i, x + i, n - i);
}

// ---- Table lookup (see "Table lookup") with pshufb. A 256-bit register of
// a tile's pattern bytes is two groups' patterns for 32 rows (an AND and a
// shift apart); pshufb looks each row's pattern up in the group's low-byte
// and high-byte tables (broadcast to both 128-bit lanes as they load), and
// unpacking the two results interleaves them into int16 lanes: rows 0-7 and
// 16-23 (unpacklo), 8-15 and 24-31 (unpackhi) of the 32, the order
// lut_scales keeps (lut_scale_slot). A block's plane sums stay in int16 (the
// bound above), then widen to int32 for the canonical arithmetic, whose eight
// partial sums of the tile's 64 rows wait in memory.

// Group g's two 16-byte tables, in both 128-bit lanes.
TARGET_AVX2 static inline void lut_tables_avx2(const uint8_t *tables, int g, __m256i *low, __m256i *high) {
    *low = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tables + (size_t)g * LUT_GROUP_BYTES)));
    *high = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tables + (size_t)g * LUT_GROUP_BYTES + 16)));
}

// Rows 32h..32h+31 of a tile's block: its planes' sums, sum of 2^k * plane k,
// in int16 (sums[0]: rows 0-7 and 16-23 of the 32; sums[1]: 8-15, 24-31).
TARGET_AVX2 static inline __attribute__((always_inline)) void lut_block_avx2(const int PLANES, const uint8_t *codes,
                                                                            const uint8_t *tables, int h, __m256i sums[2]) {
    __m256i nibble = _mm256_set1_epi8(0x0F);
    __m256i acc[3][2];
    for (int k = 0; k < PLANES; k++) acc[k][0] = acc[k][1] = _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        __m256i low0, high0, low1, high1;
        lut_tables_avx2(tables, 2 * p, &low0, &high0);
        lut_tables_avx2(tables, 2 * p + 1, &low1, &high1);
        for (int k = 0; k < PLANES; k++) {
            __m256i patterns = _mm256_loadu_si256((const __m256i *)(codes + (k * 4 + p) * LUT_TILE_ROWS + 32 * h));
            __m256i first = _mm256_and_si256(patterns, nibble);
            __m256i second = _mm256_and_si256(_mm256_srli_epi16(patterns, 4), nibble);
            __m256i l0 = _mm256_shuffle_epi8(low0, first), h0 = _mm256_shuffle_epi8(high0, first);
            __m256i l1 = _mm256_shuffle_epi8(low1, second), h1 = _mm256_shuffle_epi8(high1, second);
            acc[k][0] = _mm256_add_epi16(acc[k][0], _mm256_add_epi16(_mm256_unpacklo_epi8(l0, h0), _mm256_unpacklo_epi8(l1, h1)));
            acc[k][1] = _mm256_add_epi16(acc[k][1], _mm256_add_epi16(_mm256_unpackhi_epi8(l0, h0), _mm256_unpackhi_epi8(l1, h1)));
        }
    }
    for (int i = 0; i < 2; i++) {
        sums[i] = acc[0][i];
        for (int k = 1; k < PLANES; k++) sums[i] = _mm256_add_epi16(sums[i], _mm256_slli_epi16(acc[k][i], k));
    }
}

// A block's terms into the partial sums of eight rows: (weight scales *
// activation scale) * (float)(int32 of the int16 sums + lo * sum(x)).
TARGET_AVX2 static inline __m256 lut_add_term_avx2(__m256 partial, __m128i sums16, __m256i offset, const uint16_t *w_scales,
                                                   __m256 x_scale) {
    __m256 scale = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w_scales)), x_scale);
    __m256i isum = _mm256_add_epi32(_mm256_cvtepi16_epi32(sums16), offset);
    return _mm256_add_ps(partial, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum)));
}

TARGET_AVX2 static inline __attribute__((always_inline)) void matmul_lut_avx2_with(const int PLANES, int lo, float *out,
        int out_stride, const Tensor *w, int row_begin, int row_end, const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, blocks_per_group = w->group_size / Q_BLOCK;
    int n_groups = w->cols_padded / w->group_size, x_blocks = x->stride / Q_BLOCK;
    size_t block_bytes = (size_t)PLANES * 4 * LUT_TILE_ROWS;
    for (int tile = row_begin / LUT_TILE_ROWS; tile * LUT_TILE_ROWS < row_end; tile++) {
        const uint8_t *codes = w->lut_codes + tile * n_blocks * block_bytes;
        const uint16_t *scales = w->lut_scales + (size_t)tile * n_groups * LUT_TILE_ROWS;
        for (int t = 0; t < n_tokens; t++) {
            const uint8_t *tables = x->tables + (size_t)t * lut_table_bytes(x->stride);
            const float *x_scales = x->scales + (size_t)t * x_blocks;
            const int32_t *x_sums = x->sums + (size_t)t * x_blocks;
            __m256 partial[8][8];   // [b % 8][slots 8j..8j+7]
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++) partial[i][j] = _mm256_setzero_ps();
            for (int b = 0; b < n_blocks; b++) {
                __m256i offset = _mm256_set1_epi32(lo * x_sums[b]);
                __m256 x_scale = _mm256_set1_ps(x_scales[b]);
                const uint16_t *w_scales = scales + (size_t)(b / blocks_per_group) * LUT_TILE_ROWS;
                __m256 *acc = partial[b % 8];
                for (size_t line = 0; line < block_bytes; line += 64)   // see matmul_lut_avx512_with
                    _mm_prefetch((const char *)(codes + (b + LUT_PREFETCH_BLOCKS) * block_bytes + line), _MM_HINT_T0);
                for (int h = 0; h < 2; h++) {
                    __m256i sums[2];
                    lut_block_avx2(PLANES, codes + b * block_bytes, tables + (size_t)b * LUT_GROUPS_PER_BLOCK * LUT_GROUP_BYTES,
                                   h, sums);
                    // slots 16h.. hold rows 32h+0-7, 32h+16-23; slots 32+16h.. rows 32h+8-15, 32h+24-31
                    for (int i = 0; i < 2; i++) {
                        int slot = 32 * i + 16 * h;
                        acc[slot / 8] = lut_add_term_avx2(acc[slot / 8], _mm256_castsi256_si128(sums[i]), offset,
                                                          w_scales + slot, x_scale);
                        acc[slot / 8 + 1] = lut_add_term_avx2(acc[slot / 8 + 1], _mm256_extracti128_si256(sums[i], 1), offset,
                                                              w_scales + slot + 8, x_scale);
                    }
                }
            }
            float reduced[LUT_TILE_ROWS];
            for (int j = 0; j < 8; j++) {
                __m256 (*p)[8] = partial;
                _mm256_storeu_ps(reduced + 8 * j,
                    _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(p[0][j], p[4][j]), _mm256_add_ps(p[2][j], p[6][j])),
                                  _mm256_add_ps(_mm256_add_ps(p[1][j], p[5][j]), _mm256_add_ps(p[3][j], p[7][j]))));
            }
            lut_store_tile(reduced, out + (size_t)t * out_stride, tile * LUT_TILE_ROWS, row_end);
        }
    }
}

TARGET_AVX2 static void matmul_lut_q2_avx2(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                           const QuantizedActivations *x, int n_tokens) {
    matmul_lut_avx2_with(2, quant_layouts[TYPE_Q2].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}
TARGET_AVX2 static void matmul_lut_q3_avx2(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                           const QuantizedActivations *x, int n_tokens) {
    matmul_lut_avx2_with(3, quant_layouts[TYPE_Q3].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}

// A token's tables eight int16 entries per 128-bit lane: entry m of group g
// is maddubs of m's bits (0 or 1, bytes) with x0 x1, plus with x2 x3 (each
// pair broadcast), exact (|x0 + x1| <= 254); one pshufb per lane puts the low
// bytes before the high ones, a permute gathers lanes into [low 16 | high 16].
TARGET_AVX2 static void build_tables_avx2(QuantizedActivations *x, int n_padded, int n_tokens) {
    __m256i bits01 = _mm256_setr_epi8(0,0, 1,0, 0,1, 1,1, 0,0, 1,0, 0,1, 1,1, 0,0, 1,0, 0,1, 1,1, 0,0, 1,0, 0,1, 1,1);
    __m256i bits23 = _mm256_setr_epi8(0,0, 0,0, 0,0, 0,0, 1,0, 1,0, 1,0, 1,0, 0,1, 0,1, 0,1, 0,1, 1,1, 1,1, 1,1, 1,1);
    __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                     0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int t = 0; t < n_tokens; t++) {
        const int8_t *values = x->values + (size_t)t * x->stride;
        uint8_t *tables = x->tables + (size_t)t * lut_table_bytes(x->stride);
        for (int g = 0; g < n_padded / 4; g++) {
            int16_t x01, x23;
            memcpy(&x01, values + 4 * g, 2);
            memcpy(&x23, values + 4 * g + 2, 2);
            __m256i sums = _mm256_add_epi16(_mm256_maddubs_epi16(bits01, _mm256_set1_epi16(x01)),
                                            _mm256_maddubs_epi16(bits23, _mm256_set1_epi16(x23)));
            __m256i bytes = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(sums, split), _MM_SHUFFLE(3, 1, 2, 0));
            _mm256_storeu_si256((__m256i *)(tables + (size_t)g * LUT_GROUP_BYTES), bytes);
        }
    }
}

static const Kernels kernels_avx2 = {
    "avx2", quantize_q8_avx2, to_f16_avx2, { [TYPE_Q8] = matmul_q8_avx2, [TYPE_Q4] = matmul_q4_avx2, [TYPE_Q3] = matmul_q3_avx2, [TYPE_Q2] = matmul_q2_avx2,
                                             [TYPE_Q4S] = matmul_q4s_avx2 },
    scores_f16_avx2, mix_f16_avx2, scores_q8_avx2, mix_q8_avx2, softmax_avx2,
    build_tables_avx2, { [TYPE_Q3] = matmul_lut_q3_avx2, [TYPE_Q2] = matmul_lut_q2_avx2 } };

// ---- x86: int8 dot products (vpdpbusd). One instruction multiplies four
// unsigned bytes by four signed bytes and adds the four products to an int32
// lane: no int16 stage to saturate, no rounding. An int32 sum of int8 x int8
// products is exact whoever computes it and in whatever order, so a block dot
// computed this way is the integer the reference computes, and the float
// arithmetic after it (the canonical one) is unchanged. Two sets, chosen by
// CPUID:
//   avx-vnni      256 bits, VEX-encoded (AVX-VNNI: Intel since Alder Lake,
//                 Zen 5): AVX2's kernels with vpdpbusd in every int8 dot;
//   avx512-vnni   512 bits, EVEX (AVX512-VNNI with F, BW and VL: Ice Lake,
//                 Sapphire Rapids, Zen 4, Zen 5): a Q4 tile's whole block in
//                 two registers (decode) or two tiles (16 rows) per register
//                 (prompt), two blocks of the other types per register; the
//                 activations' quantization, the KV cache's conversion and
//                 attention, 16 lanes at a time.
// The weights are the unsigned operand: Q4's nibbles (0..15), Q3's and Q2's
// codes, Q8's levels with the sign bit flipped (level + 128). A code's offset
// from its level comes off afterwards, exactly: (c + lo) . x = c . x + lo * sum(x).
// For the prompt, as in the AVX2 kernel, a Q4 block's weights stay in
// registers while every token of the batch goes past them.
#define TARGET_AVX_VNNI __attribute__((target("avx2,f16c,avxvnni")))
#define TARGET_AVX512_VNNI __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

// CPUID leaf 7, sub-leaf 1, EAX bit 4 (compilers' __builtin_cpu_supports do
// not all know "avxvnni"); the OS saves the registers it uses when it saves AVX2's.
static int cpu_has_avx_vnni(void) {
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 4)) != 0;
}

// (__builtin_cpu_supports reports AVX-512 only when the OS saves its registers.)
static int cpu_has_avx512_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512vnni");
}

// Four activations as one int32, to broadcast to every lane.
static inline int32_t four_bytes(const int8_t *x) {
    int32_t four;
    memcpy(&four, x, sizeof four);
    return four;
}

// ---- avx-vnni: a Q4 tile's block . one token's 32 activations -> row j's
// (q - 8) . x in lane j. The sum starts at -8 * sum(x); step k adds row j's
// four products of weights 4k..4k+3 (or 16+...) to lane j.
TARGET_AVX_VNNI static inline __m256i dot_q4_tile_block_vnni(const __m256i q[8], const int8_t *x, int32_t x_sum) {
    __m256i isum = _mm256_set1_epi32(-8 * x_sum);
    for (int k = 0; k < 8; k++) isum = _mm256_dpbusd_avx_epi32(isum, q[k], _mm256_set1_epi32(four_bytes(x + 4 * k)));
    return isum;
}

// (weight scale * activation scale) * int32, added to partial sum acc.
TARGET_AVX2 static inline __m256 add_term_avx2(__m256 acc, __m256 w_scale, float x_scale, __m256i isum) {
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(w_scale, _mm256_set1_ps(x_scale)), _mm256_cvtepi32_ps(isum)));
}

// Decoding: a tile against one token, its eight partials in registers.
TARGET_AVX_VNNI static __m256 q4_tile_decode_vnni(const uint8_t *nibbles, const uint16_t *scales, int n_blocks,
                                                  int blocks_per_group, const QuantizedActivations *x) {
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b += 8)
        for (int i = 0; i < 8 && b + i < n_blocks; i++) {
            __m256i q[8];
            unpack_q4_tile_block_avx2(q, nibbles + (size_t)(b + i) * Q4_TILE_BLOCK_BYTES);
            acc[i] = add_term_avx2(acc[i], q4_tile_scales_avx2(scales, b + i, blocks_per_group), x->scales[b + i],
                                   dot_q4_tile_block_vnni(q, x->values + (b + i) * Q_BLOCK, x->sums[b + i]));
        }
    return reduce8_lanes_avx2(acc);
}

// The prompt: each block unpacked once, held in registers while every token
// of the batch passes; each token's eight partials wait in acc.
TARGET_AVX_VNNI static void q4_tile_prefill_vnni(float *out, int out_stride, int n_rows, const uint8_t *nibbles,
                                                 const uint16_t *scales, int n_blocks, int blocks_per_group,
                                                 const QuantizedActivations *x, int n_tokens) {
    int x_blocks = x->stride / Q_BLOCK;
    __m256 acc[MAX_BATCH][8];
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < 8; i++) acc[t][i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b++) {
        __m256i q[8];
        prefetch_q4_block(nibbles, b);
        unpack_q4_tile_block_avx2(q, nibbles + (size_t)b * Q4_TILE_BLOCK_BYTES);
        __m256 w_scale = q4_tile_scales_avx2(scales, b, blocks_per_group);
        for (int t = 0; t < n_tokens; t++) {
            size_t at = (size_t)t * x_blocks + b;
            __m256i isum = dot_q4_tile_block_vnni(q, x->values + (size_t)t * x->stride + b * Q_BLOCK, x->sums[at]);
            acc[t][b % 8] = add_term_avx2(acc[t][b % 8], w_scale, x->scales[at], isum);
        }
    }
    for (int t = 0; t < n_tokens; t++) store_tile_rows_avx2(out + (size_t)t * out_stride, reduce8_lanes_avx2(acc[t]), n_rows);
}

TARGET_AVX_VNNI static void matmul_q4_vnni(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                           const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int blocks_per_group = w->group_size / Q_BLOCK;
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        const uint8_t *nibbles = w->nibbles + (size_t)tile * n_blocks * Q4_TILE_BLOCK_BYTES;
        const uint16_t *scales = w->scales + (size_t)tile * n_groups * Q4_TILE_ROWS;
        if (n_tokens == 1)
            store_tile_rows_avx2(out + row, q4_tile_decode_vnni(nibbles, scales, n_blocks, blocks_per_group, x), n_rows);
        else
            q4_tile_prefill_vnni(out + row, out_stride, n_rows, nibbles, scales, n_blocks, blocks_per_group, x, n_tokens);
    }
}

// The other types through AVX2's row loop (row_tile_avx2), with eight blocks'
// exact sums from vpdpbusd: each block leaves eight int32 lanes, and three
// rounds of 32-bit horizontal adds fold the eight blocks into one register
// (blocks 0-3's low-half sums in the low 128 bits, their high-half sums in
// the high ones, and so for 4-7), two permutes and an add finish them.
TARGET_AVX_VNNI static inline __m256i dot_8_blocks_vnni(const __m256i codes[8], const int8_t *x) {
    __m256i d[8];
    for (int i = 0; i < 8; i++)
        d[i] = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), codes[i], _mm256_loadu_si256((const __m256i *)(x + i * Q_BLOCK)));
    __m256i b0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
    __m256i b4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[4], d[5]), _mm256_hadd_epi32(d[6], d[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(b0123, b4567, 0x20), _mm256_permute2x128_si256(b0123, b4567, 0x31));
}

// Q8's levels as unsigned codes: the sign bit flipped is level + 128.
TARGET_AVX2 static inline void unpack_8_q8_biased_avx2(const uint8_t *blocks, __m256i w[8]) {
    for (int i = 0; i < 8; i++)
        w[i] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blocks + i * 32)), _mm256_set1_epi8((char)0x80));
}

#define VNNI_DOT_8(type, LO) \
    TARGET_AVX_VNNI static inline __m256i dot_8_##type##_vnni(const __m256i codes[8], const int8_t *x, __m256i x_sums) { \
        return _mm256_add_epi32(dot_8_blocks_vnni(codes, x), _mm256_mullo_epi32(x_sums, _mm256_set1_epi32(LO))); \
    }
VNNI_DOT_8(q8, -128)
VNNI_DOT_8(q3, quant_layouts[TYPE_Q3].lo)
VNNI_DOT_8(q2, quant_layouts[TYPE_Q2].lo)
#undef VNNI_DOT_8

#define VNNI_KERNEL(type, UNPACK, BLOCK_BYTES) \
    TARGET_AVX_VNNI static void matmul_##type##_vnni(float *out, int out_stride, const Tensor *w, int row_begin, int row_end, \
                                                     const QuantizedActivations *x, int n_tokens) { \
        Avx2Blocks blocks = { UNPACK, dot_8_##type##_vnni, block_dot_##type##_ref, BLOCK_BYTES }; \
        matmul_avx2_with(blocks, out, out_stride, w, row_begin, row_end, x, n_tokens); \
    }
VNNI_KERNEL(q8, unpack_8_q8_biased_avx2, 32)
VNNI_KERNEL(q3, unpack_8_q3_avx2, 12)
VNNI_KERNEL(q2, unpack_8_q2_avx2, 8)
#undef VNNI_KERNEL

static const Kernels kernels_avx_vnni = {
    "avx-vnni", quantize_q8_avx2, to_f16_avx2, { [TYPE_Q8] = matmul_q8_vnni, [TYPE_Q4] = matmul_q4_vnni, [TYPE_Q3] = matmul_q3_vnni, [TYPE_Q2] = matmul_q2_vnni,
                              [TYPE_Q4S] = matmul_q4s_avx2 },   // its gathers are shuffles, not dot products: AVX2's kernel
    scores_f16_avx2, mix_f16_avx2, scores_q8_avx2, mix_q8_avx2, softmax_avx2,
    build_tables_avx2, { [TYPE_Q3] = matmul_lut_q3_avx2, [TYPE_Q2] = matmul_lut_q2_avx2 } };

// ---- avx512-vnni: Q4 tiles in pairs for the prompt. A register holds block
// b of tile t in its low 256 bits and of tile t+1 in its high ones (an odd
// last tile pairs with itself, its copy's results dropped): one vpdpbusd is a
// step for sixteen rows, and each 256-bit half is exactly the avx-vnni
// computation. (Decoding reads one tile at a time, below: two tiles at once
// read two streams of weights, which memory served more slowly than one.)
TARGET_AVX512_VNNI static inline void unpack_q4_tile_pair_block_avx512(__m512i q[8], const uint8_t *block0,
                                                                       const uint8_t *block1) {
    __m512i low = _mm512_set1_epi8(0x0F);
    for (int d = 0; d < 4; d++) {
        __m512i run = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(block0 + 32 * d))),
                                         _mm256_loadu_si256((const __m256i *)(block1 + 32 * d)), 1);
        q[d] = _mm512_and_si512(run, low);
        q[d + 4] = _mm512_and_si512(_mm512_srli_epi16(run, 4), low);
    }
}

TARGET_AVX512_VNNI static inline __m512i dot_q4_tile_pair_block_avx512(const __m512i q[8], const int8_t *x, int32_t x_sum) {
    __m512i isum = _mm512_set1_epi32(-8 * x_sum);
    for (int k = 0; k < 8; k++) isum = _mm512_dpbusd_epi32(isum, q[k], _mm512_set1_epi32(four_bytes(x + 4 * k)));
    return isum;
}

// Two tiles' eight fp16 scales as sixteen floats: row0's in the low half, row1's in the high.
TARGET_AVX512_VNNI static inline __m512 two_scale_rows_avx512(const uint16_t *row0, const uint16_t *row1) {
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)row0)),
                                                   _mm_loadu_si128((const __m128i *)row1), 1));
}

// The pair's sixteen weight scales of block b as floats.
TARGET_AVX512_VNNI static inline __m512 q4_tile_pair_scales_avx512(const uint16_t *scales0, const uint16_t *scales1, int b,
                                                                   int blocks_per_group) {
    size_t at = (size_t)(b / blocks_per_group) * Q4_TILE_ROWS;
    return two_scale_rows_avx512(scales0 + at, scales1 + at);
}

TARGET_AVX512_VNNI static inline __m512 add_term_avx512(__m512 acc, __m512 w_scale, float x_scale, __m512i isum) {
    return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(w_scale, _mm512_set1_ps(x_scale)), _mm512_cvtepi32_ps(isum)));
}

// The high 256 bits of a register (AVX-512F alone has no float extract of eight).
TARGET_AVX512_VNNI static inline __m256 high_half_avx512(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

TARGET_AVX512_VNNI static inline __m512 reduce8_lanes_avx512(const __m512 p[8]) {
    return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p[0], p[4]), _mm512_add_ps(p[2], p[6])),
                         _mm512_add_ps(_mm512_add_ps(p[1], p[5]), _mm512_add_ps(p[3], p[7])));
}

// The first n_rows (1..16) of a pair's results.
TARGET_AVX512_VNNI static inline void store_tile_pair_rows_avx512(float *out, __m512 rows, int n_rows) {
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << n_rows) - 1), rows);
}

// Decoding, one tile: its block is two registers, runs 0-1 and runs 2-3, so
// the low nibbles of the first hold weights 0-3 (low 256 bits) and 4-7 (high),
// its high nibbles 16-19 and 20-23, the second's 8-11, 12-15, 24-27, 28-31.
// Each is paired with its activations by a permute of the block's 32
// (dword k in the low half, k+1 in the high); lane j and lane j+8 are then
// two halves of row j's sum. One stream of weights, as AVX2 reads them.
TARGET_AVX512_VNNI static inline void unpack_q4_tile_block_avx512(__m512i q[4], const uint8_t *block) {
    __m512i low = _mm512_set1_epi8(0x0F);
    for (int h = 0; h < 2; h++) {
        __m512i runs = _mm512_loadu_si512(block + 64 * h);
        q[2 * h] = _mm512_and_si512(runs, low);
        q[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(runs, 4), low);
    }
}

// The tile's eight rows' integer sums for one token's block of activations.
TARGET_AVX512_VNNI static inline __m256i q4_tile_block_rows_avx512(const __m512i q[4], const int8_t *x, int x_sum) {
    const __m512i pick[4] = { _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),     // weights 0-7
                              _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),     // 16-23
                              _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),     // 8-15
                              _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7) };   // 24-31
    __m512i x32 = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x)), isum = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) isum = _mm512_dpbusd_epi32(isum, q[k], _mm512_permutexvar_epi32(pick[k], x32));
    return _mm256_sub_epi32(_mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1)),
                            _mm256_set1_epi32(8 * x_sum));
}

TARGET_AVX512_VNNI static __m256 q4_tile_decode_avx512(const uint8_t *nibbles, const uint16_t *scales, int n_blocks,
                                                       int blocks_per_group, const QuantizedActivations *x) {
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b += 8)   // acc[i] a register
        for (int i = 0; i < 8 && b + i < n_blocks; i++) {
            __m512i q[4];
            for (int line = 0; line < Q4_TILE_BLOCK_BYTES / 64; line++) prefetch_ahead(nibbles + (size_t)(b + i) * Q4_TILE_BLOCK_BYTES + 64 * line);
            unpack_q4_tile_block_avx512(q, nibbles + (size_t)(b + i) * Q4_TILE_BLOCK_BYTES);
            __m256i rows = q4_tile_block_rows_avx512(q, x->values + (b + i) * Q_BLOCK, x->sums[b + i]);
            acc[i] = add_term_avx2(acc[i], q4_tile_scales_avx2(scales, b + i, blocks_per_group), x->scales[b + i], rows);
        }
    return reduce8_lanes_avx2(acc);
}

// Two tokens (two streams of a server decoding together, a draft checked):
// one tile's weights stream as decoding reads them, once, and each block's
// four unpacked registers serve both tokens. Two tiles a register (the
// prompt's kernel below) read two streams at once, which DRAM serves more
// slowly; for a prompt that is paid for by half the unpacking and no
// permutes. Measured on a Zen 5 (TinyLlama shape, -T 2): a step of two
// sequences 1.15-1.22x one instead of 1.29-1.36x; at four the permutes cost
// more than the second stream (1.52-1.73x one against 1.55-1.62x).
#define FEW_TOKENS 2
TARGET_AVX512_VNNI static void q4_tile_few_tokens_avx512(float *out, int out_stride, int n_rows, const uint8_t *nibbles,
                                                         const uint16_t *scales, int n_blocks, int blocks_per_group,
                                                         const QuantizedActivations *x, int n_tokens) {
    int x_blocks = x->stride / Q_BLOCK;
    __m256 acc[FEW_TOKENS][8];
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < 8; i++) acc[t][i] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b++) {
        __m512i q[4];
        unpack_q4_tile_block_avx512(q, nibbles + (size_t)b * Q4_TILE_BLOCK_BYTES);
        __m256 w_scale = q4_tile_scales_avx2(scales, b, blocks_per_group);
        for (int t = 0; t < n_tokens; t++) {
            size_t at = (size_t)t * x_blocks + b;
            __m256i rows = q4_tile_block_rows_avx512(q, x->values + (size_t)t * x->stride + b * Q_BLOCK, x->sums[at]);
            acc[t][b % 8] = add_term_avx2(acc[t][b % 8], w_scale, x->scales[at], rows);
        }
    }
    for (int t = 0; t < n_tokens; t++) store_tile_rows_avx2(out + (size_t)t * out_stride, reduce8_lanes_avx2(acc[t]), n_rows);
}

TARGET_AVX512_VNNI static void q4_tile_pair_prefill_avx512(float *out, int out_stride, int n_rows, const uint8_t *nibbles0,
                                                           const uint8_t *nibbles1, const uint16_t *scales0,
                                                           const uint16_t *scales1, int n_blocks, int blocks_per_group,
                                                           const QuantizedActivations *x, int n_tokens) {
    int x_blocks = x->stride / Q_BLOCK;
    __m512 acc[MAX_BATCH][8];
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < 8; i++) acc[t][i] = _mm512_setzero_ps();
    for (int b = 0; b < n_blocks; b++) {
        __m512i q[8];
        prefetch_q4_block(nibbles0, b);
        prefetch_q4_block(nibbles1, b);
        unpack_q4_tile_pair_block_avx512(q, nibbles0 + (size_t)b * Q4_TILE_BLOCK_BYTES, nibbles1 + (size_t)b * Q4_TILE_BLOCK_BYTES);
        __m512 w_scale = q4_tile_pair_scales_avx512(scales0, scales1, b, blocks_per_group);
        for (int t = 0; t < n_tokens; t++) {
            size_t at = (size_t)t * x_blocks + b;
            __m512i isum = dot_q4_tile_pair_block_avx512(q, x->values + (size_t)t * x->stride + b * Q_BLOCK, x->sums[at]);
            acc[t][b % 8] = add_term_avx512(acc[t][b % 8], w_scale, x->scales[at], isum);
        }
    }
    for (int t = 0; t < n_tokens; t++)
        store_tile_pair_rows_avx512(out + (size_t)t * out_stride, reduce8_lanes_avx512(acc[t]), n_rows);
}

TARGET_AVX512_VNNI static void matmul_q4_avx512(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                                const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int blocks_per_group = w->group_size / Q_BLOCK;
    size_t tile_bytes = (size_t)n_blocks * Q4_TILE_BLOCK_BYTES, tile_scales = (size_t)n_groups * Q4_TILE_ROWS;
    int step = n_tokens <= FEW_TOKENS ? Q4_TILE_ROWS : 2 * Q4_TILE_ROWS;
    for (int row = row_begin; row < row_end; row += step) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < step ? row_end - row : step;
        const uint8_t *nibbles = w->nibbles + tile * tile_bytes;
        const uint16_t *scales = w->scales + tile * tile_scales;
        if (n_tokens == 1) {
            store_tile_rows_avx2(out + row, q4_tile_decode_avx512(nibbles, scales, n_blocks, blocks_per_group, x), n_rows);
            continue;
        }
        if (n_tokens <= FEW_TOKENS) {
            q4_tile_few_tokens_avx512(out + row, out_stride, n_rows, nibbles, scales, n_blocks, blocks_per_group, x, n_tokens);
            continue;
        }
        int next = n_rows > Q4_TILE_ROWS ? 1 : 0;   // an odd last tile pairs with itself
        q4_tile_pair_prefill_avx512(out + row, out_stride, n_rows, nibbles, nibbles + next * tile_bytes, scales,
                                    scales + next * tile_scales, n_blocks, blocks_per_group, x, n_tokens);
    }
}

// ---- avx512-vnni for Q4S: the AVX2 kernel's steps with vpdpbusd in place of
// maddubs, on two blocks of eight rows a register (their 256-bit halves): the
// prompt's two tiles' block b (an odd last tile pairs with itself), or, when
// decoding, one tile's blocks b and b+1. The gathered activations enter with
// their sign bit flipped (x + 128, unsigned) against the signed levels, and
// 128 x the row's sum of levels comes off once a block (a row's levels over
// the four steps add up as bytes: |sum| <= 32). The int32 is the reference's
// exact one, so the terms and sums are too.

// _mm512_ternarylogic_epi32's truth tables (a = 0xF0, b = 0xCC, c = 0xAA).
#define XOR_THEN_AND 0x28    // (a ^ b) & c
#define AND_THEN_OR 0xEA     // (a & b) | c

typedef struct {   // two blocks, unpacked: the low half's eight rows, then the high half's
    __m512i level[4];     // step s: each row's four slots' signed levels (a row a 32-bit lane)
    __m512i control[4];   // which of the half's 16 activations each slot reads
    __m512i offset;       // 128 x each row's sum of levels: what the flipped sign bits add
} Q4sTilePairBlockAvx512;

// Run d (32 bytes) of two blocks: block0's in the low half, block1's in the high.
TARGET_AVX512_VNNI static inline __m512i load_q4s_tile_pair_run_avx512(const uint8_t *block0, const uint8_t *block1, int d) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(block0 + 32 * d))),
                              _mm256_loadu_si256((const __m256i *)(block1 + 32 * d)), 1);
}

TARGET_AVX512_VNNI static inline void unpack_q4s_tile_pair_block_avx512(Q4sTilePairBlockAvx512 *out, const uint8_t *block0,
                                                                        const uint8_t *block1) {
    // A nibble n (two's complement) is level ((n ^ 8) & 15) - 8: one ternary
    // logic op and a subtraction; a control is (position & 3) | base, one op.
    __m512i sign = _mm512_set1_epi8((char)0x88), low = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    for (int half = 0; half < 2; half++) {   // run 0: steps 0 (low nibbles) and 1 (high); run 1: steps 2 and 3
        __m512i run = load_q4s_tile_pair_run_avx512(block0, block1, half);
        out->level[2 * half] = _mm512_sub_epi8(_mm512_ternarylogic_epi32(run, sign, low, XOR_THEN_AND), eight);
        out->level[2 * half + 1] = _mm512_sub_epi8(_mm512_ternarylogic_epi32(_mm512_srli_epi16(run, 4), sign, low, XOR_THEN_AND), eight);
    }
    __m512i positions = load_q4s_tile_pair_run_avx512(block0, block1, 2), three = _mm512_set1_epi8(3);
    for (int s = 0; s < 4; s++) {            // base: 8 for the half's second eight, 4 for a step's second quad
        __m512i base = _mm512_set1_epi32(0x04040000 + (s % 2) * 0x08080808);
        out->control[s] = _mm512_ternarylogic_epi32(_mm512_srli_epi32(positions, 2 * s), three, base, AND_THEN_OR);
    }
    __m512i level_sum = _mm512_add_epi8(_mm512_add_epi8(out->level[0], out->level[1]), _mm512_add_epi8(out->level[2], out->level[3]));
    out->offset = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), level_sum);
}

// A block's 32 activations, sign bits flipped, as the two halves the steps
// gather from: half h's 16 in every 128-bit lane (x1 = x0), or x0's in the
// low 256 bits and x1's in the high ones.
TARGET_AVX512_VNNI static inline void q4s_halves_avx512(__m512i halves[2], const int8_t *x0, const int8_t *x1) {
    __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int h = 0; h < 2; h++) {
        __m128i low = _mm_loadu_si128((const __m128i *)(x0 + 16 * h)), high = _mm_loadu_si128((const __m128i *)(x1 + 16 * h));
        __m512i both = x0 == x1 ? _mm512_broadcast_i32x4(low)
                                : _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(low)),
                                                     _mm256_broadcastsi128_si256(high), 1);
        halves[h] = _mm512_xor_si512(both, flip);
    }
}

// The unpacked block . its activations' halves: each row's exact int32 in its lane.
TARGET_AVX512_VNNI static inline __m512i dot_q4s_tile_pair_block_avx512(const Q4sTilePairBlockAvx512 *w, const __m512i halves[2]) {
    __m512i sum = _mm512_setzero_si512();
    for (int s = 0; s < 4; s++) sum = _mm512_dpbusd_epi32(sum, _mm512_shuffle_epi8(halves[s / 2], w->control[s]), w->level[s]);
    return _mm512_sub_epi32(sum, w->offset);
}

// A decoded token's activations as the tiles' blocks b and next = b+1 (the
// last block when there is no b+1) meet them, made once for all tiles: the
// two halves q4s_halves_avx512 gathers from and the two blocks' scales.
typedef struct {
    __m512i halves[2];
    __m512 scales;
} Q4sPairActivations;

TARGET_AVX512_VNNI static inline void q4s_pair_activations_avx512(Q4sPairActivations *out, const QuantizedActivations *x,
                                                                 int n_blocks) {
    for (int b = 0; b < n_blocks; b += 2) {
        int next = b + 1 < n_blocks ? b + 1 : b;
        Q4sPairActivations *pair = &out[b / 2];
        q4s_halves_avx512(pair->halves, x->values + b * Q_BLOCK, x->values + next * Q_BLOCK);
        pair->scales = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(x->scales[b])),
                                                           _mm256_castps_pd(_mm256_set1_ps(x->scales[next])), 1));
    }
}

// Blocks b (low 256 bits) and next (high) of a tile against their
// activations: each row's two terms, w_scale * x_scale * int32.
TARGET_AVX512_VNNI static inline __m512 q4s_tile_block_pair_terms_avx512(const uint8_t *codes, const uint16_t *scales,
                                                                          int group_shift, const Q4sPairActivations *pair,
                                                                          int b, int next) {
    Q4sTilePairBlockAvx512 w;
    for (int line = 0; line < 3; line++) prefetch_ahead(codes + (size_t)b * 3 * 32 + 64 * line);
    unpack_q4s_tile_pair_block_avx512(&w, codes + (size_t)b * 3 * 32, codes + (size_t)next * 3 * 32);
    __m512 w_scale = two_scale_rows_avx512(scales + (size_t)(b >> group_shift) * Q4_TILE_ROWS,
                                           scales + (size_t)(next >> group_shift) * Q4_TILE_ROWS);
    return _mm512_mul_ps(_mm512_mul_ps(w_scale, pair->scales), _mm512_cvtepi32_ps(dot_q4s_tile_pair_block_avx512(&w, pair->halves)));
}

// Decoding, one tile, so that the weights are one stream (as AVX2 reads
// them): a register holds its blocks b (low 256 bits) and b+1 (high), and
// acc[k] the partials 2k (low) and 2k+1 (high), so each half's term goes to
// its own block's partial and reduce8's tree ends with the halves. Eight
// blocks a step, k a constant, so that acc[k] stays a register; past the
// last block a half is computed (on the last block) and not added.
TARGET_AVX512_VNNI static __m256 q4s_tile_decode_avx512(const uint8_t *codes, const uint16_t *scales, int n_blocks,
                                                        int group_shift, const Q4sPairActivations *pairs) {
    __m512 acc[4];
    for (int k = 0; k < 4; k++) acc[k] = _mm512_setzero_ps();
    for (int b = 0; b < n_blocks; b += 8)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            int low = b + 2 * k < n_blocks ? b + 2 * k : n_blocks - 1, high = low + 1 < n_blocks ? low + 1 : low;
            __mmask16 added = (__mmask16)((b + 2 * k < n_blocks ? 0x00FF : 0) | (b + 2 * k + 1 < n_blocks ? 0xFF00 : 0));
            __m512 terms = q4s_tile_block_pair_terms_avx512(codes, scales, group_shift, &pairs[low / 2], low, high);
            acc[k] = _mm512_mask_add_ps(acc[k], added, acc[k], terms);
        }
    __m512 sums = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
    return _mm256_add_ps(_mm512_castps512_ps256(sums), high_half_avx512(sums));
}

// One token, tile after tile. pairs is a variable-length array: a pair of
// blocks takes 192 bytes, so the widest input of a 70B (28672) takes 86 KB of
// the thread's stack.
TARGET_AVX512_VNNI static void q4s_decode_avx512(float *out, const Tensor *w, int row_begin, int row_end,
                                                 const QuantizedActivations *x) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    size_t tile_bytes = (size_t)n_blocks * 3 * 32, tile_scales = (size_t)n_groups * Q4_TILE_ROWS;
    int group_shift = __builtin_ctz((unsigned)(w->group_size / Q_BLOCK));   // groups of 1, 2, 4 or 8 blocks
    Q4sPairActivations pairs[(n_blocks + 1) / 2];
    q4s_pair_activations_avx512(pairs, x, n_blocks);
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        __m256 rows = q4s_tile_decode_avx512(w->codes + tile * tile_bytes, w->scales + tile * tile_scales, n_blocks, group_shift, pairs);
        store_tile_rows_avx2(out + row, rows, n_rows);
    }
}

// The prompt: each block unpacked once, the tokens' eight partials waiting in acc.
TARGET_AVX512_VNNI static void q4s_tile_pair_prefill_avx512(float *out, int out_stride, int n_rows, const uint8_t *codes0,
                                                    const uint8_t *codes1, const uint16_t *scales0, const uint16_t *scales1,
                                                    int n_blocks, int blocks_per_group, const QuantizedActivations *x,
                                                    int n_tokens) {
    int x_blocks = x->stride / Q_BLOCK;
    __m512 acc[MAX_BATCH][8];
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < 8; i++) acc[t][i] = _mm512_setzero_ps();
    for (int b = 0; b < n_blocks; b++) {
        Q4sTilePairBlockAvx512 w;
        unpack_q4s_tile_pair_block_avx512(&w, codes0 + (size_t)b * 3 * 32, codes1 + (size_t)b * 3 * 32);
        __m512 w_scale = q4_tile_pair_scales_avx512(scales0, scales1, b, blocks_per_group);
        for (int t = 0; t < n_tokens; t++) {
            size_t at = (size_t)t * x_blocks + b;
            const int8_t *values = x->values + (size_t)t * x->stride + b * Q_BLOCK;
            __m512i halves[2];
            q4s_halves_avx512(halves, values, values);
            __m512i isum = dot_q4s_tile_pair_block_avx512(&w, halves);
            acc[t][b % 8] = add_term_avx512(acc[t][b % 8], w_scale, x->scales[at], isum);
        }
    }
    for (int t = 0; t < n_tokens; t++)
        store_tile_pair_rows_avx512(out + (size_t)t * out_stride, reduce8_lanes_avx512(acc[t]), n_rows);
}

TARGET_AVX512_VNNI static void matmul_q4s_avx512(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                                 const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int blocks_per_group = w->group_size / Q_BLOCK;
    size_t tile_bytes = (size_t)n_blocks * 3 * 32, tile_scales = (size_t)n_groups * Q4_TILE_ROWS;
    if (n_tokens == 1) {
        q4s_decode_avx512(out, w, row_begin, row_end, x);
        return;
    }
    for (int row = row_begin; row < row_end; row += 2 * Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < 2 * Q4_TILE_ROWS ? row_end - row : 2 * Q4_TILE_ROWS;
        const uint8_t *codes = w->codes + tile * tile_bytes;
        const uint16_t *scales = w->scales + tile * tile_scales;
        int next = n_rows > Q4_TILE_ROWS ? 1 : 0;   // an odd last tile pairs with itself
        q4s_tile_pair_prefill_avx512(out + row, out_stride, n_rows, codes, codes + next * tile_bytes, scales,
                                     scales + next * tile_scales, n_blocks, blocks_per_group, x, n_tokens);
    }
}

// ---- avx512-vnni for Q8, Q3 and Q2: one row against up to four tokens,
// eight blocks a step as four registers of two blocks (block 2k in the low
// 256 bits of codes[k], block 2k+1 in the high ones).
typedef void (*Unpack8Avx512)(const uint8_t *blocks, __m512i codes[4]);

TARGET_AVX512_VNNI static inline void unpack_8_q8_avx512(const uint8_t *blocks, __m512i codes[4]) {
    for (int k = 0; k < 4; k++)
        codes[k] = _mm512_xor_si512(_mm512_loadu_si512(blocks + 64 * k), _mm512_set1_epi8((char)0x80));
}

// Two blocks' 2-bit planes (8 bytes each) -> their 64 codes: each plane in
// four 64-bit lanes, lane k shifted right by 2k, masked (unpack_2bit_avx2 twice).
TARGET_AVX512_VNNI static inline __m512i unpack_2bit_pair_avx512(int64_t plane0, int64_t plane1) {
    __m512i planes = _mm512_inserti64x4(_mm512_set1_epi64(plane0), _mm256_set1_epi64x(plane1), 1);
    return _mm512_and_si512(_mm512_srlv_epi64(planes, _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6)), _mm512_set1_epi8(3));
}

TARGET_AVX512_VNNI static inline void unpack_8_q2_avx512(const uint8_t *blocks, __m512i codes[4]) {
    for (int k = 0; k < 4; k++) {
        int64_t planes[2];
        memcpy(planes, blocks + 16 * k, sizeof planes);
        codes[k] = unpack_2bit_pair_avx512(planes[0], planes[1]);
    }
}

// Q3's 1-bit plane (bytes 8-11) read as a 32-bit word has weight j's high bit
// in bit j: two blocks' words are a 64-bit byte mask selecting where 4 goes.
TARGET_AVX512_VNNI static inline void unpack_8_q3_avx512(const uint8_t *blocks, __m512i codes[4]) {
    for (int k = 0; k < 4; k++) {
        const uint8_t *block0 = blocks + 24 * k, *block1 = block0 + 12;
        int64_t plane0, plane1;
        uint32_t high0, high1;
        memcpy(&plane0, block0, 8); memcpy(&high0, block0 + 8, 4);
        memcpy(&plane1, block1, 8); memcpy(&high1, block1 + 8, 4);
        __m512i high = _mm512_maskz_mov_epi8((__mmask64)high0 | (__mmask64)high1 << 32, _mm512_set1_epi8(4));
        codes[k] = _mm512_or_si512(unpack_2bit_pair_avx512(plane0, plane1), high);
    }
}

// Eight blocks' exact sums (codes . x), in block order. The 128-bit lanes of
// codes[k]'s sums are block 2k's lanes 0-3 and 4-7, then block 2k+1's: two
// lane shuffles and an add leave four blocks' four partial sums a register
// (block j in 128-bit lane j), pairs of 64-bit unpacks and a 32-bit swap fold
// those, and a permute gathers the eight sums.
TARGET_AVX512_VNNI static inline __m256i dot_8_blocks_avx512(const __m512i codes[4], const int8_t *x) {
    __m512i d[4];
    for (int k = 0; k < 4; k++)
        d[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[k], _mm512_loadu_si512(x + 2 * k * Q_BLOCK));
    __m512i blocks0123 = _mm512_add_epi32(_mm512_shuffle_i64x2(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                          _mm512_shuffle_i64x2(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
    __m512i blocks4567 = _mm512_add_epi32(_mm512_shuffle_i64x2(d[2], d[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                          _mm512_shuffle_i64x2(d[2], d[3], _MM_SHUFFLE(3, 1, 3, 1)));
    // 128-bit lane j: [a0+a2, a1+a3, b0+b2, b1+b3] for a = block j, b = block j+4
    __m512i halves = _mm512_add_epi32(_mm512_unpacklo_epi64(blocks0123, blocks4567), _mm512_unpackhi_epi64(blocks0123, blocks4567));
    __m512i sums = _mm512_add_epi32(halves, _mm512_shuffle_epi32(halves, _MM_PERM_CDAB));   // lane j: [a, a, b, b]
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0), sums));
}

// A weight type as the avx512-vnni row loop sees it.
typedef struct {
    Unpack8Avx512 unpack_8;
    BlockDotFn dot_1;        // the reference's exact block dot, for the tail
    int block_bytes;
    int lo;                  // level = code + lo
} Avx512Blocks;

TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void row_tile_avx512(
        Avx512Blocks type, float *out, int out_stride, const uint8_t *codes, const uint16_t *scales,
        int blocks_per_group, int n_blocks, const QuantizedActivations *x, int token, const int TILE) {
    int x_blocks = x->stride / Q_BLOCK;
    __m256 acc[4];
    for (int t = 0; t < TILE; t++) acc[t] = _mm256_setzero_ps();
    int b = 0;
    for (; b + 8 <= n_blocks; b += 8) {
        __m512i c[4];
        type.unpack_8(codes + b * type.block_bytes, c);
        __m256 w_scales = group_scales_avx2(scales, b, blocks_per_group);
        for (int t = 0; t < TILE; t++) {
            size_t tok = (size_t)(token + t);
            __m256i x_sums = _mm256_loadu_si256((const __m256i *)(x->sums + tok * x_blocks + b));
            __m256i isum = _mm256_add_epi32(dot_8_blocks_avx512(c, x->values + tok * x->stride + b * Q_BLOCK),
                                            _mm256_mullo_epi32(x_sums, _mm256_set1_epi32(type.lo)));
            __m256 scale = _mm256_mul_ps(w_scales, _mm256_loadu_ps(x->scales + tok * x_blocks + b));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum)));
        }
    }
    for (int t = 0; t < TILE; t++) {
        size_t tok = (size_t)(token + t);
        out[(size_t)t * out_stride] = finish_row_avx2(acc[t], type.dot_1, type.block_bytes, codes, scales, blocks_per_group,
                                                      b, n_blocks, x->values + tok * x->stride, x->scales + tok * x_blocks);
    }
}

TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void matmul_avx512_with(
        Avx512Blocks type, float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
        const QuantizedActivations *x, int n_tokens) {
#define ROW_TILE(o, codes, scales, t, TILE) \
    row_tile_avx512(type, o, out_stride, codes, scales, blocks_per_group, n_blocks, x, t, TILE)
    FOR_EACH_ROW_TILE(w, type.block_bytes, row_begin, row_end, n_tokens, out, out_stride, ROW_TILE);
#undef ROW_TILE
}

#define AVX512_KERNEL(type, BLOCK_BYTES, LO) \
    TARGET_AVX512_VNNI static void matmul_##type##_avx512(float *out, int out_stride, const Tensor *w, int row_begin, \
                                                          int row_end, const QuantizedActivations *x, int n_tokens) { \
        Avx512Blocks blocks = { unpack_8_##type##_avx512, block_dot_##type##_ref, BLOCK_BYTES, LO }; \
        matmul_avx512_with(blocks, out, out_stride, w, row_begin, row_end, x, n_tokens); \
    }
AVX512_KERNEL(q8, 32, -128)
AVX512_KERNEL(q3, 12, quant_layouts[TYPE_Q3].lo)
AVX512_KERNEL(q2, 8, quant_layouts[TYPE_Q2].lo)
#undef AVX512_KERNEL

// ---- avx512-vnni beyond the matrix products.

// quantize_q8's full block as two registers of 16: the same max (a NaN never
// wins: maxps returns its second operand, the running max, when either is
// NaN), the same product by the inverse scale and rounding as the AVX2 twin;
// vpmovdb narrows the int32s (all within -127..127) in order.
TARGET_AVX512_VNNI static void quantize_full_block_q8_avx512(const float *x, int8_t *values, float *scale_out, int32_t *sum_out) {
    __m512 v[2] = { _mm512_loadu_ps(x), _mm512_loadu_ps(x + 16) };
    __m512 amax16 = _mm512_max_ps(_mm512_abs_ps(v[1]), _mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_setzero_ps()));
    float amax = _mm512_reduce_max_ps(amax16);
    float scale = amax / 127.0f;
    float inverse = scale > 0 ? 1.0f / scale : 0.0f;
    *scale_out = scale;
    __m512i q[2];
    for (int i = 0; i < 2; i++) {
        __m512 scaled = _mm512_mul_ps(v[i], _mm512_set1_ps(inverse));
        __m512 size = _mm512_abs_ps(scaled);
        __mmask16 in_range = _mm512_cmp_ps_mask(size, _mm512_set1_ps(127.5f), _CMP_LE_OQ);   // false for NaN: 0
        __m512i magnitude = _mm512_cvttps_epi32(_mm512_add_ps(_mm512_maskz_mov_ps(in_range, size), _mm512_set1_ps(0.5f)));
        __mmask16 negative = _mm512_mask_cmp_ps_mask(in_range, scaled, _mm512_setzero_ps(), _CMP_LT_OQ);
        q[i] = _mm512_mask_sub_epi32(magnitude, negative, _mm512_setzero_si512(), magnitude);
        _mm_storeu_si128((__m128i *)(values + 16 * i), _mm512_cvtepi32_epi8(q[i]));
    }
    *sum_out = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
}

TARGET_AVX512_VNNI static void quantize_q8_avx512(QuantizedActivations *out, const float *x, int x_stride, int n, int n_padded,
                                                  int n_tokens) {
    quantize_q8_with(quantize_full_block_q8_avx512, out, x, x_stride, n, n_padded, n_tokens);
}

// fp32 -> fp16 sixteen at a time (the same instruction as F16C's, wider);
// sixteen floats holding a NaN, and the last n % 16, as the AVX2 twin does them.
TARGET_AVX512_VNNI static void to_f16_avx512(uint16_t *out, const float *x, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) { to_f16_ref(out + i, x + i, 16); continue; }
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    to_f16_avx2(out + i, x + i, n - i);
}

// Attention's scores two positions at a time: position p in the low 256 bits,
// p+1 in the high ones, each half exactly the AVX2 twin's eight partials.

TARGET_AVX512_VNNI static inline __m512 q_both_halves_avx512(const float *q) {
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(q))));
}

// One head's scores, two positions a register (the positions the blocks below leave).
TARGET_AVX512_VNNI static void scores_f16_head_avx512(float *scores, const float *q, const uint16_t *keys, size_t stride,
                                                      int n_positions, int n) {
    int p = 0;
    for (; p + 2 <= n_positions; p += 2) {
        const uint16_t *k0 = keys + (size_t)p * stride, *k1 = k0 + stride;
        __m512 acc = _mm512_setzero_ps();
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(k0 + i))),
                                                   _mm_loadu_si128((const __m128i *)(k1 + i)), 1);
            acc = _mm512_add_ps(acc, _mm512_mul_ps(q_both_halves_avx512(q + i), _mm512_cvtph_ps(both)));
        }
        if (i == n) {
            scores[p] = reduce8_avx2(_mm512_castps512_ps256(acc));
            scores[p + 1] = reduce8_avx2(high_half_avx512(acc));
            continue;
        }
        float partial[2][8];
        _mm512_storeu_ps(partial[0], acc);
        for (int j = i; j < n; j++) {
            partial[0][j % 8] += q[j] * _cvtsh_ss(k0[j]);
            partial[1][j % 8] += q[j] * _cvtsh_ss(k1[j]);
        }
        scores[p] = reduce8(partial[0]);
        scores[p + 1] = reduce8(partial[1]);
    }
    if (p < n_positions) scores_f16_head_avx2(scores + p, q, keys + (size_t)p * stride, stride, 1, n);
}

// Sixteen positions' partials, two positions a register (acc[m]: positions 2m
// and 2m+1) -> their sixteen scores in position order, reduce8's tree across
// the registers as reduce8_eight_avx2 does it.
TARGET_AVX512_VNNI static inline __m512 reduce8_sixteen_avx512(const __m512 acc[8]) {
    __m512 halves[4];   // halves[j], 128-bit lane l: position 4j + l's four sums (p_j + p_j+4)
    for (int j = 0; j < 4; j++)
        halves[j] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * j], acc[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(acc[2 * j], acc[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 pairs[2];    // pairs[j], lane l: positions 8j + l and 8j + 4 + l, two sums each
    for (int j = 0; j < 2; j++)
        pairs[j] = _mm512_add_ps(_mm512_shuffle_ps(halves[2 * j], halves[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(halves[2 * j], halves[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(3, 1, 3, 1)));
    __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);   // element 4l + e is position l + 4e
    return _mm512_permutexvar_ps(order, sums);
}

// A tile of 2 * PAIRS positions' scores for up to HEADS heads (heads of them
// real; PAIRS * HEADS a multiple of 8): each step converts the keys' eight
// elements into PAIRS registers (two positions each) and feeds them to every
// head's accumulators, so a key is converted once for all the heads (the
// conversion, not the multiplies, bounds this kernel) and nothing else goes
// through memory but q, whose steps wait in both halves of a register in
// q_both (head h's step s at h * steps + s). reduce8_sixteen_avx512 then
// takes eight accumulators at a time (acc[h][m]: positions 2m and 2m+1 of
// head h), which leaves 8 / PAIRS heads' 2 * PAIRS scores each in order.
TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void scores_tile_avx512(
        float *scores, size_t scores_stride, const __m512 *q_both, int heads, const uint16_t *keys, size_t stride,
        int steps, const int PAIRS, const int HEADS) {
    __m512 acc[8][8];
    for (int h = 0; h < HEADS; h++)
        for (int m = 0; m < PAIRS; m++) acc[h][m] = _mm512_setzero_ps();
    for (int step = 0; step < steps; step++) {
        __m512 key[8];
        for (int m = 0; m < PAIRS; m++) {
            const uint16_t *k0 = keys + (size_t)(2 * m) * stride + 8 * step, *k1 = k0 + stride;
            key[m] = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)k0)),
                                                             _mm_loadu_si128((const __m128i *)k1), 1));
        }
        for (int h = 0; h < HEADS; h++) {   // a head past the real ones adds zeros (its q_both are zero), unstored
            __m512 q_step = q_both[h * steps + step];
            __asm__("" : "+v"(q_step));   // one load for all the keys (gcc would fold it into each multiply)
            for (int m = 0; m < PAIRS; m++) acc[h][m] = _mm512_add_ps(acc[h][m], _mm512_mul_ps(q_step, key[m]));
        }
    }
    const int HEADS_PER_SUM = 8 / PAIRS;
    for (int g = 0; g < HEADS; g += HEADS_PER_SUM) {
        __m512 eight[8], sums;
        for (int a = 0; a < 8; a++) eight[a] = acc[g + a / PAIRS][a % PAIRS];
        sums = reduce8_sixteen_avx512(eight);
        float *row = scores + g * scores_stride;
        if (PAIRS == 8) {
            if (g < heads) _mm512_storeu_ps(row, sums);
        } else if (PAIRS == 4) {
            if (g < heads) _mm256_storeu_ps(row, _mm512_castps512_ps256(sums));
            if (g + 1 < heads) _mm256_storeu_ps(row + scores_stride, high_half_avx512(sums));
        } else {
            if (g < heads) _mm_storeu_ps(row, _mm512_extractf32x4_ps(sums, 0));
            if (g + 1 < heads) _mm_storeu_ps(row + scores_stride, _mm512_extractf32x4_ps(sums, 1));
            if (g + 2 < heads) _mm_storeu_ps(row + 2 * scores_stride, _mm512_extractf32x4_ps(sums, 2));
            if (g + 3 < heads) _mm_storeu_ps(row + 3 * scores_stride, _mm512_extractf32x4_ps(sums, 3));
        }
    }
}

// A head dim of at most MAX_Q_STEPS steps of eight (256) fits q_both.
#define MAX_Q_STEPS 32

// Heads up to eight at a time, in the tile that wastes least: 4 positions by
// 8 or 4 heads, 8 by 2, 16 by 1 (a model without grouped KV heads).
TARGET_AVX512_VNNI static void scores_f16_avx512(float *scores, size_t scores_stride, const float *q, int n_heads,
                                                 const uint16_t *keys, size_t stride, int n_positions, int n) {
    int steps = n / 8;
    for (int h = 0; h < n_heads; h += 8) {
        int heads = n_heads - h < 8 ? n_heads - h : 8, positions = heads > 2 ? 4 : heads == 2 ? 8 : 16, p = 0;
        if (n % 8 == 0 && steps <= MAX_Q_STEPS) {
            __m512 q_both[8 * MAX_Q_STEPS];
            for (int j = 0; j < 8; j++)
                for (int step = 0; step < steps; step++)
                    q_both[j * steps + step] = j < heads ? q_both_halves_avx512(q + (size_t)(h + j) * n + 8 * step) : _mm512_setzero_ps();
            for (; p + positions <= n_positions; p += positions) {
                float *out = scores + h * scores_stride + p;
                const uint16_t *k = keys + (size_t)p * stride;
                if (heads > 4) scores_tile_avx512(out, scores_stride, q_both, heads, k, stride, steps, 2, 8);
                else if (heads > 2) scores_tile_avx512(out, scores_stride, q_both, heads, k, stride, steps, 2, 4);
                else if (heads == 2) scores_tile_avx512(out, scores_stride, q_both, heads, k, stride, steps, 4, 2);
                else scores_tile_avx512(out, scores_stride, q_both, heads, k, stride, steps, 8, 1);
            }
        }
        for (int j = h; j < h + heads; j++)   // the positions left (or a head the tiles do not take)
            scores_f16_head_avx512(scores + j * scores_stride + p, q + (size_t)j * n, keys + (size_t)p * stride, stride,
                                   n_positions - p, n);
    }
}

// The same over int8 rows, each row's dot then times its scale.
TARGET_AVX512_VNNI static void scores_q8_avx512(float *scores, const float *q, const int8_t *keys, const float *scales,
                                                size_t stride, size_t scale_stride, int n_positions, int n) {
    int p = 0;
    for (; p + 2 <= n_positions; p += 2) {
        const int8_t *k0 = keys + (size_t)p * stride, *k1 = k0 + stride;
        __m512 acc = _mm512_setzero_ps();
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            __m128i both = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(k0 + i)), _mm_loadl_epi64((const __m128i *)(k1 + i)));
            acc = _mm512_add_ps(acc, _mm512_mul_ps(q_both_halves_avx512(q + i), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(both))));
        }
        float partial[2][8];
        _mm512_storeu_ps(partial[0], acc);
        for (int j = i; j < n; j++) {
            partial[0][j % 8] += q[j] * (float)k0[j];
            partial[1][j % 8] += q[j] * (float)k1[j];
        }
        scores[p] = reduce8(partial[0]) * scales[(size_t)p * scale_stride];
        scores[p + 1] = reduce8(partial[1]) * scales[(size_t)(p + 1) * scale_stride];
    }
    if (p < n_positions)
        scores_q8_avx2(scores + p, q, keys + (size_t)p * stride, scales + (size_t)p * scale_stride, stride, scale_stride, 1, n);
}

// Attention's weighted sums: up to 64 outputs in four registers (the last
// one's lanes masked to what is left: a head of 48 in one pass over the
// positions) across all positions; every lane adds its output's terms in
// position order, as the reference.
TARGET_AVX512_VNNI static inline __mmask16 first_lanes(int count) {
    return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1);
}

// One pass over fp16 rows for HEADS heads: outputs [0, width) of each head's
// out (n apart), REGS = ceil(width / 16) registers a head; each value row's
// registers converted once for all the heads.
TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void mix_f16_pass_avx512(
        float *out, const float *weights, size_t weights_stride, const uint16_t *values, size_t stride, int n_positions,
        int n, int width, const int REGS, const int HEADS) {
    __m512 acc[4][4];
    __mmask16 lanes[4];
    for (int r = 0; r < REGS; r++) {
        lanes[r] = first_lanes(width - 16 * r);
        for (int h = 0; h < HEADS; h++) acc[h][r] = _mm512_setzero_ps();
    }
    for (int p = 0; p < n_positions; p++) {
        const uint16_t *v = values + (size_t)p * stride;
        __m512 value[4];
        for (int r = 0; r < REGS; r++) value[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes[r], v + 16 * r));
        for (int h = 0; h < HEADS; h++) {
            __m512 weight = _mm512_set1_ps(weights[h * weights_stride + p]);
            for (int r = 0; r < REGS; r++) acc[h][r] = _mm512_add_ps(acc[h][r], _mm512_mul_ps(weight, value[r]));
        }
    }
    for (int h = 0; h < HEADS; h++)
        for (int r = 0; r < REGS; r++) _mm512_mask_storeu_ps(out + (size_t)h * n + 16 * r, lanes[r], acc[h][r]);
}

TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void mix_f16_heads_avx512(
        float *out, const float *weights, size_t weights_stride, const uint16_t *values, size_t stride, int n_positions,
        int n, const int HEADS) {
    for (int i = 0; i < n; i += 64) {
        int width = n - i < 64 ? n - i : 64;
        switch ((width + 15) / 16) {
        case 1: mix_f16_pass_avx512(out + i, weights, weights_stride, values + i, stride, n_positions, n, width, 1, HEADS); break;
        case 2: mix_f16_pass_avx512(out + i, weights, weights_stride, values + i, stride, n_positions, n, width, 2, HEADS); break;
        case 3: mix_f16_pass_avx512(out + i, weights, weights_stride, values + i, stride, n_positions, n, width, 3, HEADS); break;
        default: mix_f16_pass_avx512(out + i, weights, weights_stride, values + i, stride, n_positions, n, width, 4, HEADS);
        }
    }
}

// Heads four at a time (sixteen registers of sums), then two, then one.
TARGET_AVX512_VNNI static void mix_f16_avx512(float *out, const float *weights, size_t weights_stride, int n_heads,
                                              const uint16_t *values, size_t stride, int n_positions, int n) {
    int h = 0;
    for (; h + 4 <= n_heads; h += 4)
        mix_f16_heads_avx512(out + (size_t)h * n, weights + h * weights_stride, weights_stride, values, stride, n_positions, n, 4);
    if (h + 2 <= n_heads) {
        mix_f16_heads_avx512(out + (size_t)h * n, weights + h * weights_stride, weights_stride, values, stride, n_positions, n, 2);
        h += 2;
    }
    if (h < n_heads)
        mix_f16_heads_avx512(out + (size_t)h * n, weights + h * weights_stride, weights_stride, values, stride, n_positions, n, 1);
}

// The same over int8 rows, one head: value row p is values + p * stride, times scales[p * scale_stride].
TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void mix_q8_pass_avx512(
        float *out, const float *weights, const int8_t *values, const float *scales, size_t stride, size_t scale_stride,
        int n_positions, int width, const int REGS) {
    __m512 acc[4];
    __mmask16 lanes[4];
    for (int r = 0; r < REGS; r++) {
        acc[r] = _mm512_setzero_ps();
        lanes[r] = first_lanes(width - 16 * r);
    }
    for (int p = 0; p < n_positions; p++) {
        __m512 weight = _mm512_set1_ps(weights[p] * scales[(size_t)p * scale_stride]);
        const int8_t *v = values + (size_t)p * stride;
        for (int r = 0; r < REGS; r++)
            acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(weight, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                                    _mm_maskz_loadu_epi8(lanes[r], v + 16 * r)))));
    }
    for (int r = 0; r < REGS; r++) _mm512_mask_storeu_ps(out + 16 * r, lanes[r], acc[r]);
}

TARGET_AVX512_VNNI static void mix_q8_avx512(float *out, const float *weights, const int8_t *values, const float *scales,
                                             size_t stride, size_t scale_stride, int n_positions, int n) {
    for (int i = 0; i < n; i += 64) {
        int width = n - i < 64 ? n - i : 64;
        switch ((width + 15) / 16) {
        case 1: mix_q8_pass_avx512(out + i, weights, values + i, scales, stride, scale_stride, n_positions, width, 1); break;
        case 2: mix_q8_pass_avx512(out + i, weights, values + i, scales, stride, scale_stride, n_positions, width, 2); break;
        case 3: mix_q8_pass_avx512(out + i, weights, values + i, scales, stride, scale_stride, n_positions, width, 3); break;
        default: mix_q8_pass_avx512(out + i, weights, values + i, scales, stride, scale_stride, n_positions, width, 4);
        }
    }
}

// exp_canonical on sixteen lanes, the same operations in the same order.
TARGET_AVX512_VNNI static inline __m512 exp_canonical_avx512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(EXP_LOWEST), x);
    __m512 rounder = _mm512_set1_ps(EXP_ROUNDER);
    __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), rounder), rounder);
    __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(EXP_LN2_HIGH))),
                             _mm512_mul_ps(n, _mm512_set1_ps(EXP_LN2_LOW)));
    __m512 poly = _mm512_set1_ps(exp_polynomial[0]);
    for (int i = 1; i < 6; i++) poly = _mm512_add_ps(_mm512_mul_ps(poly, r), _mm512_set1_ps(exp_polynomial[i]));
    __m512 e_r = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(poly, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
    __m512i two_to_n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(e_r, _mm512_castsi512_ps(two_to_n));
}

// x /= divisor, sixteen at a time (times 1 / divisor when that is exact), and
// the largest x.
TARGET_AVX512_VNNI static float divide_max_avx512(float *x, int n, float divisor) {
    float max = x[0] / divisor;
    __m512 max16 = _mm512_set1_ps(max), by = _mm512_set1_ps(divisor), inverse = _mm512_set1_ps(1.0f / divisor);
    int exact_inverse = is_power_of_two(divisor), i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i), scaled = exact_inverse ? _mm512_mul_ps(v, inverse) : _mm512_div_ps(v, by);
        _mm512_storeu_ps(x + i, scaled);
        max16 = _mm512_max_ps(scaled, max16);
    }
    float lanes[16];
    _mm512_storeu_ps(lanes, max16);
    for (int l = 0; l < 16; l++) if (lanes[l] > max) max = lanes[l];
    for (; i < n; i++) {
        x[i] /= divisor;
        if (x[i] > max) max = x[i];
    }
    return max;
}

TARGET_AVX512_VNNI static void divide_avx512(float *x, int n, float divisor) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_div_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(divisor)));
    for (; i < n; i++) x[i] /= divisor;
}

// Sixteen at a time; their sum enters the eight partials as two halves, in
// index order, as the reference adds them.
TARGET_AVX512_VNNI static void softmax_avx512(float *x, int n, float divisor) {
    float max = divide_max_avx512(x, n, divisor);
    __m256 sum8 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 64 <= n; i += 64) {   // four exponentials side by side: each is a long chain of dependent steps
        __m512 e[4];
        for (int j = 0; j < 4; j++) e[j] = exp_canonical_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16 * j), _mm512_set1_ps(max)));
        for (int j = 0; j < 4; j++) {
            _mm512_storeu_ps(x + i + 16 * j, e[j]);
            sum8 = _mm256_add_ps(_mm256_add_ps(sum8, _mm512_castps512_ps256(e[j])), high_half_avx512(e[j]));
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp_canonical_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(max)));
        _mm512_storeu_ps(x + i, e);
        sum8 = _mm256_add_ps(_mm256_add_ps(sum8, _mm512_castps512_ps256(e)), high_half_avx512(e));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_canonical_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(max)));
        _mm256_storeu_ps(x + i, e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    float partial[8];
    _mm256_storeu_ps(partial, sum8);
    for (; i < n; i++) {
        x[i] = exp_canonical(x[i] - max);
        partial[i % 8] += x[i];
    }
    divide_avx512(x, n, reduce8(partial));
}

// ---- avx512-vnni's table lookup: the AVX2 kernel's steps on a whole 64-row
// tile per register (its four 128-bit lanes: rows 0-15, 16-31, 32-47,
// 48-63), each group's tables broadcast to the four lanes as they load. The
// unpacked int16 sums hold slots 0-31 (unpacklo) and 32-63 (unpackhi) in
// slot order, so sixteen of them widen to int32 against sixteen scales
// loaded as they lie.
TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void lut_block_avx512(const int PLANES, const uint8_t *codes,
                                                                                     const uint8_t *tables, __m512i sums[2]) {
    __m512i nibble = _mm512_set1_epi8(0x0F);
    __m512i acc[3][2];
    for (int k = 0; k < PLANES; k++) acc[k][0] = acc[k][1] = _mm512_setzero_si512();
    for (int p = 0; p < 4; p++) {
        const uint8_t *group = tables + (size_t)2 * p * LUT_GROUP_BYTES;
        __m512i low0 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)group));
        __m512i high0 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(group + 16)));
        __m512i low1 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(group + LUT_GROUP_BYTES)));
        __m512i high1 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(group + LUT_GROUP_BYTES + 16)));
        for (int k = 0; k < PLANES; k++) {
            __m512i patterns = _mm512_loadu_si512(codes + (k * 4 + p) * LUT_TILE_ROWS);
            __m512i first = _mm512_and_si512(patterns, nibble);
            __m512i second = _mm512_and_si512(_mm512_srli_epi16(patterns, 4), nibble);
            __m512i l0 = _mm512_shuffle_epi8(low0, first), h0 = _mm512_shuffle_epi8(high0, first);
            __m512i l1 = _mm512_shuffle_epi8(low1, second), h1 = _mm512_shuffle_epi8(high1, second);
            acc[k][0] = _mm512_add_epi16(acc[k][0], _mm512_add_epi16(_mm512_unpacklo_epi8(l0, h0), _mm512_unpacklo_epi8(l1, h1)));
            acc[k][1] = _mm512_add_epi16(acc[k][1], _mm512_add_epi16(_mm512_unpackhi_epi8(l0, h0), _mm512_unpackhi_epi8(l1, h1)));
        }
    }
    for (int i = 0; i < 2; i++) {
        sums[i] = acc[0][i];
        for (int k = 1; k < PLANES; k++) sums[i] = _mm512_add_epi16(sums[i], _mm512_slli_epi16(acc[k][i], k));
    }
}

// unpacklo leaves rows 0-7 | 16-23 | 32-39 | 48-55 in its four lanes, the
// slots 0-31; so its low 256 bits are slots 0-15.
TARGET_AVX512_VNNI static inline __m512 lut_add_term_avx512(__m512 partial, __m256i sums16, __m512i offset,
                                                            const uint16_t *w_scales, __m512 x_scale) {
    __m512 scale = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w_scales)), x_scale);
    __m512i isum = _mm512_add_epi32(_mm512_cvtepi16_epi32(sums16), offset);
    return _mm512_add_ps(partial, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(isum)));
}

TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void matmul_lut_avx512_with(const int PLANES, int lo,
        float *out, int out_stride, const Tensor *w, int row_begin, int row_end, const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, blocks_per_group = w->group_size / Q_BLOCK;
    int n_groups = w->cols_padded / w->group_size, x_blocks = x->stride / Q_BLOCK;
    size_t block_bytes = (size_t)PLANES * 4 * LUT_TILE_ROWS;
    for (int tile = row_begin / LUT_TILE_ROWS; tile * LUT_TILE_ROWS < row_end; tile++) {
        const uint8_t *codes = w->lut_codes + tile * n_blocks * block_bytes;
        const uint16_t *scales = w->lut_scales + (size_t)tile * n_groups * LUT_TILE_ROWS;
        for (int t = 0; t < n_tokens; t++) {
            const uint8_t *tables = x->tables + (size_t)t * lut_table_bytes(x->stride);
            const float *x_scales = x->scales + (size_t)t * x_blocks;
            const int32_t *x_sums = x->sums + (size_t)t * x_blocks;
            __m512 partial[8][4];   // [b % 8][slots 16j..16j+15]
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 4; j++) partial[i][j] = _mm512_setzero_ps();
            for (int b = 0; b < n_blocks; b++) {
                __m512i offset = _mm512_set1_epi32(lo * x_sums[b]), sums[2];
                __m512 x_scale = _mm512_set1_ps(x_scales[b]);
                const uint16_t *w_scales = scales + (size_t)(b / blocks_per_group) * LUT_TILE_ROWS;
                // a block's patterns are read in plane order within each pair, not front to back,
                // and its work is long: the block LUT_PREFETCH_BLOCKS ahead is asked for now
                // (without it the int3 kernel read memory at 2/3 of the row kernels' speed)
                for (size_t line = 0; line < block_bytes; line += 64)
                    _mm_prefetch((const char *)(codes + (b + LUT_PREFETCH_BLOCKS) * block_bytes + line), _MM_HINT_T0);
                lut_block_avx512(PLANES, codes + b * block_bytes, tables + (size_t)b * LUT_GROUPS_PER_BLOCK * LUT_GROUP_BYTES, sums);
                __m512 *acc = partial[b % 8];
                for (int i = 0; i < 2; i++) {
                    acc[2 * i] = lut_add_term_avx512(acc[2 * i], _mm512_castsi512_si256(sums[i]), offset, w_scales + 32 * i, x_scale);
                    acc[2 * i + 1] = lut_add_term_avx512(acc[2 * i + 1], _mm512_extracti64x4_epi64(sums[i], 1), offset,
                                                         w_scales + 32 * i + 16, x_scale);
                }
            }
            float reduced[LUT_TILE_ROWS];
            for (int j = 0; j < 4; j++) {
                __m512 (*p)[4] = partial;
                _mm512_storeu_ps(reduced + 16 * j,
                    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p[0][j], p[4][j]), _mm512_add_ps(p[2][j], p[6][j])),
                                  _mm512_add_ps(_mm512_add_ps(p[1][j], p[5][j]), _mm512_add_ps(p[3][j], p[7][j]))));
            }
            lut_store_tile(reduced, out + (size_t)t * out_stride, tile * LUT_TILE_ROWS, row_end);
        }
    }
}

TARGET_AVX512_VNNI static void matmul_lut_q2_avx512(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                                    const QuantizedActivations *x, int n_tokens) {
    matmul_lut_avx512_with(2, quant_layouts[TYPE_Q2].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}
TARGET_AVX512_VNNI static void matmul_lut_q3_avx512(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                                    const QuantizedActivations *x, int n_tokens) {
    matmul_lut_avx512_with(3, quant_layouts[TYPE_Q3].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}

static const Kernels kernels_avx512_vnni = {
    "avx512-vnni", quantize_q8_avx512, to_f16_avx512, { [TYPE_Q8] = matmul_q8_avx512, [TYPE_Q4] = matmul_q4_avx512, [TYPE_Q3] = matmul_q3_avx512, [TYPE_Q2] = matmul_q2_avx512,
                                 [TYPE_Q4S] = matmul_q4s_avx512 },
    scores_f16_avx512, mix_f16_avx512, scores_q8_avx512, mix_q8_avx512, softmax_avx512,
    build_tables_avx2, { [TYPE_Q3] = matmul_lut_q3_avx512, [TYPE_Q2] = matmul_lut_q2_avx512 } };
#endif

// ---- ARM (aarch64): NEON is part of the base architecture, so `neon` runs on
// every 64-bit ARM core (Raspberry Pi 4's Cortex-A72 included). `neon-dotprod`
// adds the dot-product extension (sdot: Cortex-A55/A76, RK3588, Raspberry Pi 5)
// and `neon-i8mm` the int8 matrix multiply (smmla: Armv8.6 cores such as
// Cortex-A510/A710, Neoverse N2), each in functions compiled for it alone and
// chosen at run time from the kernel's HWCAP bits, so one aarch64 binary runs
// on every kind of core. The Q4 kernels work on a tile's eight rows as two sets
// of four lanes, a row per lane, as the AVX2 kernels do (smmla: four pairs of
// rows by a pair of tokens), and compute the canonical arithmetic. Decoding
// (one token) streams each block through registers once; the prompt's tiles
// are unpacked once for all its tokens.
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#define HAVE_NEON_KERNELS 1
#if defined(__ARM_FEATURE_DOTPROD)   // the whole build targets a core with sdot
#define HAVE_NEON_DOTPROD_KERNELS 1
#define TARGET_DOTPROD
#elif !defined(__clang__)            // GCC: arm_neon.h declares vdotq_s32 for this target
#define HAVE_NEON_DOTPROD_KERNELS 1
#define TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif                               // (clang 14's arm_neon.h hides it without -march=...+dotprod)
#if defined(__ARM_FEATURE_MATMUL_INT8) && defined(__ARM_FEATURE_DOTPROD)   // likewise smmla (i8mm)
#define HAVE_NEON_I8MM_KERNELS 1
#define TARGET_I8MM
#elif defined(HAVE_NEON_DOTPROD_KERNELS) && !defined(__clang__)
#define HAVE_NEON_I8MM_KERNELS 1
#define TARGET_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#endif

// A tile's block (128 bytes: see the format) -> w[k][h], step k's codes
// (weights 4k..4k+3 of rows 4h..4h+3, four to a 32-bit lane) as q, 0..15:
// one AND (steps 0-3, the low nibbles) or one shift (steps 4-7, the high).
static inline void unpack_q4_tile_codes_neon(int8x16_t w[8][2], const uint8_t *block) {
    uint8x16_t low = vdupq_n_u8(0x0F);
    for (int d = 0; d < 4; d++)
        for (int h = 0; h < 2; h++) {
            uint8x16_t packed = vld1q_u8(block + 4 * Q4_TILE_ROWS * d + 16 * h);
            w[d][h] = vreinterpretq_s8_u8(vandq_u8(packed, low));
            w[d + 4][h] = vreinterpretq_s8_u8(vshrq_n_u8(packed, 4));
        }
}

// The same as levels, q - 8 (the prefill's tiles, unpacked once for every token).
static inline void unpack_q4_tile_block_neon(int8x16_t w[8][2], const uint8_t *block) {
    unpack_q4_tile_codes_neon(w, block);
    for (int k = 0; k < 8; k++)
        for (int h = 0; h < 2; h++) w[k][h] = vsubq_s8(w[k][h], vdupq_n_s8(8));
}

// Activations 4k..4k+3 in every 32-bit lane.
static inline int8x16_t broadcast_4_neon(const int8_t *x) {
    int32_t four;
    memcpy(&four, x, sizeof four);
    return vreinterpretq_s8_s32(vdupq_n_s32(four));
}

// w . x of one block for rows 0-3 (isum[0]) and 4-7 (isum[1]), exact, for
// levels (-8..7) or codes (0..15). Armv8.0 has no int8 dot: vmlal_s8 gathers
// each lane's products over the eight steps in int16 (|sum| <= 8 * 15 * 128,
// no overflow), two rows per register; pairwise adds then fold a row's four
// lanes into one.
static inline void dot_q4_tile_block_neon(int8x16_t w[8][2], const int8_t *x, int32x4_t isum[2]) {
    for (int h = 0; h < 2; h++) {
        int16x8_t rows_01 = vdupq_n_s16(0), rows_23 = vdupq_n_s16(0);
        for (int k = 0; k < 8; k++) {
            int8x16_t xk = broadcast_4_neon(x + 4 * k);
            rows_01 = vmlal_s8(rows_01, vget_low_s8(w[k][h]), vget_low_s8(xk));
            rows_23 = vmlal_high_s8(rows_23, w[k][h], xk);
        }
        isum[h] = vpaddq_s32(vpaddlq_s16(rows_01), vpaddlq_s16(rows_23));
    }
}

// Decoding streams a block through registers once, so it skips the 16
// subtractions: (q - 8) . x = q . x - 8 * sum(x), the block's activation sum
// kept by quantize_q8.
static inline void dot_q4_tile_codes_neon(const uint8_t *block, const int8_t *x, int32_t x_sum, int32x4_t isum[2]) {
    int8x16_t w[8][2];
    unpack_q4_tile_codes_neon(w, block);
    dot_q4_tile_block_neon(w, x, isum);
    for (int h = 0; h < 2; h++) isum[h] = vaddq_s32(isum[h], vdupq_n_s32(-8 * x_sum));
}

#ifdef HAVE_NEON_DOTPROD_KERNELS
// The same with sdot by element: each lane gains its row's four products per
// step, the step's four activations read from a lane of x (no broadcast).
#define SDOT_STEPS(sum, w, h, x_0_15, x_16_31) do { \
        sum = vdotq_laneq_s32(sum, w[0][h], x_0_15, 0); sum = vdotq_laneq_s32(sum, w[1][h], x_0_15, 1); \
        sum = vdotq_laneq_s32(sum, w[2][h], x_0_15, 2); sum = vdotq_laneq_s32(sum, w[3][h], x_0_15, 3); \
        sum = vdotq_laneq_s32(sum, w[4][h], x_16_31, 0); sum = vdotq_laneq_s32(sum, w[5][h], x_16_31, 1); \
        sum = vdotq_laneq_s32(sum, w[6][h], x_16_31, 2); sum = vdotq_laneq_s32(sum, w[7][h], x_16_31, 3); \
    } while (0)
TARGET_DOTPROD static inline void dot_q4_tile_block_sdot(int8x16_t w[8][2], const int8_t *x, int32x4_t isum[2]) {
    int8x16_t x_0_15 = vld1q_s8(x), x_16_31 = vld1q_s8(x + 16);
    for (int h = 0; h < 2; h++) {
        int32x4_t sum = vdupq_n_s32(0);
        SDOT_STEPS(sum, w, h, x_0_15, x_16_31);
        isum[h] = sum;
    }
}

// Decoding: codes, the sums starting from -8 * sum(x).
TARGET_DOTPROD static inline void dot_q4_tile_codes_sdot(const uint8_t *block, const int8_t *x, int32_t x_sum,
                                                         int32x4_t isum[2]) {
    int8x16_t w[8][2], x_0_15 = vld1q_s8(x), x_16_31 = vld1q_s8(x + 16);
    unpack_q4_tile_codes_neon(w, block);
    for (int h = 0; h < 2; h++) {
        int32x4_t sum = vdupq_n_s32(-8 * x_sum);
        SDOT_STEPS(sum, w, h, x_0_15, x_16_31);
        isum[h] = sum;
    }
}
#endif

typedef void (*DotTileBlockNeon)(int8x16_t w[8][2], const int8_t *x, int32x4_t isum[2]);
typedef void (*DotTileCodesNeon)(const uint8_t *block, const int8_t *x, int32_t x_sum, int32x4_t isum[2]);

// A tile's eight fp16 weight scales for one group, as floats (fcvtl: exact).
static inline void tile_scales_neon(float32x4_t s[2], const uint16_t *scales) {
    for (int h = 0; h < 2; h++) s[h] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(scales + 4 * h)));
}

// reduce8's tree, lane by lane, over p[i] (partial i of four lanes).
static inline float32x4_t reduce8_lanes_neon(const float32x4_t p[8]) {
    return vaddq_f32(vaddq_f32(vaddq_f32(p[0], p[4]), vaddq_f32(p[2], p[6])),
                     vaddq_f32(vaddq_f32(p[1], p[5]), vaddq_f32(p[3], p[7])));
}

// One token (decoding): rows [row_begin, row_end) (row_begin on a tile's
// first row), each block streamed through registers once: unpacked, dotted,
// scaled into acc[i][h] (partial i of rows 4h..4h+3), eight blocks unrolled
// so the partials stay in registers.
static inline __attribute__((always_inline)) void matvec_q4_block_neon(
        float32x4_t acc[2], const uint8_t *block, const uint16_t *w_scales, const int8_t *x, int32_t x_sum, float x_scale,
        DotTileCodesNeon dot_codes) {
    int32x4_t isum[2];
    float32x4_t s[2];
    dot_codes(block, x, x_sum, isum);
    tile_scales_neon(s, w_scales);
    for (int h = 0; h < 2; h++) acc[h] = vaddq_f32(acc[h], vmulq_f32(vmulq_f32(s[h], vdupq_n_f32(x_scale)), vcvtq_f32_s32(isum[h])));
}

// group_shift: log2 of the blocks per group (a constant 0, group 32, saves the shifts)
static inline __attribute__((always_inline)) void matvec_q4_neon_with(
        float *out, const Tensor *w, int row_begin, int row_end, const QuantizedActivations *x, const int group_shift,
        DotTileCodesNeon dot_codes) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        const uint8_t *block = w->nibbles + (size_t)tile * n_blocks * Q4_TILE_BLOCK_BYTES;
        const uint16_t *scales = w->scales + (size_t)tile * n_groups * Q4_TILE_ROWS;
        const int8_t *values = x->values;
        float32x4_t acc[8][2];
        for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
        for (int b = 0; b < n_blocks; b += 8, block += 8 * Q4_TILE_BLOCK_BYTES, values += 8 * Q_BLOCK)
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {   // a constant i keeps acc in registers
                if (b + i >= n_blocks) break;
                matvec_q4_block_neon(acc[i], block + i * Q4_TILE_BLOCK_BYTES, scales + (size_t)((b + i) >> group_shift) * Q4_TILE_ROWS,
                                     values + i * Q_BLOCK, x->sums[b + i], x->scales[b + i], dot_codes);
            }
        float rows[Q4_TILE_ROWS];
        for (int h = 0; h < 2; h++) {
            float32x4_t p[8];
            for (int i = 0; i < 8; i++) p[i] = acc[i][h];
            vst1q_f32(rows + 4 * h, reduce8_lanes_neon(p));
        }
        memcpy(out + row, rows, sizeof(float) * (size_t)n_rows);
    }
}

static inline __attribute__((always_inline)) void matvec_q4_neon_any(
        float *out, const Tensor *w, int row_begin, int row_end, const QuantizedActivations *x, DotTileCodesNeon dot_codes) {
    int group_shift = __builtin_ctz((unsigned)(w->group_size / Q_BLOCK));   // groups of 1, 2, 4 or 8 blocks
    if (group_shift == 0) matvec_q4_neon_with(out, w, row_begin, row_end, x, 0, dot_codes);
    else matvec_q4_neon_with(out, w, row_begin, row_end, x, group_shift, dot_codes);
}

// Several tokens (the prompt): each block of a tile is unpacked once into
// registers and used by every token in turn, whose partial sums wait in
// acc[t][i][h] (partial i of rows 4h..4h+3): the weights stay put while the
// activations stream, so a block-token costs two loads of x and the update of
// two partials, not sixteen reloads of weights. A constant dot_block lets the
// compiler inline it.
static inline __attribute__((always_inline)) void matmul_q4_neon_with(
        float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
        const QuantizedActivations *x, int n_tokens, DotTileBlockNeon dot_block) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int group_shift = __builtin_ctz((unsigned)(w->group_size / Q_BLOCK)), x_blocks = x->stride / Q_BLOCK;
    float32x4_t acc[MAX_BATCH][8][2];
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        const uint8_t *nibbles = w->nibbles + (size_t)tile * n_blocks * Q4_TILE_BLOCK_BYTES;
        const uint16_t *scales = w->scales + (size_t)tile * n_groups * Q4_TILE_ROWS;
        for (int t = 0; t < n_tokens; t++)
            for (int i = 0; i < 8; i++) acc[t][i][0] = acc[t][i][1] = vdupq_n_f32(0.0f);
        for (int b = 0; b < n_blocks; b++) {
            int8x16_t q[8][2];
            float32x4_t w_scales[2];
            unpack_q4_tile_block_neon(q, nibbles + (size_t)b * Q4_TILE_BLOCK_BYTES);
            tile_scales_neon(w_scales, scales + (size_t)(b >> group_shift) * Q4_TILE_ROWS);
            const int8_t *values = x->values + (size_t)b * Q_BLOCK;
            const float *x_scales = x->scales + b;
            float32x4_t (*partial)[8][2] = acc;
            for (int t = 0; t < n_tokens; t++, values += x->stride, x_scales += x_blocks) {
                int32x4_t isum[2];
                dot_block(q, values, isum);
                float32x4_t x_scale = vdupq_n_f32(*x_scales);
                for (int h = 0; h < 2; h++)
                    partial[t][b % 8][h] = vaddq_f32(partial[t][b % 8][h],
                                                     vmulq_f32(vmulq_f32(w_scales[h], x_scale), vcvtq_f32_s32(isum[h])));
            }
        }
        for (int t = 0; t < n_tokens; t++) {
            float rows[Q4_TILE_ROWS];
            for (int h = 0; h < 2; h++) {
                float32x4_t p[8];
                for (int i = 0; i < 8; i++) p[i] = acc[t][i][h];
                vst1q_f32(rows + 4 * h, reduce8_lanes_neon(p));
            }
            memcpy(out + (size_t)t * out_stride + row, rows, sizeof(float) * (size_t)n_rows);
        }
    }
}

static void matmul_q4_neon(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                           const QuantizedActivations *x, int n_tokens) {
    if (n_tokens == 1) matvec_q4_neon_any(out, w, row_begin, row_end, x, dot_q4_tile_codes_neon);
    else matmul_q4_neon_with(out, out_stride, w, row_begin, row_end, x, n_tokens, dot_q4_tile_block_neon);
}

// ---- 2:4 sparse int4 (Q4S) in Q4's tiles, as the AVX2 kernel: step s of a
// block gathers each row's four activations from the 16 of half s/2 with one
// table lookup (tbl) and multiplies them by the four signed levels.
typedef struct {
    int8x16_t level[4][2];       // step s, rows 4h..4h+3: the four slots' levels
    uint8x16_t control[4][2];    // which of the half's 16 activations each slot reads
} Q4sTileBlockNeon;

static inline void unpack_q4s_tile_block_neon(Q4sTileBlockNeon *out, const uint8_t *block) {
    uint8x16_t three = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++) {
        for (int half = 0; half < 2; half++) {   // run 0: steps 0 (low nibbles) and 1 (high); run 1: steps 2 and 3
            int8x16_t run = vld1q_s8((const int8_t *)block + 32 * half + 16 * h);
            out->level[2 * half][h] = vshrq_n_s8(vshlq_n_s8(run, 4), 4);   // two's complement nibbles
            out->level[2 * half + 1][h] = vshrq_n_s8(run, 4);
        }
        uint8x16_t positions = vld1q_u8(block + 64 + 16 * h);
        for (int s = 0; s < 4; s++) {            // base: 8 for the half's second eight, 4 for a step's second quad
            uint8x16_t base = vreinterpretq_u8_u32(vdupq_n_u32(0x04040000u + (uint32_t)(s % 2) * 0x08080808u));
            out->control[s][h] = vaddq_u8(vandq_u8(positions, three), base);
            positions = vshrq_n_u8(positions, 2);
        }
    }
}

// The block . one token's activations for rows 0-3 (isum[0]) and 4-7 (isum[1]),
// exact. Armv8.0: vmlal_s8 gathers each lane's four products in int16 (|sum|
// <= 4 * 8 * 127); pairwise adds fold a row's four lanes, as dot_q4_tile_block_neon.
static inline void dot_q4s_tile_block_neon(const Q4sTileBlockNeon *w, const int8_t *x, int32x4_t isum[2]) {
    int8x16_t halves[2] = { vld1q_s8(x), vld1q_s8(x + 16) };
    for (int h = 0; h < 2; h++) {
        int16x8_t rows_01 = vdupq_n_s16(0), rows_23 = vdupq_n_s16(0);
        for (int s = 0; s < 4; s++) {
            int8x16_t gathered = vqtbl1q_s8(halves[s / 2], w->control[s][h]);
            rows_01 = vmlal_s8(rows_01, vget_low_s8(w->level[s][h]), vget_low_s8(gathered));
            rows_23 = vmlal_high_s8(rows_23, w->level[s][h], gathered);
        }
        isum[h] = vpaddq_s32(vpaddlq_s16(rows_01), vpaddlq_s16(rows_23));
    }
}

#ifdef HAVE_NEON_DOTPROD_KERNELS
// The same with sdot: each lane gains its row's four products per step.
TARGET_DOTPROD static inline void dot_q4s_tile_block_sdot(const Q4sTileBlockNeon *w, const int8_t *x, int32x4_t isum[2]) {
    int8x16_t halves[2] = { vld1q_s8(x), vld1q_s8(x + 16) };
    for (int h = 0; h < 2; h++) {
        int32x4_t sum = vdupq_n_s32(0);
        for (int s = 0; s < 4; s++) sum = vdotq_s32(sum, w->level[s][h], vqtbl1q_s8(halves[s / 2], w->control[s][h]));
        isum[h] = sum;
    }
}
#endif

typedef void (*DotQ4sTileBlockNeon)(const Q4sTileBlockNeon *w, const int8_t *x, int32x4_t isum[2]);

// Q4's walk (matmul_q4_neon_with): eight blocks unpacked once for every token.
static inline __attribute__((always_inline)) void matmul_q4s_neon_with(
        float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
        const QuantizedActivations *x, int n_tokens, DotQ4sTileBlockNeon dot_block) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int blocks_per_group = w->group_size / Q_BLOCK, x_blocks = x->stride / Q_BLOCK;
    float32x4_t acc[MAX_BATCH][8][2];
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        const uint8_t *codes = w->codes + (size_t)tile * n_blocks * 3 * 32;
        const uint16_t *scales = w->scales + (size_t)tile * n_groups * Q4_TILE_ROWS;
        for (int t = 0; t < n_tokens; t++)
            for (int i = 0; i < 8; i++) acc[t][i][0] = acc[t][i][1] = vdupq_n_f32(0.0f);
        for (int b = 0; b < n_blocks; b += 8) {
            int count = n_blocks - b < 8 ? n_blocks - b : 8;
            Q4sTileBlockNeon q[8];
            float32x4_t w_scales[8][2];
            for (int i = 0; i < count; i++) {
                unpack_q4s_tile_block_neon(&q[i], codes + (size_t)(b + i) * 3 * 32);
                const uint16_t *s = scales + (size_t)((b + i) / blocks_per_group) * Q4_TILE_ROWS;
                for (int h = 0; h < 2; h++) w_scales[i][h] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s + 4 * h)));
            }
            for (int t = 0; t < n_tokens; t++) {
                const int8_t *values = x->values + (size_t)t * x->stride;
                for (int i = 0; i < count; i++) {
                    int32x4_t isum[2];
                    dot_block(&q[i], values + (b + i) * Q_BLOCK, isum);
                    float32x4_t x_scale = vdupq_n_f32(x->scales[(size_t)t * x_blocks + b + i]);
                    for (int h = 0; h < 2; h++)
                        acc[t][i][h] = vaddq_f32(acc[t][i][h],
                                                 vmulq_f32(vmulq_f32(w_scales[i][h], x_scale), vcvtq_f32_s32(isum[h])));
                }
            }
        }
        for (int t = 0; t < n_tokens; t++) {   // reduce8's tree, lane by lane
            float rows[Q4_TILE_ROWS];
            for (int h = 0; h < 2; h++) {
                float32x4_t (*p)[2] = acc[t];
                vst1q_f32(rows + 4 * h, vaddq_f32(vaddq_f32(vaddq_f32(p[0][h], p[4][h]), vaddq_f32(p[2][h], p[6][h])),
                                                  vaddq_f32(vaddq_f32(p[1][h], p[5][h]), vaddq_f32(p[3][h], p[7][h]))));
            }
            memcpy(out + (size_t)t * out_stride + row, rows, sizeof(float) * (size_t)n_rows);
        }
    }
}

static void matmul_q4s_neon(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                            const QuantizedActivations *x, int n_tokens) {
    matmul_q4s_neon_with(out, out_stride, w, row_begin, row_end, x, n_tokens, dot_q4s_tile_block_neon);
}
// The other types, a row at a time: levels . x for one block (levels in
// -8..7, as int8: Q3's and Q2's) as 4 int32 lanes whose sum is exact. Armv8.0 has
// no int8 dot: vmull_s8/vmlal_s8 widen the products to int16 lanes, four per
// lane (|sum| <= 4 * 8 * 128, no overflow), and vpaddlq_s16 widens pairs to int32.
static inline int32x4_t dot_block_neon(int8x16x2_t w, const int8_t *x) {
    int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + Q_BLOCK / 2);
    int16x8_t p = vmull_s8(vget_low_s8(w.val[0]), vget_low_s8(x0));
    p = vmlal_high_s8(p, w.val[0], x0);
    p = vmlal_s8(p, vget_low_s8(w.val[1]), vget_low_s8(x1));
    p = vmlal_high_s8(p, w.val[1], x1);
    return vpaddlq_s16(p);
}

#ifdef HAVE_NEON_DOTPROD_KERNELS
// The same with sdot: each int32 lane gains the sum of four int8 products.
TARGET_DOTPROD static inline int32x4_t dot_block_sdot(int8x16x2_t w, const int8_t *x) {
    int32x4_t d = vdotq_s32(vdupq_n_s32(0), w.val[0], vld1q_s8(x));
    return vdotq_s32(d, w.val[1], vld1q_s8(x + Q_BLOCK / 2));
}
#endif

typedef int32x4_t (*DotBlockNeon)(int8x16x2_t w, const int8_t *x);

// int8 levels (Q8) overflow dot_block_neon's int16 lanes (4 * 128 * 127), so
// each int16 lane holds one product and vpadalq_s16 accumulates pairs in int32.
static inline int32x4_t dot_block_wide_neon(int8x16x2_t w, const int8_t *x) {
    int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + Q_BLOCK / 2);
    int32x4_t d = vpaddlq_s16(vmull_s8(vget_low_s8(w.val[0]), vget_low_s8(x0)));
    d = vpadalq_s16(d, vmull_high_s8(w.val[0], x0));
    d = vpadalq_s16(d, vmull_s8(vget_low_s8(w.val[1]), vget_low_s8(x1)));
    return vpadalq_s16(d, vmull_high_s8(w.val[1], x1));
}

// The other types' blocks -> their 32 levels as signed int8, weights 0..15 in
// val[0] and 16..31 in val[1].
typedef int8x16x2_t (*UnpackNeon)(const uint8_t *block);

static inline int8x16x2_t unpack_q8_neon(const uint8_t *block) {
    int8x16x2_t w = { { vld1q_s8((const int8_t *)block), vld1q_s8((const int8_t *)block + 16) } };
    return w;
}

// a 2-bit plane's codes 0..3: weights 8k..8k+7 are the plane shifted right by 2k
static inline uint8x16x2_t unpack_2bit_neon(const uint8_t *plane) {
    uint8x8_t v = vld1_u8(plane);
    uint8x16_t three = vdupq_n_u8(3);
    uint8x16x2_t codes = { { vandq_u8(vcombine_u8(v, vshr_n_u8(v, 2)), three),
                             vandq_u8(vcombine_u8(vshr_n_u8(v, 4), vshr_n_u8(v, 6)), three) } };
    return codes;
}

static inline int8x16x2_t unpack_q2_neon(const uint8_t *block) {
    uint8x16x2_t codes = unpack_2bit_neon(block);
    int8x16_t two = vdupq_n_s8(2);
    int8x16x2_t w = { { vsubq_s8(vreinterpretq_s8_u8(codes.val[0]), two), vsubq_s8(vreinterpretq_s8_u8(codes.val[1]), two) } };
    return w;
}

// Q3: the 1-bit plane's byte j/8 is spread to byte j by a table lookup, bit
// j%8 tested (0xFF where set) and kept as bit 2 of the code.
static inline int8x16x2_t unpack_q3_neon(const uint8_t *block) {
    uint32_t bits;
    memcpy(&bits, block + 8, sizeof bits);
    uint8x16_t plane = vreinterpretq_u8_u32(vdupq_n_u32(bits));
    static const uint8_t first[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 };
    static const uint8_t bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
    uint8x16_t index = vld1q_u8(first), mask = vld1q_u8(bit), four = vdupq_n_u8(4);
    uint8x16_t high0 = vandq_u8(vtstq_u8(vqtbl1q_u8(plane, index), mask), four);
    uint8x16_t high1 = vandq_u8(vtstq_u8(vqtbl1q_u8(plane, vaddq_u8(index, vdupq_n_u8(2))), mask), four);
    uint8x16x2_t codes = unpack_2bit_neon(block);
    int8x16_t offset = vdupq_n_s8(4);
    int8x16x2_t w = { { vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(codes.val[0], high0)), offset),
                        vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(codes.val[1], high1)), offset) } };
    return w;
}

// A weight type as the NEON kernels see it: how a block unpacks, its size.
typedef struct {
    UnpackNeon unpack;
    int block_bytes;
} NeonBlocks;

// Four weight scales (fp16) for blocks b..b+3 as floats (fcvtl: exact, baseline).
static inline float32x4_t weight_scales_neon(const uint16_t *scales, int b, int blocks_per_group) {
    if (blocks_per_group == 1) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(scales + b)));
    uint16_t s[4];
    for (int i = 0; i < 4; i++) s[i] = scales[(b + i) / blocks_per_group];
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s)));
}

// Blocks b..b+3 of one row against TILE tokens: the weights are unpacked once
// and used TILE times (the prompt's GEMM); lane i of acc[t] gains token t's
// term of block b + i: (weight scale * activation scale) * (float)isum.
static inline __attribute__((always_inline)) void quant_4_blocks_neon(
        float32x4_t acc[4], NeonBlocks type, const uint8_t *codes, const uint16_t *scales, int blocks_per_group, int b,
        const QuantizedActivations *x, int token, const int TILE, DotBlockNeon dot_block) {
    int x_blocks = x->stride / Q_BLOCK;
    int8x16x2_t w[4];
    for (int i = 0; i < 4; i++) w[i] = type.unpack(codes + (b + i) * type.block_bytes);
    float32x4_t w_scales = weight_scales_neon(scales, b, blocks_per_group);
    for (int t = 0; t < TILE; t++) {
        size_t row = (size_t)(token + t);
        const int8_t *xv = x->values + row * x->stride + b * Q_BLOCK;
        int32x4_t d[4];
        for (int i = 0; i < 4; i++) d[i] = dot_block(w[i], xv + i * Q_BLOCK);
        int32x4_t isum = vpaddq_s32(vpaddq_s32(d[0], d[1]), vpaddq_s32(d[2], d[3]));   // one lane per block
        float32x4_t scale = vmulq_f32(w_scales, vld1q_f32(x->scales + row * x_blocks + b));
        acc[t] = vaddq_f32(acc[t], vmulq_f32(scale, vcvtq_f32_s32(isum)));
    }
}

// One row against TILE tokens; a token's result never depends on TILE.
static inline __attribute__((always_inline)) void quant_row_tile_neon(
        float *out, int out_stride, NeonBlocks type, const uint8_t *codes, const uint16_t *scales, int blocks_per_group,
        int n_blocks, const QuantizedActivations *x, int token, const int TILE, DotBlockNeon dot_block) {
    float32x4_t acc_0123[4], acc_4567[4];   // per token: partial sums 0-3 and 4-7
    for (int t = 0; t < TILE; t++) acc_0123[t] = acc_4567[t] = vdupq_n_f32(0.0f);
    int b = 0;
    for (; b + 8 <= n_blocks; b += 8) {
        quant_4_blocks_neon(acc_0123, type, codes, scales, blocks_per_group, b, x, token, TILE, dot_block);
        quant_4_blocks_neon(acc_4567, type, codes, scales, blocks_per_group, b + 4, x, token, TILE, dot_block);
    }
    if (b + 4 <= n_blocks) {
        quant_4_blocks_neon(acc_0123, type, codes, scales, blocks_per_group, b, x, token, TILE, dot_block);
        b += 4;
    }
    int x_blocks = x->stride / Q_BLOCK;
    for (int t = 0; t < TILE; t++) {
        size_t row = (size_t)(token + t);
        float partial[8];
        vst1q_f32(partial, acc_0123[t]);
        vst1q_f32(partial + 4, acc_4567[t]);
        for (int tail = b; tail < n_blocks; tail++) {   // the last n_blocks % 4 blocks, one at a time
            int32_t isum = vaddvq_s32(dot_block(type.unpack(codes + tail * type.block_bytes),
                                                x->values + row * x->stride + tail * Q_BLOCK));
            float scale = fp16_to_fp32(scales[tail / blocks_per_group]) * x->scales[row * x_blocks + tail];
            partial[tail % 8] += scale * (float)isum;
        }
        out[(size_t)t * out_stride] = reduce8(partial);
    }
}

// A constant type and dot_block (each kernel below passes its own) are inlined.
static inline __attribute__((always_inline)) void matmul_neon_with(
        NeonBlocks type, float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
        const QuantizedActivations *x, int n_tokens, DotBlockNeon dot_block) {
#define ROW_TILE(o, codes, scales, t, TILE) \
    quant_row_tile_neon(o, out_stride, type, codes, scales, blocks_per_group, n_blocks, x, t, TILE, dot_block)
    FOR_EACH_ROW_TILE(w, type.block_bytes, row_begin, row_end, n_tokens, out, out_stride, ROW_TILE);
#undef ROW_TILE
}

// Each type's kernel for plain NEON and (below) for NEON with sdot.
#define NEON_KERNEL(type, SUFFIX, DOT, BLOCK_BYTES, TARGET) \
    TARGET static void matmul_##type##_##SUFFIX(float *out, int out_stride, const Tensor *w, int row_begin, int row_end, \
                                              const QuantizedActivations *x, int n_tokens) { \
        NeonBlocks blocks = { unpack_##type##_neon, BLOCK_BYTES }; \
        matmul_neon_with(blocks, out, out_stride, w, row_begin, row_end, x, n_tokens, DOT); \
    }
NEON_KERNEL(q8, neon, dot_block_wide_neon, 32, )
NEON_KERNEL(q3, neon, dot_block_neon, 12, )
NEON_KERNEL(q2, neon, dot_block_neon, 8, )

// a . b: elements 8 at a time into two accumulators (partials 0-3 and 4-7).
static inline float dot_f16_neon(const float *a, const uint16_t *b, int n) {
    float32x4_t acc_0123 = vdupq_n_f32(0.0f), acc_4567 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(b + i));
        acc_0123 = vaddq_f32(acc_0123, vmulq_f32(vld1q_f32(a + i), vcvt_f32_f16(vget_low_f16(h))));
        acc_4567 = vaddq_f32(acc_4567, vmulq_f32(vld1q_f32(a + i + 4), vcvt_high_f32_f16(h)));
    }
    float partial[8];
    vst1q_f32(partial, acc_0123);
    vst1q_f32(partial + 4, acc_4567);
    for (; i < n; i++) partial[i % 8] += a[i] * fp16_to_fp32(b[i]);
    return reduce8(partial);
}

static inline void axpy_f16_neon(float *out, float a, const uint16_t *v, int n) {
    float32x4_t scale = vdupq_n_f32(a);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(out + i, vaddq_f32(vld1q_f32(out + i), vmulq_f32(scale, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + i))))));
    for (; i < n; i++) out[i] += a * fp16_to_fp32(v[i]);
}

// A head at a time: NEON converts fp16 in the same instruction that loads it
// (no conversion to share between heads).
static void scores_f16_neon(float *scores, size_t scores_stride, const float *q, int n_heads, const uint16_t *keys,
                            size_t stride, int n_positions, int n) {
    for (int h = 0; h < n_heads; h++)
        for (int p = 0; p < n_positions; p++)
            scores[h * scores_stride + p] = dot_f16_neon(q + (size_t)h * n, keys + (size_t)p * stride, n);
}

static void mix_f16_neon(float *out, const float *weights, size_t weights_stride, int n_heads, const uint16_t *values,
                         size_t stride, int n_positions, int n) {
    for (int h = 0; h < n_heads; h++) {
        float *o = out + (size_t)h * n;
        memset(o, 0, sizeof(float) * (size_t)n);
        for (int p = 0; p < n_positions; p++) axpy_f16_neon(o, weights[h * weights_stride + p], values + (size_t)p * stride, n);
    }
}

// exp_canonical on four lanes, the same operations in the same order.
static inline float32x4_t exp_canonical_neon(float32x4_t x) {
    x = vmaxq_f32(vdupq_n_f32(EXP_LOWEST), x);
    float32x4_t rounder = vdupq_n_f32(EXP_ROUNDER);
    float32x4_t n = vsubq_f32(vaddq_f32(vmulq_f32(x, vdupq_n_f32(EXP_LOG2E)), rounder), rounder);
    float32x4_t r = vsubq_f32(vsubq_f32(x, vmulq_f32(n, vdupq_n_f32(EXP_LN2_HIGH))), vmulq_f32(n, vdupq_n_f32(EXP_LN2_LOW)));
    float32x4_t poly = vdupq_n_f32(exp_polynomial[0]);
    for (int i = 1; i < 6; i++) poly = vaddq_f32(vmulq_f32(poly, r), vdupq_n_f32(exp_polynomial[i]));
    float32x4_t e_r = vaddq_f32(vaddq_f32(vmulq_f32(poly, vmulq_f32(r, r)), r), vdupq_n_f32(1.0f));
    int32x4_t two_to_n = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(e_r, vreinterpretq_f32_s32(two_to_n));
}

// Eight at a time, partials 0-3 and 4-7 in two registers.
static void softmax_neon(float *x, int n, float divisor) {
    float32x4_t max4 = vdupq_n_f32(x[0] / divisor), by = vdupq_n_f32(divisor), inverse = vdupq_n_f32(1.0f / divisor);
    int exact_inverse = is_power_of_two(divisor), i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i), scaled = exact_inverse ? vmulq_f32(v, inverse) : vdivq_f32(v, by);
        vst1q_f32(x + i, scaled);
        max4 = vmaxq_f32(scaled, max4);
    }
    float max = vmaxvq_f32(max4);
    for (; i < n; i++) {
        x[i] /= divisor;
        if (x[i] > max) max = x[i];
    }
    float32x4_t sum_0123 = vdupq_n_f32(0.0f), sum_4567 = vdupq_n_f32(0.0f), largest = vdupq_n_f32(max);
    for (i = 0; i + 8 <= n; i += 8) {
        float32x4_t e0 = exp_canonical_neon(vsubq_f32(vld1q_f32(x + i), largest));
        float32x4_t e1 = exp_canonical_neon(vsubq_f32(vld1q_f32(x + i + 4), largest));
        vst1q_f32(x + i, e0);
        vst1q_f32(x + i + 4, e1);
        sum_0123 = vaddq_f32(sum_0123, e0);
        sum_4567 = vaddq_f32(sum_4567, e1);
    }
    float partial[8];
    vst1q_f32(partial, sum_0123);
    vst1q_f32(partial + 4, sum_4567);
    for (; i < n; i++) {
        x[i] = exp_canonical(x[i] - max);
        partial[i % 8] += x[i];
    }
    float sum = reduce8(partial);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vdivq_f32(vld1q_f32(x + i), vdupq_n_f32(sum)));
    for (; i < n; i++) x[i] /= sum;
}

// Four int8s as floats (exact); 8 are widened at a time.
static inline void load_q8_neon(const int8_t *v, float32x4_t *low, float32x4_t *high) {
    int16x8_t wide = vmovl_s8(vld1_s8(v));
    *low = vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide)));
    *high = vcvtq_f32_s32(vmovl_s16(vget_high_s16(wide)));
}

static void scores_q8_neon(float *scores, const float *q, const int8_t *keys, const float *scales, size_t stride,
                           size_t scale_stride, int n_positions, int n) {
    for (int p = 0; p < n_positions; p++) {
        const int8_t *k = keys + (size_t)p * stride;
        float32x4_t acc_0123 = vdupq_n_f32(0.0f), acc_4567 = vdupq_n_f32(0.0f), low, high;
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            load_q8_neon(k + i, &low, &high);
            acc_0123 = vaddq_f32(acc_0123, vmulq_f32(vld1q_f32(q + i), low));
            acc_4567 = vaddq_f32(acc_4567, vmulq_f32(vld1q_f32(q + i + 4), high));
        }
        float partial[8];
        vst1q_f32(partial, acc_0123);
        vst1q_f32(partial + 4, acc_4567);
        for (; i < n; i++) partial[i % 8] += q[i] * (float)k[i];
        scores[p] = reduce8(partial) * scales[(size_t)p * scale_stride];
    }
}

static void mix_q8_neon(float *out, const float *weights, const int8_t *values, const float *scales, size_t stride,
                        size_t scale_stride, int n_positions, int n) {
    memset(out, 0, sizeof(float) * (size_t)n);
    for (int p = 0; p < n_positions; p++) {
        float weight = weights[p] * scales[(size_t)p * scale_stride];
        float32x4_t w = vdupq_n_f32(weight), low, high;
        const int8_t *v = values + (size_t)p * stride;
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            load_q8_neon(v + i, &low, &high);
            vst1q_f32(out + i, vaddq_f32(vld1q_f32(out + i), vmulq_f32(w, low)));
            vst1q_f32(out + i + 4, vaddq_f32(vld1q_f32(out + i + 4), vmulq_f32(w, high)));
        }
        for (; i < n; i++) out[i] += weight * (float)v[i];
    }
}

// quantize_q8 four floats at a time, as quantize_q8_avx2 does: the max by
// compare-and-select (a NaN never wins), the product by the inverse scale,
// |v| + 0.5 truncated (fcvtzs) with the sign put back.
static void quantize_full_block_q8_neon(const float *x, int8_t *values, float *scale_out, int32_t *sum_out) {
    float32x4_t limit = vdupq_n_f32(127.5f), half = vdupq_n_f32(0.5f);
    float32x4_t v[8], amax4 = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; i++) {
        v[i] = vld1q_f32(x + 4 * i);
        float32x4_t a = vabsq_f32(v[i]);
        amax4 = vbslq_f32(vcgtq_f32(a, amax4), a, amax4);
    }
    float scale = vmaxvq_f32(amax4) / 127.0f;
    float inverse = scale > 0 ? 1.0f / scale : 0.0f;
    *scale_out = scale;
    int32x4_t total = vdupq_n_s32(0);
    int32_t q[Q_BLOCK];
    for (int i = 0; i < 8; i++) {
        float32x4_t scaled = vmulq_f32(v[i], vdupq_n_f32(inverse)), size = vabsq_f32(scaled);
        uint32x4_t in_range = vcleq_f32(size, limit);   // false for NaN: 0
        int32x4_t magnitude = vcvtq_s32_f32(vaddq_f32(vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(size), in_range)), half));
        uint32x4_t negative = vandq_u32(vcltq_f32(scaled, vdupq_n_f32(0.0f)), in_range);
        int32x4_t level = vbslq_s32(negative, vnegq_s32(magnitude), magnitude);
        total = vaddq_s32(total, level);
        vst1q_s32(q + 4 * i, level);
    }
    for (int i = 0; i < Q_BLOCK; i++) values[i] = (int8_t)q[i];
    *sum_out = vaddvq_s32(total);
}

static void quantize_q8_neon(QuantizedActivations *out, const float *x, int x_stride, int n, int n_padded, int n_tokens) {
    quantize_q8_with(quantize_full_block_q8_neon, out, x, x_stride, n, n_padded, n_tokens);
}

// fp32 -> fp16 by fcvtn (round to nearest even, as fp32_to_fp16); four
// floats holding a NaN go through the reference (fcvtn keeps payload bits).
static void to_f16_neon(uint16_t *out, const float *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        if (vminvq_u32(vceqq_f32(v, v)) == 0) { to_f16_ref(out + i, x + i, 4); continue; }
        vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(v)));
    }
    to_f16_ref(out + i, x + i, n - i);
}

// ---- Table lookup with tbl (see "Table lookup"): a 128-bit register holds
// 16 rows' pattern bytes of two groups (an AND and a shift apart), tbl looks
// them up in each group's low-byte and high-byte tables, and zipping the two
// results interleaves them into int16 lanes: rows 0-7 (zip1) and 8-15 (zip2)
// of the 16, slots 8h.. and 32 + 8h.. of quarter h of the tile. Armv8.0
// has tbl, so every NEON set shares these kernels.
static inline __attribute__((always_inline)) void lut_quarter_neon(const int PLANES, const uint8_t *codes,
                                                                   const uint8_t *tables, int h, int16x8_t sums[2]) {
    int16x8_t acc[3][2];
    for (int k = 0; k < PLANES; k++) acc[k][0] = acc[k][1] = vdupq_n_s16(0);
    for (int p = 0; p < 4; p++) {
        const uint8_t *group = tables + (size_t)2 * p * LUT_GROUP_BYTES;
        uint8x16_t low0 = vld1q_u8(group), high0 = vld1q_u8(group + 16);
        uint8x16_t low1 = vld1q_u8(group + LUT_GROUP_BYTES), high1 = vld1q_u8(group + LUT_GROUP_BYTES + 16);
        for (int k = 0; k < PLANES; k++) {
            uint8x16_t patterns = vld1q_u8(codes + (k * 4 + p) * LUT_TILE_ROWS + 16 * h);
            uint8x16_t first = vandq_u8(patterns, vdupq_n_u8(0x0F)), second = vshrq_n_u8(patterns, 4);
            uint8x16_t l0 = vqtbl1q_u8(low0, first), h0 = vqtbl1q_u8(high0, first);
            uint8x16_t l1 = vqtbl1q_u8(low1, second), h1 = vqtbl1q_u8(high1, second);
            acc[k][0] = vaddq_s16(acc[k][0], vaddq_s16(vreinterpretq_s16_u8(vzip1q_u8(l0, h0)), vreinterpretq_s16_u8(vzip1q_u8(l1, h1))));
            acc[k][1] = vaddq_s16(acc[k][1], vaddq_s16(vreinterpretq_s16_u8(vzip2q_u8(l0, h0)), vreinterpretq_s16_u8(vzip2q_u8(l1, h1))));
        }
    }
    for (int i = 0; i < 2; i++) {
        sums[i] = acc[0][i];
        if (PLANES > 1) sums[i] = vaddq_s16(sums[i], vshlq_n_s16(acc[1][i], 1));
        if (PLANES > 2) sums[i] = vaddq_s16(sums[i], vshlq_n_s16(acc[2][i], 2));
    }
}

// Four rows' terms: (weight scales * activation scale) * (float)(int32 + lo * sum(x)).
static inline float32x4_t lut_add_term_neon(float32x4_t partial, int32x4_t isum, const uint16_t *w_scales, float32x4_t x_scale) {
    float32x4_t scale = vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w_scales))), x_scale);
    return vaddq_f32(partial, vmulq_f32(scale, vcvtq_f32_s32(isum)));
}

static inline __attribute__((always_inline)) void matmul_lut_neon_with(const int PLANES, int lo, float *out, int out_stride,
        const Tensor *w, int row_begin, int row_end, const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, blocks_per_group = w->group_size / Q_BLOCK;
    int n_groups = w->cols_padded / w->group_size, x_blocks = x->stride / Q_BLOCK;
    size_t block_bytes = (size_t)PLANES * 4 * LUT_TILE_ROWS;
    for (int tile = row_begin / LUT_TILE_ROWS; tile * LUT_TILE_ROWS < row_end; tile++) {
        const uint8_t *codes = w->lut_codes + tile * n_blocks * block_bytes;
        const uint16_t *scales = w->lut_scales + (size_t)tile * n_groups * LUT_TILE_ROWS;
        for (int t = 0; t < n_tokens; t++) {
            const uint8_t *tables = x->tables + (size_t)t * lut_table_bytes(x->stride);
            const float *x_scales = x->scales + (size_t)t * x_blocks;
            const int32_t *x_sums = x->sums + (size_t)t * x_blocks;
            float32x4_t partial[8][16];   // [b % 8][slots 4j..4j+3]
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 16; j++) partial[i][j] = vdupq_n_f32(0.0f);
            for (int b = 0; b < n_blocks; b++) {
                int32x4_t offset = vdupq_n_s32(lo * x_sums[b]);
                float32x4_t x_scale = vdupq_n_f32(x_scales[b]);
                const uint16_t *w_scales = scales + (size_t)(b / blocks_per_group) * LUT_TILE_ROWS;
                float32x4_t *acc = partial[b % 8];
                for (size_t line = 0; line < block_bytes; line += 64)   // see matmul_lut_avx512_with
                    __builtin_prefetch(codes + (b + LUT_PREFETCH_BLOCKS) * block_bytes + line);
                for (int h = 0; h < 4; h++) {
                    int16x8_t sums[2];
                    lut_quarter_neon(PLANES, codes + b * block_bytes, tables + (size_t)b * LUT_GROUPS_PER_BLOCK * LUT_GROUP_BYTES,
                                     h, sums);
                    for (int i = 0; i < 2; i++) {
                        int slot = 32 * i + 8 * h;
                        acc[slot / 4] = lut_add_term_neon(acc[slot / 4], vaddq_s32(vmovl_s16(vget_low_s16(sums[i])), offset),
                                                          w_scales + slot, x_scale);
                        acc[slot / 4 + 1] = lut_add_term_neon(acc[slot / 4 + 1], vaddq_s32(vmovl_high_s16(sums[i]), offset),
                                                              w_scales + slot + 4, x_scale);
                    }
                }
            }
            float reduced[LUT_TILE_ROWS];
            for (int j = 0; j < 16; j++) {
                float32x4_t (*p)[16] = partial;
                vst1q_f32(reduced + 4 * j, vaddq_f32(vaddq_f32(vaddq_f32(p[0][j], p[4][j]), vaddq_f32(p[2][j], p[6][j])),
                                                     vaddq_f32(vaddq_f32(p[1][j], p[5][j]), vaddq_f32(p[3][j], p[7][j]))));
            }
            lut_store_tile(reduced, out + (size_t)t * out_stride, tile * LUT_TILE_ROWS, row_end);
        }
    }
}

static void matmul_lut_q2_neon(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                               const QuantizedActivations *x, int n_tokens) {
    matmul_lut_neon_with(2, quant_layouts[TYPE_Q2].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}
static void matmul_lut_q3_neon(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                               const QuantizedActivations *x, int n_tokens) {
    matmul_lut_neon_with(3, quant_layouts[TYPE_Q3].lo, out, out_stride, w, row_begin, row_end, x, n_tokens);
}

// A group's 16 sums as int16: entries 0-7 are x0, x1, x2 masked by m's bits
// and added; entries 8-15 add x3. Unzipping the two registers' bytes puts
// every low byte before every high byte.
static void build_tables_neon(QuantizedActivations *x, int n_padded, int n_tokens) {
    const int16x8_t bit0 = { 0, -1, 0, -1, 0, -1, 0, -1 }, bit1 = { 0, 0, -1, -1, 0, 0, -1, -1 };
    const int16x8_t bit2 = { 0, 0, 0, 0, -1, -1, -1, -1 };
    for (int t = 0; t < n_tokens; t++) {
        const int8_t *values = x->values + (size_t)t * x->stride;
        uint8_t *tables = x->tables + (size_t)t * lut_table_bytes(x->stride);
        for (int g = 0; g < n_padded / 4; g++) {
            const int8_t *v = values + 4 * g;
            int16x8_t first8 = vaddq_s16(vaddq_s16(vandq_s16(vdupq_n_s16(v[0]), bit0), vandq_s16(vdupq_n_s16(v[1]), bit1)),
                                         vandq_s16(vdupq_n_s16(v[2]), bit2));
            uint8x16_t a = vreinterpretq_u8_s16(first8), b = vreinterpretq_u8_s16(vaddq_s16(first8, vdupq_n_s16(v[3])));
            vst1q_u8(tables + (size_t)g * LUT_GROUP_BYTES, vuzp1q_u8(a, b));
            vst1q_u8(tables + (size_t)g * LUT_GROUP_BYTES + 16, vuzp2q_u8(a, b));
        }
    }
}

static const Kernels kernels_neon = {
    "neon", quantize_q8_neon, to_f16_neon, { [TYPE_Q8] = matmul_q8_neon, [TYPE_Q4] = matmul_q4_neon, [TYPE_Q3] = matmul_q3_neon, [TYPE_Q2] = matmul_q2_neon,
                                             [TYPE_Q4S] = matmul_q4s_neon },
    scores_f16_neon, mix_f16_neon, scores_q8_neon, mix_q8_neon, softmax_neon,
    build_tables_neon, { [TYPE_Q3] = matmul_lut_q3_neon, [TYPE_Q2] = matmul_lut_q2_neon } };

#ifdef HAVE_NEON_DOTPROD_KERNELS
NEON_KERNEL(q8, neon_dotprod, dot_block_sdot, 32, TARGET_DOTPROD)
NEON_KERNEL(q3, neon_dotprod, dot_block_sdot, 12, TARGET_DOTPROD)
NEON_KERNEL(q2, neon_dotprod, dot_block_sdot, 8, TARGET_DOTPROD)
TARGET_DOTPROD static void matmul_q4_neon_dotprod(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                                  const QuantizedActivations *x, int n_tokens) {
    if (n_tokens == 1) matvec_q4_neon_any(out, w, row_begin, row_end, x, dot_q4_tile_codes_sdot);
    else matmul_q4_neon_with(out, out_stride, w, row_begin, row_end, x, n_tokens, dot_q4_tile_block_sdot);
}
TARGET_DOTPROD static void matmul_q4s_neon_dotprod(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                                   const QuantizedActivations *x, int n_tokens) {
    matmul_q4s_neon_with(out, out_stride, w, row_begin, row_end, x, n_tokens, dot_q4s_tile_block_sdot);
}

static const Kernels kernels_neon_dotprod = {
    "neon-dotprod", quantize_q8_neon, to_f16_neon, { [TYPE_Q8] = matmul_q8_neon_dotprod, [TYPE_Q4] = matmul_q4_neon_dotprod,
                      [TYPE_Q3] = matmul_q3_neon_dotprod, [TYPE_Q2] = matmul_q2_neon_dotprod, [TYPE_Q4S] = matmul_q4s_neon_dotprod },
    scores_f16_neon, mix_f16_neon, scores_q8_neon, mix_q8_neon, softmax_neon,
    build_tables_neon, { [TYPE_Q3] = matmul_lut_q3_neon, [TYPE_Q2] = matmul_lut_q2_neon } };

// Linux reports the extension in the auxiliary vector (HWCAP_ASIMDDP).
#if defined(__linux__)
#include <sys/auxv.h>
#include <asm/hwcap.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
static int cpu_has_dotprod(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
#elif defined(__ARM_FEATURE_DOTPROD)
static int cpu_has_dotprod(void) { return 1; }   // other systems: when the build targets such a core
#else
static int cpu_has_dotprod(void) { return 0; }
#endif

#ifdef HAVE_NEON_I8MM_KERNELS
// ---- i8mm (Armv8.6: Cortex-A710/A510/X2, Neoverse N2/V1): smmla multiplies
// a 2x8 int8 matrix (two rows of eight weights) by an 8x2 one (two tokens'
// eight activations) into 2x2 int32, 32 products where sdot makes 16: twice
// the work per instruction, once two tokens share the weights (the prompt).

// A tile's block -> w[p][o]: rows 2p and 2p+1 (bytes 0-7 and 8-15), weights
// 8o..8o+7 of each, as levels q - 8. Runs d and d+1 hold a row's bytes 4d..
// and 4d+4..: zip1/zip2 of their 32-bit lanes put each row's eight together.
TARGET_I8MM static inline void unpack_q4_tile_block_i8mm(int8x16_t w[4][4], const uint8_t *block) {
    uint8x16_t low = vdupq_n_u8(0x0F);
    int8x16_t eight = vdupq_n_s8(8);
    for (int h = 0; h < 2; h++)
        for (int e = 0; e < 2; e++) {
            uint32x4_t run_d = vreinterpretq_u32_u8(vld1q_u8(block + 4 * Q4_TILE_ROWS * (2 * e) + 16 * h));
            uint32x4_t run_d1 = vreinterpretq_u32_u8(vld1q_u8(block + 4 * Q4_TILE_ROWS * (2 * e + 1) + 16 * h));
            uint8x16_t pairs[2] = { vreinterpretq_u8_u32(vzip1q_u32(run_d, run_d1)),    // rows 4h, 4h+1
                                    vreinterpretq_u8_u32(vzip2q_u32(run_d, run_d1)) };  // rows 4h+2, 4h+3
            for (int z = 0; z < 2; z++) {
                w[2 * h + z][e] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(pairs[z], low)), eight);       // weights 8e..
                w[2 * h + z][e + 2] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(pairs[z], 4)), eight);   // 16 + 8e..
            }
        }
}

// Two tokens' activations of one block as smmla's right operand: a[o] holds
// weights 8o..8o+7's activations, token t0's in bytes 0-7, t1's in 8-15
// (zip1/zip2 of their 64-bit halves).
TARGET_I8MM static inline void activations_pair_i8mm(int8x16_t a[4], const int8_t *x0, const int8_t *x1) {
    for (int half = 0; half < 2; half++) {
        int64x2_t t0 = vreinterpretq_s64_s8(vld1q_s8(x0 + 16 * half)), t1 = vreinterpretq_s64_s8(vld1q_s8(x1 + 16 * half));
        a[2 * half] = vreinterpretq_s8_s64(vzip1q_s64(t0, t1));
        a[2 * half + 1] = vreinterpretq_s8_s64(vzip2q_s64(t0, t1));
    }
}

// Two or more tokens, a pair at a time (an odd last token is paired with
// itself). Lanes of a row pair's sums are (row 2p, t0), (2p, t1), (2p+1, t0),
// (2p+1, t1): the weight scales are spread as (s, s, s', s') and the
// activations' as (t0, t1, t0, t1), so each lane's term is the canonical one.
TARGET_I8MM static void matmul_q4_i8mm_tiles(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                             const QuantizedActivations *x, int n_tokens) {
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size;
    int group_shift = __builtin_ctz((unsigned)(w->group_size / Q_BLOCK)), x_blocks = x->stride / Q_BLOCK;
    int n_pairs = (n_tokens + 1) / 2;
    float32x4_t acc[MAX_BATCH / 2][8][4];   // (token pair, partial, row pair)
    for (int row = row_begin; row < row_end; row += Q4_TILE_ROWS) {
        int tile = row / Q4_TILE_ROWS, n_rows = row_end - row < Q4_TILE_ROWS ? row_end - row : Q4_TILE_ROWS;
        const uint8_t *nibbles = w->nibbles + (size_t)tile * n_blocks * Q4_TILE_BLOCK_BYTES;
        const uint16_t *scales = w->scales + (size_t)tile * n_groups * Q4_TILE_ROWS;
        for (int tp = 0; tp < n_pairs; tp++)
            for (int i = 0; i < 8; i++)
                for (int p = 0; p < 4; p++) acc[tp][i][p] = vdupq_n_f32(0.0f);
        for (int b = 0; b < n_blocks; b++) {   // a block's weights in registers, the token pairs streaming
            int8x16_t q[4][4];
            float32x4_t w_scales[4], s[2];
            unpack_q4_tile_block_i8mm(q, nibbles + (size_t)b * Q4_TILE_BLOCK_BYTES);
            tile_scales_neon(s, scales + (size_t)(b >> group_shift) * Q4_TILE_ROWS);
            for (int h = 0; h < 2; h++) {
                w_scales[2 * h] = vzip1q_f32(s[h], s[h]);
                w_scales[2 * h + 1] = vzip2q_f32(s[h], s[h]);
            }
            for (int tp = 0; tp < n_pairs; tp++) {
                int t0 = 2 * tp, t1 = t0 + 1 < n_tokens ? t0 + 1 : t0;
                int8x16_t a[4];
                activations_pair_i8mm(a, x->values + (size_t)t0 * x->stride + b * Q_BLOCK,
                                      x->values + (size_t)t1 * x->stride + b * Q_BLOCK);
                float32x2_t pair = vset_lane_f32(x->scales[(size_t)t1 * x_blocks + b], vdup_n_f32(x->scales[(size_t)t0 * x_blocks + b]), 1);
                float32x4_t x_scales = vcombine_f32(pair, pair);
                for (int p = 0; p < 4; p++) {
                    int32x4_t isum = vmmlaq_s32(vdupq_n_s32(0), q[p][0], a[0]);
                    for (int o = 1; o < 4; o++) isum = vmmlaq_s32(isum, q[p][o], a[o]);
                    acc[tp][b % 8][p] = vaddq_f32(acc[tp][b % 8][p], vmulq_f32(vmulq_f32(w_scales[p], x_scales), vcvtq_f32_s32(isum)));
                }
            }
        }
        for (int tp = 0; tp < n_pairs; tp++) {
            int t0 = 2 * tp;
            for (int p = 0; p < 4 && 2 * p < n_rows; p++) {
                float32x4_t partial[8], sums;
                for (int i = 0; i < 8; i++) partial[i] = acc[tp][i][p];
                sums = reduce8_lanes_neon(partial);
                float lanes[4];
                vst1q_f32(lanes, sums);
                for (int r = 0; r < 2 && 2 * p + r < n_rows; r++) {
                    out[(size_t)t0 * out_stride + row + 2 * p + r] = lanes[2 * r];
                    if (t0 + 1 < n_tokens) out[(size_t)(t0 + 1) * out_stride + row + 2 * p + r] = lanes[2 * r + 1];
                }
            }
        }
    }
}
// Decoding has one token: smmla would waste half its products, so sdot decodes.
TARGET_I8MM static void matmul_q4_neon_i8mm(float *out, int out_stride, const Tensor *w, int row_begin, int row_end,
                                            const QuantizedActivations *x, int n_tokens) {
    if (n_tokens == 1) matmul_q4_neon_dotprod(out, out_stride, w, row_begin, row_end, x, n_tokens);
    else matmul_q4_i8mm_tiles(out, out_stride, w, row_begin, row_end, x, n_tokens);
}

// The other types keep neon-dotprod's kernels (their rows are not in tiles).
static const Kernels kernels_neon_i8mm = {
    "neon-i8mm", quantize_q8_neon, to_f16_neon, { [TYPE_Q8] = matmul_q8_neon_dotprod, [TYPE_Q4] = matmul_q4_neon_i8mm,
                   [TYPE_Q3] = matmul_q3_neon_dotprod, [TYPE_Q2] = matmul_q2_neon_dotprod, [TYPE_Q4S] = matmul_q4s_neon_dotprod },
    scores_f16_neon, mix_f16_neon, scores_q8_neon, mix_q8_neon, softmax_neon,
    build_tables_neon, { [TYPE_Q3] = matmul_lut_q3_neon, [TYPE_Q2] = matmul_lut_q2_neon } };

// HWCAP2_I8MM in the auxiliary vector's second word.
#if defined(__linux__)
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
static int cpu_has_i8mm(void) { return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0; }
#elif defined(__ARM_FEATURE_MATMUL_INT8)
static int cpu_has_i8mm(void) { return 1; }
#else
static int cpu_has_i8mm(void) { return 0; }
#endif
#endif
#endif
#endif

// ---- Choosing the kernels: once per run, from what this CPU can do.

// Every kernel set this build can run on this CPU, the reference first and
// the fastest last (tests compare each with the first).
static int runnable_kernels(Kernels *out) {
    int n = 0;
    out[n++] = kernels_scalar;
#ifdef HAVE_AVX2_KERNELS
    if (cpu_has_avx2()) {
        out[n++] = kernels_avx2;
        if (cpu_has_avx_vnni()) out[n++] = kernels_avx_vnni;
        if (cpu_has_avx512_vnni()) out[n++] = kernels_avx512_vnni;
    }
#endif
#ifdef HAVE_NEON_KERNELS
    out[n++] = kernels_neon;
#ifdef HAVE_NEON_DOTPROD_KERNELS
    if (cpu_has_dotprod()) out[n++] = kernels_neon_dotprod;
#endif
#ifdef HAVE_NEON_I8MM_KERNELS
    if (cpu_has_dotprod() && cpu_has_i8mm()) out[n++] = kernels_neon_i8mm;
#endif
#endif
    return n;
}
#define MAX_KERNEL_SETS 4   // x86: scalar, avx2; aarch64: scalar, neon, neon-dotprod, neon-i8mm

// The sets this build carries that this CPU cannot run, each with what it
// lacks (the tests skip them loudly); returns how many.
__attribute__((unused)) static int unrunnable_kernels(const char *lacking[MAX_KERNEL_SETS]) {
    int n = 0;
#ifdef HAVE_AVX2_KERNELS
    if (!cpu_has_avx2()) lacking[n++] = "avx2 (needs AVX2 and F16C)";
    if (!cpu_has_avx2() || !cpu_has_avx_vnni()) lacking[n++] = "avx-vnni (needs AVX-VNNI)";
    if (!cpu_has_avx2() || !cpu_has_avx512_vnni()) lacking[n++] = "avx512-vnni (needs AVX-512 F, BW, VL and VNNI)";
#endif
#ifdef HAVE_NEON_DOTPROD_KERNELS
    if (!cpu_has_dotprod()) lacking[n++] = "neon-dotprod (needs the dot-product extension)";
#endif
    return n;
}

// The fastest kernels this CPU runs; RUNQ_KERNELS=name forces another
// runnable set (scalar: the reference, to compare or to teach).
static Kernels select_kernels(void) {
    Kernels sets[MAX_KERNEL_SETS];
    int n = runnable_kernels(sets);
    const char *forced = getenv("RUNQ_KERNELS");
    if (!forced || !forced[0]) return sets[n - 1];
    for (int i = 0; i < n; i++) if (strcmp(forced, sets[i].name) == 0) return sets[i];
    char names[128] = "";
    for (int i = 0; i < n; i++) snprintf(names + strlen(names), sizeof names - strlen(names), " %s", sets[i].name);
    die("RUNQ_KERNELS=%s is not available; this build and CPU run:%s", forced, names);
    return sets[0];
}

// ----------------------------------------------------------------------------
// Thread pool: threads are created once. A task is n_chunks independent
// pieces of work (a product's rows in whole Q4 tiles, attention's (token,
// head) pairs). Each thread, the caller included, has a contiguous share of
// the pieces and claims them one at a time from its own counter; a thread
// out of pieces takes the rest of another's share from that thread's counter.
// So a thread the OS has descheduled (a busy machine: other programs want the
// cores) holds up only the piece it is running, and one that has not woken up
// yet holds up nothing: the others take its share. Which thread computes a
// piece never changes its arithmetic, so results are bit-identical for any -T.

typedef void (*ChunkFn)(void *arg, int chunk, int thread_index);   // thread_index: 0..n_threads-1, for scratch rows

// How long a waiting thread spins before it sleeps, and how that adapts (see
// spin_until): between a token's products the next task follows within
// microseconds, and a sleeping thread takes tens of them to wake.
#define SPIN_MAX_NS 100000
#define SPIN_MIN_NS 1000

typedef struct {
    int64_t budget_ns;       // the spin's length now, SPIN_MIN_NS..SPIN_MAX_NS
    double best_rate;        // the most pauses per ns a spin has made: the rate of a thread not descheduled
} Spinner;

// A share of a task's pieces: (end << 32) | the next unclaimed piece. One
// fetch_add claims a piece (or finds none left) of whatever task the counter
// holds by then; each counter has its own cache line, so a thread claiming
// from its own share does not disturb the others.
typedef struct { _Alignas(64) _Atomic uint64_t next_end; } ClaimCounter;

// Threads on a busy machine. A decoding step of a small model is some
// fifty tasks of a few microseconds. With another program busy on a core,
// the OS shares the cores among more threads than there are: a pool thread
// descheduled in the middle of a piece holds the step up for a time slice,
// and waking one that went to sleep costs a system call a task. -T 2 ran
// stories15M's decode at 0.64x -T 1's so: most steps as fast as ever, one
// now and then many times slower. Signs of it: the pool's contention (a
// spin that was descheduled, a piece that outlasted the caller's spin) and
// a step over twice the median of the few before it. On those, single-token
// steps try half the threads for TUNE_PROBE_STEPS steps (at the first sign,
// then after 16 more, 32, ... while such probes lose). The current count
// keeps a running mean of its steps (over its last 32 or so, the rare slow
// ones included: they are the cost; a median or the fastest would favour
// the count that scatters most, the worse one), and the probe's count is
// kept when the probe's mean beats it by 5 %; a probe whose first two steps
// average half as slow again loses at once. With fewer threads than -T it
// tries twice as many after 64 steps, then 128, ... 512 while that loses,
// so a machine that quietens gets its threads back. A machine without those
// signs never probes. The thread count never changes a result.
#define TUNE_PROBE_STEPS 8
#define TUNE_EARLY_STEPS 2
#define TUNE_MEAN_STEPS 32       // a count's running mean weighs its last 32 steps or so
#define TUNE_DOWN_INTERVAL 16    // contended steps before a probe of fewer threads (after the first: that one at once)
#define TUNE_UP_INTERVAL 64      // steps with fewer threads than -T before a probe of more
#define TUNE_MAX_INTERVAL 512    // the intervals double while probes lose, up to this
#define TUNE_WIN 0.95            // a probe wins at this fraction of the current count's mean or less
#define TUNE_LOSE 1.5            // and loses after TUNE_EARLY_STEPS at this fraction or more
#define TUNE_LEVELS 8            // the counts tried: -T, -T/2, -T/4, ... down to 1

typedef struct {
    int max_threads;         // -T
    int level;               // single-token steps run on max_threads >> level threads (at least one)
    int probe_level;         // the count being tried; -1: none
    int probe_steps;         // steps of the probe so far
    double probe_sum;        // their seconds
    double mean;             // the current count's running mean step (seconds), the probe that chose it included
    long mean_steps;         // the steps in it
    double recent[TUNE_PROBE_STEPS];   // the last steps at the current count, the newest at [settled % TUNE_PROBE_STEPS]
    long settled;            // steps at the current count since it was chosen (a winning probe's among them)
    int until_down, down_interval;   // contended steps until a probe of fewer threads, and what it starts from
    int until_up, up_interval;       // steps until a probe of more threads (fewer than -T now), and what it starts from
} ThreadTuner;

static ThreadTuner thread_tuner(int max_threads) {
    return (ThreadTuner){ .max_threads = max_threads, .probe_level = -1, .until_down = 1, .down_interval = TUNE_DOWN_INTERVAL,
                          .until_up = TUNE_UP_INTERVAL, .up_interval = TUNE_UP_INTERVAL };
}

static int threads_at_level(const ThreadTuner *tuner, int level) {
    return tuner->max_threads >> level > 0 ? tuner->max_threads >> level : 1;
}

// The thread count the next single-token step runs with.
static int tuner_threads(const ThreadTuner *tuner) {
    return threads_at_level(tuner, tuner->probe_level >= 0 ? tuner->probe_level : tuner->level);
}

// A step over twice the median of the last few at the current count.
static int step_stands_out(const ThreadTuner *tuner, double seconds) {
    int n = tuner->settled < TUNE_PROBE_STEPS ? (int)tuner->settled : TUNE_PROBE_STEPS;
    if (n < TUNE_EARLY_STEPS) return 0;
    double sorted[TUNE_PROBE_STEPS];
    memcpy(sorted, tuner->recent, sizeof(double) * (size_t)n);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
            double swap = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = swap;
        }
    return seconds > 2 * sorted[n / 2];
}

static void end_probe(ThreadTuner *tuner, int won) {
    int *interval = tuner->probe_level > tuner->level ? &tuner->down_interval : &tuner->up_interval;
    if (won) {   // the probe's steps become the new count's first
        tuner->level = tuner->probe_level;
        tuner->mean = tuner->probe_sum / tuner->probe_steps;
        tuner->mean_steps = tuner->probe_steps;
        tuner->settled = 0;
        tuner->down_interval = TUNE_DOWN_INTERVAL;
        tuner->up_interval = TUNE_UP_INTERVAL;
    } else if (*interval < TUNE_MAX_INTERVAL) {
        *interval *= 2;
    }
    tuner->probe_level = -1;
    tuner->until_down = tuner->down_interval;
    tuner->until_up = tuner->up_interval;
}

// The single-token step just run at tuner_threads() took seconds; contended:
// the pool saw contention during it.
static void tuner_step(ThreadTuner *tuner, double seconds, int contended) {
    if (tuner->max_threads < 2) return;
    if (tuner->probe_level >= 0) {
        tuner->probe_sum += seconds;
        if (++tuner->probe_steps >= TUNE_EARLY_STEPS && tuner->probe_sum > TUNE_LOSE * tuner->mean * tuner->probe_steps)
            end_probe(tuner, 0);
        else if (tuner->probe_steps == TUNE_PROBE_STEPS)
            end_probe(tuner, tuner->probe_sum <= TUNE_WIN * tuner->mean * TUNE_PROBE_STEPS);
        return;
    }
    contended |= step_stands_out(tuner, seconds);
    long n = ++tuner->mean_steps;
    tuner->mean += (seconds - tuner->mean) / (double)(n < TUNE_MEAN_STEPS ? n : TUNE_MEAN_STEPS);
    tuner->recent[tuner->settled++ % TUNE_PROBE_STEPS] = seconds;
    int can_fewer = threads_at_level(tuner, tuner->level) > 1 && tuner->level + 1 < TUNE_LEVELS;
    int down = contended && can_fewer && --tuner->until_down <= 0;   // a quiet machine never gets here
    int up = tuner->level > 0 && --tuner->until_up <= 0;
    if (tuner->settled < TUNE_EARLY_STEPS || !(down || up)) return;
    tuner->probe_level = up ? tuner->level - 1 : tuner->level + 1;
    tuner->probe_steps = 0;
    tuner->probe_sum = 0;
}

struct ThreadPool {
    int n_threads;               // including the calling thread
    atomic_int active_threads;   // 1..n_threads: the threads the next tasks run on
    ThreadTuner tuner;           // what active_threads is for single-token steps
    atomic_int contention;       // times a thread was found descheduled, or the caller slept on a piece
    pthread_t *workers;          // (n_threads - 1,)
    pthread_mutex_t lock;
    pthread_cond_t wake;         // idle workers sleep here
    pthread_cond_t done;         // the caller sleeps here while the last pieces finish
    atomic_uint generation;      // bumped once per task
    ClaimCounter *shares;        // (n_threads,) each thread's share of the current task
    atomic_uint chunks_done;     // pieces of the current task finished
    atomic_int sleeping_workers; // so the caller signals only when someone sleeps
    atomic_int caller_sleeping;
    atomic_int stop;
    Spinner caller_spin;
    ChunkFn fn;                  // the current task: set before the shares are published
    void *arg;
    unsigned n_chunks;
};

typedef struct { ThreadPool *pool; int index; } WorkerStart;

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

static int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Spin until *word equals value (or differs from it: want_equal 0), at most
// the spinner's budget; returns whether it got there. The budget adapts:
// a spin during which the thread made fewer than half the pauses per
// nanosecond it makes when it has the core was partly descheduled: the
// machine is busy, and spinning takes a core that a thread we wait for may
// need, so the budget halves (and contention, when given, counts it). A
// wait that ends within the spin doubles it back.
static int spin_until(Spinner *s, atomic_uint *word, unsigned value, int want_equal, atomic_int *contention) {
    int64_t start = monotonic_ns(), elapsed = 0;
    long pauses = 0;
    int reached = 0;
    while (!(reached = (atomic_load_explicit(word, memory_order_acquire) == value) == want_equal)) {
        cpu_relax();
        if (++pauses % 16 == 0 && (elapsed = monotonic_ns() - start) >= s->budget_ns) break;
    }
    if (elapsed >= 2000) {   // long enough to measure a rate
        double rate = (double)pauses / (double)elapsed;
        if (rate > s->best_rate) s->best_rate = rate;
        if (rate < s->best_rate / 2) {
            s->budget_ns = s->budget_ns / 2 > SPIN_MIN_NS ? s->budget_ns / 2 : SPIN_MIN_NS;
            if (contention) atomic_fetch_add_explicit(contention, 1, memory_order_relaxed);
            return reached;
        }
    }
    if (reached) s->budget_ns = s->budget_ns * 2 < SPIN_MAX_NS ? s->budget_ns * 2 : SPIN_MAX_NS;
    return reached;
}

// Claim and run pieces of the current task until none is left: this
// thread's share first, then what is left of the others'. The pieces done
// are counted once, at the end (one atomic add per thread, not per piece).
static void run_chunks(ThreadPool *pool, int thread_index) {
    unsigned done = 0, n_chunks = 0;
    for (int k = 0; k < pool->n_threads; k++) {
        ClaimCounter *share = &pool->shares[(thread_index + k) % pool->n_threads];
        for (;;) {
            uint64_t claim = atomic_fetch_add(&share->next_end, 1);
            uint32_t chunk = (uint32_t)claim, end = (uint32_t)(claim >> 32);
            if (chunk >= end) break;
            // a piece claimed is of the task whose fn and arg are set: the
            // caller sets the next task's only when every piece of this one is done
            pool->fn(pool->arg, (int)chunk, thread_index);
            done++;
        }
    }
    if (!done) return;
    n_chunks = pool->n_chunks;
    if (atomic_fetch_add(&pool->chunks_done, done) + done == n_chunks && atomic_load(&pool->caller_sleeping)) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->done);
        pthread_mutex_unlock(&pool->lock);
    }
}

// Each side announces that it sleeps (an atomic read-modify-write) before it
// checks the condition, and the other side changes the condition (also a
// read-modify-write) before it checks for sleepers, so no wake-up is lost.
static void *worker_main(void *raw) {
    WorkerStart start = *(WorkerStart *)raw;
    free(raw);
    ThreadPool *pool = start.pool;
    Spinner spin = { SPIN_MAX_NS, 0.0 };
    unsigned seen = 0;
    for (;;) {
        if (!spin_until(&spin, &pool->generation, seen, 0, &pool->contention)) {
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleeping_workers, 1);
            while (atomic_load(&pool->generation) == seen) pthread_cond_wait(&pool->wake, &pool->lock);
            atomic_fetch_sub(&pool->sleeping_workers, 1);
            pthread_mutex_unlock(&pool->lock);
        }
        seen = atomic_load(&pool->generation);
        if (atomic_load(&pool->stop)) return NULL;
        if (start.index < atomic_load(&pool->active_threads)) run_chunks(pool, start.index);
    }
}

static ThreadPool *pool_create(int n_threads) {
    ThreadPool *pool = xcalloc(1, sizeof *pool, "thread pool");
    pool->n_threads = n_threads;
    atomic_init(&pool->active_threads, n_threads);
    pool->tuner = thread_tuner(n_threads);
    pool->caller_spin = (Spinner){ SPIN_MAX_NS, 0.0 };
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->workers = xcalloc((size_t)n_threads, sizeof(pthread_t), "thread pool");
    pool->shares = aligned_alloc(64, sizeof(ClaimCounter) * (size_t)n_threads);
    if (!pool->shares) die("out of memory allocating the thread pool");
    for (int i = 0; i < n_threads; i++) atomic_init(&pool->shares[i].next_end, 0);
    for (int i = 1; i < n_threads; i++) {
        WorkerStart *start = xcalloc(1, sizeof *start, "thread pool");
        start->pool = pool;
        start->index = i;
        if (pthread_create(&pool->workers[i - 1], NULL, worker_main, start) != 0)
            die("cannot start thread %d of %d", i, n_threads);
    }
    return pool;
}

// fn(arg, chunk, thread_index) for chunk = 0..n_chunks-1, each once, on
// whichever threads claim them; returns when all are done. The caller works
// too, and waits only for pieces other threads have claimed and not finished.
static void pool_run_chunks(ThreadPool *pool, ChunkFn fn, void *arg, int n_chunks) {
    int active = atomic_load(&pool->active_threads);
    if (active == 1 || n_chunks <= 1) {
        for (int chunk = 0; chunk < n_chunks; chunk++) fn(arg, chunk, 0);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    pool->n_chunks = (unsigned)n_chunks;
    atomic_store(&pool->chunks_done, 0);
    for (int i = 0; i < pool->n_threads; i++) {   // thread i's share: pieces [begin, end); none for the inactive
        uint64_t begin = i < active ? (uint64_t)n_chunks * i / active : 0, end = i < active ? (uint64_t)n_chunks * (i + 1) / active : 0;
        atomic_store(&pool->shares[i].next_end, end << 32 | begin);
    }
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleeping_workers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    run_chunks(pool, 0);
    if (spin_until(&pool->caller_spin, &pool->chunks_done, (unsigned)n_chunks, 1, &pool->contention)) return;
    atomic_fetch_add_explicit(&pool->contention, 1, memory_order_relaxed);   // a piece outlasted the spin
    pthread_mutex_lock(&pool->lock);
    // an exchange, not a store: a read-modify-write is a full fence on every CPU
    // (and under qemu), so the load of chunks_done below cannot overtake it
    atomic_exchange(&pool->caller_sleeping, 1);
    while (atomic_load(&pool->chunks_done) != (unsigned)n_chunks) pthread_cond_wait(&pool->done, &pool->lock);
    atomic_store(&pool->caller_sleeping, 0);
    pthread_mutex_unlock(&pool->lock);
}

// The older shape of a task, for the tools' work split by thread: fn(arg, i,
// n_threads) for each i = 0..n_threads-1, as pieces (so a slice a late
// thread would have taken is run by another). i is unique while fn runs: a
// slice's own scratch is safe.
typedef void (*TaskFn)(void *arg, int slice, int n_slices);
typedef struct { TaskFn fn; void *arg; int n_slices; } SliceTask;

static void run_task_slice(void *raw, int chunk, int thread_index) {
    (void)thread_index;
    SliceTask *task = raw;
    task->fn(task->arg, chunk, task->n_slices);
}

__attribute__((unused)) static void pool_run(ThreadPool *pool, TaskFn fn, void *arg) {
    SliceTask task = { fn, arg, pool->n_threads };
    pool_run_chunks(pool, run_task_slice, &task, pool->n_threads);
}

static void pool_free(ThreadPool *pool) {
    if (!pool) return;
    atomic_store(&pool->stop, 1);
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->workers[i - 1], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool->shares);
    free(pool->workers);
    free(pool);
}

// ---- The default thread count (-T): the cores this process may run on (its
// affinity, as taskset sets it: /proc/self/status), of those only the big
// ones on a big.LITTLE chip (cpu_capacity within 3/4 of the highest, or
// cpufreq's maximum frequency where the kernel gives no capacity: an RK3588's
// four A76 cores, not its A55s, whose slower pieces would end every product
// late), less the cores other programs keep busy now (the tasks /proc/loadavg
// counts running, less this one: the fewest of four looks 0.5 ms apart, so a
// passing kernel thread does not count); at least one. /proc/loadavg counts
// the whole machine: in a container given a few cores of a busy host, give
// -T. Without /proc: the online cores.
#define MAX_CPUS 4096

// The CPUs of a list like "0-3,6\n", at most max of them; how many.
static int parse_cpu_list(const char *list, int *cpus, int max) {
    int n = 0;
    while (*list && *list != '\n') {
        char *end;
        long first = strtol(list, &end, 10), last = first;
        if (end == list || first < 0) return n;
        if (*end == '-') { list = end + 1; last = strtol(list, &end, 10); if (end == list) return n; }
        for (long cpu = first; cpu <= last && n < max; cpu++) cpus[n++] = (int)cpu;
        list = *end == ',' ? end + 1 : end;
    }
    return n;
}

// A number a sysfs file holds; -1 when there is none.
static long read_sysfs_number(const char *path) {
    FILE *f = fopen(path, "r");
    long value = -1;
    if (f) {
        if (fscanf(f, "%ld", &value) != 1) value = -1;
        fclose(f);
    }
    return value;
}

static int running_tasks(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    double load1, load5, load15;
    int running = 0, total;
    if (f) {
        if (fscanf(f, "%lf %lf %lf %d/%d", &load1, &load5, &load15, &running, &total) != 5) running = 0;
        fclose(f);
    }
    return running;
}

// The big cores this process may run on.
static int big_cores(void) {
    static int cpus[MAX_CPUS];
    static long speed[MAX_CPUS];
    int n = 0;
    char line[8192];
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Cpus_allowed_list:", 18) == 0) n = parse_cpu_list(line + 18 + strspn(line + 18, " \t"), cpus, MAX_CPUS);
        fclose(f);
    }
    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        return online > 0 ? (int)online : 1;
    }
    long fastest = 0;
    for (int i = 0; i < n; i++) {
        char path[128];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cpu_capacity", cpus[i]);
        if ((speed[i] = read_sysfs_number(path)) < 0) {
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq", cpus[i]);
            speed[i] = read_sysfs_number(path);
        }
        if (speed[i] > fastest) fastest = speed[i];
    }
    int big = 0;
    for (int i = 0; i < n; i++) big += fastest <= 0 || speed[i] * 4 >= fastest * 3;
    return big;
}

// runq's default -T (the server, which runs for hours, takes big_cores()).
static int default_run_threads(void) {
    int running = running_tasks();
    for (int look = 1; look < 4 && running > 1; look++) {
        usleep(500);
        int now = running_tasks();
        if (now < running) running = now;
    }
    int threads = big_cores() - (running > 1 ? running - 1 : 0);
    return threads > 0 ? threads : 1;
}

// Up to three products of one input run as one task (q,k,v; gate,up), so the
// threads meet once per group instead of once per matrix.
typedef struct {
    int count;
    float *out[3];                    // (n_tokens, rows of w[m])
    const Tensor *w[3];
    const QuantizedActivations *x;
    int n_tokens;
    const Kernels *kernels;
    int tiles_per_chunk;              // a piece: this many whole tiles of one matrix's rows
    int first_chunk[4];               // matrix m's pieces: first_chunk[m] .. first_chunk[m + 1] - 1
} MatmulTask;

static void matmul_task(void *arg, int chunk, int thread_index) {
    (void)thread_index;
    MatmulTask *task = arg;
    int m = 0;
    while (chunk >= task->first_chunk[m + 1]) m++;
    const Tensor *w = task->w[m];
    int rows = task->tiles_per_chunk * Q4_TILE_ROWS, begin = (chunk - task->first_chunk[m]) * rows;
    int end = begin + rows < w->rows ? begin + rows : w->rows;
    MatmulFn matmul = w->lut_codes ? task->kernels->matmul_lut[w->type] : task->kernels->matmul[w->type];
    matmul(task->out[m], w->rows, w, begin, end, task->x, task->n_tokens);
}

// The products cut into pieces of whole tiles, an even number of them (the
// avx512-vnni kernels take tiles in pairs; four, 32 rows, when a matrix is
// repacked for the table-lookup kernels): about eight a thread, so the
// share of a thread that is late is taken by the others in small steps (one
// piece a matrix on one thread); then run on the pool.
static void run_matmul_task(ThreadPool *pool, MatmulTask *task) {
    int tiles[3], total = 0, multiple = 2;
    for (int m = 0; m < task->count; m++) {
        total += tiles[m] = (task->w[m]->rows + Q4_TILE_ROWS - 1) / Q4_TILE_ROWS;
        if (task->w[m]->lut_codes) multiple = LUT_TILE_ROWS / Q4_TILE_ROWS;
    }
    int per_chunk = pool->n_threads == 1 ? total : total / (8 * pool->n_threads);
    per_chunk = per_chunk < multiple ? multiple : (per_chunk + multiple - 1) / multiple * multiple;
    task->tiles_per_chunk = per_chunk;
    task->first_chunk[0] = 0;
    for (int m = 0; m < task->count; m++) task->first_chunk[m + 1] = task->first_chunk[m] + (tiles[m] + per_chunk - 1) / per_chunk;
    pool_run_chunks(pool, matmul_task, task, task->first_chunk[task->count]);
}

// out_m (n_tokens, rows_m) = x W_m^T for each of the count weights, which all
// take the same input x (n_tokens, cols) with rows x_stride apart. The input is
// quantized once for all of them.
// A run-time LoRA adapter's share: out (n_tokens, rows) += lora_b (lora_a x),
// in fp32 from the unquantized input. rank * (rows + cols) multiply-adds a
// token against rows * cols for the matrix: about 1 % at rank 16 on a
// 4096-wide layer, so one thread does it.
#define MAX_LORA_RANK 1024
static void add_lora(float *out, const Tensor *w, const float *x, int x_stride, int n_tokens) {
    float down[MAX_LORA_RANK];
    for (int t = 0; t < n_tokens; t++) {
        const float *xt = x + (size_t)t * x_stride;
        for (int k = 0; k < w->lora_rank; k++) {
            const float *a = w->lora_a + (size_t)k * w->cols;
            float sum = 0.0f;
            for (int c = 0; c < w->cols; c++) sum += a[c] * xt[c];
            down[k] = sum;
        }
        for (int r = 0; r < w->rows; r++) {
            const float *b = w->lora_b + (size_t)r * w->lora_rank;
            float sum = 0.0f;
            for (int k = 0; k < w->lora_rank; k++) sum += b[k] * down[k];
            out[(size_t)t * w->rows + r] += sum;
        }
    }
}

// The prompt's tokens are quantized by all threads, QUANTIZE_CHUNK tokens a
// piece (one token's quantization is too short to share).
#define QUANTIZE_CHUNK 4
typedef struct {
    QuantizeFn quantize_q8;
    void (*build_tables)(QuantizedActivations *x, int n_padded, int n_tokens);   // NULL: no tables wanted
    QuantizedActivations *out;
    const float *x;
    int x_stride, n, n_padded, n_tokens;
} QuantizeTask;

static void quantize_task(void *arg, int chunk, int thread_index) {
    (void)thread_index;
    QuantizeTask *task = arg;
    int begin = chunk * QUANTIZE_CHUNK, end = begin + QUANTIZE_CHUNK < task->n_tokens ? begin + QUANTIZE_CHUNK : task->n_tokens;
    QuantizedActivations slice = *task->out;
    size_t x_blocks = (size_t)slice.stride / Q_BLOCK;
    slice.values += (size_t)begin * slice.stride;
    slice.scales += (size_t)begin * x_blocks;
    slice.sums += (size_t)begin * x_blocks;
    task->quantize_q8(&slice, task->x + (size_t)begin * task->x_stride, task->x_stride, task->n, task->n_padded, end - begin);
    if (task->build_tables) {
        slice.tables += (size_t)begin * lut_table_bytes(slice.stride);
        task->build_tables(&slice, task->n_padded, end - begin);
    }
}

// A backend multiplies the types it names (OpenCL: Q4); the CPU, every type.
static int backend_runs(const Transformer *t, int count, const Tensor **w) {
    if (!t->backend) return 0;
    for (int m = 0; m < count; m++)
        if (!(t->backend->types & (1u << w[m]->type))) return 0;
    return 1;
}

static void matmuls(Transformer *t, int count, float **out, const Tensor **w, const float *x, int x_stride, int n_tokens) {
    if (backend_runs(t, count, w)) {
        t->backend->matmul(t->backend_state, t, count, out, w, x, x_stride, n_tokens);
    } else {
        QuantizedActivations *xq = &t->state.xq;
        int lookups = 0;   // a matrix repacked for the table-lookup kernels wants the tokens' tables
        for (int m = 0; m < count; m++) lookups |= w[m]->lut_codes != NULL;
        if (n_tokens == 1) {
            t->kernels.quantize_q8(xq, x, x_stride, w[0]->cols, w[0]->cols_padded, 1);
            if (lookups) t->kernels.build_tables(xq, w[0]->cols_padded, 1);
        } else {
            QuantizeTask quantize = { t->kernels.quantize_q8, lookups ? t->kernels.build_tables : NULL, xq, x, x_stride,
                                      w[0]->cols, w[0]->cols_padded, n_tokens };
            pool_run_chunks(t->pool, quantize_task, &quantize, (n_tokens + QUANTIZE_CHUNK - 1) / QUANTIZE_CHUNK);
        }
        MatmulTask task = { .count = count, .x = xq, .n_tokens = n_tokens, .kernels = &t->kernels };
        for (int m = 0; m < count; m++) { task.out[m] = out[m]; task.w[m] = w[m]; }
        run_matmul_task(t->pool, &task);
    }
    for (int m = 0; m < count; m++)   // an adapter's share, on any backend
        if (w[m]->lora_rank) add_lora(out[m], w[m], x, x_stride, n_tokens);
}

static void matmul1(Transformer *t, float *out, const Tensor *w, const float *x, int x_stride, int n_tokens) {
    matmuls(t, 1, &out, &w, x, x_stride, n_tokens);
}

// ----------------------------------------------------------------------------
// Matmul backends: the int4 products on another device. A plain build has
// none and runs the CPU kernels above; a build with -DUSE_OPENCL
// (make runq USE_OPENCL=1) has OpenCL. At start-up (prepare_run):
//   RUNQ_BACKEND=cpu       the CPU kernels, whatever the build has
//   RUNQ_BACKEND=opencl    OpenCL, or an error exit if it cannot run
//   (unset)                the build's backend when its device works, else
//                          one message ("opencl: ...; using the CPU") and the CPU
//   RUNQ_OPENCL_DEVICE=N   the N-th OpenCL device, counting over all platforms
//                          (default: the first GPU, else the first device)

#ifdef USE_OPENCL
#define CL_TARGET_OPENCL_VERSION 120   // the 1.2 API: Mali's and pocl's drivers both have it
#include <CL/cl.h>

// OpenCL, shaped for the Mali-G610 of the RK3588, whose GPU shares the DRAM
// with the CPU:
// - The weights are not copied: the mapped checkpoint is wrapped whole in one
//   read-only buffer (CL_MEM_USE_HOST_PTR) and each matrix is passed as its
//   offsets in it. On unified memory the GPU reads the pages the CPU would,
//   and a second copy would halve the largest model that fits in the board's
//   RAM. (A driver that cannot use host memory in place copies it, once, here.)
// - The activations are the int8 blocks of the CPU kernels, quantized on the
//   host by quantize_q8 and uploaded for each product (n_tokens x cols bytes,
//   small next to the weights). A block's integer dot product is then exact,
//   and the kernel follows the canonical arithmetic term for term (no fused
//   multiply-adds, eight partial sums, reduce8's tree): a conforming device
//   gives the CPU's outputs. int8 is also what the Mali's dot-product
//   instructions take (cl_arm_integer_dot_product_int8); float activations
//   would need every weight converted to float.
// - One work-item per (row, token): the plainest mapping, a row's sum done
//   by one item as on the CPU. README "OpenCL" says what a fast Mali kernel adds.
static const char opencl_source[] =
    "#pragma OPENCL FP_CONTRACT OFF\n"
    "// out[t * rows + r] = row r of W . token t's int8 activations, as runq.s matmul_q4_ref\n"
    "__kernel void matmul_q4_q8(__global const uchar *file, ulong nibbles_at, ulong scales_at,\n"
    "                           int rows, int n_blocks, int blocks_per_group,\n"
    "                           __global const char *x, __global const float *x_scales, int x_stride,\n"
    "                           __global float *out) {\n"
    "    int r = get_global_id(0), t = get_global_id(1);\n"
    "    // row r is lane r % 8 of tile r / 8 (see the format)\n"
    "    __global const uchar *w = file + nibbles_at + (size_t)(r / 8) * n_blocks * 128 + 4 * (r % 8);\n"
    "    __global const half *scales = (__global const half *)(file + scales_at)\n"
    "                                  + (size_t)(r / 8) * (n_blocks / blocks_per_group) * 8 + r % 8;\n"
    "    __global const char *a = x + (size_t)t * x_stride;\n"
    "    __global const float *a_scales = x_scales + (size_t)t * (x_stride / 32);\n"
    "    float partial[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };\n"
    "    for (int block = 0; block < n_blocks; block++) {\n"
    "        __global const uchar *b = w + (size_t)block * 128;   // the row's four bytes of each run\n"
    "        uchar16 nibbles = (uchar16)(vload4(0, b), vload4(0, b + 32), vload4(0, b + 64), vload4(0, b + 96));\n"
    "        int16 low = convert_int16(nibbles & (uchar16)15) - 8, high = convert_int16(nibbles >> (uchar16)4) - 8;\n"
    "        int16 p = low * convert_int16(vload16(2 * block, a)) + high * convert_int16(vload16(2 * block + 1, a));\n"
    "        int8 p8 = p.lo + p.hi;\n"
    "        int4 p4 = p8.lo + p8.hi;\n"
    "        int2 p2 = p4.lo + p4.hi;\n"
    "        float scale = vload_half(block / blocks_per_group * 8, scales) * a_scales[block];\n"
    "        partial[block % 8] += scale * (float)(p2.x + p2.y);\n"
    "    }\n"
    "    out[(size_t)t * rows + r] = ((partial[0] + partial[4]) + (partial[2] + partial[6]))\n"
    "                              + ((partial[1] + partial[5]) + (partial[3] + partial[7]));\n"
    "}\n";

typedef struct {
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel matmul;
    cl_mem weights;            // the whole mapped checkpoint, in place (CL_MEM_USE_HOST_PTR)
    const uint8_t *file_data;  // its host address: a tensor's offset is its pointer minus this
    size_t file_size;
    cl_mem x;                  // (MAX_BATCH, xq.stride) int8 activations
    cl_mem x_scales;           // (MAX_BATCH, xq.stride/Q_BLOCK)
    cl_mem out[3];             // (n_tokens, rows) of each product of a group; grown on demand
    size_t out_floats[3];
} OpenCL;

static const char *opencl_error(cl_int err) {
    switch (err) {
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL driver installed)";
    default: return "an OpenCL error (see CL/cl.h)";
    }
}

// a failed call during a run: the run cannot go on
static void opencl_check(cl_int err, const char *what) {
    if (err != CL_SUCCESS) die("opencl: %s failed: %s (%d)", what, opencl_error(err), err);
}

// a failed call at start-up: why, in message; returns whether it failed
static int opencl_failed(cl_int err, const char *what, char *message, size_t size) {
    if (err != CL_SUCCESS) snprintf(message, size, "%s failed: %s (%d)", what, opencl_error(err), err);
    return err != CL_SUCCESS;
}

#define OPENCL_MAX_PLATFORMS 8
#define OPENCL_MAX_DEVICES 16

// Every device of every platform, in the order RUNQ_OPENCL_DEVICE counts them.
static int opencl_devices(cl_device_id *devices) {
    cl_platform_id platforms[OPENCL_MAX_PLATFORMS];
    cl_uint n_platforms = 0;
    if (clGetPlatformIDs(OPENCL_MAX_PLATFORMS, platforms, &n_platforms) != CL_SUCCESS) return 0;
    int n = 0;
    for (cl_uint p = 0; p < n_platforms && n < OPENCL_MAX_DEVICES; p++) {
        cl_uint got = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, (cl_uint)(OPENCL_MAX_DEVICES - n), devices + n, &got) == CL_SUCCESS)
            n += (int)got;
    }
    return n;
}

static void opencl_device_name(cl_device_id device, char *name, size_t size) {
    if (clGetDeviceInfo(device, CL_DEVICE_NAME, size, name, NULL) != CL_SUCCESS) snprintf(name, size, "(unnamed)");
    name[size - 1] = '\0';
}

// RUNQ_OPENCL_DEVICE=N, or the first GPU, or the first device. A bad N is
// the user's mistake, not the machine's: an error exit naming the devices.
static cl_device_id opencl_choose_device(const cl_device_id *devices, int n) {
    const char *wanted = getenv("RUNQ_OPENCL_DEVICE");
    if (wanted && wanted[0]) {
        char *end;
        long index = strtol(wanted, &end, 10);
        if (*end == '\0' && index >= 0 && index < n) return devices[index];
        char names[1024] = "", name[128];
        for (int i = 0; i < n; i++) {
            opencl_device_name(devices[i], name, sizeof name);
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s %d: %s", i ? ";" : "", i, name);
        }
        die("RUNQ_OPENCL_DEVICE=%s is not a device index; this machine has %d device(s):%s", wanted, n, names);
    }
    for (int i = 0; i < n; i++) {
        cl_device_type type = 0;
        clGetDeviceInfo(devices[i], CL_DEVICE_TYPE, sizeof type, &type, NULL);
        if (type & CL_DEVICE_TYPE_GPU) return devices[i];
    }
    return devices[0];
}

// The program compiled for the device; NULL and the build log's first line
// in message if it does not compile.
static cl_program opencl_build(cl_context context, cl_device_id device, const char *source, char *message, size_t size) {
    cl_int err;
    cl_program program = clCreateProgramWithSource(context, 1, &source, NULL, &err);
    if (opencl_failed(err, "clCreateProgramWithSource", message, size)) return NULL;
    // -w: pocl warns about the calling convention of its own int16 helpers
    // (on CPUs without AVX-512), noise on stderr; errors still come back
    err = clBuildProgram(program, 1, &device, "-w", NULL, NULL);
    if (err == CL_SUCCESS) return program;
    size_t log_size = 0;
    clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
    char *log = xcalloc(log_size + 1, 1, "OpenCL build log");
    clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL);
    const char *first = log;
    while (*first == '\n' || *first == ' ') first++;
    snprintf(message, size, "the kernel does not build (%s): %.*s", opencl_error(err), (int)strcspn(first, "\n"), first);
    free(log);
    clReleaseProgram(program);
    return NULL;
}

static void opencl_free(void *state) {
    OpenCL *cl = state;
    if (!cl) return;
    for (int m = 0; m < 3; m++) if (cl->out[m]) clReleaseMemObject(cl->out[m]);
    if (cl->x_scales) clReleaseMemObject(cl->x_scales);
    if (cl->x) clReleaseMemObject(cl->x);
    if (cl->weights) clReleaseMemObject(cl->weights);
    if (cl->matmul) clReleaseKernel(cl->matmul);
    if (cl->program) clReleaseProgram(cl->program);
    if (cl->queue) clReleaseCommandQueue(cl->queue);
    if (cl->context) clReleaseContext(cl->context);
    free(cl);
}

// Device, queue, kernel, the checkpoint wrapped in place and the activation
// buffers; NULL with why not in message (on success: the device's name).
static void *opencl_init(const Transformer *t, char *message, size_t size) {
    cl_device_id devices[OPENCL_MAX_DEVICES];
    int n = opencl_devices(devices);
    if (n == 0) { snprintf(message, size, "no OpenCL platform or device"); return NULL; }
    cl_device_id device = opencl_choose_device(devices, n);
    OpenCL *cl = xcalloc(1, sizeof *cl, "OpenCL state");
    cl->file_data = t->file_data;
    cl->file_size = t->file_size;
    const QuantizedActivations *xq = &t->state.xq;
    cl_ulong largest_buffer = 0;
    clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof largest_buffer, &largest_buffer, NULL);
    cl_int err;
    cl->context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    if (opencl_failed(err, "clCreateContext", message, size)) goto fail;
    cl->queue = clCreateCommandQueue(cl->context, device, 0, &err);
    if (opencl_failed(err, "clCreateCommandQueue", message, size)) goto fail;
    if (!(cl->program = opencl_build(cl->context, device, opencl_source, message, size))) goto fail;
    cl->matmul = clCreateKernel(cl->program, "matmul_q4_q8", &err);
    if (opencl_failed(err, "clCreateKernel", message, size)) goto fail;
    if (t->file_size > largest_buffer) {
        snprintf(message, size, "the checkpoint's %zu MB exceed the device's largest buffer, %llu MB",
                 t->file_size >> 20, (unsigned long long)largest_buffer >> 20);
        goto fail;
    }
    cl->weights = clCreateBuffer(cl->context, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR, t->file_size, (void *)t->file_data, &err);
    if (opencl_failed(err, "wrapping the checkpoint (clCreateBuffer)", message, size)) goto fail;
    cl->x = clCreateBuffer(cl->context, CL_MEM_READ_ONLY, (size_t)MAX_BATCH * xq->stride, NULL, &err);
    if (opencl_failed(err, "clCreateBuffer", message, size)) goto fail;
    cl->x_scales = clCreateBuffer(cl->context, CL_MEM_READ_ONLY, (size_t)MAX_BATCH * (xq->stride / Q_BLOCK) * sizeof(float), NULL, &err);
    if (opencl_failed(err, "clCreateBuffer", message, size)) goto fail;
    opencl_device_name(device, message, size);
    return cl;
fail:
    opencl_free(cl);
    return NULL;
}

// Output buffer m, holding at least floats values.
static cl_mem opencl_output(OpenCL *cl, int m, size_t floats) {
    if (floats <= cl->out_floats[m]) return cl->out[m];
    if (cl->out[m]) clReleaseMemObject(cl->out[m]);
    cl_int err;
    cl->out[m] = clCreateBuffer(cl->context, CL_MEM_WRITE_ONLY, floats * sizeof(float), NULL, &err);
    opencl_check(err, "allocating an output buffer (clCreateBuffer)");
    cl->out_floats[m] = floats;
    return cl->out[m];
}

// matmuls' contract: the input quantized once on the host, then one kernel
// launch per weight, (rows, n_tokens) work-items each, and the outputs read back.
static void opencl_matmul(void *state, Transformer *t, int count, float **out, const Tensor **w,
                          const float *x, int x_stride, int n_tokens) {
    OpenCL *cl = state;
    QuantizedActivations *xq = &t->state.xq;
    quantize_q8(xq, x, x_stride, w[0]->cols, w[0]->cols_padded, n_tokens);
    size_t scales_per_token = (size_t)xq->stride / Q_BLOCK;
    opencl_check(clEnqueueWriteBuffer(cl->queue, cl->x, CL_FALSE, 0, (size_t)n_tokens * xq->stride, xq->values,
                                      0, NULL, NULL), "uploading activations");
    opencl_check(clEnqueueWriteBuffer(cl->queue, cl->x_scales, CL_FALSE, 0, n_tokens * scales_per_token * sizeof(float),
                                      xq->scales, 0, NULL, NULL), "uploading activation scales");
    for (int m = 0; m < count; m++) {
        const Tensor *wm = w[m];
        if (wm->nibbles < cl->file_data || wm->nibbles >= cl->file_data + cl->file_size)
            die("opencl: tensor %s is not in the mapped checkpoint", wm->name);
        cl_mem out_m = opencl_output(cl, m, (size_t)n_tokens * wm->rows);
        cl_ulong nibbles_at = (cl_ulong)(wm->nibbles - cl->file_data);
        cl_ulong scales_at = (cl_ulong)((const uint8_t *)wm->scales - cl->file_data);
        cl_int rows = wm->rows, n_blocks = wm->cols_padded / Q_BLOCK, blocks_per_group = wm->group_size / Q_BLOCK;
        cl_int stride = xq->stride;
        struct { size_t size; const void *value; } args[] = {
            { sizeof cl->weights, &cl->weights }, { sizeof nibbles_at, &nibbles_at }, { sizeof scales_at, &scales_at },
            { sizeof rows, &rows }, { sizeof n_blocks, &n_blocks }, { sizeof blocks_per_group, &blocks_per_group },
            { sizeof cl->x, &cl->x }, { sizeof cl->x_scales, &cl->x_scales }, { sizeof stride, &stride },
            { sizeof out_m, &out_m },
        };
        for (cl_uint i = 0; i < sizeof args / sizeof args[0]; i++)
            opencl_check(clSetKernelArg(cl->matmul, i, args[i].size, args[i].value), "clSetKernelArg");
        size_t global[2] = { (size_t)wm->rows, (size_t)n_tokens };
        opencl_check(clEnqueueNDRangeKernel(cl->queue, cl->matmul, 2, NULL, global, NULL, 0, NULL, NULL), "launching matmul_q4_q8");
    }
    for (int m = 0; m < count; m++)
        opencl_check(clEnqueueReadBuffer(cl->queue, cl->out[m], CL_TRUE, 0, (size_t)n_tokens * w[m]->rows * sizeof(float),
                                         out[m], 0, NULL, NULL), "reading the outputs back");
}

static const Backend backend_opencl = { "opencl", opencl_init, 1u << TYPE_Q4, opencl_matmul, opencl_free };
#endif

static const Backend *const backends[] = {
#ifdef USE_OPENCL
    &backend_opencl,
#endif
    NULL   // the end of the list (a plain build's list is just this)
};

// prepare_run's last step: the backend RUNQ_BACKEND names, else the build's
// first one whose device works, else none (the CPU kernels). Says which on stderr.
static void select_backend(Transformer *t) {
    const char *wanted = getenv("RUNQ_BACKEND");
    int forced = wanted && wanted[0];
    if (forced && strcmp(wanted, "cpu") == 0) return;
    char names[128] = "cpu";
    for (const Backend *const *b = backends; *b; b++) {
        snprintf(names + strlen(names), sizeof names - strlen(names), " %s", (*b)->name);
        if (forced && strcmp(wanted, (*b)->name) != 0) continue;
        char message[512];
        void *state = (*b)->init(t, message, sizeof message);
        if (state) {
            t->backend = *b;
            t->backend_state = state;
            fprintf(stderr, PROGRAM_NAME ": matmuls on %s: %s\n", (*b)->name, message);
            return;
        }
        if (forced) die("RUNQ_BACKEND=%s cannot run: %s", wanted, message);
        fprintf(stderr, PROGRAM_NAME ": %s: %s; using the CPU\n", (*b)->name, message);
    }
    if (forced) die("RUNQ_BACKEND=%s is not available; this build runs: %s", wanted, names);
}

// ----------------------------------------------------------------------------
// Math blocks

static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = weight[i] * (ss * x[i]);
}

// x -> cap * tanh(x / cap): Gemma 2's soft capping of attention scores and
// logits, which keeps them within (-cap, cap).
static float softcap(float x, float cap) { return cap * tanhf(x / cap); }

// GELU in its tanh approximation (PyTorch's gelu(approximate="tanh"), which
// Gemma's configs call gelu_pytorch_tanh): the GeGLU gate.
static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
}

// A batch's per-token math on the pool (during a prompt, serial work that
// would keep the other threads waiting): the RMSNorm of each token's row, a
// few tokens a piece, and the FFN's gate, a few thousand values a piece. The
// arithmetic of each value is the loop's it replaces; a piece is too short to
// share below these sizes, so a decoded token's runs on the calling thread.
#define NORM_PIECE 4        // tokens
#define GATE_PIECE 4096     // values
typedef struct {
    float *out;
    const float *x;          // (n, dim)
    const float *weight;
    int n, dim;
    float eps;
} NormTask;

static void rmsnorm_task(void *arg, int chunk, int thread_index) {
    (void)thread_index;
    NormTask *task = arg;
    for (int i = chunk * NORM_PIECE; i < task->n && i < (chunk + 1) * NORM_PIECE; i++)
        rmsnorm(task->out + (size_t)i * task->dim, task->x + (size_t)i * task->dim, task->weight, task->dim, task->eps);
}

static void rmsnorm_tokens(Transformer *t, float *out, const float *x, const float *weight, int n) {
    NormTask task = { out, x, weight, n, t->config.dim, t->config.norm_eps };
    pool_run_chunks(t->pool, rmsnorm_task, &task, (n + NORM_PIECE - 1) / NORM_PIECE);
}

typedef struct {
    float *gate;             // in: w1 x; out: act(w1 x) * w3 x
    const float *up;         // w3 x
    size_t count;
    int gelu;                // act: tanh-approximated GELU (GeGLU), else SiLU (SwiGLU)
} GateTask;

static void gate_task(void *arg, int chunk, int thread_index) {
    (void)thread_index;
    GateTask *task = arg;
    size_t begin = (size_t)chunk * GATE_PIECE, end = begin + GATE_PIECE < task->count ? begin + GATE_PIECE : task->count;
    for (size_t i = begin; i < end; i++) {
        float gate = task->gate[i];
        task->gate[i] = task->gelu ? gelu_tanh(gate) * task->up[i] : gate / (1.0f + expf(-gate)) * task->up[i];
    }
}

static void gated_activation(Transformer *t, float *gate, const float *up, size_t count) {
    GateTask task = { gate, up, count, t->config.activation == ACTIVATION_GELU_TANH };
    pool_run_chunks(t->pool, gate_task, &task, (int)((count + GATE_PIECE - 1) / GATE_PIECE));
}

static void softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

// cos and sin of (position x frequency) for each row of the batch (at its
// own position), times rope_attention_factor (1 but for LongRoPE), computed
// once per forward pass and shared by every layer and head that turns with
// this table.
static void rope_tables(RopeTable *table, int rotary_dim, float attention_factor, const int *positions, int n_tokens) {
    int half = rotary_dim / 2;
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < half; i++) {
            float angle = (float)positions[t] * table->freq[i];
            table->cos[t * half + i] = cosf(angle) * attention_factor;
            table->sin[t * half + i] = sinf(angle) * attention_factor;
        }
}

// Rotate consecutive pairs (v[2i], v[2i+1]) of each head by angle i, for
// the first rotary_dim dims; the rest pass unturned (partial rotary, Phi-4).
// export.c stores wq/wk rows in this interleaved order (as llama2.c does).
static void rope(float *x, int n_heads, int head_dim, int rotary_dim, const float *cos_row, const float *sin_row) {
    for (int h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (int i = 0; i < rotary_dim / 2; i++) {
            float v0 = v[2 * i], v1 = v[2 * i + 1];
            v[2 * i] = v0 * cos_row[i] - v1 * sin_row[i];
            v[2 * i + 1] = v0 * sin_row[i] + v1 * cos_row[i];
        }
    }
}

// Each head of x (n_heads, head_dim) RMS-normalized in place, with one
// weight for every head (Qwen 3's and Gemma 3's q_norm and k_norm).
static void head_norms(float *x, int n_heads, int head_dim, const float *weight, float eps) {
    for (int h = 0; h < n_heads; h++) rmsnorm(x + h * head_dim, x + h * head_dim, weight, head_dim, eps);
}

static void add_bias(float *x, const float *bias, int n) {
    for (int i = 0; i < n; i++) x[i] += bias[i];
}

// One head's row x (n,) -> int8 with scale max|x|/127, rounded to nearest.
static void quantize_kv_row(int8_t *out, float *scale, const float *x, int n) {
    float max = 0.0f;
    for (int i = 0; i < n; i++) max = fmaxf(max, fabsf(x[i]));
    *scale = max / 127.0f;
    float inverse = max > 0.0f ? 127.0f / max : 0.0f;
    for (int i = 0; i < n; i++) out[i] = (int8_t)lrintf(x[i] * inverse);
}

// The KV rows n tokens of sequence seq are about to write (positions
// pos0..pos0+n-1 of every layer), faulted in by one call per layer and cache instead of a
// page fault every 4 KiB (Linux 5.14's MADV_POPULATE_WRITE; without it the
// writes fault them in as before). The cache is sized for the whole run, so
// only the rows a prompt needs are faulted, when it needs them.
static void prefault_kv_rows(RunState *s, int n_layers, int kv_dim, int seq, int pos0, int n) {
#ifdef MADV_POPULATE_WRITE
    size_t page = (size_t)sysconf(_SC_PAGESIZE), row = s->kv_type == KV_Q8 ? (size_t)kv_dim : (size_t)kv_dim * 2;
    uint8_t *caches[2] = { s->kv_type == KV_Q8 ? (uint8_t *)s->key_cache_q8 : (uint8_t *)s->key_cache,
                           s->kv_type == KV_Q8 ? (uint8_t *)s->value_cache_q8 : (uint8_t *)s->value_cache };
    for (int l = seq * n_layers; l < (seq + 1) * n_layers; l++)
        for (int c = 0; c < 2; c++) {
            uintptr_t begin = (uintptr_t)(caches[c] + ((size_t)l * s->cache_len + pos0) * row), end = begin + (size_t)n * row;
            begin -= begin % page;
            madvise((void *)begin, end - begin, MADV_POPULATE_WRITE);   // a failure leaves the faults to the writes
        }
#else
    (void)s; (void)n_layers; (void)kv_dim; (void)seq; (void)pos0; (void)n;
#endif
}

// layer: the cache layer (a sequence's layers follow the previous sequence's)
static void store_kv(const Kernels *kernels, RunState *s, int layer, int pos, const float *k, const float *v, int kv_dim,
                     int head_dim) {
    size_t row = ((size_t)layer * s->cache_len + pos) * kv_dim;
    if (s->kv_type == KV_Q8) {
        size_t heads = (size_t)(kv_dim / head_dim), scale_row = ((size_t)layer * s->cache_len + pos) * heads;
        for (size_t h = 0; h < heads; h++) {
            quantize_kv_row(s->key_cache_q8 + row + h * head_dim, &s->key_scales[scale_row + h], k + h * head_dim, head_dim);
            quantize_kv_row(s->value_cache_q8 + row + h * head_dim, &s->value_scales[scale_row + h], v + h * head_dim, head_dim);
        }
        return;
    }
    kernels->to_f16(s->key_cache + row, k, kv_dim);
    kernels->to_f16(s->value_cache + row, v, kv_dim);
}

// The first position a query at pos attends to: 0, or on a LAYER_SLIDING
// layer the start of its window of sliding_window positions (its own the last).
static int first_attended(const Config *c, int layer, int pos) {
    int window = c->layer_kind[layer] & LAYER_SLIDING ? c->sliding_window : 0;
    return window && pos >= window ? pos - window + 1 : 0;
}

typedef struct {
    Transformer *t;
    int layer, n_tokens;
    int heads_per_piece;   // query heads of one KV head taken together (a divisor of n_heads / n_kv_heads)
} AttentionTask;

// Query heads that share a KV head go together, so that the fp16 kernels
// convert each key and value once for all of them; but never fewer than four
// pieces a thread, so that a decoded token's few KV heads still spread over
// the threads.
static int attention_heads_per_piece(const Config *c, int n_tokens, int n_threads) {
    int heads = c->n_heads / c->n_kv_heads;
    while (heads % 2 == 0 && n_tokens * (c->n_heads / heads) < 4 * n_threads) heads /= 2;
    return heads;
}

// Causal attention: batch row i (at position pos = row_pos[i] of sequence
// row_seq[i]) over that sequence's positions first..pos (first_attended: all
// of them but on a sliding layer); a row reads its own sequence's cache
// alone, so its numbers are those of the sequence run by itself. Each
// (token, heads_per_piece query heads of one KV head) is a piece of the task;
// a thread keeps its scores in its own rows; head h reads KV head h / (n_heads
// / n_kv_heads). Scores are q.k / score_divisor, soft-capped when the model
// says so (Gemma 2).
static void attention_task(void *arg, int item, int thread_index) {
    AttentionTask *task = arg;
    const Config *c = &task->t->config;
    const Kernels *k = &task->t->kernels;
    RunState *s = &task->t->state;
    int head_dim = c->head_dim, q_dim = c->n_heads * head_dim, kv_dim = c->n_kv_heads * head_dim;
    int group = c->n_heads / c->n_kv_heads, n_heads = task->heads_per_piece, pieces = c->n_heads / n_heads;
    size_t row = s->cache_len;
    float *att = s->att + (size_t)thread_index * group * row;
    int i = item / pieces, h = item % pieces * n_heads, pos = s->row_pos[i];
    int cache_layer = s->row_seq[i] * c->n_layers + task->layer;
    size_t layer_offset = (size_t)cache_layer * s->cache_len * kv_dim;
    int first = first_attended(c, task->layer, pos), seen = pos + 1 - first;
    const float *q = s->q + (size_t)i * q_dim + h * head_dim;
    float *out = s->xb + (size_t)i * q_dim + h * head_dim;
    size_t at = layer_offset + (size_t)first * kv_dim + (size_t)(h / group) * head_dim;
    size_t scales_at = ((size_t)cache_layer * s->cache_len + (size_t)first) * c->n_kv_heads + (size_t)(h / group);
    if (s->kv_type == KV_Q8)
        for (int j = 0; j < n_heads; j++)
            k->scores_q8(att + j * row, q + j * head_dim, s->key_cache_q8 + at, s->key_scales + scales_at, kv_dim,
                         c->n_kv_heads, seen, head_dim);
    else
        k->scores_f16(att, row, q, n_heads, s->key_cache + at, kv_dim, seen, head_dim);
    for (int j = 0; j < n_heads; j++) {
        float *scores = att + j * row;
        if (c->attention_softcap > 0) {   // Gemma 2: capped after the divisor, before the softmax
            for (int p = 0; p < seen; p++) scores[p] = softcap(scores[p] / c->score_divisor, c->attention_softcap);
            k->softmax(scores, seen, 1.0f);
        } else {
            k->softmax(scores, seen, c->score_divisor);
        }
    }
    if (s->kv_type == KV_Q8)
        for (int j = 0; j < n_heads; j++)
            k->mix_q8(out + j * head_dim, att + j * row, s->value_cache_q8 + at, s->value_scales + scales_at, kv_dim,
                      c->n_kv_heads, seen, head_dim);
    else
        k->mix_f16(out, att, row, n_heads, s->value_cache + at, kv_dim, seen, head_dim);
}

// ----------------------------------------------------------------------------
// Forward: n tokens (at most MAX_BATCH), each of its own sequence at its own
// position, through every layer as one batch, each weight read once; their
// keys and values land in their sequences' caches. Returns the logits of the
// rows asked for. runq's passes are one sequence: a prompt's chunk at
// positions pos0..pos0+n-1, or a decoded token (n = 1); the server's step is
// one token of each decoding slot beside a chunk of a new prompt. Every row's
// arithmetic is the same whatever else is in the batch (the kernels treat
// each token alone), so a sequence's logits do not depend on its company.
// Each layer is an attention block and an FFN block, each adding its branch
// to the residual stream x.

// The batch's embedding rows into x, times embedding_scale (Gemma: sqrt(dim)).
static void embed_tokens(Transformer *t, const int *tokens, int n) {
    const Config *c = &t->config;
    RunState *s = &t->state;
    for (int i = 0; i < n; i++) dequantize_row(s->x + (size_t)i * c->dim, &t->weights.tok_embeddings, tokens[i]);
    if (c->embedding_scale != 1.0f)
        for (size_t i = 0; i < (size_t)n * c->dim; i++) s->x[i] *= c->embedding_scale;
}

// The RoPE table layer l turns q and k with; NULL for a NoPE layer (SmolLM3).
static const RopeTable *layer_rope(const Transformer *t, int layer) {
    uint32_t kind = t->config.layer_kind[layer];
    if (kind & LAYER_NO_ROPE) return NULL;
    return &t->state.rope[kind & LAYER_LOCAL_ROPE ? ROPE_LOCAL : ROPE_GLOBAL];
}

// Batch token i's q, k and v after the projections: biases (Qwen 2), each
// head's RMSNorm of q and k (Qwen 3, Gemma 3), RoPE (unless a NoPE layer).
static void finish_qkv(Transformer *t, int layer, int i) {
    const Config *c = &t->config;
    const LayerWeights *lw = &t->weights.layers[layer];
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim, half = c->rotary_dim / 2;
    float *q = t->state.q + (size_t)i * q_dim, *k = t->state.k + (size_t)i * kv_dim, *v = t->state.v + (size_t)i * kv_dim;
    if (lw->bq.data) {
        add_bias(q, lw->bq.data, q_dim);
        add_bias(k, lw->bk.data, kv_dim);
        add_bias(v, lw->bv.data, kv_dim);
    }
    if (lw->q_norm.data) {
        head_norms(q, c->n_heads, c->head_dim, lw->q_norm.data, c->norm_eps);
        head_norms(k, c->n_kv_heads, c->head_dim, lw->k_norm.data, c->norm_eps);
    }
    const RopeTable *table = layer_rope(t, layer);
    if (table) {
        rope(q, c->n_heads, c->head_dim, c->rotary_dim, table->cos + i * half, table->sin + i * half);
        rope(k, c->n_kv_heads, c->head_dim, c->rotary_dim, table->cos + i * half, table->sin + i * half);
    }
}

// A branch's output for the batch (n rows of dim in xb2) joins the residual
// stream x, through its post norm first when the model has one (Gemma).
static void add_branch(Transformer *t, const Tensor *post_norm, int n) {
    const Config *c = &t->config;
    RunState *s = &t->state;
    if (post_norm->data)
        for (int i = 0; i < n; i++)
            rmsnorm(s->xb2 + (size_t)i * c->dim, s->xb2 + (size_t)i * c->dim, post_norm->data, c->dim, c->norm_eps);
    for (size_t i = 0; i < (size_t)n * c->dim; i++) s->x[i] += s->xb2[i];
}

// Attention: q, k, v from one quantized input; k and v go to the cache; the
// attended values through wo.
static void attention_block(Transformer *t, int layer, int n) {
    const Config *c = &t->config;
    const LayerWeights *lw = &t->weights.layers[layer];
    RunState *s = &t->state;
    int dim = c->dim, q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    rmsnorm_tokens(t, s->xb, s->x, lw->attention_norm.data, n);
    float *qkv_out[3] = { s->q, s->k, s->v };
    const Tensor *qkv_w[3] = { &lw->wq, &lw->wk, &lw->wv };
    matmuls(t, 3, qkv_out, qkv_w, s->xb, dim, n);
    for (int i = 0; i < n; i++) {
        finish_qkv(t, layer, i);
        store_kv(&t->kernels, s, s->row_seq[i] * c->n_layers + layer, s->row_pos[i], s->k + (size_t)i * kv_dim,
                 s->v + (size_t)i * kv_dim, kv_dim, c->head_dim);
    }
    AttentionTask attention = { t, layer, n, attention_heads_per_piece(c, n, t->pool->n_threads) };
    pool_run_chunks(t->pool, attention_task, &attention, n * c->n_heads / attention.heads_per_piece);
    matmul1(t, s->xb2, &lw->wo, s->xb, q_dim, n);
    add_branch(t, &lw->post_attention_norm, n);
}

// Feed-forward: w2(act(w1 x) * w3 x), act SiLU (SwiGLU) or GELU (GeGLU).
static void ffn_block(Transformer *t, int layer, int n) {
    const Config *c = &t->config;
    const LayerWeights *lw = &t->weights.layers[layer];
    RunState *s = &t->state;
    int ffn = c->ffn_dim[layer];
    rmsnorm_tokens(t, s->xb, s->x, lw->ffn_norm.data, n);
    float *ffn_out[2] = { s->hb, s->hb2 };
    const Tensor *ffn_w[2] = { &lw->w1, &lw->w3 };
    matmuls(t, 2, ffn_out, ffn_w, s->xb, c->dim, n);
    gated_activation(t, s->hb, s->hb2, (size_t)n * ffn);
    matmul1(t, s->xb2, &lw->w2, s->hb, ffn, n);
    add_branch(t, &lw->post_ffn_norm, n);
}

// The logits of n rows of the residual stream x (n, dim) into out (n,
// vocab_size): the final norm, the classifier, Gemma 2's soft cap.
static void logits_of_rows(Transformer *t, const float *x, int n, float *out) {
    const Config *c = &t->config;
    RunState *s = &t->state;
    for (int i = 0; i < n; i++) rmsnorm(s->xb + (size_t)i * c->dim, x + (size_t)i * c->dim, t->weights.norm.data, c->dim, c->norm_eps);
    matmul1(t, out, &t->weights.output, s->xb, c->dim, n);
    if (c->final_softcap > 0)
        for (size_t v = 0; v < (size_t)n * c->vocab_size; v++) out[v] = softcap(out[v], c->final_softcap);
}

// The batch through every layer, each row's residual stream left in x:
// tokens[i] of sequence seqs[i] at position positions[i], for i < n (at most
// MAX_BATCH; a sequence's rows in position order, none twice, each position
// after what its cache holds up to it). prefault: each sequence's run of KV
// rows faulted in first (a prompt's chunk).
static void forward_layers(Transformer *t, const int *tokens, const int *seqs, const int *positions, int n, int prefault) {
    const Config *c = &t->config;
    RunState *s = &t->state;
    if (n < 1 || n > MAX_BATCH) die("internal error: forward_layers of %d rows", n);
    for (int i = 0; i < n; i++) {
        if (seqs[i] < 0 || seqs[i] >= s->n_seqs || positions[i] < 0 || positions[i] >= s->cache_len)
            die("internal error: batch row %d is sequence %d position %d (%d sequences of %d)", i, seqs[i], positions[i],
                s->n_seqs, s->cache_len);
        s->row_seq[i] = seqs[i];
        s->row_pos[i] = positions[i];
    }
    // a batch on every thread; a single token on the threads the tuner says (a busy machine: maybe fewer)
    atomic_store(&t->pool->active_threads, n == 1 ? tuner_threads(&t->pool->tuner) : t->pool->n_threads);
    embed_tokens(t, tokens, n);
    for (int table = 0; table < N_ROPE_TABLES; table++)
        if (s->rope[table].freq) rope_tables(&s->rope[table], c->rotary_dim, c->rope_attention_factor, s->row_pos, n);
    for (int i = 0, run; prefault && i < n; i += run) {   // each run of one sequence's consecutive positions, when longer than a token
        for (run = 1; i + run < n && seqs[i + run] == seqs[i] && positions[i + run] == positions[i] + run; run++) {}
        if (run > 1) prefault_kv_rows(s, c->n_layers, c->n_kv_heads * c->head_dim, seqs[i], positions[i], run);
    }
    for (int l = 0; l < c->n_layers; l++) {
        attention_block(t, l, n);
        ffn_block(t, l, n);
    }
}

// The batch of forward_layers. Returns (n_logits, vocab_size): the logits of
// rows logit_rows[0..n_logits) (at most n_seqs of them), or NULL when none
// are asked (a prompt's chunks before its last). A single token's step is
// timed for the tuner (forward_layers runs it on the threads the tuner says).
static float *forward_rows(Transformer *t, const int *tokens, const int *seqs, const int *positions, int n,
                           const int *logit_rows, int n_logits) {
    const Config *c = &t->config;
    RunState *s = &t->state;
    if (n_logits > s->n_seqs || n_logits > n) die("internal error: forward_rows of %d rows, %d logits", n, n_logits);
    atomic_store_explicit(&t->pool->contention, 0, memory_order_relaxed);
    int64_t start = monotonic_ns();
    forward_layers(t, tokens, seqs, positions, n, 1);
    float *logits = NULL;
    if (n_logits > 0) {
        // the rows asked for, gathered into xb2 (free after the last block; x stays
        // whole for tools/ppl.c): the classifier reads its weights once for them all
        for (int j = 0; j < n_logits; j++)
            memcpy(s->xb2 + (size_t)j * c->dim, s->x + (size_t)logit_rows[j] * c->dim, (size_t)c->dim * sizeof(float));
        logits_of_rows(t, s->xb2, n_logits, s->logits);
        logits = s->logits;
    }
    if (n == 1)
        tuner_step(&t->pool->tuner, (double)(monotonic_ns() - start) * 1e-9,
                   atomic_load_explicit(&t->pool->contention, memory_order_relaxed) > 0);
    return logits;
}

// n tokens of sequence 0 at positions pos0..pos0+n-1: runq's prompt chunks
// and decoded tokens; the logits after the last, or none (want_logits 0).
static float *forward_batch_logits(Transformer *t, const int *tokens, int n, int pos0, int want_logits) {
    int seqs[MAX_BATCH], positions[MAX_BATCH], last = n - 1;
    for (int i = 0; i < n && i < MAX_BATCH; i++) { seqs[i] = 0; positions[i] = pos0 + i; }
    return forward_rows(t, tokens, seqs, positions, n, &last, want_logits ? 1 : 0);
}

static float *forward_batch(Transformer *t, const int *tokens, int n, int pos0) {
    return forward_batch_logits(t, tokens, n, pos0, 1);
}

static float *forward(Transformer *t, int token, int pos) { return forward_batch(t, &token, 1, pos); }

// n tokens at positions pos0..pos0+n-1 (a prompt, a chat turn), MAX_BATCH
// at a time; the logits after the last. The classifier runs for the last
// chunk only: it reads all its weights for one token, and a small model's
// classifier is as big as its layers.
static float *forward_tokens(Transformer *t, const int *tokens, int n, int pos0) {
    float *logits = NULL;
    for (int start = 0; start < n; start += MAX_BATCH)
        logits = forward_batch_logits(t, tokens + start, n - start < MAX_BATCH ? n - start : MAX_BATCH, pos0 + start,
                                      start + MAX_BATCH >= n);
    return logits;
}

// Every row's logits of one batch, into out (n, vocab_size): n tokens (at
// most MAX_BATCH) at positions pos0..pos0+n-1. Speculative decoding verifies
// its drafted tokens with them. Row i is what decoding token i alone gives,
// bit for bit (a token's arithmetic does not depend on its batch, and the
// classifier's rows are the same kernels' rows). Plain decoding never comes
// here: its classifier still runs for one row only. No prefault: a pass
// writes a few KV rows, as decoding does, and two system calls a layer cost
// more than their page faults (on the default model they made a pass of two
// tokens cost 2.3 decode steps).
static void forward_batch_all_logits(Transformer *t, const int *tokens, int n, int pos0, float *out) {
    int seqs[MAX_BATCH], positions[MAX_BATCH];
    for (int i = 0; i < n && i < MAX_BATCH; i++) { seqs[i] = 0; positions[i] = pos0 + i; }
    forward_layers(t, tokens, seqs, positions, n, 0);
    logits_of_rows(t, t->state.x, n, out);
}

// ----------------------------------------------------------------------------
// Building and freeing a Transformer

// The file at path, mapped read-only, into a zeroed t.
static void open_mapped(Transformer *t, const char *path) {
    memset(t, 0, sizeof *t);
    t->path = path;
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) die("cannot stat %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        die("%s is a directory; a Hugging Face model directory converts with ./export %s model.q4.bin", path, path);
    if (!S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    t->file_size = (size_t)st.st_size;
    if (t->file_size == 0) die("%s is empty", path);
    void *data = mmap(NULL, t->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) die("cannot map %s: %s", path, strerror(errno));
    t->file_data = data;
}

static void open_checkpoint(Transformer *t, const char *path) {
    open_mapped(t, path);
    read_config(t);
    if (((const FileHeader *)t->file_data)->flags & FLAG_ADAPTER)
        die("%s is a LoRA adapter, not a model: run its base model with --lora %s", path, path);
    map_weights(t);
}

// runq multiplies quantized matrices only (export.c also maps f32 ones, to re-export them)
static void require_quantized(const Transformer *t) {
    const Weights *w = &t->weights;
    const Tensor *first_f32 = !is_quantized((uint32_t)w->tok_embeddings.type) ? &w->tok_embeddings
                            : !is_quantized((uint32_t)w->output.type) ? &w->output : NULL;
    for (int l = 0; l < t->config.n_layers && !first_f32; l++) {
        const Tensor *m[] = { &w->layers[l].wq, &w->layers[l].wk, &w->layers[l].wv, &w->layers[l].wo,
                              &w->layers[l].w1, &w->layers[l].w2, &w->layers[l].w3 };
        for (int i = 0; i < 7 && !first_f32; i++) if (!is_quantized((uint32_t)m[i]->type)) first_f32 = m[i];
    }
    if (first_f32)
        die("%s: tensor '%s' is f32; runq runs quantized checkpoints - use ./run for fp32 ones", t->path, first_f32->name);
    uint32_t version = ((const FileHeader *)t->file_data)->version;
    if (version < VERSION_Q4_TILES)
        die("%s: checkpoint version %u keeps int4 rows in the old order; re-export it: ./export %s NEW.bin", t->path,
            version, t->path);
}

// After open_checkpoint: the buffers and threads for a run of cache_len
// positions (at most seq_len; the KV cache holds no more than the run needs).
// The pages of the weights every token reads, touched now (a read a page,
// as llama.cpp's load touches its own weights when it repacks them), not one
// first access at a time inside the first prompt, which reads them all
// anyway: on a virtual machine a page's first access costs microseconds. An
// untied embedding table is left alone: a run reads a few of its rows, and
// touching the rest would cost its whole size in memory.
static void touch_weights(const Transformer *t) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), skip_begin = t->file_size, skip_end = t->file_size;
    const Tensor *embeddings = &t->weights.tok_embeddings;
    if (!t->config.tied_classifier) {
        size_t rows = embeddings->q4_tiled ? round_up((size_t)embeddings->rows, Q4_TILE_ROWS) : (size_t)embeddings->rows;
        skip_begin = (size_t)(embeddings->codes - t->file_data);
        skip_end = (size_t)((const uint8_t *)(embeddings->scales + rows * (size_t)(embeddings->cols_padded / embeddings->group_size))
                            - t->file_data);
    }
    volatile uint8_t sink = 0;
    for (size_t at = 0; at < t->file_size; at += page)
        if (at + page <= skip_begin || at >= skip_end) sink ^= t->file_data[at];
    (void)sink;
}

// ---- The table-lookup kernels' layout (see "Table lookup"), made at load:
// every Q2 and Q3 matrix the layers and the classifier multiply is repacked
// into tiles of bit-planes in memory this run allocates, and the file's pages
// of it are let go (MADV_DONTNEED: they are clean copies of the file, which
// a later read would bring back), so the run's memory does not grow: the
// same bytes in another order. Not written by export, so files stay what
// they are (format version 3) and every reader runs them; the cost is time at
// load, shared by the threads (under a second of CPU for TinyLlama's 1.1B int2
// weights). Skipped, with the file's layout and the row kernels kept, when
// RUNQ_LUT=0 (to compare) or when the copy would take more than half the
// memory left (the file's pages go only after each matrix is copied).

static size_t available_memory(void);
static const char *format_bytes(char *out, size_t bytes);

static size_t lut_codes_bytes(const Tensor *w) {
    size_t tiles = round_up((size_t)w->rows, LUT_TILE_ROWS) / LUT_TILE_ROWS;
    return tiles * (size_t)(w->cols_padded / Q_BLOCK) * (size_t)quant_layout((uint32_t)w->type)->bits * 4 * LUT_TILE_ROWS;
}
static size_t lut_scales_bytes(const Tensor *w) {
    return round_up((size_t)w->rows, LUT_TILE_ROWS) * (size_t)(w->cols_padded / w->group_size) * sizeof(uint16_t);
}
static int lut_repackable(const Tensor *w) { return w->type == TYPE_Q2 || w->type == TYPE_Q3; }

// Zeroed memory for a repacked matrix, its pages made at once (MAP_POPULATE):
// faulted in 4 KiB at a time as the repacking first wrote them, they took
// more time than the repacking (tens of thousands of faults for TinyLlama's
// int2 weights, each a trap into a virtual machine's host).
#ifndef MAP_POPULATE
#define MAP_POPULATE 0   // not Linux: the pages come one fault at a time
#endif
static uint8_t *lut_alloc(size_t bytes) {
    void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (memory == MAP_FAILED) die("out of memory: %zu bytes for repacked weights", bytes);
    return memory;
}
static void lut_free(const Tensor *w) {
    if (w->lut_codes) munmap((void *)w->lut_codes, lut_codes_bytes(w) + lut_scales_bytes(w));
}

typedef struct {
    const Tensor *w;
    uint8_t *codes;          // lut_codes being written (zeroed: padding rows are code 0)
    uint16_t *scales;        // lut_scales being written (zeroed)
} RepackTask;

// One tile of 64 rows (a pool piece): block by block, each row's pattern
// bytes into its lane (so the writes of a block stay within a few cache
// lines, and the 64 rows' reads move along their lines), then the scales.
static void repack_tile(void *arg, int tile, int thread_index) {
    (void)thread_index;
    const RepackTask *task = arg;
    const Tensor *w = task->w;
    const QuantLayout *layout = quant_layout((uint32_t)w->type);
    int n_blocks = w->cols_padded / Q_BLOCK, n_groups = w->cols_padded / w->group_size, planes = layout->bits;
    int lanes = w->rows - tile * LUT_TILE_ROWS < LUT_TILE_ROWS ? w->rows - tile * LUT_TILE_ROWS : LUT_TILE_ROWS;
    size_t row_bytes = (size_t)n_blocks * layout->block_bytes;
    const uint8_t *tile_rows = w->codes + (size_t)tile * LUT_TILE_ROWS * row_bytes;
    for (int lane = 0; lane < lanes; lane++) {
        const uint8_t *block = tile_rows + lane * row_bytes;
        uint8_t *patterns = task->codes + lut_code_offset(n_blocks, planes, tile, 0, 0, 0) + lane;
        for (int b = 0; b < n_blocks; b++, block += layout->block_bytes, patterns += planes * 4 * LUT_TILE_ROWS) {
            uint8_t bytes[3 * 4];
            lut_block_patterns(block, planes, bytes);
            for (int i = 0; i < planes * 4; i++) patterns[i * LUT_TILE_ROWS] = bytes[i];
        }
    }
    for (int lane = 0; lane < lanes; lane++)
        for (int g = 0; g < n_groups; g++)
            task->scales[((size_t)tile * n_groups + g) * LUT_TILE_ROWS + LUT_SLOT(lane)] =
                w->scales[(size_t)(tile * LUT_TILE_ROWS + lane) * n_groups + g];
}

// w's repacked copy (the pool shares the tiles); its file pages let go
// unless keep_file (the tied embeddings, whose rows are still read).
static void repack_for_tables(Transformer *t, Tensor *w, int keep_file) {
    size_t code_bytes = lut_codes_bytes(w);
    uint8_t *memory = lut_alloc(code_bytes + lut_scales_bytes(w));
    RepackTask task = { w, memory, (uint16_t *)(memory + code_bytes) };
    pool_run_chunks(t->pool, repack_tile, &task, (int)(round_up((size_t)w->rows, LUT_TILE_ROWS) / LUT_TILE_ROWS));
    if (!keep_file) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t begin = round_up((size_t)(w->codes - t->file_data), page);
        size_t end = (size_t)((const uint8_t *)(w->scales + (size_t)w->rows * (w->cols_padded / w->group_size)) - t->file_data)
                   / page * page;
        if (end > begin) madvise((void *)(t->file_data + begin), end - begin, MADV_DONTNEED);
    }
    w->lut_codes = memory;
    w->lut_scales = task.scales;
}

// The matrices a token multiplies: each layer's seven and the classifier.
static int run_matrices(Transformer *t, Tensor **out) {
    int n = 0;
    for (int l = 0; l < t->config.n_layers; l++) {
        LayerWeights *lw = &t->weights.layers[l];
        Tensor *m[] = { &lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w1, &lw->w2, &lw->w3 };
        for (int i = 0; i < 7; i++) out[n++] = m[i];
    }
    out[n++] = &t->weights.output;
    return n;
}

static void prepare_tables(Transformer *t) {
    const char *lut = getenv("RUNQ_LUT");
    if ((lut && strcmp(lut, "0") == 0) || !t->kernels.build_tables || t->backend) return;
    Tensor **matrices = xcalloc((size_t)t->config.n_layers * 7 + 1, sizeof *matrices, "matrix list");
    int n = run_matrices(t, matrices);
    size_t need = 0;
    for (int i = 0; i < n; i++)
        if (lut_repackable(matrices[i])) need += lut_codes_bytes(matrices[i]) + lut_scales_bytes(matrices[i]);
    size_t available = available_memory();
    if (need > 0 && available > 0 && need > available / 2) {
        char size[32], free_memory[32];
        fprintf(stderr, PROGRAM_NAME ": the int2/int3 weights' table-lookup layout (%s) would take more than half the "
                "free memory (%s): the file's layout is kept, with slower kernels\n", format_bytes(size, need),
                format_bytes(free_memory, available));
        need = 0;
    }
    if (need > 0) {
        for (int i = 0; i < n; i++)
            if (lut_repackable(matrices[i])) repack_for_tables(t, matrices[i], matrices[i]->codes == t->weights.tok_embeddings.codes);
        QuantizedActivations *xq = &t->state.xq;
        xq->tables = activation_alloc(&t->state.activation_bytes, MAX_BATCH, lut_table_bytes(xq->stride), "lookup tables");
        t->repacked_bytes = need;
    }
    free(matrices);
}

static void prepare_run(Transformer *t, int cache_len, int n_threads) {
    require_quantized(t);
    touch_weights(t);
    if (cache_len <= 0 || cache_len > t->config.seq_len) cache_len = t->config.seq_len;
    malloc_run_state(&t->state, &t->config, cache_len, n_threads, t->kv_type, t->n_seqs > 1 ? t->n_seqs : 1);
    choose_rope_frequencies(&t->state, &t->config, &t->weights);
    t->kernels = select_kernels();
    t->pool = pool_create(n_threads);
    select_backend(t);
    prepare_tables(t);
}

// bytes as KiB, MiB or GiB with one decimal; out holds 32 characters
static const char *format_bytes(char *out, size_t bytes) {
    const char *unit[] = { "KiB", "MiB", "GiB" };
    double value = (double)bytes / 1024.0;
    int u = 0;
    for (; u < 2 && value >= 1024.0; u++) value /= 1024.0;
    snprintf(out, 32, "%.1f %s", value, unit[u]);
    return out;
}

// Bytes of KV cache one position takes, of the type prepare_run will allocate.
static size_t kv_bytes_per_position(const Transformer *t) {
    const Config *c = &t->config;
    size_t values = 2 * (size_t)c->n_layers * c->n_kv_heads * c->head_dim;   // keys and values
    if (t->kv_type == KV_Q8) return values + 2 * (size_t)c->n_layers * c->n_kv_heads * sizeof(float);
    return values * sizeof(uint16_t);
}

// The memory this machine has free for a run (MemAvailable); 0 if unknown.
static size_t available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f) && sscanf(line, "MemAvailable: %llu kB", &kib) != 1) {}
    fclose(f);
    return (size_t)kib * 1024;
}

// The positions a chat gets when -n is not given: the model's whole context,
// unless its KV cache would take more than half the memory left beside the
// weights (Llama 3.2's 131072 positions want 4 GiB of fp16 cache; a 4 GB
// board has less), then what fits, said on stderr.
static int chat_positions(const Transformer *t) {
    int whole = t->config.seq_len;
    size_t available = available_memory(), per_position = kv_bytes_per_position(t);
    if (available == 0 || available <= t->file_size) return whole;
    size_t budget = (available - t->file_size) / 2, fits = budget / per_position;
    if (fits >= (size_t)whole) return whole;
    int positions = fits > 256 ? (int)fits : 256;
    char need[32], have[32];
    fprintf(stderr, PROGRAM_NAME ": chat: the whole context (%d positions) needs a %s KV cache and %s of memory is "
            "free; using %d positions (-n N chooses, -k q8 halves the cache)\n", whole,
            format_bytes(need, per_position * (size_t)whole), format_bytes(have, available), positions);
    return positions;
}

// What a run takes: the mapped file (pages are read in as they are used,
// shared with other processes mapping it), the KV cache, the activations.
static void print_memory_plan(const Transformer *t) {
    const RunState *s = &t->state;
    char weights[32], kv[32], activations[32], total[32];
    char sequences[32] = "", repacked[64] = "";
    if (s->n_seqs > 1) snprintf(sequences, sizeof sequences, "%d sequences of ", s->n_seqs);
    if (t->repacked_bytes) snprintf(repacked, sizeof repacked, "; %s of it repacked for table lookups",
                                    format_bytes(weights, t->repacked_bytes));
    fprintf(stderr, "memory: weights %s (mapped%s), KV cache %s (%s, %s%d positions), activations %s, total %s\n",
            format_bytes(weights, t->file_size), repacked, format_bytes(kv, s->kv_bytes), s->kv_type == KV_Q8 ? "int8" : "fp16",
            sequences, s->cache_len, format_bytes(activations, s->activation_bytes),
            format_bytes(total, t->file_size + s->kv_bytes + s->activation_bytes));
}

static void free_transformer(Transformer *t) {
    if (t->backend) t->backend->free(t->backend_state);
    if (t->weights.layers) {
        Tensor **matrices = xcalloc((size_t)t->config.n_layers * 7 + 1, sizeof *matrices, "matrix list");
        int n = run_matrices(t, matrices);
        for (int i = 0; i < n; i++) lut_free(matrices[i]);
        free(matrices);
    }
    pool_free(t->pool);
    free_run_state(&t->state);
    free(t->weights.layers);
    free(t->config.ffn_dim);
    free(t->config.layer_kind);
    if (t->file_data) munmap((void *)t->file_data, t->file_size);
    if (t->adapter_data) munmap((void *)t->adapter_data, t->adapter_size);
}

// ---- A LoRA adapter applied at run time (runq --lora FILE; export --adapter
// writes the file): the checkpoint format with the base's header and
// FLAG_ADAPTER, and for each adapted projection of a layer the f32 tensors
// layers.L.{wq|wk|wv|wo|w1|w2|w3}.lora_a (rank, inputs) and .lora_b
// (outputs, rank). One int4 base, many small adapters, no re-export.

// A layer's seven matrices, in the order of their tensor names' fields.
#define N_PROJECTIONS 7
static const char *const projection_fields[N_PROJECTIONS] = { "wq", "wk", "wv", "wo", "w1", "w2", "w3" };
static void layer_projections(LayerWeights *lw, Tensor **out) {
    Tensor *all[N_PROJECTIONS] = { &lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w1, &lw->w2, &lw->w3 };
    memcpy(out, all, sizeof all);
}

// The adapter's matrices for w, if the file has them: shapes and values checked.
static void map_lora_pair(const Transformer *adapter, Tensor *w, const char *name) {
    char a_name[TENSOR_NAME_LEN + 8], b_name[TENSOR_NAME_LEN + 8];
    snprintf(a_name, sizeof a_name, "%s.lora_a", name);
    snprintf(b_name, sizeof b_name, "%s.lora_b", name);
    const TensorEntry *a = find_tensor(adapter, a_name), *b = find_tensor(adapter, b_name);
    if (!a && !b) return;
    if (!a || !b) die("%s: %s is there but %s is missing", adapter->path, a ? a_name : b_name, a ? b_name : a_name);
    int rank = (int)a->rows;
    if (rank > MAX_LORA_RANK) die("%s: %s has rank %d; runq applies ranks up to %d", adapter->path, a_name, rank, MAX_LORA_RANK);
    Tensor lora_a = map_tensor(adapter, a_name, rank, w->cols, 0), lora_b = map_tensor(adapter, b_name, w->rows, rank, 0);
    for (size_t i = 0; i < (size_t)rank * (size_t)w->cols; i++)
        if (!isfinite(lora_a.data[i])) die("%s: %s holds a NaN or infinite value", adapter->path, a_name);
    for (size_t i = 0; i < (size_t)w->rows * (size_t)rank; i++)
        if (!isfinite(lora_b.data[i])) die("%s: %s holds a NaN or infinite value", adapter->path, b_name);
    w->lora_rank = rank;
    w->lora_a = lora_a.data;
    w->lora_b = lora_b.data;
}

// Maps the adapter at path onto t's weights (after open_checkpoint). Its
// header must be the base's: an adapter trained for another shape is refused.
static void load_adapter(Transformer *t, const char *path) {
    Transformer adapter;
    open_mapped(&adapter, path);
    read_config(&adapter);
    const FileHeader *h = (const FileHeader *)adapter.file_data, *base = (const FileHeader *)t->file_data;
    if (!(h->flags & FLAG_ADAPTER)) die("%s is a model, not a LoRA adapter (export --adapter DIR BASE OUT writes one)", path);
    const Config *c = &t->config, *ac = &adapter.config;
    int same = ac->dim == c->dim && ac->n_layers == c->n_layers && ac->n_heads == c->n_heads && ac->n_kv_heads == c->n_kv_heads
            && ac->head_dim == c->head_dim && ac->vocab_size == c->vocab_size && (h->flags & ~FLAG_ADAPTER) == base->flags;
    for (int l = 0; same && l < c->n_layers; l++) same = ac->ffn_dim[l] == c->ffn_dim[l];
    if (!same)
        die("%s is an adapter for another shape (dim %d, %d layers, %d/%d heads, vocab %d) than %s (dim %d, %d layers, "
            "%d/%d heads, vocab %d)", path, ac->dim, ac->n_layers, ac->n_heads, ac->n_kv_heads, ac->vocab_size, t->path,
            c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size);
    int adapted = 0;
    char name[TENSOR_NAME_LEN];
    for (int l = 0; l < c->n_layers; l++) {
        Tensor *projections[N_PROJECTIONS];
        layer_projections(&t->weights.layers[l], projections);
        for (int i = 0; i < N_PROJECTIONS; i++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, projection_fields[i]);
            map_lora_pair(&adapter, projections[i], name);
            adapted += projections[i]->lora_rank > 0;
        }
    }
    if (2 * adapted != (int)h->n_tensors)
        die("%s: holds %u tensors, of which %d are LoRA pairs of this model's projections", path, h->n_tensors, 2 * adapted);
    free(adapter.config.ffn_dim);
    free(adapter.config.layer_kind);
    t->adapter_data = adapter.file_data;
    t->adapter_size = adapter.file_size;
}

// ----------------------------------------------------------------------------
// From here to "Command line" run.c and runq.c hold the same text, line for
// line (test/test_shared_code.sh checks it): UTF-8, the tokenizer, the
// sampler, and the generate and chat loops over the runtime's forward passes.

// ---- UTF-8, strictly: the Unicode standard's table of well-formed byte
// sequences (Table 3-7). Every place that decides whether bytes are a
// character asks utf8_next: the tokenizers, the text runq and run print, and
// (through runq.c) the server's JSON. A model's byte-fallback pieces can emit
// any bytes; an ill-formed sequence is printed as U+FFFD, one for each
// maximal subpart (the standard's recommended practice), never passed on.
//
//   first byte   second     third and fourth
//   00..7F       -          -
//   C2..DF       80..BF     -
//   E0           A0..BF     80..BF              (E0 80..9F: overlong)
//   E1..EC       80..BF     80..BF
//   ED           80..9F     80..BF              (ED A0..BF: UTF-16 surrogates)
//   EE..EF       80..BF     80..BF
//   F0           90..BF     80..BF 80..BF       (F0 80..8F: overlong)
//   F1..F3       80..BF     80..BF 80..BF
//   F4           80..8F     80..BF 80..BF       (F4 90..BF: above U+10FFFF)

#define UTF8_REPLACEMENT "\xEF\xBF\xBD"   // U+FFFD

// At s (n > 0 bytes): a well-formed character's length, 1..4; an ill-formed
// sequence's maximal subpart as a negative length, -1..-3 (one U+FFFD stands
// for it); 0 when the n bytes are a character's start that more bytes could
// complete.
static int utf8_next(const unsigned char *s, size_t n) {
    unsigned char lead = s[0], low = 0x80, high = 0xBF;   // the second byte's range
    int length;
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) length = 3, low = lead == 0xE0 ? 0xA0 : 0x80, high = lead == 0xED ? 0x9F : 0xBF;
    else if (lead >= 0xF0 && lead <= 0xF4) length = 4, low = lead == 0xF0 ? 0x90 : 0x80, high = lead == 0xF4 ? 0x8F : 0xBF;
    else return -1;
    for (int i = 1; i < length; i++) {
        if ((size_t)i == n) return 0;
        if (s[i] < (i == 1 ? low : 0x80) || s[i] > (i == 1 ? high : 0xBF)) return -i;
    }
    return length;
}

// Text printed as pieces arrive, a character possibly split between two:
// the bytes of an unfinished character wait in pending for the next piece.
typedef struct {
    FILE *stream;
    unsigned char pending[4];
    int n_pending;
} TextOut;

static void text_out_bytes(TextOut *out, const unsigned char *bytes, size_t n, int final) {
    unsigned char joined[4 + 64];
    while (n > 0 || (final && out->n_pending > 0)) {
        size_t take = n < 64 ? n : 64, length = (size_t)out->n_pending + take;
        memcpy(joined, out->pending, (size_t)out->n_pending);
        if (take) memcpy(joined + out->n_pending, bytes, take);   // bytes is NULL at the end of a text
        bytes += take, n -= take, out->n_pending = 0;
        size_t at = 0;
        while (at < length) {
            int step = utf8_next(joined + at, length - at);
            if (step == 0 && !(final && n == 0)) {   // a character's start: it waits for the next bytes
                out->n_pending = (int)(length - at);
                memcpy(out->pending, joined + at, length - at);
                break;
            }
            if (step > 0) fwrite(joined + at, 1, (size_t)step, out->stream);
            else fputs(UTF8_REPLACEMENT, out->stream);
            at += step > 0 ? (size_t)step : step < 0 ? (size_t)-step : length - at;
        }
    }
}

// Print a piece, skipping a lone byte that is an ASCII control character.
static void text_out(TextOut *out, const char *piece) {
    if (!piece || !piece[0]) return;
    if (piece[1] == '\0') {
        unsigned char byte = (unsigned char)piece[0];
        if (byte < 0x80 && !(isprint(byte) || isspace(byte))) return;
    }
    text_out_bytes(out, (const unsigned char *)piece, strlen(piece), 0);
}

// The end of a text: an unfinished character is printed as U+FFFD.
static void text_out_end(TextOut *out) { text_out_bytes(out, NULL, 0, 1); }

// Tokenizer: byte-pair encoding over a vocabulary of pieces with merge scores,
// stored in llama2.c's tokenizer.bin layout
//   int32 max_token_length, then per piece: float32 score, int32 length, bytes
// Two kinds:
// - SentencePiece (Llama 2, TinyLlama, Mistral, Phi-3.5, Gemma; every
//   llama2.c tokenizer.bin): a space before the text (the dummy prefix), one
//   piece per code point to start with, and the <0xXX> pieces for bytes that
//   have no piece of their own (byte fallback). The layout may come after the
//   four bytes "SPMF" and a u32 of TOKENIZER_* flags (Gemma: no dummy prefix).
// - Byte-level (Llama 3, Qwen, SmolLM, GPT-2, GPT-4o and Phi-4-mini; tiktoken's kind):
//   the layout comes after the four bytes "BBPE" and a u32: the rule that cuts
//   text into chunks (SplitRule) in its low byte, TOKENIZER_* flags above it.
//   Pieces are raw bytes and score minus their rank; each chunk starts as its
//   bytes (under Llama 3's rule a chunk that is a piece is that piece at
//   once: Hugging Face's ignore_merges). With TOKENIZER_NFC the text is put
//   in Unicode's NFC first (Qwen's normalizer). With TOKENIZER_MERGES the
//   pieces are followed by Hugging Face's merges list (int32 count, then an
//   int32 pair of piece ids per merge, best first): only a listed pair
//   merges, by its place in the list (Qwen's list names one merge per piece,
//   where ranks alone would allow every split).
// Either kind starts a text with BOS unless TOKENIZER_NO_BOS says the family
// does not (Qwen).
// Then the adjacent pair whose joined piece scores highest merges, leftmost
// first among equals, until no pair joins into a piece. A piece scoring -inf
// (special tokens such as <s>, <|eot_id|> or <start_of_turn>, and every token
// a tokenizer.json adds, byte fallback pieces) is never made by a merge nor
// matched from text: what a user types stays text, even when it spells a
// special token; only the chat templates insert those.

#define BYTE_LEVEL_MAGIC "BBPE"
#define SENTENCEPIECE_MAGIC "SPMF"
enum TokenizerKind { TOKENIZER_SENTENCEPIECE, TOKENIZER_BYTE_LEVEL };
// The pre-tokenizer rules a byte-level blob may name: Llama 3's regex; GPT-2's
// (also Hugging Face's ByteLevel with use_regex); SmolLM2's, which is GPT-2's
// after every number character has been split off on its own; Qwen's, which
// is Llama 3's with numbers one character at a time; GPT-4o's (o200k, which
// Phi-4-mini uses), which cuts words at case changes and keeps contractions
// with their word.
enum SplitRule { SPLIT_LLAMA3 = 1, SPLIT_GPT2 = 2, SPLIT_SMOLLM = 3, SPLIT_QWEN = 4, SPLIT_O200K = 5, N_SPLIT_RULES };
#define TOKENIZER_NFC 0x100u               // byte-level: normalize the text to NFC before cutting it (Qwen)
#define TOKENIZER_NO_DUMMY_PREFIX 0x200u   // SentencePiece: no space before the text (Gemma)
#define TOKENIZER_NO_BOS 0x400u            // a text starts without BOS (Qwen)
#define TOKENIZER_MERGES 0x800u            // byte-level: a merges list follows the pieces (Qwen)

typedef struct {
    int kind;                // TokenizerKind
    int split_rule;          // byte-level: SplitRule
    int whole_chunks;        // byte-level: a chunk that is a piece is not merged from its bytes (Llama 3)
    int dummy_prefix;        // SentencePiece: a space goes before the text
    int normalize_nfc;       // byte-level: the text goes through NFC first
    int add_bos;             // a text starts with BOS
    int vocab_size;
    char **vocab;            // (vocab_size,) NUL-terminated pieces (a byte-level piece may hold a NUL: see lengths)
    int *lengths;            // (vocab_size,) bytes in each piece
    float *scores;           // (vocab_size,) merge priority, higher first; -inf: never merged into nor matched
    char *piece_bytes;       // every piece back to back, NUL after each: what vocab points into
    int *lookup;             // (lookup_mask + 1,) hash table of piece ids, -1 where empty
    uint32_t lookup_mask;
    int max_token_length;
    int byte_tokens[256];    // SentencePiece: id of piece <0xXX>; byte-level: of the one-byte piece; -1 if none
    int bos_id, eos_id;
    int end_ids[8], n_end_ids;      // special tokens besides EOS that end generation (<|eot_id|>, <|im_end|>, ...)
    unsigned char byte_pieces[512]; // each byte as a 1-character string
    int n_merges;                   // TOKENIZER_MERGES: the listed merges, else 0
    int *merges;                    // (n_merges, 2) the pairs' piece ids, best first
    int *merge_index;               // (merge_mask + 1,) hash table of merge ranks by pair, -1 where empty
    uint32_t merge_mask;
} Tokenizer;

// FNV-1a: pieces are short, and it spreads them well enough.
static uint32_t hash_bytes(const char *s, size_t length) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < length; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

// The slot of the lookup table holding this piece, or the empty slot where it would go.
static uint32_t lookup_slot(const Tokenizer *t, const char *s, size_t length) {
    uint32_t slot = hash_bytes(s, length) & t->lookup_mask;
    for (;; slot = (slot + 1) & t->lookup_mask) {
        int id = t->lookup[slot];
        if (id < 0 || ((size_t)t->lengths[id] == length && memcmp(t->vocab[id], s, length) == 0)) return slot;
    }
}

// The id of the piece spelled by these bytes, -1 if none (the lowest id if two pieces are equal).
static int piece_lookup(const Tokenizer *t, const char *s, size_t length) {
    return t->lookup[lookup_slot(t, s, length)];
}

static int str_lookup(const char *str, const Tokenizer *t) { return piece_lookup(t, str, strlen(str)); }

// The slot of the merge table holding the pair (left, right), or the empty slot where it would go.
static uint32_t merge_slot(const Tokenizer *t, int left, int right) {
    uint32_t slot = ((uint32_t)left * 2654435761u ^ (uint32_t)right * 40503u) & t->merge_mask;
    for (;; slot = (slot + 1) & t->merge_mask) {
        int rank = t->merge_index[slot];
        if (rank < 0 || (t->merges[2 * rank] == left && t->merges[2 * rank + 1] == right)) return slot;
    }
}

// The rank of the listed merge of these two pieces, -1 if none.
static int merge_rank(const Tokenizer *t, int left, int right) { return t->merge_index[merge_slot(t, left, right)]; }

// A listed merges section at data (size bytes): its pairs and their index. NULL, or what is wrong.
static const char *read_merges(Tokenizer *t, const uint8_t *data, size_t size, size_t *at) {
    int32_t count;
    if (size - *at < 4) return "ends before its merges list";
    memcpy(&count, data + *at, 4);
    *at += 4;
    if (count < 0 || (size_t)count > (size - *at) / 8) return "has a merges list longer than the file";
    t->n_merges = count;
    t->merges = xcalloc((size_t)count * 2 + 1, sizeof(int), "tokenizer merges");
    memcpy(t->merges, data + *at, (size_t)count * 8);
    *at += (size_t)count * 8;
    uint32_t slots = 1;
    while (slots < 2u * (uint32_t)count + 2) slots *= 2;
    t->merge_mask = slots - 1;
    t->merge_index = xcalloc(slots, sizeof(int), "tokenizer merges");
    memset(t->merge_index, 0xFF, slots * sizeof(int));
    for (int rank = 0; rank < count; rank++) {
        int left = t->merges[2 * rank], right = t->merges[2 * rank + 1];
        if (left < 0 || left >= t->vocab_size || right < 0 || right >= t->vocab_size) return "has a merge of ids outside the vocabulary";
        uint32_t slot = merge_slot(t, left, right);
        if (t->merge_index[slot] < 0) t->merge_index[slot] = rank;
    }
    return NULL;
}

static void index_pieces(Tokenizer *t) {
    uint32_t size = 1;
    while (size < 2u * (uint32_t)t->vocab_size) size *= 2;   // at most half full: short probes
    t->lookup_mask = size - 1;
    t->lookup = xcalloc(size, sizeof(int), "tokenizer index");
    memset(t->lookup, 0xFF, size * sizeof(int));
    for (int id = 0; id < t->vocab_size; id++) {
        uint32_t slot = lookup_slot(t, t->vocab[id], (size_t)t->lengths[id]);
        if (t->lookup[slot] < 0) t->lookup[slot] = id;
    }
}

// Parse a tokenizer from memory (the embedded blob or a file read whole).
// Returns NULL on success, or a message saying what is wrong.
static const char *build_tokenizer_from_memory(Tokenizer *t, const uint8_t *data, size_t size, int vocab_size) {
    memset(t, 0, sizeof *t);
    t->vocab_size = vocab_size;
    t->dummy_prefix = t->add_bos = 1;
    int byte_level = size >= 8 && memcmp(data, BYTE_LEVEL_MAGIC, 4) == 0;
    if (byte_level || (size >= 8 && memcmp(data, SENTENCEPIECE_MAGIC, 4) == 0)) {
        uint32_t word, rule;
        uint32_t known = byte_level ? TOKENIZER_NFC | TOKENIZER_NO_BOS | TOKENIZER_MERGES : TOKENIZER_NO_DUMMY_PREFIX | TOKENIZER_NO_BOS;
        memcpy(&word, data + 4, 4);
        rule = word & 0xFF;
        if (byte_level && (rule < SPLIT_LLAMA3 || rule >= N_SPLIT_RULES))
            return "is byte-level BPE with a pre-tokenizer rule this program does not know (it knows 1-5: Llama 3, GPT-2, SmolLM2, Qwen, GPT-4o)";
        if ((word & ~0xFFu & ~known) || (!byte_level && rule)) return "has flags this program does not know for its kind";
        t->kind = byte_level ? TOKENIZER_BYTE_LEVEL : TOKENIZER_SENTENCEPIECE;
        t->split_rule = (int)rule;
        t->whole_chunks = rule == SPLIT_LLAMA3;
        t->dummy_prefix = !byte_level && !(word & TOKENIZER_NO_DUMMY_PREFIX);
        t->normalize_nfc = (word & TOKENIZER_NFC) != 0;
        t->add_bos = !(word & TOKENIZER_NO_BOS);
        t->n_merges = word & TOKENIZER_MERGES ? -1 : 0;   // read after the pieces
        data += 8;
        size -= 8;
    }
    if (size < 4) return "too short to hold max_token_length";
    int32_t max_len;
    memcpy(&max_len, data, 4);
    if (max_len <= 0 || max_len > 1 << 16) return "max_token_length out of range";
    t->max_token_length = max_len;
    t->vocab = xcalloc((size_t)vocab_size, sizeof(char *), "tokenizer");
    t->lengths = xcalloc((size_t)vocab_size, sizeof(int), "tokenizer");
    t->scores = xcalloc((size_t)vocab_size, sizeof(float), "tokenizer");
    t->piece_bytes = xcalloc(size + (size_t)vocab_size, 1, "tokenizer");
    char *next_piece = t->piece_bytes;
    size_t at = 4;
    for (int i = 0; i < vocab_size; i++) {
        int32_t len;
        if (size - at < 8) return "ends before the last piece (does the vocabulary size match the model?)";
        memcpy(&t->scores[i], data + at, 4);
        memcpy(&len, data + at + 4, 4);
        at += 8;
        if (len < 0 || len > max_len || (size_t)len > size - at) return "a piece has an impossible length";
        t->vocab[i] = next_piece;
        t->lengths[i] = len;
        memcpy(next_piece, data + at, (size_t)len);
        next_piece += len + 1;
        at += (size_t)len;
    }
    if (t->n_merges < 0) {
        const char *error = read_merges(t, data, size, &at);
        if (error) return error;
    }
    if (at != size) return "has bytes left after the last piece (does the vocabulary size match the model?)";
    index_pieces(t);
    for (int b = 0; b < 256; b++) {
        t->byte_pieces[b * 2] = (unsigned char)b;
        t->byte_pieces[b * 2 + 1] = '\0';
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        t->byte_tokens[b] = t->kind == TOKENIZER_BYTE_LEVEL ? piece_lookup(t, (const char *)&t->byte_pieces[b * 2], 1)
                                                            : str_lookup(piece, t);
        // byte-level text starts as bytes: each must be a piece that merges
        if (t->kind == TOKENIZER_BYTE_LEVEL && (t->byte_tokens[b] < 0 || t->scores[t->byte_tokens[b]] == -INFINITY))
            return "is byte-level BPE but not every byte is a piece of its own";
    }
    return NULL;
}

static void free_tokenizer(Tokenizer *t) {
    free(t->vocab);
    free(t->lengths);
    free(t->scores);
    free(t->piece_bytes);
    free(t->lookup);
    free(t->merges);
    free(t->merge_index);
}

static uint8_t *read_whole_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    struct stat st;   // a directory opens, and sizes as LONG_MAX
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek in %s", path);
    long length = ftell(f);
    if (length < 0) die("cannot size %s", path);
    rewind(f);
    uint8_t *data = xcalloc((size_t)length + 1, 1, path);
    if (fread(data, 1, (size_t)length, f) != (size_t)length) die("cannot read %s", path);
    fclose(f);
    *size = (size_t)length;
    return data;
}

// The special tokens (scoring -inf: never made from text) named as ends of a
// turn or of a text: see ends_generation.
static void find_end_tokens(Tokenizer *t) {
    static const char *const names[] = { "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>",
                                         "<|end|>", "<end_of_turn>", "<eos>", "</s>" };
    t->n_end_ids = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int id = piece_lookup(t, names[i], strlen(names[i]));
        int room = t->n_end_ids < (int)(sizeof t->end_ids / sizeof t->end_ids[0]);
        if (id >= 0 && t->scores[id] == -INFINITY && room) t->end_ids[t->n_end_ids++] = id;
    }
}

// The tokenizer comes from -z when given, else from the checkpoint itself.
static void build_tokenizer(Tokenizer *tok, const Transformer *t, const char *override_path) {
    const char *source = override_path ? override_path : t->path;
    const char *error;
    if (override_path) {
        size_t size;
        uint8_t *data = read_whole_file(override_path, &size);
        error = build_tokenizer_from_memory(tok, data, size, t->config.vocab_size);
        free(data);
    } else {
        if (!t->weights.tokenizer_blob) die("%s has no embedded tokenizer: pass one with -z tokenizer.bin", t->path);
        error = build_tokenizer_from_memory(tok, t->weights.tokenizer_blob, t->weights.tokenizer_size,
                                            t->config.vocab_size);
    }
    if (error) die("tokenizer %s for a %d-piece vocabulary: %s", source, t->config.vocab_size, error);
    tok->bos_id = t->config.bos_id;
    tok->eos_id = t->config.eos_id;
    find_end_tokens(tok);
}

// Generation ends at BOS (llama2.c's tinyllamas end a story so), EOS, or a
// special token that ends a turn or a text. Instruct models end a reply with
// one that is not their EOS (Llama 3: <|eot_id|>, EOS <|end_of_text|>;
// SmolLM2: <|im_end|>); llama.cpp stops at the same names.
static int ends_generation(const Tokenizer *t, int id) {
    if (id == t->bos_id || id == t->eos_id) return 1;
    for (int i = 0; i < t->n_end_ids; i++)
        if (id == t->end_ids[i]) return 1;
    return 0;
}

// The bytes to print for `token` following `prev_token`. Byte-level pieces
// are raw bytes already, and may end inside a UTF-8 character (the next token
// completes it). SentencePiece drops the leading space after BOS (the dummy
// prefix, where it has one), and its <0xXX> pieces stand for raw bytes.
static const char *decode(const Tokenizer *t, int prev_token, int token) {
    const char *piece = t->vocab[token];
    if (t->kind == TOKENIZER_BYTE_LEVEL) return piece;
    if (t->dummy_prefix && prev_token == t->bos_id && piece[0] == ' ') piece++;
    unsigned int byte;
    char close;
    if (strlen(piece) == 6 && sscanf(piece, "<0x%02X%c", &byte, &close) == 2 && close == '>')
        piece = (const char *)t->byte_pieces + byte * 2;
    return piece;
}

// ---- Character classes for the byte-level pre-tokenizers: sorted, disjoint,
// inclusive code point ranges (GPT-4o's letter cases: rows of a kind)

// BEGIN generated by tools/js/gen-unicode-tables.mjs
// Unicode 17.0; do not edit by hand.
// \p{L}: 684 ranges
static const uint32_t unicode_letters[][2] = {
    {0x0041, 0x005A}, {0x0061, 0x007A}, {0x00AA, 0x00AA}, {0x00B5, 0x00B5}, {0x00BA, 0x00BA}, {0x00C0, 0x00D6},
    {0x00D8, 0x00F6}, {0x00F8, 0x02C1}, {0x02C6, 0x02D1}, {0x02E0, 0x02E4}, {0x02EC, 0x02EC}, {0x02EE, 0x02EE},
    {0x0370, 0x0374}, {0x0376, 0x0377}, {0x037A, 0x037D}, {0x037F, 0x037F}, {0x0386, 0x0386}, {0x0388, 0x038A},
    {0x038C, 0x038C}, {0x038E, 0x03A1}, {0x03A3, 0x03F5}, {0x03F7, 0x0481}, {0x048A, 0x052F}, {0x0531, 0x0556},
    {0x0559, 0x0559}, {0x0560, 0x0588}, {0x05D0, 0x05EA}, {0x05EF, 0x05F2}, {0x0620, 0x064A}, {0x066E, 0x066F},
    {0x0671, 0x06D3}, {0x06D5, 0x06D5}, {0x06E5, 0x06E6}, {0x06EE, 0x06EF}, {0x06FA, 0x06FC}, {0x06FF, 0x06FF},
    {0x0710, 0x0710}, {0x0712, 0x072F}, {0x074D, 0x07A5}, {0x07B1, 0x07B1}, {0x07CA, 0x07EA}, {0x07F4, 0x07F5},
    {0x07FA, 0x07FA}, {0x0800, 0x0815}, {0x081A, 0x081A}, {0x0824, 0x0824}, {0x0828, 0x0828}, {0x0840, 0x0858},
    {0x0860, 0x086A}, {0x0870, 0x0887}, {0x0889, 0x088F}, {0x08A0, 0x08C9}, {0x0904, 0x0939}, {0x093D, 0x093D},
    {0x0950, 0x0950}, {0x0958, 0x0961}, {0x0971, 0x0980}, {0x0985, 0x098C}, {0x098F, 0x0990}, {0x0993, 0x09A8},
    {0x09AA, 0x09B0}, {0x09B2, 0x09B2}, {0x09B6, 0x09B9}, {0x09BD, 0x09BD}, {0x09CE, 0x09CE}, {0x09DC, 0x09DD},
    {0x09DF, 0x09E1}, {0x09F0, 0x09F1}, {0x09FC, 0x09FC}, {0x0A05, 0x0A0A}, {0x0A0F, 0x0A10}, {0x0A13, 0x0A28},
    {0x0A2A, 0x0A30}, {0x0A32, 0x0A33}, {0x0A35, 0x0A36}, {0x0A38, 0x0A39}, {0x0A59, 0x0A5C}, {0x0A5E, 0x0A5E},
    {0x0A72, 0x0A74}, {0x0A85, 0x0A8D}, {0x0A8F, 0x0A91}, {0x0A93, 0x0AA8}, {0x0AAA, 0x0AB0}, {0x0AB2, 0x0AB3},
    {0x0AB5, 0x0AB9}, {0x0ABD, 0x0ABD}, {0x0AD0, 0x0AD0}, {0x0AE0, 0x0AE1}, {0x0AF9, 0x0AF9}, {0x0B05, 0x0B0C},
    {0x0B0F, 0x0B10}, {0x0B13, 0x0B28}, {0x0B2A, 0x0B30}, {0x0B32, 0x0B33}, {0x0B35, 0x0B39}, {0x0B3D, 0x0B3D},
    {0x0B5C, 0x0B5D}, {0x0B5F, 0x0B61}, {0x0B71, 0x0B71}, {0x0B83, 0x0B83}, {0x0B85, 0x0B8A}, {0x0B8E, 0x0B90},
    {0x0B92, 0x0B95}, {0x0B99, 0x0B9A}, {0x0B9C, 0x0B9C}, {0x0B9E, 0x0B9F}, {0x0BA3, 0x0BA4}, {0x0BA8, 0x0BAA},
    {0x0BAE, 0x0BB9}, {0x0BD0, 0x0BD0}, {0x0C05, 0x0C0C}, {0x0C0E, 0x0C10}, {0x0C12, 0x0C28}, {0x0C2A, 0x0C39},
    {0x0C3D, 0x0C3D}, {0x0C58, 0x0C5A}, {0x0C5C, 0x0C5D}, {0x0C60, 0x0C61}, {0x0C80, 0x0C80}, {0x0C85, 0x0C8C},
    {0x0C8E, 0x0C90}, {0x0C92, 0x0CA8}, {0x0CAA, 0x0CB3}, {0x0CB5, 0x0CB9}, {0x0CBD, 0x0CBD}, {0x0CDC, 0x0CDE},
    {0x0CE0, 0x0CE1}, {0x0CF1, 0x0CF2}, {0x0D04, 0x0D0C}, {0x0D0E, 0x0D10}, {0x0D12, 0x0D3A}, {0x0D3D, 0x0D3D},
    {0x0D4E, 0x0D4E}, {0x0D54, 0x0D56}, {0x0D5F, 0x0D61}, {0x0D7A, 0x0D7F}, {0x0D85, 0x0D96}, {0x0D9A, 0x0DB1},
    {0x0DB3, 0x0DBB}, {0x0DBD, 0x0DBD}, {0x0DC0, 0x0DC6}, {0x0E01, 0x0E30}, {0x0E32, 0x0E33}, {0x0E40, 0x0E46},
    {0x0E81, 0x0E82}, {0x0E84, 0x0E84}, {0x0E86, 0x0E8A}, {0x0E8C, 0x0EA3}, {0x0EA5, 0x0EA5}, {0x0EA7, 0x0EB0},
    {0x0EB2, 0x0EB3}, {0x0EBD, 0x0EBD}, {0x0EC0, 0x0EC4}, {0x0EC6, 0x0EC6}, {0x0EDC, 0x0EDF}, {0x0F00, 0x0F00},
    {0x0F40, 0x0F47}, {0x0F49, 0x0F6C}, {0x0F88, 0x0F8C}, {0x1000, 0x102A}, {0x103F, 0x103F}, {0x1050, 0x1055},
    {0x105A, 0x105D}, {0x1061, 0x1061}, {0x1065, 0x1066}, {0x106E, 0x1070}, {0x1075, 0x1081}, {0x108E, 0x108E},
    {0x10A0, 0x10C5}, {0x10C7, 0x10C7}, {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x124A, 0x124D},
    {0x1250, 0x1256}, {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D}, {0x1290, 0x12B0},
    {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6}, {0x12D8, 0x1310},
    {0x1312, 0x1315}, {0x1318, 0x135A}, {0x1380, 0x138F}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1401, 0x166C},
    {0x166F, 0x167F}, {0x1681, 0x169A}, {0x16A0, 0x16EA}, {0x16F1, 0x16F8}, {0x1700, 0x1711}, {0x171F, 0x1731},
    {0x1740, 0x1751}, {0x1760, 0x176C}, {0x176E, 0x1770}, {0x1780, 0x17B3}, {0x17D7, 0x17D7}, {0x17DC, 0x17DC},
    {0x1820, 0x1878}, {0x1880, 0x1884}, {0x1887, 0x18A8}, {0x18AA, 0x18AA}, {0x18B0, 0x18F5}, {0x1900, 0x191E},
    {0x1950, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9}, {0x1A00, 0x1A16}, {0x1A20, 0x1A54},
    {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C}, {0x1B83, 0x1BA0}, {0x1BAE, 0x1BAF}, {0x1BBA, 0x1BE5},
    {0x1C00, 0x1C23}, {0x1C4D, 0x1C4F}, {0x1C5A, 0x1C7D}, {0x1C80, 0x1C8A}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1CE9, 0x1CEC}, {0x1CEE, 0x1CF3}, {0x1CF5, 0x1CF6}, {0x1CFA, 0x1CFA}, {0x1D00, 0x1DBF}, {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC},
    {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D},
    {0x212F, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2CE4},
    {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D}, {0x2D30, 0x2D67},
    {0x2D6F, 0x2D6F}, {0x2D80, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE}, {0x2DB0, 0x2DB6}, {0x2DB8, 0x2DBE},
    {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6}, {0x2DD8, 0x2DDE}, {0x2E2F, 0x2E2F}, {0x3005, 0x3006},
    {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF},
    {0x3105, 0x312F}, {0x3131, 0x318E}, {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0xA48C},
    {0xA4D0, 0xA4FD}, {0xA500, 0xA60C}, {0xA610, 0xA61F}, {0xA62A, 0xA62B}, {0xA640, 0xA66E}, {0xA67F, 0xA69D},
    {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788}, {0xA78B, 0xA7DC}, {0xA7F1, 0xA801}, {0xA803, 0xA805},
    {0xA807, 0xA80A}, {0xA80C, 0xA822}, {0xA840, 0xA873}, {0xA882, 0xA8B3}, {0xA8F2, 0xA8F7}, {0xA8FB, 0xA8FB},
    {0xA8FD, 0xA8FE}, {0xA90A, 0xA925}, {0xA930, 0xA946}, {0xA960, 0xA97C}, {0xA984, 0xA9B2}, {0xA9CF, 0xA9CF},
    {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9EF}, {0xA9FA, 0xA9FE}, {0xAA00, 0xAA28}, {0xAA40, 0xAA42}, {0xAA44, 0xAA4B},
    {0xAA60, 0xAA76}, {0xAA7A, 0xAA7A}, {0xAA7E, 0xAAAF}, {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD},
    {0xAAC0, 0xAAC0}, {0xAAC2, 0xAAC2}, {0xAADB, 0xAADD}, {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4}, {0xAB01, 0xAB06},
    {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26}, {0xAB28, 0xAB2E}, {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69},
    {0xAB70, 0xABE2}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6}, {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9},
    {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFB1D, 0xFB1D}, {0xFB1F, 0xFB28}, {0xFB2A, 0xFB36}, {0xFB38, 0xFB3C},
    {0xFB3E, 0xFB3E}, {0xFB40, 0xFB41}, {0xFB43, 0xFB44}, {0xFB46, 0xFBB1}, {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F},
    {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE70, 0xFE74}, {0xFE76, 0xFEFC}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A},
    {0xFF66, 0xFFBE}, {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF}, {0xFFD2, 0xFFD7}, {0xFFDA, 0xFFDC}, {0x10000, 0x1000B},
    {0x1000D, 0x10026}, {0x10028, 0x1003A}, {0x1003C, 0x1003D}, {0x1003F, 0x1004D}, {0x10050, 0x1005D}, {0x10080, 0x100FA},
    {0x10280, 0x1029C}, {0x102A0, 0x102D0}, {0x10300, 0x1031F}, {0x1032D, 0x10340}, {0x10342, 0x10349}, {0x10350, 0x10375},
    {0x10380, 0x1039D}, {0x103A0, 0x103C3}, {0x103C8, 0x103CF}, {0x10400, 0x1049D}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10500, 0x10527}, {0x10530, 0x10563}, {0x10570, 0x1057A}, {0x1057C, 0x1058A}, {0x1058C, 0x10592}, {0x10594, 0x10595},
    {0x10597, 0x105A1}, {0x105A3, 0x105B1}, {0x105B3, 0x105B9}, {0x105BB, 0x105BC}, {0x105C0, 0x105F3}, {0x10600, 0x10736},
    {0x10740, 0x10755}, {0x10760, 0x10767}, {0x10780, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10800, 0x10805},
    {0x10808, 0x10808}, {0x1080A, 0x10835}, {0x10837, 0x10838}, {0x1083C, 0x1083C}, {0x1083F, 0x10855}, {0x10860, 0x10876},
    {0x10880, 0x1089E}, {0x108E0, 0x108F2}, {0x108F4, 0x108F5}, {0x10900, 0x10915}, {0x10920, 0x10939}, {0x10940, 0x10959},
    {0x10980, 0x109B7}, {0x109BE, 0x109BF}, {0x10A00, 0x10A00}, {0x10A10, 0x10A13}, {0x10A15, 0x10A17}, {0x10A19, 0x10A35},
    {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7}, {0x10AC9, 0x10AE4}, {0x10B00, 0x10B35}, {0x10B40, 0x10B55},
    {0x10B60, 0x10B72}, {0x10B80, 0x10B91}, {0x10C00, 0x10C48}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x10D00, 0x10D23},
    {0x10D4A, 0x10D65}, {0x10D6F, 0x10D85}, {0x10E80, 0x10EA9}, {0x10EB0, 0x10EB1}, {0x10EC2, 0x10EC7}, {0x10F00, 0x10F1C},
    {0x10F27, 0x10F27}, {0x10F30, 0x10F45}, {0x10F70, 0x10F81}, {0x10FB0, 0x10FC4}, {0x10FE0, 0x10FF6}, {0x11003, 0x11037},
    {0x11071, 0x11072}, {0x11075, 0x11075}, {0x11083, 0x110AF}, {0x110D0, 0x110E8}, {0x11103, 0x11126}, {0x11144, 0x11144},
    {0x11147, 0x11147}, {0x11150, 0x11172}, {0x11176, 0x11176}, {0x11183, 0x111B2}, {0x111C1, 0x111C4}, {0x111DA, 0x111DA},
    {0x111DC, 0x111DC}, {0x11200, 0x11211}, {0x11213, 0x1122B}, {0x1123F, 0x11240}, {0x11280, 0x11286}, {0x11288, 0x11288},
    {0x1128A, 0x1128D}, {0x1128F, 0x1129D}, {0x1129F, 0x112A8}, {0x112B0, 0x112DE}, {0x11305, 0x1130C}, {0x1130F, 0x11310},
    {0x11313, 0x11328}, {0x1132A, 0x11330}, {0x11332, 0x11333}, {0x11335, 0x11339}, {0x1133D, 0x1133D}, {0x11350, 0x11350},
    {0x1135D, 0x11361}, {0x11380, 0x11389}, {0x1138B, 0x1138B}, {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7},
    {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11400, 0x11434}, {0x11447, 0x1144A}, {0x1145F, 0x11461}, {0x11480, 0x114AF},
    {0x114C4, 0x114C5}, {0x114C7, 0x114C7}, {0x11580, 0x115AE}, {0x115D8, 0x115DB}, {0x11600, 0x1162F}, {0x11644, 0x11644},
    {0x11680, 0x116AA}, {0x116B8, 0x116B8}, {0x11700, 0x1171A}, {0x11740, 0x11746}, {0x11800, 0x1182B}, {0x118A0, 0x118DF},
    {0x118FF, 0x11906}, {0x11909, 0x11909}, {0x1190C, 0x11913}, {0x11915, 0x11916}, {0x11918, 0x1192F}, {0x1193F, 0x1193F},
    {0x11941, 0x11941}, {0x119A0, 0x119A7}, {0x119AA, 0x119D0}, {0x119E1, 0x119E1}, {0x119E3, 0x119E3}, {0x11A00, 0x11A00},
    {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A}, {0x11A50, 0x11A50}, {0x11A5C, 0x11A89}, {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8},
    {0x11BC0, 0x11BE0}, {0x11C00, 0x11C08}, {0x11C0A, 0x11C2E}, {0x11C40, 0x11C40}, {0x11C72, 0x11C8F}, {0x11D00, 0x11D06},
    {0x11D08, 0x11D09}, {0x11D0B, 0x11D30}, {0x11D46, 0x11D46}, {0x11D60, 0x11D65}, {0x11D67, 0x11D68}, {0x11D6A, 0x11D89},
    {0x11D98, 0x11D98}, {0x11DB0, 0x11DDB}, {0x11EE0, 0x11EF2}, {0x11F02, 0x11F02}, {0x11F04, 0x11F10}, {0x11F12, 0x11F33},
    {0x11FB0, 0x11FB0}, {0x12000, 0x12399}, {0x12480, 0x12543}, {0x12F90, 0x12FF0}, {0x13000, 0x1342F}, {0x13441, 0x13446},
    {0x13460, 0x143FA}, {0x14400, 0x14646}, {0x16100, 0x1611D}, {0x16800, 0x16A38}, {0x16A40, 0x16A5E}, {0x16A70, 0x16ABE},
    {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F}, {0x16B40, 0x16B43}, {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F}, {0x16D40, 0x16D6C},
    {0x16E40, 0x16E7F}, {0x16EA0, 0x16EB8}, {0x16EBB, 0x16ED3}, {0x16F00, 0x16F4A}, {0x16F50, 0x16F50}, {0x16F93, 0x16F9F},
    {0x16FE0, 0x16FE1}, {0x16FE3, 0x16FE3}, {0x16FF2, 0x16FF3}, {0x17000, 0x18CD5}, {0x18CFF, 0x18D1E}, {0x18D80, 0x18DF2},
    {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122}, {0x1B132, 0x1B132}, {0x1B150, 0x1B152},
    {0x1B155, 0x1B155}, {0x1B164, 0x1B167}, {0x1B170, 0x1B2FB}, {0x1BC00, 0x1BC6A}, {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88},
    {0x1BC90, 0x1BC99}, {0x1D400, 0x1D454}, {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6},
    {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9}, {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A},
    {0x1D50D, 0x1D514}, {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544}, {0x1D546, 0x1D546},
    {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5}, {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714},
    {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E}, {0x1D770, 0x1D788}, {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2},
    {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF1E}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D},
    {0x1E14E, 0x1E14E}, {0x1E290, 0x1E2AD}, {0x1E2C0, 0x1E2EB}, {0x1E4D0, 0x1E4EB}, {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0},
    {0x1E6C0, 0x1E6DE}, {0x1E6E0, 0x1E6E2}, {0x1E6E4, 0x1E6E5}, {0x1E6E7, 0x1E6ED}, {0x1E6F0, 0x1E6F4}, {0x1E6FE, 0x1E6FF},
    {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB}, {0x1E7ED, 0x1E7EE}, {0x1E7F0, 0x1E7FE}, {0x1E800, 0x1E8C4}, {0x1E900, 0x1E943},
    {0x1E94B, 0x1E94B}, {0x1EE00, 0x1EE03}, {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27},
    {0x1EE29, 0x1EE32}, {0x1EE34, 0x1EE37}, {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42}, {0x1EE47, 0x1EE47},
    {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B}, {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52}, {0x1EE54, 0x1EE54}, {0x1EE57, 0x1EE57},
    {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B}, {0x1EE5D, 0x1EE5D}, {0x1EE5F, 0x1EE5F}, {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64},
    {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72}, {0x1EE74, 0x1EE77}, {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89},
    {0x1EE8B, 0x1EE9B}, {0x1EEA1, 0x1EEA3}, {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B81D},
    {0x2B820, 0x2CEAD}, {0x2CEB0, 0x2EBE0}, {0x2EBF0, 0x2EE5D}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A}, {0x31350, 0x33479},
};
// \p{N}: 146 ranges
static const uint32_t unicode_numbers[][2] = {
    {0x0030, 0x0039}, {0x00B2, 0x00B3}, {0x00B9, 0x00B9}, {0x00BC, 0x00BE}, {0x0660, 0x0669}, {0x06F0, 0x06F9},
    {0x07C0, 0x07C9}, {0x0966, 0x096F}, {0x09E6, 0x09EF}, {0x09F4, 0x09F9}, {0x0A66, 0x0A6F}, {0x0AE6, 0x0AEF},
    {0x0B66, 0x0B6F}, {0x0B72, 0x0B77}, {0x0BE6, 0x0BF2}, {0x0C66, 0x0C6F}, {0x0C78, 0x0C7E}, {0x0CE6, 0x0CEF},
    {0x0D58, 0x0D5E}, {0x0D66, 0x0D78}, {0x0DE6, 0x0DEF}, {0x0E50, 0x0E59}, {0x0ED0, 0x0ED9}, {0x0F20, 0x0F33},
    {0x1040, 0x1049}, {0x1090, 0x1099}, {0x1369, 0x137C}, {0x16EE, 0x16F0}, {0x17E0, 0x17E9}, {0x17F0, 0x17F9},
    {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19DA}, {0x1A80, 0x1A89}, {0x1A90, 0x1A99}, {0x1B50, 0x1B59},
    {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59}, {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089},
    {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x2CFD, 0x2CFD},
    {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F},
    {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xA620, 0xA629}, {0xA6E6, 0xA6EF}, {0xA830, 0xA835},
    {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59}, {0xABF0, 0xABF9},
    {0xFF10, 0xFF19}, {0x10107, 0x10133}, {0x10140, 0x10178}, {0x1018A, 0x1018B}, {0x102E1, 0x102FB}, {0x10320, 0x10323},
    {0x10341, 0x10341}, {0x1034A, 0x1034A}, {0x103D1, 0x103D5}, {0x104A0, 0x104A9}, {0x10858, 0x1085F}, {0x10879, 0x1087F},
    {0x108A7, 0x108AF}, {0x108FB, 0x108FF}, {0x10916, 0x1091B}, {0x109BC, 0x109BD}, {0x109C0, 0x109CF}, {0x109D2, 0x109FF},
    {0x10A40, 0x10A48}, {0x10A7D, 0x10A7E}, {0x10A9D, 0x10A9F}, {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F}, {0x10B78, 0x10B7F},
    {0x10BA9, 0x10BAF}, {0x10CFA, 0x10CFF}, {0x10D30, 0x10D39}, {0x10D40, 0x10D49}, {0x10E60, 0x10E7E}, {0x10F1D, 0x10F26},
    {0x10F51, 0x10F54}, {0x10FC5, 0x10FCB}, {0x11052, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9},
    {0x111E1, 0x111F4}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9},
    {0x116D0, 0x116E3}, {0x11730, 0x1173B}, {0x118E0, 0x118F2}, {0x11950, 0x11959}, {0x11BF0, 0x11BF9}, {0x11C50, 0x11C6C},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11DE0, 0x11DE9}, {0x11F50, 0x11F59}, {0x11FC0, 0x11FD4}, {0x12400, 0x1246E},
    {0x16130, 0x16139}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59}, {0x16B5B, 0x16B61}, {0x16D70, 0x16D79},
    {0x16E80, 0x16E96}, {0x16FF4, 0x16FF6}, {0x1CCF0, 0x1CCF9}, {0x1D2C0, 0x1D2D3}, {0x1D2E0, 0x1D2F3}, {0x1D360, 0x1D378},
    {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA}, {0x1E8C7, 0x1E8CF},
    {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB}, {0x1ECAD, 0x1ECAF}, {0x1ECB1, 0x1ECB4}, {0x1ED01, 0x1ED2D}, {0x1ED2F, 0x1ED3D},
    {0x1F100, 0x1F10C}, {0x1FBF0, 0x1FBF9},
};
// \s (White_Space): 10 ranges
static const uint32_t unicode_spaces[][2] = {
    {0x0009, 0x000D}, {0x0020, 0x0020}, {0x0085, 0x0085}, {0x00A0, 0x00A0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};
// \p{M} (GPT-4o's rule: a mark counts as an upper- and a lower-case letter): 327 ranges
static const uint32_t unicode_marks[][2] = {
    {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x05BF, 0x05BF}, {0x05C1, 0x05C2}, {0x05C4, 0x05C5},
    {0x05C7, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F}, {0x0670, 0x0670}, {0x06D6, 0x06DC}, {0x06DF, 0x06E4},
    {0x06E7, 0x06E8}, {0x06EA, 0x06ED}, {0x0711, 0x0711}, {0x0730, 0x074A}, {0x07A6, 0x07B0}, {0x07EB, 0x07F3},
    {0x07FD, 0x07FD}, {0x0816, 0x0819}, {0x081B, 0x0823}, {0x0825, 0x0827}, {0x0829, 0x082D}, {0x0859, 0x085B},
    {0x0897, 0x089F}, {0x08CA, 0x08E1}, {0x08E3, 0x0903}, {0x093A, 0x093C}, {0x093E, 0x094F}, {0x0951, 0x0957},
    {0x0962, 0x0963}, {0x0981, 0x0983}, {0x09BC, 0x09BC}, {0x09BE, 0x09C4}, {0x09C7, 0x09C8}, {0x09CB, 0x09CD},
    {0x09D7, 0x09D7}, {0x09E2, 0x09E3}, {0x09FE, 0x09FE}, {0x0A01, 0x0A03}, {0x0A3C, 0x0A3C}, {0x0A3E, 0x0A42},
    {0x0A47, 0x0A48}, {0x0A4B, 0x0A4D}, {0x0A51, 0x0A51}, {0x0A70, 0x0A71}, {0x0A75, 0x0A75}, {0x0A81, 0x0A83},
    {0x0ABC, 0x0ABC}, {0x0ABE, 0x0AC5}, {0x0AC7, 0x0AC9}, {0x0ACB, 0x0ACD}, {0x0AE2, 0x0AE3}, {0x0AFA, 0x0AFF},
    {0x0B01, 0x0B03}, {0x0B3C, 0x0B3C}, {0x0B3E, 0x0B44}, {0x0B47, 0x0B48}, {0x0B4B, 0x0B4D}, {0x0B55, 0x0B57},
    {0x0B62, 0x0B63}, {0x0B82, 0x0B82}, {0x0BBE, 0x0BC2}, {0x0BC6, 0x0BC8}, {0x0BCA, 0x0BCD}, {0x0BD7, 0x0BD7},
    {0x0C00, 0x0C04}, {0x0C3C, 0x0C3C}, {0x0C3E, 0x0C44}, {0x0C46, 0x0C48}, {0x0C4A, 0x0C4D}, {0x0C55, 0x0C56},
    {0x0C62, 0x0C63}, {0x0C81, 0x0C83}, {0x0CBC, 0x0CBC}, {0x0CBE, 0x0CC4}, {0x0CC6, 0x0CC8}, {0x0CCA, 0x0CCD},
    {0x0CD5, 0x0CD6}, {0x0CE2, 0x0CE3}, {0x0CF3, 0x0CF3}, {0x0D00, 0x0D03}, {0x0D3B, 0x0D3C}, {0x0D3E, 0x0D44},
    {0x0D46, 0x0D48}, {0x0D4A, 0x0D4D}, {0x0D57, 0x0D57}, {0x0D62, 0x0D63}, {0x0D81, 0x0D83}, {0x0DCA, 0x0DCA},
    {0x0DCF, 0x0DD4}, {0x0DD6, 0x0DD6}, {0x0DD8, 0x0DDF}, {0x0DF2, 0x0DF3}, {0x0E31, 0x0E31}, {0x0E34, 0x0E3A},
    {0x0E47, 0x0E4E}, {0x0EB1, 0x0EB1}, {0x0EB4, 0x0EBC}, {0x0EC8, 0x0ECE}, {0x0F18, 0x0F19}, {0x0F35, 0x0F35},
    {0x0F37, 0x0F37}, {0x0F39, 0x0F39}, {0x0F3E, 0x0F3F}, {0x0F71, 0x0F84}, {0x0F86, 0x0F87}, {0x0F8D, 0x0F97},
    {0x0F99, 0x0FBC}, {0x0FC6, 0x0FC6}, {0x102B, 0x103E}, {0x1056, 0x1059}, {0x105E, 0x1060}, {0x1062, 0x1064},
    {0x1067, 0x106D}, {0x1071, 0x1074}, {0x1082, 0x108D}, {0x108F, 0x108F}, {0x109A, 0x109D}, {0x135D, 0x135F},
    {0x1712, 0x1715}, {0x1732, 0x1734}, {0x1752, 0x1753}, {0x1772, 0x1773}, {0x17B4, 0x17D3}, {0x17DD, 0x17DD},
    {0x180B, 0x180D}, {0x180F, 0x180F}, {0x1885, 0x1886}, {0x18A9, 0x18A9}, {0x1920, 0x192B}, {0x1930, 0x193B},
    {0x1A17, 0x1A1B}, {0x1A55, 0x1A5E}, {0x1A60, 0x1A7C}, {0x1A7F, 0x1A7F}, {0x1AB0, 0x1ADD}, {0x1AE0, 0x1AEB},
    {0x1B00, 0x1B04}, {0x1B34, 0x1B44}, {0x1B6B, 0x1B73}, {0x1B80, 0x1B82}, {0x1BA1, 0x1BAD}, {0x1BE6, 0x1BF3},
    {0x1C24, 0x1C37}, {0x1CD0, 0x1CD2}, {0x1CD4, 0x1CE8}, {0x1CED, 0x1CED}, {0x1CF4, 0x1CF4}, {0x1CF7, 0x1CF9},
    {0x1DC0, 0x1DFF}, {0x20D0, 0x20F0}, {0x2CEF, 0x2CF1}, {0x2D7F, 0x2D7F}, {0x2DE0, 0x2DFF}, {0x302A, 0x302F},
    {0x3099, 0x309A}, {0xA66F, 0xA672}, {0xA674, 0xA67D}, {0xA69E, 0xA69F}, {0xA6F0, 0xA6F1}, {0xA802, 0xA802},
    {0xA806, 0xA806}, {0xA80B, 0xA80B}, {0xA823, 0xA827}, {0xA82C, 0xA82C}, {0xA880, 0xA881}, {0xA8B4, 0xA8C5},
    {0xA8E0, 0xA8F1}, {0xA8FF, 0xA8FF}, {0xA926, 0xA92D}, {0xA947, 0xA953}, {0xA980, 0xA983}, {0xA9B3, 0xA9C0},
    {0xA9E5, 0xA9E5}, {0xAA29, 0xAA36}, {0xAA43, 0xAA43}, {0xAA4C, 0xAA4D}, {0xAA7B, 0xAA7D}, {0xAAB0, 0xAAB0},
    {0xAAB2, 0xAAB4}, {0xAAB7, 0xAAB8}, {0xAABE, 0xAABF}, {0xAAC1, 0xAAC1}, {0xAAEB, 0xAAEF}, {0xAAF5, 0xAAF6},
    {0xABE3, 0xABEA}, {0xABEC, 0xABED}, {0xFB1E, 0xFB1E}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0x101FD, 0x101FD},
    {0x102E0, 0x102E0}, {0x10376, 0x1037A}, {0x10A01, 0x10A03}, {0x10A05, 0x10A06}, {0x10A0C, 0x10A0F}, {0x10A38, 0x10A3A},
    {0x10A3F, 0x10A3F}, {0x10AE5, 0x10AE6}, {0x10D24, 0x10D27}, {0x10D69, 0x10D6D}, {0x10EAB, 0x10EAC}, {0x10EFA, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11000, 0x11002}, {0x11038, 0x11046}, {0x11070, 0x11070}, {0x11073, 0x11074},
    {0x1107F, 0x11082}, {0x110B0, 0x110BA}, {0x110C2, 0x110C2}, {0x11100, 0x11102}, {0x11127, 0x11134}, {0x11145, 0x11146},
    {0x11173, 0x11173}, {0x11180, 0x11182}, {0x111B3, 0x111C0}, {0x111C9, 0x111CC}, {0x111CE, 0x111CF}, {0x1122C, 0x11237},
    {0x1123E, 0x1123E}, {0x11241, 0x11241}, {0x112DF, 0x112EA}, {0x11300, 0x11303}, {0x1133B, 0x1133C}, {0x1133E, 0x11344},
    {0x11347, 0x11348}, {0x1134B, 0x1134D}, {0x11357, 0x11357}, {0x11362, 0x11363}, {0x11366, 0x1136C}, {0x11370, 0x11374},
    {0x113B8, 0x113C0}, {0x113C2, 0x113C2}, {0x113C5, 0x113C5}, {0x113C7, 0x113CA}, {0x113CC, 0x113D0}, {0x113D2, 0x113D2},
    {0x113E1, 0x113E2}, {0x11435, 0x11446}, {0x1145E, 0x1145E}, {0x114B0, 0x114C3}, {0x115AF, 0x115B5}, {0x115B8, 0x115C0},
    {0x115DC, 0x115DD}, {0x11630, 0x11640}, {0x116AB, 0x116B7}, {0x1171D, 0x1172B}, {0x1182C, 0x1183A}, {0x11930, 0x11935},
    {0x11937, 0x11938}, {0x1193B, 0x1193E}, {0x11940, 0x11940}, {0x11942, 0x11943}, {0x119D1, 0x119D7}, {0x119DA, 0x119E0},
    {0x119E4, 0x119E4}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A39}, {0x11A3B, 0x11A3E}, {0x11A47, 0x11A47}, {0x11A51, 0x11A5B},
    {0x11A8A, 0x11A99}, {0x11B60, 0x11B67}, {0x11C2F, 0x11C36}, {0x11C38, 0x11C3F}, {0x11C92, 0x11CA7}, {0x11CA9, 0x11CB6},
    {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D8A, 0x11D8E},
    {0x11D90, 0x11D91}, {0x11D93, 0x11D97}, {0x11EF3, 0x11EF6}, {0x11F00, 0x11F01}, {0x11F03, 0x11F03}, {0x11F34, 0x11F3A},
    {0x11F3E, 0x11F42}, {0x11F5A, 0x11F5A}, {0x13440, 0x13440}, {0x13447, 0x13455}, {0x1611E, 0x1612F}, {0x16AF0, 0x16AF4},
    {0x16B30, 0x16B36}, {0x16F4F, 0x16F4F}, {0x16F51, 0x16F87}, {0x16F8F, 0x16F92}, {0x16FE4, 0x16FE4}, {0x16FF0, 0x16FF1},
    {0x1BC9D, 0x1BC9E}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46}, {0x1D165, 0x1D169}, {0x1D16D, 0x1D172}, {0x1D17B, 0x1D182},
    {0x1D185, 0x1D18B}, {0x1D1AA, 0x1D1AD}, {0x1D242, 0x1D244}, {0x1DA00, 0x1DA36}, {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75},
    {0x1DA84, 0x1DA84}, {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021},
    {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF}, {0x1E5EE, 0x1E5EF}, {0x1E6E3, 0x1E6E3}, {0x1E6E6, 0x1E6E6}, {0x1E6EE, 0x1E6EF}, {0x1E6F5, 0x1E6F5},
    {0x1E8D0, 0x1E8D6}, {0x1E944, 0x1E94A}, {0xE0100, 0xE01EF},
};
// letters by case: first, last, kind (1 Lu/Lt, 2 Ll, 3 and 4 alternating from Lu/Lt or Ll): 305 rows
static const uint32_t unicode_letter_cases[][3] = {
    {0x0041, 0x005A, 1}, {0x0061, 0x007A, 2}, {0x00B5, 0x00B5, 2}, {0x00C0, 0x00D6, 1}, {0x00D8, 0x00DE, 1},
    {0x00DF, 0x00F6, 2}, {0x00F8, 0x00FF, 2}, {0x0100, 0x0137, 3}, {0x0138, 0x0148, 4}, {0x0149, 0x0178, 4},
    {0x0179, 0x017E, 3}, {0x017F, 0x0180, 2}, {0x0181, 0x0182, 1}, {0x0183, 0x0186, 4}, {0x0187, 0x0189, 3},
    {0x018A, 0x018B, 1}, {0x018C, 0x018D, 2}, {0x018E, 0x0191, 1}, {0x0192, 0x0192, 2}, {0x0193, 0x0194, 1},
    {0x0195, 0x0195, 2}, {0x0196, 0x0198, 1}, {0x0199, 0x019B, 2}, {0x019C, 0x019D, 1}, {0x019E, 0x019E, 2},
    {0x019F, 0x01A0, 1}, {0x01A1, 0x01A6, 4}, {0x01A7, 0x01AA, 3}, {0x01AB, 0x01AE, 4}, {0x01AF, 0x01B1, 3},
    {0x01B2, 0x01B3, 1}, {0x01B4, 0x01B7, 4}, {0x01B8, 0x01B8, 1}, {0x01B9, 0x01BA, 2}, {0x01BC, 0x01BC, 1},
    {0x01BD, 0x01BF, 2}, {0x01C4, 0x01C5, 1}, {0x01C6, 0x01C6, 2}, {0x01C7, 0x01C8, 1}, {0x01C9, 0x01C9, 2},
    {0x01CA, 0x01CB, 1}, {0x01CC, 0x01DC, 4}, {0x01DD, 0x01EF, 4}, {0x01F0, 0x01F0, 2}, {0x01F1, 0x01F2, 1},
    {0x01F3, 0x01F6, 4}, {0x01F7, 0x01F8, 1}, {0x01F9, 0x0233, 4}, {0x0234, 0x0239, 2}, {0x023A, 0x023B, 1},
    {0x023C, 0x023C, 2}, {0x023D, 0x023E, 1}, {0x023F, 0x0240, 2}, {0x0241, 0x0243, 3}, {0x0244, 0x0246, 1},
    {0x0247, 0x024F, 4}, {0x0250, 0x0293, 2}, {0x0296, 0x02AF, 2}, {0x0370, 0x0373, 3}, {0x0376, 0x0376, 1},
    {0x0377, 0x0377, 2}, {0x037B, 0x037D, 2}, {0x037F, 0x037F, 1}, {0x0386, 0x0386, 1}, {0x0388, 0x038A, 1},
    {0x038C, 0x038C, 1}, {0x038E, 0x038F, 1}, {0x0390, 0x0390, 2}, {0x0391, 0x03A1, 1}, {0x03A3, 0x03AB, 1},
    {0x03AC, 0x03CE, 2}, {0x03CF, 0x03CF, 1}, {0x03D0, 0x03D1, 2}, {0x03D2, 0x03D4, 1}, {0x03D5, 0x03D7, 2},
    {0x03D8, 0x03EF, 3}, {0x03F0, 0x03F3, 2}, {0x03F4, 0x03F4, 1}, {0x03F5, 0x03F5, 2}, {0x03F7, 0x03F9, 3},
    {0x03FA, 0x03FA, 1}, {0x03FB, 0x03FC, 2}, {0x03FD, 0x042F, 1}, {0x0430, 0x045F, 2}, {0x0460, 0x0481, 3},
    {0x048A, 0x04C0, 3}, {0x04C1, 0x04CE, 3}, {0x04CF, 0x052F, 4}, {0x0531, 0x0556, 1}, {0x0560, 0x0588, 2},
    {0x10A0, 0x10C5, 1}, {0x10C7, 0x10C7, 1}, {0x10CD, 0x10CD, 1}, {0x10D0, 0x10FA, 2}, {0x10FD, 0x10FF, 2},
    {0x13A0, 0x13F5, 1}, {0x13F8, 0x13FD, 2}, {0x1C80, 0x1C88, 2}, {0x1C89, 0x1C89, 1}, {0x1C8A, 0x1C8A, 2},
    {0x1C90, 0x1CBA, 1}, {0x1CBD, 0x1CBF, 1}, {0x1D00, 0x1D2B, 2}, {0x1D6B, 0x1D77, 2}, {0x1D79, 0x1D9A, 2},
    {0x1E00, 0x1E95, 3}, {0x1E96, 0x1E9D, 2}, {0x1E9E, 0x1EFF, 3}, {0x1F00, 0x1F07, 2}, {0x1F08, 0x1F0F, 1},
    {0x1F10, 0x1F15, 2}, {0x1F18, 0x1F1D, 1}, {0x1F20, 0x1F27, 2}, {0x1F28, 0x1F2F, 1}, {0x1F30, 0x1F37, 2},
    {0x1F38, 0x1F3F, 1}, {0x1F40, 0x1F45, 2}, {0x1F48, 0x1F4D, 1}, {0x1F50, 0x1F57, 2}, {0x1F59, 0x1F59, 1},
    {0x1F5B, 0x1F5B, 1}, {0x1F5D, 0x1F5D, 1}, {0x1F5F, 0x1F5F, 1}, {0x1F60, 0x1F67, 2}, {0x1F68, 0x1F6F, 1},
    {0x1F70, 0x1F7D, 2}, {0x1F80, 0x1F87, 2}, {0x1F88, 0x1F8F, 1}, {0x1F90, 0x1F97, 2}, {0x1F98, 0x1F9F, 1},
    {0x1FA0, 0x1FA7, 2}, {0x1FA8, 0x1FAF, 1}, {0x1FB0, 0x1FB4, 2}, {0x1FB6, 0x1FB7, 2}, {0x1FB8, 0x1FBC, 1},
    {0x1FBE, 0x1FBE, 2}, {0x1FC2, 0x1FC4, 2}, {0x1FC6, 0x1FC7, 2}, {0x1FC8, 0x1FCC, 1}, {0x1FD0, 0x1FD3, 2},
    {0x1FD6, 0x1FD7, 2}, {0x1FD8, 0x1FDB, 1}, {0x1FE0, 0x1FE7, 2}, {0x1FE8, 0x1FEC, 1}, {0x1FF2, 0x1FF4, 2},
    {0x1FF6, 0x1FF7, 2}, {0x1FF8, 0x1FFC, 1}, {0x2102, 0x2102, 1}, {0x2107, 0x2107, 1}, {0x210A, 0x210A, 2},
    {0x210B, 0x210D, 1}, {0x210E, 0x210F, 2}, {0x2110, 0x2112, 1}, {0x2113, 0x2113, 2}, {0x2115, 0x2115, 1},
    {0x2119, 0x211D, 1}, {0x2124, 0x2124, 1}, {0x2126, 0x2126, 1}, {0x2128, 0x2128, 1}, {0x212A, 0x212D, 1},
    {0x212F, 0x212F, 2}, {0x2130, 0x2133, 1}, {0x2134, 0x2134, 2}, {0x2139, 0x2139, 2}, {0x213C, 0x213D, 2},
    {0x213E, 0x213F, 1}, {0x2145, 0x2145, 1}, {0x2146, 0x2149, 2}, {0x214E, 0x214E, 2}, {0x2183, 0x2183, 1},
    {0x2184, 0x2184, 2}, {0x2C00, 0x2C2F, 1}, {0x2C30, 0x2C5F, 2}, {0x2C60, 0x2C62, 3}, {0x2C63, 0x2C64, 1},
    {0x2C65, 0x2C66, 2}, {0x2C67, 0x2C6D, 3}, {0x2C6E, 0x2C70, 1}, {0x2C71, 0x2C73, 4}, {0x2C74, 0x2C76, 4},
    {0x2C77, 0x2C7B, 2}, {0x2C7E, 0x2C80, 1}, {0x2C81, 0x2CE3, 4}, {0x2CE4, 0x2CE4, 2}, {0x2CEB, 0x2CEE, 3},
    {0x2CF2, 0x2CF2, 1}, {0x2CF3, 0x2CF3, 2}, {0x2D00, 0x2D25, 2}, {0x2D27, 0x2D27, 2}, {0x2D2D, 0x2D2D, 2},
    {0xA640, 0xA66D, 3}, {0xA680, 0xA69B, 3}, {0xA722, 0xA72F, 3}, {0xA730, 0xA731, 2}, {0xA732, 0xA76F, 3},
    {0xA771, 0xA778, 2}, {0xA779, 0xA77D, 3}, {0xA77E, 0xA787, 3}, {0xA78B, 0xA78E, 3}, {0xA790, 0xA793, 3},
    {0xA794, 0xA795, 2}, {0xA796, 0xA7AA, 3}, {0xA7AB, 0xA7AE, 1}, {0xA7AF, 0xA7AF, 2}, {0xA7B0, 0xA7B4, 1},
    {0xA7B5, 0xA7C4, 4}, {0xA7C5, 0xA7C7, 1}, {0xA7C8, 0xA7CB, 4}, {0xA7CC, 0xA7DC, 3}, {0xA7F5, 0xA7F5, 1},
    {0xA7F6, 0xA7F6, 2}, {0xA7FA, 0xA7FA, 2}, {0xAB30, 0xAB5A, 2}, {0xAB60, 0xAB68, 2}, {0xAB70, 0xABBF, 2},
    {0xFB00, 0xFB06, 2}, {0xFB13, 0xFB17, 2}, {0xFF21, 0xFF3A, 1}, {0xFF41, 0xFF5A, 2}, {0x10400, 0x10427, 1},
    {0x10428, 0x1044F, 2}, {0x104B0, 0x104D3, 1}, {0x104D8, 0x104FB, 2}, {0x10570, 0x1057A, 1}, {0x1057C, 0x1058A, 1},
    {0x1058C, 0x10592, 1}, {0x10594, 0x10595, 1}, {0x10597, 0x105A1, 2}, {0x105A3, 0x105B1, 2}, {0x105B3, 0x105B9, 2},
    {0x105BB, 0x105BC, 2}, {0x10C80, 0x10CB2, 1}, {0x10CC0, 0x10CF2, 2}, {0x10D50, 0x10D65, 1}, {0x10D70, 0x10D85, 2},
    {0x118A0, 0x118BF, 1}, {0x118C0, 0x118DF, 2}, {0x16E40, 0x16E5F, 1}, {0x16E60, 0x16E7F, 2}, {0x16EA0, 0x16EB8, 1},
    {0x16EBB, 0x16ED3, 2}, {0x1D400, 0x1D419, 1}, {0x1D41A, 0x1D433, 2}, {0x1D434, 0x1D44D, 1}, {0x1D44E, 0x1D454, 2},
    {0x1D456, 0x1D467, 2}, {0x1D468, 0x1D481, 1}, {0x1D482, 0x1D49B, 2}, {0x1D49C, 0x1D49C, 1}, {0x1D49E, 0x1D49F, 1},
    {0x1D4A2, 0x1D4A2, 1}, {0x1D4A5, 0x1D4A6, 1}, {0x1D4A9, 0x1D4AC, 1}, {0x1D4AE, 0x1D4B5, 1}, {0x1D4B6, 0x1D4B9, 2},
    {0x1D4BB, 0x1D4BB, 2}, {0x1D4BD, 0x1D4C3, 2}, {0x1D4C5, 0x1D4CF, 2}, {0x1D4D0, 0x1D4E9, 1}, {0x1D4EA, 0x1D503, 2},
    {0x1D504, 0x1D505, 1}, {0x1D507, 0x1D50A, 1}, {0x1D50D, 0x1D514, 1}, {0x1D516, 0x1D51C, 1}, {0x1D51E, 0x1D537, 2},
    {0x1D538, 0x1D539, 1}, {0x1D53B, 0x1D53E, 1}, {0x1D540, 0x1D544, 1}, {0x1D546, 0x1D546, 1}, {0x1D54A, 0x1D550, 1},
    {0x1D552, 0x1D56B, 2}, {0x1D56C, 0x1D585, 1}, {0x1D586, 0x1D59F, 2}, {0x1D5A0, 0x1D5B9, 1}, {0x1D5BA, 0x1D5D3, 2},
    {0x1D5D4, 0x1D5ED, 1}, {0x1D5EE, 0x1D607, 2}, {0x1D608, 0x1D621, 1}, {0x1D622, 0x1D63B, 2}, {0x1D63C, 0x1D655, 1},
    {0x1D656, 0x1D66F, 2}, {0x1D670, 0x1D689, 1}, {0x1D68A, 0x1D6A5, 2}, {0x1D6A8, 0x1D6C0, 1}, {0x1D6C2, 0x1D6DA, 2},
    {0x1D6DC, 0x1D6E1, 2}, {0x1D6E2, 0x1D6FA, 1}, {0x1D6FC, 0x1D714, 2}, {0x1D716, 0x1D71B, 2}, {0x1D71C, 0x1D734, 1},
    {0x1D736, 0x1D74E, 2}, {0x1D750, 0x1D755, 2}, {0x1D756, 0x1D76E, 1}, {0x1D770, 0x1D788, 2}, {0x1D78A, 0x1D78F, 2},
    {0x1D790, 0x1D7A8, 1}, {0x1D7AA, 0x1D7C2, 2}, {0x1D7C4, 0x1D7C9, 2}, {0x1D7CA, 0x1D7CA, 1}, {0x1D7CB, 0x1D7CB, 2},
    {0x1DF00, 0x1DF09, 2}, {0x1DF0B, 0x1DF1E, 2}, {0x1DF25, 0x1DF2A, 2}, {0x1E900, 0x1E921, 1}, {0x1E922, 0x1E943, 2},
};
// NFC: code point, first, second (0: none), by code point: 2081 rows
static const uint32_t unicode_decompositions[][3] = {
    {0x00C0, 0x0041, 0x0300}, {0x00C1, 0x0041, 0x0301}, {0x00C2, 0x0041, 0x0302}, {0x00C3, 0x0041, 0x0303},
    {0x00C4, 0x0041, 0x0308}, {0x00C5, 0x0041, 0x030A}, {0x00C7, 0x0043, 0x0327}, {0x00C8, 0x0045, 0x0300},
    {0x00C9, 0x0045, 0x0301}, {0x00CA, 0x0045, 0x0302}, {0x00CB, 0x0045, 0x0308}, {0x00CC, 0x0049, 0x0300},
    {0x00CD, 0x0049, 0x0301}, {0x00CE, 0x0049, 0x0302}, {0x00CF, 0x0049, 0x0308}, {0x00D1, 0x004E, 0x0303},
    {0x00D2, 0x004F, 0x0300}, {0x00D3, 0x004F, 0x0301}, {0x00D4, 0x004F, 0x0302}, {0x00D5, 0x004F, 0x0303},
    {0x00D6, 0x004F, 0x0308}, {0x00D9, 0x0055, 0x0300}, {0x00DA, 0x0055, 0x0301}, {0x00DB, 0x0055, 0x0302},
    {0x00DC, 0x0055, 0x0308}, {0x00DD, 0x0059, 0x0301}, {0x00E0, 0x0061, 0x0300}, {0x00E1, 0x0061, 0x0301},
    {0x00E2, 0x0061, 0x0302}, {0x00E3, 0x0061, 0x0303}, {0x00E4, 0x0061, 0x0308}, {0x00E5, 0x0061, 0x030A},
    {0x00E7, 0x0063, 0x0327}, {0x00E8, 0x0065, 0x0300}, {0x00E9, 0x0065, 0x0301}, {0x00EA, 0x0065, 0x0302},
    {0x00EB, 0x0065, 0x0308}, {0x00EC, 0x0069, 0x0300}, {0x00ED, 0x0069, 0x0301}, {0x00EE, 0x0069, 0x0302},
    {0x00EF, 0x0069, 0x0308}, {0x00F1, 0x006E, 0x0303}, {0x00F2, 0x006F, 0x0300}, {0x00F3, 0x006F, 0x0301},
    {0x00F4, 0x006F, 0x0302}, {0x00F5, 0x006F, 0x0303}, {0x00F6, 0x006F, 0x0308}, {0x00F9, 0x0075, 0x0300},
    {0x00FA, 0x0075, 0x0301}, {0x00FB, 0x0075, 0x0302}, {0x00FC, 0x0075, 0x0308}, {0x00FD, 0x0079, 0x0301},
    {0x00FF, 0x0079, 0x0308}, {0x0100, 0x0041, 0x0304}, {0x0101, 0x0061, 0x0304}, {0x0102, 0x0041, 0x0306},
    {0x0103, 0x0061, 0x0306}, {0x0104, 0x0041, 0x0328}, {0x0105, 0x0061, 0x0328}, {0x0106, 0x0043, 0x0301},
    {0x0107, 0x0063, 0x0301}, {0x0108, 0x0043, 0x0302}, {0x0109, 0x0063, 0x0302}, {0x010A, 0x0043, 0x0307},
    {0x010B, 0x0063, 0x0307}, {0x010C, 0x0043, 0x030C}, {0x010D, 0x0063, 0x030C}, {0x010E, 0x0044, 0x030C},
    {0x010F, 0x0064, 0x030C}, {0x0112, 0x0045, 0x0304}, {0x0113, 0x0065, 0x0304}, {0x0114, 0x0045, 0x0306},
    {0x0115, 0x0065, 0x0306}, {0x0116, 0x0045, 0x0307}, {0x0117, 0x0065, 0x0307}, {0x0118, 0x0045, 0x0328},
    {0x0119, 0x0065, 0x0328}, {0x011A, 0x0045, 0x030C}, {0x011B, 0x0065, 0x030C}, {0x011C, 0x0047, 0x0302},
    {0x011D, 0x0067, 0x0302}, {0x011E, 0x0047, 0x0306}, {0x011F, 0x0067, 0x0306}, {0x0120, 0x0047, 0x0307},
    {0x0121, 0x0067, 0x0307}, {0x0122, 0x0047, 0x0327}, {0x0123, 0x0067, 0x0327}, {0x0124, 0x0048, 0x0302},
    {0x0125, 0x0068, 0x0302}, {0x0128, 0x0049, 0x0303}, {0x0129, 0x0069, 0x0303}, {0x012A, 0x0049, 0x0304},
    {0x012B, 0x0069, 0x0304}, {0x012C, 0x0049, 0x0306}, {0x012D, 0x0069, 0x0306}, {0x012E, 0x0049, 0x0328},
    {0x012F, 0x0069, 0x0328}, {0x0130, 0x0049, 0x0307}, {0x0134, 0x004A, 0x0302}, {0x0135, 0x006A, 0x0302},
    {0x0136, 0x004B, 0x0327}, {0x0137, 0x006B, 0x0327}, {0x0139, 0x004C, 0x0301}, {0x013A, 0x006C, 0x0301},
    {0x013B, 0x004C, 0x0327}, {0x013C, 0x006C, 0x0327}, {0x013D, 0x004C, 0x030C}, {0x013E, 0x006C, 0x030C},
    {0x0143, 0x004E, 0x0301}, {0x0144, 0x006E, 0x0301}, {0x0145, 0x004E, 0x0327}, {0x0146, 0x006E, 0x0327},
    {0x0147, 0x004E, 0x030C}, {0x0148, 0x006E, 0x030C}, {0x014C, 0x004F, 0x0304}, {0x014D, 0x006F, 0x0304},
    {0x014E, 0x004F, 0x0306}, {0x014F, 0x006F, 0x0306}, {0x0150, 0x004F, 0x030B}, {0x0151, 0x006F, 0x030B},
    {0x0154, 0x0052, 0x0301}, {0x0155, 0x0072, 0x0301}, {0x0156, 0x0052, 0x0327}, {0x0157, 0x0072, 0x0327},
    {0x0158, 0x0052, 0x030C}, {0x0159, 0x0072, 0x030C}, {0x015A, 0x0053, 0x0301}, {0x015B, 0x0073, 0x0301},
    {0x015C, 0x0053, 0x0302}, {0x015D, 0x0073, 0x0302}, {0x015E, 0x0053, 0x0327}, {0x015F, 0x0073, 0x0327},
    {0x0160, 0x0053, 0x030C}, {0x0161, 0x0073, 0x030C}, {0x0162, 0x0054, 0x0327}, {0x0163, 0x0074, 0x0327},
    {0x0164, 0x0054, 0x030C}, {0x0165, 0x0074, 0x030C}, {0x0168, 0x0055, 0x0303}, {0x0169, 0x0075, 0x0303},
    {0x016A, 0x0055, 0x0304}, {0x016B, 0x0075, 0x0304}, {0x016C, 0x0055, 0x0306}, {0x016D, 0x0075, 0x0306},
    {0x016E, 0x0055, 0x030A}, {0x016F, 0x0075, 0x030A}, {0x0170, 0x0055, 0x030B}, {0x0171, 0x0075, 0x030B},
    {0x0172, 0x0055, 0x0328}, {0x0173, 0x0075, 0x0328}, {0x0174, 0x0057, 0x0302}, {0x0175, 0x0077, 0x0302},
    {0x0176, 0x0059, 0x0302}, {0x0177, 0x0079, 0x0302}, {0x0178, 0x0059, 0x0308}, {0x0179, 0x005A, 0x0301},
    {0x017A, 0x007A, 0x0301}, {0x017B, 0x005A, 0x0307}, {0x017C, 0x007A, 0x0307}, {0x017D, 0x005A, 0x030C},
    {0x017E, 0x007A, 0x030C}, {0x01A0, 0x004F, 0x031B}, {0x01A1, 0x006F, 0x031B}, {0x01AF, 0x0055, 0x031B},
    {0x01B0, 0x0075, 0x031B}, {0x01CD, 0x0041, 0x030C}, {0x01CE, 0x0061, 0x030C}, {0x01CF, 0x0049, 0x030C},
    {0x01D0, 0x0069, 0x030C}, {0x01D1, 0x004F, 0x030C}, {0x01D2, 0x006F, 0x030C}, {0x01D3, 0x0055, 0x030C},
    {0x01D4, 0x0075, 0x030C}, {0x01D5, 0x00DC, 0x0304}, {0x01D6, 0x00FC, 0x0304}, {0x01D7, 0x00DC, 0x0301},
    {0x01D8, 0x00FC, 0x0301}, {0x01D9, 0x00DC, 0x030C}, {0x01DA, 0x00FC, 0x030C}, {0x01DB, 0x00DC, 0x0300},
    {0x01DC, 0x00FC, 0x0300}, {0x01DE, 0x00C4, 0x0304}, {0x01DF, 0x00E4, 0x0304}, {0x01E0, 0x0226, 0x0304},
    {0x01E1, 0x0227, 0x0304}, {0x01E2, 0x00C6, 0x0304}, {0x01E3, 0x00E6, 0x0304}, {0x01E6, 0x0047, 0x030C},
    {0x01E7, 0x0067, 0x030C}, {0x01E8, 0x004B, 0x030C}, {0x01E9, 0x006B, 0x030C}, {0x01EA, 0x004F, 0x0328},
    {0x01EB, 0x006F, 0x0328}, {0x01EC, 0x01EA, 0x0304}, {0x01ED, 0x01EB, 0x0304}, {0x01EE, 0x01B7, 0x030C},
    {0x01EF, 0x0292, 0x030C}, {0x01F0, 0x006A, 0x030C}, {0x01F4, 0x0047, 0x0301}, {0x01F5, 0x0067, 0x0301},
    {0x01F8, 0x004E, 0x0300}, {0x01F9, 0x006E, 0x0300}, {0x01FA, 0x00C5, 0x0301}, {0x01FB, 0x00E5, 0x0301},
    {0x01FC, 0x00C6, 0x0301}, {0x01FD, 0x00E6, 0x0301}, {0x01FE, 0x00D8, 0x0301}, {0x01FF, 0x00F8, 0x0301},
    {0x0200, 0x0041, 0x030F}, {0x0201, 0x0061, 0x030F}, {0x0202, 0x0041, 0x0311}, {0x0203, 0x0061, 0x0311},
    {0x0204, 0x0045, 0x030F}, {0x0205, 0x0065, 0x030F}, {0x0206, 0x0045, 0x0311}, {0x0207, 0x0065, 0x0311},
    {0x0208, 0x0049, 0x030F}, {0x0209, 0x0069, 0x030F}, {0x020A, 0x0049, 0x0311}, {0x020B, 0x0069, 0x0311},
    {0x020C, 0x004F, 0x030F}, {0x020D, 0x006F, 0x030F}, {0x020E, 0x004F, 0x0311}, {0x020F, 0x006F, 0x0311},
    {0x0210, 0x0052, 0x030F}, {0x0211, 0x0072, 0x030F}, {0x0212, 0x0052, 0x0311}, {0x0213, 0x0072, 0x0311},
    {0x0214, 0x0055, 0x030F}, {0x0215, 0x0075, 0x030F}, {0x0216, 0x0055, 0x0311}, {0x0217, 0x0075, 0x0311},
    {0x0218, 0x0053, 0x0326}, {0x0219, 0x0073, 0x0326}, {0x021A, 0x0054, 0x0326}, {0x021B, 0x0074, 0x0326},
    {0x021E, 0x0048, 0x030C}, {0x021F, 0x0068, 0x030C}, {0x0226, 0x0041, 0x0307}, {0x0227, 0x0061, 0x0307},
    {0x0228, 0x0045, 0x0327}, {0x0229, 0x0065, 0x0327}, {0x022A, 0x00D6, 0x0304}, {0x022B, 0x00F6, 0x0304},
    {0x022C, 0x00D5, 0x0304}, {0x022D, 0x00F5, 0x0304}, {0x022E, 0x004F, 0x0307}, {0x022F, 0x006F, 0x0307},
    {0x0230, 0x022E, 0x0304}, {0x0231, 0x022F, 0x0304}, {0x0232, 0x0059, 0x0304}, {0x0233, 0x0079, 0x0304},
    {0x0340, 0x0300, 0}, {0x0341, 0x0301, 0}, {0x0343, 0x0313, 0}, {0x0344, 0x0308, 0x0301},
    {0x0374, 0x02B9, 0}, {0x037E, 0x003B, 0}, {0x0385, 0x00A8, 0x0301}, {0x0386, 0x0391, 0x0301},
    {0x0387, 0x00B7, 0}, {0x0388, 0x0395, 0x0301}, {0x0389, 0x0397, 0x0301}, {0x038A, 0x0399, 0x0301},
    {0x038C, 0x039F, 0x0301}, {0x038E, 0x03A5, 0x0301}, {0x038F, 0x03A9, 0x0301}, {0x0390, 0x03CA, 0x0301},
    {0x03AA, 0x0399, 0x0308}, {0x03AB, 0x03A5, 0x0308}, {0x03AC, 0x03B1, 0x0301}, {0x03AD, 0x03B5, 0x0301},
    {0x03AE, 0x03B7, 0x0301}, {0x03AF, 0x03B9, 0x0301}, {0x03B0, 0x03CB, 0x0301}, {0x03CA, 0x03B9, 0x0308},
    {0x03CB, 0x03C5, 0x0308}, {0x03CC, 0x03BF, 0x0301}, {0x03CD, 0x03C5, 0x0301}, {0x03CE, 0x03C9, 0x0301},
    {0x03D3, 0x03D2, 0x0301}, {0x03D4, 0x03D2, 0x0308}, {0x0400, 0x0415, 0x0300}, {0x0401, 0x0415, 0x0308},
    {0x0403, 0x0413, 0x0301}, {0x0407, 0x0406, 0x0308}, {0x040C, 0x041A, 0x0301}, {0x040D, 0x0418, 0x0300},
    {0x040E, 0x0423, 0x0306}, {0x0419, 0x0418, 0x0306}, {0x0439, 0x0438, 0x0306}, {0x0450, 0x0435, 0x0300},
    {0x0451, 0x0435, 0x0308}, {0x0453, 0x0433, 0x0301}, {0x0457, 0x0456, 0x0308}, {0x045C, 0x043A, 0x0301},
    {0x045D, 0x0438, 0x0300}, {0x045E, 0x0443, 0x0306}, {0x0476, 0x0474, 0x030F}, {0x0477, 0x0475, 0x030F},
    {0x04C1, 0x0416, 0x0306}, {0x04C2, 0x0436, 0x0306}, {0x04D0, 0x0410, 0x0306}, {0x04D1, 0x0430, 0x0306},
    {0x04D2, 0x0410, 0x0308}, {0x04D3, 0x0430, 0x0308}, {0x04D6, 0x0415, 0x0306}, {0x04D7, 0x0435, 0x0306},
    {0x04DA, 0x04D8, 0x0308}, {0x04DB, 0x04D9, 0x0308}, {0x04DC, 0x0416, 0x0308}, {0x04DD, 0x0436, 0x0308},
    {0x04DE, 0x0417, 0x0308}, {0x04DF, 0x0437, 0x0308}, {0x04E2, 0x0418, 0x0304}, {0x04E3, 0x0438, 0x0304},
    {0x04E4, 0x0418, 0x0308}, {0x04E5, 0x0438, 0x0308}, {0x04E6, 0x041E, 0x0308}, {0x04E7, 0x043E, 0x0308},
    {0x04EA, 0x04E8, 0x0308}, {0x04EB, 0x04E9, 0x0308}, {0x04EC, 0x042D, 0x0308}, {0x04ED, 0x044D, 0x0308},
    {0x04EE, 0x0423, 0x0304}, {0x04EF, 0x0443, 0x0304}, {0x04F0, 0x0423, 0x0308}, {0x04F1, 0x0443, 0x0308},
    {0x04F2, 0x0423, 0x030B}, {0x04F3, 0x0443, 0x030B}, {0x04F4, 0x0427, 0x0308}, {0x04F5, 0x0447, 0x0308},
    {0x04F8, 0x042B, 0x0308}, {0x04F9, 0x044B, 0x0308}, {0x0622, 0x0627, 0x0653}, {0x0623, 0x0627, 0x0654},
    {0x0624, 0x0648, 0x0654}, {0x0625, 0x0627, 0x0655}, {0x0626, 0x064A, 0x0654}, {0x06C0, 0x06D5, 0x0654},
    {0x06C2, 0x06C1, 0x0654}, {0x06D3, 0x06D2, 0x0654}, {0x0929, 0x0928, 0x093C}, {0x0931, 0x0930, 0x093C},
    {0x0934, 0x0933, 0x093C}, {0x0958, 0x0915, 0x093C}, {0x0959, 0x0916, 0x093C}, {0x095A, 0x0917, 0x093C},
    {0x095B, 0x091C, 0x093C}, {0x095C, 0x0921, 0x093C}, {0x095D, 0x0922, 0x093C}, {0x095E, 0x092B, 0x093C},
    {0x095F, 0x092F, 0x093C}, {0x09CB, 0x09C7, 0x09BE}, {0x09CC, 0x09C7, 0x09D7}, {0x09DC, 0x09A1, 0x09BC},
    {0x09DD, 0x09A2, 0x09BC}, {0x09DF, 0x09AF, 0x09BC}, {0x0A33, 0x0A32, 0x0A3C}, {0x0A36, 0x0A38, 0x0A3C},
    {0x0A59, 0x0A16, 0x0A3C}, {0x0A5A, 0x0A17, 0x0A3C}, {0x0A5B, 0x0A1C, 0x0A3C}, {0x0A5E, 0x0A2B, 0x0A3C},
    {0x0B48, 0x0B47, 0x0B56}, {0x0B4B, 0x0B47, 0x0B3E}, {0x0B4C, 0x0B47, 0x0B57}, {0x0B5C, 0x0B21, 0x0B3C},
    {0x0B5D, 0x0B22, 0x0B3C}, {0x0B94, 0x0B92, 0x0BD7}, {0x0BCA, 0x0BC6, 0x0BBE}, {0x0BCB, 0x0BC7, 0x0BBE},
    {0x0BCC, 0x0BC6, 0x0BD7}, {0x0C48, 0x0C46, 0x0C56}, {0x0CC0, 0x0CBF, 0x0CD5}, {0x0CC7, 0x0CC6, 0x0CD5},
    {0x0CC8, 0x0CC6, 0x0CD6}, {0x0CCA, 0x0CC6, 0x0CC2}, {0x0CCB, 0x0CCA, 0x0CD5}, {0x0D4A, 0x0D46, 0x0D3E},
    {0x0D4B, 0x0D47, 0x0D3E}, {0x0D4C, 0x0D46, 0x0D57}, {0x0DDA, 0x0DD9, 0x0DCA}, {0x0DDC, 0x0DD9, 0x0DCF},
    {0x0DDD, 0x0DDC, 0x0DCA}, {0x0DDE, 0x0DD9, 0x0DDF}, {0x0F43, 0x0F42, 0x0FB7}, {0x0F4D, 0x0F4C, 0x0FB7},
    {0x0F52, 0x0F51, 0x0FB7}, {0x0F57, 0x0F56, 0x0FB7}, {0x0F5C, 0x0F5B, 0x0FB7}, {0x0F69, 0x0F40, 0x0FB5},
    {0x0F73, 0x0F71, 0x0F72}, {0x0F75, 0x0F71, 0x0F74}, {0x0F76, 0x0FB2, 0x0F80}, {0x0F78, 0x0FB3, 0x0F80},
    {0x0F81, 0x0F71, 0x0F80}, {0x0F93, 0x0F92, 0x0FB7}, {0x0F9D, 0x0F9C, 0x0FB7}, {0x0FA2, 0x0FA1, 0x0FB7},
    {0x0FA7, 0x0FA6, 0x0FB7}, {0x0FAC, 0x0FAB, 0x0FB7}, {0x0FB9, 0x0F90, 0x0FB5}, {0x1026, 0x1025, 0x102E},
    {0x1B06, 0x1B05, 0x1B35}, {0x1B08, 0x1B07, 0x1B35}, {0x1B0A, 0x1B09, 0x1B35}, {0x1B0C, 0x1B0B, 0x1B35},
    {0x1B0E, 0x1B0D, 0x1B35}, {0x1B12, 0x1B11, 0x1B35}, {0x1B3B, 0x1B3A, 0x1B35}, {0x1B3D, 0x1B3C, 0x1B35},
    {0x1B40, 0x1B3E, 0x1B35}, {0x1B41, 0x1B3F, 0x1B35}, {0x1B43, 0x1B42, 0x1B35}, {0x1E00, 0x0041, 0x0325},
    {0x1E01, 0x0061, 0x0325}, {0x1E02, 0x0042, 0x0307}, {0x1E03, 0x0062, 0x0307}, {0x1E04, 0x0042, 0x0323},
    {0x1E05, 0x0062, 0x0323}, {0x1E06, 0x0042, 0x0331}, {0x1E07, 0x0062, 0x0331}, {0x1E08, 0x00C7, 0x0301},
    {0x1E09, 0x00E7, 0x0301}, {0x1E0A, 0x0044, 0x0307}, {0x1E0B, 0x0064, 0x0307}, {0x1E0C, 0x0044, 0x0323},
    {0x1E0D, 0x0064, 0x0323}, {0x1E0E, 0x0044, 0x0331}, {0x1E0F, 0x0064, 0x0331}, {0x1E10, 0x0044, 0x0327},
    {0x1E11, 0x0064, 0x0327}, {0x1E12, 0x0044, 0x032D}, {0x1E13, 0x0064, 0x032D}, {0x1E14, 0x0112, 0x0300},
    {0x1E15, 0x0113, 0x0300}, {0x1E16, 0x0112, 0x0301}, {0x1E17, 0x0113, 0x0301}, {0x1E18, 0x0045, 0x032D},
    {0x1E19, 0x0065, 0x032D}, {0x1E1A, 0x0045, 0x0330}, {0x1E1B, 0x0065, 0x0330}, {0x1E1C, 0x0228, 0x0306},
    {0x1E1D, 0x0229, 0x0306}, {0x1E1E, 0x0046, 0x0307}, {0x1E1F, 0x0066, 0x0307}, {0x1E20, 0x0047, 0x0304},
    {0x1E21, 0x0067, 0x0304}, {0x1E22, 0x0048, 0x0307}, {0x1E23, 0x0068, 0x0307}, {0x1E24, 0x0048, 0x0323},
    {0x1E25, 0x0068, 0x0323}, {0x1E26, 0x0048, 0x0308}, {0x1E27, 0x0068, 0x0308}, {0x1E28, 0x0048, 0x0327},
    {0x1E29, 0x0068, 0x0327}, {0x1E2A, 0x0048, 0x032E}, {0x1E2B, 0x0068, 0x032E}, {0x1E2C, 0x0049, 0x0330},
    {0x1E2D, 0x0069, 0x0330}, {0x1E2E, 0x00CF, 0x0301}, {0x1E2F, 0x00EF, 0x0301}, {0x1E30, 0x004B, 0x0301},
    {0x1E31, 0x006B, 0x0301}, {0x1E32, 0x004B, 0x0323}, {0x1E33, 0x006B, 0x0323}, {0x1E34, 0x004B, 0x0331},
    {0x1E35, 0x006B, 0x0331}, {0x1E36, 0x004C, 0x0323}, {0x1E37, 0x006C, 0x0323}, {0x1E38, 0x1E36, 0x0304},
    {0x1E39, 0x1E37, 0x0304}, {0x1E3A, 0x004C, 0x0331}, {0x1E3B, 0x006C, 0x0331}, {0x1E3C, 0x004C, 0x032D},
    {0x1E3D, 0x006C, 0x032D}, {0x1E3E, 0x004D, 0x0301}, {0x1E3F, 0x006D, 0x0301}, {0x1E40, 0x004D, 0x0307},
    {0x1E41, 0x006D, 0x0307}, {0x1E42, 0x004D, 0x0323}, {0x1E43, 0x006D, 0x0323}, {0x1E44, 0x004E, 0x0307},
    {0x1E45, 0x006E, 0x0307}, {0x1E46, 0x004E, 0x0323}, {0x1E47, 0x006E, 0x0323}, {0x1E48, 0x004E, 0x0331},
    {0x1E49, 0x006E, 0x0331}, {0x1E4A, 0x004E, 0x032D}, {0x1E4B, 0x006E, 0x032D}, {0x1E4C, 0x00D5, 0x0301},
    {0x1E4D, 0x00F5, 0x0301}, {0x1E4E, 0x00D5, 0x0308}, {0x1E4F, 0x00F5, 0x0308}, {0x1E50, 0x014C, 0x0300},
    {0x1E51, 0x014D, 0x0300}, {0x1E52, 0x014C, 0x0301}, {0x1E53, 0x014D, 0x0301}, {0x1E54, 0x0050, 0x0301},
    {0x1E55, 0x0070, 0x0301}, {0x1E56, 0x0050, 0x0307}, {0x1E57, 0x0070, 0x0307}, {0x1E58, 0x0052, 0x0307},
    {0x1E59, 0x0072, 0x0307}, {0x1E5A, 0x0052, 0x0323}, {0x1E5B, 0x0072, 0x0323}, {0x1E5C, 0x1E5A, 0x0304},
    {0x1E5D, 0x1E5B, 0x0304}, {0x1E5E, 0x0052, 0x0331}, {0x1E5F, 0x0072, 0x0331}, {0x1E60, 0x0053, 0x0307},
    {0x1E61, 0x0073, 0x0307}, {0x1E62, 0x0053, 0x0323}, {0x1E63, 0x0073, 0x0323}, {0x1E64, 0x015A, 0x0307},
    {0x1E65, 0x015B, 0x0307}, {0x1E66, 0x0160, 0x0307}, {0x1E67, 0x0161, 0x0307}, {0x1E68, 0x1E62, 0x0307},
    {0x1E69, 0x1E63, 0x0307}, {0x1E6A, 0x0054, 0x0307}, {0x1E6B, 0x0074, 0x0307}, {0x1E6C, 0x0054, 0x0323},
    {0x1E6D, 0x0074, 0x0323}, {0x1E6E, 0x0054, 0x0331}, {0x1E6F, 0x0074, 0x0331}, {0x1E70, 0x0054, 0x032D},
    {0x1E71, 0x0074, 0x032D}, {0x1E72, 0x0055, 0x0324}, {0x1E73, 0x0075, 0x0324}, {0x1E74, 0x0055, 0x0330},
    {0x1E75, 0x0075, 0x0330}, {0x1E76, 0x0055, 0x032D}, {0x1E77, 0x0075, 0x032D}, {0x1E78, 0x0168, 0x0301},
    {0x1E79, 0x0169, 0x0301}, {0x1E7A, 0x016A, 0x0308}, {0x1E7B, 0x016B, 0x0308}, {0x1E7C, 0x0056, 0x0303},
    {0x1E7D, 0x0076, 0x0303}, {0x1E7E, 0x0056, 0x0323}, {0x1E7F, 0x0076, 0x0323}, {0x1E80, 0x0057, 0x0300},
    {0x1E81, 0x0077, 0x0300}, {0x1E82, 0x0057, 0x0301}, {0x1E83, 0x0077, 0x0301}, {0x1E84, 0x0057, 0x0308},
    {0x1E85, 0x0077, 0x0308}, {0x1E86, 0x0057, 0x0307}, {0x1E87, 0x0077, 0x0307}, {0x1E88, 0x0057, 0x0323},
    {0x1E89, 0x0077, 0x0323}, {0x1E8A, 0x0058, 0x0307}, {0x1E8B, 0x0078, 0x0307}, {0x1E8C, 0x0058, 0x0308},
    {0x1E8D, 0x0078, 0x0308}, {0x1E8E, 0x0059, 0x0307}, {0x1E8F, 0x0079, 0x0307}, {0x1E90, 0x005A, 0x0302},
    {0x1E91, 0x007A, 0x0302}, {0x1E92, 0x005A, 0x0323}, {0x1E93, 0x007A, 0x0323}, {0x1E94, 0x005A, 0x0331},
    {0x1E95, 0x007A, 0x0331}, {0x1E96, 0x0068, 0x0331}, {0x1E97, 0x0074, 0x0308}, {0x1E98, 0x0077, 0x030A},
    {0x1E99, 0x0079, 0x030A}, {0x1E9B, 0x017F, 0x0307}, {0x1EA0, 0x0041, 0x0323}, {0x1EA1, 0x0061, 0x0323},
    {0x1EA2, 0x0041, 0x0309}, {0x1EA3, 0x0061, 0x0309}, {0x1EA4, 0x00C2, 0x0301}, {0x1EA5, 0x00E2, 0x0301},
    {0x1EA6, 0x00C2, 0x0300}, {0x1EA7, 0x00E2, 0x0300}, {0x1EA8, 0x00C2, 0x0309}, {0x1EA9, 0x00E2, 0x0309},
    {0x1EAA, 0x00C2, 0x0303}, {0x1EAB, 0x00E2, 0x0303}, {0x1EAC, 0x1EA0, 0x0302}, {0x1EAD, 0x1EA1, 0x0302},
    {0x1EAE, 0x0102, 0x0301}, {0x1EAF, 0x0103, 0x0301}, {0x1EB0, 0x0102, 0x0300}, {0x1EB1, 0x0103, 0x0300},
    {0x1EB2, 0x0102, 0x0309}, {0x1EB3, 0x0103, 0x0309}, {0x1EB4, 0x0102, 0x0303}, {0x1EB5, 0x0103, 0x0303},
    {0x1EB6, 0x1EA0, 0x0306}, {0x1EB7, 0x1EA1, 0x0306}, {0x1EB8, 0x0045, 0x0323}, {0x1EB9, 0x0065, 0x0323},
    {0x1EBA, 0x0045, 0x0309}, {0x1EBB, 0x0065, 0x0309}, {0x1EBC, 0x0045, 0x0303}, {0x1EBD, 0x0065, 0x0303},
    {0x1EBE, 0x00CA, 0x0301}, {0x1EBF, 0x00EA, 0x0301}, {0x1EC0, 0x00CA, 0x0300}, {0x1EC1, 0x00EA, 0x0300},
    {0x1EC2, 0x00CA, 0x0309}, {0x1EC3, 0x00EA, 0x0309}, {0x1EC4, 0x00CA, 0x0303}, {0x1EC5, 0x00EA, 0x0303},
    {0x1EC6, 0x1EB8, 0x0302}, {0x1EC7, 0x1EB9, 0x0302}, {0x1EC8, 0x0049, 0x0309}, {0x1EC9, 0x0069, 0x0309},
    {0x1ECA, 0x0049, 0x0323}, {0x1ECB, 0x0069, 0x0323}, {0x1ECC, 0x004F, 0x0323}, {0x1ECD, 0x006F, 0x0323},
    {0x1ECE, 0x004F, 0x0309}, {0x1ECF, 0x006F, 0x0309}, {0x1ED0, 0x00D4, 0x0301}, {0x1ED1, 0x00F4, 0x0301},
    {0x1ED2, 0x00D4, 0x0300}, {0x1ED3, 0x00F4, 0x0300}, {0x1ED4, 0x00D4, 0x0309}, {0x1ED5, 0x00F4, 0x0309},
    {0x1ED6, 0x00D4, 0x0303}, {0x1ED7, 0x00F4, 0x0303}, {0x1ED8, 0x1ECC, 0x0302}, {0x1ED9, 0x1ECD, 0x0302},
    {0x1EDA, 0x01A0, 0x0301}, {0x1EDB, 0x01A1, 0x0301}, {0x1EDC, 0x01A0, 0x0300}, {0x1EDD, 0x01A1, 0x0300},
    {0x1EDE, 0x01A0, 0x0309}, {0x1EDF, 0x01A1, 0x0309}, {0x1EE0, 0x01A0, 0x0303}, {0x1EE1, 0x01A1, 0x0303},
    {0x1EE2, 0x01A0, 0x0323}, {0x1EE3, 0x01A1, 0x0323}, {0x1EE4, 0x0055, 0x0323}, {0x1EE5, 0x0075, 0x0323},
    {0x1EE6, 0x0055, 0x0309}, {0x1EE7, 0x0075, 0x0309}, {0x1EE8, 0x01AF, 0x0301}, {0x1EE9, 0x01B0, 0x0301},
    {0x1EEA, 0x01AF, 0x0300}, {0x1EEB, 0x01B0, 0x0300}, {0x1EEC, 0x01AF, 0x0309}, {0x1EED, 0x01B0, 0x0309},
    {0x1EEE, 0x01AF, 0x0303}, {0x1EEF, 0x01B0, 0x0303}, {0x1EF0, 0x01AF, 0x0323}, {0x1EF1, 0x01B0, 0x0323},
    {0x1EF2, 0x0059, 0x0300}, {0x1EF3, 0x0079, 0x0300}, {0x1EF4, 0x0059, 0x0323}, {0x1EF5, 0x0079, 0x0323},
    {0x1EF6, 0x0059, 0x0309}, {0x1EF7, 0x0079, 0x0309}, {0x1EF8, 0x0059, 0x0303}, {0x1EF9, 0x0079, 0x0303},
    {0x1F00, 0x03B1, 0x0313}, {0x1F01, 0x03B1, 0x0314}, {0x1F02, 0x1F00, 0x0300}, {0x1F03, 0x1F01, 0x0300},
    {0x1F04, 0x1F00, 0x0301}, {0x1F05, 0x1F01, 0x0301}, {0x1F06, 0x1F00, 0x0342}, {0x1F07, 0x1F01, 0x0342},
    {0x1F08, 0x0391, 0x0313}, {0x1F09, 0x0391, 0x0314}, {0x1F0A, 0x1F08, 0x0300}, {0x1F0B, 0x1F09, 0x0300},
    {0x1F0C, 0x1F08, 0x0301}, {0x1F0D, 0x1F09, 0x0301}, {0x1F0E, 0x1F08, 0x0342}, {0x1F0F, 0x1F09, 0x0342},
    {0x1F10, 0x03B5, 0x0313}, {0x1F11, 0x03B5, 0x0314}, {0x1F12, 0x1F10, 0x0300}, {0x1F13, 0x1F11, 0x0300},
    {0x1F14, 0x1F10, 0x0301}, {0x1F15, 0x1F11, 0x0301}, {0x1F18, 0x0395, 0x0313}, {0x1F19, 0x0395, 0x0314},
    {0x1F1A, 0x1F18, 0x0300}, {0x1F1B, 0x1F19, 0x0300}, {0x1F1C, 0x1F18, 0x0301}, {0x1F1D, 0x1F19, 0x0301},
    {0x1F20, 0x03B7, 0x0313}, {0x1F21, 0x03B7, 0x0314}, {0x1F22, 0x1F20, 0x0300}, {0x1F23, 0x1F21, 0x0300},
    {0x1F24, 0x1F20, 0x0301}, {0x1F25, 0x1F21, 0x0301}, {0x1F26, 0x1F20, 0x0342}, {0x1F27, 0x1F21, 0x0342},
    {0x1F28, 0x0397, 0x0313}, {0x1F29, 0x0397, 0x0314}, {0x1F2A, 0x1F28, 0x0300}, {0x1F2B, 0x1F29, 0x0300},
    {0x1F2C, 0x1F28, 0x0301}, {0x1F2D, 0x1F29, 0x0301}, {0x1F2E, 0x1F28, 0x0342}, {0x1F2F, 0x1F29, 0x0342},
    {0x1F30, 0x03B9, 0x0313}, {0x1F31, 0x03B9, 0x0314}, {0x1F32, 0x1F30, 0x0300}, {0x1F33, 0x1F31, 0x0300},
    {0x1F34, 0x1F30, 0x0301}, {0x1F35, 0x1F31, 0x0301}, {0x1F36, 0x1F30, 0x0342}, {0x1F37, 0x1F31, 0x0342},
    {0x1F38, 0x0399, 0x0313}, {0x1F39, 0x0399, 0x0314}, {0x1F3A, 0x1F38, 0x0300}, {0x1F3B, 0x1F39, 0x0300},
    {0x1F3C, 0x1F38, 0x0301}, {0x1F3D, 0x1F39, 0x0301}, {0x1F3E, 0x1F38, 0x0342}, {0x1F3F, 0x1F39, 0x0342},
    {0x1F40, 0x03BF, 0x0313}, {0x1F41, 0x03BF, 0x0314}, {0x1F42, 0x1F40, 0x0300}, {0x1F43, 0x1F41, 0x0300},
    {0x1F44, 0x1F40, 0x0301}, {0x1F45, 0x1F41, 0x0301}, {0x1F48, 0x039F, 0x0313}, {0x1F49, 0x039F, 0x0314},
    {0x1F4A, 0x1F48, 0x0300}, {0x1F4B, 0x1F49, 0x0300}, {0x1F4C, 0x1F48, 0x0301}, {0x1F4D, 0x1F49, 0x0301},
    {0x1F50, 0x03C5, 0x0313}, {0x1F51, 0x03C5, 0x0314}, {0x1F52, 0x1F50, 0x0300}, {0x1F53, 0x1F51, 0x0300},
    {0x1F54, 0x1F50, 0x0301}, {0x1F55, 0x1F51, 0x0301}, {0x1F56, 0x1F50, 0x0342}, {0x1F57, 0x1F51, 0x0342},
    {0x1F59, 0x03A5, 0x0314}, {0x1F5B, 0x1F59, 0x0300}, {0x1F5D, 0x1F59, 0x0301}, {0x1F5F, 0x1F59, 0x0342},
    {0x1F60, 0x03C9, 0x0313}, {0x1F61, 0x03C9, 0x0314}, {0x1F62, 0x1F60, 0x0300}, {0x1F63, 0x1F61, 0x0300},
    {0x1F64, 0x1F60, 0x0301}, {0x1F65, 0x1F61, 0x0301}, {0x1F66, 0x1F60, 0x0342}, {0x1F67, 0x1F61, 0x0342},
    {0x1F68, 0x03A9, 0x0313}, {0x1F69, 0x03A9, 0x0314}, {0x1F6A, 0x1F68, 0x0300}, {0x1F6B, 0x1F69, 0x0300},
    {0x1F6C, 0x1F68, 0x0301}, {0x1F6D, 0x1F69, 0x0301}, {0x1F6E, 0x1F68, 0x0342}, {0x1F6F, 0x1F69, 0x0342},
    {0x1F70, 0x03B1, 0x0300}, {0x1F71, 0x03B1, 0x0301}, {0x1F72, 0x03B5, 0x0300}, {0x1F73, 0x03B5, 0x0301},
    {0x1F74, 0x03B7, 0x0300}, {0x1F75, 0x03B7, 0x0301}, {0x1F76, 0x03B9, 0x0300}, {0x1F77, 0x03B9, 0x0301},
    {0x1F78, 0x03BF, 0x0300}, {0x1F79, 0x03BF, 0x0301}, {0x1F7A, 0x03C5, 0x0300}, {0x1F7B, 0x03C5, 0x0301},
    {0x1F7C, 0x03C9, 0x0300}, {0x1F7D, 0x03C9, 0x0301}, {0x1F80, 0x1F00, 0x0345}, {0x1F81, 0x1F01, 0x0345},
    {0x1F82, 0x1F02, 0x0345}, {0x1F83, 0x1F03, 0x0345}, {0x1F84, 0x1F04, 0x0345}, {0x1F85, 0x1F05, 0x0345},
    {0x1F86, 0x1F06, 0x0345}, {0x1F87, 0x1F07, 0x0345}, {0x1F88, 0x1F08, 0x0345}, {0x1F89, 0x1F09, 0x0345},
    {0x1F8A, 0x1F0A, 0x0345}, {0x1F8B, 0x1F0B, 0x0345}, {0x1F8C, 0x1F0C, 0x0345}, {0x1F8D, 0x1F0D, 0x0345},
    {0x1F8E, 0x1F0E, 0x0345}, {0x1F8F, 0x1F0F, 0x0345}, {0x1F90, 0x1F20, 0x0345}, {0x1F91, 0x1F21, 0x0345},
    {0x1F92, 0x1F22, 0x0345}, {0x1F93, 0x1F23, 0x0345}, {0x1F94, 0x1F24, 0x0345}, {0x1F95, 0x1F25, 0x0345},
    {0x1F96, 0x1F26, 0x0345}, {0x1F97, 0x1F27, 0x0345}, {0x1F98, 0x1F28, 0x0345}, {0x1F99, 0x1F29, 0x0345},
    {0x1F9A, 0x1F2A, 0x0345}, {0x1F9B, 0x1F2B, 0x0345}, {0x1F9C, 0x1F2C, 0x0345}, {0x1F9D, 0x1F2D, 0x0345},
    {0x1F9E, 0x1F2E, 0x0345}, {0x1F9F, 0x1F2F, 0x0345}, {0x1FA0, 0x1F60, 0x0345}, {0x1FA1, 0x1F61, 0x0345},
    {0x1FA2, 0x1F62, 0x0345}, {0x1FA3, 0x1F63, 0x0345}, {0x1FA4, 0x1F64, 0x0345}, {0x1FA5, 0x1F65, 0x0345},
    {0x1FA6, 0x1F66, 0x0345}, {0x1FA7, 0x1F67, 0x0345}, {0x1FA8, 0x1F68, 0x0345}, {0x1FA9, 0x1F69, 0x0345},
    {0x1FAA, 0x1F6A, 0x0345}, {0x1FAB, 0x1F6B, 0x0345}, {0x1FAC, 0x1F6C, 0x0345}, {0x1FAD, 0x1F6D, 0x0345},
    {0x1FAE, 0x1F6E, 0x0345}, {0x1FAF, 0x1F6F, 0x0345}, {0x1FB0, 0x03B1, 0x0306}, {0x1FB1, 0x03B1, 0x0304},
    {0x1FB2, 0x1F70, 0x0345}, {0x1FB3, 0x03B1, 0x0345}, {0x1FB4, 0x03AC, 0x0345}, {0x1FB6, 0x03B1, 0x0342},
    {0x1FB7, 0x1FB6, 0x0345}, {0x1FB8, 0x0391, 0x0306}, {0x1FB9, 0x0391, 0x0304}, {0x1FBA, 0x0391, 0x0300},
    {0x1FBB, 0x0391, 0x0301}, {0x1FBC, 0x0391, 0x0345}, {0x1FBE, 0x03B9, 0}, {0x1FC1, 0x00A8, 0x0342},
    {0x1FC2, 0x1F74, 0x0345}, {0x1FC3, 0x03B7, 0x0345}, {0x1FC4, 0x03AE, 0x0345}, {0x1FC6, 0x03B7, 0x0342},
    {0x1FC7, 0x1FC6, 0x0345}, {0x1FC8, 0x0395, 0x0300}, {0x1FC9, 0x0395, 0x0301}, {0x1FCA, 0x0397, 0x0300},
    {0x1FCB, 0x0397, 0x0301}, {0x1FCC, 0x0397, 0x0345}, {0x1FCD, 0x1FBF, 0x0300}, {0x1FCE, 0x1FBF, 0x0301},
    {0x1FCF, 0x1FBF, 0x0342}, {0x1FD0, 0x03B9, 0x0306}, {0x1FD1, 0x03B9, 0x0304}, {0x1FD2, 0x03CA, 0x0300},
    {0x1FD3, 0x03CA, 0x0301}, {0x1FD6, 0x03B9, 0x0342}, {0x1FD7, 0x03CA, 0x0342}, {0x1FD8, 0x0399, 0x0306},
    {0x1FD9, 0x0399, 0x0304}, {0x1FDA, 0x0399, 0x0300}, {0x1FDB, 0x0399, 0x0301}, {0x1FDD, 0x1FFE, 0x0300},
    {0x1FDE, 0x1FFE, 0x0301}, {0x1FDF, 0x1FFE, 0x0342}, {0x1FE0, 0x03C5, 0x0306}, {0x1FE1, 0x03C5, 0x0304},
    {0x1FE2, 0x03CB, 0x0300}, {0x1FE3, 0x03CB, 0x0301}, {0x1FE4, 0x03C1, 0x0313}, {0x1FE5, 0x03C1, 0x0314},
    {0x1FE6, 0x03C5, 0x0342}, {0x1FE7, 0x03CB, 0x0342}, {0x1FE8, 0x03A5, 0x0306}, {0x1FE9, 0x03A5, 0x0304},
    {0x1FEA, 0x03A5, 0x0300}, {0x1FEB, 0x03A5, 0x0301}, {0x1FEC, 0x03A1, 0x0314}, {0x1FED, 0x00A8, 0x0300},
    {0x1FEE, 0x00A8, 0x0301}, {0x1FEF, 0x0060, 0}, {0x1FF2, 0x1F7C, 0x0345}, {0x1FF3, 0x03C9, 0x0345},
    {0x1FF4, 0x03CE, 0x0345}, {0x1FF6, 0x03C9, 0x0342}, {0x1FF7, 0x1FF6, 0x0345}, {0x1FF8, 0x039F, 0x0300},
    {0x1FF9, 0x039F, 0x0301}, {0x1FFA, 0x03A9, 0x0300}, {0x1FFB, 0x03A9, 0x0301}, {0x1FFC, 0x03A9, 0x0345},
    {0x1FFD, 0x00B4, 0}, {0x2000, 0x2002, 0}, {0x2001, 0x2003, 0}, {0x2126, 0x03A9, 0},
    {0x212A, 0x004B, 0}, {0x212B, 0x0041, 0x030A}, {0x219A, 0x2190, 0x0338}, {0x219B, 0x2192, 0x0338},
    {0x21AE, 0x2194, 0x0338}, {0x21CD, 0x21D0, 0x0338}, {0x21CE, 0x21D4, 0x0338}, {0x21CF, 0x21D2, 0x0338},
    {0x2204, 0x2203, 0x0338}, {0x2209, 0x2208, 0x0338}, {0x220C, 0x220B, 0x0338}, {0x2224, 0x2223, 0x0338},
    {0x2226, 0x2225, 0x0338}, {0x2241, 0x223C, 0x0338}, {0x2244, 0x2243, 0x0338}, {0x2247, 0x2245, 0x0338},
    {0x2249, 0x2248, 0x0338}, {0x2260, 0x003D, 0x0338}, {0x2262, 0x2261, 0x0338}, {0x226D, 0x224D, 0x0338},
    {0x226E, 0x003C, 0x0338}, {0x226F, 0x003E, 0x0338}, {0x2270, 0x2264, 0x0338}, {0x2271, 0x2265, 0x0338},
    {0x2274, 0x2272, 0x0338}, {0x2275, 0x2273, 0x0338}, {0x2278, 0x2276, 0x0338}, {0x2279, 0x2277, 0x0338},
    {0x2280, 0x227A, 0x0338}, {0x2281, 0x227B, 0x0338}, {0x2284, 0x2282, 0x0338}, {0x2285, 0x2283, 0x0338},
    {0x2288, 0x2286, 0x0338}, {0x2289, 0x2287, 0x0338}, {0x22AC, 0x22A2, 0x0338}, {0x22AD, 0x22A8, 0x0338},
    {0x22AE, 0x22A9, 0x0338}, {0x22AF, 0x22AB, 0x0338}, {0x22E0, 0x227C, 0x0338}, {0x22E1, 0x227D, 0x0338},
    {0x22E2, 0x2291, 0x0338}, {0x22E3, 0x2292, 0x0338}, {0x22EA, 0x22B2, 0x0338}, {0x22EB, 0x22B3, 0x0338},
    {0x22EC, 0x22B4, 0x0338}, {0x22ED, 0x22B5, 0x0338}, {0x2329, 0x3008, 0}, {0x232A, 0x3009, 0},
    {0x2ADC, 0x2ADD, 0x0338}, {0x304C, 0x304B, 0x3099}, {0x304E, 0x304D, 0x3099}, {0x3050, 0x304F, 0x3099},
    {0x3052, 0x3051, 0x3099}, {0x3054, 0x3053, 0x3099}, {0x3056, 0x3055, 0x3099}, {0x3058, 0x3057, 0x3099},
    {0x305A, 0x3059, 0x3099}, {0x305C, 0x305B, 0x3099}, {0x305E, 0x305D, 0x3099}, {0x3060, 0x305F, 0x3099},
    {0x3062, 0x3061, 0x3099}, {0x3065, 0x3064, 0x3099}, {0x3067, 0x3066, 0x3099}, {0x3069, 0x3068, 0x3099},
    {0x3070, 0x306F, 0x3099}, {0x3071, 0x306F, 0x309A}, {0x3073, 0x3072, 0x3099}, {0x3074, 0x3072, 0x309A},
    {0x3076, 0x3075, 0x3099}, {0x3077, 0x3075, 0x309A}, {0x3079, 0x3078, 0x3099}, {0x307A, 0x3078, 0x309A},
    {0x307C, 0x307B, 0x3099}, {0x307D, 0x307B, 0x309A}, {0x3094, 0x3046, 0x3099}, {0x309E, 0x309D, 0x3099},
    {0x30AC, 0x30AB, 0x3099}, {0x30AE, 0x30AD, 0x3099}, {0x30B0, 0x30AF, 0x3099}, {0x30B2, 0x30B1, 0x3099},
    {0x30B4, 0x30B3, 0x3099}, {0x30B6, 0x30B5, 0x3099}, {0x30B8, 0x30B7, 0x3099}, {0x30BA, 0x30B9, 0x3099},
    {0x30BC, 0x30BB, 0x3099}, {0x30BE, 0x30BD, 0x3099}, {0x30C0, 0x30BF, 0x3099}, {0x30C2, 0x30C1, 0x3099},
    {0x30C5, 0x30C4, 0x3099}, {0x30C7, 0x30C6, 0x3099}, {0x30C9, 0x30C8, 0x3099}, {0x30D0, 0x30CF, 0x3099},
    {0x30D1, 0x30CF, 0x309A}, {0x30D3, 0x30D2, 0x3099}, {0x30D4, 0x30D2, 0x309A}, {0x30D6, 0x30D5, 0x3099},
    {0x30D7, 0x30D5, 0x309A}, {0x30D9, 0x30D8, 0x3099}, {0x30DA, 0x30D8, 0x309A}, {0x30DC, 0x30DB, 0x3099},
    {0x30DD, 0x30DB, 0x309A}, {0x30F4, 0x30A6, 0x3099}, {0x30F7, 0x30EF, 0x3099}, {0x30F8, 0x30F0, 0x3099},
    {0x30F9, 0x30F1, 0x3099}, {0x30FA, 0x30F2, 0x3099}, {0x30FE, 0x30FD, 0x3099}, {0xF900, 0x8C48, 0},
    {0xF901, 0x66F4, 0}, {0xF902, 0x8ECA, 0}, {0xF903, 0x8CC8, 0}, {0xF904, 0x6ED1, 0},
    {0xF905, 0x4E32, 0}, {0xF906, 0x53E5, 0}, {0xF907, 0x9F9C, 0}, {0xF908, 0x9F9C, 0},
    {0xF909, 0x5951, 0}, {0xF90A, 0x91D1, 0}, {0xF90B, 0x5587, 0}, {0xF90C, 0x5948, 0},
    {0xF90D, 0x61F6, 0}, {0xF90E, 0x7669, 0}, {0xF90F, 0x7F85, 0}, {0xF910, 0x863F, 0},
    {0xF911, 0x87BA, 0}, {0xF912, 0x88F8, 0}, {0xF913, 0x908F, 0}, {0xF914, 0x6A02, 0},
    {0xF915, 0x6D1B, 0}, {0xF916, 0x70D9, 0}, {0xF917, 0x73DE, 0}, {0xF918, 0x843D, 0},
    {0xF919, 0x916A, 0}, {0xF91A, 0x99F1, 0}, {0xF91B, 0x4E82, 0}, {0xF91C, 0x5375, 0},
    {0xF91D, 0x6B04, 0}, {0xF91E, 0x721B, 0}, {0xF91F, 0x862D, 0}, {0xF920, 0x9E1E, 0},
    {0xF921, 0x5D50, 0}, {0xF922, 0x6FEB, 0}, {0xF923, 0x85CD, 0}, {0xF924, 0x8964, 0},
    {0xF925, 0x62C9, 0}, {0xF926, 0x81D8, 0}, {0xF927, 0x881F, 0}, {0xF928, 0x5ECA, 0},
    {0xF929, 0x6717, 0}, {0xF92A, 0x6D6A, 0}, {0xF92B, 0x72FC, 0}, {0xF92C, 0x90CE, 0},
    {0xF92D, 0x4F86, 0}, {0xF92E, 0x51B7, 0}, {0xF92F, 0x52DE, 0}, {0xF930, 0x64C4, 0},
    {0xF931, 0x6AD3, 0}, {0xF932, 0x7210, 0}, {0xF933, 0x76E7, 0}, {0xF934, 0x8001, 0},
    {0xF935, 0x8606, 0}, {0xF936, 0x865C, 0}, {0xF937, 0x8DEF, 0}, {0xF938, 0x9732, 0},
    {0xF939, 0x9B6F, 0}, {0xF93A, 0x9DFA, 0}, {0xF93B, 0x788C, 0}, {0xF93C, 0x797F, 0},
    {0xF93D, 0x7DA0, 0}, {0xF93E, 0x83C9, 0}, {0xF93F, 0x9304, 0}, {0xF940, 0x9E7F, 0},
    {0xF941, 0x8AD6, 0}, {0xF942, 0x58DF, 0}, {0xF943, 0x5F04, 0}, {0xF944, 0x7C60, 0},
    {0xF945, 0x807E, 0}, {0xF946, 0x7262, 0}, {0xF947, 0x78CA, 0}, {0xF948, 0x8CC2, 0},
    {0xF949, 0x96F7, 0}, {0xF94A, 0x58D8, 0}, {0xF94B, 0x5C62, 0}, {0xF94C, 0x6A13, 0},
    {0xF94D, 0x6DDA, 0}, {0xF94E, 0x6F0F, 0}, {0xF94F, 0x7D2F, 0}, {0xF950, 0x7E37, 0},
    {0xF951, 0x964B, 0}, {0xF952, 0x52D2, 0}, {0xF953, 0x808B, 0}, {0xF954, 0x51DC, 0},
    {0xF955, 0x51CC, 0}, {0xF956, 0x7A1C, 0}, {0xF957, 0x7DBE, 0}, {0xF958, 0x83F1, 0},
    {0xF959, 0x9675, 0}, {0xF95A, 0x8B80, 0}, {0xF95B, 0x62CF, 0}, {0xF95C, 0x6A02, 0},
    {0xF95D, 0x8AFE, 0}, {0xF95E, 0x4E39, 0}, {0xF95F, 0x5BE7, 0}, {0xF960, 0x6012, 0},
    {0xF961, 0x7387, 0}, {0xF962, 0x7570, 0}, {0xF963, 0x5317, 0}, {0xF964, 0x78FB, 0},
    {0xF965, 0x4FBF, 0}, {0xF966, 0x5FA9, 0}, {0xF967, 0x4E0D, 0}, {0xF968, 0x6CCC, 0},
    {0xF969, 0x6578, 0}, {0xF96A, 0x7D22, 0}, {0xF96B, 0x53C3, 0}, {0xF96C, 0x585E, 0},
    {0xF96D, 0x7701, 0}, {0xF96E, 0x8449, 0}, {0xF96F, 0x8AAA, 0}, {0xF970, 0x6BBA, 0},
    {0xF971, 0x8FB0, 0}, {0xF972, 0x6C88, 0}, {0xF973, 0x62FE, 0}, {0xF974, 0x82E5, 0},
    {0xF975, 0x63A0, 0}, {0xF976, 0x7565, 0}, {0xF977, 0x4EAE, 0}, {0xF978, 0x5169, 0},
    {0xF979, 0x51C9, 0}, {0xF97A, 0x6881, 0}, {0xF97B, 0x7CE7, 0}, {0xF97C, 0x826F, 0},
    {0xF97D, 0x8AD2, 0}, {0xF97E, 0x91CF, 0}, {0xF97F, 0x52F5, 0}, {0xF980, 0x5442, 0},
    {0xF981, 0x5973, 0}, {0xF982, 0x5EEC, 0}, {0xF983, 0x65C5, 0}, {0xF984, 0x6FFE, 0},
    {0xF985, 0x792A, 0}, {0xF986, 0x95AD, 0}, {0xF987, 0x9A6A, 0}, {0xF988, 0x9E97, 0},
    {0xF989, 0x9ECE, 0}, {0xF98A, 0x529B, 0}, {0xF98B, 0x66C6, 0}, {0xF98C, 0x6B77, 0},
    {0xF98D, 0x8F62, 0}, {0xF98E, 0x5E74, 0}, {0xF98F, 0x6190, 0}, {0xF990, 0x6200, 0},
    {0xF991, 0x649A, 0}, {0xF992, 0x6F23, 0}, {0xF993, 0x7149, 0}, {0xF994, 0x7489, 0},
    {0xF995, 0x79CA, 0}, {0xF996, 0x7DF4, 0}, {0xF997, 0x806F, 0}, {0xF998, 0x8F26, 0},
    {0xF999, 0x84EE, 0}, {0xF99A, 0x9023, 0}, {0xF99B, 0x934A, 0}, {0xF99C, 0x5217, 0},
    {0xF99D, 0x52A3, 0}, {0xF99E, 0x54BD, 0}, {0xF99F, 0x70C8, 0}, {0xF9A0, 0x88C2, 0},
    {0xF9A1, 0x8AAA, 0}, {0xF9A2, 0x5EC9, 0}, {0xF9A3, 0x5FF5, 0}, {0xF9A4, 0x637B, 0},
    {0xF9A5, 0x6BAE, 0}, {0xF9A6, 0x7C3E, 0}, {0xF9A7, 0x7375, 0}, {0xF9A8, 0x4EE4, 0},
    {0xF9A9, 0x56F9, 0}, {0xF9AA, 0x5BE7, 0}, {0xF9AB, 0x5DBA, 0}, {0xF9AC, 0x601C, 0},
    {0xF9AD, 0x73B2, 0}, {0xF9AE, 0x7469, 0}, {0xF9AF, 0x7F9A, 0}, {0xF9B0, 0x8046, 0},
    {0xF9B1, 0x9234, 0}, {0xF9B2, 0x96F6, 0}, {0xF9B3, 0x9748, 0}, {0xF9B4, 0x9818, 0},
    {0xF9B5, 0x4F8B, 0}, {0xF9B6, 0x79AE, 0}, {0xF9B7, 0x91B4, 0}, {0xF9B8, 0x96B8, 0},
    {0xF9B9, 0x60E1, 0}, {0xF9BA, 0x4E86, 0}, {0xF9BB, 0x50DA, 0}, {0xF9BC, 0x5BEE, 0},
    {0xF9BD, 0x5C3F, 0}, {0xF9BE, 0x6599, 0}, {0xF9BF, 0x6A02, 0}, {0xF9C0, 0x71CE, 0},
    {0xF9C1, 0x7642, 0}, {0xF9C2, 0x84FC, 0}, {0xF9C3, 0x907C, 0}, {0xF9C4, 0x9F8D, 0},
    {0xF9C5, 0x6688, 0}, {0xF9C6, 0x962E, 0}, {0xF9C7, 0x5289, 0}, {0xF9C8, 0x677B, 0},
    {0xF9C9, 0x67F3, 0}, {0xF9CA, 0x6D41, 0}, {0xF9CB, 0x6E9C, 0}, {0xF9CC, 0x7409, 0},
    {0xF9CD, 0x7559, 0}, {0xF9CE, 0x786B, 0}, {0xF9CF, 0x7D10, 0}, {0xF9D0, 0x985E, 0},
    {0xF9D1, 0x516D, 0}, {0xF9D2, 0x622E, 0}, {0xF9D3, 0x9678, 0}, {0xF9D4, 0x502B, 0},
    {0xF9D5, 0x5D19, 0}, {0xF9D6, 0x6DEA, 0}, {0xF9D7, 0x8F2A, 0}, {0xF9D8, 0x5F8B, 0},
    {0xF9D9, 0x6144, 0}, {0xF9DA, 0x6817, 0}, {0xF9DB, 0x7387, 0}, {0xF9DC, 0x9686, 0},
    {0xF9DD, 0x5229, 0}, {0xF9DE, 0x540F, 0}, {0xF9DF, 0x5C65, 0}, {0xF9E0, 0x6613, 0},
    {0xF9E1, 0x674E, 0}, {0xF9E2, 0x68A8, 0}, {0xF9E3, 0x6CE5, 0}, {0xF9E4, 0x7406, 0},
    {0xF9E5, 0x75E2, 0}, {0xF9E6, 0x7F79, 0}, {0xF9E7, 0x88CF, 0}, {0xF9E8, 0x88E1, 0},
    {0xF9E9, 0x91CC, 0}, {0xF9EA, 0x96E2, 0}, {0xF9EB, 0x533F, 0}, {0xF9EC, 0x6EBA, 0},
    {0xF9ED, 0x541D, 0}, {0xF9EE, 0x71D0, 0}, {0xF9EF, 0x7498, 0}, {0xF9F0, 0x85FA, 0},
    {0xF9F1, 0x96A3, 0}, {0xF9F2, 0x9C57, 0}, {0xF9F3, 0x9E9F, 0}, {0xF9F4, 0x6797, 0},
    {0xF9F5, 0x6DCB, 0}, {0xF9F6, 0x81E8, 0}, {0xF9F7, 0x7ACB, 0}, {0xF9F8, 0x7B20, 0},
    {0xF9F9, 0x7C92, 0}, {0xF9FA, 0x72C0, 0}, {0xF9FB, 0x7099, 0}, {0xF9FC, 0x8B58, 0},
    {0xF9FD, 0x4EC0, 0}, {0xF9FE, 0x8336, 0}, {0xF9FF, 0x523A, 0}, {0xFA00, 0x5207, 0},
    {0xFA01, 0x5EA6, 0}, {0xFA02, 0x62D3, 0}, {0xFA03, 0x7CD6, 0}, {0xFA04, 0x5B85, 0},
    {0xFA05, 0x6D1E, 0}, {0xFA06, 0x66B4, 0}, {0xFA07, 0x8F3B, 0}, {0xFA08, 0x884C, 0},
    {0xFA09, 0x964D, 0}, {0xFA0A, 0x898B, 0}, {0xFA0B, 0x5ED3, 0}, {0xFA0C, 0x5140, 0},
    {0xFA0D, 0x55C0, 0}, {0xFA10, 0x585A, 0}, {0xFA12, 0x6674, 0}, {0xFA15, 0x51DE, 0},
    {0xFA16, 0x732A, 0}, {0xFA17, 0x76CA, 0}, {0xFA18, 0x793C, 0}, {0xFA19, 0x795E, 0},
    {0xFA1A, 0x7965, 0}, {0xFA1B, 0x798F, 0}, {0xFA1C, 0x9756, 0}, {0xFA1D, 0x7CBE, 0},
    {0xFA1E, 0x7FBD, 0}, {0xFA20, 0x8612, 0}, {0xFA22, 0x8AF8, 0}, {0xFA25, 0x9038, 0},
    {0xFA26, 0x90FD, 0}, {0xFA2A, 0x98EF, 0}, {0xFA2B, 0x98FC, 0}, {0xFA2C, 0x9928, 0},
    {0xFA2D, 0x9DB4, 0}, {0xFA2E, 0x90DE, 0}, {0xFA2F, 0x96B7, 0}, {0xFA30, 0x4FAE, 0},
    {0xFA31, 0x50E7, 0}, {0xFA32, 0x514D, 0}, {0xFA33, 0x52C9, 0}, {0xFA34, 0x52E4, 0},
    {0xFA35, 0x5351, 0}, {0xFA36, 0x559D, 0}, {0xFA37, 0x5606, 0}, {0xFA38, 0x5668, 0},
    {0xFA39, 0x5840, 0}, {0xFA3A, 0x58A8, 0}, {0xFA3B, 0x5C64, 0}, {0xFA3C, 0x5C6E, 0},
    {0xFA3D, 0x6094, 0}, {0xFA3E, 0x6168, 0}, {0xFA3F, 0x618E, 0}, {0xFA40, 0x61F2, 0},
    {0xFA41, 0x654F, 0}, {0xFA42, 0x65E2, 0}, {0xFA43, 0x6691, 0}, {0xFA44, 0x6885, 0},
    {0xFA45, 0x6D77, 0}, {0xFA46, 0x6E1A, 0}, {0xFA47, 0x6F22, 0}, {0xFA48, 0x716E, 0},
    {0xFA49, 0x722B, 0}, {0xFA4A, 0x7422, 0}, {0xFA4B, 0x7891, 0}, {0xFA4C, 0x793E, 0},
    {0xFA4D, 0x7949, 0}, {0xFA4E, 0x7948, 0}, {0xFA4F, 0x7950, 0}, {0xFA50, 0x7956, 0},
    {0xFA51, 0x795D, 0}, {0xFA52, 0x798D, 0}, {0xFA53, 0x798E, 0}, {0xFA54, 0x7A40, 0},
    {0xFA55, 0x7A81, 0}, {0xFA56, 0x7BC0, 0}, {0xFA57, 0x7DF4, 0}, {0xFA58, 0x7E09, 0},
    {0xFA59, 0x7E41, 0}, {0xFA5A, 0x7F72, 0}, {0xFA5B, 0x8005, 0}, {0xFA5C, 0x81ED, 0},
    {0xFA5D, 0x8279, 0}, {0xFA5E, 0x8279, 0}, {0xFA5F, 0x8457, 0}, {0xFA60, 0x8910, 0},
    {0xFA61, 0x8996, 0}, {0xFA62, 0x8B01, 0}, {0xFA63, 0x8B39, 0}, {0xFA64, 0x8CD3, 0},
    {0xFA65, 0x8D08, 0}, {0xFA66, 0x8FB6, 0}, {0xFA67, 0x9038, 0}, {0xFA68, 0x96E3, 0},
    {0xFA69, 0x97FF, 0}, {0xFA6A, 0x983B, 0}, {0xFA6B, 0x6075, 0}, {0xFA6C, 0x242EE, 0},
    {0xFA6D, 0x8218, 0}, {0xFA70, 0x4E26, 0}, {0xFA71, 0x51B5, 0}, {0xFA72, 0x5168, 0},
    {0xFA73, 0x4F80, 0}, {0xFA74, 0x5145, 0}, {0xFA75, 0x5180, 0}, {0xFA76, 0x52C7, 0},
    {0xFA77, 0x52FA, 0}, {0xFA78, 0x559D, 0}, {0xFA79, 0x5555, 0}, {0xFA7A, 0x5599, 0},
    {0xFA7B, 0x55E2, 0}, {0xFA7C, 0x585A, 0}, {0xFA7D, 0x58B3, 0}, {0xFA7E, 0x5944, 0},
    {0xFA7F, 0x5954, 0}, {0xFA80, 0x5A62, 0}, {0xFA81, 0x5B28, 0}, {0xFA82, 0x5ED2, 0},
    {0xFA83, 0x5ED9, 0}, {0xFA84, 0x5F69, 0}, {0xFA85, 0x5FAD, 0}, {0xFA86, 0x60D8, 0},
    {0xFA87, 0x614E, 0}, {0xFA88, 0x6108, 0}, {0xFA89, 0x618E, 0}, {0xFA8A, 0x6160, 0},
    {0xFA8B, 0x61F2, 0}, {0xFA8C, 0x6234, 0}, {0xFA8D, 0x63C4, 0}, {0xFA8E, 0x641C, 0},
    {0xFA8F, 0x6452, 0}, {0xFA90, 0x6556, 0}, {0xFA91, 0x6674, 0}, {0xFA92, 0x6717, 0},
    {0xFA93, 0x671B, 0}, {0xFA94, 0x6756, 0}, {0xFA95, 0x6B79, 0}, {0xFA96, 0x6BBA, 0},
    {0xFA97, 0x6D41, 0}, {0xFA98, 0x6EDB, 0}, {0xFA99, 0x6ECB, 0}, {0xFA9A, 0x6F22, 0},
    {0xFA9B, 0x701E, 0}, {0xFA9C, 0x716E, 0}, {0xFA9D, 0x77A7, 0}, {0xFA9E, 0x7235, 0},
    {0xFA9F, 0x72AF, 0}, {0xFAA0, 0x732A, 0}, {0xFAA1, 0x7471, 0}, {0xFAA2, 0x7506, 0},
    {0xFAA3, 0x753B, 0}, {0xFAA4, 0x761D, 0}, {0xFAA5, 0x761F, 0}, {0xFAA6, 0x76CA, 0},
    {0xFAA7, 0x76DB, 0}, {0xFAA8, 0x76F4, 0}, {0xFAA9, 0x774A, 0}, {0xFAAA, 0x7740, 0},
    {0xFAAB, 0x78CC, 0}, {0xFAAC, 0x7AB1, 0}, {0xFAAD, 0x7BC0, 0}, {0xFAAE, 0x7C7B, 0},
    {0xFAAF, 0x7D5B, 0}, {0xFAB0, 0x7DF4, 0}, {0xFAB1, 0x7F3E, 0}, {0xFAB2, 0x8005, 0},
    {0xFAB3, 0x8352, 0}, {0xFAB4, 0x83EF, 0}, {0xFAB5, 0x8779, 0}, {0xFAB6, 0x8941, 0},
    {0xFAB7, 0x8986, 0}, {0xFAB8, 0x8996, 0}, {0xFAB9, 0x8ABF, 0}, {0xFABA, 0x8AF8, 0},
    {0xFABB, 0x8ACB, 0}, {0xFABC, 0x8B01, 0}, {0xFABD, 0x8AFE, 0}, {0xFABE, 0x8AED, 0},
    {0xFABF, 0x8B39, 0}, {0xFAC0, 0x8B8A, 0}, {0xFAC1, 0x8D08, 0}, {0xFAC2, 0x8F38, 0},
    {0xFAC3, 0x9072, 0}, {0xFAC4, 0x9199, 0}, {0xFAC5, 0x9276, 0}, {0xFAC6, 0x967C, 0},
    {0xFAC7, 0x96E3, 0}, {0xFAC8, 0x9756, 0}, {0xFAC9, 0x97DB, 0}, {0xFACA, 0x97FF, 0},
    {0xFACB, 0x980B, 0}, {0xFACC, 0x983B, 0}, {0xFACD, 0x9B12, 0}, {0xFACE, 0x9F9C, 0},
    {0xFACF, 0x2284A, 0}, {0xFAD0, 0x22844, 0}, {0xFAD1, 0x233D5, 0}, {0xFAD2, 0x3B9D, 0},
    {0xFAD3, 0x4018, 0}, {0xFAD4, 0x4039, 0}, {0xFAD5, 0x25249, 0}, {0xFAD6, 0x25CD0, 0},
    {0xFAD7, 0x27ED3, 0}, {0xFAD8, 0x9F43, 0}, {0xFAD9, 0x9F8E, 0}, {0xFB1D, 0x05D9, 0x05B4},
    {0xFB1F, 0x05F2, 0x05B7}, {0xFB2A, 0x05E9, 0x05C1}, {0xFB2B, 0x05E9, 0x05C2}, {0xFB2C, 0xFB49, 0x05C1},
    {0xFB2D, 0xFB49, 0x05C2}, {0xFB2E, 0x05D0, 0x05B7}, {0xFB2F, 0x05D0, 0x05B8}, {0xFB30, 0x05D0, 0x05BC},
    {0xFB31, 0x05D1, 0x05BC}, {0xFB32, 0x05D2, 0x05BC}, {0xFB33, 0x05D3, 0x05BC}, {0xFB34, 0x05D4, 0x05BC},
    {0xFB35, 0x05D5, 0x05BC}, {0xFB36, 0x05D6, 0x05BC}, {0xFB38, 0x05D8, 0x05BC}, {0xFB39, 0x05D9, 0x05BC},
    {0xFB3A, 0x05DA, 0x05BC}, {0xFB3B, 0x05DB, 0x05BC}, {0xFB3C, 0x05DC, 0x05BC}, {0xFB3E, 0x05DE, 0x05BC},
    {0xFB40, 0x05E0, 0x05BC}, {0xFB41, 0x05E1, 0x05BC}, {0xFB43, 0x05E3, 0x05BC}, {0xFB44, 0x05E4, 0x05BC},
    {0xFB46, 0x05E6, 0x05BC}, {0xFB47, 0x05E7, 0x05BC}, {0xFB48, 0x05E8, 0x05BC}, {0xFB49, 0x05E9, 0x05BC},
    {0xFB4A, 0x05EA, 0x05BC}, {0xFB4B, 0x05D5, 0x05B9}, {0xFB4C, 0x05D1, 0x05BF}, {0xFB4D, 0x05DB, 0x05BF},
    {0xFB4E, 0x05E4, 0x05BF}, {0x105C9, 0x105D2, 0x0307}, {0x105E4, 0x105DA, 0x0307}, {0x1109A, 0x11099, 0x110BA},
    {0x1109C, 0x1109B, 0x110BA}, {0x110AB, 0x110A5, 0x110BA}, {0x1112E, 0x11131, 0x11127}, {0x1112F, 0x11132, 0x11127},
    {0x1134B, 0x11347, 0x1133E}, {0x1134C, 0x11347, 0x11357}, {0x11383, 0x11382, 0x113C9}, {0x11385, 0x11384, 0x113BB},
    {0x1138E, 0x1138B, 0x113C2}, {0x11391, 0x11390, 0x113C9}, {0x113C5, 0x113C2, 0x113C2}, {0x113C7, 0x113C2, 0x113B8},
    {0x113C8, 0x113C2, 0x113C9}, {0x114BB, 0x114B9, 0x114BA}, {0x114BC, 0x114B9, 0x114B0}, {0x114BE, 0x114B9, 0x114BD},
    {0x115BA, 0x115B8, 0x115AF}, {0x115BB, 0x115B9, 0x115AF}, {0x11938, 0x11935, 0x11930}, {0x16121, 0x1611E, 0x1611E},
    {0x16122, 0x1611E, 0x16129}, {0x16123, 0x1611E, 0x1611F}, {0x16124, 0x16129, 0x1611F}, {0x16125, 0x1611E, 0x16120},
    {0x16126, 0x16121, 0x1611F}, {0x16127, 0x16122, 0x1611F}, {0x16128, 0x16121, 0x16120}, {0x16D68, 0x16D67, 0x16D67},
    {0x16D69, 0x16D63, 0x16D67}, {0x16D6A, 0x16D69, 0x16D67}, {0x1D15E, 0x1D157, 0x1D165}, {0x1D15F, 0x1D158, 0x1D165},
    {0x1D160, 0x1D15F, 0x1D16E}, {0x1D161, 0x1D15F, 0x1D16F}, {0x1D162, 0x1D15F, 0x1D170}, {0x1D163, 0x1D15F, 0x1D171},
    {0x1D164, 0x1D15F, 0x1D172}, {0x1D1BB, 0x1D1B9, 0x1D165}, {0x1D1BC, 0x1D1BA, 0x1D165}, {0x1D1BD, 0x1D1BB, 0x1D16E},
    {0x1D1BE, 0x1D1BC, 0x1D16E}, {0x1D1BF, 0x1D1BB, 0x1D16F}, {0x1D1C0, 0x1D1BC, 0x1D16F}, {0x2F800, 0x4E3D, 0},
    {0x2F801, 0x4E38, 0}, {0x2F802, 0x4E41, 0}, {0x2F803, 0x20122, 0}, {0x2F804, 0x4F60, 0},
    {0x2F805, 0x4FAE, 0}, {0x2F806, 0x4FBB, 0}, {0x2F807, 0x5002, 0}, {0x2F808, 0x507A, 0},
    {0x2F809, 0x5099, 0}, {0x2F80A, 0x50E7, 0}, {0x2F80B, 0x50CF, 0}, {0x2F80C, 0x349E, 0},
    {0x2F80D, 0x2063A, 0}, {0x2F80E, 0x514D, 0}, {0x2F80F, 0x5154, 0}, {0x2F810, 0x5164, 0},
    {0x2F811, 0x5177, 0}, {0x2F812, 0x2051C, 0}, {0x2F813, 0x34B9, 0}, {0x2F814, 0x5167, 0},
    {0x2F815, 0x518D, 0}, {0x2F816, 0x2054B, 0}, {0x2F817, 0x5197, 0}, {0x2F818, 0x51A4, 0},
    {0x2F819, 0x4ECC, 0}, {0x2F81A, 0x51AC, 0}, {0x2F81B, 0x51B5, 0}, {0x2F81C, 0x291DF, 0},
    {0x2F81D, 0x51F5, 0}, {0x2F81E, 0x5203, 0}, {0x2F81F, 0x34DF, 0}, {0x2F820, 0x523B, 0},
    {0x2F821, 0x5246, 0}, {0x2F822, 0x5272, 0}, {0x2F823, 0x5277, 0}, {0x2F824, 0x3515, 0},
    {0x2F825, 0x52C7, 0}, {0x2F826, 0x52C9, 0}, {0x2F827, 0x52E4, 0}, {0x2F828, 0x52FA, 0},
    {0x2F829, 0x5305, 0}, {0x2F82A, 0x5306, 0}, {0x2F82B, 0x5317, 0}, {0x2F82C, 0x5349, 0},
    {0x2F82D, 0x5351, 0}, {0x2F82E, 0x535A, 0}, {0x2F82F, 0x5373, 0}, {0x2F830, 0x537D, 0},
    {0x2F831, 0x537F, 0}, {0x2F832, 0x537F, 0}, {0x2F833, 0x537F, 0}, {0x2F834, 0x20A2C, 0},
    {0x2F835, 0x7070, 0}, {0x2F836, 0x53CA, 0}, {0x2F837, 0x53DF, 0}, {0x2F838, 0x20B63, 0},
    {0x2F839, 0x53EB, 0}, {0x2F83A, 0x53F1, 0}, {0x2F83B, 0x5406, 0}, {0x2F83C, 0x549E, 0},
    {0x2F83D, 0x5438, 0}, {0x2F83E, 0x5448, 0}, {0x2F83F, 0x5468, 0}, {0x2F840, 0x54A2, 0},
    {0x2F841, 0x54F6, 0}, {0x2F842, 0x5510, 0}, {0x2F843, 0x5553, 0}, {0x2F844, 0x5563, 0},
    {0x2F845, 0x5584, 0}, {0x2F846, 0x5584, 0}, {0x2F847, 0x5599, 0}, {0x2F848, 0x55AB, 0},
    {0x2F849, 0x55B3, 0}, {0x2F84A, 0x55C2, 0}, {0x2F84B, 0x5716, 0}, {0x2F84C, 0x5606, 0},
    {0x2F84D, 0x5717, 0}, {0x2F84E, 0x5651, 0}, {0x2F84F, 0x5674, 0}, {0x2F850, 0x5207, 0},
    {0x2F851, 0x58EE, 0}, {0x2F852, 0x57CE, 0}, {0x2F853, 0x57F4, 0}, {0x2F854, 0x580D, 0},
    {0x2F855, 0x578B, 0}, {0x2F856, 0x5832, 0}, {0x2F857, 0x5831, 0}, {0x2F858, 0x58AC, 0},
    {0x2F859, 0x214E4, 0}, {0x2F85A, 0x58F2, 0}, {0x2F85B, 0x58F7, 0}, {0x2F85C, 0x5906, 0},
    {0x2F85D, 0x591A, 0}, {0x2F85E, 0x5922, 0}, {0x2F85F, 0x5962, 0}, {0x2F860, 0x216A8, 0},
    {0x2F861, 0x216EA, 0}, {0x2F862, 0x59EC, 0}, {0x2F863, 0x5A1B, 0}, {0x2F864, 0x5A27, 0},
    {0x2F865, 0x59D8, 0}, {0x2F866, 0x5A66, 0}, {0x2F867, 0x36EE, 0}, {0x2F868, 0x36FC, 0},
    {0x2F869, 0x5B08, 0}, {0x2F86A, 0x5B3E, 0}, {0x2F86B, 0x5B3E, 0}, {0x2F86C, 0x219C8, 0},
    {0x2F86D, 0x5BC3, 0}, {0x2F86E, 0x5BD8, 0}, {0x2F86F, 0x5BE7, 0}, {0x2F870, 0x5BF3, 0},
    {0x2F871, 0x21B18, 0}, {0x2F872, 0x5BFF, 0}, {0x2F873, 0x5C06, 0}, {0x2F874, 0x5F53, 0},
    {0x2F875, 0x5C22, 0}, {0x2F876, 0x3781, 0}, {0x2F877, 0x5C60, 0}, {0x2F878, 0x5C6E, 0},
    {0x2F879, 0x5CC0, 0}, {0x2F87A, 0x5C8D, 0}, {0x2F87B, 0x21DE4, 0}, {0x2F87C, 0x5D43, 0},
    {0x2F87D, 0x21DE6, 0}, {0x2F87E, 0x5D6E, 0}, {0x2F87F, 0x5D6B, 0}, {0x2F880, 0x5D7C, 0},
    {0x2F881, 0x5DE1, 0}, {0x2F882, 0x5DE2, 0}, {0x2F883, 0x382F, 0}, {0x2F884, 0x5DFD, 0},
    {0x2F885, 0x5E28, 0}, {0x2F886, 0x5E3D, 0}, {0x2F887, 0x5E69, 0}, {0x2F888, 0x3862, 0},
    {0x2F889, 0x22183, 0}, {0x2F88A, 0x387C, 0}, {0x2F88B, 0x5EB0, 0}, {0x2F88C, 0x5EB3, 0},
    {0x2F88D, 0x5EB6, 0}, {0x2F88E, 0x5ECA, 0}, {0x2F88F, 0x2A392, 0}, {0x2F890, 0x5EFE, 0},
    {0x2F891, 0x22331, 0}, {0x2F892, 0x22331, 0}, {0x2F893, 0x8201, 0}, {0x2F894, 0x5F22, 0},
    {0x2F895, 0x5F22, 0}, {0x2F896, 0x38C7, 0}, {0x2F897, 0x232B8, 0}, {0x2F898, 0x261DA, 0},
    {0x2F899, 0x5F62, 0}, {0x2F89A, 0x5F6B, 0}, {0x2F89B, 0x38E3, 0}, {0x2F89C, 0x5F9A, 0},
    {0x2F89D, 0x5FCD, 0}, {0x2F89E, 0x5FD7, 0}, {0x2F89F, 0x5FF9, 0}, {0x2F8A0, 0x6081, 0},
    {0x2F8A1, 0x393A, 0}, {0x2F8A2, 0x391C, 0}, {0x2F8A3, 0x6094, 0}, {0x2F8A4, 0x226D4, 0},
    {0x2F8A5, 0x60C7, 0}, {0x2F8A6, 0x6148, 0}, {0x2F8A7, 0x614C, 0}, {0x2F8A8, 0x614E, 0},
    {0x2F8A9, 0x614C, 0}, {0x2F8AA, 0x617A, 0}, {0x2F8AB, 0x618E, 0}, {0x2F8AC, 0x61B2, 0},
    {0x2F8AD, 0x61A4, 0}, {0x2F8AE, 0x61AF, 0}, {0x2F8AF, 0x61DE, 0}, {0x2F8B0, 0x61F2, 0},
    {0x2F8B1, 0x61F6, 0}, {0x2F8B2, 0x6210, 0}, {0x2F8B3, 0x621B, 0}, {0x2F8B4, 0x625D, 0},
    {0x2F8B5, 0x62B1, 0}, {0x2F8B6, 0x62D4, 0}, {0x2F8B7, 0x6350, 0}, {0x2F8B8, 0x22B0C, 0},
    {0x2F8B9, 0x633D, 0}, {0x2F8BA, 0x62FC, 0}, {0x2F8BB, 0x6368, 0}, {0x2F8BC, 0x6383, 0},
    {0x2F8BD, 0x63E4, 0}, {0x2F8BE, 0x22BF1, 0}, {0x2F8BF, 0x6422, 0}, {0x2F8C0, 0x63C5, 0},
    {0x2F8C1, 0x63A9, 0}, {0x2F8C2, 0x3A2E, 0}, {0x2F8C3, 0x6469, 0}, {0x2F8C4, 0x647E, 0},
    {0x2F8C5, 0x649D, 0}, {0x2F8C6, 0x6477, 0}, {0x2F8C7, 0x3A6C, 0}, {0x2F8C8, 0x654F, 0},
    {0x2F8C9, 0x656C, 0}, {0x2F8CA, 0x2300A, 0}, {0x2F8CB, 0x65E3, 0}, {0x2F8CC, 0x66F8, 0},
    {0x2F8CD, 0x6649, 0}, {0x2F8CE, 0x3B19, 0}, {0x2F8CF, 0x6691, 0}, {0x2F8D0, 0x3B08, 0},
    {0x2F8D1, 0x3AE4, 0}, {0x2F8D2, 0x5192, 0}, {0x2F8D3, 0x5195, 0}, {0x2F8D4, 0x6700, 0},
    {0x2F8D5, 0x669C, 0}, {0x2F8D6, 0x80AD, 0}, {0x2F8D7, 0x43D9, 0}, {0x2F8D8, 0x6717, 0},
    {0x2F8D9, 0x671B, 0}, {0x2F8DA, 0x6721, 0}, {0x2F8DB, 0x675E, 0}, {0x2F8DC, 0x6753, 0},
    {0x2F8DD, 0x233C3, 0}, {0x2F8DE, 0x3B49, 0}, {0x2F8DF, 0x67FA, 0}, {0x2F8E0, 0x6785, 0},
    {0x2F8E1, 0x6852, 0}, {0x2F8E2, 0x6885, 0}, {0x2F8E3, 0x2346D, 0}, {0x2F8E4, 0x688E, 0},
    {0x2F8E5, 0x681F, 0}, {0x2F8E6, 0x6914, 0}, {0x2F8E7, 0x3B9D, 0}, {0x2F8E8, 0x6942, 0},
    {0x2F8E9, 0x69A3, 0}, {0x2F8EA, 0x69EA, 0}, {0x2F8EB, 0x6AA8, 0}, {0x2F8EC, 0x236A3, 0},
    {0x2F8ED, 0x6ADB, 0}, {0x2F8EE, 0x3C18, 0}, {0x2F8EF, 0x6B21, 0}, {0x2F8F0, 0x238A7, 0},
    {0x2F8F1, 0x6B54, 0}, {0x2F8F2, 0x3C4E, 0}, {0x2F8F3, 0x6B72, 0}, {0x2F8F4, 0x6B9F, 0},
    {0x2F8F5, 0x6BBA, 0}, {0x2F8F6, 0x6BBB, 0}, {0x2F8F7, 0x23A8D, 0}, {0x2F8F8, 0x21D0B, 0},
    {0x2F8F9, 0x23AFA, 0}, {0x2F8FA, 0x6C4E, 0}, {0x2F8FB, 0x23CBC, 0}, {0x2F8FC, 0x6CBF, 0},
    {0x2F8FD, 0x6CCD, 0}, {0x2F8FE, 0x6C67, 0}, {0x2F8FF, 0x6D16, 0}, {0x2F900, 0x6D3E, 0},
    {0x2F901, 0x6D77, 0}, {0x2F902, 0x6D41, 0}, {0x2F903, 0x6D69, 0}, {0x2F904, 0x6D78, 0},
    {0x2F905, 0x6D85, 0}, {0x2F906, 0x23D1E, 0}, {0x2F907, 0x6D34, 0}, {0x2F908, 0x6E2F, 0},
    {0x2F909, 0x6E6E, 0}, {0x2F90A, 0x3D33, 0}, {0x2F90B, 0x6ECB, 0}, {0x2F90C, 0x6EC7, 0},
    {0x2F90D, 0x23ED1, 0}, {0x2F90E, 0x6DF9, 0}, {0x2F90F, 0x6F6E, 0}, {0x2F910, 0x23F5E, 0},
    {0x2F911, 0x23F8E, 0}, {0x2F912, 0x6FC6, 0}, {0x2F913, 0x7039, 0}, {0x2F914, 0x701E, 0},
    {0x2F915, 0x701B, 0}, {0x2F916, 0x3D96, 0}, {0x2F917, 0x704A, 0}, {0x2F918, 0x707D, 0},
    {0x2F919, 0x7077, 0}, {0x2F91A, 0x70AD, 0}, {0x2F91B, 0x20525, 0}, {0x2F91C, 0x7145, 0},
    {0x2F91D, 0x24263, 0}, {0x2F91E, 0x719C, 0}, {0x2F91F, 0x243AB, 0}, {0x2F920, 0x7228, 0},
    {0x2F921, 0x7235, 0}, {0x2F922, 0x7250, 0}, {0x2F923, 0x24608, 0}, {0x2F924, 0x7280, 0},
    {0x2F925, 0x7295, 0}, {0x2F926, 0x24735, 0}, {0x2F927, 0x24814, 0}, {0x2F928, 0x737A, 0},
    {0x2F929, 0x738B, 0}, {0x2F92A, 0x3EAC, 0}, {0x2F92B, 0x73A5, 0}, {0x2F92C, 0x3EB8, 0},
    {0x2F92D, 0x3EB8, 0}, {0x2F92E, 0x7447, 0}, {0x2F92F, 0x745C, 0}, {0x2F930, 0x7471, 0},
    {0x2F931, 0x7485, 0}, {0x2F932, 0x74CA, 0}, {0x2F933, 0x3F1B, 0}, {0x2F934, 0x7524, 0},
    {0x2F935, 0x24C36, 0}, {0x2F936, 0x753E, 0}, {0x2F937, 0x24C92, 0}, {0x2F938, 0x7570, 0},
    {0x2F939, 0x2219F, 0}, {0x2F93A, 0x7610, 0}, {0x2F93B, 0x24FA1, 0}, {0x2F93C, 0x24FB8, 0},
    {0x2F93D, 0x25044, 0}, {0x2F93E, 0x3FFC, 0}, {0x2F93F, 0x4008, 0}, {0x2F940, 0x76F4, 0},
    {0x2F941, 0x250F3, 0}, {0x2F942, 0x250F2, 0}, {0x2F943, 0x25119, 0}, {0x2F944, 0x25133, 0},
    {0x2F945, 0x771E, 0}, {0x2F946, 0x771F, 0}, {0x2F947, 0x771F, 0}, {0x2F948, 0x774A, 0},
    {0x2F949, 0x4039, 0}, {0x2F94A, 0x778B, 0}, {0x2F94B, 0x4046, 0}, {0x2F94C, 0x4096, 0},
    {0x2F94D, 0x2541D, 0}, {0x2F94E, 0x784E, 0}, {0x2F94F, 0x788C, 0}, {0x2F950, 0x78CC, 0},
    {0x2F951, 0x40E3, 0}, {0x2F952, 0x25626, 0}, {0x2F953, 0x7956, 0}, {0x2F954, 0x2569A, 0},
    {0x2F955, 0x256C5, 0}, {0x2F956, 0x798F, 0}, {0x2F957, 0x79EB, 0}, {0x2F958, 0x412F, 0},
    {0x2F959, 0x7A40, 0}, {0x2F95A, 0x7A4A, 0}, {0x2F95B, 0x7A4F, 0}, {0x2F95C, 0x2597C, 0},
    {0x2F95D, 0x25AA7, 0}, {0x2F95E, 0x25AA7, 0}, {0x2F95F, 0x7AEE, 0}, {0x2F960, 0x4202, 0},
    {0x2F961, 0x25BAB, 0}, {0x2F962, 0x7BC6, 0}, {0x2F963, 0x7BC9, 0}, {0x2F964, 0x4227, 0},
    {0x2F965, 0x25C80, 0}, {0x2F966, 0x7CD2, 0}, {0x2F967, 0x42A0, 0}, {0x2F968, 0x7CE8, 0},
    {0x2F969, 0x7CE3, 0}, {0x2F96A, 0x7D00, 0}, {0x2F96B, 0x25F86, 0}, {0x2F96C, 0x7D63, 0},
    {0x2F96D, 0x4301, 0}, {0x2F96E, 0x7DC7, 0}, {0x2F96F, 0x7E02, 0}, {0x2F970, 0x7E45, 0},
    {0x2F971, 0x4334, 0}, {0x2F972, 0x26228, 0}, {0x2F973, 0x26247, 0}, {0x2F974, 0x4359, 0},
    {0x2F975, 0x262D9, 0}, {0x2F976, 0x7F7A, 0}, {0x2F977, 0x2633E, 0}, {0x2F978, 0x7F95, 0},
    {0x2F979, 0x7FFA, 0}, {0x2F97A, 0x8005, 0}, {0x2F97B, 0x264DA, 0}, {0x2F97C, 0x26523, 0},
    {0x2F97D, 0x8060, 0}, {0x2F97E, 0x265A8, 0}, {0x2F97F, 0x8070, 0}, {0x2F980, 0x2335F, 0},
    {0x2F981, 0x43D5, 0}, {0x2F982, 0x80B2, 0}, {0x2F983, 0x8103, 0}, {0x2F984, 0x440B, 0},
    {0x2F985, 0x813E, 0}, {0x2F986, 0x5AB5, 0}, {0x2F987, 0x267A7, 0}, {0x2F988, 0x267B5, 0},
    {0x2F989, 0x23393, 0}, {0x2F98A, 0x2339C, 0}, {0x2F98B, 0x8201, 0}, {0x2F98C, 0x8204, 0},
    {0x2F98D, 0x8F9E, 0}, {0x2F98E, 0x446B, 0}, {0x2F98F, 0x8291, 0}, {0x2F990, 0x828B, 0},
    {0x2F991, 0x829D, 0}, {0x2F992, 0x52B3, 0}, {0x2F993, 0x82B1, 0}, {0x2F994, 0x82B3, 0},
    {0x2F995, 0x82BD, 0}, {0x2F996, 0x82E6, 0}, {0x2F997, 0x26B3C, 0}, {0x2F998, 0x82E5, 0},
    {0x2F999, 0x831D, 0}, {0x2F99A, 0x8363, 0}, {0x2F99B, 0x83AD, 0}, {0x2F99C, 0x8323, 0},
    {0x2F99D, 0x83BD, 0}, {0x2F99E, 0x83E7, 0}, {0x2F99F, 0x8457, 0}, {0x2F9A0, 0x8353, 0},
    {0x2F9A1, 0x83CA, 0}, {0x2F9A2, 0x83CC, 0}, {0x2F9A3, 0x83DC, 0}, {0x2F9A4, 0x26C36, 0},
    {0x2F9A5, 0x26D6B, 0}, {0x2F9A6, 0x26CD5, 0}, {0x2F9A7, 0x452B, 0}, {0x2F9A8, 0x84F1, 0},
    {0x2F9A9, 0x84F3, 0}, {0x2F9AA, 0x8516, 0}, {0x2F9AB, 0x273CA, 0}, {0x2F9AC, 0x8564, 0},
    {0x2F9AD, 0x26F2C, 0}, {0x2F9AE, 0x455D, 0}, {0x2F9AF, 0x4561, 0}, {0x2F9B0, 0x26FB1, 0},
    {0x2F9B1, 0x270D2, 0}, {0x2F9B2, 0x456B, 0}, {0x2F9B3, 0x8650, 0}, {0x2F9B4, 0x865C, 0},
    {0x2F9B5, 0x8667, 0}, {0x2F9B6, 0x8669, 0}, {0x2F9B7, 0x86A9, 0}, {0x2F9B8, 0x8688, 0},
    {0x2F9B9, 0x870E, 0}, {0x2F9BA, 0x86E2, 0}, {0x2F9BB, 0x8779, 0}, {0x2F9BC, 0x8728, 0},
    {0x2F9BD, 0x876B, 0}, {0x2F9BE, 0x8786, 0}, {0x2F9BF, 0x45D7, 0}, {0x2F9C0, 0x87E1, 0},
    {0x2F9C1, 0x8801, 0}, {0x2F9C2, 0x45F9, 0}, {0x2F9C3, 0x8860, 0}, {0x2F9C4, 0x8863, 0},
    {0x2F9C5, 0x27667, 0}, {0x2F9C6, 0x88D7, 0}, {0x2F9C7, 0x88DE, 0}, {0x2F9C8, 0x4635, 0},
    {0x2F9C9, 0x88FA, 0}, {0x2F9CA, 0x34BB, 0}, {0x2F9CB, 0x278AE, 0}, {0x2F9CC, 0x27966, 0},
    {0x2F9CD, 0x46BE, 0}, {0x2F9CE, 0x46C7, 0}, {0x2F9CF, 0x8AA0, 0}, {0x2F9D0, 0x8AED, 0},
    {0x2F9D1, 0x8B8A, 0}, {0x2F9D2, 0x8C55, 0}, {0x2F9D3, 0x27CA8, 0}, {0x2F9D4, 0x8CAB, 0},
    {0x2F9D5, 0x8CC1, 0}, {0x2F9D6, 0x8D1B, 0}, {0x2F9D7, 0x8D77, 0}, {0x2F9D8, 0x27F2F, 0},
    {0x2F9D9, 0x20804, 0}, {0x2F9DA, 0x8DCB, 0}, {0x2F9DB, 0x8DBC, 0}, {0x2F9DC, 0x8DF0, 0},
    {0x2F9DD, 0x208DE, 0}, {0x2F9DE, 0x8ED4, 0}, {0x2F9DF, 0x8F38, 0}, {0x2F9E0, 0x285D2, 0},
    {0x2F9E1, 0x285ED, 0}, {0x2F9E2, 0x9094, 0}, {0x2F9E3, 0x90F1, 0}, {0x2F9E4, 0x9111, 0},
    {0x2F9E5, 0x2872E, 0}, {0x2F9E6, 0x911B, 0}, {0x2F9E7, 0x9238, 0}, {0x2F9E8, 0x92D7, 0},
    {0x2F9E9, 0x92D8, 0}, {0x2F9EA, 0x927C, 0}, {0x2F9EB, 0x93F9, 0}, {0x2F9EC, 0x9415, 0},
    {0x2F9ED, 0x28BFA, 0}, {0x2F9EE, 0x958B, 0}, {0x2F9EF, 0x4995, 0}, {0x2F9F0, 0x95B7, 0},
    {0x2F9F1, 0x28D77, 0}, {0x2F9F2, 0x49E6, 0}, {0x2F9F3, 0x96C3, 0}, {0x2F9F4, 0x5DB2, 0},
    {0x2F9F5, 0x9723, 0}, {0x2F9F6, 0x29145, 0}, {0x2F9F7, 0x2921A, 0}, {0x2F9F8, 0x4A6E, 0},
    {0x2F9F9, 0x4A76, 0}, {0x2F9FA, 0x97E0, 0}, {0x2F9FB, 0x2940A, 0}, {0x2F9FC, 0x4AB2, 0},
    {0x2F9FD, 0x29496, 0}, {0x2F9FE, 0x980B, 0}, {0x2F9FF, 0x980B, 0}, {0x2FA00, 0x9829, 0},
    {0x2FA01, 0x295B6, 0}, {0x2FA02, 0x98E2, 0}, {0x2FA03, 0x4B33, 0}, {0x2FA04, 0x9929, 0},
    {0x2FA05, 0x99A7, 0}, {0x2FA06, 0x99C2, 0}, {0x2FA07, 0x99FE, 0}, {0x2FA08, 0x4BCE, 0},
    {0x2FA09, 0x29B30, 0}, {0x2FA0A, 0x9B12, 0}, {0x2FA0B, 0x9C40, 0}, {0x2FA0C, 0x9CFD, 0},
    {0x2FA0D, 0x4CCE, 0}, {0x2FA0E, 0x4CED, 0}, {0x2FA0F, 0x9D67, 0}, {0x2FA10, 0x2A0CE, 0},
    {0x2FA11, 0x4CF8, 0}, {0x2FA12, 0x2A105, 0}, {0x2FA13, 0x2A20E, 0}, {0x2FA14, 0x2A291, 0},
    {0x2FA15, 0x9EBB, 0}, {0x2FA16, 0x4D56, 0}, {0x2FA17, 0x9EF9, 0}, {0x2FA18, 0x9EFE, 0},
    {0x2FA19, 0x9F05, 0}, {0x2FA1A, 0x9F0F, 0}, {0x2FA1B, 0x9F16, 0}, {0x2FA1C, 0x9F3B, 0},
    {0x2FA1D, 0x2A600, 0},
};
// NFC: first, second, the primary composite they make, by pair: 961 rows
static const uint32_t unicode_compositions[][3] = {
    {0x003C, 0x0338, 0x226E}, {0x003D, 0x0338, 0x2260}, {0x003E, 0x0338, 0x226F}, {0x0041, 0x0300, 0x00C0},
    {0x0041, 0x0301, 0x00C1}, {0x0041, 0x0302, 0x00C2}, {0x0041, 0x0303, 0x00C3}, {0x0041, 0x0304, 0x0100},
    {0x0041, 0x0306, 0x0102}, {0x0041, 0x0307, 0x0226}, {0x0041, 0x0308, 0x00C4}, {0x0041, 0x0309, 0x1EA2},
    {0x0041, 0x030A, 0x00C5}, {0x0041, 0x030C, 0x01CD}, {0x0041, 0x030F, 0x0200}, {0x0041, 0x0311, 0x0202},
    {0x0041, 0x0323, 0x1EA0}, {0x0041, 0x0325, 0x1E00}, {0x0041, 0x0328, 0x0104}, {0x0042, 0x0307, 0x1E02},
    {0x0042, 0x0323, 0x1E04}, {0x0042, 0x0331, 0x1E06}, {0x0043, 0x0301, 0x0106}, {0x0043, 0x0302, 0x0108},
    {0x0043, 0x0307, 0x010A}, {0x0043, 0x030C, 0x010C}, {0x0043, 0x0327, 0x00C7}, {0x0044, 0x0307, 0x1E0A},
    {0x0044, 0x030C, 0x010E}, {0x0044, 0x0323, 0x1E0C}, {0x0044, 0x0327, 0x1E10}, {0x0044, 0x032D, 0x1E12},
    {0x0044, 0x0331, 0x1E0E}, {0x0045, 0x0300, 0x00C8}, {0x0045, 0x0301, 0x00C9}, {0x0045, 0x0302, 0x00CA},
    {0x0045, 0x0303, 0x1EBC}, {0x0045, 0x0304, 0x0112}, {0x0045, 0x0306, 0x0114}, {0x0045, 0x0307, 0x0116},
    {0x0045, 0x0308, 0x00CB}, {0x0045, 0x0309, 0x1EBA}, {0x0045, 0x030C, 0x011A}, {0x0045, 0x030F, 0x0204},
    {0x0045, 0x0311, 0x0206}, {0x0045, 0x0323, 0x1EB8}, {0x0045, 0x0327, 0x0228}, {0x0045, 0x0328, 0x0118},
    {0x0045, 0x032D, 0x1E18}, {0x0045, 0x0330, 0x1E1A}, {0x0046, 0x0307, 0x1E1E}, {0x0047, 0x0301, 0x01F4},
    {0x0047, 0x0302, 0x011C}, {0x0047, 0x0304, 0x1E20}, {0x0047, 0x0306, 0x011E}, {0x0047, 0x0307, 0x0120},
    {0x0047, 0x030C, 0x01E6}, {0x0047, 0x0327, 0x0122}, {0x0048, 0x0302, 0x0124}, {0x0048, 0x0307, 0x1E22},
    {0x0048, 0x0308, 0x1E26}, {0x0048, 0x030C, 0x021E}, {0x0048, 0x0323, 0x1E24}, {0x0048, 0x0327, 0x1E28},
    {0x0048, 0x032E, 0x1E2A}, {0x0049, 0x0300, 0x00CC}, {0x0049, 0x0301, 0x00CD}, {0x0049, 0x0302, 0x00CE},
    {0x0049, 0x0303, 0x0128}, {0x0049, 0x0304, 0x012A}, {0x0049, 0x0306, 0x012C}, {0x0049, 0x0307, 0x0130},
    {0x0049, 0x0308, 0x00CF}, {0x0049, 0x0309, 0x1EC8}, {0x0049, 0x030C, 0x01CF}, {0x0049, 0x030F, 0x0208},
    {0x0049, 0x0311, 0x020A}, {0x0049, 0x0323, 0x1ECA}, {0x0049, 0x0328, 0x012E}, {0x0049, 0x0330, 0x1E2C},
    {0x004A, 0x0302, 0x0134}, {0x004B, 0x0301, 0x1E30}, {0x004B, 0x030C, 0x01E8}, {0x004B, 0x0323, 0x1E32},
    {0x004B, 0x0327, 0x0136}, {0x004B, 0x0331, 0x1E34}, {0x004C, 0x0301, 0x0139}, {0x004C, 0x030C, 0x013D},
    {0x004C, 0x0323, 0x1E36}, {0x004C, 0x0327, 0x013B}, {0x004C, 0x032D, 0x1E3C}, {0x004C, 0x0331, 0x1E3A},
    {0x004D, 0x0301, 0x1E3E}, {0x004D, 0x0307, 0x1E40}, {0x004D, 0x0323, 0x1E42}, {0x004E, 0x0300, 0x01F8},
    {0x004E, 0x0301, 0x0143}, {0x004E, 0x0303, 0x00D1}, {0x004E, 0x0307, 0x1E44}, {0x004E, 0x030C, 0x0147},
    {0x004E, 0x0323, 0x1E46}, {0x004E, 0x0327, 0x0145}, {0x004E, 0x032D, 0x1E4A}, {0x004E, 0x0331, 0x1E48},
    {0x004F, 0x0300, 0x00D2}, {0x004F, 0x0301, 0x00D3}, {0x004F, 0x0302, 0x00D4}, {0x004F, 0x0303, 0x00D5},
    {0x004F, 0x0304, 0x014C}, {0x004F, 0x0306, 0x014E}, {0x004F, 0x0307, 0x022E}, {0x004F, 0x0308, 0x00D6},
    {0x004F, 0x0309, 0x1ECE}, {0x004F, 0x030B, 0x0150}, {0x004F, 0x030C, 0x01D1}, {0x004F, 0x030F, 0x020C},
    {0x004F, 0x0311, 0x020E}, {0x004F, 0x031B, 0x01A0}, {0x004F, 0x0323, 0x1ECC}, {0x004F, 0x0328, 0x01EA},
    {0x0050, 0x0301, 0x1E54}, {0x0050, 0x0307, 0x1E56}, {0x0052, 0x0301, 0x0154}, {0x0052, 0x0307, 0x1E58},
    {0x0052, 0x030C, 0x0158}, {0x0052, 0x030F, 0x0210}, {0x0052, 0x0311, 0x0212}, {0x0052, 0x0323, 0x1E5A},
    {0x0052, 0x0327, 0x0156}, {0x0052, 0x0331, 0x1E5E}, {0x0053, 0x0301, 0x015A}, {0x0053, 0x0302, 0x015C},
    {0x0053, 0x0307, 0x1E60}, {0x0053, 0x030C, 0x0160}, {0x0053, 0x0323, 0x1E62}, {0x0053, 0x0326, 0x0218},
    {0x0053, 0x0327, 0x015E}, {0x0054, 0x0307, 0x1E6A}, {0x0054, 0x030C, 0x0164}, {0x0054, 0x0323, 0x1E6C},
    {0x0054, 0x0326, 0x021A}, {0x0054, 0x0327, 0x0162}, {0x0054, 0x032D, 0x1E70}, {0x0054, 0x0331, 0x1E6E},
    {0x0055, 0x0300, 0x00D9}, {0x0055, 0x0301, 0x00DA}, {0x0055, 0x0302, 0x00DB}, {0x0055, 0x0303, 0x0168},
    {0x0055, 0x0304, 0x016A}, {0x0055, 0x0306, 0x016C}, {0x0055, 0x0308, 0x00DC}, {0x0055, 0x0309, 0x1EE6},
    {0x0055, 0x030A, 0x016E}, {0x0055, 0x030B, 0x0170}, {0x0055, 0x030C, 0x01D3}, {0x0055, 0x030F, 0x0214},
    {0x0055, 0x0311, 0x0216}, {0x0055, 0x031B, 0x01AF}, {0x0055, 0x0323, 0x1EE4}, {0x0055, 0x0324, 0x1E72},
    {0x0055, 0x0328, 0x0172}, {0x0055, 0x032D, 0x1E76}, {0x0055, 0x0330, 0x1E74}, {0x0056, 0x0303, 0x1E7C},
    {0x0056, 0x0323, 0x1E7E}, {0x0057, 0x0300, 0x1E80}, {0x0057, 0x0301, 0x1E82}, {0x0057, 0x0302, 0x0174},
    {0x0057, 0x0307, 0x1E86}, {0x0057, 0x0308, 0x1E84}, {0x0057, 0x0323, 0x1E88}, {0x0058, 0x0307, 0x1E8A},
    {0x0058, 0x0308, 0x1E8C}, {0x0059, 0x0300, 0x1EF2}, {0x0059, 0x0301, 0x00DD}, {0x0059, 0x0302, 0x0176},
    {0x0059, 0x0303, 0x1EF8}, {0x0059, 0x0304, 0x0232}, {0x0059, 0x0307, 0x1E8E}, {0x0059, 0x0308, 0x0178},
    {0x0059, 0x0309, 0x1EF6}, {0x0059, 0x0323, 0x1EF4}, {0x005A, 0x0301, 0x0179}, {0x005A, 0x0302, 0x1E90},
    {0x005A, 0x0307, 0x017B}, {0x005A, 0x030C, 0x017D}, {0x005A, 0x0323, 0x1E92}, {0x005A, 0x0331, 0x1E94},
    {0x0061, 0x0300, 0x00E0}, {0x0061, 0x0301, 0x00E1}, {0x0061, 0x0302, 0x00E2}, {0x0061, 0x0303, 0x00E3},
    {0x0061, 0x0304, 0x0101}, {0x0061, 0x0306, 0x0103}, {0x0061, 0x0307, 0x0227}, {0x0061, 0x0308, 0x00E4},
    {0x0061, 0x0309, 0x1EA3}, {0x0061, 0x030A, 0x00E5}, {0x0061, 0x030C, 0x01CE}, {0x0061, 0x030F, 0x0201},
    {0x0061, 0x0311, 0x0203}, {0x0061, 0x0323, 0x1EA1}, {0x0061, 0x0325, 0x1E01}, {0x0061, 0x0328, 0x0105},
    {0x0062, 0x0307, 0x1E03}, {0x0062, 0x0323, 0x1E05}, {0x0062, 0x0331, 0x1E07}, {0x0063, 0x0301, 0x0107},
    {0x0063, 0x0302, 0x0109}, {0x0063, 0x0307, 0x010B}, {0x0063, 0x030C, 0x010D}, {0x0063, 0x0327, 0x00E7},
    {0x0064, 0x0307, 0x1E0B}, {0x0064, 0x030C, 0x010F}, {0x0064, 0x0323, 0x1E0D}, {0x0064, 0x0327, 0x1E11},
    {0x0064, 0x032D, 0x1E13}, {0x0064, 0x0331, 0x1E0F}, {0x0065, 0x0300, 0x00E8}, {0x0065, 0x0301, 0x00E9},
    {0x0065, 0x0302, 0x00EA}, {0x0065, 0x0303, 0x1EBD}, {0x0065, 0x0304, 0x0113}, {0x0065, 0x0306, 0x0115},
    {0x0065, 0x0307, 0x0117}, {0x0065, 0x0308, 0x00EB}, {0x0065, 0x0309, 0x1EBB}, {0x0065, 0x030C, 0x011B},
    {0x0065, 0x030F, 0x0205}, {0x0065, 0x0311, 0x0207}, {0x0065, 0x0323, 0x1EB9}, {0x0065, 0x0327, 0x0229},
    {0x0065, 0x0328, 0x0119}, {0x0065, 0x032D, 0x1E19}, {0x0065, 0x0330, 0x1E1B}, {0x0066, 0x0307, 0x1E1F},
    {0x0067, 0x0301, 0x01F5}, {0x0067, 0x0302, 0x011D}, {0x0067, 0x0304, 0x1E21}, {0x0067, 0x0306, 0x011F},
    {0x0067, 0x0307, 0x0121}, {0x0067, 0x030C, 0x01E7}, {0x0067, 0x0327, 0x0123}, {0x0068, 0x0302, 0x0125},
    {0x0068, 0x0307, 0x1E23}, {0x0068, 0x0308, 0x1E27}, {0x0068, 0x030C, 0x021F}, {0x0068, 0x0323, 0x1E25},
    {0x0068, 0x0327, 0x1E29}, {0x0068, 0x032E, 0x1E2B}, {0x0068, 0x0331, 0x1E96}, {0x0069, 0x0300, 0x00EC},
    {0x0069, 0x0301, 0x00ED}, {0x0069, 0x0302, 0x00EE}, {0x0069, 0x0303, 0x0129}, {0x0069, 0x0304, 0x012B},
    {0x0069, 0x0306, 0x012D}, {0x0069, 0x0308, 0x00EF}, {0x0069, 0x0309, 0x1EC9}, {0x0069, 0x030C, 0x01D0},
    {0x0069, 0x030F, 0x0209}, {0x0069, 0x0311, 0x020B}, {0x0069, 0x0323, 0x1ECB}, {0x0069, 0x0328, 0x012F},
    {0x0069, 0x0330, 0x1E2D}, {0x006A, 0x0302, 0x0135}, {0x006A, 0x030C, 0x01F0}, {0x006B, 0x0301, 0x1E31},
    {0x006B, 0x030C, 0x01E9}, {0x006B, 0x0323, 0x1E33}, {0x006B, 0x0327, 0x0137}, {0x006B, 0x0331, 0x1E35},
    {0x006C, 0x0301, 0x013A}, {0x006C, 0x030C, 0x013E}, {0x006C, 0x0323, 0x1E37}, {0x006C, 0x0327, 0x013C},
    {0x006C, 0x032D, 0x1E3D}, {0x006C, 0x0331, 0x1E3B}, {0x006D, 0x0301, 0x1E3F}, {0x006D, 0x0307, 0x1E41},
    {0x006D, 0x0323, 0x1E43}, {0x006E, 0x0300, 0x01F9}, {0x006E, 0x0301, 0x0144}, {0x006E, 0x0303, 0x00F1},
    {0x006E, 0x0307, 0x1E45}, {0x006E, 0x030C, 0x0148}, {0x006E, 0x0323, 0x1E47}, {0x006E, 0x0327, 0x0146},
    {0x006E, 0x032D, 0x1E4B}, {0x006E, 0x0331, 0x1E49}, {0x006F, 0x0300, 0x00F2}, {0x006F, 0x0301, 0x00F3},
    {0x006F, 0x0302, 0x00F4}, {0x006F, 0x0303, 0x00F5}, {0x006F, 0x0304, 0x014D}, {0x006F, 0x0306, 0x014F},
    {0x006F, 0x0307, 0x022F}, {0x006F, 0x0308, 0x00F6}, {0x006F, 0x0309, 0x1ECF}, {0x006F, 0x030B, 0x0151},
    {0x006F, 0x030C, 0x01D2}, {0x006F, 0x030F, 0x020D}, {0x006F, 0x0311, 0x020F}, {0x006F, 0x031B, 0x01A1},
    {0x006F, 0x0323, 0x1ECD}, {0x006F, 0x0328, 0x01EB}, {0x0070, 0x0301, 0x1E55}, {0x0070, 0x0307, 0x1E57},
    {0x0072, 0x0301, 0x0155}, {0x0072, 0x0307, 0x1E59}, {0x0072, 0x030C, 0x0159}, {0x0072, 0x030F, 0x0211},
    {0x0072, 0x0311, 0x0213}, {0x0072, 0x0323, 0x1E5B}, {0x0072, 0x0327, 0x0157}, {0x0072, 0x0331, 0x1E5F},
    {0x0073, 0x0301, 0x015B}, {0x0073, 0x0302, 0x015D}, {0x0073, 0x0307, 0x1E61}, {0x0073, 0x030C, 0x0161},
    {0x0073, 0x0323, 0x1E63}, {0x0073, 0x0326, 0x0219}, {0x0073, 0x0327, 0x015F}, {0x0074, 0x0307, 0x1E6B},
    {0x0074, 0x0308, 0x1E97}, {0x0074, 0x030C, 0x0165}, {0x0074, 0x0323, 0x1E6D}, {0x0074, 0x0326, 0x021B},
    {0x0074, 0x0327, 0x0163}, {0x0074, 0x032D, 0x1E71}, {0x0074, 0x0331, 0x1E6F}, {0x0075, 0x0300, 0x00F9},
    {0x0075, 0x0301, 0x00FA}, {0x0075, 0x0302, 0x00FB}, {0x0075, 0x0303, 0x0169}, {0x0075, 0x0304, 0x016B},
    {0x0075, 0x0306, 0x016D}, {0x0075, 0x0308, 0x00FC}, {0x0075, 0x0309, 0x1EE7}, {0x0075, 0x030A, 0x016F},
    {0x0075, 0x030B, 0x0171}, {0x0075, 0x030C, 0x01D4}, {0x0075, 0x030F, 0x0215}, {0x0075, 0x0311, 0x0217},
    {0x0075, 0x031B, 0x01B0}, {0x0075, 0x0323, 0x1EE5}, {0x0075, 0x0324, 0x1E73}, {0x0075, 0x0328, 0x0173},
    {0x0075, 0x032D, 0x1E77}, {0x0075, 0x0330, 0x1E75}, {0x0076, 0x0303, 0x1E7D}, {0x0076, 0x0323, 0x1E7F},
    {0x0077, 0x0300, 0x1E81}, {0x0077, 0x0301, 0x1E83}, {0x0077, 0x0302, 0x0175}, {0x0077, 0x0307, 0x1E87},
    {0x0077, 0x0308, 0x1E85}, {0x0077, 0x030A, 0x1E98}, {0x0077, 0x0323, 0x1E89}, {0x0078, 0x0307, 0x1E8B},
    {0x0078, 0x0308, 0x1E8D}, {0x0079, 0x0300, 0x1EF3}, {0x0079, 0x0301, 0x00FD}, {0x0079, 0x0302, 0x0177},
    {0x0079, 0x0303, 0x1EF9}, {0x0079, 0x0304, 0x0233}, {0x0079, 0x0307, 0x1E8F}, {0x0079, 0x0308, 0x00FF},
    {0x0079, 0x0309, 0x1EF7}, {0x0079, 0x030A, 0x1E99}, {0x0079, 0x0323, 0x1EF5}, {0x007A, 0x0301, 0x017A},
    {0x007A, 0x0302, 0x1E91}, {0x007A, 0x0307, 0x017C}, {0x007A, 0x030C, 0x017E}, {0x007A, 0x0323, 0x1E93},
    {0x007A, 0x0331, 0x1E95}, {0x00A8, 0x0300, 0x1FED}, {0x00A8, 0x0301, 0x0385}, {0x00A8, 0x0342, 0x1FC1},
    {0x00C2, 0x0300, 0x1EA6}, {0x00C2, 0x0301, 0x1EA4}, {0x00C2, 0x0303, 0x1EAA}, {0x00C2, 0x0309, 0x1EA8},
    {0x00C4, 0x0304, 0x01DE}, {0x00C5, 0x0301, 0x01FA}, {0x00C6, 0x0301, 0x01FC}, {0x00C6, 0x0304, 0x01E2},
    {0x00C7, 0x0301, 0x1E08}, {0x00CA, 0x0300, 0x1EC0}, {0x00CA, 0x0301, 0x1EBE}, {0x00CA, 0x0303, 0x1EC4},
    {0x00CA, 0x0309, 0x1EC2}, {0x00CF, 0x0301, 0x1E2E}, {0x00D4, 0x0300, 0x1ED2}, {0x00D4, 0x0301, 0x1ED0},
    {0x00D4, 0x0303, 0x1ED6}, {0x00D4, 0x0309, 0x1ED4}, {0x00D5, 0x0301, 0x1E4C}, {0x00D5, 0x0304, 0x022C},
    {0x00D5, 0x0308, 0x1E4E}, {0x00D6, 0x0304, 0x022A}, {0x00D8, 0x0301, 0x01FE}, {0x00DC, 0x0300, 0x01DB},
    {0x00DC, 0x0301, 0x01D7}, {0x00DC, 0x0304, 0x01D5}, {0x00DC, 0x030C, 0x01D9}, {0x00E2, 0x0300, 0x1EA7},
    {0x00E2, 0x0301, 0x1EA5}, {0x00E2, 0x0303, 0x1EAB}, {0x00E2, 0x0309, 0x1EA9}, {0x00E4, 0x0304, 0x01DF},
    {0x00E5, 0x0301, 0x01FB}, {0x00E6, 0x0301, 0x01FD}, {0x00E6, 0x0304, 0x01E3}, {0x00E7, 0x0301, 0x1E09},
    {0x00EA, 0x0300, 0x1EC1}, {0x00EA, 0x0301, 0x1EBF}, {0x00EA, 0x0303, 0x1EC5}, {0x00EA, 0x0309, 0x1EC3},
    {0x00EF, 0x0301, 0x1E2F}, {0x00F4, 0x0300, 0x1ED3}, {0x00F4, 0x0301, 0x1ED1}, {0x00F4, 0x0303, 0x1ED7},
    {0x00F4, 0x0309, 0x1ED5}, {0x00F5, 0x0301, 0x1E4D}, {0x00F5, 0x0304, 0x022D}, {0x00F5, 0x0308, 0x1E4F},
    {0x00F6, 0x0304, 0x022B}, {0x00F8, 0x0301, 0x01FF}, {0x00FC, 0x0300, 0x01DC}, {0x00FC, 0x0301, 0x01D8},
    {0x00FC, 0x0304, 0x01D6}, {0x00FC, 0x030C, 0x01DA}, {0x0102, 0x0300, 0x1EB0}, {0x0102, 0x0301, 0x1EAE},
    {0x0102, 0x0303, 0x1EB4}, {0x0102, 0x0309, 0x1EB2}, {0x0103, 0x0300, 0x1EB1}, {0x0103, 0x0301, 0x1EAF},
    {0x0103, 0x0303, 0x1EB5}, {0x0103, 0x0309, 0x1EB3}, {0x0112, 0x0300, 0x1E14}, {0x0112, 0x0301, 0x1E16},
    {0x0113, 0x0300, 0x1E15}, {0x0113, 0x0301, 0x1E17}, {0x014C, 0x0300, 0x1E50}, {0x014C, 0x0301, 0x1E52},
    {0x014D, 0x0300, 0x1E51}, {0x014D, 0x0301, 0x1E53}, {0x015A, 0x0307, 0x1E64}, {0x015B, 0x0307, 0x1E65},
    {0x0160, 0x0307, 0x1E66}, {0x0161, 0x0307, 0x1E67}, {0x0168, 0x0301, 0x1E78}, {0x0169, 0x0301, 0x1E79},
    {0x016A, 0x0308, 0x1E7A}, {0x016B, 0x0308, 0x1E7B}, {0x017F, 0x0307, 0x1E9B}, {0x01A0, 0x0300, 0x1EDC},
    {0x01A0, 0x0301, 0x1EDA}, {0x01A0, 0x0303, 0x1EE0}, {0x01A0, 0x0309, 0x1EDE}, {0x01A0, 0x0323, 0x1EE2},
    {0x01A1, 0x0300, 0x1EDD}, {0x01A1, 0x0301, 0x1EDB}, {0x01A1, 0x0303, 0x1EE1}, {0x01A1, 0x0309, 0x1EDF},
    {0x01A1, 0x0323, 0x1EE3}, {0x01AF, 0x0300, 0x1EEA}, {0x01AF, 0x0301, 0x1EE8}, {0x01AF, 0x0303, 0x1EEE},
    {0x01AF, 0x0309, 0x1EEC}, {0x01AF, 0x0323, 0x1EF0}, {0x01B0, 0x0300, 0x1EEB}, {0x01B0, 0x0301, 0x1EE9},
    {0x01B0, 0x0303, 0x1EEF}, {0x01B0, 0x0309, 0x1EED}, {0x01B0, 0x0323, 0x1EF1}, {0x01B7, 0x030C, 0x01EE},
    {0x01EA, 0x0304, 0x01EC}, {0x01EB, 0x0304, 0x01ED}, {0x0226, 0x0304, 0x01E0}, {0x0227, 0x0304, 0x01E1},
    {0x0228, 0x0306, 0x1E1C}, {0x0229, 0x0306, 0x1E1D}, {0x022E, 0x0304, 0x0230}, {0x022F, 0x0304, 0x0231},
    {0x0292, 0x030C, 0x01EF}, {0x0391, 0x0300, 0x1FBA}, {0x0391, 0x0301, 0x0386}, {0x0391, 0x0304, 0x1FB9},
    {0x0391, 0x0306, 0x1FB8}, {0x0391, 0x0313, 0x1F08}, {0x0391, 0x0314, 0x1F09}, {0x0391, 0x0345, 0x1FBC},
    {0x0395, 0x0300, 0x1FC8}, {0x0395, 0x0301, 0x0388}, {0x0395, 0x0313, 0x1F18}, {0x0395, 0x0314, 0x1F19},
    {0x0397, 0x0300, 0x1FCA}, {0x0397, 0x0301, 0x0389}, {0x0397, 0x0313, 0x1F28}, {0x0397, 0x0314, 0x1F29},
    {0x0397, 0x0345, 0x1FCC}, {0x0399, 0x0300, 0x1FDA}, {0x0399, 0x0301, 0x038A}, {0x0399, 0x0304, 0x1FD9},
    {0x0399, 0x0306, 0x1FD8}, {0x0399, 0x0308, 0x03AA}, {0x0399, 0x0313, 0x1F38}, {0x0399, 0x0314, 0x1F39},
    {0x039F, 0x0300, 0x1FF8}, {0x039F, 0x0301, 0x038C}, {0x039F, 0x0313, 0x1F48}, {0x039F, 0x0314, 0x1F49},
    {0x03A1, 0x0314, 0x1FEC}, {0x03A5, 0x0300, 0x1FEA}, {0x03A5, 0x0301, 0x038E}, {0x03A5, 0x0304, 0x1FE9},
    {0x03A5, 0x0306, 0x1FE8}, {0x03A5, 0x0308, 0x03AB}, {0x03A5, 0x0314, 0x1F59}, {0x03A9, 0x0300, 0x1FFA},
    {0x03A9, 0x0301, 0x038F}, {0x03A9, 0x0313, 0x1F68}, {0x03A9, 0x0314, 0x1F69}, {0x03A9, 0x0345, 0x1FFC},
    {0x03AC, 0x0345, 0x1FB4}, {0x03AE, 0x0345, 0x1FC4}, {0x03B1, 0x0300, 0x1F70}, {0x03B1, 0x0301, 0x03AC},
    {0x03B1, 0x0304, 0x1FB1}, {0x03B1, 0x0306, 0x1FB0}, {0x03B1, 0x0313, 0x1F00}, {0x03B1, 0x0314, 0x1F01},
    {0x03B1, 0x0342, 0x1FB6}, {0x03B1, 0x0345, 0x1FB3}, {0x03B5, 0x0300, 0x1F72}, {0x03B5, 0x0301, 0x03AD},
    {0x03B5, 0x0313, 0x1F10}, {0x03B5, 0x0314, 0x1F11}, {0x03B7, 0x0300, 0x1F74}, {0x03B7, 0x0301, 0x03AE},
    {0x03B7, 0x0313, 0x1F20}, {0x03B7, 0x0314, 0x1F21}, {0x03B7, 0x0342, 0x1FC6}, {0x03B7, 0x0345, 0x1FC3},
    {0x03B9, 0x0300, 0x1F76}, {0x03B9, 0x0301, 0x03AF}, {0x03B9, 0x0304, 0x1FD1}, {0x03B9, 0x0306, 0x1FD0},
    {0x03B9, 0x0308, 0x03CA}, {0x03B9, 0x0313, 0x1F30}, {0x03B9, 0x0314, 0x1F31}, {0x03B9, 0x0342, 0x1FD6},
    {0x03BF, 0x0300, 0x1F78}, {0x03BF, 0x0301, 0x03CC}, {0x03BF, 0x0313, 0x1F40}, {0x03BF, 0x0314, 0x1F41},
    {0x03C1, 0x0313, 0x1FE4}, {0x03C1, 0x0314, 0x1FE5}, {0x03C5, 0x0300, 0x1F7A}, {0x03C5, 0x0301, 0x03CD},
    {0x03C5, 0x0304, 0x1FE1}, {0x03C5, 0x0306, 0x1FE0}, {0x03C5, 0x0308, 0x03CB}, {0x03C5, 0x0313, 0x1F50},
    {0x03C5, 0x0314, 0x1F51}, {0x03C5, 0x0342, 0x1FE6}, {0x03C9, 0x0300, 0x1F7C}, {0x03C9, 0x0301, 0x03CE},
    {0x03C9, 0x0313, 0x1F60}, {0x03C9, 0x0314, 0x1F61}, {0x03C9, 0x0342, 0x1FF6}, {0x03C9, 0x0345, 0x1FF3},
    {0x03CA, 0x0300, 0x1FD2}, {0x03CA, 0x0301, 0x0390}, {0x03CA, 0x0342, 0x1FD7}, {0x03CB, 0x0300, 0x1FE2},
    {0x03CB, 0x0301, 0x03B0}, {0x03CB, 0x0342, 0x1FE7}, {0x03CE, 0x0345, 0x1FF4}, {0x03D2, 0x0301, 0x03D3},
    {0x03D2, 0x0308, 0x03D4}, {0x0406, 0x0308, 0x0407}, {0x0410, 0x0306, 0x04D0}, {0x0410, 0x0308, 0x04D2},
    {0x0413, 0x0301, 0x0403}, {0x0415, 0x0300, 0x0400}, {0x0415, 0x0306, 0x04D6}, {0x0415, 0x0308, 0x0401},
    {0x0416, 0x0306, 0x04C1}, {0x0416, 0x0308, 0x04DC}, {0x0417, 0x0308, 0x04DE}, {0x0418, 0x0300, 0x040D},
    {0x0418, 0x0304, 0x04E2}, {0x0418, 0x0306, 0x0419}, {0x0418, 0x0308, 0x04E4}, {0x041A, 0x0301, 0x040C},
    {0x041E, 0x0308, 0x04E6}, {0x0423, 0x0304, 0x04EE}, {0x0423, 0x0306, 0x040E}, {0x0423, 0x0308, 0x04F0},
    {0x0423, 0x030B, 0x04F2}, {0x0427, 0x0308, 0x04F4}, {0x042B, 0x0308, 0x04F8}, {0x042D, 0x0308, 0x04EC},
    {0x0430, 0x0306, 0x04D1}, {0x0430, 0x0308, 0x04D3}, {0x0433, 0x0301, 0x0453}, {0x0435, 0x0300, 0x0450},
    {0x0435, 0x0306, 0x04D7}, {0x0435, 0x0308, 0x0451}, {0x0436, 0x0306, 0x04C2}, {0x0436, 0x0308, 0x04DD},
    {0x0437, 0x0308, 0x04DF}, {0x0438, 0x0300, 0x045D}, {0x0438, 0x0304, 0x04E3}, {0x0438, 0x0306, 0x0439},
    {0x0438, 0x0308, 0x04E5}, {0x043A, 0x0301, 0x045C}, {0x043E, 0x0308, 0x04E7}, {0x0443, 0x0304, 0x04EF},
    {0x0443, 0x0306, 0x045E}, {0x0443, 0x0308, 0x04F1}, {0x0443, 0x030B, 0x04F3}, {0x0447, 0x0308, 0x04F5},
    {0x044B, 0x0308, 0x04F9}, {0x044D, 0x0308, 0x04ED}, {0x0456, 0x0308, 0x0457}, {0x0474, 0x030F, 0x0476},
    {0x0475, 0x030F, 0x0477}, {0x04D8, 0x0308, 0x04DA}, {0x04D9, 0x0308, 0x04DB}, {0x04E8, 0x0308, 0x04EA},
    {0x04E9, 0x0308, 0x04EB}, {0x0627, 0x0653, 0x0622}, {0x0627, 0x0654, 0x0623}, {0x0627, 0x0655, 0x0625},
    {0x0648, 0x0654, 0x0624}, {0x064A, 0x0654, 0x0626}, {0x06C1, 0x0654, 0x06C2}, {0x06D2, 0x0654, 0x06D3},
    {0x06D5, 0x0654, 0x06C0}, {0x0928, 0x093C, 0x0929}, {0x0930, 0x093C, 0x0931}, {0x0933, 0x093C, 0x0934},
    {0x09C7, 0x09BE, 0x09CB}, {0x09C7, 0x09D7, 0x09CC}, {0x0B47, 0x0B3E, 0x0B4B}, {0x0B47, 0x0B56, 0x0B48},
    {0x0B47, 0x0B57, 0x0B4C}, {0x0B92, 0x0BD7, 0x0B94}, {0x0BC6, 0x0BBE, 0x0BCA}, {0x0BC6, 0x0BD7, 0x0BCC},
    {0x0BC7, 0x0BBE, 0x0BCB}, {0x0C46, 0x0C56, 0x0C48}, {0x0CBF, 0x0CD5, 0x0CC0}, {0x0CC6, 0x0CC2, 0x0CCA},
    {0x0CC6, 0x0CD5, 0x0CC7}, {0x0CC6, 0x0CD6, 0x0CC8}, {0x0CCA, 0x0CD5, 0x0CCB}, {0x0D46, 0x0D3E, 0x0D4A},
    {0x0D46, 0x0D57, 0x0D4C}, {0x0D47, 0x0D3E, 0x0D4B}, {0x0DD9, 0x0DCA, 0x0DDA}, {0x0DD9, 0x0DCF, 0x0DDC},
    {0x0DD9, 0x0DDF, 0x0DDE}, {0x0DDC, 0x0DCA, 0x0DDD}, {0x1025, 0x102E, 0x1026}, {0x1B05, 0x1B35, 0x1B06},
    {0x1B07, 0x1B35, 0x1B08}, {0x1B09, 0x1B35, 0x1B0A}, {0x1B0B, 0x1B35, 0x1B0C}, {0x1B0D, 0x1B35, 0x1B0E},
    {0x1B11, 0x1B35, 0x1B12}, {0x1B3A, 0x1B35, 0x1B3B}, {0x1B3C, 0x1B35, 0x1B3D}, {0x1B3E, 0x1B35, 0x1B40},
    {0x1B3F, 0x1B35, 0x1B41}, {0x1B42, 0x1B35, 0x1B43}, {0x1E36, 0x0304, 0x1E38}, {0x1E37, 0x0304, 0x1E39},
    {0x1E5A, 0x0304, 0x1E5C}, {0x1E5B, 0x0304, 0x1E5D}, {0x1E62, 0x0307, 0x1E68}, {0x1E63, 0x0307, 0x1E69},
    {0x1EA0, 0x0302, 0x1EAC}, {0x1EA0, 0x0306, 0x1EB6}, {0x1EA1, 0x0302, 0x1EAD}, {0x1EA1, 0x0306, 0x1EB7},
    {0x1EB8, 0x0302, 0x1EC6}, {0x1EB9, 0x0302, 0x1EC7}, {0x1ECC, 0x0302, 0x1ED8}, {0x1ECD, 0x0302, 0x1ED9},
    {0x1F00, 0x0300, 0x1F02}, {0x1F00, 0x0301, 0x1F04}, {0x1F00, 0x0342, 0x1F06}, {0x1F00, 0x0345, 0x1F80},
    {0x1F01, 0x0300, 0x1F03}, {0x1F01, 0x0301, 0x1F05}, {0x1F01, 0x0342, 0x1F07}, {0x1F01, 0x0345, 0x1F81},
    {0x1F02, 0x0345, 0x1F82}, {0x1F03, 0x0345, 0x1F83}, {0x1F04, 0x0345, 0x1F84}, {0x1F05, 0x0345, 0x1F85},
    {0x1F06, 0x0345, 0x1F86}, {0x1F07, 0x0345, 0x1F87}, {0x1F08, 0x0300, 0x1F0A}, {0x1F08, 0x0301, 0x1F0C},
    {0x1F08, 0x0342, 0x1F0E}, {0x1F08, 0x0345, 0x1F88}, {0x1F09, 0x0300, 0x1F0B}, {0x1F09, 0x0301, 0x1F0D},
    {0x1F09, 0x0342, 0x1F0F}, {0x1F09, 0x0345, 0x1F89}, {0x1F0A, 0x0345, 0x1F8A}, {0x1F0B, 0x0345, 0x1F8B},
    {0x1F0C, 0x0345, 0x1F8C}, {0x1F0D, 0x0345, 0x1F8D}, {0x1F0E, 0x0345, 0x1F8E}, {0x1F0F, 0x0345, 0x1F8F},
    {0x1F10, 0x0300, 0x1F12}, {0x1F10, 0x0301, 0x1F14}, {0x1F11, 0x0300, 0x1F13}, {0x1F11, 0x0301, 0x1F15},
    {0x1F18, 0x0300, 0x1F1A}, {0x1F18, 0x0301, 0x1F1C}, {0x1F19, 0x0300, 0x1F1B}, {0x1F19, 0x0301, 0x1F1D},
    {0x1F20, 0x0300, 0x1F22}, {0x1F20, 0x0301, 0x1F24}, {0x1F20, 0x0342, 0x1F26}, {0x1F20, 0x0345, 0x1F90},
    {0x1F21, 0x0300, 0x1F23}, {0x1F21, 0x0301, 0x1F25}, {0x1F21, 0x0342, 0x1F27}, {0x1F21, 0x0345, 0x1F91},
    {0x1F22, 0x0345, 0x1F92}, {0x1F23, 0x0345, 0x1F93}, {0x1F24, 0x0345, 0x1F94}, {0x1F25, 0x0345, 0x1F95},
    {0x1F26, 0x0345, 0x1F96}, {0x1F27, 0x0345, 0x1F97}, {0x1F28, 0x0300, 0x1F2A}, {0x1F28, 0x0301, 0x1F2C},
    {0x1F28, 0x0342, 0x1F2E}, {0x1F28, 0x0345, 0x1F98}, {0x1F29, 0x0300, 0x1F2B}, {0x1F29, 0x0301, 0x1F2D},
    {0x1F29, 0x0342, 0x1F2F}, {0x1F29, 0x0345, 0x1F99}, {0x1F2A, 0x0345, 0x1F9A}, {0x1F2B, 0x0345, 0x1F9B},
    {0x1F2C, 0x0345, 0x1F9C}, {0x1F2D, 0x0345, 0x1F9D}, {0x1F2E, 0x0345, 0x1F9E}, {0x1F2F, 0x0345, 0x1F9F},
    {0x1F30, 0x0300, 0x1F32}, {0x1F30, 0x0301, 0x1F34}, {0x1F30, 0x0342, 0x1F36}, {0x1F31, 0x0300, 0x1F33},
    {0x1F31, 0x0301, 0x1F35}, {0x1F31, 0x0342, 0x1F37}, {0x1F38, 0x0300, 0x1F3A}, {0x1F38, 0x0301, 0x1F3C},
    {0x1F38, 0x0342, 0x1F3E}, {0x1F39, 0x0300, 0x1F3B}, {0x1F39, 0x0301, 0x1F3D}, {0x1F39, 0x0342, 0x1F3F},
    {0x1F40, 0x0300, 0x1F42}, {0x1F40, 0x0301, 0x1F44}, {0x1F41, 0x0300, 0x1F43}, {0x1F41, 0x0301, 0x1F45},
    {0x1F48, 0x0300, 0x1F4A}, {0x1F48, 0x0301, 0x1F4C}, {0x1F49, 0x0300, 0x1F4B}, {0x1F49, 0x0301, 0x1F4D},
    {0x1F50, 0x0300, 0x1F52}, {0x1F50, 0x0301, 0x1F54}, {0x1F50, 0x0342, 0x1F56}, {0x1F51, 0x0300, 0x1F53},
    {0x1F51, 0x0301, 0x1F55}, {0x1F51, 0x0342, 0x1F57}, {0x1F59, 0x0300, 0x1F5B}, {0x1F59, 0x0301, 0x1F5D},
    {0x1F59, 0x0342, 0x1F5F}, {0x1F60, 0x0300, 0x1F62}, {0x1F60, 0x0301, 0x1F64}, {0x1F60, 0x0342, 0x1F66},
    {0x1F60, 0x0345, 0x1FA0}, {0x1F61, 0x0300, 0x1F63}, {0x1F61, 0x0301, 0x1F65}, {0x1F61, 0x0342, 0x1F67},
    {0x1F61, 0x0345, 0x1FA1}, {0x1F62, 0x0345, 0x1FA2}, {0x1F63, 0x0345, 0x1FA3}, {0x1F64, 0x0345, 0x1FA4},
    {0x1F65, 0x0345, 0x1FA5}, {0x1F66, 0x0345, 0x1FA6}, {0x1F67, 0x0345, 0x1FA7}, {0x1F68, 0x0300, 0x1F6A},
    {0x1F68, 0x0301, 0x1F6C}, {0x1F68, 0x0342, 0x1F6E}, {0x1F68, 0x0345, 0x1FA8}, {0x1F69, 0x0300, 0x1F6B},
    {0x1F69, 0x0301, 0x1F6D}, {0x1F69, 0x0342, 0x1F6F}, {0x1F69, 0x0345, 0x1FA9}, {0x1F6A, 0x0345, 0x1FAA},
    {0x1F6B, 0x0345, 0x1FAB}, {0x1F6C, 0x0345, 0x1FAC}, {0x1F6D, 0x0345, 0x1FAD}, {0x1F6E, 0x0345, 0x1FAE},
    {0x1F6F, 0x0345, 0x1FAF}, {0x1F70, 0x0345, 0x1FB2}, {0x1F74, 0x0345, 0x1FC2}, {0x1F7C, 0x0345, 0x1FF2},
    {0x1FB6, 0x0345, 0x1FB7}, {0x1FBF, 0x0300, 0x1FCD}, {0x1FBF, 0x0301, 0x1FCE}, {0x1FBF, 0x0342, 0x1FCF},
    {0x1FC6, 0x0345, 0x1FC7}, {0x1FF6, 0x0345, 0x1FF7}, {0x1FFE, 0x0300, 0x1FDD}, {0x1FFE, 0x0301, 0x1FDE},
    {0x1FFE, 0x0342, 0x1FDF}, {0x2190, 0x0338, 0x219A}, {0x2192, 0x0338, 0x219B}, {0x2194, 0x0338, 0x21AE},
    {0x21D0, 0x0338, 0x21CD}, {0x21D2, 0x0338, 0x21CF}, {0x21D4, 0x0338, 0x21CE}, {0x2203, 0x0338, 0x2204},
    {0x2208, 0x0338, 0x2209}, {0x220B, 0x0338, 0x220C}, {0x2223, 0x0338, 0x2224}, {0x2225, 0x0338, 0x2226},
    {0x223C, 0x0338, 0x2241}, {0x2243, 0x0338, 0x2244}, {0x2245, 0x0338, 0x2247}, {0x2248, 0x0338, 0x2249},
    {0x224D, 0x0338, 0x226D}, {0x2261, 0x0338, 0x2262}, {0x2264, 0x0338, 0x2270}, {0x2265, 0x0338, 0x2271},
    {0x2272, 0x0338, 0x2274}, {0x2273, 0x0338, 0x2275}, {0x2276, 0x0338, 0x2278}, {0x2277, 0x0338, 0x2279},
    {0x227A, 0x0338, 0x2280}, {0x227B, 0x0338, 0x2281}, {0x227C, 0x0338, 0x22E0}, {0x227D, 0x0338, 0x22E1},
    {0x2282, 0x0338, 0x2284}, {0x2283, 0x0338, 0x2285}, {0x2286, 0x0338, 0x2288}, {0x2287, 0x0338, 0x2289},
    {0x2291, 0x0338, 0x22E2}, {0x2292, 0x0338, 0x22E3}, {0x22A2, 0x0338, 0x22AC}, {0x22A8, 0x0338, 0x22AD},
    {0x22A9, 0x0338, 0x22AE}, {0x22AB, 0x0338, 0x22AF}, {0x22B2, 0x0338, 0x22EA}, {0x22B3, 0x0338, 0x22EB},
    {0x22B4, 0x0338, 0x22EC}, {0x22B5, 0x0338, 0x22ED}, {0x3046, 0x3099, 0x3094}, {0x304B, 0x3099, 0x304C},
    {0x304D, 0x3099, 0x304E}, {0x304F, 0x3099, 0x3050}, {0x3051, 0x3099, 0x3052}, {0x3053, 0x3099, 0x3054},
    {0x3055, 0x3099, 0x3056}, {0x3057, 0x3099, 0x3058}, {0x3059, 0x3099, 0x305A}, {0x305B, 0x3099, 0x305C},
    {0x305D, 0x3099, 0x305E}, {0x305F, 0x3099, 0x3060}, {0x3061, 0x3099, 0x3062}, {0x3064, 0x3099, 0x3065},
    {0x3066, 0x3099, 0x3067}, {0x3068, 0x3099, 0x3069}, {0x306F, 0x3099, 0x3070}, {0x306F, 0x309A, 0x3071},
    {0x3072, 0x3099, 0x3073}, {0x3072, 0x309A, 0x3074}, {0x3075, 0x3099, 0x3076}, {0x3075, 0x309A, 0x3077},
    {0x3078, 0x3099, 0x3079}, {0x3078, 0x309A, 0x307A}, {0x307B, 0x3099, 0x307C}, {0x307B, 0x309A, 0x307D},
    {0x309D, 0x3099, 0x309E}, {0x30A6, 0x3099, 0x30F4}, {0x30AB, 0x3099, 0x30AC}, {0x30AD, 0x3099, 0x30AE},
    {0x30AF, 0x3099, 0x30B0}, {0x30B1, 0x3099, 0x30B2}, {0x30B3, 0x3099, 0x30B4}, {0x30B5, 0x3099, 0x30B6},
    {0x30B7, 0x3099, 0x30B8}, {0x30B9, 0x3099, 0x30BA}, {0x30BB, 0x3099, 0x30BC}, {0x30BD, 0x3099, 0x30BE},
    {0x30BF, 0x3099, 0x30C0}, {0x30C1, 0x3099, 0x30C2}, {0x30C4, 0x3099, 0x30C5}, {0x30C6, 0x3099, 0x30C7},
    {0x30C8, 0x3099, 0x30C9}, {0x30CF, 0x3099, 0x30D0}, {0x30CF, 0x309A, 0x30D1}, {0x30D2, 0x3099, 0x30D3},
    {0x30D2, 0x309A, 0x30D4}, {0x30D5, 0x3099, 0x30D6}, {0x30D5, 0x309A, 0x30D7}, {0x30D8, 0x3099, 0x30D9},
    {0x30D8, 0x309A, 0x30DA}, {0x30DB, 0x3099, 0x30DC}, {0x30DB, 0x309A, 0x30DD}, {0x30EF, 0x3099, 0x30F7},
    {0x30F0, 0x3099, 0x30F8}, {0x30F1, 0x3099, 0x30F9}, {0x30F2, 0x3099, 0x30FA}, {0x30FD, 0x3099, 0x30FE},
    {0x105D2, 0x0307, 0x105C9}, {0x105DA, 0x0307, 0x105E4}, {0x11099, 0x110BA, 0x1109A}, {0x1109B, 0x110BA, 0x1109C},
    {0x110A5, 0x110BA, 0x110AB}, {0x11131, 0x11127, 0x1112E}, {0x11132, 0x11127, 0x1112F}, {0x11347, 0x1133E, 0x1134B},
    {0x11347, 0x11357, 0x1134C}, {0x11382, 0x113C9, 0x11383}, {0x11384, 0x113BB, 0x11385}, {0x1138B, 0x113C2, 0x1138E},
    {0x11390, 0x113C9, 0x11391}, {0x113C2, 0x113B8, 0x113C7}, {0x113C2, 0x113C2, 0x113C5}, {0x113C2, 0x113C9, 0x113C8},
    {0x114B9, 0x114B0, 0x114BC}, {0x114B9, 0x114BA, 0x114BB}, {0x114B9, 0x114BD, 0x114BE}, {0x115B8, 0x115AF, 0x115BA},
    {0x115B9, 0x115AF, 0x115BB}, {0x11935, 0x11930, 0x11938}, {0x1611E, 0x1611E, 0x16121}, {0x1611E, 0x1611F, 0x16123},
    {0x1611E, 0x16120, 0x16125}, {0x1611E, 0x16129, 0x16122}, {0x16121, 0x1611F, 0x16126}, {0x16121, 0x16120, 0x16128},
    {0x16122, 0x1611F, 0x16127}, {0x16129, 0x1611F, 0x16124}, {0x16D63, 0x16D67, 0x16D69}, {0x16D67, 0x16D67, 0x16D68},
    {0x16D69, 0x16D67, 0x16D6A},
};
// NFC: first, last, rank in the order of canonical combining classes: 404 rows
static const uint32_t unicode_combining_ranks[][3] = {
    {0x0300, 0x0314, 51}, {0x0315, 0x0315, 52}, {0x0316, 0x0319, 46}, {0x031A, 0x031A, 52}, {0x031B, 0x031B, 44},
    {0x031C, 0x0320, 46}, {0x0321, 0x0322, 42}, {0x0323, 0x0326, 46}, {0x0327, 0x0328, 42}, {0x0329, 0x0333, 46},
    {0x0334, 0x0338, 1}, {0x0339, 0x033C, 46}, {0x033D, 0x033F, 51}, {0x0342, 0x0342, 51}, {0x0345, 0x0345, 55},
    {0x0346, 0x0346, 51}, {0x0347, 0x0349, 46}, {0x034A, 0x034C, 51}, {0x034D, 0x034E, 46}, {0x0350, 0x0352, 51},
    {0x0353, 0x0356, 46}, {0x0357, 0x0357, 51}, {0x0358, 0x0358, 52}, {0x0359, 0x035A, 46}, {0x035B, 0x035B, 51},
    {0x035C, 0x035C, 53}, {0x035D, 0x035E, 54}, {0x035F, 0x035F, 53}, {0x0360, 0x0361, 54}, {0x0362, 0x0362, 53},
    {0x0363, 0x036F, 51}, {0x0483, 0x0487, 51}, {0x0591, 0x0591, 46}, {0x0592, 0x0595, 51}, {0x0596, 0x0596, 46},
    {0x0597, 0x0599, 51}, {0x059A, 0x059A, 47}, {0x059B, 0x059B, 46}, {0x059C, 0x05A1, 51}, {0x05A2, 0x05A7, 46},
    {0x05A8, 0x05A9, 51}, {0x05AA, 0x05AA, 46}, {0x05AB, 0x05AC, 51}, {0x05AD, 0x05AD, 47}, {0x05AE, 0x05AE, 50},
    {0x05AF, 0x05AF, 51}, {0x05B0, 0x05B0, 6}, {0x05B1, 0x05B1, 7}, {0x05B2, 0x05B2, 8}, {0x05B3, 0x05B3, 9},
    {0x05B4, 0x05B4, 10}, {0x05B5, 0x05B5, 11}, {0x05B6, 0x05B6, 12}, {0x05B7, 0x05B7, 13}, {0x05B8, 0x05B8, 14},
    {0x05B9, 0x05BA, 15}, {0x05BB, 0x05BB, 16}, {0x05BC, 0x05BC, 17}, {0x05BD, 0x05BD, 18}, {0x05BF, 0x05BF, 19},
    {0x05C1, 0x05C1, 20}, {0x05C2, 0x05C2, 21}, {0x05C4, 0x05C4, 51}, {0x05C5, 0x05C5, 46}, {0x05C7, 0x05C7, 14},
    {0x0610, 0x0617, 51}, {0x0618, 0x0618, 26}, {0x0619, 0x0619, 27}, {0x061A, 0x061A, 28}, {0x064B, 0x064B, 23},
    {0x064C, 0x064C, 24}, {0x064D, 0x064D, 25}, {0x064E, 0x064E, 26}, {0x064F, 0x064F, 27}, {0x0650, 0x0650, 28},
    {0x0651, 0x0651, 29}, {0x0652, 0x0652, 30}, {0x0653, 0x0654, 51}, {0x0655, 0x0656, 46}, {0x0657, 0x065B, 51},
    {0x065C, 0x065C, 46}, {0x065D, 0x065E, 51}, {0x065F, 0x065F, 46}, {0x0670, 0x0670, 31}, {0x06D6, 0x06DC, 51},
    {0x06DF, 0x06E2, 51}, {0x06E3, 0x06E3, 46}, {0x06E4, 0x06E4, 51}, {0x06E7, 0x06E8, 51}, {0x06EA, 0x06EA, 46},
    {0x06EB, 0x06EC, 51}, {0x06ED, 0x06ED, 46}, {0x0711, 0x0711, 32}, {0x0730, 0x0730, 51}, {0x0731, 0x0731, 46},
    {0x0732, 0x0733, 51}, {0x0734, 0x0734, 46}, {0x0735, 0x0736, 51}, {0x0737, 0x0739, 46}, {0x073A, 0x073A, 51},
    {0x073B, 0x073C, 46}, {0x073D, 0x073D, 51}, {0x073E, 0x073E, 46}, {0x073F, 0x0741, 51}, {0x0742, 0x0742, 46},
    {0x0743, 0x0743, 51}, {0x0744, 0x0744, 46}, {0x0745, 0x0745, 51}, {0x0746, 0x0746, 46}, {0x0747, 0x0747, 51},
    {0x0748, 0x0748, 46}, {0x0749, 0x074A, 51}, {0x07EB, 0x07F1, 51}, {0x07F2, 0x07F2, 46}, {0x07F3, 0x07F3, 51},
    {0x07FD, 0x07FD, 46}, {0x0816, 0x0819, 51}, {0x081B, 0x0823, 51}, {0x0825, 0x0827, 51}, {0x0829, 0x082D, 51},
    {0x0859, 0x085B, 46}, {0x0897, 0x0898, 51}, {0x0899, 0x089B, 46}, {0x089C, 0x089F, 51}, {0x08CA, 0x08CE, 51},
    {0x08CF, 0x08D3, 46}, {0x08D4, 0x08E1, 51}, {0x08E3, 0x08E3, 46}, {0x08E4, 0x08E5, 51}, {0x08E6, 0x08E6, 46},
    {0x08E7, 0x08E8, 51}, {0x08E9, 0x08E9, 46}, {0x08EA, 0x08EC, 51}, {0x08ED, 0x08EF, 46}, {0x08F0, 0x08F0, 23},
    {0x08F1, 0x08F1, 24}, {0x08F2, 0x08F2, 25}, {0x08F3, 0x08F5, 51}, {0x08F6, 0x08F6, 46}, {0x08F7, 0x08F8, 51},
    {0x08F9, 0x08FA, 46}, {0x08FB, 0x08FF, 51}, {0x093C, 0x093C, 3}, {0x094D, 0x094D, 5}, {0x0951, 0x0951, 51},
    {0x0952, 0x0952, 46}, {0x0953, 0x0954, 51}, {0x09BC, 0x09BC, 3}, {0x09CD, 0x09CD, 5}, {0x09FE, 0x09FE, 51},
    {0x0A3C, 0x0A3C, 3}, {0x0A4D, 0x0A4D, 5}, {0x0ABC, 0x0ABC, 3}, {0x0ACD, 0x0ACD, 5}, {0x0B3C, 0x0B3C, 3},
    {0x0B4D, 0x0B4D, 5}, {0x0BCD, 0x0BCD, 5}, {0x0C3C, 0x0C3C, 3}, {0x0C4D, 0x0C4D, 5}, {0x0C55, 0x0C55, 33},
    {0x0C56, 0x0C56, 34}, {0x0CBC, 0x0CBC, 3}, {0x0CCD, 0x0CCD, 5}, {0x0D3B, 0x0D3C, 5}, {0x0D4D, 0x0D4D, 5},
    {0x0DCA, 0x0DCA, 5}, {0x0E38, 0x0E39, 35}, {0x0E3A, 0x0E3A, 5}, {0x0E48, 0x0E4B, 36}, {0x0EB8, 0x0EB9, 37},
    {0x0EBA, 0x0EBA, 5}, {0x0EC8, 0x0ECB, 38}, {0x0F18, 0x0F19, 46}, {0x0F35, 0x0F35, 46}, {0x0F37, 0x0F37, 46},
    {0x0F39, 0x0F39, 44}, {0x0F71, 0x0F71, 39}, {0x0F72, 0x0F72, 40}, {0x0F74, 0x0F74, 41}, {0x0F7A, 0x0F7D, 40},
    {0x0F80, 0x0F80, 40}, {0x0F82, 0x0F83, 51}, {0x0F84, 0x0F84, 5}, {0x0F86, 0x0F87, 51}, {0x0FC6, 0x0FC6, 46},
    {0x1037, 0x1037, 3}, {0x1039, 0x103A, 5}, {0x108D, 0x108D, 46}, {0x135D, 0x135F, 51}, {0x1714, 0x1715, 5},
    {0x1734, 0x1734, 5}, {0x17D2, 0x17D2, 5}, {0x17DD, 0x17DD, 51}, {0x18A9, 0x18A9, 50}, {0x1939, 0x1939, 47},
    {0x193A, 0x193A, 51}, {0x193B, 0x193B, 46}, {0x1A17, 0x1A17, 51}, {0x1A18, 0x1A18, 46}, {0x1A60, 0x1A60, 5},
    {0x1A75, 0x1A7C, 51}, {0x1A7F, 0x1A7F, 46}, {0x1AB0, 0x1AB4, 51}, {0x1AB5, 0x1ABA, 46}, {0x1ABB, 0x1ABC, 51},
    {0x1ABD, 0x1ABD, 46}, {0x1ABF, 0x1AC0, 46}, {0x1AC1, 0x1AC2, 51}, {0x1AC3, 0x1AC4, 46}, {0x1AC5, 0x1AC9, 51},
    {0x1ACA, 0x1ACA, 46}, {0x1ACB, 0x1ADC, 51}, {0x1ADD, 0x1ADD, 46}, {0x1AE0, 0x1AE5, 51}, {0x1AE6, 0x1AE6, 46},
    {0x1AE7, 0x1AEA, 51}, {0x1AEB, 0x1AEB, 54}, {0x1B34, 0x1B34, 3}, {0x1B44, 0x1B44, 5}, {0x1B6B, 0x1B6B, 51},
    {0x1B6C, 0x1B6C, 46}, {0x1B6D, 0x1B73, 51}, {0x1BAA, 0x1BAB, 5}, {0x1BE6, 0x1BE6, 3}, {0x1BF2, 0x1BF3, 5},
    {0x1C37, 0x1C37, 3}, {0x1CD0, 0x1CD2, 51}, {0x1CD4, 0x1CD4, 1}, {0x1CD5, 0x1CD9, 46}, {0x1CDA, 0x1CDB, 51},
    {0x1CDC, 0x1CDF, 46}, {0x1CE0, 0x1CE0, 51}, {0x1CE2, 0x1CE8, 1}, {0x1CED, 0x1CED, 46}, {0x1CF4, 0x1CF4, 51},
    {0x1CF8, 0x1CF9, 51}, {0x1DC0, 0x1DC1, 51}, {0x1DC2, 0x1DC2, 46}, {0x1DC3, 0x1DC9, 51}, {0x1DCA, 0x1DCA, 46},
    {0x1DCB, 0x1DCC, 51}, {0x1DCD, 0x1DCD, 54}, {0x1DCE, 0x1DCE, 43}, {0x1DCF, 0x1DCF, 46}, {0x1DD0, 0x1DD0, 42},
    {0x1DD1, 0x1DF5, 51}, {0x1DF6, 0x1DF6, 52}, {0x1DF7, 0x1DF8, 50}, {0x1DF9, 0x1DF9, 46}, {0x1DFA, 0x1DFA, 45},
    {0x1DFB, 0x1DFB, 51}, {0x1DFC, 0x1DFC, 53}, {0x1DFD, 0x1DFD, 46}, {0x1DFE, 0x1DFE, 51}, {0x1DFF, 0x1DFF, 46},
    {0x20D0, 0x20D1, 51}, {0x20D2, 0x20D3, 1}, {0x20D4, 0x20D7, 51}, {0x20D8, 0x20DA, 1}, {0x20DB, 0x20DC, 51},
    {0x20E1, 0x20E1, 51}, {0x20E5, 0x20E6, 1}, {0x20E7, 0x20E7, 51}, {0x20E8, 0x20E8, 46}, {0x20E9, 0x20E9, 51},
    {0x20EA, 0x20EB, 1}, {0x20EC, 0x20EF, 46}, {0x20F0, 0x20F0, 51}, {0x2CEF, 0x2CF1, 51}, {0x2D7F, 0x2D7F, 5},
    {0x2DE0, 0x2DFF, 51}, {0x302A, 0x302A, 45}, {0x302B, 0x302B, 50}, {0x302C, 0x302C, 52}, {0x302D, 0x302D, 47},
    {0x302E, 0x302F, 48}, {0x3099, 0x309A, 4}, {0xA66F, 0xA66F, 51}, {0xA674, 0xA67D, 51}, {0xA69E, 0xA69F, 51},
    {0xA6F0, 0xA6F1, 51}, {0xA806, 0xA806, 5}, {0xA82C, 0xA82C, 5}, {0xA8C4, 0xA8C4, 5}, {0xA8E0, 0xA8F1, 51},
    {0xA92B, 0xA92D, 46}, {0xA953, 0xA953, 5}, {0xA9B3, 0xA9B3, 3}, {0xA9C0, 0xA9C0, 5}, {0xAAB0, 0xAAB0, 51},
    {0xAAB2, 0xAAB3, 51}, {0xAAB4, 0xAAB4, 46}, {0xAAB7, 0xAAB8, 51}, {0xAABE, 0xAABF, 51}, {0xAAC1, 0xAAC1, 51},
    {0xAAF6, 0xAAF6, 5}, {0xABED, 0xABED, 5}, {0xFB1E, 0xFB1E, 22}, {0xFE20, 0xFE26, 51}, {0xFE27, 0xFE2D, 46},
    {0xFE2E, 0xFE2F, 51}, {0x101FD, 0x101FD, 46}, {0x102E0, 0x102E0, 46}, {0x10376, 0x1037A, 51}, {0x10A0D, 0x10A0D, 46},
    {0x10A0F, 0x10A0F, 51}, {0x10A38, 0x10A38, 51}, {0x10A39, 0x10A39, 1}, {0x10A3A, 0x10A3A, 46}, {0x10A3F, 0x10A3F, 5},
    {0x10AE5, 0x10AE5, 51}, {0x10AE6, 0x10AE6, 46}, {0x10D24, 0x10D27, 51}, {0x10D69, 0x10D6D, 51}, {0x10EAB, 0x10EAC, 51},
    {0x10EFA, 0x10EFB, 46}, {0x10EFD, 0x10EFF, 46}, {0x10F46, 0x10F47, 46}, {0x10F48, 0x10F4A, 51}, {0x10F4B, 0x10F4B, 46},
    {0x10F4C, 0x10F4C, 51}, {0x10F4D, 0x10F50, 46}, {0x10F82, 0x10F82, 51}, {0x10F83, 0x10F83, 46}, {0x10F84, 0x10F84, 51},
    {0x10F85, 0x10F85, 46}, {0x11046, 0x11046, 5}, {0x11070, 0x11070, 5}, {0x1107F, 0x1107F, 5}, {0x110B9, 0x110B9, 5},
    {0x110BA, 0x110BA, 3}, {0x11100, 0x11102, 51}, {0x11133, 0x11134, 5}, {0x11173, 0x11173, 3}, {0x111C0, 0x111C0, 5},
    {0x111CA, 0x111CA, 3}, {0x11235, 0x11235, 5}, {0x11236, 0x11236, 3}, {0x112E9, 0x112E9, 3}, {0x112EA, 0x112EA, 5},
    {0x1133B, 0x1133C, 3}, {0x1134D, 0x1134D, 5}, {0x11366, 0x1136C, 51}, {0x11370, 0x11374, 51}, {0x113CE, 0x113D0, 5},
    {0x11442, 0x11442, 5}, {0x11446, 0x11446, 3}, {0x1145E, 0x1145E, 51}, {0x114C2, 0x114C2, 5}, {0x114C3, 0x114C3, 3},
    {0x115BF, 0x115BF, 5}, {0x115C0, 0x115C0, 3}, {0x1163F, 0x1163F, 5}, {0x116B6, 0x116B6, 5}, {0x116B7, 0x116B7, 3},
    {0x1172B, 0x1172B, 5}, {0x11839, 0x11839, 5}, {0x1183A, 0x1183A, 3}, {0x1193D, 0x1193E, 5}, {0x11943, 0x11943, 3},
    {0x119E0, 0x119E0, 5}, {0x11A34, 0x11A34, 5}, {0x11A47, 0x11A47, 5}, {0x11A99, 0x11A99, 5}, {0x11C3F, 0x11C3F, 5},
    {0x11D42, 0x11D42, 3}, {0x11D44, 0x11D45, 5}, {0x11D97, 0x11D97, 5}, {0x11F41, 0x11F42, 5}, {0x1612F, 0x1612F, 5},
    {0x16AF0, 0x16AF4, 1}, {0x16B30, 0x16B36, 51}, {0x16FF0, 0x16FF1, 2}, {0x1BC9E, 0x1BC9E, 1}, {0x1D165, 0x1D166, 44},
    {0x1D167, 0x1D169, 1}, {0x1D16D, 0x1D16D, 49}, {0x1D16E, 0x1D172, 44}, {0x1D17B, 0x1D182, 46}, {0x1D185, 0x1D189, 51},
    {0x1D18A, 0x1D18B, 46}, {0x1D1AA, 0x1D1AD, 51}, {0x1D242, 0x1D244, 51}, {0x1E000, 0x1E006, 51}, {0x1E008, 0x1E018, 51},
    {0x1E01B, 0x1E021, 51}, {0x1E023, 0x1E024, 51}, {0x1E026, 0x1E02A, 51}, {0x1E08F, 0x1E08F, 51}, {0x1E130, 0x1E136, 51},
    {0x1E2AE, 0x1E2AE, 51}, {0x1E2EC, 0x1E2EF, 51}, {0x1E4EC, 0x1E4ED, 52}, {0x1E4EE, 0x1E4EE, 46}, {0x1E4EF, 0x1E4EF, 51},
    {0x1E5EE, 0x1E5EE, 51}, {0x1E5EF, 0x1E5EF, 46}, {0x1E6E3, 0x1E6E3, 51}, {0x1E6E6, 0x1E6E6, 51}, {0x1E6EE, 0x1E6EF, 51},
    {0x1E6F5, 0x1E6F5, 51}, {0x1E8D0, 0x1E8D6, 46}, {0x1E944, 0x1E949, 51}, {0x1E94A, 0x1E94A, 3},
};
// END generated by tools/js/gen-unicode-tables.mjs

enum CharClass { CHAR_OTHER, CHAR_LETTER, CHAR_NUMBER, CHAR_SPACE };

static int in_ranges(uint32_t cp, const uint32_t (*ranges)[2], size_t n) {
    size_t low = 0, high = n;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (cp < ranges[mid][0]) high = mid;
        else if (cp > ranges[mid][1]) low = mid + 1;
        else return 1;
    }
    return 0;
}

#define RANGES(table) table, sizeof table / sizeof table[0]

static int char_class(uint32_t cp) {
    if (cp < 0x80) {   // ASCII without a search
        if ((cp | 0x20) - 'a' < 26) return CHAR_LETTER;
        if (cp - '0' < 10) return CHAR_NUMBER;
        return cp == ' ' || (cp >= '\t' && cp <= '\r') ? CHAR_SPACE : CHAR_OTHER;
    }
    if (in_ranges(cp, RANGES(unicode_letters))) return CHAR_LETTER;
    if (in_ranges(cp, RANGES(unicode_numbers))) return CHAR_NUMBER;
    if (in_ranges(cp, RANGES(unicode_spaces))) return CHAR_SPACE;
    return CHAR_OTHER;
}

// The code point that starts at s (n > 0 bytes there) and its length. A
// byte that does not begin a well-formed UTF-8 sequence stands alone, as
// U+FFFD (class other): byte-level BPE still encodes it exactly.
static uint32_t decode_utf8(const unsigned char *s, size_t n, int *length) {
    int step = utf8_next(s, n);
    *length = step > 0 ? step : 1;   // an ill-formed byte is a character of its own, U+FFFD
    if (step <= 0) return 0xFFFD;
    if (step == 1) return s[0];
    uint32_t cp = s[0] & (0x7Fu >> step);
    for (int i = 1; i < step; i++) cp = cp << 6 | (s[i] & 0x3Fu);
    return cp;
}

// The class of the character at text[at] (at < end); its length goes to *length.
static int class_at(const char *text, size_t at, size_t end, int *length) {
    return char_class(decode_utf8((const unsigned char *)text + at, end - at, length));
}

// Past the run of at most max_chars characters of class cls that starts at `at`.
static size_t skip_class(const char *text, size_t at, size_t end, int cls, int max_chars) {
    int length;
    for (int n = 0; n < max_chars && at < end && class_at(text, at, end, &length) == cls; n++) at += (size_t)length;
    return at;
}

static int is_newline(char c) { return c == '\r' || c == '\n'; }

// 's|'t|'re|'ve|'m|'ll|'d at text[at]: the match's length, or 0. Llama 3's
// (?i:...) takes any case, and "ſ" (U+017F) as an s, as Unicode case
// folding has it; GPT-2's takes lower case only.
static size_t contraction_length(const char *text, size_t at, size_t end, int any_case) {
    if (text[at] != '\'') return 0;
    const unsigned char *s = (const unsigned char *)text + at + 1;
    size_t n = end - at - 1;
    if (any_case && n >= 2 && s[0] == 0xC5 && s[1] == 0xBF) return 3;
    int a = n >= 1 ? s[0] : 0, b = n >= 2 ? s[1] : 0;
    if (any_case) a = tolower(a), b = tolower(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// The regexes' last alternatives, at a run of whitespace: Llama 3's
// \s*[\r\n]+ (when newlines_first), then \s+(?!\S) | \s+
static size_t whitespace_chunk_end(const char *text, size_t at, size_t end, int newlines_first) {
    size_t run_end = at, last_char = at, after_last_newline = 0;
    int length, chars = 0;
    for (; run_end < end && class_at(text, run_end, end, &length) == CHAR_SPACE; run_end += (size_t)length, chars++) {
        if (is_newline(text[run_end])) after_last_newline = run_end + 1;
        last_char = run_end;
    }
    if (newlines_first && after_last_newline) return after_last_newline;   // through the run's last newline
    if (run_end == end || chars == 1) return run_end;   // the whole run
    return last_char;   // all but the last space, which goes with the word after it
}

// Llama 3's pre-tokenizer, the regex
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// as code: the first alternative that matches at text[at] is the chunk (one
// always does). Returns where the chunk ends. Qwen's regex is the same with
// \p{N} for \p{N}{1,3}: max_digits 1 instead of 3.
static size_t llama3_chunk_end(const char *text, size_t at, size_t end, int max_digits) {
    size_t contraction = contraction_length(text, at, end, 1);
    if (contraction) return at + contraction;
    int length, next_length;
    int cls = class_at(text, at, end, &length);
    size_t next = at + (size_t)length;
    int next_cls = next < end ? class_at(text, next, end, &next_length) : -1;
    // [^\r\n\p{L}\p{N}]?\p{L}+ : letters, maybe after one character that is no letter, number or newline
    if (cls == CHAR_LETTER) return skip_class(text, next, end, CHAR_LETTER, INT_MAX);
    if (cls != CHAR_NUMBER && !is_newline(text[at]) && next_cls == CHAR_LETTER)
        return skip_class(text, next, end, CHAR_LETTER, INT_MAX);
    // \p{N}{1,3}
    if (cls == CHAR_NUMBER) return skip_class(text, at, end, CHAR_NUMBER, max_digits);
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*' : other characters, maybe after a space, and the newlines after them
    if (cls == CHAR_OTHER || (text[at] == ' ' && next_cls == CHAR_OTHER)) {
        size_t p = skip_class(text, cls == CHAR_OTHER ? at : next, end, CHAR_OTHER, INT_MAX);
        while (p < end && is_newline(text[p])) p++;
        return p;
    }
    return whitespace_chunk_end(text, at, end, 1);
}

// GPT-2's pre-tokenizer, the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as code, like llama3_chunk_end.
static size_t gpt2_chunk_end(const char *text, size_t at, size_t end) {
    size_t contraction = contraction_length(text, at, end, 0);
    if (contraction) return at + contraction;
    int length, next_length;
    int cls = class_at(text, at, end, &length);
    size_t next = at + (size_t)length;
    if (cls != CHAR_SPACE) return skip_class(text, next, end, cls, INT_MAX);   // a run of one class
    int next_cls = next < end ? class_at(text, next, end, &next_length) : CHAR_SPACE;
    if (text[at] == ' ' && next_cls != CHAR_SPACE) return skip_class(text, next, end, next_cls, INT_MAX);
    return whitespace_chunk_end(text, at, end, 0);
}

// SmolLM2's: every number character is a chunk of its own (Hugging Face's
// Digits pre-tokenizer with individual_digits), and GPT-2's rule cuts the
// text between them as if each stretch were all there is.
static size_t smollm_chunk_end(const char *text, size_t at, size_t end) {
    int length;
    if (class_at(text, at, end, &length) == CHAR_NUMBER) return at + (size_t)length;
    size_t stretch_end = at;
    while (stretch_end < end && class_at(text, stretch_end, end, &length) != CHAR_NUMBER) stretch_end += (size_t)length;
    return gpt2_chunk_end(text, at, stretch_end);
}

// GPT-4o's (o200k) pre-tokenizer, the regex
//   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//   |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//   |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
// as code, matched the way backtracking engines do (Hugging Face's, tiktoken's):
// the first alternative that matches, each quantifier as long as the rest
// still matches. The two word classes overlap: a letter of no case (\p{Lm},
// \p{Lo}: CJK, Arabic...) and a mark (\p{M}) are in both, Lu and Lt only in
// the first ("upper"), Ll only in the second ("lower").

#define WORD_UPPER 1   // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
#define WORD_LOWER 2   // [\p{Ll}\p{Lm}\p{Lo}\p{M}]

// The word classes (WORD_*) of the character at text[at]; its length to *length.
static int word_case_at(const char *text, size_t at, size_t end, int *length) {
    uint32_t cp = decode_utf8((const unsigned char *)text + at, end - at, length);
    int cls = char_class(cp);
    if (cls == CHAR_OTHER) return in_ranges(cp, RANGES(unicode_marks)) ? WORD_UPPER | WORD_LOWER : 0;
    if (cls != CHAR_LETTER) return 0;
    if (cp < 0x80) return cp <= 'Z' ? WORD_UPPER : WORD_LOWER;
    size_t low = 0, high = sizeof unicode_letter_cases / sizeof unicode_letter_cases[0];
    while (low < high) {   // the row holding cp: its kind (1 upper, 2 lower, 3 and 4 alternating from upper or lower)
        size_t mid = (low + high) / 2;
        const uint32_t *row = unicode_letter_cases[mid];
        if (cp < row[0]) high = mid;
        else if (cp > row[1]) low = mid + 1;
        else if (row[2] <= 2) return row[2] == 1 ? WORD_UPPER : WORD_LOWER;
        else return ((cp - row[0]) % 2 == 0) == (row[2] == 3) ? WORD_UPPER : WORD_LOWER;
    }
    return WORD_UPPER | WORD_LOWER;   // no case: \p{Lm}, \p{Lo}
}

// Where a word starting at `from` ends, 0 if none does there: with
// upper_first, [upper]+[lower]* (the second alternative); else
// [upper]*[lower]+ (the first), whose [upper]* gives characters back until
// [lower]+ matches: a run of upper ending in characters of both classes
// ends after the last of them.
static size_t o200k_word_end(const char *text, size_t from, size_t end, int upper_first) {
    size_t at = from, after_last_lower = 0;
    int length, word_case = 0;
    for (; at < end && ((word_case = word_case_at(text, at, end, &length)) & WORD_UPPER); at += (size_t)length)
        if (word_case & WORD_LOWER) after_last_lower = at + (size_t)length;
    if (upper_first && at == from) return 0;
    if (at < end && (word_case & WORD_LOWER)) {
        while (at < end && (word_case_at(text, at, end, &length) & WORD_LOWER)) at += (size_t)length;
        return at;
    }
    return upper_first ? at : after_last_lower;
}

static size_t o200k_chunk_end(const char *text, size_t at, size_t end) {
    int length, next_length;
    int cls = class_at(text, at, end, &length);
    size_t next = at + (size_t)length;
    // [^\r\n\p{L}\p{N}]? before a word: taken when the word matches after it, else left out
    int may_lead = cls != CHAR_LETTER && cls != CHAR_NUMBER && !is_newline(text[at]);
    for (int upper_first = 0; upper_first <= 1; upper_first++) {
        size_t word = may_lead && next < end ? o200k_word_end(text, next, end, upper_first) : 0;
        if (!word) word = o200k_word_end(text, at, end, upper_first);
        if (word) return word < end ? word + contraction_length(text, word, end, 1) : word;
    }
    if (cls == CHAR_NUMBER) return skip_class(text, at, end, CHAR_NUMBER, 3);
    // ' ?[^\s\p{L}\p{N}]+[\r\n/]*' : other characters, maybe after a space, then newlines and slashes
    int next_cls = next < end ? class_at(text, next, end, &next_length) : -1;
    if (cls == CHAR_OTHER || (text[at] == ' ' && next_cls == CHAR_OTHER)) {
        size_t p = skip_class(text, cls == CHAR_OTHER ? at : next, end, CHAR_OTHER, INT_MAX);
        while (p < end && (is_newline(text[p]) || text[p] == '/')) p++;
        return p;
    }
    return whitespace_chunk_end(text, at, end, 1);
}

static size_t chunk_end(int split_rule, const char *text, size_t at, size_t end) {
    if (split_rule == SPLIT_GPT2) return gpt2_chunk_end(text, at, end);
    if (split_rule == SPLIT_O200K) return o200k_chunk_end(text, at, end);
    if (split_rule == SPLIT_SMOLLM) return smollm_chunk_end(text, at, end);
    if (split_rule == SPLIT_QWEN) return llama3_chunk_end(text, at, end, 1);
    return llama3_chunk_end(text, at, end, 3);
}

// ---- NFC, Qwen's normalizer: canonical decomposition, canonical order and
// canonical composition as Unicode's UAX #15 defines them, over the generated
// tables above (Hangul syllables by arithmetic, as the standard gives them).
// Bytes that are no well-formed UTF-8 pass through as they are, each a
// starter that nothing composes with: byte-level BPE encodes them exactly.

#define HANGUL_FIRST 0xAC00u                  // syllables: (lead * 21 + vowel) * 28 + trail
#define HANGUL_LEADS 0x1100u
#define HANGUL_VOWELS 0x1161u
#define HANGUL_TRAILS 0x11A7u                 // trail 0 is "none"
#define HANGUL_SYLLABLES (19u * 21u * 28u)
#define RAW_BYTE 0x110000u                    // + a byte: an ill-formed byte, kept as it is

static const uint32_t *decomposition_of(uint32_t cp) {
    size_t low = 0, high = sizeof unicode_decompositions / sizeof unicode_decompositions[0];
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (cp < unicode_decompositions[mid][0]) high = mid;
        else if (cp > unicode_decompositions[mid][0]) low = mid + 1;
        else return unicode_decompositions[mid];
    }
    return NULL;
}

// 0 for a starter; else a rank in the order of canonical combining classes.
static uint32_t combining_rank(uint32_t cp) {
    size_t low = 0, high = sizeof unicode_combining_ranks / sizeof unicode_combining_ranks[0];
    if (cp < 0x300) return 0;   // no mark below U+0300
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (cp < unicode_combining_ranks[mid][0]) high = mid;
        else if (cp > unicode_combining_ranks[mid][1]) low = mid + 1;
        else return unicode_combining_ranks[mid][2];
    }
    return 0;
}

// cp's full canonical decomposition appended at out[n]; returns the new count.
static size_t decompose(uint32_t cp, uint32_t *out, size_t n) {
    if (cp >= HANGUL_FIRST && cp < HANGUL_FIRST + HANGUL_SYLLABLES) {
        uint32_t s = cp - HANGUL_FIRST;
        out[n++] = HANGUL_LEADS + s / (21 * 28);
        out[n++] = HANGUL_VOWELS + s % (21 * 28) / 28;
        if (s % 28) out[n++] = HANGUL_TRAILS + s % 28;
        return n;
    }
    const uint32_t *row = decomposition_of(cp);
    if (!row) {
        out[n++] = cp;
        return n;
    }
    n = decompose(row[1], out, n);
    return row[2] ? decompose(row[2], out, n) : n;
}

// The primary composite of first + second, 0 if none.
static uint32_t compose_pair(uint32_t first, uint32_t second) {
    if (first - HANGUL_LEADS < 19 && second - HANGUL_VOWELS < 21)
        return HANGUL_FIRST + ((first - HANGUL_LEADS) * 21 + (second - HANGUL_VOWELS)) * 28;
    if (first - HANGUL_FIRST < HANGUL_SYLLABLES && (first - HANGUL_FIRST) % 28 == 0 && second - HANGUL_TRAILS - 1 < 27)
        return first + (second - HANGUL_TRAILS);
    size_t low = 0, high = sizeof unicode_compositions / sizeof unicode_compositions[0];
    while (low < high) {
        size_t mid = (low + high) / 2;
        const uint32_t *row = unicode_compositions[mid];
        if (first < row[0] || (first == row[0] && second < row[1])) high = mid;
        else if (first > row[0] || second > row[1]) low = mid + 1;
        else return row[2];
    }
    return 0;
}

static size_t utf8_encode(char *out, uint32_t cp) {
    if (cp >= RAW_BYTE) return out[0] = (char)(cp - RAW_BYTE), 1;
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F)), 3;
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// text in NFC, as a new string (at most 3 times as long: the standard's bound
// for UTF-8). ASCII is its own NFC and is returned as a copy at once.
static char *nfc_normalize(const char *text) {
    size_t length = strlen(text), n = 0;
    int ascii = 1;
    for (size_t i = 0; i < length && ascii; i++) ascii = (unsigned char)text[i] < 0x80;
    if (ascii) return strcpy(xcalloc(length + 1, 1, "NFC text"), text);
    // decompose: a code point becomes at most 4 (the tables' longest NFD), a byte at least 1
    uint32_t *cps = xcalloc(4 * length + 1, sizeof(uint32_t), "NFC text");
    for (size_t at = 0; at < length;) {
        int step = utf8_next((const unsigned char *)text + at, length - at), char_length;
        if (step <= 0) cps[n++] = RAW_BYTE + (unsigned char)text[at++];
        else n = decompose(decode_utf8((const unsigned char *)text + at, length - at, &char_length), cps, n), at += (size_t)step;
    }
    // canonical order: each run of marks sorted by rank, stably
    for (size_t i = 1; i < n; i++) {
        uint32_t cp = cps[i], rank = cp < RAW_BYTE ? combining_rank(cp) : 0;
        size_t j = i;
        for (; rank && j > 0 && cps[j - 1] < RAW_BYTE && combining_rank(cps[j - 1]) > rank; j--) cps[j] = cps[j - 1];
        cps[j] = cp;
    }
    // compose: a mark joins the last starter unless a mark of its rank or higher lies between
    size_t kept = 0, starter = 0;
    int have_starter = 0;
    uint32_t last_rank = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = cps[i], rank = cp < RAW_BYTE ? combining_rank(cp) : 0;
        uint32_t composite = have_starter && cp < RAW_BYTE && (kept == starter + 1 || (last_rank && last_rank < rank))
                           ? compose_pair(cps[starter], cp) : 0;
        if (composite) {
            cps[starter] = composite;
            continue;
        }
        if (rank == 0) starter = kept, have_starter = cps[i] < RAW_BYTE;
        last_rank = rank;
        cps[kept++] = cp;
    }
    char *out = xcalloc(4 * kept + 1, 1, "NFC text");
    size_t out_length = 0;
    for (size_t i = 0; i < kept; i++) out_length += utf8_encode(out + out_length, cps[i]);
    out[out_length] = '\0';
    free(cps);
    return out;
}

// ---- Merging. A heap of candidate pairs over a linked list of the pieces
// makes it n log n (rescanning every pair after each merge is quadratic: a
// long SentencePiece prompt, one chunk, took seconds).

typedef struct {
    float score, left_score, right_score; // merge order: highest first, in this order
    int left;                             // slot of the left piece: leftmost first among equals
    int left_id, right_id, merged_id;     // the pair when queued: stale once either slot changed
} MergeCandidate;

typedef struct {
    int *next, *prev;          // (capacity,) neighbouring slots, -1 past the ends
    MergeCandidate *heap;      // (3 * capacity,) the pairs at the start, then two per merge at most
    int heap_size;
    char *joined;              // (2 * max_token_length,) two pieces side by side
} MergeWork;

static int merges_before(const MergeCandidate *a, const MergeCandidate *b) {
    if (a->score != b->score) return a->score > b->score;
    if (a->left_score != b->left_score) return a->left_score > b->left_score;
    if (a->right_score != b->right_score) return a->right_score > b->right_score;
    return a->left < b->left;
}

static void heap_push(MergeWork *w, MergeCandidate c) {
    int i = w->heap_size++;
    for (; i > 0 && merges_before(&c, &w->heap[(i - 1) / 2]); i = (i - 1) / 2) w->heap[i] = w->heap[(i - 1) / 2];
    w->heap[i] = c;
}

static MergeCandidate heap_pop(MergeWork *w) {
    MergeCandidate top = w->heap[0], last = w->heap[--w->heap_size];
    int i = 0;
    for (int child; (child = 2 * i + 1) < w->heap_size; i = child) {
        if (child + 1 < w->heap_size && merges_before(&w->heap[child + 1], &w->heap[child])) child++;
        if (!merges_before(&w->heap[child], &last)) break;
        w->heap[i] = w->heap[child];
    }
    w->heap[i] = last;
    return top;
}

// Queue the pair that starts at slot `left` if its pieces join into one that
// merging may make.
static void queue_pair(const Tokenizer *t, MergeWork *w, const int *ids, int left) {
    int right = w->next[left];
    if (right < 0) return;
    int a = ids[left], b = ids[right];
    size_t length_a = (size_t)t->lengths[a], length_b = (size_t)t->lengths[b];
    if (length_a + length_b > (size_t)t->max_token_length) return;
    memcpy(w->joined, t->vocab[a], length_a);
    memcpy(w->joined + length_a, t->vocab[b], length_b);
    int merged = piece_lookup(t, w->joined, length_a + length_b);
    if (merged < 0 || t->scores[merged] == -INFINITY) return;
    int rank = t->n_merges ? merge_rank(t, a, b) : 0;   // a merges list: only its pairs merge, in its order
    if (rank < 0) return;
    MergeCandidate c = { .score = t->n_merges ? -(float)rank : t->scores[merged], .left = left, .left_id = a, .right_id = b,
                         .merged_id = merged };
    // byte-level: of the merges that make the same piece, Hugging Face's list
    // (tiktoken's converted) puts first the one whose parts rank first
    if (t->kind == TOKENIZER_BYTE_LEVEL) {
        c.left_score = t->scores[a];
        c.right_score = t->scores[b];
    }
    heap_push(w, c);
}

// Merge ids[0..n) in place, best pair first, until no pair joins into a
// piece. Returns the count left.
static int merge_pieces(const Tokenizer *t, int *ids, int n, MergeWork *w) {
    if (n < 2) return n;
    w->heap_size = 0;
    for (int i = 0; i < n; i++) {
        w->prev[i] = i - 1;
        w->next[i] = i + 1 < n ? i + 1 : -1;
    }
    for (int i = 0; i + 1 < n; i++) queue_pair(t, w, ids, i);
    while (w->heap_size > 0) {
        MergeCandidate c = heap_pop(w);
        int right = w->next[c.left];
        if (ids[c.left] != c.left_id || right < 0 || ids[right] != c.right_id) continue;   // stale
        ids[c.left] = c.merged_id;   // a merged piece is longer than its parts: no slot holds an id twice
        ids[right] = -1;
        w->next[c.left] = w->next[right];
        if (w->next[right] >= 0) w->prev[w->next[right]] = c.left;
        if (w->prev[c.left] >= 0) queue_pair(t, w, ids, w->prev[c.left]);
        queue_pair(t, w, ids, c.left);
    }
    int count = 0;
    for (int i = 0; i >= 0; i = w->next[i]) ids[count++] = ids[i];
    return count;
}

// SentencePiece: the dummy-prefix space (unless the tokenizer has none), one
// piece per UTF-8 code point (its bytes' pieces when the code point is none),
// then merges over the whole text.
static int encode_sentencepiece(const Tokenizer *t, const char *text, int *tokens, int n, MergeWork *work) {
    int first = n;
    if (text[0] != '\0' && t->dummy_prefix) {
        int space = str_lookup(" ", t);
        if (space >= 0) tokens[n++] = space;
    }
    const char *end = text + strlen(text);
    for (const char *c = text; c < end;) {
        int step = utf8_next((const unsigned char *)c, (size_t)(end - c));
        size_t len = step > 0 ? (size_t)step : 1;   // an ill-formed byte goes alone, by byte fallback
        int id = piece_lookup(t, c, len);
        if (id >= 0) {
            tokens[n++] = id;
        } else {
            for (size_t i = 0; i < len; i++) {
                int byte_id = t->byte_tokens[(unsigned char)c[i]];
                tokens[n++] = byte_id >= 0 ? byte_id : 0;   // 0 = <unk> when there is no byte fallback
            }
        }
        c += len;
    }
    return first + merge_pieces(t, tokens + first, n - first, work);
}

// Byte-level: chunk by chunk, each merged from its bytes. With whole_chunks
// a chunk that is a piece stays whole (tiktoken does this; Hugging Face
// calls it ignore_merges): merging it could end elsewhere.
static int encode_byte_level(const Tokenizer *t, const char *text, int *tokens, int n, MergeWork *work) {
    size_t end = strlen(text);
    for (size_t at = 0, chunk; at < end; at = chunk) {
        chunk = chunk_end(t->split_rule, text, at, end);
        size_t length = chunk - at;
        int ignore_merges = t->whole_chunks && length <= (size_t)t->max_token_length;
        int whole = ignore_merges ? piece_lookup(t, text + at, length) : -1;
        if (whole >= 0 && t->scores[whole] != -INFINITY) {
            tokens[n++] = whole;
            continue;
        }
        for (size_t i = 0; i < length; i++) tokens[n + i] = t->byte_tokens[(unsigned char)text[at + i]];
        n += merge_pieces(t, tokens + n, (int)length, work);
    }
    return n;
}

// How many ids encode may write for text: BOS, EOS, and one per byte of the
// text, or of its NFC form when the tokenizer normalizes (which UTF-8 bounds
// at 3 times the bytes).
static size_t encode_capacity(const Tokenizer *t, const char *text) {
    return (t->normalize_nfc ? 3 : 1) * strlen(text) + 3;
}

// text -> token ids. tokens must hold encode_capacity(t, text) ids. Returns the count.
static int encode(const Tokenizer *t, const char *text, int add_bos, int add_eos, int *tokens) {
    char *normalized = t->normalize_nfc ? nfc_normalize(text) : NULL;
    if (normalized) text = normalized;
    size_t capacity = strlen(text) + 2;   // pieces before any merge: a byte each, and the dummy prefix
    MergeWork work = {
        .next = xcalloc(capacity, sizeof(int), "tokenizer work"),
        .prev = xcalloc(capacity, sizeof(int), "tokenizer work"),
        .heap = xcalloc(3 * capacity, sizeof(MergeCandidate), "tokenizer work"),
        .joined = xcalloc(2 * (size_t)t->max_token_length, 1, "tokenizer work"),
    };
    int n = 0;
    if (add_bos && t->add_bos) tokens[n++] = t->bos_id;
    if (t->kind == TOKENIZER_BYTE_LEVEL) n = encode_byte_level(t, text, tokens, n, &work);
    else n = encode_sentencepiece(t, text, tokens, n, &work);
    if (add_eos) tokens[n++] = t->eos_id;
    free(work.next);
    free(work.prev);
    free(work.heap);
    free(work.joined);
    free(normalized);
    return n;
}

// ---- Chat templates: how a conversation becomes token ids, as the family's
// own Jinja template (tokenizer_config.json's chat_template) renders it and
// Hugging Face then tokenizes it. A template is a few formats. In a format,
// %s is a message, {bos} is BOS (nothing when the tokenizer starts no text
// with it), {eos} is EOS, and <name> or <|name|> is that special token when
// the vocabulary has it as one (a piece scoring -inf), else text: TinyLlama's
// <|user|> is text. Messages are always text, whatever they spell. Text
// between two tokens is encoded on its own, as Hugging Face encodes a
// rendered template (SentencePiece gives each stretch its dummy prefix). A
// checkpoint's header records the template's id.

enum ChatTemplateId { CHAT_NOT_RECORDED, CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML, CHAT_ZEPHYR, CHAT_QWEN3, CHAT_GEMMA,
                      CHAT_PHI3, CHAT_PHI4, CHAT_SMOLLM3, N_CHAT_TEMPLATES };

#define TRIM_MESSAGES 1   // the template strips user and assistant messages of outer whitespace
#define TRIM_SYSTEM 2     // and the system prompt
#define TRIM_LEADING 4    // every message loses its leading whitespace: the token before it strips it (Phi-3's rstrip)
#define SKIP_EMPTY_SYSTEM 8   // an empty system prompt is left out (Phi-3.5's "if message['content']")
#define REPLY_THINK_TAGS 16   // <think> and </think> in a reply are the tokens (the template writes replies as they are)
#define LSTRIP_REPLY_NEWLINES 32   // a reply loses its leading newlines (SmolLM3's content.lstrip("\n"))

typedef struct {
    const char *name;
    const char *start;              // before the first message
    const char *system;             // the system prompt as a turn of its own; NULL: it joins the first user message
    const char *user;               // a user's message
    const char *user_with_system;   // the first user message with the system prompt folded in (%s: system, user)
    const char *assistant;          // a reply, its end-of-turn token and what follows that token
    const char *generation;         // what starts the reply the model writes (add_generation_prompt)
    const char *closing;            // after the last message when no reply is asked for
    const char *end_of_turn;        // the token that ends a reply (EOS ends one too)
    int trims;                      // what the template does to messages: TRIM_*, SKIP_EMPTY_SYSTEM, REPLY_THINK_TAGS, LSTRIP_REPLY_NEWLINES
    const char *think_open, *think_close;   // a reply's reasoning goes between these (Qwen3); NULL: none
    // SmolLM3: a system turn opens every conversation. header: %s the date, the
    // reasoning mode ("/think" or "/no_think"), then the system prompt without
    // its switches, or instructions[thinking] when it is empty; header_override:
    // the whole turn when the prompt says /system_override. With thinking off,
    // replies and the generation prompt take the *_no_think formats. NULL: none.
    const char *header, *header_override, *instructions[2];
    const char *assistant_no_think, *generation_no_think;
} ChatTemplate;

#define SMOLLM3_THINKING_INSTRUCTIONS \
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an assistant involves thoroughly " \
    "exploring questions through a systematic thinking process before providing the final precise and accurate solutions. " \
    "This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, " \
    "backtracking, and iteration to develop well-considered thinking process. Please structure your response into two main " \
    "sections: Thought and Solution using the specified format: <think> Thought section </think> Solution section. In the " \
    "Thought section, detail your reasoning process in steps. Each step should include detailed considerations such as " \
    "analysing questions, summarizing relevant findings, brainstorming new ideas, verifying the accuracy of the current " \
    "steps, refining any errors, and revisiting previous steps. In the Solution section, based on various attempts, " \
    "explorations, and reflections from the Thought section, systematically present the final solution that you deem " \
    "correct. The Solution section should be logical, accurate, and concise and detail necessary steps needed to reach the " \
    "conclusion.\n\n"


// Each as its family's Jinja template renders it (test/data/chat.vectors and
// test/test_chat_templates.sh hold them to it where the template ships in a
// package or under test/data). Phi-3.5's special tokens strip the whitespace
// after them when Hugging Face tokenizes (rstrip): its newlines are not
// written, and a message loses its leading whitespace. Phi-4-mini's template
// writes no newline, drops no empty system prompt, and its tokens strip
// nothing.
static const ChatTemplate chat_templates[N_CHAT_TEMPLATES] = {
    [CHAT_LLAMA2] = { .name = "llama2", .start = "", .user = "{bos}[INST] %s [/INST]",
                      .user_with_system = "{bos}[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", .assistant = " %s {eos}",
                      .generation = "", .closing = "", .end_of_turn = "{eos}", .trims = TRIM_MESSAGES | TRIM_SYSTEM },
    [CHAT_LLAMA3] = { .name = "llama3", .start = "{bos}", .system = "<|start_header_id|>system<|end_header_id|>\n\n%s<|eot_id|>",
                      .user = "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>",
                      .assistant = "<|start_header_id|>assistant<|end_header_id|>\n\n%s<|eot_id|>",
                      .generation = "<|start_header_id|>assistant<|end_header_id|>\n\n", .closing = "",
                      .end_of_turn = "<|eot_id|>", .trims = TRIM_MESSAGES | TRIM_SYSTEM },
    [CHAT_CHATML] = { .name = "chatml", .start = "{bos}", .system = "<|im_start|>system\n%s<|im_end|>\n",
                      .user = "<|im_start|>user\n%s<|im_end|>\n", .assistant = "<|im_start|>assistant\n%s<|im_end|>\n",
                      .generation = "<|im_start|>assistant\n", .closing = "", .end_of_turn = "<|im_end|>",
                      .trims = TRIM_MESSAGES | TRIM_SYSTEM },
    [CHAT_ZEPHYR] = { .name = "zephyr", .start = "{bos}", .system = "<|system|>\n%s{eos}\n", .user = "<|user|>\n%s{eos}\n",
                      .assistant = "<|assistant|>\n%s{eos}\n", .generation = "<|assistant|>\n", .closing = "",
                      .end_of_turn = "{eos}", .trims = TRIM_MESSAGES | TRIM_SYSTEM },
    [CHAT_QWEN3] = { .name = "qwen3", .start = "", .system = "<|im_start|>system\n%s<|im_end|>\n",
                     .user = "<|im_start|>user\n%s<|im_end|>\n", .assistant = "<|im_start|>assistant\n%s<|im_end|>\n",
                     .generation = "<|im_start|>assistant\n", .closing = "", .end_of_turn = "<|im_end|>", .trims = 0,
                     .think_open = "<think>\n", .think_close = "\n</think>\n\n" },
    [CHAT_GEMMA] = { .name = "gemma", .start = "{bos}", .user = "<start_of_turn>user\n%s<end_of_turn>\n",
                     .user_with_system = "<start_of_turn>user\n%s\n\n%s<end_of_turn>\n",
                     .assistant = "<start_of_turn>model\n%s<end_of_turn>\n", .generation = "<start_of_turn>model\n",
                     .closing = "", .end_of_turn = "<end_of_turn>", .trims = TRIM_MESSAGES },
    [CHAT_PHI3] = { .name = "phi3", .start = "", .system = "<|system|>%s<|end|>", .user = "<|user|>%s<|end|>",
                    .assistant = "<|assistant|>%s<|end|>", .generation = "<|assistant|>", .closing = "{eos}",
                    .end_of_turn = "<|end|>", .trims = TRIM_LEADING | SKIP_EMPTY_SYSTEM },
    [CHAT_PHI4] = { .name = "phi4", .start = "", .system = "<|system|>%s<|end|>", .user = "<|user|>%s<|end|>",
                    .assistant = "<|assistant|>%s<|end|>", .generation = "<|assistant|>", .closing = "{eos}",
                    .end_of_turn = "<|end|>", .trims = 0 },
    // SmolLM3's template closes its system turn only when it lists tools: without, neither does this
    [CHAT_SMOLLM3] = { .name = "smollm3", .start = "", .user = "<|im_start|>user\n%s<|im_end|>\n",
                       .assistant = "<|im_start|>assistant\n%s<|im_end|>\n", .generation = "<|im_start|>assistant\n",
                       .closing = "", .end_of_turn = "<|im_end|>", .trims = REPLY_THINK_TAGS | LSTRIP_REPLY_NEWLINES,
                       .header = "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\nToday Date: %s\n"
                                 "Reasoning Mode: %s\n\n## Custom Instructions\n\n",
                       .header_override = "<|im_start|>system\n%s<|im_end|>\n",
                       .instructions = { "You are a helpful AI assistant named SmolLM, trained by Hugging Face.\n\n",
                                         SMOLLM3_THINKING_INSTRUCTIONS },
                       .assistant_no_think = "<|im_start|>assistant\n<think>\n\n</think>\n%s<|im_end|>\n",
                       .generation_no_think = "<|im_start|>assistant\n<think>\n\n</think>\n" },
};

#define TEMPLATE_NOTHING (-2)   // {bos} where the tokenizer starts no text with BOS

// The special token <name> or <|name|> spelled at s, its length in *length; -1 if s spells none.
static int special_token_at(const Tokenizer *t, const char *s, size_t *length) {
    const char *close = s[0] == '<' ? strchr(s + 1, '>') : NULL;
    if (!close) return -1;
    *length = (size_t)(close + 1 - s);
    int id = piece_lookup(t, s, *length);
    return id >= 0 && t->scores[id] == -INFINITY ? id : -1;
}

// The token a format spells at s: {bos}, {eos} or a special token; -1 if none.
static int template_token_at(const Tokenizer *t, const char *s, size_t *length) {
    *length = 5;
    if (strncmp(s, "{bos}", 5) == 0) return t->add_bos ? t->bos_id : TEMPLATE_NOTHING;
    if (strncmp(s, "{eos}", 5) == 0) return t->eos_id;
    return special_token_at(t, s, length);
}

typedef struct {
    int *ids;
    int count, capacity;
} TokenList;

static void push_token(TokenList *list, int id) {
    if (list->count == list->capacity) {
        list->capacity = list->capacity * 2 + 64;
        list->ids = realloc(list->ids, (size_t)list->capacity * sizeof(int));
        if (!list->ids) die("out of memory rendering a chat turn");
    }
    list->ids[list->count++] = id;
}

// A conversation being rendered: the ids so far, and the text since the last
// token, encoded in one piece when the next token (or the end) comes.
typedef struct {
    TokenList *list;
    char *text;
    size_t length, capacity;
} Rendering;

static void rendering_text(Rendering *r, const char *text, size_t length) {
    if (r->length + length + 1 > r->capacity) {
        r->capacity = (r->length + length + 1) * 2;
        r->text = realloc(r->text, r->capacity);
        if (!r->text) die("out of memory rendering a chat turn");
    }
    memcpy(r->text + r->length, text, length);
    r->length += length;
    r->text[r->length] = '\0';
}

static void rendering_flush(Rendering *r, const Tokenizer *t) {
    if (r->length == 0) return;
    int *ids = xcalloc(encode_capacity(t, r->text), sizeof(int), "chat turn");
    int n = encode(t, r->text, 0, 0, ids);
    for (int i = 0; i < n; i++) push_token(r->list, ids[i]);
    free(ids);
    r->length = 0;
}

// A format rendered: its %s filled by the messages in order (as they are).
static void render_format(Rendering *r, const Tokenizer *t, const char *format, const char *const *messages) {
    size_t token_length;
    for (const char *f = format; *f;) {
        int id = template_token_at(t, f, &token_length);
        if (id >= 0 || id == TEMPLATE_NOTHING) {
            rendering_flush(r, t);
            if (id >= 0) push_token(r->list, id);
            f += token_length;
        } else if (strncmp(f, "%s", 2) == 0) {
            const char *message = *messages ? *messages++ : "";
            rendering_text(r, message, strlen(message));
            f += 2;
        } else {
            rendering_text(r, f++, 1);
        }
    }
}

// A copy of s[0..length) without the outer characters in strip ("" strips nothing).
static char *stripped(const char *s, size_t length, const char *strip) {
    while (length > 0 && strchr(strip, s[length - 1]) && s[length - 1]) length--;
    while (length > 0 && strchr(strip, s[0]) && s[0]) s++, length--;
    char *copy = xcalloc(length + 1, 1, "chat message");
    memcpy(copy, s, length);
    return copy;
}

#define WHITESPACE " \t\n\r\v\f"

// A message as a template writes it: its outer whitespace stripped when trim,
// its leading whitespace when leading; else as it is.
static char *trimmed_message(const char *s, int trim, int leading) {
    if (leading && !trim) s += strspn(s, WHITESPACE);
    return stripped(s, strlen(s), trim ? WHITESPACE : "");
}

typedef struct {
    const char *role;        // "system", "user" or "assistant"
    const char *content;
    const char *reasoning;   // an assistant's thinking, apart from its content (NULL: none, or inside content)
} ChatMessage;

// A reply's format and fill under a template that thinks (Qwen3): a reply
// after the last user message keeps its reasoning in a think block (an empty
// one when it has none); an earlier one loses it. Reasoning may come apart or
// inside the content, before "</think>".
static void render_reply_with_reasoning(Rendering *r, const Tokenizer *t, const ChatTemplate *template,
                                        const ChatMessage *m, int keeps_reasoning) {
    const char *content = m->content, *reasoning = m->reasoning ? m->reasoning : "";
    size_t reasoning_length = strlen(reasoning);
    const char *close = NULL;
    for (const char *at = strstr(content, "</think>"); at; at = strstr(at + 1, "</think>")) close = at;
    if (!m->reasoning && close) {   // Qwen3's template: split at the last </think>, the reasoning after the first <think>
        const char *first_close = strstr(content, "</think>"), *open = content;
        for (const char *at = strstr(content, "<think>"); at && at < first_close; at = strstr(at + 1, "<think>")) open = at + 7;
        reasoning = open, reasoning_length = (size_t)(first_close - open);
        content = close + 8;
    }
    if (close || m->reasoning || keeps_reasoning) content += strspn(content, "\n");   // the template's lstrip('\n')
    char *reply = stripped(content, strlen(content), ""), *thought = stripped(reasoning, reasoning_length, "\n");
    if (keeps_reasoning) {
        const char *split = strstr(template->assistant, "%s");
        size_t before = (size_t)(split - template->assistant);
        char *format = xcalloc(strlen(template->assistant) + strlen(template->think_open) + strlen(template->think_close) + 3, 1,
                               "chat format");
        sprintf(format, "%.*s%s%%s%s%s", (int)before, template->assistant, template->think_open, template->think_close, split);
        const char *fill[] = { thought, reply, NULL };
        render_format(r, t, format, fill);
        free(format);
    } else {
        const char *fill[] = { reply, NULL };
        render_format(r, t, template->assistant, fill);
    }
    free(reply);
    free(thought);
}

// The messages checked: a system prompt (first, optional), then user and
// assistant in turn, user first, as the families' templates require. Returns
// NULL or what is wrong; *first is the first message after the system prompt.
static const char *check_chat_messages(const ChatMessage *messages, int n, int *first, int *last_user) {
    *first = n > 0 && strcmp(messages[0].role, "system") == 0;
    *last_user = -1;
    for (int i = *first; i < n; i++) {
        const char *expected = (i - *first) % 2 == 0 ? "user" : "assistant";
        if (strcmp(messages[i].role, expected) != 0) return "messages must be an optional system prompt, then user and assistant in turn";
        if ((i - *first) % 2 == 0) *last_user = i;
    }
    return NULL;
}

// s without any of `what` (a new string).
static char *without(const char *s, const char *what) {
    char *out = xcalloc(strlen(s) + 1, 1, "chat message"), *o = out;
    for (const char *at; (at = strstr(s, what)); s = at + strlen(what)) o += sprintf(o, "%.*s", (int)(at - s), s);
    strcpy(o, s);
    return out;
}

// s without its trailing whitespace, as Python's rstrip() (a new string).
static char *rstripped(const char *s) {
    size_t length = strlen(s);
    while (length > 0 && strchr(WHITESPACE, s[length - 1])) length--;
    return stripped(s, length, "");
}

// Whether a template with a header thinks: a system prompt's /no_think or
// /think switches it, else the caller's choice does.
static int chat_thinking(const ChatTemplate *template, const char *system, int thinking) {
    if (!template->header || !system) return thinking;
    return strstr(system, "/no_think") ? 0 : strstr(system, "/think") ? 1 : thinking;
}

// A header template's system turn (SmolLM3's), as its Jinja writes it.
static void render_header(Rendering *r, const Tokenizer *t, const ChatTemplate *template, const char *system, int thinking) {
    const char *none[] = { NULL };
    char *no_switch = without(system ? system : "", "/no_think"), *instructions = without(no_switch, "/think");
    char *custom = rstripped(instructions);
    if (system && strstr(system, "/system_override")) {
        char *no_override = without(custom, "/system_override"), *prompt = rstripped(no_override);
        const char *fill[] = { prompt, NULL };
        render_format(r, t, template->header_override, fill);
        free(no_override), free(prompt);
    } else {
        char date[64];
        time_t now = time(NULL);
        struct tm local;   // localtime_r: the server renders on several threads
        strftime(date, sizeof date, "%d %B %Y", localtime_r(&now, &local));   // strftime_now("%d %B %Y")
        const char *fill[] = { date, thinking ? "/think" : "/no_think", NULL }, *text[] = { custom, NULL };
        render_format(r, t, template->header, fill);
        if (custom[0]) render_format(r, t, "%s\n\n", text);
        else render_format(r, t, template->instructions[thinking ? 1 : 0], none);
    }
    free(no_switch), free(instructions), free(custom);
}

// A reply written as it is by a template that reads <think> and </think> in
// it as the tokens (SmolLM3's): the format around it, the text between them.
static void render_reply_tags(Rendering *r, const Tokenizer *t, const char *format, const char *reply) {
    const char *none[] = { NULL }, *split = strstr(format, "%s");
    char *before = stripped(format, (size_t)(split - format), "");
    render_format(r, t, before, none);
    while (*reply) {
        const char *open = strstr(reply, "<think>"), *close = strstr(reply, "</think>");
        const char *tag = !open ? close : !close || open < close ? open : close;
        size_t length = tag ? (size_t)(tag - reply) : strlen(reply);
        rendering_text(r, reply, length);
        if (!tag) break;
        render_format(r, t, tag == open ? "<think>" : "</think>", none);
        reply = tag + (tag == open ? 7 : 8);
    }
    render_format(r, t, split + 2, none);
    free(before);
}

// The messages rendered into r (a conversation's start included when start).
static void render_messages(Rendering *r, const Tokenizer *t, const ChatTemplate *template, const ChatMessage *messages,
                            int n, int start, int add_generation_prompt, int thinking) {
    const char *none[] = { NULL };
    int first, last_user;
    check_chat_messages(messages, n, &first, &last_user);
    if (start) render_format(r, t, template->start, none);
    const char *system = first && !(template->trims & SKIP_EMPTY_SYSTEM && !messages[0].content[0]) ? messages[0].content : NULL;
    if (template->header) {   // the system prompt goes into the header (SmolLM3)
        thinking = chat_thinking(template, system, thinking);
        if (start) render_header(r, t, template, system, thinking);
        system = NULL;
    }
    int leading = template->trims & TRIM_LEADING;
    char *system_text = system ? trimmed_message(system, template->trims & TRIM_SYSTEM, leading) : NULL;
    if (system_text && template->system) {
        const char *fill[] = { system_text, NULL };
        render_format(r, t, template->system, fill);
    }
    for (int i = first; i < n; i++) {
        if (strcmp(messages[i].role, "assistant") == 0 && template->think_open) {
            render_reply_with_reasoning(r, t, template, &messages[i], i > last_user && i == n - 1);
            continue;
        }
        if (strcmp(messages[i].role, "assistant") == 0 && template->trims & REPLY_THINK_TAGS) {
            const char *reply = messages[i].content;
            if (template->trims & LSTRIP_REPLY_NEWLINES) reply += strspn(reply, "\n");
            render_reply_tags(r, t, !thinking && template->assistant_no_think ? template->assistant_no_think : template->assistant, reply);
            continue;
        }
        char *text = trimmed_message(messages[i].content, template->trims & TRIM_MESSAGES, leading);
        int folds_system = i == first && system_text && !template->system;
        const char *fill[] = { folds_system ? system_text : text, text, NULL };
        if (folds_system) render_format(r, t, template->user_with_system, fill);
        else render_format(r, t, strcmp(messages[i].role, "user") == 0 ? template->user : template->assistant, fill + 1);
        free(text);
    }
    free(system_text);
    if (add_generation_prompt) {
        render_format(r, t, !thinking && template->generation_no_think ? template->generation_no_think : template->generation, none);
        if (template->think_open && !thinking) {   // an empty think block: the reply starts after it
            render_format(r, t, template->think_open, none);
            render_format(r, t, template->think_close, none);
        }
    } else {
        render_format(r, t, template->closing, none);
    }
}

// A conversation through a template, as apply_chat_template renders and
// tokenizes it: a system prompt (first, optional; rendered even when empty,
// as the templates do), then user
// and assistant messages in turn, user first; add_generation_prompt ends on
// what starts the model's reply, and, under a template that thinks, with
// thinking off on an empty think block (Qwen3's enable_thinking=false).
// The ids are appended to *list. Returns NULL, or what is wrong with the
// messages (then nothing is appended).
static const char *render_chat(TokenList *list, const Tokenizer *t, const ChatTemplate *template, const ChatMessage *messages,
                               int n, int add_generation_prompt, int thinking) {
    int first, last_user;
    const char *wrong = check_chat_messages(messages, n, &first, &last_user);
    if (wrong) return wrong;
    Rendering r = { .list = list };
    render_messages(&r, t, template, messages, n, 1, add_generation_prompt, thinking);
    rendering_flush(&r, t);
    free(r.text);
    return NULL;
}

// What follows a reply's end-of-turn token in the template's assistant
// format ("\n" in ChatML): fed after the token when a chat goes on.
static const char *chat_after_reply(const ChatTemplate *template) {
    const char *at = strstr(template->assistant, "%s") + 2;
    return strstr(at, template->end_of_turn) + strlen(template->end_of_turn);
}

// A user's turn in a chat that keeps its context (runq's chat mode, the
// server): the first is the conversation's start, the system prompt (if any)
// and the message; a later one follows the reply's end-of-turn token. Each
// ends on the generation prompt; thinking as render_chat has it.
static TokenList chat_turn(const Tokenizer *t, const ChatTemplate *template, int first, const char *system,
                           const char *user, int thinking) {
    TokenList list = { 0 };
    ChatMessage messages[2] = { { "system", system, NULL }, { "user", user, NULL } };
    if (first) {   // an empty system prompt is none
        int has_system = system && system[0];
        render_chat(&list, t, template, messages + !has_system, 1 + has_system, 1, thinking);
        return list;
    }
    const char *none[] = { NULL };
    Rendering r = { .list = &list };
    render_format(&r, t, chat_after_reply(template), none);
    render_messages(&r, t, template, messages + 1, 1, 0, 1, chat_thinking(template, system, thinking));
    rendering_flush(&r, t);
    free(r.text);
    return list;
}

// The id of the token that ends a reply; -1 when this vocabulary lacks it.
static int chat_end_of_turn(const Tokenizer *t, const ChatTemplate *template) {
    size_t length;
    int id = template_token_at(t, template->end_of_turn, &length);
    return id >= 0 && length == strlen(template->end_of_turn) ? id : -1;
}

// The template to chat with: the one named (--chat-template), else the one
// the checkpoint records, else the one the vocabulary's special tokens
// belong to (Llama 3's headers, ChatML's <|im_start|>, Gemma's turns, Phi's
// <|user|>: Phi-4-mini's when byte-level), else Llama 2's.
static const ChatTemplate *choose_chat_template(const Tokenizer *t, const char *name, uint32_t recorded, const char *path) {
    size_t length;
    int id = CHAT_LLAMA2;
    if (name) {
        for (id = 1; id < N_CHAT_TEMPLATES && strcmp(chat_templates[id].name, name) != 0; id++) {}
        if (id == N_CHAT_TEMPLATES) die("unknown chat template '%s' (llama2, llama3, chatml, zephyr, qwen3, gemma, phi3, phi4, smollm3)", name);
    } else if (recorded >= N_CHAT_TEMPLATES) {
        die("%s records chat template %u, which this program does not know: pass --chat-template NAME", path, recorded);
    } else if (recorded != CHAT_NOT_RECORDED) {
        id = (int)recorded;
    } else if (special_token_at(t, "<|start_header_id|>", &length) >= 0 && special_token_at(t, "<|eot_id|>", &length) >= 0) {
        id = CHAT_LLAMA3;
    } else if (special_token_at(t, "<|im_start|>", &length) >= 0 && special_token_at(t, "<|im_end|>", &length) >= 0) {
        id = special_token_at(t, "<think>", &length) >= 0 ? CHAT_QWEN3 : CHAT_CHATML;
    } else if (special_token_at(t, "<start_of_turn>", &length) >= 0 && special_token_at(t, "<end_of_turn>", &length) >= 0) {
        id = CHAT_GEMMA;
    } else if (special_token_at(t, "<|user|>", &length) >= 0 && special_token_at(t, "<|end|>", &length) >= 0) {
        id = t->kind == TOKENIZER_BYTE_LEVEL ? CHAT_PHI4 : CHAT_PHI3;   // Phi-4-mini's o200k, Phi-3.5's Llama 2 pieces
    }
    if (chat_end_of_turn(t, &chat_templates[id]) < 0)
        die("chat template %s ends a reply with %s, which is no special token of %s's vocabulary", chat_templates[id].name,
            chat_templates[id].end_of_turn, path);
    return &chat_templates[id];
}

// ----------------------------------------------------------------------------
// Sampler: greedy, temperature, top-p; llama2.c's xorshift generator so a seed
// reproduces its runs.

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    ProbIndex *probindex;    // (vocab_size,) scratch for top-p
    float temperature;
    float topp;
    unsigned long long rng_state;
} Sampler;

static unsigned int random_u32(unsigned long long *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (unsigned int)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(unsigned long long *state) { return (float)(random_u32(state) >> 8) / 16777216.0f; }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

static int sample_mult(const float *probabilities, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probabilities[i];
        if (coin < cdf) return i;
    }
    return n - 1;
}

static int compare_prob_desc(const void *a, const void *b) {
    float pa = ((const ProbIndex *)a)->prob, pb = ((const ProbIndex *)b)->prob;
    return pa > pb ? -1 : pa < pb ? 1 : 0;
}

// Sample from the smallest set of tokens whose probability exceeds topp.
// Tokens below (1 - topp)/(n - 1) can never be in that set, so they are
// dropped before sorting.
static int sample_topp(const float *probabilities, int n, float topp, ProbIndex *probindex, float coin) {
    int n0 = 0;
    const float cutoff = (1.0f - topp) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (probabilities[i] >= cutoff) probindex[n0++] = (ProbIndex){ probabilities[i], i };
    qsort(probindex, (size_t)n0, sizeof(ProbIndex), compare_prob_desc);
    float cumulative = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative += probindex[i].prob;
        if (cumulative > topp) { last = i; break; }
    }
    float r = coin * cumulative, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += probindex[i].prob;
        if (r < cdf) return probindex[i].index;
    }
    return probindex[last].index;
}

static void build_sampler(Sampler *s, int vocab_size, float temperature, float topp, unsigned long long seed) {
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->rng_state = seed;
    s->probindex = xcalloc((size_t)vocab_size, sizeof(ProbIndex), "sampler");
}

static void free_sampler(Sampler *s) { free(s->probindex); }

// Note: scales logits in place.
static int sample(Sampler *s, float *logits) {
    if (s->temperature == 0.0f) return argmax(logits, s->vocab_size);
    for (int i = 0; i < s->vocab_size; i++) logits[i] /= s->temperature;
    softmax(logits, s->vocab_size);
    float coin = random_f32(&s->rng_state);
    if (s->topp <= 0 || s->topp >= 1) return sample_mult(logits, s->vocab_size, coin);
    return sample_topp(logits, s->vocab_size, s->topp, s->probindex, coin);
}

// ----------------------------------------------------------------------------
// Generation: the prompt, then sampled tokens, printed as they come. What the
// runtime gives these: forward(t, token, pos) and forward_tokens(t, tokens,
// n, pos0), each returning the logits after its last token.

static double now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1000.0 + (double)now.tv_nsec / 1e6;
}

// steps: total positions, prompt included (llama2.c's meaning of -n). Ends
// with one line of timings on stderr, which tools/bench reads:
//   stats: load_ms=.. prompt_tokens=.. prompt_ms=.. prompt_tok_s=.. ttft_ms=.. decode_tokens=.. decode_ms=.. decode_tok_s=..
static void generate(Transformer *t, Tokenizer *tok, Sampler *sampler, const char *prompt, int steps,
                     int ignore_eos, double load_ms) {
    if (!prompt) prompt = "";
    int *prompt_tokens = xcalloc(encode_capacity(tok, prompt), sizeof(int), "prompt tokens");
    int n_prompt = encode(tok, prompt, 1, 0, prompt_tokens);
    if (n_prompt >= steps)
        die("the prompt is %d tokens but -n %d leaves no room to generate (the context holds %d)",
            n_prompt, steps, t->config.seq_len);
    TextOut out = { .stream = stdout };
    for (int i = 1; i < n_prompt; i++) text_out(&out, decode(tok, prompt_tokens[i - 1], prompt_tokens[i]));
    fflush(stdout);

    double start = now_ms();
    float *logits = forward_tokens(t, prompt_tokens, n_prompt, 0);
    double prompt_end = now_ms(), first_token = prompt_end;
    int token = prompt_tokens[n_prompt - 1], pos = n_prompt, decoded = 0;
    for (;;) {
        int next = sample(sampler, logits);
        if (pos == n_prompt) first_token = now_ms();
        if (!ignore_eos && ends_generation(tok, next)) break;
        text_out(&out, decode(tok, token, next));
        fflush(stdout);
        token = next;
        if (pos >= steps) break;
        logits = forward(t, token, pos++);
        decoded++;
    }
    double end = now_ms();
    text_out_end(&out);
    printf("\n");
    fflush(stdout);   // the text's last line before the stats line on stderr
    double prompt_ms = prompt_end - start, decode_ms = end - first_token;
    fprintf(stderr, "stats: load_ms=%.1f prompt_tokens=%d prompt_ms=%.1f prompt_tok_s=%.2f ttft_ms=%.1f "
                    "decode_tokens=%d decode_ms=%.1f decode_tok_s=%.2f\n",
            load_ms, n_prompt, prompt_ms, n_prompt / (prompt_ms > 0 ? prompt_ms : 1e-3) * 1000, first_token - start,
            decoded, decode_ms, decoded / (decode_ms > 0 ? decode_ms : 1e-3) * 1000);
    free(prompt_tokens);
}

// Read one line from stdin into a growing buffer, without its newline.
// Returns 0 at end of input.
static int read_line(const char *guide, char **line, size_t *capacity) {
    printf("%s", guide);
    fflush(stdout);
    ssize_t n = getline(line, capacity, stdin);
    if (n < 0) return 0;
    if (n > 0 && (*line)[n - 1] == '\n') (*line)[n - 1] = '\0';
    return 1;
}

// A chat: each user message is rendered as the template's turn and fed as
// one batch, then the reply is sampled and printed until the template's
// end-of-turn token or EOS. That token goes in front of the next turn, so the
// conversation stays in the KV cache, whole, until -n positions are used.
// thinking: a template with a think block (Qwen3, SmolLM3) lets the model think
// (--think); off, each reply starts after an empty one.
static void chat(Transformer *t, Tokenizer *tok, Sampler *sampler, const char *cli_user_prompt,
                 const char *cli_system_prompt, int steps, const ChatTemplate *template, int thinking) {
    char *system_prompt = NULL, *user_prompt = NULL;
    size_t system_capacity = 0, user_capacity = 0;
    int end_of_turn = chat_end_of_turn(tok, template), pos = 0, reply_end = -1;
    for (;;) {
        const char *system = "", *user;
        if (pos == 0) {
            if (cli_system_prompt) system = cli_system_prompt;
            else if (read_line("Enter system prompt (optional): ", &system_prompt, &system_capacity)) system = system_prompt;
        }
        if (pos == 0 && cli_user_prompt) user = cli_user_prompt;
        else if (read_line("User: ", &user_prompt, &user_capacity)) user = user_prompt;
        else break;
        TokenList turn = { 0 };
        if (reply_end >= 0) push_token(&turn, reply_end);
        TokenList rendered = chat_turn(tok, template, pos == 0, system, user, thinking);
        for (int i = 0; i < rendered.count; i++) push_token(&turn, rendered.ids[i]);
        free(rendered.ids);
        if (pos + turn.count >= steps) {
            fprintf(stderr, "\n[context full: %d of %d positions used; start a new chat]\n", pos, steps);
            free(turn.ids);
            break;
        }
        float *logits = forward_tokens(t, turn.ids, turn.count, pos);
        pos += turn.count;
        int token = turn.ids[turn.count - 1];
        free(turn.ids);
        printf("Assistant: ");
        TextOut out = { .stream = stdout };
        for (;;) {
            int next = sample(sampler, logits);
            if (next == end_of_turn || next == tok->eos_id) { reply_end = next; break; }
            text_out(&out, decode(tok, token, next));
            fflush(stdout);
            if (pos >= steps) break;
            logits = forward(t, next, pos++);
            token = next;
        }
        text_out_end(&out);
        printf("\n");
        fflush(stdout);
        if (pos >= steps) {
            fprintf(stderr, "[context full: %d positions; start a new chat]\n", steps);
            break;
        }
    }
    printf("\n");
    free(system_prompt);
    free(user_prompt);
}

// ----------------------------------------------------------------------------
// Speculative decoding (runq only: run.c, the oracle, decodes a token at a
// time). A cheap draft proposes up to k tokens; the model decodes the last
// token and the k drafted ones as one batch (forward_batch_all_logits), which
// reads every weight once, as one decode step does, and keeps the drafted
// tokens it agrees with, then one token of its own. The drafts:
//   --lookup N    the text so far: the tokens that followed the most recent
//                 earlier occurrence of its last few tokens (prompt lookup;
//                 pays where the answer repeats the prompt), no second model;
//   --draft FILE  a smaller checkpoint of the same vocabulary (the model at
//                 int2, or with layers dropped), with its own KV cache.
// What comes out is what plain decoding gives:
//   - at temperature 0, bit for bit: row i of the batch's logits is what
//     decoding that token alone computes, and a drafted token is kept only
//     where it is that row's argmax, which is then the token emitted;
//   - with sampling, in distribution: the speculative-sampling rule accepts a
//     drafted x, drawn from the draft's distribution q, with probability
//     min(1, p(x)/q(x)), and on rejection draws from max(0, p - q)
//     normalised, which makes every emitted token distributed as p. p and q
//     are the sampler's processed distributions (temperature, top-p): p is
//     exactly what sample() would draw from. A lookup draft is deterministic,
//     q a point mass: x is kept with probability p(x), and on rejection the
//     token is drawn from p without x.
// The random numbers are drawn in another order than plain decoding's, so a
// seed gives another text, drawn from the same distribution.
// After a rejection the KV caches continue from the accepted position: the
// positions past it hold rejected tokens, and the next pass writes them again
// before anything reads them (attention reads positions up to its own).
// Generate mode only; chat and the server decode without it.

// Lookup drafts match the text's last LOOKUP_NGRAM_MAX tokens first, then
// shorter suffixes, down to LOOKUP_NGRAM_MIN.
#define LOOKUP_NGRAM_MAX 4
#define LOOKUP_NGRAM_MIN 2
#define DEFAULT_DRAFT_MAX 8   // --draft's longest draft without --draft-max

typedef struct {
    int max_draft;           // the longest draft (--lookup N, --draft-max N): 1..MAX_BATCH-1
    int lookup;              // 1: n-gram drafts from the text so far (--lookup)
    Transformer *draft;      // --draft: the draft model, else NULL
    int draft_positions;     // the draft's KV cache holds the text's first draft_positions tokens
    int draft_context;       // positions the draft's KV cache holds at most
    int draft_length;        // the next pass's longest draft, adapted to the acceptance
    int pause, pause_length; // passes left without a draft, and the length of the last such pause
    int vocab_size;
    float *rows;             // (max_draft + 1, vocab_size) the model's logits after each token of a pass
    float *draft_probs;      // (max_draft, vocab_size) the draft model's distribution of each drafted token
    float *probs;            // (vocab_size,) the model's distribution at one position
    long passes, drafted, accepted, emitted;   // what the stats line reports
    int wrong_rule;          // tests only, 0 in runq: a deliberately wrong rule (WRONG_*) the statistical test must catch
} Speculation;

// The wrong rules test/speculative_stats.c proves it can tell from the right one.
enum { WRONG_RESIDUAL = 1,   // a rejected position's token drawn from p, not from max(0, p - q)
       WRONG_UNPROCESSED };  // the acceptance ratio from the softmax before top-p: the sampler ignored

static void build_speculation(Speculation *sp, const Transformer *t, Transformer *draft, int lookup, int max_draft) {
    memset(sp, 0, sizeof *sp);
    sp->max_draft = max_draft;
    sp->lookup = lookup;
    sp->draft = draft;
    sp->draft_context = draft ? draft->state.cache_len : 0;
    sp->draft_length = max_draft;
    sp->vocab_size = t->config.vocab_size;
    sp->rows = xcalloc((size_t)(max_draft + 1) * sp->vocab_size, sizeof(float), "speculative logits");
    if (draft) sp->draft_probs = xcalloc((size_t)max_draft * sp->vocab_size, sizeof(float), "draft probabilities");
    sp->probs = xcalloc((size_t)sp->vocab_size, sizeof(float), "speculative probabilities");
}

static void free_speculation(Speculation *sp) {
    free(sp->rows);
    free(sp->draft_probs);
    free(sp->probs);
}

// A draft must mean by each token id what the model means: the same
// vocabulary size and, where both files carry a tokenizer, the same one.
static void check_draft_vocabulary(const Transformer *t, const Transformer *draft) {
    const Weights *a = &t->weights, *b = &draft->weights;
    if (draft->config.vocab_size != t->config.vocab_size)
        die("--draft %s has a vocabulary of %d tokens but %s has %d: a draft must share the model's vocabulary",
            draft->path, draft->config.vocab_size, t->path, t->config.vocab_size);
    if (a->tokenizer_blob && b->tokenizer_blob &&
        (a->tokenizer_size != b->tokenizer_size || memcmp(a->tokenizer_blob, b->tokenizer_blob, a->tokenizer_size) != 0))
        die("--draft %s's tokenizer is not %s's: a draft must share the model's vocabulary", draft->path, t->path);
}

// The distribution sample() draws from at temperature > 0, over the whole
// vocabulary: softmax of the logits over the temperature and, with
// 0 < topp < 1, the nucleus sample_topp chooses (the same candidates in the
// same sorted order, so the same set where probabilities tie), renormalised.
// Scales logits in place, as sample() does.
static void sampler_probabilities(Sampler *s, float *logits, float *probs) {
    int n = s->vocab_size;
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    softmax(logits, n);
    if (s->topp <= 0 || s->topp >= 1) {
        memcpy(probs, logits, (size_t)n * sizeof(float));
        return;
    }
    int n0 = 0;
    const float cutoff = (1.0f - s->topp) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff) s->probindex[n0++] = (ProbIndex){ logits[i], i };
    qsort(s->probindex, (size_t)n0, sizeof(ProbIndex), compare_prob_desc);
    float cumulative = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative += s->probindex[i].prob;
        if (cumulative > s->topp) { last = i; break; }
    }
    memset(probs, 0, (size_t)n * sizeof(float));
    for (int i = 0; i <= last; i++) probs[s->probindex[i].index] = s->probindex[i].prob / cumulative;
}

// A token drawn from n weights summing to total > 0 (not necessarily 1).
// Where rounding leaves the coin past the last sum, the last token of
// positive weight: never one the distribution excludes.
static int sample_weights(const float *weights, int n, float total, float coin) {
    float r = coin * total, cdf = 0.0f;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (weights[i] <= 0.0f) continue;
        cdf += weights[i];
        last = i;
        if (r < cdf) return i;
    }
    return last;
}

// A lookup draft: the tokens that followed the most recent earlier
// occurrence of the text's last n tokens (n from LOOKUP_NGRAM_MAX down to
// LOOKUP_NGRAM_MIN: a longer match predicts better), at most max of them.
// history holds the n_history tokens so far. Returns how many (0: no match).
static int lookup_draft(const int *history, int n_history, int max, int *out) {
    for (int n = LOOKUP_NGRAM_MAX; n >= LOOKUP_NGRAM_MIN; n--) {
        if (n_history <= n) continue;   // no room for an earlier occurrence
        const int *suffix = history + n_history - n;
        for (int start = n_history - n - 1; start >= 0; start--) {
            if (memcmp(history + start, suffix, (size_t)n * sizeof(int)) != 0) continue;
            int from = start + n, count = n_history - from < max ? n_history - from : max;
            memmove(out, history + from, (size_t)count * sizeof(int));
            return count;
        }
    }
    return 0;
}

// A draft model's k tokens after history[0..pos] (history[pos] is the token
// the model decodes next): first the tokens its cache lacks, as one batch,
// then a decode step per drafted token. At temperature 0 each is the draft's
// argmax; else drawn from the draft's processed distribution, kept in
// draft_probs for the acceptance rule.
static void draft_model_tokens(Speculation *sp, Sampler *s, const int *history, int pos, int k, int *out) {
    Transformer *d = sp->draft;
    float *logits = forward_tokens(d, history + sp->draft_positions, pos + 1 - sp->draft_positions, sp->draft_positions);
    for (int i = 0; i < k; i++) {
        if (i > 0) logits = forward(d, out[i - 1], pos + i);
        if (s->temperature == 0.0f) {
            out[i] = argmax(logits, sp->vocab_size);
            continue;
        }
        float *q = sp->draft_probs + (size_t)i * sp->vocab_size;
        sampler_probabilities(s, logits, q);
        out[i] = sample_weights(q, sp->vocab_size, 1.0f, random_f32(&s->rng_state));
    }
    sp->draft_positions = pos + k;   // token, then drafts 1..k-1: the last drafted token is not decoded
}

// One pass of the model over history[pos] and the tokens drafted after it,
// as one batch. The tokens it emits replace the draft in history[pos+1..]:
// the accepted drafted tokens, then one of the model's own (the correction of
// the first rejected one, or after a whole accepted draft the token that
// follows it). Returns how many: 1 to k+1. pos < steps; no token is decoded
// at a position past steps - 1, as in plain decoding.
static int speculative_pass(Transformer *t, Speculation *sp, Sampler *s, int *history, int pos, int steps) {
    int n = sp->vocab_size, k = sp->pause > 0 ? 0 : sp->draft_length;
    int *drafted = history + pos + 1;
    if (k > steps - 1 - pos) k = steps - 1 - pos;
    if (sp->draft && k > sp->draft_context - pos) k = pos < sp->draft_context ? sp->draft_context - pos : 0;   // its cache is full
    if (k > 0 && sp->lookup) k = lookup_draft(history, pos + 1, k, drafted);
    else if (k > 0 && sp->draft) draft_model_tokens(sp, s, history, pos, k, drafted);
    forward_batch_all_logits(t, history + pos, k + 1, pos, sp->rows);

    int j = 0;   // drafted tokens accepted; drafted[j] becomes the model's own token
    for (;; j++) {
        float *row = sp->rows + (size_t)j * n;
        if (s->temperature == 0.0f) {
            int best = argmax(row, n);
            if (j < k && drafted[j] == best) continue;
            drafted[j] = best;
            break;
        }
        float *p = sp->probs;
        sampler_probabilities(s, row, p);
        if (j == k) {   // the whole draft accepted: the next token, drawn from p
            drafted[j] = sample_weights(p, n, 1.0f, random_f32(&s->rng_state));
            break;
        }
        int x = drafted[j];
        float *q = sp->draft ? sp->draft_probs + (size_t)j * n : NULL;   // NULL: a point mass at x
        float px = sp->wrong_rule == WRONG_UNPROCESSED ? row[x] : p[x];   // row: the softmax sample() starts from
        if (random_f32(&s->rng_state) * (q ? q[x] : 1.0f) < px) continue;   // probability min(1, p(x)/q(x))
        if (sp->wrong_rule == WRONG_RESIDUAL) {
            drafted[j] = sample_weights(p, n, 1.0f, random_f32(&s->rng_state));
            break;
        }
        // rejected: drawn from max(0, p - q), normalised (into q, no longer needed)
        float total = 0.0f;
        float *residual = q ? q : p;
        for (int i = 0; i < n; i++) {
            float r = p[i] - (q ? q[i] : i == x ? 1.0f : 0.0f);
            residual[i] = r > 0.0f ? r : 0.0f;
            total += residual[i];
        }
        float coin = random_f32(&s->rng_state);
        // total is positive whenever p(x) < q(x); only rounding could empty it, then p itself
        drafted[j] = total > 0.0f ? sample_weights(residual, n, total, coin) : sample_weights(p, n, 1.0f, coin);
        break;
    }

    // The draft length follows the acceptance: a whole draft accepted doubles
    // it (up to the longest), a rejection cuts it to one past what was kept.
    // A draft of one token rejected pauses drafting for a pass, then two,
    // four, up to 16, until a drafted token is accepted again: where a pass
    // costs a decode step a token (the tiny models) a rejected draft is a
    // step lost, and text the draft cannot guess should cost no more than
    // plain decoding. Deterministic, so a seed still gives one text.
    if (sp->pause > 0) sp->pause--;
    if (k > 0 && j == k && k == sp->draft_length) sp->draft_length = 2 * k < sp->max_draft ? 2 * k : sp->max_draft;
    else if (j < k) sp->draft_length = j + 1;
    if (j > 0) sp->pause_length = 0;
    else if (k == 1) {
        sp->pause_length = sp->pause_length ? (2 * sp->pause_length < 16 ? 2 * sp->pause_length : 16) : 1;
        sp->pause = sp->pause_length;
    }
    if (sp->draft && k > 0) sp->draft_positions = pos + 1 + (j < k ? j : k - 1);   // the accepted ones only
    sp->passes++;
    sp->drafted += k;
    sp->accepted += j;
    sp->emitted += j + 1;
    return j + 1;
}

// generate() with speculative decoding: the same text at temperature 0, and
// the same stats line with the passes' figures added, after a line for people:
//   speculative: 2.40 tokens/pass, 71 % accepted (120 passes, 340 drafted, 241 accepted)
//   stats: ... decode_tok_s=.. passes=.. tokens_per_pass=.. drafted=.. accepted=.. accepted_pct=..
static void generate_speculative(Transformer *t, Speculation *sp, Tokenizer *tok, Sampler *sampler, const char *prompt,
                                 int steps, int ignore_eos, double load_ms) {
    if (!prompt) prompt = "";
    size_t capacity = encode_capacity(tok, prompt);
    int *history = xcalloc(capacity + (size_t)steps + 1, sizeof(int), "tokens");   // the prompt, then every emitted token
    int n_prompt = encode(tok, prompt, 1, 0, history);
    if (n_prompt >= steps)
        die("the prompt is %d tokens but -n %d leaves no room to generate (the context holds %d)",
            n_prompt, steps, t->config.seq_len);
    TextOut out = { .stream = stdout };
    for (int i = 1; i < n_prompt; i++) text_out(&out, decode(tok, history[i - 1], history[i]));
    fflush(stdout);

    double start = now_ms();
    float *logits = forward_tokens(t, history, n_prompt, 0);
    if (sp->draft && n_prompt <= sp->draft_context) {
        forward_tokens(sp->draft, history, n_prompt, 0);
        sp->draft_positions = n_prompt;
    }
    double prompt_end = now_ms();
    int pos = n_prompt, decoded = 0;   // history[pos]: the last token emitted, not yet decoded
    history[pos] = sample(sampler, logits);
    double first_token = now_ms();
    int done = !ignore_eos && ends_generation(tok, history[pos]);
    if (!done) text_out(&out, decode(tok, history[pos - 1], history[pos]));
    fflush(stdout);
    while (!done && pos < steps) {
        int emitted = speculative_pass(t, sp, sampler, history, pos, steps);
        for (int i = 1; i <= emitted && !done; i++) {
            decoded++;
            done = !ignore_eos && ends_generation(tok, history[pos + i]);
            if (!done) text_out(&out, decode(tok, history[pos + i - 1], history[pos + i]));
        }
        fflush(stdout);
        pos += emitted;
    }
    double end = now_ms();
    text_out_end(&out);
    printf("\n");
    fflush(stdout);   // the text's last line before the stats lines on stderr
    double prompt_ms = prompt_end - start, decode_ms = end - first_token;
    double per_pass = sp->passes ? (double)sp->emitted / sp->passes : 0;
    double accepted_pct = sp->drafted ? 100.0 * sp->accepted / sp->drafted : 0;
    fprintf(stderr, "speculative: %.2f tokens/pass, %.0f %% accepted (%ld passes, %ld drafted, %ld accepted)\n", per_pass,
            accepted_pct, sp->passes, sp->drafted, sp->accepted);
    fprintf(stderr, "stats: load_ms=%.1f prompt_tokens=%d prompt_ms=%.1f prompt_tok_s=%.2f ttft_ms=%.1f "
                    "decode_tokens=%d decode_ms=%.1f decode_tok_s=%.2f passes=%ld tokens_per_pass=%.2f drafted=%ld "
                    "accepted=%ld accepted_pct=%.1f\n",
            load_ms, n_prompt, prompt_ms, n_prompt / (prompt_ms > 0 ? prompt_ms : 1e-3) * 1000, first_token - start,
            decoded, decode_ms, decoded / (decode_ms > 0 ? decode_ms : 1e-3) * 1000, sp->passes, per_pass, sp->drafted,
            sp->accepted, accepted_pct);
    free(history);
}

// ----------------------------------------------------------------------------
// Command line

// Numeric flags: whole and checked, or one clear message (tools use these too).
static long parse_long(const char *flag, const char *text, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < min || v > max)
        die("%s expects a whole number from %ld to %ld, got '%s'", flag, min, max, text);
    return v;
}

static float parse_float(const char *flag, const char *text, float min, float max) {
    char *end;
    errno = 0;
    float v = strtof(text, &end);
    if (errno || end == text || *end != '\0' || !(v >= min && v <= max))
        die("%s expects a number from %g to %g, got '%s'", flag, min, max, text);
    return v;
}

// -k: the KV cache's type (tools take it too)
static int parse_kv_type(const char *text) {
    if (strcmp(text, "f16") == 0) return KV_F16;
    if (strcmp(text, "q8") == 0) return KV_Q8;
    die("-k expects f16 or q8, got '%s'", text);
    return KV_F16;
}

#ifndef TESTING

static void usage(void) {
    fprintf(stderr,
        "Usage:   runq <checkpoint> [options]\n"
        "Example: runq model.q4.bin -n 256 -i \"Once upon a time\"\n"
        "Options:\n"
        "  -t <float>  temperature in [0,inf), default 1.0 (0 = greedy)\n"
        "  -p <float>  top-p (nucleus) sampling in [0,1], default 0.9\n"
        "  -s <int>    random seed, default time(NULL)\n"
        "  -n <int>    positions to run, prompt included, default 256 (chat: the whole context)\n"
        "  -i <string> input prompt\n"
        "  -z <string> tokenizer.bin overriding the one in the checkpoint\n"
        "  -m <string> mode: generate|chat, default generate\n"
        "  -y <string> system prompt in chat mode\n"
        "  -T <int>    threads, default: the big cores this process may use, less those busy\n"
        "  -k <string> KV cache: f16 (default) or q8 (int8, a scale per head: half the memory)\n"
        "  --chat-template <name>  llama2|llama3|chatml|zephyr|qwen3|gemma|phi3, default: the checkpoint's\n"
        "  --think     chat: let a model that thinks (Qwen3, SmolLM3) think before it replies\n"
        "  --lora <file>  a LoRA adapter to apply at run time (export --adapter writes one)\n"
        "  --lookup <int>  speculative decoding, drafts of up to N tokens looked up in the text so far\n"
        "  --draft <file>  speculative decoding, drafts from a smaller checkpoint of the same vocabulary\n"
        "  --draft-max <int>  --draft's longest draft, default 8 (at most 63)\n"
        "  --ignore-eos  keep generating past BOS/EOS (benchmarks)\n");
    exit(EXIT_FAILURE);
}

int main(int argc, char **argv) {
    const char *checkpoint = NULL, *tokenizer_path = NULL, *prompt = NULL, *mode = "generate", *system_prompt = NULL;
    const char *chat_template = NULL, *lora_path = NULL, *draft_path = NULL;
    int lookup = 0, draft_max = 0;   // speculative decoding (0: off; draft_max 0: DEFAULT_DRAFT_MAX)
    float temperature = 1.0f, topp = 0.9f;
    unsigned long long seed = 0;
    int steps = 256, steps_given = 0, ignore_eos = 0, thinking = 0, kv_type = KV_F16;
    int n_threads = 0;   // 0: default_run_threads(), once the arguments are read

    if (argc < 2) usage();
    checkpoint = argv[1];
    for (int i = 2; i < argc; i += 2) {
        if (strcmp(argv[i], "--ignore-eos") == 0) { ignore_eos = 1; i--; continue; }
        if (strcmp(argv[i], "--think") == 0) { thinking = 1; i--; continue; }
        int long_flag = strcmp(argv[i], "--chat-template") == 0 || strcmp(argv[i], "--lora") == 0 ||
                        strcmp(argv[i], "--lookup") == 0 || strcmp(argv[i], "--draft") == 0 ||
                        strcmp(argv[i], "--draft-max") == 0;
        if (!long_flag && (argv[i][0] != '-' || strlen(argv[i]) != 2)) {
            fprintf(stderr, "runq: unknown argument '%s'\n", argv[i]);
            usage();
        }
        if (i + 1 >= argc) die("flag %s needs a value", argv[i]);
        const char *value = argv[i + 1];
        if (long_flag) {
            if (strcmp(argv[i], "--lora") == 0) lora_path = value;
            else if (strcmp(argv[i], "--lookup") == 0) lookup = (int)parse_long("--lookup", value, 1, MAX_BATCH - 1);
            else if (strcmp(argv[i], "--draft") == 0) draft_path = value;
            else if (strcmp(argv[i], "--draft-max") == 0) draft_max = (int)parse_long("--draft-max", value, 1, MAX_BATCH - 1);
            else chat_template = value;
            continue;
        }
        switch (argv[i][1]) {
        case 't': temperature = parse_float("-t", value, 0.0f, 1e6f); break;
        case 'p': topp = parse_float("-p", value, 0.0f, 1.0f); break;
        case 's': seed = (unsigned long long)parse_long("-s", value, 0, LONG_MAX); break;
        case 'n': steps = (int)parse_long("-n", value, 1, INT_MAX); steps_given = 1; break;
        case 'i': prompt = value; break;
        case 'z': tokenizer_path = value; break;
        case 'm': mode = value; break;
        case 'y': system_prompt = value; break;
        case 'T': n_threads = (int)parse_long("-T", value, 1, 1024); break;
        case 'k': kv_type = parse_kv_type(value); break;
        default: fprintf(stderr, "runq: unknown flag '%s'\n", argv[i]); usage();
        }
    }
    if (strcmp(mode, "generate") != 0 && strcmp(mode, "chat") != 0) die("unknown mode '%s' (generate|chat)", mode);
    if (lookup && draft_path) die("--lookup and --draft are two kinds of draft: give one");
    if (draft_max && !draft_path) die("--draft-max bounds --draft's drafts: give --draft FILE too (--lookup N has its own)");
    if ((lookup || draft_path) && strcmp(mode, "generate") != 0)
        die("speculative decoding (--lookup, --draft) runs in generate mode only, not in chat");
    if (seed == 0) seed = (unsigned long long)time(NULL);
    if (n_threads == 0) n_threads = default_run_threads();

    double load_start = now_ms();
    Transformer transformer;
    open_checkpoint(&transformer, checkpoint);
    if (lora_path) load_adapter(&transformer, lora_path);
    int seq_len = transformer.config.seq_len, chatting = strcmp(mode, "chat") == 0;
    transformer.kv_type = kv_type;
    if (steps_given && steps > seq_len) die("-n %d is beyond the model's context of %d positions", steps, seq_len);
    if (!steps_given) steps = chatting ? chat_positions(&transformer) : steps < seq_len ? steps : seq_len;
    prepare_run(&transformer, steps, n_threads);
    Transformer draft;
    if (draft_path) {
        open_checkpoint(&draft, draft_path);
        check_draft_vocabulary(&transformer, &draft);
        draft.kv_type = kv_type;
        prepare_run(&draft, steps < draft.config.seq_len ? steps : draft.config.seq_len, n_threads);
        // one pool for both models: they take turns, and a second pool's
        // threads would spin for cores the first one's need
        pool_free(draft.pool);
        draft.pool = transformer.pool;
    }
    double load_ms = now_ms() - load_start;
    print_memory_plan(&transformer);
    if (draft_path) {
        char weights[32], kv[32];
        fprintf(stderr, "draft: %s, %d layers, weights %s (mapped), KV cache %s (%d positions)\n", draft_path,
                draft.config.n_layers, format_bytes(weights, draft.file_size), format_bytes(kv, draft.state.kv_bytes),
                draft.state.cache_len);
    }
    fprintf(stderr, "kernels: %s, %d thread%s\n", transformer.kernels.name, n_threads, n_threads == 1 ? "" : "s");

    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, &transformer, tokenizer_path);
    Sampler sampler;
    build_sampler(&sampler, transformer.config.vocab_size, temperature, topp, seed);

    if (lookup || draft_path) {
        Speculation speculation;
        build_speculation(&speculation, &transformer, draft_path ? &draft : NULL, lookup != 0,
                          lookup ? lookup : draft_max ? draft_max : DEFAULT_DRAFT_MAX);
        generate_speculative(&transformer, &speculation, &tokenizer, &sampler, prompt, steps, ignore_eos, load_ms);
        free_speculation(&speculation);
    } else if (strcmp(mode, "generate") == 0) generate(&transformer, &tokenizer, &sampler, prompt, steps, ignore_eos, load_ms);
    else {
        const ChatTemplate *template = choose_chat_template(&tokenizer, chat_template, transformer.config.chat_template, checkpoint);
        if (!chat_template && transformer.config.chat_template == CHAT_NOT_RECORDED && template == &chat_templates[CHAT_LLAMA2])
            fprintf(stderr, "runq: %s records no chat template and its vocabulary names none: chatting in llama2's, a guess "
                            "(--chat-template NAME to choose; a model never trained to chat, such as a story model, "
                            "answers with noise: -m generate)\n", checkpoint);
        chat(&transformer, &tokenizer, &sampler, prompt, system_prompt, steps, template, thinking);
    }

    free_sampler(&sampler);
    free_tokenizer(&tokenizer);
    if (draft_path) {
        draft.pool = NULL;   // the model's pool, freed with it
        free_transformer(&draft);
    }
    free_transformer(&transformer);
    return 0;
}
#endif
