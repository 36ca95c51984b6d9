/*
train.c — train, distill and LoRA-tune Edge LLM's Llama models in plain C
(libc, libm, pthreads), on the CPU, deterministically for a seed.

    train tokenizer corpus.txt -o tok.bin --vocab 512          learn a BPE tokenizer
    train pretrain  corpus.txt -z tok.bin --shape dim=64,... -o model.bin
    train distill   corpus.txt --teacher teacher.bin -o student.bin --shape ...
    train lora      corpus.txt --base model.bin -o adapter_dir --rank 8

The model is the one runq runs: token embeddings, per layer RMSNorm ->
grouped-query attention with RoPE (consecutive pairs, as llama2.c) -> residual
-> RMSNorm -> SwiGLU feed-forward -> residual, then a final RMSNorm and the
classifier (tied to the embeddings or not). Training writes the fp32 Edge LLM
checkpoint that run.c reads and `export --int4` turns into runq's int4; lora
writes a PEFT adapter (adapter_config.json + adapter_model.safetensors) that
`export --lora` merges.

The corpus is text, or conversations (JSON lines) rendered through a chat
template exactly as runq's chat mode feeds them: the model learns the replies,
and reads the requests without being trained to write them.

How a step runs: a batch of B windows of T+1 tokens is drawn from the corpus
with a generator seeded by (seed, step). Each window's forward and backward
pass runs whole on one thread and writes its own gradient buffer; the buffers
are then summed in window order. So the result does not depend on the number
of threads, and a resumed run continues bit for bit. The optimizer is AdamW
with warmup + cosine decay and global-norm gradient clipping.

It includes runq.c (the checkpoint format, the tokenizer, the thread pool)
and export's parts (the convert/ headers: the model readers, the checkpoint writer).
What it is not: fast on big models or a GPU trainer; it trains the small
models this project ships and teaches with.

Reading order: numbers and settings -> the model's parameters -> LoRA adapters
-> the layers' forward and backward arithmetic -> the whole forward and
backward pass -> losses -> the corpus -> a training step -> evaluation ->
logging -> saving and resuming -> the modes and the command line.
*/

#define PROGRAM_NAME "train"
#ifndef TESTING
#define TESTING
#define TRAIN_MAIN
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // train uses part of the runtime
#include "../runq.c"
#include "bpe.c"          // the tokenizer trainer
#pragma GCC diagnostic pop
// export's parts: every model reader, the checkpoint writer, a text as tokens, Block Influence
#include "../json.h"
#include "../convert/quantize.h"
#include "../convert/source.h"
#include "../convert/tokenizers.h"
#include "../convert/sources.h"
#include "../convert/hf.h"
#include "../convert/lora.h"
#include "../convert/write_checkpoint.h"
#include "../convert/gguf_write.h"
#include "../convert/gguf_read.h"
#include "../convert/open_source.h"
#include "../convert/gptq.h"
#include "../convert/calibrate.h"

// The arithmetic type. float for training; the gradient check builds this
// file with TRAIN_REAL=double to compare against finite differences.
#ifndef TRAIN_REAL
#define TRAIN_REAL float
#endif
typedef TRAIN_REAL real;

// exp at the type's precision (expf for float is several times faster)
static real real_exp(real x) { return sizeof(real) == sizeof(float) ? (real)expf((float)x) : (real)exp((double)x); }

// ----------------------------------------------------------------------------
// Settings: every knob of a run, saved with its state so a resume continues it

// The first three train; the others are the tools around training.
enum Mode { MODE_PRETRAIN, MODE_DISTILL, MODE_LORA, MODE_TOKENIZER, MODE_PLOT, MODE_INFLUENCE, MODE_PRUNE_FFN };

typedef struct {
    int32_t mode;            // Mode
    int32_t steps;           // optimizer steps in the whole run
    int32_t batch;           // windows per step
    int32_t context;         // tokens per window (T)
    float lr, min_lr;        // peak and final learning rate
    int32_t warmup;          // steps of linear warmup
    float weight_decay;      // AdamW's, on matrices only
    float clip;              // global gradient norm limit (0: none)
    float beta1, beta2, eps;
    uint64_t seed;
    float temperature;       // distill: softening of both distributions
    float alpha;             // distill: weight of the teacher's soft loss (1 - alpha: hard labels)
    int32_t lora_rank;
    float lora_alpha;
    uint32_t lora_targets;   // bit (1 << kind) per adapted projection
    int32_t eval_every, eval_windows;
    int32_t plain_teacher;   // distill: the teacher reads a reply as the plain document it was (no chat template)
    float opening_weight;    // the loss on a reply's opening (ROLE_OPENING) counts this many times
    int32_t opening_sentences;   // a reply's opening: its first this many sentences (0: no opening, a reply all alike)
} Settings;

static Settings default_settings(int mode) {
    Settings s = { .mode = mode, .steps = 1000, .batch = 16, .context = 256, .lr = 1e-3f, .min_lr = 1e-4f,
                   .warmup = 100, .weight_decay = 0.1f, .clip = 1.0f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                   .seed = 42, .temperature = 2.0f, .alpha = 0.5f, .lora_rank = 8, .lora_alpha = 16.0f,
                   .lora_targets = 1u << K_WQ | 1u << K_WV, .eval_every = 100, .eval_windows = 16,
                   .opening_weight = 1.0f, .opening_sentences = 0 };
    if (mode == MODE_LORA) { s.lr = 2e-3f; s.min_lr = 2e-4f; s.weight_decay = 0.0f; s.warmup = 20; }
    return s;
}

static uint64_t fnv1a(uint64_t hash, const void *data, size_t size) {
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++) hash = (hash ^ p[i]) * 0x100000001B3ull;
    return hash;
}

// ----------------------------------------------------------------------------
// The model's parameters: one flat array in the order export writes tensors
// (export's own plan), so reading and writing a checkpoint is a walk over it.
// Gradients and optimizer moments use the same layout.

typedef struct {
    FileHeader h;
    int *ffn_dim;            // (n_layers,)
    int max_ffn;
    Plan plan;               // export's tensor list, tokenizer left out
    size_t *offset_of;       // ((K_OUTPUT + 1) * (n_layers + 1),) float offset of (kind, layer + 1)
    size_t n_params;
    real *params;
    real *params_t;          // the same with every matrix transposed, for forward products
    uint8_t *tokenizer;      // the embedded tokenizer, in tokenizer.bin layout
    size_t tokenizer_size;
    real *rope_cos, *rope_sin;   // (seq_len, head_dim / 2)
} Model;

static size_t *offset_slot(const Model *m, int kind, int layer) {
    return &m->offset_of[(size_t)kind * (size_t)(m->h.n_layers + 1) + (size_t)(layer + 1)];
}

// Where tensor (kind, layer) starts in any array of the model's layout.
static real *tensor(const Model *m, const real *base, int kind, int layer) {
    if (kind == K_OUTPUT && (m->h.flags & FLAG_TIED_CLASSIFIER)) kind = K_EMBED;
    return (real *)base + *offset_slot(m, kind, layer);
}

static int q_dim(const Model *m) { return m->h.n_heads * m->h.head_dim; }
static int kv_dim(const Model *m) { return m->h.n_kv_heads * m->h.head_dim; }

static void model_layout(Model *m) {
    Source shape = { .header = m->h, .ffn_dim = m->ffn_dim };
    m->plan = make_plan(&shape, TYPE_F32, 0);
    m->offset_of = xcalloc((size_t)(K_OUTPUT + 1) * (size_t)(m->h.n_layers + 1), sizeof(size_t), "model layout");
    m->n_params = 0;
    for (int i = 0; i < m->plan.count; i++) {
        const PlannedTensor *t = &m->plan.tensors[i];
        *offset_slot(m, t->kind, t->layer) = m->n_params;
        m->n_params += (size_t)t->entry.rows * t->entry.cols;
    }
    m->max_ffn = 0;
    for (int l = 0; l < m->h.n_layers; l++) if (m->ffn_dim[l] > m->max_ffn) m->max_ffn = m->ffn_dim[l];
    int half = m->h.head_dim / 2;
    m->rope_cos = xcalloc((size_t)m->h.seq_len * half, sizeof(real), "RoPE table");
    m->rope_sin = xcalloc((size_t)m->h.seq_len * half, sizeof(real), "RoPE table");
    for (int pos = 0; pos < m->h.seq_len; pos++)
        for (int i = 0; i < half; i++) {   // runq's angles, in float as runq computes them
            float freq = 1.0f / powf(m->h.rope_theta, (float)(2 * i) / (float)m->h.head_dim);
            float angle = (float)pos * freq;
            m->rope_cos[(size_t)pos * half + i] = cosf(angle);
            m->rope_sin[(size_t)pos * half + i] = sinf(angle);
        }
}

static void free_model(Model *m) {
    free(m->ffn_dim);
    free(m->plan.tensors);
    free(m->offset_of);
    free(m->params);
    free(m->params_t);
    free(m->tokenizer);
    free(m->rope_cos);
    free(m->rope_sin);
    memset(m, 0, sizeof *m);
}

static int is_matrix(int kind) { return kind != K_ATTN_NORM && kind != K_FFN_NORM && kind != K_NORM; }

// Standard normal numbers from a seeded stream (Box-Muller).
static double normal(uint64_t *state) {
    double u1 = ((double)(splitmix64(state) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(splitmix64(state) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// GPT-2's initialisation, as llama2.c's train.py does it: N(0, 0.02) for
// matrices, the two projections back into the residual stream scaled down by
// sqrt(2 * layers) so the stream's variance does not grow with depth; norms 1.
static void init_params(Model *m, uint64_t seed) {
    m->params = xcalloc(m->n_params, sizeof(real), "parameters");
    for (int i = 0; i < m->plan.count; i++) {
        const PlannedTensor *t = &m->plan.tensors[i];
        real *w = tensor(m, m->params, t->kind, t->layer);
        size_t n = (size_t)t->entry.rows * t->entry.cols;
        uint64_t state = seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1));
        double std = 0.02;
        if (t->kind == K_WO || t->kind == K_W2) std /= sqrt(2.0 * m->h.n_layers);
        for (size_t j = 0; j < n; j++) w[j] = is_matrix(t->kind) ? (real)(std * normal(&state)) : (real)1;
    }
}

// A new model of SHAPE (export's --random shapes: a name or key=value pairs)
// for a tokenizer of vocab_size pieces.
static void new_model(Model *m, const char *shape, int vocab_size, int context, uint64_t seed) {
    Source src = { 0 };
    open_random(&src, shape, seed);
    memset(m, 0, sizeof *m);
    m->h = src.header;
    m->h.vocab_size = vocab_size;
    if (strchr(shape, '=') && !strstr(shape, "seq_len=")) m->h.seq_len = context;
    m->ffn_dim = src.ffn_dim;
    src.ffn_dim = NULL;
    free_source(&src);
    model_layout(m);
    init_params(m, seed);
}

// Any model export reads (llama2.c .bin, Edge LLM fp32 or int4, GGUF, HF
// directory) as an export Source. The model's own tokenizer wins; -z fills in
// for files without one (llama2.c's).
static void open_model_source(Source *src, const char *path, const char *tokenizer_path) {
    open_source(src, path);
    if (!src->tokenizer && tokenizer_path) read_tokenizer_bin(src, tokenizer_path);
    if (!src->tokenizer) die("%s has no tokenizer: give its tokenizer.bin with -z", path);
}

// Such a model as fp32 parameters. int4 weights come dequantized: training on
// top of them is QLoRA's setting.
static void load_model(Model *m, const char *path, const char *tokenizer_path) {
    Source src = { 0 };
    open_model_source(&src, path, tokenizer_path);
    if (src.rope_freqs) die("%s: has rope_freqs (Llama 3.1-style RoPE scaling), which train cannot train yet", path);
    if (source_needs_settings(&src))   // train's forward and backward passes are Llama's
        die("%s: is a %s model with its own math (runq.c's version 4 settings), which train cannot train yet", path,
            architecture_names[src.settings.architecture]);
    memset(m, 0, sizeof *m);
    m->h = src.header;
    m->ffn_dim = xcalloc((size_t)m->h.n_layers, sizeof(int), "model");
    memcpy(m->ffn_dim, src.ffn_dim, (size_t)m->h.n_layers * sizeof(int));
    m->tokenizer = src.tokenizer;
    m->tokenizer_size = src.tokenizer_size;
    src.tokenizer = NULL;
    model_layout(m);
    m->params = xcalloc(m->n_params, sizeof(real), "parameters");
    for (int i = 0; i < m->plan.count; i++) {
        const PlannedTensor *t = &m->plan.tensors[i];
        if (src.check_tensor) src.check_tensor(&src, t);
        size_t n = (size_t)t->entry.rows * t->entry.cols;
        float *rows = xcalloc(n, sizeof(float), "tensor");
        src.read_rows(&src, t, 0, (int)t->entry.rows, rows);
        real *w = tensor(m, m->params, t->kind, t->layer);
        for (size_t j = 0; j < n; j++) {
            if (!isfinite(rows[j])) die("%s: tensor %s holds a non-finite value", path, t->entry.name);
            w[j] = (real)rows[j];
        }
        free(rows);
    }
    free_source(&src);
}

// The parameters as an export Source, so export's writer makes the checkpoint.
static void memory_read_rows(Source *src, const PlannedTensor *t, int begin, int end, float *out) {
    const Model *m = src->impl;
    const real *w = tensor(m, m->params, t->kind, t->layer) + (size_t)begin * t->entry.cols;
    for (size_t j = 0; j < (size_t)(end - begin) * t->entry.cols; j++) out[j] = (float)w[j];
}

static void save_model(const Model *m, const char *path, int matrix_type) {
    Source src = { .header = m->h, .ffn_dim = m->ffn_dim, .tokenizer = m->tokenizer,
                   .tokenizer_size = m->tokenizer_size, .read_rows = memory_read_rows,
                   .impl = (void *)m, .description = "trained" };
    write_checkpoint(&src, path, matrix_type, 32, 1);
}

// ----------------------------------------------------------------------------
// LoRA adapters: y = W x + (alpha / rank) * B (A x) on chosen projections of a
// frozen base. A (rank x in) starts random, B (out x rank) at zero, so
// training starts from the base model exactly. One flat array again.

// runq.c's projection_fields (wq ... w3, in that order) as export's tensor kinds
static const int projection_kinds[N_PROJECTIONS] = { K_WQ, K_WK, K_WV, K_WO, K_W1, K_W2, K_W3 };
// Hugging Face's names for them, which PEFT adapters use
static const char *hf_projection_names[N_PROJECTIONS] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                          "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj",
                                                          "mlp.up_proj" };

typedef struct {
    int rank;
    real scale;              // alpha / rank
    uint32_t targets;        // 1 << kind
    size_t n_params;
    size_t a_offset[N_PROJECTIONS][256], b_offset[N_PROJECTIONS][256];   // per projection and layer
} Lora;

static int projection_index(int kind) {
    for (int p = 0; p < N_PROJECTIONS; p++) if (projection_kinds[p] == kind) return p;
    return -1;
}

static void projection_shape(const Model *m, int kind, int layer, int *rows, int *cols) {
    int d = m->h.dim, f = m->ffn_dim[layer];
    switch (kind) {
    case K_WQ: *rows = q_dim(m); *cols = d; break;
    case K_WK: case K_WV: *rows = kv_dim(m); *cols = d; break;
    case K_WO: *rows = d; *cols = q_dim(m); break;
    case K_W1: case K_W3: *rows = f; *cols = d; break;
    default: *rows = d; *cols = f; break;   // K_W2
    }
}

static void lora_layout(Lora *lora, const Model *m, int rank, float alpha, uint32_t targets) {
    if (m->h.n_layers > 256) die("LoRA supports models of up to 256 layers");
    memset(lora, 0, sizeof *lora);
    lora->rank = rank;
    lora->scale = (real)(alpha / (float)rank);
    lora->targets = targets;
    for (int l = 0; l < m->h.n_layers; l++)
        for (int p = 0; p < N_PROJECTIONS; p++) {
            if (!(targets & 1u << projection_kinds[p])) continue;
            int rows, cols;
            projection_shape(m, projection_kinds[p], l, &rows, &cols);
            lora->a_offset[p][l] = lora->n_params;
            lora->n_params += (size_t)rank * cols;
            lora->b_offset[p][l] = lora->n_params;
            lora->n_params += (size_t)rows * rank;
        }
}

// A as PEFT initialises it (Kaiming-uniform, bound 1/sqrt(in)); B zero.
static real *lora_init(const Lora *lora, const Model *m, uint64_t seed) {
    real *adapter = xcalloc(lora->n_params ? lora->n_params : 1, sizeof(real), "LoRA adapter");
    for (int l = 0; l < m->h.n_layers; l++)
        for (int p = 0; p < N_PROJECTIONS; p++) {
            if (!(lora->targets & 1u << projection_kinds[p])) continue;
            int rows, cols;
            projection_shape(m, projection_kinds[p], l, &rows, &cols);
            uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(l * N_PROJECTIONS + p + 1));
            real *a = adapter + lora->a_offset[p][l];
            double bound = 1.0 / sqrt((double)cols);
            for (size_t j = 0; j < (size_t)lora->rank * cols; j++)
                a[j] = (real)(bound * (2.0 * (double)(splitmix64(&state) >> 11) / 9007199254740992.0 - 1.0));
        }
    return adapter;
}

