/*
ppl.c — quality: a model's perplexity on a text, and how far its next-token
distributions stray from those of the fp32 reference (KL divergence). The
project's rule is that quality claims come from this tool.

    make ppl
    build/ppl model.q4.bin book.txt                                   perplexity
    build/ppl --reference stories260K.bin -z tok512.bin model.q4.bin book.txt
                                                                      and KL against fp32

MODEL is a quantized Edge LLM checkpoint (int4, or int8/int3/int2 and mixes of
them; run by runq.c's forward; "int4" below stands for all of them), or an fp32 one
or a llama2.c .bin (run by run.c, the reference); the file says which. The
reference, --reference, is always run by run.c.

Method:
  1. The whole text becomes token ids with MODEL's tokenizer (the embedded one,
     or -z), no BOS. A SentencePiece text goes to the encoder a word at a time,
     which keeps it fast; the ids are those of encoding the text whole (see
     tokenize_text).
  2. The ids are cut into consecutive, non-overlapping windows of N tokens
     (-c N; the last window may be shorter). Each window is fed after a BOS,
     teacher-forced: BOS predicts the window's first token, and so on, so every
     token of the text is scored exactly once, with at most N-1 tokens of its
     window before it.
  3. At every position: NLL = -log softmax(logits)[true next token], in double.
     perplexity = exp(mean NLL). With --reference, on the same positions:
     KL(reference || model) = sum_i p_i (log p_i - log q_i) over the vocabulary
     (p the reference's distribution, q the model's; log-softmax in double),
     its mean and max, and top-1 agreement (the two argmaxes equal).
The two models must share the tokenizer: vocabulary size, BOS and, when the
reference carries one, every piece.

This file includes runq.c (TESTING drops its main) and links run.c through
test/oracle.c: both keep all their names static.
It is not a benchmark of speed (tools/bench is).
*/
#define TESTING
#define PROGRAM_NAME "ppl"
#pragma GCC diagnostic ignored "-Wunused-function"   // runq's generate, chat, sampler: unused here
#include "../runq.c"
#include "../test/oracle.h"

#define DEFAULT_WINDOW 256

// ----------------------------------------------------------------------------
// A model of either kind behind one interface: logits at every position of a
// chunk of up to MAX_BATCH tokens.

typedef enum { MODEL_INT4, MODEL_FP32 } ModelKind;

typedef struct {
    const char *path;
    ModelKind kind;
    Transformer runq;              // MODEL_INT4
    Oracle *oracle;                // MODEL_FP32
    int vocab_size, seq_len, bos_id;
    const uint8_t *tokenizer_blob; // embedded tokenizer, NULL if none
    size_t tokenizer_size;
    float *logits;                 // (MAX_BATCH, vocab_size) of the last chunk
} Model;

// run.c and runq.c name themselves in their messages ("run: ..."); a file that
// cannot be read is reported here first, under ppl's own name.
static void require_readable(const char *path, const char *what) {
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || stat(path, &st) != 0) die("cannot open %s %s: %s", what, path, strerror(errno));
    fclose(f);
    if (!S_ISREG(st.st_mode)) die("the %s %s is not a regular file", what, path);
}

static int starts_with_checkpoint_magic(const char *path) {
    uint32_t magic = 0;
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(&magic, sizeof magic, 1, f) : 0;
    if (f) fclose(f);
    return got == 1 && magic == CHECKPOINT_MAGIC;
}

// An Edge LLM checkpoint with quantized embeddings is runq's; the rest (fp32
// checkpoints, llama2.c .bin) are run.c's. Each runtime checks every tensor.
static void model_open(Model *m, const char *path, const char *what) {
    memset(m, 0, sizeof *m);
    m->path = path;
    require_readable(path, what);
    if (starts_with_checkpoint_magic(path)) {
        open_checkpoint(&m->runq, path);
        if (is_quantized((uint32_t)m->runq.weights.tok_embeddings.type)) {
            const Config *c = &m->runq.config;
            m->kind = MODEL_INT4;
            m->vocab_size = c->vocab_size;
            m->seq_len = c->seq_len;
            m->bos_id = c->bos_id;
            m->tokenizer_blob = m->runq.weights.tokenizer_blob;
            m->tokenizer_size = m->runq.weights.tokenizer_size;
            return;
        }
        free_transformer(&m->runq);   // only mapped so far: no run state, no threads
    }
    m->kind = MODEL_FP32;
    m->oracle = oracle_open(path);
    m->vocab_size = oracle_vocab_size(m->oracle);
    m->seq_len = oracle_seq_len(m->oracle);
    m->bos_id = oracle_bos_id(m->oracle);
    m->tokenizer_blob = oracle_tokenizer_blob(m->oracle, &m->tokenizer_size);
}

