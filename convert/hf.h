/*
convert/hf.h — a Hugging Face model directory as a Source: config.json of
each family export reads (Llama, Mistral, Qwen 2/2.5 and 3, Gemma 2 and 3,
Phi-3.5/Phi-4-mini, SmolLM3: their settings, layer kinds, sliding windows and
RoPE scaling), model.safetensors or its shards (F32, F16, BF16),
tokenizer.json and tokenizer_config.json. Q and K rows (and their biases and
norms) are reordered from Hugging Face's rotate-half layout to the
interleaved pairs runq rotates; Phi-3's fused projections are split; Gemma's
norm weights w become 1 + w.

What it is not: a general safetensors library: it reads the 1-D and 2-D
tensors of the families export knows, mapped, one row at a time.

Include after: runq.c, json.h, convert/source.h, convert/tokenizers.h.
*/

#ifndef EDGE_CONVERT_HF_H
#define EDGE_CONVERT_HF_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

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

// ---- Where each planned tensor lives in the safetensors. Every family names
// its tensors as Llama does, except: Qwen 2's q/k/v biases and Qwen 3's and
// Gemma 3's q/k norms beside them; Gemma's four norms a layer (its
// post_attention_layernorm follows attention, pre_feedforward_layernorm is
// the FFN's input norm); Phi-3's fused qkv_proj (q, k, v rows one after
// another) and gate_up_proj (gate rows, then up rows), which export splits.

typedef struct {
    char name[160];
    int64_t first_row;       // our row 0 is the stored tensor's row first_row (a part of a fused tensor)
    int64_t rows;            // the rows the stored tensor must have (fused: all its parts')
} HfLocation;

static int is_gemma(int architecture) { return architecture == ARCH_GEMMA2 || architecture == ARCH_GEMMA3; }

// A layer tensor's name after "model.layers.L."
static const char *hf_layer_field(int architecture, int kind) {
    int fused = architecture == ARCH_PHI3, gemma = is_gemma(architecture);
    switch (kind) {
    case K_ATTN_NORM: return "input_layernorm.weight";
    case K_WQ: return fused ? "self_attn.qkv_proj.weight" : "self_attn.q_proj.weight";
    case K_WK: return fused ? "self_attn.qkv_proj.weight" : "self_attn.k_proj.weight";
    case K_WV: return fused ? "self_attn.qkv_proj.weight" : "self_attn.v_proj.weight";
    case K_BQ: return "self_attn.q_proj.bias";
    case K_BK: return "self_attn.k_proj.bias";
    case K_BV: return "self_attn.v_proj.bias";
    case K_Q_NORM: return "self_attn.q_norm.weight";
    case K_K_NORM: return "self_attn.k_norm.weight";
    case K_WO: return "self_attn.o_proj.weight";
    case K_POST_ATTN_NORM: return "post_attention_layernorm.weight";
    case K_FFN_NORM: return gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight";
    case K_W1: return fused ? "mlp.gate_up_proj.weight" : "mlp.gate_proj.weight";
    case K_W3: return fused ? "mlp.gate_up_proj.weight" : "mlp.up_proj.weight";
    case K_W2: return "mlp.down_proj.weight";
    case K_POST_FFN_NORM: return "post_feedforward_layernorm.weight";
    default: die("no Hugging Face name for tensor kind %d", kind); return NULL;
    }
}

static HfLocation hf_locate(const Source *src, const PlannedTensor *t) {
    const FileHeader *h = &src->header;
    HfLocation at = { .first_row = 0, .rows = t->entry.rows };
    if (t->kind == K_EMBED) snprintf(at.name, sizeof at.name, "model.embed_tokens.weight");
    else if (t->kind == K_NORM) snprintf(at.name, sizeof at.name, "model.norm.weight");
    else if (t->kind == K_OUTPUT) snprintf(at.name, sizeof at.name, "lm_head.weight");
    else snprintf(at.name, sizeof at.name, "model.layers.%d.%s", t->layer, hf_layer_field((int)src->settings.architecture, t->kind));
    if (src->settings.architecture == ARCH_PHI3) {
        int64_t q_dim = (int64_t)h->n_heads * h->head_dim, kv_dim = (int64_t)h->n_kv_heads * h->head_dim;
        int64_t ffn = t->layer >= 0 ? src->ffn_dim[t->layer] : 0;
        if (t->kind == K_WQ || t->kind == K_WK || t->kind == K_WV) {
            at.rows = q_dim + 2 * kv_dim;
            at.first_row = t->kind == K_WQ ? 0 : t->kind == K_WK ? q_dim : q_dim + kv_dim;
        } else if (t->kind == K_W1 || t->kind == K_W3) {
            at.rows = 2 * ffn;
            at.first_row = t->kind == K_W1 ? 0 : ffn;
        }
    }
    return at;
}

