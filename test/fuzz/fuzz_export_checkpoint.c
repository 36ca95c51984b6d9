// fuzz_export_checkpoint — export's reading of an Edge LLM checkpoint as an
// input (re-export: open_source on the file, then open_checkpoint_source),
// past runq's own reader that fuzz_checkpoint covers: the plan of an export,
// each tensor checked against it, every row read as floats (int4 dequantized).
// Not a check of export's output values (test_model.c and test_quant.c are).
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("model.bin", data, size);
    FUZZ_BEGIN;
    Source src;
    memset(&src, 0, sizeof src);
    open_source(&src, path);
    fuzz_read_all_tensors(&src);
    free_source(&src);
    FUZZ_END;
    return 0;
}
