/*
quantize.c — llama.cpp's own quantizer and dequantizer, as the witnesses for
export's GGUF reader (test/test_kquant.sh). Built against the prebuilt
libraries node-llama-cpp ships (libllama, libggml-base), the way
tools/bench-vs-llamacpp builds bench-native.c:

    quantize model IN.f32.gguf OUT.gguf FTYPE [pure]
                                                llama_model_quantize, as llama-quantize does;
                                                FTYPE is llama_ftype's number (15 Q4_K_M, 18 Q6_K,
                                                2 Q4_0, 7 Q8_0); "pure": every matrix, the token
                                                embeddings and classifier included, in that type
                                                (llama-quantize --pure)
    quantize types FILE.gguf                    each tensor's name and ggml type, one a line
    quantize compare QUANT.gguf F32.gguf        every tensor of QUANT dequantized by ggml's
                                                to_float against the tensor of that name in
                                                F32.gguf (all f32), bit for bit; a summary per
                                                type; exit 1 if any weight differs
    quantize blocks OUT.gguf                    the regression file test/data/ggml-blocks.gguf:
                                                for each block type export reads, two rows of
                                                seeded floats quantized by ggml_quantize_chunk
                                                (tensor "q4_K" etc.) and what to_float makes of
                                                them ("q4_K.expected", f32)
It is not part of runq or export: a test's witness.
*/

#include "llama.h"
#include "ggml.h"
#include "gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *message, const char *detail) {
    fprintf(stderr, "quantize: %s%s\n", message, detail ? detail : "");
    exit(EXIT_FAILURE);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user_data) {
    (void)user_data;
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

// A GGUF file with its tensors' data loaded into a ggml context.
static struct gguf_context *load(const char *path, struct ggml_context **ctx) {
    struct gguf_init_params params = { .no_alloc = false, .ctx = ctx };
    struct gguf_context *g = gguf_init_from_file(path, params);
    if (!g) die("cannot read GGUF ", path);
    return g;
}

static int quantize_model(const char *in, const char *out, const char *ftype, int pure) {
    struct llama_model_quantize_params params = llama_model_quantize_default_params();
    params.ftype = (enum llama_ftype)atoi(ftype);
    params.pure = pure;
    params.nthread = 1;
    llama_log_set(quiet_log, NULL);
    if (llama_model_quantize(in, out, &params) != 0) die("llama_model_quantize failed on ", in);
    return 0;
}

static int list_types(const char *path) {
    struct ggml_context *ctx = NULL;
    struct gguf_context *g = load(path, &ctx);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++)
        printf("%s %s\n", gguf_get_tensor_name(g, i), ggml_type_name(gguf_get_tensor_type(g, i)));
    gguf_free(g);
    ggml_free(ctx);
    return 0;
}

// Counts per ggml type: tensors, weights, weights that differ.
typedef struct { int64_t tensors, weights, differ; } Tally;