// ----------------------------------------------------------------------------
// The layers' arithmetic, forward and backward. Shapes: x (T, in) rows are
// tokens; a weight w (out, in) is stored row by row, as in the checkpoint.

// Eight partial sums so the compiler can keep them in one vector register.
static real dot(const real *a, const real *b, int n) {
    real partial[8] = { 0 };
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) partial[j] += a[i + j] * b[i + j];
    for (; i < n; i++) partial[i % 8] += a[i] * b[i];
    return ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

static void axpy(real *y, real a, const real *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

// y (M, N) += a (M, K) b (K, N): the one kernel under every matrix product of
// training. A tile of 4 rows x 2 vectors of y stays in registers while k
// runs: per k, two loads of b, four broadcasts of a, eight multiply-adds.
// GCC/Clang vector extensions, not one ISA's intrinsics: the compiler maps
// them to AVX, SSE or NEON. Edges of y go through the plain loop.
typedef real vec __attribute__((vector_size(32)));
#define LANES ((int)(sizeof(vec) / sizeof(real)))

static void gemm_tile(real *y, const real *a, const real *b, int K, int N) {
    vec s[4][2] = { { { 0 } } }, b0, b1, y0;
    for (int k = 0; k < K; k++) {
        memcpy(&b0, b + (size_t)k * N, sizeof b0);   // unaligned vector loads
        memcpy(&b1, b + (size_t)k * N + LANES, sizeof b1);
        for (int r = 0; r < 4; r++) {
            real ar = a[(size_t)r * K + k];
            s[r][0] += ar * b0;
            s[r][1] += ar * b1;
        }
    }
    for (int r = 0; r < 4; r++)
        for (int half = 0; half < 2; half++) {
            real *row = y + (size_t)r * N + half * LANES;
            memcpy(&y0, row, sizeof y0);
            y0 += s[r][half];
            memcpy(row, &y0, sizeof y0);
        }
}

static void gemm_edge(real *y, const real *a, const real *b, int rows, int cols, int K, int N) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            real sum = 0;
            for (int k = 0; k < K; k++) sum += a[(size_t)r * K + k] * b[(size_t)k * N + c];
            y[(size_t)r * N + c] += sum;
        }
}

static void gemm_accumulate(real *y, const real *a, const real *b, int M, int K, int N) {
    int full_rows = M / 4 * 4, full_cols = N / (2 * LANES) * (2 * LANES);
    for (int i = 0; i < full_rows; i += 4)
        for (int j = 0; j < full_cols; j += 2 * LANES)
            gemm_tile(y + (size_t)i * N + j, a + (size_t)i * K, b + j, K, N);
    if (full_cols < N) gemm_edge(y + full_cols, a, b + full_cols, full_rows, N - full_cols, K, N);
    if (full_rows < M) gemm_edge(y + (size_t)full_rows * N, a + (size_t)full_rows * K, b, M - full_rows, N, K, N);
}

// y (T, out) = x (T, in) w^T, with w given transposed: wt (in, out)
static void matmul_transposed(real *y, const real *x, const real *wt, int T, int in, int out) {
    memset(y, 0, (size_t)T * out * sizeof(real));
    gemm_accumulate(y, x, wt, T, in, out);
}

// y (T, out) = x (T, in) w^T by dot products: for the small LoRA factors
static void matmul(real *y, const real *x, const real *w, int T, int in, int out) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) y[(size_t)t * out + o] = dot(x + (size_t)t * in, w + (size_t)o * in, in);
}

// dx (T, in) += dy (T, out) w
static void matmul_backward_input(real *dx, const real *dy, const real *w, int T, int in, int out) {
    gemm_accumulate(dx, dy, w, T, out, in);
}

static void transpose(real *out, const real *in, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) out[(size_t)c * rows + r] = in[(size_t)r * cols + c];
}

// dw (out, in) += dy^T (out, T) x (T, in); scratch holds dy^T
static void matmul_backward_weight(real *dw, const real *dy, const real *x, int T, int in, int out, real *scratch) {
    transpose(scratch, dy, T, out);
    gemm_accumulate(dw, scratch, x, out, T, in);
}

// y = w * x / rms(x), per token; keeps 1/rms for the backward pass
static void norm_forward(real *y, real *inv_rms, const real *x, const real *w, int T, int n, float eps) {
    for (int t = 0; t < T; t++) {
        const real *xt = x + (size_t)t * n;
        real r = (real)1 / (real)sqrt(dot(xt, xt, n) / (real)n + (real)eps);
        inv_rms[t] = r;
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] = w[i] * (xt[i] * r);
    }
}

// dx += d(w * x * r)/dx . dy, with r = (mean(x^2) + eps)^-1/2; dw += dy * x * r
static void norm_backward(real *dx, real *dw, const real *dy, const real *x, const real *w, const real *inv_rms,
                             int T, int n) {
    for (int t = 0; t < T; t++) {
        const real *xt = x + (size_t)t * n, *dyt = dy + (size_t)t * n;
        real r = inv_rms[t], wdy_x = 0;
        for (int i = 0; i < n; i++) wdy_x += w[i] * dyt[i] * xt[i];
        real c = r * r * r * wdy_x / (real)n;
        for (int i = 0; i < n; i++) dx[(size_t)t * n + i] += r * w[i] * dyt[i] - c * xt[i];
        if (dw) for (int i = 0; i < n; i++) dw[i] += dyt[i] * xt[i] * r;
    }
}

// Rotate consecutive pairs of every head by their position's angles; the
// backward pass rotates the gradient back (direction -1).
static void rotate_pairs(const Model *m, real *x, int T, int n_heads, int direction) {
    int hd = m->h.head_dim, half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_heads; h++) {
            real *v = x + (size_t)t * n_heads * hd + (size_t)h * hd;
            const real *c = m->rope_cos + (size_t)t * half, *s = m->rope_sin + (size_t)t * half;
            for (int i = 0; i < half; i++) {
                real v0 = v[2 * i], v1 = v[2 * i + 1], sn = direction * s[i];
                v[2 * i] = v0 * c[i] - v1 * sn;
                v[2 * i + 1] = v0 * sn + v1 * c[i];
            }
        }
}

static void softmax_in_place(real *x, int n) {
    real max = x[0], sum = 0;
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    for (int i = 0; i < n; i++) { x[i] = real_exp(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

// Causal attention. Heads are done a key/value head at a time: its keys and
// values are gathered transposed, (head_dim, T), so that every inner loop
// runs over positions (long, contiguous) rather than over a head's few
// dimensions. Query head h reads key/value head h / (heads per KV head).

// (T, head) slice of x (row stride `stride`) -> (head_dim, T)
static void gather_transposed(real *out, const real *x, int T, int stride, int head_dim) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < head_dim; d++) out[(size_t)d * T + t] = x[(size_t)t * stride + d];
}

static void scatter_transposed(real *x, const real *in, int T, int stride, int head_dim) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < head_dim; d++) x[(size_t)t * stride + d] = in[(size_t)d * T + t];
}

// out (T, q_dim); probabilities att (heads, T, T), row i holding positions
// 0..i, kept for the backward pass. scratch: 2 * head_dim * T.
static void causal_attention(const Model *m, real *out, real *att, const real *q, const real *k, const real *v, int T,
                             real *scratch) {
    int hd = m->h.head_dim, group = m->h.n_heads / m->h.n_kv_heads, qd = q_dim(m), kvd = kv_dim(m);
    real scale = (real)1 / (real)sqrt((double)hd);
    real *kt = scratch, *vt = scratch + (size_t)hd * T;
    for (int kvh = 0; kvh < m->h.n_kv_heads; kvh++) {
        gather_transposed(kt, k + (size_t)kvh * hd, T, kvd, hd);
        gather_transposed(vt, v + (size_t)kvh * hd, T, kvd, hd);
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int i = 0; i < T; i++) {
                real *p = att + ((size_t)h * T + i) * T;
                const real *qi = q + (size_t)i * qd + (size_t)h * hd;
                memset(p, 0, (size_t)(i + 1) * sizeof(real));
                for (int d = 0; d < hd; d++) axpy(p, qi[d] * scale, kt + (size_t)d * T, i + 1);
                softmax_in_place(p, i + 1);
                real *o = out + (size_t)i * qd + (size_t)h * hd;
                for (int d = 0; d < hd; d++) o[d] = dot(p, vt + (size_t)d * T, i + 1);
            }
    }
}

// From dout: dq, dk, dv (dk and dv summed over the query heads sharing them).
// scratch: 4 * head_dim * T.
static void causal_attention_backward(const Model *m, real *dq, real *dk, real *dv, real *dp, const real *dout,
                                      const real *att, const real *q, const real *k, const real *v, int T,
                                      real *scratch) {
    int hd = m->h.head_dim, group = m->h.n_heads / m->h.n_kv_heads, qd = q_dim(m), kvd = kv_dim(m);
    real scale = (real)1 / (real)sqrt((double)hd);
    size_t block = (size_t)hd * T;
    real *kt = scratch, *vt = scratch + block, *dkt = scratch + 2 * block, *dvt = scratch + 3 * block;
    for (int kvh = 0; kvh < m->h.n_kv_heads; kvh++) {
        gather_transposed(kt, k + (size_t)kvh * hd, T, kvd, hd);
        gather_transposed(vt, v + (size_t)kvh * hd, T, kvd, hd);
        memset(dkt, 0, 2 * block * sizeof(real));
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int i = 0; i < T; i++) {
                const real *p = att + ((size_t)h * T + i) * T;
                const real *doi = dout + (size_t)i * qd + (size_t)h * hd, *qi = q + (size_t)i * qd + (size_t)h * hd;
                real *dqi = dq + (size_t)i * qd + (size_t)h * hd;
                memset(dp, 0, (size_t)(i + 1) * sizeof(real));
                for (int d = 0; d < hd; d++) axpy(dp, doi[d], vt + (size_t)d * T, i + 1);   // dp_j = dout_i . v_j
                real weighted = dot(p, dp, i + 1);
                for (int j = 0; j <= i; j++) dp[j] = p[j] * (dp[j] - weighted) * scale;   // through softmax and scale
                for (int d = 0; d < hd; d++) {
                    dqi[d] = dot(dp, kt + (size_t)d * T, i + 1);
                    axpy(dkt + (size_t)d * T, qi[d], dp, i + 1);
                    axpy(dvt + (size_t)d * T, doi[d], p, i + 1);
                }
            }
        scatter_transposed(dk + (size_t)kvh * hd, dkt, T, kvd, hd);
        scatter_transposed(dv + (size_t)kvh * hd, dvt, T, kvd, hd);
    }
}

static real silu(real x) { return x / ((real)1 + real_exp(-x)); }

// g = silu(a) * b
static void swiglu(real *g, const real *a, const real *b, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = silu(a[i]) * b[i];
}