static float bf16_to_fp32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float hf_value(const SafeTensor *st, const uint8_t *row, int64_t c) {
    if (st->dtype == TYPE_F32) { float f; memcpy(&f, row + 4 * (size_t)c, 4); return f; }
    uint16_t half;
    memcpy(&half, row + 2 * (size_t)c, 2);
    return st->dtype == TYPE_F16 ? fp16_to_fp32(half) : bf16_to_fp32(half);
}

// Rows [begin, end) of a planned tensor: its rows of the stored tensor, in
// runq's RoPE order; Gemma's norm weights w become the factor 1 + w its
// RMSNorm multiplies by (in fp32, as Gemma's RMSNorm computes it).
static void hf_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    HfModel *m = src->impl;
    HfLocation at = hf_locate(src, t);
    const SafeTensor *st = hf_find(m, at.name);
    int cols = (int)t->entry.cols, head_dim = src->header.head_dim, rotary_dim = source_rotary_dim(src);
    int plus_one = is_gemma((int)src->settings.architecture) && is_norm_kind(t->kind);
    size_t element = st->dtype == TYPE_F32 ? 4 : 2;
    for (int r = begin; r < end; r++) {
        int64_t row = at.first_row + (permuted_rows(t->kind) ? rotate_half_index(r, head_dim, rotary_dim) : r);
        const uint8_t *p = st->data + (size_t)row * cols * element;
        float *dst = out + (size_t)(r - begin) * cols;
        for (int c = 0; c < cols; c++) {
            float v = hf_value(st, p, permuted_columns(t->kind) ? rotate_half_index(c, head_dim, rotary_dim) : c);
            dst[c] = plus_one ? 1.0f + v : v;
        }
    }
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


static void hf_check_tensor(const Source *src, const PlannedTensor *t);

static void hf_close(Source *src) {
    HfModel *m = src->impl;
    for (int i = 0; i < m->count; i++) free(m->tensors[i].name);
    for (int i = 0; i < m->n_files; i++) munmap((void *)m->files[i].data, m->files[i].size);
    free(m->tensors);
    free(m->files);
    free(m);
}

// ---- config.json: the header, the FFN widths, each family's settings and
// layer kinds, and RoPE scaling (runq.c's format says what each means).

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

// Linear scaling (Gemma 3's global layers): every frequency divided by factor.
static float *linear_rope_divisors(const Json *scaling, int half, const char *path) {
    double factor = json_real(scaling, "factor", -1, path);
    if (!(factor > 0) || !isfinite(factor)) die("%s: rope_scaling of type 'linear' needs a factor > 0 (it has %g)", path, factor);
    float *divisors = xcalloc((size_t)half, sizeof(float), "rope_freqs");
    for (int i = 0; i < half; i++) divisors[i] = (float)factor;
    return divisors;
}

// LongRoPE's short_factor or long_factor: rotary_dim/2 positive numbers, each
// the divisor of one frequency (inv_freq = 1 / (factor * theta^(2i/rotary_dim))).
static float *longrope_factors(const Json *scaling, const char *key, int half, const char *path) {
    const Json *list = json_get(scaling, key);
    if (!list || list->type != JSON_ARRAY || list->count != half)
        die("%s: rope_scaling.%s should list %d numbers (one per rotated pair: head_dim * partial_rotary_factor / 2); "
            "it has %d", path, key, half, list && list->type == JSON_ARRAY ? list->count : 0);
    float *factors = xcalloc((size_t)half, sizeof(float), key);
    for (int i = 0; i < half; i++) {
        if (list->items[i].type != JSON_NUMBER || !(list->items[i].number > 0) || !isfinite(list->items[i].number))
            die("%s: rope_scaling.%s[%d] should be a positive number", path, key, i);
        factors[i] = (float)list->items[i].number;
    }
    return factors;
}

