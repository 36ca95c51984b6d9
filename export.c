/*
export.c — turns a model into an Edge LLM checkpoint (the format runq.c documents).

    export --int4 [-z tokenizer.bin] stories15M.bin model.q4.bin     llama2.c legacy .bin
    export --fp32 path/to/hf-model-dir model.f32.bin                  Hugging Face directory
    export --int4 model.Q4_0.gguf model.q4.bin                        a llama.cpp GGUF file
    export --random tinyllama-1.1b model.q4.bin                       seeded random weights of a real shape
    export --gguf-q4_0 model.q4.bin model.gguf                        GGUF for llama.cpp: runq's very weights

Reads one tensor (in chunks of rows) at a time and writes it straight to its
place in the output, so a 7B model never sits in memory as fp32. Writes to a
temporary file beside the output and renames it at the end: an interrupted
export leaves no half file under the final name.

It includes runq.c for the format's structs, fp16 conversion, the int4
quantizer and the tokenizer parser, so the format is defined in one place.

Reading order: JSON -> the export plan -> sources (llama2.c, Edge LLM, Hugging
Face, random; a LoRA adapter merged into any source; layers dropped) ->
tokenizers -> writing the checkpoint -> writing GGUF -> reading GGUF (a source
too) -> a calibration text's tokens -> the text through the model: Block
Influence (which layers to drop), calibrated rounding (importance, AWQ: a
source too) -> command line
*/

#ifndef PROGRAM_NAME
#define PROGRAM_NAME "export"
#endif
#ifndef TESTING
#define TESTING          // runq.c without its main
#define EXPORT_MAIN
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // export uses part of the runtime
#include "runq.c"
#pragma GCC diagnostic pop

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>

// ----------------------------------------------------------------------------
// JSON: a strict parser for config.json, safetensors headers and tokenizer.json

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct Json {
    JsonType type;
    double number;
    char *string;            // JSON_STRING: UTF-8, NUL-terminated (may hold NULs: see length)
    size_t length;
    struct Json *items;      // JSON_ARRAY / JSON_OBJECT values
    char **keys;             // JSON_OBJECT keys
    int count;
} Json;

typedef struct {
    const char *text, *end, *at;
    const char *source;      // file name for messages
    int depth;
    jmp_buf *recover;        // json_parse_untrusted: a syntax error jumps here instead of exiting,
    char *error;             // ... its message in error (the caller's buffer: it outlives the jump)
    size_t error_size;
} JsonParser;

static void json_fail(JsonParser *p, const char *what) {
    if (p->recover) {
        snprintf(p->error, p->error_size, "invalid JSON at byte %td: %s", p->at - p->text, what);
        longjmp(*p->recover, 1);
    }
    die("%s: invalid JSON at byte %td: %s", p->source, p->at - p->text, what);
}

static void json_skip_space(JsonParser *p) {
    while (p->at < p->end && (*p->at == ' ' || *p->at == '\t' || *p->at == '\n' || *p->at == '\r')) p->at++;
}

static unsigned json_hex4(JsonParser *p) {
    if (p->end - p->at < 4) json_fail(p, "short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *p->at++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else json_fail(p, "bad hex digit in \\u escape");
    }
    return v;
}

static size_t utf8_put(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// The string at p->at into *owner, which holds it from the start: a syntax
// error halfway leaves it owned by the tree, which json_free frees.
static void json_parse_string(JsonParser *p, char **owner, size_t *length) {
    p->at++;  // opening quote
    const char *start = p->at;
    while (p->at < p->end && *p->at != '"') p->at += (*p->at == '\\') ? 2 : 1;
    if (p->at >= p->end) json_fail(p, "unterminated string");
    char *out = *owner = xcalloc((size_t)(p->at - start) + 1, 1, "JSON string");   // unescaping only shrinks
    size_t n = 0;
    p->at = start;
    while (*p->at != '"') {
        unsigned char c = (unsigned char)*p->at++;
        if (c < 0x20) json_fail(p, "control character in string");
        if (c != '\\') { out[n++] = (char)c; continue; }
        char e = *p->at++;
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp = json_hex4(p);
            if (cp >= 0xD800 && cp < 0xDC00) {        // surrogate pair
                if (p->end - p->at < 6 || p->at[0] != '\\' || p->at[1] != 'u') json_fail(p, "lone high surrogate");
                p->at += 2;
                unsigned low = json_hex4(p);
                if (low < 0xDC00 || low >= 0xE000) json_fail(p, "bad low surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                json_fail(p, "lone low surrogate");
            }
            n += utf8_put(out + n, cp);
            break;
        }
        default: json_fail(p, "unknown escape");
        }
    }
    p->at++;  // closing quote
    out[n] = '\0';
    *length = n;
}

static void json_parse_value(JsonParser *p, Json *out);

static void json_parse_container(JsonParser *p, Json *out, int is_object) {
    char close = is_object ? '}' : ']';
    int capacity = 0;
    out->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    p->at++;
    json_skip_space(p);
    if (p->at < p->end && *p->at == close) { p->at++; return; }
    for (;;) {
        if (out->count == capacity) {
            capacity = capacity ? capacity * 2 : 8;
            out->items = realloc(out->items, (size_t)capacity * sizeof(Json));
            if (is_object) out->keys = realloc(out->keys, (size_t)capacity * sizeof(char *));
            if (!out->items || (is_object && !out->keys)) die("out of memory parsing %s", p->source);
        }
        // the entry joins the tree empty, before it is parsed, so that a
        // syntax error inside it leaves a tree json_free frees whole
        int entry = out->count++;
        memset(&out->items[entry], 0, sizeof(Json));
        if (is_object) out->keys[entry] = NULL;
        json_skip_space(p);
        if (is_object) {
            if (p->at >= p->end || *p->at != '"') json_fail(p, "expected a key");
            size_t key_length;
            json_parse_string(p, &out->keys[entry], &key_length);
            json_skip_space(p);
            if (p->at >= p->end || *p->at != ':') json_fail(p, "expected ':'");
            p->at++;
        }
        json_parse_value(p, &out->items[entry]);
        json_skip_space(p);
        if (p->at < p->end && *p->at == ',') { p->at++; continue; }
        if (p->at < p->end && *p->at == close) { p->at++; return; }
        json_fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static void json_parse_value(JsonParser *p, Json *out) {
    json_skip_space(p);
    if (p->at >= p->end) json_fail(p, "unexpected end");
    if (++p->depth > 64) json_fail(p, "nested too deeply");
    char c = *p->at;
    if (c == '{' || c == '[') {
        json_parse_container(p, out, c == '{');
    } else if (c == '"') {
        out->type = JSON_STRING;
        json_parse_string(p, &out->string, &out->length);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        char *end;
        out->type = JSON_NUMBER;
        out->number = strtod(p->at, &end);
        // strtod also reads nan, inf and hex, which JSON has not (a NaN shape is no number to cast)
        if (end == p->at || end > p->end || strspn(p->at, "-+.0123456789eE") < (size_t)(end - p->at))
            json_fail(p, "bad number");
        p->at = end;
    } else if (p->end - p->at >= 4 && memcmp(p->at, "true", 4) == 0) {
        out->type = JSON_TRUE; p->at += 4;
    } else if (p->end - p->at >= 5 && memcmp(p->at, "false", 5) == 0) {
        out->type = JSON_FALSE; p->at += 5;
    } else if (p->end - p->at >= 4 && memcmp(p->at, "null", 4) == 0) {
        out->type = JSON_NULL; p->at += 4;
    } else {
        json_fail(p, "unexpected character");
    }
    p->depth--;
}

// text must be NUL-terminated at text[size] (strtod relies on it)
static Json json_parse(const char *text, size_t size, const char *source) {
    JsonParser p = { text, text + size, text, source, 0, NULL, NULL, 0 };
    Json root = { 0 };
    json_parse_value(&p, &root);
    json_skip_space(&p);
    if (p.at != p.end) json_fail(&p, "trailing characters");
    return root;
}

static void json_free(Json *j);

// The same for text from the network: a syntax error returns 0, with its
// message in error, and frees what was parsed, instead of exiting.
__attribute__((unused))   // used by server.c
static int json_parse_untrusted(const char *text, size_t size, Json *root, char *error, size_t error_size) {
    jmp_buf recover;
    JsonParser p = { text, text + size, text, "request", 0, &recover, error, error_size };
    memset(root, 0, sizeof *root);
    if (setjmp(recover)) {   // root points to the caller's tree: what was parsed is all there
        json_free(root);
        memset(root, 0, sizeof *root);
        return 0;
    }
    json_parse_value(&p, root);
    json_skip_space(&p);
    if (p.at != p.end) json_fail(&p, "trailing characters");
    return 1;
}

static void json_free(Json *j) {
    for (int i = 0; i < j->count; i++) {
        json_free(&j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->string);
}

static const Json *json_get(const Json *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < object->count; i++)
        if (strcmp(object->keys[i], key) == 0) return &object->items[i];
    return NULL;
}

static Json json_read_file(const char *path) {
    size_t size;
    uint8_t *text = read_whole_file(path, &size);
    Json root = json_parse((const char *)text, size, path);
    free(text);
    return root;
}

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

// ----------------------------------------------------------------------------
// Source: llama2.c legacy .bin (v0)

typedef struct {
    const uint8_t *data;
    size_t size;
    const float *base[K_OUTPUT + 1];   // first float of each kind (all layers back to back)
} LegacyModel;

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

static void legacy_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    LegacyModel *m = src->impl;
    size_t per_layer = (size_t)t->entry.rows * t->entry.cols;
    const float *base = m->base[t->kind] + (t->layer >= 0 ? (size_t)t->layer * per_layer : 0);
    memcpy(out, base + (size_t)begin * t->entry.cols, (size_t)(end - begin) * t->entry.cols * sizeof(float));
}

static void legacy_close(Source *src) {
    LegacyModel *m = src->impl;
    munmap((void *)m->data, m->size);
    free(m);
}

static void open_legacy(Source *src, const char *path) {
    LegacyModel *m = xcalloc(1, sizeof *m, "model");
    m->data = map_file(path, &m->size);
    if (m->size < 28) die("%s: too small to be a llama2.c checkpoint", path);
    int32_t h[7];
    memcpy(h, m->data, sizeof h);
    int shared = h[5] > 0;
    FileHeader *fh = &src->header;
    fh->dim = h[0];
    fh->n_layers = h[2];
    fh->n_heads = h[3];
    fh->n_kv_heads = h[4];
    int64_t vocab_size = shared ? h[5] : -(int64_t)h[5];   // in 64 bits: INT32_MIN has no 32-bit negation
    fh->seq_len = h[6];
    if (h[0] <= 0 || h[1] <= 0 || h[3] <= 0 || h[0] % h[3] != 0 || h[0] > 1 << 16 || h[1] > 1 << 20 || h[2] > 1024
        || h[6] > 1 << 22 || vocab_size > 1 << 22)
        die("%s: not a llama2.c checkpoint (header dim %d, hidden %d, layers %d, heads %d)", path, h[0], h[1], h[2], h[3]);
    fh->vocab_size = (int32_t)vocab_size;
    fh->head_dim = fh->dim / fh->n_heads;
    check_header(fh, path);
    fh->rope_theta = 10000.0f;
    fh->norm_eps = 1e-5f;
    fh->flags = shared ? FLAG_TIED_CLASSIFIER : 0;
    fh->bos_id = 1;
    fh->eos_id = 2;
    src->ffn_dim = xcalloc((size_t)fh->n_layers, sizeof(int), "ffn table");
    for (int l = 0; l < fh->n_layers; l++) src->ffn_dim[l] = h[1];

    size_t dim = (size_t)fh->dim, hidden = (size_t)h[1], layers = (size_t)fh->n_layers;
    size_t kv_dim = (size_t)fh->n_kv_heads * fh->head_dim, vocab = (size_t)fh->vocab_size;
    size_t sizes[K_OUTPUT + 1] = {
        [K_EMBED] = vocab * dim, [K_ATTN_NORM] = layers * dim, [K_WQ] = layers * dim * dim,
        [K_WK] = layers * kv_dim * dim, [K_WV] = layers * kv_dim * dim, [K_WO] = layers * dim * dim,
        [K_FFN_NORM] = layers * dim, [K_W1] = layers * hidden * dim, [K_W2] = layers * dim * hidden,
        [K_W3] = layers * hidden * dim, [K_NORM] = dim + (size_t)fh->seq_len * fh->head_dim, // + legacy freq_cis
        [K_OUTPUT] = shared ? 0 : vocab * dim,
    };
    const float *p = (const float *)(m->data + 28);
    size_t total = 0;
    for (int k = K_EMBED; k <= K_OUTPUT; k++) { m->base[k] = p + total; total += sizes[k]; }
    if (m->size != 28 + total * sizeof(float))
        die("%s: a llama2.c checkpoint of this header holds %zu bytes but the file has %zu (truncated?)",
            path, 28 + total * sizeof(float), m->size);
    src->impl = m;
    src->close = legacy_close;
    src->read_rows = legacy_read_rows;
    src->description = "llama2.c checkpoint";
    source_add_input(src, path);
}

// ----------------------------------------------------------------------------
// Source: an Edge LLM checkpoint (re-export: quantized -> fp32 gives the
// reference runtime the exact weights runq sees; a type to the same type and
// group size, or Q4 -> GGUF Q4_0 from group 32, copies the codes and scales;
// any other type or group size is dequantized and quantized again)

static const Tensor *checkpoint_tensor(const Transformer *model, const PlannedTensor *t) {
    if (t->kind == K_EMBED) return &model->weights.tok_embeddings;
    if (t->kind == K_NORM) return &model->weights.norm;
    if (t->kind == K_OUTPUT) return &model->weights.output;
    LayerWeights *lw = &model->weights.layers[t->layer];
    const Tensor *by_kind[] = { [K_ATTN_NORM] = &lw->attention_norm, [K_WQ] = &lw->wq, [K_WK] = &lw->wk,
                                [K_WV] = &lw->wv, [K_WO] = &lw->wo, [K_FFN_NORM] = &lw->ffn_norm,
                                [K_W1] = &lw->w1, [K_W2] = &lw->w2, [K_W3] = &lw->w3 };
    return by_kind[t->kind];
}

static void checkpoint_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    const Tensor *w = checkpoint_tensor(src->impl, t);
    for (int r = begin; r < end; r++) {
        float *row = out + (size_t)(r - begin) * w->cols;
        if (is_quantized((uint32_t)w->type)) dequantize_row(row, w, r);
        else memcpy(row, w->data + (size_t)r * w->cols, (size_t)w->cols * sizeof(float));
    }
}

// Rows [begin, end) row after row, whichever order the file keeps them in
// (Q4 in tiles from version 3).
static int checkpoint_read_codes(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                                 uint8_t *codes, uint16_t *scales) {
    const Tensor *w = checkpoint_tensor(src->impl, t);
    if (w->type != type || w->group_size != group_size) return 0;
    size_t row_bytes = row_code_bytes(quant_layout((uint32_t)type), (uint64_t)w->cols_padded);
    size_t row_scales = (size_t)(w->cols_padded / group_size);
    for (int r = begin; r < end; r++)
        read_row_codes(w, r, codes + (size_t)(r - begin) * row_bytes, scales + (size_t)(r - begin) * row_scales);
    return 1;
}

static void checkpoint_close(Source *src) {
    free_transformer(src->impl);
    free(src->impl);
}

static void open_checkpoint_source(Source *src, const char *path) {
    Transformer *model = xcalloc(1, sizeof *model, "model");
    open_checkpoint(model, path);
    const Config *c = &model->config;
    FileHeader *h = &src->header;
    h->dim = c->dim;
    h->n_layers = c->n_layers;
    h->n_heads = c->n_heads;
    h->n_kv_heads = c->n_kv_heads;
    h->head_dim = c->head_dim;
    h->vocab_size = c->vocab_size;
    h->seq_len = c->seq_len;
    h->rope_theta = c->rope_theta;
    h->norm_eps = c->norm_eps;
    h->flags = c->tied_classifier ? FLAG_TIED_CLASSIFIER : 0;
    h->bos_id = c->bos_id;
    h->eos_id = c->eos_id;
    h->chat_template = c->chat_template;
    src->ffn_dim = xcalloc((size_t)c->n_layers, sizeof(int), "ffn table");
    memcpy(src->ffn_dim, c->ffn_dim, sizeof(int) * (size_t)c->n_layers);
    if (model->weights.tokenizer_blob) {
        src->tokenizer = xcalloc(model->weights.tokenizer_size, 1, "tokenizer");
        memcpy(src->tokenizer, model->weights.tokenizer_blob, model->weights.tokenizer_size);
        src->tokenizer_size = model->weights.tokenizer_size;
    }
    if (model->weights.rope_freqs) {
        src->rope_freqs = xcalloc((size_t)c->head_dim / 2, sizeof(float), "rope_freqs");
        memcpy(src->rope_freqs, model->weights.rope_freqs, sizeof(float) * (size_t)(c->head_dim / 2));
    }
    src->impl = model;
    src->close = checkpoint_close;
    src->read_rows = checkpoint_read_rows;
    src->read_codes = checkpoint_read_codes;
    src->description = "Edge LLM checkpoint";
    source_add_input(src, path);
}

// ----------------------------------------------------------------------------
// Source: Hugging Face directory (config.json + safetensors)

typedef struct {
    char *name;
    int dtype;               // TYPE_F32 / TYPE_F16 / TYPE_BF16
    int64_t rows, cols;      // 1-D tensors: rows = 1
    const uint8_t *data;
} SafeTensor;

#define TYPE_BF16 100        // only ever read here

typedef struct {
    SafeTensor *tensors;
    int count;
    struct { const uint8_t *data; size_t size; } *files;   // the mapped safetensors files
    int n_files;
} HfModel;

static int64_t json_int(const Json *j, const char *key, int64_t fallback, const char *source) {
    const Json *v = json_get(j, key);
    if (!v || v->type == JSON_NULL) {
        if (fallback < 0) die("%s: missing key '%s'", source, key);
        return fallback;
    }
    if (v->type == JSON_ARRAY && v->count > 0) v = &v->items[0];   // e.g. eos_token_id: [128001, 128009]
    if (v->type != JSON_NUMBER || v->number != floor(v->number) || fabs(v->number) > INT32_MAX)   // callers keep 32 bits
        die("%s: key '%s' should be a whole number of at most %d in size", source, key, INT32_MAX);
    return (int64_t)v->number;
}

static double json_real(const Json *j, const char *key, double fallback, const char *source) {
    const Json *v = json_get(j, key);
    if (!v || v->type == JSON_NULL) return fallback;
    if (v->type != JSON_NUMBER) die("%s: key '%s' should be a number", source, key);
    return v->number;
}

static void load_safetensors(HfModel *m, const char *path) {
    size_t size;
    const uint8_t *data = map_file(path, &size);
    m->files = realloc(m->files, sizeof(*m->files) * (size_t)(m->n_files + 1));
    if (!m->files) die("out of memory");
    m->files[m->n_files].data = data;
    m->files[m->n_files++].size = size;
    if (size < 8) die("%s: too small for a safetensors file", path);
    uint64_t header_size;
    memcpy(&header_size, data, 8);
    if (header_size > size - 8 || header_size > 100u << 20) die("%s: safetensors header size %llu does not fit the file",
                                                                  path, (unsigned long long)header_size);
    char *text = xcalloc(header_size + 1, 1, "safetensors header");
    memcpy(text, data + 8, header_size);
    Json root = json_parse(text, header_size, path);
    if (root.type != JSON_OBJECT) die("%s: safetensors header is not a JSON object", path);
    const uint8_t *payload = data + 8 + header_size;
    size_t payload_size = size - 8 - header_size;
    for (int i = 0; i < root.count; i++) {
        const char *name = root.keys[i];
        if (strcmp(name, "__metadata__") == 0) continue;
        const Json *info = &root.items[i];
        const Json *dtype = json_get(info, "dtype"), *shape = json_get(info, "shape"), *offsets = json_get(info, "data_offsets");
        if (!dtype || dtype->type != JSON_STRING || !shape || shape->type != JSON_ARRAY || !offsets
            || offsets->type != JSON_ARRAY || offsets->count != 2)
            die("%s: tensor '%s' lacks dtype, shape or data_offsets", path, name);
        SafeTensor t = { .name = strdup(name), .rows = 1, .cols = 1 };
        if (strcmp(dtype->string, "F32") == 0) t.dtype = TYPE_F32;
        else if (strcmp(dtype->string, "F16") == 0) t.dtype = TYPE_F16;
        else if (strcmp(dtype->string, "BF16") == 0) t.dtype = TYPE_BF16;
        else t.dtype = -1;   // only an error if the tensor is used
        if (shape->count < 1 || shape->count > 2) t.dtype = -2;
        for (int d = 0; d < shape->count; d++) {
            if (shape->items[d].type != JSON_NUMBER || shape->items[d].number < 0 || shape->items[d].number > 1e9)
                die("%s: tensor '%s' has a bad shape", path, name);
            int64_t extent = (int64_t)shape->items[d].number;
            if (shape->count == 2 && d == 0) t.rows = extent; else t.cols = extent;
        }
        double begin = offsets->items[0].number, end = offsets->items[1].number;
        int element = t.dtype == TYPE_F32 ? 4 : 2;
        if (offsets->items[0].type != JSON_NUMBER || offsets->items[1].type != JSON_NUMBER || begin < 0 || end < begin
            || end > (double)payload_size)
            die("%s: tensor '%s' has data_offsets outside the file (truncated?)", path, name);
        if (t.dtype >= 0 && (double)t.rows * (double)t.cols * element != end - begin)
            die("%s: tensor '%s' has %.0f bytes for shape (%lld, %lld)", path, name, end - begin,
                (long long)t.rows, (long long)t.cols);
        t.data = payload + (size_t)begin;
        m->tensors = realloc(m->tensors, (size_t)(m->count + 1) * sizeof(SafeTensor));
        if (!m->tensors) die("out of memory");
        m->tensors[m->count++] = t;
    }
    json_free(&root);
    free(text);
}

