/*
convert/write_checkpoint.h — writing an Edge LLM checkpoint from a Source:
which type each matrix gets (--bits, --recipe, --tensor-type), the plan of
the file, and its tensors quantized in chunks of rows on every core and
written in place, into a temporary file renamed at the end (an interrupted
export leaves no half file). Also the adapter file of export --adapter.

What it is not: the format's specification, which is runq.c's ("The
checkpoint format"), nor the quantizer (convert/quantize.h).

Include after: runq.c, json.h, convert/quantize.h, convert/source.h, convert/lora.h.
*/

#ifndef EDGE_CONVERT_WRITE_CHECKPOINT_H
#define EDGE_CONVERT_WRITE_CHECKPOINT_H
#include <signal.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

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
    uint32_t version;        // the lowest that describes the plan (plan_version)
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

// q4s's group when none is named: 64 weights, of which it keeps 32, as many
// as int4's group of 32 holds. The same KL as group 32 (SparseGPT 2:4 on the
// default model: 1.0826 against 1.0845; stories260K 2.2132 against 2.2269)
// in 3.25 bits a weight instead of 3.5, and decoding reads 7 % fewer bytes.
#define Q4S_DEFAULT_GROUP 64

#define MAX_OVERRIDES 64
typedef struct {
    int type, group_size;    // every matrix's (TYPE_F32: an fp32 checkpoint)
    const Recipe *recipe;    // NULL: none
    TypeOverride overrides[MAX_OVERRIDES];
    int n_overrides;
    int sparse_int4;         // 2:4 pruning (export --sparsity 2:4): the decoder layers' int4 matrices become q4s
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
    if (rules->sparse_int4 && t->layer >= 0 && *type == TYPE_Q4) {
        *type = TYPE_Q4S;
        if (*group_size == Q_BLOCK) *group_size = Q4S_DEFAULT_GROUP;
    }
}

static int is_matrix_kind(int kind) { return kind != K_TOKENIZER && !is_vector_kind(kind); }

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
    uint64_t offset = tensor_table_offset(plan->version, n_layers) + sizeof(TensorEntry) * (size_t)plan->count;
    for (int i = 0; i < plan->count; i++) {
        offset = round_up(offset, TENSOR_ALIGNMENT);
        plan->tensors[i].entry.offset = offset;
        offset += plan->tensors[i].entry.nbytes;
    }
    plan->file_size = offset;
}

// The lowest version that describes the plan: a family beyond Llama needs 4
// (its settings, layer kinds and tensors), so does Q4S; any other quantized
// matrix 3 (Q4 in tiles; Q8, Q3, Q2); a reader of version 1 would run
// without rope_freqs' scaling.
static uint32_t plan_version(const Source *src, const Plan *plan) {
    uint32_t version = source_needs_settings(src) ? VERSION_SETTINGS : src->rope_freqs ? VERSION_ROPE_FREQS : 1;
    for (int i = 0; i < plan->count; i++) {
        uint32_t type = plan->tensors[i].entry.type, needs = is_quantized(type) ? type_version(type) : 1;
        if (is_quantized(type) && needs < VERSION_Q4_TILES) needs = VERSION_Q4_TILES;   // Q4 in tiles
        if (needs > version) version = needs;
    }
    return version;
}