static void swiglu_backward(real *da, real *db, const real *dg, const real *a, const real *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        real sigmoid = (real)1 / ((real)1 + real_exp(-a[i]));
        db[i] = dg[i] * a[i] * sigmoid;
        da[i] = dg[i] * b[i] * sigmoid * ((real)1 + a[i] * ((real)1 - sigmoid));
    }
}

// ----------------------------------------------------------------------------
// The whole network on one window: forward keeping what backward needs, then
// backward. A Net is what is run: a model's weights plus, maybe, adapters.

typedef struct {
    const Model *m;
    const real *w;           // model parameters
    const real *wt;          // the same, matrices transposed (refresh_transposed)
    const Lora *lora;        // NULL: plain model
    const real *adapter;
} Net;

// The forward pass multiplies by transposed weights (see gemm_accumulate);
// refreshed after every change to the parameters.
static void refresh_transposed(Model *m) {
    if (!m->params_t) m->params_t = xcalloc(m->n_params, sizeof(real), "transposed parameters");
    for (int i = 0; i < m->plan.count; i++) {
        const PlannedTensor *t = &m->plan.tensors[i];
        size_t at = *offset_slot(m, t->kind, t->layer);
        transpose(m->params_t + at, m->params + at, (int)t->entry.rows, (int)t->entry.cols);
    }
}

static Net model_net(Model *m, const Lora *lora, const real *adapter) {
    return (Net){ m, m->params, m->params_t, lora, adapter };
}

typedef struct {             // where gradients go; NULL: that part is frozen
    real *model;
    real *adapter;
} Grads;

typedef struct {             // one window's activations (T tokens), per layer l
    int T;
    real *x;                 // (L + 1, T, dim) residual stream into layer l; x[L] into the final norm
    real *rms1, *xn1;        // (L, T), (L, T, dim) attention norm
    real *q, *k, *v;         // (L, T, q_dim), (L, T, kv_dim) after RoPE
    real *att;               // (L, heads, T, T) attention probabilities
    real *ao;                // (L, T, q_dim) attention output, before wo
    real *xmid;              // (L, T, dim) after the attention residual
    real *rms2, *xn2;        // feed-forward norm
    real *a, *b, *g;         // (L, T, max_ffn) w1 x, w3 x, silu(a) * b
    real *rmsf, *xnf;        // final norm
    real *logits;            // (T, vocab)
    real *lora_u;            // (L, projections, T, rank) A x of each adapted projection
    // backward scratch, one layer at a time
    real *dx, *dxn, *dq, *dk, *dv, *dao, *dp, *da, *db, *dg, *dlogits, *du;
    real *scratch;           // (T, widest) a transposed gradient; attention's transposed heads
    real *probs;             // (2, vocab) the loss' distributions
} Activations;

static void alloc_activations(Activations *s, const Model *m, const Lora *lora, int T) {
    size_t L = (size_t)m->h.n_layers, D = (size_t)m->h.dim, F = (size_t)m->max_ffn;
    size_t Q = (size_t)q_dim(m), KV = (size_t)kv_dim(m), H = (size_t)m->h.n_heads, V = (size_t)m->h.vocab_size;
    size_t R = lora ? (size_t)lora->rank : 0, wide = F > D ? F : D;
    if (Q > wide) wide = Q;
    memset(s, 0, sizeof *s);
    s->T = T;
    s->x = xcalloc((L + 1) * T * D, sizeof(real), "activations");
    s->rms1 = xcalloc(L * T, sizeof(real), "activations");
    s->xn1 = xcalloc(L * T * D, sizeof(real), "activations");
    s->q = xcalloc(L * T * Q, sizeof(real), "activations");
    s->k = xcalloc(L * T * KV, sizeof(real), "activations");
    s->v = xcalloc(L * T * KV, sizeof(real), "activations");
    s->att = xcalloc(L * H * T * T, sizeof(real), "attention probabilities");
    s->ao = xcalloc(L * T * Q, sizeof(real), "activations");
    s->xmid = xcalloc(L * T * D, sizeof(real), "activations");
    s->rms2 = xcalloc(L * T, sizeof(real), "activations");
    s->xn2 = xcalloc(L * T * D, sizeof(real), "activations");
    s->a = xcalloc(L * T * F, sizeof(real), "activations");
    s->b = xcalloc(L * T * F, sizeof(real), "activations");
    s->g = xcalloc(L * T * F, sizeof(real), "activations");
    s->rmsf = xcalloc((size_t)T, sizeof(real), "activations");
    s->xnf = xcalloc((size_t)T * D, sizeof(real), "activations");
    s->logits = xcalloc((size_t)T * V, sizeof(real), "logits");
    s->lora_u = xcalloc(L * N_PROJECTIONS * T * (R ? R : 1), sizeof(real), "LoRA activations");
    s->dx = xcalloc((size_t)T * D, sizeof(real), "gradients");
    s->dxn = xcalloc((size_t)T * wide, sizeof(real), "gradients");
    s->dq = xcalloc((size_t)T * Q, sizeof(real), "gradients");
    s->dk = xcalloc((size_t)T * KV, sizeof(real), "gradients");
    s->dv = xcalloc((size_t)T * KV, sizeof(real), "gradients");
    s->dao = xcalloc((size_t)T * Q, sizeof(real), "gradients");
    s->dp = xcalloc((size_t)T, sizeof(real), "gradients");
    s->da = xcalloc((size_t)T * F, sizeof(real), "gradients");
    s->db = xcalloc((size_t)T * F, sizeof(real), "gradients");
    s->dg = xcalloc((size_t)T * F, sizeof(real), "gradients");
    s->dlogits = xcalloc((size_t)T * V, sizeof(real), "gradients");
    s->du = xcalloc((size_t)T * (R ? R : 1), sizeof(real), "gradients");
    size_t widest = V > wide ? V : wide;
    if (widest < 4 * (size_t)m->h.head_dim) widest = 4 * (size_t)m->h.head_dim;   // attention's transposed heads
    s->scratch = xcalloc((size_t)T * widest, sizeof(real), "gradients");
    s->probs = xcalloc(2 * V, sizeof(real), "probabilities");
}

static void free_activations(Activations *s) {
    real *all[] = { s->x, s->rms1, s->xn1, s->q, s->k, s->v, s->att, s->ao, s->xmid, s->rms2, s->xn2, s->a, s->b,
                    s->g, s->rmsf, s->xnf, s->logits, s->lora_u, s->dx, s->dxn, s->dq, s->dk, s->dv, s->dao,
                    s->dp, s->da, s->db, s->dg, s->dlogits, s->du, s->scratch, s->probs };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

// Per-layer slices of the activations
#define AT(array, l, per_layer) ((array) + (size_t)(l) * (size_t)(per_layer))

static real *lora_u_of(const Activations *s, const Lora *lora, int p, int layer) {
    return s->lora_u + ((size_t)layer * N_PROJECTIONS + (size_t)p) * (size_t)s->T * (size_t)lora->rank;
}

static int adapted(const Net *net, int kind) { return net->lora && (net->lora->targets & 1u << kind); }

// y = x W^T (+ scale * (x A^T) B^T when the projection has an adapter)
static void linear(const Net *net, Activations *s, int kind, int layer, const real *x, real *y, int T) {
    int rows, cols;
    projection_shape(net->m, kind, layer, &rows, &cols);
    matmul_transposed(y, x, tensor(net->m, net->wt, kind, layer), T, cols, rows);
    if (!adapted(net, kind)) return;
    const Lora *lora = net->lora;
    int p = projection_index(kind), r = lora->rank;
    real *u = lora_u_of(s, lora, p, layer);
    matmul(u, x, net->adapter + lora->a_offset[p][layer], T, cols, r);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < rows; o++)
            y[(size_t)t * rows + o] += lora->scale * dot(u + (size_t)t * r, net->adapter + lora->b_offset[p][layer] + (size_t)o * r, r);
}

// dx += dy W (+ the adapter's path); weight gradients where g asks for them
static void linear_backward(const Net *net, Activations *s, const Grads *g, int kind, int layer, const real *x,
                            const real *dy, real *dx, int T) {
    int rows, cols;
    projection_shape(net->m, kind, layer, &rows, &cols);
    matmul_backward_input(dx, dy, tensor(net->m, net->w, kind, layer), T, cols, rows);
    if (g->model) matmul_backward_weight(tensor(net->m, g->model, kind, layer), dy, x, T, cols, rows, s->scratch);
    if (!adapted(net, kind)) return;
    const Lora *lora = net->lora;
    int p = projection_index(kind), r = lora->rank;
    const real *A = net->adapter + lora->a_offset[p][layer], *B = net->adapter + lora->b_offset[p][layer];
    const real *u = lora_u_of(s, lora, p, layer);
    memset(s->du, 0, (size_t)T * r * sizeof(real));
    matmul_backward_input(s->du, dy, B, T, r, rows);                     // du = dy B
    for (size_t i = 0; i < (size_t)T * r; i++) s->du[i] *= lora->scale;
    if (g->adapter) {
        real *dB = g->adapter + lora->b_offset[p][layer];
        for (int o = 0; o < rows; o++)                                   // dB += scale dy^T u
            for (int t = 0; t < T; t++) axpy(dB + (size_t)o * r, lora->scale * dy[(size_t)t * rows + o], u + (size_t)t * r, r);
        matmul_backward_weight(g->adapter + lora->a_offset[p][layer], s->du, x, T, cols, r, s->scratch);   // dA += du^T x
    }
    matmul_backward_input(dx, s->du, A, T, cols, r);                      // dx += du A
}

// Logits for tokens[0..T) at positions 0..T-1, into s->logits.
static void net_forward(const Net *net, Activations *s, const int *tokens, int T) {
    const Model *m = net->m;
    int D = m->h.dim, Q = q_dim(m), KV = kv_dim(m), F = m->max_ffn, H = m->h.n_heads, V = m->h.vocab_size;
    const real *embed = tensor(m, net->w, K_EMBED, -1);
    for (int t = 0; t < T; t++) memcpy(s->x + (size_t)t * D, embed + (size_t)tokens[t] * D, (size_t)D * sizeof(real));
    for (int l = 0; l < m->h.n_layers; l++) {
        real *x = AT(s->x, l, T * D), *xn1 = AT(s->xn1, l, T * D), *q = AT(s->q, l, T * Q);
        real *k = AT(s->k, l, T * KV), *v = AT(s->v, l, T * KV), *ao = AT(s->ao, l, T * Q);
        real *xmid = AT(s->xmid, l, T * D), *xn2 = AT(s->xn2, l, T * D), *next = AT(s->x, l + 1, T * D);
        real *a = AT(s->a, l, T * F), *b = AT(s->b, l, T * F), *g = AT(s->g, l, T * F);
        int f = m->ffn_dim[l];
        norm_forward(xn1, AT(s->rms1, l, T), x, tensor(m, net->w, K_ATTN_NORM, l), T, D, m->h.norm_eps);
        linear(net, s, K_WQ, l, xn1, q, T);
        linear(net, s, K_WK, l, xn1, k, T);
        linear(net, s, K_WV, l, xn1, v, T);
        rotate_pairs(m, q, T, H, 1);
        rotate_pairs(m, k, T, m->h.n_kv_heads, 1);
        causal_attention(m, ao, AT(s->att, l, (size_t)H * T * T), q, k, v, T, s->scratch);
        linear(net, s, K_WO, l, ao, xmid, T);
        for (size_t i = 0; i < (size_t)T * D; i++) xmid[i] += x[i];
        norm_forward(xn2, AT(s->rms2, l, T), xmid, tensor(m, net->w, K_FFN_NORM, l), T, D, m->h.norm_eps);
        linear(net, s, K_W1, l, xn2, a, T);
        linear(net, s, K_W3, l, xn2, b, T);
        swiglu(g, a, b, (size_t)T * f);
        linear(net, s, K_W2, l, g, next, T);
        for (size_t i = 0; i < (size_t)T * D; i++) next[i] += xmid[i];
    }
    norm_forward(s->xnf, s->rmsf, AT(s->x, m->h.n_layers, T * D), tensor(m, net->w, K_NORM, -1), T, D, m->h.norm_eps);
    matmul_transposed(s->logits, s->xnf, tensor(m, net->wt, K_OUTPUT, -1), T, D, V);
}

// From s->dlogits (dLoss/dlogits) back to every gradient g asks for.
static void net_backward(const Net *net, Activations *s, const Grads *g, const int *tokens, int T) {
    const Model *m = net->m;
    int D = m->h.dim, Q = q_dim(m), KV = kv_dim(m), F = m->max_ffn, H = m->h.n_heads, V = m->h.vocab_size;
    int L = m->h.n_layers;
    real *gm = g->model;
    memset(s->dxn, 0, (size_t)T * D * sizeof(real));
    matmul_backward_input(s->dxn, s->dlogits, tensor(m, net->w, K_OUTPUT, -1), T, D, V);
    if (gm) matmul_backward_weight(tensor(m, gm, K_OUTPUT, -1), s->dlogits, s->xnf, T, D, V, s->scratch);
    memset(s->dx, 0, (size_t)T * D * sizeof(real));
    norm_backward(s->dx, gm ? tensor(m, gm, K_NORM, -1) : NULL, s->dxn, AT(s->x, L, T * D),
                     tensor(m, net->w, K_NORM, -1), s->rmsf, T, D);
    for (int l = L - 1; l >= 0; l--) {   // s->dx holds dLoss/d(output of layer l)
        real *x = AT(s->x, l, T * D), *xn1 = AT(s->xn1, l, T * D), *q = AT(s->q, l, T * Q);
        real *k = AT(s->k, l, T * KV), *v = AT(s->v, l, T * KV), *ao = AT(s->ao, l, T * Q);
        real *xmid = AT(s->xmid, l, T * D), *xn2 = AT(s->xn2, l, T * D);
        real *a = AT(s->a, l, T * F), *b = AT(s->b, l, T * F), *gl = AT(s->g, l, T * F);
        int f = m->ffn_dim[l];
        // feed-forward: x_out = xmid + w2 (silu(w1 xn2) * w3 xn2), xn2 = norm(xmid)
        memset(s->dg, 0, (size_t)T * f * sizeof(real));
        linear_backward(net, s, g, K_W2, l, gl, s->dx, s->dg, T);
        swiglu_backward(s->da, s->db, s->dg, a, b, (size_t)T * f);
        memset(s->dxn, 0, (size_t)T * D * sizeof(real));
        linear_backward(net, s, g, K_W1, l, xn2, s->da, s->dxn, T);
        linear_backward(net, s, g, K_W3, l, xn2, s->db, s->dxn, T);
        norm_backward(s->dx, gm ? tensor(m, gm, K_FFN_NORM, l) : NULL, s->dxn, xmid,
                         tensor(m, net->w, K_FFN_NORM, l), AT(s->rms2, l, T), T, D);
        // attention: xmid = x + wo attention(rope(wq xn1), rope(wk xn1), wv xn1), xn1 = norm(x)
        memset(s->dao, 0, (size_t)T * Q * sizeof(real));
        linear_backward(net, s, g, K_WO, l, ao, s->dx, s->dao, T);
        causal_attention_backward(m, s->dq, s->dk, s->dv, s->dp, s->dao, AT(s->att, l, (size_t)H * T * T), q, k, v, T,
                                  s->scratch);
        rotate_pairs(m, s->dq, T, H, -1);
        rotate_pairs(m, s->dk, T, m->h.n_kv_heads, -1);
        memset(s->dxn, 0, (size_t)T * D * sizeof(real));
        linear_backward(net, s, g, K_WQ, l, xn1, s->dq, s->dxn, T);
        linear_backward(net, s, g, K_WK, l, xn1, s->dk, s->dxn, T);
        linear_backward(net, s, g, K_WV, l, xn1, s->dv, s->dxn, T);
        norm_backward(s->dx, gm ? tensor(m, gm, K_ATTN_NORM, l) : NULL, s->dxn, x,
                         tensor(m, net->w, K_ATTN_NORM, l), AT(s->rms1, l, T), T, D);
    }
    if (gm) {
        real *dembed = tensor(m, gm, K_EMBED, -1);
        for (int t = 0; t < T; t++) axpy(dembed + (size_t)tokens[t] * D, 1, s->dx + (size_t)t * D, D);
    }
}

