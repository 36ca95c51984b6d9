/*
run.c — the Edge LLM fp32 reference runtime.

Readable first, fast never: one thread, plain loops, float arithmetic in the
same order as llama2.c's run.c so that it reproduces that program's outputs
byte for byte. It is the oracle the tests hold runq.c to.

Reads two kinds of checkpoint:
  - llama2.c's legacy fp32 .bin (7 int32 header; negative vocab_size = separate classifier)
  - export.c's checkpoint (the format runq.c documents) with every tensor in
    f32, of every family it describes (the version 4 settings: Qwen, Gemma,
    Phi, SmolLM3), each computed in plain loops too
Compiles alone: cc -O2 -o run run.c -lm
What it is not: fast, quantized or threaded (runq.c is), nor a reader of
anything but fp32 (export --fp32 turns any model into its checkpoint).

Reading order: model structs -> loading either format -> math blocks ->
forward -> UTF-8 -> tokenizer -> chat templates -> sampler -> generate /
chat -> command line. The part from UTF-8 to the command line is runq.c's
too, line for line (test/test_shared_code.sh).
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
    uint32_t chat_template; // ChatTemplateId from the header (0: not recorded; always for llama2.c files)
    // the families beyond Llama (a version 4 file's ModelSettings, with Llama's values where it says 0)
    uint32_t flags;             // FLAG_QKV_BIAS, FLAG_QK_NORM, FLAG_POST_NORMS
    int architecture;           // Architecture (only export's GGUF writer cares)
    int activation;             // Activation: the FFN gate
    float embedding_scale;      // 1 when the embeddings are not scaled
    float score_divisor;        // sqrt(head_dim) unless the model says otherwise
    float attention_softcap, final_softcap;   // 0: none
    int sliding_window;         // 0: none
    int rotary_dim;             // head_dim unless partial
    float rope_theta_local;     // for LAYER_LOCAL_ROPE layers
    float rope_attention_factor;   // 1 unless LongRoPE
    int rope_long_after;        // LongRoPE's switch; 0: none
    uint32_t *layer_kind;       // (n_layers,) LAYER_* bits
} Config;

typedef struct {
    const float *attention_norm; // (dim,)
    const float *wq;             // (n_heads*head_dim, dim)
    const float *wk;             // (n_kv_heads*head_dim, dim)
    const float *wv;             // (n_kv_heads*head_dim, dim)
    const float *bq, *bk, *bv;   // (q_dim,), (kv_dim,), (kv_dim,) biases (Qwen 2), else NULL
    const float *q_norm, *k_norm;   // (head_dim,) per-head RMSNorm weights (Qwen 3, Gemma 3), else NULL
    const float *wo;             // (dim, n_heads*head_dim)
    const float *post_attention_norm;   // (dim,) (Gemma), else NULL
    const float *ffn_norm;       // (dim,)
    const float *w1;             // (ffn_dim, dim)
    const float *w2;             // (dim, ffn_dim)
    const float *w3;             // (ffn_dim, dim)
    const float *post_ffn_norm;  // (dim,) (Gemma), else NULL
} LayerWeights;

typedef struct {
    const float *tok_embeddings; // (vocab_size, dim)
    LayerWeights *layers;        // (n_layers,)
    const float *norm;           // (dim,)
    const float *output;         // (vocab_size, dim)
    const float *rope_freqs;     // (rotary_dim/2,) RoPE frequency divisors (scaled RoPE), NULL if none
    const float *rope_freqs_long;   // (rotary_dim/2,) LongRoPE's divisors for long runs, NULL if none
    const float *rope_divisors;  // what this run's global layers turn with: one of the two (prepare_run)
    const uint8_t *tokenizer_blob; // embedded tokenizer (export format only), else NULL
    size_t tokenizer_size;
} Weights;

typedef struct {
    float *x, *xb, *xb2;         // (dim,) residual, normalised input, branch output (xb: max(dim, q_dim))
    float *hb, *hb2;             // (max_ffn_dim,)
    float *q;                    // (q_dim,)
    float *att;                  // (n_heads, positions)
    float *logits;               // (vocab_size,)
    float *key_cache;            // (n_layers, positions, kv_dim)
    float *value_cache;          // (n_layers, positions, kv_dim)
    int positions;               // what the run holds: at most seq_len (prepare_run)
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

// ModelSettings into the Config (defined with the export format below).
typedef struct ModelSettings ModelSettings;
static void read_settings(Transformer *t, const ModelSettings *m, const uint32_t *kinds);

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
    read_settings(t, NULL, NULL);   // a llama2.c model is plain Llama

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
#define CHECKPOINT_VERSION 4   // the newest read; 2 may hold rope_freqs (1 never does); 3 changed only int4 files;
#define VERSION_SETTINGS 4     // 4 adds ModelSettings, layer_kind and the families beyond Llama
#define TENSOR_NAME_LEN 64
enum { TYPE_F32 = 0, TYPE_BLOB = 255 };
#define FLAG_TIED_CLASSIFIER 1u
#define FLAG_QKV_BIAS 4u                // layers.L.bq, .bk, .bv
#define FLAG_QK_NORM 8u                 // layers.L.q_norm, .k_norm
#define FLAG_POST_NORMS 16u             // layers.L.post_attention_norm, .post_ffn_norm
#define FLAGS_OF_VERSION_4 (FLAG_QKV_BIAS | FLAG_QK_NORM | FLAG_POST_NORMS)
enum { N_ARCHITECTURES = 7 };           // llama qwen2 qwen3 gemma2 gemma3 phi3 smollm3
enum Activation { ACTIVATION_SILU, ACTIVATION_GELU_TANH, N_ACTIVATIONS };
#define LAYER_SLIDING 1u      // attends to the last sliding_window positions only
#define LAYER_NO_ROPE 2u      // q and k are not turned
#define LAYER_LOCAL_ROPE 4u   // turned with rope_theta_local, without rope_freqs
#define LAYER_KINDS (LAYER_SLIDING | LAYER_NO_ROPE | LAYER_LOCAL_ROPE)

typedef struct {
    uint32_t magic, version;
    int32_t dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len;
    float rope_theta, norm_eps;
    uint32_t flags;
    int32_t bos_id, eos_id;
    uint32_t n_tensors, chat_template;
} FileHeader;

struct ModelSettings {   // version 4 on, after FileHeader: runq.c says what each field means
    uint32_t architecture, activation;
    float embedding_scale, score_divisor, attention_softcap, final_softcap;
    int32_t sliding_window, rotary_dim;
    float rope_theta_local, rope_attention_factor;
    int32_t rope_long_after;
    uint32_t reserved[5];
};

typedef struct {
    char name[TENSOR_NAME_LEN];
    uint32_t type, group_size, rows, cols;
    uint64_t offset, nbytes;
} TensorEntry;

_Static_assert(sizeof(FileHeader) == 64, "FileHeader is 64 bytes on disk");
_Static_assert(sizeof(ModelSettings) == 64, "ModelSettings is 64 bytes on disk");
_Static_assert(sizeof(TensorEntry) == 96, "TensorEntry is 96 bytes on disk");

// header, (version 4: ModelSettings), ffn_dim[n_layers], (version 4:
// layer_kind[n_layers]), padding to 64, then the table
static size_t tensor_table_offset(uint32_t version, int n_layers) {
    size_t tables = version >= VERSION_SETTINGS ? sizeof(ModelSettings) + 8 * (size_t)n_layers : 4 * (size_t)n_layers;
    return (sizeof(FileHeader) + tables + 63) / 64 * 64;
}

static const TensorEntry *find_entry(const Transformer *t, const char *name) {
    const FileHeader *h = (const FileHeader *)t->file_data;
    const TensorEntry *table = (const TensorEntry *)(t->file_data + tensor_table_offset(h->version, h->n_layers));
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

// The optional rope_freqs tensor (scaled RoPE) and LongRoPE's
// rope_freqs_long: one divisor per RoPE frequency, positive and finite.
static const float *rope_divisors(const Transformer *t, const char *name) {
    int half = t->config.rotary_dim / 2;
    const float *divisors = f32_tensor(t, name, 1, half);
    for (int i = 0; i < half; i++)
        if (!(divisors[i] > 0) || !isfinite(divisors[i]))
            die("%s: %s[%d] is %g; RoPE frequency divisors must be positive and finite", t->path, name, i, divisors[i]);
    return divisors;
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


// A version 4 file's optional tensors, as its flags say.
static void load_family_tensors(Transformer *t, LayerWeights *lw, int l) {
    const Config *c = &t->config;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    char name[TENSOR_NAME_LEN];
#define LAYER_TENSOR(field, rows, cols) \
    (snprintf(name, sizeof name, "layers.%d." #field, l), lw->field = f32_tensor(t, name, rows, cols))
    if (c->flags & FLAG_QKV_BIAS) {
        LAYER_TENSOR(bq, 1, q_dim);
        LAYER_TENSOR(bk, 1, kv_dim);
        LAYER_TENSOR(bv, 1, kv_dim);
    }
    if (c->flags & FLAG_QK_NORM) {
        LAYER_TENSOR(q_norm, 1, c->head_dim);
        LAYER_TENSOR(k_norm, 1, c->head_dim);
    }
    if (c->flags & FLAG_POST_NORMS) {
        LAYER_TENSOR(post_attention_norm, 1, c->dim);
        LAYER_TENSOR(post_ffn_norm, 1, c->dim);
    }
#undef LAYER_TENSOR
}

static void load_export(Transformer *t) {
    if (t->file_size < sizeof(FileHeader)) die("%s: too small to be a checkpoint (truncated?)", t->path);
    const FileHeader *h = (const FileHeader *)t->file_data;
    if (h->version < 1 || h->version > CHECKPOINT_VERSION)
        die("%s: checkpoint version %u, this run reads versions 1 to %d", t->path, h->version, CHECKPOINT_VERSION);
    if (h->version >= VERSION_SETTINGS && t->file_size < sizeof(FileHeader) + sizeof(ModelSettings))
        die("%s: too small to be a checkpoint (truncated?)", t->path);
    if ((h->flags & FLAGS_OF_VERSION_4) && h->version < VERSION_SETTINGS)
        die("%s: flags 0x%x name tensors of version %d files, but the file is version %u", t->path, h->flags,
            VERSION_SETTINGS, h->version);
    Config *c = &t->config;
    if (h->dim <= 0 || h->dim > 1 << 16 || h->n_layers <= 0 || h->n_layers > 1024 || h->n_heads <= 0 || h->n_heads > 1024
        || h->n_kv_heads <= 0 || h->n_heads % h->n_kv_heads != 0 || h->head_dim <= 0 || h->head_dim > 4096 || h->head_dim % 2
        || h->vocab_size <= 0 || h->vocab_size > 1 << 22 || h->seq_len <= 0 || h->seq_len > 1 << 22 || h->n_tensors > 1u << 20
        || !(h->rope_theta > 0) || !(h->norm_eps > 0) || h->bos_id < 0 || h->bos_id >= h->vocab_size
        || h->eos_id < 0 || h->eos_id >= h->vocab_size)
        die("%s: header has out-of-range fields", t->path);
    size_t table_end = tensor_table_offset(h->version, h->n_layers) + sizeof(TensorEntry) * (size_t)h->n_tensors;
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
    c->chat_template = h->chat_template;
    c->flags = h->flags & FLAGS_OF_VERSION_4;
    int v4 = h->version >= VERSION_SETTINGS;
    c->ffn_dim = xcalloc((size_t)c->n_layers, sizeof(int), "ffn_dim table");
    const int32_t *ffn = (const int32_t *)(t->file_data + sizeof(FileHeader) + (v4 ? sizeof(ModelSettings) : 0));
    for (int l = 0; l < c->n_layers; l++) {
        if (ffn[l] <= 0 || ffn[l] > 1 << 20) die("%s: layer %d has FFN width %d", t->path, l, ffn[l]);
        c->ffn_dim[l] = ffn[l];
        if (ffn[l] > c->max_ffn_dim) c->max_ffn_dim = ffn[l];
    }
    read_settings(t, v4 ? (const ModelSettings *)(t->file_data + sizeof(FileHeader)) : NULL,
                  v4 ? (const uint32_t *)(ffn + c->n_layers) : NULL);

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
        load_family_tensors(t, lw, l);
    }
    w->norm = f32_tensor(t, "norm", 1, c->dim);
    w->output = (h->flags & FLAG_TIED_CLASSIFIER) ? w->tok_embeddings : f32_tensor(t, "output", c->vocab_size, c->dim);
    if (find_entry(t, "rope_freqs")) w->rope_freqs = rope_divisors(t, "rope_freqs");
    int has_long = find_entry(t, "rope_freqs_long") != NULL;
    if ((has_long || c->rope_long_after) && !(has_long && w->rope_freqs && c->rope_long_after))
        die("%s: LongRoPE needs rope_freqs, rope_freqs_long and rope_long_after; the file lacks one", t->path);
    if (has_long) w->rope_freqs_long = rope_divisors(t, "rope_freqs_long");
    const TensorEntry *tok = find_entry(t, "tokenizer");
    if (tok) {
        if (tok->type != TYPE_BLOB || tok->offset > t->file_size || tok->nbytes > t->file_size - tok->offset)
            die("%s: the embedded tokenizer lies outside the file (truncated?)", t->path);
        w->tokenizer_blob = t->file_data + tok->offset;
        w->tokenizer_size = (size_t)tok->nbytes;
    }
}

static void malloc_run_state(RunState *s, const Config *c, int positions) {
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    size_t cache = (size_t)c->n_layers * positions * kv_dim;
    s->positions = positions;
    s->x = xcalloc((size_t)c->dim, sizeof(float), "activations");
    s->xb = xcalloc((size_t)(c->dim > q_dim ? c->dim : q_dim), sizeof(float), "activations");
    s->xb2 = xcalloc((size_t)c->dim, sizeof(float), "activations");
    s->hb = xcalloc((size_t)c->max_ffn_dim, sizeof(float), "activations");
    s->hb2 = xcalloc((size_t)c->max_ffn_dim, sizeof(float), "activations");
    s->q = xcalloc((size_t)q_dim, sizeof(float), "activations");
    s->att = xcalloc((size_t)c->n_heads * positions, sizeof(float), "attention scores");
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
    if (fstat(fd, &st) != 0) die("cannot stat %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        die("%s is a directory; a Hugging Face model directory converts with ./export --fp32 %s model.f32.bin", path, path);
    if (!S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    t->file_size = (size_t)st.st_size;
    if (t->file_size < 28) die("%s: %zu bytes is too small to be a checkpoint (truncated?)", path, t->file_size);
    void *data = mmap(NULL, t->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) die("cannot map %s: %s", path, strerror(errno));
    t->file_data = data;
    if (*(const uint32_t *)t->file_data == CHECKPOINT_MAGIC) load_export(t);
    else if (memcmp(t->file_data, "GGUF", 4) == 0)
        die("%s is a GGUF file; convert it first: ./export --fp32 %s model.f32.bin", path, path);
    else if (t->file_data[8] == '{')
        die("%s is a safetensors file; convert the Hugging Face directory that holds it: ./export --fp32 DIR model.f32.bin",
            path);
    else load_legacy(t);
}

// After build_transformer: the state for a run of positions positions (at
// most seq_len; 0: all of them), and the RoPE divisors the global layers
// turn with: LongRoPE's long ones when the run holds more than
// rope_long_after positions, as runq chooses.
static void prepare_run(Transformer *t, int positions) {
    if (positions <= 0 || positions > t->config.seq_len) positions = t->config.seq_len;
    malloc_run_state(&t->state, &t->config, positions);
    Weights *w = &t->weights;
    w->rope_divisors = w->rope_freqs_long && positions > t->config.rope_long_after ? w->rope_freqs_long : w->rope_freqs;
}

static void free_transformer(Transformer *t) {
    RunState *s = &t->state;
    free(s->x); free(s->xb); free(s->xb2); free(s->hb); free(s->hb2); free(s->q);
    free(s->att); free(s->logits); free(s->key_cache); free(s->value_cache);
    free(t->weights.layers);
    free(t->config.ffn_dim);
    free(t->config.layer_kind);
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

// Rotate pairs (v[i], v[i+1]) of each head's first rotary_dim dims (the rest
// pass: partial rotary) by pos * theta^(-i/rotary_dim), the frequency divided
// by divisors[i/2] when the model scales RoPE; cos and sin are multiplied by
// attention_factor (1 but for LongRoPE).
static void rope(float *v, int n_heads, int head_dim, int rotary_dim, int pos, float theta, const float *divisors,
                 float attention_factor) {
    for (int i = 0; i < n_heads * head_dim; i += 2) {
        int d = i % head_dim;
        if (d >= rotary_dim) continue;
        float freq = 1.0f / powf(theta, d / (float)rotary_dim);
        if (divisors) freq /= divisors[d / 2];
        float val = pos * freq;
        float fcr = cosf(val) * attention_factor, fci = sinf(val) * attention_factor;
        float v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * fcr - v1 * fci;
        v[i + 1] = v0 * fci + v1 * fcr;
    }
}

// x -> cap * tanh(x / cap): Gemma 2's soft capping of attention scores and
// logits, which keeps them within (-cap, cap).
static float softcap(float x, float cap) { return cap * tanhf(x / cap); }

// GELU in its tanh approximation (PyTorch's gelu(approximate="tanh"), which
// Gemma's configs call gelu_pytorch_tanh): the GeGLU gate.
static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
}

// Each head of x (n_heads, head_dim) RMS-normalized in place, with one
// weight for every head (Qwen 3's and Gemma 3's q_norm and k_norm).
static void head_norms(float *x, int n_heads, int head_dim, const float *weight, float eps) {
    for (int h = 0; h < n_heads; h++) rmsnorm(x + h * head_dim, x + h * head_dim, weight, head_dim, eps);
}

static void add_bias(float *x, const float *bias, int n) {
    for (int i = 0; i < n; i++) x[i] += bias[i];
}

// The first position a query at pos attends to: 0, or on a LAYER_SLIDING
// layer the start of its window of sliding_window positions (its own the last).
static int first_attended(const Config *c, int layer, int pos) {
    int window = c->layer_kind[layer] & LAYER_SLIDING ? c->sliding_window : 0;
    return window && pos >= window ? pos - window + 1 : 0;
}

// q and k of layer l at pos after the projections: biases (Qwen 2), each
// head's RMSNorm (Qwen 3, Gemma 3), RoPE with the layer's base (none on a
// NoPE layer: SmolLM3; rope_theta_local on Gemma 3's local layers).
static void finish_qk(Transformer *t, int l, int pos, float *q, float *k, float *v) {
    const Config *p = &t->config;
    const LayerWeights *lw = &t->weights.layers[l];
    int q_dim = p->n_heads * p->head_dim, kv_dim = p->n_kv_heads * p->head_dim;
    if (lw->bq) {
        add_bias(q, lw->bq, q_dim);
        add_bias(k, lw->bk, kv_dim);
        add_bias(v, lw->bv, kv_dim);
    }
    if (lw->q_norm) {
        head_norms(q, p->n_heads, p->head_dim, lw->q_norm, p->norm_eps);
        head_norms(k, p->n_kv_heads, p->head_dim, lw->k_norm, p->norm_eps);
    }
    uint32_t kind = p->layer_kind[l];
    if (kind & LAYER_NO_ROPE) return;
    int local = (kind & LAYER_LOCAL_ROPE) != 0;
    float theta = local ? p->rope_theta_local : p->rope_theta;
    const float *divisors = local ? NULL : t->weights.rope_divisors;
    rope(q, p->n_heads, p->head_dim, p->rotary_dim, pos, theta, divisors, p->rope_attention_factor);
    rope(k, p->n_kv_heads, p->head_dim, p->rotary_dim, pos, theta, divisors, p->rope_attention_factor);
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
    if (p->embedding_scale != 1.0f)
        for (int i = 0; i < dim; i++) x[i] *= p->embedding_scale;   // Gemma: sqrt(dim)

    for (int l = 0; l < p->n_layers; l++) {
        const LayerWeights *lw = &w->layers[l];
        int hidden_dim = p->ffn_dim[l];
        rmsnorm(s->xb, x, lw->attention_norm, dim, p->norm_eps);

        size_t loff = (size_t)l * s->positions * kv_dim;
        float *k = s->key_cache + loff + (size_t)pos * kv_dim;
        float *v = s->value_cache + loff + (size_t)pos * kv_dim;
        matmul(s->q, s->xb, lw->wq, dim, q_dim);
        matmul(k, s->xb, lw->wk, dim, kv_dim);
        matmul(v, s->xb, lw->wv, dim, kv_dim);
        finish_qk(t, l, pos, s->q, k, v);

        int first = first_attended(p, l, pos);   // 0 but on a sliding-window layer
        for (int h = 0; h < p->n_heads; h++) {
            const float *q = s->q + h * head_size;
            float *att = s->att + (size_t)h * s->positions;
            for (int t2 = first; t2 <= pos; t2++) {
                const float *kt = s->key_cache + loff + (size_t)t2 * kv_dim + (h / kv_mul) * head_size;
                float score = 0.0f;
                for (int i = 0; i < head_size; i++) score += q[i] * kt[i];
                score /= p->score_divisor;
                if (p->attention_softcap > 0) score = softcap(score, p->attention_softcap);
                att[t2] = score;
            }
            softmax(att + first, pos - first + 1);
            float *xb = s->xb + h * head_size;
            memset(xb, 0, head_size * sizeof(float));
            for (int t2 = first; t2 <= pos; t2++) {
                const float *vt = s->value_cache + loff + (size_t)t2 * kv_dim + (h / kv_mul) * head_size;
                float a = att[t2];
                for (int i = 0; i < head_size; i++) xb[i] += a * vt[i];
            }
        }
        matmul(s->xb2, s->xb, lw->wo, q_dim, dim);
        if (lw->post_attention_norm) rmsnorm(s->xb2, s->xb2, lw->post_attention_norm, dim, p->norm_eps);
        for (int i = 0; i < dim; i++) x[i] += s->xb2[i];

        rmsnorm(s->xb, x, lw->ffn_norm, dim, p->norm_eps);
        matmul(s->hb, s->xb, lw->w1, dim, hidden_dim);
        matmul(s->hb2, s->xb, lw->w3, dim, hidden_dim);
        for (int i = 0; i < hidden_dim; i++) {
            float val = s->hb[i];
            if (p->activation == ACTIVATION_GELU_TANH) val = gelu_tanh(val);   // GeGLU (Gemma)
            else val *= (1.0f / (1.0f + expf(-val)));   // silu
            val *= s->hb2[i];
            s->hb[i] = val;
        }
        matmul(s->xb, s->hb, lw->w2, hidden_dim, dim);
        if (lw->post_ffn_norm) rmsnorm(s->xb, s->xb, lw->post_ffn_norm, dim, p->norm_eps);
        for (int i = 0; i < dim; i++) x[i] += s->xb[i];
    }
    rmsnorm(x, x, w->norm, dim, p->norm_eps);
    matmul(s->logits, x, w->output, dim, p->vocab_size);
    if (p->final_softcap > 0)
        for (int i = 0; i < p->vocab_size; i++) s->logits[i] = softcap(s->logits[i], p->final_softcap);
    return s->logits;
}

// n tokens at positions pos0..pos0+n-1, one at a time (runq's batches them:
// the generate and chat loops below are the two programs' shared text).
static float *forward_tokens(Transformer *t, const int *tokens, int n, int pos0) {
    float *logits = NULL;
    for (int i = 0; i < n; i++) logits = forward(t, tokens[i], pos0 + i);
    return logits;
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
        memcpy(joined + out->n_pending, bytes, take);
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
// - SentencePiece (Llama 2, TinyLlama, Mistral; every llama2.c tokenizer.bin):
//   a space before the text, one piece per code point to start with, and the
//   <0xXX> pieces for bytes that have no piece of their own (byte fallback).
// - Byte-level (Llama 3, SmolLM2, GPT-2; tiktoken's kind): the layout comes
//   after the four bytes "BBPE" and a u32 naming the rule that cuts text into
//   chunks (SplitRule). Pieces are raw bytes and score minus their rank; each
//   chunk starts as its bytes (under Llama 3's rule a chunk that is a piece is
//   that piece at once: Hugging Face's ignore_merges).
// Then the adjacent pair whose joined piece scores highest merges, leftmost
// first among equals, until no pair joins into a piece. A piece scoring -inf
// (special tokens such as <s> or <|eot_id|>, byte fallback pieces) is never
// made by a merge nor matched from text: what a user types stays text, even
// when it spells a special token; only the chat templates insert those.

#define BYTE_LEVEL_MAGIC "BBPE"
enum TokenizerKind { TOKENIZER_SENTENCEPIECE, TOKENIZER_BYTE_LEVEL };
// The pre-tokenizer rules a byte-level blob may name: Llama 3's regex; GPT-2's
// (also Hugging Face's ByteLevel with use_regex); SmolLM2's, which is GPT-2's
// after every number character has been split off on its own.
enum SplitRule { SPLIT_LLAMA3 = 1, SPLIT_GPT2 = 2, SPLIT_SMOLLM = 3, N_SPLIT_RULES };

typedef struct {
    int kind;                // TokenizerKind
    int split_rule;          // byte-level: SplitRule
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
    if (size >= 8 && memcmp(data, BYTE_LEVEL_MAGIC, 4) == 0) {
        uint32_t rule;
        memcpy(&rule, data + 4, 4);
        if (rule < SPLIT_LLAMA3 || rule >= N_SPLIT_RULES)
            return "is byte-level BPE with a pre-tokenizer rule this program does not know (it knows 1-3: Llama 3, GPT-2, SmolLM2)";
        t->kind = TOKENIZER_BYTE_LEVEL;
        t->split_rule = (int)rule;
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
                                         "<|end|>", "<end_of_turn>", "</s>" };
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
// completes it). SentencePiece drops the leading space after BOS, and its
// <0xXX> pieces stand for raw bytes.
static const char *decode(const Tokenizer *t, int prev_token, int token) {
    const char *piece = t->vocab[token];
    if (t->kind == TOKENIZER_BYTE_LEVEL) return piece;
    if (prev_token == t->bos_id && piece[0] == ' ') piece++;
    unsigned int byte;
    char close;
    if (strlen(piece) == 6 && sscanf(piece, "<0x%02X%c", &byte, &close) == 2 && close == '>')
        piece = (const char *)t->byte_pieces + byte * 2;
    return piece;
}

// ---- Character classes for Llama 3's pre-tokenizer: sorted, disjoint,
// inclusive code point ranges

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
// always does). Returns where the chunk ends.
static size_t llama3_chunk_end(const char *text, size_t at, size_t end) {
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
    if (cls == CHAR_NUMBER) return skip_class(text, at, end, CHAR_NUMBER, 3);
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

static size_t chunk_end(int split_rule, const char *text, size_t at, size_t end) {
    if (split_rule == SPLIT_GPT2) return gpt2_chunk_end(text, at, end);
    if (split_rule == SPLIT_SMOLLM) return smollm_chunk_end(text, at, end);
    return llama3_chunk_end(text, at, end);
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
    MergeCandidate c = { .score = t->scores[merged], .left = left, .left_id = a, .right_id = b, .merged_id = merged };
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

// SentencePiece: the dummy-prefix space, one piece per UTF-8 code point (its
// bytes' pieces when the code point is none), then merges over the whole text.
static int encode_sentencepiece(const Tokenizer *t, const char *text, int *tokens, int n, MergeWork *work) {
    int first = n;
    if (text[0] != '\0') {
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

// Byte-level: chunk by chunk, each merged from its bytes. Under Llama 3's
// rule a chunk that is a piece stays whole (tiktoken does this; Hugging Face
// calls it ignore_merges): merging it could end elsewhere.
static int encode_byte_level(const Tokenizer *t, const char *text, int *tokens, int n, MergeWork *work) {
    size_t end = strlen(text);
    for (size_t at = 0, chunk; at < end; at = chunk) {
        chunk = chunk_end(t->split_rule, text, at, end);
        size_t length = chunk - at;
        int ignore_merges = t->split_rule == SPLIT_LLAMA3 && length <= (size_t)t->max_token_length;
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

// text -> token ids. tokens must hold strlen(text) + 3 ids. Returns the count.
static int encode(const Tokenizer *t, const char *text, int add_bos, int add_eos, int *tokens) {
    size_t capacity = strlen(text) + 2;   // pieces before any merge: a byte each, and the dummy prefix
    MergeWork work = {
        .next = xcalloc(capacity, sizeof(int), "tokenizer work"),
        .prev = xcalloc(capacity, sizeof(int), "tokenizer work"),
        .heap = xcalloc(3 * capacity, sizeof(MergeCandidate), "tokenizer work"),
        .joined = xcalloc(2 * (size_t)t->max_token_length, 1, "tokenizer work"),
    };
    int n = 0;
    if (add_bos) tokens[n++] = t->bos_id;
    if (t->kind == TOKENIZER_BYTE_LEVEL) n = encode_byte_level(t, text, tokens, n, &work);
    else n = encode_sentencepiece(t, text, tokens, n, &work);
    if (add_eos) tokens[n++] = t->eos_id;
    free(work.next);
    free(work.prev);
    free(work.heap);
    free(work.joined);
    return n;
}

// ---- Chat templates: how a conversation becomes token ids. In a format, %s
// is the next message (encoded as text, trimmed as the Llama templates do),
// {bos} and {eos} are BOS and EOS, and <|name|> is that special token when
// the vocabulary has it as one (a piece scoring -inf), else text: TinyLlama's
// <|user|> is text. Text between two tokens is encoded on its own, as
// Hugging Face encodes a rendered template. A checkpoint's header records
// the template's id.

enum ChatTemplateId { CHAT_NOT_RECORDED, CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML, CHAT_ZEPHYR, N_CHAT_TEMPLATES };

typedef struct {
    const char *name;
    const char *first_turn;          // %s: the user's message
    const char *first_turn_system;   // %s: the system prompt, then the user's message
    const char *next_turn;           // %s: the user's message, after the reply's end-of-turn token
    const char *end_of_turn;         // the token that ends a reply (EOS ends one too)
} ChatTemplate;

static const ChatTemplate chat_templates[N_CHAT_TEMPLATES] = {
    [CHAT_LLAMA2] = { "llama2", "{bos}[INST] %s [/INST]", "{bos}[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]",
                      "{bos}[INST] %s [/INST]", "{eos}" },
    [CHAT_LLAMA3] = { "llama3",
                      "{bos}<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                      "{bos}<|start_header_id|>system<|end_header_id|>\n\n%s<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                      "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                      "<|eot_id|>" },
    [CHAT_CHATML] = { "chatml", "{bos}<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                      "{bos}<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                      "\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>" },
    [CHAT_ZEPHYR] = { "zephyr", "{bos}<|user|>\n%s{eos}\n<|assistant|>\n",
                      "{bos}<|system|>\n%s{eos}\n<|user|>\n%s{eos}\n<|assistant|>\n",
                      "\n<|user|>\n%s{eos}\n<|assistant|>\n", "{eos}" },
};

// The special token <|name|> spelled at s, its length in *length; -1 if s spells none.
static int special_token_at(const Tokenizer *t, const char *s, size_t *length) {
    const char *close = strncmp(s, "<|", 2) == 0 ? strstr(s + 2, "|>") : NULL;
    if (!close) return -1;
    *length = (size_t)(close + 2 - s);
    int id = piece_lookup(t, s, *length);
    return id >= 0 && t->scores[id] == -INFINITY ? id : -1;
}

// The token a format spells at s: {bos}, {eos} or a special token; -1 if none.
static int template_token_at(const Tokenizer *t, const char *s, size_t *length) {
    *length = 5;
    if (strncmp(s, "{bos}", 5) == 0) return t->bos_id;
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

static void push_text(TokenList *list, const Tokenizer *t, char *text, size_t length) {
    if (length == 0) return;
    text[length] = '\0';
    int *ids = xcalloc(length + 3, sizeof(int), "chat turn");
    int n = encode(t, text, 0, 0, ids);
    for (int i = 0; i < n; i++) push_token(list, ids[i]);
    free(ids);
}

// A chat turn: the format's tokens, its %s filled by the messages in order.
static TokenList render_chat_turn(const Tokenizer *t, const char *format, const char *const *messages) {
    size_t capacity = strlen(format) + 1;
    for (const char *const *m = messages; *m; m++) capacity += strlen(*m);
    char *text = xcalloc(capacity, 1, "chat turn");
    size_t length = 0, token_length;
    TokenList list = { 0 };
    for (const char *f = format; *f;) {
        int id = template_token_at(t, f, &token_length);
        if (id >= 0) {
            push_text(&list, t, text, length);
            length = 0;
            push_token(&list, id);
            f += token_length;
        } else if (strncmp(f, "%s", 2) == 0) {
            const char *message = *messages ? *messages++ : "";
            size_t message_length = strlen(message);
            while (message_length > 0 && isspace((unsigned char)message[message_length - 1])) message_length--;
            while (message_length > 0 && isspace((unsigned char)*message)) message++, message_length--;
            memcpy(text + length, message, message_length);
            length += message_length;
            f += 2;
        } else {
            text[length++] = *f++;
        }
    }
    push_text(&list, t, text, length);
    free(text);
    return list;
}

// The turn a user's message makes: the first carries the system prompt, if any.
static TokenList chat_turn(const Tokenizer *t, const ChatTemplate *template, int first, const char *system, const char *user) {
    const char *with_system[] = { system, user, NULL }, *alone[] = { user, NULL };
    if (first && system && system[0]) return render_chat_turn(t, template->first_turn_system, with_system);
    return render_chat_turn(t, first ? template->first_turn : template->next_turn, alone);
}

// The id of the token that ends a reply; -1 when this vocabulary lacks it.
static int chat_end_of_turn(const Tokenizer *t, const ChatTemplate *template) {
    size_t length;
    int id = template_token_at(t, template->end_of_turn, &length);
    return id >= 0 && length == strlen(template->end_of_turn) ? id : -1;
}

// The template to chat with: the one named (--chat-template), else the one
// the checkpoint records, else the one the vocabulary's special tokens
// belong to (Llama 3's headers, ChatML's <|im_start|>), else Llama 2's.
static const ChatTemplate *choose_chat_template(const Tokenizer *t, const char *name, uint32_t recorded, const char *path) {
    size_t length;
    int id = CHAT_LLAMA2;
    if (name) {
        for (id = 1; id < N_CHAT_TEMPLATES && strcmp(chat_templates[id].name, name) != 0; id++) {}
        if (id == N_CHAT_TEMPLATES) die("unknown chat template '%s' (llama2, llama3, chatml, zephyr)", name);
    } else if (recorded >= N_CHAT_TEMPLATES) {
        die("%s records chat template %u, which this program does not know: pass --chat-template NAME", path, recorded);
    } else if (recorded != CHAT_NOT_RECORDED) {
        id = (int)recorded;
    } else if (special_token_at(t, "<|start_header_id|>", &length) >= 0 && special_token_at(t, "<|eot_id|>", &length) >= 0) {
        id = CHAT_LLAMA3;
    } else if (special_token_at(t, "<|im_start|>", &length) >= 0 && special_token_at(t, "<|im_end|>", &length) >= 0) {
        id = CHAT_CHATML;
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
    int *prompt_tokens = xcalloc(strlen(prompt) + 3, sizeof(int), "prompt tokens");
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
static void chat(Transformer *t, Tokenizer *tok, Sampler *sampler, const char *cli_user_prompt,
                 const char *cli_system_prompt, int steps, const ChatTemplate *template) {
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
        TokenList rendered = chat_turn(tok, template, pos == 0, system, user);
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
        "  -n <int>    positions to run, prompt included, default 256 (chat: the whole context)\n"
        "  -i <string> input prompt\n"
        "  -z <string> tokenizer.bin (required for llama2.c checkpoints)\n"
        "  -m <string> mode: generate|chat, default generate\n"
        "  -y <string> system prompt in chat mode\n"
        "  --chat-template <name>  llama2|llama3|chatml|zephyr, default: the checkpoint's\n"
        "  --ignore-eos  keep generating past BOS/EOS\n");
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
    const char *chat_template = NULL;
    float temperature = 1.0f, topp = 0.9f;
    unsigned long long seed = 0;
    int steps = 256, steps_given = 0, ignore_eos = 0;

    if (argc < 2) usage();
    checkpoint = argv[1];
    for (int i = 2; i < argc; i += 2) {
        if (strcmp(argv[i], "--ignore-eos") == 0) { ignore_eos = 1; i--; continue; }
        int long_flag = strcmp(argv[i], "--chat-template") == 0;
        if (!long_flag && (argv[i][0] != '-' || strlen(argv[i]) != 2)) {
            fprintf(stderr, "run: unknown argument '%s'\n", argv[i]);
            usage();
        }
        if (i + 1 >= argc) die("flag %s needs a value", argv[i]);
        const char *value = argv[i + 1];
        if (long_flag) { chat_template = value; continue; }
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

    double load_start = now_ms();
    Transformer transformer;
    build_transformer(&transformer, checkpoint);
    int seq_len = transformer.config.seq_len;
    if (steps_given && steps > seq_len) die("-n %d is beyond the model's context of %d positions", steps, seq_len);
    if (!steps_given) steps = strcmp(mode, "chat") == 0 || steps > seq_len ? seq_len : steps;
    prepare_run(&transformer, steps);   // an fp32 KV cache of the positions the run holds
    double load_ms = now_ms() - load_start;
    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, &transformer, tokenizer_path);
    Sampler sampler;
    build_sampler(&sampler, transformer.config.vocab_size, temperature, topp, seed);

    if (strcmp(mode, "generate") == 0) generate(&transformer, &tokenizer, &sampler, prompt, steps, ignore_eos, load_ms);
    else chat(&transformer, &tokenizer, &sampler, prompt, system_prompt, steps,
              choose_chat_template(&tokenizer, chat_template, transformer.config.chat_template, checkpoint));

    free_sampler(&sampler);
    free_tokenizer(&tokenizer);
    free_transformer(&transformer);
    return 0;
}
#endif
