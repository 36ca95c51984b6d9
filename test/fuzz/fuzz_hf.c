// fuzz_hf — a Hugging Face model directory through export's open_hf:
// config.json (model_type, the dimensions, rope_scaling, tied embeddings)
// and model.safetensors both come from the input, split by its first two
// bytes (config.json's length, little-endian). An accepted model is planned,
// every tensor checked against the file and read whole.
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_write_two_files(data, size, "config.json", "model.safetensors")) return 0;
    FUZZ_BEGIN;
    Source src;
    memset(&src, 0, sizeof src);
    open_hf(&src, fuzz_dir());
    fuzz_read_all_tensors(&src);
    free_source(&src);
    FUZZ_END;
    return 0;
}
