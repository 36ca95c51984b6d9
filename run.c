/*
run.c — the Edge LLM fp32 reference runtime.

Readable first, fast never: one thread, plain loops, float arithmetic in the
same order as llama2.c's run.c so that it reproduces that program's outputs
byte for byte. It is the oracle the tests hold runq.c to.

Reads two kinds of checkpoint:
  - llama2.c's legacy fp32 .bin (7 int32 header; negative vocab_size = separate classifier)
  - export.c's checkpoint (the format runq.c documents) with every tensor in f32
Compiles alone: cc -O2 -o run run.c -lm

Reading order: model structs -> loading either format -> math blocks ->
forward -> tokenizer -> sampler -> generate / chat -> command line
*/

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// Model structs

typedef struct {
    int dim;              // residual stream width
    int n_layers;
    int n_heads;          // query heads
    int n_kv_heads;       // key/value heads (grouped-query attention when fewer)
    int head_dim;
    int vocab_size;
    int seq_len;
    int *ffn_dim;         // (n_layers,)
    int max_ffn_dim;
    float rope_theta;
    float norm_eps;
    int bos_id, eos_id;
} Config;

typedef struct {
    const float *attention_norm; // (dim,)
    const float *wq;             // (n_heads*head_dim, dim)
    const float *wk;             // (n_kv_heads*head_dim, dim)
    const float *wv;             // (n_kv_heads*head_dim, dim)
    const float *wo;             // (dim, n_heads*head_dim)
    const float *ffn_norm;       // (dim,)
    const float *w1;             // (ffn_dim, dim)
    const float *w2;             // (dim, ffn_dim)
    const float *w3;             // (ffn_dim, dim)
} LayerWeights;

typedef struct {
    const float *tok_embeddings; // (vocab_size, dim)
    LayerWeights *layers;        // (n_layers,)
    const float *norm;           // (dim,)
    const float *output;         // (vocab_size, dim)
    const uint8_t *tokenizer_blob; // embedded tokenizer (export format only), else NULL
    size_t tokenizer_size;
} Weights;

typedef struct {
    float *x, *xb, *xb2;         // (dim,) residual, normalised input, branch output (xb: max(dim, q_dim))
    float *hb, *hb2;             // (max_ffn_dim,)
    float *q;                    // (q_dim,)
    float *att;                  // (n_heads, seq_len)
    float *logits;               // (vocab_size,)
    float *key_cache;            // (n_layers, seq_len, kv_dim)
    float *value_cache;          // (n_layers, seq_len, kv_dim)
} RunState;

typedef struct {
    Config config;
    Weights weights;
    RunState state;
    const uint8_t *file_data;
    size_t file_size;
    const char *path;
} Transformer;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("run: ", stderr);
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
// Loading: map the file, recognise its format, point the weights into it.

static void set_uniform_ffn(Config *c, int ffn_dim) {
    c->ffn_dim = xcalloc((size_t)c->n_layers, sizeof(int), "ffn_dim table");
    for (int l = 0; l < c->n_layers; l++) c->ffn_dim[l] = ffn_dim;
    c->max_ffn_dim = ffn_dim;
}

