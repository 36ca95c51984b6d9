// test_gguf.c — export's GGUF writer (export --gguf-q4_0 / --gguf-q8_0 /
// --gguf-f32), read back by a small GGUF reader written here from the spec,
// independent of the writer:
//   - header, metadata (hyperparameters, tokenizer), tensor infos, alignment;
//   - Q4_0 blocks equal to the nibbles and scales of runq's int4 checkpoint of
//     the same weights, so llama.cpp and runq run identical weights; a GGUF
//     re-packed from that checkpoint is the same bytes;
//   - f32 tensors exact, Q8_0 within half a step, per-layer FFN widths;
//   - shapes Q4_0 cannot hold, and a missing tokenizer, refused with no file left;
//   - on the real stories260K (../shared): our f32 GGUF equals the reference
//     stories260K.gguf tensor for tensor, and its vocabulary piece for piece.
#define TESTING
#include "../export.c"
#include "check.h"
#include <dirent.h>
#include <sys/wait.h>

static char work_dir[] = "/tmp/edge-llm-gguf-XXXXXX";

// ---- A GGUF reader: bounds-checked, reads every field the writer writes.

typedef struct {
    char *key;
    uint32_t type;              // GGUF value type
    const uint8_t *value;       // the value in the file (for arrays: the first element)
    uint32_t array_type;        // arrays only
    uint64_t array_count;
} GgufKv;

typedef struct {
    char *name;
    uint32_t n_dims;
    uint64_t dims[4];
    uint32_t type;              // ggml type
    uint64_t offset;            // from the start of the data section
} GgufInfo;

typedef struct {
    uint8_t *data;
    size_t size, at;            // at: the read cursor
    int broken;                 // a read ran past the end, or a count was absurd
    uint32_t version;
    uint64_t n_tensors, n_kv, data_start;
    GgufKv *kvs;
    GgufInfo *infos;
} GgufFile;

static const uint8_t *gguf_take(GgufFile *g, size_t n) {
    if (g->broken || n > g->size - g->at) { g->broken = 1; return NULL; }
    const uint8_t *p = g->data + g->at;
    g->at += n;
    return p;
}

static uint64_t take_u64(GgufFile *g) { uint64_t v = 0; const uint8_t *p = gguf_take(g, 8); if (p) memcpy(&v, p, 8); return v; }
static uint32_t take_u32(GgufFile *g) { uint32_t v = 0; const uint8_t *p = gguf_take(g, 4); if (p) memcpy(&v, p, 4); return v; }

static char *take_string(GgufFile *g) {
    uint64_t n = take_u64(g);
    const uint8_t *p = gguf_take(g, n);
    char *s = calloc(p ? n + 1 : 1, 1);
    if (p) memcpy(s, p, n);
    return s;
}

static size_t scalar_size(uint32_t type) {
    static const size_t sizes[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };   // u8 i8 u16 i16 u32 i32 f32 bool - - u64 i64 f64
    return type < sizeof sizes / sizeof *sizes ? sizes[type] : 0;
}

static void skip_value(GgufFile *g, uint32_t type, int depth) {
    if (type == GGUF_STRING) { free(take_string(g)); return; }
    if (type == GGUF_ARRAY && depth < 2) {
        uint32_t element = take_u32(g);
        uint64_t count = take_u64(g);
        for (uint64_t i = 0; i < count && !g->broken; i++) skip_value(g, element, depth + 1);
        return;
    }
    if (!scalar_size(type)) { g->broken = 1; return; }
    gguf_take(g, scalar_size(type));
}

static int gguf_read(GgufFile *g, const char *path) {
    memset(g, 0, sizeof *g);
    g->data = read_whole_file(path, &g->size);
    const uint8_t *magic = gguf_take(g, 4);
    if (!magic || memcmp(magic, "GGUF", 4) != 0) return 0;
    g->version = take_u32(g);
    g->n_tensors = take_u64(g);
    g->n_kv = take_u64(g);
    if (g->n_tensors > 1u << 16 || g->n_kv > 1u << 16) return 0;
    g->kvs = calloc(g->n_kv + 1, sizeof(GgufKv));
    g->infos = calloc(g->n_tensors + 1, sizeof(GgufInfo));
    for (uint64_t i = 0; i < g->n_kv && !g->broken; i++) {
        GgufKv *kv = &g->kvs[i];
        kv->key = take_string(g);
        kv->type = take_u32(g);
        if (kv->type == GGUF_ARRAY) {
            kv->array_type = take_u32(g);
            kv->array_count = take_u64(g);
            kv->value = g->data + g->at;
            for (uint64_t j = 0; j < kv->array_count && !g->broken; j++) skip_value(g, kv->array_type, 1);
        } else {
            kv->value = g->data + g->at;
            skip_value(g, kv->type, 0);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors && !g->broken; i++) {
        GgufInfo *t = &g->infos[i];
        t->name = take_string(g);
        t->n_dims = take_u32(g);
        if (t->n_dims > 4) { g->broken = 1; break; }
        for (uint32_t d = 0; d < t->n_dims; d++) t->dims[d] = take_u64(g);
        t->type = take_u32(g);
        t->offset = take_u64(g);
    }
    g->data_start = round_up(g->at, GGUF_ALIGNMENT);   // general.alignment is checked to be 32 below
    return !g->broken;
}

static void gguf_free(GgufFile *g) {
    for (uint64_t i = 0; g->kvs && i < g->n_kv; i++) free(g->kvs[i].key);
    for (uint64_t i = 0; g->infos && i < g->n_tensors; i++) free(g->infos[i].name);
    free(g->kvs);
    free(g->infos);
    free(g->data);
}

static const GgufKv *gguf_kv(const GgufFile *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && strcmp(g->kvs[i].key, key) == 0) return &g->kvs[i];
    return NULL;
}

