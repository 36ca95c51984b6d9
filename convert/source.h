/*
convert/source.h — what export converts from and to: the plan of the output
(every tensor's name, kind, shape and type) and the Source interface through
which every input (llama2.c .bin, Edge LLM checkpoint, Hugging Face
directory, GGUF, random weights) and every wrapper (a LoRA merged in, layers
dropped, calibrated rounding) hands over its header, its tokenizer and its
rows, one chunk at a time.

What it is not: any one reader; those follow in convert/sources.h,
convert/hf.h, convert/lora.h and convert/gguf_read.h.

Include after: runq.c.
*/

#ifndef EDGE_CONVERT_SOURCE_H
#define EDGE_CONVERT_SOURCE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// ----------------------------------------------------------------------------
// The export plan: the header and every tensor's name, kind, shape and type.

enum TensorKind { K_EMBED, K_ATTN_NORM, K_WQ, K_WK, K_WV, K_WO, K_FFN_NORM, K_W1, K_W2, K_W3, K_NORM, K_OUTPUT, K_TOKENIZER,
                  K_ROPE_FREQS,
                  // the families beyond Llama (version 4: runq.c's format)
                  K_BQ, K_BK, K_BV, K_Q_NORM, K_K_NORM, K_POST_ATTN_NORM, K_POST_FFN_NORM, K_ROPE_FREQS_LONG,
                  N_TENSOR_KINDS };

// Norm weights, biases and RoPE divisors: one f32 row, never quantized.
static int is_vector_kind(int kind) {
    return kind == K_ATTN_NORM || kind == K_FFN_NORM || kind == K_NORM || kind == K_ROPE_FREQS || kind == K_BQ
        || kind == K_BK || kind == K_BV || kind == K_Q_NORM || kind == K_K_NORM || kind == K_POST_ATTN_NORM
        || kind == K_POST_FFN_NORM || kind == K_ROPE_FREQS_LONG;
}

// The RMSNorm weights among them.
static int is_norm_kind(int kind) {
    return kind == K_ATTN_NORM || kind == K_FFN_NORM || kind == K_NORM || kind == K_Q_NORM || kind == K_K_NORM
        || kind == K_POST_ATTN_NORM || kind == K_POST_FFN_NORM;
}

// Vectors a Source does not hold as tensors but computes (RoPE divisors from
// config.json): written from Source.rope_freqs and .rope_freqs_long.
static int is_computed_kind(int kind) { return kind == K_ROPE_FREQS || kind == K_ROPE_FREQS_LONG || kind == K_TOKENIZER; }

typedef struct {
    TensorEntry entry;       // as written to the file
    int kind;                // TensorKind
    int layer;               // -1 for model-wide tensors
} PlannedTensor;

typedef struct Source Source;
struct Source {
    FileHeader header;       // everything but magic, version and n_tensors
    ModelSettings settings;  // zero for a Llama model (runq.c's format)
    int *ffn_dim;            // (n_layers,)
    uint32_t *layer_kind;    // (n_layers,) LAYER_* bits, or NULL: all 0
    uint8_t *tokenizer;      // llama2.c tokenizer.bin bytes, or NULL
    size_t tokenizer_size;
    float *rope_freqs;       // (rotary_dim/2,) RoPE frequency divisors (scaled RoPE), or NULL;
                             // written as the tensor rope_freqs, never asked of read_rows
    float *rope_freqs_long;  // (rotary_dim/2,) LongRoPE's long divisors, or NULL; likewise
    const char *description;
    // rows [begin, end) of a planned tensor as float, (end - begin, cols) into out
    void (*read_rows)(Source *src, const PlannedTensor *t, int begin, int end, float *out);
    // optional: rows [begin, end) as the codes and scales of a quantized type
    // (TensorType) and group size, when the source already holds the tensor so
    // (a runq checkpoint; GGUF Q4_0 as Q4 of group 32); returns 0 when it does
    // not. Re-quantizing dequantized weights is not exact (the scale search may
    // land elsewhere), so these are copied instead.
    int (*read_codes)(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                      uint8_t *codes, uint16_t *scales);
    // optional: dies unless the source holds t with t's shape in a type it reads;
    // run on every tensor before any byte is written
    void (*check_tensor)(const Source *src, const PlannedTensor *t);
    // optional: each of t's input channels' weight in its rounding error
    // (cols,), or NULL: see quantize_row. Only the calibrated source, always
    // the outermost wrapper, sets it.
    const float *(*importance)(const Source *src, const PlannedTensor *t);
    void (*close)(Source *src);   // releases impl
    void *impl;
    char **inputs;           // files read, so the output never overwrites one
    int n_inputs;
};