// llama2.c legacy v0: int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; then float arrays, each holding all layers.
static void load_legacy(Transformer *t) {
    Config *c = &t->config;
    const int32_t *h = (const int32_t *)t->file_data;
    int shared = h[5] > 0;
    c->dim = h[0];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab_size = shared ? h[5] : -h[5];
    c->seq_len = h[6];
    if (c->dim <= 0 || h[1] <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0
        || c->vocab_size <= 0 || c->seq_len <= 0 || c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0
        || c->dim > 1 << 16 || h[1] > 1 << 20 || c->n_layers > 1024 || c->seq_len > 1 << 22 || c->vocab_size > 1 << 22)
        die("%s: legacy header does not describe a model (dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq %d)",
            t->path, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    c->head_dim = c->dim / c->n_heads;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->bos_id = 1;
    c->eos_id = 2;
    set_uniform_ffn(c, h[1]);

    size_t dim = (size_t)c->dim, hidden = (size_t)h[1], layers = (size_t)c->n_layers;
    size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim, vocab = (size_t)c->vocab_size;
    size_t floats = vocab * dim + layers * dim * (2 + dim + 2 * kv_dim + dim + 3 * hidden) + dim
                    + (size_t)c->seq_len * c->head_dim + (shared ? 0 : vocab * dim);
    if (t->file_size != 28 + floats * sizeof(float))
        die("%s: legacy header implies %zu bytes but the file has %zu (truncated or not a llama2.c checkpoint)",
            t->path, 28 + floats * sizeof(float), t->file_size);

    const float *p = (const float *)(t->file_data + 28);
    Weights *w = &t->weights;
    w->layers = xcalloc(layers, sizeof(LayerWeights), "layer table");
    w->tok_embeddings = p; p += vocab * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].attention_norm = p + l * dim;
    p += layers * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].wq = p + l * dim * dim;
    p += layers * dim * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].wk = p + l * kv_dim * dim;
    p += layers * kv_dim * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].wv = p + l * kv_dim * dim;
    p += layers * kv_dim * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].wo = p + l * dim * dim;
    p += layers * dim * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].ffn_norm = p + l * dim;
    p += layers * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].w1 = p + l * hidden * dim;
    p += layers * hidden * dim;
    for (size_t l = 0; l < layers; l++) w->layers[l].w2 = p + l * dim * hidden;
    p += layers * dim * hidden;
    for (size_t l = 0; l < layers; l++) w->layers[l].w3 = p + l * hidden * dim;
    p += layers * hidden * dim;
    w->norm = p; p += dim;
    p += (size_t)c->seq_len * c->head_dim;   // legacy freq_cis_real and freq_cis_imag, unused
    w->output = shared ? w->tok_embeddings : p;
}

// export.c's checkpoint: the layout is documented at the top of runq.c.
#define CHECKPOINT_MAGIC 0x45474445u   // "EDGE"
#define CHECKPOINT_VERSION 1
#define TENSOR_NAME_LEN 64
enum { TYPE_F32 = 0, TYPE_BLOB = 255 };

typedef struct {
    uint32_t magic, version;
    int32_t dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len;
    float rope_theta, norm_eps;
    uint32_t flags;
    int32_t bos_id, eos_id;
    uint32_t n_tensors, reserved;
} FileHeader;

typedef struct {
    char name[TENSOR_NAME_LEN];
    uint32_t type, group_size, rows, cols;
    uint64_t offset, nbytes;
} TensorEntry;

_Static_assert(sizeof(FileHeader) == 64, "FileHeader is 64 bytes on disk");
_Static_assert(sizeof(TensorEntry) == 96, "TensorEntry is 96 bytes on disk");

// header, ffn_dim[n_layers], padding to 64, then the table
static size_t tensor_table_offset(int n_layers) { return (sizeof(FileHeader) + 4 * (size_t)n_layers + 63) / 64 * 64; }

static const TensorEntry *find_entry(const Transformer *t, const char *name) {
    const FileHeader *h = (const FileHeader *)t->file_data;
    const TensorEntry *table = (const TensorEntry *)(t->file_data + tensor_table_offset(h->n_layers));
    for (uint32_t i = 0; i < h->n_tensors; i++)
        if (strncmp(table[i].name, name, TENSOR_NAME_LEN) == 0) return &table[i];
    return NULL;
}

// Every tensor lies inside the file and the last one ends where the file does.
static void check_extent(const Transformer *t, uint32_t n_tensors, size_t table_end) {
    const TensorEntry *table = (const TensorEntry *)(t->file_data + table_end - sizeof(TensorEntry) * n_tensors);
    uint64_t end = table_end;
    for (uint32_t i = 0; i < n_tensors; i++) {
        if (table[i].offset > t->file_size || table[i].nbytes > t->file_size - table[i].offset)
            die("%s: tensor %u lies past the end of the file (truncated?)", t->path, i);
        if (table[i].offset + table[i].nbytes > end) end = table[i].offset + table[i].nbytes;
    }
    if (end != t->file_size)
        die("%s: the tensors end at byte %llu but the file has %zu bytes (truncated or appended to?)", t->path,
            (unsigned long long)end, t->file_size);
}