static const SafeTensor *hf_find(const HfModel *m, const char *name) {
    for (int i = 0; i < m->count; i++) if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

// Our tensor name -> the Hugging Face Llama/Mistral name
static void hf_name(const PlannedTensor *t, char *out, size_t size) {
    static const char *layer_names[] = {
        [K_ATTN_NORM] = "input_layernorm", [K_WQ] = "self_attn.q_proj", [K_WK] = "self_attn.k_proj",
        [K_WV] = "self_attn.v_proj", [K_WO] = "self_attn.o_proj", [K_FFN_NORM] = "post_attention_layernorm",
        [K_W1] = "mlp.gate_proj", [K_W2] = "mlp.down_proj", [K_W3] = "mlp.up_proj",
    };
    if (t->kind == K_EMBED) snprintf(out, size, "model.embed_tokens.weight");
    else if (t->kind == K_NORM) snprintf(out, size, "model.norm.weight");
    else if (t->kind == K_OUTPUT) snprintf(out, size, "lm_head.weight");
    else snprintf(out, size, "model.layers.%d.%s.weight", t->layer, layer_names[t->kind]);
}

static float bf16_to_fp32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// Hugging Face orders each head's q/k rows as [first halves | second halves]
// (rotate_half); runq rotates interleaved pairs. Our row 2i+half of a head is
// their row half*head_dim/2 + i.
static int64_t hf_source_row(int64_t row, int head_dim) {
    int64_t head = row / head_dim, within = row % head_dim;
    return head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

static void hf_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    HfModel *m = src->impl;
    char name[160];
    hf_name(t, name, sizeof name);
    const SafeTensor *st = hf_find(m, name);
    int cols = (int)t->entry.cols;
    int permute = t->kind == K_WQ || t->kind == K_WK;
    for (int r = begin; r < end; r++) {
        int64_t row = permute ? hf_source_row(r, src->header.head_dim) : r;
        float *dst = out + (size_t)(r - begin) * cols;
        const uint8_t *p = st->data + (size_t)row * cols * (st->dtype == TYPE_F32 ? 4 : 2);
        for (int c = 0; c < cols; c++) {
            uint16_t half;
            if (st->dtype == TYPE_F32) { memcpy(&dst[c], p + 4 * (size_t)c, 4); continue; }
            memcpy(&half, p + 2 * (size_t)c, 2);
            dst[c] = st->dtype == TYPE_F16 ? fp16_to_fp32(half) : bf16_to_fp32(half);
        }
    }
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

static void hf_load_weights(Source *src, HfModel *m, const char *dir) {
    char *single = path_join(dir, "model.safetensors"), *index = path_join(dir, "model.safetensors.index.json");
    if (file_exists(single)) {
        load_safetensors(m, single);
        source_add_input(src, single);
    } else if (file_exists(index)) {
        Json root = json_read_file(index);
        const Json *map = json_get(&root, "weight_map");
        if (!map || map->type != JSON_OBJECT) die("%s: no weight_map object", index);
        for (int i = 0; i < map->count; i++) {   // each shard once, in order of first mention
            if (map->items[i].type != JSON_STRING || strchr(map->items[i].string, '/'))
                die("%s: weight_map entry '%s' is not a file name", index, map->keys[i]);
            int seen = 0;
            for (int j = 0; j < i && !seen; j++) seen = strcmp(map->items[j].string, map->items[i].string) == 0;
            if (seen) continue;
            char *shard = path_join(dir, map->items[i].string);
            if (!file_exists(shard)) die("%s: shard %s named by the index is missing", dir, map->items[i].string);
            load_safetensors(m, shard);
            source_add_input(src, shard);
            free(shard);
        }
        json_free(&root);
    } else {
        die("%s: neither model.safetensors nor model.safetensors.index.json is there", dir);
    }
    free(single);
    free(index);
}

static const char *tokenizer_from_json(const char *path, int vocab_size, uint8_t **blob, size_t *size);
static void hf_tokenizer_config(Source *src, const char *dir, int need_bos, int need_eos);

static void hf_check_tensor(const Source *src, const PlannedTensor *t);

static void hf_close(Source *src) {
    HfModel *m = src->impl;
    for (int i = 0; i < m->count; i++) free(m->tensors[i].name);
    for (int i = 0; i < m->n_files; i++) munmap((void *)m->files[i].data, m->files[i].size);
    free(m->tensors);
    free(m->files);
    free(m);
}

// Llama 3.1/3.2's RoPE scaling slows the low frequencies of each head down for
// a longer context. Export turns it into a divisor per frequency, the tensor
// rope_freqs, exactly as llama.cpp's converter computes its rope_factors (and
// as Hugging Face's _compute_llama3_parameters divides inv_freq). With
// wavelength 2 pi / theta^(-2i/head_dim) and old = original_max_position_embeddings:
//   shorter than old / high_freq_factor:  1 (fast frequencies stay)
//   longer than old / low_freq_factor:    factor
//   in between:                           1 / ((1 - s) / factor + s),
//                                         s = (old / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
static float *llama3_rope_divisors(const Json *scaling, const FileHeader *h, const char *path) {
    const double pi = 3.14159265358979323846;
    double factor = json_real(scaling, "factor", 8.0, path), low = json_real(scaling, "low_freq_factor", 1.0, path);
    double high = json_real(scaling, "high_freq_factor", 4.0, path);
    double old_context = json_real(scaling, "original_max_position_embeddings", 8192.0, path);
    if (!(factor > 0) || !(low > 0) || !(high > low) || !(old_context > 0) || !isfinite(factor) || !isfinite(high)
        || !isfinite(old_context))
        die("%s: rope_scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
            "original_max_position_embeddings > 0 (it has %g, %g, %g, %g)", path, factor, low, high, old_context);
    int half = h->head_dim / 2;
    float *divisors = xcalloc((size_t)half, sizeof(float), "rope_freqs");
    for (int i = 0; i < half; i++) {
        double wavelength = 2 * pi * pow(h->rope_theta, 2.0 * i / h->head_dim);
        double smooth = (old_context / wavelength - low) / (high - low);
        divisors[i] = wavelength < old_context / high ? 1.0f
                    : wavelength > old_context / low ? (float)factor
                    : (float)(1.0 / ((1 - smooth) / factor + smooth));
    }
    return divisors;
}

// config.json's rope_scaling: none, or Llama 3.1/3.2's kind ("llama3"); other
// kinds change RoPE in ways runq does not compute, so they are refused.
static void hf_rope_scaling(Source *src, const Json *config, const char *path) {
    const Json *scaling = json_get(config, "rope_scaling");
    if (!scaling || scaling->type == JSON_NULL) return;
    if (scaling->type != JSON_OBJECT) die("%s: rope_scaling should be an object or null", path);
    const Json *type = json_get(scaling, "rope_type");   // older configs call it "type"
    if (!type || type->type == JSON_NULL) type = json_get(scaling, "type");
    if (!type || type->type != JSON_STRING) die("%s: rope_scaling has no rope_type", path);
    if (strcmp(type->string, "default") == 0) return;   // Hugging Face's name for plain RoPE
    if (strcmp(type->string, "llama3") != 0)
        die("%s: rope_scaling of type '%s' is not supported (export reads 'llama3', Llama 3.1/3.2's)", path, type->string);
    src->rope_freqs = llama3_rope_divisors(scaling, &src->header, path);
}

// Mistral 7B v0.1 attends to its last sliding_window positions only. Up to
// that many positions this is full attention, which runq computes, so the
// context is capped there and every run is exact (v0.2 on have no window).
static void hf_sliding_window(FileHeader *h, const Json *config, const char *path) {
    const Json *window = json_get(config, "sliding_window");
    if (!window || window->type == JSON_NULL) return;
    int64_t positions = json_int(config, "sliding_window", 0, path);
    if (positions <= 0) die("%s: sliding_window must be positive or null", path);
    if (positions >= h->seq_len) return;
    fprintf(stderr, "%s: sliding_window %lld: the context is capped at %lld positions (of %d), where full "
            "attention is exact\n", path, (long long)positions, (long long)positions, h->seq_len);
    h->seq_len = (int32_t)positions;
}

// config.json -> the header, the FFN widths and RoPE scaling: everything
// export needs to know before it opens a weight (export --check-config stops
// here). Returns which of BOS and EOS config.json names (bit 0, bit 1).
static int hf_config(Source *src, const char *config_path) {
    Json config = json_read_file(config_path);
    const Json *model_type = json_get(&config, "model_type");
    if (!model_type || model_type->type != JSON_STRING
        || (strcmp(model_type->string, "llama") != 0 && strcmp(model_type->string, "mistral") != 0))
        die("%s: model_type %s is not supported (llama, mistral)", config_path,
            model_type && model_type->type == JSON_STRING ? model_type->string : "(missing)");
    FileHeader *h = &src->header;
    h->dim = (int32_t)json_int(&config, "hidden_size", -1, config_path);
    h->n_layers = (int32_t)json_int(&config, "num_hidden_layers", -1, config_path);
    h->n_heads = (int32_t)json_int(&config, "num_attention_heads", -1, config_path);
    h->n_kv_heads = (int32_t)json_int(&config, "num_key_value_heads", h->n_heads, config_path);
    h->head_dim = (int32_t)json_int(&config, "head_dim", h->n_heads > 0 ? h->dim / h->n_heads : 0, config_path);
    h->vocab_size = (int32_t)json_int(&config, "vocab_size", -1, config_path);
    h->seq_len = (int32_t)json_int(&config, "max_position_embeddings", 2048, config_path);
    h->rope_theta = (float)json_real(&config, "rope_theta", 10000.0, config_path);
    h->norm_eps = (float)json_real(&config, "rms_norm_eps", 1e-6, config_path);
    h->bos_id = (int32_t)json_int(&config, "bos_token_id", 1, config_path);
    h->eos_id = (int32_t)json_int(&config, "eos_token_id", 2, config_path);
    const Json *bos = json_get(&config, "bos_token_id"), *eos = json_get(&config, "eos_token_id");
    int ids_given = (bos && bos->type != JSON_NULL) + 2 * (eos && eos->type != JSON_NULL);   // bit 0 BOS, bit 1 EOS
    const Json *tie = json_get(&config, "tie_word_embeddings");
    h->flags = tie && tie->type == JSON_TRUE ? FLAG_TIED_CLASSIFIER : 0;
    int ffn = (int)json_int(&config, "intermediate_size", -1, config_path);
    hf_sliding_window(h, &config, config_path);
    check_header(h, config_path);
    if (ffn <= 0) die("%s: intermediate_size must be positive", config_path);
    hf_rope_scaling(src, &config, config_path);
    src->ffn_dim = xcalloc((size_t)h->n_layers, sizeof(int), "ffn table");
    for (int l = 0; l < h->n_layers; l++) src->ffn_dim[l] = ffn;
    json_free(&config);
    return ids_given;
}

static void open_hf(Source *src, const char *dir) {
    char *config_path = path_join(dir, "config.json");
    if (!file_exists(config_path)) die("%s: no config.json (is this a Hugging Face model directory?)", dir);
    int ids_given = hf_config(src, config_path);
    source_add_input(src, config_path);
    free(config_path);
    FileHeader *h = &src->header;

    HfModel *m = xcalloc(1, sizeof *m, "model");
    hf_load_weights(src, m, dir);
    if (!(h->flags & FLAG_TIED_CLASSIFIER) && !hf_find(m, "lm_head.weight")) h->flags |= FLAG_TIED_CLASSIFIER;
    src->impl = m;
    src->close = hf_close;
    src->check_tensor = hf_check_tensor;
    src->read_rows = hf_read_rows;
    src->description = "Hugging Face model";

    char *tokenizer_json = path_join(dir, "tokenizer.json");
    if (file_exists(tokenizer_json)) {
        const char *error = tokenizer_from_json(tokenizer_json, h->vocab_size, &src->tokenizer, &src->tokenizer_size);
        if (error) die("%s: %s", tokenizer_json, error);
        source_add_input(src, tokenizer_json);
        hf_tokenizer_config(src, dir, !(ids_given & 1), !(ids_given & 2));
    }
    free(tokenizer_json);
}

// Every planned tensor must exist in the safetensors with the planned shape.
static void hf_check_tensor(const Source *src, const PlannedTensor *t) {
    char name[160];
    hf_name(t, name, sizeof name);
    const SafeTensor *st = hf_find(src->impl, name);
    if (!st) die("tensor %s is missing from the safetensors files", name);
    if (st->dtype == -1) die("tensor %s has a dtype other than F32, F16 or BF16", name);
    if (st->dtype == -2) die("tensor %s has more than 2 dimensions", name);
    if (st->rows != t->entry.rows || st->cols != t->entry.cols)
        die("tensor %s is (%lld, %lld) but config.json implies (%u, %u)", name, (long long)st->rows,
            (long long)st->cols, t->entry.rows, t->entry.cols);
}

// ----------------------------------------------------------------------------
// Source: seeded random weights of a real shape, generated row by row

typedef struct {
    const char *name;
    int dim, ffn, layers, heads, kv_heads, vocab, seq_len;
    float rope_theta, norm_eps;
    int tied;
} Shape;

static const Shape shapes[] = {
    { "stories260K", 64, 172, 5, 8, 4, 512, 512, 10000.0f, 1e-5f, 1 },
    { "stories15M", 288, 768, 6, 6, 6, 32000, 256, 10000.0f, 1e-5f, 1 },
    { "stories42M", 512, 1376, 8, 8, 8, 32000, 1024, 10000.0f, 1e-5f, 1 },
    { "stories110M", 768, 2048, 12, 12, 12, 32000, 1024, 10000.0f, 1e-5f, 1 },
    { "smollm2-135m", 576, 1536, 30, 9, 3, 49152, 8192, 100000.0f, 1e-5f, 1 },
    { "tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, 1e-5f, 0 },
    { "llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f, 1e-5f, 0 },
    { "mistral-7b", 4096, 14336, 32, 32, 8, 32000, 32768, 1000000.0f, 1e-5f, 0 },
    { "llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f, 1e-5f, 0 },
};

typedef struct { uint64_t seed; } RandomModel;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Each row has its own stream, so rows come out the same in any order.
// Weights are uniform with the variance of 1/cols (activations keep their
// scale through the layers); norm weights are near 1.
static void random_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    RandomModel *m = src->impl;
    int cols = (int)t->entry.cols;
    int is_norm = t->kind == K_ATTN_NORM || t->kind == K_FFN_NORM || t->kind == K_NORM;
    float amplitude = is_norm ? 0.1f : sqrtf(3.0f / (float)cols);
    for (int r = begin; r < end; r++) {
        uint64_t state = m->seed ^ ((uint64_t)t->kind << 56) ^ ((uint64_t)(t->layer + 1) << 40) ^ (uint64_t)r;
        splitmix64(&state);
        float *row = out + (size_t)(r - begin) * cols;
        for (int c = 0; c < cols; c += 2) {
            uint64_t bits = splitmix64(&state);
            float u0 = (float)(bits >> 40) / 16777216.0f, u1 = (float)((bits >> 8) & 0xFFFFFF) / 16777216.0f;
            row[c] = (is_norm ? 1.0f : 0.0f) + amplitude * (2.0f * u0 - 1.0f);
            if (c + 1 < cols) row[c + 1] = (is_norm ? 1.0f : 0.0f) + amplitude * (2.0f * u1 - 1.0f);
        }
    }
}

static void random_close(Source *src) { free(src->impl); }

// SHAPE is a name from the table, or key=value pairs overriding stories260K:
// dim=64,ffn=172,layers=5,heads=8,kv_heads=4,vocab=512,seq_len=512,head_dim=8,tied=1
static void open_random(Source *src, const char *spec, uint64_t seed) {
    Shape shape = shapes[0];
    int head_dim = 0, found = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(spec, shapes[i].name) == 0) { shape = shapes[i]; found = 1; }
    if (!found) {
        if (!strchr(spec, '=')) {
            fprintf(stderr, "export: unknown shape '%s'; known shapes:", spec);
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) fprintf(stderr, " %s", shapes[i].name);
            die("\n  or key=value pairs: dim=,ffn=,layers=,heads=,kv_heads=,head_dim=,vocab=,seq_len=,tied=");
        }
        char *copy = strdup(spec);
        for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
            char key[32];
            long value;
            char *end;
            char *eq = strchr(item, '=');
            if (!eq || eq - item >= (long)sizeof key) die("bad shape item '%s' (want key=value)", item);
            memcpy(key, item, (size_t)(eq - item));
            key[eq - item] = '\0';
            errno = 0;
            value = strtol(eq + 1, &end, 10);
            if (errno || *end || end == eq + 1 || value < 0 || value > 1 << 22) die("bad value in shape item '%s'", item);
            if (strcmp(key, "dim") == 0) shape.dim = (int)value;
            else if (strcmp(key, "ffn") == 0) shape.ffn = (int)value;
            else if (strcmp(key, "layers") == 0) shape.layers = (int)value;
            else if (strcmp(key, "heads") == 0) shape.heads = (int)value;
            else if (strcmp(key, "kv_heads") == 0) shape.kv_heads = (int)value;
            else if (strcmp(key, "head_dim") == 0) head_dim = (int)value;
            else if (strcmp(key, "vocab") == 0) shape.vocab = (int)value;
            else if (strcmp(key, "seq_len") == 0) shape.seq_len = (int)value;
            else if (strcmp(key, "tied") == 0) shape.tied = value != 0;
            else die("unknown shape key '%s'", key);
        }
        free(copy);
        shape.name = "custom";
    }
    FileHeader *h = &src->header;
    h->dim = shape.dim;
    h->n_layers = shape.layers;
    h->n_heads = shape.heads;
    h->n_kv_heads = shape.kv_heads;
    h->head_dim = head_dim ? head_dim : (shape.heads ? shape.dim / shape.heads : 0);
    h->vocab_size = shape.vocab;
    h->seq_len = shape.seq_len;
    h->rope_theta = shape.rope_theta;
    h->norm_eps = shape.norm_eps;
    h->flags = shape.tied ? FLAG_TIED_CLASSIFIER : 0;
    h->bos_id = 1;
    h->eos_id = 2;
    check_header(h, spec);
    if (shape.ffn <= 0) die("%s: ffn must be positive", spec);
    if (h->vocab_size < 3) die("%s: the vocabulary needs at least <unk>, <s> and </s>", spec);
    src->ffn_dim = xcalloc((size_t)h->n_layers, sizeof(int), "ffn table");
    for (int l = 0; l < h->n_layers; l++) src->ffn_dim[l] = shape.ffn;
    RandomModel *m = xcalloc(1, sizeof *m, "model");
    m->seed = seed;
    src->impl = m;
    src->close = random_close;
    src->read_rows = random_read_rows;
    src->description = "random weights";
}

// ----------------------------------------------------------------------------
// Source: a LoRA adapter merged into another source (export --lora DIR)
//
// A PEFT adapter directory holds adapter_config.json (r, lora_alpha,
// target_modules, use_rslora) and adapter_model.safetensors with, for each
// adapted projection of a decoder layer,
//   base_model.model.model.layers.{L}.{self_attn|mlp}.{module}.lora_A.weight   (r, in)
//   base_model.model.model.layers.{L}.{self_attn|mlp}.{module}.lora_B.weight   (out, r)
// The merged weight is W + scale * B A, scale = lora_alpha / r (lora_alpha /
// sqrt(r) with use_rslora), added to the wrapped source's rows as they are
// read, so any output (int4, fp32, GGUF) gets the merged weights.
// Adapters are in Hugging Face's layout: B's rows for q_proj and k_proj are in
// rotate-half order and are permuted exactly as the HF source permutes Wq and
// Wk. So an adapter trained on an HF model merges into our export of that
// model, and an adapter our trainer writes is one PEFT can load.
// Everything is checked when the adapter is opened, before a byte is written.

static const struct { const char *module, *parent, *field; int kind; } lora_targets[] = {
    { "q_proj", "self_attn", "wq", K_WQ }, { "k_proj", "self_attn", "wk", K_WK },
    { "v_proj", "self_attn", "wv", K_WV }, { "o_proj", "self_attn", "wo", K_WO },
    { "gate_proj", "mlp", "w1", K_W1 }, { "down_proj", "mlp", "w2", K_W2 }, { "up_proj", "mlp", "w3", K_W3 },
};
#define N_LORA_TARGETS ((int)(sizeof lora_targets / sizeof lora_targets[0]))
#define LORA_KINDS (K_W3 + 1)   // deltas are indexed by layer * LORA_KINDS + kind

typedef struct {
    int rank, rslora;
    double alpha, scale;         // scale = alpha / r, or alpha / sqrt(r) with rslora
    int listed[N_LORA_TARGETS];   // named in target_modules
} LoraConfig;

typedef struct {
    int64_t outputs, inputs;  // the matrix it adds to: (rows, cols)
    float *a;                 // (rank, inputs): lora_A
    float *scaled_b;          // (outputs, rank): scale * lora_B, rows in our interleaved RoPE order
} LoraDelta;

typedef struct {
    Source base;              // the wrapped source (its header, FFN table and tokenizer are borrowed from src)
    int rank;
    LoraDelta *deltas;        // (n_layers * LORA_KINDS); a == NULL where nothing is merged
    char description[200];
} LoraSource;

static int lora_target_by_module(const char *module) {
    for (int i = 0; i < N_LORA_TARGETS; i++) if (strcmp(lora_targets[i].module, module) == 0) return i;
    return -1;
}

// A boolean key: absent or null counts as false
static int json_flag(const Json *object, const char *key, const char *path) {
    const Json *v = json_get(object, key);
    if (!v || v->type == JSON_NULL || v->type == JSON_FALSE) return 0;
    if (v->type != JSON_TRUE) die("%s: '%s' should be true or false", path, key);
    return 1;
}

static int json_is_empty(const Json *v) {
    return !v || v->type == JSON_NULL || ((v->type == JSON_OBJECT || v->type == JSON_ARRAY) && v->count == 0);
}

// adapter_config.json; refuses what a plain W += scale * B A merge would get wrong
static LoraConfig lora_read_config(Source *src, const char *dir) {
    char *path = path_join(dir, "adapter_config.json");
    if (!file_exists(path)) die("%s: no adapter_config.json (is this a PEFT LoRA adapter directory?)", dir);
    Json config = json_read_file(path);
    source_add_input(src, path);
    const Json *peft_type = json_get(&config, "peft_type");
    if (!peft_type || peft_type->type != JSON_STRING || strcmp(peft_type->string, "LORA") != 0)
        die("%s: peft_type is %s; export merges \"LORA\" adapters", path,
            peft_type && peft_type->type == JSON_STRING ? peft_type->string : "missing");
    LoraConfig c = { 0 };
    int64_t rank = json_int(&config, "r", -1, path);
    if (rank <= 0 || rank > 1 << 16) die("%s: r is %lld; it should be a positive rank", path, (long long)rank);
    c.rank = (int)rank;
    c.alpha = json_real(&config, "lora_alpha", NAN, path);
    if (!isfinite(c.alpha)) die("%s: lora_alpha is missing (or not a finite number)", path);
    if (json_flag(&config, "use_dora", path))
        die("%s: use_dora is true: DoRA rescales every column of the merged weight, which export does not do", path);
    if (json_flag(&config, "fan_in_fan_out", path))
        die("%s: fan_in_fan_out is true (GPT-2's transposed Conv1D layout); a Llama adapter has it false", path);
    if (json_flag(&config, "lora_bias", path)) die("%s: lora_bias is true: export merges adapters without biases", path);
    const Json *bias = json_get(&config, "bias");
    if (bias && bias->type != JSON_NULL && (bias->type != JSON_STRING || strcmp(bias->string, "none") != 0))
        die("%s: bias is %s: Llama's projections have no biases, so export merges only bias \"none\" adapters", path,
            bias->type == JSON_STRING ? bias->string : "not a string");
    if (!json_is_empty(json_get(&config, "rank_pattern")) || !json_is_empty(json_get(&config, "alpha_pattern")))
        die("%s: rank_pattern or alpha_pattern is set: export merges adapters with one r and one lora_alpha", path);
    if (!json_is_empty(json_get(&config, "modules_to_save")))
        die("%s: modules_to_save is set: export merges LoRA matrices, not fully trained modules", path);
    const Json *targets = json_get(&config, "target_modules");
    if (!targets || targets->type != JSON_ARRAY)
        die("%s: target_modules should be a list of module names such as [\"q_proj\", \"v_proj\"]", path);
    for (int i = 0; i < targets->count; i++) {
        const Json *name = &targets->items[i];
        int target = name->type == JSON_STRING ? lora_target_by_module(name->string) : -1;
        if (target < 0)
            die("%s: target module %s is not one export merges (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)",
                path, name->type == JSON_STRING ? name->string : "(not a string)");
        c.listed[target] = 1;
    }
    c.rslora = json_flag(&config, "use_rslora", path);
    c.scale = c.rslora ? c.alpha / sqrt((double)c.rank) : c.alpha / c.rank;
    json_free(&config);
    free(path);
    return c;
}

// base_model.model.model.layers.{L}.{parent}.{module}.lora_{A|B}.weight ->
// layer, target and which; 0 for any other name
static int lora_parse_name(const char *name, int *layer, int *target, int *is_b) {
    const char *prefix = "base_model.model.model.layers.";
    size_t length = strlen(prefix);
    if (strncmp(name, prefix, length) != 0 || !isdigit((unsigned char)name[length])) return 0;
    char *rest;
    long number = strtol(name + length, &rest, 10);
    for (int i = 0; i < N_LORA_TARGETS; i++)
        for (int b = 0; b < 2; b++) {
            char expected[64];
            snprintf(expected, sizeof expected, ".%s.%s.lora_%c.weight", lora_targets[i].parent, lora_targets[i].module,
                     b ? 'B' : 'A');
            if (strcmp(rest, expected) != 0) continue;
            *layer = number > INT_MAX ? INT_MAX : (int)number;
            *target = i;
            *is_b = b;
            return 1;
        }
    return 0;
}

// The (rows, cols) make_plan gives a layer's matrix: (outputs, inputs)
static void lora_model_shape(const Source *src, int kind, int layer, int64_t *outputs, int64_t *inputs) {
    const FileHeader *h = &src->header;
    int64_t dim = h->dim, ffn = src->ffn_dim[layer];
    int64_t q_dim = (int64_t)h->n_heads * h->head_dim, kv_dim = (int64_t)h->n_kv_heads * h->head_dim;
    *inputs = kind == K_WO ? q_dim : kind == K_W2 ? ffn : dim;
    *outputs = kind == K_WQ ? q_dim : kind == K_WK || kind == K_WV ? kv_dim : kind == K_WO || kind == K_W2 ? dim : ffn;
}

// lora_A and lora_B of one projection: both there, readable, of the config's
// rank, and shaped to the model's matrix
static void lora_check_pair(const Source *src, const LoraConfig *config, const char *path, int layer, int target,
                            const SafeTensor *a, const SafeTensor *b) {
    const char *module = lora_targets[target].module, *field = lora_targets[target].field;
    if (!a || !b) die("%s: layer %d %s: lora_%c is there but lora_%c is missing", path, layer, module, a ? 'A' : 'B', a ? 'B' : 'A');
    const SafeTensor *pair[] = { a, b };
    for (int i = 0; i < 2; i++) {
        if (pair[i]->dtype == -1) die("%s: tensor %s has a dtype other than F32, F16 or BF16", path, pair[i]->name);
        if (pair[i]->dtype == -2) die("%s: tensor %s has more than 2 dimensions", path, pair[i]->name);
    }
    int64_t outputs, inputs;
    lora_model_shape(src, lora_targets[target].kind, layer, &outputs, &inputs);
    if (a->rows != b->cols)
        die("%s: layer %d %s: lora_A is %lldx%lld (rank %lld) but lora_B is %lldx%lld (rank %lld)", path, layer, module,
            (long long)a->rows, (long long)a->cols, (long long)a->rows, (long long)b->rows, (long long)b->cols,
            (long long)b->cols);
    if (a->rows != config->rank)
        die("%s: layer %d %s: lora_A and lora_B have rank %lld but adapter_config.json says r = %d", path, layer, module,
            (long long)a->rows, config->rank);
    if (a->cols != inputs)
        die("%s: layer %d %s: lora_A is %lldx%lld but the model's %s takes %lld inputs", path, layer, module,
            (long long)a->rows, (long long)a->cols, field, (long long)inputs);
    if (b->rows != outputs)
        die("%s: layer %d %s: lora_B is %lldx%lld but the model's %s has %lld outputs", path, layer, module,
            (long long)b->rows, (long long)b->cols, field, (long long)outputs);
}

static float safetensor_value(const SafeTensor *st, size_t index) {
    float f;
    uint16_t half;
    if (st->dtype == TYPE_F32) { memcpy(&f, st->data + 4 * index, 4); return f; }
    memcpy(&half, st->data + 2 * index, 2);
    return st->dtype == TYPE_F16 ? fp16_to_fp32(half) : bf16_to_fp32(half);
}

// A lora matrix as floats times scale; with head_dim > 0 (q_proj, k_proj's
// lora_B) row r is the file's row hf_source_row(r): rotate-half to interleaved.
static float *lora_floats(const SafeTensor *st, float scale, int head_dim, const char *path) {
    float *out = xcalloc((size_t)(st->rows * st->cols), sizeof(float), "adapter matrix");
    for (int64_t r = 0; r < st->rows; r++) {
        int64_t row = head_dim > 0 ? hf_source_row(r, head_dim) : r;
        for (int64_t c = 0; c < st->cols; c++) {
            float value = safetensor_value(st, (size_t)(row * st->cols + c));
            if (!isfinite(value)) die("%s: tensor %s has a non-finite value in row %lld", path, st->name, (long long)row);
            out[r * st->cols + c] = scale * value;
        }
    }
    return out;
}

static const LoraDelta *lora_delta(const LoraSource *l, const PlannedTensor *t) {
    if (t->layer < 0 || t->kind > K_W3) return NULL;
    const LoraDelta *d = &l->deltas[(size_t)t->layer * LORA_KINDS + t->kind];
    return d->a ? d : NULL;
}

// The base's rows, plus scale * B A for rows [begin, end)
static void lora_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    LoraSource *l = src->impl;
    l->base.read_rows(&l->base, t, begin, end, out);
    const LoraDelta *d = lora_delta(l, t);
    if (!d) return;
    size_t cols = t->entry.cols;
    for (int r = begin; r < end; r++) {
        float *row = out + (size_t)(r - begin) * cols;
        for (int k = 0; k < l->rank; k++) {
            float coefficient = d->scaled_b[(size_t)r * l->rank + k];
            const float *a_row = d->a + (size_t)k * cols;
            for (size_t c = 0; c < cols; c++) row[c] += coefficient * a_row[c];
        }
    }
}

