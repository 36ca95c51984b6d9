// oracle.c — run.c (the fp32 reference) behind a small non-static interface,
// so a test can link it beside runq.c: both keep all their names static.
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

void oracle_close(Oracle *o) {
    free_transformer((Transformer *)o);
    free(o);
}