static const float *f32_tensor(const Transformer *t, const char *name, int rows, int cols) {
    const TensorEntry *e = find_entry(t, name);
    if (!e) die("%s: tensor '%s' is missing", t->path, name);
    if (e->type != TYPE_F32)
        die("%s: tensor '%s' has type %u; run reads f32 checkpoints - use ./runq for int4", t->path, name, e->type);
    if ((int64_t)e->rows != rows || (int64_t)e->cols != cols)
        die("%s: tensor '%s' is (%u, %u) but the header implies (%d, %d)", t->path, name, e->rows, e->cols, rows, cols);
    uint64_t nbytes = (uint64_t)rows * (uint64_t)cols * 4;
    if (e->nbytes != nbytes || e->offset % 4 != 0 || e->offset > t->file_size || nbytes > t->file_size - e->offset)
        die("%s: tensor '%s' lies outside the file (truncated?)", t->path, name);
    return (const float *)(t->file_data + e->offset);
}

static void load_export(Transformer *t) {
    if (t->file_size < sizeof(FileHeader)) die("%s: too small to be a checkpoint (truncated?)", t->path);
    const FileHeader *h = (const FileHeader *)t->file_data;
    if (h->version != CHECKPOINT_VERSION)
        die("%s: checkpoint version %u, this run reads version %d", t->path, h->version, CHECKPOINT_VERSION);
    Config *c = &t->config;
    if (h->dim <= 0 || h->dim > 1 << 16 || h->n_layers <= 0 || h->n_layers > 1024 || h->n_heads <= 0 || h->n_heads > 1024
        || h->n_kv_heads <= 0 || h->n_heads % h->n_kv_heads != 0 || h->head_dim <= 0 || h->head_dim > 4096 || h->head_dim % 2
        || h->vocab_size <= 0 || h->vocab_size > 1 << 22 || h->seq_len <= 0 || h->seq_len > 1 << 22 || h->n_tensors > 1u << 20
        || !(h->rope_theta > 0) || !(h->norm_eps > 0) || h->bos_id < 0 || h->bos_id >= h->vocab_size
        || h->eos_id < 0 || h->eos_id >= h->vocab_size)
        die("%s: header has out-of-range fields", t->path);
    size_t table_end = tensor_table_offset(h->n_layers) + sizeof(TensorEntry) * (size_t)h->n_tensors;
    if (table_end > t->file_size) die("%s: the tensor table runs past the end of the file (truncated?)", t->path);
    check_extent(t, h->n_tensors, table_end);
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
    c->ffn_dim = xcalloc((size_t)c->n_layers, sizeof(int), "ffn_dim table");
    const int32_t *ffn = (const int32_t *)(t->file_data + sizeof(FileHeader));
    for (int l = 0; l < c->n_layers; l++) {
        if (ffn[l] <= 0 || ffn[l] > 1 << 20) die("%s: layer %d has FFN width %d", t->path, l, ffn[l]);
        c->ffn_dim[l] = ffn[l];
        if (ffn[l] > c->max_ffn_dim) c->max_ffn_dim = ffn[l];
    }

    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    Weights *w = &t->weights;
    char name[TENSOR_NAME_LEN];
    w->tok_embeddings = f32_tensor(t, "tok_embeddings", c->vocab_size, c->dim);
    w->layers = xcalloc((size_t)c->n_layers, sizeof(LayerWeights), "layer table");
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *lw = &w->layers[l];
        int ffn_dim = c->ffn_dim[l];
#define LAYER_TENSOR(field, rows, cols) \
        (snprintf(name, sizeof name, "layers.%d." #field, l), lw->field = f32_tensor(t, name, rows, cols))
        LAYER_TENSOR(attention_norm, 1, c->dim);
        LAYER_TENSOR(wq, q_dim, c->dim);
        LAYER_TENSOR(wk, kv_dim, c->dim);
        LAYER_TENSOR(wv, kv_dim, c->dim);
        LAYER_TENSOR(wo, c->dim, q_dim);
        LAYER_TENSOR(ffn_norm, 1, c->dim);
        LAYER_TENSOR(w1, ffn_dim, c->dim);
        LAYER_TENSOR(w2, c->dim, ffn_dim);
        LAYER_TENSOR(w3, ffn_dim, c->dim);
#undef LAYER_TENSOR
    }
    w->norm = f32_tensor(t, "norm", 1, c->dim);
    w->output = (h->flags & 1u) ? w->tok_embeddings : f32_tensor(t, "output", c->vocab_size, c->dim);
    const TensorEntry *tok = find_entry(t, "tokenizer");
    if (tok) {
        if (tok->type != TYPE_BLOB || tok->offset > t->file_size || tok->nbytes > t->file_size - tok->offset)
            die("%s: the embedded tokenizer lies outside the file (truncated?)", t->path);
        w->tokenizer_blob = t->file_data + tok->offset;
        w->tokenizer_size = (size_t)tok->nbytes;
    }
}

static void malloc_run_state(RunState *s, const Config *c) {
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    size_t cache = (size_t)c->n_layers * c->seq_len * kv_dim;
    s->x = xcalloc((size_t)c->dim, sizeof(float), "activations");
    s->xb = xcalloc((size_t)(c->dim > q_dim ? c->dim : q_dim), sizeof(float), "activations");
    s->xb2 = xcalloc((size_t)c->dim, sizeof(float), "activations");
    s->hb = xcalloc((size_t)c->max_ffn_dim, sizeof(float), "activations");
    s->hb2 = xcalloc((size_t)c->max_ffn_dim, sizeof(float), "activations");
    s->q = xcalloc((size_t)q_dim, sizeof(float), "activations");
    s->att = xcalloc((size_t)c->n_heads * c->seq_len, sizeof(float), "attention scores");
    s->logits = xcalloc((size_t)c->vocab_size, sizeof(float), "logits");
    s->key_cache = xcalloc(cache, sizeof(float), "KV cache");
    s->value_cache = xcalloc(cache, sizeof(float), "KV cache");
}

static void build_transformer(Transformer *t, const char *path) {
    memset(t, 0, sizeof *t);
    t->path = path;
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    t->file_size = (size_t)st.st_size;
    if (t->file_size < 28) die("%s: %zu bytes is too small to be a checkpoint (truncated?)", path, t->file_size);
    void *data = mmap(NULL, t->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) die("cannot map %s: %s", path, strerror(errno));
    t->file_data = data;
    if (*(const uint32_t *)t->file_data == CHECKPOINT_MAGIC) load_export(t);
    else load_legacy(t);
    malloc_run_state(&t->state, &t->config);
}

static void free_transformer(Transformer *t) {
    RunState *s = &t->state;
    free(s->x); free(s->xb); free(s->xb2); free(s->hb); free(s->hb2); free(s->q);
    free(s->att); free(s->logits); free(s->key_cache); free(s->value_cache);
    free(t->weights.layers);
    free(t->config.ffn_dim);
    if (t->file_data) munmap((void *)t->file_data, t->file_size);
}

// ----------------------------------------------------------------------------
// Math blocks

static void rmsnorm(float *o, const float *x, const float *weight, int size, float eps) {
    float ss = 0.0f;
    for (int j = 0; j < size; j++) ss += x[j] * x[j];
    ss /= size;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < size; j++) o[j] = weight[j] * (ss * x[j]);
}