// LongRoPE (Phi-3.5, Phi-4-mini), as Hugging Face's _compute_longrope_parameters
// computes it: short factors for a run within original_max_position_embeddings,
// long ones past it, and cos and sin scaled by attention_factor, by default
// sqrt(1 + ln(factor) / ln(original)) with factor = max_position_embeddings / original.
static void longrope(Source *src, const Json *scaling, const Json *config, const char *path) {
    int half = source_rotary_dim(src) / 2;
    double original = json_real(scaling, "original_max_position_embeddings",
                                json_real(config, "original_max_position_embeddings", -1, path), path);
    if (!(original >= 1) || original > INT32_MAX || original != floor(original))
        die("%s: LongRoPE needs original_max_position_embeddings, a whole number of positions (it has %g)", path, original);
    double factor = json_real(scaling, "factor", src->header.seq_len / original, path);
    double attention_factor = json_real(scaling, "attention_factor", factor <= 1 ? 1.0 : sqrt(1 + log(factor) / log(original)), path);
    if (!(attention_factor > 0) || !isfinite(attention_factor)) die("%s: rope_scaling.attention_factor should be positive", path);
    src->rope_freqs = longrope_factors(scaling, "short_factor", half, path);
    src->rope_freqs_long = longrope_factors(scaling, "long_factor", half, path);
    src->settings.rope_attention_factor = (float)attention_factor;
    src->settings.rope_long_after = (int32_t)original;
}

// RoPE scaling: none ("default"), Llama 3.1/3.2's ("llama3"), linear, or
// LongRoPE ("longrope", or "su" as Phi-3's first configs say); other kinds
// change RoPE in ways runq does not compute, so they are refused.
static void hf_rope_scaling(Source *src, const Json *scaling, const Json *config, const char *path) {
    if (!scaling || scaling->type == JSON_NULL) return;
    if (scaling->type != JSON_OBJECT) die("%s: rope_scaling should be an object or null", path);
    const Json *type = json_get(scaling, "rope_type");   // older configs call it "type"
    if (!type || type->type == JSON_NULL) type = json_get(scaling, "type");
    if (!type || type->type != JSON_STRING) die("%s: rope_scaling has no rope_type", path);
    if (strcmp(type->string, "default") == 0) return;   // Hugging Face's name for plain RoPE
    if (strcmp(type->string, "llama3") == 0) src->rope_freqs = llama3_rope_divisors(scaling, &src->header, path);
    else if (strcmp(type->string, "linear") == 0) src->rope_freqs = linear_rope_divisors(scaling, source_rotary_dim(src) / 2, path);
    else if (strcmp(type->string, "longrope") == 0 || strcmp(type->string, "su") == 0) longrope(src, scaling, config, path);
    else die("%s: rope_scaling of type '%s' is not supported (export reads 'llama3', 'linear' and 'longrope')", path,
             type->string);
}

// RoPE's description: rope_theta and rope_scaling, or transformers 5's
// rope_parameters, which holds both (for Gemma 3, one such object for each
// layer type: full_attention, sliding_attention). Returns the scaling object
// (or NULL) and sets *theta when the config gives one.
static const Json *hf_rope(const Json *config, const char *layer_type, double *theta, const char *path) {
    const Json *parameters = json_get(config, "rope_parameters");
    if (!parameters || parameters->type == JSON_NULL) {
        *theta = json_real(config, "rope_theta", *theta, path);
        return json_get(config, "rope_scaling");
    }
    if (parameters->type != JSON_OBJECT) die("%s: rope_parameters should be an object", path);
    const Json *per_type = json_get(parameters, layer_type);
    if (per_type) parameters = per_type;
    *theta = json_real(parameters, "rope_theta", *theta, path);
    return parameters;
}