// a u32 metadata value, or -1 when absent or of another type
static int64_t kv_u32(const GgufFile *g, const char *key) {
    const GgufKv *kv = gguf_kv(g, key);
    uint32_t v;
    if (!kv || kv->type != GGUF_U32) return -1;
    memcpy(&v, kv->value, 4);
    return v;
}

static float kv_f32(const GgufFile *g, const char *key) {
    const GgufKv *kv = gguf_kv(g, key);
    float v = NAN;
    if (kv && kv->type == GGUF_F32) memcpy(&v, kv->value, 4);
    return v;
}

static int kv_string_is(const GgufFile *g, const char *key, const char *expected) {
    const GgufKv *kv = gguf_kv(g, key);
    uint64_t n;
    if (!kv || kv->type != GGUF_STRING) return 0;
    memcpy(&n, kv->value, 8);
    return n == strlen(expected) && memcmp(kv->value + 8, expected, n) == 0;
}

// element i of a string array, as a NUL-terminated copy ("" when absent)
static char *kv_array_string(const GgufFile *g, const char *key, uint64_t i) {
    const GgufKv *kv = gguf_kv(g, key);
    if (!kv || kv->type != GGUF_ARRAY || kv->array_type != GGUF_STRING || i >= kv->array_count) return strdup("");
    const uint8_t *p = kv->value;
    uint64_t n;
    for (uint64_t j = 0; j < i; j++) { memcpy(&n, p, 8); p += 8 + n; }
    memcpy(&n, p, 8);
    char *s = calloc(n + 1, 1);
    memcpy(s, p + 8, n);
    return s;
}

// element i of an array of 4-byte values (u32, i32, f32)
static uint32_t kv_array_word(const GgufFile *g, const char *key, uint64_t i, uint32_t array_type) {
    const GgufKv *kv = gguf_kv(g, key);
    uint32_t v = 0xFFFFFFFFu;
    if (kv && kv->type == GGUF_ARRAY && kv->array_type == array_type && i < kv->array_count) memcpy(&v, kv->value + 4 * i, 4);
    return v;
}

static const GgufInfo *gguf_info(const GgufFile *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->infos[i].name && strcmp(g->infos[i].name, name) == 0) return &g->infos[i];
    return NULL;
}

static const uint8_t *tensor_data(const GgufFile *g, const GgufInfo *t) { return g->data + g->data_start + t->offset; }

static uint64_t info_nbytes(const GgufInfo *t) {
    uint64_t elements = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) elements *= t->dims[d];
    if (t->type == 2) return elements / 32 * 18;   // Q4_0
    if (t->type == 8) return elements / 32 * 34;   // Q8_0
    return elements * 4;                           // F32
}

// ---- helpers

static void path_in_work_dir(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", work_dir, name); }

static const PlannedTensor *planned(const Plan *plan, int kind, int layer) {
    for (int i = 0; i < plan->count; i++)
        if (plan->tensors[i].kind == kind && plan->tensors[i].layer == layer) return &plan->tensors[i];
    return NULL;
}

// The layout llama.cpp insists on: the data section starts aligned after the
// infos, every tensor sits at the padded running sum of those before it, and
// the file holds all of them.
static void check_layout(const GgufFile *g, const char *what) {
    CHECK(g->data_start % 32 == 0, "%s: data section at %llu, not 32-aligned", what, (unsigned long long)g->data_start);
    uint64_t expected = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GgufInfo *t = &g->infos[i];
        CHECK(t->offset == expected, "%s: tensor %s at data offset %llu, expected %llu (the padded running sum)", what,
              t->name, (unsigned long long)t->offset, (unsigned long long)expected);
        expected = round_up(t->offset + info_nbytes(t), 32);
    }
    CHECK(g->size == g->data_start + expected, "%s: file has %zu bytes, tensors end (padded) at %llu", what, g->size,
          (unsigned long long)(g->data_start + expected));
}