// ----------------------------------------------------------------------------
// Losses on one window. Hard: cross-entropy of the next token. Soft
// (distillation, Hinton et al.): temperature^2 * KL(teacher || student) with
// both distributions softened by the temperature; the temperature^2 keeps its
// gradient's size independent of the temperature. Only the targets the model
// is to write count: a token's role says which (a conversation's requests are
// context, read but not learned). dlogits gets d(loss)/d(logits) times `scale`
// (1 / learned targets in the batch), and 0 where the target is context.

// What the loss does where a token is the target
enum Role {
    ROLE_CONTEXT,            // read, not learned: a conversation's user turns and system prompt
    ROLE_TEXT,               // learned: a plain document (and the BOS that starts the next one)
    ROLE_REPLY,              // learned: an assistant's reply and the end-of-turn token after it
    ROLE_OPENING,            // learned: a reply's first sentences, where it names what the request asked for:
                             // the hard loss alone (a plain teacher never read the request), --opening-weight times
};

// p = softmax(z / temperature); returns the log of its normaliser (sums in double)
static double softened(const real *z, int n, double temperature, real *p) {
    real max = z[0];
    for (int i = 1; i < n; i++) if (z[i] > max) max = z[i];
    double sum = 0;
    real inverse_t = (real)(1.0 / temperature);
    for (int i = 0; i < n; i++) { p[i] = real_exp((z[i] - max) * inverse_t); sum += p[i]; }
    real inverse_sum = (real)(1.0 / sum);
    for (int i = 0; i < n; i++) p[i] *= inverse_sum;
    return (double)max / temperature + log(sum);
}

static int learned(const uint8_t *roles, int t) { return !roles || roles[t] != ROLE_CONTEXT; }

// The targets of a window that are learned
static int count_learned(const uint8_t *roles, int T) {
    int n = 0;
    for (int t = 0; t < T; t++) n += learned(roles, t);
    return n;
}

// roles: (T,) of the targets, NULL when all are learned; opening_weight: of
// the targets whose role is ROLE_OPENING; probs: scratch for two distributions (2 * V)
static double window_loss(const real *logits, const real *teacher_logits, const int *targets, const uint8_t *roles,
                          int T, int V, double temperature, double alpha, double opening_weight, real *dlogits,
                          double scale, real *probs) {
    double total = 0;
    real *ps = probs, *pt = probs + V;
    for (int t = 0; t < T; t++) {
        const real *z = logits + (size_t)t * V;
        real *dz = dlogits ? dlogits + (size_t)t * V : NULL;
        if (!learned(roles, t)) {
            if (dz) memset(dz, 0, (size_t)V * sizeof(real));
            continue;
        }
        int opening = roles && roles[t] == ROLE_OPENING;
        double hard_weight = opening ? opening_weight : teacher_logits ? 1.0 - alpha : 1.0;
        double lse = softened(z, V, 1.0, ps);
        total += hard_weight * (lse - z[targets[t]]);
        if (dz) {
            for (int i = 0; i < V; i++) dz[i] = (real)(scale * hard_weight) * ps[i];
            dz[targets[t]] -= (real)(scale * hard_weight);
        }
        if (!teacher_logits || alpha == 0 || opening) continue;
        const real *zt = teacher_logits + (size_t)t * V;
        double lse_s = softened(z, V, temperature, ps), lse_t = softened(zt, V, temperature, pt), kl = 0;
        for (int i = 0; i < V; i++)
            if (pt[i] > 0) kl += pt[i] * ((zt[i] / temperature - lse_t) - (z[i] / temperature - lse_s));
        total += alpha * temperature * temperature * kl;
        if (dz) for (int i = 0; i < V; i++) dz[i] += (real)(scale * alpha * temperature) * (ps[i] - pt[i]);
    }
    return total;
}

// ----------------------------------------------------------------------------
// The corpus: documents -> tokens, each with its role in the loss. A text
// corpus is documents separated by blank lines, each starting with BOS
// (export's tokenize_corpus), all of it learned. A conversation corpus is
// JSON lines (a .jsonl file), one document a line, as fine-tuning sets are
// written:
//     {"text": "Once upon a time ..."}                                  a plain document
//     {"messages": [{"role": "user", "content": "Tell me a story about a cat."},
//                   {"role": "assistant", "content": "Once upon a time ..."}]}
// A conversation goes through the model's chat template as runq's chat mode
// and the server render it (runq.c's chat_turn): system prompts join the
// first turn, each user message makes a turn (context), each assistant message
// follows a user's as its text and the template's end-of-turn token (a reply,
// learned).

typedef struct {
    int *tokens;
    uint8_t *roles;          // (count,) Role of each token where it is the target
    size_t count, capacity;
} Tokens;

static void push_tokens(Tokens *t, const int *ids, size_t n, int role) {
    if (t->count + n > t->capacity) {
        t->capacity = (t->count + n) * 2;
        t->tokens = realloc(t->tokens, t->capacity * sizeof(int));
        t->roles = realloc(t->roles, t->capacity);
        if (!t->tokens || !t->roles) die("out of memory holding the corpus' tokens");
    }
    memcpy(t->tokens + t->count, ids, n * sizeof(int));
    memset(t->roles + t->count, role, n);
    t->count += n;
}

static Tokens tokens_slice(const Tokens *all, size_t begin, size_t n) {
    Tokens part = { xcalloc(n, sizeof(int), "corpus"), xcalloc(n, 1, "corpus"), n, n };
    memcpy(part.tokens, all->tokens + begin, n * sizeof(int));
    memcpy(part.roles, all->roles + begin, n);
    return part;
}

static void free_tokens(Tokens *t) {
    free(t->tokens);
    free(t->roles);
}

// A message's text, with its place in the corpus for messages
static const char *message_content(const Json *message, const char *where, int index) {
    const Json *content = json_get(message, "content");
    if (!content || content->type != JSON_STRING || content->length == 0)
        die("%s: messages[%d] needs a non-empty string 'content'", where, index);
    if (strlen(content->string) != content->length) die("%s: messages[%d].content holds a NUL character", where, index);
    return content->string;
}

// A text to learn as a plain document (BOS first) or as a reply (no BOS: it
// follows the template's assistant header), encoded as export encodes a text.
static void push_learned_text(Tokens *out, const Tokenizer *tok, const char *text, int add_bos, int role) {
    size_t length = strlen(text);
    int *buffer = xcalloc(length + 3, sizeof(int), "token buffer");
    char *segment = xcalloc(length + 1, 1, "segment");
    TokenStream ids = { 0 };
    encode_document(tok, text, length, add_bos, &ids, buffer, segment);
    push_tokens(out, ids.tokens, ids.count, role);
    free(ids.tokens);
    free(buffer);
    free(segment);
}

static int ends_sentence(const Tokenizer *tok, int id) {
    size_t n = (size_t)tok->lengths[id];
    return memchr(tok->vocab[id], '.', n) || memchr(tok->vocab[id], '!', n) || memchr(tok->vocab[id], '?', n);
}

// A reply's opening, where it names what the request asked for: its tokens
// from begin on up to the sentences-th whose piece ends a sentence (. ! ?).
static void mark_opening(Tokens *t, size_t begin, const Tokenizer *tok, int sentences) {
    for (size_t i = begin; i < t->count && sentences > 0; i++) {
        t->roles[i] = ROLE_OPENING;
        sentences -= ends_sentence(tok, t->tokens[i]);
    }
}

static void push_conversation(Tokens *out, const Tokenizer *tok, const ChatTemplate *template, const Json *messages,
                              int opening_sentences, const char *where) {
    if (!template) die("%s: a conversation, but the model records no chat template to render it: give --chat-template NAME", where);
    if (messages->type != JSON_ARRAY || messages->count == 0) die("%s: 'messages' must be a non-empty array", where);
    int end_of_turn = chat_end_of_turn(tok, template), turns = 0, last_is_user = 0;
    const char *system = "";
    for (int i = 0; i < messages->count; i++) {
        const Json *role = json_get(&messages->items[i], "role");
        const char *content = message_content(&messages->items[i], where, i);
        if (!role || role->type != JSON_STRING) die("%s: messages[%d] needs a string 'role'", where, i);
        if (strcmp(role->string, "system") == 0 && turns == 0 && !system[0]) {
            system = content;
        } else if (strcmp(role->string, "user") == 0 && !last_is_user) {
            TokenList turn = chat_turn(tok, template, turns++ == 0, system, content, 0);
            push_tokens(out, turn.ids, (size_t)turn.count, ROLE_CONTEXT);
            free(turn.ids);
            last_is_user = 1;
        } else if (strcmp(role->string, "assistant") == 0 && last_is_user) {
            size_t reply_start = out->count;
            push_learned_text(out, tok, content, 0, ROLE_REPLY);
            mark_opening(out, reply_start, tok, opening_sentences);
            push_tokens(out, &end_of_turn, 1, ROLE_REPLY);
            last_is_user = 0;
        } else {
            die("%s: messages[%d]: role '%.40s' out of turn (a system prompt first, then user and assistant in turn)",
                where, i, role->string);
        }
    }
    if (last_is_user) die("%s: the conversation ends with the user's message: nothing to learn after it", where);
}

// One line of a .jsonl corpus
static void push_json_document(Tokens *out, const Tokenizer *tok, const ChatTemplate *template, int opening_sentences,
                               char *line, size_t length, const char *where) {
    char saved = line[length];
    line[length] = '\0';   // json_parse reads up to a NUL
    Json doc = json_parse(line, length, where);
    line[length] = saved;
    const Json *text = json_get(&doc, "text"), *messages = json_get(&doc, "messages");
    if (text && text->type == JSON_STRING && text->length > 0 && !messages) {
        if (strlen(text->string) != text->length) die("%s: 'text' holds a NUL character", where);
        push_learned_text(out, tok, text->string, 1, ROLE_TEXT);
    } else if (messages && !text) {
        push_conversation(out, tok, template, messages, opening_sentences, where);
    } else {
        die("%s: a line must be an object with a non-empty string 'text' or an array 'messages'", where);
    }
    json_free(&doc);
}

static int is_jsonl(const char *path) {
    size_t n = strlen(path);
    return n >= 6 && strcmp(path + n - 6, ".jsonl") == 0;
}

// The corpus at path as tokens and roles; template renders conversations (NULL: none).
static Tokens read_corpus(const char *path, const Tokenizer *tok, const ChatTemplate *template, int opening_sentences) {
    Tokens all = { 0 };
    if (!is_jsonl(path)) {
        TokenStream text = read_text_tokens(tok, path);
        push_tokens(&all, text.tokens, text.count, ROLE_TEXT);
        free(text.tokens);
        return all;
    }
    size_t size;
    char *text = (char *)read_whole_file(path, &size);
    if (memchr(text, '\0', size)) die("%s holds NUL bytes: it is not text", path);
    char where[512];
    long line_number = 0;
    for (size_t at = 0; at < size;) {
        const char *newline = memchr(text + at, '\n', size - at);
        size_t end = newline ? (size_t)(newline - text) : size;
        line_number++;
        size_t first = at;
        while (first < end && isspace((unsigned char)text[first])) first++;
        if (first < end) {   // blank lines are allowed
            snprintf(where, sizeof where, "%s:%ld", path, line_number);
            push_json_document(&all, tok, template, opening_sentences, text + first, end - first, where);
        }
        at = end + 1;
    }
    free(text);
    if (all.count == 0) die("%s is empty", path);
    return all;
}

typedef struct {
    Tokens train, valid;
    uint64_t hash;           // of all tokens and roles: a resumed run must see the same corpus
} Corpus;

// The last tenth of the tokens is held out for validation; both parts must
// hold at least one window (context + 1 tokens).
static Corpus load_corpus(const char *path, const Tokenizer *tok, const ChatTemplate *template, int opening_sentences,
                          int context) {
    Tokens all = read_corpus(path, tok, template, opening_sentences);
    size_t valid = all.count / 10, need = (size_t)context + 1;
    if (valid < need || all.count - valid < need)
        die("corpus %s is too small: %zu tokens, but training on windows of %d tokens needs at least %zu "
            "(a tenth is held out for validation); give more text or a smaller --context",
            path, all.count, context, need * 10);
    Corpus c = { 0 };
    c.hash = fnv1a(0xCBF29CE484222325ull, all.tokens, all.count * sizeof(int));
    c.hash = fnv1a(c.hash, all.roles, all.count);
    c.train = tokens_slice(&all, 0, all.count - valid);
    c.valid = tokens_slice(&all, all.count - valid, valid);
    free_tokens(&all);
    return c;
}

