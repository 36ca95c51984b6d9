/*
convert/sources.h — the simple Sources: a llama2.c legacy .bin, an Edge LLM
checkpoint (re-exported: the exact blocks are copied when the type stays),
seeded random weights of a real shape, and a wrapper that drops decoder
layers (ShortGPT).

What it is not: the Hugging Face, LoRA and GGUF readers (convert/hf.h,
convert/lora.h, convert/gguf_read.h).

Include after: runq.c, json.h, convert/quantize.h, convert/source.h, convert/tokenizers.h.
*/

#ifndef EDGE_CONVERT_SOURCES_H
#define EDGE_CONVERT_SOURCES_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// ----------------------------------------------------------------------------
// Source: llama2.c legacy .bin (v0)

typedef struct {
    const uint8_t *data;
    size_t size;
    const float *base[K_OUTPUT + 1];   // first float of each kind (all layers back to back)
} LegacyModel;

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
    const Tensor *by_kind[N_TENSOR_KINDS] = {
        [K_ATTN_NORM] = &lw->attention_norm, [K_WQ] = &lw->wq, [K_WK] = &lw->wk, [K_WV] = &lw->wv, [K_WO] = &lw->wo,
        [K_FFN_NORM] = &lw->ffn_norm, [K_W1] = &lw->w1, [K_W2] = &lw->w2, [K_W3] = &lw->w3, [K_BQ] = &lw->bq,
        [K_BK] = &lw->bk, [K_BV] = &lw->bv, [K_Q_NORM] = &lw->q_norm, [K_K_NORM] = &lw->k_norm,
        [K_POST_ATTN_NORM] = &lw->post_attention_norm, [K_POST_FFN_NORM] = &lw->post_ffn_norm };
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

// The settings, flags, layer kinds and RoPE divisors of a version 4 checkpoint
// as the file has them (zero fields stay zero: re-exported bytes stay the same).
static float *copy_floats(const float *from, int n, const char *what) {
    if (!from) return NULL;
    float *out = xcalloc((size_t)n, sizeof(float), what);
    memcpy(out, from, sizeof(float) * (size_t)n);
    return out;
}

static void settings_of_checkpoint(Source *src, const Transformer *model) {
    const FileHeader *h = (const FileHeader *)model->file_data;
    const Config *c = &model->config;
    src->header.flags |= c->flags;
    if (h->version >= VERSION_SETTINGS) {
        memcpy(&src->settings, model->file_data + sizeof(FileHeader), sizeof src->settings);
        src->layer_kind = xcalloc((size_t)c->n_layers, sizeof(uint32_t), "layer kinds");
        memcpy(src->layer_kind, c->layer_kind, sizeof(uint32_t) * (size_t)c->n_layers);
    }
    src->rope_freqs = copy_floats(model->weights.rope_freqs, c->rotary_dim / 2, "rope_freqs");
    src->rope_freqs_long = copy_floats(model->weights.rope_freqs_long, c->rotary_dim / 2, "rope_freqs_long");
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
    settings_of_checkpoint(src, model);
    src->impl = model;
    src->close = checkpoint_close;
    src->read_rows = checkpoint_read_rows;
    src->read_codes = checkpoint_read_codes;
    src->description = "Edge LLM checkpoint";
    source_add_input(src, path);
}

// ----------------------------------------------------------------------------
// Source: seeded random weights of a real shape, generated row by row

typedef struct {
    const char *name;
    int dim, ffn, layers, heads, kv_heads, vocab, seq_len;
    float rope_theta, norm_eps;
    int tied;
    int head_dim;            // 0: dim / heads
    int architecture;        // Architecture: the family's math (random_family sets it as its real model has it)
} Shape;

