/*
convert/hf.h — a Hugging Face model directory as a Source: config.json
(with RoPE scaling and the sliding window), model.safetensors or its shards
(F32, F16, BF16), tokenizer.json and tokenizer_config.json. Q and K rows are
reordered from Hugging Face's rotate-half layout to the interleaved pairs
runq rotates.

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

#pragma GCC diagnostic pop
#endif
