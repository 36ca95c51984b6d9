/*
convert/calibrate.h — a calibration text through the model (export --calib):
the text as tokens of the model's own tokenizer, a walk over it in fp32 one
layer at a time, and what the walk serves: Block Influence, to rank the
layers --drop-layers auto:N removes (ShortGPT), and calibrated rounding, each
weight's error weighted by its input channel's activity, with AWQ's scaling
(--awq) or SmoothQuant's (--smooth), and GPTQ and pruning (--gptq, --prune;
convert/gptq.h does each matrix) layer by layer, as a Source wrapper.

What it is not: the run-time forward pass (runq.c): this one is fp32, plain
and only as fast as export needs.

Include after: runq.c, json.h, convert/quantize.h, convert/source.h, convert/tokenizers.h, convert/sources.h, convert/write_checkpoint.h, convert/open_source.h, convert/gptq.h.
*/

#ifndef EDGE_CONVERT_CALIBRATE_H
#define EDGE_CONVERT_CALIBRATE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

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

// A document's tokens, BOS first when add_bos (a chat reply has none); buffer
// and segment hold length + 3 ints and length + 1 bytes.
static void encode_document(const Tokenizer *tok, const char *doc, size_t length, int add_bos, TokenStream *out,
                            int *buffer, char *segment) {
    size_t start = 0;
    int first = add_bos;
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
    int *buffer = xcalloc((tok->normalize_nfc ? 3 : 1) * length + 3, sizeof(int), "token buffer");   // encode_capacity of any segment
    char *segment = xcalloc(length + 1, 1, "segment");
    size_t at = 0;
    while (at < length) {
        while (at < length && (text[at] == '\n' || text[at] == '\r')) at++;   // blank lines between documents
        size_t end = at;
        while (end < length && !(text[end] == '\n' && end + 1 < length && text[end + 1] == '\n')) end++;
        size_t doc_end = end;
        while (doc_end > at && (text[doc_end - 1] == '\n' || text[doc_end - 1] == '\r' || text[doc_end - 1] == ' '))
            doc_end--;
        if (doc_end > at) encode_document(tok, text + at, doc_end - at, 1, &out, buffer, segment);
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
    float *maxima;           // (windows, row) the largest |x_c| of each window (SmoothQuant)
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
    float *maxima = r->maxima + s->window * r->row + r->offset[group];
    for (int t = 0; t < T; t++)
        for (int c = 0; c < width; c++) {
            double v = x[(size_t)t * width + c];
            squares[c] += v * v;
            magnitudes[c] += fabs(v);
            if (fabsf(x[(size_t)t * width + c]) > maxima[c]) maxima[c] = fabsf(x[(size_t)t * width + c]);
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
        rope(s->q + (size_t)t * q_dim, h->n_heads, h->head_dim, h->head_dim, s->rope_cos + t * half, s->rope_sin + t * half);
        rope(s->k + (size_t)t * kv_dim, h->n_kv_heads, h->head_dim, h->head_dim, s->rope_cos + t * half, s->rope_sin + t * half);
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
    float *freq = xcalloc((size_t)half, sizeof(float), "RoPE table");
    rope_frequencies(freq, h->rope_theta, h->head_dim, src->rope_freqs);
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
    if (source_needs_settings(src))   // layer_forward_f32 computes Llama's layer only
        die("--calib and --drop-layers auto: walk the model's layers with Llama's math, and this model is %s with its "
            "own (biases, norms, windows or RoPE of runq.c's version 4): not calibrated yet; export it without them",
            architecture_names[src->settings.architecture]);
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
        r->maxima = xcalloc(w.n_windows * r->row, sizeof(float), "input statistics");
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
        memset(r->maxima, 0, walk->n_windows * r->row * sizeof(float));
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

// Layer l again, from the stream as it was before it (before: (windows, T,
// dim)), with other weights (the layer as written: GPTQ's, pruned), nothing
// recorded: the stream the next layer gets is the written model's.
static void rewalk_layer(Walk *walk, int l, float *const *w, const float *before) {
    memcpy(walk->stream, before, walk->n_windows * walk->T * walk->src->header.dim * sizeof(float));
    int row = walk->record.row;
    walk->record.row = 0;   // layer_task records nothing
    LayerTask task = { walk, w, walk->src->ffn_dim[l] };
    pool_run(walk->pool, layer_task, &task);
    walk->record.row = row;
}

// The largest |x_c| of a recorded group over the walk's tokens, into out (width,).
static void recorded_max(const Walk *walk, int group, float *out) {
    const InputRecord *r = &walk->record;
    for (int c = 0; c < r->width[group]; c++) {
        out[c] = 0;
        for (size_t window = 0; window < walk->n_windows; window++)
            out[c] = fmaxf(out[c], r->maxima[window * r->row + r->offset[group] + c]);
    }
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

// After the last layer: the mean x_c^2 of the final norm's output, the
// classifier's input, into out (dim,); and when all is not NULL, every
// token's (n_tokens, dim) (GPTQ's classifier).
static void walk_classifier_inputs(Walk *walk, float *out, float *all) {
    const FileHeader *h = &walk->src->header;
    int D = h->dim;
    const PlannedTensor *norm = NULL;
    for (int i = 0; i < walk->plan.count; i++) if (walk->plan.tensors[i].kind == K_NORM) norm = &walk->plan.tensors[i];
    float *weight = read_tensor_f32(walk->src, norm), *xn = xcalloc((size_t)D, sizeof(float), "activations");
    double *sum = xcalloc((size_t)D, sizeof(double), "input statistics");
    for (long i = 0; i < walk->n_tokens; i++) {
        rmsnorm(xn, walk->stream + (size_t)i * D, weight, D, h->norm_eps);
        for (int c = 0; c < D; c++) sum[c] += (double)xn[c] * xn[c];
        if (all) memcpy(all + (size_t)i * D, xn, (size_t)D * sizeof(float));
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
    free(walk->record.maxima);
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

// The channels of a KV head's query heads made to share one value: their
// mean (AWQ's activity) or their largest (SmoothQuant's maxima).
static void tie_query_heads(const FileHeader *h, float *values, int largest) {
    int hd = h->head_dim, group = h->n_heads / h->n_kv_heads;
    for (int kv = 0; kv < h->n_kv_heads; kv++)
        for (int d = 0; d < hd; d++) {
            float sum = 0, most = 0;
            for (int k = 0; k < group; k++) {
                sum += values[(kv * group + k) * hd + d];
                most = fmaxf(most, values[(kv * group + k) * hd + d]);
            }
            for (int k = 0; k < group; k++) values[(kv * group + k) * hd + d] = largest ? most : sum / (float)group;
        }
}

// What export --calib does with the text (export.c's options).
typedef struct {
    int weighted;            // rounding errors weighted by each input channel's mean x^2 (else AWQ alone)
    int awq;                 // AWQ's scales (--awq)
    float smooth;            // SmoothQuant's alpha (--smooth; 0: none)
    int gptq;                // GPTQ (--gptq)
    Pruning prune;           // Wanda or SparseGPT (--prune, --sparsity): the decoder layers' matrices
} CalibrationChoices;

static const int group_kinds[N_INPUT_GROUPS][3] = { { K_WQ, K_WK, K_WV }, { K_WO }, { K_W1, K_W3 }, { K_W2 } };
static const int group_counts[N_INPUT_GROUPS] = { 3, 1, 2, 1 };

// AWQ's samples of input group g, n of them: AWQ_SAMPLES tokens spread over
// the windows. They are the walk's own when it keeps that many; GPTQ's walk
// keeps every token, and the same positions are picked out (a copy, *copy set).
static float *awq_samples(const Walk *walk, int g, int *n, int *copy) {
    const InputRecord *r = &walk->record;
    int per_window = (int)((AWQ_SAMPLES + walk->n_windows - 1) / walk->n_windows), width = r->width[g];
    if (per_window > walk->T) per_window = walk->T;
    *n = (int)walk->n_windows * per_window;
    *copy = r->per_window != per_window;
    if (!*copy) return r->samples[g];
    if (r->per_window != walk->T) die("internal error: the walk kept %d tokens a window", r->per_window);
    float *x = xcalloc((size_t)*n * width, sizeof(float), "AWQ");
    for (size_t window = 0; window < walk->n_windows; window++)
        for (int j = 0; j < per_window; j++)
            memcpy(x + (window * per_window + j) * width, r->samples[g] + (window * walk->T + (size_t)(j * walk->T / per_window)) * width,
                   (size_t)width * sizeof(float));
    return x;
}

// ---- SmoothQuant (Xiao et al. 2023; export --smooth ALPHA). int8
// activations lose their precision to the few channels far larger than the
// rest; s_c = max|x_c|^alpha / max|w_c|^(1 - alpha), max|w_c| the largest
// weight of column c in the matrices that read the input, moves part of that
// range into the weights: the columns are scaled up by s_c and the input down
// by s_c where it is made, folded as AWQ's scales are (the function in fp32 is
// unchanged). Like the paper, the inputs the norms make are smoothed (wq wk
// wv, w1 w3); the other two (wo's, w2's) are not: see docs/QUANTIZATION.md.
static int smoothed_group(int g) { return g == IN_ATTENTION || g == IN_FFN; }

static void smooth_scales(const Walk *walk, int l, int g, float *const *w, float alpha, float *scale) {
    int width = walk->record.width[g];
    float *act = xcalloc((size_t)width, sizeof(float), "SmoothQuant"), *wmax = xcalloc((size_t)width, sizeof(float), "SmoothQuant");
    recorded_max(walk, g, act);
    for (int i = 0; i < group_counts[g]; i++) {
        const float *m = w[group_kinds[g][i]];
        int rows = (int)planned_tensor(&walk->plan, group_kinds[g][i], l)->entry.rows;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < width; c++) wmax[c] = fmaxf(wmax[c], fabsf(m[(size_t)r * width + c]));
    }
    for (int c = 0; c < width; c++)
        scale[c] = act[c] > 0 && wmax[c] > 0 ? (float)(pow(act[c], alpha) / pow(wmax[c], 1 - alpha)) : 1.0f;
    free(act);
    free(wmax);
}

// Layer l's importance per input group, and its scales (AWQ's or
// SmoothQuant's), from the walk's record of its inputs; w: its fp32 tensors;
// target: the types export writes (an fp32 export searches for int4 of group 32).
static void calibrate_layer(Walk *walk, int l, float *const *w, const Plan *target, const CalibrationChoices *choices,
                            LayerCalibration *out) {
    const InputRecord *r = &walk->record;
    for (int g = 0; g < N_INPUT_GROUPS; g++) {
        int width = r->width[g];
        if (choices->weighted) {
            out->importance[g] = xcalloc((size_t)width, sizeof(float), "importance");
            recorded_mean(walk, g, 1, out->importance[g]);
        }
        if (choices->smooth > 0 && smoothed_group(g)) {
            out->scale[g] = xcalloc((size_t)width, sizeof(float), "SmoothQuant");
            smooth_scales(walk, l, g, w, choices->smooth, out->scale[g]);
        }
        if (choices->awq) {
            RoundedMatrix m[3];
            for (int i = 0; i < group_counts[g]; i++) {
                const TensorEntry *e = &planned_tensor(target, group_kinds[g][i], l)->entry;
                int quantized = is_quantized(e->type);
                m[i] = (RoundedMatrix){ w[group_kinds[g][i]], (int)e->rows, (int)e->cols, quantized ? (int)e->type : TYPE_Q4,
                                        quantized ? (int)e->group_size : Q_BLOCK };
            }
            float *activity = xcalloc((size_t)width, sizeof(float), "AWQ");
            recorded_mean(walk, g, 0, activity);
            if (g == IN_ATTENTION_OUT) tie_query_heads(&walk->src->header, activity, 0);
            out->scale[g] = xcalloc((size_t)width, sizeof(float), "AWQ");
            int n, copy;
            float *x = awq_samples(walk, g, &n, &copy);
            out->alpha[g] = awq_search(walk, m, group_counts[g], activity, out->importance[g], x, n, out->scale[g]);
            if (copy) free(x);
            free(activity);
        }
        for (int c = 0; choices->weighted && out->scale[g] && c < width; c++)
            out->importance[g][c] /= out->scale[g][c] * out->scale[g][c];   // of x / s
    }
}

// ---- Source: the wrapped source's tensors with the scales folded in (AWQ's
// or SmoothQuant's), each matrix's importance for quantize_row, and the
// matrices GPTQ or pruning did from the spill.

typedef struct {
    Source base;
    LayerCalibration *layers;       // (n_layers,)
    float *classifier_importance;   // (dim,) mean x_c^2 of the final norm's output (NULL: unweighted)
    int scaled, quiet;       // scaled: AWQ's or SmoothQuant's scales folded in
    int copied;              // tensors whose codes were copied from the source: they are not re-rounded
    int spilled;             // GPTQ or pruning wrote the spill
    Spill spill;
    char description[300];
} CalibratedSource;

// Rows [begin, end) of t times the scales: a matrix's columns up by its
// input's s_c; what makes an input down by it (the norms' weights; wv's rows
// for wo, w3's rows for w2). An input group without scales is left alone.
static void fold_awq_scales(const CalibratedSource *cs, const PlannedTensor *t, int begin, int end, float *out) {
    const LayerCalibration *lc = &cs->layers[t->layer];
    const FileHeader *h = &cs->base.header;
    int cols = (int)t->entry.cols, g = input_group(t->kind);
    const float *attention = lc->scale[IN_ATTENTION], *attention_out = lc->scale[IN_ATTENTION_OUT];
    const float *ffn = lc->scale[IN_FFN], *ffn_down = lc->scale[IN_FFN_DOWN];
    for (int r = begin; r < end; r++) {
        float *row = out + (size_t)(r - begin) * cols;
        if (g >= 0 && lc->scale[g]) for (int c = 0; c < cols; c++) row[c] *= lc->scale[g][c];
        if (t->kind == K_ATTN_NORM && attention) for (int c = 0; c < cols; c++) row[c] /= attention[c];
        if (t->kind == K_FFN_NORM && ffn) for (int c = 0; c < cols; c++) row[c] /= ffn[c];
        if (t->kind == K_WV && attention_out) for (int c = 0; c < cols; c++) row[c] /= attention_out[wv_row_channel(h, r)];
        if (t->kind == K_W3 && ffn_down) for (int c = 0; c < cols; c++) row[c] /= ffn_down[r];
    }
}

static const SpilledTensor *spilled_tensor(const CalibratedSource *cs, const PlannedTensor *t) {
    return cs->spilled ? spill_find(&cs->spill, t->kind, t->layer) : NULL;
}

static void calibrated_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    CalibratedSource *cs = src->impl;
    const SpilledTensor *spilled = spilled_tensor(cs, t);
    if (spilled) { spill_read_rows(&cs->spill, spilled, begin, end, out); return; }
    cs->base.read_rows(&cs->base, t, begin, end, out);
    if (cs->scaled && t->layer >= 0) fold_awq_scales(cs, t, begin, end, out);
}

static int calibrated_read_codes(Source *src, const PlannedTensor *t, int type, int group_size, int begin, int end,
                                 uint8_t *codes, uint16_t *scales) {
    CalibratedSource *cs = src->impl;
    const SpilledTensor *spilled = spilled_tensor(cs, t);
    if (spilled) return spill_read_codes(&cs->spill, spilled, type, group_size, begin, end, codes, scales);
    if ((cs->scaled && t->layer >= 0) || !cs->base.read_codes) return 0;
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
    if (cs->spilled) spill_close(&cs->spill);
    free(cs);   // the shapes (ffn_dim) stay the wrapped source's, which free_source frees
}

// ---- GPTQ and pruning, layer by layer (export --gptq, --prune). Each matrix
// of layer l is done by convert/gptq.h against the Hessian of the inputs the
// walk recorded for it (every token of the text; divided by the layer's
// scales when AWQ or SmoothQuant fold them in, a scaled matrix reading x / s),
// and the results go to the spill. When pruning, the layer as written
// (folded, pruned, rounded) is walked again, so that layer l + 1 is done on
// the inputs the pruned model gives it (the papers' sequential order); GPTQ
// alone takes the fp32 model's inputs. Each is what won by KL on both real
// models (docs/QUANTIZATION.md). Embeddings and the classifier are not pruned.

static int compresses(const CalibrationChoices *c) { return c->gptq || c->prune.method != PRUNE_NONE; }
static int walks_written_layers(const CalibrationChoices *c) { return c->prune.method != PRUNE_NONE; }

// How export writes matrix t: its type (f32 for an fp32 output: pruned only).
static MatrixJob matrix_job(const PlannedTensor *t, const CalibrationChoices *choices, int prune) {
    int quantized = is_quantized(t->entry.type);
    if (t->entry.type == TYPE_Q4S && prune && choices->prune.method && !choices->prune.two_of_four)
        die("%s is q4s, which keeps two of every four weights; --sparsity %g prunes a share: give --sparsity 2:4",
            t->entry.name, choices->prune.fraction);
    MatrixJob job = { quantized ? (int)t->entry.type : TYPE_F32, quantized ? (int)t->entry.group_size : Q_BLOCK,
                      choices->gptq && quantized, prune ? choices->prune : (Pruning){ PRUNE_NONE, 0, 0 } };
    return job;
}

// w: the layer's fp32 tensors, by kind; on return, the layer as written.
static void compress_layer(Walk *walk, int l, float **w, const Plan *target, CalibratedSource *cs,
                           const CalibrationChoices *choices) {
    const LayerCalibration *lc = &cs->layers[l];
    const InputRecord *r = &walk->record;
    for (int i = 0; i < walk->plan.count; i++)   // the scales folded in, as export will read the tensors
        if (walk->plan.tensors[i].layer == l && cs->scaled)
            fold_awq_scales(cs, &walk->plan.tensors[i], 0, (int)walk->plan.tensors[i].entry.rows, w[walk->plan.tensors[i].kind]);
    for (int g = 0; g < N_INPUT_GROUPS; g++) {
        int width = r->width[g], n = (int)walk->n_windows * r->per_window;
        const float *scale = lc->scale[g];
        float *x = r->samples[g], *importance = xcalloc((size_t)width, sizeof(float), "importance");
        recorded_mean(walk, g, 1, importance);
        if (scale) {   // the inputs a scaled matrix reads: x / s
            x = xcalloc((size_t)n * width, sizeof(float), "calibration samples");
            for (size_t i = 0; i < (size_t)n * width; i++) x[i] = r->samples[g][i] / scale[i % width];
            for (int c = 0; c < width; c++) importance[c] /= scale[c] * scale[c];
        }
        InverseHessian ih = { 0 };   // one for the group's matrices, when one of them needs it
        for (int i = 0; i < group_counts[g] && !ih.u; i++) {
            MatrixJob job = matrix_job(planned_tensor(target, group_kinds[g][i], l), choices, 1);
            if (needs_inverse_hessian(&job))
                ih = invert_hessian(walk->pool, input_hessian(walk->pool, x, n, width), width,
                                    planned_tensor(target, group_kinds[g][i], l)->entry.name);
        }
        for (int i = 0; i < group_counts[g]; i++) {
            const PlannedTensor *t = planned_tensor(target, group_kinds[g][i], l);
            MatrixJob job = matrix_job(t, choices, 1);
            int rows = (int)t->entry.rows, quantized = is_quantized((uint32_t)job.type);
            size_t padded = round_up((size_t)width, (size_t)job.group_size);
            uint8_t *codes = quantized ? xcalloc((size_t)rows * row_code_bytes(quant_layout((uint32_t)job.type), padded), 1, "codes") : NULL;
            uint16_t *scales = quantized ? xcalloc((size_t)rows * (padded / job.group_size), sizeof(uint16_t), "scales") : NULL;
            round_matrix(walk->pool, w[t->kind], rows, width, ih.u ? &ih : NULL, importance, &job, codes, scales);
            spill_put(&cs->spill, t->kind, l, &job, rows, width, w[t->kind], codes, scales);
            free(codes);
            free(scales);
        }
        free_inverse_hessian(&ih);
        free(importance);
        if (x != r->samples[g]) free(x);
    }
}

// GPTQ's classifier (the tied embeddings too): against the final norm's
// outputs, all (n_tokens, dim) of them.
static void compress_classifier(Walk *walk, const Plan *target, CalibratedSource *cs, const CalibrationChoices *choices,
                                const float *all, const float *importance) {
    int tied = (walk->src->header.flags & FLAG_TIED_CLASSIFIER) != 0, D = walk->src->header.dim;
    const PlannedTensor *t = planned_tensor(target, tied ? K_EMBED : K_OUTPUT, -1);
    MatrixJob job = matrix_job(t, choices, 0);
    if (!job.gptq) return;
    int rows = (int)t->entry.rows;
    float *w = read_tensor_f32(walk->src, planned_tensor(&walk->plan, t->kind, -1));
    size_t padded = round_up((size_t)D, (size_t)job.group_size);
    uint8_t *codes = xcalloc((size_t)rows * row_code_bytes(quant_layout((uint32_t)job.type), padded), 1, "codes");
    uint16_t *scales = xcalloc((size_t)rows * (padded / job.group_size), sizeof(uint16_t), "scales");
    InverseHessian ih = invert_hessian(walk->pool, input_hessian(walk->pool, all, (int)walk->n_tokens, D), D, t->entry.name);
    round_matrix(walk->pool, w, rows, D, &ih, importance, &job, codes, scales);
    spill_put(&cs->spill, t->kind, -1, &job, rows, D, w, codes, scales);
    free_inverse_hessian(&ih);
    free(codes);
    free(scales);
    free(w);
}

static void print_choices(const CalibratedSource *cs, const Walk *walk, const char *what, const CalibrationChoices *c) {
    int L = walk->src->header.n_layers;
    fprintf(stderr, "export: rounding calibrated on %ld tokens of %s (%s)%s\n", walk->n_tokens, what,
            c->weighted ? "errors weighted by each input channel's mean x^2" : "errors unweighted",
            c->awq ? "; AWQ's a per layer (qkv, o, gate/up, down):" : "");
    for (int l = 0; c->awq && l < L; l++)
        fprintf(stderr, "  layer %3d  %.1f %.1f %.1f %.1f\n", l, cs->layers[l].alpha[IN_ATTENTION],
                cs->layers[l].alpha[IN_ATTENTION_OUT], cs->layers[l].alpha[IN_FFN], cs->layers[l].alpha[IN_FFN_DOWN]);
    if (c->smooth > 0) fprintf(stderr, "export: SmoothQuant's scales (alpha %.2f) folded into the norms\n", c->smooth);
    if (compresses(c))
        fprintf(stderr, "export: %s%s%s layer by layer, each on the inputs of the %s layers before it\n",
                c->gptq ? "GPTQ" : "", c->gptq && c->prune.method ? " and " : "",
                c->prune.method == PRUNE_WANDA ? "Wanda's pruning" : c->prune.method == PRUNE_SPARSEGPT ? "SparseGPT's pruning" : "",
                walks_written_layers(c) ? "pruned" : "fp32");
}

// Wraps src so that its matrices are rounded for the text `tokens` (windows
// of T, at most max_windows; what: the text's name) - target: the types they
// will be written as; choices: what is done with the text.
static void calibrate_source(Source *src, const TokenStream *tokens, int T, int max_windows, const char *what,
                             TypeRules *target_rules, const CalibrationChoices *choices, int quiet) {
    int compress = compresses(choices);
    Walk walk = walk_start(src, tokens, T, max_windows, 1, compress ? INT_MAX / 2 : choices->awq ? AWQ_SAMPLES : 0, quiet);
    Plan target = make_plan_with(src, target_rules);
    int L = src->header.n_layers, D = src->header.dim;
    CalibratedSource *cs = xcalloc(1, sizeof *cs, "calibration");
    cs->base = *src;
    cs->scaled = choices->awq || choices->smooth > 0;
    cs->quiet = quiet;
    cs->layers = xcalloc((size_t)L, sizeof(LayerCalibration), "calibration");
    int rewalk = walks_written_layers(choices);
    float *before = rewalk ? xcalloc(walk.n_windows * T * D, sizeof(float), "residual stream") : NULL;
    if (compress) { spill_open(&cs->spill); cs->spilled = 1; }
    for (int l = 0; l < L; l++) {
        float *w[K_OUTPUT + 1];
        read_layer_f32(&walk, l, w);
        if (rewalk) memcpy(before, walk.stream, walk.n_windows * T * D * sizeof(float));
        walk_layer(&walk, l, w);
        calibrate_layer(&walk, l, w, &target, choices, &cs->layers[l]);
        if (compress) compress_layer(&walk, l, w, &target, cs, choices);
        if (rewalk) rewalk_layer(&walk, l, w, before);
        free_layer_f32(w);
    }
    if (choices->weighted || choices->gptq) {
        float *all = choices->gptq ? xcalloc((size_t)walk.n_tokens * D, sizeof(float), "the classifier's inputs") : NULL;
        cs->classifier_importance = xcalloc((size_t)D, sizeof(float), "importance");
        walk_classifier_inputs(&walk, cs->classifier_importance, all);
        if (choices->gptq) compress_classifier(&walk, &target, cs, choices, all, cs->classifier_importance);
        free(all);
    }
    if (!quiet) print_choices(cs, &walk, what, choices);
    walk_end(&walk);
    free(target.tensors);
    free(before);
    const char *pruned = choices->prune.method == PRUNE_WANDA ? ", Wanda" : choices->prune.method == PRUNE_SPARSEGPT ? ", SparseGPT" : "";
    snprintf(cs->description, sizeof cs->description, "%s, rounding calibrated on %s%s%s%s%s", src->description, what,
             choices->awq ? " with AWQ" : "", choices->smooth > 0 ? " with SmoothQuant" : "", choices->gptq ? ", GPTQ" : "", pruned);
    src->impl = cs;
    src->read_rows = calibrated_read_rows;
    src->read_codes = calibrated_read_codes;
    src->check_tensor = calibrated_check_tensor;
    src->importance = choices->weighted ? calibrated_importance : NULL;
    src->close = calibrated_close;
    src->description = cs->description;
}

// export --calib FILE [--awq] [--smooth A] [--gptq] [--prune M]: calibrate_source on the text's tokens.
static void open_calibrated(Source *src, const CalibrationText *calib, TypeRules *target_rules,
                            const CalibrationChoices *choices, int quiet) {
    int T;
    TokenStream tokens = calibration_tokens(src, calib, &T, "calibrated rounding");
    calibrate_source(src, &tokens, T, calib->windows, calib->path, target_rules, choices, quiet);
    free(tokens.tokens);
}

#pragma GCC diagnostic pop
#endif