// The teacher of a conversation corpus that knows no chat template (a story
// teacher, --plain-teacher) is shown each reply as the plain document it once
// was: BOS wherever the student reads a request, so the teacher predicts the
// reply as it would after a document's BOS, and, at a reply's targets, its
// end of a document (BOS or EOS: where the next document would start) is the
// reply's end of turn.
static void plain_teacher_view(int *view, const int *tokens, const uint8_t *roles, int n, int bos) {
    for (int i = 0; i < n; i++) view[i] = roles[i] == ROLE_CONTEXT ? bos : tokens[i];
}

static void end_of_document_as_end_of_turn(real *logits, const uint8_t *target_roles, int T, int V, int bos, int eos,
                                           int end_of_turn) {
    for (int t = 0; t < T; t++) {
        if (target_roles[t] != ROLE_REPLY) continue;
        real *z = logits + (size_t)t * V, high = z[bos] > z[eos] ? z[bos] : z[eos];
        real merged = high + (real)log(real_exp(z[bos] - high) + real_exp(z[eos] - high));   // p(BOS) + p(EOS)
        z[bos] = z[eos] = -INFINITY;
        z[end_of_turn] = merged;
    }
}

// ----------------------------------------------------------------------------
// A training step: B windows, each forward and backward on some thread into
// its own gradient buffer; buffers summed in window order; clipped; AdamW.

typedef struct {
    Settings s;
    Model *model;            // the student (pretrain, distill) or the frozen base (lora)
    Model *teacher;          // distill only
    Lora *lora;              // lora only
    real *adapter;
    real *trainable;         // model->params or adapter
    size_t n_trainable;
    uint8_t *decays;         // (n_trainable,) 1 where weight decay applies
    real *m, *v;             // AdamW moments
    real *window_grads;      // (batch, n_trainable)
    double *window_losses;   // (batch,)
    int *windows;            // (batch, context + 1) tokens
    uint8_t *window_roles;   // (batch, context + 1) their roles
    int *teacher_windows;    // (batch, context + 1) what a plain teacher reads
    double scale;            // 1 / the batch's learned targets
    int end_of_turn;         // the chat template's end-of-turn token; -1: no template
    Activations *work, *teacher_work;   // per thread
    ThreadPool *pool;
    int n_threads;
    long step;               // steps done
} Trainer;

static Net student_net(const Trainer *tr) { return model_net(tr->model, tr->lora, tr->adapter); }

// Window w of step `step`: a seeded draw, the same whatever ran before.
static size_t window_start(uint64_t seed, long step, int w, size_t n_starts) {
    uint64_t state = seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(step + 1)) ^ ((uint64_t)w << 48);
    splitmix64(&state);
    return (size_t)(splitmix64(&state) % n_starts);
}

// The teacher's logits for a window: on the student's tokens, or on a plain
// teacher's view of them.
static const real *teacher_logits_of(Trainer *tr, int w, int thread) {
    int T = tr->s.context, V = tr->model->h.vocab_size;
    const int *tokens = tr->windows + (size_t)w * (T + 1);
    const uint8_t *roles = tr->window_roles + (size_t)w * (T + 1);
    Activations *s = &tr->teacher_work[thread];
    Net teacher = model_net(tr->teacher, NULL, NULL);
    if (!tr->s.plain_teacher || tr->end_of_turn < 0) {
        net_forward(&teacher, s, tokens, T);
        return s->logits;
    }
    int *view = tr->teacher_windows + (size_t)w * (T + 1), bos = tr->teacher->h.bos_id, eos = tr->teacher->h.eos_id;
    plain_teacher_view(view, tokens, roles, T, bos);
    net_forward(&teacher, s, view, T);
    end_of_document_as_end_of_turn(s->logits, roles + 1, T, V, bos, eos, tr->end_of_turn);
    return s->logits;
}

static void train_window(Trainer *tr, int w, int thread) {
    int T = tr->s.context, V = tr->model->h.vocab_size;
    const int *tokens = tr->windows + (size_t)w * (T + 1);
    const uint8_t *roles = tr->window_roles + (size_t)w * (T + 1);
    Activations *s = &tr->work[thread];
    real *grad = tr->window_grads + (size_t)w * tr->n_trainable;
    memset(grad, 0, tr->n_trainable * sizeof(real));
    Net net = student_net(tr);
    net_forward(&net, s, tokens, T);
    const real *teacher_logits = tr->teacher ? teacher_logits_of(tr, w, thread) : NULL;
    tr->window_losses[w] = window_loss(s->logits, teacher_logits, tokens + 1, roles + 1, T, V, tr->s.temperature,
                                       tr->s.alpha, tr->s.opening_weight, s->dlogits, tr->scale, s->probs);
    Grads g = { tr->lora ? NULL : grad, tr->lora ? grad : NULL };
    net_backward(&net, s, &g, tokens, T);
}

static void train_windows_task(void *arg, int thread, int n_threads) {
    Trainer *tr = arg;
    for (int w = thread; w < tr->s.batch; w += n_threads) train_window(tr, w, thread);
}

// grad[0] = sum of the windows' gradients, in window order, over a slice per thread
static void sum_gradients_task(void *arg, int thread, int n_threads) {
    Trainer *tr = arg;
    size_t n = tr->n_trainable, begin = n * thread / n_threads, end = n * (thread + 1) / n_threads;
    for (int w = 1; w < tr->s.batch; w++) {
        const real *g = tr->window_grads + (size_t)w * n;
        for (size_t i = begin; i < end; i++) tr->window_grads[i] += g[i];
    }
}

typedef struct {
    Trainer *tr;
    float lr;
    double clip_factor;
} AdamStep;

static void adamw_task(void *arg, int thread, int n_threads) {
    AdamStep *a = arg;
    Trainer *tr = a->tr;
    const Settings *s = &tr->s;
    size_t n = tr->n_trainable, begin = n * thread / n_threads, end = n * (thread + 1) / n_threads;
    double t = (double)(tr->step + 1);
    real c1 = (real)(1.0 / (1.0 - pow(s->beta1, t))), c2 = (real)(1.0 / (1.0 - pow(s->beta2, t)));
    for (size_t i = begin; i < end; i++) {
        real g = tr->window_grads[i] * (real)a->clip_factor;
        tr->m[i] = s->beta1 * tr->m[i] + (1 - s->beta1) * g;
        tr->v[i] = s->beta2 * tr->v[i] + (1 - s->beta2) * g * g;
        real update = (tr->m[i] * c1) / ((real)sqrt(tr->v[i] * c2) + s->eps);
        if (tr->decays[i]) update += s->weight_decay * tr->trainable[i];
        tr->trainable[i] -= a->lr * update;
    }
}

// Linear warmup to lr, then cosine decay to min_lr at the last step.
static float learning_rate(const Settings *s, long step) {
    if (step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    double progress = s->steps > s->warmup ? (double)(step - s->warmup) / (double)(s->steps - s->warmup) : 1.0;
    if (progress > 1) progress = 1;
    return (float)(s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(3.141592653589793 * progress)));
}

typedef struct {
    double loss;             // mean over the batch's tokens
    double grad_norm;        // before clipping
    float lr;
} StepResult;

static StepResult train_step(Trainer *tr, const Tokens *train) {
    int T = tr->s.context;
    long n_learned = 0;
    for (int w = 0; w < tr->s.batch; w++) {
        size_t start = window_start(tr->s.seed, tr->step, w, train->count - (size_t)T);
        memcpy(tr->windows + (size_t)w * (T + 1), train->tokens + start, (size_t)(T + 1) * sizeof(int));
        memcpy(tr->window_roles + (size_t)w * (T + 1), train->roles + start, (size_t)(T + 1));
        n_learned += count_learned(train->roles + start + 1, T);
    }
    tr->scale = 1.0 / (double)(n_learned > 0 ? n_learned : 1);   // a batch of requests alone learns nothing
    pool_run(tr->pool, train_windows_task, tr);
    pool_run(tr->pool, sum_gradients_task, tr);
    StepResult r = { 0 };
    for (int w = 0; w < tr->s.batch; w++) r.loss += tr->window_losses[w];
    r.loss *= tr->scale;
    double norm2 = 0;
    for (size_t i = 0; i < tr->n_trainable; i++) norm2 += (double)tr->window_grads[i] * tr->window_grads[i];
    r.grad_norm = sqrt(norm2);
    if (!isfinite(r.loss) || !isfinite(r.grad_norm))
        die("step %ld: the loss or the gradient is not finite (loss %g): lower --lr", tr->step + 1, r.loss);
    AdamStep a = { tr, learning_rate(&tr->s, tr->step), 1.0 };
    if (tr->s.clip > 0 && r.grad_norm > tr->s.clip) a.clip_factor = tr->s.clip / r.grad_norm;
    pool_run(tr->pool, adamw_task, &a);
    if (!tr->lora) refresh_transposed(tr->model);
    r.lr = a.lr;
    tr->step++;
    return r;
}

// ----------------------------------------------------------------------------
// Evaluation: mean next-token cross-entropy over the learned targets of the
// first windows of the validation tokens (the same windows every time).

typedef struct {
    Trainer *tr;
    const Tokens *tokens;
    int n_windows;
    double *losses;
} EvalTask;

static void eval_task(void *arg, int thread, int n_threads) {
    EvalTask *e = arg;
    Trainer *tr = e->tr;
    int T = tr->s.context, V = tr->model->h.vocab_size;
    Net net = student_net(tr);
    for (int w = thread; w < e->n_windows; w += n_threads) {
        const int *tokens = e->tokens->tokens + (size_t)w * T;
        const uint8_t *roles = e->tokens->roles + (size_t)w * T;
        net_forward(&net, &tr->work[thread], tokens, T);
        e->losses[w] = window_loss(tr->work[thread].logits, NULL, tokens + 1, roles + 1, T, V, 1, 0, 1, NULL, 0,
                                   tr->work[thread].probs);
    }
}

static double evaluate(Trainer *tr, const Tokens *tokens) {
    int T = tr->s.context;
    int n = (int)((tokens->count - 1) / (size_t)T);
    if (n > tr->s.eval_windows) n = tr->s.eval_windows;
    EvalTask e = { tr, tokens, n, xcalloc((size_t)n, sizeof(double), "evaluation") };
    pool_run(tr->pool, eval_task, &e);
    double sum = 0;
    long n_learned = 0;
    for (int w = 0; w < n; w++) {
        sum += e.losses[w];
        n_learned += count_learned(tokens->roles + (size_t)w * T + 1, T);
    }
    free(e.losses);
    return n_learned ? sum / (double)n_learned : NAN;
}

// ----------------------------------------------------------------------------
// Logging: one progress line, the loss curve as CSV, and that curve as SVG.

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(char *out, size_t size, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(out, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60) snprintf(out, size, "%ldm%02lds", s / 60, s % 60);
    else snprintf(out, size, "%lds", s);
}

typedef struct {
    long step;
    double train_loss, valid_loss;   // valid_loss NAN between evaluations
} CurvePoint;

typedef struct {
    CurvePoint *points;
    int count, capacity;
} Curve;

static void curve_add(Curve *c, long step, double train_loss, double valid_loss) {
    if (c->count == c->capacity) {
        c->capacity = c->capacity ? c->capacity * 2 : 256;
        c->points = realloc(c->points, (size_t)c->capacity * sizeof(CurvePoint));
        if (!c->points) die("out of memory");
    }
    c->points[c->count++] = (CurvePoint){ step, train_loss, valid_loss };
}

// Reads a CSV this program wrote (step,lr,train_loss,valid_loss,...) back;
// valid_loss is empty between evaluations. The header line does not parse.
static Curve read_curve(const char *path) {
    Curve c = { 0 };
    FILE *f = fopen(path, "r");
    if (!f) return c;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *end, *field = line;
        long step = strtol(field, &end, 10);
        if (end == field || *end != ',') continue;
        field = strchr(end + 1, ',');                       // past lr
        if (!field) continue;
        double train_loss = strtod(field + 1, &end);
        if (end == field + 1 || *end != ',') continue;
        double valid_loss = strtod(end + 1, &field);
        curve_add(&c, step, train_loss, field == end + 1 ? NAN : valid_loss);
    }
    fclose(f);
    return c;
}

// Through export's temporary file beside path, renamed at the end (and
// removed on an error or a signal): no half file under path.
static void write_whole_file(const char *path, const char *text, size_t length) {
    int fd = create_pending_output(path);
    write_at(fd, text, length, 0, path);
    commit_pending_output(fd, path, length);
}

// The loss curve as a self-contained SVG: train loss (blue), validation (red).
static void plot_curve(const Curve *c, const char *path, const char *title) {
    if (c->count == 0) return;
    double lo = INFINITY, hi = -INFINITY;
    long last = c->points[c->count - 1].step;
    for (int i = 0; i < c->count; i++) {
        double values[2] = { c->points[i].train_loss, c->points[i].valid_loss };
        for (int j = 0; j < 2; j++) if (isfinite(values[j])) { lo = fmin(lo, values[j]); hi = fmax(hi, values[j]); }
    }
    if (!(hi > lo)) hi = lo + 1;
    const double W = 640, H = 400, left = 60, right = 20, top = 40, bottom = 50;
    Buffer b = { 0 };
    char line[512];
#define EMIT(...) do { int n_ = snprintf(line, sizeof line, __VA_ARGS__); buffer_put(&b, line, (size_t)n_); } while (0)
    EMIT("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    EMIT("<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%.0f\" y=\"24\" font-size=\"14\">%s</text>\n", left, title);
    for (int i = 0; i <= 4; i++) {
        double value = lo + (hi - lo) * i / 4, y = H - bottom - (H - top - bottom) * i / 4;
        EMIT("<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"8\" y=\"%.1f\">%.3f</text>\n",
             left, W - right, y, y, y + 4, value);
    }
    EMIT("<text x=\"%.0f\" y=\"%.0f\">step 0</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">step %ld</text>\n",
         left, H - bottom + 20, W - right, H - bottom + 20, last);
    EMIT("<text x=\"%.0f\" y=\"%.0f\" fill=\"#1f77b4\">train loss</text><text x=\"%.0f\" y=\"%.0f\" fill=\"#d62728\">validation loss</text>\n",
         left, H - 12, left + 100, H - 12);
    for (int series = 0; series < 2; series++) {
        EMIT("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", series ? "#d62728" : "#1f77b4");
        for (int i = 0; i < c->count; i++) {
            double value = series ? c->points[i].valid_loss : c->points[i].train_loss;
            if (!isfinite(value)) continue;
            double x = left + (W - left - right) * (double)c->points[i].step / (double)(last > 0 ? last : 1);
            double y = H - bottom - (H - top - bottom) * (value - lo) / (hi - lo);
            EMIT("%.1f,%.1f ", x, y);
        }
        EMIT("\"/>\n");
    }
    EMIT("</svg>\n");
#undef EMIT
    write_whole_file(path, (const char *)b.data, b.size);
    free(b.data);
}