static void softmax(float *x, int size) {
    float max_val = x[0];
    for (int i = 1; i < size; i++) if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < size; i++) { x[i] = expf(x[i] - max_val); sum += x[i]; }
    for (int i = 0; i < size; i++) x[i] /= sum;
}

// W (d,n) @ x (n,) -> xout (d,)
static void matmul(float *xout, const float *x, const float *w, int n, int d) {
    for (int i = 0; i < d; i++) {
        float val = 0.0f;
        for (int j = 0; j < n; j++) val += w[(size_t)i * n + j] * x[j];
        xout[i] = val;
    }
}

// Rotate pairs (v[i], v[i+1]) of each head by pos * theta^(-i/head_dim).
static void rope(float *v, int n_heads, int head_dim, int pos, float theta) {
    for (int i = 0; i < n_heads * head_dim; i += 2) {
        float freq = 1.0f / powf(theta, (i % head_dim) / (float)head_dim);
        float val = pos * freq;
        float fcr = cosf(val), fci = sinf(val);
        float v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * fcr - v1 * fci;
        v[i + 1] = v0 * fci + v1 * fcr;
    }
}

// ----------------------------------------------------------------------------
// Forward: one token at position pos -> logits

static float *forward(Transformer *t, int token, int pos) {
    const Config *p = &t->config;
    const Weights *w = &t->weights;
    RunState *s = &t->state;
    float *x = s->x;
    int dim = p->dim, head_size = p->head_dim;
    int q_dim = p->n_heads * head_size, kv_dim = p->n_kv_heads * head_size;
    int kv_mul = p->n_heads / p->n_kv_heads;

    memcpy(x, w->tok_embeddings + (size_t)token * dim, dim * sizeof(*x));

    for (int l = 0; l < p->n_layers; l++) {
        const LayerWeights *lw = &w->layers[l];
        int hidden_dim = p->ffn_dim[l];
        rmsnorm(s->xb, x, lw->attention_norm, dim, p->norm_eps);

        size_t loff = (size_t)l * p->seq_len * kv_dim;
        float *k = s->key_cache + loff + (size_t)pos * kv_dim;
        float *v = s->value_cache + loff + (size_t)pos * kv_dim;
        matmul(s->q, s->xb, lw->wq, dim, q_dim);
        matmul(k, s->xb, lw->wk, dim, kv_dim);
        matmul(v, s->xb, lw->wv, dim, kv_dim);
        rope(s->q, p->n_heads, head_size, pos, p->rope_theta);
        rope(k, p->n_kv_heads, head_size, pos, p->rope_theta);

        for (int h = 0; h < p->n_heads; h++) {
            const float *q = s->q + h * head_size;
            float *att = s->att + (size_t)h * p->seq_len;
            for (int t2 = 0; t2 <= pos; t2++) {
                const float *kt = s->key_cache + loff + (size_t)t2 * kv_dim + (h / kv_mul) * head_size;
                float score = 0.0f;
                for (int i = 0; i < head_size; i++) score += q[i] * kt[i];
                score /= sqrtf(head_size);
                att[t2] = score;
            }
            softmax(att, pos + 1);
            float *xb = s->xb + h * head_size;
            memset(xb, 0, head_size * sizeof(float));
            for (int t2 = 0; t2 <= pos; t2++) {
                const float *vt = s->value_cache + loff + (size_t)t2 * kv_dim + (h / kv_mul) * head_size;
                float a = att[t2];
                for (int i = 0; i < head_size; i++) xb[i] += a * vt[i];
            }
        }
        matmul(s->xb2, s->xb, lw->wo, q_dim, dim);
        for (int i = 0; i < dim; i++) x[i] += s->xb2[i];

        rmsnorm(s->xb, x, lw->ffn_norm, dim, p->norm_eps);
        matmul(s->hb, s->xb, lw->w1, dim, hidden_dim);
        matmul(s->hb2, s->xb, lw->w3, dim, hidden_dim);
        for (int i = 0; i < hidden_dim; i++) {
            float val = s->hb[i];
            val *= (1.0f / (1.0f + expf(-val)));   // silu
            val *= s->hb2[i];
            s->hb[i] = val;
        }
        matmul(s->xb, s->hb, lw->w2, hidden_dim, dim);
        for (int i = 0; i < dim; i++) x[i] += s->xb[i];
    }
    rmsnorm(x, x, w->norm, dim, p->norm_eps);
    matmul(s->logits, x, w->output, dim, p->vocab_size);
    return s->logits;
}