// Once the window is known: runq's KV cache holds a window, not the whole context.
static void model_prepare(Model *m, int window, int n_threads, int kv_type) {
    m->runq.kv_type = kv_type;
    if (m->kind == MODEL_INT4) prepare_run(&m->runq, window, n_threads);
    m->logits = xcalloc((size_t)MAX_BATCH * m->vocab_size, sizeof(float), "logits");
}

static const char *model_kind_name(const Model *m) { return m->kind == MODEL_INT4 ? "int4" : "fp32"; }

// forward_batch keeps only the last token's logits; perplexity needs every
// position's. So the final norm and classifier run again over all n rows of the
// residual stream it leaves in state.x. A token's arithmetic does not depend on
// its batch (test_model checks it), so these are the logits token-by-token
// decoding gives; the last row must be forward_batch's own, which is checked.
static void runq_logits_at_every_position(Transformer *t, const int *tokens, int n, int pos0, float *out) {
    const float *last = forward_batch(t, tokens, n, pos0);
    const Config *c = &t->config;
    RunState *s = &t->state;
    for (int i = 0; i < n; i++)
        rmsnorm(s->xb + (size_t)i * c->dim, s->x + (size_t)i * c->dim, t->weights.norm.data, c->dim, c->norm_eps);
    matmul1(t, out, &t->weights.output, s->xb, c->dim, n);
    if (memcmp(out + (size_t)(n - 1) * c->vocab_size, last, sizeof(float) * c->vocab_size) != 0)
        die("internal error: the logits recomputed from runq's residual stream differ from forward_batch's "
            "(does forward_batch still leave every token's residual in state.x?)");
}

// Feed tokens[0..n) at positions pos0..pos0+n-1 (n <= MAX_BATCH); returns the
// logits after each, (n, vocab_size).
static const float *model_forward(Model *m, const int *tokens, int n, int pos0) {
    if (m->kind == MODEL_INT4) {
        runq_logits_at_every_position(&m->runq, tokens, n, pos0, m->logits);
    } else {
        for (int i = 0; i < n; i++)
            memcpy(m->logits + (size_t)i * m->vocab_size, oracle_forward(m->oracle, tokens[i], pos0 + i),
                   sizeof(float) * m->vocab_size);
    }
    return m->logits;
}

static void model_close(Model *m) {
    if (m->kind == MODEL_INT4) free_transformer(&m->runq);
    else oracle_close(m->oracle);
    free(m->logits);
}

// ----------------------------------------------------------------------------
// Tokens: MODEL's tokenizer, checked against the reference's.

static void load_tokenizer(Tokenizer *tok, const Model *m, const char *override_path) {
    const char *error;
    if (override_path) {
        size_t size;
        uint8_t *data = read_whole_file(override_path, &size);
        error = build_tokenizer_from_memory(tok, data, size, m->vocab_size);
        free(data);
    } else {
        if (!m->tokenizer_blob) die("%s has no embedded tokenizer: pass one with -z tokenizer.bin", m->path);
        error = build_tokenizer_from_memory(tok, m->tokenizer_blob, m->tokenizer_size, m->vocab_size);
    }
    if (error) die("tokenizer %s for a %d-piece vocabulary: %s", override_path ? override_path : m->path, m->vocab_size, error);
    tok->bos_id = m->bos_id;
}