// Hyperparameters and vocabulary of a GGUF written from src.
static void check_metadata(const GgufFile *g, const Source *src, int file_type, const char *what) {
    const FileHeader *h = &src->header;
    CHECK(g->version == 3, "%s: version %u, expected 3", what, g->version);
    CHECK(kv_string_is(g, "general.architecture", "llama"), "%s: general.architecture is not \"llama\"", what);
    CHECK(kv_u32(g, "general.alignment") == 32, "%s: general.alignment %lld", what, (long long)kv_u32(g, "general.alignment"));
    CHECK(kv_u32(g, "general.file_type") == file_type, "%s: general.file_type %lld, expected %d", what,
          (long long)kv_u32(g, "general.file_type"), file_type);
    struct { const char *key; int64_t expected; } ints[] = {
        { "llama.context_length", h->seq_len }, { "llama.embedding_length", h->dim },
        { "llama.block_count", h->n_layers }, { "llama.attention.head_count", h->n_heads },
        { "llama.attention.head_count_kv", h->n_kv_heads }, { "llama.rope.dimension_count", h->head_dim },
        { "llama.attention.key_length", h->head_dim }, { "llama.attention.value_length", h->head_dim },
        { "llama.vocab_size", h->vocab_size }, { "tokenizer.ggml.bos_token_id", h->bos_id },
        { "tokenizer.ggml.eos_token_id", h->eos_id }, { "tokenizer.ggml.unknown_token_id", 0 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        CHECK(kv_u32(g, ints[i].key) == ints[i].expected, "%s: %s is %lld, expected %lld", what, ints[i].key,
              (long long)kv_u32(g, ints[i].key), (long long)ints[i].expected);
    CHECK(kv_f32(g, "llama.rope.freq_base") == h->rope_theta, "%s: rope.freq_base %g", what, kv_f32(g, "llama.rope.freq_base"));
    CHECK(kv_f32(g, "llama.attention.layer_norm_rms_epsilon") == h->norm_eps, "%s: rms epsilon %g", what,
          kv_f32(g, "llama.attention.layer_norm_rms_epsilon"));
    const GgufKv *ffn = gguf_kv(g, "llama.feed_forward_length");
    int uniform = 1;
    for (int l = 1; l < h->n_layers; l++) uniform &= src->ffn_dim[l] == src->ffn_dim[0];
    if (uniform) {
        CHECK(kv_u32(g, "llama.feed_forward_length") == src->ffn_dim[0], "%s: feed_forward_length %lld, expected %d",
              what, (long long)kv_u32(g, "llama.feed_forward_length"), src->ffn_dim[0]);
    } else {
        CHECK(ffn && ffn->type == GGUF_ARRAY && ffn->array_count == (uint64_t)h->n_layers,
              "%s: per-layer FFN widths should be an array of %d", what, h->n_layers);
        for (int l = 0; l < h->n_layers; l++)
            CHECK(kv_array_word(g, "llama.feed_forward_length", (uint64_t)l, GGUF_U32) == (uint32_t)src->ffn_dim[l],
                  "%s: layer %d FFN width %u, expected %d", what, l,
                  kv_array_word(g, "llama.feed_forward_length", (uint64_t)l, GGUF_U32), src->ffn_dim[l]);
    }

    // the vocabulary: SentencePiece pieces, llama.cpp token types, our scores
    CHECK(kv_string_is(g, "tokenizer.ggml.model", "llama"), "%s: tokenizer.ggml.model is not \"llama\"", what);
    const GgufKv *tokens = gguf_kv(g, "tokenizer.ggml.tokens");
    CHECK(tokens && tokens->array_count == (uint64_t)h->vocab_size, "%s: %llu tokens, expected %d", what,
          tokens ? (unsigned long long)tokens->array_count : 0ull, h->vocab_size);
    Tokenizer tok;
    CHECK(build_tokenizer_from_memory(&tok, src->tokenizer, src->tokenizer_size, h->vocab_size) == NULL, "%s: tokenizer", what);
    int space = str_lookup(" ", &tok), byte_a = str_lookup("<0x41>", &tok), letter = str_lookup("a", &tok);
    struct { int id; const char *piece; uint32_t type; } expected[] = {
        { 0, "<unk>", GGUF_TOKEN_UNKNOWN }, { h->bos_id, "<s>", GGUF_TOKEN_CONTROL }, { h->eos_id, "</s>", GGUF_TOKEN_CONTROL },
        { space, "\xE2\x96\x81", GGUF_TOKEN_NORMAL }, { byte_a, "<0x41>", GGUF_TOKEN_BYTE }, { letter, "a", GGUF_TOKEN_NORMAL },
    };
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++) {
        if (expected[i].id < 0) continue;
        char *piece = kv_array_string(g, "tokenizer.ggml.tokens", (uint64_t)expected[i].id);
        uint32_t type = kv_array_word(g, "tokenizer.ggml.token_type", (uint64_t)expected[i].id, GGUF_I32);
        CHECK(strcmp(piece, expected[i].piece) == 0 && type == expected[i].type,
              "%s: token %d is \"%s\" of type %u, expected \"%s\" of type %u", what, expected[i].id, piece, type,
              expected[i].piece, expected[i].type);
        free(piece);
    }
    int scores_equal = 1;
    for (int i = 0; i < h->vocab_size; i++) {
        uint32_t bits = kv_array_word(g, "tokenizer.ggml.scores", (uint64_t)i, GGUF_F32);
        scores_equal &= memcmp(&bits, &tok.scores[i], 4) == 0;
    }
    CHECK(scores_equal, "%s: tokenizer.ggml.scores differ from the tokenizer's scores", what);
    free_tokenizer(&tok);
}

// Names, shapes and types of every tensor: matrices in matrix_type, norms f32,
// output.weight only when the classifier is not tied.
static void check_tensor_infos(const GgufFile *g, const Source *src, uint32_t matrix_type, const char *what) {
    Plan plan = make_plan(src, TYPE_F32, 0);
    uint64_t expected_count = 0;
    for (int i = 0; i < plan.count; i++) {
        const PlannedTensor *t = &plan.tensors[i];
        if (t->kind == K_TOKENIZER) continue;
        expected_count++;
        char name[TENSOR_NAME_LEN];
        gguf_tensor_name(src, t, name, sizeof name);
        const GgufInfo *info = gguf_info(g, name);
        CHECK(info != NULL, "%s: tensor %s (our %s) is missing", what, name, t->entry.name);
        if (!info) continue;
        int vector = is_norm_kind(t->kind);
        uint32_t type = vector ? GGML_TYPE_F32 : matrix_type;
        CHECK(info->n_dims == (vector ? 1u : 2u) && info->dims[0] == t->entry.cols && (vector || info->dims[1] == t->entry.rows),
              "%s: %s has %u dims {%llu, %llu}, expected {cols %u, rows %u}", what, name, info->n_dims,
              (unsigned long long)info->dims[0], (unsigned long long)info->dims[1], t->entry.cols, t->entry.rows);
        CHECK(info->type == type, "%s: %s has ggml type %u, expected %u", what, name, info->type, type);
    }
    CHECK(g->n_tensors == expected_count, "%s: %llu tensors, expected %llu", what, (unsigned long long)g->n_tensors,
          (unsigned long long)expected_count);
    CHECK((gguf_info(g, "output.weight") != NULL) == !(src->header.flags & FLAG_TIED_CLASSIFIER),
          "%s: output.weight present must mean an untied classifier", what);
    free(plan.tensors);
}

// ---- Q4_0: the int4 checkpoint's nibbles and scales, block for block

static void check_q4_0_equals_checkpoint(const GgufFile *g, const char *q4_path, const Source *src, const char *what) {
    Transformer model;
    open_checkpoint(&model, q4_path);
    Plan plan = make_plan(src, TYPE_F32, 0);
    int mismatched_tensors = 0;
    for (int i = 0; i < plan.count; i++) {
        const PlannedTensor *t = &plan.tensors[i];
        if (t->kind == K_TOKENIZER) continue;
        char name[TENSOR_NAME_LEN];
        gguf_tensor_name(src, t, name, sizeof name);
        const GgufInfo *info = gguf_info(g, name);
        const Tensor *w = checkpoint_tensor(&model, t);
        if (!info) continue;
        const uint8_t *data = tensor_data(g, info);
        int equal = 1;
        if (w->type == TYPE_F32) {
            equal = info->type == GGML_TYPE_F32 && memcmp(data, w->data, sizeof(float) * (size_t)w->cols) == 0;
        } else {
            int blocks = w->cols / 32;
            uint8_t *nibbles = malloc((size_t)w->cols / 2);
            uint16_t *scales = malloc(sizeof(uint16_t) * (size_t)blocks);
            for (int r = 0; r < w->rows && equal; r++) {
                read_row_codes(w, r, nibbles, scales);
                for (int b = 0; b < blocks && equal; b++) {
                    BlockQ4_0 block;
                    memcpy(&block, data + ((size_t)r * blocks + b) * sizeof block, sizeof block);
                    equal = block.d == scales[b] && memcmp(block.qs, nibbles + 16 * b, 16) == 0;
                    if (!equal)
                        fprintf(stderr, "  %s row %d block %d: d 0x%04x vs scale 0x%04x\n", name, r, b, block.d, scales[b]);
                }
            }
            free(nibbles);
            free(scales);
        }
        if (!equal) mismatched_tensors++;
        CHECK(equal, "%s: %s differs from the int4 checkpoint's %s", what, name, t->entry.name);
    }
    CHECK(mismatched_tensors == 0, "%s: %d tensors differ from runq's weights", what, mismatched_tensors);
    free(plan.tensors);
    free_transformer(&model);
}

static int same_tensor_data(const GgufFile *a, const GgufFile *b) {
    if (a->n_tensors != b->n_tensors) return 0;
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const GgufInfo *x = &a->infos[i], *y = gguf_info(b, x->name);
        if (!y || y->type != x->type || info_nbytes(x) != info_nbytes(y)
            || memcmp(tensor_data(a, x), tensor_data(b, y), info_nbytes(x)) != 0) return 0;
    }
    return 1;
}