// ----------------------------------------------------------------------------
// Tokenizer (the same algorithm as runq.c; see there for the format)

typedef struct {
    const char *str;
    int id;
} TokenIndex;

typedef struct {
    char **vocab;
    float *scores;
    TokenIndex *sorted;
    int vocab_size;
    int max_token_length;
    int byte_tokens[256];
    int bos_id, eos_id;
    unsigned char byte_pieces[512];
} Tokenizer;

static int compare_tokens(const void *a, const void *b) {
    return strcmp(((const TokenIndex *)a)->str, ((const TokenIndex *)b)->str);
}

static int str_lookup(const char *str, const Tokenizer *t) {
    TokenIndex key = { .str = str };
    const TokenIndex *found = bsearch(&key, t->sorted, (size_t)t->vocab_size, sizeof(TokenIndex), compare_tokens);
    return found ? found->id : -1;
}

static const char *build_tokenizer_from_memory(Tokenizer *t, const uint8_t *data, size_t size, int vocab_size) {
    memset(t, 0, sizeof *t);
    t->vocab_size = vocab_size;
    if (size < 4) return "too short to hold max_token_length";
    int32_t max_len;
    memcpy(&max_len, data, 4);
    if (max_len <= 0 || max_len > 1 << 16) return "max_token_length out of range";
    t->max_token_length = max_len;
    t->vocab = xcalloc((size_t)vocab_size, sizeof(char *), "tokenizer");
    t->scores = xcalloc((size_t)vocab_size, sizeof(float), "tokenizer");
    size_t at = 4;
    for (int i = 0; i < vocab_size; i++) {
        int32_t len;
        if (size - at < 8) return "ends before the last piece (does the vocabulary size match the model?)";
        memcpy(&t->scores[i], data + at, 4);
        memcpy(&len, data + at + 4, 4);
        at += 8;
        if (len < 0 || len > max_len || (size_t)len > size - at) return "a piece has an impossible length";
        t->vocab[i] = xcalloc((size_t)len + 1, 1, "tokenizer");
        memcpy(t->vocab[i], data + at, (size_t)len);
        at += (size_t)len;
    }
    if (at != size) return "has bytes left after the last piece (does the vocabulary size match the model?)";
    t->sorted = xcalloc((size_t)vocab_size, sizeof(TokenIndex), "tokenizer");
    for (int i = 0; i < vocab_size; i++) t->sorted[i] = (TokenIndex){ t->vocab[i], i };
    qsort(t->sorted, (size_t)vocab_size, sizeof(TokenIndex), compare_tokens);
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        t->byte_tokens[b] = str_lookup(piece, t);
        t->byte_pieces[b * 2] = (unsigned char)b;
    }
    return NULL;
}