// KL and top-1 compare distributions id by id: meaningless unless id i is the
// same piece in both models. A reference without a tokenizer of its own (a
// llama2.c .bin) is taken to use MODEL's.
static void require_same_tokenizer(const Model *model, const Tokenizer *tok, const Model *reference) {
    if (model->vocab_size != reference->vocab_size)
        die("vocabulary mismatch: %s has %d pieces, the reference %s %d; KL needs both models on one tokenizer",
            model->path, model->vocab_size, reference->path, reference->vocab_size);
    if (model->bos_id != reference->bos_id)
        die("tokenizer mismatch: BOS is id %d in %s but %d in the reference %s",
            model->bos_id, model->path, reference->bos_id, reference->path);
    if (!reference->tokenizer_blob) return;
    Tokenizer theirs;
    const char *error = build_tokenizer_from_memory(&theirs, reference->tokenizer_blob, reference->tokenizer_size,
                                                    reference->vocab_size);
    if (error) die("%s: embedded tokenizer: %s", reference->path, error);
    for (int id = 0; id < tok->vocab_size; id++)
        if (strcmp(tok->vocab[id], theirs.vocab[id]) != 0)
            die("tokenizer mismatch: id %d is '%s' for %s but '%s' in the reference %s",
                id, tok->vocab[id], model->path, theirs.vocab[id], reference->path);
    free_tokenizer(&theirs);
}

// SentencePiece puts a space before every text it encodes (its dummy prefix),
// so "a" comes back as a piece that starts with a space. Byte-level BPE
// (Llama 3) adds nothing.
static int has_dummy_prefix(const Tokenizer *tok) {
    int ids[8];
    int n = encode(tok, "a", 0, 0, ids);
    return n > 0 && tok->vocab[ids[0]][0] == ' ';
}

// Where a SentencePiece text may be cut: at a single space between two
// non-spaces, the space that starts a word.
static int starts_word(const char *text, size_t i) {
    return i > 0 && text[i] == ' ' && text[i - 1] != ' ' && text[i + 1] != ' ' && text[i + 1] != '\0';
}

// The whole text as token ids, no BOS. encode()'s time and work memory grow
// with its input, so a SentencePiece text goes in a word at a time: cut before
// each word's space, for which encode's dummy prefix then stands. Its pieces
// never span a word boundary, so the ids equal those of encoding the text in
// one go (runs of spaces stay inside a chunk, as there a merge could differ).
// A byte-level text goes in whole: that encoder cuts it into chunks itself.
static int *tokenize_text(const Tokenizer *tok, const char *text, int *count) {
    size_t length = strlen(text);
    if (length > INT_MAX / 2) die("the text is %zu bytes; ppl reads at most %d", length, INT_MAX / 2);
    int *tokens = xcalloc(encode_capacity(tok, text) + 1, sizeof(int), "token ids");   // the chunks take no more than the whole
    char *chunk = xcalloc(length + 1, 1, "text chunk");
    int by_word = has_dummy_prefix(tok), n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i < length && !(by_word && starts_word(text, i))) continue;
        memcpy(chunk, text + start, i - start);
        chunk[i - start] = '\0';
        n += encode(tok, chunk, 0, 0, tokens + n);
        start = i + 1;   // past the space the dummy prefix replaces
    }
    free(chunk);
    *count = n;
    return tokens;
}

// ----------------------------------------------------------------------------
// Scoring

typedef struct {
    long tokens;
    int windows;
    double nll_sum;             // model
    double reference_nll_sum;   // reference, when there is one
    double kl_sum, kl_max;      // KL(reference || model)
    long top1_agreements;
    // --rouge: greedy continuations of the first half of some windows
    int rouge_windows, rouge_length;
    double rouge_vs_reference;  // sum of ROUGE-L F1, model's continuation against the reference's
    double rouge_vs_text;       // and against the text's own continuation
} Scores;

// log(sum_i exp(logits_i)) in double, shifted by the max so nothing overflows
static double log_sum_exp(const float *logits, int n) {
    double max = logits[0], sum = 0;
    for (int i = 1; i < n; i++) max = fmax(max, logits[i]);
    for (int i = 0; i < n; i++) sum += exp(logits[i] - max);
    return max + log(sum);
}

static double kl_divergence(const float *reference_logits, double reference_log_z, const float *logits, double log_z, int n) {
    double kl = 0;
    for (int i = 0; i < n; i++) {
        double log_p = reference_logits[i] - reference_log_z, log_q = logits[i] - log_z;
        kl += exp(log_p) * (log_p - log_q);
    }
    return kl;
}