// sliding_window: null (or absent) for none, else a positive width.
static int hf_window(const Json *config, const char *path) {
    const Json *window = json_get(config, "sliding_window");
    if (!window || window->type == JSON_NULL) return 0;
    int64_t positions = json_int(config, "sliding_window", 0, path);
    if (positions <= 0) die("%s: sliding_window must be positive or null", path);
    return (int)positions;
}

// config.json's layer_types, when it has them: each layer's "sliding_attention"
// or "full_attention" (transformers' newer configs list them). Returns 0 when
// absent.
static int hf_layer_types(Source *src, const Json *config, const char *path) {
    const Json *types = json_get(config, "layer_types");
    if (!types || types->type == JSON_NULL) return 0;
    if (types->type != JSON_ARRAY || types->count != src->header.n_layers)
        die("%s: layer_types should list all %d layers", path, src->header.n_layers);
    for (int l = 0; l < types->count; l++) {
        const Json *type = &types->items[l];
        if (type->type == JSON_STRING && strcmp(type->string, "sliding_attention") == 0) set_layer_kind(src, l, LAYER_SLIDING);
        else if (!(type->type == JSON_STRING && strcmp(type->string, "full_attention") == 0))
            die("%s: layer_types[%d] should be \"sliding_attention\" or \"full_attention\"", path, l);
    }
    return 1;
}

// The layers that slide: layer_types when given, else every layer l for which
// slides(src, l, n) says so.
typedef int (*SlidingRule)(const Source *src, int layer, int n);
static void hf_sliding_layers(Source *src, const Json *config, int window, SlidingRule slides, int n, const char *path) {
    if (window == 0) return;
    src->settings.sliding_window = window;
    if (!hf_layer_types(src, config, path))
        for (int l = 0; l < src->header.n_layers; l++)
            if (slides(src, l, n)) set_layer_kind(src, l, LAYER_SLIDING);
}

static int every_layer(const Source *src, int layer, int n) { (void)src; (void)layer; (void)n; return 1; }
static int from_layer(const Source *src, int layer, int first) { (void)src; return layer >= first; }
// Gemma's pattern: of every period layers the last is global (2: Gemma 2's alternation; 6: Gemma 3's 5:1).
static int all_but_every(const Source *src, int layer, int period) { (void)src; return period > 0 && (layer + 1) % period != 0; }
static int nope_layer(const Source *src, int layer, int n) { (void)n; return (source_layer_kind(src, layer) & LAYER_NO_ROPE) != 0; }

// A window no shorter than the context changes no layer's attention, so it is
// dropped (Phi-3.5's 262144 of 131072; Qwen's 32768 of 32768).
static void drop_idle_window(Source *src) {
    int any = 0;
    for (int l = 0; l < src->header.n_layers; l++) any |= (source_layer_kind(src, l) & LAYER_SLIDING) != 0;
    if (any && src->settings.sliding_window < src->header.seq_len) return;
    src->settings.sliding_window = 0;
    for (int l = 0; src->layer_kind && l < src->header.n_layers; l++) src->layer_kind[l] &= ~LAYER_SLIDING;
}

// A constant of the model rounded to its dtype (torch_dtype, or transformers
// 5's dtype): Gemma multiplies its embeddings by sqrt(dim) held in that dtype.
static float in_model_dtype(double value, const Json *config, const char *path) {
    const Json *dtype = json_get(config, "torch_dtype");
    if (!dtype || dtype->type == JSON_NULL) dtype = json_get(config, "dtype");
    float f = (float)value;
    if (!dtype || dtype->type != JSON_STRING || strcmp(dtype->string, "float32") == 0) return f;
    if (strcmp(dtype->string, "float16") == 0) return fp16_to_fp32(fp32_to_fp16(f));
    if (strcmp(dtype->string, "bfloat16") != 0) die("%s: torch_dtype '%s' is not float32, float16 or bfloat16", path, dtype->string);
    return round_to_bf16(f);
}

// A key that must hold one of a few strings (the activation a family computes).
static void require_string(const Json *config, const char *key, const char *expected, const char *path) {
    const Json *value = json_get(config, key);
    if (value && value->type != JSON_NULL && !(value->type == JSON_STRING && strcmp(value->string, expected) == 0))
        die("%s: %s is %s%s%s; this family computes '%s'", path, key, value->type == JSON_STRING ? "'" : "",
            value->type == JSON_STRING ? value->string : "not a string", value->type == JSON_STRING ? "'" : "", expected);
}