static const Shape shapes[] = {
    { "stories260K", 64, 172, 5, 8, 4, 512, 512, 10000.0f, 1e-5f, 1, 0, ARCH_LLAMA },
    { "stories15M", 288, 768, 6, 6, 6, 32000, 256, 10000.0f, 1e-5f, 1, 0, ARCH_LLAMA },
    { "stories42M", 512, 1376, 8, 8, 8, 32000, 1024, 10000.0f, 1e-5f, 1, 0, ARCH_LLAMA },
    { "stories110M", 768, 2048, 12, 12, 12, 32000, 1024, 10000.0f, 1e-5f, 1, 0, ARCH_LLAMA },
    { "smollm2-135m", 576, 1536, 30, 9, 3, 49152, 8192, 100000.0f, 1e-5f, 1, 0, ARCH_LLAMA },
    { "tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, 1e-5f, 0, 0, ARCH_LLAMA },
    { "llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f, 1e-5f, 0, 0, ARCH_LLAMA },
    { "mistral-7b", 4096, 14336, 32, 32, 8, 32000, 32768, 1000000.0f, 1e-5f, 0, 0, ARCH_LLAMA },
    { "llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f, 1e-5f, 0, 0, ARCH_LLAMA },
    // the families beyond Llama, each as its real model's config.json says
    { "qwen3-0.6b", 1024, 3072, 28, 16, 8, 151936, 40960, 1000000.0f, 1e-6f, 1, 128, ARCH_QWEN3 },
    { "qwen2.5-1.5b", 1536, 8960, 28, 12, 2, 151936, 32768, 1000000.0f, 1e-6f, 1, 128, ARCH_QWEN2 },
    { "gemma3-1b", 1152, 6912, 26, 4, 1, 262144, 32768, 1000000.0f, 1e-6f, 1, 256, ARCH_GEMMA3 },
    { "gemma2-2b", 2304, 9216, 26, 8, 4, 256000, 8192, 10000.0f, 1e-6f, 1, 256, ARCH_GEMMA2 },
    { "phi4-mini", 3072, 8192, 32, 24, 8, 200064, 131072, 10000.0f, 1e-5f, 1, 128, ARCH_PHI3 },
    { "smollm3-3b", 2048, 11008, 36, 16, 4, 128256, 65536, 5000000.0f, 1e-6f, 1, 128, ARCH_SMOLLM3 },
};

// What a family's real model sets beyond Llama's math (its Hugging Face
// config.json, as convert/hf.h reads it): Qwen 2.5's biases, Qwen 3's and
// Gemma 3's q/k norms, Gemma's GeGLU, four norms, embedding scale (bfloat16's
// sqrt(dim)), soft caps (Gemma 2) and sliding layers (4096 of 8192 every
// other layer; 512 with Gemma 3's 5 local : 1 global and local base 10000),
// Phi-4-mini's partial rotary (0.75) and LongRoPE (original length 4096;
// smooth made-up factors: only their count and the switch matter to speed),
// SmolLM3's NoPE layers (every fourth).
static void random_family(Source *src, int architecture) {
    FileHeader *h = &src->header;
    ModelSettings *m = &src->settings;
    m->architecture = (uint32_t)architecture;
    if (architecture == ARCH_QWEN2) h->flags |= FLAG_QKV_BIAS;
    if (architecture == ARCH_QWEN3 || architecture == ARCH_GEMMA3) h->flags |= FLAG_QK_NORM;
    if (architecture == ARCH_GEMMA2 || architecture == ARCH_GEMMA3) {
        h->flags |= FLAG_POST_NORMS;
        m->activation = ACTIVATION_GELU_TANH;
        m->embedding_scale = round_to_bf16(sqrtf((float)h->dim));   // 48 and 34
        m->sliding_window = architecture == ARCH_GEMMA2 ? 4096 : 512;
        int period = architecture == ARCH_GEMMA2 ? 2 : 6;
        for (int l = 0; l < h->n_layers; l++)
            if ((l + 1) % period) set_layer_kind(src, l, LAYER_SLIDING | (architecture == ARCH_GEMMA3 ? LAYER_LOCAL_ROPE : 0));
    }
    if (architecture == ARCH_GEMMA2) { m->attention_softcap = 50.0f; m->final_softcap = 30.0f; }
    if (architecture == ARCH_GEMMA3) m->rope_theta_local = 10000.0f;
    if (architecture == ARCH_PHI3) {
        int half = (m->rotary_dim = h->head_dim * 3 / 4) / 2;
        src->rope_freqs = xcalloc((size_t)half, sizeof(float), "rope_freqs");
        src->rope_freqs_long = xcalloc((size_t)half, sizeof(float), "rope_freqs_long");
        for (int i = 0; i < half; i++) {
            src->rope_freqs[i] = 1.0f + 0.5f * (float)i / (float)half;
            src->rope_freqs_long[i] = 1.0f + 40.0f * (float)i / (float)half;
        }
        m->rope_long_after = 4096;
        m->rope_attention_factor = sqrtf(1.0f + logf((float)h->seq_len / 4096.0f) / logf(4096.0f));
    }
    if (architecture == ARCH_SMOLLM3)
        for (int l = 3; l < h->n_layers; l += 4) set_layer_kind(src, l, LAYER_NO_ROPE);
}

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
    int is_norm = is_norm_kind(t->kind);
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
// dim=64,ffn=172,layers=5,heads=8,kv_heads=4,vocab=512,seq_len=512,head_dim=8,tied=1,
// and family=NAME (an architecture: qwen2, gemma3, ...) for its math.
static void open_random(Source *src, const char *spec, uint64_t seed) {
    Shape shape = shapes[0];
    int head_dim = 0, found = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(spec, shapes[i].name) == 0) { shape = shapes[i]; found = 1; }
    if (!found) {
        if (!strchr(spec, '=')) {
            fprintf(stderr, "export: unknown shape '%s'; known shapes:", spec);
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) fprintf(stderr, " %s", shapes[i].name);
            die("\n  or key=value pairs: dim=,ffn=,layers=,heads=,kv_heads=,head_dim=,vocab=,seq_len=,tied=,family=");
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
            if (strcmp(key, "family") == 0) {   // an architecture's name: its math, as random_family sets it
                int a = 0;
                while (a < N_ARCHITECTURES && strcmp(eq + 1, architecture_names[a]) != 0) a++;
                if (a == N_ARCHITECTURES) die("shape item '%s': the families are llama qwen2 qwen3 gemma2 gemma3 phi3 smollm3", item);
                shape.architecture = a;
                continue;
            }
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
    if (!head_dim) head_dim = shape.head_dim;
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
    random_family(src, shape.architecture);
    RandomModel *m = xcalloc(1, sizeof *m, "model");
    m->seed = seed;
    src->impl = m;
    src->close = random_close;
    src->read_rows = random_read_rows;
    src->description = "random weights";
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
    free(d->base.layer_kind);
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
    src->layer_kind = d->base.layer_kind ? xcalloc((size_t)n_layers, sizeof(uint32_t), "layer kinds") : NULL;
    int kept = 0;
    for (int l = 0; l < n_layers; l++) {
        if (dropped[l]) continue;
        d->kept[kept] = l;
        if (src->layer_kind) src->layer_kind[kept] = d->base.layer_kind[l];   // a layer keeps its window and RoPE
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

#pragma GCC diagnostic pop
#endif