// Merged tensors are quantized afresh; the others are copied as the base holds them.
static int lora_read_codes(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                           uint8_t *codes, uint16_t *scales) {
    LoraSource *l = src->impl;
    if (lora_delta(l, t) || !l->base.read_codes) return 0;
    return l->base.read_codes(&l->base, t, type, group_size, begin, end, codes, scales);
}

static void lora_check_tensor(const Source *src, const PlannedTensor *t) {
    const LoraSource *l = src->impl;
    if (l->base.check_tensor) l->base.check_tensor(&l->base, t);
    const LoraDelta *d = lora_delta(l, t);
    if (d && (d->outputs != t->entry.rows || d->inputs != t->entry.cols))
        die("tensor %s is (%u, %u) but its LoRA delta is (%lld, %lld)", t->entry.name, t->entry.rows, t->entry.cols,
            (long long)d->outputs, (long long)d->inputs);
}

static void lora_close(Source *src) {
    LoraSource *l = src->impl;
    if (l->base.close) l->base.close(&l->base);
    for (int i = 0; i < src->header.n_layers * LORA_KINDS; i++) {
        free(l->deltas[i].a);
        free(l->deltas[i].scaled_b);
    }
    free(l->deltas);
    free(l);
}

// Reads and checks the adapter in dir, then wraps src so that its rows come out merged.
static void open_lora(Source *src, const char *dir) {
    LoraConfig config = lora_read_config(src, dir);
    char *path = path_join(dir, "adapter_model.safetensors");
    if (!file_exists(path))
        die("%s: no adapter_model.safetensors (export reads adapters in that form, not adapter_model.bin)", dir);
    HfModel *file = xcalloc(1, sizeof *file, "adapter");
    load_safetensors(file, path);
    source_add_input(src, path);

    // each tensor to its (layer, target, A or B) slot
    int n_layers = src->header.n_layers;
    const SafeTensor **slots = xcalloc((size_t)n_layers * N_LORA_TARGETS * 2, sizeof *slots, "adapter table");
    for (int i = 0; i < file->count; i++) {
        const SafeTensor *st = &file->tensors[i];
        int layer, target, is_b;
        if (!lora_parse_name(st->name, &layer, &target, &is_b))
            die("%s: tensor %s is not a LoRA matrix export merges (lora_A or lora_B of a decoder layer's q_proj k_proj "
                "v_proj o_proj gate_proj up_proj down_proj)", path, st->name);
        if (layer >= n_layers)
            die("%s: layer %d %s: the model has %d layers (0 to %d)", path, layer, lora_targets[target].module, n_layers,
                n_layers - 1);
        if (!config.listed[target])
            die("%s: tensor %s adapts %s, which target_modules does not list", path, st->name, lora_targets[target].module);
        slots[((size_t)layer * N_LORA_TARGETS + target) * 2 + is_b] = st;
    }

    LoraSource *l = xcalloc(1, sizeof *l, "adapter");
    l->base = *src;
    l->rank = config.rank;
    l->deltas = xcalloc((size_t)n_layers * LORA_KINDS, sizeof(LoraDelta), "adapter table");
    int merged = 0;
    for (int layer = 0; layer < n_layers; layer++)
        for (int target = 0; target < N_LORA_TARGETS; target++) {
            const SafeTensor *a = slots[((size_t)layer * N_LORA_TARGETS + target) * 2];
            const SafeTensor *b = slots[((size_t)layer * N_LORA_TARGETS + target) * 2 + 1];
            if (!a && !b) continue;
            lora_check_pair(src, &config, path, layer, target, a, b);
            int kind = lora_targets[target].kind, rotary = kind == K_WQ || kind == K_WK;
            LoraDelta *d = &l->deltas[(size_t)layer * LORA_KINDS + kind];
            lora_model_shape(src, kind, layer, &d->outputs, &d->inputs);
            d->a = lora_floats(a, 1.0f, 0, path);
            d->scaled_b = lora_floats(b, (float)config.scale, rotary ? src->header.head_dim : 0, path);
            merged++;
        }
    if (merged == 0) die("%s: holds no LoRA matrices", path);
    free(slots);
    hf_close(&(Source){ .impl = file });   // the matrices are copied: unmap the file
    free(path);

    snprintf(l->description, sizeof l->description, "%s + LoRA r %d alpha %g%s, %d tensors merged", src->description,
             config.rank, config.alpha, config.rslora ? " rslora" : "", merged);
    src->impl = l;
    src->read_rows = lora_read_rows;
    src->read_codes = lora_read_codes;
    src->check_tensor = lora_check_tensor;
    src->close = lora_close;
    src->description = l->description;
}

// ----------------------------------------------------------------------------
// Source: decoder layers dropped (export --drop-layers 3,7), ShortGPT's layer
// removal. The kept layers are renumbered in order: tensor (kind, layer l) of
// the output is tensor (kind, kept[l]) of the wrapped source. Which layers
// matter least is measured on a text by Block Influence (--drop-layers auto:N,
// below the writers).

typedef struct {
    Source base;
    int *kept;               // (kept layers,) each one's index in the wrapped source
    char description[200];
} DropSource;

static PlannedTensor in_wrapped_model(const DropSource *d, const PlannedTensor *t) {
    PlannedTensor original = *t;
    if (t->layer >= 0) {
        original.layer = d->kept[t->layer];
        const char *field = strchr(t->entry.name + strlen("layers."), '.');
        snprintf(original.entry.name, TENSOR_NAME_LEN, "layers.%d%s", original.layer, field);
    }
    return original;
}

static void drop_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    DropSource *d = src->impl;
    PlannedTensor original = in_wrapped_model(d, t);
    d->base.read_rows(&d->base, &original, begin, end, out);
}

static int drop_read_codes(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                           uint8_t *codes, uint16_t *scales) {
    DropSource *d = src->impl;
    if (!d->base.read_codes) return 0;
    PlannedTensor original = in_wrapped_model(d, t);
    return d->base.read_codes(&d->base, &original, type, group_size, begin, end, codes, scales);
}

static void drop_check_tensor(const Source *src, const PlannedTensor *t) {
    const DropSource *d = src->impl;
    if (!d->base.check_tensor) return;
    PlannedTensor original = in_wrapped_model(d, t);
    d->base.check_tensor(&d->base, &original);
}

static void drop_close(Source *src) {
    DropSource *d = src->impl;
    if (d->base.close) d->base.close(&d->base);
    free(d->base.ffn_dim);
    free(d->kept);
    free(d);
}

// list: comma-separated layer indices, e.g. "3,7"
static void open_drop_layers(Source *src, const char *list) {
    int n_layers = src->header.n_layers, n_dropped = 0;
    int *dropped = xcalloc((size_t)n_layers, sizeof(int), "layer list");
    char *copy = strdup(list);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        long layer = parse_long("--drop-layers", item, 0, n_layers - 1);
        if (dropped[layer]) die("--drop-layers names layer %ld twice", layer);
        dropped[layer] = 1;
        n_dropped++;
    }
    free(copy);
    if (n_dropped == 0) die("--drop-layers names no layer (give indices such as 3,7)");
    if (n_dropped == n_layers) die("--drop-layers would drop all %d layers", n_layers);
    DropSource *d = xcalloc(1, sizeof *d, "layer drop");
    d->base = *src;
    d->kept = xcalloc((size_t)n_layers, sizeof(int), "layer list");
    src->ffn_dim = xcalloc((size_t)n_layers, sizeof(int), "ffn table");   // the wrapped source keeps its own
    int kept = 0;
    for (int l = 0; l < n_layers; l++) {
        if (dropped[l]) continue;
        d->kept[kept] = l;
        src->ffn_dim[kept++] = d->base.ffn_dim[l];
    }
    free(dropped);
    src->header.n_layers = kept;
    snprintf(d->description, sizeof d->description, "%s, %d of %d layers kept (--drop-layers %s)", src->description,
             kept, n_layers, list);
    src->impl = d;
    src->read_rows = drop_read_rows;
    src->read_codes = drop_read_codes;
    src->check_tensor = drop_check_tensor;
    src->close = drop_close;
    src->description = d->description;
}

// ----------------------------------------------------------------------------
// Tokenizers, all turned into llama2.c's tokenizer.bin layout (a byte-level
// one after its "BBPE" prefix: see runq.c)

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} Buffer;