static void test_q4_0(void) {
    // untied, GQA 2, two layers
    const char *shape = "dim=64,ffn=96,layers=2,heads=4,kv_heads=2,vocab=300,seq_len=64,tied=0";
    Source src = { 0 };
    open_random(&src, shape, 7);
    synthetic_tokenizer(&src);
    char q4[4096], gguf[4096], repacked[4096];
    path_in_work_dir(q4, sizeof q4, "random.q4.bin");
    path_in_work_dir(gguf, sizeof gguf, "random.q4_0.gguf");
    path_in_work_dir(repacked, sizeof repacked, "repacked.q4_0.gguf");
    write_checkpoint(&src, q4, TYPE_Q4, 32, 1);
    write_gguf(&src, gguf, GGML_TYPE_Q4_0, "random", 1);

    GgufFile g;
    CHECK(gguf_read(&g, gguf), "%s: the reader could not parse it (truncated or malformed)", gguf);
    check_metadata(&g, &src, GGUF_FILE_MOSTLY_Q4_0, "q4_0");
    check_tensor_infos(&g, &src, GGML_TYPE_Q4_0, "q4_0");
    check_layout(&g, "q4_0");
    check_q4_0_equals_checkpoint(&g, q4, &src, "q4_0 from random weights");

    // from the int4 checkpoint: its nibbles and scales copied, not re-quantized
    Source checkpoint = { 0 };
    open_checkpoint_source(&checkpoint, q4);
    write_gguf(&checkpoint, repacked, GGML_TYPE_Q4_0, "random", 1);
    GgufFile r;
    CHECK(gguf_read(&r, repacked), "%s: unreadable", repacked);
    CHECK(same_tensor_data(&g, &r), "a Q4_0 GGUF re-packed from the int4 checkpoint should hold the same bytes as one from its source");
    check_q4_0_equals_checkpoint(&r, q4, &src, "q4_0 from the int4 checkpoint");
    gguf_free(&r);
    free_source(&checkpoint);
    gguf_free(&g);
    free_source(&src);
}

