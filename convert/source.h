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
                  K_ROPE_FREQS };

typedef struct {
    TensorEntry entry;       // as written to the file
    int kind;                // TensorKind
    int layer;               // -1 for model-wide tensors
} PlannedTensor;

typedef struct Source Source;
struct Source {
    FileHeader header;       // everything but magic, version and n_tensors
    int *ffn_dim;            // (n_layers,)
    uint8_t *tokenizer;      // llama2.c tokenizer.bin bytes, or NULL
    size_t tokenizer_size;
    float *rope_freqs;       // (head_dim/2,) RoPE frequency divisors (Llama 3.1 scaling), or NULL;
                             // written as the tensor rope_freqs, never asked of read_rows
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
    free(src->tokenizer);
    free(src->rope_freqs);
    memset(src, 0, sizeof *src);
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