static void free_tokenizer(Tokenizer *t) {
    if (t->vocab) for (int i = 0; i < t->vocab_size; i++) free(t->vocab[i]);
    free(t->vocab);
    free(t->scores);
    free(t->sorted);
}

static uint8_t *read_whole_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
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
}

static const char *decode(const Tokenizer *t, int prev_token, int token) {
    const char *piece = t->vocab[token];
    if (prev_token == t->bos_id && piece[0] == ' ') piece++;
    unsigned int byte;
    char close;
    if (strlen(piece) == 6 && sscanf(piece, "<0x%02X%c", &byte, &close) == 2 && close == '>')
        piece = (const char *)t->byte_pieces + byte * 2;
    return piece;
}

static void safe_printf(const char *piece) {
    if (!piece || !piece[0]) return;
    if (piece[1] == '\0') {
        unsigned char byte = (unsigned char)piece[0];
        if (!(isprint(byte) || isspace(byte))) return;
    }
    fputs(piece, stdout);
}

static int encode(const Tokenizer *t, const char *text, int add_bos, int add_eos, int *tokens) {
    size_t buffer_size = (size_t)t->max_token_length * 2 + 8;
    char *buffer = xcalloc(buffer_size, 1, "tokenizer buffer");
    int n = 0;
    if (add_bos) tokens[n++] = t->bos_id;
    int first = n;
    if (text[0] != '\0') {
        int space = str_lookup(" ", t);
        if (space >= 0) tokens[n++] = space;
    }
    for (const char *c = text; *c != '\0';) {
        size_t len = 1;
        while (len < 4 && (c[len] & 0xC0) == 0x80) len++;
        memcpy(buffer, c, len);
        buffer[len] = '\0';
        int id = str_lookup(buffer, t);
        if (id >= 0) {
            tokens[n++] = id;
        } else {
            for (size_t i = 0; i < len; i++) {
                int byte_id = t->byte_tokens[(unsigned char)c[i]];
                tokens[n++] = byte_id >= 0 ? byte_id : 0;
            }
        }
        c += len;
    }
    for (;;) {
        float best_score = -INFINITY;
        int best_id = -1, best_index = -1;
        for (int i = first; i < n - 1; i++) {
            size_t a = strlen(t->vocab[tokens[i]]), b = strlen(t->vocab[tokens[i + 1]]);
            if (a + b >= buffer_size) continue;
            memcpy(buffer, t->vocab[tokens[i]], a);
            memcpy(buffer + a, t->vocab[tokens[i + 1]], b + 1);
            int id = str_lookup(buffer, t);
            if (id >= 0 && t->scores[id] > best_score) {
                best_score = t->scores[id];
                best_id = id;
                best_index = i;
            }
        }
        if (best_index < 0) break;
        tokens[best_index] = best_id;
        memmove(&tokens[best_index + 1], &tokens[best_index + 2], (size_t)(n - best_index - 2) * sizeof(int));
        n--;
    }
    if (add_eos) tokens[n++] = t->eos_id;
    free(buffer);
    return n;
}