// f32 tensors are the source's floats exactly; tied classifier, head_dim other
// than dim/heads, and per-layer FFN widths (a structurally pruned model).
static void test_f32(void) {
    const char *shape = "dim=64,ffn=80,layers=3,heads=2,kv_heads=1,head_dim=40,vocab=259,seq_len=32,tied=1";
    Source src = { 0 };
    open_random(&src, shape, 11);
    synthetic_tokenizer(&src);
    src.ffn_dim[1] = 48;
    char f32[4096], gguf[4096];
    path_in_work_dir(f32, sizeof f32, "random.f32.bin");
    path_in_work_dir(gguf, sizeof gguf, "random.f32.gguf");
    write_checkpoint(&src, f32, TYPE_F32, 0, 1);
    write_gguf(&src, gguf, GGML_TYPE_F32, "random", 1);
    GgufFile g;
    CHECK(gguf_read(&g, gguf), "%s: unreadable", gguf);
    check_metadata(&g, &src, GGUF_FILE_ALL_F32, "f32");
    check_tensor_infos(&g, &src, GGML_TYPE_F32, "f32");
    check_layout(&g, "f32");
    Transformer model;
    open_checkpoint(&model, f32);
    Plan plan = make_plan(&src, TYPE_F32, 0);
    int exact = 1;
    for (int i = 0; i < plan.count; i++) {
        if (plan.tensors[i].kind == K_TOKENIZER) continue;
        char name[TENSOR_NAME_LEN];
        gguf_tensor_name(&src, &plan.tensors[i], name, sizeof name);
        const GgufInfo *info = gguf_info(&g, name);
        const Tensor *w = checkpoint_tensor(&model, &plan.tensors[i]);
        int same = info && memcmp(tensor_data(&g, info), w->data, sizeof(float) * (size_t)w->rows * w->cols) == 0;
        CHECK(same, "f32: %s differs from the fp32 checkpoint's %s", name, plan.tensors[i].entry.name);
        exact &= same;
    }
    CHECK(exact, "f32 GGUF tensors should be the fp32 checkpoint's floats bit for bit");
    free(plan.tensors);
    free_transformer(&model);
    gguf_free(&g);
    free_source(&src);
}

// Q8_0: d = max|w|/127 in fp16, every weight within half a step of d*q.
static void test_q8_0(void) {
    const char *shape = "dim=96,ffn=128,layers=1,heads=3,kv_heads=1,vocab=260,seq_len=32";
    Source src = { 0 };
    open_random(&src, shape, 13);
    synthetic_tokenizer(&src);
    char gguf[4096];
    path_in_work_dir(gguf, sizeof gguf, "random.q8_0.gguf");
    write_gguf(&src, gguf, GGML_TYPE_Q8_0, "random", 1);
    GgufFile g;
    CHECK(gguf_read(&g, gguf), "%s: unreadable", gguf);
    check_metadata(&g, &src, GGUF_FILE_MOSTLY_Q8_0, "q8_0");
    check_tensor_infos(&g, &src, GGML_TYPE_Q8_0, "q8_0");
    check_layout(&g, "q8_0");
    Plan plan = make_plan(&src, TYPE_F32, 0);
    const int kinds[] = { K_EMBED, K_WQ, K_W2 };
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        const PlannedTensor *t = planned(&plan, kinds[k], kinds[k] == K_EMBED ? -1 : 0);
        char name[TENSOR_NAME_LEN];
        gguf_tensor_name(&src, t, name, sizeof name);
        const GgufInfo *info = gguf_info(&g, name);
        if (!info) continue;
        int rows = (int)t->entry.rows, cols = (int)t->entry.cols, blocks = cols / 32;
        float *w = malloc(sizeof(float) * (size_t)rows * cols);
        src.read_rows(&src, t, 0, rows, w);
        double worst = 0;   // error in units of the block's step
        int scales_right = 1;
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < blocks; b++) {
                BlockQ8_0 block;
                memcpy(&block, tensor_data(&g, info) + ((size_t)r * blocks + b) * sizeof block, sizeof block);
                const float *x = w + (size_t)r * cols + 32 * b;
                float amax = 0, d = fp16_to_fp32(block.d);
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
                scales_right &= block.d == fp32_to_fp16(amax / 127.0f);
                for (int j = 0; j < 32; j++) worst = fmax(worst, fabs(x[j] - d * block.qs[j]) / d);
            }
        CHECK(scales_right, "q8_0: %s: a block's scale is not fp16(max|w|/127)", name);
        CHECK(worst <= 0.5 + 1e-3, "q8_0: %s: a weight is %.3f steps from its value (at most 0.5 allowed)", name, worst);
        free(w);
    }
    free(plan.tensors);
    gguf_free(&g);
    free_source(&src);
}