static void buffer_put(Buffer *b, const void *bytes, size_t n) {
    if (b->size + n > b->capacity) {
        b->capacity = (b->size + n) * 2 + 1024;
        b->data = realloc(b->data, b->capacity);
        if (!b->data) die("out of memory building the tokenizer");
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

// The kind's prefix (none for SentencePiece: split_rule 0) and room for max_token_length.
static void tokenizer_start(Buffer *b, int kind, int split_rule) {
    if (kind == TOKENIZER_BYTE_LEVEL) {
        uint32_t rule = (uint32_t)split_rule;
        buffer_put(b, BYTE_LEVEL_MAGIC, 4);
        buffer_put(b, &rule, 4);
    }
    int32_t max_length = 0;
    buffer_put(b, &max_length, 4);
}

static void tokenizer_put_piece(Buffer *b, float score, const char *piece, size_t length) {
    int32_t len = (int32_t)length;
    buffer_put(b, &score, 4);
    buffer_put(b, &len, 4);
    buffer_put(b, piece, length);
}

static void tokenizer_finish(Buffer *b, int32_t max_length) {
    size_t at = b->size >= 4 && memcmp(b->data, BYTE_LEVEL_MAGIC, 4) == 0 ? 8 : 0;
    memcpy(b->data + at, &max_length, 4);
}

// A tokenizer.bin file, checked against the model's vocabulary size.
static void read_tokenizer_bin(Source *src, const char *path) {
    src->tokenizer = read_whole_file(path, &src->tokenizer_size);
    Tokenizer check;
    const char *error = build_tokenizer_from_memory(&check, src->tokenizer, src->tokenizer_size, src->header.vocab_size);
    free_tokenizer(&check);
    if (error) die("tokenizer %s for a %d-piece vocabulary: %s", path, src->header.vocab_size, error);
}

// Pieces a random model can encode any text with: byte fallback plus
// printable ASCII; the rest are <unused_N>, never produced by a merge.
static void synthetic_tokenizer(Source *src) {
    Buffer b = { 0 };
    tokenizer_start(&b, TOKENIZER_SENTENCEPIECE, 0);
    int vocab = src->header.vocab_size, id = 0;
    char piece[32];
    const char *specials[] = { "<unk>", "\n<s>\n", "\n</s>\n" };
    for (; id < 3; id++) tokenizer_put_piece(&b, -INFINITY, specials[id], strlen(specials[id]));
    for (int byte = 0; byte < 256 && id < vocab; byte++, id++) {
        snprintf(piece, sizeof piece, "<0x%02X>", byte);
        tokenizer_put_piece(&b, -INFINITY, piece, 6);
    }
    for (char c = ' '; c <= '~' && id < vocab; c++, id++) tokenizer_put_piece(&b, 0.0f, &c, 1);
    for (; id < vocab; id++) {
        int n = snprintf(piece, sizeof piece, "<unused_%d>", id);
        tokenizer_put_piece(&b, -INFINITY, piece, (size_t)n);
    }
    tokenizer_finish(&b, 16);
    src->tokenizer = b.data;
    src->tokenizer_size = b.size;
}

// "▁" (U+2581) is SentencePiece's visible space; tokenizer.bin stores " ".
static size_t replace_sentencepiece_spaces(char *s, size_t length) {
    size_t out = 0;
    for (size_t i = 0; i < length;) {
        if (i + 2 < length + 0 && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96
            && (unsigned char)s[i + 2] == 0x81) {
            s[out++] = ' ';
            i += 3;
        } else {
            s[out++] = s[i++];
        }
    }
    s[out] = '\0';
    return out;
}

// ---- tokenizer.json (Hugging Face): SentencePiece-style BPE with byte
// fallback (Llama 2, TinyLlama, Mistral) or byte-level BPE with Llama 3's
// pre-tokenizer. Other kinds are refused with a reason.

// Llama 3's split rule as tokenizer.json spells it; runq.c's llama3_chunk_end is this regex in C
#define LLAMA3_SPLIT_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|" \
                           " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static int json_is(const Json *j, const char *string) { return j && j->type == JSON_STRING && strcmp(j->string, string) == 0; }
static int json_false(const Json *j) { return !j || j->type == JSON_FALSE; }

// A ByteLevel pre-tokenizer step without a prefix space; use_regex (GPT-2's
// split, true unless said otherwise) as wanted.
static int is_byte_level_step(const Json *step, int use_regex) {
    const Json *regex = json_get(step, "use_regex");
    int uses_regex = !regex || regex->type == JSON_TRUE;
    return json_is(json_get(step, "type"), "ByteLevel") && uses_regex == use_regex && json_false(json_get(step, "add_prefix_space"));
}

// The SplitRule a pre_tokenizer amounts to, 0 if none:
// - Llama 3: a Sequence of its Split regex (matches kept as chunks) and a
//   ByteLevel step that only maps bytes (use_regex false);
// - GPT-2: a ByteLevel step alone, with its regex;
// - SmolLM2: a Sequence of Digits (individual_digits) and that ByteLevel step.
static int json_split_rule(const Json *pre_tokenizer) {
    if (is_byte_level_step(pre_tokenizer, 1)) return SPLIT_GPT2;
    const Json *steps = json_get(pre_tokenizer, "pretokenizers");
    if (!json_is(json_get(pre_tokenizer, "type"), "Sequence") || !steps || steps->type != JSON_ARRAY || steps->count != 2)
        return 0;
    const Json *first = &steps->items[0], *second = &steps->items[1];
    if (json_is(json_get(first, "type"), "Split") && json_is(json_get(json_get(first, "pattern"), "Regex"), LLAMA3_SPLIT_REGEX)
        && json_is(json_get(first, "behavior"), "Isolated") && json_false(json_get(first, "invert"))
        && is_byte_level_step(second, 0))
        return SPLIT_LLAMA3;
    const Json *individual = json_get(first, "individual_digits");
    if (json_is(json_get(first, "type"), "Digits") && individual && individual->type == JSON_TRUE && is_byte_level_step(second, 1))
        return SPLIT_SMOLLM;
    return 0;
}

// TOKENIZER_SENTENCEPIECE or TOKENIZER_BYTE_LEVEL, or -1 and why not.
static int json_tokenizer_kind(const Json *root, const char **refusal) {
    const Json *model = json_get(root, "model"), *byte_fallback = json_get(model, "byte_fallback");
    const Json *normalizer = json_get(root, "normalizer");
    int split_rule = json_split_rule(json_get(root, "pre_tokenizer"));
    *refusal = NULL;
    if (!json_is(json_get(model, "type"), "BPE"))
        *refusal = "model.type is not BPE: only BPE tokenizers are supported (SentencePiece-style, and Llama 3's byte-level)";
    else if (byte_fallback && byte_fallback->type == JSON_TRUE)
        return TOKENIZER_SENTENCEPIECE;
    else if (!json_is(json_get(json_get(root, "decoder"), "type"), "ByteLevel"))
        *refusal = "model.byte_fallback is not true and the decoder is not ByteLevel: neither SentencePiece-style nor byte-level BPE";
    else if (!split_rule)
        *refusal = "byte-level BPE whose pre-tokenizer is none of Llama 3's, GPT-2's and SmolLM2's (Qwen's is not supported yet)";
    else if (normalizer && normalizer->type != JSON_NULL)
        *refusal = "byte-level BPE with a normalizer (Llama 3, GPT-2 and SmolLM2 have none): not supported";
    else if (!json_false(json_get(model, "ignore_merges")) && split_rule != SPLIT_LLAMA3)
        *refusal = "byte-level BPE with model.ignore_merges but not Llama 3's pre-tokenizer (runq keeps a chunk whole under Llama 3's rule only)";
    else
        return TOKENIZER_BYTE_LEVEL;
    return -1;
}

// model.merges[rank] as its two halves: "a b", or [a, b] in newer files.
static void json_merge(const Json *merges, int rank, const char *path, char *left, char *right, size_t size) {
    const Json *m = &merges->items[rank];
    if (m->type == JSON_STRING) {
        const char *space = strchr(m->string, ' ');
        if (!space || m->length >= size) die("%s: merge %d is not 'a b'", path, rank);
        snprintf(left, size, "%.*s", (int)(space - m->string), m->string);
        snprintf(right, size, "%s", space + 1);
    } else if (m->type == JSON_ARRAY && m->count == 2 && m->items[0].type == JSON_STRING
               && m->items[1].type == JSON_STRING && m->items[0].length < size && m->items[1].length < size) {
        snprintf(left, size, "%s", m->items[0].string);
        snprintf(right, size, "%s", m->items[1].string);
    } else {
        die("%s: merge %d is neither 'a b' nor [a, b]", path, rank);
    }
}

// Enough of a Tokenizer for piece_lookup over pieces given as strings.
static Tokenizer index_strings(char **pieces, int n) {
    Tokenizer t = { .vocab_size = n };
    t.vocab = xcalloc((size_t)n, sizeof(char *), "tokenizer index");
    t.lengths = xcalloc((size_t)n, sizeof(int), "tokenizer index");
    for (int i = 0; i < n; i++) {
        t.vocab[i] = pieces[i] ? pieces[i] : (char *)"";
        t.lengths[i] = (int)strlen(t.vocab[i]);
    }
    index_pieces(&t);
    return t;
}

// SentencePiece kind: vocab gives the ids, merges the priorities. A piece
// made by merge rank r scores -r, so the best-scoring pair is the earliest
// merge, which is what SentencePiece does. Special and byte pieces score
// -inf: text never merges into them.
static const char *sentencepiece_from_json(const Json *root, const char *path, int vocab_size, uint8_t **blob, size_t *size) {
    const Json *model = json_get(root, "model");
    const Json *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    if (!vocab || vocab->type != JSON_OBJECT || !merges || merges->type != JSON_ARRAY)
        return "model.vocab or model.merges is missing";

    char **pieces = xcalloc((size_t)vocab_size, sizeof(char *), "tokenizer");
    float *scores = xcalloc((size_t)vocab_size, sizeof(float), "tokenizer");
    for (int i = 0; i < vocab_size; i++) scores[i] = -INFINITY;
    for (int i = 0; i < vocab->count; i++) {
        const Json *id = &vocab->items[i];
        if (id->type != JSON_NUMBER || id->number < 0 || id->number >= vocab_size)
            die("%s: vocab entry '%s' has id outside the model's %d-piece vocabulary", path, vocab->keys[i], vocab_size);
        pieces[(int)id->number] = vocab->keys[i];
    }
    Tokenizer lookup = index_strings(pieces, vocab_size);
    for (int rank = 0; rank < merges->count; rank++) {
        char left[1024], right[1024], joined[2048];
        json_merge(merges, rank, path, left, right, sizeof left);
        snprintf(joined, sizeof joined, "%s%s", left, right);
        int id = str_lookup(joined, &lookup);
        if (id < 0 || !pieces[id]) die("%s: merge %d makes '%s', which is not in the vocab", path, rank, joined);
        if (scores[id] == -INFINITY) scores[id] = -(float)rank;
    }
    free_tokenizer(&lookup);
    // added tokens (<unk>, <s>, </s>, ...) take their ids; single characters
    // that no merge makes keep score 0 so the first pass can find them
    const Json *added = json_get(root, "added_tokens");
    for (int i = 0; added && added->type == JSON_ARRAY && i < added->count; i++) {
        const Json *id = json_get(&added->items[i], "id"), *content = json_get(&added->items[i], "content");
        if (!id || id->type != JSON_NUMBER || !content || content->type != JSON_STRING) continue;
        if (id->number < 0 || id->number >= vocab_size) die("%s: added token '%s' is outside the vocabulary", path, content->string);
        pieces[(int)id->number] = content->string;
    }
    Buffer b = { 0 };
    int32_t max_length = 1;
    tokenizer_start(&b, TOKENIZER_SENTENCEPIECE, 0);
    for (int i = 0; i < vocab_size; i++) {
        if (!pieces[i]) die("%s: no piece has id %d (the model's vocabulary has %d)", path, i, vocab_size);
        size_t length = strlen(pieces[i]);
        char *piece = xcalloc(length + 1, 1, "piece");
        memcpy(piece, pieces[i], length);
        length = replace_sentencepiece_spaces(piece, length);
        int is_byte = length == 6 && strncmp(piece, "<0x", 3) == 0 && piece[5] == '>';
        int is_single_character = length > 0 && length <= 4 && (size_t)(1 + ((unsigned char)piece[0] >= 0xC0)
            + ((unsigned char)piece[0] >= 0xE0) + ((unsigned char)piece[0] >= 0xF0)) == length;
        float score = scores[i];
        if (score == -INFINITY && is_single_character && !is_byte) score = 0.0f;
        tokenizer_put_piece(&b, score, piece, length);
        if ((int32_t)length > max_length) max_length = (int32_t)length;
        free(piece);
    }
    tokenizer_finish(&b, max_length);
    free(pieces);
    free(scores);
    *blob = b.data;
    *size = b.size;
    return NULL;
}

// GPT-2's byte-level alphabet, which tokenizer.json spells byte-level pieces
// in: a byte that is printable Latin-1 (! to ~, ¡ to ¬, ® to ÿ) stands for
// itself; the 68 others are U+0100 onwards, in byte order ("Ġ" is a space).
static int is_printable_latin1(int byte) {
    return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

#define BYTE_LEVEL_ALPHABET (0x100 + 68)   // code points the alphabet uses are all below this

// byte_of[code point] for the whole alphabet, -1 for code points outside it.
static void byte_level_alphabet(int byte_of[BYTE_LEVEL_ALPHABET]) {
    int moved = 0;
    for (int cp = 0; cp < BYTE_LEVEL_ALPHABET; cp++) byte_of[cp] = -1;
    for (int byte = 0; byte < 256; byte++) byte_of[is_printable_latin1(byte) ? byte : 0x100 + moved++] = byte;
}

// A piece spelled in the alphabet -> its raw bytes in out (room for as many
// bytes as s has). Returns the byte count, or -1 if a character is not in the alphabet.
static int byte_level_decode(const char *s, size_t length, const int byte_of[BYTE_LEVEL_ALPHABET], char *out) {
    int n = 0;
    for (size_t at = 0; at < length;) {
        int char_length;
        uint32_t cp = decode_utf8((const unsigned char *)s + at, length - at, &char_length);
        if (cp >= BYTE_LEVEL_ALPHABET || byte_of[cp] < 0) return -1;
        out[n++] = (char)byte_of[cp];
        at += (size_t)char_length;
    }
    return n;
}

// The id of a merge half, spelled in the alphabet; dies unless it is a piece merging may use.
static int byte_level_merge_half(const Tokenizer *t, const char *half, size_t length, const int byte_of[BYTE_LEVEL_ALPHABET],
                                 const char *path, int rank) {
    char bytes[1024];
    int n = length < sizeof bytes ? byte_level_decode(half, length, byte_of, bytes) : -1;
    int id = n < 0 ? -1 : piece_lookup(t, bytes, (size_t)n);
    if (id < 0 || t->scores[id] == -INFINITY)
        die("%s: merge %d uses '%.*s', which is not a piece of the vocab", path, rank, (int)length, half);
    return id;
}

// runq merges the pair that makes the lowest-ranked piece and, of two pairs
// that make the same piece, the one whose parts rank lowest; any pair that
// joins into a piece may merge. Hugging Face and llama.cpp merge by a merges
// list. The two agree exactly when the list holds every split of a piece
// into two pieces, ordered by (piece, left part, right part) rank: as a list
// converted from tiktoken's ranks is. Merges are "a b", spelled in the
// alphabet (which has no space). Returns NULL, or why not.
static const char *check_merges_follow_ranks(const Tokenizer *t, char **merges, int n_merges, const char *path) {
    int byte_of[BYTE_LEVEL_ALPHABET];
    byte_level_alphabet(byte_of);
    int previous[3] = { -1, -1, -1 };   // (piece, left, right) ranks of the merge before
    char *joined = xcalloc(2 * (size_t)t->max_token_length, 1, "merge");
    int in_order = 1;
    for (int rank = 0; rank < n_merges && in_order; rank++) {
        const char *space = strchr(merges[rank], ' ');
        if (!space) die("%s: merge %d is not 'a b'", path, rank);
        int a = byte_level_merge_half(t, merges[rank], (size_t)(space - merges[rank]), byte_of, path, rank);
        int b = byte_level_merge_half(t, space + 1, strlen(space + 1), byte_of, path, rank);
        memcpy(joined, t->vocab[a], (size_t)t->lengths[a]);
        memcpy(joined + t->lengths[a], t->vocab[b], (size_t)t->lengths[b]);
        int merged = piece_lookup(t, joined, (size_t)(t->lengths[a] + t->lengths[b]));
        if (merged < 0 || t->scores[merged] == -INFINITY)
            die("%s: merge %d ('%s') makes no piece of the vocab", path, rank, merges[rank]);
        int key[3] = { (int)-t->scores[merged], (int)-t->scores[a], (int)-t->scores[b] };   // ranks are -scores
        in_order = key[0] != previous[0] ? key[0] > previous[0] : key[1] != previous[1] ? key[1] > previous[1] : key[2] > previous[2];
        memcpy(previous, key, sizeof key);
    }
    free(joined);
    if (!in_order) return "the merges are not in the order of their pieces' ids, the ranks runq merges by";

    int64_t splits = 0;
    for (int id = 0; id < t->vocab_size; id++) {
        if (t->scores[id] == -INFINITY) continue;
        for (int k = 1; k < t->lengths[id]; k++) {
            int a = piece_lookup(t, t->vocab[id], (size_t)k), b = piece_lookup(t, t->vocab[id] + k, (size_t)(t->lengths[id] - k));
            splits += a >= 0 && b >= 0 && t->scores[a] != -INFINITY && t->scores[b] != -INFINITY;
        }
    }
    if (splits != n_merges) return "the merges list lacks some splits of a piece into two pieces, which runq would merge";
    return NULL;
}

// A byte-level vocabulary as tokenizer.json or GGUF spells it.
typedef struct {
    int vocab_size;
    char **spelled;          // (vocab_size,) each piece in GPT-2's alphabet, or as it is when special; NULL: no piece
    int *special;            // (vocab_size,) 1 for added / control tokens (<|begin_of_text|>, <|eot_id|>, ...)
    char **merges;           // (n_merges,) "a b", spelled
    int n_merges;
    int split_rule;          // SplitRule
} ByteLevelVocab;

static ByteLevelVocab new_byte_level_vocab(int vocab_size, int n_merges, int split_rule) {
    ByteLevelVocab v = { .vocab_size = vocab_size, .n_merges = n_merges, .split_rule = split_rule };
    v.spelled = xcalloc((size_t)vocab_size, sizeof(char *), "tokenizer");
    v.special = xcalloc((size_t)vocab_size, sizeof(int), "tokenizer");
    v.merges = xcalloc((size_t)n_merges + 1, sizeof(char *), "tokenizer");
    return v;
}

static void free_byte_level_vocab(ByteLevelVocab *v) {
    for (int i = 0; i < v->vocab_size; i++) free(v->spelled[i]);
    for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->spelled);
    free(v->special);
    free(v->merges);
}

// Byte-level BPE -> a blob: pieces go back from
// the alphabet to raw bytes; a piece's id is its rank (the vocabulary is
// tiktoken's ranks converted), so it scores -id; special tokens score -inf.
// The merges are checked, not stored: the ranks say it all.
static const char *byte_level_blob(const ByteLevelVocab *v, const char *path, uint8_t **blob, size_t *size) {
    int byte_of[BYTE_LEVEL_ALPHABET];
    byte_level_alphabet(byte_of);
    Buffer b = { 0 };
    int32_t max_length = 1;
    tokenizer_start(&b, TOKENIZER_BYTE_LEVEL, v->split_rule);
    for (int id = 0; id < v->vocab_size; id++) {
        const char *spelled = v->spelled[id];
        if (!spelled) die("%s: no piece has id %d (the model's vocabulary has %d)", path, id, v->vocab_size);
        size_t length = strlen(spelled);
        char *bytes = xcalloc(length + 1, 1, "piece");
        int n = v->special[id] ? (int)length : byte_level_decode(spelled, length, byte_of, bytes);
        if (n < 0) die("%s: piece %d '%s' is not spelled in the byte-level alphabet", path, id, spelled);
        if (id >= 1 << 24) die("%s: %d pieces are more than float scores can rank", path, v->vocab_size);
        tokenizer_put_piece(&b, v->special[id] ? -INFINITY : -(float)id, v->special[id] ? spelled : bytes, (size_t)n);
        if (n > max_length) max_length = n;
        free(bytes);
    }
    tokenizer_finish(&b, max_length);
    Tokenizer check;
    const char *refusal = build_tokenizer_from_memory(&check, b.data, b.size, v->vocab_size);
    if (!refusal) refusal = check_merges_follow_ranks(&check, v->merges, v->n_merges, path);
    free_tokenizer(&check);
    if (refusal) {
        free(b.data);
        return refusal;
    }
    *blob = b.data;
    *size = b.size;
    return NULL;
}

// tokenizer.json of the byte-level kind (Llama 3, GPT-2, SmolLM2): model.vocab,
// added_tokens (special) and model.merges.
static const char *byte_level_from_json(const Json *root, const char *path, int vocab_size, uint8_t **blob, size_t *size) {
    const Json *model = json_get(root, "model");
    const Json *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    if (!vocab || vocab->type != JSON_OBJECT || !merges || merges->type != JSON_ARRAY)
        return "model.vocab or model.merges is missing";
    ByteLevelVocab v = new_byte_level_vocab(vocab_size, merges->count, json_split_rule(json_get(root, "pre_tokenizer")));
    for (int i = 0; i < vocab->count; i++) {
        const Json *id = &vocab->items[i];
        if (id->type != JSON_NUMBER || id->number < 0 || id->number >= vocab_size)
            die("%s: vocab entry '%s' has id outside the model's %d-piece vocabulary", path, vocab->keys[i], vocab_size);
        if (v.spelled[(int)id->number]) die("%s: vocab entry '%s' shares id %d with another", path, vocab->keys[i], (int)id->number);
        v.spelled[(int)id->number] = strdup(vocab->keys[i]);
    }
    const Json *added = json_get(root, "added_tokens");
    for (int i = 0; added && added->type == JSON_ARRAY && i < added->count; i++) {
        const Json *id = json_get(&added->items[i], "id"), *content = json_get(&added->items[i], "content");
        if (!id || id->type != JSON_NUMBER || !content || content->type != JSON_STRING) continue;
        if (id->number < 0 || id->number >= vocab_size) die("%s: added token '%s' is outside the vocabulary", path, content->string);
        free(v.spelled[(int)id->number]);
        v.spelled[(int)id->number] = strdup(content->string);
        v.special[(int)id->number] = 1;
    }
    for (int rank = 0; rank < merges->count; rank++) {
        char left[1024], right[1024];
        json_merge(merges, rank, path, left, right, sizeof left);
        v.merges[rank] = xcalloc(strlen(left) + strlen(right) + 2, 1, "merge");
        sprintf(v.merges[rank], "%s %s", left, right);
    }
    const char *refusal = byte_level_blob(&v, path, blob, size);
    free_byte_level_vocab(&v);
    return refusal;
}

// A Hugging Face tokenizer.json -> a tokenizer blob for a vocab_size-piece
// model. Returns NULL, or why this kind of tokenizer is not supported.
static const char *tokenizer_from_json(const char *path, int vocab_size, uint8_t **blob, size_t *size) {
    Json root = json_read_file(path);
    const char *refusal;
    int kind = json_tokenizer_kind(&root, &refusal);
    if (kind == TOKENIZER_SENTENCEPIECE) refusal = sentencepiece_from_json(&root, path, vocab_size, blob, size);
    else if (kind == TOKENIZER_BYTE_LEVEL) refusal = byte_level_from_json(&root, path, vocab_size, blob, size);
    json_free(&root);
    return refusal;
}

// ---- Chat templates: which family a Jinja chat_template (tokenizer_config.json,
// GGUF's tokenizer.chat_template) belongs to, by the markers each one uses;
// CHAT_NOT_RECORDED if none (runq then goes by the special tokens).
static uint32_t chat_template_of_jinja(const char *jinja) {
    if (strstr(jinja, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (strstr(jinja, "<|im_start|>")) return CHAT_CHATML;
    if (strstr(jinja, "<|user|>")) return CHAT_ZEPHYR;
    if (strstr(jinja, "<<SYS>>")) return CHAT_LLAMA2;
    return CHAT_NOT_RECORDED;
}

// A token tokenizer_config.json names ("<s>", or {"content": "<s>"}) -> its id, -1 if none.
static int tokenizer_config_token(const Json *config, const char *key, const Tokenizer *t) {
    const Json *v = json_get(config, key);
    if (v && v->type == JSON_OBJECT) v = json_get(v, "content");
    return v && v->type == JSON_STRING ? str_lookup(v->string, t) : -1;
}

// tokenizer_config.json, when the directory has one: the chat template's
// family, and BOS and EOS where config.json does not give them.
static void hf_tokenizer_config(Source *src, const char *dir, int need_bos, int need_eos) {
    char *path = path_join(dir, "tokenizer_config.json");
    if (file_exists(path)) {
        Json config = json_read_file(path);
        const Json *jinja = json_get(&config, "chat_template");
        for (int i = 0; jinja && jinja->type == JSON_ARRAY && i < jinja->count; i++)   // [{name, template}, ...]
            if (json_is(json_get(&jinja->items[i], "name"), "default")) jinja = json_get(&jinja->items[i], "template");
        if (jinja && jinja->type == JSON_STRING) src->header.chat_template = chat_template_of_jinja(jinja->string);
        Tokenizer t;
        if (!build_tokenizer_from_memory(&t, src->tokenizer, src->tokenizer_size, src->header.vocab_size)) {
            int bos = tokenizer_config_token(&config, "bos_token", &t), eos = tokenizer_config_token(&config, "eos_token", &t);
            if (need_bos && bos >= 0) src->header.bos_id = bos;
            if (need_eos && eos >= 0) src->header.eos_id = eos;
        }
        free_tokenizer(&t);
        json_free(&config);
        source_add_input(src, path);
    }
    free(path);
}

// ----------------------------------------------------------------------------
// Writing the checkpoint

// The temporary file being written, removed if export stops early. A global
// because the exit and signal handlers that remove it take no arguments.
static char *pending_output;

static void remove_pending_output(void) {
    if (pending_output) unlink(pending_output);
}

static void on_signal(int sig) {
    remove_pending_output();
    signal(sig, SIG_DFL);
    raise(sig);
}

typedef struct {
    PlannedTensor *tensors;
    int count;
    uint64_t file_size;
} Plan;

static void plan_add(Plan *plan, const char *name, int kind, int layer, uint32_t rows, uint32_t cols, int type, int group_size) {
    plan->tensors = realloc(plan->tensors, (size_t)(plan->count + 1) * sizeof(PlannedTensor));
    if (!plan->tensors) die("out of memory");
    PlannedTensor *t = &plan->tensors[plan->count++];
    memset(t, 0, sizeof *t);
    snprintf(t->entry.name, TENSOR_NAME_LEN, "%s", name);
    t->entry.type = (uint32_t)type;
    t->entry.group_size = is_quantized((uint32_t)type) ? (uint32_t)group_size : 0;
    t->entry.rows = rows;
    t->entry.cols = cols;
    t->entry.nbytes = tensor_nbytes(t->entry.type, rows, cols, t->entry.group_size, CHECKPOINT_VERSION);
    t->kind = kind;
    t->layer = layer;
}

// ---- Which type each matrix gets (export --bits, --recipe, --tensor-type):
// every matrix the default type; then a recipe's choices by kind and layer;
// then explicit overrides by name, last. Vectors (norms) are always f32.

// A mixed-precision preset in the spirit of llama.cpp's Q4_K_M: the tensors
// whose error costs most get more bits - the classifier, attention's values
// (wv) and the FFN's down projection (w2), the latter two in llama.cpp's
// use_more_bits layers (the first and last eighth, every third between).
typedef struct {
    const char *name;
    int type, group_size;    // every matrix not named below
    int embeddings;          // tok_embeddings (tied: the larger of this and output)
    int output;              // the classifier
    int wv;                  // attention's value projection, every layer
    int more_bits;           // wv and w2 in the use_more_bits layers (at least wv's)
} Recipe;

static const Recipe recipes[] = {
    { "q4-mixed", TYPE_Q4, 32, TYPE_Q4, TYPE_Q8, TYPE_Q4, TYPE_Q8 },
    { "q3-mixed", TYPE_Q3, 32, TYPE_Q4, TYPE_Q8, TYPE_Q4, TYPE_Q4 },
    // the 7B-in-2-GB one: int2 at group 64 (2.25 bits), a little more where it counts
    { "q2-mixed", TYPE_Q2, 64, TYPE_Q4, TYPE_Q4, TYPE_Q3, TYPE_Q3 },
};

// An explicit choice: NAME=TYPE[/GROUP], NAME a tensor ("layers.0.wv",
// "output", "tok_embeddings") or a layer field ("w2": that matrix of every layer).
typedef struct {
    char name[TENSOR_NAME_LEN];
    int type, group_size;
    int matched;             // tensors it applied to (none: an error)
} TypeOverride;

#define MAX_OVERRIDES 64
typedef struct {
    int type, group_size;    // every matrix's (TYPE_F32: an fp32 checkpoint)
    const Recipe *recipe;    // NULL: none
    TypeOverride overrides[MAX_OVERRIDES];
    int n_overrides;
} TypeRules;

static int more_bits_layer(int layer, int n_layers) {   // llama.cpp's use_more_bits
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

static int more_bits_of(int a, int b) { return quant_layout((uint32_t)a)->bits >= quant_layout((uint32_t)b)->bits ? a : b; }

// The type a recipe gives a matrix.
static int recipe_type(const Recipe *r, int kind, int layer, int n_layers, int tied) {
    if (kind == K_EMBED) return tied ? more_bits_of(r->embeddings, r->output) : r->embeddings;
    if (kind == K_OUTPUT) return r->output;
    if (kind == K_WV) return more_bits_layer(layer, n_layers) ? more_bits_of(r->wv, r->more_bits) : r->wv;
    if (kind == K_W2 && more_bits_layer(layer, n_layers)) return r->more_bits;
    return r->type;
}

static int override_matches(const TypeOverride *o, const PlannedTensor *t) {
    if (strcmp(o->name, t->entry.name) == 0) return 1;
    if (t->layer < 0) return 0;
    const char *field = strchr(t->entry.name + strlen("layers."), '.');
    return field && strcmp(field + 1, o->name) == 0;
}

// A matrix's type and group size under the rules (an fp32 export: f32). A
// recipe's default type keeps the rules' group size (the recipe's own unless
// --group-size says otherwise); the types it raises have groups of 32.
static void choose_type(TypeRules *rules, const PlannedTensor *t, int n_layers, int tied, int *type, int *group_size) {
    *type = rules->type;
    *group_size = rules->group_size;
    if (rules->type == TYPE_F32) return;
    if (rules->recipe) {
        *type = recipe_type(rules->recipe, t->kind, t->layer, n_layers, tied);
        if (*type != rules->recipe->type) *group_size = Q_BLOCK;
    }
    for (int i = 0; i < rules->n_overrides; i++)
        if (override_matches(&rules->overrides[i], t)) {
            *type = rules->overrides[i].type;
            *group_size = rules->overrides[i].group_size;
            rules->overrides[i].matched++;
        }
}

static int is_matrix_kind(int kind) {
    return kind != K_ATTN_NORM && kind != K_FFN_NORM && kind != K_NORM && kind != K_TOKENIZER && kind != K_ROPE_FREQS;
}

// The plan's matrices retyped by the rules; an override that names no tensor
// is an error (before any byte is written).
static void apply_type_rules(Plan *plan, TypeRules *rules, int n_layers, int tied) {
    for (int i = 0; i < plan->count; i++) {
        PlannedTensor *t = &plan->tensors[i];
        if (!is_matrix_kind(t->kind)) continue;
        int type, group_size;
        choose_type(rules, t, n_layers, tied, &type, &group_size);
        t->entry.type = (uint32_t)type;
        t->entry.group_size = is_quantized((uint32_t)type) ? (uint32_t)group_size : 0;
        t->entry.nbytes = tensor_nbytes(t->entry.type, t->entry.rows, t->entry.cols, t->entry.group_size, CHECKPOINT_VERSION);
    }
    for (int i = 0; i < rules->n_overrides; i++)
        if (!rules->overrides[i].matched)
            die("--tensor-type names '%s', which is no matrix of this model (a tensor such as layers.0.wv, output or "
                "tok_embeddings, or a layer field: wq wk wv wo w1 w2 w3)%s", rules->overrides[i].name,
                tied && strcmp(rules->overrides[i].name, "output") == 0 ? "; its classifier is tok_embeddings (tied)" : "");
}

// Offsets in file order; the file ends with its last tensor (readers check this).
static void place_tensors(Plan *plan, int n_layers) {
    uint64_t offset = tensor_table_offset(n_layers) + sizeof(TensorEntry) * (size_t)plan->count;
    for (int i = 0; i < plan->count; i++) {
        offset = round_up(offset, TENSOR_ALIGNMENT);
        plan->tensors[i].entry.offset = offset;
        offset += plan->tensors[i].entry.nbytes;
    }
    plan->file_size = offset;
}

static Plan make_plan_with(const Source *src, TypeRules *rules) {
    const FileHeader *h = &src->header;
    Plan plan = { 0 };
    uint32_t dim = (uint32_t)h->dim, q_dim = (uint32_t)(h->n_heads * h->head_dim);
    uint32_t kv_dim = (uint32_t)(h->n_kv_heads * h->head_dim);
    char name[TENSOR_NAME_LEN];
    plan_add(&plan, "tok_embeddings", K_EMBED, -1, (uint32_t)h->vocab_size, dim, TYPE_F32, 0);
    for (int l = 0; l < h->n_layers; l++) {
        uint32_t ffn = (uint32_t)src->ffn_dim[l];
        struct { const char *field; int kind; uint32_t rows, cols; } layer[] = {
            { "attention_norm", K_ATTN_NORM, 1, dim }, { "wq", K_WQ, q_dim, dim }, { "wk", K_WK, kv_dim, dim },
            { "wv", K_WV, kv_dim, dim }, { "wo", K_WO, dim, q_dim }, { "ffn_norm", K_FFN_NORM, 1, dim },
            { "w1", K_W1, ffn, dim }, { "w2", K_W2, dim, ffn }, { "w3", K_W3, ffn, dim },
        };
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, layer[i].field);
            plan_add(&plan, name, layer[i].kind, l, layer[i].rows, layer[i].cols, TYPE_F32, 0);
        }
    }
    plan_add(&plan, "norm", K_NORM, -1, 1, dim, TYPE_F32, 0);
    int tied = (h->flags & FLAG_TIED_CLASSIFIER) != 0;
    if (!tied) plan_add(&plan, "output", K_OUTPUT, -1, (uint32_t)h->vocab_size, dim, TYPE_F32, 0);
    if (src->rope_freqs) plan_add(&plan, "rope_freqs", K_ROPE_FREQS, -1, 1, (uint32_t)h->head_dim / 2, TYPE_F32, 0);
    if (src->tokenizer) plan_add(&plan, "tokenizer", K_TOKENIZER, -1, 1, (uint32_t)src->tokenizer_size, TYPE_BLOB, 0);
    apply_type_rules(&plan, rules, h->n_layers, tied);
    place_tensors(&plan, h->n_layers);
    return plan;
}

// matrix_type: a quantized type or TYPE_F32, for every matrix
static Plan make_plan(const Source *src, int matrix_type, int group_size) {
    TypeRules rules = { .type = matrix_type, .group_size = group_size };
    return make_plan_with(src, &rules);
}

// The bits per weight of the plan's quantized matrices (codes and scales).
static double plan_bits_per_weight(const Plan *plan) {
    double bits = 0, weights = 0;
    for (int i = 0; i < plan->count; i++) {
        const TensorEntry *e = &plan->tensors[i].entry;
        if (!is_quantized(e->type)) continue;
        bits += 8.0 * (double)e->nbytes;
        weights += (double)e->rows * (double)e->cols;
    }
    return weights > 0 ? bits / weights : 0;
}

static void write_at(int fd, const void *data, size_t size, uint64_t offset, const char *path) {
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = pwrite(fd, p, size, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("cannot write %s: %s", path, n < 0 ? strerror(errno) : "short write");
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
}

typedef struct {
    uint64_t done, total;
    int last_percent;
    int quiet;
    int terminal;            // redraw one line on a terminal; a line per 10% in a log
} Progress;

static void progress_advance(Progress *p, uint64_t bytes, const char *what) {
    p->done += bytes;
    int percent = (int)(100 * p->done / (p->total ? p->total : 1));
    int step = p->terminal ? 1 : 10;
    if (p->quiet || percent / step == p->last_percent / step) return;
    p->last_percent = percent;
    if (p->terminal) fprintf(stderr, "\rexport: %3d%%  %-40s", percent, what);
    else fprintf(stderr, "export: %3d%%  %s\n", percent, what);
}

static void progress_finish(Progress *p) {
    if (!p->quiet && p->terminal) fprintf(stderr, "\rexport: 100%%  %-40s\n", "done");
}

static void read_finite_rows(Source *src, const PlannedTensor *t, int begin, int end, float *values) {
    size_t cols = t->entry.cols;
    if (t->kind == K_ROPE_FREQS) memcpy(values, src->rope_freqs, cols * sizeof(float));   // one row
    else src->read_rows(src, t, begin, end, values);
    for (size_t i = 0; i < (size_t)(end - begin) * cols; i++)
        if (!isfinite(values[i])) die("tensor %s has a non-finite value in row %zu", t->entry.name, begin + i / cols);
}

// Rows [begin, end) as a quantized type of group_size, cols padded to a whole
// group: copied when the source holds them so, else read into values and quantized.
static void read_coded_rows(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                            float *values, uint8_t *codes, uint16_t *scales) {
    int cols = (int)t->entry.cols, padded = (int)round_up((size_t)cols, (size_t)group_size);
    size_t row_bytes = row_code_bytes(quant_layout((uint32_t)type), (uint64_t)padded);
    if (src->read_codes && src->read_codes(src, t, type, group_size, begin, end, codes, scales)) {
        for (size_t i = 0; i < (size_t)(end - begin) * (size_t)(padded / group_size); i++)
            if ((scales[i] & 0x7C00) == 0x7C00)   // fp16 exponent all ones: inf or nan
                die("tensor %s has a non-finite scale in row %zu", t->entry.name, begin + i / (size_t)(padded / group_size));
        return;
    }
    read_finite_rows(src, t, begin, end, values);
    const float *importance = src->importance ? src->importance(src, t) : NULL;
    for (int r = 0; r < end - begin; r++)
        quantize_row((uint32_t)type, values + (size_t)r * cols, importance, cols, padded, group_size,
                     codes + (size_t)r * row_bytes, scales + (size_t)r * (padded / group_size));
}

// One chunk of rows, read and quantized by all threads (runq's pool), each a
// contiguous slice: the scale search dominates export time.
typedef struct {
    Source *src;
    const PlannedTensor *t;
    int begin, end;
    float *values;
    uint8_t *codes;
    uint16_t *scales;
} ChunkTask;

static void chunk_task(void *arg, int thread_index, int n_threads) {
    ChunkTask *c = arg;
    const TensorEntry *e = &c->t->entry;
    int n = c->end - c->begin, per_thread = (n + n_threads - 1) / n_threads;
    int first = thread_index * per_thread, last = first + per_thread < n ? first + per_thread : n;
    if (first >= last) return;
    size_t cols = e->cols, padded = round_up(cols, e->group_size ? e->group_size : 1);
    if (e->type == TYPE_F32) {
        read_finite_rows(c->src, c->t, c->begin + first, c->begin + last, c->values + first * cols);
    } else {
        size_t row_bytes = row_code_bytes(quant_layout(e->type), padded);
        read_coded_rows(c->src, c->t, (int)e->type, (int)e->group_size, c->begin + first, c->begin + last,
                        c->values + first * cols, c->codes + first * row_bytes, c->scales + first * (padded / e->group_size));
    }
}

// Rows in chunks of about 4 MB of floats (whole Q4 tiles): read, quantize,
// tile, write.
static void write_tensor(int fd, const char *path, Source *src, const PlannedTensor *t, Progress *progress,
                         ThreadPool *pool) {
    const TensorEntry *e = &t->entry;
    if (e->type == TYPE_BLOB) {
        write_at(fd, src->tokenizer, src->tokenizer_size, e->offset, path);
        progress_advance(progress, e->nbytes, e->name);
        return;
    }
    int rows = (int)e->rows, cols = (int)e->cols;
    int chunk = (int)round_up(((size_t)1 << 20) / (size_t)cols, Q4_TILE_ROWS);
    float *values = xcalloc((size_t)chunk * cols, sizeof(float), "export buffer");
    int quantized = is_quantized(e->type);
    size_t padded = quantized ? round_up((size_t)cols, e->group_size) : (size_t)cols;
    size_t row_bytes = quantized ? row_code_bytes(quant_layout(e->type), padded) : 0;
    size_t row_scales = quantized ? padded / e->group_size : 0;
    uint64_t tiled_rows = round_up((size_t)rows, Q4_TILE_ROWS);   // Q4 stores whole tiles
    uint8_t *codes = xcalloc((size_t)chunk * row_bytes, 1, "export buffer");
    uint16_t *scales = xcalloc((size_t)chunk * row_scales + 1, sizeof(uint16_t), "export buffer");
    int tiled = e->type == TYPE_Q4;   // Q4's chunks are reordered into tiles before they are written
    uint8_t *tiled_codes = tiled ? xcalloc((size_t)chunk * row_bytes, 1, "export buffer") : NULL;
    uint16_t *tiled_scales = tiled ? xcalloc((size_t)chunk * row_scales + 1, sizeof(uint16_t), "export buffer") : NULL;
    for (int begin = 0; begin < rows; begin += chunk) {
        int end = begin + chunk < rows ? begin + chunk : rows, n = end - begin;
        ChunkTask task = { src, t, begin, end, values, codes, scales };
        pool_run(pool, chunk_task, &task);
        if (e->type == TYPE_F32) {
            write_at(fd, values, (size_t)n * cols * sizeof(float), e->offset + (uint64_t)begin * cols * 4, path);
        } else if (tiled) {   // the last chunk's padding rows fill its last tile
            size_t n_stored = round_up((size_t)n, Q4_TILE_ROWS);
            tile_q4_rows(codes, scales, begin, end, (int)padded, (int)e->group_size, tiled_codes, tiled_scales);
            write_at(fd, tiled_codes, n_stored * row_bytes, e->offset + (uint64_t)begin * row_bytes, path);
            write_at(fd, tiled_scales, n_stored * row_scales * 2,
                     e->offset + tiled_rows * row_bytes + (uint64_t)begin * row_scales * 2, path);
        } else {
            write_at(fd, codes, (size_t)n * row_bytes, e->offset + (uint64_t)begin * row_bytes, path);
            write_at(fd, scales, (size_t)n * row_scales * 2,
                     e->offset + (uint64_t)rows * row_bytes + (uint64_t)begin * row_scales * 2, path);
        }
        progress_advance(progress, e->nbytes * (uint64_t)n / (uint64_t)rows, e->name);
    }
    free(values);
    free(codes);
    free(scales);
    free(tiled_codes);
    free(tiled_scales);
}

static void refuse_to_overwrite_inputs(const Source *src, const char *output) {
    struct stat out;
    if (stat(output, &out) != 0) return;
    if (S_ISDIR(out.st_mode)) die("output %s is a directory", output);
    // the output is written beside and renamed over: that would replace a device (/dev/null) or a pipe
    if (!S_ISREG(out.st_mode)) die("output %s is not a regular file: export writes a new file there", output);
    for (int i = 0; i < src->n_inputs; i++) {
        struct stat in;
        if (stat(src->inputs[i], &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
            die("output %s is the input %s: export never overwrites its input", output, src->inputs[i]);
    }
}

// Sources that can lack a tensor (Hugging Face, GGUF) are checked against the
// plan before any byte is written.
static void check_source_tensors(const Source *src, const Plan *plan) {
    if (src->check_tensor)
        for (int i = 0; i < plan->count; i++)
            if (plan->tensors[i].kind != K_TOKENIZER && plan->tensors[i].kind != K_ROPE_FREQS)
                src->check_tensor(src, &plan->tensors[i]);
}

// OUTPUT.tmp.XXXXXX beside the output, removed at exit or on a signal until
// commit_pending_output renames it.
static int create_pending_output(const char *output) {
    size_t path_size = strlen(output) + 16;
    pending_output = xcalloc(path_size, 1, "path");
    snprintf(pending_output, path_size, "%s.tmp.XXXXXX", output);
    int fd = mkstemp(pending_output);
    if (fd < 0) die("cannot create a temporary file beside %s: %s", output, strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);   // mkstemp makes 0600; the output is an ordinary file
    static int registered;   // tests write many files: one exit handler is enough
    if (!registered) atexit(remove_pending_output);
    registered = 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGXFSZ, SIG_IGN);   // past a file-size limit, write fails (EFBIG) and we clean up
    return fd;
}

static void commit_pending_output(int fd, const char *output, uint64_t file_size) {
    if (ftruncate(fd, (off_t)file_size) != 0) die("cannot size %s: %s", output, strerror(errno));
    if (close(fd) != 0) die("cannot write %s: %s", output, strerror(errno));
    if (rename(pending_output, output) != 0) die("cannot rename %s to %s: %s", pending_output, output, strerror(errno));
    free(pending_output);
    pending_output = NULL;
}

// The lowest version that describes the plan: any quantized matrix needs 3
// (Q4 in tiles; Q8, Q3, Q2); a reader of version 1 would run without
// rope_freqs' scaling.
static uint32_t plan_version(const Source *src, const Plan *plan) {
    for (int i = 0; i < plan->count; i++)
        if (is_quantized(plan->tensors[i].entry.type)) return VERSION_Q4_TILES;
    return src->rope_freqs ? VERSION_ROPE_FREQS : 1;
}

// Returns the bits per weight of the quantized matrices written (0: none).
static double write_checkpoint_with(Source *src, const char *output, TypeRules *rules, int quiet) {
    refuse_to_overwrite_inputs(src, output);
    Plan plan = make_plan_with(src, rules);
    check_source_tensors(src, &plan);
    int fd = create_pending_output(output);

    FileHeader header = src->header;
    header.magic = CHECKPOINT_MAGIC;
    header.version = plan_version(src, &plan);
    header.n_tensors = (uint32_t)plan.count;
    write_at(fd, &header, sizeof header, 0, output);
    for (int l = 0; l < header.n_layers; l++)
        write_at(fd, &src->ffn_dim[l], 4, sizeof header + 4 * (uint64_t)l, output);
    uint64_t table = tensor_table_offset(header.n_layers);
    for (int i = 0; i < plan.count; i++)
        write_at(fd, &plan.tensors[i].entry, sizeof(TensorEntry), table + sizeof(TensorEntry) * (uint64_t)i, output);

    Progress progress = { .total = plan.file_size, .last_percent = -100, .quiet = quiet || plan.file_size < (64u << 20),
                          .terminal = isatty(STDERR_FILENO) };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ThreadPool *pool = pool_create(cores > 0 ? (int)cores : 1);
    for (int i = 0; i < plan.count; i++) write_tensor(fd, output, src, &plan.tensors[i], &progress, pool);
    pool_free(pool);
    progress_finish(&progress);
    commit_pending_output(fd, output, plan.file_size);
    double bits = plan_bits_per_weight(&plan);
    free(plan.tensors);
    return bits;
}

// matrix_type: a quantized type or TYPE_F32, for every matrix
__attribute__((unused))   // used by train and the tests
static void write_checkpoint(Source *src, const char *output, int matrix_type, int group_size, int quiet) {
    TypeRules rules = { .type = matrix_type, .group_size = group_size };
    write_checkpoint_with(src, output, &rules, quiet);
}

// A LoRA adapter kept apart from its base (runq --lora FILE): the checkpoint
// format with the base's header (flag FLAG_ADAPTER; runq checks every shape
// against the base it runs) and, per adapted projection, two f32 tensors
//   layers.{L}.{wq|wk|wv|wo|w1|w2|w3}.lora_a   (rank, inputs)
//   layers.{L}.{...}.lora_b                   (outputs, rank): scale * B, rows in runq's RoPE order
// so that W x + lora_b (lora_a x) is what the merged export computes.
static void write_adapter_file(Source *src, const char *output) {
    const LoraSource *l = src->impl;
    int n_layers = src->header.n_layers, n = 0;
    TensorEntry *table = xcalloc((size_t)n_layers * LORA_KINDS * 2, sizeof *table, "adapter table");
    const float **data = xcalloc((size_t)n_layers * LORA_KINDS * 2, sizeof *data, "adapter table");
    uint64_t offset = 0;   // from the start of the data, until the table's length is known
    for (int layer = 0; layer < n_layers; layer++)
        for (int target = 0; target < N_LORA_TARGETS; target++) {
            const LoraDelta *d = &l->deltas[(size_t)layer * LORA_KINDS + lora_targets[target].kind];
            if (!d->a) continue;
            for (int is_b = 0; is_b < 2; is_b++) {
                TensorEntry *e = &table[n];
                snprintf(e->name, sizeof e->name, "layers.%d.%s.lora_%c", layer, lora_targets[target].field, is_b ? 'b' : 'a');
                e->type = TYPE_F32;
                e->rows = (uint32_t)(is_b ? d->outputs : l->rank);
                e->cols = (uint32_t)(is_b ? l->rank : d->inputs);
                e->nbytes = tensor_nbytes(TYPE_F32, e->rows, e->cols, 0, CHECKPOINT_VERSION);
                e->offset = offset;
                offset = round_up(offset + e->nbytes, TENSOR_ALIGNMENT);
                data[n++] = is_b ? d->scaled_b : d->a;
            }
        }
    uint64_t data_start = round_up(tensor_table_offset(n_layers) + sizeof(TensorEntry) * (uint64_t)n, TENSOR_ALIGNMENT);
    for (int i = 0; i < n; i++) table[i].offset += data_start;
    FileHeader header = src->header;
    header.magic = CHECKPOINT_MAGIC;
    header.version = 1;
    header.flags |= FLAG_ADAPTER;
    header.n_tensors = (uint32_t)n;
    int fd = create_pending_output(output);
    write_at(fd, &header, sizeof header, 0, output);
    for (int layer = 0; layer < n_layers; layer++)
        write_at(fd, &src->ffn_dim[layer], 4, sizeof header + 4 * (uint64_t)layer, output);
    write_at(fd, table, sizeof(TensorEntry) * (size_t)n, tensor_table_offset(n_layers), output);
    for (int i = 0; i < n; i++) write_at(fd, data[i], table[i].nbytes, table[i].offset, output);
    commit_pending_output(fd, output, table[n - 1].offset + table[n - 1].nbytes);
    free(table);
    free(data);
}

// ----------------------------------------------------------------------------
// Writing GGUF: llama.cpp's format (version 3, architecture "llama"), so that
// llama.cpp runs the very weights runq runs. All fields little-endian:
//
//   "GGUF", u32 version 3, u64 n_tensors, u64 n_metadata
//   metadata       key (u64 length + UTF-8 bytes), u32 value type, value;
//                  an array is u32 element type, u64 count, the elements
//   tensor infos   name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset
//                  into the data section; dims[0] is the fastest-varying one,
//                  so a (rows, cols) matrix is dims {cols, rows}
//   zero padding to general.alignment, then each tensor, padded to it too
//                  (llama.cpp checks that every offset is the padded running sum)
//
// Q4_0 is our Q4 at group size 32, block for block: {fp16 d; u8 qs[16]} with
// weight j in the low nibble of qs[j] and weight j+16 in the high one, and
// w = d * (q - 8). So its blocks are the scales and nibbles quantize_row_q4
// computes (or an int4 checkpoint holds), re-packed: no second quantizer.
// Tensor names are llama.cpp's; Wq and Wk rows are already in the interleaved-
// pair RoPE order its "llama" architecture rotates (llama2.c's and Meta's order).

#define GGUF_MAGIC "GGUF"
#define GGUF_MAGIC_U32 0x46554747u   // the same four bytes read as a little-endian u32
#define GGUF_VERSION 3
#define GGUF_ALIGNMENT 32

enum GgufValueType { GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9 };
enum GgmlType { GGML_TYPE_F32 = 0, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q8_0 = 8 };
// general.file_type: what most tensors are (llama_ftype)
enum { GGUF_FILE_ALL_F32 = 0, GGUF_FILE_MOSTLY_Q4_0 = 2, GGUF_FILE_MOSTLY_Q8_0 = 7 };
// tokenizer.ggml.token_type (llama_token_type)
enum { GGUF_TOKEN_NORMAL = 1, GGUF_TOKEN_UNKNOWN = 2, GGUF_TOKEN_CONTROL = 3, GGUF_TOKEN_BYTE = 6 };

typedef struct { uint16_t d; uint8_t qs[Q_BLOCK / 2]; } BlockQ4_0;   // ggml's block_q4_0
typedef struct { uint16_t d; int8_t qs[Q_BLOCK]; } BlockQ8_0;        // ggml's block_q8_0
_Static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes");
_Static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes");

static const char *ggml_type_name(uint32_t type) {
    return type == GGML_TYPE_F32 ? "f32" : type == GGML_TYPE_Q4_0 ? "q4_0" : type == GGML_TYPE_Q8_0 ? "q8_0" : "?";
}

static uint64_t ggml_nbytes(uint32_t type, uint64_t rows, uint64_t cols) {
    if (type == GGML_TYPE_Q4_0) return rows * (cols / Q_BLOCK) * sizeof(BlockQ4_0);
    if (type == GGML_TYPE_Q8_0) return rows * (cols / Q_BLOCK) * sizeof(BlockQ8_0);
    return rows * cols * sizeof(float);
}

typedef struct {
    Buffer bytes;
    uint64_t count;          // key-value pairs so far
} GgufMetadata;

static void gguf_put_string(Buffer *b, const char *s, size_t length) {
    uint64_t n = length;
    buffer_put(b, &n, 8);
    buffer_put(b, s, length);
}

static void gguf_key(GgufMetadata *m, const char *key, uint32_t type) {
    gguf_put_string(&m->bytes, key, strlen(key));
    buffer_put(&m->bytes, &type, 4);
    m->count++;
}

static void gguf_kv_u32(GgufMetadata *m, const char *key, uint32_t value) {
    gguf_key(m, key, GGUF_U32);
    buffer_put(&m->bytes, &value, 4);
}

static void gguf_kv_f32(GgufMetadata *m, const char *key, float value) {
    gguf_key(m, key, GGUF_F32);
    buffer_put(&m->bytes, &value, 4);
}

static void gguf_kv_bool(GgufMetadata *m, const char *key, int value) {
    uint8_t byte = value != 0;
    gguf_key(m, key, GGUF_BOOL);
    buffer_put(&m->bytes, &byte, 1);
}

static void gguf_kv_string(GgufMetadata *m, const char *key, const char *value) {
    gguf_key(m, key, GGUF_STRING);
    gguf_put_string(&m->bytes, value, strlen(value));
}

// the key and array header; the caller appends count elements of element_type
static void gguf_kv_array(GgufMetadata *m, const char *key, uint32_t element_type, uint64_t count) {
    gguf_key(m, key, GGUF_ARRAY);
    buffer_put(&m->bytes, &element_type, 4);
    buffer_put(&m->bytes, &count, 8);
}

// A tokenizer.bin piece as SentencePiece wrote it: tokenizer.bin stores the
// visible space "▁" (U+2581) as " ", and llama2.c's BOS/EOS as "\n<s>\n" and
// "\n</s>\n" so that they print on lines of their own.
static char *sentencepiece_piece(const char *piece, int is_bos_or_eos) {
    size_t length = strlen(piece);
    if (is_bos_or_eos && length >= 2 && piece[0] == '\n' && piece[length - 1] == '\n') { piece++; length -= 2; }
    char *out = xcalloc(length * 3 + 1, 1, "GGUF token");
    size_t n = 0;
    for (size_t i = 0; i < length; i++) {
        if (piece[i] == ' ') { memcpy(out + n, "\xE2\x96\x81", 3); n += 3; }
        else out[n++] = piece[i];
    }
    return out;
}

static int is_byte_piece(const char *piece) {
    return strlen(piece) == 6 && strncmp(piece, "<0x", 3) == 0 && isxdigit((unsigned char)piece[3])
        && isxdigit((unsigned char)piece[4]) && piece[5] == '>';
}

// A byte-level piece spelled in GPT-2's alphabet (out: room for 2 bytes per byte); returns its length.
static size_t byte_level_spell(const char *bytes, int n, const int byte_of[BYTE_LEVEL_ALPHABET], char *out) {
    size_t length = 0;
    for (int i = 0; i < n; i++) {
        unsigned cp = 0;
        while (byte_of[cp] != (unsigned char)bytes[i]) cp++;   // 324 entries: fine for a vocabulary once
        length += utf8_put(out + length, cp);
    }
    return length;
}

static int compare_ranks(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

// llama.cpp's names of the split rules (tokenizer.ggml.pre); the first of a
// rule is the one written.
static const struct { const char *name; int rule; } gguf_split_rules[] = {
    { "llama-bpe", SPLIT_LLAMA3 }, { "llama3", SPLIT_LLAMA3 }, { "llama-v3", SPLIT_LLAMA3 },
    { "gpt-2", SPLIT_GPT2 }, { "smollm", SPLIT_SMOLLM },
};

static int gguf_split_rule(const char *name) {
    for (size_t i = 0; i < sizeof gguf_split_rules / sizeof gguf_split_rules[0]; i++)
        if (strcmp(gguf_split_rules[i].name, name) == 0) return gguf_split_rules[i].rule;
    return 0;
}

static const char *gguf_split_rule_name(int rule) {
    for (size_t i = 0; i < sizeof gguf_split_rules / sizeof gguf_split_rules[0]; i++)
        if (gguf_split_rules[i].rule == rule) return gguf_split_rules[i].name;
    die("no GGUF name for byte-level split rule %d", rule);
    return NULL;
}

// tokenizer.ggml.* for a byte-level tokenizer: llama.cpp's "gpt2" model with
// its pre-tokenizer ("llama-bpe", "gpt-2", "smollm"): the pieces spelled in GPT-2's
// alphabet (special tokens as they are, typed control) and the merges the
// ranks imply, listed as Hugging Face's converter of tiktoken's ranks lists
// them: each piece in rank order, its splits into two pieces by their ranks.
static void gguf_put_byte_level_tokenizer(GgufMetadata *m, const Source *src, const Tokenizer *tok) {
    const FileHeader *h = &src->header;
    int byte_of[BYTE_LEVEL_ALPHABET];
    byte_level_alphabet(byte_of);
    char *spelled = xcalloc(2 * (size_t)tok->max_token_length + 1, 1, "GGUF token");
    gguf_kv_string(m, "tokenizer.ggml.model", "gpt2");
    gguf_kv_string(m, "tokenizer.ggml.pre", gguf_split_rule_name(tok->split_rule));
    gguf_kv_array(m, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)h->vocab_size);
    for (int id = 0; id < h->vocab_size; id++) {
        int special = tok->scores[id] == -INFINITY;
        size_t length = special ? (size_t)tok->lengths[id] : byte_level_spell(tok->vocab[id], tok->lengths[id], byte_of, spelled);
        gguf_put_string(&m->bytes, special ? tok->vocab[id] : spelled, length);
    }
    gguf_kv_array(m, "tokenizer.ggml.token_type", GGUF_I32, (uint64_t)h->vocab_size);
    for (int id = 0; id < h->vocab_size; id++) {
        int32_t type = tok->scores[id] == -INFINITY ? GGUF_TOKEN_CONTROL : GGUF_TOKEN_NORMAL;
        buffer_put(&m->bytes, &type, 4);
    }
    // the merges: a piece's rank is -score, which for Llama 3 is its id, so ids in order are ranks in order
    Buffer merges = { 0 };
    uint64_t n_merges = 0;
    int *splits = xcalloc((size_t)tok->max_token_length, 2 * sizeof(int), "merges");
    char *merge = xcalloc(4 * (size_t)tok->max_token_length + 2, 1, "merge");
    for (int id = 0; id < h->vocab_size; id++) {
        if (tok->scores[id] == -INFINITY) continue;
        if (tok->scores[id] != -(float)id) die("a byte-level tokenizer's pieces score minus their ids; piece %d does not", id);
        int n = 0;
        for (int k = 1; k < tok->lengths[id]; k++) {
            int a = piece_lookup(tok, tok->vocab[id], (size_t)k);
            int b = piece_lookup(tok, tok->vocab[id] + k, (size_t)(tok->lengths[id] - k));
            if (a < 0 || b < 0 || tok->scores[a] == -INFINITY || tok->scores[b] == -INFINITY) continue;
            splits[2 * n] = a;
            splits[2 * n + 1] = b;
            n++;
        }
        qsort(splits, (size_t)n, 2 * sizeof(int), compare_ranks);   // by the left part's rank; parts of one piece never tie
        for (int i = 0; i < n; i++) {
            int a = splits[2 * i], b = splits[2 * i + 1];
            size_t length = byte_level_spell(tok->vocab[a], tok->lengths[a], byte_of, merge);
            merge[length++] = ' ';
            length += byte_level_spell(tok->vocab[b], tok->lengths[b], byte_of, merge + length);
            gguf_put_string(&merges, merge, length);
            n_merges++;
        }
    }
    gguf_kv_array(m, "tokenizer.ggml.merges", GGUF_STRING, n_merges);
    buffer_put(&m->bytes, merges.data, merges.size);
    gguf_kv_u32(m, "tokenizer.ggml.bos_token_id", (uint32_t)h->bos_id);
    gguf_kv_u32(m, "tokenizer.ggml.eos_token_id", (uint32_t)h->eos_id);
    gguf_kv_bool(m, "tokenizer.ggml.add_bos_token", 1);   // runq starts every prompt with BOS
    gguf_kv_bool(m, "tokenizer.ggml.add_eos_token", 0);
    free(merges.data);
    free(splits);
    free(merge);
    free(spelled);
}

// tokenizer.ggml.*: the embedded tokenizer as llama.cpp's "llama"
// (SentencePiece) vocabulary: pieces, merge scores and token types.
static void gguf_put_tokenizer(GgufMetadata *m, const Source *src, const char *output) {
    const FileHeader *h = &src->header;
    if (!src->tokenizer)
        die("%s: a GGUF file carries its tokenizer, and the input has none: pass one with -z tokenizer.bin", output);
    Tokenizer tok;
    const char *error = build_tokenizer_from_memory(&tok, src->tokenizer, src->tokenizer_size, h->vocab_size);
    if (error) die("%s: the embedded tokenizer for a %d-piece vocabulary: %s", output, h->vocab_size, error);
    if (tok.kind == TOKENIZER_BYTE_LEVEL) {
        gguf_put_byte_level_tokenizer(m, src, &tok);
        free_tokenizer(&tok);
        return;
    }
    int unk_id = str_lookup("<unk>", &tok);

    gguf_kv_string(m, "tokenizer.ggml.model", "llama");
    gguf_kv_array(m, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)h->vocab_size);
    for (int i = 0; i < h->vocab_size; i++) {
        char *piece = sentencepiece_piece(tok.vocab[i], i == h->bos_id || i == h->eos_id);
        gguf_put_string(&m->bytes, piece, strlen(piece));
        free(piece);
    }
    gguf_kv_array(m, "tokenizer.ggml.scores", GGUF_F32, (uint64_t)h->vocab_size);
    buffer_put(&m->bytes, tok.scores, sizeof(float) * (size_t)h->vocab_size);
    gguf_kv_array(m, "tokenizer.ggml.token_type", GGUF_I32, (uint64_t)h->vocab_size);
    for (int i = 0; i < h->vocab_size; i++) {
        int32_t type = i == h->bos_id || i == h->eos_id ? GGUF_TOKEN_CONTROL
                     : i == unk_id ? GGUF_TOKEN_UNKNOWN
                     : is_byte_piece(tok.vocab[i]) ? GGUF_TOKEN_BYTE : GGUF_TOKEN_NORMAL;
        buffer_put(&m->bytes, &type, 4);
    }
    gguf_kv_u32(m, "tokenizer.ggml.bos_token_id", (uint32_t)h->bos_id);
    gguf_kv_u32(m, "tokenizer.ggml.eos_token_id", (uint32_t)h->eos_id);
    if (unk_id >= 0) gguf_kv_u32(m, "tokenizer.ggml.unknown_token_id", (uint32_t)unk_id);
    gguf_kv_bool(m, "tokenizer.ggml.add_bos_token", 1);   // runq starts every prompt with BOS
    gguf_kv_bool(m, "tokenizer.ggml.add_eos_token", 0);
    free_tokenizer(&tok);
}

static void gguf_put_hyperparameters(GgufMetadata *m, const Source *src, uint32_t ggml_type, const char *model_name) {
    const FileHeader *h = &src->header;
    uint32_t file_type = ggml_type == GGML_TYPE_Q4_0 ? GGUF_FILE_MOSTLY_Q4_0
                       : ggml_type == GGML_TYPE_Q8_0 ? GGUF_FILE_MOSTLY_Q8_0 : GGUF_FILE_ALL_F32;
    gguf_kv_string(m, "general.architecture", "llama");
    gguf_kv_string(m, "general.name", model_name);
    gguf_kv_u32(m, "general.alignment", GGUF_ALIGNMENT);
    gguf_kv_u32(m, "general.file_type", file_type);
    gguf_kv_u32(m, "general.quantization_version", 2);   // ggml's current Q4_0/Q8_0 block layout
    gguf_kv_u32(m, "llama.vocab_size", (uint32_t)h->vocab_size);
    gguf_kv_u32(m, "llama.context_length", (uint32_t)h->seq_len);
    gguf_kv_u32(m, "llama.embedding_length", (uint32_t)h->dim);
    gguf_kv_u32(m, "llama.block_count", (uint32_t)h->n_layers);
    int uniform_ffn = 1;
    for (int l = 1; l < h->n_layers; l++) uniform_ffn &= src->ffn_dim[l] == src->ffn_dim[0];
    if (uniform_ffn) {
        gguf_kv_u32(m, "llama.feed_forward_length", (uint32_t)src->ffn_dim[0]);
    } else {   // structurally pruned: llama.cpp reads one width per layer from an array
        gguf_kv_array(m, "llama.feed_forward_length", GGUF_U32, (uint64_t)h->n_layers);
        for (int l = 0; l < h->n_layers; l++) buffer_put(&m->bytes, &src->ffn_dim[l], 4);
    }
    gguf_kv_u32(m, "llama.attention.head_count", (uint32_t)h->n_heads);
    gguf_kv_u32(m, "llama.attention.head_count_kv", (uint32_t)h->n_kv_heads);
    // llama.cpp assumes head width dim/heads unless told otherwise
    gguf_kv_u32(m, "llama.attention.key_length", (uint32_t)h->head_dim);
    gguf_kv_u32(m, "llama.attention.value_length", (uint32_t)h->head_dim);
    gguf_kv_u32(m, "llama.rope.dimension_count", (uint32_t)h->head_dim);
    gguf_kv_f32(m, "llama.rope.freq_base", h->rope_theta);
    gguf_kv_f32(m, "llama.attention.layer_norm_rms_epsilon", h->norm_eps);
}

typedef struct {
    const PlannedTensor *planned;   // what to read from the source
    char name[TENSOR_NAME_LEN];     // llama.cpp's name
    uint32_t type;                  // GgmlType
    uint64_t offset;                // from the start of the file
    uint64_t nbytes;
} GgufTensor;

// Our tensor -> llama.cpp's name for it
static void gguf_tensor_name(const PlannedTensor *t, char *out, size_t size) {
    static const char *layer_names[] = {
        [K_ATTN_NORM] = "attn_norm", [K_WQ] = "attn_q", [K_WK] = "attn_k", [K_WV] = "attn_v",
        [K_WO] = "attn_output", [K_FFN_NORM] = "ffn_norm", [K_W1] = "ffn_gate", [K_W2] = "ffn_down",
        [K_W3] = "ffn_up",
    };
    if (t->kind == K_EMBED) snprintf(out, size, "token_embd.weight");
    else if (t->kind == K_NORM) snprintf(out, size, "output_norm.weight");
    else if (t->kind == K_OUTPUT) snprintf(out, size, "output.weight");
    else if (t->kind == K_ROPE_FREQS) snprintf(out, size, "rope_freqs.weight");
    else snprintf(out, size, "blk.%d.%s.weight", t->layer, layer_names[t->kind]);
}

static int is_norm_kind(int kind) { return kind == K_ATTN_NORM || kind == K_FFN_NORM || kind == K_NORM; }

// GGUF stores these as 1-D f32 tensors, whatever type the matrices have
static int is_vector_kind(int kind) { return is_norm_kind(kind) || kind == K_ROPE_FREQS; }

// Every matrix in ggml_type, the embedding and classifier included (llama.cpp's
// own quantizer keeps output.weight at Q6_K in a "Q4_0" file; here both
// programs run the same weights); norms stay f32. Refuses shapes a block type
// cannot hold. Returns the count; data offsets are filled in later.
static int gguf_plan_tensors(const Plan *plan, uint32_t ggml_type, GgufTensor *out, const char *what) {
    int count = 0;
    for (int i = 0; i < plan->count; i++) {
        const PlannedTensor *t = &plan->tensors[i];
        if (t->kind == K_TOKENIZER) continue;   // the tokenizer travels as metadata
        GgufTensor *g = &out[count++];
        g->planned = t;
        g->type = is_vector_kind(t->kind) ? GGML_TYPE_F32 : ggml_type;
        gguf_tensor_name(t, g->name, sizeof g->name);
        if (g->type != GGML_TYPE_F32 && t->entry.cols % Q_BLOCK != 0)
            die("%s: tensor %s (our %s) has %u columns, but GGUF %s stores whole blocks of %d weights along a "
                "row, so it needs a multiple of %d; use --gguf-f32 for this model",
                what, g->name, t->entry.name, t->entry.cols, ggml_type_name(ggml_type), Q_BLOCK, Q_BLOCK);
        g->nbytes = ggml_nbytes(g->type, t->entry.rows, t->entry.cols);
    }
    return count;
}

static void gguf_put_tensor_info(Buffer *b, const GgufTensor *g, uint64_t data_offset) {
    const TensorEntry *e = &g->planned->entry;
    int is_vector = is_vector_kind(g->planned->kind);
    uint32_t n_dims = is_vector ? 1 : 2;
    uint64_t dims[2] = { e->cols, e->rows };
    gguf_put_string(b, g->name, strlen(g->name));
    buffer_put(b, &n_dims, 4);
    buffer_put(b, dims, 8 * n_dims);
    buffer_put(b, &g->type, 4);
    buffer_put(b, &data_offset, 8);
}

// x (n,), n a multiple of 32 -> Q8_0 blocks, scale max|x|/127 as ggml's
// quantize_row_q8_0 chooses it; values are rounded against the fp16 scale
// actually stored.
static void quantize_row_q8_0(const float *x, int n, BlockQ8_0 *out) {
    for (int block = 0; block < n / Q_BLOCK; block++) {
        const float *v = x + block * Q_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < Q_BLOCK; j++) amax = fmaxf(amax, fabsf(v[j]));
        out[block].d = fp32_to_fp16(amax / 127.0f);
        float scale = fp16_to_fp32(out[block].d), inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        for (int j = 0; j < Q_BLOCK; j++) {
            long q = lrintf(v[j] * inverse);
            out[block].qs[j] = (int8_t)(q < -127 ? -127 : q > 127 ? 127 : q);
        }
    }
}

// One row of our Q4 at group size 32 (n_bytes = cols/2 nibble bytes, cols/32
// scales) -> cols/32 Q4_0 blocks: the same bytes in a different order.
static void pack_row_q4_0(const uint8_t *nibbles, const uint16_t *scales, int cols, BlockQ4_0 *out) {
    for (int block = 0; block < cols / Q_BLOCK; block++) {
        out[block].d = scales[block];
        memcpy(out[block].qs, nibbles + block * (Q_BLOCK / 2), Q_BLOCK / 2);
    }
}

// Rows in chunks of about 4 MB of floats: read (or copy Q4), convert, write.
static void write_gguf_tensor(int fd, const char *path, Source *src, const GgufTensor *g, Progress *progress) {
    const PlannedTensor *t = g->planned;
    int rows = (int)t->entry.rows, cols = (int)t->entry.cols;
    int chunk = (int)(((size_t)1 << 20) / (size_t)cols);
    if (chunk < 1) chunk = 1;
    size_t row_bytes = (size_t)(g->nbytes / (uint64_t)rows);
    float *values = xcalloc((size_t)chunk * cols, sizeof(float), "export buffer");
    uint8_t *nibbles = xcalloc((size_t)chunk * cols / 2 + 1, 1, "export buffer");
    uint16_t *scales = xcalloc((size_t)chunk * cols / Q_BLOCK + 1, sizeof(uint16_t), "export buffer");
    uint8_t *out = xcalloc((size_t)chunk * row_bytes, 1, "export buffer");
    for (int begin = 0; begin < rows; begin += chunk) {
        int end = begin + chunk < rows ? begin + chunk : rows, n = end - begin;
        if (g->type == GGML_TYPE_F32) {
            read_finite_rows(src, t, begin, end, values);
            memcpy(out, values, (size_t)n * row_bytes);
        } else if (g->type == GGML_TYPE_Q4_0) {
            read_coded_rows(src, t, TYPE_Q4, Q_BLOCK, begin, end, values, nibbles, scales);
            for (int r = 0; r < n; r++)
                pack_row_q4_0(nibbles + (size_t)r * cols / 2, scales + (size_t)r * cols / Q_BLOCK, cols,
                              (BlockQ4_0 *)(out + (size_t)r * row_bytes));
        } else {
            read_finite_rows(src, t, begin, end, values);
            for (int r = 0; r < n; r++)
                quantize_row_q8_0(values + (size_t)r * cols, cols, (BlockQ8_0 *)(out + (size_t)r * row_bytes));
        }
        write_at(fd, out, (size_t)n * row_bytes, g->offset + (uint64_t)begin * row_bytes, path);
        progress_advance(progress, g->nbytes * (uint64_t)n / (uint64_t)rows, g->name);
    }
    free(values);
    free(nibbles);
    free(scales);
    free(out);
}

// ggml_type: GGML_TYPE_Q4_0, GGML_TYPE_Q8_0 or GGML_TYPE_F32 for every matrix.
static void write_gguf(Source *src, const char *output, uint32_t ggml_type, const char *model_name, int quiet) {
    refuse_to_overwrite_inputs(src, output);
    Plan plan = make_plan(src, TYPE_F32, 0);   // names, kinds and shapes; GGUF has its own layout
    check_source_tensors(src, &plan);
    GgufTensor *tensors = xcalloc((size_t)plan.count, sizeof(GgufTensor), "GGUF tensor table");
    int count = gguf_plan_tensors(&plan, ggml_type, tensors, output);

    GgufMetadata metadata = { 0 };
    gguf_put_hyperparameters(&metadata, src, ggml_type, model_name);
    gguf_put_tokenizer(&metadata, src, output);
    Buffer infos = { 0 };
    uint64_t data_size = 0;
    for (int i = 0; i < count; i++) {
        gguf_put_tensor_info(&infos, &tensors[i], data_size);
        data_size += round_up(tensors[i].nbytes, GGUF_ALIGNMENT);
    }
    uint64_t header_size = 4 + 4 + 8 + 8, n_tensors = (uint64_t)count;
    uint64_t data_start = round_up(header_size + metadata.bytes.size + infos.size, GGUF_ALIGNMENT);
    uint64_t offset = data_start;
    for (int i = 0; i < count; i++) {
        tensors[i].offset = offset;
        offset += round_up(tensors[i].nbytes, GGUF_ALIGNMENT);
    }

    int fd = create_pending_output(output);
    uint32_t version = GGUF_VERSION;
    write_at(fd, GGUF_MAGIC, 4, 0, output);
    write_at(fd, &version, 4, 4, output);
    write_at(fd, &n_tensors, 8, 8, output);
    write_at(fd, &metadata.count, 8, 16, output);
    write_at(fd, metadata.bytes.data, metadata.bytes.size, header_size, output);
    write_at(fd, infos.data, infos.size, header_size + metadata.bytes.size, output);
    Progress progress = { .total = data_start + data_size, .last_percent = -100,
                          .quiet = quiet || data_size < (64u << 20), .terminal = isatty(STDERR_FILENO) };
    progress_advance(&progress, data_start, "metadata");
    for (int i = 0; i < count; i++) write_gguf_tensor(fd, output, src, &tensors[i], &progress);
    progress_finish(&progress);
    commit_pending_output(fd, output, data_start + data_size);   // the last tensor's padding is zeros too
    free(metadata.bytes.data);
    free(infos.data);
    free(tensors);
    free(plan.tensors);
}

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
} GgufTokenizerKeys;

// Bytes of one row of cols weights (a whole number of blocks: open_gguf checks).
static size_t ggml_row_bytes(const GgmlFormat *format, int64_t cols) {
    return (size_t)(cols / format->block_weights) * (size_t)format->block_bytes;
}

static const GgufSourceTensor *gguf_find(const GgufModel *m, const PlannedTensor *t) {
    char name[TENSOR_NAME_LEN];
    gguf_tensor_name(t, name, sizeof name);
    for (int i = 0; i < m->count; i++) if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

static void gguf_check_tensor(const Source *src, const PlannedTensor *t) {
    char name[TENSOR_NAME_LEN];
    gguf_tensor_name(t, name, sizeof name);
    const GgufSourceTensor *g = gguf_find(src->impl, t);
    if (!g) die("tensor %s is missing from the GGUF file", name);
    if (!ggml_format(g->type))
        die("tensor %s has ggml type %u (%s): export reads " GGML_FORMATS_READ, name, g->type, ggml_type_label(g->type));
    if (g->rows != t->entry.rows || g->cols != t->entry.cols)
        die("tensor %s is (%lld, %lld) but the metadata implies (%u, %u)", name, (long long)g->rows, (long long)g->cols,
            t->entry.rows, t->entry.cols);
}

static void gguf_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    const GgufSourceTensor *g = gguf_find(src->impl, t);
    const GgmlFormat *format = ggml_format(g->type);
    size_t row_bytes = ggml_row_bytes(format, g->cols);
    for (int r = begin; r < end; r++)
        format->dequantize_row(g->data + (size_t)r * row_bytes, g->cols / format->block_weights, out + (size_t)(r - begin) * g->cols);
}

// Q4_0 blocks are runq's int4 at group 32: the same scale, the same nibbles.
static int gguf_read_codes(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                           uint8_t *nibbles, uint16_t *scales) {
    const GgufSourceTensor *g = gguf_find(src->impl, t);
    if (g->type != GGML_TYPE_Q4_0 || type != TYPE_Q4 || group_size != Q_BLOCK) return 0;
    int blocks = (int)(g->cols / Q_BLOCK);
    for (int r = begin; r < end; r++)
        for (int b = 0; b < blocks; b++) {
            BlockQ4_0 block;
            memcpy(&block, g->data + ((size_t)r * blocks + b) * sizeof block, sizeof block);
            size_t at = (size_t)(r - begin) * blocks + b;
            scales[at] = block.d;
            memcpy(nibbles + at * (Q_BLOCK / 2), block.qs, Q_BLOCK / 2);
        }
    return 1;
}

// tokenizer.ggml.* of model "gpt2" with a pre-tokenizer runq knows: a
// byte-level vocabulary (any token not typed normal is special) and its merges.
static void gguf_byte_level_tokenizer(Source *src, const GgufModel *m, const GgufTokenizerKeys *k, const char *path) {
    int split_rule = gguf_split_rule(k->pre);
    if (!split_rule)
        die("%s: tokenizer.ggml.pre is '%s': of byte-level tokenizers only Llama 3's ('llama-bpe'), GPT-2's ('gpt-2') "
            "and SmolLM's ('smollm') are read", path, k->pre[0] ? k->pre : "(missing)");
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

// The metadata keys export uses; everything else is skipped.
static void gguf_read_metadata(GgufCursor *c, uint64_t n_keys, Source *src, GgufTokenizerKeys *tok, uint64_t *alignment) {
    FileHeader *h = &src->header;
    double ffn = 0;
    char architecture[32] = "";
    h->rope_theta = 10000.0f;
    h->norm_eps = 1e-5f;
    h->bos_id = 1;
    h->eos_id = 2;
    for (uint64_t i = 0; i < n_keys; i++) {
        uint64_t key_length;
        const char *key_text = gguf_read_string(c, &key_length, "a metadata key");
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(key_length < 127 ? key_length : 127), key_text);
        uint32_t type = (uint32_t)gguf_read_uint(c, 4, "a value type");
        if (type == GGUF_STRING && (strcmp(key, "general.architecture") == 0 || strcmp(key, "tokenizer.ggml.model") == 0)) {
            uint64_t length;
            const char *text = gguf_read_string(c, &length, key);
            char *out = key[0] == 'g' ? architecture : tok->model;
            snprintf(out, 32, "%.*s", (int)(length < 31 ? length : 31), text);
        } else if (type == GGUF_STRING && strcmp(key, "tokenizer.ggml.pre") == 0) {
            uint64_t length;
            const char *text = gguf_read_string(c, &length, key);
            snprintf(tok->pre, sizeof tok->pre, "%.*s", (int)(length < 31 ? length : 31), text);
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
        } else if (type == GGUF_ARRAY && strcmp(key, "llama.feed_forward_length") == 0) {
            uint32_t element = (uint32_t)gguf_read_uint(c, 4, key);
            uint64_t count = gguf_read_uint(c, 8, key);
            if (!gguf_scalar_size(element) || count > 4096) die("%s: %s is not a list of numbers", c->path, key);
            free(src->ffn_dim);
            src->ffn_dim = xcalloc(count, sizeof(int), "ffn table");
            for (uint64_t l = 0; l < count; l++) src->ffn_dim[l] = gguf_read_int32(c, element, key);
            ffn = -(double)count;   // per-layer widths given
        } else if (type != GGUF_ARRAY && type != GGUF_STRING && gguf_scalar_size(type)) {
            double v = gguf_read_number(c, type, key);
            if (strcmp(key, "llama.embedding_length") == 0) h->dim = gguf_int32(c, v, key);
            else if (strcmp(key, "llama.block_count") == 0) h->n_layers = gguf_int32(c, v, key);
            else if (strcmp(key, "llama.feed_forward_length") == 0) ffn = gguf_int32(c, v, key);
            else if (strcmp(key, "llama.attention.head_count") == 0) h->n_heads = gguf_int32(c, v, key);
            else if (strcmp(key, "llama.attention.head_count_kv") == 0) h->n_kv_heads = gguf_int32(c, v, key);
            else if (strcmp(key, "llama.attention.key_length") == 0) h->head_dim = gguf_int32(c, v, key);
            else if (strcmp(key, "llama.context_length") == 0) h->seq_len = gguf_int32(c, v, key);
            else if (strcmp(key, "llama.rope.freq_base") == 0) h->rope_theta = (float)v;
            else if (strcmp(key, "llama.attention.layer_norm_rms_epsilon") == 0) h->norm_eps = (float)v;
            else if (strcmp(key, "tokenizer.ggml.bos_token_id") == 0) h->bos_id = gguf_int32(c, v, key);
            else if (strcmp(key, "tokenizer.ggml.eos_token_id") == 0) h->eos_id = gguf_int32(c, v, key);
            else if (strcmp(key, "general.alignment") == 0) *alignment = (uint64_t)gguf_int32(c, v, key);   // open_gguf checks its value
            else if (strcmp(key, "llama.rope.scaling.factor") == 0 && v != 1.0)
                die("%s: RoPE scaling (%s = %g) is not supported yet", c->path, key, v);
        } else {
            gguf_skip_value(c, type, 0);
        }
    }
    if (strcmp(architecture, "llama") != 0)
        die("%s: general.architecture is '%s'; export reads 'llama' GGUF files", c->path, architecture[0] ? architecture : "(missing)");
    if (h->n_kv_heads == 0) h->n_kv_heads = h->n_heads;
    if (h->head_dim == 0 && h->n_heads > 0) h->head_dim = h->dim / h->n_heads;
    if (tok->n_tokens) h->vocab_size = (int32_t)tok->n_tokens;
    if (h->n_layers <= 0 || h->n_layers > 1024)   // runq's limit; and the FFN table is allocated from it
        die("%s: llama.block_count is %d; export reads 1 to 1024 layers", c->path, h->n_layers);
    if (ffn > 0) {
        free(src->ffn_dim);   // a list given before the number is replaced
        src->ffn_dim = xcalloc((size_t)h->n_layers, sizeof(int), "ffn table");
        for (int l = 0; l < h->n_layers; l++) src->ffn_dim[l] = (int)ffn;
    } else if (ffn == 0 || -ffn != h->n_layers || !src->ffn_dim) {   // a negative number is no list of widths
        die("%s: llama.feed_forward_length is missing or does not list every layer", c->path);
    }
}

// rope_freqs.weight, when present (llama.cpp's converter writes it for Llama
// 3.1/3.2's RoPE scaling): one f32 divisor per RoPE frequency.
static void gguf_rope_freqs(Source *src, const GgufModel *m, const char *path) {
    int half = src->header.head_dim / 2;
    for (int i = 0; i < m->count; i++) {
        const GgufSourceTensor *g = &m->tensors[i];
        if (strcmp(g->name, "rope_freqs.weight") != 0) continue;
        if (g->type != GGML_TYPE_F32 || g->rows != 1 || g->cols != half)
            die("%s: rope_freqs.weight should be %d f32 values (head_dim / 2); it is (%lld, %lld) of ggml type %u", path,
                half, (long long)g->rows, (long long)g->cols, g->type);
        src->rope_freqs = xcalloc((size_t)half, sizeof(float), "rope_freqs");
        memcpy(src->rope_freqs, g->data, sizeof(float) * (size_t)half);
        for (int j = 0; j < half; j++)
            if (!(src->rope_freqs[j] > 0) || !isfinite(src->rope_freqs[j]))
                die("%s: rope_freqs.weight[%d] is %g; RoPE frequency divisors must be positive and finite", path, j,
                    src->rope_freqs[j]);
        return;   // a second tensor of that name is not read
    }
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
    uint64_t alignment = GGUF_ALIGNMENT;
    gguf_read_metadata(&c, n_keys, src, &tok, &alignment);
    check_header(&src->header, path);
    if (alignment == 0 || alignment > 1u << 16 || (alignment & (alignment - 1))) die("%s: general.alignment %llu", path,
                                                                                    (unsigned long long)alignment);
    m->tensors = xcalloc((size_t)n_tensors + 1, sizeof(GgufSourceTensor), "tensor table");
    uint64_t *offsets = xcalloc((size_t)n_tensors + 1, sizeof(uint64_t), "tensor table");
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
        offsets[i] = gguf_read_uint(&c, 8, "a tensor offset");
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
        if (offsets[i] > m->size - data_start || row_bytes > (m->size - data_start - offsets[i]) / (size_t)g->rows)
            die("%s: tensor %s lies past the end of the file (truncated?)", path, g->name);
        g->data = m->data + data_start + offsets[i];
    }
    free(offsets);
    gguf_rope_freqs(src, m, path);
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
    source_add_input(src, path);
}

// ----------------------------------------------------------------------------
// A calibration text as tokens of the model's own tokenizer (export
// --calib; train's corpus and calibration modes). Documents are
// separated by blank lines and each starts with BOS. The encoder's merge loop
// is quadratic in its input, so a document is encoded in segments cut at
// single spaces: a segment's leading space is then the encoder's dummy-prefix
// space, and as no piece holds a space inside it (SentencePiece vocabularies
// start pieces with it), the tokens are the ones the whole document would give.

typedef struct {
    int *tokens;
    size_t count, capacity;
} TokenStream;

static void stream_push(TokenStream *s, const int *tokens, int n) {
    if (s->count + (size_t)n > s->capacity) {
        s->capacity = (s->count + (size_t)n) * 2;
        s->tokens = realloc(s->tokens, s->capacity * sizeof(int));
        if (!s->tokens) die("out of memory holding the text's tokens");
    }
    memcpy(s->tokens + s->count, tokens, (size_t)n * sizeof(int));
    s->count += (size_t)n;
}

#define SEGMENT_CHARS 64

static void encode_document(const Tokenizer *tok, const char *doc, size_t length, TokenStream *out, int *buffer,
                            char *segment) {
    size_t start = 0;
    int first = 1;
    while (start < length) {
        size_t end = start + SEGMENT_CHARS < length ? start + SEGMENT_CHARS : length;
        // extend to a single space between two non-spaces
        while (end < length && !(doc[end] == ' ' && end > start && doc[end - 1] != ' ' && end + 1 < length
                                 && doc[end + 1] != ' ' && doc[end + 1] != '\n'))
            end++;
        memcpy(segment, doc + start, end - start);
        segment[end - start] = '\0';
        int n = encode(tok, segment, first, 0, buffer);
        stream_push(out, buffer, n);
        first = 0;
        start = end + 1;   // the space becomes the next segment's dummy prefix
    }
}

static TokenStream tokenize_corpus(const Tokenizer *tok, const char *text, size_t length) {
    TokenStream out = { 0 };
    int *buffer = xcalloc(length + 3, sizeof(int), "token buffer");
    char *segment = xcalloc(length + 1, 1, "segment");
    size_t at = 0;
    while (at < length) {
        while (at < length && (text[at] == '\n' || text[at] == '\r')) at++;   // blank lines between documents
        size_t end = at;
        while (end < length && !(text[end] == '\n' && end + 1 < length && text[end + 1] == '\n')) end++;
        size_t doc_end = end;
        while (doc_end > at && (text[doc_end - 1] == '\n' || text[doc_end - 1] == '\r' || text[doc_end - 1] == ' '))
            doc_end--;
        if (doc_end > at) encode_document(tok, text + at, doc_end - at, &out, buffer, segment);
        at = end;
    }
    free(buffer);
    free(segment);
    return out;
}

// The text file at path as tokens; an empty file or one holding NUL bytes is no text.
static TokenStream read_text_tokens(const Tokenizer *tok, const char *path) {
    size_t size;
    uint8_t *text = read_whole_file(path, &size);
    if (size == 0) die("%s is empty", path);
    if (memchr(text, '\0', size)) die("%s holds NUL bytes: it is not text", path);
    TokenStream tokens = tokenize_corpus(tok, (const char *)text, size);
    free(text);
    return tokens;
}

// The tokenizer a model embeds (tokenizer.bin layout), with its header's BOS and EOS.
static Tokenizer embedded_tokenizer(const uint8_t *blob, size_t size, const FileHeader *h, const char *what) {
    Tokenizer tok;
    const char *error = build_tokenizer_from_memory(&tok, blob, size, h->vocab_size);
    if (error) die("%s's tokenizer for %d pieces: %s", what, h->vocab_size, error);
    tok.bos_id = h->bos_id;
    tok.eos_id = h->eos_id;
    return tok;
}

// ----------------------------------------------------------------------------
// A calibration text through the model (export --calib FILE). Its windows go
// through the model in fp32 one layer at a time: every window's residual
// stream (windows, T, dim) stays in memory, and one layer's weights, read from
// the source as fp32 (int4 and GGUF blocks dequantized), so a 7B model never
// sits in memory whole in fp32. The arithmetic is runq's (its rmsnorm, RoPE
// and softmax) without quantization: each window is a sequence of its own
// from position 0. Two things are measured on the way: how much each layer
// turns the stream (Block Influence, which layers to drop), and what each
// matrix's inputs look like (how to round its weights).

// The four inputs a layer's matrices read, each the output of something that
// can absorb a per-channel scale (AWQ, below):
//   wq wk wv <- the attention norm        w1 w3 <- the FFN norm
//   wo       <- the attention's output (linear in v: wv's rows)
//   w2       <- silu(w1 x) * (w3 x)       (linear in w3 x: w3's rows)
enum InputGroup { IN_ATTENTION, IN_ATTENTION_OUT, IN_FFN, IN_FFN_DOWN, N_INPUT_GROUPS };

static int input_group(int kind) {
    switch (kind) {
    case K_WQ: case K_WK: case K_WV: return IN_ATTENTION;
    case K_WO: return IN_ATTENTION_OUT;
    case K_W1: case K_W3: return IN_FFN;
    case K_W2: return IN_FFN_DOWN;
    default: return -1;
    }
}

typedef struct {             // what one layer's inputs looked like, per window
    int width[N_INPUT_GROUPS], offset[N_INPUT_GROUPS], row;   // a window's sums: row doubles, group g at offset[g]
    double *squares, *magnitudes;   // (windows, row) sums over the window's tokens of x_c^2 and |x_c|
    int per_window;          // tokens of each window kept whole (0: none), for AWQ's search
    float *samples[N_INPUT_GROUPS];   // (windows * per_window, width)
} InputRecord;

typedef struct {             // one window's intermediate values
    float *xn;               // (T, dim) normalized stream
    float *q, *k, *v, *ao;   // (T, q_dim), (T, kv_dim), (T, kv_dim), (T, q_dim) attention output
    float *hb, *hb2;         // (T, ffn) w1 x and w3 x
    float *delta;            // (T, dim) what the attention or feed-forward adds to the stream
    float *before;           // (T, dim) the stream into the layer
    float *scores;           // (T,) one head's attention scores
    float *rope_cos, *rope_sin;   // (T, head_dim / 2) for positions 0..T-1
    const InputRecord *record;    // where the layer's inputs go (NULL: nowhere)
    size_t window;           // the window being run
} LayerScratch;

// Input x (T, width) of a group into the window's sums and samples.
static void record_inputs(const LayerScratch *s, int group, const float *x, int T) {
    const InputRecord *r = s->record;
    if (!r) return;
    int width = r->width[group];
    double *squares = r->squares + s->window * r->row + r->offset[group];
    double *magnitudes = r->magnitudes + s->window * r->row + r->offset[group];
    for (int t = 0; t < T; t++)
        for (int c = 0; c < width; c++) {
            double v = x[(size_t)t * width + c];
            squares[c] += v * v;
            magnitudes[c] += fabs(v);
        }
    for (int j = 0; j < r->per_window; j++)   // spread over the window's positions
        memcpy(r->samples[group] + (s->window * r->per_window + j) * width, x + (size_t)(j * T / r->per_window) * width,
               (size_t)width * sizeof(float));
}

// out (n_tokens, rows) = x (n_tokens, cols) times w (rows, cols) transposed.
// A row of w is read once for TOKEN_TILE tokens (a 7B layer's matrices do not
// fit a cache), and each dot product runs in DOT_LANES independent partial
// sums, added at the end, which the compiler turns into vector instructions.
#define TOKEN_TILE 4
#define DOT_LANES 8
static void matmul_f32(float *out, const float *x, const float *w, int n_tokens, int cols, int rows) {
    for (int t0 = 0; t0 < n_tokens; t0 += TOKEN_TILE) {
        int tile = n_tokens - t0 < TOKEN_TILE ? n_tokens - t0 : TOKEN_TILE;
        const float *in = x + (size_t)t0 * cols;
        for (int r = 0; r < rows; r++) {
            const float *row = w + (size_t)r * cols;
            float partial[TOKEN_TILE][DOT_LANES] = { { 0 } };
            int i = 0;
            for (; i + DOT_LANES <= cols; i += DOT_LANES)
                for (int t = 0; t < tile; t++)
                    for (int k = 0; k < DOT_LANES; k++) partial[t][k] += row[i + k] * in[(size_t)t * cols + i + k];
            for (int t = 0; t < tile; t++) {
                float sum = 0.0f;
                for (int k = 0; k < DOT_LANES; k++) sum += partial[t][k];
                for (int j = i; j < cols; j++) sum += row[j] * in[(size_t)t * cols + j];
                out[(size_t)(t0 + t) * rows + r] = sum;
            }
        }
    }
}

// Causal attention of T tokens: head h of token t over tokens 0..t, reading KV head h / (heads / kv_heads).
static void attention_f32(const FileHeader *h, LayerScratch *s, int T) {
    int head_dim = h->head_dim, q_dim = h->n_heads * head_dim, kv_dim = h->n_kv_heads * head_dim;
    int group = h->n_heads / h->n_kv_heads;
    for (int t = 0; t < T; t++)
        for (int head = 0; head < h->n_heads; head++) {
            const float *q = s->q + (size_t)t * q_dim + head * head_dim;
            size_t kv_at = (size_t)(head / group) * head_dim;
            for (int p = 0; p <= t; p++) {
                const float *k = s->k + (size_t)p * kv_dim + kv_at;
                float score = 0.0f;
                for (int i = 0; i < head_dim; i++) score += q[i] * k[i];
                s->scores[p] = score / sqrtf((float)head_dim);
            }
            softmax(s->scores, t + 1);
            float *out = s->ao + (size_t)t * q_dim + head * head_dim;
            memset(out, 0, (size_t)head_dim * sizeof(float));
            for (int p = 0; p <= t; p++)
                for (int i = 0; i < head_dim; i++) out[i] += s->scores[p] * s->v[(size_t)p * kv_dim + kv_at + i];
        }
}

// One decoder layer on one window's stream x (T, dim), in place. w: the
// layer's tensors as fp32, indexed by TensorKind.
static void layer_forward_f32(const FileHeader *h, float *const *w, int ffn, float *x, int T, LayerScratch *s) {
    int dim = h->dim, q_dim = h->n_heads * h->head_dim, kv_dim = h->n_kv_heads * h->head_dim, half = h->head_dim / 2;
    for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * dim, x + (size_t)t * dim, w[K_ATTN_NORM], dim, h->norm_eps);
    record_inputs(s, IN_ATTENTION, s->xn, T);
    matmul_f32(s->q, s->xn, w[K_WQ], T, dim, q_dim);
    matmul_f32(s->k, s->xn, w[K_WK], T, dim, kv_dim);
    matmul_f32(s->v, s->xn, w[K_WV], T, dim, kv_dim);
    for (int t = 0; t < T; t++) {
        rope(s->q + (size_t)t * q_dim, h->n_heads, h->head_dim, s->rope_cos + t * half, s->rope_sin + t * half);
        rope(s->k + (size_t)t * kv_dim, h->n_kv_heads, h->head_dim, s->rope_cos + t * half, s->rope_sin + t * half);
    }
    attention_f32(h, s, T);
    record_inputs(s, IN_ATTENTION_OUT, s->ao, T);
    matmul_f32(s->delta, s->ao, w[K_WO], T, q_dim, dim);
    for (size_t i = 0; i < (size_t)T * dim; i++) x[i] += s->delta[i];

    for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * dim, x + (size_t)t * dim, w[K_FFN_NORM], dim, h->norm_eps);
    record_inputs(s, IN_FFN, s->xn, T);
    matmul_f32(s->hb, s->xn, w[K_W1], T, dim, ffn);
    matmul_f32(s->hb2, s->xn, w[K_W3], T, dim, ffn);
    for (size_t i = 0; i < (size_t)T * ffn; i++) s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i];
    record_inputs(s, IN_FFN_DOWN, s->hb, T);
    matmul_f32(s->delta, s->hb, w[K_W2], T, ffn, dim);
    for (size_t i = 0; i < (size_t)T * dim; i++) x[i] += s->delta[i];
}

