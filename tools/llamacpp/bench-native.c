/*
bench-native.c — llama.cpp's side of tools/bench-vs-llamacpp, without Node:
the same prebuilt CPU libraries node-llama-cpp ships (libllama, libggml and the
CPU variants it picks at run time), driven from C the way llama.cpp's own
tools drive them. One run: load the GGUF, evaluate the prompt's token ids in
one llama_decode (prefill, then the first greedy token: time to first token),
then decode a fixed number of tokens greedily, never stopping at EOS. Prints
runq's stats line on stderr.

Why it exists beside bench.mjs: on a 2-core machine, node-llama-cpp decodes on
a libuv worker while ggml's second thread waits on it, and with 2 threads its
decode ran 7-10x slower than this loop over the very same libraries (1 thread
was not affected). That is the binding's cost, not llama.cpp's; the peer to
beat is llama.cpp itself, so the comparison uses this driver and reports Node's
figures beside it.

llama.cpp keeps its defaults (load mode "auto", i.e. mmap on a CPU; batch sizes, flash attention "auto", Q4_0
repacking); only the thread count and the context size (prompt + decode, as
runq sizes its KV cache) are set. Built by tools/bench-vs-llamacpp against the
llama.h of the llama.cpp release node-llama-cpp bundles:

    bench-native LIB_DIR MODEL.gguf THREADS DECODE_TOKENS "ID ID ID ..."
*/

#include "llama.h"
#include "ggml-backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *message, const char *detail) {
    fprintf(stderr, "bench-native: %s%s\n", message, detail ? detail : "");
    exit(EXIT_FAILURE);
}

// The CPU variant ggml_backend_load_all_from_path chose for this processor
// (libggml-cpu-zen4.so, -haswell, ...): the one of its libraries mapped into
// this process; "unknown" if none is found.
static void cpu_library(char *name, size_t size) {
    snprintf(name, size, "unknown");
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return;
    char line[4096];
    while (fgets(line, sizeof line, maps)) {
        const char *found = strstr(line, "libggml-cpu");
        if (!found) continue;
        size_t length = strcspn(found, "\n");
        snprintf(name, size, "%.*s", (int)length, found);
        break;
    }
    fclose(maps);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

// llama.cpp logs every tensor at load time; keep warnings and errors only.
static void quiet_log(enum ggml_log_level level, const char *text, void *user_data) {
    (void)user_data;
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static long parse_whole(const char *what, const char *text) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || (*end && *end != ' ') || v < 0) die("expected a whole number for ", what);
    return v;
}

// "1 259 275 ..." -> ids; returns the count
static int parse_ids(const char *text, llama_token **ids) {
    int count = 0, capacity = 256;
    *ids = malloc(sizeof(llama_token) * (size_t)capacity);
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        if (!*p) break;
        if (count == capacity) *ids = realloc(*ids, sizeof(llama_token) * (size_t)(capacity *= 2));
        if (!*ids) die("out of memory", NULL);
        (*ids)[count++] = (llama_token)parse_whole("a token id", p);
        while (*p && *p != ' ') p++;
    }
    return count;
}

// Greedy: the id of the largest logit after the last evaluated token.
static llama_token argmax_last(struct llama_context *context, int vocab_size) {
    const float *logits = llama_get_logits_ith(context, -1);
    if (!logits) die("llama.cpp returned no logits", NULL);
    llama_token best = 0;
    for (int i = 1; i < vocab_size; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc != 6) die("usage: bench-native LIB_DIR MODEL.gguf THREADS DECODE_TOKENS \"ID ID ...\"", NULL);
    const char *lib_dir = argv[1], *model_path = argv[2];
    int threads = (int)parse_whole("THREADS", argv[3]), decode = (int)parse_whole("DECODE_TOKENS", argv[4]);
    llama_token *ids;
    int n_prompt = parse_ids(argv[5], &ids);
    if (threads < 1 || decode < 1 || n_prompt < 1) die("THREADS, DECODE_TOKENS and the ids must be at least 1", NULL);

    llama_log_set(quiet_log, NULL);
    double lib_start = now_ms();
    ggml_backend_load_all_from_path(lib_dir);   // the CPU variant that suits this processor
    llama_backend_init();
    double lib_ms = now_ms() - lib_start;

    double load_start = now_ms();
    struct llama_model_params model_params = llama_model_default_params();
    model_params.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, model_params);
    if (!model) die("llama.cpp could not load ", model_path);
    struct llama_context_params context_params = llama_context_default_params();
    context_params.n_ctx = (uint32_t)(n_prompt + decode + 1);
    context_params.n_threads = threads;
    context_params.n_threads_batch = threads;
    struct llama_context *context = llama_init_from_model(model, context_params);
    if (!context) die("llama.cpp could not create a context for ", model_path);
    double load_ms = now_ms() - load_start;
    int vocab_size = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (int i = 0; i < n_prompt; i++)
        if (ids[i] < 0 || ids[i] >= vocab_size) die("a prompt id is outside the model's vocabulary", NULL);

    double start = now_ms();
    if (llama_decode(context, llama_batch_get_one(ids, n_prompt)) != 0) die("llama_decode failed on the prompt", NULL);
    double prompt_end = now_ms();
    llama_token token = argmax_last(context, vocab_size);
    double first_token = now_ms();
    for (int step = 0; step < decode; step++) {
        if (llama_decode(context, llama_batch_get_one(&token, 1)) != 0) die("llama_decode failed while decoding", NULL);
        token = argmax_last(context, vocab_size);
    }
    double end = now_ms();

    double prompt_ms = prompt_end - start, decode_ms = end - first_token;
    fprintf(stderr, "stats: load_ms=%.1f prompt_tokens=%d prompt_ms=%.1f prompt_tok_s=%.2f ttft_ms=%.1f "
                    "decode_tokens=%d decode_ms=%.1f decode_tok_s=%.2f\n",
            load_ms, n_prompt, prompt_ms, n_prompt / prompt_ms * 1000, first_token - start, decode, decode_ms,
            decode / decode_ms * 1000);
    char library[256];
    cpu_library(library, sizeof library);
    printf("{\"lib_ms\":%.1f,\"cpu_library\":\"%s\",\"n_ctx\":%u,\"n_batch\":%u,\"n_ubatch\":%u,\"flash_attn\":\"%s\",\"load_mode\":\"%s\","
           "\"repack\":%s,\"threads\":%d}\n",
           lib_ms, library, llama_n_ctx(context), llama_n_batch(context), llama_n_ubatch(context),
           llama_flash_attn_type_name(context_params.flash_attn_type), llama_load_mode_name(model_params.load_mode),
           model_params.use_extra_bufts ? "true" : "false", threads);
    llama_free(context);
    llama_model_free(model);
    llama_backend_free();
    free(ids);
    return 0;
}