static void score_position(Scores *s, const float *logits, const float *reference_logits, int vocab_size, int target) {
    double log_z = log_sum_exp(logits, vocab_size);
    s->nll_sum += log_z - logits[target];
    s->tokens++;
    if (!reference_logits) return;
    double reference_log_z = log_sum_exp(reference_logits, vocab_size);
    s->reference_nll_sum += reference_log_z - reference_logits[target];
    double kl = kl_divergence(reference_logits, reference_log_z, logits, log_z, vocab_size);
    s->kl_sum += kl;
    s->kl_max = fmax(s->kl_max, kl);
    s->top1_agreements += argmax(logits, vocab_size) == argmax(reference_logits, vocab_size);
}

// One window of n tokens, teacher-forced: inputs BOS, window[0..n-2] at
// positions 0..n-1; position p is scored on window[p].
static void score_window(Scores *s, Model *model, Model *reference, const int *window, int n, int *inputs) {
    inputs[0] = model->bos_id;
    memcpy(inputs + 1, window, sizeof(int) * (size_t)(n - 1));
    for (int start = 0; start < n; start += MAX_BATCH) {
        int count = n - start < MAX_BATCH ? n - start : MAX_BATCH;
        const float *logits = model_forward(model, inputs + start, count, start);
        const float *reference_logits = reference ? model_forward(reference, inputs + start, count, start) : NULL;
        for (int i = 0; i < count; i++)
            score_position(s, logits + (size_t)i * model->vocab_size,
                           reference_logits ? reference_logits + (size_t)i * model->vocab_size : NULL,
                           model->vocab_size, window[start + i]);
    }
    s->windows++;
}

// ---- ROUGE-L (Lin 2004): the longest common subsequence of a candidate and
// a reference sequence, as the F1 of its recall (over the reference's length)
// and precision (over the candidate's). On token ids here: both sides share
// the tokenizer, so this is ROUGE-L over the same pieces.
static double rouge_l(const int *candidate, int nc, const int *reference, int nr) {
    if (nc == 0 || nr == 0) return 0;
    int *previous = xcalloc((size_t)nr + 1, sizeof(int), "ROUGE-L"), *current = xcalloc((size_t)nr + 1, sizeof(int), "ROUGE-L");
    for (int i = 1; i <= nc; i++) {
        for (int j = 1; j <= nr; j++)
            current[j] = candidate[i - 1] == reference[j - 1] ? previous[j - 1] + 1
                       : previous[j] > current[j - 1] ? previous[j] : current[j - 1];
        int *swap = previous; previous = current; current = swap;
    }
    double lcs = previous[nr];
    free(previous);
    free(current);
    if (lcs == 0) return 0;
    double recall = lcs / nr, precision = lcs / nc;
    return 2 * recall * precision / (recall + precision);
}

// The n tokens a model picks greedily after BOS and the prompt's tokens.
static void greedy_continuation(Model *m, const int *prompt, int n_prompt, int n, int *out, int *inputs) {
    inputs[0] = m->bos_id;
    memcpy(inputs + 1, prompt, sizeof(int) * (size_t)n_prompt);
    const float *logits = NULL;
    int fed = 0, total = n_prompt + 1;
    for (; fed < total; fed += MAX_BATCH) {
        int count = total - fed < MAX_BATCH ? total - fed : MAX_BATCH;
        logits = model_forward(m, inputs + fed, count, fed) + (size_t)(count - 1) * m->vocab_size;
    }
    for (int i = 0; i < n; i++) {
        out[i] = argmax(logits, m->vocab_size);
        if (i + 1 < n) logits = model_forward(m, &out[i], 1, total + i);
    }
}

// A window's first half is the prompt; model and reference continue it for
// `length` tokens (at most what the window leaves), and the model's
// continuation is scored against the reference's and against the text's.
static void rouge_window(Scores *s, Model *model, Model *reference, const int *window, int n, int length, int *inputs) {
    int n_prompt = n / 2, room = n - n_prompt - 1;
    if (n_prompt < 1 || room < 1) return;
    if (length > room) length = room;
    int *ours = xcalloc((size_t)length, sizeof(int), "continuation"), *theirs = xcalloc((size_t)length, sizeof(int), "continuation");
    greedy_continuation(model, window, n_prompt, length, ours, inputs);
    greedy_continuation(reference, window, n_prompt, length, theirs, inputs);
    s->rouge_vs_reference += rouge_l(ours, length, theirs, length);
    s->rouge_vs_text += rouge_l(ours, length, window + n_prompt, length);
    s->rouge_windows++;
    s->rouge_length = length;
    free(ours);
    free(theirs);
}