// Biases only Qwen 2's q/k/v carry: attention_bias (o_proj's too) and mlp_bias are refused.
static void refuse_biases(const Json *config, const char *path) {
    static const char *const keys[] = { "attention_bias", "mlp_bias" };
    for (int i = 0; i < 2; i++) {
        const Json *value = json_get(config, keys[i]);
        if (value && value->type == JSON_TRUE)
            die("%s: %s is true: biases on these projections are not supported (only Qwen 2's q/k/v biases)", path, keys[i]);
    }
}

// ---- Each family: what config.json says beyond Llama's keys.

static void hf_llama(Source *src, const Json *config, const char *path) {
    refuse_biases(config, path);
    // Mistral 7B v0.1 attends to its last 4096 positions at every layer
    hf_sliding_layers(src, config, hf_window(config, path), every_layer, 0, path);
}

// Qwen 2/2.5: q, k and v biases; a sliding window only with use_sliding_window,
// on the layers from max_window_layers on.
static void hf_qwen_window(Source *src, const Json *config, const char *path) {
    const Json *use = json_get(config, "use_sliding_window");
    if (!use || use->type != JSON_TRUE) return;
    int first = (int)json_int(config, "max_window_layers", 0, path);
    hf_sliding_layers(src, config, hf_window(config, path), from_layer, first, path);
}

static void hf_qwen2(Source *src, const Json *config, const char *path) {
    src->header.flags |= FLAG_QKV_BIAS;
    hf_qwen_window(src, config, path);
}

// Qwen 3: an RMSNorm over each head of q and k before RoPE.
static void hf_qwen3(Source *src, const Json *config, const char *path) {
    refuse_biases(config, path);
    src->header.flags |= FLAG_QK_NORM;
    hf_qwen_window(src, config, path);
}

// Gemma 2 and 3: GeGLU, embeddings times sqrt(dim), scores over
// sqrt(query_pre_attn_scalar), four norms a layer (1 + w each, folded at
// reading), sliding layers (Gemma 2 alternates from layer 0; Gemma 3 makes
// every sliding_window_pattern-th layer global), Gemma 2's soft caps.
static void hf_gemma(Source *src, const Json *config, int period, const char *path) {
    refuse_biases(config, path);
    require_string(config, "hidden_activation", "gelu_pytorch_tanh", path);
    if (!json_get(config, "hidden_activation")) require_string(config, "hidden_act", "gelu_pytorch_tanh", path);
    ModelSettings *m = &src->settings;
    src->header.flags |= FLAG_POST_NORMS;
    m->activation = ACTIVATION_GELU_TANH;
    m->embedding_scale = in_model_dtype(sqrt((double)src->header.dim), config, path);
    double scalar = json_real(config, "query_pre_attn_scalar", 256, path);
    if (!(scalar > 0)) die("%s: query_pre_attn_scalar should be positive", path);
    m->score_divisor = (float)sqrt(scalar);
    m->attention_softcap = (float)json_real(config, "attn_logit_softcapping", 0, path);
    m->final_softcap = (float)json_real(config, "final_logit_softcapping", 0, path);
    if (!(m->attention_softcap >= 0) || !(m->final_softcap >= 0)) die("%s: the logit soft caps should be positive or null", path);
    const Json *window = json_get(config, "sliding_window");
    hf_sliding_layers(src, config, window ? hf_window(config, path) : 4096, all_but_every, period, path);
}

static void hf_gemma2(Source *src, const Json *config, const char *path) {
    hf_gemma(src, config, 2, path);
}