static LayerScratch alloc_layer_scratch(const Source *src, int T) {
    const FileHeader *h = &src->header;
    size_t q_dim = (size_t)h->n_heads * h->head_dim, kv_dim = (size_t)h->n_kv_heads * h->head_dim, ffn = 0;
    for (int l = 0; l < h->n_layers; l++) if ((size_t)src->ffn_dim[l] > ffn) ffn = (size_t)src->ffn_dim[l];
    int half = h->head_dim / 2;
    LayerScratch s = {
        .xn = xcalloc((size_t)T * h->dim, sizeof(float), "activations"),
        .q = xcalloc((size_t)T * q_dim, sizeof(float), "activations"),
        .k = xcalloc((size_t)T * kv_dim, sizeof(float), "activations"),
        .v = xcalloc((size_t)T * kv_dim, sizeof(float), "activations"),
        .ao = xcalloc((size_t)T * q_dim, sizeof(float), "activations"),
        .hb = xcalloc((size_t)T * ffn, sizeof(float), "activations"),
        .hb2 = xcalloc((size_t)T * ffn, sizeof(float), "activations"),
        .delta = xcalloc((size_t)T * h->dim, sizeof(float), "activations"),
        .before = xcalloc((size_t)T * h->dim, sizeof(float), "activations"),
        .scores = xcalloc((size_t)T, sizeof(float), "activations"),
        .rope_cos = xcalloc((size_t)T * half, sizeof(float), "RoPE table"),
        .rope_sin = xcalloc((size_t)T * half, sizeof(float), "RoPE table"),
    };
    Config config = { .head_dim = h->head_dim, .rope_theta = h->rope_theta };
    float *freq = xcalloc((size_t)half, sizeof(float), "RoPE table");
    rope_frequencies(freq, &config, src->rope_freqs);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            s.rope_cos[t * half + i] = cosf((float)t * freq[i]);
            s.rope_sin[t * half + i] = sinf((float)t * freq[i]);
        }
    free(freq);
    return s;
}