// ---- refusals: export exits with an error and leaves no file behind

static int exits_with_error(Source *src, const char *path, uint32_t type) {
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        write_gguf(src, path, type, "refused", 1);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) != 0;
}

static int leftover_files(const char *prefix) {
    DIR *dir = opendir(work_dir);
    int count = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) count += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (dir) closedir(dir);
    return count;
}

static void test_refusals(void) {
    char path[4096];
    path_in_work_dir(path, sizeof path, "refused.gguf");
    Source src = { 0 };
    open_random(&src, "dim=64,ffn=172,layers=1,heads=4,kv_heads=4,vocab=300,seq_len=32", 3);   // stories260K's FFN width
    synthetic_tokenizer(&src);
    CHECK(exits_with_error(&src, path, GGML_TYPE_Q4_0), "Q4_0 of a matrix with 172 columns should be refused");
    CHECK(exits_with_error(&src, path, GGML_TYPE_Q8_0), "Q8_0 of a matrix with 172 columns should be refused");
    CHECK(leftover_files("refused.gguf") == 0, "a refused GGUF export left a file in %s", work_dir);
    free(src.tokenizer);
    src.tokenizer = NULL;
    CHECK(exits_with_error(&src, path, GGML_TYPE_F32), "a GGUF without a tokenizer should be refused");
    CHECK(leftover_files("refused.gguf") == 0, "a refused GGUF export left a file in %s", work_dir);
    free_source(&src);
}

// ---- the real stories260K: our f32 GGUF against the reference stories260K.gguf
// (made by llama.cpp's tools from the same llama2.c checkpoint). Equal attn_q and
// attn_k prove that our Q/K row order is the one llama.cpp's "llama" rotates.

static void test_stories260K_reference(const char *shared) {
    char bin[4096], tok[4096], reference[4096], ours[4096];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", shared);
    snprintf(tok, sizeof tok, "%s/models/tok512.bin", shared);
    snprintf(reference, sizeof reference, "%s/models/stories260K.gguf", shared);
    if (access(bin, R_OK) != 0 || access(tok, R_OK) != 0 || access(reference, R_OK) != 0) {
        SKIP("%s, tok512.bin or stories260K.gguf is absent: GGUF not compared with the reference file", bin);
        return;
    }
    Source src = { 0 };
    open_legacy(&src, bin);
    read_tokenizer_bin(&src, tok);
    path_in_work_dir(ours, sizeof ours, "stories260K.f32.gguf");
    write_gguf(&src, ours, GGML_TYPE_F32, "stories260K", 1);
    GgufFile a, b;
    CHECK(gguf_read(&a, ours) && gguf_read(&b, reference), "stories260K: cannot read %s or %s", ours, reference);
    check_layout(&a, "stories260K f32");
    int equal_tensors = 0;
    for (uint64_t i = 0; i < a.n_tensors; i++) {
        const GgufInfo *x = &a.infos[i], *y = gguf_info(&b, x->name);
        int same = y && x->type == y->type && x->n_dims == y->n_dims && x->dims[0] == y->dims[0] && x->dims[1] == y->dims[1]
                && memcmp(tensor_data(&a, x), tensor_data(&b, y), info_nbytes(x)) == 0;
        CHECK(same, "stories260K: our %s differs from the reference GGUF's", x->name);
        equal_tensors += same;
    }
    printf("  stories260K: %d of %llu tensors bit-identical to the reference GGUF (attn_q/attn_k included)\n",
           equal_tensors, (unsigned long long)a.n_tensors);
    const char *arrays[] = { "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type" };
    for (size_t k = 0; k < 3; k++) {
        const GgufKv *x = gguf_kv(&a, arrays[k]), *y = gguf_kv(&b, arrays[k]);
        int same = x && y && x->array_count == y->array_count && x->array_type == y->array_type;
        for (uint64_t i = 0; same && i < x->array_count; i++) {
            if (x->array_type == GGUF_STRING) {
                char *p = kv_array_string(&a, arrays[k], i), *q = kv_array_string(&b, arrays[k], i);
                if (strcmp(p, q) != 0) { fprintf(stderr, "  token %llu: ours \"%s\", reference \"%s\"\n", (unsigned long long)i, p, q); same = 0; }
                free(p);
                free(q);
            } else {
                same = kv_array_word(&a, arrays[k], i, x->array_type) == kv_array_word(&b, arrays[k], i, y->array_type);
            }
        }
        CHECK(same, "stories260K: %s differs from the reference GGUF's", arrays[k]);
    }
    gguf_free(&a);
    gguf_free(&b);
    free_source(&src);
}

// ---- reading GGUF (export's GGUF source)

