// fuzz_hf_sharded — a sharded Hugging Face model through export's open_hf:
// config.json, model.safetensors.index.json (its weight_map names the shards)
// and two shard files, model-1.safetensors and model-2.safetensors. The input
// is the lengths of the first three files (2 bytes each, little-endian), then
// the four files. An accepted model is planned, every tensor checked against
// the file and read whole.
// Not a check of the logits (test_families.sh is).
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const files[] = { "config.json", "model.safetensors.index.json", "model-1.safetensors",
                                         "model-2.safetensors" };
    fuzz_hf_directory(data, size, files);
    return 0;
}