// Gemma 3: q/k norms, and its local (sliding) layers turn with their own RoPE
// base, rope_local_base_freq, never scaled.
static void hf_gemma3(Source *src, const Json *config, const char *path) {
    src->header.flags |= FLAG_QK_NORM;
    hf_gemma(src, config, (int)json_int(config, "sliding_window_pattern", 6, path), path);
    double local_theta = json_real(config, "rope_local_base_freq", 10000.0, path);
    const Json *parameters = json_get(config, "rope_parameters");   // transformers 5: the local layers' own object
    if (json_get(parameters, "sliding_attention"))
        local_theta = json_real(json_get(parameters, "sliding_attention"), "rope_theta", local_theta, path);
    if (!(local_theta > 0)) die("%s: rope_local_base_freq should be positive", path);
    for (int l = 0; l < src->header.n_layers; l++)   // before drop_idle_window: a wide window still turns locally
        if (source_layer_kind(src, l) & LAYER_SLIDING) {
            set_layer_kind(src, l, LAYER_LOCAL_ROPE);
            src->settings.rope_theta_local = (float)local_theta;
        }
}

// Phi-3.5 / Phi-4-mini: RoPE over the first partial_rotary_factor of each
// head; fused projections (hf_locate splits them); a sliding window over every
// layer when it is shorter than the context.
static void hf_phi3(Source *src, const Json *config, const char *path) {
    refuse_biases(config, path);
    double partial = json_real(config, "partial_rotary_factor", 1.0, path);
    int rotary_dim = (int)(src->header.head_dim * partial);   // as Hugging Face truncates it
    if (!(partial > 0 && partial <= 1) || rotary_dim < 2 || rotary_dim % 2)
        die("%s: partial_rotary_factor %g gives %d rotated dims of %d; it must give an even number from 2 to head_dim",
            path, partial, rotary_dim, src->header.head_dim);
    if (rotary_dim != src->header.head_dim) src->settings.rotary_dim = rotary_dim;
    hf_sliding_layers(src, config, hf_window(config, path), every_layer, 0, path);
}

// SmolLM3: no RoPE on the layers no_rope_layers marks 0 (by default every
// no_rope_layer_interval-th); with use_sliding_window those layers slide.
static void hf_smollm3(Source *src, const Json *config, const char *path) {
    refuse_biases(config, path);
    const Json *list = json_get(config, "no_rope_layers");
    int interval = (int)json_int(config, "no_rope_layer_interval", 4, path);
    if (list && list->type != JSON_NULL && (list->type != JSON_ARRAY || list->count < src->header.n_layers))
        die("%s: no_rope_layers should list all %d layers (1: RoPE, 0: none)", path, src->header.n_layers);
    if ((!list || list->type == JSON_NULL) && interval <= 0) die("%s: no_rope_layer_interval should be positive", path);
    for (int l = 0; l < src->header.n_layers; l++) {
        const Json *use_rope = list && list->type == JSON_ARRAY ? &list->items[l] : NULL;
        if (use_rope && (use_rope->type != JSON_NUMBER || (use_rope->number != 0 && use_rope->number != 1)))
            die("%s: no_rope_layers[%d] should be 0 or 1", path, l);
        if (use_rope ? use_rope->number == 0 : (l + 1) % interval == 0) set_layer_kind(src, l, LAYER_NO_ROPE);
    }
    const Json *use = json_get(config, "use_sliding_window");
    if (use && use->type == JSON_TRUE) hf_sliding_layers(src, config, hf_window(config, path), nope_layer, 0, path);
}

typedef struct {
    const char *model_type;  // config.json's
    int architecture;
    float theta;             // rope_theta when config.json has none (the family's configuration class default)
    int tied;                // tie_word_embeddings when config.json has none
    void (*configure)(Source *src, const Json *config, const char *path);
} HfFamily;

static const HfFamily hf_families[] = {
    { "llama", ARCH_LLAMA, 10000, 0, hf_llama },        { "mistral", ARCH_LLAMA, 10000, 0, hf_llama },
    { "qwen2", ARCH_QWEN2, 10000, 0, hf_qwen2 },        { "qwen3", ARCH_QWEN3, 10000, 0, hf_qwen3 },
    { "gemma2", ARCH_GEMMA2, 10000, 1, hf_gemma2 },     { "gemma3_text", ARCH_GEMMA3, 1000000, 1, hf_gemma3 },
    { "phi3", ARCH_PHI3, 10000, 0, hf_phi3 },           { "smollm3", ARCH_SMOLLM3, 2000000, 1, hf_smollm3 },
};