// Every weight tensor of two checkpoints, byte for byte (the tokenizer aside).
static int same_weights(const char *a_path, const char *b_path, const char *what) {
    Transformer a, b;
    open_checkpoint(&a, a_path);
    open_checkpoint(&b, b_path);
    const FileHeader *h = (const FileHeader *)a.file_data;
    const TensorEntry *table = (const TensorEntry *)(a.file_data + tensor_table_offset(h->version, h->n_layers));
    int same = 1, compared = 0;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        if (table[i].type == TYPE_BLOB) continue;
        const TensorEntry *other = find_tensor(&b, table[i].name);
        if (!other && strcmp(table[i].name, "output") == 0 && b.config.tied_classifier)
            other = find_tensor(&b, "tok_embeddings");   // a tied classifier is the embedding table
        int equal = other && other->nbytes == table[i].nbytes && other->type == table[i].type
                    && memcmp(a.file_data + table[i].offset, b.file_data + other->offset, table[i].nbytes) == 0;
        CHECK(equal, "%s: tensor %s differs", what, table[i].name);
        same &= equal;
        compared++;
    }
    free_transformer(&a);
    free_transformer(&b);
    return same && compared > 0;
}

static const char *tokenizer_strings[] = {
    "Hello, world!", "Once upon a time", "   three leading", "tabs\tand\nnewlines\n\n", "digits 0123456789 3.14159",
    "Accents: caf\xc3\xa9 na\xc3\xafve", "CJK: \xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c",
    "Emoji: \xf0\x9f\x98\x80\xf0\x9f\x9a\x80", "\xf0\x9d\x94\x98\xf0\x9d\x94\xab byte fallback", "<s> literal tags </s>", "",
};

// The tokenizer export builds from a GGUF's metadata encodes like the reference tokenizer.bin.
static void check_same_encoding(const Source *gguf, const char *tokenizer_bin, const char *what) {
    size_t size;
    uint8_t *data = read_whole_file(tokenizer_bin, &size);
    Tokenizer want, got;
    CHECK(!build_tokenizer_from_memory(&want, data, size, gguf->header.vocab_size), "%s: %s does not parse", what, tokenizer_bin);
    CHECK(!build_tokenizer_from_memory(&got, gguf->tokenizer, gguf->tokenizer_size, gguf->header.vocab_size),
          "%s: the tokenizer from GGUF metadata does not parse", what);
    want.bos_id = got.bos_id = 1;
    want.eos_id = got.eos_id = 2;
    for (size_t i = 0; i < sizeof tokenizer_strings / sizeof *tokenizer_strings; i++) {
        const char *text = tokenizer_strings[i];
        int *a = calloc(strlen(text) + 3, sizeof(int)), *b = calloc(strlen(text) + 3, sizeof(int));
        int na = encode(&want, text, 1, 0, a), nb = encode(&got, text, 1, 0, b);
        CHECK(na == nb && memcmp(a, b, sizeof(int) * na) == 0, "%s: \"%s\" encodes differently (%d vs %d ids)", what, text, nb, na);
        free(a);
        free(b);
    }
    free_tokenizer(&want);
    free_tokenizer(&got);
    free(data);
}

static void test_gguf_import(const char *shared) {
    // our own Q4_0 GGUF comes back as the very same int4 blocks
    Source src = { 0 };
    open_random(&src, "dim=96,ffn=160,layers=2,heads=4,kv_heads=2,vocab=300,seq_len=32,tied=0", 17);
    synthetic_tokenizer(&src);
    char direct[4096], gguf[4096], back[4096];
    path_in_work_dir(direct, sizeof direct, "import.direct.q4.bin");
    path_in_work_dir(gguf, sizeof gguf, "import.q4_0.gguf");
    path_in_work_dir(back, sizeof back, "import.back.q4.bin");
    write_checkpoint(&src, direct, TYPE_Q4, 32, 1);
    write_gguf(&src, gguf, GGML_TYPE_Q4_0, "random", 1);
    free_source(&src);
    Source imported = { 0 };
    open_gguf(&imported, gguf);
    CHECK(imported.header.dim == 96 && imported.header.n_kv_heads == 2 && !(imported.header.flags & FLAG_TIED_CLASSIFIER)
          && imported.ffn_dim[1] == 160, "GGUF metadata read back wrong");
    write_checkpoint(&imported, back, TYPE_Q4, 32, 1);
    free_source(&imported);
    CHECK(same_weights(direct, back, "Q4_0 GGUF -> int4"), "a Q4_0 GGUF should import as the int4 blocks it was written from");

    char bin[4096], tok[4096], tiny[4096], out_a[4096], out_b[4096], repo_tokenizer[4096];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", shared);
    snprintf(tok, sizeof tok, "%s/models/tok512.bin", shared);
    snprintf(gguf, sizeof gguf, "%s/models/stories260K.gguf", shared);
    snprintf(tiny, sizeof tiny, "%s/models/llama-2-tiny-random.gguf", shared);
    if (access(gguf, R_OK) != 0 || access(tiny, R_OK) != 0) {
        SKIP("%s is absent: GGUF import of real files not tested", gguf);
        return;
    }
    // stories260K.gguf holds the weights of stories260K.bin: the fp32 exports are equal
    Source from_gguf = { 0 }, from_bin = { 0 };
    open_gguf(&from_gguf, gguf);
    open_legacy(&from_bin, bin);
    read_tokenizer_bin(&from_bin, tok);
    path_in_work_dir(out_a, sizeof out_a, "s260k.from-gguf.f32.bin");
    path_in_work_dir(out_b, sizeof out_b, "s260k.from-bin.f32.bin");
    write_checkpoint(&from_gguf, out_a, TYPE_F32, 0, 1);
    write_checkpoint(&from_bin, out_b, TYPE_F32, 0, 1);
    CHECK(same_weights(out_a, out_b, "stories260K.gguf vs .bin"), "stories260K.gguf should export the weights of stories260K.bin");
    check_same_encoding(&from_gguf, tok, "stories260K.gguf");
    free_source(&from_gguf);
    free_source(&from_bin);

    // llama.cpp's converter wrote this one (F16, the real Llama 2 vocabulary): it runs, and its
    // tokenizer encodes exactly as the project's tokenizer.bin
    Source tiny_src = { 0 };
    open_gguf(&tiny_src, tiny);
    snprintf(repo_tokenizer, sizeof repo_tokenizer, "tokenizer.bin");
    check_same_encoding(&tiny_src, repo_tokenizer, "llama-2-tiny-random.gguf");
    path_in_work_dir(out_a, sizeof out_a, "tiny.q4.bin");
    write_checkpoint(&tiny_src, out_a, TYPE_Q4, 32, 1);
    free_source(&tiny_src);
    Transformer t;
    build_transformer(&t, out_a, 8, 1);
    const float *logits = forward(&t, 1, 0);
    int finite = 1;
    for (int i = 0; i < t.config.vocab_size; i++) finite &= isfinite(logits[i]);
    CHECK(finite && t.config.vocab_size == 32000 && t.config.dim == 8, "llama-2-tiny-random.gguf does not run as int4");
    free_transformer(&t);
}