static void print_progress(const Trainer *tr, const StepResult *r, double tokens_per_s, double elapsed, int quiet) {
    if (quiet) return;
    char eta[32], took[32];
    format_duration(eta, sizeof eta, (double)(tr->s.steps - tr->step) * tr->s.batch * tr->s.context / tokens_per_s);
    format_duration(took, sizeof took, elapsed);
    int terminal = isatty(STDERR_FILENO);
    if (!terminal && tr->step % 10 != 0 && tr->step != tr->s.steps) return;
    fprintf(stderr, "%sstep %ld/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %s, ETA %s%s",
            terminal ? "\r" : "", tr->step, tr->s.steps, r->loss, r->lr, r->grad_norm, tokens_per_s, took, eta,
            terminal ? "   " : "\n");
}

// ----------------------------------------------------------------------------
// Saving and resuming. The state file holds everything a run needs to go on
// bit for bit: settings, the model (and adapter), the AdamW moments, the
// step, and a hash of the corpus' tokens. Written to a temporary file and
// renamed, so an interrupted save leaves the previous state intact.

#define STATE_MAGIC 0x54474445u   // "EDGT"
#define STATE_VERSION 3   // 2: Settings gained plain_teacher; 3: opening_weight and opening_sentences

typedef struct {
    uint32_t magic, version;
    uint32_t real_size;      // sizeof(real) of the writer
    uint32_t has_lora;
    Settings settings;
    FileHeader header;
    int64_t step;
    uint64_t corpus_hash;
    uint64_t n_params, n_trainable, tokenizer_size;
} StateHeader;

typedef struct {
    int fd;
    uint64_t at;
    const char *path;
} StateWriter;

static void put(StateWriter *w, const void *data, size_t size) {
    write_at(w->fd, data, size, w->at, w->path);
    w->at += size;
}

static void save_state(const Trainer *tr, const char *path, uint64_t corpus_hash) {
    const Model *m = tr->model;
    StateHeader h = { STATE_MAGIC, STATE_VERSION, sizeof(real), tr->lora != NULL, tr->s, m->h, tr->step,
                      corpus_hash, m->n_params, tr->n_trainable, m->tokenizer_size };
    StateWriter w = { create_pending_output(path), 0, path };
    put(&w, &h, sizeof h);
    put(&w, m->ffn_dim, (size_t)m->h.n_layers * sizeof(int));
    put(&w, m->tokenizer, m->tokenizer_size);
    put(&w, m->params, m->n_params * sizeof(real));
    if (tr->lora) put(&w, tr->adapter, tr->n_trainable * sizeof(real));
    put(&w, tr->m, tr->n_trainable * sizeof(real));
    put(&w, tr->v, tr->n_trainable * sizeof(real));
    commit_pending_output(w.fd, path, w.at);
}

typedef struct {
    StateHeader h;
    const uint8_t *data;     // the whole file
    size_t size, at;
    const char *path;
} StateReader;

static const void *take(StateReader *r, size_t size, const char *what) {
    if (r->size - r->at < size) die("%s is truncated (in the %s)", r->path, what);
    const void *p = r->data + r->at;
    r->at += size;
    return p;
}

static StateReader open_state(const char *path) {
    StateReader r = { .path = path };
    r.data = read_whole_file(path, &r.size);
    memcpy(&r.h, take(&r, sizeof r.h, "header"), sizeof r.h);
    if (r.h.magic != STATE_MAGIC) die("%s is not a train state file (no EDGT magic)", path);
    if (r.h.version != STATE_VERSION) die("%s is a version %u state; this train reads version %d", path, r.h.version, STATE_VERSION);
    if (r.h.real_size != sizeof(real)) die("%s was written with %u-byte numbers, this train uses %zu", path, r.h.real_size, sizeof(real));
    check_header(&r.h.header, path);
    return r;
}

// The model as the state holds it (the reader stands after the header).
static void model_from_state(Model *m, StateReader *r) {
    memset(m, 0, sizeof *m);
    m->h = r->h.header;
    size_t widths = (size_t)m->h.n_layers * sizeof(int);
    m->ffn_dim = xcalloc((size_t)m->h.n_layers, sizeof(int), "model");
    memcpy(m->ffn_dim, take(r, widths, "FFN widths"), widths);
    m->tokenizer_size = r->h.tokenizer_size;
    m->tokenizer = xcalloc(m->tokenizer_size, 1, "tokenizer");
    memcpy(m->tokenizer, take(r, m->tokenizer_size, "tokenizer"), m->tokenizer_size);
    model_layout(m);
    if (m->n_params != r->h.n_params) die("%s: parameter count does not match its header", r->path);
    m->params = xcalloc(m->n_params, sizeof(real), "parameters");
    memcpy(m->params, take(r, m->n_params * sizeof(real), "parameters"), m->n_params * sizeof(real));
}

// The rest of the state: adapter, AdamW moments, step. Closes the reader.
static void restore_trainer(Trainer *tr, StateReader *r, const Corpus *corpus) {
    if (r->h.corpus_hash != corpus->hash) die("%s was trained on another corpus (its tokens differ)", r->path);
    if (r->h.n_trainable != tr->n_trainable) die("%s: trainable parameter count does not match", r->path);
    size_t bytes = tr->n_trainable * sizeof(real);
    if (tr->lora) memcpy(tr->adapter, take(r, bytes, "adapter"), bytes);
    memcpy(tr->m, take(r, bytes, "optimizer moments"), bytes);
    memcpy(tr->v, take(r, bytes, "optimizer moments"), bytes);
    if (r->at != r->size) die("%s has bytes after its end", r->path);
    tr->step = r->h.step;
    free((void *)r->data);
    if (tr->step >= tr->s.steps)
        die("%s has already run its %d steps: give a larger --steps to go on", r->path, tr->s.steps);
}

// ----------------------------------------------------------------------------
// Modes and the command line

typedef struct {
    const char *mode_name, *corpus, *output, *tokenizer_path, *shape, *init, *teacher, *base, *state_path,
        *resume, *log_path, *plot_path, *chat_template;
    int save_every, stop_at, threads, quiet, vocab, drop;
    double keep;   // prune-ffn: the fraction of each FFN kept
    Settings s;
    int given_steps, given_context;
} Options;

static void usage(void) {
    fprintf(stderr,
        "Usage: train MODE CORPUS -o OUTPUT [options]\n"
        "Modes:\n"
        "  tokenizer   learn a BPE tokenizer (SentencePiece-style, byte fallback) from CORPUS;\n"
        "              OUTPUT is a tokenizer.bin (--vocab N pieces, default 512)\n"
        "  pretrain    train a model on CORPUS; OUTPUT is an fp32 checkpoint (run reads it,\n"
        "              export --int4 makes it runq's). New model: --shape and -z; or --init MODEL\n"
        "  distill     train a student on CORPUS against --teacher MODEL's next-token\n"
        "              distributions (same tokenizer); student from --shape or --init\n"
        "  lora        train LoRA adapters on a frozen --base MODEL (fp32, or int4: QLoRA);\n"
        "              OUTPUT is a PEFT adapter directory that export --lora merges\n"
        "  plot        redraw a run's loss curve: CORPUS is its CSV, OUTPUT the SVG\n"
        "  influence   rank --init MODEL's layers by Block Influence on CORPUS (ShortGPT):\n"
        "              1 - cos(input, output) of each layer; prints export's --drop-layers\n"
        "              for the --drop N least influential (default 1)\n"
        "  prune-ffn   structured FFN pruning of --init MODEL: each layer keeps the --keep X\n"
        "              fraction of its neurons that move the residual stream most on CORPUS\n"
        "              (mean |silu(w1 x) * w3 x| times |w2 column|); OUTPUT is an fp32 checkpoint\n"
        "CORPUS is UTF-8 text, blank lines between documents; or, named *.jsonl, one JSON\n"
        "object a line: {\"text\": ...} a document, {\"messages\": [{\"role\": \"user\", \"content\": ...},\n"
        "{\"role\": \"assistant\", ...}]} a conversation, rendered in the chat template; its replies\n"
        "are learned, its requests only read. The last tenth of the tokens is held out for\n"
        "the validation loss.\n"
        "Options:\n"
        "  -z FILE              tokenizer.bin (new models; models without one)\n"
        "  --shape SPEC         dim=,ffn=,layers=,heads=,kv_heads=,head_dim=,tied= (export's --random shapes)\n"
        "  --init MODEL         start from this model's weights\n"
        "  --teacher MODEL      distill: the teacher (any model export reads)\n"
        "  --temperature X      distill: softening (default 2)\n"
        "  --alpha X            distill: weight of the soft loss; 1 - X on the hard labels (default 0.5)\n"
        "  --plain-teacher      distill: the teacher knows no chat template: it reads BOS in place of each\n"
        "                       request, and its end of a document stands for the reply's end of turn\n"
        "  --opening-weight X   conversations: the loss on a reply's opening (where it names what was asked\n"
        "                       for) counts X times, the hard labels alone (default: no opening, every\n"
        "                       token of a reply alike)\n"
        "  --opening-sentences N  conversations: a reply's opening is its first N sentences (default 1 with\n"
        "                       --opening-weight)\n"
        "  --chat-template NAME llama2|llama3|chatml|zephyr: renders the conversations, recorded in OUTPUT\n"
        "                       (default: the one the model records)\n"
        "  --base MODEL         lora: the frozen base\n"
        "  --rank R             lora: adapter rank (default 8)\n"
        "  --lora-alpha X       lora: scale is alpha / rank (default 16)\n"
        "  --targets LIST       lora: projections, from wq,wk,wv,wo,w1,w2,w3 (default wq,wv)\n"
        "  --steps N            optimizer steps (default 1000)\n"
        "  --batch N            windows per step (default 16)\n"
        "  --context N          tokens per window (default 256, at most the model's)\n"
        "  --lr X --min-lr X    peak and final learning rate (default 1e-3, 1e-4)\n"
        "  --warmup N           warmup steps (default 100)\n"
        "  --weight-decay X     AdamW decay on matrices (default 0.1; lora 0)\n"
        "  --clip X             gradient norm limit (default 1; 0 = off)\n"
        "  --seed N             initialisation and batches (default 42)\n"
        "  --eval-every N       validation loss every N steps (default 100)\n"
        "  --eval-windows N     validation windows (default 16)\n"
        "  --log FILE           loss curve CSV (default OUTPUT.csv); --plot FILE: SVG (default OUTPUT.svg)\n"
        "  --state FILE         save the training state here (every --save-every N steps and at the end)\n"
        "  --resume FILE        continue a saved run (same corpus; settings come from the state)\n"
        "  --stop-at N          stop after step N (with --state: a long run in several sittings)\n"
        "  -T N                 threads (default: online cores)\n"
        "  --vocab N            tokenizer: pieces (default 512)\n"
        "  --keep X             prune-ffn: fraction of each layer's FFN neurons kept\n"
        "  (influence and prune-ffn read --eval-windows windows of --context tokens of CORPUS)\n"
        "  -q                   no progress output\n");
    exit(EXIT_FAILURE);
}

static uint32_t parse_targets(const char *list) {
    uint32_t targets = 0;
    char *copy = strdup(list);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        int found = 0;
        for (int p = 0; p < N_PROJECTIONS; p++)
            if (strcmp(item, projection_fields[p]) == 0) { targets |= 1u << projection_kinds[p]; found = 1; }
        if (!found) die("--targets: unknown projection '%s' (use wq,wk,wv,wo,w1,w2,w3)", item);
    }
    free(copy);
    if (!targets) die("--targets names no projection");
    return targets;
}

// ----------------------------------------------------------------------------
// Writing a LoRA adapter as PEFT does: adapter_config.json and
// adapter_model.safetensors with Hugging Face's module names. Like any HF
// tensor, q_proj's and k_proj's output rows (B's rows) are in HF's
// rotate-half order: export --lora permutes them back, as it does weights.

static const char *hf_module(int p) { return strchr(hf_projection_names[p], '.') + 1; }