static void free_layer_scratch(LayerScratch *s) {
    float *all[] = { s->xn, s->q, s->k, s->v, s->ao, s->hb, s->hb2, s->delta, s->before, s->scores, s->rope_cos,
                     s->rope_sin };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

// A whole tensor of the plan as fp32 (the source checks it holds it first).
static float *read_tensor_f32(Source *src, const PlannedTensor *t) {
    if (src->check_tensor) src->check_tensor(src, t);
    float *out = xcalloc((size_t)t->entry.rows * t->entry.cols, sizeof(float), t->entry.name);
    src->read_rows(src, t, 0, (int)t->entry.rows, out);
    return out;
}

// 1 - cos(a, b), in double; a zero stream that stays zero was not turned
static double one_minus_cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    if (aa == 0 && bb == 0) return 0;
    return 1.0 - ab / sqrt(aa * bb);
}

// ---- The walk: the windows' streams, one layer after another.

typedef struct {
    Source *src;
    Plan plan;               // the source's tensors as fp32 (names, kinds and shapes)
    int T;
    size_t n_windows;
    long n_tokens;           // n_windows * T
    float *stream;           // (windows, T, dim)
    ThreadPool *pool;
    int n_threads;
    LayerScratch *scratch;   // (threads,)
    double *window_influence;   // (windows,) the last layer's, summed over each window's tokens
    InputRecord record;      // the last layer's inputs (record.row 0: not recorded)
    Progress progress;       // layers walked (a 7B model's pass takes minutes)
} Walk;

