// fuzz_hf — a Hugging Face model directory through export's open_hf:
// config.json (model_type, the dimensions, rope_scaling, tied embeddings)
// and model.safetensors both come from the input, split by its first two
// bytes (config.json's length, little-endian). An accepted model is planned,
// every tensor checked against the file and read whole.
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t config_size = (size_t)(data[0] | data[1] << 8);
    if (config_size > size - 2) config_size = size - 2;
    fuzz_write_file("config.json", data + 2, config_size);
    fuzz_write_file("model.safetensors", data + 2 + config_size, size - 2 - config_size);
    FUZZ_BEGIN;
    Source src;
    memset(&src, 0, sizeof src);
    open_hf(&src, fuzz_dir());
    fuzz_read_all_tensors(&src);
    free_source(&src);
    FUZZ_END;
    return 0;
}