// rouge_length > 0: ROUGE-L too, on the first rouge_windows windows.
static Scores score_text(Model *model, Model *reference, const int *tokens, int n_tokens, int window, int rouge_length,
                         int rouge_windows) {
    Scores s = { 0 };
    int *inputs = xcalloc((size_t)window, sizeof(int), "window");
    int n_windows = (n_tokens + window - 1) / window, show_progress = isatty(STDERR_FILENO);
    for (int start = 0; start < n_tokens; start += window) {
        if (show_progress) fprintf(stderr, "\rppl: window %d of %d", s.windows + 1, n_windows);
        int n = n_tokens - start < window ? n_tokens - start : window;
        score_window(&s, model, reference, tokens + start, n, inputs);
        if (rouge_length > 0 && s.windows <= rouge_windows) rouge_window(&s, model, reference, tokens + start, n, rouge_length, inputs);
    }
    if (show_progress) fprintf(stderr, "\r%40s\r", "");
    free(inputs);
    return s;
}

// ----------------------------------------------------------------------------
// Reports: a table, or one JSON object (--json)

typedef struct {
    const char *model_path, *reference_path, *text_path;
    const char *model_kind, *reference_kind;
    int window, threads;
} RunInfo;

static void print_table(const RunInfo *info, const Scores *s) {
    double mean_nll = s->nll_sum / s->tokens;
    printf("ppl: %s (%s) on %s\n", info->model_path, info->model_kind, info->text_path);
    printf("  %ld tokens scored in %d window%s of up to %d, each after BOS\n\n", s->tokens, s->windows,
           s->windows == 1 ? "" : "s", info->window);
    printf("  %-28s %10s %12s\n", "", "mean NLL", "perplexity");
    char label[64];
    snprintf(label, sizeof label, "model (%s)", info->model_kind);
    printf("  %-28s %10.4f %12.4f\n", label, mean_nll, exp(mean_nll));
    if (!info->reference_path) return;
    double reference_nll = s->reference_nll_sum / s->tokens;
    snprintf(label, sizeof label, "reference (%s)", info->reference_kind);
    printf("  %-28s %10.4f %12.4f\n\n", label, reference_nll, exp(reference_nll));
    printf("  reference: %s\n", info->reference_path);
    printf("  KL(reference || model) per token: mean %.4f, max %.4f\n", s->kl_sum / s->tokens, s->kl_max);
    printf("  top-1 agreement: %.1f %% (%ld of %ld positions)\n", 100.0 * s->top1_agreements / s->tokens,
           s->top1_agreements, s->tokens);
    if (s->rouge_windows)
        printf("  ROUGE-L of %d greedy tokens after half a window (%d windows): %.4f against the reference's, "
               "%.4f against the text's\n", s->rouge_length, s->rouge_windows, s->rouge_vs_reference / s->rouge_windows,
               s->rouge_vs_text / s->rouge_windows);
}