// The walk over up to max_windows windows of T tokens, before layer 0.
// samples: tokens of the text whose layer inputs are kept whole (spread over
// the windows), 0 for none; record: whether inputs are summed at all; quiet:
// no progress on stderr.
static Walk walk_start(Source *src, const TokenStream *tokens, int T, int max_windows, int record, int samples, int quiet) {
    const FileHeader *h = &src->header;
    int D = h->dim, Q = h->n_heads * h->head_dim, F = 0;
    for (int l = 0; l < h->n_layers; l++) if (src->ffn_dim[l] > F) F = src->ffn_dim[l];
    Walk w = { .src = src, .plan = make_plan(src, TYPE_F32, 0), .T = T };
    w.n_windows = tokens->count / (size_t)T < (size_t)max_windows ? tokens->count / (size_t)T : (size_t)max_windows;
    w.n_tokens = (long)(w.n_windows * T);
    w.stream = xcalloc(w.n_windows * T * D, sizeof(float), "residual stream");
    const PlannedTensor *embeddings = &w.plan.tensors[0];   // make_plan's first
    if (src->check_tensor) src->check_tensor(src, embeddings);
    for (size_t i = 0; i < w.n_windows * T; i++)
        src->read_rows(src, embeddings, tokens->tokens[i], tokens->tokens[i] + 1, w.stream + i * D);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    w.n_threads = cores < 1 ? 1 : (size_t)cores > w.n_windows ? (int)w.n_windows : (int)cores;
    w.pool = pool_create(w.n_threads);
    w.scratch = xcalloc((size_t)w.n_threads, sizeof(LayerScratch), "activations");
    for (int i = 0; i < w.n_threads; i++) w.scratch[i] = alloc_layer_scratch(src, T);
    w.window_influence = xcalloc(w.n_windows, sizeof(double), "influence");
    w.progress = (Progress){ .total = (uint64_t)h->n_layers, .last_percent = -100, .terminal = isatty(STDERR_FILENO),
                             .quiet = quiet || w.plan.file_size < (64u << 20) };
    if (record) {
        InputRecord *r = &w.record;
        int widths[N_INPUT_GROUPS] = { D, Q, D, F };
        for (int g = 0; g < N_INPUT_GROUPS; g++) { r->width[g] = widths[g]; r->offset[g] = r->row; r->row += widths[g]; }
        r->squares = xcalloc(w.n_windows * r->row, sizeof(double), "input statistics");
        r->magnitudes = xcalloc(w.n_windows * r->row, sizeof(double), "input statistics");
        r->per_window = samples <= 0 ? 0 : (int)((samples + w.n_windows - 1) / w.n_windows);
        if (r->per_window > T) r->per_window = T;
        for (int g = 0; g < N_INPUT_GROUPS && r->per_window; g++)
            r->samples[g] = xcalloc(w.n_windows * r->per_window * widths[g], sizeof(float), "calibration samples");
    }
    return w;
}

// Layer l's tensors as fp32, by TensorKind (the others NULL).
static void read_layer_f32(Walk *w, int l, float **out) {
    for (int k = 0; k <= K_OUTPUT; k++) out[k] = NULL;
    for (int i = 0; i < w->plan.count; i++)
        if (w->plan.tensors[i].layer == l) out[w->plan.tensors[i].kind] = read_tensor_f32(w->src, &w->plan.tensors[i]);
}

static void free_layer_f32(float **tensors) {
    for (int k = 0; k <= K_OUTPUT; k++) free(tensors[k]);
}

typedef struct {             // one layer over every window, the windows dealt round-robin to the threads
    Walk *walk;
    float *const *w;         // the layer's tensors, by TensorKind
    int ffn;
} LayerTask;

static void layer_task(void *arg, int thread, int n_threads) {
    LayerTask *task = arg;
    Walk *walk = task->walk;
    LayerScratch *s = &walk->scratch[thread];
    const FileHeader *h = &walk->src->header;
    int D = h->dim, T = walk->T;
    s->record = walk->record.row ? &walk->record : NULL;
    for (size_t window = (size_t)thread; window < walk->n_windows; window += (size_t)n_threads) {
        float *x = walk->stream + window * T * D;
        s->window = window;
        memcpy(s->before, x, (size_t)T * D * sizeof(float));
        layer_forward_f32(h, task->w, task->ffn, x, T, s);
        double sum = 0;
        for (int t = 0; t < T; t++) sum += one_minus_cosine(s->before + (size_t)t * D, x + (size_t)t * D, D);
        walk->window_influence[window] = sum;
    }
}

// Every window through layer l (its tensors w, by kind); returns the layer's
// Block Influence, averaged over the tokens, and leaves its inputs in
// walk->record. The windows' sums are added in window order, here and by the
// record's readers: the figures do not depend on the thread count.
static double walk_layer(Walk *walk, int l, float *const *w) {
    InputRecord *r = &walk->record;
    if (r->row) {
        r->width[IN_FFN_DOWN] = walk->src->ffn_dim[l];
        memset(r->squares, 0, walk->n_windows * r->row * sizeof(double));
        memset(r->magnitudes, 0, walk->n_windows * r->row * sizeof(double));
    }
    LayerTask task = { walk, w, walk->src->ffn_dim[l] };
    pool_run(walk->pool, layer_task, &task);
    double influence = 0;
    for (size_t window = 0; window < walk->n_windows; window++) influence += walk->window_influence[window];
    influence /= (double)walk->n_tokens;
    if (!isfinite(influence))
        die("%s: layer %d's Block Influence is not finite (its weights or activations are)", walk->src->description, l);
    char what[64];
    snprintf(what, sizeof what, "calibration text through layer %d of %d", l + 1, walk->src->header.n_layers);
    progress_advance(&walk->progress, 1, what);
    return influence;
}

// The mean over the walk's tokens of a recorded group's x_c^2 (squares) or
// |x_c|, into out (width,).
static void recorded_mean(const Walk *walk, int group, int squares, float *out) {
    const InputRecord *r = &walk->record;
    for (int c = 0; c < r->width[group]; c++) {
        double sum = 0;
        for (size_t window = 0; window < walk->n_windows; window++)
            sum += (squares ? r->squares : r->magnitudes)[window * r->row + r->offset[group] + c];
        out[c] = (float)(sum / (double)walk->n_tokens);
    }
}

// After the last layer: the mean x_c^2 of the final norm's output, the classifier's input, into out (dim,).
static void walk_classifier_inputs(Walk *walk, float *out) {
    const FileHeader *h = &walk->src->header;
    int D = h->dim;
    const PlannedTensor *norm = NULL;
    for (int i = 0; i < walk->plan.count; i++) if (walk->plan.tensors[i].kind == K_NORM) norm = &walk->plan.tensors[i];
    float *weight = read_tensor_f32(walk->src, norm), *xn = xcalloc((size_t)D, sizeof(float), "activations");
    double *sum = xcalloc((size_t)D, sizeof(double), "input statistics");
    for (long i = 0; i < walk->n_tokens; i++) {
        rmsnorm(xn, walk->stream + (size_t)i * D, weight, D, h->norm_eps);
        for (int c = 0; c < D; c++) sum[c] += (double)xn[c] * xn[c];
    }
    for (int c = 0; c < D; c++) out[c] = (float)(sum[c] / (double)walk->n_tokens);
    free(sum);
    free(xn);
    free(weight);
}

static void walk_end(Walk *walk) {
    progress_finish(&walk->progress);
    for (int i = 0; i < walk->n_threads; i++) free_layer_scratch(&walk->scratch[i]);
    free(walk->scratch);
    pool_free(walk->pool);
    free(walk->window_influence);
    free(walk->stream);
    free(walk->record.squares);
    free(walk->record.magnitudes);
    for (int g = 0; g < N_INPUT_GROUPS; g++) free(walk->record.samples[g]);
    free(walk->plan.tensors);
}

// ---- Which layers to drop: Block Influence (ShortGPT, Men et al. 2024). A
// decoder layer's influence is 1 - cos(x_in, x_out) of the residual stream it
// gets and gives, averaged over the tokens of a calibration text; a layer
// that barely turns the stream is the one to drop.

// influence (n_layers,) of src's layers over up to max_windows windows of T
// tokens; returns the number of tokens averaged over. quiet: no progress on stderr.
static long block_influence(Source *src, const TokenStream *tokens, int T, int max_windows, double *influence, int quiet) {
    Walk walk = walk_start(src, tokens, T, max_windows, 0, 0, quiet);
    for (int l = 0; l < src->header.n_layers; l++) {
        float *w[K_OUTPUT + 1];
        read_layer_f32(&walk, l, w);
        influence[l] = walk_layer(&walk, l, w);
        free_layer_f32(w);
    }
    long n = walk.n_tokens;
    walk_end(&walk);
    return n;
}

// The layers in order of influence, least first (ties: lower index first).
static void rank_by_influence(int *order, const double *influence, int L) {
    for (int i = 0; i < L; i++) {   // insertion sort: L is at most a few hundred
        int j = i;
        while (j > 0 && influence[order[j - 1]] > influence[i]) { order[j] = order[j - 1]; j--; }
        order[j] = i;
    }
}

typedef struct {             // export --calib FILE --calib-context T --calib-windows N
    const char *path;
    int context;             // tokens per window (at most the model's context)
    int windows;             // windows read at most
} CalibrationText;

// The calibration text in the model's tokens; T: the window, at most the
// model's context. Dies unless the text fills one window (purpose: what needs it).
static TokenStream calibration_tokens(const Source *src, const CalibrationText *calib, int *T, const char *purpose) {
    const FileHeader *h = &src->header;
    *T = calib->context < h->seq_len ? calib->context : h->seq_len;
    if (!src->tokenizer)
        die("%s has no tokenizer to read %s with: give its tokenizer.bin with -z", src->description, calib->path);
    Tokenizer tok = embedded_tokenizer(src->tokenizer, src->tokenizer_size, h, src->description);
    TokenStream tokens = read_text_tokens(&tok, calib->path);
    free_tokenizer(&tok);
    if (tokens.count < (size_t)*T)
        die("%s holds %zu tokens; %s needs at least one window of %d (or a smaller window)", calib->path, tokens.count,
            purpose, *T);
    return tokens;
}

// The n_drop least influential layers of src on the calibration text, as a
// --drop-layers list in layer order ("2,3", the caller frees it); the ranking
// goes to report (NULL: nowhere).
static char *least_influential_layers(Source *src, const CalibrationText *calib, int n_drop, FILE *report) {
    int L = src->header.n_layers, T;
    if (n_drop < 1 || n_drop >= L) die("cannot drop %d of %d layers: give 1 to %d", n_drop, L, L - 1);
    TokenStream tokens = calibration_tokens(src, calib, &T, "Block Influence");
    double *influence = xcalloc((size_t)L, sizeof(double), "influence");
    int *order = xcalloc((size_t)L, sizeof(int), "influence"), *dropped = xcalloc((size_t)L, sizeof(int), "influence");
    long n = block_influence(src, &tokens, T, calib->windows, influence, report == NULL);
    rank_by_influence(order, influence, L);
    if (report) {
        fprintf(report, "Block Influence of the %d layers over %ld tokens of %s (least first):\n", L, n, calib->path);
        for (int i = 0; i < L; i++) fprintf(report, "  layer %3d  %.5f\n", order[i], influence[order[i]]);
    }
    for (int i = 0; i < n_drop; i++) dropped[order[i]] = 1;
    char *list = xcalloc((size_t)L, 8, "layer list"), *at = list;   // "%d," of a layer below 1024 fits 8
    for (int l = 0; l < L; l++) if (dropped[l]) at += sprintf(at, "%s%d", at > list ? "," : "", l);
    free(dropped);
    free(order);
    free(influence);
    free(tokens.tokens);
    return list;
}

// --drop-layers: an explicit list ("3,7"), or auto:N, the N least influential
// layers on the calibration text, named so that an explicit list repeats it.
// The ranking is of the source as read, before a --lora adapter is merged.
static void drop_some_layers(Source *src, const char *spec, const CalibrationText *calib, int quiet) {
    if (strncmp(spec, "auto:", 5) != 0) {
        open_drop_layers(src, spec);
        return;
    }
    int L = src->header.n_layers;
    if (L < 2) die("--drop-layers %s: the model has 1 layer, and one must stay", spec);
    int n_drop = (int)parse_long("--drop-layers auto:N", spec + 5, 1, L - 1);   // keep at least one layer
    if (!calib->path) die("--drop-layers %s ranks the layers on a text: give it with --calib FILE", spec);
    char *list = least_influential_layers(src, calib, n_drop, quiet ? NULL : stderr);
    if (!quiet) fprintf(stderr, "export: --drop-layers %s drops layers %s (the same as --drop-layers %s)\n", spec, list,
                        list);
    open_drop_layers(src, list);
    free(list);
}

// ----------------------------------------------------------------------------
// Calibrated rounding (export --calib FILE, and --awq). A matrix's rounding
// error costs what it changes in the matrix's output W x on the inputs the
// model really sees, sum_c (w_c - q_c) x_c: a weight on a busy input channel
// matters more than one on a quiet channel. The walk measures each input
// channel's mean x_c^2 over the text, and quantize_row weighs each weight's
// squared error by it when it searches a group's scale (the "importance").
//
// --awq goes further (AWQ, Lin et al. 2023): it scales a matrix's column c up
// by s_c before rounding, and the input down by s_c where it is made (a norm's
// weights, wv's or w3's rows: see InputGroup), so in fp32 the model computes
// the same function, but busy channels get finer steps. s_c = mean|x_c|^a,
// normalised so that max * min = 1; a is searched in 0, 0.1, ..., 1 per
// input group and layer for the least output error
//     sum_t |W x_t - Q(W diag s) diag(s)^-1 x_t|^2
// over AWQ_SAMPLES tokens of the text, each matrix rounded as it will be
// written (its type, group size and importance); a = 0 is no scaling, so a
// layer never gets worse on those tokens. The classifier is rounded with the
// importance of its input (the final norm's output) but not scaled: tied, it
// is also the embedding table.

#define AWQ_SAMPLES 256      // tokens the search measures output error on (the cost grows with them)
#define AWQ_STEPS 10         // a = 0, 1/AWQ_STEPS, ..., 1

typedef struct {
    float *importance[N_INPUT_GROUPS];   // (width,) mean x_c^2 of each input as the exported matrices read it
    float *scale[N_INPUT_GROUPS];        // --awq: (width,) the columns' scales s_c (else NULL)
    float alpha[N_INPUT_GROUPS];         // --awq: the exponent chosen
} LayerCalibration;

typedef struct {             // a matrix of one input group, as export will round it
    const float *w;          // (rows, cols) fp32
    int rows, cols, type, group_size;
} RoundedMatrix;

typedef struct {
    const RoundedMatrix *m;
    const float *scale;      // (cols,) the columns' trial scales
    const float *importance; // (cols,) of the scaled inputs, or NULL
    const float *x;          // (n, cols) sampled inputs
    int n;
    double *row_error;       // (rows,) each row's error over the samples
} RoundingErrorTask;

#define ERROR_ROWS 8         // rows whose differences meet the samples in one matmul_f32

// Rows split between the threads: each row's sum over the samples of
// ((w - Q(w s) / s) . x)^2, a row's figure the same whichever thread has it.
static void rounding_error_task(void *arg, int thread, int n_threads) {
    RoundingErrorTask *task = arg;
    const RoundedMatrix *m = task->m;
    int cols = m->cols, padded = (int)round_up((size_t)cols, (size_t)m->group_size);
    int per_thread = (m->rows + n_threads - 1) / n_threads, first = thread * per_thread;
    int last = first + per_thread < m->rows ? first + per_thread : m->rows;
    if (first >= last) return;
    float *scaled = xcalloc((size_t)cols, sizeof(float), "AWQ"), *back = xcalloc((size_t)cols, sizeof(float), "AWQ");
    float *delta = xcalloc((size_t)ERROR_ROWS * cols, sizeof(float), "AWQ");
    float *y = xcalloc((size_t)task->n * ERROR_ROWS, sizeof(float), "AWQ");
    uint8_t *codes = xcalloc(row_code_bytes(quant_layout((uint32_t)m->type), (uint64_t)padded), 1, "AWQ");
    uint16_t *scales = xcalloc((size_t)(padded / m->group_size), sizeof(uint16_t), "AWQ");
    Tensor row = { .type = m->type, .rows = 1, .cols = cols, .cols_padded = padded, .group_size = m->group_size,
                   .codes = codes, .scales = scales };
    for (int r0 = first; r0 < last; r0 += ERROR_ROWS) {
        int k = last - r0 < ERROR_ROWS ? last - r0 : ERROR_ROWS;
        for (int j = 0; j < k; j++) {
            const float *w = m->w + (size_t)(r0 + j) * cols;
            for (int c = 0; c < cols; c++) scaled[c] = w[c] * task->scale[c];
            quantize_row((uint32_t)m->type, scaled, task->importance, cols, padded, m->group_size, codes, scales);
            dequantize_row(back, &row, 0);
            for (int c = 0; c < cols; c++) delta[(size_t)j * cols + c] = w[c] - back[c] / task->scale[c];
        }
        matmul_f32(y, task->x, delta, task->n, cols, k);
        for (int j = 0; j < k; j++) {
            double error = 0;
            for (int t = 0; t < task->n; t++) error += (double)y[(size_t)t * k + j] * y[(size_t)t * k + j];
            task->row_error[r0 + j] = error;
        }
    }
    free(scaled);
    free(back);
    free(delta);
    free(y);
    free(codes);
    free(scales);
}

// The output error of the group's matrices rounded with column scales `scale`.
static double scaled_rounding_error(Walk *walk, const RoundedMatrix *m, int count, const float *scale,
                                    const float *importance, const float *x, int n) {
    double total = 0;
    for (int i = 0; i < count; i++) {
        double *row_error = xcalloc((size_t)m[i].rows, sizeof(double), "AWQ");
        RoundingErrorTask task = { &m[i], scale, importance, x, n, row_error };
        pool_run(walk->pool, rounding_error_task, &task);
        for (int r = 0; r < m[i].rows; r++) total += row_error[r];
        free(row_error);
    }
    return total;
}

// AWQ's scales for one input group (matrices m, count of them): fills scale
// (cols,) and returns the a chosen. activity: mean |x_c|; importance: mean
// x_c^2 of the unscaled input, or NULL (rounding unweighted); x (n, cols): samples.
static float awq_search(Walk *walk, const RoundedMatrix *m, int count, const float *activity, const float *importance,
                        const float *x, int n, float *scale) {
    int cols = m[0].cols;
    float *trial = xcalloc((size_t)cols, sizeof(float), "AWQ");
    float *trial_importance = importance ? xcalloc((size_t)cols, sizeof(float), "AWQ") : NULL;
    double best_error = INFINITY;
    float best_alpha = 0;
    for (int step = 0; step <= AWQ_STEPS; step++) {
        double alpha = (double)step / AWQ_STEPS, lo = INFINITY, hi = 0;
        for (int c = 0; c < cols; c++) {
            trial[c] = (float)pow(fmax(activity[c], 1e-8), alpha);
            lo = fmin(lo, trial[c]);
            hi = fmax(hi, trial[c]);
        }
        for (int c = 0; c < cols; c++) {
            trial[c] = (float)(trial[c] / sqrt(lo * hi));
            if (importance) trial_importance[c] = importance[c] / (trial[c] * trial[c]);   // x / s, squared
        }
        double error = scaled_rounding_error(walk, m, count, trial, trial_importance, x, n);
        if (error < best_error) {
            best_error = error;
            best_alpha = (float)alpha;
            memcpy(scale, trial, (size_t)cols * sizeof(float));
        }
    }
    free(trial);
    free(trial_importance);
    return best_alpha;
}

