// fuzz_checkpoint — the runq checkpoint reader on arbitrary bytes: the header,
// the FFN table, the tensor table (every field checked against the file size),
// the weights mapped by name, the embedded tokenizer; and when all of that is
// accepted, a short prompt through the forward pass (a cheap step on the tiny
// models of the seed corpus, and what touches every byte of every tensor).
#include "fuzz.h"

#define CACHE_LEN 8   // positions: the KV cache stays small whatever seq_len the header claims

static void run_prompt(Transformer *t) {
    Tokenizer tok;
    int tokens[32] = { t->config.bos_id }, n = 1;
    if (t->weights.tokenizer_blob) {
        build_tokenizer(&tok, t, NULL);
        n = encode(&tok, "Once upon", 1, 0, tokens);
        free_tokenizer(&tok);
    }
    prepare_run(t, CACHE_LEN, 1);
    if (n > t->state.cache_len) n = t->state.cache_len;   // seq_len may be shorter (runq refuses such a prompt)
    float *logits = forward_tokens(t, tokens, n, 0);
    (void)argmax(logits, t->config.vocab_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *file = fuzz_copy_input(data, size, 0);
    FUZZ_BEGIN;
    Transformer t;
    memset(&t, 0, sizeof t);
    t.path = "checkpoint";
    t.file_data = file;
    t.file_size = size;
    read_config(&t);
    map_weights(&t);
    run_prompt(&t);
    t.file_data = NULL;   // not mapped: free_transformer must not unmap it
    free_transformer(&t);
    FUZZ_END;
    fuzz_free_input(file);
    return 0;
}