static void print_json_string(const char *key, const char *value) {
    printf("\"%s\": \"", key);
    for (const unsigned char *c = (const unsigned char *)value; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
    printf("\", ");
}

static void print_json(const RunInfo *info, const Scores *s) {
    double mean_nll = s->nll_sum / s->tokens;
    printf("{");
    print_json_string("model", info->model_path);
    print_json_string("model_type", info->model_kind);
    print_json_string("text", info->text_path);
    printf("\"context\": %d, \"windows\": %d, \"tokens\": %ld, \"mean_nll\": %.10g, \"perplexity\": %.10g",
           info->window, s->windows, s->tokens, mean_nll, exp(mean_nll));
    if (info->reference_path) {
        double reference_nll = s->reference_nll_sum / s->tokens;
        printf(", ");
        print_json_string("reference", info->reference_path);
        print_json_string("reference_type", info->reference_kind);
        printf("\"reference_mean_nll\": %.10g, \"reference_perplexity\": %.10g, \"mean_kl\": %.10g, \"max_kl\": %.10g, "
               "\"top1_agreement\": %.4f", reference_nll, exp(reference_nll), s->kl_sum / s->tokens, s->kl_max,
               100.0 * s->top1_agreements / s->tokens);
        if (s->rouge_windows)
            printf(", \"rouge_windows\": %d, \"rouge_length\": %d, \"rouge_l_vs_reference\": %.6f, \"rouge_l_vs_text\": %.6f",
                   s->rouge_windows, s->rouge_length, s->rouge_vs_reference / s->rouge_windows, s->rouge_vs_text / s->rouge_windows);
    }
    printf("}\n");
}

// ----------------------------------------------------------------------------
// Command line

static void usage(FILE *out) {
    fprintf(out,
        "Usage: ppl [options] MODEL TEXT_FILE\n"
        "Perplexity of MODEL on the text and, with --reference, KL divergence against an fp32 model.\n"
        "MODEL: a quantized (int4, int8, int3, int2) Edge LLM checkpoint (runq), or an fp32 one or a\n"
        "llama2.c .bin (run.c).\n"
        "Options:\n"
        "  --reference REF  fp32 model (Edge LLM fp32 checkpoint or llama2.c .bin) to compare with\n"
        "  -z FILE          tokenizer.bin, for a MODEL without an embedded tokenizer\n"
        "  -c N             tokens per window, 2 .. the context; default min(context, %d)\n"
        "  -T N             threads for an int4 MODEL; default: online cores\n"
        "  -k f16|q8        an int4 MODEL's KV cache (runq -k); default f16\n"
        "  --lora ADAPTER   a LoRA adapter for an int4 MODEL, applied at run time (runq --lora)\n"
        "  --max-tokens N   score only the first N tokens of the text\n"
        "  --json           one JSON object instead of the table\n"
        "  --rouge N        with --reference: ROUGE-L of the model's N greedy tokens after the first\n"
        "                   half of a window against the reference's, and against the text's own\n"
        "  --rouge-windows K  the first K windows for --rouge (default 20)\n"
        "  --print-tokens   print the ids that would be scored (MODEL's tokenizer, no BOS) and stop\n"
        "                   (tools/llamacpp/kl scores the same tokens with llama.cpp)\n"
        "Method: the text is tokenized whole (MODEL's tokenizer, no BOS) and cut into\n"
        "consecutive non-overlapping windows of N tokens; each window is fed after a BOS,\n"
        "teacher-forced, and every token is scored once: NLL = -log p(true next token).\n"
        "perplexity = exp(mean NLL). With --reference, at the same positions: the\n"
        "reference's perplexity, mean and max KL(reference || model) of the next-token\n"
        "distributions (log-softmax in double), and top-1 agreement. Both models must\n"
        "share the tokenizer.\n", DEFAULT_WINDOW);
}

typedef struct {
    const char *model_path, *text_path, *reference_path, *tokenizer_path, *lora_path;
    long window;           // 0: the default
    long max_tokens;       // 0: all
    int threads, json, kv_type, print_tokens, rouge_length, rouge_windows;
} Options;

static Options parse_options(int argc, char **argv) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    Options o = { .threads = online > 0 ? (int)online : 1, .rouge_windows = 20 };
    const char *positional[2];
    int n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) { usage(stdout); exit(EXIT_SUCCESS); }
        if (strcmp(arg, "--json") == 0) { o.json = 1; continue; }
        if (strcmp(arg, "--print-tokens") == 0) { o.print_tokens = 1; continue; }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (n_positional == 2) die("unexpected argument '%s' (usage: ppl [options] MODEL TEXT_FILE)", arg);
            positional[n_positional++] = arg;
            continue;
        }
        if (i + 1 >= argc) die("flag %s needs a value", arg);
        const char *value = argv[++i];
        if (strcmp(arg, "--reference") == 0) o.reference_path = value;
        else if (strcmp(arg, "-z") == 0) o.tokenizer_path = value;
        else if (strcmp(arg, "-c") == 0) o.window = parse_long("-c", value, 2, INT_MAX);
        else if (strcmp(arg, "-T") == 0) o.threads = (int)parse_long("-T", value, 1, 1024);
        else if (strcmp(arg, "-k") == 0) o.kv_type = parse_kv_type(value);
        else if (strcmp(arg, "--lora") == 0) o.lora_path = value;
        else if (strcmp(arg, "--rouge") == 0) o.rouge_length = (int)parse_long("--rouge", value, 1, INT_MAX);
        else if (strcmp(arg, "--rouge-windows") == 0) o.rouge_windows = (int)parse_long("--rouge-windows", value, 1, INT_MAX);
        else if (strcmp(arg, "--max-tokens") == 0) o.max_tokens = parse_long("--max-tokens", value, 1, INT_MAX);
        else die("unknown flag '%s' (ppl --help lists them)", arg);
    }
    if (n_positional != 2) die("needs MODEL and TEXT_FILE (usage: ppl [options] MODEL TEXT_FILE; ppl --help)");
    o.model_path = positional[0];
    o.text_path = positional[1];
    return o;
}

