// logits.c — a test helper: the logits a checkpoint gives after each token of
// a list, fed at positions 0, 1, 2, ... one at a time (as generation decodes),
// written as raw little-endian float32, (n_tokens, vocab_size). An int4
// checkpoint runs through runq.c's forward, any other through run.c's (via
// test/oracle.c). test/test_families.sh compares them with
// test/reference_forward.py.
//
//     build/logits [--lora ADAPTER] MODEL OUT.bin TOKEN...
// (--lora: runq applies the adapter at run time; int4 models only)
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
    if (argc > 2 && strcmp(argv[1], "--lora") == 0) { lora = argv[2]; argc -= 2; argv += 2; }
    if (argc < 4) die("usage: logits [--lora ADAPTER] MODEL OUT.bin TOKEN...");
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
        prepare_run(&runq, n, 1);
        vocab_size = runq.config.vocab_size;
        seq_len = runq.config.seq_len;
    } else {
        if (lora) die("--lora is for int4 models (runq)");
        oracle = oracle_open(model);
        oracle_prepare(oracle, n);
        vocab_size = oracle_vocab_size(oracle);
        seq_len = oracle_seq_len(oracle);
    }
    if (n > seq_len) die("%d tokens are more than %s's context of %d", n, model, seq_len);
    for (int pos = 0; pos < n; pos++) {
        int token = (int)parse_long("TOKEN", argv[3 + pos], 0, vocab_size - 1);
        const float *logits = oracle ? oracle_forward(oracle, token, pos) : forward(&runq, token, pos);
        if (fwrite(logits, sizeof(float), (size_t)vocab_size, out) != (size_t)vocab_size)
            die("cannot write %s: %s", out_path, strerror(errno));
    }
    if (fclose(out) != 0) die("cannot write %s: %s", out_path, strerror(errno));
    if (oracle) oracle_close(oracle);
    else free_transformer(&runq);
    return 0;
}