static const HfFamily *hf_family(const Json *config, const char *path) {
    const Json *model_type = json_get(config, "model_type");
    const char *name = model_type && model_type->type == JSON_STRING ? model_type->string : "(missing)";
    for (size_t i = 0; i < sizeof hf_families / sizeof hf_families[0]; i++)
        if (strcmp(name, hf_families[i].model_type) == 0) return &hf_families[i];
    char known[256] = "";
    for (size_t i = 0; i < sizeof hf_families / sizeof hf_families[0]; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", hf_families[i].model_type);
    die("%s: model_type %s is not supported (%s)", path, name, known);
    return NULL;
}

// config.json -> the header, the settings, the FFN widths and RoPE scaling:
// everything export needs to know before it opens a weight (export
// --check-config stops here). Returns which of BOS and EOS config.json names
// (bit 0, bit 1).
static int hf_config(Source *src, const char *config_path) {
    Json config = json_read_file(config_path);
    const HfFamily *family = hf_family(&config, config_path);
    FileHeader *h = &src->header;
    h->dim = (int32_t)json_int(&config, "hidden_size", -1, config_path);
    h->n_layers = (int32_t)json_int(&config, "num_hidden_layers", -1, config_path);
    h->n_heads = (int32_t)json_int(&config, "num_attention_heads", -1, config_path);
    h->n_kv_heads = (int32_t)json_int(&config, "num_key_value_heads", h->n_heads, config_path);
    h->head_dim = (int32_t)json_int(&config, "head_dim", h->n_heads > 0 ? h->dim / h->n_heads : 0, config_path);
    h->vocab_size = (int32_t)json_int(&config, "vocab_size", -1, config_path);
    h->seq_len = (int32_t)json_int(&config, "max_position_embeddings", 2048, config_path);
    double theta = family->theta;
    const Json *scaling = hf_rope(&config, "full_attention", &theta, config_path);
    h->rope_theta = (float)theta;
    h->norm_eps = (float)json_real(&config, "rms_norm_eps", 1e-6, config_path);
    h->bos_id = (int32_t)json_int(&config, "bos_token_id", 1, config_path);
    h->eos_id = (int32_t)json_int(&config, "eos_token_id", 2, config_path);
    const Json *bos = json_get(&config, "bos_token_id"), *eos = json_get(&config, "eos_token_id");
    int ids_given = (bos && bos->type != JSON_NULL) + 2 * (eos && eos->type != JSON_NULL);   // bit 0 BOS, bit 1 EOS
    const Json *tie = json_get(&config, "tie_word_embeddings");
    int tied = tie && tie->type != JSON_NULL ? tie->type == JSON_TRUE : family->tied;
    h->flags = tied ? FLAG_TIED_CLASSIFIER : 0;
    int ffn = (int)json_int(&config, "intermediate_size", -1, config_path);
    check_header(h, config_path);
    if (ffn <= 0) die("%s: intermediate_size must be positive", config_path);
    src->ffn_dim = xcalloc((size_t)h->n_layers, sizeof(int), "ffn table");
    for (int l = 0; l < h->n_layers; l++) src->ffn_dim[l] = ffn;
    src->settings.architecture = (uint32_t)family->architecture;
    family->configure(src, &config, config_path);
    drop_idle_window(src);
    hf_rope_scaling(src, scaling, &config, config_path);
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
// (A fused tensor is checked whole: each of its parts checks the same shape.)
static void hf_check_tensor(const Source *src, const PlannedTensor *t) {
    HfLocation at = hf_locate(src, t);
    const SafeTensor *st = hf_find(src->impl, at.name);
    if (!st) die("tensor %s is missing from the safetensors files", at.name);
    if (st->dtype == -1) die("tensor %s has a dtype other than F32, F16 or BF16", at.name);
    if (st->dtype == -2) die("tensor %s has more than 2 dimensions", at.name);
    if (st->rows != at.rows || st->cols != t->entry.cols)
        die("tensor %s is (%lld, %lld) but config.json implies (%lld, %u)%s", at.name, (long long)st->rows,
            (long long)st->cols, (long long)at.rows, t->entry.cols,
            at.rows != t->entry.rows ? " (a fused tensor: its parts' rows one after another)" : "");
}

#pragma GCC diagnostic pop
#endif
