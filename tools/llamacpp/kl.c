/*
kl.c — llama.cpp's side of the quality table (README "Quantization schemes
side by side"): a quantized GGUF against its f32 GGUF, both run by llama.cpp
itself (node-llama-cpp's prebuilt CPU libraries, as bench-native.c uses them),
measured the way tools/ppl measures runq against run.c:

    kl LIB_DIR REF.f32.gguf MODEL.gguf WINDOW ID ID ID ...

The ids are the text's tokens with no BOS (build/ppl --print-tokens prints
them: the very tokens ppl scores). They are cut into consecutive windows of
WINDOW tokens; each window is fed after BOS, teacher-forced, and every token
is scored once, by both models at the same positions. Prints one JSON object:
tokens, perplexity of each, mean and max KL(reference || model) of the
next-token distributions (log-softmax in double), top-1 agreement.
It is not part of runq or a test: a benchmark's witness.
*/

#include "llama.h"
#include "ggml-backend.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *message, const char *detail) {
    fprintf(stderr, "kl: %s%s\n", message, detail ? detail : "");
    exit(EXIT_FAILURE);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user_data) {
    (void)user_data;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static long parse_whole(const char *what, const char *text) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 0) die("expected a whole number for ", what);
    return v;
}

typedef struct {
    struct llama_model *model;
    struct llama_context *context;
    int vocab_size;
} Runner;

static Runner open_runner(const char *path, int window) {
    Runner r;
    struct llama_model_params model_params = llama_model_default_params();
    model_params.n_gpu_layers = 0;
    r.model = llama_model_load_from_file(path, model_params);
    if (!r.model) die("llama.cpp could not load ", path);
    struct llama_context_params context_params = llama_context_default_params();
    context_params.n_ctx = (uint32_t)window + 1;
    context_params.n_batch = (uint32_t)window + 1;
    context_params.n_ubatch = (uint32_t)window + 1;
    context_params.n_threads = context_params.n_threads_batch = 1;
    r.context = llama_init_from_model(r.model, context_params);
    if (!r.context) die("llama.cpp could not create a context for ", path);
    r.vocab_size = llama_vocab_n_tokens(llama_model_get_vocab(r.model));
    return r;
}

// BOS then the window's tokens but its last, every position's logits kept:
// row i predicts window[i].
static void run_window(Runner *r, const llama_token *window, int n) {
    llama_memory_clear(llama_get_memory(r->context), true);
    struct llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = i == 0 ? llama_vocab_bos(llama_model_get_vocab(r->model)) : window[i - 1];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(r->context, batch) != 0) die("llama_decode failed", NULL);
    llama_batch_free(batch);
}

// log-softmax of logits (vocab,) into out, in double
static void log_softmax(const float *logits, int vocab, double *out) {
    double max = logits[0], sum = 0;
    for (int i = 1; i < vocab; i++) if (logits[i] > max) max = logits[i];
    for (int i = 0; i < vocab; i++) sum += exp(logits[i] - max);
    double log_sum = log(sum);
    for (int i = 0; i < vocab; i++) out[i] = logits[i] - max - log_sum;
}

static int argmax(const double *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 6) die("usage: kl LIB_DIR REF.f32.gguf MODEL.gguf WINDOW ID ID ...", NULL);
    int window = (int)parse_whole("WINDOW", argv[4]), n_tokens = argc - 5;
    if (window < 2 || n_tokens < 2) die("WINDOW and the ids must be at least 2", NULL);
    llama_token *tokens = malloc(sizeof(llama_token) * (size_t)n_tokens);
    for (int i = 0; i < n_tokens; i++) tokens[i] = (llama_token)parse_whole("a token id", argv[5 + i]);

    llama_log_set(quiet_log, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    Runner reference = open_runner(argv[2], window), model = open_runner(argv[3], window);
    int vocab = model.vocab_size;
    if (reference.vocab_size != vocab) die("the two models have different vocabularies", NULL);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab) die("a token id is outside the vocabulary", NULL);

    double *p = malloc(sizeof(double) * (size_t)vocab), *q = malloc(sizeof(double) * (size_t)vocab);
    double nll = 0, reference_nll = 0, kl_sum = 0, kl_max = 0;
    long agreements = 0;
    for (int start = 0; start < n_tokens; start += window) {
        int n = n_tokens - start < window ? n_tokens - start : window;
        run_window(&reference, tokens + start, n);
        run_window(&model, tokens + start, n);
        for (int i = 0; i < n; i++) {
            log_softmax(llama_get_logits_ith(reference.context, i), vocab, p);
            log_softmax(llama_get_logits_ith(model.context, i), vocab, q);
            double kl = 0;
            for (int v = 0; v < vocab; v++) kl += exp(p[v]) * (p[v] - q[v]);
            kl_sum += kl;
            if (kl > kl_max) kl_max = kl;
            agreements += argmax(p, vocab) == argmax(q, vocab);
            nll -= q[tokens[start + i]];
            reference_nll -= p[tokens[start + i]];
        }
    }
    printf("{\"tokens\": %d, \"context\": %d, \"perplexity\": %.10g, \"reference_perplexity\": %.10g, \"mean_kl\": %.10g, "
           "\"max_kl\": %.10g, \"top1_agreement\": %.4f}\n", n_tokens, window, exp(nll / n_tokens),
           exp(reference_nll / n_tokens), kl_sum / n_tokens, kl_max, 100.0 * agreements / n_tokens);
    free(p);
    free(q);
    free(tokens);
    llama_free(model.context);
    llama_model_free(model.model);
    llama_free(reference.context);
    llama_model_free(reference.model);
    llama_backend_free();
    return 0;
}