static int compare(const char *quant_path, const char *f32_path) {
    struct ggml_context *qctx = NULL, *fctx = NULL;
    struct gguf_context *q = load(quant_path, &qctx), *f = load(f32_path, &fctx);
    Tally tally[GGML_TYPE_COUNT] = { { 0 } };
    int missing = 0;
    for (int64_t i = 0; i < gguf_get_n_tensors(q); i++) {
        const char *name = gguf_get_tensor_name(q, i);
        struct ggml_tensor *a = ggml_get_tensor(qctx, name), *b = ggml_get_tensor(fctx, name);
        if (!b || b->type != GGML_TYPE_F32 || ggml_nelements(a) != ggml_nelements(b) || a->ne[0] != b->ne[0]) {
            fprintf(stderr, "quantize: %s is missing from %s, or not f32 of the same shape\n", name, f32_path);
            missing++;
            continue;
        }
        int64_t n = ggml_nelements(a);
        float *want = malloc(sizeof(float) * (size_t)n);
        if (!want) die("out of memory", NULL);
        ggml_to_float_t to_float = ggml_get_type_traits(a->type)->to_float;   // none for f32 itself
        if (to_float) to_float(a->data, want, n);
        else if (a->type == GGML_TYPE_F32) memcpy(want, a->data, sizeof(float) * (size_t)n);
        else die("ggml has no to_float for the type of ", name);
        const float *got = b->data;
        Tally *t = &tally[a->type];
        t->tensors++;
        t->weights += n;
        int64_t differ = 0;
        for (int64_t j = 0; j < n; j++) differ += memcmp(&want[j], &got[j], sizeof(float)) != 0;
        if (differ) fprintf(stderr, "quantize: %s (%s): %lld of %lld weights differ\n", name, ggml_type_name(a->type),
                            (long long)differ, (long long)n);
        t->differ += differ;
        free(want);
    }
    int64_t differ = 0;
    for (int type = 0; type < GGML_TYPE_COUNT; type++) {
        if (!tally[type].tensors) continue;
        printf("%s: %lld tensors, %lld weights, %lld differ\n", ggml_type_name((enum ggml_type)type),
               (long long)tally[type].tensors, (long long)tally[type].weights, (long long)tally[type].differ);
        differ += tally[type].differ;
    }
    gguf_free(q);
    gguf_free(f);
    ggml_free(qctx);
    ggml_free(fctx);
    return differ || missing ? 1 : 0;
}

// Seeded floats with a per-row offset and scale, so blocks have nonzero mins
// and scales of both signs.
static float next_float(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*state >> 40) & 0xFFFFFF) / (float)0x1000000 - 0.5f;
}

static int write_blocks(const char *path) {
    static const enum ggml_type types[] = { GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                            GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K };
    enum { ROWS = 2, COLS = 256, N_TYPES = sizeof types / sizeof types[0] };
    struct ggml_init_params params = { .mem_size = 2 * N_TYPES * (ROWS * COLS * sizeof(float) + 1024), .mem_buffer = NULL };
    struct ggml_context *ctx = ggml_init(params);
    struct gguf_context *g = gguf_init_empty();
    gguf_set_val_str(g, "general.description", "export's GGUF block-format regression data, made by tools/llamacpp/quantize.c");
    float source[ROWS * COLS];
    uint64_t state = 42;
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) source[r * COLS + c] = (r ? 0.5f : 0.02f) + (r ? 3.0f : 0.1f) * next_float(&state);
    for (int i = 0; i < N_TYPES; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s", ggml_type_name(types[i]));
        struct ggml_tensor *blocks = ggml_new_tensor_2d(ctx, types[i], COLS, ROWS);
        ggml_set_name(blocks, name);
        ggml_quantize_chunk(types[i], source, blocks->data, 0, ROWS, COLS, NULL);
        snprintf(name, sizeof name, "%s.expected", ggml_type_name(types[i]));
        struct ggml_tensor *expected = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, COLS, ROWS);
        ggml_set_name(expected, name);
        ggml_get_type_traits(types[i])->to_float(blocks->data, expected->data, ROWS * COLS);
        gguf_add_tensor(g, blocks);
        gguf_add_tensor(g, expected);
    }
    if (!gguf_write_to_file(g, path, false)) die("cannot write ", path);
    gguf_free(g);
    ggml_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "model") == 0) return quantize_model(argv[2], argv[3], argv[4], 0);
    if (argc == 6 && strcmp(argv[1], "model") == 0 && strcmp(argv[5], "pure") == 0)
        return quantize_model(argv[2], argv[3], argv[4], 1);
    if (argc == 3 && strcmp(argv[1], "types") == 0) return list_types(argv[2]);
    if (argc == 4 && strcmp(argv[1], "compare") == 0) return compare(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "blocks") == 0) return write_blocks(argv[2]);
    die("usage: quantize model IN OUT FTYPE [pure] | types FILE | compare QUANT F32 | blocks OUT", NULL);
    return 1;
}