// ---- llama.cpp's block formats: test/data/ggml-blocks.gguf holds, for each
// block type export reads, two rows of 256 weights quantized by llama.cpp
// (tools/llamacpp/quantize.c blocks) and the floats llama.cpp's own to_float
// makes of them. export's dequantizers must give those floats bit for bit.

static void test_ggml_blocks(void) {
    const char *path = "test/data/ggml-blocks.gguf";
    GgufFile g;
    CHECK(gguf_read(&g, path), "%s: unreadable", path);
    const char *expected_types[] = { "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K" };
    int checked = 0;
    for (size_t i = 0; i < sizeof expected_types / sizeof *expected_types; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.expected", expected_types[i]);
        const GgufInfo *blocks = gguf_info(&g, expected_types[i]), *expected = gguf_info(&g, name);
        const GgmlFormat *format = blocks ? ggml_format(blocks->type) : NULL;
        CHECK(blocks && expected && format && expected->type == GGML_TYPE_F32 && blocks->n_dims == 2
              && blocks->dims[0] == expected->dims[0] && blocks->dims[1] == expected->dims[1]
              && blocks->dims[0] % format->block_weights == 0
              && g.data_start + blocks->offset + blocks->dims[1] * ggml_row_bytes(format, (int64_t)blocks->dims[0]) <= g.size
              && g.data_start + expected->offset + 4 * expected->dims[0] * expected->dims[1] <= g.size,
              "%s: tensor %s or %s missing, of a type export does not read, of another shape or truncated", path,
              expected_types[i], name);
        if (!blocks || !expected || !format || blocks->dims[0] % format->block_weights) continue;
        CHECK(strcasecmp(format->name, expected_types[i]) == 0, "%s: ggml type %u is %s in export's table", expected_types[i],
              blocks->type, format->name);
        int64_t cols = (int64_t)blocks->dims[0], rows = (int64_t)blocks->dims[1];
        float *got = calloc((size_t)(rows * cols), sizeof(float));
        for (int64_t r = 0; r < rows; r++)
            format->dequantize_row(tensor_data(&g, blocks) + (size_t)r * ggml_row_bytes(format, cols), cols / format->block_weights,
                                   got + r * cols);
        int64_t differ = 0;
        for (int64_t j = 0; j < rows * cols; j++) differ += memcmp(&got[j], tensor_data(&g, expected) + 4 * j, 4) != 0;
        CHECK(differ == 0, "%s: %lld of %lld weights differ from llama.cpp's dequantization", expected_types[i],
              (long long)differ, (long long)(rows * cols));
        checked += differ == 0;
        free(got);
    }
    printf("  ggml-blocks.gguf: %d block types dequantized bit for bit as llama.cpp does\n", checked);
    gguf_free(&g);
}

int main(int argc, char **argv) {
    const char *shared = argc > 1 ? argv[1] : "../shared";
    if (!mkdtemp(work_dir)) { perror("mkdtemp"); return 1; }
    test_q4_0();
    test_f32();
    test_q8_0();
    test_refusals();
    test_ggml_blocks();
    test_stories260K_reference(shared);
    test_gguf_import(shared);
    char command[4200];
    snprintf(command, sizeof command, "rm -rf %s", work_dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", work_dir);
    return check_summary("test_gguf");
}