// -c, or min(context, DEFAULT_WINDOW); never beyond either model's context
static int choose_window(const Options *o, const Model *model, const Model *reference) {
    int context = model->seq_len;
    const char *limited_by = model->path;
    if (reference && reference->seq_len < context) { context = reference->seq_len; limited_by = reference->path; }
    if (o->window == 0) return context < DEFAULT_WINDOW ? context : DEFAULT_WINDOW;
    if (o->window > context) die("-c %ld is beyond the context of %s (%d positions)", o->window, limited_by, context);
    return (int)o->window;
}

int main(int argc, char **argv) {
    Options o = parse_options(argc, argv);
    require_readable(o.text_path, "text");
    if (o.tokenizer_path) require_readable(o.tokenizer_path, "tokenizer");

    Model model, reference;
    model_open(&model, o.model_path, "model");
    if (o.reference_path) {
        model_open(&reference, o.reference_path, "reference");
        if (reference.kind != MODEL_FP32) die("the reference %s is int4: --reference takes an fp32 model", o.reference_path);
    }
    Model *ref = o.reference_path ? &reference : NULL;

    Tokenizer tokenizer;
    load_tokenizer(&tokenizer, &model, o.tokenizer_path);
    if (ref) require_same_tokenizer(&model, &tokenizer, ref);
    int window = choose_window(&o, &model, ref);

    size_t text_size;
    char *text = (char *)read_whole_file(o.text_path, &text_size);
    int n_tokens;
    int *tokens = tokenize_text(&tokenizer, text, &n_tokens);
    if (n_tokens < 2) die("%s gives %d token%s; perplexity needs at least 2", o.text_path, n_tokens, n_tokens == 1 ? "" : "s");
    if (o.max_tokens && o.max_tokens < n_tokens) n_tokens = (int)o.max_tokens;
    if (o.print_tokens) {
        for (int i = 0; i < n_tokens; i++) printf(i ? " %d" : "%d", tokens[i]);
        printf("\n");
        exit(EXIT_SUCCESS);
    }

    if (o.kv_type != KV_F16 && model.kind != MODEL_INT4) die("-k is for an int4 model: run.c keeps its KV cache in fp32");
    if (o.lora_path && model.kind != MODEL_INT4) die("--lora is for an int4 model (runq applies adapters at run time)");
    if (o.lora_path) load_adapter(&model.runq, o.lora_path);
    model_prepare(&model, window, o.threads, o.kv_type);
    if (ref) model_prepare(ref, window, 1, KV_F16);
    if (o.rouge_length && !ref) die("--rouge compares with --reference's continuations: give one");
    Scores scores = score_text(&model, ref, tokens, n_tokens, window, o.rouge_length, o.rouge_windows);

    RunInfo info = { o.model_path, o.reference_path, o.text_path, model_kind_name(&model),
                     ref ? model_kind_name(ref) : NULL, window, o.threads };
    if (o.json) print_json(&info, &scores);
    else print_table(&info, &scores);

    free(tokens);
    free(text);
    free_tokenizer(&tokenizer);
    if (ref) model_close(ref);
    model_close(&model);
    return 0;
}
