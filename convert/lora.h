/*
convert/lora.h — a PEFT LoRA adapter (adapter_config.json,
adapter_model.safetensors) merged into any Source as its rows are read
(export --lora), or checked and kept apart for runq --lora (export
--adapter, written by convert/write_checkpoint.h).

What it is not: a trainer of adapters (tools/train.c) or the run-time
application of one (runq.c).

Include after: runq.c, json.h, convert/source.h, convert/hf.h.
*/

#ifndef EDGE_CONVERT_LORA_H
#define EDGE_CONVERT_LORA_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

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
// lora_B) row r is the file's row rotate_half_index(r): rotate-half to interleaved.
static float *lora_floats(const SafeTensor *st, float scale, int head_dim, const char *path) {
    float *out = xcalloc((size_t)(st->rows * st->cols), sizeof(float), "adapter matrix");
    for (int64_t r = 0; r < st->rows; r++) {
        int64_t row = head_dim > 0 ? rotate_half_index(r, head_dim, head_dim) : r;
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

#pragma GCC diagnostic pop
#endif
