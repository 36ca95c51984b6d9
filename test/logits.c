// logits.c — a test helper: the logits a checkpoint gives after each token of
// a list, fed at positions 0, 1, 2, ... one at a time (as generation decodes),
// written as raw little-endian float32, (n_tokens, vocab_size). An int4
// checkpoint runs through runq.c's forward, any other through run.c's (via
// test/oracle.c). test/test_families.sh compares them with
// test/reference_forward.py.
//
//     build/logits [--lora ADAPTER] [--prefill] [--kv-q8] MODEL OUT.bin TOKEN...
// (--lora: runq applies the adapter at run time; --kv-q8: runq keeps its KV
// cache in int8 (runq -k q8); --prefill: runq takes the
// tokens as one batch, as it prefills a prompt, at most MAX_BATCH of them,
// and writes each position's logits from the residual stream the batch
// leaves; int4 models only)
#define TESTING
#define PROGRAM_NAME "logits"
#pragma GCC diagnostic ignored "-Wunused-function"   // runq's generate, chat, sampler: unused here
#include "../runq.c"
#include "oracle.h"

static int is_int4_checkpoint(const char *path) {
    uint32_t magic = 0;
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    size_t got = fread(&magic, sizeof magic, 1, f);
    fclose(f);
    if (got != 1 || magic != CHECKPOINT_MAGIC) return 0;   // a llama2.c .bin: run.c's
    Transformer t;
    open_checkpoint(&t, path);
    int int4 = is_quantized((uint32_t)t.weights.tok_embeddings.type);
    free_transformer(&t);   // only mapped: no run state, no threads
    return int4;
}

int main(int argc, char **argv) {
    const char *lora = NULL;
    int prefill = 0;
    if (argc > 2 && strcmp(argv[1], "--lora") == 0) { lora = argv[2]; argc -= 2; argv += 2; }
    if (argc > 1 && strcmp(argv[1], "--prefill") == 0) { prefill = 1; argc--; argv++; }
    int kv_q8 = argc > 1 && strcmp(argv[1], "--kv-q8") == 0;
    if (kv_q8) { argc--; argv++; }
    if (argc < 4) die("usage: logits [--lora ADAPTER] [--prefill] [--kv-q8] MODEL OUT.bin TOKEN...");
    const char *model = argv[1], *out_path = argv[2];
    int n = argc - 3;
    FILE *out = fopen(out_path, "wb");
    if (!out) die("cannot create %s: %s", out_path, strerror(errno));
    Transformer runq;
    Oracle *oracle = NULL;
    int vocab_size, seq_len;
    if (is_int4_checkpoint(model)) {
        open_checkpoint(&runq, model);
        if (lora) load_adapter(&runq, lora);
        if (kv_q8) runq.kv_type = KV_Q8;
        prepare_run(&runq, n, 1);
        vocab_size = runq.config.vocab_size;
        seq_len = runq.config.seq_len;
    } else {
        if (lora || kv_q8) die("--lora and --kv-q8 are for int4 models (runq)");
        oracle = oracle_open(model);
        oracle_prepare(oracle, n);
        vocab_size = oracle_vocab_size(oracle);
        seq_len = oracle_seq_len(oracle);
    }
    if (n > seq_len) die("%d tokens are more than %s's context of %d", n, model, seq_len);
    if (prefill && (oracle || n > MAX_BATCH)) die("--prefill is for int4 models and at most %d tokens", MAX_BATCH);
    int *tokens = xcalloc((size_t)n, sizeof(int), "tokens");
    for (int pos = 0; pos < n; pos++) tokens[pos] = (int)parse_long("TOKEN", argv[3 + pos], 0, vocab_size - 1);
    float *all = prefill ? xcalloc((size_t)n * vocab_size, sizeof(float), "logits") : NULL;
    if (prefill) {   // one forward_batch; every row's logits from the stream it leaves (as tools/ppl does)
        forward_tokens(&runq, tokens, n, 0);
        logits_of_rows(&runq, runq.state.x, n, all);
    }
    for (int pos = 0; pos < n; pos++) {
        const float *logits = prefill ? all + (size_t)pos * vocab_size
                            : oracle ? oracle_forward(oracle, tokens[pos], pos) : forward(&runq, tokens[pos], pos);
        if (fwrite(logits, sizeof(float), (size_t)vocab_size, out) != (size_t)vocab_size)
            die("cannot write %s: %s", out_path, strerror(errno));
    }
    free(tokens);
    free(all);
    if (fclose(out) != 0) die("cannot write %s: %s", out_path, strerror(errno));
    if (oracle) oracle_close(oracle);
    else free_transformer(&runq);
    return 0;
}