// ----------------------------------------------------------------------------
// Sampler (llama2.c's, so seeded runs reproduce)

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    ProbIndex *probindex;
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

static int sample(Sampler *s, float *logits) {
    if (s->temperature == 0.0f) return argmax(logits, s->vocab_size);
    for (int i = 0; i < s->vocab_size; i++) logits[i] /= s->temperature;
    softmax(logits, s->vocab_size);
    float coin = random_f32(&s->rng_state);
    if (s->topp <= 0 || s->topp >= 1) return sample_mult(logits, s->vocab_size, coin);
    return sample_topp(logits, s->vocab_size, s->topp, s->probindex, coin);
}

// ----------------------------------------------------------------------------
// Generation

static long time_in_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void generate(Transformer *t, Tokenizer *tok, Sampler *sampler, const char *prompt, int steps) {
    if (!prompt) prompt = "";
    int *prompt_tokens = xcalloc(strlen(prompt) + 3, sizeof(int), "prompt tokens");
    int n_prompt = encode(tok, prompt, 1, 0, prompt_tokens);
    if (n_prompt >= steps)
        die("the prompt is %d tokens but -n %d leaves no room to generate (the context holds %d)",
            n_prompt, steps, t->config.seq_len);
    long start = 0;
    int token = prompt_tokens[0], pos = 0;
    while (pos < steps) {
        float *logits = forward(t, token, pos);
        int next = pos < n_prompt - 1 ? prompt_tokens[pos + 1] : sample(sampler, logits);
        pos++;
        if (next == tok->bos_id || next == tok->eos_id) break;
        safe_printf(decode(tok, token, next));
        fflush(stdout);
        token = next;
        if (start == 0) start = time_in_ms();
    }
    printf("\n");
    if (pos > 1) {
        long elapsed = time_in_ms() - start;
        fprintf(stderr, "achieved tok/s: %f\n", (pos - 1) / (double)(elapsed > 0 ? elapsed : 1) * 1000);
    }
    free(prompt_tokens);
}

static int read_line(const char *guide, char **line, size_t *capacity) {
    printf("%s", guide);
    fflush(stdout);
    ssize_t n = getline(line, capacity, stdin);
    if (n < 0) return 0;
    if (n > 0 && (*line)[n - 1] == '\n') (*line)[n - 1] = '\0';
    return 1;
}

