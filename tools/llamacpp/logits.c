/*
logits.c — llama.cpp's logits and greedy tokens on a GGUF file, for the tests
that hold export's GGUF of each model family to llama.cpp
(test/test_families.sh), from node-llama-cpp's prebuilt CPU libraries driven
as tools/llamacpp/bench-native.c drives them (built by build.sh's
llamacpp_build). llama.cpp keeps its defaults but for the thread count and
the context (the tokens given and generated, as runq sizes its KV cache).

    logits LIB_DIR MODEL.gguf THREADS OUT.bin "ID ID ..."
        the ids evaluated in one llama_decode; the logits after each, raw
        little-endian float32, (n_ids, vocab_size), as build/logits writes them
    logits LIB_DIR MODEL.gguf THREADS --greedy N "ID ID ..."
        after the ids, N tokens chosen greedily (the largest logit), each fed
        back, never stopping at EOS; printed on one line

What it is not: a benchmark (bench-native.c) or a sampler.
*/

#include "llama.h"
#include "ggml-backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *message, const char *detail) {
    fprintf(stderr, "logits: %s%s\n", message, detail ? detail : "");
    exit(EXIT_FAILURE);
}

// llama.cpp logs every tensor at load time; keep errors only.
static void quiet_log(enum ggml_log_level level, const char *text, void *user_data) {
    (void)user_data;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static long parse_whole(const char *what, const char *text, char **end) {
    errno = 0;
    long v = strtol(text, end, 10);
    if (errno || *end == text || v < 0) die("expected a whole number for ", what);
    return v;
}

// "1 259 275 ..." -> ids (at most capacity); returns the count
static int parse_ids(const char *text, llama_token *ids, int capacity) {
    int count = 0;
    char *end;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        if (!*p) break;
        if (count == capacity) die("too many ids", NULL);
        ids[count++] = (llama_token)parse_whole("a token id", p, &end);
        p = end;
    }
    return count;
}

// The ids at positions pos0.. in one batch; logits kept after each when all_logits, else after the last.
static void decode(struct llama_context *context, const llama_token *ids, int n, int pos0, int all_logits) {
    struct llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = pos0 + i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = all_logits || i == n - 1;
    }
    batch.n_tokens = n;
    if (llama_decode(context, batch) != 0) die("llama_decode failed", NULL);
    llama_batch_free(batch);
}

static const float *logits_of(struct llama_context *context, int i) {
    const float *logits = llama_get_logits_ith(context, i);
    if (!logits) die("llama.cpp returned no logits", NULL);
    return logits;
}

int main(int argc, char **argv) {
    int greedy = argc == 7 && strcmp(argv[4], "--greedy") == 0;
    if (argc != 6 && !greedy)
        die("usage: logits LIB_DIR MODEL.gguf THREADS OUT.bin \"ID ...\" | LIB_DIR MODEL.gguf THREADS --greedy N \"ID ...\"", NULL);
    char *end;
    int threads = (int)parse_whole("THREADS", argv[3], &end), n_new = greedy ? (int)parse_whole("N", argv[5], &end) : 0;
    static llama_token ids[8192];
    int n = parse_ids(argv[argc - 1], ids, 8192);
    if (threads < 1 || n < 1 || (greedy && (n_new < 1 || n + n_new > 8192))) die("THREADS, N and the ids must be at least 1", NULL);

    llama_log_set(quiet_log, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    struct llama_model_params model_params = llama_model_default_params();
    model_params.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[2], model_params);
    if (!model) die("llama.cpp could not load ", argv[2]);
    struct llama_context_params context_params = llama_context_default_params();
    context_params.n_ctx = (uint32_t)(n + n_new);
    context_params.n_batch = context_params.n_ubatch = (uint32_t)n;
    context_params.n_threads = threads;
    context_params.n_threads_batch = threads;
    struct llama_context *context = llama_init_from_model(model, context_params);
    if (!context) die("llama.cpp could not create a context for ", argv[2]);
    int vocab_size = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab_size) die("an id is outside the model's vocabulary", NULL);

    decode(context, ids, n, 0, !greedy);
    if (greedy) {
        for (int step = 0; step < n_new; step++) {
            const float *logits = logits_of(context, -1);
            llama_token token = 0;
            for (int i = 1; i < vocab_size; i++)
                if (logits[i] > logits[token]) token = i;
            printf("%s%d", step ? " " : "", token);
            if (step + 1 < n_new) decode(context, &token, 1, n + step, 0);
        }
        printf("\n");
    } else {
        FILE *out = fopen(argv[4], "wb");
        if (!out) die("cannot create ", argv[4]);
        for (int i = 0; i < n; i++)
            if (fwrite(logits_of(context, i), sizeof(float), (size_t)vocab_size, out) != (size_t)vocab_size) die("cannot write ", argv[4]);
        if (fclose(out) != 0) die("cannot write ", argv[4]);
    }
    llama_free(context);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