static const PlannedTensor *planned_tensor(const Plan *plan, int kind, int layer) {
    for (int i = 0; i < plan->count; i++)
        if (plan->tensors[i].kind == kind && plan->tensors[i].layer == layer) return &plan->tensors[i];
    die("internal error: the plan has no tensor of kind %d in layer %d", kind, layer);
    return NULL;
}

// Query head h reads KV head h / group: the attention output's channel
// (h, d) comes from wv's row (h / group) * head_dim + d, so the channels of a
// KV head's query heads share one scale (their mean activity), and wv's row r
// is divided by the scale of channel wv_row_channel(r).
static int wv_row_channel(const FileHeader *h, int r) {
    return r / h->head_dim * (h->n_heads / h->n_kv_heads) * h->head_dim + r % h->head_dim;
}

static void tie_query_heads(const FileHeader *h, float *activity) {
    int hd = h->head_dim, group = h->n_heads / h->n_kv_heads;
    for (int kv = 0; kv < h->n_kv_heads; kv++)
        for (int d = 0; d < hd; d++) {
            float sum = 0;
            for (int k = 0; k < group; k++) sum += activity[(kv * group + k) * hd + d];
            for (int k = 0; k < group; k++) activity[(kv * group + k) * hd + d] = sum / (float)group;
        }
}

// Layer l's importance per input group, and with awq its scales, from the
// walk's record of its inputs; w: its fp32 tensors; target: the types export
// writes (an fp32 export searches for int4 of group 32). weighted: round with
// the importance (else: AWQ alone, rounding as without --calib).
static void calibrate_layer(Walk *walk, int l, float *const *w, const Plan *target, int awq, int weighted,
                            LayerCalibration *out) {
    static const int kinds[N_INPUT_GROUPS][3] = { { K_WQ, K_WK, K_WV }, { K_WO }, { K_W1, K_W3 }, { K_W2 } };
    static const int counts[N_INPUT_GROUPS] = { 3, 1, 2, 1 };
    const InputRecord *r = &walk->record;
    for (int g = 0; g < N_INPUT_GROUPS; g++) {
        int width = r->width[g];
        if (weighted) {
            out->importance[g] = xcalloc((size_t)width, sizeof(float), "importance");
            recorded_mean(walk, g, 1, out->importance[g]);
        }
        if (!awq) continue;
        RoundedMatrix m[3];
        for (int i = 0; i < counts[g]; i++) {
            const TensorEntry *e = &planned_tensor(target, kinds[g][i], l)->entry;
            int quantized = is_quantized(e->type);
            m[i] = (RoundedMatrix){ w[kinds[g][i]], (int)e->rows, (int)e->cols, quantized ? (int)e->type : TYPE_Q4,
                                    quantized ? (int)e->group_size : Q_BLOCK };
        }
        float *activity = xcalloc((size_t)width, sizeof(float), "AWQ");
        recorded_mean(walk, g, 0, activity);
        if (g == IN_ATTENTION_OUT) tie_query_heads(&walk->src->header, activity);
        out->scale[g] = xcalloc((size_t)width, sizeof(float), "AWQ");
        out->alpha[g] = awq_search(walk, m, counts[g], activity, out->importance[g], r->samples[g],
                                   (int)walk->n_windows * r->per_window, out->scale[g]);
        for (int c = 0; weighted && c < width; c++) out->importance[g][c] /= out->scale[g][c] * out->scale[g][c];
        free(activity);
    }
}

// ---- Source: the wrapped source's tensors with AWQ's scales folded in, and
// each matrix's importance for quantize_row.

typedef struct {
    Source base;
    LayerCalibration *layers;       // (n_layers,)
    float *classifier_importance;   // (dim,) mean x_c^2 of the final norm's output (NULL: unweighted)
    int awq, quiet;
    int copied;              // tensors whose codes were copied from the source: they are not re-rounded
    char description[300];
} CalibratedSource;

// Rows [begin, end) of t times AWQ's scales: a matrix's columns up by its
// input's s_c; what makes an input down by it (the norms' weights; wv's rows
// for wo, w3's rows for w2).
static void fold_awq_scales(const CalibratedSource *cs, const PlannedTensor *t, int begin, int end, float *out) {
    const LayerCalibration *lc = &cs->layers[t->layer];
    const FileHeader *h = &cs->base.header;
    int cols = (int)t->entry.cols, g = input_group(t->kind);
    for (int r = begin; r < end; r++) {
        float *row = out + (size_t)(r - begin) * cols;
        if (g >= 0) for (int c = 0; c < cols; c++) row[c] *= lc->scale[g][c];
        if (t->kind == K_ATTN_NORM) for (int c = 0; c < cols; c++) row[c] /= lc->scale[IN_ATTENTION][c];
        if (t->kind == K_FFN_NORM) for (int c = 0; c < cols; c++) row[c] /= lc->scale[IN_FFN][c];
        if (t->kind == K_WV) for (int c = 0; c < cols; c++) row[c] /= lc->scale[IN_ATTENTION_OUT][wv_row_channel(h, r)];
        if (t->kind == K_W3) for (int c = 0; c < cols; c++) row[c] /= lc->scale[IN_FFN_DOWN][r];
    }
}

static void calibrated_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    CalibratedSource *cs = src->impl;
    cs->base.read_rows(&cs->base, t, begin, end, out);
    if (cs->awq && t->layer >= 0) fold_awq_scales(cs, t, begin, end, out);
}

static int calibrated_read_codes(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                                 uint8_t *codes, uint16_t *scales) {
    CalibratedSource *cs = src->impl;
    if ((cs->awq && t->layer >= 0) || !cs->base.read_codes) return 0;
    int copied = cs->base.read_codes(&cs->base, t, type, group_size, begin, end, codes, scales);
    if (copied && begin == 0) __atomic_fetch_add(&cs->copied, 1, __ATOMIC_RELAXED);   // export's threads share the source
    return copied;
}

static const float *calibrated_importance(const Source *src, const PlannedTensor *t) {
    const CalibratedSource *cs = src->impl;
    int tied = (src->header.flags & FLAG_TIED_CLASSIFIER) != 0;
    if (t->kind == K_OUTPUT || (t->kind == K_EMBED && tied)) return cs->classifier_importance;
    int g = input_group(t->kind);
    return g >= 0 && t->layer >= 0 ? cs->layers[t->layer].importance[g] : NULL;
}

static void calibrated_check_tensor(const Source *src, const PlannedTensor *t) {
    const CalibratedSource *cs = src->impl;
    if (cs->base.check_tensor) cs->base.check_tensor(&cs->base, t);
}

static void calibrated_close(Source *src) {
    CalibratedSource *cs = src->impl;
    if (cs->copied && !cs->quiet)
        fprintf(stderr, "export: note: %d tensors were quantized in %s already and were copied as they were: "
                "--calib rounds weights it reads as floats\n", cs->copied, cs->base.description);
    if (cs->base.close) cs->base.close(&cs->base);
    for (int l = 0; l < cs->base.header.n_layers; l++)
        for (int g = 0; g < N_INPUT_GROUPS; g++) { free(cs->layers[l].importance[g]); free(cs->layers[l].scale[g]); }
    free(cs->layers);
    free(cs->classifier_importance);
    free(cs);   // the shapes (ffn_dim) stay the wrapped source's, which free_source frees
}

// Wraps src so that its matrices are rounded for the text `tokens` (windows
// of T, at most max_windows; what: the text's name) - target: the types they
// will be written as; awq: its scales folded in too; weighted: rounding
// errors weighted by the importance (else AWQ alone).
static void calibrate_source(Source *src, const TokenStream *tokens, int T, int max_windows, const char *what,
                             TypeRules *target_rules, int awq, int weighted, int quiet) {
    Walk walk = walk_start(src, tokens, T, max_windows, 1, awq ? AWQ_SAMPLES : 0, quiet);
    Plan target = make_plan_with(src, target_rules);
    int L = src->header.n_layers;
    CalibratedSource *cs = xcalloc(1, sizeof *cs, "calibration");
    cs->base = *src;
    cs->awq = awq;
    cs->quiet = quiet;
    cs->layers = xcalloc((size_t)L, sizeof(LayerCalibration), "calibration");
    for (int l = 0; l < L; l++) {
        float *w[K_OUTPUT + 1];
        read_layer_f32(&walk, l, w);
        walk_layer(&walk, l, w);
        calibrate_layer(&walk, l, w, &target, awq, weighted, &cs->layers[l]);
        free_layer_f32(w);
    }
    if (weighted) {
        cs->classifier_importance = xcalloc((size_t)src->header.dim, sizeof(float), "importance");
        walk_classifier_inputs(&walk, cs->classifier_importance);
    }
    if (!quiet) {
        fprintf(stderr, "export: rounding calibrated on %ld tokens of %s (%s)%s\n", walk.n_tokens, what,
                weighted ? "errors weighted by each input channel's mean x^2" : "errors unweighted",
                awq ? "; AWQ's a per layer (qkv, o, gate/up, down):" : "");
        for (int l = 0; awq && l < L; l++)
            fprintf(stderr, "  layer %3d  %.1f %.1f %.1f %.1f\n", l, cs->layers[l].alpha[IN_ATTENTION],
                    cs->layers[l].alpha[IN_ATTENTION_OUT], cs->layers[l].alpha[IN_FFN], cs->layers[l].alpha[IN_FFN_DOWN]);
    }
    walk_end(&walk);
    free(target.tensors);
    snprintf(cs->description, sizeof cs->description, "%s, rounding calibrated on %s%s", src->description, what,
             awq ? " with AWQ" : "");
    src->impl = cs;
    src->read_rows = calibrated_read_rows;
    src->read_codes = calibrated_read_codes;
    src->check_tensor = calibrated_check_tensor;
    src->importance = calibrated_importance;
    src->close = calibrated_close;
    src->description = cs->description;
}

// export --calib FILE [--awq]: calibrate_source on the text's tokens.
static void open_calibrated(Source *src, const CalibrationText *calib, TypeRules *target_rules, int awq, int weighted,
                            int quiet) {
    int T;
    TokenStream tokens = calibration_tokens(src, calib, &T, "calibrated rounding");
    calibrate_source(src, &tokens, T, calib->windows, calib->path, target_rules, awq, weighted, quiet);
    free(tokens.tokens);
}

// ----------------------------------------------------------------------------
// Command line

static uint32_t file_magic(const char *path) {
    uint32_t magic = 0;
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    if (fread(&magic, 1, 4, f) != 4) magic = 0;
    fclose(f);
    return magic;
}

// general.name of a GGUF: the input's file or directory name, without its extension
static const char *model_name(const char *path) {
    static char name[256];
    snprintf(name, sizeof name, "%s", path);
    size_t length = strlen(name);
    while (length > 1 && name[length - 1] == '/') name[--length] = '\0';
    const char *slash = strrchr(name, '/');
    char *base = slash ? (char *)slash + 1 : name;
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = '\0';
    return base;
}

// Any model file or directory export reads, told apart by what it is.
static void open_source(Source *src, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) die("cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) { open_hf(src, path); return; }
    uint32_t magic = file_magic(path);
    if (magic == CHECKPOINT_MAGIC) open_checkpoint_source(src, path);
    else if (magic == GGUF_MAGIC_U32) open_gguf(src, path);
    else open_legacy(src, path);
}

// "q3" or "3" -> TYPE_Q3 (any quantized type by its name or bits); -1 if none.
static int parse_weight_type(const char *text) {
    for (uint32_t type = 0; type < N_MATRIX_TYPES; type++) {
        const QuantLayout *layout = quant_layout(type);
        if (layout && (strcmp(text, layout->name) == 0 || atoi(text) == layout->bits) && strspn(text, "q0123456789") == strlen(text))
            return (int)type;
    }
    return -1;
}

static int parse_group_size(const char *flag, const char *text) {
    int group_size = (int)parse_long(flag, text, 32, 256);
    if (group_size != 32 && group_size != 64 && group_size != 128 && group_size != 256)
        die("%s: the group size must be 32, 64, 128 or 256, got '%s'", flag, text);
    return group_size;
}

static const Recipe *find_recipe(const char *name) {
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        if (strcmp(recipes[i].name, name) == 0) return &recipes[i];
    char names[128] = "";
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), " %s", recipes[i].name);
    die("--recipe %s is not a recipe; there are:%s", name, names);
    return NULL;
}

// --tensor-type 'w2=q8,layers.0.wv=8/64,output=q8': each NAME=TYPE[/GROUP]
// appended to the rules (checked against the model's tensors in make_plan).
static void parse_overrides(TypeRules *rules, const char *list) {
    char *copy = strdup(list);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        char *equals = strchr(item, '=');
        if (!equals || equals == item)
            die("--tensor-type: '%s' is not NAME=TYPE[/GROUP] (e.g. w2=q8,layers.0.wv=q4/64)", item);
        *equals = '\0';
        char *type_text = equals + 1, *slash = strchr(type_text, '/');
        if (slash) *slash = '\0';
        if (rules->n_overrides == MAX_OVERRIDES) die("--tensor-type: more than %d overrides", MAX_OVERRIDES);
        if (strlen(item) >= TENSOR_NAME_LEN) die("--tensor-type: the name '%s' is too long", item);
        TypeOverride *o = &rules->overrides[rules->n_overrides++];
        snprintf(o->name, sizeof o->name, "%s", item);
        o->type = parse_weight_type(type_text);
        if (o->type < 0) die("--tensor-type %s=%s: the type must be q8, q4, q3 or q2 (or 8, 4, 3, 2)", item, type_text);
        o->group_size = slash ? parse_group_size("--tensor-type", slash + 1) : Q_BLOCK;
    }
    free(copy);
}

#ifdef EXPORT_MAIN
// export --check-config DIR|config.json: can export convert this model? From
// config.json alone, so a download can be refused before its weights come.
static int check_config(const char *path) {
    struct stat st;
    char *config_path = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? path_join(path, "config.json") : strdup(path);
    if (!file_exists(config_path)) die("%s: no config.json (is this a Hugging Face model directory?)", path);
    Source src = { 0 };
    hf_config(&src, config_path);
    const FileHeader *h = &src.header;
    printf("%s: export converts it: dim %d, %d layers, %d/%d heads, head_dim %d, vocab %d, context %d%s\n", config_path,
           h->dim, h->n_layers, h->n_heads, h->n_kv_heads, h->head_dim, h->vocab_size, h->seq_len,
           src.rope_freqs ? ", RoPE scaled" : "");
    free(config_path);
    free_source(&src);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
        "Usage: export [--int4|--fp32|--gguf-q4_0|--gguf-q8_0|--gguf-f32] [options] INPUT OUTPUT\n"
        "       export --random SHAPE [--int4|--fp32|--gguf-...] [options] OUTPUT\n"
        "INPUT is a llama2.c .bin checkpoint, a Hugging Face model directory (config.json,\n"
        "model.safetensors or model.safetensors.index.json, tokenizer.json), a GGUF file\n"
        "(architecture llama; tensors F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,\n"
        "Q3_K, Q4_K, Q5_K, Q6_K: all but Q4_0 dequantized and quantized again), or an Edge\n"
        "LLM checkpoint (re-exported: blocks are copied when the type and group size stay,\n"
        "else dequantized and quantized again).\n"
        "Options:\n"
        "  --int4            int4 group-quantized checkpoint for runq (default; --bits 4)\n"
        "  --bits B          every matrix int8, int4, int3 or int2 (B = 8, 4, 3, 2), group-quantized\n"
        "  --recipe NAME     mixed precision: q4-mixed, q3-mixed, q2-mixed (more bits for the classifier,\n"
        "                    wv and w2, as llama.cpp's Q4_K_M does; q2-mixed keeps embeddings at int4)\n"
        "  --tensor-type L   per-tensor types over the above, e.g. 'w2=q8,layers.0.wv=q4/64,output=8':\n"
        "                    NAME=TYPE[/GROUP], NAME a tensor or a layer field (wq wk wv wo w1 w2 w3)\n"
        "  --fp32            fp32 checkpoint for run\n"
        "  --gguf-q4_0       GGUF for llama.cpp, matrices Q4_0: runq's int4 weights (group 32) re-packed\n"
        "  --gguf-q8_0       GGUF for llama.cpp, matrices Q8_0\n"
        "  --gguf-f32        GGUF for llama.cpp, everything f32\n"
        "  --group-size N    weights per scale: 32, 64, 128 or 256 (default 32; a recipe's own)\n"
        "  -z FILE           tokenizer.bin to embed (overrides the directory's tokenizer.json)\n"
        "  --random SHAPE    seeded random weights: stories260K stories15M stories42M stories110M\n"
        "                    smollm2-135m tinyllama-1.1b llama2-7b mistral-7b llama3-8b, or key=value\n"
        "                    pairs such as dim=64,ffn=172,layers=5,heads=8,kv_heads=4,vocab=512\n"
        "  --seed N          seed for --random (default 42)\n"
        "  --lora DIR        merge a PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)\n"
        "  --adapter DIR     write the PEFT adapter in DIR, checked against INPUT, as a runq adapter\n"
        "                    file (runq --lora FILE applies it at run time) instead of a model\n"
        "  --drop-layers L   remove decoder layers, e.g. 3,7 (ShortGPT), or auto:N: the N with the\n"
        "                    least Block Influence on the --calib text (the ranking is printed)\n"
        "  --calib FILE      calibration text, read with the model's tokenizer: auto:N ranks layers\n"
        "                    on it, and rounding errors are weighted by each input channel's mean x^2\n"
        "  --awq             with --calib: AWQ, busy input channels scaled up before rounding and\n"
        "                    their inputs down (norms, wv, w3); with --fp32, the scaled model\n"
        "  --calib-context T tokens per calibration window (default 256, at most the model's context)\n"
        "  --calib-windows N calibration windows read at most (default 16)\n"
        "  --check-config P  only read P (a model directory or its config.json): exit 0 if export\n"
        "                    converts this model, else say why (before downloading weights)\n"
        "  -q                no progress output\n");
    exit(EXIT_FAILURE);
}

int main(int argc, char **argv) {
    const char *random_shape = NULL, *tokenizer_path = NULL, *lora_dir = NULL, *drop_layers = NULL, *paths[2];
    const char *adapter_dir = NULL;
    int awq = 0;
    CalibrationText calib = { .path = NULL, .context = 256, .windows = 16 };
    int n_paths = 0, matrix_type = TYPE_Q4, group_size = 32, group_size_given = 0, quiet = 0, types_given = 0;
    TypeRules rules = { 0 };
    int gguf_type = -1;   // a GgmlType when writing GGUF
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--int4") == 0) { matrix_type = TYPE_Q4; gguf_type = -1; }
        else if (strcmp(a, "--bits") == 0 && has_value) {
            matrix_type = parse_weight_type(argv[++i]);
            if (matrix_type < 0 || strchr(argv[i], 'q')) die("--bits must be 8, 4, 3 or 2, got '%s'", argv[i]);
            types_given = 1;
        } else if (strcmp(a, "--recipe") == 0 && has_value) { rules.recipe = find_recipe(argv[++i]); types_given = 1; }
        else if (strcmp(a, "--tensor-type") == 0 && has_value) { parse_overrides(&rules, argv[++i]); types_given = 1; }
        else if (strcmp(a, "--fp32") == 0) { matrix_type = TYPE_F32; gguf_type = -1; }
        else if (strcmp(a, "--gguf-q4_0") == 0) gguf_type = GGML_TYPE_Q4_0;
        else if (strcmp(a, "--gguf-q8_0") == 0) gguf_type = GGML_TYPE_Q8_0;
        else if (strcmp(a, "--gguf-f32") == 0) gguf_type = GGML_TYPE_F32;
        else if (strcmp(a, "-q") == 0) quiet = 1;
        else if (strcmp(a, "--group-size") == 0 && has_value) {
            group_size = parse_group_size("--group-size", argv[++i]);
            group_size_given = 1;
        } else if (strcmp(a, "-z") == 0 && has_value) tokenizer_path = argv[++i];
        else if (strcmp(a, "--random") == 0 && has_value) random_shape = argv[++i];
        else if (strcmp(a, "--check-config") == 0 && has_value) return check_config(argv[++i]);
        else if (strcmp(a, "--lora") == 0 && has_value) lora_dir = argv[++i];
        else if (strcmp(a, "--adapter") == 0 && has_value) adapter_dir = argv[++i];
        else if (strcmp(a, "--drop-layers") == 0 && has_value) drop_layers = argv[++i];
        else if (strcmp(a, "--calib") == 0 && has_value) calib.path = argv[++i];
        else if (strcmp(a, "--awq") == 0) awq = 1;
        else if (strcmp(a, "--calib-context") == 0 && has_value) calib.context = (int)parse_long(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--calib-windows") == 0 && has_value) calib.windows = (int)parse_long(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--seed") == 0 && has_value) {
            char *end;
            errno = 0;
            seed = strtoull(argv[++i], &end, 10);
            if (errno || *end || end == argv[i]) die("--seed expects a whole number, got '%s'", argv[i]);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "export: unknown option or missing value: %s\n", a);
            usage();
        } else if (n_paths < 2) paths[n_paths++] = a;
        else usage();
    }
    if (n_paths != (random_shape ? 1 : 2)) usage();
    const char *output = paths[n_paths - 1];
    if (adapter_dir && (lora_dir || gguf_type >= 0 || random_shape || calib.path))
        die("--adapter writes an adapter file alone: not with --lora, --calib, --random or a GGUF output");
    if (awq && !calib.path) die("--awq scales by the activations of a text: give it with --calib FILE");
    if (gguf_type >= 0 && group_size_given)
        die("--group-size is for int4 checkpoints; GGUF Q4_0 and Q8_0 always have one scale per %d weights", Q_BLOCK);
    if (types_given && (gguf_type >= 0 || matrix_type == TYPE_F32 || adapter_dir))
        die("--bits, --recipe and --tensor-type choose runq checkpoint types: not with --fp32, --adapter or a GGUF "
            "output (--gguf-q4_0 is int4 at group 32, --gguf-q8_0 llama.cpp's own int8)");
    if (types_given && rules.recipe && matrix_type != TYPE_Q4)
        die("--bits and --recipe both choose every matrix's type: give one");
    rules.type = rules.recipe ? rules.recipe->type : matrix_type;
    rules.group_size = rules.recipe && !group_size_given ? rules.recipe->group_size : group_size;

    Source src = { 0 };
    if (random_shape) open_random(&src, random_shape, seed);
    else open_source(&src, paths[0]);

    if (tokenizer_path) {
        free(src.tokenizer);
        read_tokenizer_bin(&src, tokenizer_path);
        source_add_input(&src, tokenizer_path);
    } else if (!src.tokenizer && random_shape) {
        synthetic_tokenizer(&src);
    } else if (!src.tokenizer) {
        fprintf(stderr, "export: warning: no tokenizer given (-z); runq will need -z at run time\n");
    }
    // layers first: an adapter names the kept layers' new numbers
    if (drop_layers) drop_some_layers(&src, drop_layers, &calib, quiet);
    if (lora_dir) open_lora(&src, lora_dir);
    if (adapter_dir) {
        open_lora(&src, adapter_dir);
        write_adapter_file(&src, output);
        if (!quiet) fprintf(stderr, "export: wrote %s, a runq adapter (%s)\n", output, src.description);
        free_source(&src);
        return 0;
    }
    // last: the rounding is calibrated for the model as written
    int rounds = gguf_type == GGML_TYPE_Q4_0 || (gguf_type < 0 && rules.type != TYPE_F32);
    int ranks = drop_layers && strncmp(drop_layers, "auto:", 5) == 0;
    if (calib.path && !rounds && !awq && !ranks)
        die("--calib weighs the rounding of int8/int4/int3/int2 matrices (and ranks layers for --drop-layers "
            "auto:N); this output has none to round (--awq with it writes the AWQ-scaled model)");
    if (calib.path && (rounds || awq)) {
        TypeRules target = { .type = gguf_type == GGML_TYPE_Q8_0 ? TYPE_Q8 : TYPE_Q4, .group_size = Q_BLOCK };
        // an fp32 output is rounded later without --calib: AWQ then searches for unweighted rounding
        open_calibrated(&src, &calib, gguf_type < 0 && rounds ? &rules : &target, awq, rounds, quiet);
    }
    char format[64];
    snprintf(format, sizeof format, "%s", matrix_type == TYPE_F32 ? "fp32" : rules.recipe ? rules.recipe->name
             : rules.n_overrides ? "mixed" : matrix_type == TYPE_Q4 ? "int4" : quant_layout((uint32_t)matrix_type)->name);
    double bits = 0;
    if (gguf_type >= 0) {
        snprintf(format, sizeof format, "%s",
                 gguf_type == GGML_TYPE_Q4_0 ? "GGUF q4_0" : gguf_type == GGML_TYPE_Q8_0 ? "GGUF q8_0" : "GGUF f32");
        write_gguf(&src, output, (uint32_t)gguf_type, random_shape ? random_shape : model_name(paths[0]), quiet);
    } else {
        bits = write_checkpoint_with(&src, output, &rules, quiet);
    }
    if (!quiet) {
        const FileHeader *h = &src.header;
        fprintf(stderr, "export: wrote %s (%s, %s): dim %d, %d layers, %d/%d heads, vocab %d, context %d%s%s\n", output,
                src.description, format, h->dim, h->n_layers, h->n_heads, h->n_kv_heads, h->vocab_size, h->seq_len,
                src.rope_freqs ? ", RoPE scaled (rope_freqs)" : "", src.tokenizer ? ", tokenizer embedded" : "");
        if (bits > 0) fprintf(stderr, "export: %.3f bits per weight over the quantized matrices\n", bits);
    }
    free_source(&src);
    return 0;
}
#endif
