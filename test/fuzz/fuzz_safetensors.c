// fuzz_safetensors — a safetensors file (8-byte header length, JSON header,
// payload) through load_safetensors; every tensor it accepts then has its
// first and last value read, which must lie inside the file.
// Not a check of the values read (test_families.sh is).
#include "fuzz.h"

static void read_ends(const HfModel *m) {
    for (int i = 0; i < m->count; i++) {
        const SafeTensor *st = &m->tensors[i];
        size_t count = (size_t)(st->rows * st->cols);
        if (st->dtype < 0 || count == 0) continue;
        (void)safetensor_value(st, 0);
        (void)safetensor_value(st, count - 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("model.safetensors", data, size);
    FUZZ_BEGIN;
    HfModel *m = xcalloc(1, sizeof *m, "model");
    load_safetensors(m, path);
    read_ends(m);
    hf_close(&(Source){ .impl = m });
    FUZZ_END;
    return 0;
}