static void chat(Transformer *t, Tokenizer *tok, Sampler *sampler, const char *cli_user_prompt,
                 const char *cli_system_prompt, int steps) {
    char *system_prompt = NULL, *user_prompt = NULL;
    size_t system_capacity = 0, user_capacity = 0;
    int *prompt_tokens = NULL, n_prompt = 0, prompt_index = 0;
    int user_turn = 1, next = 0, token = 0, pos = 0;
    while (pos < steps) {
        if (user_turn) {
            const char *system = "", *user;
            if (pos == 0) {
                if (cli_system_prompt) system = cli_system_prompt;
                else if (read_line("Enter system prompt (optional): ", &system_prompt, &system_capacity)) system = system_prompt;
            }
            if (pos == 0 && cli_user_prompt) user = cli_user_prompt;
            else if (read_line("User: ", &user_prompt, &user_capacity)) user = user_prompt;
            else break;
            size_t size = strlen(system) + strlen(user) + 64;
            char *rendered = xcalloc(size, 1, "chat prompt");
            if (pos == 0 && system[0])
                snprintf(rendered, size, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", system, user);
            else
                snprintf(rendered, size, "[INST] %s [/INST]", user);
            free(prompt_tokens);
            prompt_tokens = xcalloc(strlen(rendered) + 3, sizeof(int), "chat prompt");
            n_prompt = encode(tok, rendered, 1, 0, prompt_tokens);
            free(rendered);
            if (pos + n_prompt >= steps) {
                fprintf(stderr, "\n[context full: %d of %d positions used; start a new chat]\n", pos, steps);
                break;
            }
            prompt_index = 0;
            user_turn = 0;
            printf("Assistant: ");
        }
        token = prompt_index < n_prompt ? prompt_tokens[prompt_index++] : next;
        if (token == tok->eos_id) user_turn = 1;
        float *logits = forward(t, token, pos);
        next = sample(sampler, logits);
        pos++;
        if (prompt_index >= n_prompt && next != tok->eos_id) {
            safe_printf(decode(tok, token, next));
            fflush(stdout);
        }
        if (next == tok->eos_id) printf("\n");
    }
    printf("\n");
    free(prompt_tokens);
    free(system_prompt);
    free(user_prompt);
}

// ----------------------------------------------------------------------------
// Command line (the same flags as runq, less -T)

#ifndef TESTING

static void usage(void) {
    fprintf(stderr,
        "Usage:   run <checkpoint> [options]\n"
        "Example: run model.f32.bin -n 256 -i \"Once upon a time\"\n"
        "         run stories260K.bin -z tok512.bin -t 0   (a llama2.c checkpoint)\n"
        "Options:\n"
        "  -t <float>  temperature in [0,inf), default 1.0 (0 = greedy)\n"
        "  -p <float>  top-p (nucleus) sampling in [0,1], default 0.9\n"
        "  -s <int>    random seed, default time(NULL)\n"
        "  -n <int>    positions to run, prompt included, default 256 (at most the context)\n"
        "  -i <string> input prompt\n"
        "  -z <string> tokenizer.bin (required for llama2.c checkpoints)\n"
        "  -m <string> mode: generate|chat, default generate\n"
        "  -y <string> system prompt in chat mode\n");
    exit(EXIT_FAILURE);
}

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

int main(int argc, char **argv) {
    const char *checkpoint, *tokenizer_path = NULL, *prompt = NULL, *mode = "generate", *system_prompt = NULL;
    float temperature = 1.0f, topp = 0.9f;
    unsigned long long seed = 0;
    int steps = 256, steps_given = 0;

    if (argc < 2) usage();
    checkpoint = argv[1];
    for (int i = 2; i < argc; i += 2) {
        if (argv[i][0] != '-' || strlen(argv[i]) != 2) { fprintf(stderr, "run: unknown argument '%s'\n", argv[i]); usage(); }
        if (i + 1 >= argc) die("flag %s needs a value", argv[i]);
        const char *value = argv[i + 1];
        switch (argv[i][1]) {
        case 't': temperature = parse_float("-t", value, 0.0f, 1e6f); break;
        case 'p': topp = parse_float("-p", value, 0.0f, 1.0f); break;
        case 's': seed = (unsigned long long)parse_long("-s", value, 0, LONG_MAX); break;
        case 'n': steps = (int)parse_long("-n", value, 1, INT_MAX); steps_given = 1; break;
        case 'i': prompt = value; break;
        case 'z': tokenizer_path = value; break;
        case 'm': mode = value; break;
        case 'y': system_prompt = value; break;
        default: fprintf(stderr, "run: unknown flag '%s'\n", argv[i]); usage();
        }
    }
    if (strcmp(mode, "generate") != 0 && strcmp(mode, "chat") != 0) die("unknown mode '%s' (generate|chat)", mode);
    if (seed == 0) seed = (unsigned long long)time(NULL);

    Transformer transformer;
    build_transformer(&transformer, checkpoint);
    if (steps > transformer.config.seq_len) {
        if (steps_given) die("-n %d is beyond the model's context of %d positions", steps, transformer.config.seq_len);
        steps = transformer.config.seq_len;
    }
    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, &transformer, tokenizer_path);
    Sampler sampler = { .vocab_size = transformer.config.vocab_size, .temperature = temperature, .topp = topp,
                        .rng_state = seed };
    sampler.probindex = xcalloc((size_t)sampler.vocab_size, sizeof(ProbIndex), "sampler");

    if (strcmp(mode, "generate") == 0) generate(&transformer, &tokenizer, &sampler, prompt, steps);
    else chat(&transformer, &tokenizer, &sampler, prompt, system_prompt, steps);

    free(sampler.probindex);
    free_tokenizer(&tokenizer);
    free_transformer(&transformer);
    return 0;
}
#endif