static void write_peft_adapter(const Lora *lora, const real *adapter, const Model *m, const char *dir,
                               const char *base_name) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("cannot create directory %s: %s", dir, strerror(errno));
    Buffer json = { 0 }, data = { 0 };
    char line[512];
    buffer_put(&json, "{", 1);
    int first = 1;
    for (int l = 0; l < m->h.n_layers; l++)
        for (int p = 0; p < N_PROJECTIONS; p++) {
            if (!(lora->targets & 1u << projection_kinds[p])) continue;
            int rows, cols, r = lora->rank, permute = projection_kinds[p] == K_WQ || projection_kinds[p] == K_WK;
            projection_shape(m, projection_kinds[p], l, &rows, &cols);
            for (int which = 0; which < 2; which++) {   // A, then B
                int out_rows = which ? rows : r, in_cols = which ? r : cols;
                size_t begin = data.size;
                for (int row = 0; row < out_rows; row++) {
                    // HF row `row` of B is our row whose rotate_half_index is `row`
                    int ours = row;
                    if (which && permute) for (ours = 0; rotate_half_index(ours, m->h.head_dim, m->h.head_dim) != row; ours++) {}
                    const real *src = adapter + (which ? lora->b_offset[p][l] : lora->a_offset[p][l]) + (size_t)ours * in_cols;
                    for (int c = 0; c < in_cols; c++) {
                        float v = (float)src[c];
                        buffer_put(&data, &v, 4);
                    }
                }
                int k = snprintf(line, sizeof line,
                                 "%s\"base_model.model.model.layers.%d.%s.lora_%s.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                                 first ? "" : ",", l, hf_projection_names[p], which ? "B" : "A", out_rows, in_cols, begin, data.size);
                buffer_put(&json, line, (size_t)k);
                first = 0;
            }
        }
    const char *meta = ",\"__metadata__\":{\"format\":\"pt\"}}";
    buffer_put(&json, meta, strlen(meta));
    while (json.size % 8) buffer_put(&json, " ", 1);   // data starts 8-byte aligned
    uint64_t header_size = json.size;
    Buffer file = { 0 };
    buffer_put(&file, &header_size, 8);
    buffer_put(&file, json.data, json.size);
    buffer_put(&file, data.data, data.size);
    char *path = path_join(dir, "adapter_model.safetensors");
    write_whole_file(path, (const char *)file.data, file.size);
    free(path);

    Buffer config = { 0 };
    int k = snprintf(line, sizeof line,
                     "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": \"%s\",\n"
                     "  \"r\": %d,\n  \"lora_alpha\": %g,\n  \"lora_dropout\": 0.0,\n  \"bias\": \"none\",\n"
                     "  \"fan_in_fan_out\": false,\n  \"use_rslora\": false,\n  \"target_modules\": [",
                     base_name, lora->rank, (double)lora->scale * lora->rank);
    buffer_put(&config, line, (size_t)k);
    first = 1;
    for (int p = 0; p < N_PROJECTIONS; p++) {
        if (!(lora->targets & 1u << projection_kinds[p])) continue;
        k = snprintf(line, sizeof line, "%s\"%s\"", first ? "" : ", ", hf_module(p));
        buffer_put(&config, line, (size_t)k);
        first = 0;
    }
    buffer_put(&config, "]\n}\n", 4);
    path = path_join(dir, "adapter_config.json");
    write_whole_file(path, (const char *)config.data, config.size);
    free(path);
    free(json.data);
    free(data.data);
    free(file.data);
    free(config.data);
}

// ----------------------------------------------------------------------------
// A run: set up the trainer, loop over steps with evaluations, save.

static void init_trainer(Trainer *tr, Model *model, Model *teacher, Lora *lora, real *adapter, const Settings *s,
                         int n_threads) {
    memset(tr, 0, sizeof *tr);
    tr->s = *s;
    tr->model = model;
    tr->teacher = teacher;
    tr->lora = lora;
    tr->adapter = adapter;
    tr->trainable = lora ? adapter : model->params;
    tr->n_trainable = lora ? lora->n_params : model->n_params;
    tr->decays = xcalloc(tr->n_trainable, 1, "optimizer");
    if (!lora)   // weight decay on matrices, not on norm gains
        for (int i = 0; i < model->plan.count; i++) {
            const PlannedTensor *t = &model->plan.tensors[i];
            if (is_matrix(t->kind))
                memset(tr->decays + *offset_slot(model, t->kind, t->layer), 1, (size_t)t->entry.rows * t->entry.cols);
        }
    tr->m = xcalloc(tr->n_trainable, sizeof(real), "optimizer");
    tr->v = xcalloc(tr->n_trainable, sizeof(real), "optimizer");
    tr->window_grads = xcalloc((size_t)s->batch * tr->n_trainable, sizeof(real), "gradients");
    tr->window_losses = xcalloc((size_t)s->batch, sizeof(double), "losses");
    tr->windows = xcalloc((size_t)s->batch * (size_t)(s->context + 1), sizeof(int), "batch");
    tr->window_roles = xcalloc((size_t)s->batch * (size_t)(s->context + 1), 1, "batch");
    tr->teacher_windows = xcalloc((size_t)s->batch * (size_t)(s->context + 1), sizeof(int), "batch");
    tr->end_of_turn = -1;
    tr->n_threads = n_threads;
    tr->pool = pool_create(n_threads);
    refresh_transposed(model);
    if (teacher) refresh_transposed(teacher);
    tr->work = xcalloc((size_t)n_threads, sizeof(Activations), "activations");
    tr->teacher_work = xcalloc((size_t)n_threads, sizeof(Activations), "activations");
    for (int i = 0; i < n_threads; i++) {
        alloc_activations(&tr->work[i], model, lora, s->context);
        if (teacher) alloc_activations(&tr->teacher_work[i], teacher, NULL, s->context);
    }
}

static void free_trainer(Trainer *tr) {
    for (int i = 0; i < tr->n_threads; i++) {
        free_activations(&tr->work[i]);
        if (tr->teacher) free_activations(&tr->teacher_work[i]);
    }
    pool_free(tr->pool);
    free(tr->work);
    free(tr->teacher_work);
    free(tr->decays);
    free(tr->m);
    free(tr->v);
    free(tr->window_grads);
    free(tr->window_losses);
    free(tr->windows);
    free(tr->window_roles);
    free(tr->teacher_windows);
}

static void run_training(Trainer *tr, const Corpus *corpus, const Options *o) {
    const Settings *s = &tr->s;
    int resumed = tr->step > 0;
    FILE *log = fopen(o->log_path, resumed ? "a" : "w");
    if (!log) die("cannot create %s: %s", o->log_path, strerror(errno));
    if (!resumed) fprintf(log, "step,lr,train_loss,valid_loss,tokens_per_s,elapsed_s\n");
    if (!o->quiet)
        fprintf(stderr, "train: %zu training and %zu validation tokens; %zu trainable parameters; %d threads\n",
                corpus->train.count, corpus->valid.count, tr->n_trainable, tr->n_threads);
    double start = seconds_now(), valid = NAN;
    if (!resumed) {
        valid = evaluate(tr, &corpus->valid);
        fprintf(log, "0,0,%.6f,%.6f,0,0\n", valid, valid);
        if (!o->quiet) fprintf(stderr, "step 0: validation loss %.4f\n", valid);
    }
    while (tr->step < s->steps) {
        double t0 = seconds_now();
        StepResult r = train_step(tr, &corpus->train);
        double tokens_per_s = (double)s->batch * s->context / (seconds_now() - t0);
        int eval_now = tr->step % s->eval_every == 0 || tr->step == s->steps;
        valid = eval_now ? evaluate(tr, &corpus->valid) : NAN;
        print_progress(tr, &r, tokens_per_s, seconds_now() - start, o->quiet);
        if (eval_now && !o->quiet)
            fprintf(stderr, "%sstep %ld: train loss %.4f, validation loss %.4f\n", isatty(STDERR_FILENO) ? "\n" : "",
                    tr->step, r.loss, valid);
        if (isfinite(valid)) fprintf(log, "%ld,%.6g,%.6f,%.6f,%.0f,%.1f\n", tr->step, r.lr, r.loss, valid, tokens_per_s, seconds_now() - start);
        else fprintf(log, "%ld,%.6g,%.6f,,%.0f,%.1f\n", tr->step, r.lr, r.loss, tokens_per_s, seconds_now() - start);
        fflush(log);
        if (o->state_path && o->save_every > 0 && tr->step % o->save_every == 0 && tr->step < s->steps)
            save_state(tr, o->state_path, corpus->hash);
        if (tr->step == o->stop_at) break;
    }
    fclose(log);
    if (o->state_path) save_state(tr, o->state_path, corpus->hash);
    Curve curve = read_curve(o->log_path);
    plot_curve(&curve, o->plot_path, o->output);
    free(curve.points);
    if (!o->quiet) {
        char took[32];
        format_duration(took, sizeof took, seconds_now() - start);
        fprintf(stderr, "train: %ld steps in %s; final validation loss %.4f (perplexity %.2f)\n", tr->step, took,
                valid, exp(valid));
    }
}

static Tokenizer model_tokenizer(const Model *m, const char *what) {
    return embedded_tokenizer(m->tokenizer, m->tokenizer_size, &m->h, what);
}

// A tokenizer.bin names no vocabulary size: it is the number of pieces, after
// the "BBPE" prefix of a byte-level one. The blob is checked in full later.
static int piece_count(const uint8_t *blob, size_t size) {
    size_t at = size >= 8 && memcmp(blob, BYTE_LEVEL_MAGIC, 4) == 0 ? 8 : 0;
    at += 4;   // max_token_length
    int pieces = 0;
    while (at + 8 <= size) {
        int32_t len;
        memcpy(&len, blob + at + 4, 4);
        if (len < 0 || (size_t)len > size - at - 8) break;
        at += 8 + (size_t)len;
        pieces++;
    }
    return pieces;
}

// The student of pretrain/distill: from --init, or new of --shape for the
// tokenizer from -z (or, distilling, the teacher's).
static void student_model(Model *m, const Options *o, const Model *teacher) {
    if (o->init) { load_model(m, o->init, o->tokenizer_path); return; }
    if (!o->shape) die("%s needs --shape for a new model, or --init MODEL", o->mode_name);
    uint8_t *blob;
    size_t size;
    int pieces;
    if (o->tokenizer_path) {
        blob = read_whole_file(o->tokenizer_path, &size);
        pieces = piece_count(blob, size);
    } else if (teacher) {
        size = teacher->tokenizer_size;
        blob = xcalloc(size, 1, "tokenizer");
        memcpy(blob, teacher->tokenizer, size);
        pieces = teacher->h.vocab_size;
    } else die("a new model needs its tokenizer: -z tokenizer.bin");
    new_model(m, o->shape, pieces, o->s.context, o->s.seed);
    m->tokenizer = blob;
    m->tokenizer_size = size;
    Tokenizer check = model_tokenizer(m, o->tokenizer_path ? o->tokenizer_path : "the teacher");
    free_tokenizer(&check);
}

static int default_threads(void) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}

static void train_model(Options *o) {
    Model model, teacher_model, *teacher = NULL;
    Lora lora;
    real *adapter = NULL;
    Settings s = o->s;
    StateReader state = { 0 };
    if (o->resume) {
        state = open_state(o->resume);
        s = state.h.settings;
        if (o->given_steps) s.steps = o->s.steps;   // a resumed run may be extended
        if (s.mode != o->s.mode) die("%s holds a %s run, not %s", o->resume,
                                     s.mode == MODE_LORA ? "lora" : s.mode == MODE_DISTILL ? "distill" : "pretrain", o->mode_name);
        model_from_state(&model, &state);
    } else if (s.mode == MODE_LORA) {
        if (!o->base) die("lora needs --base MODEL");
        load_model(&model, o->base, o->tokenizer_path);
    }
    if (s.mode == MODE_DISTILL) {
        if (!o->teacher) die("distill needs --teacher MODEL");
        load_model(&teacher_model, o->teacher, o->tokenizer_path);
        teacher = &teacher_model;
    }
    if (!o->resume && s.mode != MODE_LORA) student_model(&model, o, teacher);
    if (teacher && (teacher->h.vocab_size != model.h.vocab_size || teacher->tokenizer_size != model.tokenizer_size
                    || memcmp(teacher->tokenizer, model.tokenizer, model.tokenizer_size) != 0))
        die("the teacher's tokenizer (%d pieces) is not the student's (%d pieces): distillation compares "
            "distributions over the same vocabulary", teacher->h.vocab_size, model.h.vocab_size);
    if (s.context > model.h.seq_len) die("--context %d is longer than the model's context of %d", s.context, model.h.seq_len);
    if (s.mode == MODE_LORA) {
        lora_layout(&lora, &model, s.lora_rank, s.lora_alpha, s.lora_targets);
        adapter = lora_init(&lora, &model, s.seed);
    }
    const char *model_name = o->init ? o->init : o->base ? o->base : "the model";
    Tokenizer tok = model_tokenizer(&model, model_name);
    const ChatTemplate *template = NULL;
    if (o->chat_template || model.h.chat_template != CHAT_NOT_RECORDED) {
        template = choose_chat_template(&tok, o->chat_template, model.h.chat_template, model_name);
        model.h.chat_template = (uint32_t)(template - chat_templates);   // the output records it
    }
    if (s.plain_teacher && !template) die("--plain-teacher is for conversations: give --chat-template NAME");
    Corpus corpus = load_corpus(o->corpus, &tok, template, s.opening_sentences, s.context);

    Trainer tr;
    init_trainer(&tr, &model, teacher, s.mode == MODE_LORA ? &lora : NULL, adapter, &s, o->threads);
    if (template) tr.end_of_turn = chat_end_of_turn(&tok, template);
    free_tokenizer(&tok);
    if (o->resume) restore_trainer(&tr, &state, &corpus);
    run_training(&tr, &corpus, o);
    if (tr.step < s.steps) {
        if (!o->quiet) fprintf(stderr, "train: stopped at step %ld of %d; go on with --resume %s\n", tr.step, s.steps, o->state_path);
    } else if (s.mode == MODE_LORA) write_peft_adapter(&lora, adapter, &model, o->output, o->base ? o->base : "base");
    else save_model(&model, o->output, TYPE_F32);
    if (!o->quiet && tr.step == s.steps) fprintf(stderr, "train: wrote %s\n", o->output);
    free_trainer(&tr);
    free_tokens(&corpus.train);
    free_tokens(&corpus.valid);
    free(adapter);
    free_model(&model);
    if (teacher) free_model(teacher);
}

static void plot_only(const Options *o) {
    Curve curve = read_curve(o->corpus);
    if (curve.count == 0) die("%s holds no loss curve (a CSV written by train)", o->corpus);
    plot_curve(&curve, o->output, o->corpus);
    free(curve.points);
}

// influence and prune-ffn: --init MODEL and the calibration text CORPUS as its
// tokens; returns the window length (--context, at most the model's).
static int load_calibration(const Options *o, Model *m, TokenStream *tokens) {
    if (!o->init) die("%s needs --init MODEL", o->mode_name);
    load_model(m, o->init, o->tokenizer_path);
    Tokenizer tok = model_tokenizer(m, o->init);
    *tokens = read_text_tokens(&tok, o->corpus);
    free_tokenizer(&tok);
    int T = o->s.context < m->h.seq_len ? o->s.context : m->h.seq_len;
    if (tokens->count < (size_t)T)
        die("%s holds %zu tokens; %s needs at least one window of %d", o->corpus, tokens->count, o->mode_name, T);
    return T;
}

