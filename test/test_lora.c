// test_lora.c — export --lora: a PEFT LoRA adapter merged into the weights on
// their way out. A tiny random model with GQA (4 heads, 2 KV heads, head_dim 8)
// and random adapters written here (adapter_config.json + a safetensors file):
//   - every merged tensor equals base + scale * B A computed in double, B's
//     q_proj/k_proj rows taken from Hugging Face's rotate-half order; untouched
//     tensors bit-identical; use_rslora's scale; F16 and BF16 matrices;
//   - the convention end to end: a Hugging Face model plus an adapter exports
//     the weights of that model with the adapter merged in Hugging Face's layout;
//   - an int4 input: unmerged tensors copied bit-exact, merged ones quantized afresh;
//   - bad adapters refused before a byte is written, each with its own message;
//   - the export program: --lora in its summary line, a bad adapter's exit status.
// Not a test of runq --lora at run time (test_train.sh is).
#define TESTING
#include "../export.c"
#include "check.h"
#include <sys/wait.h>

static char work_dir[] = "/tmp/edge-llm-lora-XXXXXX";

// wo takes q_dim = 32 inputs but gives dim = 40 outputs; wk and wv give kv_dim = 16
#define MODEL "dim=40,ffn=48,layers=2,heads=4,kv_heads=2,head_dim=8,vocab=64,seq_len=16,tied=0"
#define MODEL_SEED 7