static Plan make_plan_with(const Source *src, TypeRules *rules) {
    const FileHeader *h = &src->header;
    Plan plan = { 0 };
    uint32_t dim = (uint32_t)h->dim, q_dim = (uint32_t)(h->n_heads * h->head_dim);
    uint32_t kv_dim = (uint32_t)(h->n_kv_heads * h->head_dim);
    char name[TENSOR_NAME_LEN];
    plan_add(&plan, "tok_embeddings", K_EMBED, -1, (uint32_t)h->vocab_size, dim, TYPE_F32, 0);
    for (int l = 0; l < h->n_layers; l++) {
        uint32_t ffn = (uint32_t)src->ffn_dim[l], head = (uint32_t)h->head_dim;
        // flag: the header flag the tensor comes with (0: every model has it)
        struct { const char *field; int kind; uint32_t rows, cols, flag; } layer[] = {
            { "attention_norm", K_ATTN_NORM, 1, dim, 0 }, { "wq", K_WQ, q_dim, dim, 0 }, { "wk", K_WK, kv_dim, dim, 0 },
            { "wv", K_WV, kv_dim, dim, 0 }, { "bq", K_BQ, 1, q_dim, FLAG_QKV_BIAS }, { "bk", K_BK, 1, kv_dim, FLAG_QKV_BIAS },
            { "bv", K_BV, 1, kv_dim, FLAG_QKV_BIAS }, { "q_norm", K_Q_NORM, 1, head, FLAG_QK_NORM },
            { "k_norm", K_K_NORM, 1, head, FLAG_QK_NORM }, { "wo", K_WO, dim, q_dim, 0 },
            { "post_attention_norm", K_POST_ATTN_NORM, 1, dim, FLAG_POST_NORMS }, { "ffn_norm", K_FFN_NORM, 1, dim, 0 },
            { "w1", K_W1, ffn, dim, 0 }, { "w2", K_W2, dim, ffn, 0 }, { "w3", K_W3, ffn, dim, 0 },
            { "post_ffn_norm", K_POST_FFN_NORM, 1, dim, FLAG_POST_NORMS },
        };
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            if (layer[i].flag && !(h->flags & layer[i].flag)) continue;
            snprintf(name, sizeof name, "layers.%d.%s", l, layer[i].field);
            plan_add(&plan, name, layer[i].kind, l, layer[i].rows, layer[i].cols, TYPE_F32, 0);
        }
    }
    plan_add(&plan, "norm", K_NORM, -1, 1, dim, TYPE_F32, 0);
    int tied = (h->flags & FLAG_TIED_CLASSIFIER) != 0;
    if (!tied) plan_add(&plan, "output", K_OUTPUT, -1, (uint32_t)h->vocab_size, dim, TYPE_F32, 0);
    uint32_t half_rotary = (uint32_t)source_rotary_dim(src) / 2;
    if (src->rope_freqs) plan_add(&plan, "rope_freqs", K_ROPE_FREQS, -1, 1, half_rotary, TYPE_F32, 0);
    if (src->rope_freqs_long) plan_add(&plan, "rope_freqs_long", K_ROPE_FREQS_LONG, -1, 1, half_rotary, TYPE_F32, 0);
    if (src->tokenizer) plan_add(&plan, "tokenizer", K_TOKENIZER, -1, 1, (uint32_t)src->tokenizer_size, TYPE_BLOB, 0);
    apply_type_rules(&plan, rules, h->n_layers, tied);
    plan.version = plan_version(src, &plan);
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
    else if (t->kind == K_ROPE_FREQS_LONG) memcpy(values, src->rope_freqs_long, cols * sizeof(float));
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
    uint64_t tiled_rows = round_up((size_t)rows, Q4_TILE_ROWS);   // Q4 and Q4S store whole tiles
    uint8_t *codes = xcalloc((size_t)chunk * row_bytes, 1, "export buffer");
    uint16_t *scales = xcalloc((size_t)chunk * row_scales + 1, sizeof(uint16_t), "export buffer");
    int tiled = tiled_type(e->type, CHECKPOINT_VERSION);   // Q4's and Q4S's chunks are reordered into tiles before they are written
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
            tile_rows(e->type, codes, scales, begin, end, (int)padded, (int)e->group_size, tiled_codes, tiled_scales);
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
            if (!is_computed_kind(plan->tensors[i].kind)) src->check_tensor(src, &plan->tensors[i]);
}

// The header, and from version 4 the settings, then the per-layer tables
// (runq.c's format).
static void write_header_and_layer_tables(int fd, const char *output, const Source *src, const FileHeader *header) {
    write_at(fd, header, sizeof *header, 0, output);
    if (header->version >= VERSION_SETTINGS) write_at(fd, &src->settings, sizeof src->settings, sizeof *header, output);
    uint64_t at = layer_tables_offset(header->version);
    for (int l = 0; l < header->n_layers; l++) write_at(fd, &src->ffn_dim[l], 4, at + 4 * (uint64_t)l, output);
    at += 4 * (uint64_t)header->n_layers;
    for (int l = 0; header->version >= VERSION_SETTINGS && l < header->n_layers; l++) {
        uint32_t kind = source_layer_kind(src, l);
        write_at(fd, &kind, 4, at + 4 * (uint64_t)l, output);
    }
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

// Returns the bits per weight of the quantized matrices written (0: none).
static double write_checkpoint_with(Source *src, const char *output, TypeRules *rules, int quiet) {
    refuse_to_overwrite_inputs(src, output);
    Plan plan = make_plan_with(src, rules);
    check_source_tensors(src, &plan);
    int fd = create_pending_output(output);

    FileHeader header = src->header;
    header.magic = CHECKPOINT_MAGIC;
    header.version = plan.version;
    header.n_tensors = (uint32_t)plan.count;
    write_header_and_layer_tables(fd, output, src, &header);
    uint64_t table = tensor_table_offset(header.version, header.n_layers);
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
    uint32_t version = source_needs_settings(src) ? VERSION_SETTINGS : 1;   // a Llama base's adapter keeps version 1
    uint64_t data_start = round_up(tensor_table_offset(version, n_layers) + sizeof(TensorEntry) * (uint64_t)n, TENSOR_ALIGNMENT);
    for (int i = 0; i < n; i++) table[i].offset += data_start;
    FileHeader header = src->header;
    header.magic = CHECKPOINT_MAGIC;
    header.version = version;
    header.flags |= FLAG_ADAPTER;
    header.n_tensors = (uint32_t)n;
    int fd = create_pending_output(output);
    write_header_and_layer_tables(fd, output, src, &header);
    write_at(fd, table, sizeof(TensorEntry) * (size_t)n, tensor_table_offset(version, n_layers), output);
    for (int i = 0; i < n; i++) write_at(fd, data[i], table[i].nbytes, table[i].offset, output);
    commit_pending_output(fd, output, table[n - 1].offset + table[n - 1].nbytes);
    free(table);
    free(data);
}

#pragma GCC diagnostic pop
#endif
