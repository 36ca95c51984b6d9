// oracle.c — run.c (the fp32 reference) behind a small non-static interface,
// so a test can link it beside runq.c: both keep all their names static.
// It adds no arithmetic of its own.
#define TESTING
#include "../run.c"
#include "oracle.h"

Oracle *oracle_open(const char *path) {
    Transformer *t = xcalloc(1, sizeof *t, "oracle");
    build_transformer(t, path);
    return (Oracle *)t;
}

const float *oracle_forward(Oracle *o, int token, int pos) { return forward((Transformer *)o, token, pos); }

int oracle_vocab_size(const Oracle *o) { return ((const Transformer *)o)->config.vocab_size; }

int oracle_seq_len(const Oracle *o) { return ((const Transformer *)o)->config.seq_len; }

int oracle_bos_id(const Oracle *o) { return ((const Transformer *)o)->config.bos_id; }

const unsigned char *oracle_tokenizer_blob(const Oracle *o, size_t *size) {
    const Weights *w = &((const Transformer *)o)->weights;
    *size = w->tokenizer_size;
    return w->tokenizer_blob;
}

void oracle_close(Oracle *o) {
    free_transformer((Transformer *)o);
    free(o);
}