static void path_in_work_dir(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", work_dir, name); }

// ---- a safetensors writer (the format: u64 header size, JSON header, data)

typedef struct {
    char name[128];
    const char *dtype;        // "F32", "F16" or "BF16"
    int rows, cols;
    int vector;               // written with shape [cols] (norm weights)
    float *values;            // (rows, cols), each representable in dtype
} FakeTensor;

typedef struct {
    FakeTensor *tensors;
    int count;
} FakeFile;

static float round_to_dtype(float x, const char *dtype) {
    if (strcmp(dtype, "F16") == 0) return fp16_to_fp32(fp32_to_fp16(x));
    if (strcmp(dtype, "BF16") == 0) {   // round to nearest even on the top 16 bits
        uint32_t bits;
        memcpy(&bits, &x, 4);
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000u;
        memcpy(&x, &bits, 4);
    }
    return x;
}

static FakeTensor *fake_add(FakeFile *f, const char *name, const char *dtype, int rows, int cols) {
    f->tensors = realloc(f->tensors, (size_t)(f->count + 1) * sizeof(FakeTensor));
    FakeTensor *t = &f->tensors[f->count++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->rows = rows;
    t->cols = cols;
    t->values = calloc((size_t)rows * cols, sizeof(float));
    return t;
}

static FakeTensor *fake_find(FakeFile *f, const char *name) {
    for (int i = 0; i < f->count; i++) if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static void fake_remove(FakeFile *f, const char *name) {
    FakeTensor *t = fake_find(f, name);
    free(t->values);
    *t = f->tensors[--f->count];
}

static void fake_free(FakeFile *f) {
    for (int i = 0; i < f->count; i++) free(f->tensors[i].values);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

static void write_file(const char *path, const void *data, size_t size) {
    FILE *out = fopen(path, "wb");
    if (!out || fwrite(data, 1, size, out) != size || fclose(out) != 0) { perror(path); exit(1); }
}

static void write_safetensors(const char *path, const FakeFile *f) {
    Buffer header = { 0 }, data = { 0 };
    char text[512];
    const char *metadata = "{\"__metadata__\":{\"format\":\"pt\"}";
    buffer_put(&header, metadata, strlen(metadata));
    for (int i = 0; i < f->count; i++) {
        const FakeTensor *t = &f->tensors[i];
        size_t begin = data.size;
        for (size_t k = 0; k < (size_t)t->rows * t->cols; k++) {
            float x = t->values[k];
            uint32_t bits;
            memcpy(&bits, &x, 4);
            uint16_t half = strcmp(t->dtype, "F16") == 0 ? fp32_to_fp16(x) : (uint16_t)(bits >> 16);
            if (strcmp(t->dtype, "F32") == 0) buffer_put(&data, &x, 4);
            else buffer_put(&data, &half, 2);
        }
        int n = t->vector ? snprintf(text, sizeof text, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                                     t->name, t->dtype, t->cols, begin, data.size)
                          : snprintf(text, sizeof text, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                                     t->name, t->dtype, t->rows, t->cols, begin, data.size);
        buffer_put(&header, text, (size_t)n);
    }
    buffer_put(&header, "}", 1);
    while (header.size % 8) buffer_put(&header, " ", 1);   // the data starts 8-byte aligned, as safetensors writes it
    uint64_t header_size = header.size;
    FILE *out = fopen(path, "wb");
    if (!out || fwrite(&header_size, 8, 1, out) != 1 || fwrite(header.data, 1, header.size, out) != header.size
        || (data.size && fwrite(data.data, 1, data.size, out) != data.size) || fclose(out) != 0) { perror(path); exit(1); }
    free(header.data);
    free(data.data);
}

// ---- random adapters

static const struct { int kind; const char *module; } modules[] = {
    { K_WQ, "self_attn.q_proj" }, { K_WK, "self_attn.k_proj" }, { K_WV, "self_attn.v_proj" }, { K_WO, "self_attn.o_proj" },
    { K_W1, "mlp.gate_proj" }, { K_W2, "mlp.down_proj" }, { K_W3, "mlp.up_proj" },
};

#define ALL_TARGETS "[\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]"

typedef struct {
    int rank;
    double alpha;
    int rslora;
    const char *dtype;        // of the matrices
    // adapter_config.json values as JSON text; NULL: a plain LoRA adapter's
    const char *peft_type, *targets, *use_dora, *bias, *fan_in_fan_out;
} AdapterSpec;

static const char *or_default(const char *value, const char *fallback) { return value ? value : fallback; }

static double spec_scale(const AdapterSpec *spec) {
    return spec->rslora ? spec->alpha / sqrt((double)spec->rank) : spec->alpha / spec->rank;
}

static void lora_name(char *out, size_t size, int layer, const char *module, char which) {
    snprintf(out, size, "base_model.model.model.layers.%d.%s.lora_%c.weight", layer, module, which);
}

static const PlannedTensor *planned(const Plan *plan, int layer, int kind) {
    for (int i = 0; i < plan->count; i++)
        if (plan->tensors[i].layer == layer && plan->tensors[i].kind == kind) return &plan->tensors[i];
    return NULL;
}

static void fill_random(FakeTensor *t, uint64_t *state) {
    for (size_t k = 0; k < (size_t)t->rows * t->cols; k++) {
        float u = (float)(splitmix64(state) >> 40) / 16777216.0f;
        t->values[k] = round_to_dtype(u - 0.5f, t->dtype);
    }
}

// Every module of layer 0, and q_proj and v_proj of layer 1 (as PEFT's
// layers_to_transform would): the other matrices stay untouched.
static FakeFile make_adapter(const Source *model, const AdapterSpec *spec, uint64_t seed) {
    Plan plan = make_plan(model, TYPE_F32, 0);
    FakeFile f = { 0 };
    char name[160];
    for (int layer = 0; layer < 2; layer++)
        for (size_t m = 0; m < sizeof modules / sizeof modules[0]; m++) {
            if (layer == 1 && modules[m].kind != K_WQ && modules[m].kind != K_WV) continue;
            const PlannedTensor *t = planned(&plan, layer, modules[m].kind);
            lora_name(name, sizeof name, layer, modules[m].module, 'A');
            fill_random(fake_add(&f, name, spec->dtype, spec->rank, (int)t->entry.cols), &seed);
            lora_name(name, sizeof name, layer, modules[m].module, 'B');
            fill_random(fake_add(&f, name, spec->dtype, (int)t->entry.rows, spec->rank), &seed);
        }
    free(plan.tensors);
    return f;
}

static void write_adapter_config(const char *dir, const AdapterSpec *spec) {
    char path[4096], text[2048];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    int n = snprintf(text, sizeof text,
        "{\n  \"peft_type\": %s,\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": \"random\",\n"
        "  \"r\": %d,\n  \"lora_alpha\": %g,\n  \"lora_dropout\": 0.05,\n  \"use_rslora\": %s,\n"
        "  \"target_modules\": %s,\n  \"bias\": %s,\n  \"fan_in_fan_out\": %s,\n  \"use_dora\": %s,\n"
        "  \"rank_pattern\": {},\n  \"alpha_pattern\": {},\n  \"modules_to_save\": null,\n  \"layers_to_transform\": null\n}\n",
        or_default(spec->peft_type, "\"LORA\""), spec->rank, spec->alpha, spec->rslora ? "true" : "false",
        or_default(spec->targets, ALL_TARGETS), or_default(spec->bias, "\"none\""),
        or_default(spec->fan_in_fan_out, "false"), or_default(spec->use_dora, "false"));
    write_file(path, text, (size_t)n);
}

// dir (made here) holding the adapter; returns dir's path in out
static void write_adapter(char *out, size_t size, const char *name, const AdapterSpec *spec, const FakeFile *f) {
    char path[4096];
    path_in_work_dir(out, size, name);
    mkdir(out, 0755);
    write_adapter_config(out, spec);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", out);
    write_safetensors(path, f);
}

// ---- the merge, checked against double arithmetic

// Our q/k rows rotate interleaved pairs (2i, 2i+1) of a head; Hugging Face's
// rotate_half pairs (i, i + head_dim/2). So our row 2i + half is their row
// half * head_dim/2 + i.
static int hf_row(int row, int kind) {
    const int head_dim = 8;
    if (kind != K_WQ && kind != K_WK) return row;
    int head = row / head_dim, within = row % head_dim;
    return head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

static void adapter_pair(FakeFile *f, const PlannedTensor *t, FakeTensor **a, FakeTensor **b) {
    char name[160];
    *a = *b = NULL;
    for (size_t m = 0; m < sizeof modules / sizeof modules[0]; m++)
        if (t->layer >= 0 && modules[m].kind == t->kind) {
            lora_name(name, sizeof name, t->layer, modules[m].module, 'A');
            *a = fake_find(f, name);
            lora_name(name, sizeof name, t->layer, modules[m].module, 'B');
            *b = fake_find(f, name);
        }
}

// Every tensor of the fp32 checkpoint `output` against base's: base + scale * B A
// where the adapter has a pair (relative error at most 1e-5 of the terms'
// magnitude), bit-identical elsewhere. Returns how many tensors were merged.
static int check_merged(const char *label, Source *base, const char *output, FakeFile *adapter, double scale) {
    Source back = { 0 };
    open_checkpoint_source(&back, output);
    Plan plan = make_plan(base, TYPE_F32, 0);
    int merged = 0;
    for (int i = 0; i < plan.count; i++) {
        const PlannedTensor *t = &plan.tensors[i];
        if (t->kind == K_TOKENIZER) continue;
        int rows = (int)t->entry.rows, cols = (int)t->entry.cols;
        float *w = calloc((size_t)rows * cols, sizeof(float)), *got = calloc((size_t)rows * cols, sizeof(float));
        base->read_rows(base, t, 0, rows, w);
        back.read_rows(&back, t, 0, rows, got);
        FakeTensor *a, *b;
        adapter_pair(adapter, t, &a, &b);
        if (!a) {
            CHECK(memcmp(w, got, (size_t)rows * cols * sizeof(float)) == 0, "%s: %s has no adapter but changed", label, t->entry.name);
        } else {
            double worst = 0;
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    double delta = 0, magnitude = 0;
                    for (int k = 0; k < a->rows; k++) {
                        double term = (double)b->values[(size_t)hf_row(r, t->kind) * b->cols + k] * a->values[(size_t)k * cols + c];
                        delta += term;
                        magnitude += fabs(term);
                    }
                    double expected = w[(size_t)r * cols + c] + scale * delta;
                    double error = fabs(got[(size_t)r * cols + c] - expected) / (fabs(w[(size_t)r * cols + c]) + scale * magnitude);
                    if (error > worst) worst = error;
                }
            CHECK(worst <= 1e-5, "%s: %s differs from base + scale*B*A by %.3g relative", label, t->entry.name, worst);
            merged++;
        }
        free(w);
        free(got);
    }
    free(plan.tensors);
    free_source(&back);
    return merged;
}

// A random model and adapter exported --fp32 with the adapter merged, checked tensor by tensor.
static void test_merge(const char *label, const AdapterSpec *spec, const char *description) {
    char dir[4096], output[4096], name[256];
    Source src = { 0 };
    open_random(&src, MODEL, MODEL_SEED);
    FakeFile adapter = make_adapter(&src, spec, 1234);
    write_adapter(dir, sizeof dir, label, spec, &adapter);
    snprintf(name, sizeof name, "%s.f32.bin", label);
    path_in_work_dir(output, sizeof output, name);
    open_lora(&src, dir);
    CHECK(strstr(src.description, description) != NULL, "%s: description '%s' lacks '%s'", label, src.description, description);
    write_checkpoint(&src, output, TYPE_F32, 0, 1);
    free_source(&src);

    Source base = { 0 };
    open_random(&base, MODEL, MODEL_SEED);
    int merged = check_merged(label, &base, output, &adapter, spec_scale(spec));
    CHECK(merged == 9, "%s: %d tensors merged, expected 9 (7 in layer 0, 2 in layer 1)", label, merged);
    free_source(&base);
    fake_free(&adapter);
}

// ---- the convention end to end: HF model + adapter == the HF model merged in HF's own layout

static void write_hf_model(const char *dir, const Source *model, const FakeFile *weights) {
    char path[4096], text[1024];
    const FileHeader *h = &model->header;
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    int n = snprintf(text, sizeof text,
        "{\"model_type\": \"llama\", \"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
        " \"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d,"
        " \"intermediate_size\": %d, \"tie_word_embeddings\": false, \"rms_norm_eps\": 1e-05}\n",
        h->dim, h->n_layers, h->n_heads, h->n_kv_heads, h->head_dim, h->vocab_size, h->seq_len, model->ffn_dim[0]);
    write_file(path, text, (size_t)n);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, weights);
}

static void test_hf_convention(void) {
    AdapterSpec spec = { .rank = 4, .alpha = 8, .dtype = "F32" };
    double scale = spec_scale(&spec);
    Source model = { 0 };
    open_random(&model, MODEL, 11);
    FakeFile adapter = make_adapter(&model, &spec, 99), base = { 0 }, merged = { 0 };
    Plan plan = make_plan(&model, TYPE_F32, 0);
    for (int i = 0; i < plan.count; i++) {   // the random weights, taken to be in HF's layout
        const PlannedTensor *t = &plan.tensors[i];
        int rows = (int)t->entry.rows, cols = (int)t->entry.cols;
        char name[160];
        hf_name(t, name, sizeof name);
        FakeTensor *w = fake_add(&base, name, "F32", rows, cols), *m = fake_add(&merged, name, "F32", rows, cols);
        w->vector = m->vector = is_norm_kind(t->kind);
        model.read_rows(&model, t, 0, rows, w->values);
        FakeTensor *a, *b;
        adapter_pair(&adapter, t, &a, &b);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {   // HF's merge: no permutation, every row where it is
                double delta = 0;
                for (int k = 0; a && k < a->rows; k++) delta += (double)b->values[(size_t)r * b->cols + k] * a->values[(size_t)k * cols + c];
                m->values[(size_t)r * cols + c] = (float)(w->values[(size_t)r * cols + c] + scale * delta);
            }
    }
    char base_dir[4096], merged_dir[4096], adapter_dir[4096], out_lora[4096], out_merged[4096];
    path_in_work_dir(base_dir, sizeof base_dir, "hf-base");
    path_in_work_dir(merged_dir, sizeof merged_dir, "hf-merged");
    path_in_work_dir(out_lora, sizeof out_lora, "hf-base+lora.f32.bin");
    path_in_work_dir(out_merged, sizeof out_merged, "hf-merged.f32.bin");
    write_hf_model(base_dir, &model, &base);
    write_hf_model(merged_dir, &model, &merged);
    write_adapter(adapter_dir, sizeof adapter_dir, "hf-adapter", &spec, &adapter);

    Source with_lora = { 0 }, premerged = { 0 };
    open_hf(&with_lora, base_dir);
    open_lora(&with_lora, adapter_dir);
    write_checkpoint(&with_lora, out_lora, TYPE_F32, 0, 1);
    open_hf(&premerged, merged_dir);
    write_checkpoint(&premerged, out_merged, TYPE_F32, 0, 1);
    free_source(&with_lora);
    free_source(&premerged);

    // weights and deltas here are of order 0.1 to 1: 1e-5 of that is float rounding's scale
    Source x = { 0 }, y = { 0 };
    open_checkpoint_source(&x, out_lora);
    open_checkpoint_source(&y, out_merged);
    double worst = 0;
    for (int i = 0; i < plan.count; i++) {
        const PlannedTensor *t = &plan.tensors[i];
        size_t n = (size_t)t->entry.rows * t->entry.cols;
        float *p = calloc(n, sizeof(float)), *q = calloc(n, sizeof(float));
        x.read_rows(&x, t, 0, (int)t->entry.rows, p);
        y.read_rows(&y, t, 0, (int)t->entry.rows, q);
        for (size_t k = 0; k < n; k++) worst = fmax(worst, fabs(p[k] - q[k]) / (1.0 + fabs(q[k])));
        free(p);
        free(q);
    }
    CHECK(worst <= 1e-5, "HF model + adapter differs from the HF model merged in its own layout by %.3g", worst);
    free_source(&x);
    free_source(&y);
    free(plan.tensors);
    fake_free(&adapter);
    fake_free(&base);
    fake_free(&merged);
    free_source(&model);
}

// ---- an int4 checkpoint as input

static int same_q4(const Tensor *x, const Tensor *y) {
    size_t rows = rows_stored(x), nibbles = rows * x->cols_padded / 2, scales = rows * (x->cols_padded / x->group_size);
    return x->type == TYPE_Q4 && y->type == TYPE_Q4 && x->rows == y->rows && x->cols_padded == y->cols_padded
        && memcmp(x->nibbles, y->nibbles, nibbles) == 0 && memcmp(x->scales, y->scales, scales * 2) == 0;
}

// The merged tensors of an int4 -> int4 export are the int4 quantization of
// the merged floats (those of the int4 -> fp32 export); the others are copied.
static void test_int4_input(void) {
    AdapterSpec spec = { .rank = 4, .alpha = 8, .dtype = "F32" };
    char dir[4096], base_q4[4096], merged_q4[4096], merged_f32[4096];
    path_in_work_dir(base_q4, sizeof base_q4, "int4-base.q4.bin");
    path_in_work_dir(merged_q4, sizeof merged_q4, "int4-merged.q4.bin");
    path_in_work_dir(merged_f32, sizeof merged_f32, "int4-merged.f32.bin");
    Source src = { 0 };
    open_random(&src, MODEL, MODEL_SEED);
    FakeFile adapter = make_adapter(&src, &spec, 4321);
    write_adapter(dir, sizeof dir, "int4-adapter", &spec, &adapter);
    write_checkpoint(&src, base_q4, TYPE_Q4, 32, 1);
    free_source(&src);
    const char *outputs[] = { merged_q4, merged_f32 };
    for (int i = 0; i < 2; i++) {
        Source in = { 0 };
        open_checkpoint_source(&in, base_q4);
        open_lora(&in, dir);
        write_checkpoint(&in, outputs[i], i == 0 ? TYPE_Q4 : TYPE_F32, 32, 1);
        free_source(&in);
    }
    Source base = { 0 };
    open_checkpoint_source(&base, base_q4);   // dequantized: the base of the fp32 merge
    int merged = check_merged("int4 -> fp32", &base, merged_f32, &adapter, spec_scale(&spec));
    CHECK(merged == 9, "int4 -> fp32: %d tensors merged, expected 9", merged);

    Source q4 = { 0 }, f32 = { 0 };
    open_checkpoint_source(&q4, merged_q4);
    open_checkpoint_source(&f32, merged_f32);
    Plan plan = make_plan(&base, TYPE_Q4, 32);
    int copied = 0, requantized = 0;
    for (int i = 0; i < plan.count; i++) {
        const PlannedTensor *t = &plan.tensors[i];
        if (t->entry.type != TYPE_Q4) continue;
        const Tensor *x = checkpoint_tensor(base.impl, t), *y = checkpoint_tensor(q4.impl, t);
        FakeTensor *a, *b;
        adapter_pair(&adapter, t, &a, &b);
        if (!a) {
            CHECK(same_q4(x, y), "int4 -> int4: %s has no adapter but its blocks changed", t->entry.name);
            copied++;
            continue;
        }
        int cols = y->cols, padded = y->cols_padded, group = y->group_size;
        float *row = calloc((size_t)cols, sizeof(float));
        uint8_t *nibbles = calloc((size_t)padded / 2, 1);
        uint16_t *scales = calloc((size_t)(padded / group), sizeof(uint16_t));
        uint8_t *y_nibbles = calloc((size_t)padded / 2, 1);
        uint16_t *y_scales = calloc((size_t)(padded / group), sizeof(uint16_t));
        int same = 1;
        for (int r = 0; r < y->rows; r++) {
            f32.read_rows(&f32, t, r, r + 1, row);
            quantize_row_q4(row, cols, padded, group, nibbles, scales);
            read_row_codes(y, r, y_nibbles, y_scales);
            same &= memcmp(nibbles, y_nibbles, (size_t)padded / 2) == 0
                 && memcmp(scales, y_scales, sizeof(uint16_t) * (size_t)(padded / group)) == 0;
        }
        free(y_nibbles);
        free(y_scales);
        CHECK(same, "int4 -> int4: merged %s is not the int4 quantization of the merged floats", t->entry.name);
        CHECK(!same_q4(x, y), "int4 -> int4: merged %s kept the base's blocks", t->entry.name);
        requantized++;
        free(row);
        free(nibbles);
        free(scales);
    }
    CHECK(copied == 16 - 9 && requantized == 9, "int4 -> int4: %d tensors copied, %d quantized again", copied, requantized);
    free(plan.tensors);
    free_source(&q4);
    free_source(&f32);
    free_source(&base);
    fake_free(&adapter);
}

// ---- refusals: open_lora (or the writer) exits non-zero with the expected message

static char last_message[2048];

static int refused(const char *dir, const char *output, const char *want) {
    char err[4096];
    path_in_work_dir(err, sizeof err, "refusal.err");
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDERR_FILENO);
        Source src = { 0 };
        open_random(&src, MODEL, MODEL_SEED);
        open_lora(&src, dir);
        if (output) write_checkpoint(&src, output, TYPE_F32, 0, 1);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    FILE *f = fopen(err, "r");
    size_t n = f ? fread(last_message, 1, sizeof last_message - 1, f) : 0;
    last_message[n] = '\0';
    if (f) fclose(f);
    return WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(last_message, want) != NULL;
}

typedef struct {
    const char *name, *want;
    AdapterSpec spec;
    void (*spoil)(FakeFile *f);   // changes the good tensors; NULL: keeps them
} BadAdapter;

static void reshape(FakeFile *f, const char *name, int rows, int cols) {
    FakeTensor *t = fake_find(f, name);
    free(t->values);
    t->rows = rows;
    t->cols = cols;
    t->values = calloc((size_t)rows * cols, sizeof(float));
}

static void narrow_q_a(FakeFile *f) { reshape(f, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 4, 32); }
static void tall_k_b(FakeFile *f) { reshape(f, "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight", 32, 4); }
static void rank3_v_b(FakeFile *f) { reshape(f, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", 16, 3); }
static void drop_o_b(FakeFile *f) { fake_remove(f, "base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight"); }
static void layer2(FakeFile *f) {
    snprintf(fake_find(f, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")->name, sizeof f->tensors[0].name,
             "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight");
}
static void lm_head(FakeFile *f) { fake_add(f, "base_model.model.lm_head.lora_A.weight", "F32", 4, 40); }
static void nan_in_a(FakeFile *f) { fake_find(f, "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight")->values[5] = NAN; }

static void test_refusals(void) {
    const AdapterSpec good = { .rank = 4, .alpha = 8, .dtype = "F32" };
    AdapterSpec r8 = good, dora = good, bias = good, fan = good, prefix = good, unknown = good, unlisted = good;
    r8.rank = 8;   // the config says 8, the tensors (made for `good`) have rank 4
    dora.use_dora = "true";
    bias.bias = "\"all\"";
    fan.fan_in_fan_out = "true";
    prefix.peft_type = "\"PREFIX_TUNING\"";
    unknown.targets = "[\"q_proj\", \"v_proj\", \"lm_head\"]";
    unlisted.targets = "[\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"down_proj\"]";
    const BadAdapter cases[] = {
        { "bad-a-shape", "layer 0 q_proj: lora_A is 4x32 but the model's wq takes 40 inputs", good, narrow_q_a },
        { "bad-b-shape", "layer 0 k_proj: lora_B is 32x4 but the model's wk has 16 outputs", good, tall_k_b },
        { "bad-rank-ab", "lora_B is 16x3 (rank 3)", good, rank3_v_b },
        { "bad-rank-config", "adapter_config.json says r = 8", r8, NULL },
        { "bad-missing-b", "layer 0 o_proj: lora_A is there but lora_B is missing", good, drop_o_b },
        { "bad-layer", "layer 2 q_proj: the model has 2 layers", good, layer2 },
        { "bad-target", "target module lm_head is not one export merges", unknown, NULL },
        { "bad-unlisted", "adapts up_proj, which target_modules does not list", unlisted, NULL },
        { "bad-tensor-name", "lm_head.lora_A.weight is not a LoRA matrix", good, lm_head },
        { "bad-nan", "non-finite value", good, nan_in_a },
        { "bad-dora", "DoRA", dora, NULL },
        { "bad-bias", "bias is all", bias, NULL },
        { "bad-fan-in-fan-out", "fan_in_fan_out is true", fan, NULL },
        { "bad-peft-type", "peft_type is PREFIX_TUNING", prefix, NULL },
    };
    Source model = { 0 };
    open_random(&model, MODEL, MODEL_SEED);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[4096];
        FakeFile f = make_adapter(&model, &good, 5);
        if (cases[i].spoil) cases[i].spoil(&f);
        write_adapter(dir, sizeof dir, cases[i].name, &cases[i].spec, &f);
        CHECK(refused(dir, NULL, cases[i].want), "%s: expected a refusal saying '%s', got: %s", cases[i].name, cases[i].want,
              last_message);
        fake_free(&f);
    }

    char dir[4096], path[4096];
    path_in_work_dir(dir, sizeof dir, "bad-nonexistent");
    CHECK(refused(dir, NULL, "no adapter_config.json"), "a missing adapter directory: got %s", last_message);
    path_in_work_dir(dir, sizeof dir, "bad-no-safetensors");
    mkdir(dir, 0755);
    write_adapter_config(dir, &good);
    CHECK(refused(dir, NULL, "no adapter_model.safetensors"), "a missing adapter_model.safetensors: got %s", last_message);

    // the adapter's files are inputs: exporting over one is refused and leaves it as it was
    FakeFile f = make_adapter(&model, &good, 5);
    write_adapter(dir, sizeof dir, "overwrite", &good, &f);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    struct stat before, after;
    stat(path, &before);
    CHECK(refused(dir, path, "never overwrites its input"), "exporting over the adapter's safetensors: got %s", last_message);
    CHECK(stat(path, &after) == 0 && after.st_size == before.st_size && after.st_ino == before.st_ino,
          "the adapter's safetensors changed");
    fake_free(&f);
    free_source(&model);
}

// ---- the export program

static void test_command_line(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : ".";
    char program[4096], command[16384], dir[4096], output[4096], err[4096];
    snprintf(program, sizeof program, "%s/export", bin);
    if (access(program, X_OK) != 0) {
        SKIP("%s is not built: the --lora command line is not tested", program);
        return;
    }
    const AdapterSpec spec = { .rank = 4, .alpha = 16, .dtype = "BF16" };
    Source model = { 0 };
    open_random(&model, MODEL, MODEL_SEED);
    FakeFile f = make_adapter(&model, &spec, 8);
    write_adapter(dir, sizeof dir, "cli-adapter", &spec, &f);
    path_in_work_dir(output, sizeof output, "cli.q4.bin");
    path_in_work_dir(err, sizeof err, "cli.err");
    snprintf(command, sizeof command, "%s --random %s --seed %d --lora %s %s 2>%s", program, MODEL, MODEL_SEED, dir, output, err);
    int status = system(command);
    FILE *e = fopen(err, "r");
    size_t n = e ? fread(last_message, 1, sizeof last_message - 1, e) : 0;
    last_message[n] = '\0';
    if (e) fclose(e);
    CHECK(status == 0 && strstr(last_message, "random weights + LoRA r 4 alpha 16, 9 tensors merged"),
          "export --lora: exit %d, summary: %s", status, last_message);
    Transformer t;
    build_transformer(&t, output, 4, 1);
    const float *logits = forward(&t, 1, 0);
    int finite = 1;
    for (int i = 0; i < t.config.vocab_size; i++) finite &= isfinite(logits[i]);
    CHECK(finite, "the merged int4 model's logits are not finite");
    free_transformer(&t);

    fake_find(&f, "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight")->cols = 39;
    write_adapter(dir, sizeof dir, "cli-bad-adapter", &spec, &f);
    path_in_work_dir(output, sizeof output, "cli-bad.q4.bin");
    snprintf(command, sizeof command, "%s -q --random %s --lora %s %s 2>/dev/null", program, MODEL, dir, output);
    status = system(command);
    CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0 && access(output, F_OK) != 0,
          "export with a misshapen adapter: exit status %d, output %s", status, access(output, F_OK) == 0 ? "written" : "absent");
    fake_free(&f);
    free_source(&model);
}

int main(void) {
    if (!mkdtemp(work_dir)) { perror("mkdtemp"); return 1; }
    test_merge("f32", &(AdapterSpec){ .rank = 4, .alpha = 8, .dtype = "F32" }, "random weights + LoRA r 4 alpha 8, 9 tensors merged");
    test_merge("f16-rslora", &(AdapterSpec){ .rank = 4, .alpha = 6, .rslora = 1, .dtype = "F16" }, "LoRA r 4 alpha 6 rslora");
    test_merge("bf16", &(AdapterSpec){ .rank = 2, .alpha = 3, .dtype = "BF16" }, "LoRA r 2 alpha 3,");
    test_hf_convention();
    test_int4_input();
    test_refusals();
    test_command_line();
    char command[4200];
    snprintf(command, sizeof command, "rm -rf %s", work_dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", work_dir);
    return check_summary("test_lora");
}