// Block Influence (export's least_influential_layers, which export
// --drop-layers auto:N runs): the ranking and the --drop N least influential
// layers as export's --drop-layers list.
static void print_influence(const Options *o) {
    if (!o->init) die("%s needs --init MODEL", o->mode_name);
    Source src = { 0 };
    open_model_source(&src, o->init, o->tokenizer_path);
    CalibrationText calib = { .path = o->corpus, .context = o->s.context, .windows = o->s.eval_windows };
    char *list = least_influential_layers(&src, &calib, o->drop ? o->drop : 1, stdout);
    printf("export --drop-layers %s\n", list);
    free(list);
    free_source(&src);
}

static int by_index(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

// ---- Structured FFN pruning: neuron j of layer l adds g_j(t) w2[:, j] to
// the residual stream (g = silu(w1 x) * w3 x), so mean_t |g_j(t)| * |w2[:, j]|
// measures how far it moves the stream on the text. The least important
// neurons go: their rows of w1 and w3 and their column of w2. The format keeps
// a width per layer, so each layer keeps its own most important ones.

// importance[l][j], (n_layers, ffn_dim[l]), averaged over up to max_windows
// windows of T tokens; returns the tokens averaged over.
static long ffn_importance(Model *m, const TokenStream *tokens, int T, int max_windows, double **importance) {
    int L = m->h.n_layers, D = m->h.dim, F = m->max_ffn;
    Activations s;
    alloc_activations(&s, m, NULL, T);
    refresh_transposed(m);
    Net net = model_net(m, NULL, NULL);
    long n = 0;
    for (size_t start = 0; start + (size_t)T <= tokens->count && n < (long)max_windows * T; start += (size_t)T) {
        net_forward(&net, &s, tokens->tokens + start, T);
        for (int l = 0; l < L; l++) {
            int f = m->ffn_dim[l];
            const real *g = AT(s.g, l, T * F);
            for (int t = 0; t < T; t++)
                for (int j = 0; j < f; j++) importance[l][j] += fabs((double)g[(size_t)t * f + j]);
        }
        n += T;
    }
    for (int l = 0; l < L; l++) {
        int f = m->ffn_dim[l];
        const real *w2 = tensor(m, m->params, K_W2, l);   // (dim, f)
        for (int j = 0; j < f; j++) {
            double norm = 0;
            for (int r = 0; r < D; r++) norm += (double)w2[(size_t)r * f + j] * w2[(size_t)r * f + j];
            importance[l][j] = importance[l][j] / (double)n * sqrt(norm);
        }
    }
    free_activations(&s);
    return n;
}

static const double *importance_to_sort;
static int by_importance_descending(const void *a, const void *b) {
    double x = importance_to_sort[*(const int *)a], y = importance_to_sort[*(const int *)b];
    return x > y ? -1 : x < y ? 1 : *(const int *)a - *(const int *)b;
}

// m with only the neurons keep[l][0..widths[l]) (in layer order) of each FFN.
static Model pruned_model(const Model *m, int *const *keep, const int *widths) {
    Model p = { .h = m->h };
    p.ffn_dim = xcalloc((size_t)m->h.n_layers, sizeof(int), "model");
    memcpy(p.ffn_dim, widths, (size_t)m->h.n_layers * sizeof(int));
    p.tokenizer = xcalloc(m->tokenizer_size, 1, "tokenizer");
    memcpy(p.tokenizer, m->tokenizer, m->tokenizer_size);
    p.tokenizer_size = m->tokenizer_size;
    model_layout(&p);
    p.params = xcalloc(p.n_params, sizeof(real), "parameters");
    int D = m->h.dim;
    for (int i = 0; i < p.plan.count; i++) {
        const PlannedTensor *t = &p.plan.tensors[i];
        const real *from = tensor(m, m->params, t->kind, t->layer);
        real *to = tensor(&p, p.params, t->kind, t->layer);
        int f = t->layer >= 0 ? m->ffn_dim[t->layer] : 0;
        if (t->kind == K_W1 || t->kind == K_W3) {         // (f, dim): the kept rows
            for (int j = 0; j < widths[t->layer]; j++)
                memcpy(to + (size_t)j * D, from + (size_t)keep[t->layer][j] * D, (size_t)D * sizeof(real));
        } else if (t->kind == K_W2) {                       // (dim, f): the kept columns
            for (int r = 0; r < D; r++)
                for (int j = 0; j < widths[t->layer]; j++) to[(size_t)r * widths[t->layer] + j] = from[(size_t)r * f + keep[t->layer][j]];
        } else {
            memcpy(to, from, (size_t)t->entry.rows * t->entry.cols * sizeof(real));
        }
    }
    return p;
}

// Each layer keeps round(fraction * its width) neurons, at least one.
static Model prune_ffn(Model *m, const TokenStream *tokens, int T, int max_windows, double fraction, long *n_tokens) {
    int L = m->h.n_layers;
    double **importance = xcalloc((size_t)L, sizeof(double *), "importance");
    int **keep = xcalloc((size_t)L, sizeof(int *), "importance"), *widths = xcalloc((size_t)L, sizeof(int), "importance");
    for (int l = 0; l < L; l++) importance[l] = xcalloc((size_t)m->ffn_dim[l], sizeof(double), "importance");
    *n_tokens = ffn_importance(m, tokens, T, max_windows, importance);
    for (int l = 0; l < L; l++) {
        int f = m->ffn_dim[l];
        keep[l] = xcalloc((size_t)f, sizeof(int), "importance");
        for (int j = 0; j < f; j++) keep[l][j] = j;
        importance_to_sort = importance[l];
        qsort(keep[l], (size_t)f, sizeof(int), by_importance_descending);
        widths[l] = (int)lround(fraction * f);
        if (widths[l] < 1) widths[l] = 1;
        qsort(keep[l], (size_t)widths[l], sizeof(int), by_index);   // the kept ones in their order
    }
    Model p = pruned_model(m, keep, widths);
    for (int l = 0; l < L; l++) { free(importance[l]); free(keep[l]); }
    free(importance);
    free(keep);
    free(widths);
    return p;
}

static void prune_ffn_mode(const Options *o) {
    if (!(o->keep > 0 && o->keep <= 1)) die("prune-ffn needs --keep X, the fraction of each FFN to keep, in (0, 1]");
    Model m;
    TokenStream tokens;
    int T = load_calibration(o, &m, &tokens);
    long n;
    Model p = prune_ffn(&m, &tokens, T, o->s.eval_windows, o->keep, &n);
    save_model(&p, o->output, TYPE_F32);
    if (!o->quiet) {
        size_t before = 0, after = 0;
        for (int l = 0; l < m.h.n_layers; l++) { before += (size_t)m.ffn_dim[l]; after += (size_t)p.ffn_dim[l]; }
        fprintf(stderr, "train: wrote %s: FFN widths %zu -> %zu neurons over %d layers (importance over %ld tokens of %s); "
                "%zu -> %zu parameters\n", o->output, before, after, m.h.n_layers, n, o->corpus, m.n_params, p.n_params);
    }
    free(tokens.tokens);
    free_model(&p);
    free_model(&m);
}

static void train_tokenizer(const Options *o) {
    size_t size;
    uint8_t *text = read_whole_file(o->corpus, &size);
    const char *error = NULL;
    size_t blob_size;
    uint8_t *blob = bpe_train((const char *)text, size, o->vocab, &blob_size, &error);
    if (!blob) die("cannot learn a tokenizer from %s: %s", o->corpus, error);
    write_whole_file(o->output, (const char *)blob, blob_size);
    if (!o->quiet) fprintf(stderr, "train: wrote %s (%d pieces, %zu bytes)\n", o->output, o->vocab, blob_size);
    free(blob);
    free(text);
}

#ifdef TRAIN_MAIN
int main(int argc, char **argv) {
    if (argc < 2) usage();
    Options o = { .mode_name = argv[1], .vocab = 512, .threads = default_threads(), .save_every = 0 };
    static const char *mode_names[] = { "pretrain", "distill", "lora", "tokenizer", "plot", "influence", "prune-ffn" };
    int mode = -1;
    for (int m = 0; m < (int)(sizeof mode_names / sizeof mode_names[0]); m++)
        if (strcmp(argv[1], mode_names[m]) == 0) mode = m;
    if (mode < 0)
        die("unknown mode '%s': tokenizer, pretrain, distill, lora, influence, prune-ffn or plot (train with no arguments shows the options)", argv[1]);
    o.s = default_settings(mode);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPTION(name) (strcmp(a, name) == 0 && v && ++i)
        if (OPTION("-o")) o.output = v;
        else if (OPTION("-z")) o.tokenizer_path = v;
        else if (OPTION("--shape")) o.shape = v;
        else if (OPTION("--init")) o.init = v;
        else if (OPTION("--teacher")) o.teacher = v;
        else if (OPTION("--base")) o.base = v;
        else if (OPTION("--state")) o.state_path = v;
        else if (OPTION("--resume")) o.resume = v;
        else if (OPTION("--log")) o.log_path = v;
        else if (OPTION("--plot")) o.plot_path = v;
        else if (OPTION("--steps")) { o.s.steps = (int)parse_long(a, v, 1, 100000000); o.given_steps = 1; }
        else if (OPTION("--batch")) o.s.batch = (int)parse_long(a, v, 1, 4096);
        else if (OPTION("--context")) { o.s.context = (int)parse_long(a, v, 2, 1 << 16); o.given_context = 1; }
        else if (OPTION("--lr")) o.s.lr = parse_float(a, v, 0, 10);
        else if (OPTION("--min-lr")) o.s.min_lr = parse_float(a, v, 0, 10);
        else if (OPTION("--warmup")) o.s.warmup = (int)parse_long(a, v, 0, 100000000);
        else if (OPTION("--weight-decay")) o.s.weight_decay = parse_float(a, v, 0, 10);
        else if (OPTION("--clip")) o.s.clip = parse_float(a, v, 0, 1e9);
        else if (OPTION("--seed")) o.s.seed = (uint64_t)parse_long(a, v, 0, LONG_MAX);
        else if (OPTION("--temperature")) o.s.temperature = parse_float(a, v, 0.01, 100);
        else if (OPTION("--alpha")) o.s.alpha = parse_float(a, v, 0, 1);
        else if (OPTION("--rank")) o.s.lora_rank = (int)parse_long(a, v, 1, 4096);
        else if (OPTION("--lora-alpha")) o.s.lora_alpha = parse_float(a, v, 1e-6, 1e6);
        else if (OPTION("--targets")) o.s.lora_targets = parse_targets(v);
        else if (OPTION("--eval-every")) o.s.eval_every = (int)parse_long(a, v, 1, 100000000);
        else if (OPTION("--eval-windows")) o.s.eval_windows = (int)parse_long(a, v, 1, 100000);
        else if (OPTION("--save-every")) o.save_every = (int)parse_long(a, v, 1, 100000000);
        else if (OPTION("--stop-at")) o.stop_at = (int)parse_long(a, v, 1, 100000000);
        else if (OPTION("-T")) o.threads = (int)parse_long(a, v, 1, 1024);
        else if (OPTION("--vocab")) o.vocab = (int)parse_long(a, v, 3, 65535);
        else if (OPTION("--drop")) o.drop = (int)parse_long(a, v, 1, 1024);
        else if (OPTION("--keep")) o.keep = parse_float(a, v, 0, 1);
        else if (OPTION("--chat-template")) o.chat_template = v;
        else if (strcmp(a, "--plain-teacher") == 0) o.s.plain_teacher = 1;
        else if (OPTION("--opening-weight")) {
            o.s.opening_weight = parse_float(a, v, 0, 1000);
            if (!o.s.opening_sentences) o.s.opening_sentences = 1;   // a weight given: an opening of one sentence unless said
        }
        else if (OPTION("--opening-sentences")) o.s.opening_sentences = (int)parse_long(a, v, 1, 100);
        else if (strcmp(a, "-q") == 0) o.quiet = 1;
        else if (a[0] == '-' && a[1] != '\0') { fprintf(stderr, "train: unknown option or missing value: %s\n", a); usage(); }
        else if (!o.corpus) o.corpus = a;
        else usage();
#undef OPTION
    }
    if (!o.corpus) die("%s needs a CORPUS text file", o.mode_name);
    if (mode == MODE_INFLUENCE) { print_influence(&o); return 0; }
    if (!o.output) die("%s needs -o OUTPUT", o.mode_name);
    if (mode == MODE_PRUNE_FFN) { prune_ffn_mode(&o); return 0; }
    if (mode == MODE_TOKENIZER) { train_tokenizer(&o); return 0; }
    if (mode == MODE_PLOT) { plot_only(&o); return 0; }
    char *log_default = NULL, *plot_default = NULL;
    if (!o.log_path) { log_default = xcalloc(strlen(o.output) + 8, 1, "path"); sprintf(log_default, "%s.csv", o.output); o.log_path = log_default; }
    if (!o.plot_path) { plot_default = xcalloc(strlen(o.output) + 8, 1, "path"); sprintf(plot_default, "%s.svg", o.output); o.plot_path = plot_default; }
    if (o.s.mode == MODE_LORA && (o.init || o.shape || o.teacher)) die("lora trains adapters on --base; --init, --shape and --teacher do not apply");
    if (o.s.mode != MODE_LORA && o.base) die("--base is for lora; use --init to start %s from a model", o.mode_name);
    if (o.s.mode != MODE_DISTILL && o.teacher) die("--teacher is for distill");
    if (o.s.mode != MODE_DISTILL && o.s.plain_teacher) die("--plain-teacher is for distill");
    if (o.init && o.shape) die("give --init or --shape, not both");
    if (o.stop_at && !o.state_path) die("--stop-at needs --state FILE to keep the run");
    train_model(&o);
    free(log_default);
    free(plot_default);
    return 0;
}
#endif
