// fuzz_legacy — a llama2.c .bin checkpoint (28-byte header, then fp32 arrays
// whose sizes follow from it) through export's open_legacy; an accepted file
// is planned as an int4 export and each tensor's first and last rows read.
// Not a check of the logits (test_cli.sh's golden texts are).
#include "fuzz.h"

static void read_ends(Source *src) {
    Plan plan = make_plan(src, TYPE_Q4, Q_BLOCK);
    for (int i = 0; i < plan.count; i++) {
        const PlannedTensor *t = &plan.tensors[i];
        if (t->kind == K_TOKENIZER) continue;
        float *row = xcalloc(t->entry.cols, sizeof(float), "row");
        src->read_rows(src, t, 0, 1, row);
        src->read_rows(src, t, (int)t->entry.rows - 1, (int)t->entry.rows, row);
        free(row);
    }
    free(plan.tensors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("model.bin", data, size);
    FUZZ_BEGIN;
    Source src;
    memset(&src, 0, sizeof src);
    open_legacy(&src, path);
    read_ends(&src);
    free_source(&src);
    FUZZ_END;
    return 0;
}