static void free_source(Source *src) {
    if (src->close) src->close(src);
    for (int i = 0; i < src->n_inputs; i++) free(src->inputs[i]);
    free(src->inputs);
    free(src->ffn_dim);
    free(src->layer_kind);
    free(src->tokenizer);
    free(src->rope_freqs);
    free(src->rope_freqs_long);
    memset(src, 0, sizeof *src);
}

// The dims of each head RoPE turns, and a layer's kind (0 when the source has no table).
static int source_rotary_dim(const Source *src) {
    return src->settings.rotary_dim ? src->settings.rotary_dim : src->header.head_dim;
}
static uint32_t source_layer_kind(const Source *src, int layer) { return src->layer_kind ? src->layer_kind[layer] : 0; }

// Does the model need version 4 (runq.c's format): any setting, layer kind,
// flag or tensor a Llama model does not have?
static int source_needs_settings(const Source *src) {
    static const ModelSettings llama;
    int kinds = 0;
    for (int l = 0; src->layer_kind && l < src->header.n_layers; l++) kinds |= src->layer_kind[l] != 0;
    return kinds || (src->header.flags & FLAGS_OF_VERSION_4) || src->rope_freqs_long
        || memcmp(&src->settings, &llama, sizeof llama) != 0;
}

static void source_add_input(Source *src, const char *path) {
    src->inputs = realloc(src->inputs, (size_t)(src->n_inputs + 1) * sizeof(char *));
    if (!src->inputs) die("out of memory");
    src->inputs[src->n_inputs++] = strdup(path);
}

static void check_header(const FileHeader *h, const char *what) {
    if (!header_dims_ok(h))   // runq's limits: a checkpoint export writes is one runq reads
        die("%s: dimensions out of range (dim %d, layers %d, heads %d/%d, head_dim %d, vocab %d, seq_len %d; "
            "each must be positive, dim up to 65536, layers and heads up to 1024, head_dim up to 4096, "
            "vocab and seq_len up to 4194304)", what, h->dim, h->n_layers, h->n_heads, h->n_kv_heads, h->head_dim, h->vocab_size, h->seq_len);
    if (h->n_heads % h->n_kv_heads != 0) die("%s: %d heads do not divide into %d KV heads", what, h->n_heads, h->n_kv_heads);
    if (h->head_dim % 2 != 0) die("%s: head_dim %d is odd", what, h->head_dim);
}

// A Source's layer kinds, allocated on first use.
static void set_layer_kind(Source *src, int layer, uint32_t bits) {
    if (!src->layer_kind) src->layer_kind = xcalloc((size_t)src->header.n_layers, sizeof(uint32_t), "layer kinds");
    src->layer_kind[layer] |= bits;
}

// ---- RoPE's two orders. Hugging Face (and llama.cpp's GGUF of every
// architecture but llama and smollm3, whose RoPE it calls NEOX) keeps each
// head's q/k dims as [first halves | second halves] of its first rotary_dim
// dims (rotate_half; the rest pass unturned); runq rotates interleaved pairs.
// Our dim 2i+h of a head (h = 0, 1) is their dim h*rotary_dim/2 + i.
static int64_t rotate_half_index(int64_t index, int head_dim, int rotary_dim) {
    int64_t head = index / head_dim, within = index % head_dim;
    if (within >= rotary_dim) return index;
    return head * head_dim + (within % 2) * (rotary_dim / 2) + within / 2;
}

// The inverse: their dim -> ours.
static int64_t interleaved_index(int64_t index, int head_dim, int rotary_dim) {
    int64_t head = index / head_dim, within = index % head_dim, half = rotary_dim / 2;
    if (within >= rotary_dim) return index;
    return head * head_dim + (within < half ? 2 * within : 2 * (within - half) + 1);
}

// The tensors in RoPE order: q and k rows, and their biases' and norms' elements.
static int permuted_rows(int kind) { return kind == K_WQ || kind == K_WK; }
static int permuted_columns(int kind) { return kind == K_BQ || kind == K_BK || kind == K_Q_NORM || kind == K_K_NORM; }

// f to the nearest bfloat16 (ties to even), as a float: a constant a
// bfloat16 model holds in its dtype (Gemma's embedding scale).
static float round_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000u;
    memcpy(&f, &bits, 4);
    return f;
}

// ---- Files

static const uint8_t *map_file(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    *size = (size_t)st.st_size;
    if (*size == 0) die("%s is empty", path);
    void *data = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) die("cannot map %s: %s", path, strerror(errno));
    return data;
}

static char *path_join(const char *dir, const char *file) {
    size_t size = strlen(dir) + strlen(file) + 2;
    char *out = xcalloc(size, 1, "path");
    snprintf(out, size, "%s/%s", dir, file);
    return out;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

#pragma GCC diagnostic pop
#endif
